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
//!
//! The sections and their keys are in `schema`, dotted-key overrides in `overrides`,
//! range checks in `validation`, the fitness identity in `fitness`.

mod fitness;
mod overrides;
mod schema;
mod validation;

pub use fitness::{fnv1a64, FitnessSettings};
pub use schema::*;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

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

    /// The state directory: `node.state_dir`, else `state/<experiment.name>`.
    pub fn state_dir(&self) -> PathBuf {
        self.node
            .state_dir
            .clone()
            .unwrap_or_else(|| Path::new("state").join(&self.experiment.name))
    }
}

/// What the tests of every part of the config share: the config files of the workspace.
#[cfg(test)]
pub(crate) mod testing {
    use super::ExperimentConfig;
    use std::path::{Path, PathBuf};

    pub fn configs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
    }

    pub const FILES: [&str; 3] = [
        "paper-cifar10.toml",
        "paper-cifar100.toml",
        "quick-cifar10.toml",
    ];

    pub fn load(name: &str) -> ExperimentConfig {
        let path = configs_dir().join(name);
        let c = ExperimentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        c
    }

    pub fn quick() -> ExperimentConfig {
        load("quick-cifar10.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::budget::Budget;
    use crate::population::Strategy;
    use genome::{Limits, MutationStyle};
    use std::collections::BTreeSet;
    use trainer::data::LabelMode;
    use trainer::Schedule;

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
            assert_eq!(c.training.warmup, 0.0);
            assert_eq!(c.training.collapse_retry, 0.0);
            assert_eq!(c.stop.final_training_share, 0.0);
            assert_eq!(c.evolution.min_insert_channels, 0);
            assert!(!c.evolution.nonlinear_insertions);
            assert_eq!(c.evolution.stride_two_width_factor, 1);
            assert_eq!(
                c.evolution.stride_two_pass_through,
                genome::StrideTwoPassThrough::Sample
            );
            assert_eq!(c.evolution.stride_two_share, genome::PAPER_STRIDE_TWO_SHARE);
            assert_eq!(c.evolution.tournament_cheaper_within, 0.0);
            assert_eq!(c.training.child_time_cap, 0.0);
            assert_eq!(c.stop.final_training_lr_factor, 1.0);
            assert!(c.stop.final_training_lr_probe.is_empty());
            assert!(!c.stop.final_training_augment_variant);
            assert_eq!(c.stop.final_training_augment_probe_share, 0.0);
            assert_eq!(c.stop.final_training_widen, 0);
            assert_eq!(c.stop.final_training_fresh_min_rate, 0.0);
            assert_eq!(
                c.evolution.mutation_options(),
                genome::MutationOptions::from(MutationStyle::Paper)
            );
            assert_eq!(c.training.augment.pad, trainer::batch::Pad::Pixels(4));
            let canonical = c.fitness_settings().canonical();
            assert!(!c.evolution.augmentation_gene);
            assert!(
                !canonical.contains("schedule")
                    && !canonical.contains("budget")
                    && !canonical.contains("augmentation_gene")
                    && !canonical.contains("gradient_clip")
                    && !canonical.contains("warmup")
                    && !canonical.contains("collapse_retry"),
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
    fn strategy_follows_the_selection_key() {
        let mut c = quick();
        c.evolution.selection = Selection::Aging;
        c.evolution.sample_size = 5;
        assert_eq!(c.evolution.strategy(), Strategy::Aging { sample_size: 5 });
        c.evolution.selection = Selection::Tournament;
        assert_eq!(c.evolution.strategy(), Strategy::Tournament);
        assert_eq!(Labels::Coarse.label_mode(), LabelMode::Coarse);
    }
}
