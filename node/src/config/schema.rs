//! The sections of the config and their keys, each with what it means: `[experiment]`,
//! `[data]`, `[training]`, `[evolution]`, `[stop]`, `[node]` and `[migration]`.

use super::ConfigError;
use crate::budget::Budget;
use crate::population::Strategy;
use genome::{
    Limits, Mutation, MutationOptions, MutationStyle, MutationWeights, StrideTwoPassThrough,
    PAPER_STRIDE_TWO_SHARE,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use trainer::batch::AugmentConfig;
use trainer::data::LabelMode;
use trainer::optim::SgdConfig;
use trainer::width_probe::EpochsIn;
use trainer::{Schedule, TrainConfig};

/// Which individuals emigrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emigrants {
    /// The best by validation accuracy.
    #[default]
    Best,
    /// Drawn at random.
    Random,
    /// Each the better of two drawn at random.
    Tournament,
}

/// Where emigrants go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// A connected peer of the experiment drawn at random.
    #[default]
    Random,
    /// The next peer after this node in the order of peer ids (a ring).
    Ring,
}

/// How a node admits a migrant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Admission {
    /// When full, replace the worst member if the migrant is better; else grow.
    #[default]
    ReplaceWorst,
    /// When full, replace a member drawn at random; else grow.
    ReplaceRandom,
    /// Admit only while the population is under its target size.
    Grow,
}

/// Where a final training's weights start (`stop.final_training_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalWeights {
    /// From the member's own weights as the search trained them (a widened copy starts
    /// from the member's function).
    #[default]
    Inherited,
    /// From a fresh initialization of the member's network (widened as
    /// `stop.final_training_widen` allows): the search chooses the architecture, the
    /// final training trains it anew, as architecture searches retrain what they found.
    /// Its augmentation probe (`final_training_augment_probe_share`) still judges the
    /// genes by copies from the member's weights, trained at most at the member's own
    /// rate (the rate probe's factor is chosen for the fresh network).
    Fresh,
}

/// `[migration]`: the island model (as pygmo's archipelago): every `every` reproductions,
/// or after a reproduction with chance `probability`, a node sends `emigrants` trained
/// individuals, with their weights, to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationSection {
    /// Reproductions between two migrations (0: not on a schedule).
    pub every: u64,
    /// The chance of a migration after each reproduction (0: not by chance); only one of
    /// `every` and `probability` may be set.
    pub probability: f64,
    /// Individuals sent each time.
    pub emigrants: usize,
    /// Which individuals emigrate.
    pub choose: Emigrants,
    /// Where they go.
    pub destination: Destination,
    /// How a receiving node admits them.
    pub admit: Admission,
}

impl Default for MigrationSection {
    fn default() -> Self {
        MigrationSection {
            every: 20,
            probability: 0.0,
            emigrants: 1,
            choose: Emigrants::Best,
            destination: Destination::Random,
            admit: Admission::ReplaceWorst,
        }
    }
}

/// `[experiment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// A name for people and file names (the default state directory is
    /// `state/<name>`).
    pub name: String,
    /// The seed every random choice of the run derives from (initial weights, selection,
    /// mutations, batch order, augmentation).
    #[serde(default)]
    pub seed: u64,
}

/// Which CIFAR-100 labels to learn (ignored by other data sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Labels {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

