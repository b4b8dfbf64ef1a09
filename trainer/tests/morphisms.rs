//! Function-preserving mutations, checked by value: for parents from random mutation
//! walks (skips, strides, odd filters, batch norms with non-trivial statistics), a child
//! made by a mutation's function-preserving form gives its parent's logits on a batch
//! before any training, within float tolerance, and still does after its pass-through
//! batch norms are calibrated on a batch.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use genome::{
    apply_with_style, seeded_rng, EdgeOp, Genome, InputShape, Invalidated, Limits, Mutation,
    MutationOptions, MutationStyle, StrideTwoPassThrough, TensorInit, VertexKind,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use trainer::Network;

const PRESERVING: [Mutation; 5] = [
    Mutation::AlterStride,
    Mutation::InsertConvolution,
    Mutation::InsertOneToOne,
    Mutation::AlterNumberOfChannels,
    Mutation::FilterSize,
];

fn limits() -> Limits {
    Limits {
        max_channels: 24,
        max_vertices: 14,
        ..Limits::default()
    }
}

fn input() -> InputShape {
    InputShape {
        height: 8,
        width: 8,
        channels: 3,
    }
}

fn batch(seed: u64, n: usize) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let len = n * 3 * 8 * 8;
    let values: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(values, (n, 3, 8, 8), &Device::Cpu).unwrap()
}

/// A parent from a walk of the paper's mutations (and, half the time, preserving ones),
/// with every tensor perturbed and the running statistics set by a few training-mode
/// passes, so that nothing is at its fresh value.
fn parent(seed: u64, steps: usize) -> (Genome, std::collections::HashMap<String, Tensor>) {
    let mut rng = seeded_rng(seed);
    let mut g = Genome::initial(input(), 5);
    for i in 0..steps {
        let style = if i % 2 == 0 {
            MutationStyle::Paper
        } else {
            MutationStyle::PreserveFunction
        };
        g = genome::reproduce_with_style(&g, 1, &mut rng, &limits(), style, &Default::default())
            .unwrap()
            .child;
    }
    let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), seed).unwrap();
    let mut noise = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 77);
    for (_, p) in net.weights().iter() {
        if p.trains() {
            let t = p.var.as_tensor();
            let n = t.elem_count();
            let delta: Vec<f32> = (0..n).map(|_| noise.random_range(-0.2..0.2)).collect();
            let delta = Tensor::from_vec(delta, t.dims(), &Device::Cpu).unwrap();
            p.var.set(&(t + delta).unwrap()).unwrap();
        }
    }
    for k in 0..3 {
        net.forward(&batch(seed + k, 6), true).unwrap();
    }
    let tensors = net.weights().snapshot().unwrap();
    (g, tensors)
}

