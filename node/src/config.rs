//! The experiment configuration: a TOML file (see `configs/` at the workspace root),
//! every key documented there and here, with command-line overrides by dotted key.
//!
//! Sections: `[experiment]` (name, seed), `[data]` (the data set and its validation
//! hold-out), `[training]` (how each individual is trained), `[evolution]` (population,
//! selection, mutations, genome limits), `[stop]` (when the run ends) and `[node]` (this
//! machine: workers, device, HTTP address, state directory).
//!
//! Every table denies unknown keys, so a misspelt key is an error that names it (with
//! its line, from the TOML parser). [`ExperimentConfig::load`] reads and parses a file,
//! [`ExperimentConfig::apply_override`] sets one key from `KEY=VALUE`, and
//! [`ExperimentConfig::validate`] checks ranges; [`ExperimentConfig::load_with_overrides`]
//! does all three. [`ExperimentConfig::fitness_fingerprint`] identifies the settings that
//! decide what a fitness means, so that individuals scored under other settings (another
//! run's state, a peer) are never compared with ours.

use crate::budget::Budget;
use crate::population::Strategy;
use genome::{Limits, Mutation, MutationStyle, MutationWeights};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;
use trainer::batch::AugmentConfig;
use trainer::data::LabelMode;
use trainer::optim::SgdConfig;
use trainer::{Schedule, TrainConfig};

/// Why a configuration could not be read, changed or accepted.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (an unknown key, a wrong
    /// type, a missing key). The message names the key and its line.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An override names no key of the configuration.
    #[error("unknown config key `{key}`{hint}")]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// The keys of the same table, when it exists (for the message).
        hint: String,
    },
    /// An override's value does not fit its key.
    #[error("config key `{key}` cannot be {value:?}: {reason}")]
    BadValue {
        /// The dotted key.
        key: String,
        /// The value given.
        value: String,
        /// Why it does not fit.
        reason: String,
    },
    /// An override is not of the form `KEY=VALUE`.
    #[error("override {0:?} is not of the form KEY=VALUE (e.g. training.steps=100)")]
    NotAnOverride(String),
    /// A value is out of its range, or two values contradict each other.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration could not be written as TOML (should not happen).
    #[error("cannot encode the config as TOML: {0}")]
    Encode(String),
}

/// The whole configuration of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// `[experiment]`: its name and seed.
    pub experiment: ExperimentSection,
    /// `[data]`: the data set and its validation hold-out.
    pub data: DataSection,
    /// `[training]`: how each individual is trained.
    #[serde(default)]
    pub training: TrainingSection,
    /// `[evolution]`: population, selection, mutations, genome limits.
    #[serde(default)]
    pub evolution: EvolutionSection,
    /// `[stop]`: when the run ends (any condition met ends it).
    #[serde(default)]
    pub stop: StopSection,
    /// `[node]`: this machine's part.
    #[serde(default)]
    pub node: NodeSection,
    /// `[migration]`: how islands exchange trained individuals.
    #[serde(default)]
    pub migration: MigrationSection,
}

/// Which individuals emigrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emigrants {
    /// The best by validation accuracy.
    #[default]
    Best,
    /// Drawn at random.
    Random,
    /// Each the better of two drawn at random.
    Tournament,
}

/// Where emigrants go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// A connected peer of the experiment drawn at random.
    #[default]
    Random,
    /// The next peer after this node in the order of peer ids (a ring).
    Ring,
}

/// How a node admits a migrant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Admission {
    /// When full, replace the worst member if the migrant is better; else grow.
    #[default]
    ReplaceWorst,
    /// When full, replace a member drawn at random; else grow.
    ReplaceRandom,
    /// Admit only while the population is under its target size.
    Grow,
}

/// `[migration]`: the island model (as pygmo's archipelago): every `every` reproductions,
/// or after a reproduction with chance `probability`, a node sends `emigrants` trained
/// individuals, with their weights, to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationSection {
    /// Reproductions between two migrations (0: not on a schedule).
    pub every: u64,
    /// The chance of a migration after each reproduction (0: not by chance); only one of
    /// `every` and `probability` may be set.
    pub probability: f64,
    /// Individuals sent each time.
    pub emigrants: usize,
    /// Which individuals emigrate.
    pub choose: Emigrants,
    /// Where they go.
    pub destination: Destination,
    /// How a receiving node admits them.
    pub admit: Admission,
}

impl Default for MigrationSection {
    fn default() -> Self {
        MigrationSection {
            every: 20,
            probability: 0.0,
            emigrants: 1,
            choose: Emigrants::Best,
            destination: Destination::Random,
            admit: Admission::ReplaceWorst,
        }
    }
}

/// `[experiment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// A name for people and file names (the default state directory is
    /// `state/<name>`).
    pub name: String,
    /// The seed every random choice of the run derives from (initial weights, selection,
    /// mutations, batch order, augmentation).
    #[serde(default)]
    pub seed: u64,
}

/// Which CIFAR-100 labels to learn (ignored by other data sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Labels {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