impl Labels {
    /// The trainer's equivalent.
    pub fn label_mode(self) -> LabelMode {
        match self {
            Labels::Fine => LabelMode::Fine,
            Labels::Coarse => LabelMode::Coarse,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A name for the data set that every node of the experiment shares (e.g.
    /// `cifar10`): part of the fitness fingerprint, since accuracies on different data
    /// cannot be compared. Use another name for another copy of the data (e.g. the JPEG
    /// re-encoding of CIFAR-10).
    pub name: String,
    /// Where the data set is: `cifar-10-batches-bin/`, `cifar-100-binary/`, an image
    /// folder (`train/CLASS/*`, `test/CLASS/*`) or IDX files. A relative path is taken
    /// from the working directory.
    pub path: PathBuf,
    /// CIFAR-100 labels: `fine` (100 classes) or `coarse` (20); ignored by others.
    #[serde(default)]
    pub labels: Labels,
    /// Training images held out for validation; validation accuracy is the fitness
    /// (5,000 in the paper).
    #[serde(default = "default_validation_images")]
    pub validation_images: usize,
    /// Seed of the choice of the validation images.
    #[serde(default)]
    pub split_seed: u64,
}

fn default_validation_images() -> usize {
    5000
}

/// `[training]`: how every individual is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSection {
    /// SGD steps per individual (25,600 in the paper).
    pub steps: u64,
    /// Images per step (50 in the paper).
    pub batch: usize,
    /// SGD momentum (0.9 in the paper).
    pub momentum: f64,
    /// L2 weight decay (1e-4; the paper's value is unconfirmed).
    pub weight_decay: f64,
    /// Report training progress every this many steps (0: never).
    pub log_every: u64,
    /// `[training.augment]`: random crops and flips of the training images.
    pub augment: AugmentConfig,
    /// How the learning rate moves over an individual's steps: `constant` (the paper)
    /// or `cosine` (beyond the paper: down to zero along a half cosine).
    pub schedule: Schedule,
    /// `fixed` (the paper: `steps` for every individual), `lineage` (beyond the
    /// paper: the n-th child of a parent trains n times `steps`, at most
    /// `budget_max_factor` times), `stall` (beyond the paper: `steps` times a factor
    /// that doubles each generation without a new best, at most `budget_max_factor`)
    /// or `cost` (beyond the paper: `steps` times the population's median forward
    /// FLOPs over the child's, between `budget_min_factor` and `budget_max_factor`).
    pub budget: Budget,
    /// The cap of the `lineage`, `stall` and `cost` budgets, in multiples of `steps`.
    pub budget_max_factor: u32,
    /// Beyond the paper: the floor of the `cost` budget, in multiples of `steps`, in
    /// (0, 1]: below 1 a child costlier than the population's median member trains as
    /// many fewer steps as its cost asks, down to this (1: never fewer than `steps`).
    pub budget_min_factor: f64,
    /// Beyond the paper: adaptive gradient clipping, the gradient of each kernel and
    /// weight matrix scaled to at most this times the tensor's norm (0: off).
    pub gradient_clip: f64,
    /// Beyond the paper: the share of each training (of its steps, or of its seconds
    /// for a training on a time budget) over which the learning rate rises linearly from
    /// near zero to what the schedule gives (0: none, the paper).
    pub warmup: f64,
    /// Beyond the paper: where a training's network collapses (its output stops
    /// depending on its input: every unit of a layer dead; or it knew something at its
    /// first step and its loss is back at a constant guess's or above), the training stops and starts again from the same weights at this
    /// factor of the rate, which the individual's genome then carries (0: no watch, the
    /// paper; otherwise in (0, 1)).
    pub collapse_retry: f64,
    /// Beyond the paper: the most wall time one child's training may take, as a share of
    /// the search's wall time (`stop.max_wall_minutes` less the final training's share):
    /// a child whose training, at the pace of its steps so far (judged at each progress
    /// report, every `log_every` steps), would take longer is abandoned and dies
    /// untrained, so that one costly network cannot hold a worker for minutes of a short
    /// run ([`crate::budget::child_time_cap`]). 0 (the paper): no cap; none either in a
    /// run without a wall-time limit.
    pub child_time_cap: f64,
}

impl Default for TrainingSection {
    fn default() -> Self {
        TrainingSection {
            steps: 25_600,
            batch: 50,
            momentum: 0.9,
            weight_decay: 1e-4,
            log_every: 1000,
            augment: AugmentConfig::default(),
            schedule: Schedule::Constant,
            budget: Budget::Fixed,
            budget_max_factor: 4,
            budget_min_factor: 1.0,
            gradient_clip: 0.0,
            warmup: 0.0,
            collapse_retry: 0.0,
            child_time_cap: 0.0,
        }
    }
}

impl TrainingSection {
    /// The trainer's settings for one individual, trained with this seed.
    pub fn train_config(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch: self.batch,
            sgd: SgdConfig {
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                clip: self.gradient_clip,
            },
            augment: self.augment,
            log_every: self.log_every,
            seed,
            schedule: self.schedule,
            warmup: self.warmup,
            max_seconds: None,
            lr_scale: 1.0,
            rate_probe: None,
            augment_probe: None,
            width_probe: None,
            collapse_retry: (self.collapse_retry > 0.0).then_some(self.collapse_retry),
            cancel: None,
        }
    }
}

/// The selection rule's name in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// The paper's: pick two at random; when the population is full the worse dies,
    /// otherwise the better reproduces.
    #[default]
    Tournament,
    /// Regularized evolution: sample `sample_size`, the best reproduces; when full the
    /// oldest dies.
    Aging,
}

