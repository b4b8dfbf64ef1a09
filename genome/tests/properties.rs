//! Property tests: random mutation walks always give valid genomes whose inferred shapes
//! agree with an independent reference computation; serialization round-trips; hostile
//! inputs are rejected without a panic.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use genome::graph::Id;
use genome::{
    reproduce, seeded_rng, Conv, Edge, EdgeOp, Genome, InputShape, Limits, Shape, Vertex,
    VertexKind,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// Shapes straight from the definition, by memoized recursion along primary edges.
fn reference_shapes(g: &Genome) -> HashMap<Id, Shape> {
    fn shape(g: &Genome, v: Id, memo: &mut HashMap<Id, Shape>) -> Shape {
        if let Some(s) = memo.get(&v) {
            return *s;
        }
        let s = if v == g.input_vertex {
            Shape {
                h: g.input.height,
                w: g.input.width,
                c: g.input.channels,
            }
        } else {
            let e = g.edges.iter().find(|e| e.to == v && e.primary).unwrap();
            edge_shape(g, e, memo)
        };
        memo.insert(v, s);
        s
    }
    fn edge_shape(g: &Genome, e: &Edge, memo: &mut HashMap<Id, Shape>) -> Shape {
        let src = shape(g, e.from, memo);
        match e.op {
            EdgeOp::Identity => src,
            EdgeOp::Conv(c) => Shape {
                h: src.h.div_ceil(c.stride),
                w: src.w.div_ceil(c.stride),
                c: c.channels,
            },
        }
    }
    let mut memo = HashMap::new();
    for v in &g.vertices {
        shape(g, v.id, &mut memo);
    }
    memo
}

fn check_against_reference(g: &Genome) {
    let a = g.validate().expect("valid");
    let reference = reference_shapes(g);
    for v in &g.vertices {
        assert_eq!(a.vertex_shapes[&v.id], reference[&v.id], "vertex {}", v.id);
    }
    // Topological order: every edge goes forward.
    let pos: HashMap<Id, usize> = a.order.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    for e in &g.edges {
        assert!(pos[&e.from] < pos[&e.to]);
    }
    // Every tensor name is unique.
    let tensors = g.tensors(&a);
    let mut names: Vec<_> = tensors.iter().map(|t| &t.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), tensors.len());
}

/// A genome reached by `steps` random reproductions.
fn walked(seed: u64, steps: usize, mutations: usize) -> Genome {
    let mut rng = seeded_rng(seed);
    let limits = Limits::default();
    let mut g = Genome::initial(InputShape::CIFAR, 10);
    for _ in 0..steps {
        g = reproduce(&g, mutations, &mut rng, &limits).unwrap().child;
    }
    g
}

/// Arbitrary, mostly invalid genomes: random vertices, edges and values.
fn arbitrary_genome() -> impl Strategy<Value = Genome> {
    let vertex = (0u32..12, any::<bool>()).prop_map(|(id, bn)| Vertex {
        id,
        kind: if bn {
            VertexKind::BnRelu
        } else {
            VertexKind::Linear
        },
    });
    let op = prop_oneof![
        Just(EdgeOp::Identity),
        (0u32..8, 0u32..8, 0u32..70, 0u32..5000).prop_map(|(h, w, s, c)| EdgeOp::Conv(Conv {
            filter_h: h,
            filter_w: w,
            stride: s,
            channels: c,
        })),
    ];
    let edge = (0u32..40, 0u32..12, 0u32..12, any::<bool>(), op).prop_map(
        |(id, from, to, primary, op)| Edge {
            id,
            from,
            to,
            primary,
            op,
        },
    );
    (
        prop::collection::vec(vertex, 0..10),
        prop::collection::vec(edge, 0..16),
        0u32..12,
        0u32..12,
        (0u32..70, 0u32..70, 0u32..5),
        0.0f64..20.0,
        0u32..50,
    )
        .prop_map(|(vertices, edges, i, o, (h, w, c), lr, next_id)| Genome {
            input: InputShape {
                height: h,
                width: w,
                channels: c,
            },
            classes: 10,
            learning_rate: lr,
            augment: None,
            input_vertex: i,
            output_vertex: o,
            vertices,
            edges,
            next_id,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn walks_give_valid_genomes_with_reference_shapes(
        seed in any::<u64>(), steps in 1usize..80, mutations in 1usize..4
    ) {
        let g = walked(seed, steps, mutations);
        check_against_reference(&g);
    }

    #[test]
    fn serialization_round_trips(seed in any::<u64>(), steps in 0usize..60) {
        let g = walked(seed, steps, 1);
        let limits = Limits::default();
        prop_assert_eq!(&Genome::from_bincode(&g.to_bincode(), &limits).unwrap(), &g);
        prop_assert_eq!(&Genome::from_json(&g.to_json(), &limits).unwrap(), &g);
        let compact = serde_json::to_string(&g).unwrap();
        prop_assert_eq!(&Genome::from_json(&compact, &limits).unwrap(), &g);
    }

    #[test]
    fn arbitrary_graphs_never_panic_and_valid_ones_agree(g in arbitrary_genome()) {
        if g.validate().is_ok() {
            check_against_reference(&g);
        }
        let _ = g.to_dot(None);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Genome::from_bincode(&bytes, &Limits::default());
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Genome::from_json(text, &Limits::default());
        }
    }

    #[test]
    fn corrupted_encodings_are_rejected_or_valid(
        seed in any::<u64>(), steps in 1usize..40, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)
    ) {
        let g = walked(seed, steps, 1);
        let mut bytes = g.to_bincode();
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        if let Ok(decoded) = Genome::from_bincode(&bytes, &Limits::default()) {
            check_against_reference(&decoded);
        }
    }
}

#[test]
fn a_long_walk_applies_every_mutation_and_stays_valid() {
    let report = genome::walk(7, 3000, 1, &Limits::default(), |_| {}).unwrap();
    assert_eq!(report.invalid, 0);
    for (m, n) in &report.applied {
        assert!(*n > 0, "{m} never applied");
    }
    assert_eq!(report.applied.values().sum::<u64>(), 3000);
    check_against_reference(report.last.as_ref().unwrap());
}

#[test]
fn same_seed_same_walk() {
    assert_eq!(walked(42, 200, 2), walked(42, 200, 2));
    assert_ne!(walked(42, 200, 2), walked(43, 200, 2));
}
