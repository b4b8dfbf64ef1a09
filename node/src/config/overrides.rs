//! Command-line overrides: `KEY=VALUE` by dotted key, typed as TOML, checked against the
//! schema (an unknown key is an error listing the keys that exist).

use super::*;
use genome::Mutation;

impl ExperimentConfig {
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
                final_training_members: 0,
                final_training_lr_factor: 1.0,
                final_training_lr_probe: vec![1.0],
                final_training_probe_share: 0.05,
                final_training_augment_variant: true,
                final_training_augment_probe_share: 0.0,
                final_training_augment_probe_margin: 0.0,
                final_training_widen: 1,
                final_training_widen_min_epochs: 1.0,
                final_training_widen_epochs_in: trainer::width_probe::EpochsIn::MainTraining,
                final_training_cheapest_within: 0.5,
                final_training_weights: FinalWeights::Fresh,
                final_training_fresh_min_rate: 0.05,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

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
}
