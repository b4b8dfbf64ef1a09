//! One individual from its genome to a trained, scored and saved model, the one path the
//! node's workers and `evo train` both take: build the network (inheriting what a parent
//! gives), train it, score it on the validation images, optionally on the test images,
//! save it, and account for the time of each phase and the FLOPs spent.
//!
//! With a rate probe in its config ([`crate::rate_probe`]), short copies at each of the
//! probe's factors train first; the best of them on the validation images goes on
//! training at its factor for what is left of the time. With an augmentation probe
//! ([`crate::augment_probe`]) short copies with the genome's augmentation gene and each
//! alternative train next, at that factor; the best goes on with its gene (a start from
//! fresh weights may have its copies judged from a trained model's weights instead,
//! [`Start::augment_judge`], at that factor but never above the genome's own rate, and
//! goes on itself with the gene they chose). The copy a
//! probe chose is a scored model: where the rest of the training ends below its score (a
//! long training that overfits, or diverges), the copy's weights, kept aside, are the
//! model instead.
//!
//! With [`TrainConfig::collapse_retry`], a training whose network collapsed (its output
//! no longer depends on its input, [`crate::collapse`]) trains again, once, from where it
//! started at a lower rate, and the model is saved with that rate in its genome.
//!
//! A training whose loss diverged scores 0 (its weights are NaN or infinite: what they
//! would predict means nothing), on validation and test alike.

use crate::augment_probe::{self, AugmentProbe, AugmentProbeReport};
use crate::individual::{self, ModelMeta};
use crate::network::Network;
use crate::rate_probe::{self, RateProbe};
use crate::train::{self, PhaseSeconds, Progress, Task, TrainConfig};
use crate::width_probe::{self, EpochsIn, LaterProbes, WidthProbe, WidthProbeReport, WidthTrial};
use crate::{Result, Tensor};
use candle_core::Device;
use genome::{Genome, Invalidated, TensorInit, TrainingCost};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// What an individual starts from.
pub struct Start<'a> {
    /// Its genome (valid).
    pub genome: &'a Genome,
    /// The parent's trained tensors, `None` for fresh weights.
    pub parent: Option<&'a HashMap<String, Tensor>>,
    /// The tensors its mutations invalidated: not inherited.
    pub invalidated: &'a Invalidated,
    /// How its function-preserving mutations initialize the tensors they changed.
    pub inits: &'a [TensorInit],
    /// The seed of its fresh weights.
    pub seed: u64,
    /// The tensors an augmentation probe's copies start from where they are not the
    /// start's own: a start from fresh weights (`parent` `None`) judges the gene from a
    /// trained model of the same network (a run's fresh final training, from its
    /// member's weights), since short copies from scratch favour the gene that learns
    /// fastest rather than the one a long training needs. The copies train at most at
    /// the genome's own rate ([`augment_probe::judge_lr_scale`]: the rate the judge's
    /// weights were trained at). The network trained on stays the start's; it takes the
    /// chosen gene. `None`: the copies start as the start does.
    pub augment_judge: Option<&'a HashMap<String, Tensor>>,
}

impl Start<'_> {
    /// Whether the augmentation probe's copies are judged from other weights than the
    /// network that trains on (a fresh start with [`Start::augment_judge`]): its chosen
    /// copy is then set aside, not trained on.
    fn judged_elsewhere(&self) -> bool {
        self.augment_judge.is_some() && self.parent.is_none()
    }

    /// Builds the network of `genome` (this start's genome, or a variant of it with the
    /// same tensors: another augmentation gene or rate) on `device` from this start's
    /// inheritance and seed.
    fn build(
        &self,
        genome: &Genome,
        device: &Device,
    ) -> Result<(Network, crate::weights::Inheritance)> {
        Network::with_inits(
            genome,
            device,
            self.parent,
            self.invalidated,
            self.inits,
            self.seed,
        )
    }
}

/// What training one individual gave.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedIndividual {
    /// Validation accuracy (0 if training diverged).
    pub fitness: f64,
    /// Test accuracy, when it was asked for (0 if training diverged).
    pub test_accuracy: Option<f64>,
    /// Steps run.
    pub steps: u64,
    /// Wall time of building, training, scoring and saving, in seconds.
    pub seconds: f64,
    /// Mean loss of the last steps.
    pub train_loss: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// Whether the loss became NaN or infinite (training stopped there).
    pub diverged: bool,
    /// FLOPs spent training and validating.
    pub flops: u64,
    /// Trainable parameters.
    pub params: u64,
    /// Tensors inherited from the parent.
    pub inherited: usize,
    /// Tensors freshly initialized.
    pub fresh: usize,
    /// Where the wall time went.
    pub phases: PhaseSeconds,
    /// The factor of the genome's learning rate the training ran at.
    pub lr_scale: f64,
    /// What the rate probe found, if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    /// What the augmentation probe found, if one ran (the gene the model trained with
    /// is then its `chosen`, which the saved genome carries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment_probe: Option<AugmentProbeReport>,
    /// Where the training after the probes ended below the validation accuracy of the
    /// copy they chose, so that copy is the model: the accuracy the longer training had
    /// reached (discarded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_copy_kept: Option<f64>,
    /// Where the training collapsed and the model is a second training at a lower rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse: Option<CollapseReport>,
    /// What the width probe measured, if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width_probe: Option<WidthProbeReport>,
    /// The genome the model was trained and saved with where the width probe widened
    /// the start's (`None`: the start's genome, up to the augmentation gene and rate the
    /// other probes and a collapse retry set).
    #[serde(skip)]
    pub widened: Option<Genome>,
}

/// What a rate probe found: the validation accuracy of each factor's short copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The factors tried, in order.
    pub factors: Vec<f64>,
    /// Each copy's validation accuracy (0 if it diverged).
    pub scores: Vec<f64>,
    /// Each copy's mean training loss over its last steps (as
    /// [`crate::train::TrainOutcome::train_loss`]).
    pub losses: Vec<f64>,
    /// Seconds the copies took, their validation included.
    pub seconds: f64,
}

/// The winner of a rate probe and what the probe cost.
struct Probed {
    net: Network,
    factor: f64,
    /// The chosen copy's validation accuracy.
    score: f64,
    steps: u64,
    report: ProbeReport,
}

