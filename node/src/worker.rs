//! A training worker: an actor on a thread of its own (a `SyncArbiter`), never on the
//! async reactor, so the node keeps answering while it trains. It asks the shard for a
//! [`Job`], trains the child (inheriting its parent's weights), scores it on the
//! validation images, saves the model into the individual's folder and reports back;
//! then asks again, until the shard says stop. It also scores migrants from other
//! islands on this node's validation images before they may join ([`Check`]).

use crate::messages::{
    Assignment, Check, Checked, Job, JobDone, NextJob, Progress, Trained, WorkerStopped,
};
use crate::shard::Shard;
use actix::{Actor, Addr, Handler, Message, SyncContext};
use trainer::individual_training::{train_individual, Start};
use trainer::{Device, Task};

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
            trainer::threads::run_alone(check.threads, move || {
                let (net, _) = trainer::individual::load_network(&check.dir, &device)?;
                Ok(task.validation_accuracy(&net)?)
            })
        })
    }

    fn train_inner(&self, job: &Job) -> anyhow::Result<Trained> {
        let task = self.task;
        let shard = self.shard.clone();
        let (worker, id) = (self.index, job.id);
        let device = self.device.clone();
        // A pool of its own: trainings that share one can nest and stall each other.
        trainer::threads::run_alone(job.threads, move || {
            let start = Start {
                genome: &job.genome,
                parent: job.parent_tensors.as_ref(),
                invalidated: &job.invalidated,
                inits: &job.inits,
                seed: job.seed,
                augment_judge: job.augment_judge.as_ref(),
            };
            let trained = train_individual(
                &start,
                &device,
                task,
                &job.config,
                false,
                Some(&job.dir),
                |p| {
                    shard.do_send(Progress {
                        worker,
                        id,
                        step: p.step,
                        steps: p.steps,
                        loss: p.loss,
                    })
                },
            )?;
            Ok(trained)
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
