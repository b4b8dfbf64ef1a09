//! The population shard: the actor that owns this node's individuals.
//!
//! It holds the [`Population`] (selection), every [`Record`] (alive and dead, for
//! lineage), the individuals in training, and the open [`StateDir`]; every change is
//! written there (record, then event) before it counts. Its work is split by job:
//!
//! - `breeding`: answering a worker's [`NextJob`](crate::messages::NextJob): the initial
//!   individuals, then tournaments, killing and reproducing as [`Population::select`]
//!   decides, one child per job (or in the final training, [`crate::finale`], copies of
//!   the best); births and failures as workers report them.
//! - `stopping`: the stop conditions ([`stop_at_once`], [`stop_starting`], plain
//!   functions) and the end of the run, sent as a [`RunEnd`] to whoever started it.
//! - `islands`: what gossip says of other islands, and what this one announces.
//! - `migration`: sending emigrants ([`choose_emigrants`], [`destination`],
//!   [`migration_due`]), pulls by joining nodes, the hand-off when leaving.
//! - `admission`: taking migrants in: saved as an [`Arrival`](crate::state::Arrival), scored by a worker, then
//!   admitted as the policy says ([`admission`]).
//! - `views`: what the HTTP endpoint shows (status, population, individuals, metrics).
//! - `handlers`: the actor's message handlers, each a line that calls one of the above.

mod admission;
mod breeding;
mod handlers;
mod islands;
mod migration;
mod stopping;
mod views;

pub use admission::{admission, Admit, CLAIM_TOLERANCE, MAX_WAITING};
pub use islands::experiment_best;
pub use migration::{choose_emigrants, destination, migration_due};
pub use stopping::{stop_at_once, stop_starting, RunFigures};

use crate::config::ExperimentConfig;
use crate::network::Network;
use crate::population::{IndividualId, Population};
use crate::report::Reporter;
use crate::state::{Arrival, ModelStore, Record, StateDir, Status};
use crate::view::{MigrationView, StatusView, WorkerActivity};
use actix::{Actor, Addr, AsyncContext, Context};
use genome::{Genome, InputShape, Limits, Mutation, MutationWeights};
use islands::Island;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use trainer::train::PhaseSeconds;
use trainer::Device;

/// How long a joining node waits before its first retry of a pull that brought nothing
/// (the wait doubles with each retry, up to [`PULL_RETRY_MAX`]).
pub const PULL_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between two pulls of a joining node.
pub const PULL_RETRY_MAX: Duration = Duration::from_secs(10);
/// How long a joining node keeps pulling from a peer that has nothing yet (a peer still
/// training its first individuals, a slow machine) before regular migration takes over.
pub const PULL_PATIENCE: Duration = Duration::from_secs(600);
/// How long a leaving node waits for its hand-off to be answered.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a worker with nothing to do waits before asking again.
pub const WAIT: Duration = Duration::from_millis(200);
/// The step count of a final training whose parent's pace is not known: its time ends
/// it long before.
pub const FINAL_STEPS_UNKNOWN: u64 = 10_000_000;
/// Failed trainings in a row after which the run stops (something is wrong with the
/// data, the device or the machine, not with one genome).
pub const MAX_CONSECUTIVE_FAILURES: usize = 5;

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// Why it stopped.
    pub reason: String,
    /// The error that stopped it, if one did.
    pub error: Option<String>,
    /// The node's status at the end.
    pub status: StatusView,
}

