//! Network morphisms (beyond the paper; Net2Net, Chen et al. 2016; NASH, Elsken et al.
//! 2017): how a function-preserving mutation tells the trainer to initialize the tensors
//! it changed so that the child computes exactly what its parent computed (in evaluation
//! mode, before any training), and the rule that says where a vertex may change its
//! channel layout without changing the function.
//!
//! The genome only describes the initialization ([`TensorInit`]); the trainer carries it
//! out on the parent's tensors.

use crate::analysis::Analysis;
use crate::graph::{Genome, Id, VertexKind};
use crate::tensors::{bn_tensor_names, conv_kernel_name};
use serde::{Deserialize, Serialize};

/// How mutations treat what the parent learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MutationStyle {
    /// The paper's: new tensors start fresh, whatever that does to the function.
    #[default]
    Paper,
    /// Network morphisms where a mutation allows one: an inserted convolution or vertex
    /// starts as the identity, a widened convolution's new channels start unused, a
    /// grown filter keeps its values in the centre; the child computes its parent's
    /// function. Mutations with no such form (ALTER-STRIDE, REMOVE-*, RESET-WEIGHTS,
    /// ADD-SKIP, shrinking) stay as the paper has them.
    PreserveFunction,
}

/// What a function-preserving stride-2 insertion passes on from each window of its input
/// (beyond the paper, which has no such insertion): the resolution halves, so no form keeps
/// the function exactly; the head is resampled to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrideTwoPassThrough {
    /// The window's centre pixel: every other row and column, the others dropped.
    #[default]
    Sample,
    /// The mean of the 2x2 block the window's centre starts (the centre, the pixel right
    /// of it, the one below and the one diagonally below): every pixel counts, and where
    /// the head weighs a block's pixels alike the logits stay exactly the same.
    Average,
}

/// How mutations are carried out: their style, and (beyond the paper, in the
/// function-preserving style only) the fewest channels an inserted convolution gets, the
/// width of a stride-2 insertion and how an inserted vertex's kind is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MutationOptions {
    /// The paper's mutations or their function-preserving forms.
    pub style: MutationStyle,
    /// With [`MutationStyle::PreserveFunction`]: an inserted convolution has at least
    /// this many channels where the insertion can widen exactly (its first channels pass
    /// the input on, the others start fresh and unused). 0: no floor, the width follows
    /// the input's channels alone.
    pub min_insert_channels: u32,
    /// With [`MutationStyle::PreserveFunction`]: an inserted vertex (INSERT-CONVOLUTION,
    /// INSERT-ONE-TO-ONE) is BN_RELU wherever its function-preserving form allows one
    /// (a non-negative input, or room to split the channels), LINEAR only where it does
    /// not. `false` (the paper): BN_RELU or LINEAR at random, and a LINEAR vertex
    /// between two convolutions composes them into one linear map, adding cost but no
    /// depth.
    pub nonlinear_insertions: bool,
    /// With [`MutationStyle::PreserveFunction`]: a stride-2 insertion gets this many
    /// times its input's channels where it can widen exactly (the resolution halves, the
    /// channels multiply; the first pass the input on, the others start fresh and
    /// unused), and at least the floor. 0 or 1: its input's channels, as the paper's.
    pub stride_two_width_factor: u32,
    /// With [`MutationStyle::PreserveFunction`]: what a stride-2 insertion passes on from
    /// each window of its input.
    pub stride_two_pass_through: StrideTwoPassThrough,
    /// With [`MutationStyle::PreserveFunction`]: the probability that an inserted
    /// convolution has stride 2 rather than 1 (the paper draws either alike: 0.5).
    pub stride_two_share: f64,
}

/// The paper's draw of an inserted convolution's stride: 1 or 2 alike.
pub const PAPER_STRIDE_TWO_SHARE: f64 = 0.5;

impl Default for MutationOptions {
    fn default() -> Self {
        MutationStyle::default().into()
    }
}

impl From<MutationStyle> for MutationOptions {
    fn from(style: MutationStyle) -> Self {
        MutationOptions {
            style,
            min_insert_channels: 0,
            nonlinear_insertions: false,
            stride_two_width_factor: 1,
            stride_two_pass_through: StrideTwoPassThrough::Sample,
            stride_two_share: PAPER_STRIDE_TWO_SHARE,
        }
    }
}