impl Labels {
    /// The trainer's equivalent.
    pub fn label_mode(self) -> LabelMode {
        match self {
            Labels::Fine => LabelMode::Fine,
            Labels::Coarse => LabelMode::Coarse,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A name for the data set that every node of the experiment shares (e.g.
    /// `cifar10`): part of the fitness fingerprint, since accuracies on different data
    /// cannot be compared. Use another name for another copy of the data (e.g. the JPEG
    /// re-encoding of CIFAR-10).
    pub name: String,
    /// Where the data set is: `cifar-10-batches-bin/`, `cifar-100-binary/`, an image
    /// folder (`train/CLASS/*`, `test/CLASS/*`) or IDX files. A relative path is taken
    /// from the working directory.
    pub path: PathBuf,
    /// CIFAR-100 labels: `fine` (100 classes) or `coarse` (20); ignored by others.
    #[serde(default)]
    pub labels: Labels,
    /// Training images held out for validation; validation accuracy is the fitness
    /// (5,000 in the paper).
    #[serde(default = "default_validation_images")]
    pub validation_images: usize,
    /// Seed of the choice of the validation images.
    #[serde(default)]
    pub split_seed: u64,
}

fn default_validation_images() -> usize {
    5000
}

/// `[training]`: how every individual is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSection {
    /// SGD steps per individual (25,600 in the paper).
    pub steps: u64,
    /// Images per step (50 in the paper).
    pub batch: usize,
    /// SGD momentum (0.9 in the paper).
    pub momentum: f64,
    /// L2 weight decay (1e-4; the paper's value is unconfirmed).
    pub weight_decay: f64,
    /// Report training progress every this many steps (0: never).
    pub log_every: u64,
    /// `[training.augment]`: random crops and flips of the training images.
    pub augment: AugmentConfig,
    /// How the learning rate moves over an individual's steps: `constant` (the paper)
    /// or `cosine` (beyond the paper: down to zero along a half cosine).
    pub schedule: Schedule,
    /// `fixed` (the paper: `steps` for every individual) or `lineage` (beyond the
    /// paper: the n-th child of a parent trains n times `steps`, at most
    /// `budget_max_factor` times).
    pub budget: Budget,
    /// The cap of the `lineage` budget, in multiples of `steps`.
    pub budget_max_factor: u32,
    /// Beyond the paper: adaptive gradient clipping, the gradient of each kernel and
    /// weight matrix scaled to at most this times the tensor's norm (0: off).
    pub gradient_clip: f64,
}

impl Default for TrainingSection {
    fn default() -> Self {
        TrainingSection {
            steps: 25_600,
            batch: 50,
            momentum: 0.9,
            weight_decay: 1e-4,
            log_every: 1000,
            augment: AugmentConfig::default(),
            schedule: Schedule::Constant,
            budget: Budget::Fixed,
            budget_max_factor: 4,
            gradient_clip: 0.0,
        }
    }
}

impl TrainingSection {
    /// The trainer's settings for one individual, trained with this seed.
    pub fn train_config(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch: self.batch,
            sgd: SgdConfig {
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                clip: self.gradient_clip,
            },
            augment: self.augment,
            log_every: self.log_every,
            seed,
            schedule: self.schedule,
            max_seconds: None,
        }
    }
}

/// The selection rule's name in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// The paper's: pick two at random; when the population is full the worse dies,
    /// otherwise the better reproduces.
    #[default]
    Tournament,
    /// Regularized evolution: sample `sample_size`, the best reproduces; when full the
    /// oldest dies.
    Aging,
}

/// `[evolution]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvolutionSection {
    /// Live individuals (those in training included) when the population is full
    /// (1,000 in the paper).
    pub population_size: usize,
    /// Trivial individuals (linear classifiers on pixels, learning rate 0.1) made at the
    /// start; each is trained before it competes. At least 2, at most the population
    /// size (the paper starts with the whole population).
    pub initial_population: usize,
    /// `tournament` (the paper's) or `aging` (regularized evolution).
    pub selection: Selection,
    /// How many individuals `aging` samples to choose a parent (`S`); `tournament`
    /// always takes two.
    pub sample_size: usize,
    /// Mutations applied to make each child (1 in the paper).
    pub mutations_per_reproduction: usize,
    /// How mutations treat what the parent learned: `paper` (new tensors start fresh)
    /// or `preserve-function` (beyond the paper: network morphisms, so that a child
    /// starts with its parent's function wherever a mutation has such a form).
    pub mutation_style: MutationStyle,
    /// Beyond the paper: whether the initial individuals carry an augmentation gene
    /// (crop and flip, starting as `[training.augment]` says), which
    /// ALTER-AUGMENTATION mutates and children inherit, so that evolution decides the
    /// augmentation by validation accuracy.
    pub augmentation_gene: bool,
    /// `[evolution.mutation_weights]`: how often each mutation is drawn, by its name
    /// (e.g. `RESET-WEIGHTS = 0`); a mutation not named weighs 1, so an empty table is
    /// the paper's uniform draw. Beyond the paper when set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mutation_weights: BTreeMap<String, f64>,
    /// `[evolution.limits]`: caps on a genome's size and cost; a mutation that would
    /// leave them is drawn again.
    pub limits: Limits,
}

impl Default for EvolutionSection {
    fn default() -> Self {
        EvolutionSection {
            population_size: 1000,
            initial_population: 1000,
            selection: Selection::Tournament,
            sample_size: 25,
            mutations_per_reproduction: 1,
            mutation_style: MutationStyle::Paper,
            augmentation_gene: false,
            mutation_weights: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

impl EvolutionSection {
    /// `mutation_weights` as the genome crate draws them; the error names the key.
    pub fn weights(&self) -> Result<MutationWeights, ConfigError> {
        let mut pairs = Vec::with_capacity(self.mutation_weights.len());
        for (name, &weight) in &self.mutation_weights {
            let mutation: Mutation = name.parse().map_err(|_| ConfigError::Invalid {
                key: format!("evolution.mutation_weights.{name}"),
                reason: format!(
                    "{name:?} is not a mutation (they are: {})",
                    Mutation::WITH_AUGMENTATION.map(Mutation::name).join(", ")
                ),
            })?;
            pairs.push((mutation, weight));
        }
        MutationWeights::from_pairs(pairs).map_err(|e| ConfigError::Invalid {
            key: "evolution.mutation_weights".into(),
            reason: e.to_string(),
        })
    }

    /// The selection rule for [`crate::population::Population`].
    pub fn strategy(&self) -> Strategy {
        match self.selection {
            Selection::Tournament => Strategy::Tournament,
            Selection::Aging => Strategy::Aging {
                sample_size: self.sample_size,
            },
        }
    }
}

/// `[stop]`: the run stops when any condition set is met; none set runs until stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StopSection {
    /// Stop after this many individuals have been trained (the initial ones included).
    pub max_individuals: Option<u64>,
    /// Stop once the FLOPs spent training and validating reach this (about 9e19 for the
    /// paper's CIFAR-10 runs).
    pub max_total_flops: Option<f64>,
    /// Stop after this many minutes of wall time (summed over resumed runs).
    pub max_wall_minutes: Option<f64>,
    /// Stop once an individual reaches this validation accuracy (0 to 1).
    pub target_accuracy: Option<f64>,
    /// Beyond the paper: the share of `max_wall_minutes`, at the end of the run, spent
    /// training the best members further instead of breeding ([`crate::finale`]); 0
    /// (the paper): none.
    pub final_training_share: f64,
}

/// `[node]`: this machine's share of the work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Individuals trained at once: a number, or `auto` to choose from the machine (see
    /// [`Workers::resolve`]).
    pub workers: Workers,
    /// Threads of the CPU training pool (0: one per core). Nodes that share a machine
    /// should share its cores out between them.
    pub threads: usize,
    /// Where to train: `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Address of the HTTP status server.
    pub http: SocketAddr,
    /// The state directory (default `state/<experiment.name>`).
    pub state_dir: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            workers: Workers::Auto,
            threads: 0,
            device: "cpu".into(),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            state_dir: None,
        }
    }
}