/// `[evolution]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvolutionSection {
    /// Live individuals (those in training included) when the population is full
    /// (1,000 in the paper).
    pub population_size: usize,
    /// Trivial individuals (linear classifiers on pixels, learning rate 0.1) made at the
    /// start; each is trained before it competes. At least 2, at most the population
    /// size (the paper starts with the whole population).
    pub initial_population: usize,
    /// `tournament` (the paper's) or `aging` (regularized evolution).
    pub selection: Selection,
    /// How many individuals `aging` samples to choose a parent (`S`); `tournament`
    /// always takes two.
    pub sample_size: usize,
    /// Beyond the paper, `tournament` only: of two members whose validation accuracies
    /// are at most this apart (0.01: one point), the one with fewer forward FLOPs per
    /// image counts as the better (it reproduces, the other dies), so that near ties
    /// after short trainings go to the network that trains further in the same time; 0
    /// (the paper): fitness alone. `aging` ignores it.
    pub tournament_cheaper_within: f64,
    /// Mutations applied to make each child (1 in the paper).
    pub mutations_per_reproduction: usize,
    /// How mutations treat what the parent learned: `paper` (new tensors start fresh)
    /// or `preserve-function` (beyond the paper: network morphisms, so that a child
    /// starts with its parent's function wherever a mutation has such a form).
    pub mutation_style: MutationStyle,
    /// Beyond the paper: whether the initial individuals carry an augmentation gene
    /// (crop and flip, starting as `[training.augment]` says), which
    /// ALTER-AUGMENTATION mutates and children inherit, so that evolution decides the
    /// augmentation by validation accuracy.
    pub augmentation_gene: bool,
    /// Beyond the paper, with `preserve-function` only: the fewest channels an inserted
    /// convolution gets where the insertion can widen exactly (its first channels pass
    /// the input on, the rest start fresh and unused), so that no lineage is held to
    /// the input's few channels; 0 (the paper): the input's channels decide.
    pub min_insert_channels: u32,
    /// Beyond the paper, with `preserve-function` only: whether an inserted vertex is
    /// BN_RELU wherever its function-preserving form allows one (a non-negative input,
    /// or room to split the channels) rather than BN_RELU or LINEAR at random, so that
    /// insertions add depth (a LINEAR vertex between two convolutions composes them into
    /// one linear map); `false` (the paper): at random.
    pub nonlinear_insertions: bool,
    /// Beyond the paper, with `preserve-function` only: a stride-2 insertion gets this
    /// many times its input's channels where it can widen exactly (the resolution
    /// halves, the channels multiply; the further ones start fresh and unused), and at
    /// least `min_insert_channels`; 1 (the paper): its input's channels.
    pub stride_two_width_factor: u32,
    /// Beyond the paper, with `preserve-function` only: what a stride-2 insertion passes
    /// on from each window of its input: `sample` (its centre pixel, every other row and
    /// column) or `average` (the mean of the 2x2 block it starts).
    pub stride_two_pass_through: StrideTwoPassThrough,
    /// With `preserve-function` only: the probability that INSERT-CONVOLUTION inserts a
    /// stride-2 convolution (halving the resolution after it) rather than a stride-1 one;
    /// 0.5 (the paper): either alike. Beyond the paper when other than 0.5.
    pub stride_two_share: f64,
    /// `[evolution.mutation_weights]`: how often each mutation is drawn, by its name
    /// (e.g. `RESET-WEIGHTS = 0`); a mutation not named weighs 1, so an empty table is
    /// the paper's uniform draw. Beyond the paper when set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mutation_weights: BTreeMap<String, f64>,
    /// `[evolution.limits]`: caps on a genome's size and cost; a mutation that would
    /// leave them is drawn again.
    pub limits: Limits,
}

