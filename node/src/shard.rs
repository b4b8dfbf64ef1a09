//! The population shard: the actor that owns this node's individuals.
//!
//! It holds the [`Population`] (selection), every [`Record`] (alive and dead, for
//! lineage), the individuals in training, and the open [`StateDir`]; every change is
//! written there (record, then event) before it counts. Workers ask it for work
//! ([`NextJob`]): it makes the initial individuals first, then runs tournaments, killing
//! and reproducing as [`Population::select`] decides, and hands out one child to train.
//! Workers report progress and results back ([`Progress`], [`JobDone`]). The HTTP
//! endpoint reads it through [`GetStatus`], [`GetPopulation`], [`GetIndividual`] and
//! [`GetMetrics`].
//!
//! The run stops when a stop condition of the config is met: after a number of
//! individuals or of FLOPs it lets the trainings in flight finish; on its wall-time
//! limit, a target accuracy, a signal ([`Shutdown`]) or an error it stops at once and the
//! trainings in flight are abandoned (logged as failed). With a final training
//! ([`crate::finale`]) the last share of the wall time trains copies of the best instead
//! of breeding, and the wall-time limit waits for them (a grace period at most). Then it
//! sends a [`RunEnd`] to whoever started it.

use crate::budget::child_steps;
use crate::config::{Admission, Destination, Emigrants, MigrationSection};
use crate::config::{ExperimentConfig, FitnessSettings};
use crate::finale;
use crate::network::{Command, Network};
use crate::population::{Decision, IndividualId, Population};
use crate::report::Reporter;
use crate::state::Origin;
use crate::state::{now_ms, Event, Record, StateDir, StateError, Status, ARRIVAL_FILE};
use crate::view::MigrationView;
use crate::view::{
    Ancestor, IndividualView, IslandBest, MemberView, PeerView, StatusView, WorkerView,
};
use crate::worker::{Check, Job, Trained};
use actix::Addr;
use actix::{Actor, AsyncContext, Context, Handler, Message, MessageResult};
use genome::{
    reproduce_with_style, Genome, InputShape, Invalidated, Limits, Mutation, MutationWeights,
};
use protocol::wire::{Announcement, Migrant, Request, Response, Summary};
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use trainer::individual::{write_atomic, ModelMeta, GENOME_FILE, META_FILE, WEIGHTS_FILE};
use trainer::train::PhaseSeconds;
use trainer::Device;
use trainer::TrainConfig;

/// How long a joining node waits before pulling again from a peer with nothing yet.
pub const PULL_RETRY: Duration = Duration::from_secs(2);
/// How many times a joining node pulls from its first peer.
pub const MAX_PULL_ATTEMPTS: u32 = 15;
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
    /// Where the end of the run is sent.
    pub done: futures::channel::oneshot::Sender<RunEnd>,
    /// Migrants that were still waiting to be scored when the run last stopped
    /// ([`Arrival::load`]); they are scored first.
    pub waiting: Vec<Arrival>,
    /// How often each mutation is drawn (`evolution.mutation_weights`, checked).
    pub mutation_weights: MutationWeights,
}

/// What a worker is doing.
#[derive(Debug, Clone)]
struct WorkerState {
    state: &'static str,
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
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    seed ^ h
}

/// The seed of individual `id` of an experiment seeded `seed` (splitmix64 of both).
pub fn individual_seed(seed: u64, id: IndividualId) -> u64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The population shard actor.
pub struct Shard {
    state: StateDir,
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
    pull_attempts: u32,
    /// Set while handing off before leaving: why the node is leaving.
    leaving: Option<String>,
    /// Migrants saved and waiting for a worker to score them.
    arrivals: VecDeque<Arrival>,
    /// Migrants a worker is scoring.
    checking: BTreeMap<IndividualId, Arrival>,
    /// See [`ShardSetup::data_digest`].
    data_digest: Option<String>,
    /// The final training's members: those chosen to train further and the copies it
    /// made (see [`crate::finale`]).
    final_taken: BTreeSet<IndividualId>,
    /// Whether the final training has begun (it is announced once).
    final_begun: bool,
    /// SGD steps per second of this node's trainings, by individual, to size the final
    /// trainings' step counts.
    sgd_rates: BTreeMap<IndividualId, f64>,
}

/// A migrant saved in its folder under a new id, not yet in the population: it joins
/// once a worker has scored it on this node's validation images. Its folder holds it as
/// an [`ARRIVAL_FILE`] until then, so that one still waiting when the node stops is
/// scored when the run resumes ([`Arrival::load`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arrival {
    /// Its id on this node.
    pub id: IndividualId,
    /// The peer that sent it.
    pub peer: String,
    /// What the sender said of it (its fitness is the claim).
    pub summary: Summary,
    /// SHA-256 of its weights, hex.
    pub checksum: String,
}

impl Arrival {
    /// The migrant waiting in the folder of `id`, if that folder holds a whole one: its
    /// arrival note, genome, metadata and weights with the checksum the note gives.
    pub fn load(state: &StateDir, id: IndividualId) -> Result<Arrival, String> {
        let dir = state.individual_dir(id);
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let arrival: Arrival = serde_json::from_slice(&read(ARRIVAL_FILE)?)
            .map_err(|e| format!("{}: {e}", dir.join(ARRIVAL_FILE).display()))?;
        if arrival.id != id {
            return Err(format!("its arrival note names #{}", arrival.id));
        }
        read(GENOME_FILE)?;
        read(META_FILE)?;
        if hex(&protocol::wire::checksum(&read(WEIGHTS_FILE)?)) != arrival.checksum {
            return Err("its weights do not match their checksum".into());
        }
        Ok(arrival)
    }
}

/// How far a migrant's measured validation accuracy may be from what its sender claimed
/// (the same weights on the same images score the same; another kind of device may
/// round a few borderline images the other way).
pub const CLAIM_TOLERANCE: f64 = 0.01;

/// Most migrants waiting to be scored at once; more are refused until they are.
pub const MAX_WAITING: usize = 64;

/// What gossip told of another island.
#[derive(Debug, Clone)]
struct Island {
    population: u32,
    trained: u64,
    best: Option<Summary>,
    last_contact_ms: u64,
}

