//! Selection, without I/O: who dies and who reproduces.
//!
//! A [`Population`] knows, for every individual of this node, its id, its fitness
//! (`None` while it trains), when it was born (a sequence number) and whether it is
//! alive. [`Population::select`] makes one decision, as one worker of the paper does:
//!
//! - **Tournament** (Real et al., 2017, the default): pick two distinct trained members
//!   at random; if the population is full, the worse dies, otherwise the better
//!   reproduces.
//! - **Aging** (regularized evolution, Real et al., 2019): if the population is full, the
//!   oldest trained member dies; otherwise sample `S` distinct trained members and the
//!   best of them reproduces.
//!
//! The population is *full* when its live members, those still training included,
//! number at least the target size. Counting the children in flight keeps the number of
//! live members at or below the target however many workers train at once (a paper
//! worker puts its child into the population only after training it; counting it from
//! birth instead makes the bound strict).
//!
//! Ties are broken deterministically: of two members with equal fitness the younger
//! (larger birth number) counts as the better, so a tie kills the older one and makes
//! the younger the parent. A NaN fitness counts as the worst possible. Candidates are
//! drawn from the trained members in id order, so a seeded generator gives the same
//! decisions every time.
//!
//! Beyond the paper, a tournament can prefer the cheaper of two near ties
//! ([`Population::with_cheaper_within`]): where the two members' fitnesses differ by at
//! most a margin (about the noise of a score) and both forward costs are known and
//! differ, the one with fewer forward FLOPs per image counts as the better, so that it
//! reproduces and the costlier dies. Short trainings score a costly network and a cheap
//! one of the same promise alike; the cheap one trains further in the same time.
//!
//! A member still training, or dead, is never selected, and a kill never takes the last
//! trained member: with fewer than two trained members (tournament) or too few to kill
//! one (aging) the decision is [`Decision::Wait`].

use rand::Rng;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use thiserror::Error;

/// The id of an individual, unique within an experiment and never reused.
pub type IndividualId = u64;

/// How parents and victims are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The paper's: two at random; when full the worse dies, else the better reproduces.
    Tournament,
    /// Regularized evolution: when full the oldest dies, else the best of a sample
    /// reproduces.
    Aging {
        /// How many trained members each sample holds (`S`); fewer when fewer are
        /// trained.
        sample_size: usize,
    },
}

/// What the population knows of one individual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// Its id.
    pub id: IndividualId,
    /// Its validation accuracy; `None` while it trains.
    pub fitness: Option<f64>,
    /// When it was born, as a sequence number: larger is younger.
    pub born_at: u64,
    /// Whether it is alive.
    pub alive: bool,
}

impl Member {
    /// Whether it is alive and trained, so that it may be selected.
    pub fn is_candidate(&self) -> bool {
        self.alive && self.fitness.is_some()
    }

    /// Whether it is alive and still training.
    pub fn is_training(&self) -> bool {
        self.alive && self.fitness.is_none()
    }
}

/// One selection decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This member has died (already marked dead in the population); persist the death.
    Kill(IndividualId),
    /// Copy this member, mutate the copy, train it and [`Population::add`] it.
    Reproduce {
        /// The member to copy.
        parent: IndividualId,
    },
    /// Too few trained members to decide anything: wait for training to finish.
    Wait,
}

/// Why a change to the population was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PopulationError {
    /// An id that is already a member (alive or dead) was added again.
    #[error("individual {0} is already a member")]
    Duplicate(IndividualId),
    /// No member has this id.
    #[error("individual {0} is not a member")]
    Unknown(IndividualId),
    /// The member is dead.
    #[error("individual {0} is dead")]
    Dead(IndividualId),
    /// The member already has a fitness.
    #[error("individual {0} is already trained")]
    AlreadyTrained(IndividualId),
}

/// The members of this node and the selection rule.
#[derive(Debug, Clone)]
pub struct Population {
    target_size: usize,
    strategy: Strategy,
    cheaper_within: f64,
    members: BTreeMap<IndividualId, Member>,
    next_born_at: u64,
}

