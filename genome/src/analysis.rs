//! Validation of a genome against [`Limits`], producing what every consumer needs: a
//! topological order, every vertex's and edge's shape, and the costs.

use crate::cost::Cost;
use crate::error::GenomeError;
use crate::graph::{EdgeOp, Genome, Id, VertexKind};
use crate::limits::Limits;
use crate::shape::{strided_side, Shape};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A validated genome's derived facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Vertex ids in a topological order (input first, output last).
    pub order: Vec<Id>,
    /// Each vertex's activation shape.
    pub vertex_shapes: BTreeMap<Id, Shape>,
    /// Each edge's output shape, before reconciliation to its target's shape.
    pub edge_shapes: BTreeMap<Id, Shape>,
    /// Parameter count and FLOPs.
    pub cost: Cost,
}

impl Analysis {
    /// The shape of the output vertex: what the head flattens.
    pub fn output_shape(&self, genome: &Genome) -> Shape {
        self.vertex_shapes[&genome.output_vertex]
    }
}

fn check_dim(what: &'static str, value: u32, max: u32) -> Result<(), GenomeError> {
    if value == 0 || value > max {
        return Err(GenomeError::BadDimension {
            what,
            value: value as u64,
            max: max as u64,
        });
    }
    Ok(())
}

fn check_count(what: &'static str, value: u64, max: u64) -> Result<(), GenomeError> {
    if value > max {
        return Err(GenomeError::TooLarge { what, value, max });
    }
    Ok(())
}

impl Genome {
    /// Checks every rule a genome must obey and returns its derived facts. Safe on any
    /// input: counts are checked before anything proportional to them is allocated.
    pub fn analyze(&self, limits: &Limits) -> Result<Analysis, GenomeError> {
        check_count(
            "vertices",
            self.vertices.len() as u64,
            limits.max_vertices as u64,
        )?;
        check_count("edges", self.edges.len() as u64, limits.max_edges as u64)?;
        check_dim("input height", self.input.height, limits.max_image_side)?;
        check_dim("input width", self.input.width, limits.max_image_side)?;
        check_dim(
            "input channels",
            self.input.channels,
            limits.max_input_channels,
        )?;
        check_dim("classes", self.classes, limits.max_classes)?;
        let lr = self.learning_rate;
        if !(lr.is_finite() && lr >= limits.min_learning_rate && lr <= limits.max_learning_rate) {
            return Err(GenomeError::BadLearningRate {
                value: lr,
                min: limits.min_learning_rate,
                max: limits.max_learning_rate,
            });
        }

        // Ids, and each vertex's position in `self.vertices`.
        let mut index: HashMap<Id, usize> = HashMap::with_capacity(self.vertices.len());
        for (i, v) in self.vertices.iter().enumerate() {
            if index.insert(v.id, i).is_some() {
                return Err(GenomeError::DuplicateId {
                    what: "vertex",
                    id: v.id,
                });
            }
            if v.id >= self.next_id {
                return Err(GenomeError::IdNotBelowNext {
                    id: v.id,
                    next_id: self.next_id,
                });
            }
        }
        let mut edge_ids = HashSet::with_capacity(self.edges.len());
        for e in &self.edges {
            if !edge_ids.insert(e.id) {
                return Err(GenomeError::DuplicateId {
                    what: "edge",
                    id: e.id,
                });
            }
            if e.id >= self.next_id {
                return Err(GenomeError::IdNotBelowNext {
                    id: e.id,
                    next_id: self.next_id,
                });
            }
        }
        let terminal = |what, id| {
            index
                .get(&id)
                .copied()
                .ok_or(GenomeError::MissingTerminal { what, id })
        };
        let input = terminal("input", self.input_vertex)?;
        let output = terminal("output", self.output_vertex)?;
        if input == output {
            return Err(GenomeError::SameTerminal(self.input_vertex));
        }
        if self.vertices[input].kind != VertexKind::Linear {
            return Err(GenomeError::InputNotLinear);
        }

        // Edges: endpoints, filters, strides, channels; adjacency by position.
        let n = self.vertices.len();
        let mut ends = Vec::with_capacity(self.edges.len());
        let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut primary: Vec<Option<usize>> = vec![None; n];
        let mut primary_count = vec![0usize; n];
        for (k, e) in self.edges.iter().enumerate() {
            let end = |vertex: Id| {
                index
                    .get(&vertex)
                    .copied()
                    .ok_or(GenomeError::DanglingEdge { edge: e.id, vertex })
            };
            let (from, to) = (end(e.from)?, end(e.to)?);
            if from == to {
                return Err(GenomeError::SelfLoop(e.id));
            }
            if to == input || from == output {
                return Err(GenomeError::TerminalEdge(e.id));
            }
            if let EdgeOp::Conv(c) = e.op {
                let ok = |k: u32| k % 2 == 1 && k <= limits.max_filter;
                if !ok(c.filter_h) || !ok(c.filter_w) {
                    return Err(GenomeError::BadFilter {
                        edge: e.id,
                        h: c.filter_h,
                        w: c.filter_w,
                        max: limits.max_filter,
                    });
                }
                if !c.stride.is_power_of_two() || c.stride > limits.max_stride {
                    return Err(GenomeError::BadStride {
                        edge: e.id,
                        stride: c.stride,
                        max: limits.max_stride,
                    });
                }
                if c.channels == 0 || c.channels > limits.max_channels {
                    return Err(GenomeError::BadChannels {
                        what: format!("edge {}", e.id),
                        channels: c.channels,
                        max: limits.max_channels,
                    });
                }
            }
            if e.primary {
                primary_count[to] += 1;
                primary[to] = Some(k);
            }
            ends.push((from, to));
            incoming[to].push(k);
            outgoing[from].push(k);
        }
        // Exactly one primary input per non-input vertex.
        for (i, v) in self.vertices.iter().enumerate() {
            if i != input && primary_count[i] != 1 {
                return Err(GenomeError::PrimaryCount {
                    vertex: v.id,
                    count: primary_count[i],
                });
            }
        }

        // Topological order (Kahn's algorithm), which also finds cycles.
        let mut indegree: Vec<usize> = incoming.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for &k in &outgoing[i] {
                let to = ends[k].1;
                indegree[to] -= 1;
                if indegree[to] == 0 {
                    ready.push(to);
                }
            }
        }
        if order.len() < n {
            let stuck = (0..n).find(|&i| indegree[i] > 0).unwrap_or(0);
            return Err(GenomeError::Cycle(self.vertices[stuck].id));
        }

