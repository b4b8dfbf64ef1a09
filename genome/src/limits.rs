//! Caps that bound a genome's size and cost, so that one received from a stranger can
//! neither exhaust memory nor take forever to train.

use serde::{Deserialize, Serialize};

/// Limits a valid genome stays within. Every field is configurable; the defaults are
/// generous for CIFAR-sized images yet keep one individual trainable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most vertices, input and output included.
    pub max_vertices: usize,
    /// Most edges.
    pub max_edges: usize,
    /// Most channels of any activation or convolution.
    pub max_channels: u32,
    /// Largest filter height or width.
    pub max_filter: u32,
    /// Largest stride.
    pub max_stride: u32,
    /// Largest input height or width.
    pub max_image_side: u32,
    /// Most input channels.
    pub max_input_channels: u32,
    /// Most classes.
    pub max_classes: u32,
    /// Most forward FLOPs for one image.
    pub max_flops: u64,
    /// Most trainable parameters.
    pub max_params: u64,
    /// Smallest learning rate.
    pub min_learning_rate: f64,
    /// Largest learning rate.
    pub max_learning_rate: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vertices: 128,
            max_edges: 512,
            max_channels: 2048,
            max_filter: 15,
            max_stride: 32,
            max_image_side: 1024,
            max_input_channels: 16,
            max_classes: 10_000,
            max_flops: 20_000_000_000,
            max_params: 100_000_000,
            min_learning_rate: 1e-6,
            max_learning_rate: 10.0,
        }
    }
}
