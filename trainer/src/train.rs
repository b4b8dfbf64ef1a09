//! Training and evaluation: SGD on augmented mini-batches at the genome's learning rate,
//! accuracy on held-out images.

use crate::augment_probe::AugmentProbe;
use crate::batch::{assemble, AugmentConfig, Augmentation, DeviceSplit, ImageDims, Normalization};
use crate::collapse::{constant_guess_loss, logit_spread, CollapseWatch};
use crate::data::{validation_split, Dataset};
use crate::error::{Result, TrainError};
use crate::network::Network;
use crate::optim::{Sgd, SgdConfig};
use crate::rate_probe::RateProbe;
use crate::width_probe::WidthProbe;
use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A handle that stops a training from another thread: [`train`] checks it before each
/// step and returns [`TrainError::Cancelled`] once it is set. Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A new handle, not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every training holding a clone of this handle to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Two handles are equal when they share one flag.
impl PartialEq for Cancel {
    fn eq(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// How to train one individual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// SGD steps.
    pub steps: u64,
    /// Images per step.
    pub batch: usize,
    /// Momentum and weight decay.
    pub sgd: SgdConfig,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Report progress every this many steps (0: never).
    pub log_every: u64,
    /// Seed of the batch order and augmentation.
    pub seed: u64,
    /// How the learning rate moves over the steps (the paper: constant).
    #[serde(skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    /// The share of the training (of its steps, or of its seconds where those run out
    /// first) over which the learning rate rises linearly from near zero to what the
    /// schedule gives (0: none, the paper). Beyond the paper: a network with BN_RELU
    /// vertices trained at a high rate from its first step can die in its first steps
    /// (every unit dead, the output constant, the loss stuck at ln(classes)).
    #[serde(skip_serializing_if = "is_zero")]
    pub warmup: f64,
    /// Stop early once the SGD steps have taken this many seconds (`None`: run every
    /// step). A time budget, for training a fixed net for the wall time a search had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
    /// The genome's learning rate is multiplied by this (1: the rate as evolved). A
    /// long final training starts lower than the short trainings the rate was chosen by.
    #[serde(skip_serializing_if = "is_one")]
    pub lr_scale: f64,
    /// A short trial of other factors of the genome's rate before the training, which
    /// then runs at the best of them in place of `lr_scale` and from that copy's weights
    /// (`None`: none). [`train`] ignores it;
    /// [`crate::individual_training::train_individual`] runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_probe: Option<RateProbe>,
    /// A short trial of the genome's augmentation gene against others before the
    /// training (after the rate probe, at its factor), which then runs with the best of
    /// them and from that copy's weights (`None`: none). [`train`] ignores it;
    /// [`crate::individual_training::train_individual`] runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment_probe: Option<AugmentProbe>,
    /// A timing of wider forms of the network before the training (before the other
    /// probes), which then trains the widest whose pace still gives it the probe's floor
    /// of epochs in `max_seconds` (`None`: none; ignored without `max_seconds` or where
    /// the start has function-preserving initializations of its own). [`train`] ignores
    /// it; [`crate::individual_training::train_individual`] runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width_probe: Option<WidthProbe>,
    /// Where the network collapses ([`crate::collapse`]: its output no longer depends on
    /// its input, or it knew something at its first step and its loss is back at a
    /// constant guess's or above), the training stops there ([`TrainOutcome::collapsed`])
    /// and trains again from its start at this factor of its rate (`None`: no watch, the
    /// paper). Beyond the paper. [`train`] only stops (a rate or augmentation probe's
    /// copy too, which is then scored as it is);
    /// [`crate::individual_training::train_individual`] trains again, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_retry: Option<f64>,
    /// Stops the training from another thread (`None`: it runs to its end). Not part of
    /// a saved config.
    #[serde(skip)]
    pub cancel: Option<Cancel>,
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The share of the learning rate a warm-up over the first `warmup` of a training
/// allows once `reached` of the training is done (the step being taken included): it
/// rises linearly to 1 at `warmup` and stays there; never 0, so the first step moves.
/// `warmup` 0 (or less): always 1.
pub fn warmup_factor(reached: f64, warmup: f64) -> f64 {
    if warmup <= 0.0 {
        return 1.0;
    }
    (reached / warmup).clamp(f64::MIN_POSITIVE, 1.0)
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 25_600,
            batch: 50,
            sgd: SgdConfig::default(),
            augment: AugmentConfig::default(),
            log_every: 100,
            seed: 0,
            schedule: Schedule::Constant,
            warmup: 0.0,
            max_seconds: None,
            lr_scale: 1.0,
            rate_probe: None,
            augment_probe: None,
            width_probe: None,
            collapse_retry: None,
            cancel: None,
        }
    }
}

