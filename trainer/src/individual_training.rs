//! One individual from its genome to a trained, scored and saved model, the one path the
//! node's workers and `evo train` both take: build the network (inheriting what a parent
//! gives), train it, score it on the validation images, optionally on the test images,
//! save it, and account for the time of each phase and the FLOPs spent.
//!
//! A training whose loss diverged scores 0 (its weights are NaN or infinite: what they
//! would predict means nothing), on validation and test alike.

use crate::individual::{self, ModelMeta};
use crate::network::Network;
use crate::train::{self, PhaseSeconds, Progress, Task, TrainConfig};
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
}

/// Builds, trains, scores (and with `test` also on the test images) the individual of
/// `start` on `task`, and saves the model into `save_to` if given; `on_progress` hears
/// the training's progress.
pub fn train_individual(
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
    let (net, inheritance) = Network::with_inits(
        start.genome,
        device,
        start.parent,
        start.invalidated,
        start.inits,
        start.seed,
    )?;
    task.check(&net)?;
    lap(&mut phases.build);
    let outcome = train::train(&net, task, config, on_progress)?;
    lap(&mut phases.train);
    let score = |accuracy: &dyn Fn() -> Result<f64>| -> Result<f64> {
        if outcome.diverged {
            Ok(0.0)
        } else {
            accuracy()
        }
    };
    let fitness = score(&|| task.validation_accuracy(&net))?;
    let test_accuracy = if test {
        Some(score(&|| task.test_accuracy(&net))?)
    } else {
        None
    };
    lap(&mut phases.validate);
    if let Some(dir) = save_to {
        let meta = ModelMeta {
            normalization: task.norm.clone(),
            steps: outcome.steps,
            val_accuracy: Some(fitness),
            test_accuracy,
            dataset: task.dataset.name.clone(),
            weights_sha256: None,
        };
        individual::save(dir, start.genome, net.weights(), &meta)?;
    }
    lap(&mut phases.save);
    let cost = TrainingCost::new(
        net.analysis().cost.forward_flops,
        config.batch as u64,
        outcome.steps,
        task.validation.len() as u64,
    );
    Ok(TrainedIndividual {
        fitness,
        test_accuracy,
        steps: outcome.steps,
        seconds: began.elapsed().as_secs_f64(),
        train_loss: outcome.train_loss,
        images_per_s: outcome.images_per_s,
        diverged: outcome.diverged,
        flops: cost.total(),
        params: net.analysis().cost.params,
        inherited: inheritance.inherited,
        fresh: inheritance.fresh,
        phases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Split};
    use genome::InputShape;

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
    fn an_individual_is_trained_scored_saved_and_accounted_for() {
        let dataset = Dataset {
            name: "test".into(),
            classes: vec!["r".into(), "g".into(), "b".into()],
            height: 4,
            width: 4,
            channels: 3,
            train: split(60),
            test: split(30),
        };
        let task = Task::new(&dataset, 20, 0).unwrap();
        let shape = InputShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        let genome = Genome::initial(shape, 3);
        let start = Start {
            genome: &genome,
            parent: None,
            invalidated: &Invalidated::none(),
            inits: &[],
            seed: 1,
        };
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
}
