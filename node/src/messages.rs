//! The messages between the node's actors, in one place: what workers ask of the shard
//! and tell it ([`NextJob`], [`Progress`], [`JobDone`], [`Checked`], [`WorkerStopped`]),
//! what the shard hands them ([`Assignment`]: a [`Job`] or a [`Check`]), what the HTTP
//! endpoint asks ([`GetStatus`], [`GetPopulation`], [`GetIndividual`], [`GetLineage`],
//! [`GetHistory`], [`GetMetrics`], [`GetMigrations`], [`GetPeers`]), how `evo run` stops it ([`Shutdown`]) and attaches
//! the network ([`AttachNetwork`]), and what the shard sends itself when work it handed
//! off is done: the network's replies ([`MigrationAnswer`], [`PullAnswer`],
//! [`RetryPull`]) and file work run off its thread ([`ArrivalSaved`], [`PullAnswered`]).
//!
//! Defining them apart from the actors that handle them keeps the modules free of
//! cycles: `shard` and `worker` both import this module, neither the other's insides.

use crate::network::{NetEvents, Network};
use crate::population::IndividualId;
use crate::view::{
    HistoryView, IndividualView, LineageView, MemberView, MigrationView, PeerView, StatusView,
};
use actix::Message;
use genome::{Genome, Invalidated, TensorInit};
use protocol::wire::Response;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use trainer::{Tensor, TrainConfig};

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
    /// The member's trained tensors where a final training from fresh weights judges
    /// its augmentation from them (`trainer::individual_training::Start::augment_judge`).
    pub augment_judge: Option<HashMap<String, Tensor>>,
    /// The seed of its fresh weights, batch order and augmentation.
    pub seed: u64,
    /// Where to save the trained model.
    pub dir: PathBuf,
    /// How to train it.
    pub config: TrainConfig,
    /// CPU threads of its training's pool, a pool of its own (`trainer::threads`): the
    /// node's share for one worker, or more for a final training with idle workers
    /// beside it.
    pub threads: usize,
}

/// A migrant saved in its folder, to score on this node's validation images: its fitness
/// here, whatever its sender claimed.
pub struct Check {
    /// Its id on this node.
    pub id: IndividualId,
    /// Its folder (genome, weights, metadata).
    pub dir: PathBuf,
    /// CPU threads of the pool it is scored on.
    pub threads: usize,
}

/// What training one individual gave (the trainer's account of it).
pub use trainer::individual_training::TrainedIndividual as Trained;

/// What the shard gives a worker that asks for work.
pub enum Assignment {
    /// Train this individual.
    Train(Box<Job>),
    /// Score this migrant on the validation images.
    Check(Check),
    /// Nothing to do now; ask again after this long.
    Wait(Duration),
    /// The run is over.
    Stop,
}

/// A worker asks for work.
#[derive(Message)]
#[rtype(result = "Assignment")]
pub struct NextJob {
    /// The worker's index.
    pub worker: usize,
}

/// A worker's training progress.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Progress {
    /// The worker's index.
    pub worker: usize,
    /// The individual it trains.
    pub id: IndividualId,
    /// Steps done.
    pub step: u64,
    /// Steps in all.
    pub steps: u64,
    /// Mean training loss since the last report.
    pub loss: f64,
}

/// A worker finished a job (trained and saved, or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct JobDone {
    /// The worker's index.
    pub worker: usize,
    /// The individual.
    pub id: IndividualId,
    /// What training gave, or why it failed.
    pub result: Result<Trained, String>,
}

/// A worker scored a migrant ([`Assignment::Check`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checked {
    /// The worker's index.
    pub worker: usize,
    /// The migrant's id on this node.
    pub id: IndividualId,
    /// Its validation accuracy here, or why it could not be scored.
    pub result: Result<f64, String>,
}

/// A worker left its loop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerStopped {
    /// The worker's index.
    pub worker: usize,
}

/// Stop the run now (a signal).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Why.
    pub reason: String,
}

/// Asks for the node's status.
#[derive(Message)]
#[rtype(result = "StatusView")]
pub struct GetStatus;

/// Asks for the population: the live members and those in training, or everyone.
#[derive(Message)]
#[rtype(result = "Vec<MemberView>")]
pub struct GetPopulation {
    /// Include the dead.
    pub all: bool,
}

/// Asks for one individual.
#[derive(Message)]
#[rtype(result = "Option<IndividualView>")]
pub struct GetIndividual(pub IndividualId);

/// Asks for an individual and its ancestors.
#[derive(Message)]
#[rtype(result = "Option<LineageView>")]
pub struct GetLineage(pub IndividualId);

/// Asks for the history the dashboard draws: rows changed after `since_ms` (0: all).
#[derive(Message)]
#[rtype(result = "HistoryView")]
pub struct GetHistory {
    /// Unix milliseconds; 0 for everything.
    pub since_ms: u64,
}

/// Asks for the Prometheus metrics text.
#[derive(Message)]
#[rtype(result = "String")]
pub struct GetMetrics;

/// Hands the shard its network.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachNetwork {
    /// The handle to send commands with.
    pub network: Network,
    /// The events the network emits, which the shard takes as a stream.
    pub events: NetEvents,
}

/// The answer to a migration this shard sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MigrationAnswer {
    /// The receiving peer.
    pub peer: String,
    /// What was sent: id, fitness, weights checksum.
    pub sent: Vec<(IndividualId, f64, String)>,
    /// Emigrants that could not be read, and why.
    pub unreadable: Vec<(IndividualId, String)>,
    /// Its response, or why there is none.
    pub result: Result<Response, String>,
}

/// A migrant's files were saved off the shard's thread (or could not be).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ArrivalSaved {
    /// The id it was given here.
    pub id: IndividualId,
    /// The arrival, saved, or why it was not.
    pub result: Result<crate::state::Arrival, String>,
}

/// Our emigrants were read off the shard's thread and sent; what was sent, for the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PullAnswered {
    /// The joining peer that asked.
    pub peer: String,
    /// What was sent: id, fitness, weights checksum.
    pub sent: Vec<(IndividualId, f64, String)>,
    /// Individuals that could not be read, and why.
    pub unreadable: Vec<(IndividualId, String)>,
}

/// The answer to a pull this shard sent when it joined.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PullAnswer {
    /// The peer asked.
    pub peer: String,
    /// Its response, or why there is none.
    pub result: Result<Response, String>,
}

/// Pull again from a peer that had nothing to give.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetryPull(pub String);

/// Asks for the migrations in and out since this node started.
#[derive(Message)]
#[rtype(result = "Vec<MigrationView>")]
pub struct GetMigrations;

/// Asks for the peers and islands this node knows.
#[derive(Message)]
#[rtype(result = "Vec<PeerView>")]
pub struct GetPeers;
