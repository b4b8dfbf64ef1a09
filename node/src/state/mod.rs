//! The state directory of a run: everything needed to resume it, written crash-safely.
//!
//! ```text
//! STATE/
//!   LOCK                      the pid of the node using it (an advisory lock on it)
//!   node.key                  this node's libp2p identity (its peer id is the node id)
//!   experiment.toml           the config, frozen when the directory was created
//!   events.jsonl              append-only history: one JSON event a line
//!   individuals/<id>/
//!     record.json             what the run knows of the individual (the truth)
//!     genome.json             \
//!     weights.safetensors      } the trained model (`trainer::individual::save`);
//!     model.json              /  a dead individual's weights are deleted
//!   quarantine/<id>/          what resume found damaged, moved aside, with REASON
//! ```
//!
//! Records are the truth: [`StateDir::open`] rebuilds the population from them. The
//! event log is history (births, deaths, training started and finished, later
//! migrations); it is read on open only to check it, to find the highest id ever handed
//! out (so that an individual in training at a crash never has its id reused) and to
//! list what was in flight. Each event is appended and synced; a torn last line (a crash
//! mid-write) is reported and cut off, while a garbled line before it is an error.
//! Every other file is written whole, to a temporary file that is synced and then
//! renamed into place ([`trainer::individual::write_atomic`]).
//!
//! A lock (`flock` on `LOCK`, released by the kernel when its holder dies, so a stale
//! `LOCK` left by a dead node is simply taken over) keeps two nodes out of one directory.
//! A damaged individual does not stop a resume: a folder whose record is corrupt, or a
//! live member whose model fails its checks (metadata, the weights' checksum, the
//! safetensors format), is moved to `quarantine/` with the reason, logged
//! (`quarantined`), and reported in [`Resumed::quarantined`]; such a live member's record
//! stays, rewritten dead, so that its lineage holds. Any other corrupt or inconsistent
//! file is a typed error naming it, raised before anything is written.

mod events;
mod migrants;
mod quarantine;
mod records;

pub use events::{Event, TornTail};
pub use migrants::{Arrival, ModelFiles, ModelStore};
pub use quarantine::{Damage, Quarantined};
pub use records::{Direction, Origin, Record, Status};

use crate::config::{ConfigError, ExperimentConfig};
use crate::population::{IndividualId, Member, Population, PopulationError, Strategy};
use events::{append_event, read_events, wall_ms, Repair};
use genome::Genome;
use quarantine::quarantine;
use records::read_records;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use trainer::individual::{write_atomic, ModelMeta, WEIGHTS_FILE};
use trainer::weights::Weights;
use trainer::TrainError;

/// The lock file.
pub const LOCK_FILE: &str = "LOCK";
/// The frozen configuration.
pub const CONFIG_FILE: &str = "experiment.toml";
/// The event log.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The node's identity key.
pub const NODE_KEY_FILE: &str = "node.key";
/// The folder of individuals.
pub const INDIVIDUALS_DIR: &str = "individuals";
/// An individual's record, in its folder.
pub const RECORD_FILE: &str = "record.json";
/// Where resume moves what it found damaged.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The file of a quarantined folder that says why it is there.
pub const REASON_FILE: &str = "REASON";
/// A migrant's arrival note, in its folder while it waits to be scored (peer, claimed
/// summary, checksum): a folder with one and no record is a migrant still waiting.
pub const ARRIVAL_FILE: &str = "arrival.json";
/// The largest record file read (a genome is at most 1 MiB of JSON).
pub const MAX_RECORD_BYTES: u64 = 4 << 20;