/// A special initialization of one of the child's tensors, carried out by the trainer
/// from the parent's tensors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TensorInit {
    /// A new kernel `[c_out, c_in, kh, kw]` that passes its input on: output channel
    /// `i < c_in` is the centred one-hot of input channel `i`; with `split`, output
    /// channels `c_in + i` are minus those, so that a ReLU after it keeps both signs
    /// (`x = relu(x) - relu(-x)`); further output channels are fresh. With `average` (a
    /// stride-2 kernel at least 3x3), output channel `i` is instead the mean of input
    /// channel `i` over the 2x2 block at the centre tap and the taps right of and below
    /// it ([`StrideTwoPassThrough::Average`]).
    PassThrough {
        /// The kernel's name.
        name: String,
        /// Whether the negated copies follow.
        split: bool,
        /// Whether each output is a 2x2 block's mean rather than the centre pixel.
        #[serde(default)]
        average: bool,
    },
    /// A new batch norm that passes its input on in evaluation mode (scale
    /// `sqrt(running_var + eps)`, shift `running_mean`); the trainer measures its
    /// statistics on the first training batch so that it passes it on in training too.
    PassThroughBatchNorm {
        /// The batch norm's name prefix (`bn.v{id}`).
        prefix: String,
    },
    /// The head's weights for an output activation whose height and width changed (a
    /// stride altered or inserted upstream): each new position gets the sum of the
    /// weights of the old positions that map to it by nearest-neighbour resampling, so
    /// that the logits stay nearly the same where neighbouring activations are alike.
    /// Approximate, unlike the others. Channels the output activation gained (a widened
    /// stride-2 insertion) get zero weights.
    Resample {
        /// The tensor's name (`head.weight`).
        name: String,
        /// Channels of the parent's output activation (the child's has as many or more).
        channels: u32,
        /// Its old height and width.
        from: (u32, u32),
        /// Its new height and width.
        to: (u32, u32),
    },
    /// The parent's tensor of the same name, grown: the overlap is copied (a kernel's
    /// filter centred), new output channels (a kernel's rows, a batch norm's entries)
    /// are fresh, new input channels (a kernel's columns, a head's feature blocks) are
    /// zero, or, with `split`, input channels `split..2*split` are the negated copies of
    /// `0..split` (the consumer of a split pass-through), and new filter taps are zero.
    Grow {
        /// The tensor's name.
        name: String,
        /// Input channels of the parent whose negated copies follow them.
        split: Option<u32>,
        /// Features per input channel: the output activation's height x width for the
        /// head, 1 for kernels.
        feature_block: u32,
    },
}

impl TensorInit {
    /// The tensor (or batch-norm prefix) it initializes.
    pub fn name(&self) -> &str {
        match self {
            TensorInit::PassThrough { name, .. }
            | TensorInit::Grow { name, .. }
            | TensorInit::Resample { name, .. } => name,
            TensorInit::PassThroughBatchNorm { prefix } => prefix,
        }
    }
}

/// The vertices whose channel layout changes when vertex `t` (fed by edge `via`) takes
/// more channels (or, with `split`, the split signs of a pass-through), if that can be
/// done with the function unchanged; `None` if it cannot. The change follows `t`'s
/// primary identity edges to the vertices they feed. For each such vertex, every input
/// other than the one that carries the change has at most its channels (it was zero
/// padded, so the new channels get zeros from it; a truncated one would leak new
/// channels in); every edge out is a convolution (whose kernel is grown), a primary
/// identity edge (the change goes on), or, unless `split`, an identity skip into a vertex
/// no wider (truncation keeps the old channels); and with `split` it is LINEAR (a batch
/// norm and ReLU on the split signs would not give them back).
pub fn layout_change(
    g: &Genome,
    analysis: &Analysis,
    t: Id,
    via: Id,
    split: bool,
) -> Option<Vec<Id>> {
    let mut chain = Vec::new();
    let mut next = Some((t, via));
    while let Some((x, carried_by)) = next.take() {
        if chain.contains(&x) {
            return None;
        }
        let c = analysis.vertex_shapes[&x].c;
        let inputs_fit = g
            .incoming(x)
            .filter(|e| e.id != carried_by)
            .all(|e| analysis.edge_shapes[&e.id].c <= c);
        if !inputs_fit || (split && g.vertex(x).map(|v| v.kind) != Some(VertexKind::Linear)) {
            return None;
        }
        for e in g.outgoing(x) {
            match (e.op.conv(), e.primary) {
                (Some(_), _) => {}
                (None, true) => {
                    if next.is_some() {
                        return None;
                    }
                    next = Some((e.to, e.id));
                }
                (None, false) => {
                    if split || analysis.vertex_shapes[&e.to].c > c {
                        return None;
                    }
                }
            }
        }
        chain.push(x);
    }
    Some(chain)
}