fn logits(net: &Network, x: &Tensor) -> Vec<f32> {
    net.forward(x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (p, q) in a.iter().zip(b) {
        assert!((p - q).abs() <= 1e-4 * scale, "{what}: {p} vs {q}");
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// The mutation did not apply to this parent.
    NotApplied,
    /// It applied and kept the logits exactly (asserted).
    Exact,
    /// It applied with a resampled head (a stride change): approximate, not asserted.
    Approximate,
}

/// Checks one preserving mutation of one parent, with insertions at least `floor`
/// channels wide and (`nonlinear`) BN_RELU wherever they can be.
fn check(seed: u64, steps: usize, m: Mutation, floor: u32, nonlinear: bool) -> Checked {
    let (pg, tensors) = parent(seed, steps);
    let mut rng = seeded_rng(seed.wrapping_mul(31) + m as u64);
    let options = MutationOptions {
        style: MutationStyle::PreserveFunction,
        min_insert_channels: floor,
        nonlinear_insertions: nonlinear,
        stride_two_width_factor: 1,
        stride_two_pass_through: Default::default(),
        stride_two_share: genome::PAPER_STRIDE_TWO_SHARE,
    };
    let Ok((child, _, applied)) = apply_with_style(&pg, m, &mut rng, &limits(), options) else {
        return Checked::NotApplied;
    };
    let (p_net, _) =
        Network::new(&pg, &Device::Cpu, Some(&tensors), &Invalidated::none(), 0).unwrap();
    let (c_net, _) = Network::with_inits(
        &child,
        &Device::Cpu,
        Some(&tensors),
        &applied.invalidated,
        &applied.inits,
        seed + 1,
    )
    .unwrap();
    if !genome::morphism::exact(&applied.inits) {
        // Stride changes resample the head: close, not exact (unit-tested in morph).
        return Checked::Approximate;
    }
    let x = batch(seed + 100, 7);
    let what = format!(
        "seed {seed}, {steps} steps, {m}, floor {floor}, nonlinear {nonlinear}: {:?}",
        applied.inits
    );
    assert_close(&logits(&c_net, &x), &logits(&p_net, &x), &what);
    c_net.calibrate(&batch(seed + 200, 20)).unwrap();
    assert_close(
        &logits(&c_net, &x),
        &logits(&p_net, &x),
        &format!("{what}, calibrated"),
    );
    Checked::Exact
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn preserving_mutations_keep_the_parents_logits(
        seed in 0u64..1_000_000,
        steps in 0usize..14,
        floor in prop_oneof![Just(0u32), Just(5), Just(16)],
        nonlinear in any::<bool>(),
    ) {
        for m in PRESERVING {
            check(seed, steps, m, floor, nonlinear);
        }
    }
}

/// Widens every convolution of `pg` `rounds` times ([`genome::widen`]) and checks the
/// wider network's logits against the parent's; the doublings made.
fn check_widened(seed: u64, steps: usize, rounds: u32) -> usize {
    let (pg, tensors) = parent(seed, steps);
    let wide_limits = Limits {
        max_channels: 96,
        ..limits()
    };
    let w = genome::widen(&pg, rounds, &wide_limits).unwrap();
    let (p_net, _) =
        Network::new(&pg, &Device::Cpu, Some(&tensors), &Invalidated::none(), 0).unwrap();
    let (c_net, _) = Network::with_inits(
        &w.genome,
        &Device::Cpu,
        Some(&tensors),
        &Invalidated::none(),
        &w.inits,
        seed + 1,
    )
    .unwrap();
    let x = batch(seed + 100, 7);
    let what = format!("seed {seed}, {steps} steps, {rounds} rounds: {:?}", w.inits);
    assert_close(&logits(&c_net, &x), &logits(&p_net, &x), &what);
    w.doublings
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn widening_every_convolution_keeps_the_parents_logits(
        seed in 0u64..1_000_000,
        steps in 0usize..14,
        rounds in 1u32..3,
    ) {
        check_widened(seed, steps, rounds);
    }
}

/// Widening is not vacuous: on such parents it usually doubles something.
#[test]
fn widening_applies_on_most_evolved_parents() {
    let widened = (0..24u64)
        .filter(|&seed| check_widened(seed, 10, 1) > 0)
        .count();
    assert!(widened >= 12, "only {widened} of 24 parents widened");
}

/// Each exact preserving form applies often on such parents (the property is not
/// vacuous), and insertions into the linear start keep its function too.
#[test]
fn preserving_forms_apply_and_start_from_the_linear_classifier() {
    for m in &PRESERVING[1..] {
        let exact = (0..40)
            .filter(|&s| check(s, 6, *m, 0, false) == Checked::Exact)
            .count();
        assert!(
            exact >= 8,
            "{m} was checked exactly only {exact} times in 40"
        );
    }
    for floor in [0, 16] {
        let first: Vec<Checked> = (0..20)
            .map(|s| check(s, 0, Mutation::InsertConvolution, floor, s % 2 == 0))
            .collect();
        assert!(!first.contains(&Checked::NotApplied));
        assert!(first.iter().filter(|c| **c == Checked::Exact).count() >= 5);
    }
    // With a floor, insertions that widen stay exact as often.
    let exact = (0..40)
        .filter(|&s| check(s, 6, Mutation::InsertConvolution, 16, false) == Checked::Exact)
        .count();
    assert!(exact >= 8, "floor 16: exact only {exact} times in 40");
}

/// Nonlinear insertions stay exact as often, and a stride-2 one that splits its
/// pixels' signs (x, -x) into a BN_RELU computes what the same insertion as a LINEAR
/// vertex computes: its consumer's grown kernel takes relu(x) - relu(-x) = x (both have
/// the head resampled, so neither is the parent's function exactly), whether the
/// pass-through samples each window's centre or averages its 2x2 block.
#[test]
fn nonlinear_insertions_keep_the_function() {
    let exact = (0..40)
        .filter(|&s| check(s, 6, Mutation::InsertConvolution, 0, true) == Checked::Exact)
        .count();
    assert!(exact >= 8, "nonlinear: exact only {exact} times in 40");
    for pass in [StrideTwoPassThrough::Sample, StrideTwoPassThrough::Average] {
        let options = MutationOptions {
            style: MutationStyle::PreserveFunction,
            min_insert_channels: 0,
            nonlinear_insertions: true,
            stride_two_width_factor: 1,
            stride_two_pass_through: pass,
            stride_two_share: genome::PAPER_STRIDE_TWO_SHARE,
        };
        let mut split_stride_two = 0;
        for seed in 0..80 {
            let (pg, tensors) = parent(seed, 6);
            let mut rng = seeded_rng(seed);
            let Ok((child, _, applied)) = apply_with_style(
                &pg,
                Mutation::InsertConvolution,
                &mut rng,
                &limits(),
                options,
            ) else {
                continue;
            };
            let new_edge = child
                .edges
                .iter()
                .find(|e| pg.edge(e.id).is_none())
                .expect("a new edge");
            let conv = *new_edge.op.conv().expect("a convolution");
            let split = applied
                .inits
                .iter()
                .any(|i| matches!(i, TensorInit::PassThrough { split: true, .. }));
            if conv.stride != 2 || !split {
                continue;
            }
            split_stride_two += 1;
            // The same insertion as a LINEAR vertex of the input's channels.
            let mut linear = child.clone();
            let w = new_edge.to;
            linear
                .vertices
                .iter_mut()
                .find(|v| v.id == w)
                .expect("the new vertex")
                .kind = VertexKind::Linear;
            for e in linear.edges.iter_mut().filter(|e| e.id == new_edge.id) {
                if let EdgeOp::Conv(c) = &mut e.op {
                    c.channels /= 2;
                }
            }
            let inits: Vec<TensorInit> = applied
                .inits
                .iter()
                .filter_map(|i| match i {
                    TensorInit::PassThrough { name, average, .. } => {
                        Some(TensorInit::PassThrough {
                            name: name.clone(),
                            split: false,
                            average: *average,
                        })
                    }
                    TensorInit::PassThroughBatchNorm { .. } | TensorInit::Grow { .. } => None,
                    other => Some(other.clone()),
                })
                .collect();
            let net = |g: &Genome, inits: &[TensorInit]| {
                Network::with_inits(
                    g,
                    &Device::Cpu,
                    Some(&tensors),
                    &applied.invalidated,
                    inits,
                    seed + 1,
                )
                .unwrap()
                .0
            };
            let x = batch(seed + 100, 7);
            assert_close(
                &logits(&net(&child, &applied.inits), &x),
                &logits(&net(&linear, &inits), &x),
                &format!("{pass:?}, seed {seed}: {:?}", applied.inits),
            );
        }
        assert!(
            split_stride_two >= 5,
            "{pass:?}: {split_stride_two} split stride-2 insertions in 80"
        );
    }
}

/// The paper's style is unchanged: no special initializations.
#[test]
fn the_paper_style_has_no_special_initializations() {
    let (pg, _) = parent(3, 8);
    for m in Mutation::ALL {
        for s in 0..5 {
            if let Ok((_, _, a)) =
                apply_with_style(&pg, m, &mut seeded_rng(s), &limits(), MutationStyle::Paper)
            {
                assert!(a.inits.is_empty(), "{m}");
            }
        }
    }
}

/// A stride-2 insertion widened by `stride_two_width_factor` computes what the same
/// insertion at its input's width computes (its further channels start unused: zero in
/// its consumer's kernel and in the resampled head), on the same parents with the same
/// draws; and it does widen on most of them.
#[test]
fn wider_stride_two_insertions_compute_what_narrow_ones_do() {
    let options = |factor| MutationOptions {
        style: MutationStyle::PreserveFunction,
        min_insert_channels: 0,
        nonlinear_insertions: true,
        stride_two_width_factor: factor,
        stride_two_pass_through: Default::default(),
        stride_two_share: genome::PAPER_STRIDE_TWO_SHARE,
    };
    let mut widened = 0;
    for seed in 0..80 {
        let (pg, tensors) = parent(seed, 6);
        let insert = |factor| {
            apply_with_style(
                &pg,
                Mutation::InsertConvolution,
                &mut seeded_rng(seed),
                &limits(),
                options(factor),
            )
        };
        let (Ok((narrow, _, n_applied)), Ok((wide, _, w_applied))) = (insert(1), insert(2)) else {
            continue;
        };
        let new_conv = |g: &Genome| {
            *g.edges
                .iter()
                .find(|e| pg.edge(e.id).is_none())
                .expect("a new edge")
                .op
                .conv()
                .expect("a convolution")
        };
        let (n, w) = (new_conv(&narrow), new_conv(&wide));
        assert_eq!(n.stride, w.stride, "seed {seed}: the same draws");
        if n.stride == 1 {
            assert_eq!(narrow, wide, "seed {seed}: stride 1 is not affected");
            continue;
        }
        if w.channels == n.channels {
            continue;
        }
        widened += 1;
        let net = |g: &Genome, inits: &[TensorInit], invalidated| {
            Network::with_inits(
                g,
                &Device::Cpu,
                Some(&tensors),
                invalidated,
                inits,
                seed + 1,
            )
            .unwrap()
            .0
        };
        let x = batch(seed + 100, 7);
        assert_close(
            &logits(&net(&wide, &w_applied.inits, &w_applied.invalidated), &x),
            &logits(&net(&narrow, &n_applied.inits, &n_applied.invalidated), &x),
            &format!("seed {seed}: {:?}", w_applied.inits),
        );
    }
    assert!(widened >= 10, "{widened} widened stride-2 insertions in 80");
}

/// A stride-2 insertion in front of the head, on a linear classifier whose head weighs
/// each 2x2 block's pixels alike: with [`StrideTwoPassThrough::Average`] the child's
/// logits are the parent's on any input (the head's resampled weight is the block's sum,
/// the kernel passes the block's mean); with `Sample` (the centre pixel) they are not.
#[test]
fn an_averaging_stride_two_insertion_keeps_a_block_constant_head_exactly() {
    let pg = Genome::initial(input(), 5);
    let (net, _) = Network::new(&pg, &Device::Cpu, None, &Invalidated::none(), 3).unwrap();
    let mut tensors = net.weights().snapshot().unwrap();
    let head = &tensors["head.weight"];
    let (k, f) = head.dims2().unwrap();
    assert_eq!(f, 3 * 8 * 8);
    let mut noise = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let blocks: Vec<f32> = (0..k * 3 * 4 * 4)
        .map(|_| noise.random_range(-1.0..1.0))
        .collect();
    let mut w = vec![0.0f32; k * f];
    for row in 0..k {
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    w[row * f + (c * 8 + y) * 8 + x] =
                        blocks[((row * 3 + c) * 4 + y / 2) * 4 + x / 2];
                }
            }
        }
    }
    tensors.insert(
        "head.weight".into(),
        Tensor::from_vec(w, (k, f), &Device::Cpu).unwrap(),
    );
    let parent_net = Network::with_inits(
        &pg,
        &Device::Cpu,
        Some(&tensors),
        &Invalidated::none(),
        &[],
        1,
    )
    .unwrap()
    .0;
    let x = batch(11, 4);
    let want = logits(&parent_net, &x);
    let child = |pass: StrideTwoPassThrough, seed: u64| {
        let options = MutationOptions {
            style: MutationStyle::PreserveFunction,
            min_insert_channels: 0,
            nonlinear_insertions: false,
            stride_two_width_factor: 1,
            stride_two_pass_through: pass,
            stride_two_share: genome::PAPER_STRIDE_TWO_SHARE,
        };
        let (g, _, applied) = apply_with_style(
            &pg,
            Mutation::InsertConvolution,
            &mut seeded_rng(seed),
            &limits(),
            options,
        )
        .unwrap();
        let stride = g
            .edges
            .iter()
            .find_map(|e| e.op.conv())
            .expect("an inserted convolution")
            .stride;
        let net = Network::with_inits(
            &g,
            &Device::Cpu,
            Some(&tensors),
            &applied.invalidated,
            &applied.inits,
            seed + 1,
        )
        .unwrap()
        .0;
        (stride, logits(&net, &x))
    };
    let mut checked = 0;
    for seed in 0..20 {
        let (stride, averaged) = child(StrideTwoPassThrough::Average, seed);
        if stride != 2 {
            continue;
        }
        checked += 1;
        assert_close(&averaged, &want, &format!("seed {seed}: averaged"));
        let (_, sampled) = child(StrideTwoPassThrough::Sample, seed);
        let apart = sampled
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            apart > 1e-2,
            "seed {seed}: sampling kept the logits ({apart})"
        );
    }
    assert!(
        checked >= 3,
        "only {checked} stride-2 insertions in 20 draws"
    );
}