/// Most training workers a node may run.
pub const MAX_WORKERS: usize = 4096;

/// `node.workers`: how many individuals a node trains at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// Chosen from the machine when the node starts.
    Auto,
    /// This many.
    Count(usize),
}

impl Workers {
    /// The number of workers for training on `device` (`cpu`, `cuda` or `cuda:N`) with
    /// `threads` CPU threads, given the GPU's memory in GiB when known, for a population
    /// of `population` individuals.
    ///
    /// `auto` on a CPU: one worker per thread of the training pool. Each training then
    /// runs on a thread of its own, which gets more steps through the cores than one
    /// training spread over all of them (`evo bench train --concurrent 2` against
    /// `--concurrent 1` on 2 threads: 2.7x the steps/s for the linear reference net, 1.5x
    /// small, 1.2x mid, 1.0x large). On a GPU: one worker per 10 GiB of its memory (small
    /// nets leave a big GPU mostly idle, and several trainings at once fill it), at most 8
    /// and at most one per CPU thread; 2 when the memory is unknown. Either way at most a
    /// quarter of the population (the paper: 250 workers for 1,000), so that most of it
    /// is trained and can compete, and at least 1.
    pub fn resolve(
        self,
        device: &str,
        threads: usize,
        gpu_memory_gib: Option<f64>,
        population: usize,
    ) -> usize {
        let threads = threads.max(1);
        let by_machine = if device == "cpu" {
            threads
        } else {
            let by_memory = gpu_memory_gib.map_or(2, |g| (g / 10.0).floor() as usize);
            by_memory.clamp(1, 8).min(threads)
        };
        match self {
            Workers::Count(n) => n,
            Workers::Auto => by_machine.min(population / 4).max(1),
        }
    }
}