impl Default for EvolutionSection {
    fn default() -> Self {
        EvolutionSection {
            population_size: 1000,
            initial_population: 1000,
            selection: Selection::Tournament,
            sample_size: 25,
            tournament_cheaper_within: 0.0,
            mutations_per_reproduction: 1,
            mutation_style: MutationStyle::Paper,
            augmentation_gene: false,
            min_insert_channels: 0,
            nonlinear_insertions: false,
            stride_two_width_factor: 1,
            stride_two_pass_through: StrideTwoPassThrough::Sample,
            stride_two_share: PAPER_STRIDE_TWO_SHARE,
            mutation_weights: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

impl EvolutionSection {
    /// `mutation_weights` as the genome crate draws them; the error names the key.
    pub fn weights(&self) -> Result<MutationWeights, ConfigError> {
        let mut pairs = Vec::with_capacity(self.mutation_weights.len());
        for (name, &weight) in &self.mutation_weights {
            let mutation: Mutation = name.parse().map_err(|_| ConfigError::Invalid {
                key: format!("evolution.mutation_weights.{name}"),
                reason: format!(
                    "{name:?} is not a mutation (they are: {})",
                    Mutation::WITH_AUGMENTATION.map(Mutation::name).join(", ")
                ),
            })?;
            pairs.push((mutation, weight));
        }
        MutationWeights::from_pairs(pairs).map_err(|e| ConfigError::Invalid {
            key: "evolution.mutation_weights".into(),
            reason: e.to_string(),
        })
    }

    /// How mutations are carried out: their style, the insertion floor, the width,
    /// pass-through and share of stride-2 insertions and the kind of inserted vertices.
    pub fn mutation_options(&self) -> MutationOptions {
        MutationOptions {
            style: self.mutation_style,
            min_insert_channels: self.min_insert_channels,
            nonlinear_insertions: self.nonlinear_insertions,
            stride_two_width_factor: self.stride_two_width_factor,
            stride_two_pass_through: self.stride_two_pass_through,
            stride_two_share: self.stride_two_share,
        }
    }

    /// The selection rule for [`crate::population::Population`].
    pub fn strategy(&self) -> Strategy {
        match self.selection {
            Selection::Tournament => Strategy::Tournament,
            Selection::Aging => Strategy::Aging {
                sample_size: self.sample_size,
            },
        }
    }
}

/// `[stop]`: the run stops when any condition set is met; none set runs until stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StopSection {
    /// Stop after this many individuals have been trained (the initial ones included).
    pub max_individuals: Option<u64>,
    /// Stop once the FLOPs spent training and validating reach this (about 9e19 for the
    /// paper's CIFAR-10 runs).
    pub max_total_flops: Option<f64>,
    /// Stop after this many minutes of wall time (summed over resumed runs).
    pub max_wall_minutes: Option<f64>,
    /// Stop once an individual reaches this validation accuracy (0 to 1).
    pub target_accuracy: Option<f64>,
    /// Beyond the paper: the share of `max_wall_minutes`, at the end of the run, spent
    /// training the best members further instead of breeding ([`crate::finale`]); 0
    /// (the paper): none.
    pub final_training_share: f64,
    /// How many of the best members the final training trains, each on a worker of its
    /// own; the other workers stay idle, so on a CPU their threads speed up those
    /// trainings. 0: one per worker.
    pub final_training_members: usize,
    /// The final training's peak learning rate as a share of the member's own (evolved
    /// for short trainings; a long one from the same rate can fall far below where it
    /// started). 1: the member's rate.
    pub final_training_lr_factor: f64,
    /// Beyond the paper: factors of the member's own rate that a final training tries
    /// first, each on a short copy of the member ([`trainer::rate_probe`]); the copy that
    /// scores best on the validation images goes on training at its factor, in place of
    /// `final_training_lr_factor`. Empty (the paper): no probe.
    pub final_training_lr_probe: Vec<f64>,
    /// The share of a final training's seconds that each copy of the rate probe trains.
    pub final_training_probe_share: f64,
    /// Whether a worker the final training's members leave free trains a second copy of
    /// the best member with the augmentation `[training.augment]` gives, where the
    /// member's augmentation gene (chosen by short trainings) says otherwise; validation
    /// then decides which copy is the run's best. false: the spare workers stay idle.
    pub final_training_augment_variant: bool,
    /// With `final_training_augment_variant`: where the variant trains. 0: on a worker
    /// the members leave free, beside the member's own copy, each on its share of the
    /// threads for all of the time. More: within the one final training, on all of its
    /// threads, as a short copy with the member's gene and one with the experiment's
    /// augmentation ([`trainer::augment_probe`]), each training this share of the final
    /// training's seconds; the better on the validation images goes on alone.
    pub final_training_augment_probe_share: f64,
    /// How far (a share of the validation images: 0.01 is one point) the copy with the
    /// member's gene must score above the one with the experiment's augmentation for the
    /// probe to keep it: short copies favour less augmentation than a long training
    /// needs. 0: the better score wins.
    pub final_training_augment_probe_margin: f64,
    /// Beyond the paper: at most how many times a final training doubles the channels
    /// of every convolution of its member that can widen exactly ([`genome::widen`])
    /// before it trains: the search favours networks that learn fast in short
    /// trainings, a long training can use more capacity, and the wider network starts
    /// from the member's function. 0 (the paper): the member as it is.
    pub final_training_widen: u32,
    /// The fewest epochs of the training images the final training must still give the
    /// widened network, at its pace as timed on the final training's own threads before
    /// it starts (`trainer::width_probe`), for a round of `final_training_widen` to be
    /// taken: the widest that does trains; a network that is costly already is widened
    /// less, or not at all.
    pub final_training_widen_min_epochs: f64,
    /// Beyond the paper where `main_training`: which seconds
    /// `final_training_widen_min_epochs` is counted in: all those left once the widths
    /// are timed (`time_left`), or those less the seconds the rate probe's and the
    /// augmentation probe's copies then spend and throw away (`main_training`: the
    /// training that makes the model).
    pub final_training_widen_epochs_in: EpochsIn,
    /// Beyond the paper: the final training takes, among the members whose validation
    /// accuracy is within this of the best's (a share: 0.01 is one point), the cheapest
    /// (fewest forward FLOPs per image) first ([`crate::finale::cheapest_near_best`]):
    /// near ties after short trainings differ by little more than noise, and a final
    /// training of a fixed time gives a cheaper network more epochs. 0 (the paper): the
    /// best.
    pub final_training_cheapest_within: f64,
    /// Beyond the paper where `fresh`: whether a final training starts from its member's
    /// weights (`inherited`) or from fresh ones (`fresh`; the copy is recorded with
    /// RESET-WEIGHTS).
    pub final_training_weights: FinalWeights,
    /// Beyond the paper where positive: with `final_training_weights = "fresh"`, the
    /// lowest rate whose factors a final training tries: where the member's own rate
    /// (evolved for short trainings from inherited weights) is below this, the rate
    /// probe's factors (and `final_training_lr_factor`) scale this rate instead
    /// ([`crate::finale::fresh_rate_scale`]); the augmentation judge's copies, from the
    /// member's weights, still train at most at the member's own rate. 0 (the paper):
    /// the member's rate.
    pub final_training_fresh_min_rate: f64,
}

impl Default for StopSection {
    fn default() -> Self {
        StopSection {
            max_individuals: None,
            max_total_flops: None,
            max_wall_minutes: None,
            target_accuracy: None,
            final_training_share: 0.0,
            final_training_members: 0,
            final_training_lr_factor: 1.0,
            final_training_lr_probe: Vec::new(),
            final_training_probe_share: 0.05,
            final_training_augment_variant: false,
            final_training_augment_probe_share: 0.0,
            final_training_augment_probe_margin: 0.0,
            final_training_widen: 0,
            final_training_widen_min_epochs: 10.0,
            final_training_widen_epochs_in: EpochsIn::TimeLeft,
            final_training_cheapest_within: 0.0,
            final_training_weights: FinalWeights::Inherited,
            final_training_fresh_min_rate: 0.0,
        }
    }
}

/// `[node]`: this machine's share of the work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Individuals trained at once: a number, or `auto` to choose from the machine (see
    /// [`Workers::resolve`]).
    pub workers: Workers,
    /// Threads of the CPU training pool (0: one per core). Nodes that share a machine
    /// should share its cores out between them.
    pub threads: usize,
    /// Where to train: `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// GiB of device memory the node's trainings may take together; a training starts
    /// only where its estimated memory fits beside those in flight, and one that cannot
    /// fit even alone fails by itself. 0: on a GPU most of its memory
    /// ([`crate::memory_budget::GPU_SHARE`]), on the CPU no limit.
    pub memory_gib: f64,
    /// Address of the HTTP status server.
    pub http: SocketAddr,
    /// The state directory (default `state/<experiment.name>`).
    pub state_dir: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            workers: Workers::Auto,
            threads: 0,
            device: "cpu".into(),
            memory_gib: 0.0,
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            state_dir: None,
        }
    }
}