/// Trains one short copy of a probe (`net`, with `config`'s time and rate; no probe of
/// its own) and scores it on the validation images: its steps, its training loss over the
/// last steps, and its validation accuracy (0 if it diverged).
fn train_trial(
    net: &Network,
    task: &Task<'_>,
    config: &TrainConfig,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<(u64, f64, f64)> {
    let trial = TrainConfig {
        rate_probe: None,
        augment_probe: None,
        ..config.clone()
    };
    let outcome = train::train(net, task, &trial, on_progress)?;
    let score = if outcome.diverged {
        0.0
    } else {
        task.validation_accuracy(net)?
    };
    Ok((outcome.steps, outcome.train_loss, score))
}

/// Trains a short copy of the individual of `start` at each of `probe`'s factors (the
/// first copy is `first`, already built), scores each on the validation images and
/// keeps the best.
fn run_probe(
    start: &Start<'_>,
    device: &Device,
    task: &Task<'_>,
    config: &TrainConfig,
    probe: &RateProbe,
    first: Network,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<Probed> {
    let began = Instant::now();
    let mut scores = Vec::with_capacity(probe.factors.len());
    let mut losses = Vec::with_capacity(probe.factors.len());
    let mut steps = 0;
    let mut best: Option<Network> = None;
    let mut first = Some(first);
    for (i, &factor) in probe.factors.iter().enumerate() {
        let net = match first.take() {
            Some(net) => net,
            None => start.build(start.genome, device)?.0,
        };
        let trial = TrainConfig {
            max_seconds: Some(probe.seconds),
            lr_scale: factor,
            ..config.clone()
        };
        let (trained, loss, score) = train_trial(&net, task, &trial, &mut *on_progress)?;
        steps += trained;
        losses.push(loss);
        scores.push(score);
        if rate_probe::choose(&scores) == Some(i) {
            best = Some(net);
        }
    }
    let chosen = rate_probe::choose(&scores).unwrap_or(0);
    let net = best
        .ok_or_else(|| crate::error::TrainError::Mismatch("a rate probe with no factors".into()))?;
    Ok(Probed {
        net,
        factor: probe.factors[chosen],
        score: scores[chosen],
        steps,
        report: ProbeReport {
            factors: probe.factors.clone(),
            scores,
            losses,
            seconds: began.elapsed().as_secs_f64(),
        },
    })
}

/// The winner of an augmentation probe and what the probe cost.
struct AugmentProbed {
    net: Network,
    /// The chosen copy's validation accuracy.
    score: f64,
    steps: u64,
    report: AugmentProbeReport,
}

/// Trains a short copy of the individual of `start` with each of `genes` (the genome's
/// own first) for `probe`'s seconds at `config`'s factor, each from `start`'s weights
/// with a decay of its own, scores each on the validation images and keeps the one
/// [`augment_probe::choose`] picks with `probe`'s margin.
fn run_augment_probe(
    start: &Start<'_>,
    device: &Device,
    task: &Task<'_>,
    config: &TrainConfig,
    probe: &AugmentProbe,
    genes: &[genome::AugmentGene],
    on_progress: &mut impl FnMut(&Progress),
) -> Result<AugmentProbed> {
    let began = Instant::now();
    let mut scores = Vec::with_capacity(genes.len());
    let mut losses = Vec::with_capacity(genes.len());
    let mut steps = 0;
    let mut nets = Vec::with_capacity(genes.len());
    for gene in genes {
        let mut genome = start.genome.clone();
        genome.augment = Some(*gene);
        let (net, _) = start.build(&genome, device)?;
        let trial = TrainConfig {
            max_seconds: Some(probe.seconds),
            ..config.clone()
        };
        let (trained, loss, score) = train_trial(&net, task, &trial, &mut *on_progress)?;
        steps += trained;
        losses.push(loss);
        scores.push(score);
        nets.push(net);
    }
    let chosen = augment_probe::choose(&scores, probe.margin).unwrap_or(0);
    let net = nets.into_iter().nth(chosen).ok_or_else(|| {
        crate::error::TrainError::Mismatch("an augmentation probe with no genes".into())
    })?;
    Ok(AugmentProbed {
        net,
        score: scores[chosen],
        steps,
        report: AugmentProbeReport {
            genes: genes.to_vec(),
            scores,
            losses,
            chosen: genes[chosen],
            seconds: began.elapsed().as_secs_f64(),
        },
    })
}

/// Builds, trains, scores (and with `test` also on the test images) the individual of
/// `start` on `task`, and saves the model into `save_to` if given; `on_progress` hears
/// the training's progress.
///
/// With a width probe ([`TrainConfig::width_probe`], a time budget and a start without
/// initializations of its own) the individual trained is the widest form of the start's
/// network whose timed pace gives the probe's floor of epochs, or the start's own.
pub fn train_individual(
    start: &Start<'_>,
    device: &Device,
    task: &Task<'_>,
    config: &TrainConfig,
    test: bool,
    save_to: Option<&Path>,
    on_progress: impl FnMut(&Progress),
) -> Result<TrainedIndividual> {
    let probe = config
        .width_probe
        .as_ref()
        .filter(|p| p.is_active() && config.max_seconds.is_some() && start.inits.is_empty());
    let Some(probe) = probe else {
        let config = TrainConfig {
            width_probe: None,
            ..config.clone()
        };
        return train_started(start, device, task, &config, test, save_to, on_progress);
    };
    let (wide, report) = run_width_probe(start, device, task, config, probe)?;
    let config = TrainConfig {
        max_seconds: rate_probe::remaining_seconds(config.max_seconds, report.seconds),
        width_probe: None,
        ..config.clone()
    };
    let mut trained = match &wide {
        Some(w) => {
            let widened = Start {
                genome: &w.genome,
                inits: &w.inits,
                ..*start
            };
            train_started(&widened, device, task, &config, test, save_to, on_progress)?
        }
        None => train_started(start, device, task, &config, test, save_to, on_progress)?,
    };
    trained.seconds += report.seconds;
    trained.phases.train += report.seconds;
    trained.width_probe = Some(report);
    trained.widened = wide.map(|w| w.genome);
    Ok(trained)
}

/// Times each width of `start`'s network that `probe` allows, widest first, for the
/// probe's seconds after one step (which allocates), each from the start's weights on
/// `device`; the first whose pace gives `probe.min_epochs` epochs in the time `config`
/// has left is the one the training takes (`None`: the network as it is).
fn run_width_probe(
    start: &Start<'_>,
    device: &Device,
    task: &Task<'_>,
    config: &TrainConfig,
    probe: &WidthProbe,
) -> Result<(Option<genome::Widened>, WidthProbeReport)> {
    let began = Instant::now();
    let budget = config.max_seconds.unwrap_or(0.0);
    let timing = TrainConfig {
        steps: 1,
        max_seconds: None,
        log_every: 0,
        rate_probe: None,
        augment_probe: None,
        width_probe: None,
        collapse_retry: None,
        ..config.clone()
    };
    let discarded = match probe.epochs_in {
        EpochsIn::TimeLeft => 0.0,
        EpochsIn::MainTraining => width_probe::discarded_seconds(&later_probes(start, config)),
    };
    let mut trials: Vec<WidthTrial> = Vec::new();
    let mut chosen = None;
    for rounds in (1..=probe.max_rounds.min(width_probe::MAX_ROUNDS)).rev() {
        // An error is a start that is not valid under the limits: it trains as it is.
        let Ok(wide) = genome::widen(start.genome, rounds, &probe.limits) else {
            break;
        };
        if wide.doublings == 0 || trials.iter().any(|t| t.doublings == wide.doublings) {
            continue;
        }
        let net = Network::with_inits(
            &wide.genome,
            device,
            start.parent,
            start.invalidated,
            &wide.inits,
            start.seed,
        )?
        .0;
        task.check(&net)?;
        train::train(&net, task, &timing, |_| {})?;
        let timed = TrainConfig {
            steps: u64::MAX,
            max_seconds: Some(probe.seconds),
            ..timing.clone()
        };
        let outcome = train::train(&net, task, &timed, |_| {})?;
        let steps_per_s = width_probe::pace(outcome.steps, outcome.seconds);
        let left = budget - began.elapsed().as_secs_f64();
        let counted = width_probe::counted_seconds(left, discarded, probe.epochs_in);
        let epochs = width_probe::epochs(steps_per_s, counted, config.batch, task.train.len());
        trials.push(WidthTrial {
            rounds,
            doublings: wide.doublings,
            forward_flops: wide.analysis.cost.forward_flops,
            steps_per_s,
            epochs,
        });
        if width_probe::accepts(epochs, probe.min_epochs) {
            chosen = Some((rounds, wide));
            break;
        }
    }
    let (rounds, doublings) = chosen.as_ref().map_or((0, 0), |(r, w)| (*r, w.doublings));
    let report = WidthProbeReport {
        trials,
        rounds,
        doublings,
        seconds: began.elapsed().as_secs_f64(),
        discarded_seconds: discarded,
    };
    Ok((chosen.map(|(_, w)| w), report))
}

/// The probes `config` runs after a width probe of `start` (a rate probe, an
/// augmentation probe with a choice), as [`width_probe::discarded_seconds`] counts them.
fn later_probes(start: &Start<'_>, config: &TrainConfig) -> LaterProbes {
    let rate = config.rate_probe.as_ref().filter(|p| p.is_active());
    let augment = config
        .augment_probe
        .as_ref()
        .filter(|p| p.is_active())
        .map(|p| {
            let genes = p.candidates(start.genome.augment, config.augment.as_gene());
            (genes.len(), p.seconds)
        })
        .filter(|(copies, _)| *copies > 1);
    LaterProbes {
        rate_copies: rate.map_or(0, |p| p.factors.len()),
        rate_seconds: rate.map_or(0.0, |p| p.seconds),
        augment_copies: augment.map_or(0, |(copies, _)| copies),
        augment_seconds: augment.map_or(0.0, |(_, seconds)| seconds),
        augment_chosen_goes_on: !start.judged_elsewhere(),
    }
}

/// [`train_individual`] once the network's width is settled.
fn train_started(
    start: &Start<'_>,
    device: &Device,
    task: &Task<'_>,
    config: &TrainConfig,
    test: bool,
    save_to: Option<&Path>,
    on_progress: impl FnMut(&Progress),
) -> Result<TrainedIndividual> {
    let began = Instant::now();
    let mut phases = PhaseSeconds::default();
    let mut clock = Instant::now();
    let mut lap = |phase: &mut f64| {
        let now = Instant::now();
        *phase = (now - clock).as_secs_f64();
        clock = now;
    };
    let (net, inheritance) = start.build(start.genome, device)?;
    task.check(&net)?;
    lap(&mut phases.build);
    let mut on_progress = on_progress;
    let (net, config, probed) = match &config.rate_probe {
        Some(probe) if probe.is_active() => {
            let p = run_probe(start, device, task, config, probe, net, &mut on_progress)?;
            let rest = TrainConfig {
                lr_scale: p.factor,
                max_seconds: rate_probe::remaining_seconds(config.max_seconds, p.report.seconds),
                rate_probe: None,
                ..config.clone()
            };
            (p.net, rest, Some((p.steps, p.report, p.score)))
        }
        _ => (net, config.clone(), None),
    };
    let augment_genes = config
        .augment_probe
        .as_ref()
        .filter(|p| p.is_active())
        .map(|p| {
            (
                p,
                p.candidates(start.genome.augment, config.augment.as_gene()),
            )
        })
        .filter(|(_, genes)| genes.len() > 1);
    let (net, config, augment_probed) = match augment_genes {
        Some((probe, genes)) => {
            // `config.max_seconds` is what the rate probe left.
            let probe = AugmentProbe {
                seconds: config
                    .max_seconds
                    .map_or(probe.seconds, |left| left.min(probe.seconds)),
                ..probe.clone()
            };
            let judge = Start {
                parent: start.augment_judge.or(start.parent),
                ..*start
            };
            // Copies from a judge's trained weights train at most at the genome's own
            // rate (the rate probe's factor was chosen for the fresh network).
            let judged_fresh = start.judged_elsewhere();
            let copies = TrainConfig {
                lr_scale: if judged_fresh {
                    augment_probe::judge_lr_scale(config.lr_scale)
                } else {
                    config.lr_scale
                },
                ..config.clone()
            };
            let a = run_augment_probe(
                &judge,
                device,
                task,
                &copies,
                &probe,
                &genes,
                &mut on_progress,
            )?;
            let rest = TrainConfig {
                max_seconds: rate_probe::remaining_seconds(config.max_seconds, a.report.seconds),
                augment_probe: None,
                ..config
            };
            // The copies judged from other weights: the start's network goes on with
            // the gene they chose, and the chosen copy (the same network, a scored
            // model) is kept aside.
            let (net, judged_copy) = if judged_fresh {
                let mut genome = net.genome().clone();
                genome.augment = Some(a.report.chosen);
                let (judged, _) = start.build(&genome, device)?;
                judged.weights().restore(&net.weights().snapshot()?)?;
                (judged, Some(a.net))
            } else {
                (a.net, None)
            };
            (net, rest, Some((a.steps, a.report, a.score, judged_copy)))
        }
        None => (net, config, None),
    };
    let config = &config;
    // The probes' chosen copy, kept aside with its score in case the rest ends below it.
    let chosen_copy = match (&augment_probed, &probed) {
        (Some((_, _, score, Some(copy))), _) if *score > 0.0 => {
            Some((copy.weights().snapshot()?, *score))
        }
        (Some((_, _, score, None)), _) | (None, Some((_, _, score))) if *score > 0.0 => {
            Some((net.weights().snapshot()?, *score))
        }
        _ => None,
    };
    let outcome = train::train(&net, task, config, &mut on_progress)?;
    let (net, outcome, collapse) = match config.collapse_retry {
        Some(factor) if outcome.collapsed => {
            let from = chosen_copy.as_ref().map(|(weights, _)| weights);
            let retried = retry_collapsed(
                start,
                device,
                task,
                config,
                Retry {
                    collapsed: &net,
                    first: &outcome,
                    from,
                    factor,
                },
                &mut on_progress,
            )?;
            (retried.0, retried.1, Some(retried.2))
        }
        _ => (net, outcome, None),
    };
    lap(&mut phases.train);
    let probe_steps = probed.as_ref().map_or(0, |(steps, _, _)| *steps)
        + augment_probed.as_ref().map_or(0, |(steps, _, _, _)| *steps);
    let probe = probed.map(|(_, report, _)| report);
    let augment_probe = augment_probed.map(|(_, report, _, _)| report);
    let trained_fitness = if outcome.diverged {
        0.0
    } else {
        task.validation_accuracy(&net)?
    };
    let Settled {
        diverged,
        fitness,
        probe_copy_kept,
    } = settle(&net, task, chosen_copy, outcome.diverged, trained_fitness)?;
    let score = |accuracy: &dyn Fn() -> Result<f64>| -> Result<f64> {
        if diverged {
            Ok(0.0)
        } else {
            accuracy()
        }
    };
    let test_accuracy = if test {
        Some(score(&|| task.test_accuracy(&net))?)
    } else {
        None
    };
    lap(&mut phases.validate);
    if let Some(dir) = save_to {
        let meta = ModelMeta {
            normalization: task.norm.clone(),
            steps: outcome.steps + probe_steps,
            val_accuracy: Some(fitness),
            test_accuracy,
            dataset: task.dataset.name.clone(),
            weights_sha256: None,
        };
        individual::save(dir, net.genome(), net.weights(), &meta)?;
    }
    lap(&mut phases.save);
    let cost = TrainingCost::new(
        net.analysis().cost.forward_flops,
        config.batch as u64,
        outcome.steps + probe_steps,
        task.validation.len() as u64
            * (1 + u64::from(probe_copy_kept.is_some())
                + probe.as_ref().map_or(0, |p| p.scores.len() as u64)
                + augment_probe.as_ref().map_or(0, |p| p.scores.len() as u64)),
    );
    Ok(TrainedIndividual {
        fitness,
        test_accuracy,
        steps: outcome.steps + probe_steps,
        seconds: began.elapsed().as_secs_f64(),
        train_loss: outcome.train_loss,
        images_per_s: outcome.images_per_s,
        diverged,
        flops: cost.total(),
        params: net.analysis().cost.params,
        inherited: inheritance.inherited,
        fresh: inheritance.fresh,
        phases,
        lr_scale: config.lr_scale,
        probe,
        augment_probe,
        probe_copy_kept,
        collapse,
        width_probe: None,
        widened: None,
    })
}

/// Where a training collapsed ([`crate::collapse`]) and trained again: the step it was
/// stopped at and the learning rate of the training that made the model, which the
/// genome the model is saved with carries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CollapseReport {
    /// The steps the collapsed training ran before it was stopped.
    pub at_step: u64,
    /// The genome's learning rate the network trained at again (the factor
    /// [`TrainConfig::collapse_retry`] of the rate it collapsed at).
    pub learning_rate: f64,
}

/// What a retry starts from: the network that collapsed (its genome), how its training
/// went, the probes' chosen copy if there was one, and the factor of the rate.
struct Retry<'a> {
    collapsed: &'a Network,
    first: &'a train::TrainOutcome,
    from: Option<&'a HashMap<String, Tensor>>,
    factor: f64,
}