        // Every vertex is reachable from the input and leads to the output.
        let reach = |start: usize, forward: bool| {
            let mut seen = vec![false; n];
            seen[start] = true;
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                let next = if forward { &outgoing[i] } else { &incoming[i] };
                for &k in next {
                    let j = if forward { ends[k].1 } else { ends[k].0 };
                    if !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            seen
        };
        let from_input = reach(input, true);
        let to_output = reach(output, false);
        for (i, v) in self.vertices.iter().enumerate() {
            if !from_input[i] {
                return Err(GenomeError::Unreachable(v.id));
            }
            if !to_output[i] {
                return Err(GenomeError::Dangling(v.id));
            }
        }

        // Shapes, in topological order: every edge into a vertex starts earlier.
        let mut shapes: Vec<Shape> = vec![Shape { h: 0, w: 0, c: 0 }; n];
        let mut edge_shape: Vec<Shape> = vec![Shape { h: 0, w: 0, c: 0 }; self.edges.len()];
        shapes[input] = Shape {
            h: self.input.height,
            w: self.input.width,
            c: self.input.channels,
        };
        for &i in order.iter().filter(|&&i| i != input) {
            for &k in &incoming[i] {
                let e = &self.edges[k];
                let src = shapes[ends[k].0];
                edge_shape[k] = match e.op {
                    EdgeOp::Identity => src,
                    EdgeOp::Conv(c) => {
                        if c.stride > 1 && (c.stride > src.h || c.stride > src.w) {
                            return Err(GenomeError::BadStride {
                                edge: e.id,
                                stride: c.stride,
                                max: src.h.min(src.w),
                            });
                        }
                        Shape {
                            h: strided_side(src.h, c.stride),
                            w: strided_side(src.w, c.stride),
                            c: c.channels,
                        }
                    }
                };
            }
            let k = primary[i].expect("checked above");
            shapes[i] = edge_shape[k];
        }

        let vertex_shapes: BTreeMap<Id, Shape> = self
            .vertices
            .iter()
            .zip(&shapes)
            .map(|(v, s)| (v.id, *s))
            .collect();
        let edge_shapes: BTreeMap<Id, Shape> = self
            .edges
            .iter()
            .zip(&edge_shape)
            .map(|(e, s)| (e.id, *s))
            .collect();
        let cost = Cost::of(self, &vertex_shapes, &edge_shapes);
        check_count(
            "forward FLOPs per image",
            cost.forward_flops,
            limits.max_flops,
        )?;
        check_count("parameters", cost.params, limits.max_params)?;
        Ok(Analysis {
            order: order.iter().map(|&i| self.vertices[i].id).collect(),
            vertex_shapes,
            edge_shapes,
            cost,
        })
    }

