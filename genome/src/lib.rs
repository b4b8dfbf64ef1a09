//! The genome: the DNA of an image classifier, after Real et al., "Large-Scale Evolution
//! of Image Classifiers" (ICML 2017).
//!
//! A genome is a directed acyclic graph whose vertices are activations (LINEAR or
//! BN_RELU) and whose edges are identity connections or convolutions, plus a learning
//! rate. This crate owns the graph ([`graph`]), its validation and shape inference
//! ([`analysis`], [`shape`]), its costs ([`cost`]) and training memory ([`memory`]), the names of its weight tensors
//! ([`tensors`]), the eleven mutations ([`mutation`]), their function-preserving forms
//! ([`morphism`]) and how often each is drawn ([`weights`]), the widening of a whole
//! network for a long training ([`widen`]), serialization ([`codec`]),
//! renderings ([`render`], and SVG pictures in [`draw`]), the benchmark's reference nets ([`reference`]) and long
//! mutation walks ([`walk`]). It knows nothing of tensors libraries or networks.

pub mod analysis;
pub mod codec;
pub mod cost;
pub mod draw;
pub mod error;
pub mod graph;
pub mod limits;
pub mod memory;
pub mod morphism;
pub mod mutation;
pub mod reference;
pub mod render;
pub mod shape;
pub mod tensors;
pub mod walk;
pub mod weights;
pub mod widen;

pub use analysis::Analysis;
pub use codec::CodecError;
pub use cost::{Cost, TrainingCost};
pub use error::GenomeError;
pub use graph::{AugmentGene, Conv, Edge, EdgeOp, Genome, Id, InputShape, Vertex, VertexKind};
pub use limits::Limits;
pub use memory::MemoryEstimate;
pub use morphism::{
    MutationOptions, MutationStyle, StrideTwoPassThrough, TensorInit, PAPER_STRIDE_TWO_SHARE,
};
pub use mutation::{
    apply, apply_with_style, reproduce, reproduce_with_style, Applied, Invalidated, Mutation,
    MutationError, Reproduction,
};
pub use reference::ReferenceNet;
pub use shape::Shape;
pub use tensors::{TensorRole, TensorSpec};
pub use walk::{seeded_rng, walk, SeededRng, WalkReport};
pub use weights::{MutationWeights, WeightsError};
pub use widen::{widen, Widened};
