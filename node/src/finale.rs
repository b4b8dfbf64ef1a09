//! The final training of a run (beyond the paper, `stop.final_training_share`): for the
//! last share of its wall time a node stops breeding and trains its best members further,
//! each worker a copy (IDENTITY) of the best member nobody has taken yet, with one
//! learning-rate decay that ends at the wall-time limit. A run then ends with a trained
//! model rather than with the last of many short trainings: evolution chose the
//! architecture and its weights, the final training spends what is left on them.
//!
//! With `stop.final_training_widen` the copy may first be widened: every convolution that
//! can double its channels exactly does ([`genome::widen`]), once or more, so the long
//! training has more capacity than the short ones that chose the network, starting from
//! its function. How far is measured, not predicted: the trainer times each width
//! ([`trainer::width_probe`]) and takes the widest that still gets
//! `stop.final_training_widen_min_epochs` epochs.
//!
//! With `stop.final_training_weights = "fresh"` the copy starts from fresh weights
//! instead (RESET-WEIGHTS): the search chose the architecture, the final training trains
//! it anew. Its augmentation probe's copies still start from the member's weights (short
//! copies from scratch favour the gene that learns fastest, not the one a long training
//! needs); the fresh network then trains with the gene they chose.
//!
//! Plain functions of the clock, the config and the population's ranking; the shard
//! wires them.

use crate::config::FinalWeights;
use crate::population::IndividualId;
use genome::AugmentGene;
use std::collections::BTreeSet;
use trainer::width_probe::EpochsIn;

/// How a final training copies its member: for how long, and with which augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinalCopy {
    /// Seconds of SGD.
    pub seconds: f64,
    /// The augmentation gene the copy trains with in place of its member's (`None`: the
    /// member's own).
    pub augment: Option<AugmentGene>,
    /// CPU threads of its training's pool.
    pub threads: usize,
}

/// How many trainings the final training runs at once on `workers` workers: `members`
/// (`stop.final_training_members`, 0: one per worker), and the augmentation variant if
/// one is due, at most one per worker.
pub fn concurrent_trainings(workers: usize, members: usize, variant_due: bool) -> usize {
    let members = if members == 0 { workers } else { members };
    (members + usize::from(variant_due)).min(workers).max(1)
}

/// The augmentation a second copy of the best member trains with
/// (`stop.final_training_augment_variant`): the experiment's own (`configured`, what
/// `[training.augment]` gives) where the member carries a gene that differs from it;
/// `None` where it carries none (it trains with the experiment's already) or the same.
pub fn augment_variant(
    member: Option<AugmentGene>,
    configured: AugmentGene,
) -> Option<AugmentGene> {
    member
        .filter(|gene| *gene != configured)
        .map(|_| configured)
}

/// The augmentation probe of a final training of `seconds` of a member whose gene is
/// `member` (`stop.final_training_augment_variant` with
/// `_augment_probe_share` > 0): a short copy with the member's gene and one with the
/// experiment's augmentation (`configured`), each `share` of the seconds; `None` where
/// no variant is due ([`augment_variant`]) or the share is 0 (the variant then trains
/// on a spare worker, if any). The member's gene is kept only where its copy scores more
/// than `margin` above the other's (`stop.final_training_augment_probe_margin`).
pub fn augment_probe(
    member: Option<AugmentGene>,
    configured: AugmentGene,
    share: f64,
    margin: f64,
    seconds: f64,
) -> Option<trainer::augment_probe::AugmentProbe> {
    let variant = augment_variant(member, configured)?;
    let probe = trainer::augment_probe::AugmentProbe {
        alternatives: vec![variant],
        seconds: share * seconds,
        margin,
    };
    (share > 0.0 && probe.is_active()).then_some(probe)
}

/// The genome and mutations a final copy is recorded with once its training is done:
/// where an augmentation probe ran (`probe`), the gene it chose (which the saved model
/// trained with), and ALTER-AUGMENTATION in place of IDENTITY where that is not the
/// member's own; otherwise as they were.
pub fn with_probed_augmentation(
    mut genome: genome::Genome,
    mut mutations: Vec<genome::Mutation>,
    probe: Option<&trainer::augment_probe::AugmentProbeReport>,
) -> (genome::Genome, Vec<genome::Mutation>) {
    if let Some(probe) = probe {
        let own = probe.genes.first().copied();
        genome.augment = Some(probe.chosen);
        if own != Some(probe.chosen) {
            for m in mutations.iter_mut() {
                if *m == genome::Mutation::Identity {
                    *m = genome::Mutation::AlterAugmentation;
                }
            }
        }
    }
    (genome, mutations)
}