    /// Validates against the default limits.
    pub fn validate(&self) -> Result<Analysis, GenomeError> {
        self.analyze(&Limits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Conv, Edge, InputShape, Vertex};

    fn conv(stride: u32, channels: u32) -> EdgeOp {
        EdgeOp::Conv(Conv {
            filter_h: 3,
            filter_w: 3,
            stride,
            channels,
        })
    }

    /// input(0) -conv s2 16-> v1 -conv s1 8-> out(2), with skips input->v1 and input->out.
    fn skip_net() -> Genome {
        let v = |id, kind| Vertex { id, kind };
        let e = |id, from, to, primary, op| Edge {
            id,
            from,
            to,
            primary,
            op,
        };
        Genome {
            input: InputShape::CIFAR,
            classes: 10,
            learning_rate: 0.1,
            augment: None,
            input_vertex: 0,
            output_vertex: 2,
            vertices: vec![
                v(0, VertexKind::Linear),
                v(1, VertexKind::BnRelu),
                v(2, VertexKind::Linear),
            ],
            edges: vec![
                e(3, 0, 1, true, conv(2, 16)),
                e(4, 1, 2, true, conv(1, 8)),
                e(5, 0, 1, false, EdgeOp::Identity),
                e(6, 0, 2, false, conv(4, 32)),
            ],
            next_id: 7,
        }
    }

    #[test]
    fn initial_individual_is_a_linear_classifier() {
        let g = Genome::initial(InputShape::CIFAR, 10);
        let a = g.validate().unwrap();
        assert_eq!(a.output_shape(&g), Shape { h: 32, w: 32, c: 3 });
        assert_eq!(a.cost.params, 3072 * 10 + 10);
        assert_eq!(a.cost.forward_flops, 2 * 3072 * 10);
        assert_eq!(g.conv_count(), 0);
        assert_eq!(g.learning_rate, 0.1);
    }

    #[test]
    fn primary_edge_decides_the_shape_where_edges_meet() {
        let g = skip_net();
        let a = g.validate().unwrap();
        assert_eq!(
            a.vertex_shapes[&1],
            Shape {
                h: 16,
                w: 16,
                c: 16
            }
        );
        assert_eq!(a.vertex_shapes[&2], Shape { h: 16, w: 16, c: 8 });
        // Skips keep their own shapes until reconciled.
        assert_eq!(a.edge_shapes[&5], Shape { h: 32, w: 32, c: 3 });
        assert_eq!(a.edge_shapes[&6], Shape { h: 8, w: 8, c: 32 });
        assert_eq!(a.order, vec![0, 1, 2]);
    }

    #[test]
    fn costs_follow_the_formula() {
        let g = skip_net();
        let a = g.validate().unwrap();
        let conv3 = 3 * 16 * 9;
        let conv4 = 16 * 8 * 9;
        let conv6 = 3 * 32 * 9;
        let head = 16 * 16 * 8 * 10;
        assert_eq!(a.cost.params, conv3 + conv4 + conv6 + 2 * 16 + head + 10);
        assert_eq!(
            a.cost.forward_flops,
            2 * conv3 * 256 + 2 * conv4 * 256 + 2 * conv6 * 64 + 2 * head
        );
    }

    #[test]
    fn same_padding_rounds_up() {
        let mut g = skip_net();
        g.input.height = 31;
        g.input.width = 7;
        let a = g.validate().unwrap();
        assert_eq!(a.vertex_shapes[&1], Shape { h: 16, w: 4, c: 16 });
    }

    #[test]
    fn rejects_cycles() {
        let mut g = skip_net();
        // v1 -> v1 through a second vertex: out cannot have outgoing edges, so make
        // a cycle between v1 and a new vertex 7.
        g.vertices.push(Vertex {
            id: 7,
            kind: VertexKind::Linear,
        });
        g.edges.push(Edge {
            id: 8,
            from: 1,
            to: 7,
            primary: true,
            op: EdgeOp::Identity,
        });
        g.edges.push(Edge {
            id: 9,
            from: 7,
            to: 1,
            primary: false,
            op: EdgeOp::Identity,
        });
        g.next_id = 10;
        assert!(matches!(g.validate(), Err(GenomeError::Cycle(_))));
    }

    #[test]
    fn rejects_dangling_and_unreachable_vertices() {
        let mut g = skip_net();
        g.vertices.push(Vertex {
            id: 7,
            kind: VertexKind::Linear,
        });
        g.edges.push(Edge {
            id: 8,
            from: 1,
            to: 7,
            primary: true,
            op: EdgeOp::Identity,
        });
        g.next_id = 9;
        assert_eq!(g.validate(), Err(GenomeError::Dangling(7)));

        let mut g = skip_net();
        g.edges.retain(|e| e.id != 3 && e.id != 5);
        g.edges.iter_mut().for_each(|e| {
            if e.id == 6 {
                e.to = 2
            }
        });
        assert!(matches!(
            g.validate(),
            Err(GenomeError::PrimaryCount {
                vertex: 1,
                count: 0
            })
        ));
    }

    #[test]
    fn rejects_bad_values() {
        let set = |f: fn(&mut Conv)| {
            let mut g = skip_net();
            if let EdgeOp::Conv(c) = &mut g.edges[0].op {
                f(c)
            }
            g.validate()
        };
        assert!(matches!(
            set(|c| c.filter_h = 2),
            Err(GenomeError::BadFilter { .. })
        ));
        assert!(matches!(
            set(|c| c.filter_w = 0),
            Err(GenomeError::BadFilter { .. })
        ));
        assert!(matches!(
            set(|c| c.stride = 3),
            Err(GenomeError::BadStride { .. })
        ));
        assert!(matches!(
            set(|c| c.stride = 64),
            Err(GenomeError::BadStride { .. })
        ));
        assert!(matches!(
            set(|c| c.channels = 0),
            Err(GenomeError::BadChannels { .. })
        ));
        assert!(matches!(
            set(|c| c.channels = u32::MAX),
            Err(GenomeError::BadChannels { .. })
        ));
        let mut g = skip_net();
        g.learning_rate = f64::NAN;
        assert!(matches!(
            g.validate(),
            Err(GenomeError::BadLearningRate { .. })
        ));
        let mut g = skip_net();
        g.next_id = 6;
        assert!(matches!(
            g.validate(),
            Err(GenomeError::IdNotBelowNext { .. })
        ));
        let mut g = skip_net();
        g.edges[1].id = 3;
        assert!(matches!(g.validate(), Err(GenomeError::DuplicateId { .. })));
        let mut g = skip_net();
        g.edges[1].to = 99;
        assert!(matches!(
            g.validate(),
            Err(GenomeError::DanglingEdge { .. })
        ));
        let mut g = skip_net();
        g.edges.push(Edge {
            id: 0,
            from: 2,
            to: 1,
            primary: false,
            op: EdgeOp::Identity,
        });
        assert!(matches!(g.validate(), Err(GenomeError::TerminalEdge(0))));
    }

    #[test]
    fn stride_cannot_exceed_the_input_side() {
        let mut g = skip_net();
        g.input.height = 2;
        g.input.width = 2;
        // Edge 6 has stride 4 on a 2x2 input.
        assert!(matches!(
            g.validate(),
            Err(GenomeError::BadStride { edge: 6, .. })
        ));
    }

    #[test]
    fn limits_bound_flops_and_sizes() {
        let g = skip_net();
        let limits = Limits {
            max_flops: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            g.analyze(&limits),
            Err(GenomeError::TooLarge { .. })
        ));
        let limits = Limits {
            max_vertices: 2,
            ..Limits::default()
        };
        assert!(matches!(
            g.analyze(&limits),
            Err(GenomeError::TooLarge { .. })
        ));
    }
}
