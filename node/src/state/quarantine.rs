//! Quarantine: what a resume found damaged is moved to `quarantine/<id>/` with a
//! `REASON` file and logged, so that the run resumes with the rest.

use super::events::append_event;
use super::records::RecordScan;
use super::{atomic, io, now_ms, sync_dir, Event, StateError, Status};
use super::{INDIVIDUALS_DIR, QUARANTINE_DIR, REASON_FILE, RECORD_FILE};
use crate::population::IndividualId;
use std::fs::File;
use std::path::{Path, PathBuf};
use trainer::individual::WEIGHTS_FILE;

/// What resume found damaged and moved to `quarantine/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The individual.
    pub id: IndividualId,
    /// What was damaged.
    pub damage: Damage,
    /// What was wrong, in words.
    pub reason: String,
    /// Where it went.
    pub path: PathBuf,
}

/// What of an individual was damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Its record: the whole folder went to quarantine, the individual is gone.
    Record,
    /// The model of a live member: the model went to quarantine; its record stays,
    /// rewritten dead.
    Model,
}

/// A folder of `quarantine/` for individual `id` that does not exist yet.
fn quarantine_slot(root: &Path, id: IndividualId) -> PathBuf {
    let dir = root.join(QUARANTINE_DIR);
    let mut slot = dir.join(id.to_string());
    let mut n = 2;
    while slot.exists() {
        slot = dir.join(format!("{id}-{n}"));
        n += 1;
    }
    slot
}

/// Moves what `scan` found damaged to `quarantine/`: a folder with a corrupt record
/// whole (the individual leaves the scan), the model files of a live member whose model
/// is damaged (its record is rewritten dead); each with a `REASON` file and a
/// `quarantined` event (and a `death` for a member).
pub(super) fn quarantine(
    root: &Path,
    scan: &mut RecordScan,
    events: &mut File,
    events_path: &Path,
) -> Result<Vec<Quarantined>, StateError> {
    let mut out = Vec::new();
    for (id, damage, reason) in std::mem::take(&mut scan.damaged) {
        let folder = root.join(INDIVIDUALS_DIR).join(id.to_string());
        let slot = quarantine_slot(root, id);
        std::fs::create_dir_all(root.join(QUARANTINE_DIR)).map_err(io(root))?;
        let now = now_ms();
        match damage {
            Damage::Record => {
                std::fs::rename(&folder, &slot).map_err(io(&folder))?;
                scan.records.retain(|r| r.id != id);
            }
            Damage::Model => {
                std::fs::create_dir_all(&slot).map_err(io(&slot))?;
                for name in [WEIGHTS_FILE, trainer::individual::META_FILE] {
                    let file = folder.join(name);
                    if file.exists() {
                        std::fs::rename(&file, slot.join(name)).map_err(io(&file))?;
                    }
                }
                if let Some(record) = scan.records.iter_mut().find(|r| r.id == id) {
                    record.status = Status::Dead;
                    record.died_at_ms = Some(now);
                    let path = folder.join(RECORD_FILE);
                    let bytes =
                        serde_json::to_vec_pretty(&*record).map_err(|e| StateError::Encode {
                            what: format!("record {id}"),
                            reason: e.to_string(),
                        })?;
                    atomic(&path, &bytes)?;
                }
                append_event(events, events_path, &Event::Death { at_ms: now, id })?;
            }
        }
        atomic(&slot.join(REASON_FILE), format!("{reason}\n").as_bytes())?;
        append_event(
            events,
            events_path,
            &Event::Quarantined {
                at_ms: now,
                id,
                reason: reason.clone(),
            },
        )?;
        out.push(Quarantined {
            id,
            damage,
            reason,
            path: slot,
        });
    }
    if !out.is_empty() {
        sync_dir(&root.join(QUARANTINE_DIR));
        sync_dir(&root.join(INDIVIDUALS_DIR));
    }
    Ok(out)
}