/// Trains the individual of `start` again after its training collapsed: the collapsed
/// network's genome (its augmentation gene included) at `factor` of its rate, from the
/// probes' chosen copy where there was one and from `start`'s weights otherwise, for all
/// of `config`'s steps (a child is scored after as many steps as any other) or what is
/// left of its seconds, with no watch (one retry). The outcome counts both trainings'
/// steps and seconds.
fn retry_collapsed(
    start: &Start<'_>,
    device: &Device,
    task: &Task<'_>,
    config: &TrainConfig,
    retry: Retry<'_>,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<(Network, train::TrainOutcome, CollapseReport)> {
    let mut genome = retry.collapsed.genome().clone();
    genome.learning_rate *= retry.factor;
    let (net, _) = start.build(&genome, device)?;
    if let Some(weights) = retry.from {
        net.weights().restore(weights)?;
    }
    let again = TrainConfig {
        max_seconds: rate_probe::remaining_seconds(config.max_seconds, retry.first.seconds),
        collapse_retry: None,
        ..config.clone()
    };
    let outcome = train::train(&net, task, &again, on_progress)?;
    let report = CollapseReport {
        at_step: retry.first.steps,
        learning_rate: genome.learning_rate,
    };
    let outcome = train::TrainOutcome {
        steps: retry.first.steps + outcome.steps,
        seconds: retry.first.seconds + outcome.seconds,
        ..outcome
    };
    Ok((net, outcome, report))
}

