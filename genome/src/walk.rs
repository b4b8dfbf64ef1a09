//! A long lineage: from the initial individual, each child becomes the next parent. Used
//! to exercise the mutations and to check that every child they make is valid.

use crate::graph::{Genome, InputShape};
use crate::limits::Limits;
use crate::mutation::{reproduce, Applied, Mutation, MutationError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;

/// The random number generator used wherever a seed must give the same stream on every
/// platform and build.
pub type SeededRng = ChaCha8Rng;

/// A generator seeded with `seed`.
pub fn seeded_rng(seed: u64) -> SeededRng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// One step of a walk, as written to the walk's JSON-lines file.
#[derive(Debug, Serialize)]
pub struct WalkStep<'a> {
    /// Step number, from 1.
    pub step: u64,
    /// Mutations applied to make this child.
    pub applied: Vec<Mutation>,
    /// Mutations drawn that could not apply, with why.
    pub failed: Vec<String>,
    /// Trainable parameters of the child.
    pub params: u64,
    /// Forward FLOPs per image of the child.
    pub flops: u64,
    /// The child.
    pub genome: &'a Genome,
}

/// What a walk did.
#[derive(Debug, Clone, Serialize)]
pub struct WalkReport {
    /// Reproductions made.
    pub steps: u64,
    /// Mutations applied, by kind (every kind listed).
    pub applied: BTreeMap<Mutation, u64>,
    /// Mutations drawn that could not apply, by kind (every kind listed).
    pub failed: BTreeMap<Mutation, u64>,
    /// Children that failed re-validation or a JSON or bincode round trip (should be 0).
    pub invalid: u64,
    /// Most vertices of any child.
    pub max_vertices: usize,
    /// Most edges of any child.
    pub max_edges: usize,
    /// Most trainable parameters of any child.
    pub max_params: u64,
    /// Most forward FLOPs per image of any child.
    pub max_flops: u64,
    /// The last child.
    #[serde(skip)]
    pub last: Option<Genome>,
}

/// Checks a child independently of how it was made: both round trips, each of which
/// validates what it decodes.
fn independently_valid(child: &Genome, limits: &Limits) -> bool {
    Genome::from_bincode(&child.to_bincode(), limits)
        .ok()
        .as_ref()
        == Some(child)
        && Genome::from_json(&child.to_json(), limits).ok().as_ref() == Some(child)
}

/// Walks `steps` reproductions of `mutations` mutations each from the initial CIFAR
/// individual, calling `on_step` with every child.
pub fn walk(
    seed: u64,
    steps: u64,
    mutations: usize,
    limits: &Limits,
    mut on_step: impl FnMut(&WalkStep<'_>),
) -> Result<WalkReport, MutationError> {
    let mut rng = seeded_rng(seed);
    let zero: BTreeMap<Mutation, u64> = Mutation::ALL.iter().map(|&m| (m, 0)).collect();
    let mut report = WalkReport {
        steps: 0,
        applied: zero.clone(),
        failed: zero,
        invalid: 0,
        max_vertices: 0,
        max_edges: 0,
        max_params: 0,
        max_flops: 0,
        last: None,
    };
    let mut parent = Genome::initial(InputShape::CIFAR, 10);
    for step in 1..=steps {
        let r = reproduce(&parent, mutations, &mut rng, limits)?;
        for Applied { mutation, .. } in &r.applied {
            *report.applied.entry(*mutation).or_default() += 1;
        }
        for e in &r.failed {
            if let Some(m) = e.mutation() {
                *report.failed.entry(m).or_default() += 1;
            }
        }
        if !independently_valid(&r.child, limits) {
            report.invalid += 1;
        }
        report.steps = step;
        report.max_vertices = report.max_vertices.max(r.child.vertices.len());
        report.max_edges = report.max_edges.max(r.child.edges.len());
        report.max_params = report.max_params.max(r.analysis.cost.params);
        report.max_flops = report.max_flops.max(r.analysis.cost.forward_flops);
        on_step(&WalkStep {
            step,
            applied: r.applied.iter().map(|a| a.mutation).collect(),
            failed: r.failed.iter().map(|e| e.to_string()).collect(),
            params: r.analysis.cost.params,
            flops: r.analysis.cost.forward_flops,
            genome: &r.child,
        });
        parent = r.child;
    }
    report.last = Some(parent);
    Ok(report)
}
