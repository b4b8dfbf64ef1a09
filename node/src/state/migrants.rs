//! Individuals that travel: a migrant is saved in the folder of the id it gets here, its
//! arrival note ([`ARRIVAL_FILE`], an [`Arrival`]) written last, so that a folder with a
//! note and no record holds a whole migrant still to be scored, after a restart too
//! ([`ModelStore::save_arrival`], [`ModelStore::load_arrival`]); once it joins, the note
//! goes ([`ModelStore::settle_arrival`]). One of ours leaving for another island is read
//! with [`ModelStore::read_model`].
//!
//! These go through a [`ModelStore`], a handle on the individuals' folders that can be
//! cloned into a blocking task: writing, syncing, reading and hashing megabytes of
//! weights runs off the shard's thread, so that the node keeps answering meanwhile.

use super::{io, StateDir, StateError, ARRIVAL_FILE, INDIVIDUALS_DIR};
use crate::population::IndividualId;
use protocol::wire::Summary;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use trainer::individual::{
    sha256_hex, write_atomic, ModelMeta, GENOME_FILE, META_FILE, WEIGHTS_FILE,
};

/// A migrant saved in its folder under a new id, not yet in the population: it joins
/// once a worker has scored it on this node's validation images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arrival {
    /// Its id on this node.
    pub id: IndividualId,
    /// The peer that sent it.
    pub peer: String,
    /// What the sender said of it (its fitness is the claim).
    pub summary: Summary,
    /// SHA-256 of its weights, hex.
    pub checksum: String,
}

/// A model's files as they travel: its weights and its metadata.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `weights.safetensors`.
    pub weights: Vec<u8>,
    /// `model.json`.
    pub meta_json: String,
}

/// The individuals' folders of a state directory: a handle that any thread may hold
/// (the event log and the lock stay with the [`StateDir`]).
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

impl StateDir {
    /// A handle on this directory's individual folders, for work off the shard's thread.
    pub fn models(&self) -> ModelStore {
        ModelStore {
            root: self.root().to_path_buf(),
        }
    }
}

impl ModelStore {
    /// The folder of individual `id` (its record and model files).
    pub fn individual_dir(&self, id: IndividualId) -> PathBuf {
        self.root.join(INDIVIDUALS_DIR).join(id.to_string())
    }

    /// Saves a migrant's model into the folder of `arrival.id` (made here), the arrival
    /// note last.
    pub fn save_arrival(
        &self,
        arrival: &Arrival,
        weights: &[u8],
        meta_json: &str,
    ) -> Result<(), StateError> {
        let dir = self.individual_dir(arrival.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let write = |name: &str, bytes: &[u8]| {
            write_atomic(&dir.join(name), bytes).map_err(|source| StateError::Model {
                id: arrival.id,
                source,
            })
        };
        let note = serde_json::to_vec(arrival).map_err(|e| StateError::Encode {
            what: format!("the arrival note of {}", arrival.id),
            reason: e.to_string(),
        })?;
        // The checksum kept with the model is the one of the weights that came, whatever
        // the sender's metadata said.
        let mut meta: ModelMeta =
            serde_json::from_str(meta_json).map_err(|e| StateError::BadArrival {
                id: arrival.id,
                reason: format!("malformed model metadata: {e}"),
            })?;
        meta.weights_sha256 = Some(arrival.checksum.clone());
        let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| StateError::Encode {
            what: format!("the metadata of {}", arrival.id),
            reason: e.to_string(),
        })?;
        write(WEIGHTS_FILE, weights)?;
        write(GENOME_FILE, arrival.summary.genome.to_json().as_bytes())?;
        write(META_FILE, &meta_json)?;
        // Last: a folder with a note holds a whole migrant.
        write(ARRIVAL_FILE, &note)
    }