/// Whether a final training loads its member's weights (`stop.final_training_weights`).
pub fn inherits_weights(weights: FinalWeights) -> bool {
    weights == FinalWeights::Inherited
}

/// The mutations a final copy starts recorded with: IDENTITY (the member, trained on),
/// or ALTER-AUGMENTATION where it trains with another augmentation than the member's
/// (`other_augmentation`); then RESET-WEIGHTS where it starts from fresh weights.
pub fn copy_mutations(other_augmentation: bool, weights: FinalWeights) -> Vec<genome::Mutation> {
    let mut mutations = vec![if other_augmentation {
        genome::Mutation::AlterAugmentation
    } else {
        genome::Mutation::Identity
    }];
    if !inherits_weights(weights) {
        mutations.push(genome::Mutation::ResetWeights);
    }
    mutations
}

/// The rate probe of a final training of `seconds` (`stop.final_training_lr_probe`,
/// `_probe_share`): each factor's copy trains `share` of them, at the factor times `scale`
/// ([`fresh_rate_scale`]; 1: the factors as set); `None` with fewer than two factors
/// (nothing to choose).
pub fn rate_probe(
    factors: &[f64],
    scale: f64,
    share: f64,
    seconds: f64,
) -> Option<trainer::rate_probe::RateProbe> {
    let probe = trainer::rate_probe::RateProbe {
        factors: factors.iter().map(|f| f * scale).collect(),
        seconds: share * seconds,
    };
    probe.is_active().then_some(probe)
}

/// What a final training's rate factors (`stop.final_training_lr_probe`, `_lr_factor`)
/// are multiplied by so that they scale `min_rate` (`stop.final_training_fresh_min_rate`)
/// rather than the member's own rate `member_rate`: `min_rate / member_rate` where the
/// copy starts from fresh weights (`weights`) and the member's rate is below `min_rate`;
/// 1 otherwise (the member's own rate). A member's rate was evolved for short trainings
/// that go on from inherited weights, and a network trained from scratch for a long time
/// can need a higher one: in issue 11 every fresh final training's rate probe chose its
/// highest factor (the member's rate); replayed with factors of 0.05, a member evolved at
/// 0.015 trained at 0.025 and ended 2.23 points test above the default, two evolved at
/// 0.029 and 0.017 trained at 0.05 and ended 1.27 above and 0.82 below it (session 45).
/// A copy that inherits its member's weights keeps its member's rate: its weights were
/// trained at it.
pub fn fresh_rate_scale(member_rate: f64, min_rate: f64, weights: FinalWeights) -> f64 {
    let below = member_rate.is_finite() && member_rate > 0.0 && min_rate > member_rate;
    if inherits_weights(weights) || !below || !min_rate.is_finite() {
        return 1.0;
    }
    min_rate / member_rate
}

/// The fewest seconds of SGD worth a final training: with less left, a worker stays idle.
pub const MIN_FINAL_SECONDS: f64 = 5.0;

/// Seconds allowed for building, validating and saving a final training when its
/// parent's own figures are not known (an immigrant, or a record from before they were
/// kept).
pub const DEFAULT_OVERHEAD_SECONDS: f64 = 10.0;

/// The run minute at which the final training begins: `None` when it is off (a share of
/// 0) or the run has no wall-time limit to end it.
pub fn starts_at(max_wall_minutes: Option<f64>, share: f64) -> Option<f64> {
    match max_wall_minutes {
        Some(max) if share > 0.0 => Some(max * (1.0 - share)),
        _ => None,
    }
}

/// Whether a run `run_minutes` old is in its final training.
pub fn is_final(run_minutes: f64, max_wall_minutes: Option<f64>, share: f64) -> bool {
    starts_at(max_wall_minutes, share).is_some_and(|start| run_minutes >= start)
}

/// How long past its wall-time limit a run with a final training waits for the final
/// trainings to validate and save before it abandons them: a twentieth of the limit,
/// at least half a minute.
pub fn grace_minutes(max_wall_minutes: f64) -> f64 {
    (max_wall_minutes * 0.05).max(0.5)
}

