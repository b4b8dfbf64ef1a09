//! `evo report`: for a running or finished experiment, plots (PNG and SVG) of the best
//! validation accuracy over time and over FLOPs, of every individual and of the
//! population's size, the best architecture as SVG, and `report.md`: the figures in a
//! table, the best individual's test accuracy, and which mutations led to improvements.
//! The state directory is only read.

use anyhow::{bail, Context, Result};
use clap::Args;
use node::experiment_report::{
    best_curve, dots, mutation_gains, population_curve, summary, MutationGain,
};
use node::plots::{Chart, Marks, Series};
use node::state::Record;
use std::fmt::Write as _;
use std::path::PathBuf;
use trainer::data::LoadOptions;
use trainer::Task;

/// Options of `evo report`.
#[derive(Args)]
pub struct ReportArgs {
    /// The experiment's state directory.
    #[arg(long)]
    state_dir: PathBuf,
    /// Where to write the report (made if missing).
    #[arg(long)]
    out: PathBuf,
    /// The data set, to score the best individual on its test images (default: the
    /// experiment's `data.path`, if it is there).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Do not score the best individual on the test images.
    #[arg(long)]
    no_test: bool,
}

/// Runs `evo report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let snapshot = node::state::snapshot(&args.state_dir)
        .with_context(|| format!("reading the state directory {}", args.state_dir.display()))?;
    let records = &snapshot.records;
    if records.is_empty() {
        bail!(
            "{} holds no trained individual yet",
            args.state_dir.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let s = summary(records);
    let curve = best_curve(records);
    let name = &snapshot.config.experiment.name;
    let mut written: Vec<PathBuf> = Vec::new();
    let line = |name: &str, points: Vec<(f64, f64)>| Series {
        name: name.to_string(),
        points,
        dashed: false,
    };
    let charts = [
        (
            "best-over-time",
            Chart {
                title: format!("{name}: best validation accuracy"),
                x_desc: "minutes since the first birth".into(),
                y_desc: "validation accuracy (%)".into(),
                log_x: false,
                x_max: Some(s.minutes),
                marks: Marks::Lines,
                series: vec![line(
                    "best so far",
                    steps(curve.iter().map(|p| (p.minute, 100.0 * p.best)), s.minutes),
                )],
            },
        ),
        (
            "best-over-flops",
            Chart {
                title: format!("{name}: best validation accuracy over FLOPs"),
                x_desc: "FLOPs spent".into(),
                y_desc: "validation accuracy (%)".into(),
                log_x: true,
                x_max: Some(s.flops),
                marks: Marks::Lines,
                series: vec![line(
                    "best so far",
                    steps(
                        curve.iter().map(|p| (p.flops.max(1.0), 100.0 * p.best)),
                        s.flops,
                    ),
                )],
            },
        ),
        ("individuals", {
            let d = dots(records);
            let pct = |v: Vec<(f64, f64)>| v.into_iter().map(|(x, y)| (x, 100.0 * y)).collect();
            Chart {
                title: format!("{name}: every individual"),
                x_desc: "minutes since the first birth (at its birth)".into(),
                y_desc: "validation accuracy (%)".into(),
                log_x: false,
                x_max: Some(s.minutes),
                marks: Marks::Dots,
                series: vec![
                    line("alive", pct(d.alive)),
                    line("dead", pct(d.dead)),
                    line("migrants", pct(d.migrants)),
                ],
            }
        }),
        (
            "population",
            Chart {
                title: format!("{name}: live individuals"),
                x_desc: "minutes since the first birth".into(),
                y_desc: "individuals".into(),
                log_x: false,
                x_max: Some(s.minutes),
                marks: Marks::Lines,
                series: vec![line(
                    "alive",
                    population_curve(records)
                        .into_iter()
                        .map(|(t, n)| (t, n as f64))
                        .collect(),
                )],
            },
        ),
    ];
    for (stem, chart) in &charts {
        written.extend(chart.save_both(&args.out.join(stem))?);
    }
    let best = s.best.and_then(|id| records.iter().find(|r| r.id == id));
    if let Some(b) = best {
        let analysis = b.genome.analyze(&snapshot.config.evolution.limits).ok();
        let path = args.out.join("best-architecture.svg");
        std::fs::write(&path, b.genome.to_svg(analysis.as_ref()))
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let test = match (best, args.no_test) {
        (Some(b), false) => test_accuracy(&args, &snapshot.config, b),
        _ => Ok(None),
    };
    let test_line = match &test {
        Ok(Some(t)) => format!("{:.2}%", 100.0 * t),
        Ok(None) => "not measured".to_string(),
        Err(e) => format!("not measured ({e:#})"),
    };
    let md = markdown(
        name,
        &s,
        best,
        &test_line,
        &mutation_gains(records),
        &charts,
    );
    let path = args.out.join("report.md");
    std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    print!("{md}");
    eprintln!("wrote:");
    for p in &written {
        eprintln!("  {}", p.display());
    }
    Ok(())
}

/// A best-so-far curve as steps (it holds until the next rise) that runs on to `end`.
fn steps(points: impl Iterator<Item = (f64, f64)>, end: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        if let Some(&(_, last)) = out.last() {
            out.push((x, last));
        }
        out.push((x, y));
    }
    if let Some(&(x, y)) = out.last() {
        if end > x {
            out.push((end, y));
        }
    }
    out
}

/// The best individual's test accuracy, on the data set given or the experiment's own.
fn test_accuracy(
    args: &ReportArgs,
    config: &node::config::ExperimentConfig,
    best: &Record,
) -> Result<Option<f64>> {
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| config.data.path.clone());
    if !data.exists() {
        return Ok(None);
    }
    let options = LoadOptions {
        label_mode: config.data.labels.label_mode(),
        ..LoadOptions::default()
    };
    let dataset = trainer::data::load(&data, &options)
        .with_context(|| format!("loading {}", data.display()))?;
    let task = Task::new(
        &dataset,
        config.data.validation_images,
        config.data.split_seed,
    )?;
    let dir = args
        .state_dir
        .join(node::state::INDIVIDUALS_DIR)
        .join(best.id.to_string());
    let (net, _) = trainer::individual::load_network(&dir, &trainer::Device::Cpu)
        .with_context(|| format!("loading the best individual from {}", dir.display()))?;
    Ok(Some(task.test_accuracy(&net)?))
}