    /// The migrant waiting in the folder of `id`, if that folder holds a whole one: its
    /// arrival note, genome, metadata and weights with the checksum the note gives.
    pub fn load_arrival(&self, id: IndividualId) -> Result<Arrival, StateError> {
        let dir = self.individual_dir(id);
        let bad = |reason: String| StateError::BadArrival { id, reason };
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(io(&path))
        };
        let arrival: Arrival = serde_json::from_slice(&read(ARRIVAL_FILE)?)
            .map_err(|e| bad(format!("its {ARRIVAL_FILE} is malformed: {e}")))?;
        if arrival.id != id {
            return Err(bad(format!("its arrival note names #{}", arrival.id)));
        }
        read(GENOME_FILE)?;
        serde_json::from_slice::<ModelMeta>(&read(META_FILE)?)
            .map_err(|e| bad(format!("its {META_FILE} is malformed: {e}")))?;
        if sha256_hex(&read(WEIGHTS_FILE)?) != arrival.checksum {
            return Err(bad("its weights do not match their checksum".into()));
        }
        Ok(arrival)
    }

    /// A scored migrant has joined (its record is written): its note has done its job.
    pub fn settle_arrival(&self, id: IndividualId) -> Result<(), StateError> {
        let path = self.individual_dir(id).join(ARRIVAL_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The model files of individual `id`, to send it to another island.
    pub fn read_model(&self, id: IndividualId) -> Result<ModelFiles, StateError> {
        let dir = self.individual_dir(id);
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = std::fs::read(&weights_path).map_err(io(&weights_path))?;
        let meta_path = dir.join(META_FILE);
        let meta_json = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
        Ok(ModelFiles { weights, meta_json })
    }

    /// SHA-256 (hex) of the weights of individual `id`: as its metadata keeps it, or
    /// computed for a model saved before it was kept; `None` if they cannot be read.
    pub fn weights_checksum(&self, id: IndividualId) -> Option<String> {
        let dir = self.individual_dir(id);
        let kept = std::fs::read(dir.join(META_FILE))
            .ok()
            .and_then(|m| serde_json::from_slice::<ModelMeta>(&m).ok())
            .and_then(|m| m.weights_sha256);
        kept.or_else(|| {
            std::fs::read(dir.join(WEIGHTS_FILE))
                .ok()
                .map(|w| sha256_hex(&w))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;
    use genome::{Genome, InputShape};
    use std::path::Path;
    use trainer::batch::Normalization;

    fn store(root: &Path) -> (StateDir, ModelStore) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/quick-cifar10.toml");
        let config = ExperimentConfig::load_with_overrides(&path, &[]).unwrap();
        let state = StateDir::create(root, &config).unwrap();
        let models = state.models();
        (state, models)
    }

    fn arrival(id: IndividualId, weights: &[u8]) -> Arrival {
        Arrival {
            id,
            peer: "peer".into(),
            summary: Summary {
                id: 40 + id,
                island: "island".into(),
                genome: Genome::initial(InputShape::CIFAR, 10),
                fitness: 0.3,
                parent: None,
                mutations: Vec::new(),
                flops: 1,
                born_at_ms: 2,
            },
            checksum: sha256_hex(weights),
        }
    }

    fn meta_json() -> String {
        serde_json::to_string(&ModelMeta {
            normalization: Normalization::unit(3),
            steps: 1,
            val_accuracy: Some(0.3),
            test_accuracy: None,
            dataset: "test".into(),
            weights_sha256: Some("what the sender said".into()),
        })
        .unwrap()
    }

    #[test]
    fn a_saved_arrival_loads_back_travels_and_settles() {
        let dir = tempfile::tempdir().unwrap();
        let (state, models) = store(&dir.path().join("s"));
        assert_eq!(models.individual_dir(3), state.individual_dir(3));
        let weights = b"not really safetensors".to_vec();
        let a = arrival(3, &weights);
        // From another thread, as the shard does it.
        let saved = {
            let (models, a, weights) = (models.clone(), a.clone(), weights.clone());
            std::thread::spawn(move || models.save_arrival(&a, &weights, &meta_json()))
                .join()
                .unwrap()
        };
        saved.unwrap();
        let back = models.load_arrival(3).unwrap();
        assert_eq!((back.id, back.checksum.clone()), (3, a.checksum.clone()));
        // The checksum kept is the one of the weights that came.
        assert_eq!(models.weights_checksum(3), Some(a.checksum.clone()));
        let files = models.read_model(3).unwrap();
        assert_eq!(files.weights, weights);
        let meta: ModelMeta = serde_json::from_str(&files.meta_json).unwrap();
        assert_eq!(meta.weights_sha256, Some(a.checksum));
        models.settle_arrival(3).unwrap();
        assert!(!models.individual_dir(3).join(ARRIVAL_FILE).exists());
        // Settling twice is harmless.
        models.settle_arrival(3).unwrap();
    }

    #[test]
    fn damaged_arrivals_and_missing_models_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (_state, models) = store(&dir.path().join("s"));
        let weights = b"weights".to_vec();
        models
            .save_arrival(&arrival(5, &weights), &weights, &meta_json())
            .unwrap();
        std::fs::write(models.individual_dir(5).join(WEIGHTS_FILE), b"other").unwrap();
        let err = models.load_arrival(5).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        // A note naming another id.
        let other = arrival(6, &weights);
        std::fs::write(
            models.individual_dir(5).join(ARRIVAL_FILE),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        assert!(models.load_arrival(5).is_err());
        // Malformed metadata is refused before anything is written.
        let err = models
            .save_arrival(&arrival(7, &weights), &weights, "{")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metadata"), "{err}");
        assert!(!models.individual_dir(7).join(ARRIVAL_FILE).exists());
        assert!(models.read_model(9).is_err());
        assert_eq!(models.weights_checksum(9), None);
    }
}
