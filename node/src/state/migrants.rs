//! Individuals that travel: a migrant is saved in the folder of the id it gets here, its
//! arrival note ([`ARRIVAL_FILE`], an [`Arrival`]) written last, so that a folder with a
//! note and no record holds a whole migrant still to be scored, after a restart too
//! ([`StateDir::save_arrival`], [`StateDir::load_arrival`]); once it joins, the note goes
//! ([`StateDir::settle_arrival`]). One of ours leaving for another island is read with
//! [`StateDir::read_model`].

use super::{io, StateDir, StateError, ARRIVAL_FILE};
use crate::population::IndividualId;
use protocol::wire::Summary;
use serde::{Deserialize, Serialize};
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

impl StateDir {
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
