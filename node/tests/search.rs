//! End to end: `evo bench search` as a user runs it, on a tiny CIFAR-10 binary data set:
//! two seeds at once on cores of their own, two islands, a reference net for the same
//! time, every option beyond the paper switched on; then the summary, the plot, the
//! per-phase times in the records, and a resume that keeps what finished.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

#[test]
fn bench_search_runs_seeds_islands_and_a_reference_and_summarizes_them() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 40);
    let data = dir.path().join("cifar-10-batches-bin");
    let out = dir.path().join("bench");
    let quick = quick_config();
    let (data_s, out_s) = (data.display().to_string(), out.display().to_string());
    let args = [
        "bench",
        "search",
        "--config",
        &quick,
        "--data",
        &data_s,
        "--out",
        &out_s,
        "--minutes",
        "0.12",
        "--seeds",
        "2",
        "--threads",
        "1",
        "--cores",
        "0,1",
        "--islands",
        "2",
        "--reference",
        "linear",
        "--checkpoint",
        "3",
        "data.validation_images=30",
        "training.batch=10",
        "training.steps=20",
        "evolution.mutation_style=preserve-function",
        "training.schedule=cosine",
        "training.budget=lineage",
        "training.augment.pad=auto",
        "evolution.augmentation_gene=true",
    ];
    let run = ok(evo(&args));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("best validation accuracy"), "{stdout}");
    assert!(stdout.contains("reference linear"), "{stdout}");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "{summary}");
    let one_node: Vec<&Value> = runs.iter().filter(|r| r["nodes"] == 1).collect();
    let islands: Vec<&Value> = runs.iter().filter(|r| r["nodes"] == 2).collect();
    assert_eq!((one_node.len(), islands.len()), (2, 2));
    for r in runs {
        let test = r["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&test), "{r}");
        assert!(r["whole_run"]["trained"].as_u64().unwrap() > 0, "{r}");
        assert!(r["whole_run"]["flops"].as_f64().unwrap() > 0.0, "{r}");
        let share = r["whole_run"]["training_share"].as_f64().unwrap();
        assert!(share > 0.0 && share <= 1.0, "{r}");
        assert!(!r["curve"].as_array().unwrap().is_empty());
    }
    // Islands are also scored as the ensemble of each island's best; one node is not.
    for r in &islands {
        let e = r["ensemble_test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&e), "{r}");
        assert_eq!(r["ensemble_dirs"].as_array().unwrap().len(), 2, "{r}");
    }
    for r in &one_node {
        assert!(r["ensemble_test_accuracy"].is_null(), "{r}");
    }
    assert!(stdout.contains("islands' bests"), "{stdout}");
    // The two seeds are different runs.
    assert_ne!(one_node[0]["seed"], one_node[1]["seed"]);
    let checkpoints = summary["checkpoints"].as_array().unwrap();
    assert!(checkpoints.len() >= 2, "{summary}");
    let last = &checkpoints.last().unwrap()["arms"]["quick-cifar10"];
    assert_eq!(last["n"], 2, "{summary}");
    assert!(last["min"].as_f64().unwrap() <= last["max"].as_f64().unwrap());
    let reference = &summary["references"][0];
    assert_eq!(reference["net"], "linear");
    assert!(reference["steps"].as_u64().unwrap() > 0, "{reference}");
    assert_eq!(reference["schedule"], "cosine");
    let svg = std::fs::read_to_string(out.join("best-accuracy.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("seed 0") && svg.contains("linear"));
    // The config was frozen beside the runs.
    assert!(out.join("config.toml").is_file());

    // Records say where each training's time went.
    let individuals = out.join("runs/evolution-seed-0/individuals");
    let record: Value = std::fs::read_dir(&individuals)
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("record.json")).ok())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .next()
        .expect("a record");
    let phases = &record["phases"];
    assert!(phases["train"].as_f64().unwrap() > 0.0, "{record}");
    assert!(phases["validate"].as_f64().is_some() && phases["save"].as_f64().is_some());

    // A resume keeps every finished job and summarizes again.
    std::fs::remove_file(out.join("summary.json")).unwrap();
    let again = ok(evo(&[
        "bench",
        "search",
        "--config",
        &quick,
        "--data",
        &data_s,
        "--out",
        &out_s,
        "--minutes",
        "0.12",
        "--seeds",
        "2",
        "--islands",
        "2",
        "--reference",
        "linear",
        "--resume",
        "data.validation_images=30",
    ]));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.matches("finished before").count(), 5, "{stderr}");
    assert!(!stderr.contains("started "), "{stderr}");
    assert!(out.join("summary.json").is_file());
    // And without --resume a used folder is refused.
    let refused = evo(&[
        "bench", "search", "--config", &quick, "--data", &data_s, "--out", &out_s,
    ]);
    assert!(!refused.status.success());
}
