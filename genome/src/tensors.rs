//! Weight identity: every trainable tensor of a genome's network has a stable name
//! derived from the id of the edge or vertex that owns it, so a child inherits exactly the
//! parent tensors whose name and shape still match.

use crate::analysis::Analysis;
use crate::graph::{EdgeOp, Genome, Id, VertexKind};
use serde::{Deserialize, Serialize};

/// What a tensor is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorRole {
    /// A convolution kernel, `[c_out, c_in, filter_h, filter_w]`.
    ConvKernel,
    /// Batch-norm scale (gamma), `[c]`.
    BnScale,
    /// Batch-norm shift (beta), `[c]`.
    BnShift,
    /// Batch-norm running mean, `[c]`; not trained by gradient.
    BnRunningMean,
    /// Batch-norm running variance, `[c]`; not trained by gradient.
    BnRunningVar,
    /// The head's weight matrix, `[classes, features]`.
    HeadWeight,
    /// The head's bias, `[classes]`.
    HeadBias,
}

/// One named tensor of a genome's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Stable name, e.g. `conv.e7.weight` or `bn.v4.running_mean`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// What it is for.
    pub role: TensorRole,
}

/// The name prefix of the convolution on edge `id` (`conv.e{id}`).
pub fn conv_prefix(id: Id) -> String {
    format!("conv.e{id}")
}

/// The name prefix of the batch norm of vertex `id` (`bn.v{id}`).
pub fn bn_prefix(id: Id) -> String {
    format!("bn.v{id}")
}

/// The name prefix of the classifier head.
pub const HEAD_PREFIX: &str = "head";

/// Names of the tensors owned by vertex `id`'s batch norm.
pub fn bn_tensor_names(id: Id) -> Vec<String> {
    let p = bn_prefix(id);
    ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .map(|s| format!("{p}.{s}"))
        .collect()
}

/// Name of the kernel of the convolution on edge `id`.
pub fn conv_kernel_name(id: Id) -> String {
    format!("{}.weight", conv_prefix(id))
}

impl Genome {
    /// Every tensor of this genome's network, in a stable order (convolutions by edge,
    /// batch norms by vertex, then the head).
    pub fn tensors(&self, analysis: &Analysis) -> Vec<TensorSpec> {
        let mut out = Vec::new();
        for e in &self.edges {
            if let EdgeOp::Conv(c) = e.op {
                let cin = analysis.vertex_shapes[&e.from].c as usize;
                out.push(TensorSpec {
                    name: conv_kernel_name(e.id),
                    shape: vec![
                        c.channels as usize,
                        cin,
                        c.filter_h as usize,
                        c.filter_w as usize,
                    ],
                    role: TensorRole::ConvKernel,
                });
            }
        }
        for v in &self.vertices {
            if v.kind == VertexKind::BnRelu && v.id != self.input_vertex {
                let c = analysis.vertex_shapes[&v.id].c as usize;
                let roles = [
                    TensorRole::BnScale,
                    TensorRole::BnShift,
                    TensorRole::BnRunningMean,
                    TensorRole::BnRunningVar,
                ];
                for (name, role) in bn_tensor_names(v.id).into_iter().zip(roles) {
                    out.push(TensorSpec {
                        name,
                        shape: vec![c],
                        role,
                    });
                }
            }
        }
        let features = analysis.output_shape(self).numel() as usize;
        out.push(TensorSpec {
            name: format!("{HEAD_PREFIX}.weight"),
            shape: vec![self.classes as usize, features],
            role: TensorRole::HeadWeight,
        });
        out.push(TensorSpec {
            name: format!("{HEAD_PREFIX}.bias"),
            shape: vec![self.classes as usize],
            role: TensorRole::HeadBias,
        });
        out
    }
}
