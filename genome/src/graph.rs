//! The genome itself: a directed acyclic graph of activations (vertices) joined by
//! identity or convolution edges, plus the learning rate.
//!
//! Every non-input vertex has exactly one *primary* incoming edge; following primary
//! edges back from the output vertex walks the *backbone* to the input vertex. Other
//! incoming edges are skips, reconciled to the primary's shape (see [`crate::shape`]).

use serde::{Deserialize, Serialize};

/// Identifier of a vertex or an edge, unique within its kind inside one genome and never
/// reused along a lineage (fresh ids come from [`Genome::next_id`]).
pub type Id = u32;

/// The shape of the images a genome classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Colour channels (3 for RGB, 1 for grey).
    pub channels: u32,
}

impl InputShape {
    /// 32x32 RGB, the CIFAR image shape.
    pub const CIFAR: InputShape = InputShape {
        height: 32,
        width: 32,
        channels: 3,
    };
}

/// What a vertex does to the sum of its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VertexKind {
    /// Nothing: the activation is the sum of the inputs.
    #[serde(rename = "LINEAR")]
    Linear,
    /// Batch normalization, then ReLU, applied to the sum of the inputs.
    #[serde(rename = "BN_RELU")]
    BnRelu,
}

impl VertexKind {
    /// The paper's name of this kind.
    pub fn name(self) -> &'static str {
        match self {
            VertexKind::Linear => "LINEAR",
            VertexKind::BnRelu => "BN_RELU",
        }
    }
}

/// A vertex: one activation (H x W x C) of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// Stable identifier; names the vertex's batch-norm tensors.
    pub id: Id,
    /// What the vertex applies to the sum of its inputs.
    pub kind: VertexKind,
}

/// A same-padded convolution without bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv {
    /// Filter height (odd).
    pub filter_h: u32,
    /// Filter width (odd).
    pub filter_w: u32,
    /// Stride in both directions (a power of two).
    pub stride: u32,
    /// Number of output channels.
    pub channels: u32,
}

impl Conv {
    /// A 3x3 convolution (the paper's insertion) of `stride` and `channels`.
    pub fn three_by_three(stride: u32, channels: u32) -> Conv {
        Conv {
            filter_h: 3,
            filter_w: 3,
            stride,
            channels,
        }
    }
}

/// What an edge does to its source activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EdgeOp {
    /// Passes the source activation through unchanged.
    Identity,
    /// Convolves the source activation.
    Conv(Conv),
}

impl EdgeOp {
    /// The convolution, if this is one.
    pub fn conv(&self) -> Option<&Conv> {
        match self {
            EdgeOp::Conv(c) => Some(c),
            EdgeOp::Identity => None,
        }
    }
}

/// A directed edge from one vertex to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Stable identifier; names the edge's convolution kernel.
    pub id: Id,
    /// Source vertex id.
    pub from: Id,
    /// Target vertex id.
    pub to: Id,
    /// Whether this edge is its target's primary (backbone) input, which decides the
    /// target's shape.
    pub primary: bool,
    /// What the edge computes.
    pub op: EdgeOp,
}

/// How an individual's training images are augmented, when evolution decides it (beyond
/// the paper): ALTER-AUGMENTATION turns one of the two on or off, and the child inherits
/// the rest, as it inherits the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AugmentGene {
    /// Random crops after padding (the padding the experiment's config gives).
    pub crop: bool,
    /// Random horizontal flips.
    pub flip: bool,
}

/// The DNA of an image classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Genome {
    /// The images this genome classifies.
    pub input: InputShape,
    /// Number of classes: outputs of the fully connected head.
    pub classes: u32,
    /// SGD learning rate used to train this individual.
    pub learning_rate: f64,
    /// How its training images are augmented, when evolution decides it (`None`, the
    /// paper's way: as the experiment's config says).
    #[serde(default)]
    pub augment: Option<AugmentGene>,
    /// Id of the vertex that holds the image.
    pub input_vertex: Id,
    /// Id of the vertex that feeds the classifier head.
    pub output_vertex: Id,
    /// All vertices, input and output included.
    pub vertices: Vec<Vertex>,
    /// All edges.
    pub edges: Vec<Edge>,
    /// The next fresh id; larger than every id in use.
    pub next_id: Id,
}

/// The learning rate of the paper's initial individuals.
pub const INITIAL_LEARNING_RATE: f64 = 0.1;

