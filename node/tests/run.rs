//! End-to-end tests of `evo run`, `status`, `export` and `evaluate`, run as a user runs
//! them, on a small CIFAR-10 binary release written by the test.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    evo, get, json_line, ok, quick_config, sha256_hex, tiny_run_args, wait_for, write_cifar10, Evo,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The overrides that give each mutation of `keep` a weight of 1 and every other 0,
/// whatever weights the config sets.
fn only_mutations(keep: &[genome::Mutation]) -> Vec<String> {
    genome::Mutation::WITH_AUGMENTATION
        .iter()
        .map(|m| {
            let weight = if keep.contains(m) { 1 } else { 0 };
            format!("evolution.mutation_weights.{m}={weight}")
        })
        .collect()
}

/// `evo run` on the test data with a tiny population, plus `extra` arguments.
fn run_args(data: &Path, state: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let mut args = tiny_run_args(data, state, port);
    args.extend([
        "training.log_every=5".into(),
        "evolution.population_size=5".into(),
        "evolution.initial_population=3".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// How many channel doublings make `child`'s genome from `parent`'s; the test fails
/// unless the two graphs have the same edges with each convolution as wide as the
/// parent's or a power of two times as wide (a final copy widened by
/// `stop.final_training_widen` rounds).
fn doublings(child: &Value, parent: &Value) -> usize {
    let convs = |g: &Value| -> Vec<(u64, u64)> {
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_u64().unwrap(),
                    e["op"]["Conv"]["channels"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let (mine, theirs) = (convs(&child["genome"]), convs(&parent["genome"]));
    assert_eq!(mine.len(), theirs.len(), "{child}");
    let mut doubled = 0;
    for ((id, c), (pid, pc)) in mine.iter().zip(&theirs) {
        assert_eq!(id, pid, "{child}");
        // As wide, or 2, 4, 8 ... times as wide: one doubling per factor of two.
        let times = if *pc > 0 { c / pc } else { 1 };
        assert!(
            *c == pc * times && times.is_power_of_two() && times <= 16,
            "{child}"
        );
        doubled += times.trailing_zeros() as usize;
    }
    doubled
}

/// `evo run --offline` to its end on fresh test data (`images` per batch file), with `extra`
/// settings and `flags`: the temporary folder (kept while the caller holds it), the
/// state directory and what the run printed; the test fails if the run does.
fn run_offline(
    images: usize,
    extra: &[&str],
    flags: &[&str],
) -> (tempfile::TempDir, PathBuf, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), images);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    let mut args = run_args(&data, &state, 0, extra);
    args.push("--offline".into());
    args.extend(flags.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(evo(&args));
    (dir, state, out)
}

/// [`run_offline`] of a run that ends with a final training: 20 steps per child on 30
/// images per batch file, `minutes` of wall time whose last half trains one member, on
/// `workers` workers, with `extra` settings and `flags`.
fn run_final_training(
    minutes: f64,
    workers: usize,
    extra: &[&str],
    flags: &[&str],
) -> (tempfile::TempDir, PathBuf, std::process::Output) {
    let mut settings = vec![
        "training.steps=20".to_string(),
        format!("stop.max_wall_minutes={minutes}"),
        "stop.final_training_share=0.5".into(),
        "stop.max_individuals=100000".into(),
        "stop.final_training_members=1".into(),
    ];
    settings.extend(extra.iter().map(|s| s.to_string()));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let workers = workers.to_string();
    let mut all_flags = vec!["--workers", workers.as_str()];
    all_flags.extend(flags);
    run_offline(30, &settings, &all_flags)
}

/// `evo run` resumed on `state` (its config and data as saved there) with `flags` until
/// `max_individuals` have been trained; the test fails if the run does.
fn resume(state: &Path, max_individuals: usize, flags: &[&str]) -> std::process::Output {
    let http = "127.0.0.1:0".to_string();
    let stop = format!("--stop.max_individuals={max_individuals}");
    let mut args = vec![
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--http",
        &http,
    ];
    args.extend(flags);
    args.push(&stop);
    ok(evo(&args))
}

/// [`resume`] offline: what the run printed to stderr.
fn resume_offline(state: &Path, max_individuals: usize) -> String {
    let out = resume(state, max_individuals, &["--offline"]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = get(port, path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The records of a state directory, by id.
fn records(state: &Path) -> BTreeMap<u64, Value> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(state.join("individuals")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read(entry.path().join("record.json")) else {
            continue;
        };
        if let Ok(v) = serde_json::from_slice::<Value>(&text) {
            out.insert(v["id"].as_u64().unwrap(), v);
        }
    }
    out
}

/// `evo evaluate` of these model folders or exports on the test images of `data`, with
/// `extra` arguments.
fn evaluate(models: &[&Path], data: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["evaluate".to_string()];
    for m in models {
        args.push("--model".into());
        args.push(m.to_str().unwrap().into());
    }
    args.push("--data".into());
    args.push(data.to_str().unwrap().into());
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    evo(&args)
}

#[test]
fn a_killed_run_resumes_with_every_finished_individual_intact_then_exports() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 30);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    let mut node = Evo::spawn(&run_args(&data, &state, 0, &["training.steps=60"]));
    let port = node.port();
    // Let it train a few individuals, then kill it without warning.
    wait_for(Duration::from_secs(120), "six individuals", || {
        (records(&state).len() >= 6).then_some(())
    });
    let status = get_json(port, "/status");
    assert_eq!(status["target_size"], 5);
    node.child.kill().unwrap(); // SIGKILL
    node.child.wait().unwrap();
    let before = records(&state);
    assert!(before.len() >= 6);

    // Resume on the same state directory, with the config frozen there.
    let target = before.len() + 5;
    let out = resume(&state, target, &["--json-log"]);
    let summary = json_line(&out);
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["individuals_trained"], target);
    let after = records(&state);
    assert_eq!(after.len(), target);
    // Every individual finished before the kill is intact: same genome, fitness and
    // history; only death may have come to it since.
    for (id, old) in &before {
        let new = &after[id];
        for key in [
            "genome",
            "fitness",
            "parent",
            "mutations",
            "born_at_ms",
            "flops",
        ] {
            assert_eq!(old[key], new[key], "individual {id}: {key} changed");
        }
        if old["status"] == "dead" {
            assert_eq!(old, new, "a dead individual's record changed");
        }
    }
    // The new ones are numbered after everything the first run handed out.
    let max_before = *before.keys().max().unwrap();
    assert!(after.keys().filter(|id| **id > max_before).count() == 5);
    // Weights: kept for the living, deleted for the dead.
    let mut alive = 0;
    for (id, r) in &after {
        let weights = state.join(format!("individuals/{id}/weights.safetensors"));
        assert_eq!(
            weights.exists(),
            r["status"] == "alive",
            "individual {id} ({})",
            r["status"]
        );
        alive += (r["status"] == "alive") as usize;
    }
    assert!(alive <= 5, "the population holds at most its target");
    let events = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    assert!(events.contains(r#""event":"resumed""#));
    assert!(
        events.contains(&format!("trained {target} individuals")),
        "{events}"
    );
    // The JSON log told of every birth.
    let births = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(r#""event":"birth""#))
        .count();
    assert_eq!(births, 5);

    // Export the best two and score them on the test images, alone and together.
    let export = dir.path().join("export");
    ok(evo(&[
        "export",
        "--state-dir",
        state.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
        "--top",
        "2",
    ]));
    let ranking: Value =
        serde_json::from_slice(&std::fs::read(export.join("ranking.json")).unwrap()).unwrap();
    let best_id = ranking[0]["id"].as_u64().unwrap();
    let best_fitness = after
        .values()
        .filter(|r| r["status"] == "alive")
        .map(|r| r["fitness"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(ranking[0]["val_accuracy"].as_f64().unwrap(), best_fitness);
    assert_eq!(after[&best_id]["status"], "alive");
    let scores = json_line(&ok(evaluate(&[&export], &data, &["--ensemble", "2"])));
    let test = scores["test_accuracy"].as_f64().unwrap();
    let ensemble = scores["ensemble_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&test) && (0.0..=1.0).contains(&ensemble));
    assert_eq!(scores["ensemble_size"], 2);
    // One model folder scores the same as the export's best.
    let best = export.join(ranking[0]["folder"].as_str().unwrap());
    let single = json_line(&ok(evaluate(&[&best], &data, &[])));
    assert_eq!(single["test_accuracy"].as_f64().unwrap(), test);
    // Several --model folders (exports of islands, say): each one's best, and their
    // ensemble, which is the same as the export's top two here.
    let second = export.join(ranking[1]["folder"].as_str().unwrap());
    let pair = json_line(&ok(evaluate(&[&export, &second], &data, &[])));
    assert_eq!(pair["ensemble_size"], 2);
    assert_eq!(pair["ensemble_accuracy"].as_f64().unwrap(), ensemble);
    assert_eq!(pair["test_accuracy"].as_f64().unwrap(), test);
    // --ensemble is for one export.
    let refused = evaluate(&[&export, &second], &data, &["--ensemble", "2"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--ensemble"));
}

/// A migrant that was still waiting to be scored when its receiver stopped is kept in
/// its folder with its arrival note, and is scored and admitted when the run resumes; a
/// waiting migrant whose weights no longer match its checksum is dropped.
#[test]
fn migrants_waiting_when_a_run_stops_are_scored_when_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 30);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    let mut args = run_args(&data, &state, 0, &["training.steps=20"]);
    args.extend(["--offline".into(), "--stop.max_individuals=3".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(evo(&args));
    let before = records(&state);
    let (&source, record) = before
        .iter()
        .find(|(_, r)| r["status"] == "alive")
        .expect("a live individual");
    let fitness = record["fitness"].as_f64().unwrap();

    // Two migrants as a receiver leaves them when it stops before scoring them: model
    // files and an arrival note under fresh ids (copies of the live one, as if sent by
    // another island with its true fitness), the second with weights that no longer
    // match their checksum.
    let next = before.keys().max().unwrap() + 1;
    let weights =
        std::fs::read(state.join(format!("individuals/{source}/weights.safetensors"))).unwrap();
    for (id, damaged) in [(next, false), (next + 1, true)] {
        let from = state.join(format!("individuals/{source}"));
        let to = state.join(format!("individuals/{id}"));
        std::fs::create_dir_all(&to).unwrap();
        for file in ["genome.json", "model.json"] {
            std::fs::copy(from.join(file), to.join(file)).unwrap();
        }
        let mut w = weights.clone();
        if damaged {
            let last = w.len() - 1;
            w[last] ^= 0xff;
        }
        std::fs::write(to.join("weights.safetensors"), &w).unwrap();
        let note = serde_json::json!({
            "id": id,
            "peer": "12D3KooWElsewhere",
            "summary": {
                "id": 40 + id, "island": "elsewhere", "genome": record["genome"],
                "fitness": fitness, "parent": null, "mutations": [], "flops": 1,
                "born_at_ms": 0,
            },
            "checksum": sha256_hex(&weights),
        });
        std::fs::write(to.join("arrival.json"), note.to_string()).unwrap();
    }

    let stderr = resume_offline(&state, 5);
    assert!(
        stderr.contains("1 migrants waiting to be scored"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("#{}", next + 1)) && stderr.contains("dropped"),
        "{stderr}"
    );
    let after = records(&state);
    let admitted = &after[&next];
    assert_eq!(admitted["origin"]["island"], "elsewhere");
    assert_eq!(admitted["origin"]["id"], 40 + next);
    assert_eq!(admitted["fitness"].as_f64().unwrap(), fitness);
    assert!(!state
        .join(format!("individuals/{next}/arrival.json"))
        .exists());
    assert!(!after.contains_key(&(next + 1)));
    assert!(!state.join(format!("individuals/{}", next + 1)).exists());
    let events = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    let arrival: Value = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "migration")
        .expect("a migration event");
    assert_eq!(arrival["direction"], "in");
    assert_eq!(arrival["id"], next);
    assert_eq!(arrival["claimed"], arrival["fitness"]);
}

#[test]
fn the_final_training_trains_a_copy_of_the_best_until_the_wall_time_limit() {
    // Two workers, one member: the other worker idles once its last child is done.
    let started = Instant::now();
    let (_dir, state, out) = run_final_training(
        0.4,
        2,
        &[
            "stop.final_training_augment_variant=false",
            // The member's own weights: this test reads an inherited copy's record.
            "stop.final_training_weights=inherited",
        ],
        &[],
    );
    let took = started.elapsed().as_secs_f64();
    // It ends at its limit (24 s), not long after, and not at once.
    assert!((20.0..60.0).contains(&took), "{took} s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("final training"), "{stderr}");
    // Announced once, however often the workers ask for work.
    assert_eq!(
        stderr.matches("final training: no more breeding").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("reached the wall-time limit"), "{stderr}");
    // The quick config widens a final copy where its timed pace allows: the birth says
    // what the width probe measured either way (a linear best has nothing to widen).
    assert!(
        stderr.contains("by a width probe (x")
            || stderr.contains("not widened (no convolution can double its channels)"),
        "{stderr}"
    );
    // The final training begins 12 s in. Its trainings last 8 s and more where the
    // others took a fraction of one (up to 4 s with the tests beside this one loading
    // the cores); each is an unchanged copy of a different parent, and nothing else
    // starts once it has begun.
    let records = records(&state);
    let train = |r: &Value| r["phases"]["train"].as_f64().unwrap_or(0.0);
    let finals: Vec<&Value> = records.values().filter(|r| train(r) >= 6.0).collect();
    assert_eq!(finals.len(), 1, "one final training: {records:?}");
    let mut parents = std::collections::BTreeSet::new();
    for r in &finals {
        // A copy (IDENTITY), widened by the quick config's stop.final_training_widen
        // where its epochs allow: one ALTER-NUMBER-OF-CHANNELS per doubling, the same
        // graph with each convolution as wide as its parent's or twice as wide.
        let mutations = r["mutations"].as_array().unwrap();
        assert_eq!(mutations[0], "IDENTITY", "{r}");
        assert!(
            mutations[1..]
                .iter()
                .all(|m| m == "ALTER-NUMBER-OF-CHANNELS"),
            "{r}"
        );
        let parent = r["parent"].as_u64().unwrap();
        assert_eq!(doublings(r, &records[&parent]), mutations.len() - 1, "{r}");
        assert!(parents.insert(parent), "{r}");
    }
    let first_final = finals
        .iter()
        .map(|r| r["born_at_ms"].as_u64().unwrap())
        .min()
        .unwrap();
    for r in records.values() {
        if r["born_at_ms"].as_u64().unwrap() > first_final {
            assert!(train(r) >= 6.0, "bred during the final training: {r}");
        }
    }
}

/// With `stop.final_training_weights = "fresh"` the final copy trains its member's
/// network from fresh weights: it is recorded with RESET-WEIGHTS and its birth says that
/// it inherited no tensor; with `stop.final_training_fresh_min_rate` its rate probe's
/// factors scale that rate where the member's own is lower (a floor above every
/// member's rate here, so the factors must change).
#[test]
fn a_fresh_final_training_trains_the_members_network_from_new_weights() {
    let (_dir, state, out) = run_final_training(
        0.3,
        1,
        &[
            "stop.final_training_augment_variant=false",
            "stop.final_training_widen=0",
            "stop.final_training_weights=fresh",
            "stop.final_training_fresh_min_rate=10",
        ],
        &["--json-log"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let births: Vec<Value> = stdout
        .lines()
        .filter(|l| l.contains(r#""event":"birth""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let records = records(&state);
    let finals: Vec<&Value> = records
        .values()
        .filter(|r| {
            r["mutations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "RESET-WEIGHTS")
        })
        .collect();
    assert_eq!(finals.len(), 1, "one fresh final copy: {records:?}");
    let copy = finals[0];
    assert_eq!(
        copy["mutations"],
        serde_json::json!(["IDENTITY", "RESET-WEIGHTS"]),
        "{copy}"
    );
    // The member's network, unchanged, trained from new weights.
    let parent = &records[&copy["parent"].as_u64().unwrap()];
    assert_eq!(copy["genome"]["edges"], parent["genome"]["edges"], "{copy}");
    let birth = births
        .iter()
        .find(|b| b["id"] == copy["id"])
        .expect("the final copy's birth");
    assert_eq!(birth["inherited"], 0, "{birth}");
    // The quick config's probe (1, 0.5, 0.25 of the member's rate), scaled to the floor
    // of 10 (the quick config's highest rate: every member's rate is lower).
    let rate = parent["genome"]["learning_rate"].as_f64().unwrap();
    assert!(rate < 10.0, "{parent}");
    let scale = 10.0 / rate;
    let factors: Vec<f64> = birth["probe"]["factors"]
        .as_array()
        .expect("the rate probe's report")
        .iter()
        .map(|f| f.as_f64().unwrap())
        .collect();
    assert_eq!(factors.len(), 3, "{birth}");
    for (f, set) in factors.iter().zip([1.0, 0.5, 0.25]) {
        assert!((f - set * scale).abs() < 1e-9 * scale, "{birth}");
    }
    // The children bred before it did inherit from their parents.
    assert!(
        births
            .iter()
            .any(|b| b["id"] != copy["id"] && b["inherited"].as_u64().unwrap_or(0) > 0),
        "{births:?}"
    );
}

/// With `stop.final_training_augment_variant`, the worker the one member leaves free
/// trains a second copy of the best with the experiment's augmentation where the best's
/// gene differs from it (ALTER-AUGMENTATION drawn often here so that it usually does),
/// and stays idle where it does not.
#[test]
fn a_spare_worker_trains_the_best_with_the_experiments_augmentation_where_its_gene_differs() {
    let (_dir, state, _) = run_final_training(
        0.4,
        2,
        &[
            "stop.final_training_augment_variant=true",
            "stop.final_training_augment_probe_share=0",
            "stop.final_training_weights=inherited",
            "evolution.augmentation_gene=true",
            "evolution.mutation_weights.ALTER-AUGMENTATION=50",
        ],
        &[],
    );
    let records = records(&state);
    let train = |r: &Value| r["phases"]["train"].as_f64().unwrap_or(0.0);
    let finals: Vec<&Value> = records.values().filter(|r| train(r) >= 6.0).collect();
    // A final copy's record names what made it first (IDENTITY for the copy as it is,
    // ALTER-AUGMENTATION for the variant), then one ALTER-NUMBER-OF-CHANNELS per channel
    // doubling where the quick config's widening took a round.
    let first = |r: &Value| r["mutations"][0].as_str().unwrap_or("").to_string();
    let widenings_only = |r: &Value| {
        r["mutations"].as_array().unwrap()[1..]
            .iter()
            .all(|m| m == "ALTER-NUMBER-OF-CHANNELS")
    };
    let copy = finals
        .iter()
        .find(|r| first(r) == "IDENTITY")
        .expect("the copy of the best");
    assert!(widenings_only(copy), "{copy}");
    let best = &records[&copy["parent"].as_u64().unwrap()];
    // The quick config crops and flips: what the initial individuals' genes say.
    let configured = serde_json::json!({"crop": true, "flip": true});
    let variants: Vec<&&Value> = finals
        .iter()
        .filter(|r| first(r) == "ALTER-AUGMENTATION")
        .collect();
    if best["genome"]["augment"] == configured {
        assert_eq!(
            finals.len(),
            1,
            "no variant of the same augmentation: {finals:?}"
        );
    } else {
        assert_eq!(finals.len(), 2, "{finals:?}");
        assert_eq!(variants.len(), 1, "{finals:?}");
        let variant = variants[0];
        assert!(widenings_only(variant), "{variant}");
        assert_eq!(variant["parent"], copy["parent"]);
        assert_eq!(variant["genome"]["augment"], configured);
        // Otherwise the best's network, widened as far as its own epochs allowed.
        let rounds = variant["mutations"].as_array().unwrap().len() - 1;
        assert_eq!(doublings(variant, best), rounds, "{variant}");
        if rounds == 0 {
            assert_eq!(variant["genome"]["vertices"], best["genome"]["vertices"]);
            assert_eq!(variant["genome"]["edges"], best["genome"]["edges"]);
        }
    }
    eprintln!(
        "best's gene {}; {} final trainings",
        best["genome"]["augment"],
        finals.len()
    );
}

/// With `stop.final_training_augment_probe_share`, the variant is tried within the one
/// final training instead: a single final copy, on all the threads, recorded (and saved)
/// with the gene its probe chose; ALTER-AUGMENTATION where that is the experiment's
/// augmentation rather than the member's own.
#[test]
fn the_final_training_tries_the_experiments_augmentation_within_itself_and_keeps_the_better() {
    let (_dir, state, out) = run_final_training(
        0.4,
        2,
        &[
            "stop.final_training_augment_variant=true",
            "stop.final_training_augment_probe_share=0.2",
            "stop.final_training_weights=inherited",
            "evolution.augmentation_gene=true",
            "evolution.mutation_weights.ALTER-AUGMENTATION=50",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let records = records(&state);
    let train = |r: &Value| r["phases"]["train"].as_f64().unwrap_or(0.0);
    let finals: Vec<&Value> = records.values().filter(|r| train(r) >= 6.0).collect();
    assert_eq!(
        finals.len(),
        1,
        "one final training, no spare-worker copy: {finals:?}"
    );
    let copy = finals[0];
    let best = &records[&copy["parent"].as_u64().unwrap()];
    let configured = serde_json::json!({"crop": true, "flip": true});
    let first = copy["mutations"][0].as_str().unwrap_or("");
    if best["genome"]["augment"] == configured {
        // Nothing to try: the member's own gene is the experiment's.
        assert_eq!(first, "IDENTITY", "{copy}");
        assert_eq!(copy["genome"]["augment"], configured);
    } else {
        assert!(
            stderr.contains("by an augmentation probe (crop "),
            "the birth line names the trial: {stderr}"
        );
        match first {
            "IDENTITY" => assert_eq!(copy["genome"]["augment"], best["genome"]["augment"]),
            "ALTER-AUGMENTATION" => assert_eq!(copy["genome"]["augment"], configured),
            other => panic!("a final copy made by {other}: {copy}"),
        }
    }
    // The saved model carries the gene its record names.
    let id = copy["id"].as_u64().unwrap();
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(
            state
                .join("individuals")
                .join(id.to_string())
                .join("genome.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(saved["augment"], copy["genome"]["augment"]);
    eprintln!(
        "best's gene {}; the final copy's {} ({first})",
        best["genome"]["augment"], copy["genome"]["augment"]
    );
}

/// When the final training begins, the breeding trainings in flight are abandoned at
/// once (here they would run far past the end), so that the final training gets the
/// machine; the run still ends at its limit.
#[test]
fn the_final_training_abandons_the_breeding_trainings_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 30);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    // No cap on a child's time: these trainings are meant to outlast the search.
    let mut args = run_args(
        &data,
        &state,
        0,
        &["training.steps=10000000", "training.child_time_cap=0"],
    );
    args.extend([
        "--offline".into(),
        "stop.max_wall_minutes=0.3".into(),
        "stop.final_training_share=0.5".into(),
        "--workers".into(),
        "2".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = ok(evo(&args));
    let took = started.elapsed().as_secs_f64();
    assert!((15.0..60.0).contains(&took), "{took} s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    let abandoned: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "training_failed")
        .collect();
    assert_eq!(abandoned.len(), 2, "{events}");
    for e in &abandoned {
        assert_eq!(e["reason"], "abandoned: the final training began", "{e}");
    }
    assert!(
        stderr.contains("abandoned: the final training began"),
        "{stderr}"
    );
    // Their folders are gone, and nobody was born.
    assert!(records(&state).is_empty());
    for e in &abandoned {
        let id = e["id"].as_u64().unwrap();
        assert!(!state.join(format!("individuals/{id}")).exists());
    }
}

/// With `training.child_time_cap`, a training whose pace would take it past its share of
/// the search's time is abandoned after its first steps (here every one: ten million
/// steps each); trainings within the cap go on as before.
#[test]
fn a_training_too_slow_for_the_child_time_cap_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 30);
    let data = dir.path().join("cifar-10-batches-bin");
    let run = |name: &str, steps: &str, minutes: &str| {
        let state = dir.path().join(name);
        let mut args = run_args(&data, &state, 0, &[steps]);
        args.extend([
            "--offline".into(),
            format!("stop.max_wall_minutes={minutes}"),
            "stop.final_training_share=0".into(),
            "training.child_time_cap=0.4".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(evo(&args));
        let events: Vec<Value> = std::fs::read_to_string(state.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (state, events, stderr)
    };
    // A cap of 0.4 of 15 s: 6 s; ten million steps are far past it at any pace.
    let (state, events, stderr) = run("slow", "training.steps=10000000", "0.25");
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "training_failed")
        .collect();
    // Every training failed: too slow, or (those in flight at the end) as the run stopped.
    let (abandoned, stopped): (Vec<&Value>, Vec<&Value>) = failed.iter().partition(|e| {
        e["reason"]
            .as_str()
            .unwrap()
            .starts_with("abandoned: too slow (")
    });
    assert!(!abandoned.is_empty(), "{events:?}");
    for e in &stopped {
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.starts_with("abandoned: the run stopped"), "{e}");
    }
    for e in &abandoned {
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("over the cap of 6 s per child"), "{e}");
        let id = e["id"].as_u64().unwrap();
        assert!(!state.join(format!("individuals/{id}")).exists());
    }
    assert!(stderr.contains("abandoned: too slow"), "{stderr}");
    assert!(records(&state).is_empty());
    // Forty steps are well within the same cap: individuals are born, none abandoned.
    let (state, events, stderr) = run("fast", "training.steps=40", "0.1");
    assert!(!records(&state).is_empty(), "{stderr}");
    assert!(
        !events
            .iter()
            .any(|e| e["reason"].as_str().is_some_and(|r| r.contains("too slow"))),
        "{events:?}"
    );
}

#[test]
fn status_answers_within_100_ms_while_every_worker_trains() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 30);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    // Trainings far longer than the test.
    let mut node = Evo::spawn(&run_args(
        &data,
        &state,
        0,
        &[
            "--workers",
            "2",
            "--training.steps",
            "10000000",
            "training.child_time_cap=0",
        ],
    ));
    let port = node.port();
    let status = wait_for(Duration::from_secs(60), "both workers training", || {
        let (code, body) = get(port, "/status").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["workers_busy"] == 2 && v["workers"][0]["step"].as_u64()? > 0)
            .then_some(v)
    });
    assert_eq!(status["workers_idle"], 0);
    assert_eq!(status["in_training"], 2);
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let start = Instant::now();
        let v = get_json(port, "/status");
        slowest = slowest.max(start.elapsed());
        assert_eq!(v["workers_busy"], 2);
    }
    assert!(
        slowest < Duration::from_millis(100),
        "slowest status answer took {slowest:?}"
    );
    // The other endpoints, while training.
    let population = get_json(port, "/population");
    let members = population.as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m["status"] == "training"));
    let id = members[0]["id"].as_u64().unwrap();
    let individual = get_json(port, &format!("/individuals/{id}"));
    assert_eq!(individual["status"], "training");
    assert!(individual["dot"].as_str().unwrap().starts_with("digraph"));
    assert_eq!(get(port, "/individuals/999999").unwrap().0, 404);
    assert_eq!(get(port, "/individuals/x").unwrap().0, 400);
    let (code, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("evo_workers_busy 2"), "{metrics}");
    assert!(metrics.contains("# TYPE evo_flops_total counter"));
    // `evo status` reads it too.
    let out = ok(evo(&["status", "--http", &format!("127.0.0.1:{port}")]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 busy, 0 idle"), "{text}");
    assert!(text.contains("peer id     12D3Koo"), "{text}");
    assert!(text.contains("listening   /ip4/"), "{text}");
    // SIGTERM stops it cleanly, abandoning the trainings in flight.
    let term = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let (exit, _) = node.wait_exit(Duration::from_secs(20), "the node to exit");
    assert!(exit.success(), "{exit:?}");
    let events = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    assert!(events.contains("stopped by SIGTERM"), "{events}");
    assert!(events.contains("abandoned"));
}

/// Every file under `dir` with its contents, but `LOCK` (which holds the pid of the last
/// process that opened the directory).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "LOCK") {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn fails_with(args: &[String], words: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_evo"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "evo succeeded: {stderr}");
    for w in words {
        assert!(stderr.contains(w), "{w:?} not in: {stderr}");
    }
}

#[test]
fn bad_input_gives_a_clear_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 10);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    let port = 0;

    // A wrong config key, a wrong value, a config file with an unknown key.
    fails_with(
        &run_args(&data, &state, port, &["training.stepz=3"]),
        &["training.stepz"],
    );
    fails_with(
        &run_args(&data, &state, port, &["--training.steps", "many"]),
        &["training.steps"],
    );
    let bad_config = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(quick_config()).unwrap();
    std::fs::write(
        &bad_config,
        text.replace("[training]", "[training]\nlearning_rate = 0.1"),
    )
    .unwrap();
    let mut args = run_args(&data, &state, port, &[]);
    args[2] = bad_config.display().to_string();
    fails_with(&args, &["learning_rate"]);
    // A missing data set.
    fails_with(
        &run_args(&dir.path().join("nowhere"), &state, port, &[]),
        &["no data set", "evo data fetch", "--data"],
    );
    // A port in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    fails_with(
        &run_args(&data, &state, taken_port, &[]),
        &["cannot listen", "--http"],
    );
    drop(taken);
    // Key files that hold no key, whatever their bytes: 64 bytes with a non-ASCII
    // character, bytes that are not text, too short.
    for (name, bytes) in [
        ("accented.key", format!("{}é", "0".repeat(62)).into_bytes()),
        ("binary.key", vec![0xff; 64]),
        ("short.key", b"abcd\n".to_vec()),
    ] {
        let key = dir.path().join(name);
        std::fs::write(&key, &bytes).unwrap();
        fails_with(
            &run_args(&data, &state, port, &["--key-file", key.to_str().unwrap()]),
            &[name, "does not hold a key", "64 hex digits"],
        );
    }
    assert!(
        !state.exists(),
        "a failed start created the state directory"
    );

    // A short run, then a config that scores differently: refused, nothing changed.
    ok(evo(&run_args(
        &data,
        &state,
        port,
        &["training.steps=5", "stop.max_individuals=4", "--quiet"],
    )
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>()));
    let files = tree(&state);
    let resume = vec![
        "run".to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--http".into(),
        format!("127.0.0.1:{port}"),
    ];
    let mut other = resume.clone();
    other.extend(["--config".into(), quick_config(), "training.steps=6".into()]);
    fails_with(&other, &["other fitness settings", "steps: 5 vs 6"]);
    assert!(tree(&state) == files, "a refused resume changed the state");
}

#[test]
fn a_resume_quarantines_what_is_damaged_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 10);
    let data = dir.path().join("cifar-10-batches-bin");
    let state = dir.path().join("state");
    let port = 0;
    let first = run_args(
        &data,
        &state,
        port,
        &["training.steps=5", "stop.max_individuals=6", "--quiet"],
    );
    ok(evo(&first.iter().map(String::as_str).collect::<Vec<_>>()));
    let before = records(&state);
    // A garbled record, the truncated weights of a live member, a torn event log.
    let garbled = *before.keys().next().unwrap();
    std::fs::write(
        state.join(format!("individuals/{garbled}/record.json")),
        b"{\"id\": 1, \"genome\": garbage",
    )
    .unwrap();
    let (&truncated, _) = before
        .iter()
        .find(|(id, r)| **id != garbled && r["status"] == "alive")
        .expect("a live member");
    let weights = state.join(format!("individuals/{truncated}/weights.safetensors"));
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let events = state.join("events.jsonl");
    let mut log = std::fs::read(&events).unwrap();
    log.extend_from_slice(b"{\"event\":\"bir");
    std::fs::write(&events, &log).unwrap();

    let stderr = resume_offline(&state, 8);
    assert!(
        stderr.contains("2 damaged individuals quarantined"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("#{garbled} was damaged")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("#{truncated} was damaged")),
        "{stderr}"
    );
    assert!(stderr.contains("torn last event line"), "{stderr}");
    let q = state.join("quarantine");
    assert!(q.join(garbled.to_string()).join("REASON").exists());
    assert!(q
        .join(truncated.to_string())
        .join("weights.safetensors")
        .exists());
    let after = records(&state);
    assert!(!after.contains_key(&garbled));
    assert_eq!(after[&truncated]["status"], "dead");
    assert!(after.len() >= 7, "the run went on: {} records", after.len());
    let log = std::fs::read_to_string(&events).unwrap();
    assert_eq!(log.matches("\"event\":\"quarantined\"").count(), 2);
}

/// A simulated device memory budget: the linear classifiers fit (two at once), a child
/// with a 16-channel stride-1 convolution on the image does not fit at all. Such a child fails alone, logged with the
/// reason, and the run goes on to its limit.
#[test]
fn a_child_too_large_for_the_device_fails_alone() {
    let (_dir, state, out) = run_offline(
        30,
        &[
            "training.steps=5",
            "stop.max_individuals=30",
            "stop.final_training_share=0",
            // About 1.1 MB a linear classifier at batch 10, several MB with a 16-channel
            // convolution on the 32x32 image.
            "node.memory_gib=0.0025",
            "evolution.mutation_weights.INSERT-CONVOLUTION=5",
        ],
        &["--workers", "2"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("device memory"), "{stderr}");
    let events = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    let failed: Vec<Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "training_failed")
        .collect();
    assert!(!failed.is_empty(), "no child was too large");
    for f in &failed {
        assert!(
            f["reason"]
                .as_str()
                .unwrap()
                .contains("GiB of device memory"),
            "{f}"
        );
    }
    // Every individual trained fits the budget, and the run reached its limit.
    let budget = (0.0025 * (1u64 << 30) as f64) as u64;
    let records = records(&state);
    assert_eq!(records.len(), 30);
    for r in records.values() {
        let g: genome::Genome = serde_json::from_value(r["genome"].clone()).unwrap();
        let a = g.analyze(&genome::Limits::default()).unwrap();
        let needs = genome::MemoryEstimate::of(&g, &a, 10).total();
        assert!(needs <= budget, "{needs} bytes > {budget}: {r}");
    }
}

/// `evo run --offline` with one worker under `training.budget = budget` (10 steps, a
/// cap of 4 times) and `extra` settings until `individuals` are trained: what it
/// printed, the steps each training planned (by id, from its `training_started` event)
/// and the records.
fn budget_run(
    budget: &str,
    individuals: u64,
    extra: &[&str],
) -> (String, BTreeMap<u64, u64>, BTreeMap<u64, Value>) {
    let budget = format!("training.budget={budget}");
    let individuals = format!("stop.max_individuals={individuals}");
    let mut settings = vec![
        "training.steps=10",
        &budget,
        "training.budget_max_factor=4",
        &individuals,
        "stop.final_training_share=0",
    ];
    settings.extend_from_slice(extra);
    let (_dir, state, out) = run_offline(20, &settings, &["--workers", "1", "--json-log"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let planned = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "training_started")
        .map(|e| (e["id"].as_u64().unwrap(), e["steps"].as_u64().unwrap()))
        .collect();
    let records = records(&state);
    (stdout, planned, records)
}

/// The stall budget: with one worker, each individual trains `training.steps` times the
/// factor [`node::budget::stall_factor`] gives for the births before it, and on these
/// few validation images (where fitness soon stops rising) the factor reaches its cap.
#[test]
fn the_stall_budget_trains_longer_after_each_generation_without_a_new_best() {
    // Only the mutations that keep the linear start linear: the budget is what is
    // tested, and a lineage that grows wide convolutions (the run's draws are not the
    // same from one test run to the next) once took a single child 15 minutes here.
    let weights = only_mutations(&[
        genome::Mutation::Identity,
        genome::Mutation::AlterLearningRate,
        genome::Mutation::ResetWeights,
    ]);
    let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
    let (stdout, planned, records) = budget_run("stall", 40, &weights);
    assert_eq!(records.len(), 40);
    assert!(
        records.keys().all(|id| planned.contains_key(id)),
        "{stdout}"
    );
    // One worker: births come in the order of ids, each before the next start (a
    // failed training has no record and counts for nothing).
    for (id, steps) in &planned {
        let before: Vec<f64> = records
            .range(..*id)
            .filter_map(|(_, r)| r["fitness"].as_f64())
            .collect();
        let factor = node::budget::stall_factor(before.iter().copied(), 5, 4);
        assert_eq!(*steps, 10 * u64::from(factor), "#{id} after {before:?}");
    }
    assert_eq!(planned.values().max(), Some(&40), "{planned:?}");
}

/// The cost budget: each child trains `training.steps` times the median forward FLOPs
/// of the population's trained members over its own, between the floor and the cap. The
/// members alive at its birth are some of those trained before it, so its steps lie
/// between what the cheapest and the costliest of those would give. Only the mutations
/// that change a network's cost are drawn (with all eleven, a population of five on
/// noise images can stay linear for 60 births, and every child then trains the base
/// steps). Returns how many trained fewer, exactly and more than the base steps.
fn check_cost_budget(min_factor: f64) -> (usize, usize, usize) {
    let mut settings = only_mutations(&[
        genome::Mutation::InsertConvolution,
        genome::Mutation::RemoveConvolution,
        genome::Mutation::AlterStride,
    ]);
    settings.push(format!("training.budget_min_factor={min_factor}"));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let (_, planned, records) = budget_run("cost", 60, &settings);
    assert_eq!(records.len(), 60);
    let flops = |r: &Value| {
        let g: genome::Genome = serde_json::from_value(r["genome"].clone()).unwrap();
        g.analyze(&genome::Limits::default())
            .unwrap()
            .cost
            .forward_flops
    };
    let steps_for = |own: u64, reference: u64| {
        node::budget::child_steps(
            node::budget::Budget::Cost,
            10,
            4,
            min_factor,
            Some(0),
            reference as f64 / own as f64,
        )
    };
    let (mut fewer, mut base, mut more) = (0, 0, 0);
    for (id, r) in &records {
        let steps = planned[id];
        let own = flops(r);
        // One worker: those trained before it are those with smaller ids.
        let earlier: Vec<u64> = records
            .range(..*id)
            .filter(|(_, e)| e["fitness"].as_f64().is_some())
            .map(|(_, e)| flops(e))
            .collect();
        let (lo, hi) = match (earlier.iter().min(), earlier.iter().max()) {
            (Some(&lo), Some(&hi)) => (steps_for(own, lo), steps_for(own, hi)),
            _ => (10, 10),
        };
        assert!(
            (lo..=hi).contains(&steps),
            "#{id} ({own} FLOPs) trained {steps} steps, outside {lo}..={hi} (earlier: {earlier:?})"
        );
        match steps.cmp(&10) {
            std::cmp::Ordering::Less => fewer += 1,
            std::cmp::Ordering::Equal => base += 1,
            std::cmp::Ordering::Greater => more += 1,
        }
    }
    (fewer, base, more)
}

/// Without a floor below 1 no child trains fewer than the base steps; the run has
/// children that trained the base steps and children that trained more.
#[test]
fn the_cost_budget_gives_cheaper_children_more_steps() {
    let (fewer, base, more) = check_cost_budget(1.0);
    assert_eq!(fewer, 0);
    assert!(base > 0 && more > 0, "{base} at the base, {more} more");
}

/// With a floor of a quarter, a child costlier than the median member trains fewer
/// steps, never below the floor (a quarter of the 10 steps, rounded: 3); cheaper ones still
/// train more.
#[test]
fn a_cost_budget_floor_gives_costlier_children_fewer_steps() {
    let (fewer, _, more) = check_cost_budget(0.25);
    assert!(fewer > 0 && more > 0, "{fewer} fewer, {more} more");
}

/// `--identity-seed`: two offline runs of one config, seed and identity seed on one
/// worker and thread get the same node key and make the same choices (the same genomes
/// and fitnesses, id by id); another identity seed gives another node and other choices;
/// and the flag is refused without `--offline`.
#[test]
fn an_identity_seed_makes_offline_runs_repeat() {
    let settings = [
        "training.steps=10",
        "stop.max_individuals=12",
        "stop.final_training_share=0",
        "node.threads=1",
    ];
    let run = |identity: &str| {
        let (dir, state, _) = run_offline(
            20,
            &settings,
            &["--workers", "1", "--identity-seed", identity],
        );
        let key = std::fs::read(state.join("node.key")).unwrap();
        let choices: Vec<(u64, String, String)> = records(&state)
            .into_iter()
            .map(|(id, r)| (id, r["genome"].to_string(), r["fitness"].to_string()))
            .collect();
        drop(dir);
        (key, choices)
    };
    let (key_a, a) = run("7");
    let (key_b, b) = run("7");
    let (key_c, c) = run("8");
    assert_eq!(key_a, key_b);
    assert_eq!(a.len(), 12);
    assert_eq!(a, b);
    assert_ne!(key_a, key_c);
    assert_ne!(a, c);

    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    let mut args = run_args(&data, &dir.path().join("state"), 0, &[]);
    args.extend(["--identity-seed".to_string(), "7".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = evo(&args);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--offline"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