/// How a training ended once its probes' chosen copy had its say: whether the model
/// diverged, its fitness, and whether the copy was kept in place of the training.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settled {
    /// Whether the model diverged (never, where the copy was kept).
    diverged: bool,
    /// The model's validation accuracy (0 where it diverged).
    fitness: f64,
    /// Where the copy was kept: the validation accuracy the discarded training reached.
    probe_copy_kept: Option<f64>,
}

/// The end of a training: where the probes chose a copy (its weights, as taken before
/// the rest of the training, and its score) and that copy scored above what the
/// training reached (`trained_fitness`, 0 where it `diverged`), `net` gets the copy's
/// weights back and is scored again; otherwise it stays as the training left it.
fn settle(
    net: &Network,
    task: &Task,
    chosen_copy: Option<(HashMap<String, Tensor>, f64)>,
    diverged: bool,
    trained_fitness: f64,
) -> Result<Settled> {
    match chosen_copy {
        Some((weights, score)) if keep_probe_copy(score, trained_fitness) => {
            net.weights().restore(&weights)?;
            Ok(Settled {
                diverged: false,
                fitness: task.validation_accuracy(net)?,
                probe_copy_kept: Some(trained_fitness),
            })
        }
        _ => Ok(Settled {
            diverged,
            fitness: trained_fitness,
            probe_copy_kept: None,
        }),
    }
}