/// How the learning rate moves over one individual's training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The genome's learning rate at every step (the paper).
    #[default]
    Constant,
    /// From the genome's rate down to zero along a half cosine (beyond the paper: a
    /// child restarts at its rate from its parent's weights, as in SGDR, and is scored at
    /// the end of a decay rather than at a high rate's last step).
    Cosine,
}

impl Schedule {
    /// The factor of the learning rate at `progress` (0 at the first step, 1 at the end).
    pub fn factor(self, progress: f64) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => {
                0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
            }
        }
    }

    /// Whether this is the paper's constant rate.
    pub fn is_constant(&self) -> bool {
        *self == Schedule::Constant
    }
}

/// The images a model learns from and is judged on: the data set, a deterministic
/// validation hold-out from its training split, and the normalization measured on the
/// remaining training images.
#[derive(Debug)]
pub struct Task<'a> {
    /// The data set.
    pub dataset: &'a Dataset,
    /// Indices of training images used for training.
    pub train: Vec<usize>,
    /// Indices of training images held out for validation (the fitness).
    pub validation: Vec<usize>,
    /// Per-channel normalization.
    pub norm: Normalization,
}

impl<'a> Task<'a> {
    /// Holds `validation` training images out (chosen by `split_seed`) and measures the
    /// normalization on the rest.
    pub fn new(dataset: &'a Dataset, validation: usize, split_seed: u64) -> Result<Self> {
        let (train, validation) = validation_split(dataset.train.len(), validation, split_seed)
            .map_err(|e| TrainError::Mismatch(e.to_string()))?;
        let dims = dims_of(dataset);
        let norm = Normalization::measure(&dataset.train.images, dims.c, dims.h * dims.w, &train);
        Ok(Task {
            dataset,
            train,
            validation,
            norm,
        })
    }

    /// The stored images' geometry.
    pub fn dims(&self) -> ImageDims {
        dims_of(self.dataset)
    }

    /// Checks that a network fits this data set (image shape and class count).
    pub fn check(&self, net: &Network) -> Result<()> {
        let g = net.genome();
        let d = self.dataset;
        if (g.input.height, g.input.width, g.input.channels) != (d.height, d.width, d.channels) {
            return Err(TrainError::Mismatch(format!(
                "the genome takes {}x{}x{} images but the data set has {}x{}x{}",
                g.input.height, g.input.width, g.input.channels, d.height, d.width, d.channels
            )));
        }
        if g.classes as usize != d.num_classes() {
            return Err(TrainError::Mismatch(format!(
                "the genome has {} classes but the data set has {}",
                g.classes,
                d.num_classes()
            )));
        }
        Ok(())
    }
}

fn dims_of(d: &Dataset) -> ImageDims {
    ImageDims {
        c: d.channels as usize,
        h: d.height as usize,
        w: d.width as usize,
    }
}

/// Where training stands, reported every `log_every` steps.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    /// Steps done.
    pub step: u64,
    /// Steps in all.
    pub steps: u64,
    /// Mean training loss since the last report.
    pub loss: f64,
    /// Training throughput since the last report.
    pub images_per_s: f64,
}

