//! `evo train`: train one individual on a data set and report its scores.

use anyhow::{Context, Result};
use clap::Args;
use genome::Invalidated;
use std::path::PathBuf;
use trainer::data::{LabelMode, LoadOptions};
use trainer::individual_training::{train_individual, Start};
use trainer::{Task, TrainConfig};

/// Options of `evo train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Genome JSON file.
    #[arg(long)]
    genome: PathBuf,
    /// Data set folder (CIFAR binary, image folder or IDX files).
    #[arg(long)]
    data: PathBuf,
    /// SGD steps (without it: 25,600, the paper's; with --seconds, as many as the seconds
    /// allow).
    #[arg(long)]
    steps: Option<u64>,
    /// Stop training after this many seconds of SGD steps, even before --steps (a time
    /// budget: e.g. a hand-picked net given the wall time of a search).
    #[arg(long)]
    seconds: Option<f64>,
    /// Images per step.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Save the trained model (genome, weights, scores) into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start from the weights of the model in this folder (tensors whose name and shape
    /// match are inherited).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Training images held out for validation.
    #[arg(long, default_value_t = 5000)]
    validation: usize,
    /// Seed of the validation split.
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Seed of initialization, batch order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Adaptive gradient clipping: each kernel's and weight matrix's gradient at most
    /// this times its norm (0: off).
    #[arg(long, default_value_t = 0.0)]
    gradient_clip: f64,
    /// The share of the training over which the learning rate rises linearly from near
    /// zero, as `training.warmup` gives a run's trainings (0: none).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Where the network collapses (its output stops depending on its input), stop and
    /// train again, once, from the start at this factor of the rate, as
    /// `training.collapse_retry` gives a run's trainings (0: off).
    #[arg(long, default_value_t = 0.0)]
    collapse_retry: f64,
    /// Turn off augmentation (random crop and flip).
    #[arg(long)]
    no_augment: bool,
    /// CIFAR-100 labels: fine or coarse.
    #[arg(long, default_value = "fine")]
    labels: String,
    /// Report progress every this many steps.
    #[arg(long, default_value_t = 100)]
    log_every: u64,
    /// Print only the final JSON line.
    #[arg(long)]
    quiet: bool,
    /// The learning-rate schedule: constant (the paper) or cosine.
    #[arg(long, default_value = "constant", value_parser = parse_schedule)]
    schedule: trainer::Schedule,
    /// Threads of the CPU training pool (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Train at this factor of the genome's learning rate.
    #[arg(long, default_value_t = 1.0)]
    lr_scale: f64,
    /// A learning-rate probe, as a run's final training has one: factors of the genome's
    /// rate (comma-separated, e.g. 1,0.5,0.25), each tried first by a copy trained for
    /// --probe-seconds with a decay of its own; the copy that scores best on the
    /// validation images goes on at its factor (in place of --lr-scale); where the rest
    /// of the training ends below that copy's score, the copy is the model
    /// (`probe_copy_kept` gives what the rest had reached).
    #[arg(long, value_delimiter = ',', requires = "probe_seconds")]
    lr_probe: Vec<f64>,
    /// Seconds of SGD each copy of --lr-probe trains.
    #[arg(long, requires = "lr_probe")]
    probe_seconds: Option<f64>,
    /// An augmentation probe, as a run's final training has one: an augmentation gene
    /// (crop+flip, crop, flip or none) tried against the genome's own by a copy each,
    /// trained for --augment-probe-seconds with a decay of its own (after the rate
    /// probe, at its factor); the copy that scores best on the validation images goes on
    /// with its gene.
    #[arg(long, value_parser = parse_gene, requires = "augment_probe_seconds")]
    augment_probe: Option<genome::AugmentGene>,
    /// Seconds of SGD each copy of --augment-probe trains.
    #[arg(long, requires = "augment_probe")]
    augment_probe_seconds: Option<f64>,
    /// Start the copies of --augment-probe from the weights of the model in this folder
    /// (the same network, trained) while the training itself starts from fresh weights,
    /// as a run's final training with `stop.final_training_weights = "fresh"` does; the
    /// fresh network then trains with the gene they chose.
    #[arg(long, requires = "augment_probe", conflicts_with = "init_from")]
    augment_judge: Option<PathBuf>,
    /// How far (0.01: one point of validation accuracy) the copy with the genome's own
    /// gene must score above the --augment-probe copy to be kept.
    #[arg(long, default_value_t = 0.0)]
    augment_probe_margin: f64,
    /// Double the channels of every convolution that can widen exactly this many times
    /// before training, as a run's final training does with `stop.final_training_widen`
    /// (with --init-from the wider network starts from the model's function).
    #[arg(long, default_value_t = 0)]
    widen: u32,
    /// Make --widen a most and time each width instead, as a run's final training does
    /// with `stop.final_training_widen_min_epochs`: the widest whose measured pace still
    /// gives this many epochs in --seconds trains (none: the genome as it is).
    #[arg(long, requires = "seconds")]
    widen_min_epochs: Option<f64>,
    /// With --widen-min-epochs: seconds each width is timed for.
    #[arg(long, default_value_t = 3.0)]
    widen_timing_seconds: f64,
    /// With --widen-min-epochs: count its epochs in the seconds the training that makes
    /// the model gets (those left less the --probe-seconds and --augment-probe-seconds
    /// of the copies the probes throw away), as a run's final training does with
    /// `stop.final_training_widen_epochs_in = "main_training"`, rather than in all the
    /// seconds left.
    #[arg(long, requires = "widen_min_epochs")]
    widen_epochs_in_main_training: bool,
}

