//! A trained individual on disk: `genome.json`, `weights.safetensors` (every tensor by
//! its stable name) and `model.json` (normalization and scores). Every file is written
//! crash-safely: to a temporary file, synced, then renamed into place.

use crate::batch::Normalization;
use crate::error::{Result, TrainError};
use crate::weights::Weights;
use candle_core::{Device, Tensor};
use genome::{Genome, Limits};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the genome.
pub const GENOME_FILE: &str = "genome.json";
/// File name of the weights.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// File name of the metadata.
pub const META_FILE: &str = "model.json";

/// What is known of a trained model besides its genome and weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The normalization its inputs need.
    pub normalization: Normalization,
    /// Steps it was trained for (in this training run).
    pub steps: u64,
    /// Validation accuracy after training.
    pub val_accuracy: Option<f64>,
    /// Test accuracy after training.
    pub test_accuracy: Option<f64>,
    /// The data set's name.
    pub dataset: String,
    /// SHA-256 of the weights file, hex: [`save`] writes it and every load checks it
    /// (absent in models saved before it was kept, which load unchecked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// A model read back from disk.
#[derive(Debug)]
pub struct SavedModel {
    /// The genome.
    pub genome: Genome,
    /// Every tensor, by name.
    pub tensors: HashMap<String, Tensor>,
    /// Normalization and scores.
    pub meta: ModelMeta,
}

/// Writes `bytes` to `path` crash-safely (temporary file, fsync, rename, directory sync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| TrainError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| TrainError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| TrainError::io(path, e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves a trained model into `dir` (created if missing).
pub fn save(dir: &Path, genome: &Genome, weights: &Weights, meta: &ModelMeta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let tensors = weights.snapshot()?;
    let bytes = safetensors_bytes(&tensors)?;
    let meta = ModelMeta {
        weights_sha256: Some(sha256_hex(&bytes)),
        ..meta.clone()
    };
    write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
    write_atomic(&dir.join(GENOME_FILE), genome.to_json().as_bytes())?;
    let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| TrainError::Weights {
        path: dir.join(META_FILE),
        reason: format!("cannot write metadata: {e}"),
    })?;
    write_atomic(&dir.join(META_FILE), &meta_json)?;
    Ok(())
}

fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    safetensors::tensor::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| TrainError::Mismatch(format!("cannot serialize weights: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks the weights file of `dir` against the checksum its metadata keeps (a model
/// saved before checksums were kept passes unchecked); returns the file's bytes.
pub fn checked_weights(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(WEIGHTS_FILE);
    let bytes = read(&path)?;
    let meta_path = dir.join(META_FILE);
    if meta_path.exists() {
        let meta: ModelMeta =
            serde_json::from_slice(&read(&meta_path)?).map_err(|e| TrainError::Weights {
                path: meta_path.clone(),
                reason: format!("malformed metadata: {e}"),
            })?;
        if let Some(expected) = &meta.weights_sha256 {
            if sha256_hex(&bytes) != *expected {
                return Err(TrainError::Weights {
                    path,
                    reason: "the weights do not match the checksum in model.json".into(),
                });
            }
        }
    }
    Ok(bytes)
}

/// Checks a saved model without loading it: its metadata reads, its weights match their
/// checksum and form a well-formed safetensors file.
pub fn check_saved(dir: &Path) -> Result<()> {
    let meta_path = dir.join(META_FILE);
    serde_json::from_slice::<ModelMeta>(&read(&meta_path)?).map_err(|e| TrainError::Weights {
        path: meta_path.clone(),
        reason: format!("malformed metadata: {e}"),
    })?;
    let bytes = checked_weights(dir)?;
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| TrainError::Weights {
        path: dir.join(WEIGHTS_FILE),
        reason: format!("not a safetensors file: {e}"),
    })?;
    Ok(())
}

/// Reads the weights file of `dir` onto `device`, checked against its checksum
/// ([`checked_weights`]).
pub fn load_tensors(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(WEIGHTS_FILE);
    let bytes = checked_weights(dir)?;
    let weights_error = |reason: String| TrainError::Weights {
        path: path.clone(),
        reason,
    };
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| weights_error(format!("not a safetensors file: {e}")))?;
    Ok(tensors)
}

