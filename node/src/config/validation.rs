//! Range checks of every key ([`ExperimentConfig::validate`]): an error names the key
//! and says what it accepts.

use super::*;
use genome::Limits;

/// The most a stride-2 insertion may multiply its input's channels by
/// (`evolution.stride_two_width_factor`).
pub const MAX_STRIDE_TWO_WIDTH_FACTOR: u32 = 8;

impl ExperimentConfig {
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
        if !(0.0..1.0).contains(&t.warmup) {
            return invalid(
                "training.warmup",
                format!("{} is not a share in [0, 1)", t.warmup),
            );
        }
        if !(0.0..1.0).contains(&t.collapse_retry) {
            return invalid(
                "training.collapse_retry",
                format!("{} is not a factor in [0, 1) (0: off)", t.collapse_retry),
            );
        }
        if t.budget_max_factor == 0 || t.budget_max_factor > 1000 {
            return invalid(
                "training.budget_max_factor",
                format!("{} is not in 1..=1000", t.budget_max_factor),
            );
        }
        if !(0.0..1.0).contains(&t.child_time_cap) {
            return invalid(
                "training.child_time_cap",
                format!(
                    "{} is not a share of the search's time in [0, 1) (0: off)",
                    t.child_time_cap
                ),
            );
        }
        let floor = t.budget_min_factor;
        if floor.is_nan() || floor <= 0.0 || floor > 1.0 {
            return invalid(
                "training.budget_min_factor",
                format!("{floor} is not a factor in (0, 1]"),
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
        // Only a tournament compares two members; aging ignores the key.
        let t = v.tournament_cheaper_within;
        if !(0.0..1.0).contains(&t) {
            return invalid(
                "evolution.tournament_cheaper_within",
                format!("{t} is not in [0, 1)"),
            );
        }
        if v.min_insert_channels > v.limits.max_channels {
            return invalid(
                "evolution.min_insert_channels",
                format!(
                    "{} is more than evolution.limits.max_channels ({})",
                    v.min_insert_channels, v.limits.max_channels
                ),
            );
        }
        if !(1..=MAX_STRIDE_TWO_WIDTH_FACTOR).contains(&v.stride_two_width_factor) {
            return invalid(
                "evolution.stride_two_width_factor",
                format!(
                    "{} is not in 1..={MAX_STRIDE_TWO_WIDTH_FACTOR}",
                    v.stride_two_width_factor
                ),
            );
        }
        let share = v.stride_two_share;
        if !(0.0..=1.0).contains(&share) {
            return invalid(
                "evolution.stride_two_share",
                format!("{share} is not in [0, 1]"),
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
        let f = s.final_training_lr_factor;
        if !(f > 0.0 && f <= 1.0) {
            return invalid(
                "stop.final_training_lr_factor",
                format!("{f} is not in (0, 1]"),
            );
        }
        let probe = &s.final_training_lr_probe;
        if probe.len() > trainer::rate_probe::MAX_FACTORS {
            return invalid(
                "stop.final_training_lr_probe",
                format!(
                    "{} factors are more than the {} a probe may try",
                    probe.len(),
                    trainer::rate_probe::MAX_FACTORS
                ),
            );
        }
        if let Some(f) = probe.iter().find(|f| !(**f > 0.0 && **f <= 4.0)) {
            return invalid(
                "stop.final_training_lr_probe",
                format!("the factor {f} is not in (0, 4]"),
            );
        }
        let p = s.final_training_probe_share;
        if !(p > 0.0 && p * probe.len().max(1) as f64 <= 0.5) {
            return invalid(
                "stop.final_training_probe_share",
                format!(
                    "{p} is not > 0, or its copies ({} of them) would take more than half of the final training",
                    probe.len()
                ),
            );
        }
        let a = s.final_training_augment_probe_share;
        let rate_share = if probe.len() > 1 {
            p * probe.len() as f64
        } else {
            0.0
        };
        if !(a.is_finite() && a >= 0.0 && rate_share + 2.0 * a <= 0.8) {
            return invalid(
                "stop.final_training_augment_probe_share",
                format!(
                    "{a} is not >= 0, or its two copies and the rate probe's would take more than 80% of the final training"
                ),
            );
        }
        let m = s.final_training_augment_probe_margin;
        if !(m.is_finite() && (0.0..=1.0).contains(&m)) {
            return invalid(
                "stop.final_training_augment_probe_margin",
                format!("{m} is not a share in [0, 1]"),
            );
        }
        let c = s.final_training_cheapest_within;
        if !(c.is_finite() && (0.0..=1.0).contains(&c)) {
            return invalid(
                "stop.final_training_cheapest_within",
                format!("{c} is not a share in [0, 1]"),
            );
        }
        let r = s.final_training_fresh_min_rate;
        let highest = self.evolution.limits.max_learning_rate;
        if !(r.is_finite() && r >= 0.0 && r <= highest) {
            return invalid(
                "stop.final_training_fresh_min_rate",
                format!(
                    "{r} is not a learning rate in [0, {highest}] (evolution.limits.max_learning_rate)"
                ),
            );
        }
        if s.final_training_widen > MAX_FINAL_WIDEN {
            return invalid(
                "stop.final_training_widen",
                format!(
                    "{} is more than {MAX_FINAL_WIDEN} doublings (each multiplies a network's cost by up to 4)",
                    s.final_training_widen
                ),
            );
        }
        let e = s.final_training_widen_min_epochs;
        if !(e.is_finite() && (0.0..=1e6).contains(&e)) {
            return invalid(
                "stop.final_training_widen_min_epochs",
                format!("{e} is not a number of epochs in [0, 1e6]"),
            );
        }
        if s.final_training_members > MAX_WORKERS {
            return invalid(
                "stop.final_training_members",
                format!(
                    "{} is more than the {MAX_WORKERS} workers a node may have",
                    s.final_training_members
                ),
            );
        }
        let n = &self.node;
        if !(n.memory_gib >= 0.0 && n.memory_gib <= 1e6) {
            return invalid(
                "node.memory_gib",
                format!("{} is not a number of GiB in [0, 1e6]", n.memory_gib),
            );
        }
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
                format!(
                    "{:?} is not cpu, cuda (every GPU), cuda:N or a list cuda:0,cuda:1",
                    n.device
                ),
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
    trainer::device::parse_spec(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use genome::Mutation;

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
                "evolution.tournament_cheaper_within",
                "-0.01",
                "evolution.tournament_cheaper_within",
            ),
            (
                "evolution.tournament_cheaper_within",
                "1.0",
                "evolution.tournament_cheaper_within",
            ),
            (
                "evolution.tournament_cheaper_within",
                "nan",
                "evolution.tournament_cheaper_within",
            ),
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
            ("training.warmup", "1.0", "training.warmup"),
            ("training.warmup", "-0.01", "training.warmup"),
            ("training.warmup", "nan", "training.warmup"),
            ("training.collapse_retry", "1.0", "training.collapse_retry"),
            ("training.collapse_retry", "-0.5", "training.collapse_retry"),
            ("training.collapse_retry", "nan", "training.collapse_retry"),
            (
                "training.budget_min_factor",
                "0",
                "training.budget_min_factor",
            ),
            (
                "training.budget_min_factor",
                "1.5",
                "training.budget_min_factor",
            ),
            (
                "training.budget_min_factor",
                "nan",
                "training.budget_min_factor",
            ),
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
            (
                "stop.final_training_members",
                "5000",
                "stop.final_training_members",
            ),
            (
                "evolution.min_insert_channels",
                "4096",
                "evolution.min_insert_channels",
            ),
            (
                "stop.final_training_lr_factor",
                "0",
                "stop.final_training_lr_factor",
            ),
            (
                "evolution.stride_two_width_factor",
                "0",
                "evolution.stride_two_width_factor",
            ),
            (
                "evolution.stride_two_width_factor",
                "9",
                "evolution.stride_two_width_factor",
            ),
            ("training.child_time_cap", "-0.1", "training.child_time_cap"),
            ("training.child_time_cap", "1.0", "training.child_time_cap"),
            ("training.child_time_cap", "nan", "training.child_time_cap"),
            (
                "evolution.stride_two_share",
                "-0.1",
                "evolution.stride_two_share",
            ),
            (
                "evolution.stride_two_share",
                "1.5",
                "evolution.stride_two_share",
            ),
            (
                "evolution.stride_two_share",
                "nan",
                "evolution.stride_two_share",
            ),
            (
                "stop.final_training_lr_factor",
                "1.5",
                "stop.final_training_lr_factor",
            ),
            (
                "stop.final_training_lr_probe",
                "[1.0, 0.0]",
                "stop.final_training_lr_probe",
            ),
            (
                "stop.final_training_lr_probe",
                "[1, 1, 1, 1, 1, 1, 1, 1, 1]",
                "stop.final_training_lr_probe",
            ),
            (
                "stop.final_training_probe_share",
                "0",
                "stop.final_training_probe_share",
            ),
            (
                "stop.final_training_probe_share",
                "0.3",
                "stop.final_training_probe_share",
            ),
            (
                "stop.final_training_augment_probe_share",
                "-0.1",
                "stop.final_training_augment_probe_share",
            ),
            (
                "stop.final_training_augment_probe_share",
                "0.45",
                "stop.final_training_augment_probe_share",
            ),
            (
                "stop.final_training_augment_probe_margin",
                "1.5",
                "stop.final_training_augment_probe_margin",
            ),
            (
                "stop.final_training_cheapest_within",
                "-0.01",
                "stop.final_training_cheapest_within",
            ),
            (
                "stop.final_training_fresh_min_rate",
                "-0.05",
                "stop.final_training_fresh_min_rate",
            ),
            (
                "stop.final_training_fresh_min_rate",
                "nan",
                "stop.final_training_fresh_min_rate",
            ),
            ("node.workers", "0", "node.workers"),
            ("node.memory_gib", "-1", "node.memory_gib"),
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
        for d in ["cpu", "cuda", "cuda:1", "cuda:0,cuda:1"] {
            c.node.device = d.into();
            c.validate().unwrap();
        }
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