/// Where the wall time of making one individual went, in seconds: building its network
/// (inheritance included), training, scoring it on the validation images, and saving it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseSeconds {
    /// Building the network from the genome and the parent's tensors.
    pub build: f64,
    /// The SGD steps.
    pub train: f64,
    /// Measuring the validation accuracy.
    pub validate: f64,
    /// Writing the model files.
    pub save: f64,
}

impl PhaseSeconds {
    /// The sum of the four phases.
    pub fn total(&self) -> f64 {
        self.build + self.train + self.validate + self.save
    }

    /// Adds `other`'s seconds phase by phase.
    pub fn add(&mut self, other: &PhaseSeconds) {
        self.build += other.build;
        self.train += other.train;
        self.validate += other.validate;
        self.save += other.save;
    }
}

/// What training did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainOutcome {
    /// Steps done (fewer than asked if the loss diverged or the network collapsed).
    pub steps: u64,
    /// Wall time of the training loop.
    pub seconds: f64,
    /// Mean training loss over the last 100 steps (or fewer).
    pub train_loss: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// Whether training stopped because the loss became NaN or infinite.
    pub diverged: bool,
    /// Whether training stopped because the network collapsed (watched only with
    /// [`TrainConfig::collapse_retry`]).
    pub collapsed: bool,
}

