//! The fitness identity: the settings that decide what a fitness means
//! ([`FitnessSettings`]), and their fingerprint, so that individuals scored under other
//! settings are never compared with ours.

use super::*;
use crate::budget::Budget;
use serde::{Deserialize, Serialize};
use trainer::batch::AugmentConfig;
use trainer::Schedule;

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
    /// `training.budget_min_factor` (absent when 1, so that earlier fingerprints stay as
    /// they were).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub budget_min_factor: f64,
    /// `training.gradient_clip` (absent when off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gradient_clip: f64,
    /// `training.warmup` (absent when off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup: f64,
    /// `training.collapse_retry` (absent when off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub collapse_retry: f64,
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

    /// The settings that differ, as `name: ours vs theirs`, in field order (ours, then
    /// any only theirs have; one left out on a side reads `null` there).
    pub fn differences(&self, other: &FitnessSettings) -> Vec<String> {
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
            (serde_json::to_value(self), serde_json::to_value(other))
        else {
            return Vec::new();
        };
        // Every key either side has: a setting left out where it is off (0, false) is
        // in only one of them.
        let null = serde_json::Value::Null;
        let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
        let mut out = Vec::new();
        for key in keys {
            let (va, vb) = (a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null));
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

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn one() -> f64 {
    1.0
}

/// FNV-1a, 64 bits: tiny, and stable across Rust versions (unlike `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl ExperimentConfig {
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
            budget_min_factor: match self.training.budget {
                Budget::Cost => self.training.budget_min_factor,
                _ => 1.0,
            },
            augmentation_gene: self.evolution.augmentation_gene,
            gradient_clip: self.training.gradient_clip,
            warmup: self.training.warmup,
            collapse_retry: self.training.collapse_retry,
            data_digest: None,
        }
    }

    /// A stable hash (16 hex digits) of [`Self::fitness_settings`]: equal for two
    /// configurations exactly when their individuals' fitnesses can be compared.
    pub fn fitness_fingerprint(&self) -> String {
        self.fitness_settings().fingerprint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

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
            ("training.child_time_cap", "0.05"),
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
            ("training.warmup", "0.05"),
            ("training.collapse_retry", "0.25"),
            ("training.budget_min_factor", "0.25"),
        ] {
            let mut c = base.clone();
            c.apply_override(k, v).unwrap();
            assert_ne!(c.fitness_fingerprint(), fp, "{k}");
            let diff = base.fitness_settings().differences(&c.fitness_settings());
            assert_eq!(diff.len(), 1, "{k}: {diff:?}");
        }
        // The cost budget's floor means nothing to the other budgets.
        let mut fixed = base.clone();
        fixed
            .apply_override("training.budget", "\"fixed\"")
            .unwrap();
        let mut floored = fixed.clone();
        floored
            .apply_override("training.budget_min_factor", "0.25")
            .unwrap();
        assert_eq!(floored.fitness_fingerprint(), fixed.fitness_fingerprint());
        // Known value: the hash function must not change between versions.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