/// The member whose copy trains next: the first of `ranked` (best first) not in `taken`
/// (members already chosen, and those the final training made).
pub fn next_parent(
    ranked: impl IntoIterator<Item = IndividualId>,
    taken: &BTreeSet<IndividualId>,
) -> Option<IndividualId> {
    ranked.into_iter().find(|id| !taken.contains(id))
}

/// A member as the final training's choice sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Its id.
    pub id: IndividualId,
    /// Its validation accuracy.
    pub fitness: f64,
    /// Its network's forward FLOPs per image (`None`: unknown, taken as the costliest).
    pub flops: Option<u64>,
}

/// The order in which the final training takes members
/// (`stop.final_training_cheapest_within`): `ranked` (best first) with those whose fitness
/// is within `margin` of the best's moved to the front, cheapest first (equal costs in
/// rank order), the rest behind them in rank order. Validation accuracy after a short
/// training tells near ties apart by little more than noise, while a final training of a
/// fixed time gives a cheaper network more epochs. With `margin` 0 (or not a finite
/// positive number) the ranking is kept as it is.
pub fn cheapest_near_best(ranked: &[Candidate], margin: f64) -> Vec<IndividualId> {
    let Some(best) = ranked.first() else {
        return Vec::new();
    };
    if !(margin.is_finite() && margin > 0.0) {
        return ranked.iter().map(|c| c.id).collect();
    }
    let floor = best.fitness - margin;
    let (mut near, rest): (Vec<&Candidate>, Vec<&Candidate>) =
        ranked.iter().partition(|c| c.fitness >= floor);
    // A stable sort keeps equal costs in rank order.
    near.sort_by_key(|c| c.flops.unwrap_or(u64::MAX));
    near.into_iter().chain(rest).map(|c| c.id).collect()
}

/// The order in which the final training takes members: `ranked` (best first) with the
/// immigrants whose home island is still a peer of the experiment (`home_trains`) moved
/// behind the rest, each group kept in rank order. That island trains its own copy in
/// its final training, so islands spend theirs on different individuals rather than on
/// copies of one migrant (the experiment's best is then the best of several). An
/// immigrant whose island has left keeps its rank.
pub fn islands_apart(
    ranked: impl IntoIterator<Item = IndividualId>,
    home_trains: impl Fn(IndividualId) -> bool,
) -> Vec<IndividualId> {
    let (elsewhere, here): (Vec<IndividualId>, Vec<IndividualId>) =
        ranked.into_iter().partition(|id| home_trains(*id));
    here.into_iter().chain(elsewhere).collect()
}

/// Whether another final training may start when `started` have: at most `members`
/// of them (`stop.final_training_members`), or with 0 as many as workers ask for.
pub fn another_member(members: usize, started: usize) -> bool {
    members == 0 || started < members
}

/// The time a parent's training spent outside SGD (building, validating, saving), with a
/// margin: twice that and two seconds more, or [`DEFAULT_OVERHEAD_SECONDS`] if unknown.
pub fn overhead_seconds(outside_sgd: Option<f64>) -> f64 {
    match outside_sgd {
        Some(s) if s.is_finite() && s >= 0.0 => 2.0 * s + 2.0,
        _ => DEFAULT_OVERHEAD_SECONDS,
    }
}

/// The seconds of SGD a final training gets when `remaining_s` of the run are left: the
/// rest less `overhead_s`, or `None` when that is under [`MIN_FINAL_SECONDS`].
pub fn training_seconds(remaining_s: f64, overhead_s: f64) -> Option<f64> {
    let s = remaining_s - overhead_s;
    (s.is_finite() && s >= MIN_FINAL_SECONDS).then_some(s)
}

/// The share of a final training's seconds its width probe times each width for, and
/// the least and most seconds that gives.
pub const WIDTH_TIMING_SHARE: f64 = 0.005;
/// See [`WIDTH_TIMING_SHARE`].
pub const WIDTH_TIMING_SECONDS: (f64, f64) = (0.5, 3.0);