/// The rate probe that `--lr-probe` and `--probe-seconds` ask for, checked (none
/// without them).
fn rate_probe(
    factors: &[f64],
    seconds: Option<f64>,
) -> Result<Option<trainer::rate_probe::RateProbe>> {
    let Some(seconds) = seconds else {
        return Ok(None);
    };
    anyhow::ensure!(
        seconds.is_finite() && seconds > 0.0,
        "--probe-seconds must be a positive number of seconds, not {seconds}"
    );
    anyhow::ensure!(
        factors.len() >= 2 && factors.len() <= trainer::rate_probe::MAX_FACTORS,
        "--lr-probe takes 2 to {} factors, not {}",
        trainer::rate_probe::MAX_FACTORS,
        factors.len()
    );
    if let Some(bad) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        anyhow::bail!("--lr-probe factors must be positive numbers, not {bad}");
    }
    Ok(Some(trainer::rate_probe::RateProbe {
        factors: factors.to_vec(),
        seconds,
    }))
}

/// Parses an augmentation gene: crop+flip, crop, flip or none.
fn parse_gene(s: &str) -> Result<genome::AugmentGene, String> {
    let (crop, flip) = match s {
        "crop+flip" | "flip+crop" => (true, true),
        "crop" => (true, false),
        "flip" => (false, true),
        "none" => (false, false),
        other => {
            return Err(format!(
                "expected crop+flip, crop, flip or none, not {other:?}"
            ))
        }
    };
    Ok(genome::AugmentGene { crop, flip })
}

/// Parses a learning-rate schedule name.
fn parse_schedule(s: &str) -> Result<trainer::Schedule, String> {
    match s {
        "constant" => Ok(trainer::Schedule::Constant),
        "cosine" => Ok(trainer::Schedule::Cosine),
        other => Err(format!("expected constant or cosine, not {other:?}")),
    }
}

/// Parses a CIFAR-100 label mode.
pub fn label_mode(s: &str) -> Result<LabelMode> {
    match s {
        "fine" => Ok(LabelMode::Fine),
        "coarse" => Ok(LabelMode::Coarse),
        other => anyhow::bail!("--labels must be fine or coarse, not {other:?}"),
    }
}

/// The paper's steps per training: what `evo train` trains without --steps or --seconds.
pub const PAPER_STEPS: u64 = 25_600;

/// The steps `evo train` asks of the trainer: --steps where given; otherwise
/// [`PAPER_STEPS`], or no cap where --seconds is the budget (a time budget that a step
/// count nobody asked for cut short would train less than it says).
pub fn step_budget(steps: Option<u64>, seconds: Option<f64>) -> u64 {
    match (steps, seconds) {
        (Some(steps), _) => steps,
        (None, Some(_)) => u64::MAX,
        (None, None) => PAPER_STEPS,
    }
}