/// The [`TensorInit::Grow`] directives of a layout change over `chain` (from
/// [`layout_change`]): each BN_RELU vertex's batch norm (new channels fresh), the kernels
/// of the convolutions out of the chain and the head if the output is in it (new input
/// channels zero, or negated copies for `split`, the parent's channel count then).
pub fn grow_layout(
    g: &Genome,
    analysis: &Analysis,
    chain: &[Id],
    split: Option<u32>,
) -> Vec<TensorInit> {
    let mut inits = Vec::new();
    for &x in chain {
        if g.vertex(x).map(|v| v.kind) == Some(VertexKind::BnRelu) {
            inits.extend(bn_tensor_names(x).into_iter().map(|name| TensorInit::Grow {
                name,
                split: None,
                feature_block: 1,
            }));
        }
        inits.extend(
            g.outgoing(x)
                .filter(|e| e.op.conv().is_some())
                .map(|e| TensorInit::Grow {
                    name: conv_kernel_name(e.id),
                    split,
                    feature_block: 1,
                }),
        );
        if x == g.output_vertex {
            let s = analysis.vertex_shapes[&x];
            inits.push(TensorInit::Grow {
                name: HEAD_WEIGHT.into(),
                split,
                feature_block: s.h * s.w,
            });
        }
    }
    inits
}

/// Doubles the channels of convolution edge `id` of `g` in place where that keeps the
/// function exactly (it is a primary edge, twice its channels are at most
/// `max_channels`, and [`layout_change`] can grow every consumer): the directives that
/// keep the function (its kernel's new output channels fresh, the consumers' new input
/// channels zero, so the new channels start unused), or `None` with `g` unchanged.
/// `analysis` is `g`'s, before the change.
pub fn double_channels(
    g: &mut Genome,
    analysis: &Analysis,
    id: Id,
    max_channels: u32,
) -> Option<Vec<TensorInit>> {
    let edge = g.edge(id)?;
    let channels = edge.op.conv()?.channels;
    if !edge.primary || channels.saturating_mul(2) > max_channels {
        return None;
    }
    let chain = layout_change(g, analysis, edge.to, id, false)?;
    match g.edges.iter_mut().find(|e| e.id == id).map(|e| &mut e.op) {
        Some(crate::graph::EdgeOp::Conv(c)) => c.channels *= 2,
        _ => return None,
    }
    let mut inits = vec![TensorInit::Grow {
        name: conv_kernel_name(id),
        split: None,
        feature_block: 1,
    }];
    inits.extend(grow_layout(g, analysis, &chain, None));
    Some(inits)
}

/// Whether every directive keeps the function exactly (only [`TensorInit::Resample`]
/// approximates it).
pub fn exact(inits: &[TensorInit]) -> bool {
    !inits
        .iter()
        .any(|i| matches!(i, TensorInit::Resample { .. }))
}

/// The name of the head's weight matrix.
pub const HEAD_WEIGHT: &str = "head.weight";