/// Trains `net` on `task` for `config.steps` steps at the genome's learning rate (fewer
/// if `config.max_seconds` runs out; an error if `config.cancel` is set meanwhile).
pub fn train(
    net: &Network,
    task: &Task<'_>,
    config: &TrainConfig,
    mut on_progress: impl FnMut(&Progress),
) -> Result<TrainOutcome> {
    task.check(net)?;
    if task.train.is_empty() || config.batch == 0 {
        return Err(TrainError::Mismatch(
            "no training images or an empty batch".into(),
        ));
    }
    let dims = task.dims();
    // A genome that carries an augmentation gene says which of the two it trains with.
    let augment = config.augment.with_gene(net.genome().augment);
    let pad = augment.pad_pixels(dims.h, dims.w);
    let device = net.device().clone();
    let lr = net.genome().learning_rate * config.lr_scale;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order = task.train.clone();
    let mut cursor = order.len();
    let mut sgd = Sgd::new(config.sgd);
    // On a GPU the training images live in its memory and batches are made there; on the
    // CPU they are assembled in place.
    let on_device = if device.is_cpu() {
        None
    } else {
        let split = &task.dataset.train;
        Some(DeviceSplit::upload(
            &split.images,
            &split.labels,
            dims,
            &device,
        )?)
    };
    let mut buffer = Vec::new();
    let mut batch_idx = Vec::with_capacity(config.batch);
    let mut augs = Vec::with_capacity(config.batch);
    let mut recent = std::collections::VecDeque::with_capacity(100);
    let (mut window_loss, mut window_steps) = (0.0, 0u64);
    let start = Instant::now();
    let mut window_start = start;
    let mut done = 0;
    let mut diverged = false;
    let mut collapsed = false;
    let mut watch = config
        .collapse_retry
        .map(|_| CollapseWatch::new(constant_guess_loss(&task.dataset.train.labels, &task.train)));
    let mut since_check = (0.0, 0u64);
    for step in 1..=config.steps {
        if config.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(TrainError::Cancelled);
        }
        batch_idx.clear();
        augs.clear();
        while batch_idx.len() < config.batch {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            batch_idx.push(order[cursor]);
            cursor += 1;
            augs.push(Augmentation::draw(&augment, pad, &mut rng));
        }
        let (x, y) = match &on_device {
            Some(split) => {
                let augment = augment.enabled.then_some((augs.as_slice(), pad as usize));
                split.batch(&batch_idx, &task.norm, augment)?
            }
            None => {
                assemble(
                    &task.dataset.train.images,
                    dims,
                    &batch_idx,
                    &task.norm,
                    Some(&augs),
                    &mut buffer,
                );
                let x =
                    Tensor::from_slice(&buffer, (config.batch, dims.c, dims.h, dims.w), &device)?;
                let labels: Vec<u32> = batch_idx
                    .iter()
                    .map(|&i| task.dataset.train.labels[i])
                    .collect();
                (x, Tensor::from_vec(labels, config.batch, &device)?)
            }
        };
        if step == 1 {
            net.calibrate(&x)?;
        }
        let logits = net.forward(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        done = step;
        if !loss_value.is_finite() {
            diverged = true;
            break;
        }
        since_check = (since_check.0 + loss_value, since_check.1 + 1);
        if let Some(watch) = watch.as_mut().filter(|_| CollapseWatch::due(step)) {
            let mean_loss = since_check.0 / since_check.1 as f64;
            since_check = (0.0, 0);
            if watch.observe(step, logit_spread(&logits)?, mean_loss) {
                collapsed = true;
                break;
            }
        }
        let grads = loss.backward()?;
        let mut progress = (step - 1) as f64 / config.steps.max(1) as f64;
        let mut reached = step as f64 / config.steps.max(1) as f64;
        if let Some(limit) = config.max_seconds {
            let by_time = start.elapsed().as_secs_f64() / limit.max(1e-9);
            progress = progress.max(by_time);
            reached = reached.max(by_time);
        }
        let rate = lr * config.schedule.factor(progress) * warmup_factor(reached, config.warmup);
        sgd.step(net.weights(), &grads, rate)?;
        if recent.len() == 100 {
            recent.pop_front();
        }
        recent.push_back(loss_value);
        window_loss += loss_value;
        window_steps += 1;
        let out_of_time = config
            .max_seconds
            .is_some_and(|limit| start.elapsed().as_secs_f64() >= limit);
        if config.log_every > 0
            && (step % config.log_every == 0 || step == config.steps || out_of_time)
        {
            let secs = window_start.elapsed().as_secs_f64().max(1e-9);
            on_progress(&Progress {
                step,
                steps: config.steps,
                loss: window_loss / window_steps as f64,
                images_per_s: (window_steps as usize * config.batch) as f64 / secs,
            });
            window_loss = 0.0;
            window_steps = 0;
            window_start = Instant::now();
        }
        if out_of_time {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let train_loss = if recent.is_empty() {
        f64::NAN
    } else {
        recent.iter().sum::<f64>() / recent.len() as f64
    };
    Ok(TrainOutcome {
        steps: done,
        seconds,
        train_loss,
        images_per_s: (done as usize * config.batch) as f64 / seconds.max(1e-9),
        diverged,
        collapsed,
    })
}

/// Batch size used for evaluation.
pub const EVAL_BATCH: usize = 500;

/// Accuracy of `net` (evaluation mode) on the images at `indices` of a split.
pub fn accuracy(
    net: &Network,
    images: &[u8],
    labels: &[u32],
    indices: &[usize],
    dims: ImageDims,
    norm: &Normalization,
) -> Result<f64> {
    if indices.is_empty() {
        return Ok(0.0);
    }
    let mut correct = 0usize;
    let mut buffer = Vec::new();
    for chunk in indices.chunks(EVAL_BATCH) {
        assemble(images, dims, chunk, norm, None, &mut buffer);
        let x = Tensor::from_slice(&buffer, (chunk.len(), dims.c, dims.h, dims.w), net.device())?;
        let predicted = net.predict(&x)?;
        correct += predicted
            .iter()
            .zip(chunk)
            .filter(|(p, &i)| **p == labels[i])
            .count();
    }
    Ok(correct as f64 / indices.len() as f64)
}

/// Class probabilities (softmax of the logits, evaluation mode) of `net` for the images at
/// `indices` of a split: `indices.len()` rows of `classes` values, row-major. Averaging
/// several models' probabilities gives an ensemble's prediction.
pub fn class_probabilities(
    net: &Network,
    images: &[u8],
    indices: &[usize],
    dims: ImageDims,
    norm: &Normalization,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let mut buffer = Vec::new();
    for chunk in indices.chunks(EVAL_BATCH) {
        assemble(images, dims, chunk, norm, None, &mut buffer);
        let x = Tensor::from_slice(&buffer, (chunk.len(), dims.c, dims.h, dims.w), net.device())?;
        let logits = net.forward(&x, false)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?;
        out.extend(probs.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The fraction of rows of `probabilities` (`classes` values each) whose largest value is
/// at the row's label (0 for no rows).
pub fn probability_accuracy(probabilities: &[f32], classes: usize, labels: &[u32]) -> f64 {
    if labels.is_empty() || classes == 0 {
        return 0.0;
    }
    let correct = probabilities
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i);
            best == Some(label as usize)
        })
        .count();
    correct as f64 / labels.len() as f64
}

impl Task<'_> {
    /// Validation accuracy: the fitness.
    pub fn validation_accuracy(&self, net: &Network) -> Result<f64> {
        let s = &self.dataset.train;
        accuracy(
            net,
            &s.images,
            &s.labels,
            &self.validation,
            self.dims(),
            &self.norm,
        )
    }

    /// Test accuracy, which evolution never sees.
    pub fn test_accuracy(&self, net: &Network) -> Result<f64> {
        let s = &self.dataset.test;
        let all: Vec<usize> = (0..s.labels.len()).collect();
        accuracy(net, &s.images, &s.labels, &all, self.dims(), &self.norm)
    }

    /// Test accuracy of the ensemble of `nets`: the class probabilities of each, averaged
    /// (summed: the same argmax), decide each image. One network gives its own test
    /// accuracy; none gives 0.
    pub fn test_ensemble_accuracy(&self, nets: &[&Network]) -> Result<f64> {
        let s = &self.dataset.test;
        let all: Vec<usize> = (0..s.labels.len()).collect();
        let classes = self.dataset.num_classes();
        let mut sum: Vec<f32> = Vec::new();
        for net in nets {
            let probs = class_probabilities(net, &s.images, &all, self.dims(), &self.norm)?;
            if sum.is_empty() {
                sum = probs;
            } else {
                for (a, p) in sum.iter_mut().zip(&probs) {
                    *a += p;
                }
            }
        }
        if sum.is_empty() {
            return Ok(0.0);
        }
        Ok(probability_accuracy(&sum, classes, &s.labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;
    use candle_core::Device;
    use genome::{Genome, InputShape, Invalidated};
    use rand::Rng;

    /// 8x8 RGB images whose class is which colour channel is bright.
    fn colours(n: usize, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::with_capacity(n * 192);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = (i % 3) as u32;
            for c in 0..3u32 {
                for _ in 0..64 {
                    let base = if c == class { 150 } else { 40 };
                    images.push(base + rng.random_range(0..60u8));
                }
            }
            labels.push(class);
        }
        Split { images, labels }
    }

    fn dataset() -> Dataset {
        Dataset {
            name: "colours".into(),
            classes: vec!["r".into(), "g".into(), "b".into()],
            height: 8,
            width: 8,
            channels: 3,
            train: colours(300, 1),
            test: colours(90, 2),
        }
    }

    #[test]
    fn the_initial_linear_classifier_learns_an_easy_task() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        assert_eq!(task.train.len(), 240);
        let g = Genome::initial(
            InputShape {
                height: 8,
                width: 8,
                channels: 3,
            },
            3,
        );
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        let before = task.validation_accuracy(&net).unwrap();
        let config = TrainConfig {
            steps: 40,
            batch: 20,
            log_every: 10,
            ..TrainConfig::default()
        };
        let mut reports = 0;
        let outcome = train(&net, &task, &config, |_| reports += 1).unwrap();
        assert_eq!(reports, 4);
        assert_eq!(outcome.steps, 40);
        assert!(!outcome.diverged);
        let val = task.validation_accuracy(&net).unwrap();
        let test = task.test_accuracy(&net).unwrap();
        assert!(
            val > 0.95 && test > 0.95,
            "before {before}, val {val}, test {test}"
        );
    }

    /// The values of a network's output layer's weights.
    fn head_weights(net: &Network) -> Vec<f32> {
        net.weights().snapshot().unwrap()["head.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    #[test]
    fn the_rate_is_the_genomes_times_its_scale() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        let g = Genome::initial(
            InputShape {
                height: 8,
                width: 8,
                channels: 3,
            },
            3,
        );
        let trained = |lr_scale: f64| {
            let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
            let config = TrainConfig {
                steps: 20,
                batch: 20,
                lr_scale,
                ..TrainConfig::default()
            };
            train(&net, &task, &config, |_| {}).unwrap();
            head_weights(&net)
        };
        let (fresh, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        let start = head_weights(&fresh);
        // A scale of 0 leaves the weights where they were; a smaller scale moves them less.
        assert_eq!(trained(0.0), start);
        let moved = |w: Vec<f32>| -> f32 { w.iter().zip(&start).map(|(a, b)| (a - b).abs()).sum() };
        assert!(moved(trained(0.25)) < moved(trained(1.0)));
    }

    #[test]
    fn the_warmup_raises_the_rate_linearly_over_its_share() {
        assert_eq!(warmup_factor(0.3, 0.0), 1.0);
        assert!((warmup_factor(0.01, 0.05) - 0.2).abs() < 1e-12);
        assert!((warmup_factor(0.025, 0.05) - 0.5).abs() < 1e-12);
        assert_eq!(warmup_factor(0.05, 0.05), 1.0);
        assert_eq!(warmup_factor(0.9, 0.05), 1.0);
        assert!(warmup_factor(0.0, 0.05) > 0.0);
    }

    /// The first step of a training that warms up over half of its ten steps moves the
    /// weights a fifth as far as without a warm-up (SGD's first step is the rate times
    /// the gradient, and the warm-up allows 0.1 / 0.5 of the rate).
    #[test]
    fn a_warmup_scales_the_first_steps() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        let g = Genome::initial(
            InputShape {
                height: 8,
                width: 8,
                channels: 3,
            },
            3,
        );
        let first_step = |warmup: f64| -> f32 {
            let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
            let start = head_weights(&net);
            let cancel = Cancel::new();
            let config = TrainConfig {
                steps: 10,
                batch: 20,
                log_every: 1,
                warmup,
                cancel: Some(cancel.clone()),
                ..TrainConfig::default()
            };
            let result = train(&net, &task, &config, |_| cancel.cancel());
            assert!(matches!(result, Err(TrainError::Cancelled)));
            head_weights(&net)
                .iter()
                .zip(&start)
                .map(|(a, b)| (a - b).abs())
                .sum()
        };
        let (plain, warm) = (first_step(0.0), first_step(0.5));
        assert!(plain > 0.0);
        assert!((warm / plain - 0.2).abs() < 1e-3, "{warm} / {plain}");
    }

    #[test]
    fn a_cancelled_training_stops_and_says_so() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        let g = Genome::initial(
            InputShape {
                height: 8,
                width: 8,
                channels: 3,
            },
            3,
        );
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        let cancel = Cancel::new();
        let config = TrainConfig {
            steps: 1_000_000,
            batch: 20,
            log_every: 5,
            cancel: Some(cancel.clone()),
            ..TrainConfig::default()
        };
        // Cancelled from the progress callback after the first report: the loop stops
        // at the next step instead of running its million.
        let mut reports = 0;
        let result = train(&net, &task, &config, |_| {
            reports += 1;
            cancel.cancel();
        });
        assert!(matches!(result, Err(TrainError::Cancelled)));
        assert_eq!(reports, 1);
        // A handle equals its clones only.
        assert_eq!(cancel, config.cancel.clone().unwrap());
        assert_ne!(cancel, Cancel::new());
        // Never set: the training runs to its end.
        let config = TrainConfig {
            steps: 3,
            batch: 20,
            cancel: Some(Cancel::new()),
            ..TrainConfig::default()
        };
        assert_eq!(train(&net, &task, &config, |_| {}).unwrap().steps, 3);
    }

    #[test]
    fn the_cosine_schedule_falls_from_one_to_zero() {
        assert_eq!(Schedule::Constant.factor(0.7), 1.0);
        assert_eq!(Schedule::Cosine.factor(0.0), 1.0);
        assert!((Schedule::Cosine.factor(0.5) - 0.5).abs() < 1e-12);
        assert!(Schedule::Cosine.factor(1.0).abs() < 1e-12);
        assert!(Schedule::Cosine.factor(0.2) > Schedule::Cosine.factor(0.3));
    }

    #[test]
    fn a_network_of_the_wrong_shape_is_refused() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        let g = Genome::initial(InputShape::CIFAR, 3);
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        assert!(matches!(
            train(&net, &task, &TrainConfig::default(), |_| {}),
            Err(TrainError::Mismatch(_))
        ));
    }

    /// The initial linear classifier of the 8x8 colour task, initialized by `seed` and
    /// trained for `steps` steps (none: as initialized).
    fn initial_network(task: &Task<'_>, seed: u64, steps: u64) -> Network {
        let g = Genome::initial(
            InputShape {
                height: 8,
                width: 8,
                channels: 3,
            },
            3,
        );
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), seed).unwrap();
        if steps > 0 {
            let config = TrainConfig {
                steps,
                batch: 20,
                log_every: 0,
                ..TrainConfig::default()
            };
            train(&net, task, &config, |_| {}).unwrap();
        }
        net
    }

    /// `net`'s class probabilities on every test image of `task`.
    fn test_probabilities(task: &Task<'_>, net: &Network) -> Vec<f32> {
        let test = &task.dataset.test;
        let all: Vec<usize> = (0..test.labels.len()).collect();
        class_probabilities(net, &test.images, &all, task.dims(), &task.norm).unwrap()
    }

    #[test]
    fn an_ensemble_decides_by_the_summed_probabilities_of_its_members() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        // One trained member, one untrained: their ensemble is neither's accuracy in
        // general, but exactly what their summed probabilities decide.
        let trained = initial_network(&task, 5, 3);
        let fresh = initial_network(&task, 9, 0);
        let a = test_probabilities(&task, &trained);
        let b = test_probabilities(&task, &fresh);
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let expected = probability_accuracy(&sum, 3, &data.test.labels);
        let ensemble = task.test_ensemble_accuracy(&[&trained, &fresh]).unwrap();
        assert_eq!(ensemble, expected);
        // Order does not matter.
        assert_eq!(
            task.test_ensemble_accuracy(&[&fresh, &trained]).unwrap(),
            expected
        );
    }

    #[test]
    fn class_probabilities_agree_with_accuracy_and_sum_to_one() {
        let data = dataset();
        let task = Task::new(&data, 60, 0).unwrap();
        let net = initial_network(&task, 3, 10);
        let test = &data.test;
        let probs = test_probabilities(&task, &net);
        assert_eq!(probs.len(), test.labels.len() * 3);
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
        }
        let from_probs = probability_accuracy(&probs, 3, &test.labels);
        assert_eq!(from_probs, task.test_accuracy(&net).unwrap());
        // An ensemble of one is the network itself; of none, nothing.
        assert_eq!(task.test_ensemble_accuracy(&[&net]).unwrap(), from_probs);
        assert_eq!(task.test_ensemble_accuracy(&[]).unwrap(), 0.0);
        // All wrong, all right.
        assert_eq!(probability_accuracy(&[0.9, 0.1, 0.2, 0.8], 2, &[1, 0]), 0.0);
        assert_eq!(probability_accuracy(&[0.9, 0.1, 0.2, 0.8], 2, &[0, 1]), 1.0);
    }
}