/// Runs `evo train`.
pub fn run(args: TrainArgs) -> Result<()> {
    anyhow::ensure!(
        args.lr_scale.is_finite() && args.lr_scale > 0.0,
        "--lr-scale must be a positive number, not {}",
        args.lr_scale
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&args.warmup),
        "--warmup must be a share in [0, 1), not {}",
        args.warmup
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&args.collapse_retry),
        "--collapse-retry must be a factor in [0, 1) (0: off), not {}",
        args.collapse_retry
    );
    let probe = rate_probe(&args.lr_probe, args.probe_seconds)?;
    let augment_probe = match (args.augment_probe, args.augment_probe_seconds) {
        (Some(gene), Some(seconds)) => {
            anyhow::ensure!(
                seconds.is_finite() && seconds > 0.0,
                "--augment-probe-seconds must be a positive number of seconds, not {seconds}"
            );
            let margin = args.augment_probe_margin;
            anyhow::ensure!(
                margin.is_finite() && (0.0..=1.0).contains(&margin),
                "--augment-probe-margin must be a share in [0, 1], not {margin}"
            );
            Some(trainer::augment_probe::AugmentProbe {
                alternatives: vec![gene],
                seconds,
                margin,
            })
        }
        _ => None,
    };
    trainer::threads::configure(args.threads);
    let genome = super::genome::read_genome(&args.genome)?;
    anyhow::ensure!(
        args.widen <= 4,
        "--widen takes at most 4 doublings (each multiplies the cost by up to 4), not {}",
        args.widen
    );
    let width_probe = match args.widen_min_epochs {
        Some(min_epochs) => {
            anyhow::ensure!(
                min_epochs.is_finite() && min_epochs >= 0.0,
                "--widen-min-epochs must be a number of epochs, not {min_epochs}"
            );
            anyhow::ensure!(
                args.widen_timing_seconds.is_finite() && args.widen_timing_seconds > 0.0,
                "--widen-timing-seconds must be a positive number of seconds, not {}",
                args.widen_timing_seconds
            );
            Some(trainer::width_probe::WidthProbe {
                max_rounds: args.widen,
                min_epochs,
                seconds: args.widen_timing_seconds,
                limits: genome::Limits::default(),
                epochs_in: if args.widen_epochs_in_main_training {
                    trainer::width_probe::EpochsIn::MainTraining
                } else {
                    trainer::width_probe::EpochsIn::TimeLeft
                },
            })
        }
        None => None,
    };
    let (genome, inits) = if args.widen > 0 && width_probe.is_none() {
        let w = genome::widen(&genome, args.widen, &genome::Limits::default())
            .context("widening the genome")?;
        (w.genome, w.inits)
    } else {
        (genome, Vec::new())
    };
    let device = trainer::device::open(&args.device)?;
    let options = LoadOptions {
        label_mode: label_mode(&args.labels)?,
        ..LoadOptions::default()
    };
    let load_start = std::time::Instant::now();
    let dataset = trainer::data::load(&args.data, &options)
        .with_context(|| format!("loading the data set at {}", args.data.display()))?;
    if !args.quiet {
        eprintln!(
            "data: {} in {:.1} s",
            dataset.describe(),
            load_start.elapsed().as_secs_f64()
        );
    }
    let task = Task::new(&dataset, args.validation, args.split_seed)?;
    let parent = match &args.init_from {
        Some(dir) => Some(
            trainer::individual::load_tensors(dir, &device)
                .with_context(|| format!("reading the weights in {}", dir.display()))?,
        ),
        None => None,
    };
    let augment_judge = match &args.augment_judge {
        Some(dir) => Some(
            trainer::individual::load_tensors(dir, &device)
                .with_context(|| format!("reading the weights in {}", dir.display()))?,
        ),
        None => None,
    };
    let config = TrainConfig {
        steps: step_budget(args.steps, args.seconds),
        batch: args.batch,
        sgd: trainer::optim::SgdConfig {
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            clip: args.gradient_clip,
        },
        augment: trainer::batch::AugmentConfig {
            enabled: !args.no_augment,
            ..Default::default()
        },
        log_every: if args.quiet { 0 } else { args.log_every },
        seed: args.seed,
        schedule: args.schedule,
        warmup: args.warmup,
        max_seconds: args.seconds,
        lr_scale: args.lr_scale,
        rate_probe: probe,
        augment_probe,
        width_probe,
        collapse_retry: (args.collapse_retry > 0.0).then_some(args.collapse_retry),
        cancel: None,
    };
    let start = Start {
        genome: &genome,
        parent: parent.as_ref(),
        invalidated: &Invalidated::none(),
        inits: &inits,
        seed: args.seed,
        augment_judge: augment_judge.as_ref(),
    };
    let trained = trainer::threads::run(|| {
        train_individual(
            &start,
            &device,
            &task,
            &config,
            true,
            args.out.as_deref(),
            |p| match p.steps {
                u64::MAX => eprintln!(
                    "step {:>6} loss {:.4} {:.0} img/s",
                    p.step, p.loss, p.images_per_s
                ),
                steps => eprintln!(
                    "step {:>6}/{} loss {:.4} {:.0} img/s",
                    p.step, steps, p.loss, p.images_per_s
                ),
            },
        )
    })
    .with_context(|| match &args.out {
        Some(out) => format!("training (and saving the model to {})", out.display()),
        None => "training".to_string(),
    })?;
    let line = serde_json::json!({
        "steps": trained.steps,
        "seconds": trained.phases.train,
        "train_loss": trained.train_loss,
        "val_accuracy": trained.fitness,
        "test_accuracy": trained.test_accuracy,
        "inherited": trained.inherited,
        "fresh": trained.fresh,
        "flops": trained.flops,
        "params": trained.params,
        "learning_rate": genome.learning_rate,
        "lr_scale": trained.lr_scale,
        "probe": trained.probe,
        "augment_probe": trained.augment_probe,
        "probe_copy_kept": trained.probe_copy_kept,
        "width_probe": trained.width_probe,
        "collapse": trained.collapse,
        "images_per_s": trained.images_per_s,
        "diverged": trained.diverged,
        "device": trainer::device::describe(&device),
    });
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_budget_without_steps_is_not_cut_short_by_the_papers_steps() {
        assert_eq!(step_budget(None, None), PAPER_STEPS);
        assert_eq!(step_budget(None, Some(600.0)), u64::MAX);
        assert_eq!(step_budget(Some(400), Some(600.0)), 400);
        assert_eq!(step_budget(Some(400), None), 400);
    }
}
