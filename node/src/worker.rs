//! A training worker: an actor on a thread of its own (a `SyncArbiter`), never on the
//! async reactor, so the node keeps answering while it trains. It asks the shard for a
//! [`Job`], trains the child (inheriting its parent's weights), scores it on the
//! validation images, saves the model into the individual's folder and reports back;
//! then asks again, until the shard says stop. It also scores migrants from other
//! islands on this node's validation images before they may join ([`Check`]).

use crate::population::IndividualId;
use crate::shard::{Assignment, Checked, JobDone, NextJob, Progress, Shard, WorkerStopped};
use actix::{Actor, Addr, Handler, Message, SyncContext};
use genome::{Genome, Invalidated, TensorInit, TrainingCost};
use std::collections::HashMap;
use std::path::PathBuf;
use trainer::individual::ModelMeta;
use trainer::train::PhaseSeconds;
use trainer::{Device, Network, Task, Tensor, TrainConfig};

/// One individual to train.
pub struct Job {
    /// Its id.
    pub id: IndividualId,
    /// Its genome (valid).
    pub genome: Genome,
    /// The tensors its mutations invalidated: they are not inherited.
    pub invalidated: Invalidated,
    /// How its function-preserving mutations initialize the tensors they changed.
    pub inits: Vec<TensorInit>,
    /// The parent's trained tensors (on the CPU), `None` for an initial individual.
    pub parent_tensors: Option<HashMap<String, Tensor>>,
    /// The seed of its fresh weights, batch order and augmentation.
    pub seed: u64,
    /// Where to save the trained model.
    pub dir: PathBuf,
    /// How to train it.
    pub config: TrainConfig,
}

/// A migrant saved in its folder, to score on this node's validation images: its fitness
/// here, whatever its sender claimed.
pub struct Check {
    /// Its id on this node.
    pub id: IndividualId,
    /// Its folder (genome, weights, metadata).
    pub dir: PathBuf,
}

/// What training one individual gave.
#[derive(Debug, Clone)]
pub struct Trained {
    /// Validation accuracy (0 if training diverged).
    pub fitness: f64,
    /// Steps run.
    pub steps: u64,
    /// Wall time of building, training, scoring and saving, in seconds.
    pub seconds: f64,
    /// Mean loss of the last steps.
    pub train_loss: f64,
    /// Whether the loss became NaN or infinite (training stopped there).
    pub diverged: bool,
    /// FLOPs spent training and validating.
    pub flops: u64,
    /// Tensors inherited from the parent.
    pub inherited: usize,
    /// Where the wall time went.
    pub phases: PhaseSeconds,
}

/// Starts the worker's loop; it returns when the shard says stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Run;

/// A training worker.
pub struct Worker {
    index: usize,
    shard: Addr<Shard>,
    task: &'static Task<'static>,
    device: Device,
}

impl Worker {
    /// Worker number `index` of `shard`, training on `task` on `device`.
    pub fn new(
        index: usize,
        shard: Addr<Shard>,
        task: &'static Task<'static>,
        device: Device,
    ) -> Worker {
        Worker {
            index,
            shard,
            task,
            device,
        }
    }

    /// Trains one job; a panic inside training is caught and reported as a failure.
    fn train(&self, job: &Job) -> Result<Trained, String> {
        caught("training", || self.train_inner(job))
    }

    /// Scores a migrant on the validation images; a panic is caught and reported.
    fn check(&self, check: &Check) -> Result<f64, String> {
        caught("checking", || {
            let device = self.device.clone();
            let task = self.task;
            trainer::threads::run(move || {
                let saved = trainer::individual::load(&check.dir, &device)?;
                let (net, _) = Network::new(
                    &saved.genome,
                    &device,
                    Some(&saved.tensors),
                    &Invalidated::none(),
                    0,
                )?;
                Ok(task.validation_accuracy(&net)?)
            })
        })
    }

    fn train_inner(&self, job: &Job) -> anyhow::Result<Trained> {
        let start = std::time::Instant::now();
        let task = self.task;
        let shard = self.shard.clone();
        let (worker, id) = (self.index, job.id);
        let device = self.device.clone();
        trainer::threads::run(move || {
            let mut phases = PhaseSeconds::default();
            let mut clock = std::time::Instant::now();
            let mut lap = |phase: &mut f64| {
                let now = std::time::Instant::now();
                *phase = (now - clock).as_secs_f64();
                clock = now;
            };
            let (net, inheritance) = Network::with_inits(
                &job.genome,
                &device,
                job.parent_tensors.as_ref(),
                &job.invalidated,
                &job.inits,
                job.seed,
            )?;
            lap(&mut phases.build);
            let outcome = trainer::train::train(&net, task, &job.config, |p| {
                shard.do_send(Progress {
                    worker,
                    id,
                    step: p.step,
                    steps: p.steps,
                    loss: p.loss,
                })
            })?;
            lap(&mut phases.train);
            let fitness = if outcome.diverged {
                0.0
            } else {
                task.validation_accuracy(&net)?
            };
            lap(&mut phases.validate);
            let meta = ModelMeta {
                normalization: task.norm.clone(),
                steps: outcome.steps,
                val_accuracy: Some(fitness),
                test_accuracy: None,
                dataset: task.dataset.name.clone(),
            };
            trainer::individual::save(&job.dir, &job.genome, net.weights(), &meta)?;
            lap(&mut phases.save);
            let cost = TrainingCost::new(
                net.analysis().cost.forward_flops,
                job.config.batch as u64,
                outcome.steps,
                task.validation.len() as u64,
            );
            Ok(Trained {
                fitness,
                steps: outcome.steps,
                seconds: start.elapsed().as_secs_f64(),
                train_loss: outcome.train_loss,
                diverged: outcome.diverged,
                flops: cost.total(),
                inherited: inheritance.inherited,
                phases,
            })
        })
    }
}

/// Runs `f`, turning its error or panic into a message that starts with `what`.
fn caught<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(panic) => Err(format!(
            "{what} panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown cause")
        )),
    }
}

impl Actor for Worker {
    type Context = SyncContext<Self>;
}

impl Handler<Run> for Worker {
    type Result = ();

    fn handle(&mut self, _: Run, _: &mut SyncContext<Self>) {
        loop {
            let asked =
                futures::executor::block_on(self.shard.send(NextJob { worker: self.index }));
            match asked {
                Ok(Assignment::Train(job)) => {
                    let result = self.train(&job);
                    self.shard.do_send(JobDone {
                        worker: self.index,
                        id: job.id,
                        result,
                    });
                }
                Ok(Assignment::Check(check)) => {
                    let result = self.check(&check);
                    self.shard.do_send(Checked {
                        worker: self.index,
                        id: check.id,
                        result,
                    });
                }
                Ok(Assignment::Wait(pause)) => std::thread::sleep(pause),
                Ok(Assignment::Stop) | Err(_) => break,
            }
        }
        self.shard.do_send(WorkerStopped { worker: self.index });
    }
}