/// Whether the copy a probe chose, scored `probe_score` on the validation images, is
/// the model rather than the longer training that went on from it and scored
/// `trained_score`: only where the training lost ground (a tie keeps the training).
fn keep_probe_copy(probe_score: f64, trained_score: f64) -> bool {
    probe_score > trained_score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Split};
    use genome::InputShape;

    /// Trains the individual of `start` on the CPU and saves it into a temporary folder
    /// (kept while the caller holds it).
    fn train_and_save(
        start: &Start<'_>,
        task: &Task<'_>,
        config: &TrainConfig,
    ) -> (TrainedIndividual, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let t = train_individual(
            start,
            &Device::Cpu,
            task,
            config,
            false,
            Some(dir.path()),
            |_| {},
        )
        .unwrap();
        (t, dir)
    }

    /// `n` 4x4 RGB images whose class is their brightest channel.
    fn split(n: usize) -> Split {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = (i % 3) as u32;
            for _ in 0..16 {
                for c in 0..3u32 {
                    images.push(if c == class { 200 } else { (i * 7 % 50) as u8 });
                }
            }
            labels.push(class);
        }
        Split { images, labels }
    }

    #[test]
    fn the_probe_copy_is_kept_only_where_the_training_after_it_lost_ground() {
        assert!(keep_probe_copy(0.6855, 0.647));
        assert!(keep_probe_copy(0.4, 0.0));
        assert!(!keep_probe_copy(0.6, 0.6));
        assert!(!keep_probe_copy(0.5, 0.7));
    }

    /// Settling a training: a copy that scored above the training's end comes back, with
    /// its weights and its score; one that did not leaves the trained network as it is;
    /// a diverged training gives way to any copy that scored.
    #[test]
    fn settling_restores_the_copy_only_where_it_beat_the_training() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let genome = Genome::initial(shape, 3);
        let (net, _) =
            Network::with_inits(&genome, &Device::Cpu, None, &Invalidated::none(), &[], 1).unwrap();
        let values = |net: &Network| -> Vec<Vec<f32>> {
            let snap = net.weights().snapshot().unwrap();
            let mut names: Vec<&String> = snap.keys().collect();
            names.sort();
            names
                .iter()
                .map(|n| snap[*n].flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        };
        let fresh = (net.weights().snapshot().unwrap(), values(&net));
        let fresh_score = task.validation_accuracy(&net).unwrap();
        let config = TrainConfig {
            steps: 30,
            batch: 10,
            log_every: 0,
            ..TrainConfig::default()
        };
        train::train(&net, &task, &config, |_| {}).unwrap();
        let trained = (net.weights().snapshot().unwrap(), values(&net));
        let trained_score = task.validation_accuracy(&net).unwrap();
        assert!(
            trained_score > fresh_score,
            "{fresh_score} -> {trained_score}"
        );

        // The copy (the trained weights) beat where the training ended (the fresh ones).
        net.weights().restore(&fresh.0).unwrap();
        let s = settle(
            &net,
            &task,
            Some((trained.0, trained_score)),
            false,
            fresh_score,
        )
        .unwrap();
        assert_eq!(
            s,
            Settled {
                diverged: false,
                fitness: trained_score,
                probe_copy_kept: Some(fresh_score),
            }
        );
        assert_eq!(values(&net), trained.1);

        // A copy below the training's end changes nothing.
        let s = settle(
            &net,
            &task,
            Some((fresh.0, fresh_score)),
            false,
            trained_score,
        )
        .unwrap();
        assert_eq!(s.probe_copy_kept, None);
        assert_eq!(s.fitness, trained_score);
        assert_eq!(values(&net), trained.1);

        // A diverged training (fitness 0) keeps any copy that scored, and is no longer
        // diverged; with no copy it stays diverged.
        let snap = net.weights().snapshot().unwrap();
        let s = settle(&net, &task, Some((snap, trained_score)), true, 0.0).unwrap();
        assert!(!s.diverged && s.fitness == trained_score, "{s:?}");
        let s = settle(&net, &task, None, true, 0.0).unwrap();
        assert!(s.diverged && s.fitness == 0.0, "{s:?}");
    }

    /// 4x4 RGB images into a 3x3 convolution of 8 channels, a BN_RELU vertex, and the
    /// output (3 classes), at learning rate `rate`.
    fn bn_relu_genome(rate: f64) -> Genome {
        use genome::{Conv, Edge, EdgeOp, Vertex, VertexKind};
        Genome {
            input: InputShape {
                height: 4,
                width: 4,
                channels: 3,
            },
            classes: 3,
            learning_rate: rate,
            augment: None,
            input_vertex: 0,
            output_vertex: 2,
            vertices: vec![
                Vertex {
                    id: 0,
                    kind: VertexKind::Linear,
                },
                Vertex {
                    id: 1,
                    kind: VertexKind::BnRelu,
                },
                Vertex {
                    id: 2,
                    kind: VertexKind::Linear,
                },
            ],
            edges: vec![
                Edge {
                    id: 3,
                    from: 0,
                    to: 1,
                    primary: true,
                    op: EdgeOp::Conv(Conv {
                        filter_h: 3,
                        filter_w: 3,
                        stride: 1,
                        channels: 8,
                    }),
                },
                Edge {
                    id: 4,
                    from: 1,
                    to: 2,
                    primary: true,
                    op: EdgeOp::Identity,
                },
            ],
            next_id: 5,
        }
    }

    /// A BN_RELU network trained at a rate of 5 with no clipping dies within its first
    /// steps (its output the same for every image): unwatched, it trains all its steps
    /// and ends so; watched, its training stops at the second check.
    #[test]
    fn a_collapse_stops_a_watched_training_and_only_a_watched_one() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let genome = bn_relu_genome(5.0);
        let config = TrainConfig {
            steps: 200,
            batch: 10,
            log_every: 0,
            sgd: crate::optim::SgdConfig {
                clip: 0.0,
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        let build = || {
            Network::with_inits(&genome, &Device::Cpu, None, &Invalidated::none(), &[], 1)
                .unwrap()
                .0
        };
        let unwatched = build();
        let o = train::train(&unwatched, &task, &config, |_| {}).unwrap();
        assert!(!o.collapsed && !o.diverged && o.steps == 200, "{o:?}");
        let dims = task.dims();
        let mut buffer = Vec::new();
        crate::batch::assemble(
            &dataset.train.images,
            dims,
            &task.train[..10],
            &task.norm,
            None,
            &mut buffer,
        );
        let x = Tensor::from_slice(&buffer, (10, 3, 4, 4), &Device::Cpu).unwrap();
        let spread = crate::collapse::logit_spread(&unwatched.forward(&x, true).unwrap()).unwrap();
        assert!(spread < 1e-3, "{spread}");

        let watched = build();
        let config = TrainConfig {
            collapse_retry: Some(0.5),
            ..config
        };
        let o = train::train(&watched, &task, &config, |_| {}).unwrap();
        assert!(o.collapsed && !o.diverged, "{o:?}");
        assert!(o.steps >= 60 && o.steps < 200 && o.steps % 20 == 0, "{o:?}");
    }

    /// A collapsed training trains again, once, at half the rate for all its steps, and
    /// the model is saved with that rate; the steps of both count.
    #[test]
    fn a_collapsed_individual_trains_again_at_a_lower_rate_and_keeps_it() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let genome = bn_relu_genome(5.0);
        let start = fresh_start(&genome);
        let config = TrainConfig {
            steps: 200,
            batch: 10,
            log_every: 0,
            collapse_retry: Some(0.5),
            sgd: crate::optim::SgdConfig {
                clip: 0.0,
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        let (t, dir) = train_and_save(&start, &task, &config);
        let c = t.collapse.expect("the training at rate 5 collapses");
        assert_eq!(c.learning_rate, 2.5);
        assert!(c.at_step >= 60 && c.at_step < 200, "{c:?}");
        assert_eq!(t.steps, c.at_step + 200);
        let saved = individual::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(saved.genome.learning_rate, 2.5);
        assert_eq!(saved.meta.steps, t.steps);
        // Off, the same training runs its steps and reports no collapse.
        let off = TrainConfig {
            collapse_retry: None,
            ..config
        };
        let t = train_individual(&start, &Device::Cpu, &task, &off, false, None, |_| {}).unwrap();
        assert!(t.collapse.is_none());
        assert_eq!(t.steps, 200);
    }

    /// Nothing invalidated: a [`fresh_start`]'s inheritance.
    static NOTHING_INVALIDATED: Invalidated = Invalidated::Tensors(Vec::new());

    /// A start of `genome`'s network from fresh weights (seed 1): nothing inherited, no
    /// augmentation judge.
    fn fresh_start(genome: &Genome) -> Start<'_> {
        Start {
            genome,
            parent: None,
            invalidated: &NOTHING_INVALIDATED,
            inits: &[],
            seed: 1,
            augment_judge: None,
        }
    }

    /// Three colour classes of 4x4 images: 60 to train (20 held out), 30 to test.
    fn rgb_dataset() -> Dataset {
        Dataset {
            name: "test".into(),
            classes: vec!["r".into(), "g".into(), "b".into()],
            height: 4,
            width: 4,
            channels: 3,
            train: split(60),
            test: split(30),
        }
    }

    #[test]
    fn an_individual_is_trained_scored_saved_and_accounted_for() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let genome = Genome::initial(shape, 3);
        let start = fresh_start(&genome);
        let config = TrainConfig {
            steps: 5,
            batch: 10,
            log_every: 1,
            ..TrainConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut heard = 0;
        let t = train_individual(
            &start,
            &Device::Cpu,
            &task,
            &config,
            true,
            Some(dir.path()),
            |_| heard += 1,
        )
        .unwrap();
        assert_eq!(t.steps, 5);
        assert_eq!(heard, 5);
        assert!((0.0..=1.0).contains(&t.fitness));
        assert!(t.test_accuracy.is_some());
        assert_eq!(t.inherited, 0);
        assert!(t.fresh > 0 && t.flops > 0 && t.params > 0);
        assert!(t.phases.total() <= t.seconds + 1e-6);
        let saved = individual::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(saved.genome, genome);
        assert_eq!(saved.meta.val_accuracy, Some(t.fitness));
        assert_eq!(saved.meta.test_accuracy, t.test_accuracy);
        assert_eq!(saved.meta.steps, 5);
    }

    #[test]
    fn a_rate_probe_keeps_the_factor_that_scores_best_and_counts_its_copies() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let genome = Genome::initial(shape, 3);
        let start = fresh_start(&genome);
        // At a millionth of the genome's rate a copy stays where it started; at the
        // genome's own it learns these easy classes.
        let config = TrainConfig {
            steps: 20,
            batch: 10,
            log_every: 0,
            max_seconds: Some(1000.0),
            rate_probe: Some(RateProbe {
                factors: vec![1e-6, 1.0],
                seconds: 100.0,
            }),
            ..TrainConfig::default()
        };
        let (t, dir) = train_and_save(&start, &task, &config);
        let probe = t.probe.as_ref().unwrap();
        assert_eq!(probe.factors, vec![1e-6, 1.0]);
        assert!(probe.scores[1] > probe.scores[0], "{probe:?}");
        // Each copy's own training loss: finite, and different at different rates.
        assert_eq!(probe.losses.len(), 2);
        assert!(probe.losses.iter().all(|l| l.is_finite()), "{probe:?}");
        assert_ne!(probe.losses[0], probe.losses[1], "{probe:?}");
        assert_eq!(t.lr_scale, 1.0);
        assert!(!t.diverged);
        // Both copies' steps and the long training's.
        assert_eq!(t.steps, 20 + 20 + 20);
        let saved = individual::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(saved.meta.steps, t.steps);
        // Without a probe: the configured factor, no report.
        let plain = TrainConfig {
            rate_probe: None,
            lr_scale: 0.5,
            ..config
        };
        let t = train_individual(&start, &Device::Cpu, &task, &plain, false, None, |_| {}).unwrap();
        assert!(t.probe.is_none());
        assert_eq!(t.lr_scale, 0.5);
        assert_eq!(t.steps, 20);
    }

    /// The linear classifier of [`rgb_dataset`]'s images with its own augmentation gene
    /// (flip, no crop), that gene, and another (crop, no flip): an augmentation probe's
    /// fixture.
    fn genes_fixture() -> (Genome, genome::AugmentGene, genome::AugmentGene) {
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let own = genome::AugmentGene {
            crop: false,
            flip: true,
        };
        let other = genome::AugmentGene {
            crop: true,
            flip: false,
        };
        let mut genome = Genome::initial(shape, 3);
        genome.augment = Some(own);
        (genome, own, other)
    }

    #[test]
    fn an_augmentation_probe_goes_on_with_the_gene_that_scores_best_and_saves_it() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let (genome, own, other) = genes_fixture();
        let start = fresh_start(&genome);
        let config = TrainConfig {
            steps: 20,
            batch: 10,
            log_every: 0,
            max_seconds: Some(1000.0),
            augment_probe: Some(crate::augment_probe::AugmentProbe {
                alternatives: vec![other, own],
                seconds: 100.0,
                margin: 0.05,
            }),
            ..TrainConfig::default()
        };
        let (t, dir) = train_and_save(&start, &task, &config);
        let probe = t.augment_probe.as_ref().unwrap();
        // The genome's own gene first, each gene once.
        assert_eq!(probe.genes, vec![own, other]);
        assert_eq!(probe.scores.len(), 2);
        assert!(probe.losses.iter().all(|l| l.is_finite()), "{probe:?}");
        // The genome's own gene only where it wins by more than the margin.
        let expected = if probe.scores[0] > probe.scores[1] + 0.05 {
            own
        } else {
            other
        };
        assert_eq!(probe.chosen, expected, "{probe:?}");
        // Both copies' steps and the long training's, each validated.
        assert_eq!(t.steps, 20 + 20 + 20);
        // The model is saved with the gene it trained with.
        let saved = individual::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(saved.genome.augment, Some(probe.chosen));
        assert_eq!(saved.meta.steps, t.steps);
        // An alternative equal to the genome's own gene: nothing to choose, no probe.
        let same = TrainConfig {
            augment_probe: Some(crate::augment_probe::AugmentProbe {
                alternatives: vec![own],
                seconds: 100.0,
                margin: 0.0,
            }),
            ..config
        };
        let t = train_individual(&start, &Device::Cpu, &task, &same, false, None, |_| {}).unwrap();
        assert!(t.augment_probe.is_none());
        assert_eq!(t.steps, 20);
    }

    /// `genome`'s network trained from fresh weights for 200 steps and saved: the
    /// judge of the augmentation-judge tests, with its tensors as read back.
    fn trained_judge(
        genome: &Genome,
        task: &Task<'_>,
    ) -> (TrainedIndividual, HashMap<String, Tensor>) {
        let fresh = fresh_start(genome);
        let trained = TrainConfig {
            steps: 200,
            batch: 10,
            log_every: 0,
            ..TrainConfig::default()
        };
        let (judge, dir) = train_and_save(&fresh, task, &trained);
        let tensors = individual::load_tensors(dir.path(), &Device::Cpu).unwrap();
        (judge, tensors)
    }

    /// 20 steps of 10 images at `lr_scale` of the genome's rate, with an augmentation
    /// probe against `other` (no margin, time enough for both copies): the training
    /// of the augmentation-judge tests.
    fn judged_probe_config(other: genome::AugmentGene, lr_scale: f64) -> TrainConfig {
        TrainConfig {
            steps: 20,
            batch: 10,
            log_every: 0,
            lr_scale,
            max_seconds: Some(1000.0),
            augment_probe: Some(crate::augment_probe::AugmentProbe {
                alternatives: vec![other],
                seconds: 100.0,
                margin: 0.0,
            }),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn a_fresh_start_judges_its_augmentation_from_the_judges_weights() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let (genome, _, other) = genes_fixture();
        let fresh = fresh_start(&genome);
        // The judge: the same network, trained.
        let (judge, judge_tensors) = trained_judge(&genome, &task);
        // At a rate of 0 nothing moves: each copy scores what its start scores.
        let still = judged_probe_config(other, 0.0);
        let untrained = train_individual(
            &fresh,
            &Device::Cpu,
            &task,
            &TrainConfig {
                augment_probe: None,
                ..still.clone()
            },
            false,
            None,
            |_| {},
        )
        .unwrap();
        assert!(
            untrained.fitness < judge.fitness,
            "the fresh network ({}) must score below the judge ({})",
            untrained.fitness,
            judge.fitness
        );
        let judged = Start {
            augment_judge: Some(&judge_tensors),
            ..fresh
        };
        let (t, dir) = train_and_save(&judged, &task, &still);
        let probe = t.augment_probe.as_ref().unwrap();
        // Both copies started from the judge's weights, not from fresh ones.
        assert_eq!(
            probe.scores,
            vec![judge.fitness, judge.fitness],
            "{probe:?}"
        );
        // A tie: the genome's own gene only where it wins by more than the margin.
        assert_eq!(probe.chosen, other);
        // The network trained on is the fresh one (nothing inherited), with the chosen
        // gene; it ends at the fresh network's score, below the chosen copy's, so the
        // copy (the same network, from the judge) is the model.
        assert_eq!(t.inherited, 0);
        assert_eq!(t.probe_copy_kept, Some(untrained.fitness));
        assert_eq!(t.fitness, judge.fitness);
        let saved = individual::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(saved.genome.augment, Some(other));
        assert_eq!(saved.meta.val_accuracy, Some(judge.fitness));
    }

    #[test]
    fn a_judges_copies_train_at_most_at_the_genomes_own_rate() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let (mut genome, _, other) = genes_fixture();
        // A rate at which both genes' copies train stably.
        genome.learning_rate = 0.01;
        let fresh = fresh_start(&genome);
        let (_, judge_tensors) = trained_judge(&genome, &task);
        let judged = Start {
            augment_judge: Some(&judge_tensors),
            ..fresh
        };
        let probed_at = |lr_scale: f64| {
            let config = judged_probe_config(other, lr_scale);
            train_individual(&judged, &Device::Cpu, &task, &config, false, None, |_| {})
                .unwrap()
                .augment_probe
                .unwrap()
        };
        // The fresh network trains at the scale given; the judge's copies at the
        // genome's own rate wherever the scale is above it, so they score alike.
        let own = probed_at(1.0);
        let wild = probed_at(1e4);
        assert!(own.scores.iter().all(|&s| s > 0.0), "{own:?}");
        assert_eq!(wild.scores, own.scores, "{wild:?} against {own:?}");
        assert_eq!(wild.losses, own.losses, "{wild:?} against {own:?}");
        // Below the genome's rate the scale given holds (nothing moves at 0).
        let still = probed_at(0.0);
        assert_ne!(still.losses, own.losses, "{still:?}");
    }

    #[test]
    fn the_later_probes_are_those_the_training_will_run() {
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let genome = genome::ReferenceNet::Small.genome(shape, 3);
        let config = TrainConfig::default();
        let own = config.augment.as_gene();
        let other = genome::AugmentGene {
            crop: !own.crop,
            flip: own.flip,
        };
        let probes = TrainConfig {
            rate_probe: Some(RateProbe {
                factors: vec![1.0, 0.5, 0.25],
                seconds: 36.0,
            }),
            augment_probe: Some(AugmentProbe {
                alternatives: vec![other],
                seconds: 134.7,
                margin: 0.02,
            }),
            ..config.clone()
        };
        // None configured: none later.
        let later = later_probes(&fresh_start(&genome), &config);
        assert_eq!((later.rate_copies, later.augment_copies), (0, 0));
        // A fresh start judged from other weights: its augmentation copies all go.
        let weights = HashMap::new();
        let judged = Start {
            augment_judge: Some(&weights),
            ..fresh_start(&genome)
        };
        let later = later_probes(&judged, &probes);
        assert_eq!((later.rate_copies, later.rate_seconds), (3, 36.0));
        assert_eq!((later.augment_copies, later.augment_seconds), (2, 134.7));
        assert!(!later.augment_chosen_goes_on);
        // Judged on its own weights, the chosen copy goes on.
        assert!(later_probes(&fresh_start(&genome), &probes).augment_chosen_goes_on);
        // A genome that carries the alternative already: the probe has no choice.
        let mut carrying = genome.clone();
        carrying.augment = Some(other);
        let judged = Start {
            genome: &carrying,
            ..judged
        };
        let later = later_probes(&judged, &probes);
        assert_eq!((later.rate_copies, later.augment_copies), (3, 0));
        assert_eq!(later.augment_seconds, 0.0);
    }

    #[test]
    fn a_width_probe_trains_the_widest_width_its_floor_allows_and_saves_it() {
        let dataset = rgb_dataset();
        let task = Task::new(&dataset, 20, 0).unwrap();
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let genome = genome::ReferenceNet::Small.genome(shape, 3);
        let limits = genome::Limits::default();
        let start = fresh_start(&genome);
        let probe = |min_epochs| WidthProbe {
            max_rounds: 2,
            min_epochs,
            seconds: 0.05,
            limits,
            epochs_in: EpochsIn::TimeLeft,
        };
        let config = TrainConfig {
            steps: 20,
            batch: 10,
            log_every: 0,
            max_seconds: Some(1000.0),
            width_probe: Some(probe(0.0)),
            ..TrainConfig::default()
        };
        // A floor every width meets: the widest, timed alone, trains and is saved.
        let (t, dir) = train_and_save(&start, &task, &config);
        let two = genome::widen(&genome, 2, &limits).unwrap();
        let report = t.width_probe.as_ref().unwrap();
        assert_eq!((report.rounds, report.doublings), (2, two.doublings));
        assert_eq!(report.trials.len(), 1, "{report:?}");
        let trial = &report.trials[0];
        assert_eq!(trial.forward_flops, two.analysis.cost.forward_flops);
        assert!(trial.steps_per_s > 0.0 && trial.epochs > 0.0, "{trial:?}");
        assert_eq!(t.widened.as_ref(), Some(&two.genome));
        assert_eq!(t.params, two.analysis.cost.params);
        // The timing steps are not the model's.
        assert_eq!(t.steps, 20);
        let saved = individual::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(saved.genome, two.genome);
        // A floor no width meets: each timed, widest first, and the genome as it is.
        let high = TrainConfig {
            width_probe: Some(probe(1e12)),
            ..config.clone()
        };
        let t = train_individual(&start, &Device::Cpu, &task, &high, false, None, |_| {}).unwrap();
        let report = t.width_probe.as_ref().unwrap();
        assert_eq!((report.rounds, report.doublings), (0, 0));
        let rounds: Vec<u32> = report.trials.iter().map(|t| t.rounds).collect();
        assert_eq!(rounds, vec![2, 1]);
        assert!(t.widened.is_none());
        assert_eq!(t.params, genome.analyze(&limits).unwrap().cost.params);
        assert_eq!(report.discarded_seconds, 0.0);
        // Counted in the main training, with a rate probe whose thrown-away copies
        // would take all the time left: no width gets even a sliver of an epoch, where
        // counted in the time left the widest does.
        let rate_probe = Some(RateProbe {
            factors: vec![1.0, 0.5],
            seconds: 2000.0,
        });
        let sliver = |epochs_in| TrainConfig {
            steps: 4,
            rate_probe: rate_probe.clone(),
            width_probe: Some(WidthProbe {
                epochs_in,
                ..probe(1e-6)
            }),
            ..config.clone()
        };
        let trained = |epochs_in| {
            train_individual(
                &start,
                &Device::Cpu,
                &task,
                &sliver(epochs_in),
                false,
                None,
                |_| {},
            )
            .unwrap()
        };
        let t = trained(EpochsIn::MainTraining);
        let report = t.width_probe.as_ref().unwrap();
        assert_eq!(report.rounds, 0, "{report:?}");
        assert_eq!(report.discarded_seconds, 2000.0);
        assert!(report.trials.iter().all(|t| t.epochs == 0.0), "{report:?}");
        let t = trained(EpochsIn::TimeLeft);
        assert_eq!(t.width_probe.as_ref().unwrap().rounds, 2);
        // No time budget: no probe (epochs need seconds).
        let untimed = TrainConfig {
            max_seconds: None,
            ..config.clone()
        };
        let t =
            train_individual(&start, &Device::Cpu, &task, &untimed, false, None, |_| {}).unwrap();
        assert!(t.width_probe.is_none() && t.widened.is_none());
    }
}