/// Why the state directory could not be created, opened, read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The folder holds no `experiment.toml`.
    #[error("{path} is not a state directory (it has no {CONFIG_FILE})")]
    NotAStateDir {
        /// The folder.
        path: PathBuf,
    },
    /// [`StateDir::create`] found a state directory there already.
    #[error("{path} is already a state directory: resume it instead of creating it")]
    AlreadyExists {
        /// The folder.
        path: PathBuf,
    },
    /// [`StateDir::create`] found a folder holding other files.
    #[error("{path} exists and is not empty: choose another state directory")]
    NotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// Another node holds the lock.
    #[error("{path} is locked by another node (pid {holder}): is it still running?")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// The frozen configuration cannot be read or is invalid.
    #[error("{0}")]
    Config(ConfigError),
    /// The configuration given does not score individuals as the directory's does.
    #[error(
        "{path} was created with other fitness settings ({}): fitnesses would not be \
         comparable; use another state directory",
        differences.join("; ")
    )]
    Incompatible {
        /// The frozen configuration.
        path: PathBuf,
        /// Each setting that differs: `name: frozen vs given`.
        differences: Vec<String>,
    },
    /// A record file is corrupt or inconsistent.
    #[error("corrupt record {path}: {reason}")]
    CorruptRecord {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A line of the event log, other than the last, is garbled.
    #[error("corrupt event log {path}, line {line}: {reason}")]
    CorruptEvents {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A request that contradicts the state (killing the dead, discarding a recorded
    /// individual).
    #[error("individual {id}: {reason}")]
    Conflict {
        /// The individual.
        id: IndividualId,
        /// What is wrong.
        reason: String,
    },
    /// A migrant's folder does not hold a whole, sound migrant.
    #[error("the migrant waiting as #{id}: {reason}")]
    BadArrival {
        /// Its id here.
        id: IndividualId,
        /// What is wrong.
        reason: String,
    },
    /// Saving a trained model failed.
    #[error("saving the model of individual {id}: {source}")]
    Model {
        /// The individual.
        id: IndividualId,
        /// Why.
        source: TrainError,
    },
    /// Something could not be encoded (should not happen).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_atomic(path, bytes).map_err(|e| match e {
        TrainError::Io { path, source } => StateError::Io { path, source },
        other => StateError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    config: ExperimentConfig,
    events: File,
    /// Held for the lock; closing it releases the lock.
    _lock: File,
}

/// What [`StateDir::open`] found.
#[derive(Debug)]
pub struct Resumed {
    /// The directory, open and locked.
    pub state: StateDir,
    /// Every record, alive and dead, by increasing id.
    pub records: Vec<Record>,
    /// The id to give the next individual: above every id in a record or an event.
    pub next_id: IndividualId,
    /// Events read from the log.
    pub events: usize,
    /// The torn last line cut off the event log, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Individuals whose training started but that have no record: their training was
    /// in flight when the run stopped, and is lost.
    pub lost: Vec<IndividualId>,
    /// Folders under `individuals/` without a record: models saved by a training that
    /// stopped before its record was written ([`StateDir::discard`] them), or migrants
    /// still waiting to be scored (with an [`ARRIVAL_FILE`]).
    pub orphans: Vec<IndividualId>,
    /// Weights files of dead individuals that were still there (a crash between the
    /// death and the deletion) and were deleted.
    pub weights_deleted: usize,
    /// Individuals found damaged and moved to `quarantine/`.
    pub quarantined: Vec<Quarantined>,
    /// Wall time of the earlier sessions of the run, in milliseconds: from each session's
    /// start (its `created` or `resumed` event) to its last event.
    pub wall_ms: u64,
}

impl Resumed {
    /// The population the records describe: every record a member (the dead too, for
    /// lineage), numbered by birth in the order of `born_at_ms` (then id). A record
    /// without a fitness counts as the worst (`-inf`), never as still training.
    pub fn population(
        &self,
        target_size: usize,
        strategy: Strategy,
    ) -> Result<Population, PopulationError> {
        let mut order: Vec<&Record> = self.records.iter().collect();
        order.sort_by_key(|r| (r.born_at_ms, r.id));
        let mut population = Population::new(target_size, strategy);
        for (born_at, r) in order.into_iter().enumerate() {
            population.insert(Member {
                id: r.id,
                fitness: Some(r.fitness.unwrap_or(f64::NEG_INFINITY)),
                born_at: born_at as u64,
                alive: r.status == Status::Alive,
            })?;
        }
        Ok(population)
    }
}

impl StateDir {
    /// Creates a state directory at `path` (made if missing, else it must be empty) for
    /// `config`, which is validated and frozen into `experiment.toml`.
    pub fn create(path: &Path, config: &ExperimentConfig) -> Result<StateDir, StateError> {
        config.validate().map_err(StateError::Config)?;
        if path.join(CONFIG_FILE).exists() {
            return Err(StateError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        if path.exists() {
            // Only what an interrupted create leaves behind may be there.
            for entry in std::fs::read_dir(path).map_err(io(path))? {
                let entry = entry.map_err(io(path))?;
                let name = entry.file_name();
                let leftover = name == LOCK_FILE
                    || name == EVENTS_FILE
                    || (name == INDIVIDUALS_DIR && is_empty_dir(&entry.path()));
                if !leftover {
                    return Err(StateError::NotEmpty {
                        path: path.to_path_buf(),
                    });
                }
            }
        }
        std::fs::create_dir_all(path).map_err(io(path))?;
        let lock = take_lock(path)?;
        let individuals = path.join(INDIVIDUALS_DIR);
        std::fs::create_dir_all(&individuals).map_err(io(&individuals))?;
        let events_path = path.join(EVENTS_FILE);
        let events = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&events_path)
            .map_err(io(&events_path))?;
        let mut state = StateDir {
            root: path.to_path_buf(),
            config: config.clone(),
            events,
            _lock: lock,
        };
        state.append(&Event::Created {
            at_ms: now_ms(),
            fingerprint: config.fitness_fingerprint(),
            settings: config.fitness_settings(),
        })?;
        let toml = config.to_toml().map_err(StateError::Config)?;
        let text = format!(
            "# The configuration of this run, frozen when its state directory was created.\n\
             # Resuming with a configuration of other fitness settings is refused.\n\
             # Fitness fingerprint: {}\n\n{toml}",
            config.fitness_fingerprint()
        );
        // Written last: a folder with experiment.toml is a complete state directory.
        atomic(&path.join(CONFIG_FILE), text.as_bytes())?;
        sync_dir(path);
        Ok(state)
    }

    /// Opens an existing state directory, checks every file, and rebuilds the
    /// population from the records. Nothing is written unless every check passes; then
    /// a torn last event line is cut off and leftover weights of dead individuals are
    /// deleted (both reported in [`Resumed`]).
    pub fn open(path: &Path) -> Result<Resumed, StateError> {
        let config_path = path.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(StateError::NotAStateDir {
                path: path.to_path_buf(),
            });
        }
        let lock = take_lock(path)?;
        let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
        let config = ExperimentConfig::parse(&text, &config_path).map_err(StateError::Config)?;
        config.validate().map_err(|e| {
            StateError::Config(ConfigError::Parse {
                path: config_path.clone(),
                message: e.to_string(),
            })
        })?;

        let events_path = path.join(EVENTS_FILE);
        let log = read_events(&events_path)?;
        // experiment.toml edited by hand into other fitness settings.
        let created = log.events.iter().find_map(|e| match e {
            Event::Created { settings, .. } => Some(settings),
            _ => None,
        });
        if let Some(created) = created {
            let frozen = config.fitness_settings();
            if created.fingerprint() != frozen.fingerprint() {
                return Err(StateError::Incompatible {
                    path: config_path,
                    differences: created.differences(&frozen),
                });
            }
        }
        let mut records = read_records(&path.join(INDIVIDUALS_DIR), &config)?;

        let recorded: std::collections::BTreeSet<IndividualId> =
            records.records.iter().map(|r| r.id).collect();
        let max_id = records
            .records
            .iter()
            .map(|r| r.id)
            .chain(log.events.iter().filter_map(Event::id))
            .chain(records.orphans.iter().copied())
            .chain(records.damaged.iter().map(|d| d.0))
            .max();
        let next_id = max_id.map_or(0, |m| m.saturating_add(1));
        let mut lost: Vec<IndividualId> = Vec::new();
        let mut failed = std::collections::BTreeSet::new();
        for e in &log.events {
            if let Event::TrainingFailed { id, .. } = e {
                failed.insert(*id);
            }
        }
        for e in &log.events {
            if let Event::TrainingStarted { id, .. } = e {
                let damaged = records.damaged.iter().any(|d| d.0 == *id);
                if !recorded.contains(id) && !failed.contains(id) && !lost.contains(id) && !damaged
                {
                    lost.push(*id);
                }
            }
        }

        // Every check passed: repair what a crash left.
        let mut events = OpenOptions::new()
            .append(true)
            .open(&events_path)
            .map_err(io(&events_path))?;
        match &log.repair {
            Repair::None => {}
            Repair::Truncate(len) => {
                events.set_len(*len as u64).map_err(io(&events_path))?;
                events.sync_all().map_err(io(&events_path))?;
            }
            Repair::AddNewline => {
                events.write_all(b"\n").map_err(io(&events_path))?;
                events.sync_all().map_err(io(&events_path))?;
            }
        }
        let quarantined = quarantine(path, &mut records, &mut events, &events_path)?;
        let mut weights_deleted = 0;
        for r in records.records.iter().filter(|r| r.status == Status::Dead) {
            let w = path
                .join(INDIVIDUALS_DIR)
                .join(r.id.to_string())
                .join(WEIGHTS_FILE);
            if w.exists() {
                std::fs::remove_file(&w).map_err(io(&w))?;
                weights_deleted += 1;
            }
        }
        Ok(Resumed {
            state: StateDir {
                root: path.to_path_buf(),
                config,
                events,
                _lock: lock,
            },
            records: records.records,
            next_id,
            events: log.events.len(),
            torn_tail: log.torn,
            lost,
            orphans: records.orphans,
            weights_deleted,
            quarantined,
            wall_ms: wall_ms(&log.events),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The frozen configuration.
    pub fn config(&self) -> &ExperimentConfig {
        &self.config
    }

    /// This node's identity key (opaque bytes), read from `node.key`, or made by `make`
    /// and written there (crash-safely) if the file is missing.
    pub fn node_key(&self, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, StateError> {
        let path = self.root.join(NODE_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let bytes = make();
        atomic(&path, &bytes)?;
        Ok(bytes)
    }

    /// Checks that `config` scores individuals as the frozen configuration does (equal
    /// fitness fingerprints); the error lists every setting that differs.
    pub fn check_compatible(&self, config: &ExperimentConfig) -> Result<(), StateError> {
        let ours = self.config.fitness_settings();
        let theirs = config.fitness_settings();
        if ours.fingerprint() == theirs.fingerprint() {
            return Ok(());
        }
        let mut differences = ours.differences(&theirs);
        if differences.is_empty() {
            differences.push("fingerprints differ".into());
        }
        Err(StateError::Incompatible {
            path: self.root.join(CONFIG_FILE),
            differences,
        })
    }

    /// The folder of individual `id` (its record and model files).
    pub fn individual_dir(&self, id: IndividualId) -> PathBuf {
        self.root.join(INDIVIDUALS_DIR).join(id.to_string())
    }

    /// Appends one event to the log and syncs it.
    pub fn append(&mut self, event: &Event) -> Result<(), StateError> {
        let path = self.root.join(EVENTS_FILE);
        append_event(&mut self.events, &path, event)
    }

    /// Saves a trained model (genome, weights, metadata) into the individual's folder;
    /// it joins the population only with its record ([`Self::add`]).
    pub fn save_model(
        &self,
        id: IndividualId,
        genome: &Genome,
        weights: &Weights,
        meta: &ModelMeta,
    ) -> Result<(), StateError> {
        self.make_individual_dir(id)?;
        trainer::individual::save(&self.individual_dir(id), genome, weights, meta)
            .map_err(|source| StateError::Model { id, source })
    }

    /// Writes (or rewrites) an individual's record, crash-safely.
    pub fn write_record(&self, record: &Record) -> Result<(), StateError> {
        let dir = self.make_individual_dir(record.id)?;
        let json = serde_json::to_vec_pretty(record).map_err(|e| StateError::Encode {
            what: format!("the record of individual {}", record.id),
            reason: e.to_string(),
        })?;
        atomic(&dir.join(RECORD_FILE), &json)
    }

    /// Puts a trained individual into the population: writes its record, then logs its
    /// birth. The record must say it is alive.
    pub fn add(&mut self, record: &Record) -> Result<(), StateError> {
        if record.status != Status::Alive || record.died_at_ms.is_some() {
            return Err(StateError::Conflict {
                id: record.id,
                reason: "a newborn must be alive".into(),
            });
        }
        self.write_record(record)?;
        self.append(&Event::Birth {
            at_ms: now_ms(),
            id: record.id,
            parent: record.parent,
            fitness: record.fitness,
        })
    }

    /// Kills an individual: marks its record dead at `at_ms` and rewrites it, logs the
    /// death, then deletes its weights (its record, genome and metadata stay, for
    /// lineage).
    pub fn kill(&mut self, record: &mut Record, at_ms: u64) -> Result<(), StateError> {
        if record.status == Status::Dead {
            return Err(StateError::Conflict {
                id: record.id,
                reason: "already dead".into(),
            });
        }
        let mut dead = record.clone();
        dead.status = Status::Dead;
        dead.died_at_ms = Some(at_ms);
        self.write_record(&dead)?;
        *record = dead;
        self.append(&Event::Death {
            at_ms,
            id: record.id,
        })?;
        let weights = self.individual_dir(record.id).join(WEIGHTS_FILE);
        match std::fs::remove_file(&weights) {
            Ok(()) => {
                sync_dir(&self.individual_dir(record.id));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&weights)(e)),
        }
    }

    /// Deletes the folder of an individual that has no record (its training failed or
    /// was lost). An individual with a record is refused.
    pub fn discard(&self, id: IndividualId) -> Result<(), StateError> {
        let dir = self.individual_dir(id);
        if dir.join(RECORD_FILE).exists() {
            return Err(StateError::Conflict {
                id,
                reason: "it has a record; kill it instead".into(),
            });
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    fn make_individual_dir(&self, id: IndividualId) -> Result<PathBuf, StateError> {
        let dir = self.individual_dir(id);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            sync_dir(&self.root.join(INDIVIDUALS_DIR));
        }
        Ok(dir)
    }
}

/// Syncs a folder so that a file created or renamed in it survives a crash (best effort:
/// not every platform can open a folder).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// Takes the lock of the directory `root`, writing our pid into it.
fn take_lock(root: &Path) -> Result<File, StateError> {
    let path = root.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let holder = if holder.is_empty() {
                "unknown".to_string()
            } else {
                holder
            };
            return Err(StateError::Locked { path, holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    file.set_len(0).map_err(io(&path))?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    Ok(file)
}

/// What a state directory holds, read without locking it or writing anything (for
/// `evo export` while a node runs in it).
#[derive(Debug)]
pub struct Snapshot {
    /// The frozen configuration.
    pub config: ExperimentConfig,
    /// Every record, alive and dead, by increasing id.
    pub records: Vec<Record>,
}

/// Reads the configuration and records of the state directory at `path` without locking
/// it or writing anything.
pub fn snapshot(path: &Path) -> Result<Snapshot, StateError> {
    let config_path = path.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(StateError::NotAStateDir {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config = ExperimentConfig::parse(&text, &config_path).map_err(StateError::Config)?;
    let records = read_records(&path.join(INDIVIDUALS_DIR), &config)?.records;
    Ok(Snapshot { config, records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use genome::{InputShape, Invalidated, Mutation};
    use trainer::batch::Normalization;
    use trainer::train::PhaseSeconds;
    use trainer::Network;

    fn config() -> ExperimentConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/quick-cifar10.toml");
        ExperimentConfig::load_with_overrides(&path, &[]).unwrap()
    }

    fn record(id: IndividualId, fitness: f64, parent: Option<IndividualId>) -> Record {
        Record {
            id,
            genome: Genome::initial(InputShape::CIFAR, 10),
            fitness: Some(fitness),
            test_accuracy: Some(fitness - 0.01),
            status: Status::Alive,
            parent,
            mutations: if parent.is_some() {
                vec![Mutation::InsertConvolution]
            } else {
                vec![]
            },
            born_at_ms: 1000 + id,
            died_at_ms: None,
            flops: 12345 * (id + 1),
            node: "test-node".into(),
            origin: None,
            phases: None,
        }
    }

    fn meta() -> ModelMeta {
        ModelMeta {
            normalization: Normalization::unit(3),
            steps: 1,
            val_accuracy: Some(0.2),
            test_accuracy: None,
            dataset: "test".into(),
            weights_sha256: None,
        }
    }

    /// A state directory with individuals 0..3 born (0 and 1 with saved models), 1 dead,
    /// and individual 4 in flight.
    fn populated(root: &Path) -> Vec<Record> {
        let mut s = StateDir::create(root, &config()).unwrap();
        let mut records = vec![
            record(0, 0.3, None),
            record(1, 0.4, None),
            record(2, 0.5, Some(0)),
        ];
        let g = Genome::initial(InputShape::CIFAR, 10);
        let cpu = trainer::device::open("cpu").unwrap();
        let (net, _) = Network::new(&g, &cpu, None, &Invalidated::none(), 1).unwrap();
        for r in &records {
            s.append(&Event::TrainingStarted {
                at_ms: r.born_at_ms,
                id: r.id,
                parent: r.parent,
                mutations: r.mutations.clone(),
                node: r.node.clone(),
                threads: None,
            })
            .unwrap();
            s.save_model(r.id, &r.genome, net.weights(), &meta())
                .unwrap();
            s.add(r).unwrap();
        }
        s.kill(&mut records[1], 5000).unwrap();
        s.append(&Event::TrainingStarted {
            at_ms: 6000,
            id: 4,
            parent: Some(2),
            mutations: vec![Mutation::AddSkip],
            node: "test-node".into(),
            threads: Some(1),
        })
        .unwrap();
        records
    }

    #[test]
    fn create_add_kill_then_reopen_sees_the_same_population() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let records = populated(&root);
        assert_eq!(records[1].status, Status::Dead);
        assert_eq!(records[1].died_at_ms, Some(5000));
        // The dead individual's weights are gone; its genome, metadata and record stay.
        let dead = root.join("individuals/1");
        assert!(!dead.join(WEIGHTS_FILE).exists());
        assert!(dead.join("genome.json").exists());
        assert!(dead.join("model.json").exists());
        assert!(root.join("individuals/0").join(WEIGHTS_FILE).exists());
        // The first state (dropped at the end of `populated`) released the lock.
        let r = StateDir::open(&root).unwrap();
        assert_eq!(r.records, records);
        assert_eq!(
            r.next_id, 5,
            "the id of the individual in flight is not reused"
        );
        assert_eq!(r.lost, vec![4]);
        assert!(r.orphans.is_empty());
        assert_eq!(r.torn_tail, None);
        assert_eq!(r.weights_deleted, 0);
        assert_eq!(r.events, 1 + 3 + 3 + 1 + 1);
        assert_eq!(r.state.config(), &config());
        r.state.check_compatible(&config()).unwrap();
        // The population rebuilt from the records.
        let p = r.population(20, Strategy::Tournament).unwrap();
        assert_eq!(p.alive_count(), 2);
        assert_eq!(p.trained_count(), 2);
        assert_eq!(p.training_count(), 0);
        assert!(!p.get(1).unwrap().alive);
        assert_eq!(p.best().map(|m| m.id), Some(2));
        assert!(p.get(0).unwrap().born_at < p.get(2).unwrap().born_at);
        // The frozen config is a readable TOML file.
        let frozen = ExperimentConfig::load(&root.join(CONFIG_FILE)).unwrap();
        assert_eq!(frozen, config());
        // A trained model round-trips through the trainer.
        let cpu = trainer::device::open("cpu").unwrap();
        trainer::individual::load(&r.state.individual_dir(0), &cpu).unwrap();
    }

    #[test]
    fn appends_after_reopening_continue_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        populated(&root);
        {
            let mut r = StateDir::open(&root).unwrap();
            let lost = r.lost.clone();
            r.state
                .append(&Event::Resumed {
                    at_ms: now_ms(),
                    lost,
                })
                .unwrap();
            let mut child = record(5, 0.6, Some(2));
            r.state.add(&child).unwrap();
            r.state.kill(&mut child, 7000).unwrap();
            assert!(r.state.kill(&mut child, 7001).is_err(), "already dead");
        }
        let r = StateDir::open(&root).unwrap();
        assert_eq!(r.records.len(), 4);
        assert_eq!(r.records[3].status, Status::Dead);
        assert_eq!(r.next_id, 6);
        assert_eq!(r.events, 9 + 3);
    }

    #[test]
    fn create_refuses_existing_or_foreign_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        drop(StateDir::create(&root, &config()).unwrap());
        assert!(matches!(
            StateDir::create(&root, &config()),
            Err(StateError::AlreadyExists { .. })
        ));
        let foreign = dir.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("precious.txt"), "keep").unwrap();
        assert!(matches!(
            StateDir::create(&foreign, &config()),
            Err(StateError::NotEmpty { .. })
        ));
        assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
        // An interrupted create (no experiment.toml yet) can be redone.
        let half = dir.path().join("half");
        std::fs::create_dir_all(half.join(INDIVIDUALS_DIR)).unwrap();
        std::fs::write(half.join(EVENTS_FILE), "{\"garbage\n").unwrap();
        drop(StateDir::create(&half, &config()).unwrap());
        assert_eq!(StateDir::open(&half).unwrap().events, 1);
        // An invalid config is refused before anything is made.
        let mut bad = config();
        bad.evolution.population_size = 1;
        let never = dir.path().join("never");
        assert!(matches!(
            StateDir::create(&never, &bad),
            Err(StateError::Config(_))
        ));
        assert!(!never.exists());
        // Opening a folder that is not a state directory.
        assert!(matches!(
            StateDir::open(&foreign),
            Err(StateError::NotAStateDir { .. })
        ));
        assert!(!foreign.join(LOCK_FILE).exists());
    }

    #[test]
    fn the_lock_refuses_a_second_open_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let first = StateDir::create(&root, &config()).unwrap();
        let err = StateDir::open(&root).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "names the holder: {err}"
        );
        drop(first);
        let second = StateDir::open(&root).unwrap();
        assert!(matches!(
            StateDir::open(&root),
            Err(StateError::Locked { .. })
        ));
        drop(second);
        // A stale LOCK (a dead node's pid, no lock held) is taken over.
        std::fs::write(root.join(LOCK_FILE), "999999999\n").unwrap();
        let r = StateDir::open(&root).unwrap();
        let pid = std::fs::read_to_string(root.join(LOCK_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(r);
    }

    #[test]
    fn a_damaged_record_is_quarantined_and_the_rest_resumes() {
        let garbage = |good: &[u8]| {
            let text = String::from_utf8(good.to_vec()).unwrap();
            vec![
                b"\x00\x01 not json".to_vec(),
                b"{\"id\": 2}".to_vec(),
                text.replacen("\"id\": 2", "\"id\": 3", 1).into_bytes(),
                text.replacen("\"status\": \"alive\"", "\"status\": \"dead\"", 1)
                    .into_bytes(),
                {
                    // An invalid genome.
                    let mut r: Record = serde_json::from_slice(good).unwrap();
                    r.genome.edges[0].to = 99;
                    serde_json::to_vec(&r).unwrap()
                },
            ]
        };
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        populated(&probe);
        let good = std::fs::read(probe.join("individuals/2").join(RECORD_FILE)).unwrap();
        for (n, bytes) in garbage(&good).into_iter().enumerate() {
            let root = dir.path().join(format!("state-{n}"));
            populated(&root);
            // A torn event tail and the weights of a dead individual left by a crash
            // too: both repaired as ever.
            let events = root.join(EVENTS_FILE);
            let mut log = std::fs::read(&events).unwrap();
            log.extend_from_slice(b"{\"event\":\"bir");
            std::fs::write(&events, &log).unwrap();
            let dead_weights = root.join("individuals/1").join(WEIGHTS_FILE);
            std::fs::write(&dead_weights, b"left by a crash").unwrap();
            let bad = root.join("individuals/2").join(RECORD_FILE);
            std::fs::write(&bad, &bytes).unwrap();

            let r = StateDir::open(&root).unwrap();
            assert_eq!(r.quarantined.len(), 1, "case {n}");
            let q = &r.quarantined[0];
            assert_eq!((q.id, q.damage), (2, Damage::Record), "case {n}");
            assert!(q.reason.contains(RECORD_FILE), "case {n}: {}", q.reason);
            assert_eq!(q.path, root.join(QUARANTINE_DIR).join("2"));
            // Moved whole, with the reason beside it; the rest resumes.
            assert!(!root.join("individuals/2").exists());
            assert_eq!(std::fs::read(q.path.join(RECORD_FILE)).unwrap(), bytes);
            let reason = std::fs::read_to_string(q.path.join(REASON_FILE)).unwrap();
            assert!(reason.contains(RECORD_FILE), "{reason}");
            assert_eq!(
                r.records.iter().map(|r| r.id).collect::<Vec<_>>(),
                vec![0, 1]
            );
            assert_eq!(r.next_id, 5);
            assert!(!r.lost.contains(&2));
            assert!(r.torn_tail.is_some());
            assert_eq!(r.weights_deleted, 1);
            let log = std::fs::read_to_string(&events).unwrap();
            assert!(log.contains("\"event\":\"quarantined\""), "{log}");
            drop(r);
            // Opened again, nothing more is found.
            assert!(StateDir::open(&root).unwrap().quarantined.is_empty());
        }
    }

    #[test]
    fn a_live_member_with_a_damaged_model_is_quarantined_and_counts_as_dead() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        populated(&root);
        let weights = root.join("individuals/2").join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() - 7]).unwrap();
        let r = StateDir::open(&root).unwrap();
        assert_eq!(r.quarantined.len(), 1);
        let q = &r.quarantined[0];
        assert_eq!((q.id, q.damage), (2, Damage::Model));
        assert!(q.reason.contains("checksum"), "{}", q.reason);
        // The record stays, dead, for lineage; the damaged model is aside.
        let two = r.records.iter().find(|r| r.id == 2).unwrap();
        assert_eq!(two.status, Status::Dead);
        assert!(two.died_at_ms.is_some());
        assert!(!weights.exists());
        assert!(q.path.join(WEIGHTS_FILE).exists());
        let pop = r.population(10, Strategy::Tournament).unwrap();
        assert!(!pop.get(2).unwrap().alive);
        assert_eq!(pop.alive_count(), 1);
        drop(r);
        let again = StateDir::open(&root).unwrap();
        assert!(again.quarantined.is_empty());
        let reread = again.records.iter().find(|r| r.id == 2).unwrap();
        assert_eq!(reread.status, Status::Dead);
    }

    #[test]
    fn a_torn_last_event_line_is_tolerated_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        populated(&root);
        let events = root.join(EVENTS_FILE);
        let whole = std::fs::read(&events).unwrap();
        let lines = whole.iter().filter(|b| **b == b'\n').count();
        for torn in [
            &b"{\"event\":\"death\",\"at_ms\":1,\"i"[..],
            &b"\x00\x00\x00\x00"[..],
            &b"{\"event\":\"death\",\"at_ms\":1,\"id\":}\n"[..],
        ] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(torn);
            std::fs::write(&events, &bytes).unwrap();
            let mut r = StateDir::open(&root).unwrap();
            let tail = r.torn_tail.clone().unwrap();
            assert_eq!(tail.line, lines + 1);
            assert_eq!(r.events, lines);
            assert_eq!(
                std::fs::read(&events).unwrap(),
                whole,
                "cut back to whole lines"
            );
            // The next append starts a clean line.
            r.state.append(&Event::Death { at_ms: 9, id: 0 }).unwrap();
            drop(r);
            let r = StateDir::open(&root).unwrap();
            assert_eq!((r.events, r.torn_tail.clone()), (lines + 1, None));
            drop(r);
            std::fs::write(&events, &whole).unwrap();
        }
        // A whole last event missing only its newline is kept, and the newline added.
        let mut bytes = whole.clone();
        bytes.extend_from_slice(b"{\"event\":\"death\",\"at_ms\":1,\"id\":0}");
        std::fs::write(&events, &bytes).unwrap();
        let r = StateDir::open(&root).unwrap();
        assert_eq!((r.events, r.torn_tail.clone()), (lines + 1, None));
        bytes.push(b'\n');
        assert_eq!(std::fs::read(&events).unwrap(), bytes);
    }

    #[test]
    fn a_garbled_event_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        populated(&root);
        let events = root.join(EVENTS_FILE);
        let text = std::fs::read_to_string(&events).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{\"event\":\"birth\", garbled";
        let bad = lines.join("\n") + "\n";
        std::fs::write(&events, &bad).unwrap();
        let err = StateDir::open(&root).unwrap_err();
        assert!(
            matches!(err, StateError::CorruptEvents { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("events.jsonl, line 3"), "{err}");
        assert_eq!(std::fs::read_to_string(&events).unwrap(), bad, "untouched");
    }

    #[test]
    fn a_config_with_other_fitness_settings_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let s = StateDir::create(&root, &config()).unwrap();
        let mut other = config();
        other.node.workers = crate::config::Workers::Count(2);
        s.check_compatible(&other).unwrap();
        other.training.steps += 1;
        other.data.split_seed = 9;
        let err = s.check_compatible(&other).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Incompatible { .. }), "{msg}");
        assert!(msg.contains("steps") && msg.contains("split_seed"), "{msg}");
        // A frozen config edited by hand into other fitness settings is refused.
        drop(s);
        let text = std::fs::read_to_string(root.join(CONFIG_FILE)).unwrap();
        let edited = text.replacen("steps = 400", "steps = 500", 1);
        assert_ne!(edited, text);
        std::fs::write(root.join(CONFIG_FILE), edited).unwrap();
        let err = StateDir::open(&root).unwrap_err();
        assert!(matches!(err, StateError::Incompatible { .. }), "{err}");
        assert!(err.to_string().contains("steps: 400 vs 500"), "{err}");
        // A frozen config edited by hand into nonsense is a clear error.
        std::fs::write(root.join(CONFIG_FILE), "[experiment]\nname = 3\n").unwrap();
        let err = StateDir::open(&root).unwrap_err();
        assert!(matches!(err, StateError::Config(_)), "{err}");
        assert!(err.to_string().contains(CONFIG_FILE), "{err}");
    }

    #[test]
    fn orphans_are_reported_and_can_be_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        populated(&root);
        // A model saved for individual 4, whose record was never written.
        std::fs::create_dir_all(root.join("individuals/4")).unwrap();
        std::fs::write(root.join("individuals/4/genome.json"), "{}").unwrap();
        std::fs::create_dir_all(root.join("individuals/not-an-id")).unwrap();
        let r = StateDir::open(&root).unwrap();
        assert_eq!(r.orphans, vec![4]);
        assert_eq!(r.next_id, 5);
        r.state.discard(4).unwrap();
        assert!(!root.join("individuals/4").exists());
        assert!(matches!(
            r.state.discard(0),
            Err(StateError::Conflict { .. })
        ));
        assert!(root.join("individuals/0").join(RECORD_FILE).exists());
    }

    #[test]
    fn events_round_trip_as_tagged_json_lines() {
        let e = Event::TrainingFinished {
            at_ms: 5,
            id: 3,
            fitness: Some(0.25),
            flops: 99,
            seconds: 1.5,
            phases: Some(PhaseSeconds {
                build: 0.1,
                train: 1.2,
                validate: 0.15,
                save: 0.05,
            }),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(
            line.starts_with("{\"event\":\"training_finished\""),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        assert_eq!((e.id(), e.at_ms()), (Some(3), 5));
        let c = Event::Created {
            at_ms: 1,
            fingerprint: "x".into(),
            settings: config().fitness_settings(),
        };
        let line = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), c);
        assert_eq!(c.id(), None);
    }

    #[test]
    fn wall_time_sums_the_sessions_of_the_log() {
        let death = |at_ms| Event::Death { at_ms, id: 0 };
        let created = Event::Created {
            at_ms: 1_000,
            fingerprint: config().fitness_fingerprint(),
            settings: config().fitness_settings(),
        };
        let resumed = |at_ms| Event::Resumed {
            at_ms,
            lost: vec![],
        };
        assert_eq!(wall_ms(&[]), 0);
        assert_eq!(wall_ms(std::slice::from_ref(&created)), 0);
        let log = vec![
            created,
            death(1_500),
            death(3_000),
            // Hours of the node being down do not count.
            resumed(100_000),
            death(100_250),
            Event::Stopped {
                at_ms: 100_400,
                reason: "test".into(),
            },
            resumed(200_000),
        ];
        assert_eq!(wall_ms(&log), 2_000 + 400);
    }

    #[test]
    fn node_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::create(dir.path(), &config()).unwrap();
        let key = s.node_key(|| vec![1, 2, 3]).unwrap();
        assert_eq!(key, vec![1, 2, 3]);
        assert_eq!(s.node_key(|| vec![9]).unwrap(), key);
        drop(s);
        let resumed = StateDir::open(dir.path()).unwrap();
        assert_eq!(resumed.state.node_key(|| vec![9]).unwrap(), key);
    }

    #[test]
    fn snapshot_reads_without_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let records = populated(dir.path());
        // A node holds the directory; a snapshot reads it anyway.
        let _held = StateDir::open(dir.path()).unwrap();
        let snap = snapshot(dir.path()).unwrap();
        assert_eq!(snap.records.len(), records.len());
        assert!(snapshot(&dir.path().join("nowhere")).is_err());
    }
}
