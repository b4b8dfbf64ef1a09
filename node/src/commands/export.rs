//! `evo export`: copy the best individuals of a run (by validation accuracy) out of its
//! state directory, each as a folder that `evo evaluate` and `evo train --init-from`
//! read: `genome.json`, `genome.dot`, `weights.safetensors`, `model.json` and
//! `record.json`. The state directory is only read, so a running node can be exported.

use anyhow::{bail, Context, Result};
use clap::Args;
use genome::Limits;
use node::population::rank;
use node::state::{Record, Status};
use std::path::{Path, PathBuf};
use trainer::individual::{write_atomic, GENOME_FILE, META_FILE, WEIGHTS_FILE};

/// The ranking file `evo export` writes next to the model folders.
pub const RANKING_FILE: &str = "ranking.json";

/// Options of `evo export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The run's state directory.
    #[arg(long)]
    state_dir: PathBuf,
    /// Where to write the models (made if missing; existing model folders of the same
    /// names are replaced).
    #[arg(long)]
    out: PathBuf,
    /// How many of the best to export.
    #[arg(long, default_value_t = 1)]
    top: usize,
}

/// The name of the folder of the model ranked `rank` (from 1).
pub fn model_folder(rank: usize, id: u64) -> String {
    format!("{rank:03}-individual-{id}")
}

/// Runs `evo export`.
pub fn run(args: ExportArgs) -> Result<()> {
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let snapshot = node::state::snapshot(&args.state_dir)
        .with_context(|| format!("reading the state directory {}", args.state_dir.display()))?;
    let mut alive: Vec<&Record> = snapshot
        .records
        .iter()
        .filter(|r| r.status == Status::Alive && r.fitness.is_some_and(f64::is_finite))
        .collect();
    // Best first; ties go to the younger, as in selection.
    alive.sort_by(|a, b| {
        rank(b.fitness, b.born_at_ms, a.fitness, a.born_at_ms).then(b.id.cmp(&a.id))
    });
    if alive.is_empty() {
        bail!(
            "{} holds no trained individual yet",
            args.state_dir.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut ranking = Vec::new();
    for r in alive {
        if ranking.len() == args.top {
            break;
        }
        let src = args
            .state_dir
            .join(node::state::INDIVIDUALS_DIR)
            .join(r.id.to_string());
        let rank = ranking.len() + 1;
        let dest = args.out.join(model_folder(rank, r.id));
        match export_one(r, &src, &dest, &snapshot.config.evolution.limits) {
            Ok(()) => {}
            // Killed (its weights deleted) by a running node since the records were read.
            Err(e) if !src.join(WEIGHTS_FILE).exists() => {
                eprintln!("skipping individual {}: {e:#}", r.id);
                let _ = std::fs::remove_dir_all(&dest);
                continue;
            }
            Err(e) => return Err(e),
        }
        ranking.push(serde_json::json!({
            "rank": rank,
            "id": r.id,
            "val_accuracy": r.fitness,
            "folder": model_folder(rank, r.id),
            "parent": r.parent,
            "flops": r.flops,
        }));
        eprintln!(
            "{rank}. individual {} (val {:.2}%) -> {}",
            r.id,
            100.0 * r.fitness.unwrap_or(0.0),
            dest.display()
        );
    }
    let text = serde_json::to_vec_pretty(&ranking).context("encoding the ranking")?;
    write_atomic(&args.out.join(RANKING_FILE), &text)?;
    println!(
        "{}",
        serde_json::json!({"exported": ranking.len(), "out": args.out.display().to_string()})
    );
    Ok(())
}

fn export_one(r: &Record, src: &Path, dest: &Path, limits: &Limits) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for file in [WEIGHTS_FILE, GENOME_FILE, META_FILE] {
        let bytes = std::fs::read(src.join(file))
            .with_context(|| format!("reading {}", src.join(file).display()))?;
        write_atomic(&dest.join(file), &bytes)?;
    }
    let record = serde_json::to_vec_pretty(r).context("encoding the record")?;
    write_atomic(&dest.join(node::state::RECORD_FILE), &record)?;
    let analysis = r.genome.analyze(limits).ok();
    write_atomic(
        &dest.join("genome.dot"),
        r.genome.to_dot(analysis.as_ref()).as_bytes(),
    )?;
    Ok(())
}