impl Shard {
    /// A shard over the records of `setup`.
    pub fn new(setup: ShardSetup) -> Shard {
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
            state: "idle",
            individual: None,
            step: 0,
            steps: 0,
            loss: None,
        };
        Shard {
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
            done: Some(setup.done),
            config,
            network: None,
            listen_addrs: Vec::new(),
            connected: Default::default(),
            islands: BTreeMap::new(),
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
            leaving: None,
            arrivals: setup.waiting.into(),
            checking: BTreeMap::new(),
            data_digest: setup.data_digest,
            final_taken: BTreeSet::new(),
            final_begun: false,
            sgd_rates: BTreeMap::new(),
        }
    }

    fn run_minutes(&self) -> f64 {
        (self.wall_before_ms as f64 + self.started.elapsed().as_millis() as f64) / 60_000.0
    }

    /// Initial individuals made so far (trained or training).
    fn initial_made(&self) -> usize {
        self.records.values().filter(|r| r.parent.is_none()).count()
            + self
                .in_flight
                .values()
                .filter(|f| f.parent.is_none())
                .count()
    }

    /// Whether the run is in its final training (`stop.final_training_share`).
    fn in_final_training(&self) -> bool {
        let stop = &self.config.stop;
        finale::is_final(
            self.run_minutes(),
            stop.max_wall_minutes,
            stop.final_training_share,
        )
    }

    /// Whether the run has a final training, which lets its wall-time limit wait for the
    /// final trainings to finish.
    fn has_final_training(&self) -> bool {
        let stop = &self.config.stop;
        finale::starts_at(stop.max_wall_minutes, stop.final_training_share).is_some()
    }

    /// A stop condition that ends the run at once. With a final training the wall-time
    /// limit first only stops new trainings ([`Shard::budget_spent`]) and ends the run a
    /// grace period later.
    fn immediate_stop(&self) -> Option<String> {
        let stop = &self.config.stop;
        if let Some(max) = stop.max_wall_minutes {
            let grace = if self.has_final_training() {
                finale::grace_minutes(max)
            } else {
                0.0
            };
            if self.run_minutes() >= max + grace {
                return Some(format!("reached the wall-time limit of {max} minutes"));
            }
        }
        if let Some(target) = stop.target_accuracy {
            if let Some(best) = self.population.best().and_then(|m| m.fitness) {
                if best >= target {
                    return Some(format!(
                        "reached the target validation accuracy {target} ({best:.4})"
                    ));
                }
            }
        }
        None
    }

    /// A stop condition after which no new training starts.
    fn budget_spent(&self) -> Option<String> {
        let stop = &self.config.stop;
        if let Some(max) = stop.max_wall_minutes {
            if self.has_final_training() && self.run_minutes() >= max {
                return Some(format!("reached the wall-time limit of {max} minutes"));
            }
        }
        if let Some(max) = stop.max_individuals {
            if (self.records.len() + self.in_flight.len()) as u64 >= max {
                return Some(format!("trained {max} individuals"));
            }
        }
        if let Some(max) = stop.max_total_flops {
            if self.total_flops >= max {
                return Some(format!("spent {max:e} FLOPs"));
            }
        }
        None
    }

    /// Checks the stop conditions; ends the run if one is met.
    fn check_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        if let Some(reason) = self.immediate_stop() {
            self.finish(reason, None);
        } else if self.in_flight.is_empty() {
            if let Some(reason) = self.budget_spent() {
                self.finish(reason, None);
            }
        }
    }

    /// Ends the run: abandons the trainings in flight, logs the stop, reports the end.
    fn finish(&mut self, reason: String, error: Option<String>) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(reason.clone());
        let now = now_ms();
        let abandoned: Vec<IndividualId> = self.in_flight.keys().copied().collect();
        for id in abandoned {
            self.in_flight.remove(&id);
            let _ = self.population.kill(id);
            let _ = self.state.append(&Event::TrainingFailed {
                at_ms: now,
                id,
                reason: format!("abandoned: the run stopped ({reason})"),
            });
        }
        let _ = self.state.append(&Event::Stopped {
            at_ms: now,
            reason: match &error {
                Some(e) => format!("{reason}: {e}"),
                None => reason.clone(),
            },
        });
        self.reporter.finish();
        self.reporter.line(&format!("stopping: {reason}"));
        self.reporter
            .json(serde_json::json!({"event": "stopped", "reason": reason, "error": error}));
        let status = self.status();
        if let Some(done) = self.done.take() {
            let _ = done.send(RunEnd {
                reason,
                error,
                status,
            });
        }
    }

    /// A write to the state directory failed: nothing more can be kept safely.
    fn fatal(&mut self, error: StateError) {
        self.finish(
            "the state directory could not be written".into(),
            Some(error.to_string()),
        );
    }

    fn next_job(&mut self, worker: usize) -> Assignment {
        if self.stopping.is_some() || self.leaving.is_some() {
            return Assignment::Stop;
        }
        self.check_stop();
        if self.stopping.is_some() {
            return Assignment::Stop;
        }
        if self.budget_spent().is_some() {
            self.set_idle(worker, "waiting for the last trainings");
            return Assignment::Wait(WAIT);
        }
        if self.in_final_training() {
            return self.start_final(worker);
        }
        if let Some(arrival) = self.arrivals.pop_front() {
            let id = arrival.id;
            if let Some(w) = self.workers.get_mut(worker) {
                *w = WorkerState {
                    state: "checking",
                    individual: Some(id),
                    step: 0,
                    steps: 0,
                    loss: None,
                };
            }
            self.checking.insert(id, arrival);
            return Assignment::Check(Check {
                id,
                dir: self.state.individual_dir(id),
            });
        }
        if self.initial_made() < self.config.evolution.initial_population
            && !self.population.is_full()
        {
            return self.start(worker, None, None);
        }
        // Each kill shrinks the population, so this ends within a population's worth.
        for _ in 0..=self.population.target_size() + 1 {
            match self.population.select(&mut self.rng) {
                Decision::Kill(id) => {
                    if let Err(e) = self.kill(id) {
                        self.fatal(e);
                        return Assignment::Stop;
                    }
                }
                Decision::Reproduce { parent } => return self.start(worker, Some(parent), None),
                Decision::Wait => break,
            }
        }
        self.set_idle(worker, "waiting for trained individuals");
        Assignment::Wait(WAIT)
    }

    fn set_idle(&mut self, worker: usize, why: &str) {
        if let Some(w) = self.workers.get_mut(worker) {
            if w.state != "idle" {
                self.reporter.idle(worker, why);
            }
            w.state = "idle";
            w.individual = None;
        }
    }

    /// Hands `worker` a final training: a copy of the best member not yet taken, trained
    /// until shortly before the wall-time limit; or a wait when none is left or too
    /// little time is.
    fn start_final(&mut self, worker: usize) -> Assignment {
        let Some(max) = self.config.stop.max_wall_minutes else {
            return Assignment::Wait(WAIT);
        };
        if !self.final_begun {
            self.final_begun = true;
            let line = format!(
                "final training: no more breeding; each worker trains a copy of one of the best until the limit of {max} minutes"
            );
            self.reporter.line(&line);
            self.reporter.json(
                serde_json::json!({"event": "final_training", "at_minutes": self.run_minutes()}),
            );
        }
        let Some(parent) = finale::next_parent(self.population.ranked(), &self.final_taken) else {
            self.set_idle(worker, "final training: no member left to train");
            return Assignment::Wait(WAIT);
        };
        let outside_sgd = self
            .records
            .get(&parent)
            .and_then(|r| r.phases)
            .map(|p| p.build + p.validate + p.save);
        let remaining_s = (max - self.run_minutes()) * 60.0;
        let Some(seconds) =
            finale::training_seconds(remaining_s, finale::overhead_seconds(outside_sgd))
        else {
            self.set_idle(worker, "final training: too little time left");
            return Assignment::Wait(WAIT);
        };
        self.final_taken.insert(parent);
        self.start(worker, Some(parent), Some(seconds))
    }

    /// Starts training an initial individual (`parent` `None`) or a child of `parent`:
    /// a mutated one, or with `final_seconds` an unchanged copy (IDENTITY) trained for
    /// that long with one cosine decay (the final training).
    fn start(
        &mut self,
        worker: usize,
        parent: Option<IndividualId>,
        final_seconds: Option<f64>,
    ) -> Assignment {
        let limits = self.config.evolution.limits;
        let (genome, mutations, invalidated, inits, parent_tensors) = match parent {
            None => (
                self.initial_genome(),
                Vec::new(),
                Invalidated::none(),
                Vec::new(),
                None,
            ),
            Some(p) if final_seconds.is_some() => {
                let Some(parent_genome) = self.records.get(&p).map(|r| r.genome.clone()) else {
                    return Assignment::Wait(WAIT);
                };
                let dir = self.state.individual_dir(p);
                let tensors = match trainer::individual::load_tensors(&dir, &self.cpu) {
                    Ok(t) => t,
                    Err(e) => {
                        self.reporter.line(&format!(
                            "the weights of #{p} could not be read ({e}); it is not trained further"
                        ));
                        return Assignment::Wait(WAIT);
                    }
                };
                (
                    parent_genome,
                    vec![Mutation::Identity],
                    Invalidated::none(),
                    Vec::new(),
                    Some(tensors),
                )
            }
            Some(p) => {
                let Some(parent_genome) = self.records.get(&p).map(|r| r.genome.clone()) else {
                    return Assignment::Wait(WAIT);
                };
                let repro = match reproduce_with_style(
                    &parent_genome,
                    self.config.evolution.mutations_per_reproduction,
                    &mut self.rng,
                    &limits,
                    self.config.evolution.mutation_style,
                    &self.mutation_weights,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        self.reporter
                            .line(&format!("could not mutate #{p}: {e}; drawing again"));
                        return Assignment::Wait(WAIT);
                    }
                };
                let dir = self.state.individual_dir(p);
                let tensors = match trainer::individual::load_tensors(&dir, &self.cpu) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.reporter.line(&format!(
                            "the weights of #{p} could not be read ({e}); its child starts from fresh weights"
                        ));
                        None
                    }
                };
                let invalidated = repro.invalidated();
                let inits = repro.inits();
                let mutations = repro.applied.iter().map(|a| a.mutation).collect();
                (repro.child, mutations, invalidated, inits, tensors)
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let born_at_ms = now_ms();
        if let Err(e) = self.population.add(id, None) {
            self.finish("the population is inconsistent".into(), Some(e.to_string()));
            return Assignment::Stop;
        }
        if let Err(e) = self.state.append(&Event::TrainingStarted {
            at_ms: born_at_ms,
            id,
            parent,
            mutations: mutations.clone(),
            node: self.node_id.clone(),
        }) {
            self.fatal(e);
            return Assignment::Stop;
        }
        let what = match (parent, final_seconds) {
            (Some(p), Some(seconds)) => format!("final training of #{p} for {seconds:.0} s"),
            (None, _) => "initial".to_string(),
            (Some(p), None) => format!(
                "from #{p} by {}",
                mutations
                    .iter()
                    .map(|m: &Mutation| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let t = &self.config.training;
        let earlier_children = parent.map(|p| {
            self.records
                .values()
                .filter(|r| r.parent == Some(p))
                .count()
        });
        let steps = match (final_seconds, parent) {
            // Twice the steps the parent's pace would fit, so that the time ends it.
            (Some(seconds), Some(p)) => {
                self.sgd_rates.get(&p).map_or(FINAL_STEPS_UNKNOWN, |rate| {
                    ((2.0 * rate * seconds).ceil() as u64).clamp(t.steps, FINAL_STEPS_UNKNOWN)
                })
            }
            _ => child_steps(t.budget, t.steps, t.budget_max_factor, earlier_children),
        };
        if final_seconds.is_some() {
            self.final_taken.insert(id);
        }
        self.reporter.started(worker, id, &what, steps);
        self.reporter.json(serde_json::json!({
            "event": "training_started", "worker": worker, "id": id, "parent": parent,
            "mutations": mutations,
        }));
        if let Some(w) = self.workers.get_mut(worker) {
            *w = WorkerState {
                state: "training",
                individual: Some(id),
                step: 0,
                steps,
                loss: None,
            };
        }
        self.in_flight.insert(
            id,
            InFlight {
                genome: genome.clone(),
                parent,
                mutations,
                born_at_ms,
            },
        );
        let seed = individual_seed(node_seed(self.config.experiment.seed, &self.node_id), id);
        Assignment::Train(Box::new(Job {
            id,
            genome,
            invalidated,
            inits,
            parent_tensors,
            seed,
            dir: self.state.individual_dir(id),
            config: match final_seconds {
                Some(seconds) => TrainConfig {
                    steps,
                    max_seconds: Some(seconds),
                    schedule: trainer::train::Schedule::Cosine,
                    ..self.config.training.train_config(seed)
                },
                None => TrainConfig {
                    steps,
                    ..self.config.training.train_config(seed)
                },
            },
        }))
    }

    /// The paper's initial individual, with an augmentation gene that starts as the
    /// config's augmentation when `evolution.augmentation_gene` is on.
    fn initial_genome(&self) -> Genome {
        let mut g = Genome::initial(self.input, self.classes);
        if self.config.evolution.augmentation_gene {
            let a = &self.config.training.augment;
            g.augment = Some(genome::AugmentGene {
                crop: a.pad != trainer::batch::Pad::Pixels(0),
                flip: a.flip,
            });
        }
        g
    }

    /// Kills a member chosen by selection (already marked dead in the population).
    fn kill(&mut self, id: IndividualId) -> Result<(), StateError> {
        let Some(record) = self.records.get_mut(&id) else {
            return Ok(());
        };
        let fitness = record.fitness;
        self.state.kill(record, now_ms())?;
        self.deaths += 1;
        self.reporter.line(&format!(
            "death #{id} (val {})",
            percent(fitness.filter(|f| f.is_finite()))
        ));
        self.reporter
            .json(serde_json::json!({"event": "death", "id": id, "fitness": fitness}));
        Ok(())
    }

    fn job_done(&mut self, worker: usize, id: IndividualId, result: Result<Trained, String>) {
        let Some(flight) = self.in_flight.remove(&id) else {
            // Abandoned when the run stopped: what it saved is not part of the run.
            let _ = self.state.discard(id);
            return;
        };
        self.set_idle(worker, "idle");
        match result {
            Ok(trained) => {
                if let Err(e) = self.born(id, flight, &trained) {
                    self.fatal(e);
                    return;
                }
                self.consecutive_failures = 0;
            }
            Err(reason) => {
                self.failures += 1;
                self.consecutive_failures += 1;
                let _ = self.population.kill(id);
                let logged = self.state.append(&Event::TrainingFailed {
                    at_ms: now_ms(),
                    id,
                    reason: reason.clone(),
                });
                let _ = self.state.discard(id);
                self.reporter
                    .line(&format!("training of #{id} failed: {reason}"));
                self.reporter.json(
                    serde_json::json!({"event": "training_failed", "id": id, "reason": reason}),
                );
                if let Err(e) = logged {
                    self.fatal(e);
                    return;
                }
                if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                    self.finish(
                        format!("{MAX_CONSECUTIVE_FAILURES} trainings in a row failed"),
                        Some(reason),
                    );
                    return;
                }
            }
        }
        self.check_stop();
    }

    /// A trained individual joins the population: event, record, birth.
    fn born(
        &mut self,
        id: IndividualId,
        flight: InFlight,
        trained: &Trained,
    ) -> Result<(), StateError> {
        self.state.append(&Event::TrainingFinished {
            at_ms: now_ms(),
            id,
            fitness: Some(trained.fitness),
            flops: trained.flops,
            seconds: trained.seconds,
            phases: Some(trained.phases),
        })?;
        let record = Record {
            id,
            genome: flight.genome,
            fitness: Some(trained.fitness),
            test_accuracy: None,
            status: Status::Alive,
            parent: flight.parent,
            mutations: flight.mutations,
            born_at_ms: flight.born_at_ms,
            died_at_ms: None,
            flops: trained.flops,
            node: self.node_id.clone(),
            origin: None,
            phases: Some(trained.phases),
        };
        self.state.add(&record)?;
        if let Err(e) = self.population.set_fitness(id, trained.fitness) {
            return Err(StateError::Conflict {
                id,
                reason: e.to_string(),
            });
        }
        self.total_flops += trained.flops as f64;
        self.phase_totals.add(&trained.phases);
        if trained.phases.train > 0.0 && trained.steps > 0 {
            self.sgd_rates
                .insert(id, trained.steps as f64 / trained.phases.train);
        }
        self.shapes
            .insert(id, shape_of(&record.genome, &self.config.evolution.limits));
        let origin = match record.parent {
            None => "initial".to_string(),
            Some(p) => format!(
                "from #{p} by {}",
                record
                    .mutations
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.records.insert(id, record);
        self.last_born = Some(id);
        self.announce();
        // The final training sends nobody: the receivers are in theirs too.
        if self.records.get(&id).is_some_and(|r| r.parent.is_some()) && !self.final_begun {
            self.since_migration += 1;
            self.maybe_migrate();
        }
        let best = self.population.best().map(|m| (m.id, m.fitness));
        self.reporter.line(&format!(
            "birth #{id} ({origin}) val {} in {:.1} s{}; best #{} {}; {} trained",
            percent(Some(trained.fitness)),
            trained.seconds,
            if trained.diverged { ", diverged" } else { "" },
            best.map_or("-".to_string(), |b| b.0.to_string()),
            percent(best.and_then(|b| b.1)),
            self.records.len(),
        ));
        self.reporter.json(serde_json::json!({
            "event": "birth", "id": id, "fitness": trained.fitness,
            "seconds": trained.seconds, "flops": trained.flops, "steps": trained.steps,
            "train_loss": trained.train_loss, "diverged": trained.diverged,
            "inherited": trained.inherited,
        }));
        Ok(())
    }

    fn status(&self) -> StatusView {
        let best = self.population.best();
        let busy = self
            .workers
            .iter()
            .filter(|w| w.state == "training" || w.state == "checking")
            .count();
        let idle = self.workers.iter().filter(|w| w.state == "idle").count();
        StatusView {
            node_id: self.node_id.clone(),
            experiment_id: self.experiment_id.clone(),
            experiment: self.config.experiment.name.clone(),
            state_dir: self.state.root().display().to_string(),
            population_size: self.population.alive_count(),
            target_size: self.population.target_size(),
            individuals_trained: self.records.len(),
            in_training: self.in_flight.len(),
            deaths: self.deaths,
            failures: self.failures,
            best_fitness: best.and_then(|m| m.fitness).filter(|f| f.is_finite()),
            best_individual: best.map(|m| m.id),
            total_flops: self.total_flops,
            seconds_by_phase: self.phase_totals,
            flops_per_s: rate(self.total_flops, self.run_minutes() * 60.0),
            training_share: rate(
                self.phase_totals.train,
                self.run_minutes() * 60.0 * self.workers.len() as f64,
            ),
            workers_busy: busy,
            workers_idle: idle,
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(index, w)| WorkerView {
                    index,
                    state: w.state.to_string(),
                    individual: w.individual,
                    step: w.step,
                    steps: w.steps,
                    loss: w.loss,
                })
                .collect(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            run_minutes: self.run_minutes(),
            stopping: self.stopping.clone(),
            peer_id: self.network.as_ref().map(|n| n.peer_id.to_string()),
            listen_addrs: self.listen_addrs.clone(),
            connected_peers: self.connected.len(),
            islands_known: self.islands.len(),
            experiment_best: self.experiment_best(),
            penalized_peers: self.penalized,
            gossip_bytes_out: self.network.as_ref().map_or(0, |n| {
                n.traffic
                    .bytes_out
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
            gossip_bytes_in: self.network.as_ref().map_or(0, |n| {
                n.traffic
                    .bytes_in
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
        }
    }

    /// The best individual of the experiment that gossip has told of, ours included.
    fn experiment_best(&self) -> Option<IslandBest> {
        let ours = self.population.best().and_then(|m| {
            let f = m.fitness.filter(|f| f.is_finite())?;
            Some(IslandBest {
                island: self.node_id.clone(),
                id: m.id,
                fitness: f,
            })
        });
        let theirs = self.islands.values().filter_map(|i| {
            i.best.as_ref().map(|b| IslandBest {
                island: b.island.clone(),
                id: b.id,
                fitness: b.fitness,
            })
        });
        ours.into_iter()
            .chain(theirs)
            .max_by(|a, b| a.fitness.total_cmp(&b.fitness))
    }

    fn peers_view(&self) -> Vec<PeerView> {
        let mut names: std::collections::BTreeSet<&String> = self.connected.iter().collect();
        names.extend(self.islands.keys());
        names
            .into_iter()
            .map(|name| {
                let island = self.islands.get(name);
                PeerView {
                    peer_id: name.clone(),
                    connected: self.connected.contains(name),
                    population: island.map(|i| i.population),
                    trained: island.map(|i| i.trained),
                    best: island.and_then(|i| {
                        i.best.as_ref().map(|b| IslandBest {
                            island: b.island.clone(),
                            id: b.id,
                            fitness: b.fitness,
                        })
                    }),
                    last_contact_ms: island.map(|i| i.last_contact_ms),
                }
            })
            .collect()
    }

    /// What gossip carries of one of our individuals.
    fn summary(&self, id: IndividualId) -> Option<Summary> {
        let r = self.records.get(&id)?;
        let fitness = r.fitness.filter(|f| (0.0..=1.0).contains(f))?;
        Some(Summary {
            id,
            island: self.node_id.clone(),
            genome: r.genome.clone(),
            fitness,
            parent: r.parent,
            mutations: r.mutations.clone(),
            flops: r.flops,
            born_at_ms: r.born_at_ms,
        })
    }

    /// Tells the experiment how this island stands.
    fn announce(&self) {
        let Some(network) = &self.network else {
            return;
        };
        let best_id = self.population.best().map(|m| m.id);
        let best = best_id.and_then(|id| self.summary(id));
        let newborn = self
            .last_born
            .filter(|id| Some(*id) != best_id)
            .and_then(|id| self.summary(id));
        network.send(Command::Announce(Box::new(Announcement {
            experiment: self.experiment_id.clone(),
            island: self.node_id.clone(),
            sent_at_ms: now_ms(),
            population: self.population.alive_count() as u32,
            trained: self.records.len() as u64,
            best,
            newborn,
        })));
    }

    fn on_net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Listening(addr) => {
                self.reporter.line(&format!("listening on {addr}"));
                self.reporter
                    .json(serde_json::json!({"event": "listening", "address": addr}));
                self.listen_addrs.push(addr);
            }
            NetEvent::Connected(peer) => {
                self.connected.insert(peer);
            }
            NetEvent::Disconnected(peer) => {
                self.connected.remove(&peer);
                self.compatible.remove(&peer);
            }
            NetEvent::Compatible(peer) => {
                self.compatible.insert(peer.clone());
                self.reporter
                    .line(&format!("peer {peer} joined the experiment"));
                self.announce();
                if self.fresh && !self.pulled {
                    self.pull(peer);
                }
            }
            NetEvent::Incompatible {
                peer,
                theirs,
                bootstrap,
            } => {
                let ours = FitnessSettings {
                    data_digest: self.data_digest.clone(),
                    ..self.config.fitness_settings()
                };
                let differences = serde_json::from_str::<FitnessSettings>(&theirs)
                    .map(|t| ours.differences(&t).join("; "))
                    .unwrap_or_else(|_| "unreadable settings".into());
                let text = format!(
                    "peer {peer} runs the experiment with other fitness settings \
                     (ours vs theirs: {differences})"
                );
                if bootstrap {
                    self.finish(
                        "refused to join".into(),
                        Some(format!(
                            "{text}: this node's config differs from the experiment's"
                        )),
                    );
                } else {
                    self.reporter.line(&format!("{text}: disconnected"));
                }
            }
            NetEvent::Announcement(a) => {
                if a.island == self.node_id {
                    return;
                }
                let island = self.islands.entry(a.island.clone()).or_insert(Island {
                    population: 0,
                    trained: 0,
                    best: None,
                    last_contact_ms: 0,
                });
                island.population = a.population;
                island.trained = a.trained;
                island.best = a.best;
                island.last_contact_ms = now_ms();
            }
            NetEvent::Request { id, peer, request } => {
                let response = match *request {
                    Request::Hello { .. } => Response::Refused {
                        reason: "hellos are answered by the network".into(),
                    },
                    Request::Migrate { migrants, .. } => self.admit_migrants(&peer, migrants),
                    Request::Pull { count, .. } => self.answer_pull(&peer, count as usize),
                };
                if let Some(n) = &self.network {
                    n.send(Command::Respond {
                        id,
                        response: Box::new(response),
                    });
                }
            }
            NetEvent::Penalized { peer, reason } => {
                self.penalized += 1;
                self.reporter
                    .line(&format!("peer {peer} disconnected: {reason}"));
            }
            NetEvent::Log(text) => self.reporter.line(&text),
        }
    }

    fn member_view(&self, record: &Record) -> MemberView {
        let shape = self.shapes.get(&record.id).copied().unwrap_or_default();
        MemberView {
            id: record.id,
            status: match record.status {
                Status::Alive => "alive",
                Status::Dead => "dead",
            }
            .into(),
            fitness: record.fitness,
            parent: record.parent,
            mutations: record.mutations.clone(),
            learning_rate: record.genome.learning_rate,
            vertices: shape.vertices,
            edges: shape.edges,
            forward_flops: shape.forward_flops,
            params: shape.params,
            flops: record.flops,
            born_at_ms: record.born_at_ms,
            died_at_ms: record.died_at_ms,
            node: record.node.clone(),
        }
    }

    /// What is known of an individual in training, as a record.
    fn flight_record(&self, id: IndividualId, f: &InFlight) -> Record {
        Record {
            id,
            genome: f.genome.clone(),
            fitness: None,
            test_accuracy: None,
            status: Status::Alive,
            parent: f.parent,
            mutations: f.mutations.clone(),
            born_at_ms: f.born_at_ms,
            died_at_ms: None,
            flops: 0,
            node: self.node_id.clone(),
            origin: None,
            phases: None,
        }
    }

    fn population_view(&self, all: bool) -> Vec<MemberView> {
        let mut out: Vec<MemberView> = self
            .records
            .values()
            .filter(|r| all || r.status == Status::Alive)
            .map(|r| self.member_view(r))
            .collect();
        for (id, f) in &self.in_flight {
            let mut view = self.member_view(&self.flight_record(*id, f));
            let shape = shape_of(&f.genome, &self.config.evolution.limits);
            view.status = "training".into();
            view.vertices = shape.vertices;
            view.edges = shape.edges;
            view.forward_flops = shape.forward_flops;
            view.params = shape.params;
            out.push(view);
        }
        out.sort_by_key(|m| m.id);
        out
    }

    fn individual_view(&self, id: IndividualId) -> Option<IndividualView> {
        let (record, status) = match (self.records.get(&id), self.in_flight.get(&id)) {
            (Some(r), _) => (
                r.clone(),
                match r.status {
                    Status::Alive => "alive",
                    Status::Dead => "dead",
                },
            ),
            (None, Some(f)) => (self.flight_record(id, f), "training"),
            (None, None) => return None,
        };
        let mut lineage = Vec::new();
        let mut next = record.parent;
        while let Some(p) = next {
            let Some(r) = self.records.get(&p) else {
                break;
            };
            lineage.push(Ancestor {
                id: p,
                fitness: r.fitness,
                mutations: r.mutations.clone(),
            });
            next = r.parent;
            if lineage.len() > self.records.len() {
                break;
            }
        }
        let analysis = record.genome.analyze(&self.config.evolution.limits).ok();
        let dot = record.genome.to_dot(analysis.as_ref());
        let cost = analysis.map(|a| a.cost).unwrap_or_default();
        Some(IndividualView {
            status: status.into(),
            lineage,
            dot,
            forward_flops: cost.forward_flops,
            params: cost.params,
            record,
        })
    }

    fn metrics(&self) -> String {
        let s = self.status();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP evo_{name} {help}");
            let _ = writeln!(out, "# TYPE evo_{name} {kind}");
            let _ = writeln!(out, "evo_{name} {value}");
        };
        metric(
            "population_size",
            "gauge",
            "Live individuals, those in training included.",
            s.population_size as f64,
        );
        metric(
            "population_target_size",
            "gauge",
            "The size the population is held at.",
            s.target_size as f64,
        );
        metric(
            "individuals_trained_total",
            "counter",
            "Individuals trained and scored over the run.",
            s.individuals_trained as f64,
        );
        metric(
            "individuals_in_training",
            "gauge",
            "Individuals in training now.",
            s.in_training as f64,
        );
        metric(
            "deaths_total",
            "counter",
            "Individuals killed by selection over the run.",
            s.deaths as f64,
        );
        metric(
            "training_failures_total",
            "counter",
            "Trainings that failed since this node started.",
            s.failures as f64,
        );
        metric(
            "best_fitness",
            "gauge",
            "Best validation accuracy of a live individual (NaN if none).",
            s.best_fitness.unwrap_or(f64::NAN),
        );
        metric(
            "flops_total",
            "counter",
            "FLOPs spent training and validating over the run.",
            s.total_flops,
        );
        metric(
            "flops_per_second",
            "gauge",
            "FLOPs spent over the run divided by its wall time.",
            s.flops_per_s,
        );
        metric(
            "training_share",
            "gauge",
            "Share of the workers' wall time spent in SGD steps over the run.",
            s.training_share,
        );
        metric(
            "workers_busy",
            "gauge",
            "Workers training now.",
            s.workers_busy as f64,
        );
        metric(
            "workers_idle",
            "gauge",
            "Workers waiting for work.",
            s.workers_idle as f64,
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since this node started.",
            s.uptime_s,
        );
        let _ = writeln!(
            out,
            "# HELP evo_phase_seconds_total Wall time of the run's trainings by phase."
        );
        let _ = writeln!(out, "# TYPE evo_phase_seconds_total counter");
        for (phase, seconds) in [
            ("build", s.seconds_by_phase.build),
            ("train", s.seconds_by_phase.train),
            ("validate", s.seconds_by_phase.validate),
            ("save", s.seconds_by_phase.save),
        ] {
            let _ = writeln!(
                out,
                "evo_phase_seconds_total{{phase=\"{phase}\"}} {seconds}"
            );
        }
        out
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

/// Hex of a checksum.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a migration is due `since` reproductions after the last one: on schedule
/// (`every`), or by a draw of `probability` (one draw per call).
fn migration_due(m: &MigrationSection, since: u64, rng: &mut impl Rng) -> bool {
    if m.probability > 0.0 {
        rng.random_bool(m.probability.min(1.0))
    } else {
        m.every > 0 && since >= m.every
    }
}

impl Shard {
    /// After a reproduction: sends emigrants to a peer of the experiment if one is due
    /// (`migration.every` reproductions since the last, or a draw of `probability`).
    fn maybe_migrate(&mut self) {
        if self.migrating {
            return;
        }
        let m = &self.config.migration;
        let (k, how) = (m.emigrants, m.choose);
        if migration_due(m, self.since_migration, &mut self.rng) {
            self.migrate(k, how);
        }
    }

    /// Sends `k` emigrants chosen as `how` says to a peer chosen as `migration.destination`
    /// says, unless there is none to send or nobody to send them to.
    fn migrate(&mut self, k: usize, how: Emigrants) {
        let m = self.config.migration.clone();
        let Some(network) = self.network.clone() else {
            return;
        };
        let peers: Vec<String> = self
            .compatible
            .iter()
            .filter(|p| self.connected.contains(*p))
            .cloned()
            .collect();
        if peers.is_empty() {
            return;
        }
        let peer = match m.destination {
            Destination::Random => peers[self.rng.random_range(0..peers.len())].clone(),
            Destination::Ring => peers
                .iter()
                .find(|p| **p > self.node_id)
                .unwrap_or(&peers[0])
                .clone(),
        };
        let Ok(peer_id) = peer.parse::<libp2p::PeerId>() else {
            return;
        };
        let mut migrants = Vec::new();
        let mut sent = Vec::new();
        for id in self.choose_emigrants(k, how, Some(&peer)) {
            match self.migrant(id) {
                Ok(migrant) => {
                    sent.push((id, migrant.summary.fitness, hex(&migrant.checksum)));
                    migrants.push(migrant);
                }
                Err(e) => self
                    .reporter
                    .line(&format!("individual #{id} cannot emigrate: {e}")),
            }
        }
        if migrants.is_empty() {
            return;
        }
        self.since_migration = 0;
        self.migrating = true;
        let (reply, answer) = tokio::sync::oneshot::channel();
        network.send(Command::Request {
            peer: peer_id,
            request: Box::new(Request::Migrate {
                island: self.node_id.clone(),
                migrants,
            }),
            reply,
        });
        let me = self.self_addr.clone();
        actix::spawn(async move {
            let result = match answer.await {
                Ok(r) => r,
                Err(_) => Err("the network stopped".to_string()),
            };
            if let Some(me) = me {
                me.do_send(MigrationAnswer { peer, sent, result });
            }
        });
    }

    /// Up to `k` live, trained individuals, chosen as `how` says. For a destination
    /// `to`, those that came from it or were sent to it already are left out: it has
    /// them.
    fn choose_emigrants(
        &mut self,
        k: usize,
        how: Emigrants,
        to: Option<&str>,
    ) -> Vec<IndividualId> {
        let has_it = |r: &Record| {
            to.is_some_and(|peer| {
                r.origin.as_ref().is_some_and(|o| o.island == peer)
                    || self
                        .migrations
                        .iter()
                        .any(|m| m.direction == "out" && m.id == r.id && m.peer == peer)
            })
        };
        let mut candidates: Vec<(IndividualId, f64)> = self
            .records
            .values()
            .filter(|r| r.status == Status::Alive && !has_it(r))
            .filter_map(|r| Some((r.id, r.fitness.filter(|f| (0.0..=1.0).contains(f))?)))
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        match how {
            Emigrants::Best => {
                candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
                candidates.truncate(k);
                candidates.into_iter().map(|c| c.0).collect()
            }
            Emigrants::Random => {
                candidates.shuffle(&mut self.rng);
                candidates.truncate(k);
                candidates.into_iter().map(|c| c.0).collect()
            }
            Emigrants::Tournament => {
                let mut out = Vec::new();
                for _ in 0..k.min(candidates.len()) * 4 {
                    let a = candidates[self.rng.random_range(0..candidates.len())];
                    let b = candidates[self.rng.random_range(0..candidates.len())];
                    let winner = if a.1 >= b.1 { a.0 } else { b.0 };
                    if !out.contains(&winner) {
                        out.push(winner);
                    }
                    if out.len() == k {
                        break;
                    }
                }
                out
            }
        }
    }

    /// One of our individuals with its weights and metadata, ready to travel.
    fn migrant(&self, id: IndividualId) -> Result<Migrant, String> {
        let dir = self.state.individual_dir(id);
        let weights = std::fs::read(dir.join(WEIGHTS_FILE))
            .map_err(|e| format!("{}: {e}", dir.join(WEIGHTS_FILE).display()))?;
        let meta = std::fs::read_to_string(dir.join(META_FILE))
            .map_err(|e| format!("{}: {e}", dir.join(META_FILE).display()))?;
        let summary = self.summary(id).ok_or("no fitness")?;
        Ok(Migrant::new(summary, meta, weights))
    }

    /// A new node asks its first peer for migrants, so that it contributes at once.
    fn pull(&mut self, peer: String) {
        let (Some(network), Ok(peer_id)) = (self.network.clone(), peer.parse::<libp2p::PeerId>())
        else {
            return;
        };
        self.pulled = true;
        self.pull_attempts += 1;
        let count = self
            .config
            .evolution
            .initial_population
            .clamp(1, protocol::wire::MAX_MIGRANTS) as u32;
        let (reply, answer) = tokio::sync::oneshot::channel();
        network.send(Command::Request {
            peer: peer_id,
            request: Box::new(Request::Pull {
                island: self.node_id.clone(),
                count,
            }),
            reply,
        });
        self.reporter
            .line(&format!("asking {peer} for {count} migrants to start from"));
        let me = self.self_addr.clone();
        actix::spawn(async move {
            let result = match answer.await {
                Ok(r) => r,
                Err(_) => Err("the network stopped".to_string()),
            };
            if let Some(me) = me {
                me.do_send(PullAnswer { peer, result });
            }
        });
    }

    /// Answers a joining node's pull with up to `count` of our best (copies).
    fn answer_pull(&mut self, peer: &str, count: usize) -> Response {
        if self.stopping.is_some() {
            return Response::Refused {
                reason: "this node is stopping".into(),
            };
        }
        let count = count.min(protocol::wire::MAX_MIGRANTS);
        let mut migrants = Vec::new();
        for id in self.choose_emigrants(count, Emigrants::Best, Some(peer)) {
            if let Ok(m) = self.migrant(id) {
                let event = Event::Migration {
                    at_ms: now_ms(),
                    direction: "out".into(),
                    id,
                    peer: peer.to_string(),
                    remote_id: id,
                    fitness: m.summary.fitness,
                    claimed: None,
                    checksum: hex(&m.checksum),
                };
                if self.state.append(&event).is_ok() {
                    self.record_migration(&event);
                }
                migrants.push(m);
            }
        }
        self.reporter.line(&format!(
            "migration: {} individuals sent to {peer}, which joined",
            migrants.len()
        ));
        Response::Migrants { migrants }
    }

    fn on_pull_answer(&mut self, peer: String, result: Result<Response, String>) {
        match result {
            Ok(Response::Migrants { migrants }) if !migrants.is_empty() => {
                let n = migrants.len();
                if let Response::Admitted { ids } = self.admit_migrants(&peer, migrants) {
                    self.reporter.line(&format!(
                        "joining with {} of {n} migrants from {peer}, once scored",
                        ids.len()
                    ));
                }
            }
            Ok(Response::Migrants { .. }) => {
                // The peer has trained nothing yet: ask again a little later.
                if self.pull_attempts < MAX_PULL_ATTEMPTS {
                    let me = self.self_addr.clone();
                    actix::spawn(async move {
                        actix_rt::time::sleep(PULL_RETRY).await;
                        if let Some(me) = me {
                            me.do_send(RetryPull(peer));
                        }
                    });
                }
            }
            Ok(Response::Refused { reason }) => self
                .reporter
                .line(&format!("peer {peer} sent no migrants: {reason}")),
            Ok(other) => self
                .reporter
                .line(&format!("peer {peer} answered a pull with {other:?}")),
            Err(e) => self.reporter.line(&format!("pull from {peer} failed: {e}")),
        }
    }

    /// Leaving on a signal: stop taking work, hand the best individuals to a peer, then
    /// stop (at once if there is no peer; after `HANDOFF_TIMEOUT` at the latest).
    fn leave(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.stopping.is_some() || self.leaving.is_some() {
            return;
        }
        let peers: Vec<String> = self
            .compatible
            .iter()
            .filter(|p| self.connected.contains(*p))
            .cloned()
            .collect();
        if self.network.is_none() || peers.is_empty() {
            self.finish(reason, None);
            return;
        }
        self.leaving = Some(reason);
        self.reporter
            .line("leaving: handing the best individuals to a peer");
        // Hand off now, whatever the migration schedule says.
        self.migrating = false;
        let k = self.config.migration.emigrants.max(3);
        self.migrate(k, Emigrants::Best);
        if !self.migrating {
            let reason = self.leaving.take().unwrap_or_default();
            self.finish(reason, None);
            return;
        }
        ctx.run_later(HANDOFF_TIMEOUT, |shard, _| {
            if let Some(reason) = shard.leaving.take() {
                shard.finish(format!("{reason} (the hand-off got no answer)"), None);
            }
        });
    }

    fn on_migration_answer(
        &mut self,
        peer: String,
        sent: Vec<(IndividualId, f64, String)>,
        result: Result<Response, String>,
    ) {
        self.migrating = false;
        let leaving = self.leaving.take();
        self.on_migration_result(peer, sent, result);
        if let Some(reason) = leaving {
            self.finish(reason, None);
        }
    }

    fn on_migration_result(
        &mut self,
        peer: String,
        sent: Vec<(IndividualId, f64, String)>,
        result: Result<Response, String>,
    ) {
        match result {
            Ok(Response::Admitted { ids }) => {
                for (id, fitness, checksum) in sent {
                    if !ids.contains(&id) {
                        self.reporter
                            .line(&format!("peer {peer} did not admit #{id}"));
                        continue;
                    }
                    let event = Event::Migration {
                        at_ms: now_ms(),
                        direction: "out".into(),
                        id,
                        peer: peer.clone(),
                        remote_id: id,
                        fitness,
                        claimed: None,
                        checksum: checksum.clone(),
                    };
                    if let Err(e) = self.state.append(&event) {
                        self.fatal(e);
                        return;
                    }
                    self.record_migration(&event);
                    self.reporter.line(&format!(
                        "migration: #{id} (val {}) sent to {peer}",
                        percent(Some(fitness))
                    ));
                }
            }
            Ok(Response::Refused { reason }) => self
                .reporter
                .line(&format!("peer {peer} refused our emigrants: {reason}")),
            Ok(other) => self
                .reporter
                .line(&format!("peer {peer} answered a migration with {other:?}")),
            Err(e) => self
                .reporter
                .line(&format!("migration to {peer} failed: {e}")),
        }
    }

    fn record_migration(&mut self, event: &Event) {
        if let Event::Migration {
            at_ms,
            direction,
            id,
            peer,
            remote_id,
            fitness,
            claimed,
            checksum,
        } = event
        {
            self.migrations.push(MigrationView {
                at_ms: *at_ms,
                direction: direction.clone(),
                id: *id,
                peer: peer.clone(),
                remote_id: *remote_id,
                fitness: *fitness,
                claimed: *claimed,
                checksum: checksum.clone(),
            });
            self.reporter.json(serde_json::json!({
                "event": "migration", "direction": direction, "id": id, "peer": peer,
                "remote_id": remote_id, "fitness": fitness, "claimed": claimed,
            }));
        }
    }

    /// Takes in the migrants a peer sent, for scoring, as the admission policy allows;
    /// answers with the ids (as sent) of those taken in.
    fn admit_migrants(&mut self, peer: &str, migrants: Vec<Migrant>) -> Response {
        if self.stopping.is_some() {
            return Response::Refused {
                reason: "this node is stopping".into(),
            };
        }
        let mut admitted = Vec::new();
        for m in migrants {
            let remote = m.summary.id;
            match self.admit(peer, m) {
                Ok(true) => admitted.push(remote),
                Ok(false) => {}
                Err(e) => {
                    self.reporter
                        .line(&format!("migrant #{remote} from {peer} refused: {e}"));
                }
            }
        }
        Response::Admitted { ids: admitted }
    }

    /// Takes in one migrant for checking if the admission policy may let it in (judged
    /// by the fitness it claims); `Ok(false)` if it may not. It is saved under a new id
    /// and joins the population only once a worker has scored it ([`Self::checked`]).
    fn admit(&mut self, peer: &str, m: Migrant) -> Result<bool, String> {
        let g = &m.summary.genome;
        if g.input != self.input || g.classes != self.classes {
            return Err(format!(
                "it takes {}x{}x{} images in {} classes",
                g.input.height, g.input.width, g.input.channels, g.classes
            ));
        }
        serde_json::from_str::<ModelMeta>(&m.meta_json)
            .map_err(|e| format!("malformed model metadata: {e}"))?;
        if self.arrivals.len() + self.checking.len() >= MAX_WAITING {
            return Err(format!(
                "{MAX_WAITING} migrants are waiting to be scored already"
            ));
        }
        if let Some(copy) = self.copy_of(&m) {
            return Err(format!("a copy of it is here already ({copy})"));
        }
        if self.admission(m.summary.fitness).is_none() {
            return Ok(false);
        }
        let id = self.next_id;
        self.next_id += 1;
        let dir = self.state.individual_dir(id);
        let write = |name: &str, bytes: &[u8]| -> Result<(), String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            write_atomic(&dir.join(name), bytes).map_err(|e| e.to_string())
        };
        let arrival = Arrival {
            id,
            peer: peer.to_string(),
            checksum: hex(&m.checksum),
            summary: m.summary,
        };
        let note = serde_json::to_vec(&arrival).map_err(|e| e.to_string())?;
        write(WEIGHTS_FILE, &m.weights)?;
        write(GENOME_FILE, arrival.summary.genome.to_json().as_bytes())?;
        write(META_FILE, m.meta_json.as_bytes())?;
        // Last: a folder with a note holds a whole migrant.
        write(ARRIVAL_FILE, &note)?;
        self.reporter.line(&format!(
            "migrant #{} from {peer} (claims val {}) arrived as #{id}; scoring it",
            arrival.summary.id,
            percent(Some(arrival.summary.fitness)),
        ));
        self.arrivals.push_back(arrival);
        Ok(true)
    }

    /// Where a copy of `m` is already: a migrant being checked with the same weights,
    /// or a live member with the same genome and weights.
    fn copy_of(&self, m: &Migrant) -> Option<String> {
        let sum = hex(&m.checksum);
        if let Some(a) = self
            .arrivals
            .iter()
            .chain(self.checking.values())
            .find(|a| a.checksum == sum)
        {
            return Some(format!("#{}, being scored", a.id));
        }
        self.records
            .values()
            .filter(|r| r.status == Status::Alive && r.genome == m.summary.genome)
            .find(|r| {
                std::fs::read(self.state.individual_dir(r.id).join(WEIGHTS_FILE))
                    .is_ok_and(|w| protocol::wire::checksum(&w) == m.checksum)
            })
            .map(|r| format!("#{}", r.id))
    }

    /// Whether the admission policy lets in a migrant of `fitness`: `None` if not, else
    /// the member it replaces, if any.
    fn admission(&mut self, fitness: f64) -> Option<Option<IndividualId>> {
        if !self.population.is_full() {
            return Some(None);
        }
        let mut members: Vec<(IndividualId, f64)> = self
            .population
            .members()
            .filter(|x| x.is_candidate())
            .map(|x| (x.id, x.fitness.unwrap_or(f64::NEG_INFINITY)))
            .collect();
        match self.config.migration.admit {
            Admission::Grow => None,
            Admission::ReplaceWorst => {
                members.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                match members.first() {
                    Some(&(id, worst)) if worst < fitness => Some(Some(id)),
                    _ => None,
                }
            }
            Admission::ReplaceRandom if members.is_empty() => None,
            Admission::ReplaceRandom => {
                Some(Some(members[self.rng.random_range(0..members.len())].0))
            }
        }
    }

    /// A worker scored a migrant: it joins the population if its score agrees with what
    /// its sender claimed and the admission policy lets it in; otherwise its folder is
    /// removed (and a sender that overstated it is penalized).
    fn checked(&mut self, worker: usize, id: IndividualId, result: Result<f64, String>) {
        self.set_idle(worker, "idle");
        let Some(a) = self.checking.remove(&id) else {
            let _ = self.state.discard(id);
            return;
        };
        let (peer, claimed) = (a.peer.clone(), a.summary.fitness);
        let remote = a.summary.id;
        let measured = match result {
            Ok(f) if self.stopping.is_none() && self.leaving.is_none() => f,
            // Stopping: it stays on disk, to be scored again when the run resumes.
            Ok(_) => return,
            Err(e) => {
                let _ = self.state.discard(id);
                self.reporter.line(&format!(
                    "migrant #{remote} from {peer} could not be scored: {e}"
                ));
                return;
            }
        };
        if (measured - claimed).abs() > CLAIM_TOLERANCE {
            let _ = self.state.discard(id);
            let reason = format!(
                "its migrant #{remote} claimed val {} but scores {} here",
                percent(Some(claimed)),
                percent(Some(measured))
            );
            self.reporter
                .line(&format!("migrant from {peer} refused: {reason}"));
            if let (Some(n), Ok(p)) = (&self.network, peer.parse::<libp2p::PeerId>()) {
                n.send(Command::Penalize { peer: p, reason });
            }
            return;
        }
        let Some(victim) = self.admission(measured) else {
            let _ = self.state.discard(id);
            self.reporter.line(&format!(
                "migrant #{remote} from {peer} (val {}) not admitted: the population is full \
                 and migration.admit keeps it out",
                percent(Some(measured))
            ));
            return;
        };
        if let Err(e) = self.settle(a, measured, victim) {
            self.fatal(e);
        }
    }

    /// A scored migrant joins the population (replacing `victim`): record, event.
    fn settle(
        &mut self,
        a: Arrival,
        fitness: f64,
        victim: Option<IndividualId>,
    ) -> Result<(), StateError> {
        if let Some(victim) = victim {
            if self.population.kill(victim).is_ok() {
                self.kill(victim)?;
            }
        }
        let id = a.id;
        let record = Record {
            id,
            genome: a.summary.genome.clone(),
            fitness: Some(fitness),
            test_accuracy: None,
            status: Status::Alive,
            parent: None,
            mutations: a.summary.mutations.clone(),
            born_at_ms: now_ms(),
            died_at_ms: None,
            flops: a.summary.flops,
            node: a.summary.island.clone(),
            origin: Some(Origin {
                island: a.summary.island.clone(),
                id: a.summary.id,
            }),
            phases: None,
        };
        self.state.add(&record)?;
        // It has a record now: the arrival note has done its job.
        let _ = std::fs::remove_file(self.state.individual_dir(id).join(ARRIVAL_FILE));
        if let Err(e) = self.population.add(id, Some(fitness)) {
            return Err(StateError::Conflict {
                id,
                reason: e.to_string(),
            });
        }
        self.shapes
            .insert(id, shape_of(&record.genome, &self.config.evolution.limits));
        self.records.insert(id, record);
        let event = Event::Migration {
            at_ms: now_ms(),
            direction: "in".into(),
            id,
            peer: a.peer.clone(),
            remote_id: a.summary.id,
            fitness,
            claimed: Some(a.summary.fitness),
            checksum: a.checksum.clone(),
        };
        self.state.append(&event)?;
        self.record_migration(&event);
        self.reporter.line(&format!(
            "migration: #{id} (val {} here, {} claimed) arrived from {} (its #{})",
            percent(Some(fitness)),
            percent(Some(a.summary.fitness)),
            a.peer,
            a.summary.id
        ));
        self.announce();
        Ok(())
    }
}

fn percent(f: Option<f64>) -> String {
    f.map_or("-".into(), |f| format!("{:.2}%", 100.0 * f))
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.self_addr = Some(ctx.address());
        // The wall-time limit is checked even while every worker is busy.
        ctx.run_interval(Duration::from_millis(500), |shard, _| shard.check_stop());
        // Gossip even when nothing is born, so that peers that join learn of us.
        ctx.run_interval(Duration::from_secs(5), |shard, _| shard.announce());
    }
}

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

impl Handler<NextJob> for Shard {
    type Result = MessageResult<NextJob>;

    fn handle(&mut self, msg: NextJob, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.next_job(msg.worker))
    }
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

impl Handler<Progress> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Progress, _: &mut Context<Self>) {
        if let Some(w) = self.workers.get_mut(msg.worker) {
            if w.individual == Some(msg.id) {
                w.step = msg.step;
                w.steps = msg.steps;
                w.loss = Some(msg.loss);
            }
        }
        self.reporter
            .progress(msg.worker, msg.id, msg.step, msg.steps, msg.loss);
    }
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

impl Handler<JobDone> for Shard {
    type Result = ();

    fn handle(&mut self, msg: JobDone, _: &mut Context<Self>) {
        self.job_done(msg.worker, msg.id, msg.result);
    }
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

impl Handler<Checked> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Checked, _: &mut Context<Self>) {
        self.checked(msg.worker, msg.id, msg.result);
    }
}

/// A worker left its loop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerStopped {
    /// The worker's index.
    pub worker: usize,
}