/// Orders two trained members: `Greater` when `a` is the better. Higher fitness wins;
/// equal fitness goes to the younger; NaN is the worst.
fn compare(a: &Member, b: &Member) -> Ordering {
    rank(a.fitness, a.born_at, b.fitness, b.born_at).then(a.id.cmp(&b.id))
}

/// The better of two trained members in a tournament: the cheaper (fewer forward FLOPs
/// per image, `cost`) where both fitnesses are numbers at most `within` apart and both
/// costs are known and differ; otherwise the one [`compare`] puts first. `within` 0
/// (or less) is the paper's comparison.
pub fn tournament_winner<'a>(
    a: &'a Member,
    b: &'a Member,
    within: f64,
    cost: impl Fn(IndividualId) -> Option<u64>,
) -> &'a Member {
    if within > 0.0 {
        if let (Some(fa), Some(fb)) = (a.fitness, b.fitness) {
            if (fa - fb).abs() <= within {
                if let (Some(ca), Some(cb)) = (cost(a.id), cost(b.id)) {
                    if ca != cb {
                        return if ca < cb { a } else { b };
                    }
                }
            }
        }
    }
    if compare(a, b) == Ordering::Less {
        b
    } else {
        a
    }
}

/// The one ranking of individuals, for selection and everything else that picks the
/// best or the worst: `Greater` when the one of fitness `a` and age key `a_young` is the
/// better. Higher fitness wins; a missing or NaN fitness is the worst; equal fitness
/// goes to the younger (the larger key: a birth number, a birth time or an id).
pub fn rank(a: Option<f64>, a_young: u64, b: Option<f64>, b_young: u64) -> Ordering {
    let key = |f: Option<f64>| match f {
        Some(f) if !f.is_nan() => f,
        _ => f64::NEG_INFINITY,
    };
    key(a).total_cmp(&key(b)).then(a_young.cmp(&b_young))
}

impl Population {
    /// An empty population that holds `target_size` live members when full.
    pub fn new(target_size: usize, strategy: Strategy) -> Population {
        Population {
            target_size,
            strategy,
            cheaper_within: 0.0,
            members: BTreeMap::new(),
            next_born_at: 0,
        }
    }

    /// The same population whose tournaments take the cheaper of two members whose
    /// fitnesses are at most `within` apart (see the module documentation); 0 (the
    /// default, the paper): fitness alone. Aging ignores it.
    pub fn with_cheaper_within(mut self, within: f64) -> Population {
        self.cheaper_within = within;
        self
    }

    /// The size at which the population counts as full.
    pub fn target_size(&self) -> usize {
        self.target_size
    }

    /// The selection rule.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Adds a newborn (fitness `None` while it trains) and returns its birth number.
    pub fn add(&mut self, id: IndividualId, fitness: Option<f64>) -> Result<u64, PopulationError> {
        let born_at = self.next_born_at;
        self.insert(Member {
            id,
            fitness,
            born_at,
            alive: true,
        })?;
        Ok(born_at)
    }

    /// Restores a member as it was (after a restart), birth number included. Later
    /// births are numbered after the largest seen.
    pub fn insert(&mut self, member: Member) -> Result<(), PopulationError> {
        if self.members.contains_key(&member.id) {
            return Err(PopulationError::Duplicate(member.id));
        }
        self.next_born_at = self.next_born_at.max(member.born_at.saturating_add(1));
        self.members.insert(member.id, member);
        Ok(())
    }

    /// Records the fitness of a member that finished training.
    pub fn set_fitness(&mut self, id: IndividualId, fitness: f64) -> Result<(), PopulationError> {
        let m = self.live_mut(id)?;
        if m.fitness.is_some() {
            return Err(PopulationError::AlreadyTrained(id));
        }
        m.fitness = Some(fitness);
        Ok(())
    }

    /// Marks a live member dead (for instance a child whose training failed).
    pub fn kill(&mut self, id: IndividualId) -> Result<(), PopulationError> {
        self.live_mut(id)?.alive = false;
        Ok(())
    }