impl Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => s.serialize_str("auto"),
            Workers::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of workers or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Workers, E> {
                usize::try_from(n)
                    .map(Workers::Count)
                    .map_err(|_| E::custom(format!("{n} workers is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Workers, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n} is not a number of workers")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Workers, E> {
                if v == "auto" {
                    Ok(Workers::Auto)
                } else {
                    Err(E::custom(format!(
                        "{v:?} is not a number of workers or \"auto\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The settings that decide what a fitness means: two runs whose settings differ score
/// the same genome differently, so their individuals must not compete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitnessSettings {
    /// `data.name`.
    pub data: String,
    /// `data.labels`.
    pub labels: Labels,
    /// `data.validation_images`.
    pub validation_images: usize,
    /// `data.split_seed`.
    pub split_seed: u64,
    /// `training.steps`.
    pub steps: u64,
    /// `training.batch`.
    pub batch: usize,
    /// `training.momentum`.
    pub momentum: f64,
    /// `training.weight_decay`.
    pub weight_decay: f64,
    /// `training.augment`.
    pub augment: AugmentConfig,
    /// `training.schedule` (absent when constant, so the paper's fingerprints stay as
    /// they were).
    #[serde(default, skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    /// `training.budget` and its cap (absent when fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<(Budget, u32)>,
    /// `training.gradient_clip` (absent when off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gradient_clip: f64,
    /// `evolution.augmentation_gene` (absent when off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub augmentation_gene: bool,
    /// A digest of the training images and labels actually loaded
    /// (`trainer::data::Dataset::digest`), so that two copies of a data set that differ
    /// cannot pass for one under the same `data.name`. Set by a running node for its
    /// peers; not part of a config's own fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_digest: Option<String>,
}

impl FitnessSettings {
    /// A canonical text of these settings (compact JSON, fields in declaration order).
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stable 64-bit FNV-1a hash of [`Self::canonical`], as 16 hex digits.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", fnv1a64(self.canonical().as_bytes()))
    }

    /// The settings that differ, as `name: ours vs theirs`, in field order.
    pub fn differences(&self, other: &FitnessSettings) -> Vec<String> {
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
            (serde_json::to_value(self), serde_json::to_value(other))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, va) in &a {
            let vb = b.get(key).unwrap_or(&serde_json::Value::Null);
            if va != vb {
                out.push(format!("{key}: {va} vs {vb}"));
            }
        }
        out
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// FNV-1a, 64 bits: tiny, and stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl ExperimentConfig {
    /// Reads and parses a TOML file (no range checks: see [`Self::validate`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads a file, applies each `KEY=VALUE` override in order, then validates.
    pub fn load_with_overrides(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut config = Self::load(path)?;
        for o in overrides {
            config.apply_override_str(o)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML text (to freeze it in a state directory).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Encode(e.to_string()))
    }

    /// Applies one `KEY=VALUE` override (see [`Self::apply_override`]).
    pub fn apply_override_str(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| ConfigError::NotAnOverride(assignment.to_string()))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::NotAnOverride(assignment.to_string()));
        }
        self.apply_override(key, value.trim())
    }

    /// Sets the key at dotted path `key` (e.g. `training.steps`) to `value`, read as a
    /// TOML value (`100`, `0.5`, `true`, `"text"`) or else as a bare string
    /// (`127.0.0.1:9000`, `data/cifar`). The key must exist in the schema and the value
    /// must have its type; on error the configuration is unchanged. Ranges are not
    /// checked: call [`Self::validate`] after the last override.
    pub fn apply_override(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let path: Vec<&str> = key.split('.').collect();
        check_known_key(&path, key)?;
        let current =
            toml::Table::try_from(&*self).map_err(|e| ConfigError::Encode(e.to_string()))?;
        let bad = |reason: String| ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        };
        let parsed = parse_toml_value(value);
        let mut candidates = Vec::new();
        if let Some(v) = parsed {
            candidates.push(v);
        }
        candidates.push(toml::Value::String(value.to_string()));
        let mut first_error = None;
        for candidate in candidates {
            let mut table = current.clone();
            set_path(&mut table, &path, candidate).map_err(bad)?;
            match table.try_into::<ExperimentConfig>() {
                Ok(config) => {
                    *self = config;
                    return Ok(());
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| e.message().to_string());
                }
            }
        }
        Err(bad(first_error.unwrap_or_default()))
    }

    /// Checks ranges and consistency; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        let e = &self.experiment;
        if e.name.trim().is_empty() {
            return invalid("experiment.name", "must not be empty".into());
        }
        if e.name.contains(['/', '\\']) || e.name.chars().any(char::is_control) {
            return invalid(
                "experiment.name",
                format!("{:?} must not hold slashes or control characters", e.name),
            );
        }
        let d = &self.data;
        if d.name.trim().is_empty() {
            return invalid("data.name", "must not be empty".into());
        }
        if d.path.as_os_str().is_empty() {
            return invalid("data.path", "must not be empty".into());
        }
        if d.validation_images == 0 {
            return invalid(
                "data.validation_images",
                "must be at least 1 (the fitness is validation accuracy)".into(),
            );
        }
        let t = &self.training;
        if t.steps == 0 {
            return invalid("training.steps", "must be at least 1".into());
        }
        if !(t.gradient_clip.is_finite() && t.gradient_clip >= 0.0) {
            return invalid(
                "training.gradient_clip",
                format!("{} is not a finite number >= 0", t.gradient_clip),
            );
        }
        if t.budget_max_factor == 0 || t.budget_max_factor > 1000 {
            return invalid(
                "training.budget_max_factor",
                format!("{} is not in 1..=1000", t.budget_max_factor),
            );
        }
        if t.batch == 0 || t.batch > 65_536 {
            return invalid("training.batch", format!("{} is not in 1..=65536", t.batch));
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return invalid(
                "training.momentum",
                format!("{} is not in [0, 1)", t.momentum),
            );
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return invalid(
                "training.weight_decay",
                format!("{} is not a finite number >= 0", t.weight_decay),
            );
        }
        if let trainer::batch::Pad::Pixels(p) = t.augment.pad {
            if p > 64 {
                return invalid(
                    "training.augment.pad",
                    format!("{p} is more than 64 pixels"),
                );
            }
        }
        let v = &self.evolution;
        if v.population_size < 2 {
            return invalid(
                "evolution.population_size",
                format!("{} is less than 2", v.population_size),
            );
        }
        if v.initial_population < 2 || v.initial_population > v.population_size {
            return invalid(
                "evolution.initial_population",
                format!(
                    "{} is not in 2..={} (evolution.population_size)",
                    v.initial_population, v.population_size
                ),
            );
        }
        // Only aging samples; tournament ignores the key.
        if v.sample_size == 0
            || (v.selection == Selection::Aging && v.sample_size > v.population_size)
        {
            return invalid(
                "evolution.sample_size",
                format!(
                    "{} is not in 1..={} (evolution.population_size)",
                    v.sample_size, v.population_size
                ),
            );
        }
        if v.mutations_per_reproduction == 0 || v.mutations_per_reproduction > 100 {
            return invalid(
                "evolution.mutations_per_reproduction",
                format!("{} is not in 1..=100", v.mutations_per_reproduction),
            );
        }
        v.weights()?;
        validate_limits(&v.limits)?;
        let s = &self.stop;
        if s.max_individuals == Some(0) {
            return invalid("stop.max_individuals", "must be at least 1".into());
        }
        for (key, value) in [
            ("stop.max_total_flops", s.max_total_flops),
            ("stop.max_wall_minutes", s.max_wall_minutes),
        ] {
            if let Some(x) = value {
                if !(x > 0.0 && x.is_finite()) {
                    return invalid(key, format!("{x} is not a finite number > 0"));
                }
            }
        }
        if let Some(a) = s.target_accuracy {
            if !(a > 0.0 && a <= 1.0) {
                return invalid("stop.target_accuracy", format!("{a} is not in (0, 1]"));
            }
        }
        let share = s.final_training_share;
        if !(0.0..=0.9).contains(&share) {
            return invalid(
                "stop.final_training_share",
                format!("{share} is not in [0, 0.9]"),
            );
        }
        if share > 0.0 && s.max_wall_minutes.is_none() {
            return invalid(
                "stop.final_training_share",
                "needs stop.max_wall_minutes: the final training is a share of the wall time"
                    .into(),
            );
        }
        let n = &self.node;
        if let Workers::Count(w) = n.workers {
            if w == 0 || w > MAX_WORKERS {
                return invalid(
                    "node.workers",
                    format!("{w} is not auto or in 1..={MAX_WORKERS}"),
                );
            }
        }
        if n.threads > 4096 {
            return invalid("node.threads", format!("{} is not in 0..=4096", n.threads));
        }
        if !is_device_name(&n.device) {
            return invalid(
                "node.device",
                format!("{:?} is not cpu, cuda or cuda:N", n.device),
            );
        }
        if n.state_dir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return invalid("node.state_dir", "must not be empty".into());
        }
        let m = &self.migration;
        if !(0.0..=1.0).contains(&m.probability) {
            return invalid(
                "migration.probability",
                format!("{} is not in 0..=1", m.probability),
            );
        }
        if m.probability > 0.0 && m.every > 0 {
            return invalid(
                "migration.probability",
                format!(
                    "{} is set, and so is migration.every ({}): set one of them to 0",
                    m.probability, m.every
                ),
            );
        }
        if m.emigrants == 0 || m.emigrants > protocol::wire::MAX_MIGRANTS {
            return invalid(
                "migration.emigrants",
                format!(
                    "{} is not in 1..={}",
                    m.emigrants,
                    protocol::wire::MAX_MIGRANTS
                ),
            );
        }
        Ok(())
    }

    /// The state directory: `node.state_dir`, else `state/<experiment.name>`.
    pub fn state_dir(&self) -> PathBuf {
        self.node
            .state_dir
            .clone()
            .unwrap_or_else(|| Path::new("state").join(&self.experiment.name))
    }

    /// The settings that decide what a fitness means.
    pub fn fitness_settings(&self) -> FitnessSettings {
        FitnessSettings {
            data: self.data.name.clone(),
            labels: self.data.labels,
            validation_images: self.data.validation_images,
            split_seed: self.data.split_seed,
            steps: self.training.steps,
            batch: self.training.batch,
            momentum: self.training.momentum,
            weight_decay: self.training.weight_decay,
            augment: self.training.augment,
            schedule: self.training.schedule,
            budget: (!self.training.budget.is_fixed())
                .then_some((self.training.budget, self.training.budget_max_factor)),
            augmentation_gene: self.evolution.augmentation_gene,
            gradient_clip: self.training.gradient_clip,
            data_digest: None,
        }
    }

    /// A stable hash (16 hex digits) of [`Self::fitness_settings`]: equal for two
    /// configurations exactly when their individuals' fitnesses can be compared.
    pub fn fitness_fingerprint(&self) -> String {
        self.fitness_settings().fingerprint()
    }

    /// A configuration with every optional key set: its keys are the schema's.
    fn schema_template() -> ExperimentConfig {
        ExperimentConfig {
            experiment: ExperimentSection {
                name: "x".into(),
                seed: 0,
            },
            data: DataSection {
                name: "x".into(),
                path: "x".into(),
                labels: Labels::Fine,
                validation_images: 1,
                split_seed: 0,
            },
            training: TrainingSection::default(),
            evolution: EvolutionSection {
                mutation_weights: Mutation::WITH_AUGMENTATION
                    .iter()
                    .map(|m| (m.name().to_string(), 1.0))
                    .collect(),
                ..EvolutionSection::default()
            },
            stop: StopSection {
                max_individuals: Some(1),
                max_total_flops: Some(1.0),
                max_wall_minutes: Some(1.0),
                target_accuracy: Some(1.0),
                final_training_share: 0.0,
            },
            node: NodeSection {
                state_dir: Some("x".into()),
                ..NodeSection::default()
            },
            migration: MigrationSection::default(),
        }
    }

    /// Every key of the schema, dotted (`training.augment.pad`), sorted.
    pub fn keys() -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(table) = toml::Table::try_from(Self::schema_template()) {
            collect_keys(&table, "", &mut out);
        }
        out.sort();
        out
    }
}