/// The width probe of a final training of `seconds` (`stop.final_training_widen` as
/// `rounds`, `stop.final_training_widen_min_epochs` counted in
/// `stop.final_training_widen_epochs_in`): up to `rounds` rounds of doubling within
/// `limits`, each width timed for [`WIDTH_TIMING_SHARE`] of the seconds (within
/// [`WIDTH_TIMING_SECONDS`]), the widest whose measured pace gives `min_epochs` taken;
/// `None` for no rounds.
pub fn width_probe(
    rounds: u32,
    (min_epochs, epochs_in): (f64, EpochsIn),
    limits: genome::Limits,
    seconds: f64,
) -> Option<trainer::width_probe::WidthProbe> {
    let (least, most) = WIDTH_TIMING_SECONDS;
    let probe = trainer::width_probe::WidthProbe {
        max_rounds: rounds,
        min_epochs,
        seconds: (WIDTH_TIMING_SHARE * seconds).clamp(least, most),
        limits,
        epochs_in,
    };
    probe.is_active().then_some(probe)
}

/// The genome and mutations a final copy is recorded with once its width probe is done:
/// the widened genome it trained (`widened`, the probe's choice) with one
/// ALTER-NUMBER-OF-CHANNELS per channel doubling after its other mutations; otherwise
/// as they were.
pub fn with_probed_width(
    genome: genome::Genome,
    mut mutations: Vec<genome::Mutation>,
    widened: Option<&genome::Genome>,
    doublings: usize,
) -> (genome::Genome, Vec<genome::Mutation>) {
    match widened {
        Some(wide) => {
            mutations.extend(std::iter::repeat_n(
                genome::Mutation::AlterNumberOfChannels,
                doublings,
            ));
            (wide.clone(), mutations)
        }
        None => (genome, mutations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_training_takes_the_last_share_of_the_wall_time() {
        assert_eq!(starts_at(Some(10.0), 0.3), Some(7.0));
        assert_eq!(starts_at(Some(10.0), 0.0), None);
        assert_eq!(starts_at(None, 0.3), None);
        assert!(!is_final(6.99, Some(10.0), 0.3));
        assert!(is_final(7.0, Some(10.0), 0.3));
        assert!(is_final(12.0, Some(10.0), 0.3));
        // Off: never, however late.
        assert!(!is_final(100.0, Some(10.0), 0.0));
        assert!(!is_final(100.0, None, 0.5));
    }

    #[test]
    fn the_grace_is_a_twentieth_of_the_limit_and_at_least_half_a_minute() {
        assert_eq!(grace_minutes(30.0), 1.5);
        assert_eq!(grace_minutes(2.0), 0.5);
    }

    #[test]
    fn each_worker_takes_the_best_member_not_taken() {
        let mut taken = BTreeSet::new();
        assert_eq!(next_parent([7, 3, 9], &taken), Some(7));
        taken.insert(7);
        assert_eq!(next_parent([7, 3, 9], &taken), Some(3));
        taken.extend([3, 9]);
        assert_eq!(next_parent([7, 3, 9], &taken), None);
        assert_eq!(next_parent([], &BTreeSet::new()), None);
    }

    fn candidate(id: IndividualId, fitness: f64, flops: Option<u64>) -> Candidate {
        Candidate { id, fitness, flops }
    }

    #[test]
    fn the_cheapest_member_near_the_best_trains_first() {
        // Session 26's 30-minute run, seed 0: the best (69.50%) cost 194.5 MFLOPs per
        // image, the second (69.35%) 34.1.
        let ranked = [
            candidate(151, 0.695, Some(201_000_000)),
            candidate(149, 0.6935, Some(35_000_000)),
            candidate(148, 0.6865, Some(35_000_000)),
            candidate(150, 0.681, Some(15_000_000)),
            candidate(7, 0.60, Some(1_000_000)),
        ];
        // Within one point: 151, 149, 148; cheapest first, equal costs in rank order;
        // the rest (150, 7) behind in rank order, however cheap.
        assert_eq!(
            cheapest_near_best(&ranked, 0.01),
            vec![149, 148, 151, 150, 7]
        );
        // A wider margin takes in 150.
        assert_eq!(
            cheapest_near_best(&ranked, 0.015),
            vec![150, 149, 148, 151, 7]
        );
        // Off: the ranking as it is.
        for off in [0.0, -0.1, f64::NAN] {
            assert_eq!(
                cheapest_near_best(&ranked, off),
                vec![151, 149, 148, 150, 7]
            );
        }
    }

    #[test]
    fn an_unknown_cost_counts_as_the_costliest() {
        let ranked = [
            candidate(1, 0.70, None),
            candidate(2, 0.695, Some(10)),
            candidate(3, 0.69, None),
        ];
        assert_eq!(cheapest_near_best(&ranked, 0.02), vec![2, 1, 3]);
        assert!(cheapest_near_best(&[], 0.01).is_empty());
    }

    #[test]
    fn the_margin_is_measured_from_the_best_not_from_the_next() {
        // A chain of members each 0.6 points below the previous: only the first two are
        // within one point of the best.
        let ranked = [
            candidate(1, 0.700, Some(30)),
            candidate(2, 0.694, Some(20)),
            candidate(3, 0.688, Some(10)),
        ];
        assert_eq!(cheapest_near_best(&ranked, 0.01), vec![2, 1, 3]);
    }

    #[test]
    fn immigrants_whose_island_trains_them_go_behind_this_nodes_members() {
        // 7 and 9 came from islands still connected; 3 and 5 are this node's own (or
        // came from an island that left).
        let elsewhere = |id: IndividualId| id == 7 || id == 9;
        assert_eq!(islands_apart([7, 3, 9, 5], elsewhere), vec![3, 5, 7, 9]);
        assert_eq!(islands_apart([3, 7], elsewhere), vec![3, 7]);
        // Only immigrants: they are still trained, best first.
        assert_eq!(islands_apart([9, 7], elsewhere), vec![9, 7]);
        // No peer: the ranking as it is.
        assert_eq!(islands_apart([7, 3, 9, 5], |_| false), vec![7, 3, 9, 5]);
        assert_eq!(islands_apart([], elsewhere), Vec::<IndividualId>::new());
        // With the best taken, the next goes to the next of this node's own.
        let taken = BTreeSet::from([3]);
        assert_eq!(
            next_parent(islands_apart([7, 3, 9, 5], elsewhere), &taken),
            Some(5)
        );
    }

    #[test]
    fn the_final_training_trains_as_many_members_as_set() {
        assert!(another_member(1, 0));
        assert!(!another_member(1, 1));
        assert!(another_member(2, 1));
        assert!(!another_member(2, 2));
        // 0: one per worker that asks.
        assert!(another_member(0, 0));
        assert!(another_member(0, 7));
    }

    #[test]
    fn a_fresh_copy_is_recorded_with_reset_weights_after_its_other_mutation() {
        use genome::Mutation;
        assert!(inherits_weights(FinalWeights::Inherited));
        assert!(!inherits_weights(FinalWeights::Fresh));
        assert_eq!(
            copy_mutations(false, FinalWeights::Inherited),
            vec![Mutation::Identity]
        );
        assert_eq!(
            copy_mutations(true, FinalWeights::Inherited),
            vec![Mutation::AlterAugmentation]
        );
        assert_eq!(
            copy_mutations(false, FinalWeights::Fresh),
            vec![Mutation::Identity, Mutation::ResetWeights]
        );
        assert_eq!(
            copy_mutations(true, FinalWeights::Fresh),
            vec![Mutation::AlterAugmentation, Mutation::ResetWeights]
        );
        // An augmentation probe that keeps the experiment's gene relabels the IDENTITY
        // and leaves RESET-WEIGHTS in place.
        let g = genome::Genome::initial(
            genome::InputShape {
                height: 8,
                width: 8,
                channels: 1,
            },
            10,
        );
        let probe = trainer::augment_probe::AugmentProbeReport {
            genes: vec![
                AugmentGene {
                    crop: false,
                    flip: false,
                },
                AugmentGene {
                    crop: true,
                    flip: true,
                },
            ],
            chosen: AugmentGene {
                crop: true,
                flip: true,
            },
            scores: vec![0.5, 0.6],
            losses: vec![1.0, 1.0],
            seconds: 1.0,
        };
        let (_, m) =
            with_probed_augmentation(g, copy_mutations(false, FinalWeights::Fresh), Some(&probe));
        assert_eq!(m, vec![Mutation::AlterAugmentation, Mutation::ResetWeights]);
    }

    #[test]
    fn the_variant_trains_with_the_experiments_augmentation_where_the_gene_differs() {
        let gene = |crop, flip| AugmentGene { crop, flip };
        let configured = gene(true, true);
        // The gene turned the crop off: the variant trains with it on.
        assert_eq!(
            augment_variant(Some(gene(false, true)), configured),
            Some(configured)
        );
        assert_eq!(
            augment_variant(Some(gene(false, false)), configured),
            Some(configured)
        );
        // Turned on where the experiment has it off: back to off.
        assert_eq!(
            augment_variant(Some(gene(true, true)), gene(true, false)),
            Some(gene(true, false))
        );
        // The same, or no gene at all: nothing to compare.
        assert_eq!(augment_variant(Some(configured), configured), None);
        assert_eq!(augment_variant(None, configured), None);
    }

    #[test]
    fn the_final_trainings_at_once_are_the_members_and_a_variant_on_the_workers() {
        // One member on two workers: alone, or beside its variant.
        assert_eq!(concurrent_trainings(2, 1, false), 1);
        assert_eq!(concurrent_trainings(2, 1, true), 2);
        // One per worker: no room for a variant.
        assert_eq!(concurrent_trainings(2, 0, true), 2);
        assert_eq!(concurrent_trainings(4, 0, false), 4);
        // More members than workers: one per worker.
        assert_eq!(concurrent_trainings(2, 5, false), 2);
        assert_eq!(concurrent_trainings(1, 1, true), 1);
    }

    #[test]
    fn a_final_training_runs_until_what_is_left_less_the_overhead() {
        assert_eq!(overhead_seconds(Some(1.5)), 5.0);
        assert_eq!(overhead_seconds(None), DEFAULT_OVERHEAD_SECONDS);
        assert_eq!(overhead_seconds(Some(f64::NAN)), DEFAULT_OVERHEAD_SECONDS);
        assert_eq!(training_seconds(180.0, 5.0), Some(175.0));
        assert_eq!(training_seconds(9.0, 5.0), None);
        assert_eq!(training_seconds(-3.0, 5.0), None);
        assert_eq!(training_seconds(f64::INFINITY, 5.0), None);
    }

    #[test]
    fn an_augmentation_probe_tries_the_experiments_augmentation_where_the_member_differs() {
        let on = AugmentGene {
            crop: true,
            flip: true,
        };
        let no_crop = AugmentGene {
            crop: false,
            flip: true,
        };
        let p = augment_probe(Some(no_crop), on, 0.15, 0.01, 500.0).unwrap();
        assert_eq!(p.alternatives, vec![on]);
        assert!((p.seconds - 75.0).abs() < 1e-9);
        assert_eq!(p.margin, 0.01);
        // The member trains with the experiment's augmentation already: nothing to try.
        assert_eq!(augment_probe(Some(on), on, 0.15, 0.01, 500.0), None);
        assert_eq!(augment_probe(None, on, 0.15, 0.01, 500.0), None);
        // A share of 0: the variant is not tried within the training.
        assert_eq!(augment_probe(Some(no_crop), on, 0.0, 0.01, 500.0), None);
    }

    #[test]
    fn a_final_copy_is_recorded_with_the_gene_its_probe_chose() {
        use genome::{Genome, InputShape, Mutation};
        use trainer::augment_probe::AugmentProbeReport;
        let on = AugmentGene {
            crop: true,
            flip: true,
        };
        let no_crop = AugmentGene {
            crop: false,
            flip: true,
        };
        let shape = InputShape {
            height: 8,
            width: 8,
            channels: 1,
        };
        let mut member = Genome::initial(shape, 10);
        member.augment = Some(no_crop);
        let report = |chosen| AugmentProbeReport {
            genes: vec![no_crop, on],
            scores: vec![0.5, 0.6],
            losses: vec![1.0, 1.1],
            chosen,
            seconds: 3.0,
        };
        let mutations = vec![Mutation::Identity, Mutation::AlterNumberOfChannels];
        let (g, m) = with_probed_augmentation(member.clone(), mutations.clone(), Some(&report(on)));
        assert_eq!(g.augment, Some(on));
        assert_eq!(
            m,
            vec![Mutation::AlterAugmentation, Mutation::AlterNumberOfChannels]
        );
        // The member's own gene won: nothing changes.
        let (g, m) =
            with_probed_augmentation(member.clone(), mutations.clone(), Some(&report(no_crop)));
        assert_eq!(g, member);
        assert_eq!(m, mutations);
        // No probe ran.
        let (g, m) = with_probed_augmentation(member.clone(), mutations.clone(), None);
        assert_eq!((g, m), (member, mutations));
    }

    #[test]
    fn a_rate_probe_gives_each_factor_its_share_of_the_final_training() {
        let p = rate_probe(&[1.0, 0.5, 0.25], 1.0, 0.05, 200.0).unwrap();
        assert_eq!(p.factors, vec![1.0, 0.5, 0.25]);
        assert!((p.seconds - 10.0).abs() < 1e-9);
        // Nothing to choose between: no probe.
        assert_eq!(rate_probe(&[0.25], 1.0, 0.05, 200.0), None);
        assert_eq!(rate_probe(&[], 1.0, 0.05, 200.0), None);
        // Scaled: each factor times the scale.
        let p = rate_probe(&[1.0, 0.5, 0.25], 4.0, 0.05, 200.0).unwrap();
        assert_eq!(p.factors, vec![4.0, 2.0, 1.0]);
    }

    #[test]
    fn a_fresh_copy_of_a_member_below_the_floor_scales_the_floor() {
        use crate::config::FinalWeights::{Fresh, Inherited};
        // Below the floor, fresh: the factors scale the floor.
        assert!((fresh_rate_scale(0.0125, 0.05, Fresh) - 4.0).abs() < 1e-12);
        // At or above it, or no floor: the member's own rate.
        assert_eq!(fresh_rate_scale(0.05, 0.05, Fresh), 1.0);
        assert_eq!(fresh_rate_scale(0.093, 0.05, Fresh), 1.0);
        assert_eq!(fresh_rate_scale(0.015, 0.0, Fresh), 1.0);
        // From the member's weights: always its own rate (they were trained at it).
        assert_eq!(fresh_rate_scale(0.0125, 0.05, Inherited), 1.0);
        // A rate that is no rate leaves the factors as they are.
        assert_eq!(fresh_rate_scale(0.0, 0.05, Fresh), 1.0);
        assert_eq!(fresh_rate_scale(f64::NAN, 0.05, Fresh), 1.0);
        assert_eq!(fresh_rate_scale(0.01, f64::INFINITY, Fresh), 1.0);
    }

    #[test]
    fn a_final_training_times_each_width_for_a_small_share_of_its_time() {
        let limits = genome::Limits::default();
        let floor = (10.0, EpochsIn::MainTraining);
        let p = width_probe(2, floor, limits, 898.0).unwrap();
        assert_eq!((p.max_rounds, p.min_epochs, p.limits), (2, 10.0, limits));
        assert_eq!(p.epochs_in, EpochsIn::MainTraining);
        let old = width_probe(2, (10.0, EpochsIn::TimeLeft), limits, 898.0).unwrap();
        assert_eq!(old.epochs_in, EpochsIn::TimeLeft);
        // 0.5% of 898 s is 4.49 s, more than the most.
        assert_eq!(p.seconds, 3.0);
        assert!((width_probe(2, floor, limits, 300.0).unwrap().seconds - 1.5).abs() < 1e-12);
        assert_eq!(width_probe(2, floor, limits, 20.0).unwrap().seconds, 0.5);
        // No rounds: no probe.
        assert!(width_probe(0, floor, limits, 898.0).is_none());
    }

    #[test]
    fn a_widened_final_copy_is_recorded_with_its_doublings() {
        use genome::Mutation;
        let small = genome::ReferenceNet::Small.genome(genome::InputShape::CIFAR, 10);
        let limits = genome::Limits::default();
        let one = genome::widen(&small, 1, &limits).unwrap();
        let (g, m) = with_probed_width(
            small.clone(),
            vec![Mutation::Identity],
            Some(&one.genome),
            one.doublings,
        );
        assert_eq!(g, one.genome);
        assert_eq!(m.len(), 1 + one.doublings);
        assert_eq!(m[0], Mutation::Identity);
        assert!(m[1..].iter().all(|m| *m == Mutation::AlterNumberOfChannels));
        // Not widened: as it was.
        let (g, m) = with_probed_width(small.clone(), vec![Mutation::Identity], None, 0);
        assert_eq!((g, m), (small, vec![Mutation::Identity]));
    }
}