impl Handler<WorkerStopped> for Shard {
    type Result = ();

    fn handle(&mut self, msg: WorkerStopped, _: &mut Context<Self>) {
        if let Some(w) = self.workers.get_mut(msg.worker) {
            w.state = "stopped";
            w.individual = None;
        }
    }
}

/// Stop the run now (a signal).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Why.
    pub reason: String,
}

impl Handler<Shutdown> for Shard {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.leave(msg.reason, ctx);
    }
}

/// Asks for the node's status.
#[derive(Message)]
#[rtype(result = "StatusView")]
pub struct GetStatus;

impl Handler<GetStatus> for Shard {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Asks for the population: the live members and those in training, or everyone.
#[derive(Message)]
#[rtype(result = "Vec<MemberView>")]
pub struct GetPopulation {
    /// Include the dead.
    pub all: bool,
}

impl Handler<GetPopulation> for Shard {
    type Result = MessageResult<GetPopulation>;

    fn handle(&mut self, msg: GetPopulation, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.population_view(msg.all))
    }
}

/// Asks for one individual.
#[derive(Message)]
#[rtype(result = "Option<IndividualView>")]
pub struct GetIndividual(pub IndividualId);

impl Handler<GetIndividual> for Shard {
    type Result = MessageResult<GetIndividual>;

