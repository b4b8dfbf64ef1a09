//! What the HTTP endpoint serves, as JSON types: the node's status, its population, one
//! individual and its lineage, and the history the dashboard draws. `evo status` reads
//! the same types back.

use crate::population::IndividualId;
use crate::state::{Direction, Record, Status};
use genome::Mutation;
use serde::{Deserialize, Serialize};
use trainer::train::PhaseSeconds;

/// `GET /status`: the node at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// This node's id.
    pub node_id: String,
    /// The experiment's id: its name and the start of its fitness fingerprint, the same
    /// on every node that scores individuals the same way.
    pub experiment_id: String,
    /// The experiment's name.
    pub experiment: String,
    /// The state directory.
    pub state_dir: String,
    /// Live individuals, those in training included.
    pub population_size: usize,
    /// The size the population is held at.
    pub target_size: usize,
    /// Individuals trained and scored since the run began (the initial ones included,
    /// the dead too).
    pub individuals_trained: usize,
    /// Individuals in training now.
    pub in_training: usize,
    /// Individuals killed by selection.
    pub deaths: usize,
    /// Trainings that failed.
    pub failures: usize,
    /// The best validation accuracy of a live individual.
    pub best_fitness: Option<f64>,
    /// Its id.
    pub best_individual: Option<IndividualId>,
    /// FLOPs spent training and validating, over the whole run.
    pub total_flops: f64,
    /// Where the trainings' wall time went (building, SGD, validation, saving), in
    /// seconds summed over the run's individuals.
    #[serde(default)]
    pub seconds_by_phase: PhaseSeconds,
    /// FLOPs per second of the run's wall time.
    #[serde(default)]
    pub flops_per_s: f64,
    /// Share of the workers' wall time spent in SGD steps (0 to 1).
    #[serde(default)]
    pub training_share: f64,
    /// Workers training now.
    pub workers_busy: usize,
    /// Workers waiting for work.
    pub workers_idle: usize,
    /// Every worker.
    pub workers: Vec<WorkerView>,
    /// Seconds since this node started.
    pub uptime_s: f64,
    /// Minutes of wall time of the run, earlier sessions included.
    pub run_minutes: f64,
    /// Why the node is stopping, once it is.
    pub stopping: Option<String>,
    /// This node's libp2p peer id (none without networking).
    #[serde(default)]
    pub peer_id: Option<String>,
    /// Full addresses it listens on, with `/p2p/`: ready for another node's `--bootstrap`.
    #[serde(default)]
    pub listen_addrs: Vec<String>,
    /// Peers connected now.
    #[serde(default)]
    pub connected_peers: usize,
    /// Other islands gossip has told of.
    #[serde(default)]
    pub islands_known: usize,
    /// The best individual of the whole experiment, as far as gossip tells.
    #[serde(default)]
    pub experiment_best: Option<IslandBest>,
    /// Peers disconnected for sending invalid data.
    #[serde(default)]
    pub penalized_peers: usize,
    /// Gossip payload bytes published (announcements only).
    #[serde(default)]
    pub gossip_bytes_out: u64,
    /// Gossip payload bytes received (announcements only).
    #[serde(default)]
    pub gossip_bytes_in: u64,
}

/// An island's best individual.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IslandBest {
    /// The island (node id) that trained it.
    pub island: String,
    /// Its id there.
    pub id: IndividualId,
    /// Its validation accuracy.
    pub fitness: f64,
}

/// `GET /peers`: a peer or an island gossip told of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    /// Its peer id.
    pub peer_id: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Its population, from its last announcement.
    pub population: Option<u32>,
    /// Individuals it has trained.
    pub trained: Option<u64>,
    /// Its best individual.
    pub best: Option<IslandBest>,
    /// When its last announcement arrived, Unix milliseconds.
    pub last_contact_ms: Option<u64>,
}

/// One worker: what it trains, and how far it has got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerView {
    /// Its index, from 0.
    pub index: usize,
    /// What it does now.
    pub state: WorkerActivity,
    /// The individual it trains.
    pub individual: Option<IndividualId>,
    /// The last step reported.
    pub step: u64,
    /// Steps in all.
    pub steps: u64,
    /// The training loss at the last report.
    pub loss: Option<f64>,
}

/// `GET /population`: one member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    /// Its id.
    pub id: IndividualId,
    /// Alive, dead or in training.
    pub status: MemberStatus,
    /// Validation accuracy (none while training).
    pub fitness: Option<f64>,
    /// The individual it was copied from.
    pub parent: Option<IndividualId>,
    /// The mutations that made it.
    pub mutations: Vec<Mutation>,
    /// Its learning rate.
    pub learning_rate: f64,
    /// Vertices of its genome.
    pub vertices: usize,
    /// Edges of its genome.
    pub edges: usize,
    /// Forward FLOPs for one image.
    pub forward_flops: u64,
    /// Trainable parameters.
    pub params: u64,
    /// FLOPs spent training and validating it (0 while training).
    pub flops: u64,
    /// When it was born, Unix milliseconds.
    pub born_at_ms: u64,
    /// When it died.
    pub died_at_ms: Option<u64>,
    /// The node that trained it.
    pub node: String,
}

/// One ancestor in a lineage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ancestor {
    /// Its id.
    pub id: IndividualId,
    /// Its validation accuracy.
    pub fitness: Option<f64>,
    /// The mutations that made it from its own parent.
    pub mutations: Vec<Mutation>,
    /// For a migrant, the island it came from and its id there (its own ancestors are
    /// that island's); `None` for one bred here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::state::Origin>,
    /// When it was born, Unix milliseconds.
    #[serde(default)]
    pub born_at_ms: u64,
}