/// Everything the shard starts from.
pub struct ShardSetup {
    /// The open state directory.
    pub state: StateDir,
    /// The effective configuration (the frozen one with this run's overrides).
    pub config: ExperimentConfig,
    /// Records found in the state directory (empty for a new run).
    pub records: Vec<Record>,
    /// The population they make (`Resumed::population`), or an empty one.
    pub population: Population,
    /// The next id to hand out.
    pub next_id: IndividualId,
    /// Wall time of the run's earlier sessions, milliseconds.
    pub wall_before_ms: u64,
    /// This node's id.
    pub node_id: String,
    /// The images' shape (for the initial individuals).
    pub input: InputShape,
    /// The number of classes.
    pub classes: u32,
    /// Training workers.
    pub workers: usize,
    /// The digest of the data set loaded (`Dataset::digest`), which peers compare.
    pub data_digest: Option<String>,
    /// What to tell the person watching.
    pub reporter: Reporter,
    /// Migrants that were still waiting to be scored when the run last stopped
    /// ([`crate::state::ModelStore::load_arrival`]); they are scored first.
    pub waiting: Vec<Arrival>,
    /// How often each mutation is drawn (`evolution.mutation_weights`, checked).
    pub mutation_weights: MutationWeights,
    /// Bytes of memory the trainings may take together on each device (`None`: no
    /// limit), see [`crate::memory_budget`]; worker `i` trains on device `i` modulo
    /// their number.
    pub memory_budgets: Vec<Option<u64>>,
}

/// What a worker is doing.
#[derive(Debug, Clone)]
struct WorkerState {
    state: WorkerActivity,
    individual: Option<IndividualId>,
    step: u64,
    steps: u64,
    loss: Option<f64>,
}

/// An individual in training.
#[derive(Debug, Clone)]
struct InFlight {
    genome: Genome,
    parent: Option<IndividualId>,
    mutations: Vec<Mutation>,
    born_at_ms: u64,
    /// Bytes of device memory its training was estimated to take.
    memory: u64,
    /// The device it trains on (an index into the node's devices).
    device: usize,
    /// Stops its training (when the final training begins, a breeding training is
    /// abandoned so that its threads go to the final one).
    cancel: trainer::Cancel,
    /// Whether it is a copy the final training trains.
    is_final: bool,
}

/// Size and cost of a genome, computed once.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    vertices: usize,
    edges: usize,
    forward_flops: u64,
    params: u64,
}

fn shape_of(genome: &Genome, limits: &Limits) -> Shape {
    let cost = genome.analyze(limits).map(|a| a.cost).unwrap_or_default();
    Shape {
        vertices: genome.vertices.len(),
        edges: genome.edges.len(),
        forward_flops: cost.forward_flops,
        params: cost.params,
    }
}

/// The experiment's id: its name and the start of its fitness fingerprint, the same on
/// every node that scores individuals the same way.
pub fn experiment_id(config: &ExperimentConfig) -> String {
    let fingerprint = config.fitness_fingerprint();
    format!(
        "{}-{}",
        config.experiment.name,
        &fingerprint[..fingerprint.len().min(12)]
    )
}

/// The seed of this node's random choices: the experiment's seed mixed with the node id
/// (FNV-1a), so that islands of one experiment do not all make the same choices, while a
/// node resumed from its state directory (same id) keeps its own.
pub fn node_seed(seed: u64, node_id: &str) -> u64 {
    seed ^ crate::config::fnv1a64(node_id.as_bytes())
}