    fn handle(&mut self, msg: GetIndividual, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.individual_view(msg.0))
    }
}

/// Asks for the Prometheus metrics text.
#[derive(Message)]
#[rtype(result = "String")]
pub struct GetMetrics;

impl Handler<GetMetrics> for Shard {
    type Result = MessageResult<GetMetrics>;

    fn handle(&mut self, _: GetMetrics, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.metrics())
    }
}

/// What the network tells the shard.
#[derive(Message)]
#[rtype(result = "()")]
pub enum NetEvent {
    /// The node listens on this full address (with `/p2p/`).
    Listening(String),
    /// A peer connected.
    Connected(String),
    /// A peer's last connection closed.
    Disconnected(String),
    /// A peer answered our hello: same experiment.
    Compatible(String),
    /// A peer has other fitness settings (JSON); `bootstrap` if we joined through it.
    Incompatible {
        /// The peer.
        peer: String,
        /// Its settings, JSON.
        theirs: String,
        /// Whether it is one of our bootstrap peers.
        bootstrap: bool,
    },
    /// Gossip from another island (validated).
    Announcement(Box<Announcement>),
    /// A request to answer with [`Command::Respond`] and this id.
    Request {
        /// Its number.
        id: u64,
        /// The asking peer.
        peer: String,
        /// The request.
        request: Box<Request>,
    },
    /// A peer sent invalid data and was disconnected.
    Penalized {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Something to tell the person watching.
    Log(String),
}

impl Handler<NetEvent> for Shard {
    type Result = ();