/// `GET /individuals/{id}/lineage`: an individual and its ancestors, itself first, back
/// to an initial individual or to a migrant (whose `origin` names the island it came
/// from and its id there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineageView {
    /// The individual asked for.
    pub id: IndividualId,
    /// It and its ancestors, newest first.
    pub steps: Vec<Ancestor>,
}

/// `GET /history`: every individual of this node as one compact row (or, with `since`,
/// those born, dead or in training since then), and what gossip told of the other
/// islands over time: what the dashboard draws, kept small for 10,000 individuals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryView {
    /// This node's id.
    pub node_id: String,
    /// When this answer was made, Unix milliseconds (the next `since`).
    pub now_ms: u64,
    /// What each row holds, in order.
    pub columns: Vec<String>,
    /// The mutations, in the order a row's mutation index refers to.
    pub mutations: Vec<String>,
    /// The rows, by id.
    pub rows: Vec<HistoryRow>,
    /// The other islands' best over time.
    pub islands: Vec<IslandCurve>,
}

/// One individual in [`HistoryView`], as a JSON array: id, birth (Unix ms), fitness,
/// status (0 alive, 1 dead, 2 in training), parent, index of its first mutation, FLOPs,
/// death (Unix ms), whether it is a migrant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow(
    pub IndividualId,
    pub u64,
    pub Option<f64>,
    pub u8,
    pub Option<IndividualId>,
    pub Option<u8>,
    pub u64,
    pub Option<u64>,
    pub bool,
);

/// The names of [`HistoryRow`]'s fields, in order.
pub const HISTORY_COLUMNS: [&str; 9] = [
    "id",
    "born_at_ms",
    "fitness",
    "status",
    "parent",
    "mutation",
    "flops",
    "died_at_ms",
    "migrant",
];

/// What gossip told of one island over time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IslandCurve {
    /// The island (node id).
    pub island: String,
    /// Points: when heard (Unix ms), its best fitness (if any), its FLOPs so far.
    pub points: Vec<(u64, Option<f64>, f64)>,
}

/// `GET /individuals/{id}`: everything known of one individual.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndividualView {
    /// Its record (genome included), or for one in training what is known so far.
    pub record: Record,
    /// Alive, dead or in training.
    pub status: MemberStatus,
    /// Its ancestors, parent first, back to an initial individual (or to the first one
    /// this node does not know).
    pub lineage: Vec<Ancestor>,
    /// Its genome in Graphviz DOT.
    pub dot: String,
    /// Forward FLOPs for one image.
    pub forward_flops: u64,
    /// Trainable parameters.
    pub params: u64,
}

/// `GET /migrations`: one individual that moved between islands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationView {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// In (it joined this node) or out (this node sent it).
    pub direction: Direction,
    /// Its id on this node.
    pub id: IndividualId,
    /// The other node.
    pub peer: String,
    /// Its id on the other node (for `in`: on its home island; for `out`: as sent).
    pub remote_id: IndividualId,
    /// Its validation accuracy (for `in`: as this node measured it on arrival).
    pub fitness: f64,
    /// For `in`: the validation accuracy the sender claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed: Option<f64>,
    /// SHA-256 of its weights, hex.
    pub checksum: String,
}

/// What a worker is doing: `idle`, `training`, `checking` (scoring a migrant) or
/// `stopped`, as the JSON says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerActivity {
    /// Waiting for work.
    Idle,
    /// Training an individual.
    Training,
    /// Scoring a migrant on this node's validation images.
    Checking,
    /// Its loop has ended.
    Stopped,
}

impl WorkerActivity {
    /// The name the JSON gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerActivity::Idle => "idle",
            WorkerActivity::Training => "training",
            WorkerActivity::Checking => "checking",
            WorkerActivity::Stopped => "stopped",
        }
    }

    /// Whether it is training or scoring.
    pub fn is_busy(self) -> bool {
        matches!(self, WorkerActivity::Training | WorkerActivity::Checking)
    }
}

impl std::fmt::Display for WorkerActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a member stands: `alive`, `dead` or `training`, as the JSON says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Trained and in the population.
    Alive,
    /// Killed by selection (its record stays, for lineage).
    Dead,
    /// Still in training: not yet scored.
    Training,
}

impl From<Status> for MemberStatus {
    fn from(status: Status) -> MemberStatus {
        match status {
            Status::Alive => MemberStatus::Alive,
            Status::Dead => MemberStatus::Dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_as_the_strings_the_api_always_gave() {
        for (activity, name) in [
            (WorkerActivity::Idle, "idle"),
            (WorkerActivity::Training, "training"),
            (WorkerActivity::Checking, "checking"),
            (WorkerActivity::Stopped, "stopped"),
        ] {
            assert_eq!(
                serde_json::to_string(&activity).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(activity.to_string(), name);
        }
        for (status, name) in [
            (MemberStatus::Alive, "alive"),
            (MemberStatus::Dead, "dead"),
            (MemberStatus::Training, "training"),
        ] {
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{name}\"")
            );
        }
        for (direction, name) in [(Direction::In, "in"), (Direction::Out, "out")] {
            assert_eq!(
                serde_json::to_string(&direction).unwrap(),
                format!("\"{name}\"")
            );
        }
    }
}