/// The head's [`TensorInit::Resample`] when the output activation's height or width
/// changed from `parent`'s to `child`'s, with the same channels or more (the new ones
/// start unused) (`None` otherwise: the head is inherited as it is, or starts fresh).
pub fn resample_head(g: &Genome, parent: &Analysis, child: &Analysis) -> Option<TensorInit> {
    let (a, b) = (parent.output_shape(g), child.output_shape(g));
    (a.c <= b.c && (a.h, a.w) != (b.h, b.w)).then(|| TensorInit::Resample {
        name: HEAD_WEIGHT.into(),
        channels: a.c,
        from: (a.h, a.w),
        to: (b.h, b.w),
    })
}

/// Whether vertex `v`'s activation is never negative (a ReLU is its last step), so that
/// a batch norm and ReLU set to pass it on give it back exactly.
pub fn non_negative(g: &Genome, v: Id) -> bool {
    g.vertex(v).map(|x| x.kind) == Some(VertexKind::BnRelu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Conv, Edge, EdgeOp, InputShape, Vertex};
    use crate::limits::Limits;

    /// input(3) -conv 8-> a -identity-> out, plus a skip input -> out.
    fn chain_with_skip(skip_conv_channels: Option<u32>) -> Genome {
        let mut g = Genome::initial(InputShape::CIFAR, 10);
        g.vertices.push(Vertex {
            id: 3,
            kind: VertexKind::BnRelu,
        });
        g.edges[0].from = 3;
        g.edges.push(Edge {
            id: 4,
            from: 0,
            to: 3,
            primary: true,
            op: EdgeOp::Conv(Conv {
                filter_h: 3,
                filter_w: 3,
                stride: 1,
                channels: 8,
            }),
        });
        g.next_id = 5;
        if let Some(c) = skip_conv_channels {
            g.edges.push(Edge {
                id: 5,
                from: 0,
                to: 1,
                primary: false,
                op: EdgeOp::Conv(Conv {
                    filter_h: 1,
                    filter_w: 1,
                    stride: 1,
                    channels: c,
                }),
            });
            g.next_id = 6;
        }
        g
    }

    #[test]
    fn a_layout_change_follows_identity_edges_to_the_head() {
        let g = chain_with_skip(None);
        let a = g.analyze(&Limits::default()).unwrap();
        assert_eq!(layout_change(&g, &a, 3, 4, false), Some(vec![3, 1]));
        // The split needs LINEAR vertices: vertex 3 is BN_RELU.
        assert_eq!(layout_change(&g, &a, 3, 4, true), None);
        let inits = grow_layout(&g, &a, &[3, 1], None);
        let names: Vec<&str> = inits.iter().map(|i| i.name()).collect();
        assert!(names.contains(&"bn.v3.weight") && names.contains(&"head.weight"));
        let head = inits.iter().find(|i| i.name() == "head.weight").unwrap();
        assert!(matches!(
            head,
            TensorInit::Grow {
                feature_block: 1024,
                ..
            }
        ));
    }

    #[test]
    fn a_wider_input_that_was_truncated_blocks_the_change() {
        // A skip of 16 channels into an 8-channel output was truncated: growing the
        // output would let its channels 8..16 in.
        let g = chain_with_skip(Some(16));
        let a = g.analyze(&Limits::default()).unwrap();
        assert_eq!(layout_change(&g, &a, 3, 4, false), None);
        // A narrower one was zero padded: fine.
        let g = chain_with_skip(Some(4));
        let a = g.analyze(&Limits::default()).unwrap();
        assert_eq!(layout_change(&g, &a, 3, 4, false), Some(vec![3, 1]));
    }

    #[test]
    fn resampling_the_head_only_for_a_new_output_size() {
        let g = chain_with_skip(None);
        let a = g.analyze(&Limits::default()).unwrap();
        assert_eq!(resample_head(&g, &a, &a), None);
        let mut smaller = g.clone();
        if let EdgeOp::Conv(c) = &mut smaller.edges[1].op {
            c.stride = 2;
        }
        let b = smaller.analyze(&Limits::default()).unwrap();
        assert_eq!(
            resample_head(&smaller, &a, &b),
            Some(TensorInit::Resample {
                name: "head.weight".into(),
                channels: 8,
                from: (32, 32),
                to: (16, 16),
            })
        );
        assert!(!exact(&[resample_head(&smaller, &a, &b).unwrap()]));
        assert!(non_negative(&g, 3) && !non_negative(&g, 0));
    }
}