    fn live_mut(&mut self, id: IndividualId) -> Result<&mut Member, PopulationError> {
        let m = self
            .members
            .get_mut(&id)
            .ok_or(PopulationError::Unknown(id))?;
        if !m.alive {
            return Err(PopulationError::Dead(id));
        }
        Ok(m)
    }

    /// The member with this id, alive or dead.
    pub fn get(&self, id: IndividualId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Every member, alive or dead, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Live members, training ones included.
    pub fn alive_count(&self) -> usize {
        self.members.values().filter(|m| m.alive).count()
    }

    /// Live, trained members.
    pub fn trained_count(&self) -> usize {
        self.members.values().filter(|m| m.is_candidate()).count()
    }

    /// Live members still training.
    pub fn training_count(&self) -> usize {
        self.members.values().filter(|m| m.is_training()).count()
    }

    /// Whether the live members (training ones included) reach the target size.
    pub fn is_full(&self) -> bool {
        self.alive_count() >= self.target_size
    }

    /// The best live trained member, ties going to the younger.
    pub fn best(&self) -> Option<&Member> {
        self.members
            .values()
            .filter(|m| m.is_candidate())
            .max_by(|a, b| compare(a, b))
    }

    /// The live trained members, best first (the order of [`Population::best`]).
    pub fn ranked(&self) -> Vec<IndividualId> {
        let mut candidates: Vec<&Member> =
            self.members.values().filter(|m| m.is_candidate()).collect();
        candidates.sort_by(|a, b| compare(b, a));
        candidates.into_iter().map(|m| m.id).collect()
    }

    /// Makes one decision (see the module documentation) knowing no member's cost. A
    /// [`Decision::Kill`] is applied here: the member is already marked dead when this
    /// returns.
    pub fn select<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Decision {
        self.select_with_costs(rng, |_| None)
    }

    /// Makes one decision, `cost` giving a member's forward FLOPs per image where known
    /// (for [`Population::with_cheaper_within`]). A [`Decision::Kill`] is applied here.
    pub fn select_with_costs<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        cost: impl Fn(IndividualId) -> Option<u64>,
    ) -> Decision {
        let candidates: Vec<Member> = self
            .members
            .values()
            .filter(|m| m.is_candidate())
            .copied()
            .collect();
        let full = self.is_full();
        let decision = match self.strategy {
            Strategy::Tournament => {
                if candidates.len() < 2 {
                    return Decision::Wait;
                }
                let picked = rand::seq::index::sample(rng, candidates.len(), 2);
                let (a, b) = (&candidates[picked.index(0)], &candidates[picked.index(1)]);
                let better = tournament_winner(a, b, self.cheaper_within, cost);
                let worse = if better.id == a.id { b } else { a };
                if full {
                    Decision::Kill(worse.id)
                } else {
                    Decision::Reproduce { parent: better.id }
                }
            }
            Strategy::Aging { sample_size } => {
                if full {
                    if candidates.len() < 2 {
                        return Decision::Wait;
                    }
                    let oldest = candidates
                        .iter()
                        .min_by_key(|m| (m.born_at, m.id))
                        .map(|m| m.id);
                    match oldest {
                        Some(id) => Decision::Kill(id),
                        None => Decision::Wait,
                    }
                } else {
                    if candidates.is_empty() {
                        return Decision::Wait;
                    }
                    let amount = sample_size.clamp(1, candidates.len());
                    let picked = rand::seq::index::sample(rng, candidates.len(), amount);
                    let best = picked
                        .iter()
                        .map(|i| &candidates[i])
                        .max_by(|a, b| compare(a, b))
                        .map(|m| m.id);
                    match best {
                        Some(parent) => Decision::Reproduce { parent },
                        None => Decision::Wait,
                    }
                }
            }
        };
        if let Decision::Kill(id) = decision {
            if let Some(m) = self.members.get_mut(&id) {
                m.alive = false;
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just};
    use proptest::strategy::Strategy as PropStrategy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// A population of trained members with these fitnesses, ids 0.., born in id order.
    fn trained(target: usize, strategy: Strategy, fitness: &[f64]) -> Population {
        let mut p = Population::new(target, strategy);
        for (i, f) in fitness.iter().enumerate() {
            p.add(i as u64, Some(*f)).unwrap();
        }
        p
    }

    #[test]
    fn tournament_kills_the_worse_when_full() {
        let mut p = trained(2, Strategy::Tournament, &[0.3, 0.7]);
        assert!(p.is_full());
        assert_eq!(p.select(&mut rng(1)), Decision::Kill(0));
        assert!(!p.get(0).unwrap().alive);
        assert_eq!(p.alive_count(), 1);
        // One trained member left: no second kill, no tournament.
        assert_eq!(p.select(&mut rng(2)), Decision::Wait);
        assert_eq!(p.trained_count(), 1);
    }

    #[test]
    fn tournament_reproduces_the_better_when_not_full() {
        let mut p = trained(10, Strategy::Tournament, &[0.9, 0.2]);
        for seed in 0..20 {
            assert_eq!(p.select(&mut rng(seed)), Decision::Reproduce { parent: 0 });
        }
        assert_eq!(p.alive_count(), 2);
    }

    #[test]
    fn a_near_tie_goes_to_the_cheaper_member() {
        // Member 0 scores 0.5 points below member 1 but costs a quarter as much.
        let cost = |id: IndividualId| Some(if id == 0 { 1_000 } else { 4_000 });
        let mut p = trained(10, Strategy::Tournament, &[0.600, 0.605]).with_cheaper_within(0.01);
        for seed in 0..20 {
            assert_eq!(
                p.select_with_costs(&mut rng(seed), cost),
                Decision::Reproduce { parent: 0 }
            );
        }
        // Full: the costlier of the two dies.
        let mut full = trained(2, Strategy::Tournament, &[0.600, 0.605]).with_cheaper_within(0.01);
        assert_eq!(full.select_with_costs(&mut rng(0), cost), Decision::Kill(1));
        // Without the margin, or without costs, fitness decides as in the paper.
        let mut paper = trained(10, Strategy::Tournament, &[0.600, 0.605]);
        assert_eq!(
            paper.select_with_costs(&mut rng(0), cost),
            Decision::Reproduce { parent: 1 }
        );
        assert_eq!(p.select(&mut rng(0)), Decision::Reproduce { parent: 1 });
    }

    #[test]
    fn the_margin_is_inclusive_and_a_wider_gap_is_decided_by_fitness() {
        let cheap_first = |id: IndividualId| Some(if id == 0 { 10 } else { 20 });
        let winner = |fitness: &[f64], within: f64| {
            let m: Vec<Member> = fitness
                .iter()
                .enumerate()
                .map(|(i, &f)| Member {
                    id: i as u64,
                    fitness: Some(f),
                    born_at: i as u64,
                    alive: true,
                })
                .collect();
            tournament_winner(&m[0], &m[1], within, cheap_first).id
        };
        // Exact binary fractions, so that the margin's edge is where it says.
        assert_eq!(winner(&[0.5, 0.75], 0.25), 0);
        assert_eq!(winner(&[0.5, 0.7501], 0.25), 1);
        assert_eq!(winner(&[0.5, 0.25], 0.25), 0);
        assert_eq!(winner(&[0.5, 0.51], 0.0), 1);
        // A NaN fitness is never a near tie: the number wins.
        assert_eq!(winner(&[f64::NAN, 0.1], 0.01), 1);
        // Equal costs: the usual ranking (equal fitness goes to the younger).
        let same = |_: IndividualId| Some(5);
        let m = |id: u64, f: f64| Member {
            id,
            fitness: Some(f),
            born_at: id,
            alive: true,
        };
        assert_eq!(tournament_winner(&m(0, 0.5), &m(1, 0.5), 0.01, same).id, 1);
        assert_eq!(
            tournament_winner(&m(0, 0.505), &m(1, 0.5), 0.01, same).id,
            0
        );
        // One cost unknown: fitness decides.
        let partly = |id: IndividualId| (id == 0).then_some(1);
        assert_eq!(
            tournament_winner(&m(0, 0.5), &m(1, 0.505), 0.01, partly).id,
            1
        );
    }

    #[test]
    fn tournament_over_many_members_kills_only_the_worse_of_each_pair() {
        // With many members, the best is never killed and the worst never reproduces.
        let fitness: Vec<f64> = (0..50).map(|i| i as f64 / 50.0).collect();
        let mut full = trained(50, Strategy::Tournament, &fitness);
        let mut not_full = trained(100, Strategy::Tournament, &fitness);
        let mut r = rng(5);
        for _ in 0..200 {
            assert_ne!(not_full.select(&mut r), Decision::Reproduce { parent: 0 });
        }
        for i in 0..40 {
            match full.select(&mut r) {
                Decision::Kill(id) => assert_ne!(id, 49),
                other => panic!("expected a kill, got {other:?}"),
            }
            // Refill with a poor newcomer, so that the population stays full.
            full.add(100 + i, Some(0.0)).unwrap();
        }
        assert!(full.get(49).unwrap().alive);
    }

    #[test]
    fn ties_are_broken_by_age() {
        // Equal fitness: the older dies, the younger reproduces.
        let mut p = trained(2, Strategy::Tournament, &[0.5, 0.5]);
        assert_eq!(p.select(&mut rng(3)), Decision::Kill(0));
        let mut p = trained(5, Strategy::Tournament, &[0.5, 0.5]);
        assert_eq!(p.select(&mut rng(3)), Decision::Reproduce { parent: 1 });
        // NaN is the worst.
        let mut p = trained(2, Strategy::Tournament, &[f64::NAN, 0.0]);
        assert_eq!(p.select(&mut rng(3)), Decision::Kill(0));
    }

    #[test]
    fn aging_kills_the_oldest_and_reproduces_the_best_of_the_sample() {
        let aging = Strategy::Aging { sample_size: 3 };
        // Born in id order: 0 is the oldest even though it is the best.
        let mut p = trained(3, aging, &[0.9, 0.1, 0.5]);
        assert_eq!(p.select(&mut rng(0)), Decision::Kill(0));
        // No longer full: the sample holds both survivors, the better reproduces.
        assert_eq!(p.select(&mut rng(0)), Decision::Reproduce { parent: 2 });
        // Restored members keep their birth numbers: the oldest by birth dies.
        let mut p = Population::new(2, aging);
        for (id, born_at) in [(7, 5), (8, 2), (9, 9)] {
            p.insert(Member {
                id,
                fitness: Some(0.5),
                born_at,
                alive: true,
            })
            .unwrap();
        }
        assert_eq!(p.select(&mut rng(0)), Decision::Kill(8));
        assert_eq!(p.add(10, None).unwrap(), 10);
    }

    #[test]
    fn aging_sample_of_one_is_a_random_parent() {
        let mut p = trained(10, Strategy::Aging { sample_size: 1 }, &[0.9, 0.1, 0.5]);
        let mut seen = std::collections::BTreeSet::new();
        let mut r = rng(11);
        for _ in 0..100 {
            match p.select(&mut r) {
                Decision::Reproduce { parent } => seen.insert(parent),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn untrained_and_dead_members_are_never_selected() {
        for strategy in [Strategy::Tournament, Strategy::Aging { sample_size: 5 }] {
            let mut p = Population::new(6, strategy);
            p.add(0, Some(0.1)).unwrap();
            p.add(1, None).unwrap();
            p.add(2, Some(0.2)).unwrap();
            p.add(3, Some(0.99)).unwrap();
            p.add(4, None).unwrap();
            p.kill(3).unwrap();
            let mut r = rng(9);
            for _ in 0..100 {
                match p.select(&mut r) {
                    Decision::Reproduce { parent } => assert!([0, 2].contains(&parent)),
                    other => panic!("{strategy:?}: {other:?}"),
                }
            }
            // Fill it: two more training; kills now take trained, live members only.
            p.add(5, None).unwrap();
            p.add(6, None).unwrap();
            assert!(p.is_full());
            match p.select(&mut r) {
                Decision::Kill(id) => assert!([0, 2].contains(&id), "{id}"),
                other => panic!("{strategy:?}: {other:?}"),
            }
            // One trained member left and full again: wait for training to finish.
            p.add(7, None).unwrap();
            assert!(p.is_full());
            assert_eq!(p.select(&mut r), Decision::Wait);
        }
    }

    #[test]
    fn nothing_trained_means_wait() {
        for strategy in [Strategy::Tournament, Strategy::Aging { sample_size: 2 }] {
            let mut p = Population::new(4, strategy);
            assert_eq!(p.select(&mut rng(0)), Decision::Wait);
            p.add(0, None).unwrap();
            p.add(1, None).unwrap();
            assert_eq!(p.select(&mut rng(0)), Decision::Wait);
            p.set_fitness(0, 0.4).unwrap();
            let expected = match strategy {
                Strategy::Tournament => Decision::Wait,
                Strategy::Aging { .. } => Decision::Reproduce { parent: 0 },
            };
            assert_eq!(p.select(&mut rng(0)), expected);
            p.set_fitness(1, 0.6).unwrap();
            assert_eq!(p.select(&mut rng(0)), Decision::Reproduce { parent: 1 });
        }
    }

    #[test]
    fn bookkeeping_errors_are_typed() {
        let mut p = Population::new(3, Strategy::Tournament);
        p.add(1, None).unwrap();
        assert_eq!(p.add(1, None), Err(PopulationError::Duplicate(1)));
        assert_eq!(p.set_fitness(2, 0.5), Err(PopulationError::Unknown(2)));
        p.set_fitness(1, 0.5).unwrap();
        assert_eq!(
            p.set_fitness(1, 0.6),
            Err(PopulationError::AlreadyTrained(1))
        );
        p.kill(1).unwrap();
        assert_eq!(p.kill(1), Err(PopulationError::Dead(1)));
        assert_eq!(p.best(), None);
        assert_eq!(p.training_count(), 0);
    }

    #[test]
    fn rank_orders_by_fitness_then_youth_with_nan_and_none_last() {
        assert_eq!(rank(Some(0.5), 0, Some(0.4), 9), Ordering::Greater);
        assert_eq!(rank(Some(0.5), 1, Some(0.5), 2), Ordering::Less);
        assert_eq!(rank(Some(0.5), 2, Some(0.5), 2), Ordering::Equal);
        assert_eq!(rank(Some(f64::NAN), 9, Some(0.0), 0), Ordering::Less);
        assert_eq!(rank(None, 9, Some(-1.0), 0), Ordering::Less);
        assert_eq!(rank(None, 1, Some(f64::NAN), 0), Ordering::Greater);
    }

    #[test]
    fn the_ranking_puts_the_best_first_and_leaves_out_the_dead_and_the_training() {
        let mut p = trained(10, Strategy::Tournament, &[0.3, 0.7, 0.5, 0.7, f64::NAN]);
        p.add(5, None).unwrap();
        p.kill(2).unwrap();
        // Equal fitness goes to the younger (3 before 1); NaN is the worst.
        assert_eq!(p.ranked(), vec![3, 1, 0, 4]);
        assert_eq!(p.best().map(|m| m.id), Some(3));
    }

    #[test]
    fn decisions_are_deterministic_for_a_seed() {
        let run = |seed: u64, strategy: Strategy| {
            let fitness: Vec<f64> = (0..30).map(|i| ((i * 7919) % 31) as f64 / 31.0).collect();
            let mut p = trained(40, strategy, &fitness);
            let mut r = rng(seed);
            let mut next = 100;
            let mut out = Vec::new();
            for _ in 0..200 {
                let d = p.select(&mut r);
                if let Decision::Reproduce { parent } = d {
                    let f = p.get(parent).unwrap().fitness.unwrap();
                    p.add(next, Some((f + 0.01) % 1.0)).unwrap();
                    next += 1;
                }
                out.push(d);
            }
            out
        };
        for strategy in [Strategy::Tournament, Strategy::Aging { sample_size: 4 }] {
            assert_eq!(run(42, strategy), run(42, strategy));
            assert_ne!(run(42, strategy), run(43, strategy));
        }
    }

    /// One step of a random run.
    #[derive(Debug, Clone)]
    enum Op {
        /// A worker asks for a decision.
        Select,
        /// The n-th member in flight finishes with this fitness.
        Finish(usize, f64),
        /// The n-th member in flight fails to train and is dropped.
        Fail(usize),
    }

    fn op() -> impl PropStrategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Select),
            2 => (any::<usize>(), 0.0f64..1.0).prop_map(|(i, f)| Op::Finish(i, f)),
            1 => any::<usize>().prop_map(Op::Fail),
        ]
    }

    proptest! {
        #[test]
        fn random_runs_keep_the_invariants(
            target in 2usize..12,
            initial in 1usize..12,
            aging in any::<bool>(),
            sample_size in 1usize..6,
            within in 0.0f64..0.1,
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let strategy = if aging { Strategy::Aging { sample_size } } else { Strategy::Tournament };
            let initial = initial.min(target);
            let mut p = Population::new(target, strategy).with_cheaper_within(within);
            // Some costs unknown, the others spread.
            let cost = |id: u64| (!id.is_multiple_of(3)).then_some(id.wrapping_mul(7919) % 1000);
            for id in 0..initial as u64 {
                p.add(id, None).unwrap();
            }
            let mut next = initial as u64;
            let mut r = rng(seed);
            for op in ops {
                let in_flight: Vec<u64> = p.members().filter(|m| m.is_training()).map(|m| m.id).collect();
                match op {
                    Op::Select => {
                        let trained_before = p.trained_count();
                        match p.select_with_costs(&mut r, cost) {
                            Decision::Kill(id) => {
                                let m = p.get(id).unwrap();
                                prop_assert!(!m.alive && m.fitness.is_some());
                                prop_assert!(trained_before >= 2);
                                prop_assert_eq!(p.trained_count(), trained_before - 1);
                                prop_assert!(p.trained_count() >= 1);
                            }
                            Decision::Reproduce { parent } => {
                                let m = p.get(parent).unwrap();
                                prop_assert!(m.is_candidate());
                                prop_assert!(!p.is_full());
                                p.add(next, None).unwrap();
                                next += 1;
                            }
                            Decision::Wait => {}
                        }
                    }
                    Op::Finish(i, f) if !in_flight.is_empty() => {
                        p.set_fitness(in_flight[i % in_flight.len()], f).unwrap();
                    }
                    Op::Fail(i) if !in_flight.is_empty() => {
                        p.kill(in_flight[i % in_flight.len()]).unwrap();
                    }
                    _ => {}
                }
                prop_assert!(p.alive_count() <= target + p.training_count());
                prop_assert!(p.alive_count() <= target);
            }
        }

        #[test]
        fn a_tournament_winner_is_fitter_or_a_cheaper_near_tie(
            fa in 0.0f64..1.0,
            fb in 0.0f64..1.0,
            ca in proptest::option::of(0u64..100),
            cb in proptest::option::of(0u64..100),
            within in 0.0f64..0.2,
        ) {
            let m = |id: u64, f: f64| Member { id, fitness: Some(f), born_at: id, alive: true };
            let (a, b) = (m(0, fa), m(1, fb));
            let cost = |id: u64| if id == 0 { ca } else { cb };
            let w = tournament_winner(&a, &b, within, cost);
            let (wf, lf) = if w.id == 0 { (fa, fb) } else { (fb, fa) };
            let (wc, lc) = if w.id == 0 { (ca, cb) } else { (cb, ca) };
            if wf < lf {
                // The less fit won: only as the cheaper of a near tie.
                prop_assert!(lf - wf <= within);
                prop_assert!(wc.zip(lc).is_some_and(|(w, l)| w < l));
            }
            // The order of the two does not matter.
            prop_assert_eq!(tournament_winner(&b, &a, within, cost).id, w.id);
        }
    }
}