    fn handle(&mut self, msg: NetEvent, _: &mut Context<Self>) {
        self.on_net_event(msg);
    }
}

/// Hands the shard its network.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachNetwork(pub Network);

impl Handler<AttachNetwork> for Shard {
    type Result = ();

    fn handle(&mut self, msg: AttachNetwork, _: &mut Context<Self>) {
        self.network = Some(msg.0);
        self.announce();
    }
}

/// The answer to a migration this shard sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MigrationAnswer {
    /// The receiving peer.
    pub peer: String,
    /// What was sent: id, fitness, weights checksum.
    pub sent: Vec<(IndividualId, f64, String)>,
    /// Its response, or why there is none.
    pub result: Result<Response, String>,
}

impl Handler<MigrationAnswer> for Shard {
    type Result = ();

    fn handle(&mut self, msg: MigrationAnswer, _: &mut Context<Self>) {
        self.on_migration_answer(msg.peer, msg.sent, msg.result);
    }
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

impl Handler<PullAnswer> for Shard {
    type Result = ();

    fn handle(&mut self, msg: PullAnswer, _: &mut Context<Self>) {
        self.on_pull_answer(msg.peer, msg.result);
    }
}

/// Pull again from a peer that had nothing to give.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetryPull(pub String);

impl Handler<RetryPull> for Shard {
    type Result = ();