/// Most training workers a node may run.
pub const MAX_WORKERS: usize = 4096;

/// The most channel doublings `stop.final_training_widen` may ask for.
pub const MAX_FINAL_WIDEN: u32 = 4;

/// `node.workers`: how many individuals a node trains at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// Chosen from the machine when the node starts.
    Auto,
    /// This many.
    Count(usize),
}

impl Workers {
    /// The number of workers for training on `device` (`cpu`, `cuda` or `cuda:N`) with
    /// `threads` CPU threads, given the GPU's memory in GiB when known, for a population
    /// of `population` individuals.
    ///
    /// `auto` on a CPU: one worker per thread of the training pool. Each training then
    /// runs on a thread of its own, which gets more steps through the cores than one
    /// training spread over all of them (`evo bench train --concurrent 2` against
    /// `--concurrent 1` on 2 threads: 2.7x the steps/s for the linear reference net, 1.5x
    /// small, 1.2x mid, 1.0x large). On a GPU: one worker per 10 GiB of its memory (small
    /// nets leave a big GPU mostly idle, and several trainings at once fill it), at most 8
    /// and at most one per CPU thread; 2 when the memory is unknown. Either way at most a
    /// quarter of the population (the paper: 250 workers for 1,000), so that most of it
    /// is trained and can compete, and at least 1.
    pub fn resolve(
        self,
        device: &str,
        threads: usize,
        gpu_memory_gib: Option<f64>,
        population: usize,
    ) -> usize {
        let threads = threads.max(1);
        let by_machine = if device == "cpu" {
            threads
        } else {
            let by_memory = gpu_memory_gib.map_or(2, |g| (g / 10.0).floor() as usize);
            by_memory.clamp(1, 8).min(threads)
        };
        match self {
            Workers::Count(n) => n,
            Workers::Auto => by_machine.min(population / 4).max(1),
        }
    }
}