impl Genome {
    /// The paper's initial individual: the input vertex straight to the head (a linear
    /// classifier on pixels), learning rate 0.1.
    pub fn initial(input: InputShape, classes: u32) -> Genome {
        Genome {
            input,
            classes,
            learning_rate: INITIAL_LEARNING_RATE,
            augment: None,
            input_vertex: 0,
            output_vertex: 1,
            vertices: vec![
                Vertex {
                    id: 0,
                    kind: VertexKind::Linear,
                },
                Vertex {
                    id: 1,
                    kind: VertexKind::Linear,
                },
            ],
            edges: vec![Edge {
                id: 2,
                from: 0,
                to: 1,
                primary: true,
                op: EdgeOp::Identity,
            }],
            next_id: 3,
        }
    }

    /// Takes a fresh id.
    pub(crate) fn fresh_id(&mut self) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds a vertex of `kind` fed by a new primary edge with `op` from `from`; returns
    /// the vertex's id and the edge's. Nothing consumes the vertex yet.
    pub(crate) fn grow_from(&mut self, from: Id, kind: VertexKind, op: EdgeOp) -> (Id, Id) {
        let w = self.fresh_id();
        let edge = self.fresh_id();
        self.vertices.push(Vertex { id: w, kind });
        self.edges.push(Edge {
            id: edge,
            from,
            to: w,
            primary: true,
            op,
        });
        (w, edge)
    }

    /// Splits edge `chosen` (u->v) with a new vertex w of `kind`: u->w is a new primary
    /// edge with `op`, and w->v is the old edge, keeping its id (and so its weights).
    /// Returns w and the new edge's id.
    pub(crate) fn split_edge(&mut self, chosen: Id, kind: VertexKind, op: EdgeOp) -> (Id, Id) {
        let Some(from) = self.edge(chosen).map(|e| e.from) else {
            unreachable!("edge {chosen} was chosen among the edges");
        };
        let (w, edge) = self.grow_from(from, kind, op);
        if let Some(e) = self.edges.iter_mut().find(|e| e.id == chosen) {
            e.from = w;
        }
        (w, edge)
    }

    /// The vertex with this id.
    pub fn vertex(&self, id: Id) -> Option<&Vertex> {
        self.vertices.iter().find(|v| v.id == id)
    }

    /// The edge with this id.
    pub fn edge(&self, id: Id) -> Option<&Edge> {
        self.edges.iter().find(|e| e.id == id)
    }

    /// The edges entering vertex `id`.
    pub fn incoming(&self, id: Id) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == id)
    }

    /// The edges leaving vertex `id`.
    pub fn outgoing(&self, id: Id) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == id)
    }

    /// The primary incoming edge of vertex `id`, if any.
    pub fn primary_in(&self, id: Id) -> Option<&Edge> {
        self.incoming(id).find(|e| e.primary)
    }

    /// The backbone's vertices from input to output, following primary edges back from
    /// the output. Stops (returning what it has) on a vertex without a primary input or
    /// after as many hops as there are vertices, so it is safe on invalid genomes.
    pub fn backbone(&self) -> Vec<Id> {
        self.backbone_path().into_iter().map(|(v, _)| v).collect()
    }

    /// The ids of the primary edges on the backbone, from input to output.
    pub fn backbone_edges(&self) -> Vec<Id> {
        self.backbone_path()
            .into_iter()
            .filter_map(|(_, e)| e)
            .collect()
    }

    /// Backbone vertices with the primary edge entering each (none for the first).
    fn backbone_path(&self) -> Vec<(Id, Option<Id>)> {
        let primary: std::collections::HashMap<Id, &Edge> = self
            .edges
            .iter()
            .filter(|e| e.primary)
            .map(|e| (e.to, e))
            .collect();
        let mut path = Vec::new();
        let mut at = self.output_vertex;
        loop {
            let entering = primary.get(&at).filter(|_| at != self.input_vertex);
            path.push((at, entering.map(|e| e.id)));
            match entering {
                Some(e) if path.len() <= self.vertices.len() => at = e.from,
                _ => break,
            }
        }
        path.reverse();
        if let Some(first) = path.first_mut() {
            first.1 = None;
        }
        path
    }

    /// Number of convolution edges.
    pub fn conv_count(&self) -> usize {
        self.edges.iter().filter(|e| e.op.conv().is_some()).count()
    }
}
