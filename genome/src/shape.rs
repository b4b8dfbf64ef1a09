//! Shape inference: each vertex's height, width and channels follow from its primary
//! incoming edge; other incoming edges are reconciled to that shape (spatial size by
//! nearest-neighbour resampling, channels by truncation or zero padding) and summed.
//! Convolutions are same-padded: output side = ceil(input side / stride).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The shape of one activation: height x width x channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Height.
    pub h: u32,
    /// Width.
    pub w: u32,
    /// Channels.
    pub c: u32,
}

impl Shape {
    /// Number of values in one activation of this shape.
    pub fn numel(&self) -> u64 {
        self.h as u64 * self.w as u64 * self.c as u64
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// The output side of a same-padded convolution with this stride.
pub fn strided_side(side: u32, stride: u32) -> u32 {
    side.div_ceil(stride)
}

/// For nearest-neighbour resampling from `from` pixels to `to` pixels: the source index
/// of destination index `i` (floor(i * from / to), as PyTorch's `nearest` mode).
pub fn nearest_source_index(i: u32, from: u32, to: u32) -> u32 {
    ((i as u64 * from as u64) / to as u64) as u32
}
