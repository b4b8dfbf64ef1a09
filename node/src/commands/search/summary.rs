//! The end of `evo bench search`: every finished job read back (the best validation
//! accuracy at each checkpoint from the event logs, the test accuracy of each run's best
//! live individual, the references' results), printed as tables, written to
//! `summary.json` and drawn in `best-accuracy.svg`.

use super::{Done, JobKind, SearchArgs};
use anyhow::{Context, Result};
use node::search_bench::{plot_svg, spread, RunTrace, Series, Window};
use node::state::{Status, EVENTS_FILE};
use std::path::{Path, PathBuf};
use trainer::data::LoadOptions;
use trainer::Task;

/// The trace of one experiment: one node's, or its islands' merged.
pub(super) fn trace_of(dirs: &[PathBuf]) -> Result<RunTrace> {
    let mut merged: Option<RunTrace> = None;
    for d in dirs {
        let t = RunTrace::read(&d.join(EVENTS_FILE))?;
        merged = Some(match merged {
            None => t,
            Some(m) => m.merge(&t),
        });
    }
    merged.context("no nodes")
}

/// The share of `[from, to]` (seconds of each node's own run) in which the node's
/// training pool had a training to run, averaged over the nodes
/// ([`RunTrace::busy_share`]).
fn pool_busy(dirs: &[PathBuf], from: f64, to: f64) -> Result<f64> {
    let mut sum = 0.0;
    for d in dirs {
        sum += RunTrace::read(&d.join(EVENTS_FILE))?.busy_share(from, to);
    }
    Ok(sum / dirs.len().max(1) as f64)
}

/// The best live individual of each of these nodes (by validation accuracy): its folder
/// and fitness, one entry per node that has one, in the order of `dirs`.
fn best_per_node(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, f64)>> {
    let mut bests = Vec::new();
    for d in dirs {
        let snap = node::state::snapshot(d)?;
        let mut best: Option<(PathBuf, f64)> = None;
        for r in snap.records.iter().filter(|r| r.status == Status::Alive) {
            let Some(f) = r.fitness.filter(|f| f.is_finite()) else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, b)| f > *b) {
                best = Some((d.join("individuals").join(r.id.to_string()), f));
            }
        }
        bests.extend(best);
    }
    Ok(bests)
}

/// The best of the nodes' bests (by validation accuracy; the first on a tie).
fn best_of(bests: &[(PathBuf, f64)]) -> Option<(PathBuf, f64)> {
    bests
        .iter()
        .fold(None::<&(PathBuf, f64)>, |acc, b| match acc {
            Some(a) if a.1 >= b.1 => Some(a),
            _ => Some(b),
        })
        .cloned()
}

/// Workers the node of `dir` ran, from the summary line of its JSON log (`DIR.log`
/// beside it), at least 1.
fn workers_of(dir: &Path) -> usize {
    std::fs::read_to_string(dir.with_extension("log"))
        .ok()
        .and_then(|t| {
            t.lines().rev().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["event"] == "summary").then(|| v["workers"].as_u64())?
            })
        })
        .map_or(1, |n| n as usize)
        .max(1)
}

