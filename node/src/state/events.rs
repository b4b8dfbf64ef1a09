//! The event log, `events.jsonl`: the run's history, one JSON [`Event`] a line, each
//! appended and synced ([`append_event`]); read back by [`read_events`], which tolerates
//! a torn last line (a crash mid-write) and names a garbled earlier one.

use super::{io, Direction, StateError};
use crate::config::FitnessSettings;
use crate::population::IndividualId;
use genome::Mutation;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use trainer::train::PhaseSeconds;

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The state directory was created.
    Created {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// The configuration's fitness fingerprint.
        fingerprint: String,
        /// The settings it was computed from.
        settings: FitnessSettings,
    },
    /// A node opened the directory to resume the run.
    Resumed {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Individuals whose training was lost (in flight when the run stopped).
        lost: Vec<IndividualId>,
    },
    /// A child (or an initial individual) began training.
    TrainingStarted {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Its id.
        id: IndividualId,
        /// Its parent.
        parent: Option<IndividualId>,
        /// The mutations that made it.
        mutations: Vec<Mutation>,
        /// The node training it.
        node: String,
        /// The CPU training threads it was given (absent in logs written before it was
        /// recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threads: Option<usize>,
    },
    /// Training finished and the individual was scored.
    TrainingFinished {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Its id.
        id: IndividualId,
        /// Its validation accuracy.
        fitness: Option<f64>,
        /// FLOPs spent.
        flops: u64,
        /// Wall time of training and scoring, in seconds.
        seconds: f64,
        /// Where that time went (absent in logs written before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phases: Option<PhaseSeconds>,
    },
    /// Training failed; the individual never joined the population.
    TrainingFailed {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Its id.
        id: IndividualId,
        /// Why.
        reason: String,
    },
    /// A trained individual joined the population.
    Birth {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Its id.
        id: IndividualId,
        /// Its parent.
        parent: Option<IndividualId>,
        /// Its fitness.
        fitness: Option<f64>,
    },
    /// An individual died.
    Death {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Its id.
        id: IndividualId,
    },
    /// A trained individual moved between islands (a copy: the sender keeps its own).
    Migration {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// `in` (it joined this node) or `out` (this node sent it).
        direction: Direction,
        /// Its id on this node.
        id: IndividualId,
        /// The other node.
        peer: String,
        /// Its id on the other node (for `in`, on its home island).
        remote_id: IndividualId,
        /// Its validation accuracy: for `in`, as this node measured it on arrival.
        fitness: f64,
        /// For `in`: the validation accuracy the sender claimed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claimed: Option<f64>,
        /// SHA-256 of its weights, hex.
        checksum: String,
    },
    /// The node stopped the run on its own (a stop condition, a signal, an error).
    Stopped {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Why.
        reason: String,
    },
    /// Resume found an individual damaged and moved it (or its model) to `quarantine/`.
    Quarantined {
        /// When, Unix milliseconds.
        at_ms: u64,
        /// Its id.
        id: IndividualId,
        /// What was wrong.
        reason: String,
    },
}

impl Event {
    /// The individual the event is about, if any.
    pub fn id(&self) -> Option<IndividualId> {
        match self {
            Event::Created { .. } | Event::Resumed { .. } | Event::Stopped { .. } => None,
            Event::TrainingStarted { id, .. }
            | Event::TrainingFinished { id, .. }
            | Event::TrainingFailed { id, .. }
            | Event::Birth { id, .. }
            | Event::Death { id, .. } => Some(*id),
            Event::Migration {
                direction: Direction::In,
                id,
                ..
            } => Some(*id),
            Event::Quarantined { id, .. } => Some(*id),
            Event::Migration { .. } => None,
        }
    }