    fn handle(&mut self, msg: RetryPull, _: &mut Context<Self>) {
        if self.stopping.is_none() && self.connected.contains(&msg.0) {
            self.pull(msg.0);
        }
    }
}

/// Asks for the migrations in and out since this node started.
#[derive(Message)]
#[rtype(result = "Vec<MigrationView>")]
pub struct GetMigrations;

impl Handler<GetMigrations> for Shard {
    type Result = MessageResult<GetMigrations>;

    fn handle(&mut self, _: GetMigrations, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.migrations.clone())
    }
}

/// Asks for the peers and islands this node knows.
#[derive(Message)]
#[rtype(result = "Vec<PeerView>")]
pub struct GetPeers;

impl Handler<GetPeers> for Shard {
    type Result = MessageResult<GetPeers>;

    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.peers_view())
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

    #[test]
    fn migrations_fall_due_on_schedule_or_by_chance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let scheduled = MigrationSection {
            every: 3,
            ..Default::default()
        };
        let due: Vec<bool> = (0..5)
            .map(|since| migration_due(&scheduled, since, &mut rng))
            .collect();
        assert_eq!(due, [false, false, false, true, true]);
        let never = MigrationSection {
            every: 0,
            ..Default::default()
        };
        assert!(!(0..100).any(|since| migration_due(&never, since, &mut rng)));
        let by_chance = |p: f64| MigrationSection {
            every: 0,
            probability: p,
            ..Default::default()
        };
        // The count of reproductions since the last migration does not matter.
        assert!((0..100).all(|_| migration_due(&by_chance(1.0), 0, &mut rng)));
        let hits = (0..10_000)
            .filter(|_| migration_due(&by_chance(0.1), u64::MAX, &mut rng))
            .count();
        assert!((800..1200).contains(&hits), "{hits} of 10,000 at p = 0.1");
    }
}
