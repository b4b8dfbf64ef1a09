//! The reference networks of the PyTorch speed benchmark (`torch_reference.py`), built as
//! genomes: a chain of 3x3 convolutions, each followed by batch norm and ReLU, then the
//! fully connected head.

use crate::graph::{Conv, EdgeOp, Genome, InputShape, Vertex, VertexKind};
use std::str::FromStr;
use thiserror::Error;

/// The learning rate the reference script trains with.
pub const REFERENCE_LEARNING_RATE: f64 = 0.05;

/// One of the reference networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceNet {
    /// No convolution: a linear classifier on the pixels.
    Linear,
    /// 16 s1, 32 s2, 64 s2.
    Small,
    /// 64 s1, 64 s1, 128 s2, 128 s1, 256 s2, 256 s1.
    Mid,
    /// 128 s1, 128 s1, 256 s2, 256 s1, 256 s1, 384 s2, 384 s1, 384 s1.
    Large,
}

/// A reference net name that is not one of the four.
#[derive(Debug, Clone, Error)]
#[error("unknown reference net {0:?} (expected linear, small, mid or large)")]
pub struct UnknownNet(pub String);

impl FromStr for ReferenceNet {
    type Err = UnknownNet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linear" => Ok(ReferenceNet::Linear),
            "small" => Ok(ReferenceNet::Small),
            "mid" => Ok(ReferenceNet::Mid),
            "large" => Ok(ReferenceNet::Large),
            _ => Err(UnknownNet(s.to_string())),
        }
    }
}

impl ReferenceNet {
    /// The name the reference script uses.
    pub fn name(self) -> &'static str {
        match self {
            ReferenceNet::Linear => "linear",
            ReferenceNet::Small => "small",
            ReferenceNet::Mid => "mid",
            ReferenceNet::Large => "large",
        }
    }

    /// The (channels, stride) of each convolution.
    pub fn layers(self) -> &'static [(u32, u32)] {
        match self {
            ReferenceNet::Linear => &[],
            ReferenceNet::Small => &[(16, 1), (32, 2), (64, 2)],
            ReferenceNet::Mid => &[(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)],
            ReferenceNet::Large => &[
                (128, 1),
                (128, 1),
                (256, 2),
                (256, 1),
                (256, 1),
                (384, 2),
                (384, 1),
                (384, 1),
            ],
        }
    }

    /// The network as a genome for `input` images and `classes` classes, learning rate
    /// 0.05 as in the reference script.
    pub fn genome(self, input: InputShape, classes: u32) -> Genome {
        let layers = self.layers();
        if layers.is_empty() {
            let mut g = Genome::initial(input, classes);
            g.learning_rate = REFERENCE_LEARNING_RATE;
            return g;
        }
        let mut g = Genome {
            input,
            classes,
            learning_rate: REFERENCE_LEARNING_RATE,
            augment: None,
            input_vertex: 0,
            output_vertex: 0,
            vertices: vec![Vertex {
                id: 0,
                kind: VertexKind::Linear,
            }],
            edges: Vec::new(),
            next_id: 1,
        };
        let mut prev = 0;
        for &(channels, stride) in layers {
            let op = EdgeOp::Conv(Conv::three_by_three(stride, channels));
            (prev, _) = g.grow_from(prev, VertexKind::BnRelu, op);
        }
        g.output_vertex = prev;
        g
    }
}
