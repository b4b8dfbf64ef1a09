//! The ways a genome can be invalid.

use crate::graph::Id;
use thiserror::Error;

/// Why a genome was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GenomeError {
    /// Two vertices, or two edges, share an id.
    #[error("duplicate {what} id {id}")]
    DuplicateId {
        /// "vertex" or "edge".
        what: &'static str,
        /// The repeated id.
        id: Id,
    },
    /// An id is not below `next_id`, so a fresh id could collide with it.
    #[error("id {id} is not below next_id {next_id}")]
    IdNotBelowNext {
        /// The offending id.
        id: Id,
        /// The genome's next fresh id.
        next_id: Id,
    },
    /// The input or output vertex named by the genome does not exist.
    #[error("the {what} vertex {id} does not exist")]
    MissingTerminal {
        /// "input" or "output".
        what: &'static str,
        /// The missing id.
        id: Id,
    },
    /// The input and output are the same vertex.
    #[error("the input and the output are the same vertex {0}")]
    SameTerminal(Id),
    /// The input vertex must be LINEAR (it is the image).
    #[error("the input vertex must be LINEAR")]
    InputNotLinear,
    /// An edge names a vertex that does not exist.
    #[error("edge {edge} refers to missing vertex {vertex}")]
    DanglingEdge {
        /// The edge.
        edge: Id,
        /// The missing vertex.
        vertex: Id,
    },
    /// An edge enters the input vertex or leaves the output vertex.
    #[error("edge {0} enters the input or leaves the output")]
    TerminalEdge(Id),
    /// An edge loops on one vertex.
    #[error("edge {0} is a self-loop")]
    SelfLoop(Id),
    /// The graph has a cycle.
    #[error("the graph has a cycle through vertex {0}")]
    Cycle(Id),
    /// A vertex other than the input has no primary incoming edge, or more than one.
    #[error("vertex {vertex} has {count} primary incoming edges (needs exactly 1)")]
    PrimaryCount {
        /// The vertex.
        vertex: Id,
        /// How many primary edges enter it.
        count: usize,
    },
    /// A vertex cannot be reached from the input.
    #[error("vertex {0} is unreachable from the input")]
    Unreachable(Id),
    /// A vertex does not lead to the output (its activation would be wasted).
    #[error("vertex {0} does not lead to the output")]
    Dangling(Id),
    /// A convolution's filter size is even, zero or too large.
    #[error("edge {edge}: filter {h}x{w} must be odd and at most {max}")]
    BadFilter {
        /// The edge.
        edge: Id,
        /// Filter height.
        h: u32,
        /// Filter width.
        w: u32,
        /// The limit.
        max: u32,
    },
    /// A convolution's stride is not a power of two, too large, or larger than its input.
    #[error("edge {edge}: stride {stride} must be a power of two, at most {max} and at most the input side")]
    BadStride {
        /// The edge.
        edge: Id,
        /// The stride.
        stride: u32,
        /// The limit.
        max: u32,
    },
    /// A channel count is zero or above the limit.
    #[error("{what}: {channels} channels is outside 1..={max}")]
    BadChannels {
        /// What has that many channels.
        what: String,
        /// The count.
        channels: u32,
        /// The limit.
        max: u32,
    },
    /// The input shape or class count is out of range.
    #[error("{what} {value} is outside 1..={max}")]
    BadDimension {
        /// Which dimension.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// The learning rate is not finite or out of range.
    #[error("learning rate {value} is outside {min}..={max}")]
    BadLearningRate {
        /// The rate.
        value: f64,
        /// Lower limit.
        min: f64,
        /// Upper limit.
        max: f64,
    },
    /// Too many vertices or edges, or too many FLOPs or parameters.
    #[error("{what}: {value} exceeds the limit {max}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// The count.
        value: u64,
        /// The limit.
        max: u64,
    },
}
