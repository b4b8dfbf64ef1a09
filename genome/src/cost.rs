//! What an individual costs: trainable parameters, forward FLOPs per image, and the
//! paper's accounting of a whole individual (training FLOPs per step times steps, plus
//! validation FLOPs).

use crate::graph::{EdgeOp, Genome, Id, VertexKind};
use crate::shape::Shape;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Size and compute of one genome's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Trainable parameters: convolution kernels, batch-norm scales and shifts, the head.
    pub params: u64,
    /// Forward FLOPs for one image: 2*Cin*Cout*kh*kw*Hout*Wout per convolution, plus
    /// 2*features*classes for the head (multiply-adds count as two).
    pub forward_flops: u64,
}

impl Cost {
    /// Computes the cost from inferred shapes.
    pub(crate) fn of(
        genome: &Genome,
        vertex_shapes: &BTreeMap<Id, Shape>,
        edge_shapes: &BTreeMap<Id, Shape>,
    ) -> Cost {
        let mut params = 0u64;
        let mut flops = 0u64;
        for e in &genome.edges {
            if let EdgeOp::Conv(c) = e.op {
                let cin = vertex_shapes[&e.from].c as u64;
                let out = edge_shapes[&e.id];
                let kernel = cin * c.channels as u64 * c.filter_h as u64 * c.filter_w as u64;
                params = params.saturating_add(kernel);
                flops = flops.saturating_add(
                    2u64.saturating_mul(kernel)
                        .saturating_mul(out.h as u64 * out.w as u64),
                );
            }
        }
        for v in &genome.vertices {
            if v.kind == VertexKind::BnRelu && v.id != genome.input_vertex {
                params = params.saturating_add(2 * vertex_shapes[&v.id].c as u64);
            }
        }
        let features = vertex_shapes[&genome.output_vertex].numel();
        let classes = genome.classes as u64;
        params = params.saturating_add(features.saturating_mul(classes) + classes);
        flops = flops.saturating_add(2u64.saturating_mul(features).saturating_mul(classes));
        Cost {
            params,
            forward_flops: flops,
        }
    }
}

/// The paper's cost of one individual: what training and validating it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingCost {
    /// FLOPs of one training step: forward and backward (3x forward) over a batch.
    pub flops_per_step: u64,
    /// Training FLOPs: per step times steps.
    pub training_flops: u64,
    /// Validation FLOPs: one forward pass over the validation images.
    pub validation_flops: u64,
}

impl TrainingCost {
    /// The cost of training `steps` steps of batch `batch` and validating on
    /// `validation_images` images, for a network of `forward_flops` per image.
    pub fn new(forward_flops: u64, batch: u64, steps: u64, validation_images: u64) -> Self {
        let flops_per_step = 3u64.saturating_mul(forward_flops).saturating_mul(batch);
        TrainingCost {
            flops_per_step,
            training_flops: flops_per_step.saturating_mul(steps),
            validation_flops: forward_flops.saturating_mul(validation_images),
        }
    }

    /// Training plus validation FLOPs.
    pub fn total(&self) -> u64 {
        self.training_flops.saturating_add(self.validation_flops)
    }
}