impl Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Auto => s.serialize_str("auto"),
            Workers::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of workers or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Workers, E> {
                usize::try_from(n)
                    .map(Workers::Count)
                    .map_err(|_| E::custom(format!("{n} workers is too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Workers, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n} is not a number of workers")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Workers, E> {
                if v == "auto" {
                    Ok(Workers::Auto)
                } else {
                    Err(E::custom(format!(
                        "{v:?} is not a number of workers or \"auto\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::config::ExperimentConfig;

    #[test]
    fn workers_are_a_number_or_auto() {
        let mut c = quick();
        c.apply_override("node.workers", "auto").unwrap();
        assert_eq!(c.node.workers, Workers::Auto);
        c.validate().unwrap();
        c.apply_override("node.workers", "3").unwrap();
        assert_eq!(c.node.workers, Workers::Count(3));
        assert!(c.apply_override("node.workers", "many").is_err());
        assert!(c.apply_override("node.workers", "-1").is_err());
        assert_eq!(
            c.node.workers,
            Workers::Count(3),
            "a failed override changes nothing"
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<ExperimentConfig>(&text).unwrap(), c);
        c.node.workers = Workers::Auto;
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("workers = \"auto\""), "{text}");
        assert_eq!(toml::from_str::<ExperimentConfig>(&text).unwrap(), c);

        assert_eq!(Workers::Count(5).resolve("cpu", 2, None, 1000), 5);
        assert_eq!(Workers::Count(5).resolve("cpu", 2, None, 4), 5, "as told");
        // A CPU: one per thread, at most a quarter of the population.
        assert_eq!(Workers::Auto.resolve("cpu", 2, None, 1000), 2);
        assert_eq!(Workers::Auto.resolve("cpu", 0, None, 1000), 1);
        assert_eq!(Workers::Auto.resolve("cpu", 16, None, 1000), 16);
        assert_eq!(Workers::Auto.resolve("cpu", 16, None, 20), 5);
        assert_eq!(Workers::Auto.resolve("cpu", 16, None, 3), 1);
        // A GPU: one per 10 GiB, at most 8 and one per thread.
        assert_eq!(Workers::Auto.resolve("cuda:0", 16, Some(80.0), 1000), 8);
        assert_eq!(Workers::Auto.resolve("cuda", 16, Some(24.0), 1000), 2);
        assert_eq!(
            Workers::Auto.resolve("cuda", 4, Some(140.0), 1000),
            4,
            "one per thread"
        );
        assert_eq!(Workers::Auto.resolve("cuda", 16, Some(140.0), 20), 5);
        assert_eq!(Workers::Auto.resolve("cuda", 16, Some(6.0), 1000), 1);
        assert_eq!(Workers::Auto.resolve("cuda", 16, None, 1000), 2);
    }
}