/// Reads a model saved by [`save`], checking that the weights hold every tensor the genome
/// needs, with the right shape.
pub fn load(dir: &Path, device: &Device) -> Result<SavedModel> {
    let genome_path = dir.join(GENOME_FILE);
    let text = String::from_utf8(read(&genome_path)?).map_err(|e| TrainError::Weights {
        path: genome_path.clone(),
        reason: e.to_string(),
    })?;
    let genome =
        Genome::from_json(&text, &Limits::default()).map_err(|source| TrainError::GenomeFile {
            path: genome_path.clone(),
            source,
        })?;
    let meta_path = dir.join(META_FILE);
    let meta: ModelMeta =
        serde_json::from_slice(&read(&meta_path)?).map_err(|e| TrainError::Weights {
            path: meta_path.clone(),
            reason: format!("malformed metadata: {e}"),
        })?;
    let channels = genome.input.channels as usize;
    if meta.normalization.mean.len() != channels || meta.normalization.std.len() != channels {
        return Err(TrainError::Weights {
            path: meta_path,
            reason: format!("normalization does not have {channels} channels"),
        });
    }
    let tensors = load_tensors(dir, device)?;
    let analysis = genome.validate()?;
    for spec in genome.tensors(&analysis) {
        let path: PathBuf = dir.join(WEIGHTS_FILE);
        match tensors.get(&spec.name) {
            None => {
                return Err(TrainError::Weights {
                    path,
                    reason: format!("missing tensor {}", spec.name),
                })
            }
            Some(t) if t.dims() != spec.shape.as_slice() => {
                return Err(TrainError::Weights {
                    path,
                    reason: format!(
                        "tensor {} has shape {:?}, the genome needs {:?}",
                        spec.name,
                        t.dims(),
                        spec.shape
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(SavedModel {
        genome,
        tensors,
        meta,
    })
}

/// A saved model ([`load`]) built into a network with every tensor it saved, ready to
/// be evaluated or trained further, with its metadata.
pub fn load_network(dir: &Path, device: &Device) -> Result<(crate::Network, ModelMeta)> {
    let saved = load(dir, device)?;
    let (net, _) = crate::Network::new(
        &saved.genome,
        device,
        Some(&saved.tensors),
        &genome::Invalidated::none(),
        0,
    )?;
    Ok((net, saved.meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Network;
    use genome::{InputShape, Invalidated, ReferenceNet};

    fn meta() -> ModelMeta {
        ModelMeta {
            normalization: Normalization::unit(3),
            steps: 7,
            val_accuracy: Some(0.25),
            test_accuracy: None,
            dataset: "test".into(),
            weights_sha256: None,
        }
    }

    #[test]
    fn save_and_load_round_trip_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let g = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 3).unwrap();
        save(dir.path(), &g, net.weights(), &meta()).unwrap();
        let loaded = load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(loaded.genome, g);
        let checksum = loaded.meta.weights_sha256.clone();
        let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
        assert_eq!(checksum, Some(sha256_hex(&bytes)));
        assert_eq!(
            ModelMeta {
                weights_sha256: None,
                ..loaded.meta
            },
            meta()
        );
        let original = net.weights().snapshot().unwrap();
        assert_eq!(loaded.tensors.len(), original.len());
        for (name, t) in &original {
            let a: Vec<u32> = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let b: Vec<u32> = loaded.tensors[name]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(a, b, "{name}");
        }
        // A network rebuilt from the loaded tensors inherits all of them.
        let (_, report) = Network::new(
            &loaded.genome,
            &Device::Cpu,
            Some(&loaded.tensors),
            &Invalidated::none(),
            9,
        )
        .unwrap();
        assert_eq!(report.fresh, 0);
    }

    #[test]
    fn corrupt_or_mismatched_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let g = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 3).unwrap();
        save(dir.path(), &g, net.weights(), &meta()).unwrap();
        let weights = dir.path().join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(matches!(err, TrainError::Weights { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
        // One flipped bit, still a well-formed file: only the checksum tells.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&weights, &flipped).unwrap();
        assert!(checked_weights(dir.path()).is_err());
        let err = load_tensors(dir.path(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(check_saved(dir.path()).is_err());
        std::fs::write(&weights, &bytes).unwrap();
        assert_eq!(checked_weights(dir.path()).unwrap(), bytes);
        check_saved(dir.path()).unwrap();
        // Weights of another genome.
        let other = ReferenceNet::Mid.genome(InputShape::CIFAR, 10);
        let (other_net, _) =
            Network::new(&other, &Device::Cpu, None, &Invalidated::none(), 3).unwrap();
        save(dir.path(), &other, other_net.weights(), &meta()).unwrap();
        std::fs::write(dir.path().join(GENOME_FILE), g.to_json()).unwrap();
        let err = load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("shape") || err.to_string().contains("missing"));
        // A garbled genome.
        std::fs::write(dir.path().join(GENOME_FILE), "{\"input\": 3}").unwrap();
        assert!(matches!(
            load(dir.path(), &Device::Cpu).unwrap_err(),
            TrainError::GenomeFile { .. }
        ));
    }
}
