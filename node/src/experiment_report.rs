//! What `evo report` says of an experiment, from its records alone (a running node's
//! state directory may be read): the best validation accuracy over time and over FLOPs,
//! every individual, the population's size, and which mutations paid off. Plain
//! functions of the records; the command draws and writes them.

use crate::population::IndividualId;
use crate::state::{Record, Status};
use genome::Mutation;
use serde::Serialize;
use std::collections::BTreeMap;

/// A point of the best-so-far curve: when (minutes since the first birth), the FLOPs
/// spent by then (the records born up to it), and the best validation accuracy then.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BestPoint {
    /// Minutes since the first birth.
    pub minute: f64,
    /// FLOPs of every individual born so far.
    pub flops: f64,
    /// The best validation accuracy so far (0 to 1).
    pub best: f64,
    /// The individual that holds it.
    pub id: IndividualId,
}

/// The records in order of birth (ties by id).
fn by_birth(records: &[Record]) -> Vec<&Record> {
    let mut v: Vec<&Record> = records.iter().collect();
    v.sort_by_key(|r| (r.born_at_ms, r.id));
    v
}

/// The first birth, Unix milliseconds (0 with no records).
pub fn start_ms(records: &[Record]) -> u64 {
    records.iter().map(|r| r.born_at_ms).min().unwrap_or(0)
}

fn minutes(ms: u64, start: u64) -> f64 {
    ms.saturating_sub(start) as f64 / 60_000.0
}

/// The best validation accuracy over time: a point wherever it rose.
pub fn best_curve(records: &[Record]) -> Vec<BestPoint> {
    let start = start_ms(records);
    let mut flops = 0.0;
    let mut best = f64::NEG_INFINITY;
    let mut out = Vec::new();
    for r in by_birth(records) {
        flops += r.flops as f64;
        if let Some(f) = r.fitness.filter(|f| f.is_finite()) {
            if f > best {
                best = f;
                out.push(BestPoint {
                    minute: minutes(r.born_at_ms, start),
                    flops,
                    best: f,
                    id: r.id,
                });
            }
        }
    }
    out
}

/// Live individuals over time (minutes since the first birth, count): a point at every
/// birth and death.
pub fn population_curve(records: &[Record]) -> Vec<(f64, usize)> {
    let start = start_ms(records);
    let mut changes: Vec<(u64, i64)> = Vec::new();
    for r in records {
        changes.push((r.born_at_ms, 1));
        if let Some(d) = r.died_at_ms {
            changes.push((d, -1));
        }
    }
    changes.sort();
    let mut alive = 0i64;
    changes
        .into_iter()
        .map(|(t, d)| {
            alive += d;
            (minutes(t, start), alive.max(0) as usize)
        })
        .collect()
}

/// Every scored individual as (minutes since the first birth, validation accuracy),
/// split into the alive, the dead and the migrants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dots {
    /// Alive, bred here.
    pub alive: Vec<(f64, f64)>,
    /// Dead, bred here.
    pub dead: Vec<(f64, f64)>,
    /// Came from another island.
    pub migrants: Vec<(f64, f64)>,
}

/// [`Dots`] of `records`.
pub fn dots(records: &[Record]) -> Dots {
    let start = start_ms(records);
    let mut d = Dots::default();
    for r in records {
        let Some(f) = r.fitness.filter(|f| f.is_finite()) else {
            continue;
        };
        let p = (minutes(r.born_at_ms, start), f);
        if r.origin.is_some() {
            d.migrants.push(p);
        } else if r.status == Status::Alive {
            d.alive.push(p);
        } else {
            d.dead.push(p);
        }
    }
    d
}

/// How the children made by one mutation did against their parents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MutationGain {
    /// The mutation.
    pub mutation: Mutation,
    /// Children made by it alone whose parent's fitness is known.
    pub children: usize,
    /// Mean of child minus parent validation accuracy (points of percent).
    pub mean_change: f64,
    /// The largest change (points of percent).
    pub best_change: f64,
    /// Children that beat their parent.
    pub improved: usize,
}

/// Per mutation, the fitness change of its children against their parents, for
/// children made by one mutation whose parent is among `records` (a migrant's parent
/// is on another island); most children first.
pub fn mutation_gains(records: &[Record]) -> Vec<MutationGain> {
    let fitness: BTreeMap<IndividualId, f64> = records
        .iter()
        .filter_map(|r| Some((r.id, r.fitness.filter(|f| f.is_finite())?)))
        .collect();
    let mut changes: BTreeMap<Mutation, Vec<f64>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.origin.is_none()) {
        let ([m], Some(p), Some(f)) = (
            r.mutations.as_slice(),
            r.parent.and_then(|p| fitness.get(&p)),
            r.fitness.filter(|f| f.is_finite()),
        ) else {
            continue;
        };
        changes.entry(*m).or_default().push(100.0 * (f - p));
    }
    let mut out: Vec<MutationGain> = changes
        .into_iter()
        .map(|(mutation, c)| MutationGain {
            mutation,
            children: c.len(),
            mean_change: c.iter().sum::<f64>() / c.len() as f64,
            best_change: c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            improved: c.iter().filter(|d| **d > 0.0).count(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.children
            .cmp(&a.children)
            .then(a.mutation.cmp(&b.mutation))
    });
    out
}