fn markdown(
    name: &str,
    s: &node::experiment_report::Summary,
    best: Option<&Record>,
    test: &str,
    gains: &[MutationGain],
    charts: &[(&str, Chart)],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Experiment {name}\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| individuals trained | {} |", s.individuals);
    let _ = writeln!(md, "| alive | {} |", s.alive);
    let _ = writeln!(md, "| migrants received | {} |", s.migrants);
    let _ = writeln!(md, "| FLOPs spent | {:.3e} |", s.flops);
    let _ = writeln!(
        md,
        "| minutes (first to last birth or death) | {:.1} |",
        s.minutes
    );
    match (best, s.best_fitness) {
        (Some(b), Some(f)) => {
            let _ = writeln!(md, "| best individual | #{} |", b.id);
            let _ = writeln!(md, "| its validation accuracy | {:.2}% |", 100.0 * f);
            let _ = writeln!(md, "| its test accuracy | {test} |");
            let cost = b
                .genome
                .analyze(&genome::Limits::default())
                .map(|a| a.cost)
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| its size | {} vertices, {} edges ({} convolutions), {} parameters, {:.3e} forward FLOPs per image |",
                b.genome.vertices.len(),
                b.genome.edges.len(),
                b.genome.conv_count(),
                cost.params,
                cost.forward_flops as f64
            );
        }
        _ => {
            let _ = writeln!(md, "| best individual | none alive with a score |");
        }
    }
    let _ = writeln!(
        md,
        "\n## Which mutations paid off\n\nChildren made by one mutation, against their parent's validation accuracy (points):\n"
    );
    let _ = writeln!(
        md,
        "| mutation | children | improved | mean change | best change |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for g in gains {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:+.2} | {:+.2} |",
            g.mutation, g.children, g.improved, g.mean_change, g.best_change
        );
    }
    let _ = writeln!(md, "\n## Plots\n");
    for (stem, chart) in charts {
        let _ = writeln!(md, "![{}]({stem}.png) ([SVG]({stem}.svg))\n", chart.title);
    }
    if best.is_some() {
        let _ = writeln!(
            md,
            "The best architecture: ![best architecture](best-architecture.svg)"
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::steps;

    #[test]
    fn a_best_curve_is_drawn_as_steps_to_the_end() {
        let s = steps([(0.0, 30.0), (2.0, 40.0)].into_iter(), 5.0);
        assert_eq!(s, vec![(0.0, 30.0), (2.0, 30.0), (2.0, 40.0), (5.0, 40.0)]);
        assert!(steps(std::iter::empty(), 5.0).is_empty());
    }
}
