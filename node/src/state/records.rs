//! Records, the truth of a run: one `individuals/<id>/record.json` per individual, alive
//! or dead ([`Record`]), read back on resume by [`read_records`], which checks each (and
//! the model of each live one) and sets the damaged apart for quarantine.

use super::quarantine::Damage;
use super::{io, StateError, MAX_RECORD_BYTES, RECORD_FILE};
use crate::config::ExperimentConfig;
use crate::population::IndividualId;
use genome::{Genome, Mutation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use trainer::train::PhaseSeconds;

/// Whether an individual is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In the population.
    Alive,
    /// Killed by selection; its weights are deleted, its record and genome kept.
    Dead,
}

/// Which way an individual moved between islands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// It joined this node.
    In,
    /// This node sent it (a copy: the sender keeps its own).
    Out,
}

/// What the run knows of one trained individual: `individuals/<id>/record.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Its id, also the name of its folder.
    pub id: IndividualId,
    /// Its genome.
    pub genome: Genome,
    /// Validation accuracy after training (`None` if it could not be measured).
    pub fitness: Option<f64>,
    /// Test accuracy after training, reported but never used by evolution.
    pub test_accuracy: Option<f64>,
    /// Alive or dead.
    pub status: Status,
    /// The individual it was copied from (`None` for an initial individual).
    pub parent: Option<IndividualId>,
    /// The mutations that made it from its parent, in order (empty for an initial one).
    pub mutations: Vec<Mutation>,
    /// When it was born (its training started), Unix milliseconds.
    pub born_at_ms: u64,
    /// When it died, Unix milliseconds (`None` while alive).
    pub died_at_ms: Option<u64>,
    /// FLOPs spent training and validating it.
    pub flops: u64,
    /// The node that trained it.
    pub node: String,
    /// Where it came from, if it immigrated (its `parent` and `mutations` are then those
    /// on its home island, not ids of this node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Where the wall time of making it went on the node that trained it (absent for an
    /// immigrant and in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseSeconds>,
}

/// The home of an immigrant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The island (node id) it came from.
    pub island: String,
    /// Its id there.
    pub id: IndividualId,
}

pub(super) struct RecordScan {
    pub(super) records: Vec<Record>,
    pub(super) orphans: Vec<IndividualId>,
    /// Individuals found damaged: the id, what and why.
    pub(super) damaged: Vec<(IndividualId, Damage, String)>,
}

/// Reads every `individuals/<id>/record.json`, by increasing id. Folders whose name is
/// not an id are ignored; folders without a record are orphans.
pub(super) fn read_records(
    dir: &Path,
    config: &ExperimentConfig,
) -> Result<RecordScan, StateError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<IndividualId>().ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut records = Vec::new();
    let mut orphans = Vec::new();
    let mut damaged = Vec::new();
    for id in ids {
        let folder = dir.join(id.to_string());
        let path = folder.join(RECORD_FILE);
        if !path.exists() {
            orphans.push(id);
            continue;
        }
        match read_record(&path, id, config) {
            Ok(record) => {
                if record.status == Status::Alive {
                    if let Err(e) = trainer::individual::check_saved(&folder) {
                        damaged.push((id, Damage::Model, e.to_string()));
                    }
                }
                records.push(record);
            }
            Err(StateError::CorruptRecord { reason, .. }) => {
                damaged.push((
                    id,
                    Damage::Record,
                    format!("corrupt {RECORD_FILE}: {reason}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(RecordScan {
        records,
        orphans,
        damaged,
    })
}

pub(super) fn read_record(
    path: &Path,
    id: IndividualId,
    config: &ExperimentConfig,
) -> Result<Record, StateError> {
    let corrupt = |reason: String| StateError::CorruptRecord {
        path: path.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    if len > MAX_RECORD_BYTES {
        return Err(corrupt(format!(
            "{len} bytes is more than the {MAX_RECORD_BYTES} a record may hold"
        )));
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not a record: {e}")))?;
    if record.id != id {
        return Err(corrupt(format!(
            "it says it is individual {} but lies in the folder of {id}",
            record.id
        )));
    }
    match (record.status, record.died_at_ms) {
        (Status::Alive, Some(_)) => return Err(corrupt("alive but has a death time".into())),
        (Status::Dead, None) => return Err(corrupt("dead but has no death time".into())),
        _ => {}
    }
    record
        .genome
        .analyze(&config.evolution.limits)
        .map_err(|e| corrupt(format!("invalid genome: {e}")))?;
    Ok(record)
}