/// The experiment in figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Individuals trained (records).
    pub individuals: usize,
    /// Alive now.
    pub alive: usize,
    /// Migrants among them.
    pub migrants: usize,
    /// FLOPs spent training and validating.
    pub flops: f64,
    /// Minutes from the first birth to the last event seen in the records.
    pub minutes: f64,
    /// The best live individual by validation accuracy.
    pub best: Option<IndividualId>,
    /// Its validation accuracy.
    pub best_fitness: Option<f64>,
}

/// [`Summary`] of `records`.
pub fn summary(records: &[Record]) -> Summary {
    let start = start_ms(records);
    let end = records
        .iter()
        .map(|r| r.died_at_ms.unwrap_or(r.born_at_ms).max(r.born_at_ms))
        .max()
        .unwrap_or(start);
    let best = records
        .iter()
        .filter(|r| r.status == Status::Alive)
        .filter_map(|r| Some((r, r.fitness.filter(|f| f.is_finite())?)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
    Summary {
        individuals: records.len(),
        alive: records.iter().filter(|r| r.status == Status::Alive).count(),
        migrants: records.iter().filter(|r| r.origin.is_some()).count(),
        flops: records.iter().map(|r| r.flops as f64).sum(),
        minutes: minutes(end, start),
        best: best.map(|(r, _)| r.id),
        best_fitness: best.map(|(_, f)| f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Origin;
    use genome::{Genome, InputShape};

    fn record(id: IndividualId, born_s: u64, fitness: f64, parent: Option<IndividualId>) -> Record {
        Record {
            id,
            genome: Genome::initial(InputShape::CIFAR, 10),
            fitness: Some(fitness),
            test_accuracy: None,
            status: Status::Alive,
            parent,
            mutations: if parent.is_some() {
                vec![Mutation::InsertConvolution]
            } else {
                vec![]
            },
            born_at_ms: 1_000_000 + born_s * 1000,
            died_at_ms: None,
            flops: 10,
            node: "n".into(),
            origin: None,
            phases: None,
        }
    }

    fn run() -> Vec<Record> {
        let mut rs = vec![
            record(0, 0, 0.30, None),
            record(1, 0, 0.25, None),
            record(2, 60, 0.40, Some(0)),
            record(3, 120, 0.35, Some(2)),
            record(4, 180, 0.50, Some(2)),
        ];
        rs[1].status = Status::Dead;
        rs[1].died_at_ms = Some(1_000_000 + 90_000);
        rs[3].mutations = vec![Mutation::AddSkip];
        rs
    }

    #[test]
    fn the_best_curve_rises_at_each_new_best_with_the_flops_spent() {
        let c = best_curve(&run());
        let got: Vec<(f64, f64, f64, IndividualId)> = c
            .iter()
            .map(|p| (p.minute, p.flops, p.best, p.id))
            .collect();
        assert_eq!(
            got,
            vec![
                (0.0, 10.0, 0.30, 0),
                (1.0, 30.0, 0.40, 2),
                (3.0, 50.0, 0.50, 4)
            ]
        );
        assert!(best_curve(&[]).is_empty());
    }

    #[test]
    fn the_population_counts_births_and_deaths() {
        let p = population_curve(&run());
        assert_eq!(p.last(), Some(&(3.0, 4)));
        assert!(p.contains(&(1.5, 2)), "{p:?}");
        assert_eq!(p.iter().map(|x| x.1).max(), Some(4));
    }

    #[test]
    fn mutations_are_judged_against_their_parents() {
        let g = mutation_gains(&run());
        assert_eq!(g.len(), 2);
        let insert = &g[0];
        assert_eq!(insert.mutation, Mutation::InsertConvolution);
        assert_eq!((insert.children, insert.improved), (2, 2));
        // +10 and +10 points.
        assert!((insert.mean_change - 10.0).abs() < 1e-9);
        let skip = &g[1];
        assert_eq!(
            (skip.mutation, skip.children, skip.improved),
            (Mutation::AddSkip, 1, 0)
        );
        assert!((skip.best_change + 5.0).abs() < 1e-9);
        // A migrant's parent id is another island's: left out.
        let mut rs = run();
        rs[4].origin = Some(Origin {
            island: "x".into(),
            id: 4,
        });
        assert_eq!(mutation_gains(&rs)[0].children, 1);
    }

    #[test]
    fn the_summary_names_the_best_live_individual() {
        let mut rs = run();
        rs[4].status = Status::Dead;
        let s = summary(&rs);
        assert_eq!((s.individuals, s.alive, s.best), (5, 3, Some(2)));
        assert_eq!(s.flops, 50.0);
        assert_eq!(s.minutes, 3.0);
        let d = dots(&rs);
        assert_eq!((d.alive.len(), d.dead.len(), d.migrants.len()), (3, 2, 0));
    }
}