/// Reads back what finished, prints the tables and writes the summary and the plot.
pub(super) fn summarize(args: &SearchArgs, label: &str, done: &[Done]) -> Result<()> {
    eprintln!("scoring the best individuals on the test images");
    let dataset = trainer::data::load(&args.data, &LoadOptions::default())?;
    let config =
        node::config::ExperimentConfig::load_with_overrides(&args.config, &args.overrides)?;
    let task = Task::new(
        &dataset,
        config.data.validation_images,
        config.data.split_seed,
    )?;
    let device = trainer::Device::Cpu;
    let seconds = args.minutes * 60.0;
    let step = args.checkpoint.max(1.0);
    let checkpoints: Vec<f64> = {
        let mut v = Vec::new();
        let mut t = step;
        while t < seconds - 1e-9 {
            v.push(t);
            t += step;
        }
        v.push(seconds);
        v
    };
    let mut runs_json = Vec::new();
    let mut series = Vec::new();
    // arm -> per-seed curves (best validation at each checkpoint).
    let mut arms: std::collections::BTreeMap<String, Vec<Vec<Option<f64>>>> = Default::default();
    let mut tests: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut references = Vec::new();
    for job in done {
        match &job.kind {
            JobKind::Reference(net) => {
                let text = std::fs::read_to_string(&job.dirs[0])?;
                let line: serde_json::Value = serde_json::from_str(text.trim())
                    .with_context(|| format!("reading {}", job.dirs[0].display()))?;
                let val = line["val_accuracy"].as_f64().unwrap_or(f64::NAN);
                series.push(Series {
                    name: format!("{} (end)", net.name()),
                    points: vec![(0.0, 100.0 * val), (args.minutes, 100.0 * val)],
                    dashed: true,
                });
                references.push(serde_json::json!({
                    "net": net.name(),
                    "schedule": args.reference_schedule.clone()
                        .unwrap_or_else(|| format!("{:?}", config.training.schedule).to_lowercase()),
                    "steps": line["steps"],
                    "seconds": line["seconds"],
                    "val_accuracy": line["val_accuracy"],
                    "test_accuracy": line["test_accuracy"],
                    "flops": line["flops"],
                    "params": line["params"],
                }));
            }
            kind => {
                let (arm, seed) = match kind {
                    JobKind::Evolution(s) => (label.to_string(), *s),
                    JobKind::Islands(s, n) => (format!("{label} {n} islands"), *s),
                    JobKind::Reference(_) => unreachable!(),
                };
                let trace = trace_of(&job.dirs)?;
                let curve: Vec<Option<f64>> =
                    checkpoints.iter().map(|&t| trace.best_at(t)).collect();
                let workers: usize = job.dirs.iter().map(|d| workers_of(d)).sum();
                let threads = args.threads * job.dirs.len();
                let whole = trace.window(0.0, seconds, workers, threads);
                let last_third = trace.window(seconds * 2.0 / 3.0, seconds, workers, threads);
                let busy = pool_busy(&job.dirs, seconds * 2.0 / 3.0, seconds)?;
                let bests = best_per_node(&job.dirs)?;
                let best = best_of(&bests);
                let (test, best_val) = match &best {
                    Some((dir, f)) => {
                        let (net, _) = trainer::individual::load_network(dir, &device)?;
                        (Some(task.test_accuracy(&net)?), Some(*f))
                    }
                    None => (None, None),
                };
                if let Some(t) = test {
                    tests.entry(arm.clone()).or_default().push(t);
                }
                // Islands also as an ensemble: each island's best (its final training's
                // model), their class probabilities averaged.
                let ensemble = if bests.len() > 1 {
                    let mut nets = Vec::new();
                    for (dir, _) in &bests {
                        nets.push(trainer::individual::load_network(dir, &device)?.0);
                    }
                    let refs: Vec<&trainer::Network> = nets.iter().collect();
                    let e = task.test_ensemble_accuracy(&refs)?;
                    tests
                        .entry(format!("{arm} (ensemble of their bests)"))
                        .or_default()
                        .push(e);
                    Some(e)
                } else {
                    None
                };
                let mut points = vec![(0.0, 0.0)];
                points.extend(
                    checkpoints
                        .iter()
                        .zip(&curve)
                        .filter_map(|(t, b)| b.map(|b| (t / 60.0, 100.0 * b))),
                );
                series.push(Series {
                    name: format!("{arm} seed {seed}"),
                    points,
                    dashed: false,
                });
                arms.entry(arm.clone()).or_default().push(curve.clone());
                runs_json.push(serde_json::json!({
                    "arm": arm,
                    "seed": seed,
                    "nodes": job.dirs.len(),
                    "workers": workers,
                    "best_val": best_val,
                    "test_accuracy": test,
                    "ensemble_test_accuracy": ensemble,
                    "ensemble_dirs": if ensemble.is_some() {
                        bests.iter().map(|(d, _)| d.display().to_string()).collect::<Vec<_>>()
                    } else {
                        Vec::new()
                    },
                    "best_dir": best.as_ref().map(|(d, _)| d.display().to_string()),
                    "curve": checkpoints.iter().zip(&curve)
                        .map(|(t, b)| serde_json::json!([t / 60.0, b])).collect::<Vec<_>>(),
                    "whole_run": window_json(&whole),
                    "last_third": window_json(&last_third),
                    "last_third_pool_busy": busy,
                }));
            }
        }
    }
    // The table of checkpoints.
    let mut checkpoint_json = Vec::new();
    println!("best validation accuracy (mean / min / max over seeds):");
    for (i, t) in checkpoints.iter().enumerate() {
        let mut row = format!("{:>6.1} min", t / 60.0);
        let mut per_arm = serde_json::Map::new();
        for (arm, curves) in &arms {
            let values: Vec<f64> = curves.iter().filter_map(|c| c[i]).collect();
            if let Some(s) = spread(&values) {
                row.push_str(&format!(
                    "  {arm}: {:.2} / {:.2} / {:.2}",
                    100.0 * s.mean,
                    100.0 * s.min,
                    100.0 * s.max
                ));
                per_arm.insert(arm.clone(), serde_json::to_value(s)?);
            }
        }
        println!("{row}");
        checkpoint_json.push(serde_json::json!({"minute": t / 60.0, "arms": per_arm}));
    }
    println!("runs:");
    for r in &runs_json {
        println!(
            "  {} seed {}: best val {} test {} | {} trained, {:.3e} FLOPs, {:.0}% training, \
             last third {:.0}% training (of the threads' time {:.0}%, pool busy {:.0}%) \
             at {:.2} GFLOP/s",
            r["arm"].as_str().unwrap_or(""),
            r["seed"],
            pct(r["best_val"].as_f64()),
            pct(r["test_accuracy"].as_f64()),
            r["whole_run"]["trained"],
            r["whole_run"]["flops"].as_f64().unwrap_or(0.0),
            100.0 * r["whole_run"]["training_share"].as_f64().unwrap_or(0.0),
            100.0 * r["last_third"]["training_share"].as_f64().unwrap_or(0.0),
            100.0
                * r["last_third"]["thread_training_share"]
                    .as_f64()
                    .unwrap_or(0.0),
            100.0 * r["last_third_pool_busy"].as_f64().unwrap_or(0.0),
            r["last_third"]["flops_per_s"].as_f64().unwrap_or(0.0) / 1e9,
        );
        if let Some(e) = r["ensemble_test_accuracy"].as_f64() {
            println!(
                "    ensemble of the {} islands' bests: test {}",
                r["nodes"],
                pct(Some(e))
            );
        }
    }
    let mut test_json = serde_json::Map::new();
    for (arm, values) in &tests {
        if let Some(s) = spread(values) {
            println!(
                "  {arm}: test accuracy of the best, mean {:.2}% min {:.2}% max {:.2}% over {} run(s)",
                100.0 * s.mean,
                100.0 * s.min,
                100.0 * s.max,
                s.n
            );
            test_json.insert(arm.clone(), serde_json::to_value(s)?);
        }
    }
    for r in &references {
        println!(
            "  reference {}: {} steps in {:.0} s, val {} test {}",
            r["net"].as_str().unwrap_or(""),
            r["steps"],
            r["seconds"].as_f64().unwrap_or(0.0),
            pct(r["val_accuracy"].as_f64()),
            pct(r["test_accuracy"].as_f64()),
        );
    }
    let summary = serde_json::json!({
        "label": label,
        "config": args.config.display().to_string(),
        "overrides": args.overrides,
        "data": args.data.display().to_string(),
        "minutes": args.minutes,
        "threads_per_node": args.threads,
        "checkpoints": checkpoint_json,
        "test_accuracy": test_json,
        "runs": runs_json,
        "references": references,
    });
    let json_path = args.out.join("summary.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary)?)?;
    let plot = args.out.join("best-accuracy.svg");
    plot_svg(
        &plot,
        &format!("{label}: best validation accuracy, {} min", args.minutes),
        args.minutes,
        &series,
    )?;
    println!("wrote {} and {}", json_path.display(), plot.display());
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

fn window_json(w: &Window) -> serde_json::Value {
    serde_json::to_value(w).unwrap_or_default()
}
