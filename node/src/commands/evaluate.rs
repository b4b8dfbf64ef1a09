//! `evo evaluate`: the test accuracy of a model written by `evo export` (or `evo train
//! --out`), or of the ensemble of the top K models of an export, which averages their
//! class probabilities, or of the ensemble of several exports' bests (one per island of
//! an experiment, say: `--model` given once per export). Test images are never seen by
//! evolution: this is the figure to report.

use super::export::RANKING_FILE;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use trainer::batch::ImageDims;
use trainer::data::{LabelMode, LoadOptions};
use trainer::individual::META_FILE;
use trainer::train::{class_probabilities, probability_accuracy};
use trainer::Network;

/// Options of `evo evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// A model folder, or a folder written by `evo export` (its best model is scored).
    /// Given several times, each one's best is scored and so is their ensemble.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// The data set folder; its test split is used.
    #[arg(long)]
    data: PathBuf,
    /// Also score the ensemble of the top K models of the export (one `--model` only).
    #[arg(long)]
    ensemble: Option<usize>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The model folders under `dir`: `dir` itself if it is one, else the export's models in
/// rank order.
fn model_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join(META_FILE).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let ranking = dir.join(RANKING_FILE);
    if ranking.is_file() {
        let text =
            std::fs::read(&ranking).with_context(|| format!("reading {}", ranking.display()))?;
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a ranking", ranking.display()))?;
        let mut dirs = Vec::new();
        for e in entries {
            let Some(folder) = e.get("folder").and_then(|f| f.as_str()) else {
                bail!("{}: an entry without a folder", ranking.display());
            };
            if folder.contains('/') || folder.contains('\\') || folder.starts_with('.') {
                bail!("{}: bad folder name {folder:?}", ranking.display());
            }
            dirs.push(dir.join(folder));
        }
        return Ok(dirs);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(META_FILE).is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{} holds no model (no {META_FILE}, no {RANKING_FILE}, no model folders)",
            dir.display()
        );
    }
    Ok(dirs)
}

/// The model folders to score and whether to score them as an ensemble: the top
/// `ensemble` (default 1) of one `--model`, or the best of each of several.
fn chosen_models(models: &[PathBuf], ensemble: Option<usize>) -> Result<(Vec<PathBuf>, bool)> {
    match models {
        [] => bail!("give --model at least once"),
        [one] => {
            let dirs = model_dirs(one)?;
            let wanted = ensemble.unwrap_or(1);
            if wanted == 0 {
                bail!("--ensemble must be at least 1");
            }
            if wanted > dirs.len() {
                bail!(
                    "--ensemble {wanted} asks for more models than {} holds ({})",
                    one.display(),
                    dirs.len()
                );
            }
            Ok((dirs[..wanted].to_vec(), ensemble.is_some()))
        }
        several => {
            if ensemble.is_some() {
                bail!(
                    "--ensemble takes the top K of one export; with {} --model folders their \
                     bests are scored as one ensemble already",
                    several.len()
                );
            }
            let mut dirs = Vec::new();
            for m in several {
                let best = model_dirs(m)?.into_iter().next();
                dirs.push(best.with_context(|| format!("{} holds no model", m.display()))?);
            }
            Ok((dirs, true))
        }
    }
}

/// Runs `evo evaluate`.
pub fn run(args: EvaluateArgs) -> Result<()> {
    let (chosen, ensemble) = chosen_models(&args.model, args.ensemble)?;
    let device = trainer::device::open(&args.device)?;
    let mut models = Vec::new();
    for dir in &chosen {
        let saved = trainer::individual::load(dir, &device)
            .with_context(|| format!("reading the model in {}", dir.display()))?;
        models.push((dir.clone(), saved));
    }
    // CIFAR-100's coarse labels are the only 20-class reading of a data set.
    let label_mode = if models[0].1.genome.classes == 20 {
        LabelMode::Coarse
    } else {
        LabelMode::Fine
    };
    let options = LoadOptions {
        label_mode,
        ..LoadOptions::default()
    };
    let dataset = trainer::data::load(&args.data, &options)
        .with_context(|| format!("loading the data set at {}", args.data.display()))?;
    let dims = ImageDims {
        c: dataset.channels as usize,
        h: dataset.height as usize,
        w: dataset.width as usize,
    };
    let classes = dataset.num_classes();
    let test = &dataset.test;
    let all: Vec<usize> = (0..test.labels.len()).collect();
    if all.is_empty() {
        bail!("{} has no test images", args.data.display());
    }
    let mut sum = vec![0f32; all.len() * classes];
    let mut scored = Vec::new();
    for (dir, saved) in &models {
        let g = &saved.genome;
        if (g.input.height, g.input.width, g.input.channels)
            != (dataset.height, dataset.width, dataset.channels)
            || g.classes as usize != classes
        {
            bail!(
                "the model in {} takes {}x{}x{} images in {} classes, but the data set has {}x{}x{} in {}",
                dir.display(),
                g.input.height,
                g.input.width,
                g.input.channels,
                g.classes,
                dataset.height,
                dataset.width,
                dataset.channels,
                classes
            );
        }
        let (net, _) = Network::new(
            g,
            &device,
            Some(&saved.tensors),
            &genome::Invalidated::none(),
            0,
        )?;
        let probs = trainer::threads::run(|| {
            class_probabilities(&net, &test.images, &all, dims, &saved.meta.normalization)
        })?;
        let accuracy = probability_accuracy(&probs, classes, &test.labels);
        for (s, p) in sum.iter_mut().zip(&probs) {
            *s += p;
        }
        scored.push(serde_json::json!({
            "model": dir.display().to_string(),
            "test_accuracy": accuracy,
            "val_accuracy": saved.meta.val_accuracy,
        }));
    }
    let mut line = serde_json::json!({
        "test_accuracy": scored[0]["test_accuracy"],
        "model": scored[0]["model"],
        "test_images": all.len(),
    });
    if ensemble {
        line["ensemble_accuracy"] = probability_accuracy(&sum, classes, &test.labels).into();
        line["ensemble_size"] = chosen.len().into();
        line["models"] = scored.into();
    }
    println!("{line}");
    Ok(())
}