fn collect_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

/// Errors unless `path` names a leaf of the schema; the error lists the keys of the
/// deepest table that exists.
fn check_known_key(path: &[&str], key: &str) -> Result<(), ConfigError> {
    let template = toml::Table::try_from(ExperimentConfig::schema_template())
        .map_err(|e| ConfigError::Encode(e.to_string()))?;
    let mut table = &template;
    let mut prefix = String::new();
    for (i, part) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        match table.get(*part) {
            Some(toml::Value::Table(t)) if !last => {
                table = t;
                prefix = path[..=i].join(".");
            }
            Some(v) if last && !v.is_table() => return Ok(()),
            _ => break,
        }
    }
    let names: Vec<&str> = table.keys().map(String::as_str).collect();
    let hint = if prefix.is_empty() {
        format!(" (the sections are: {})", names.join(", "))
    } else {
        format!(" (the keys of [{prefix}] are: {})", names.join(", "))
    };
    Err(ConfigError::UnknownKey {
        key: key.to_string(),
        hint,
    })
}

/// Reads `text` as one TOML value, if it is one.
fn parse_toml_value(text: &str) -> Option<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    doc.get("v").cloned()
}

/// Sets `path` in `table`, creating the leaf if it is missing (an unset optional key).
fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<(), String> {
    let Some((leaf, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut t = table;
    for p in parents {
        t = match t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => inner,
            _ => return Err(format!("{p} is not a table")),
        };
    }
    t.insert(leaf.to_string(), value);
    Ok(())
}

fn validate_limits(l: &Limits) -> Result<(), ConfigError> {
    let invalid = |key: &str, reason: String| {
        Err(ConfigError::Invalid {
            key: format!("evolution.limits.{key}"),
            reason,
        })
    };
    let too_small = [
        ("max_vertices", l.max_vertices as u64, 2),
        ("max_edges", l.max_edges as u64, 1),
        ("max_channels", u64::from(l.max_channels), 1),
        ("max_filter", u64::from(l.max_filter), 1),
        ("max_stride", u64::from(l.max_stride), 1),
        ("max_image_side", u64::from(l.max_image_side), 1),
        ("max_input_channels", u64::from(l.max_input_channels), 1),
        ("max_classes", u64::from(l.max_classes), 2),
        ("max_flops", l.max_flops, 1),
        ("max_params", l.max_params, 1),
    ]
    .into_iter()
    .find(|(_, value, min)| value < min);
    if let Some((key, _, min)) = too_small {
        return invalid(key, format!("must be at least {min}"));
    }
    let lr = genome::graph::INITIAL_LEARNING_RATE;
    if !(l.min_learning_rate > 0.0 && l.min_learning_rate.is_finite()) {
        return invalid(
            "min_learning_rate",
            format!("{} is not a finite number > 0", l.min_learning_rate),
        );
    }
    if !(l.max_learning_rate.is_finite() && l.min_learning_rate <= lr && lr <= l.max_learning_rate)
    {
        return invalid(
            "max_learning_rate",
            format!(
                "[{}, {}] must hold the initial learning rate {lr}",
                l.min_learning_rate, l.max_learning_rate
            ),
        );
    }
    Ok(())
}

fn is_device_name(name: &str) -> bool {
    let name = name.trim();
    name.eq_ignore_ascii_case("cpu")
        || name == "cuda"
        || name
            .strip_prefix("cuda:")
            .is_some_and(|n| !n.is_empty() && n.parse::<usize>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn configs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
    }

    const FILES: [&str; 3] = [
        "paper-cifar10.toml",
        "paper-cifar100.toml",
        "quick-cifar10.toml",
    ];

    fn load(name: &str) -> ExperimentConfig {
        let path = configs_dir().join(name);
        let c = ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        c
    }

    fn quick() -> ExperimentConfig {
        load("quick-cifar10.toml")
    }

    #[test]
    fn every_config_file_parses_and_validates() {
        for name in FILES {
            let c = load(name);
            // Round trip through TOML.
            let text = c.to_toml().unwrap();
            assert_eq!(ExperimentConfig::parse(&text, Path::new(name)).unwrap(), c);
        }
    }

    #[test]
    fn paper_configs_have_the_papers_settings() {
        for (name, data, labels) in [
            ("paper-cifar10.toml", "cifar10", Labels::Fine),
            ("paper-cifar100.toml", "cifar100", Labels::Fine),
        ] {
            let c = load(name);
            assert_eq!(c.data.name, data);
            assert_eq!(c.data.labels, labels);
            assert_eq!(c.evolution.population_size, 1000);
            assert_eq!(c.evolution.initial_population, 1000);
            assert_eq!(c.evolution.selection, Selection::Tournament);
            assert_eq!(c.evolution.mutations_per_reproduction, 1);
            assert_eq!(c.training.steps, 25_600);
            assert_eq!(c.training.batch, 50);
            assert_eq!(c.training.momentum, 0.9);
            assert_eq!(c.data.validation_images, 5000);
            assert!(c.training.augment.enabled);
            assert_eq!(c.evolution.limits, Limits::default());
            // What goes beyond the paper is off: its operators, its fixed budget, its
            // constant rate, its crop; and so its fitness fingerprint is what it was.
            assert_eq!(c.evolution.mutation_style, MutationStyle::Paper);
            assert!(c.evolution.weights().unwrap().is_uniform());
            assert_eq!(c.training.schedule, Schedule::Constant);
            assert_eq!(c.training.budget, Budget::Fixed);
            assert_eq!(c.training.gradient_clip, 0.0);
            assert_eq!(c.stop.final_training_share, 0.0);
            assert_eq!(c.training.augment.pad, trainer::batch::Pad::Pixels(4));
            let canonical = c.fitness_settings().canonical();
            assert!(!c.evolution.augmentation_gene);
            assert!(
                !canonical.contains("schedule")
                    && !canonical.contains("budget")
                    && !canonical.contains("augmentation_gene")
                    && !canonical.contains("gradient_clip"),
                "{canonical}"
            );
        }
        let q = quick();
        assert!(q.evolution.population_size <= 50);
        assert!(q.training.steps <= 1000);
    }

    /// Every key of the schema appears in every file, set or commented out, right
    /// after a comment line that documents it; no file mentions a key the schema lacks.
    /// The mutation weights (a table keyed by mutation name) need only their table.
    #[test]
    fn every_key_is_documented_in_every_file() {
        let schema: BTreeSet<String> = ExperimentConfig::keys()
            .into_iter()
            .filter(|k| !k.starts_with("evolution.mutation_weights."))
            .collect();
        assert!(schema.contains("training.augment.pad"));
        assert!(schema.contains("stop.target_accuracy"));
        assert!(schema.contains("evolution.limits.max_flops"));
        for name in FILES {
            let text = std::fs::read_to_string(configs_dir().join(name)).unwrap();
            assert!(
                text.contains("\n[evolution.mutation_weights]\n#"),
                "{name}: no documented [evolution.mutation_weights]"
            );
            let mut section = String::new();
            let mut seen = BTreeSet::new();
            let mut previous = "";
            for line in text.lines() {
                let l = line.trim();
                let bare = l.trim_start_matches('#').trim();
                if l.starts_with('[') {
                    section = l.trim_matches(['[', ']']).to_string();
                } else if let Some((key, _)) = bare.split_once(" = ") {
                    let is_key =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                    if is_key {
                        let full = format!("{section}.{key}");
                        assert!(
                            previous.starts_with('#'),
                            "{name}: {full} has no comment above it"
                        );
                        seen.insert(full);
                    }
                }
                previous = l;
            }
            let missing: Vec<_> = schema.difference(&seen).collect();
            let extra: Vec<_> = seen.difference(&schema).collect();
            assert!(missing.is_empty(), "{name} does not mention {missing:?}");
            assert!(extra.is_empty(), "{name} mentions unknown keys {extra:?}");
        }
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let base = std::fs::read_to_string(configs_dir().join("quick-cifar10.toml")).unwrap();
        for (table, key) in [
            ("[training]", "stepz"),
            ("[evolution.limits]", "max_vertexes"),
            ("[node]", "port"),
        ] {
            let text = base.replacen(table, &format!("{table}\n{key} = 3"), 1);
            let err = ExperimentConfig::parse(&text, Path::new("bad.toml")).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
            assert!(msg.contains(key) && msg.contains("bad.toml"), "{msg}");
            assert!(msg.contains("line"), "{msg}");
        }
        let text = format!("{base}\n[extra]\nx = 1\n");
        let msg = ExperimentConfig::parse(&text, Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("extra"), "{msg}");
    }

    #[test]
    fn a_wrong_type_or_missing_key_is_an_error_naming_it() {
        let base = std::fs::read_to_string(configs_dir().join("quick-cifar10.toml")).unwrap();
        let q = quick();
        let text = base.replacen(
            &format!("steps = {}", q.training.steps),
            "steps = \"many\"",
            1,
        );
        assert_ne!(text, base);
        let msg = ExperimentConfig::parse(&text, Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("steps") && msg.contains("string"), "{msg}");
        let text = base.replacen("selection = \"", "selection = \"x", 1);
        let msg = ExperimentConfig::parse(&text, Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("selection") && msg.contains("tournament"),
            "{msg}"
        );
        let msg = ExperimentConfig::parse("[experiment]\nname = \"a\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("data"), "{msg}");
        let err = ExperimentConfig::load(Path::new("/nonexistent/evo.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/evo.toml"));
    }

    #[test]
    fn omitted_sections_take_the_papers_defaults() {
        let text = "[experiment]\nname = \"a\"\n[data]\nname = \"d\"\npath = \"p\"\n";
        let c = ExperimentConfig::parse(text, Path::new("t.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.training, TrainingSection::default());
        assert_eq!(c.evolution.population_size, 1000);
        assert_eq!(c.data.validation_images, 5000);
        assert_eq!(c.stop, StopSection::default());
        assert_eq!(c.state_dir(), Path::new("state/a"));
        let tc = c.training.train_config(9);
        assert_eq!((tc.steps, tc.batch, tc.seed), (25_600, 50, 9));
        assert_eq!(tc.sgd.weight_decay, 1e-4);
    }

    #[test]
    fn overrides_set_keys_with_their_types() {
        let mut c = quick();
        c.apply_override("training.steps", "100").unwrap();
        assert_eq!(c.training.steps, 100);
        c.apply_override_str("training.momentum = 0.5").unwrap();
        assert_eq!(c.training.momentum, 0.5);
        c.apply_override("training.weight_decay", "0").unwrap();
        assert_eq!(c.training.weight_decay, 0.0);
        c.apply_override("training.augment.enabled", "false")
            .unwrap();
        assert!(!c.training.augment.enabled);
        c.apply_override("evolution.selection", "aging").unwrap();
        assert_eq!(c.evolution.selection, Selection::Aging);
        c.apply_override("evolution.limits.max_vertices", "64")
            .unwrap();
        assert_eq!(c.evolution.limits.max_vertices, 64);
        c.apply_override("node.http", "0.0.0.0:9000").unwrap();
        assert_eq!(c.node.http.port(), 9000);
        c.apply_override("data.path", "../shared/data/cifar10-jpeg")
            .unwrap();
        assert_eq!(c.data.path, Path::new("../shared/data/cifar10-jpeg"));
        // A string that reads as another TOML type is still a string where one is due.
        c.apply_override("experiment.name", "2024").unwrap();
        assert_eq!(c.experiment.name, "2024");
        c.apply_override("data.name", "\"quoted name\"").unwrap();
        assert_eq!(c.data.name, "quoted name");
        // Optional keys, set or not.
        c.apply_override("stop.max_total_flops", "1e15").unwrap();
        assert_eq!(c.stop.max_total_flops, Some(1e15));
        c.apply_override("stop.max_individuals", "7").unwrap();
        assert_eq!(c.stop.max_individuals, Some(7));
        c.apply_override("node.state_dir", "/tmp/x").unwrap();
        assert_eq!(c.state_dir(), Path::new("/tmp/x"));
        c.validate().unwrap();
    }

    #[test]
    fn overrides_reject_unknown_keys_and_bad_values() {
        let mut c = quick();
        let before = c.clone();
        for key in [
            "training.stepz",
            "trainingx.steps",
            "training",
            "training.augment",
            "training.steps.x",
            "evolution.limits.nope",
        ] {
            let err = c.apply_override(key, "1").unwrap_err();
            assert!(
                matches!(err, ConfigError::UnknownKey { .. }),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
        let msg = c
            .apply_override("training.stepz", "1")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("steps"),
            "the hint lists the table's keys: {msg}"
        );
        for (key, value) in [
            ("training.steps", "abc"),
            ("training.steps", "1.5"),
            ("training.steps", "-3"),
            ("training.augment.enabled", "yes"),
            ("evolution.selection", "random"),
            ("node.http", "not an address"),
            ("stop.max_individuals", "many"),
        ] {
            let err = c.apply_override(key, value).unwrap_err();
            assert!(matches!(err, ConfigError::BadValue { .. }), "{key}: {err}");
            assert!(err.to_string().contains(key), "{err}");
        }
        for bad in ["training.steps", "=3", ""] {
            assert!(matches!(
                c.apply_override_str(bad),
                Err(ConfigError::NotAnOverride(_))
            ));
        }
        assert_eq!(c, before, "failed overrides change nothing");
    }

    #[test]
    fn migration_is_on_a_schedule_or_by_chance_not_both() {
        let mut c = quick();
        c.apply_override("migration.every", "0").unwrap();
        c.apply_override("migration.probability", "0.25").unwrap();
        c.validate().unwrap();
        for p in ["-0.1", "1.5", "nan"] {
            c.apply_override("migration.probability", p).unwrap();
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains("migration.probability"), "{p}: {msg}");
        }
        c.apply_override("migration.probability", "0.25").unwrap();
        c.apply_override("migration.every", "10").unwrap();
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("migration.probability") && msg.contains("migration.every"),
            "{msg}"
        );
    }

    #[test]
    fn mutation_weights_are_set_by_name_and_checked() {
        let mut c = quick();
        c.evolution.mutation_weights.clear();
        assert!(c.evolution.weights().unwrap().is_uniform());
        c.apply_override("evolution.mutation_weights.RESET-WEIGHTS", "0")
            .unwrap();
        c.apply_override("evolution.mutation_weights.INSERT-CONVOLUTION", "2.5")
            .unwrap();
        c.validate().unwrap();
        let w = c.evolution.weights().unwrap();
        assert_eq!(w.weight(Mutation::ResetWeights), 0.0);
        assert_eq!(w.weight(Mutation::InsertConvolution), 2.5);
        assert_eq!(w.weight(Mutation::Identity), 1.0);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<ExperimentConfig>(&text).unwrap(), c);

        let err = c
            .apply_override("evolution.mutation_weights.GROW-A-LOT", "2")
            .unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
        c.evolution
            .mutation_weights
            .insert("GROW-A-LOT".into(), 1.0);
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("GROW-A-LOT") && msg.contains("IDENTITY"),
            "{msg}"
        );
        c.evolution.mutation_weights.remove("GROW-A-LOT");
        c.apply_override("evolution.mutation_weights.IDENTITY", "-1")
            .unwrap();
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("evolution.mutation_weights"), "{msg}");
        c.evolution.mutation_weights = Mutation::ALL
            .iter()
            .map(|m| (m.name().to_string(), 0.0))
            .collect();
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("weight 0"), "{msg}");
    }

    #[test]
    fn workers_are_a_number_or_auto() {
        let mut c = quick();
        c.apply_override("node.workers", "auto").unwrap();
        assert_eq!(c.node.workers, Workers::Auto);
        c.validate().unwrap();
        c.apply_override("node.workers", "3").unwrap();
        assert_eq!(c.node.workers, Workers::Count(3));
        assert!(c.apply_override("node.workers", "many").is_err());
        assert!(c.apply_override("node.workers", "-1").is_err());
        assert_eq!(
            c.node.workers,
            Workers::Count(3),
            "a failed override changes nothing"
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<ExperimentConfig>(&text).unwrap(), c);
        c.node.workers = Workers::Auto;
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("workers = \"auto\""), "{text}");
        assert_eq!(toml::from_str::<ExperimentConfig>(&text).unwrap(), c);

        assert_eq!(Workers::Count(5).resolve("cpu", 2, None, 1000), 5);
        assert_eq!(Workers::Count(5).resolve("cpu", 2, None, 4), 5, "as told");
        // A CPU: one per thread, at most a quarter of the population.
        assert_eq!(Workers::Auto.resolve("cpu", 2, None, 1000), 2);
        assert_eq!(Workers::Auto.resolve("cpu", 0, None, 1000), 1);
        assert_eq!(Workers::Auto.resolve("cpu", 16, None, 1000), 16);
        assert_eq!(Workers::Auto.resolve("cpu", 16, None, 20), 5);
        assert_eq!(Workers::Auto.resolve("cpu", 16, None, 3), 1);
        // A GPU: one per 10 GiB, at most 8 and one per thread.
        assert_eq!(Workers::Auto.resolve("cuda:0", 16, Some(80.0), 1000), 8);
        assert_eq!(Workers::Auto.resolve("cuda", 16, Some(24.0), 1000), 2);
        assert_eq!(
            Workers::Auto.resolve("cuda", 4, Some(140.0), 1000),
            4,
            "one per thread"
        );
        assert_eq!(Workers::Auto.resolve("cuda", 16, Some(140.0), 20), 5);
        assert_eq!(Workers::Auto.resolve("cuda", 16, Some(6.0), 1000), 1);
        assert_eq!(Workers::Auto.resolve("cuda", 16, None, 1000), 2);
    }

    #[test]
    fn load_with_overrides_validates_after_overriding() {
        let path = configs_dir().join("quick-cifar10.toml");
        let c = ExperimentConfig::load_with_overrides(
            &path,
            &["training.steps=10".into(), "node.workers=2".into()],
        )
        .unwrap();
        assert_eq!((c.training.steps, c.node.workers), (10, Workers::Count(2)));
        let err =
            ExperimentConfig::load_with_overrides(&path, &["training.steps=0".into()]).unwrap_err();
        assert!(err.to_string().contains("training.steps"), "{err}");
    }

    #[test]
    fn validation_names_the_offending_key() {
        let cases: Vec<(&str, &str, &str)> = vec![
            (
                "evolution.population_size",
                "1",
                "evolution.population_size",
            ),
            (
                "evolution.initial_population",
                "1",
                "evolution.initial_population",
            ),
            (
                "evolution.initial_population",
                "100000",
                "evolution.initial_population",
            ),
            ("evolution.sample_size", "0", "evolution.sample_size"),
            (
                "evolution.mutations_per_reproduction",
                "0",
                "evolution.mutations_per_reproduction",
            ),
            (
                "evolution.limits.max_learning_rate",
                "0.01",
                "evolution.limits.max_learning_rate",
            ),
            (
                "evolution.limits.min_learning_rate",
                "0",
                "evolution.limits.min_learning_rate",
            ),
            (
                "evolution.limits.max_vertices",
                "1",
                "evolution.limits.max_vertices",
            ),
            ("training.batch", "0", "training.batch"),
            ("training.steps", "0", "training.steps"),
            ("training.momentum", "1.0", "training.momentum"),
            ("training.weight_decay", "-1", "training.weight_decay"),
            ("training.augment.pad", "100", "training.augment.pad"),
            ("data.validation_images", "0", "data.validation_images"),
            ("data.name", "\"\"", "data.name"),
            ("experiment.name", "a/b", "experiment.name"),
            ("stop.max_individuals", "0", "stop.max_individuals"),
            ("stop.max_total_flops", "-1.0", "stop.max_total_flops"),
            ("stop.max_wall_minutes", "nan", "stop.max_wall_minutes"),
            ("stop.target_accuracy", "1.5", "stop.target_accuracy"),
            (
                "stop.final_training_share",
                "0.95",
                "stop.final_training_share",
            ),
            (
                "stop.final_training_share",
                "-0.1",
                "stop.final_training_share",
            ),
            ("node.workers", "0", "node.workers"),
            ("node.threads", "5000", "node.threads"),
            ("node.device", "gpu", "node.device"),
        ];
        for (key, value, named) in cases {
            let mut c = quick();
            c.apply_override(key, value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
            let err = c.validate().unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
        let mut c = quick();
        c.stop.max_wall_minutes = None;
        c.stop.final_training_share = 0.2;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("stop.max_wall_minutes"), "{err}");
        let mut c = quick();
        for d in ["cpu", "cuda", "cuda:1"] {
            c.node.device = d.into();
            c.validate().unwrap();
        }
    }

    #[test]
    fn the_fitness_fingerprint_follows_what_decides_fitness() {
        let base = quick();
        let fp = base.fitness_fingerprint();
        assert_eq!(fp.len(), 16);
        assert_eq!(fp, quick().fitness_fingerprint(), "stable");
        // Settings that do not change what a fitness means.
        let mut same = base.clone();
        for (k, v) in [
            ("data.path", "/elsewhere"),
            ("experiment.name", "other"),
            ("experiment.seed", "5"),
            ("node.workers", "3"),
            ("evolution.population_size", "40"),
            ("stop.max_individuals", "9"),
            ("training.log_every", "7"),
        ] {
            same.apply_override(k, v).unwrap();
        }
        assert_eq!(same.fitness_fingerprint(), fp);
        // Settings that do.
        for (k, v) in [
            ("data.name", "cifar10-jpeg"),
            ("data.labels", "coarse"),
            ("data.validation_images", "4999"),
            ("data.split_seed", "1"),
            ("training.steps", "401"),
            ("training.batch", "51"),
            ("training.momentum", "0.8"),
            ("training.weight_decay", "0.0"),
            ("training.augment.flip", "false"),
        ] {
            let mut c = base.clone();
            c.apply_override(k, v).unwrap();
            assert_ne!(c.fitness_fingerprint(), fp, "{k}");
            let diff = base.fitness_settings().differences(&c.fitness_settings());
            assert_eq!(diff.len(), 1, "{k}: {diff:?}");
        }
        // Known value: the hash function must not change between versions.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn strategy_follows_the_selection_key() {
        let mut c = quick();
        c.evolution.selection = Selection::Aging;
        c.evolution.sample_size = 5;
        assert_eq!(c.evolution.strategy(), Strategy::Aging { sample_size: 5 });
        c.evolution.selection = Selection::Tournament;
        assert_eq!(c.evolution.strategy(), Strategy::Tournament);
        assert_eq!(Labels::Coarse.label_mode(), LabelMode::Coarse);
    }

    #[test]
    fn only_aging_needs_a_sample_within_the_population() {
        let mut c = quick();
        c.evolution.selection = Selection::Tournament;
        c.evolution.sample_size = c.evolution.population_size + 1;
        c.validate().unwrap();
        c.evolution.selection = Selection::Aging;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("evolution.sample_size"), "{err}");
    }
}