/// The seed of individual `id` of an experiment seeded `seed` (splitmix64 of both).
pub fn individual_seed(seed: u64, id: IndividualId) -> u64 {
    splitmix64_mix(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// splitmix64's output function: a well-mixed 64-bit value from `z`.
pub fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The population shard actor.
pub struct Shard {
    state: StateDir,
    /// Bytes of memory the trainings may take together, per device (`None`: no limit).
    memory_budgets: Vec<Option<u64>>,
    /// The individuals' folders, for file work off this thread.
    models: ModelStore,
    config: ExperimentConfig,
    mutation_weights: MutationWeights,
    population: Population,
    records: BTreeMap<IndividualId, Record>,
    shapes: BTreeMap<IndividualId, Shape>,
    in_flight: BTreeMap<IndividualId, InFlight>,
    workers: Vec<WorkerState>,
    next_id: IndividualId,
    rng: ChaCha8Rng,
    node_id: String,
    experiment_id: String,
    input: InputShape,
    classes: u32,
    cpu: Device,
    started: Instant,
    wall_before_ms: u64,
    total_flops: f64,
    /// Where the trainings' wall time went, summed over the run's records.
    phase_totals: PhaseSeconds,
    deaths: usize,
    failures: usize,
    consecutive_failures: usize,
    stopping: Option<String>,
    reporter: Reporter,
    done: Option<futures::channel::oneshot::Sender<RunEnd>>,
    network: Option<Network>,
    listen_addrs: Vec<String>,
    connected: std::collections::BTreeSet<String>,
    islands: BTreeMap<String, Island>,
    /// When each individual last changed while this node runs (born, died, admitted),
    /// Unix milliseconds, so that `GET /history?since=` sends only what changed.
    touched: BTreeMap<IndividualId, u64>,
    /// What gossip told of each island over time (`GET /history`).
    island_curves: BTreeMap<String, Vec<islands::CurvePoint>>,
    penalized: usize,
    last_born: Option<IndividualId>,
    self_addr: Option<Addr<Shard>>,
    compatible: std::collections::BTreeSet<String>,
    since_migration: u64,
    migrating: bool,
    migrations: Vec<MigrationView>,
    /// A new run (no records at start): it pulls migrants from the first peer it meets.
    fresh: bool,
    pulled: bool,
    /// Pulls sent so far, and when the first went.
    pull_attempts: u32,
    first_pull: Option<Instant>,
    /// Set while handing off before leaving: why the node is leaving.
    leaving: Option<String>,
    /// Migrants saved and waiting for a worker to score them.
    arrivals: VecDeque<Arrival>,
    /// Migrants a worker is scoring.
    checking: BTreeMap<IndividualId, Arrival>,
    /// Migrants being saved off this thread, with their weights' checksums.
    saving: BTreeMap<IndividualId, String>,
    /// See [`ShardSetup::data_digest`].
    data_digest: Option<String>,
    /// The final training's members: those chosen to train further and the copies it
    /// made (see [`crate::finale`]).
    final_taken: BTreeSet<IndividualId>,
    /// Final trainings started (at most `stop.final_training_members` when set).
    final_started: usize,
    /// Whether the final training has begun (it is announced once).
    final_begun: bool,
    /// The members the final training chose, best first.
    final_members: Vec<IndividualId>,
    /// Whether the final training has decided on its augmentation variant (see
    /// `stop.final_training_augment_variant`): started it, or found none to train.
    final_variant_decided: bool,
    /// SGD steps per second of this node's trainings, by individual, to size the final
    /// trainings' step counts.
    sgd_rates: BTreeMap<IndividualId, f64>,
}

impl Shard {
    /// A shard over the records of `setup`; how its run ends is sent to `done`.
    pub fn new(setup: ShardSetup, done: futures::channel::oneshot::Sender<RunEnd>) -> Shard {
        let config = setup.config;
        let population = setup.population;
        let limits = config.evolution.limits;
        let shapes = setup
            .records
            .iter()
            .map(|r| (r.id, shape_of(&r.genome, &limits)))
            .collect();
        let total_flops = setup.records.iter().map(|r| r.flops as f64).sum();
        let mut phase_totals = PhaseSeconds::default();
        for p in setup.records.iter().filter_map(|r| r.phases.as_ref()) {
            phase_totals.add(p);
        }
        let fresh = setup.records.is_empty();
        let deaths = setup
            .records
            .iter()
            .filter(|r| r.status == Status::Dead)
            .count();
        let experiment_id = experiment_id(&config);
        let seed = node_seed(config.experiment.seed, &setup.node_id);
        let rng = ChaCha8Rng::seed_from_u64(individual_seed(seed ^ 0x5e1e_c710, setup.next_id));
        let idle = WorkerState {
            state: WorkerActivity::Idle,
            individual: None,
            step: 0,
            steps: 0,
            loss: None,
        };
        Shard {
            memory_budgets: if setup.memory_budgets.is_empty() {
                vec![None]
            } else {
                setup.memory_budgets
            },
            models: setup.state.models(),
            state: setup.state,
            mutation_weights: setup.mutation_weights,
            population,
            records: setup.records.into_iter().map(|r| (r.id, r)).collect(),
            shapes,
            in_flight: BTreeMap::new(),
            workers: vec![idle; setup.workers],
            next_id: setup.next_id,
            rng,
            node_id: setup.node_id,
            experiment_id,
            input: setup.input,
            classes: setup.classes,
            cpu: Device::Cpu,
            started: Instant::now(),
            wall_before_ms: setup.wall_before_ms,
            total_flops,
            phase_totals,
            deaths,
            failures: 0,
            consecutive_failures: 0,
            stopping: None,
            reporter: setup.reporter,
            done: Some(done),
            config,
            network: None,
            listen_addrs: Vec::new(),
            connected: Default::default(),
            islands: BTreeMap::new(),
            island_curves: BTreeMap::new(),
            touched: BTreeMap::new(),
            penalized: 0,
            last_born: None,
            self_addr: None,
            compatible: Default::default(),
            since_migration: 0,
            migrating: false,
            migrations: Vec::new(),
            fresh,
            pulled: false,
            pull_attempts: 0,
            first_pull: None,
            leaving: None,
            arrivals: setup.waiting.into(),
            checking: BTreeMap::new(),
            saving: BTreeMap::new(),
            data_digest: setup.data_digest,
            final_taken: BTreeSet::new(),
            final_started: 0,
            final_begun: false,
            final_members: Vec::new(),
            final_variant_decided: false,
            sgd_rates: BTreeMap::new(),
        }
    }

    pub(super) fn run_minutes(&self) -> f64 {
        (self.wall_before_ms as f64 + self.started.elapsed().as_millis() as f64) / 60_000.0
    }

    /// Removes the folder of an individual that did not join (a failed or abandoned
    /// training, a refused migrant); a failure is said, not fatal: resume removes such a
    /// folder again.
    pub(super) fn discard(&mut self, id: IndividualId) {
        if let Err(e) = self.state.discard(id) {
            self.reporter
                .line(&format!("the folder of #{id} could not be removed: {e}"));
        }
    }

    /// Initial individuals made so far (trained or training).
    pub(super) fn initial_made(&self) -> usize {
        self.records.values().filter(|r| r.parent.is_none()).count()
            + self
                .in_flight
                .values()
                .filter(|f| f.parent.is_none())
                .count()
    }
}

/// `amount / seconds`, 0 when no time has passed.
fn rate(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

/// A fitness as a percentage, `-` if unknown.
fn percent(f: Option<f64>) -> String {
    f.map_or("-".into(), |f| format!("{:.2}%", 100.0 * f))
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.self_addr = Some(ctx.address());
        // The wall-time limit is checked even while every worker is busy.
        // So is the start of the final training, which abandons the breeding in flight.
        ctx.run_interval(Duration::from_millis(500), |shard, _| {
            shard.check_stop();
            shard.begin_final();
        });
        // Gossip even when nothing is born, so that peers that join learn of us.
        ctx.run_interval(Duration::from_secs(5), |shard, _| shard.announce());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn individual_seeds_differ_and_repeat() {
        let seeds: std::collections::BTreeSet<u64> =
            (0..1000).map(|id| individual_seed(7, id)).collect();
        assert_eq!(seeds.len(), 1000);
        assert_eq!(individual_seed(7, 3), individual_seed(7, 3));
        assert_ne!(individual_seed(7, 3), individual_seed(8, 3));
        assert_ne!(node_seed(7, "a"), node_seed(7, "b"));
        assert_eq!(node_seed(7, "a"), node_seed(7, "a"));
    }
}