    /// When it happened, Unix milliseconds.
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Created { at_ms, .. }
            | Event::Resumed { at_ms, .. }
            | Event::TrainingStarted { at_ms, .. }
            | Event::TrainingFinished { at_ms, .. }
            | Event::TrainingFailed { at_ms, .. }
            | Event::Birth { at_ms, .. }
            | Event::Death { at_ms, .. }
            | Event::Migration { at_ms, .. }
            | Event::Stopped { at_ms, .. }
            | Event::Quarantined { at_ms, .. } => *at_ms,
        }
    }
}

/// A torn last line of the event log, found and cut off by [`StateDir::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Its line number (from 1).
    pub line: usize,
    /// Its length in bytes.
    pub bytes: usize,
    /// Why it could not be read.
    pub reason: String,
}

/// Wall time of the sessions in an event log: each runs from its `created` or `resumed`
/// event to the last event before the next session.
pub(super) fn wall_ms(events: &[Event]) -> u64 {
    let mut total = 0u64;
    let mut session: Option<(u64, u64)> = None;
    for e in events {
        let at = e.at_ms();
        if matches!(e, Event::Created { .. } | Event::Resumed { .. }) {
            if let Some((start, last)) = session {
                total += last.saturating_sub(start);
            }
            session = Some((at, at));
        } else if let Some((_, last)) = &mut session {
            *last = (*last).max(at);
        }
    }
    if let Some((start, last)) = session {
        total += last.saturating_sub(start);
    }
    total
}

/// How to repair the event log after a crash.
#[derive(Debug)]
pub(super) enum Repair {
    /// Nothing to do.
    None,
    /// Cut the file to this length (dropping a torn last line).
    Truncate(usize),
    /// The last line is whole but lacks its newline.
    AddNewline,
}

pub(super) struct EventLog {
    pub(super) events: Vec<Event>,
    pub(super) torn: Option<TornTail>,
    pub(super) repair: Repair,
}

pub(super) fn read_events(path: &Path) -> Result<EventLog, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // An interrupted create never reaches experiment.toml, so a missing log in a
        // complete state directory was deleted by hand: an error, not an empty history.
        Err(e) => return Err(io(path)(e)),
    };
    let mut events = Vec::new();
    let mut lines: Vec<(usize, &[u8])> = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            lines.push((start, &bytes[start..i]));
            start = i + 1;
        }
    }
    let tail = &bytes[start..];
    let complete = lines.len();
    for (n, (offset, line)) in lines.iter().enumerate() {
        match parse_event(line) {
            Ok(e) => events.push(e),
            Err(reason) => {
                let is_last = n + 1 == complete && tail.is_empty();
                if is_last {
                    return Ok(EventLog {
                        events,
                        torn: Some(TornTail {
                            line: n + 1,
                            bytes: line.len(),
                            reason,
                        }),
                        repair: Repair::Truncate(*offset),
                    });
                }
                return Err(StateError::CorruptEvents {
                    path: path.to_path_buf(),
                    line: n + 1,
                    reason,
                });
            }
        }
    }
    if tail.is_empty() {
        return Ok(EventLog {
            events,
            torn: None,
            repair: Repair::None,
        });
    }
    match parse_event(tail) {
        Ok(e) => {
            events.push(e);
            Ok(EventLog {
                events,
                torn: None,
                repair: Repair::AddNewline,
            })
        }
        Err(reason) => Ok(EventLog {
            events,
            torn: Some(TornTail {
                line: complete + 1,
                bytes: tail.len(),
                reason,
            }),
            repair: Repair::Truncate(start),
        }),
    }
}

fn parse_event(line: &[u8]) -> Result<Event, String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    serde_json::from_slice(line).map_err(|e| e.to_string())
}

/// Appends `event` to the log open as `file` (at `path`) and syncs it.
pub(super) fn append_event(file: &mut File, path: &Path, event: &Event) -> Result<(), StateError> {
    let mut line = serde_json::to_string(event).map_err(|e| StateError::Encode {
        what: "an event".into(),
        reason: e.to_string(),
    })?;
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(io(path))?;
    file.sync_data().map_err(io(path))
}
