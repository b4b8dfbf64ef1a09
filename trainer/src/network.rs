//! A candle network built from a genome: convolutions without bias on conv edges,
//! pass-through identity edges, inputs reconciled to the primary edge's shape exactly as
//! the genome crate infers it (nearest-neighbour resampling, channel truncation or zero
//! padding) and summed, batch norm + ReLU on BN_RELU vertices, and a fully connected
//! head over the flattened output activation.

use crate::error::Result;
use crate::weights::{Inheritance, Weights};
use crate::{ops, profile};
use candle_core::{Device, Tensor, D};
use genome::shape::nearest_source_index;
use genome::tensors::{bn_prefix, conv_kernel_name};
use genome::{Analysis, Genome, Invalidated, Shape, TensorInit, VertexKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Batch-norm epsilon (as PyTorch).
pub const BN_EPS: f64 = 1e-5;
/// Batch-norm running-statistics momentum (as PyTorch).
pub const BN_MOMENTUM: f64 = 0.1;

/// How an edge's output is made to fit its target vertex.
#[derive(Debug)]
struct Reconcile {
    /// Source rows for each target row, when the heights differ.
    rows: Option<Tensor>,
    /// Source columns for each target column, when the widths differ.
    cols: Option<Tensor>,
    /// Channels of the edge's output and of the target.
    channels: (usize, usize),
}

/// One incoming edge of a vertex, ready to run.
#[derive(Debug)]
struct EdgeStep {
    /// Position of the source vertex in the evaluation order.
    from: usize,
    /// The convolution (kernel name, stride), if this is one.
    conv: Option<(String, usize)>,
    /// Set when the edge's output shape differs from the target's.
    reconcile: Option<Reconcile>,
}

/// One non-input vertex, ready to run.
#[derive(Debug)]
struct VertexStep {
    /// Incoming edges, the primary first.
    inputs: Vec<EdgeStep>,
    /// The batch norm's tensor-name prefix, for BN_RELU vertices.
    bn: Option<String>,
}

/// Batch-norm inputs kept by [`Network::run`], by batch-norm prefix.
type KeptInputs = Vec<(String, Tensor)>;

/// A trainable network for one genome.
#[derive(Debug)]
pub struct Network {
    genome: Genome,
    analysis: Analysis,
    weights: Weights,
    steps: Vec<VertexStep>,
    device: Device,
    stock_ops: bool,
    /// Pass-through batch norms whose statistics the first training batch sets.
    calibrate: Vec<String>,
    calibrated: AtomicBool,
}

fn index_tensor(from: u32, to: u32, device: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = (0..to).map(|i| nearest_source_index(i, from, to)).collect();
    Ok(Tensor::from_vec(idx, to as usize, device)?)
}

fn reconcile_plan(from: Shape, to: Shape, device: &Device) -> Result<Option<Reconcile>> {
    if from == to {
        return Ok(None);
    }
    Ok(Some(Reconcile {
        rows: (from.h != to.h)
            .then(|| index_tensor(from.h, to.h, device))
            .transpose()?,
        cols: (from.w != to.w)
            .then(|| index_tensor(from.w, to.w, device))
            .transpose()?,
        channels: (from.c as usize, to.c as usize),
    }))
}

/// Makes `x` fit the target shape: nearest-neighbour rows and columns, then channels
/// truncated or zero padded.
fn reconcile(x: Tensor, r: &Reconcile) -> Result<Tensor> {
    let mut x = x;
    if let Some(rows) = &r.rows {
        x = x.index_select(rows, 2)?;
    }
    if let Some(cols) = &r.cols {
        x = x.index_select(cols, 3)?;
    }
    let (have, want) = r.channels;
    if have > want {
        x = x.narrow(1, 0, want)?;
    } else if have < want {
        x = x.pad_with_zeros(1, 0, want - have)?;
    }
    Ok(x)
}

/// `x` (an activation of shape `from`) made to fit `to` as where edges meet: rows and
/// columns by nearest-neighbour resampling, channels truncated or zero padded.
pub fn reconciled(x: Tensor, from: Shape, to: Shape) -> Result<Tensor> {
    match reconcile_plan(from, to, x.device())? {
        Some(plan) => reconcile(x, &plan),
        None => Ok(x),
    }
}

/// Batch norm and ReLU with candle's stock ops, updating the running statistics in
/// training mode.
fn stock_bn_relu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &candle_core::Var,
    running_var: &candle_core::Var,
    train: bool,
) -> Result<Tensor> {
    let c = x.dim(1)?;
    let (mean, var) = if train {
        let mean = x.mean_keepdim((0, 2, 3))?;
        let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim((0, 2, 3))?;
        let n = (x.elem_count() / c) as f64;
        let unbiased = (var.detach() * (n / (n - 1.0).max(1.0)))?.flatten_all()?;
        let m = BN_MOMENTUM;
        let new_mean =
            ((running_mean.as_tensor() * (1.0 - m))? + (mean.detach().flatten_all()? * m)?)?;
        running_mean.set(&new_mean)?;
        running_var.set(&((running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?)?;
        (mean, var)
    } else {
        (
            running_mean.as_tensor().reshape((1, c, 1, 1))?,
            running_var.as_tensor().reshape((1, c, 1, 1))?,
        )
    };
    let scale = (var + BN_EPS)?
        .sqrt()?
        .recip()?
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?;
    Ok(x.broadcast_sub(&mean)?
        .broadcast_mul(&scale)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?
        .relu()?)
}

impl Network {
    /// Builds the network of `genome` on `device`, inheriting from `parent` every tensor
    /// whose name and shape match and that `invalidated` does not name; the rest is
    /// initialized fresh from `seed`.
    pub fn new(
        genome: &Genome,
        device: &Device,
        parent: Option<&HashMap<String, Tensor>>,
        invalidated: &Invalidated,
        seed: u64,
    ) -> Result<(Network, Inheritance)> {
        Network::with_inits(genome, device, parent, invalidated, &[], seed)
    }

    /// [`Network::new`] for the child of a function-preserving mutation: the tensors
    /// `inits` names are initialized as it says ([`crate::morph`]), and its pass-through
    /// batch norms take their statistics from the first training batch
    /// ([`Network::calibrate`]).
    pub fn with_inits(
        genome: &Genome,
        device: &Device,
        parent: Option<&HashMap<String, Tensor>>,
        invalidated: &Invalidated,
        inits: &[TensorInit],
        seed: u64,
    ) -> Result<(Network, Inheritance)> {
        let analysis = genome.validate()?;
        let specs = genome.tensors(&analysis);
        let (weights, inheritance) =
            Weights::build_with_inits(&specs, device, parent, invalidated, inits, seed)?;
        let calibrate = inits
            .iter()
            .filter_map(|i| match i {
                TensorInit::PassThroughBatchNorm { prefix }
                    if weights.get(&format!("{prefix}.weight")).is_ok() =>
                {
                    Some(prefix.clone())
                }
                _ => None,
            })
            .collect();
        let position: HashMap<u32, usize> = analysis
            .order
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i))
            .collect();
        let mut steps = Vec::with_capacity(analysis.order.len());
        for &v in analysis.order.iter().skip(1) {
            let target = analysis.vertex_shapes[&v];
            let mut edges: Vec<_> = genome.incoming(v).collect();
            edges.sort_by_key(|e| !e.primary);
            let mut inputs = Vec::with_capacity(edges.len());
            for e in edges {
                let conv =
                    e.op.conv()
                        .map(|c| (conv_kernel_name(e.id), c.stride as usize));
                inputs.push(EdgeStep {
                    from: position[&e.from],
                    conv,
                    reconcile: reconcile_plan(analysis.edge_shapes[&e.id], target, device)?,
                });
            }
            let kind = genome.vertex(v).map(|x| x.kind);
            steps.push(VertexStep {
                inputs,
                bn: (kind == Some(VertexKind::BnRelu)).then(|| bn_prefix(v)),
            });
        }
        Ok((
            Network {
                genome: genome.clone(),
                analysis,
                weights,
                steps,
                device: device.clone(),
                stock_ops: false,
                calibrate,
                calibrated: AtomicBool::new(false),
            },
            inheritance,
        ))
    }

    /// Runs convolutions and batch norms with candle's stock ops instead of the fast CPU
    /// ops (a reference for tests, and the "before" of a speed comparison).
    pub fn with_stock_ops(mut self, stock: bool) -> Self {
        self.stock_ops = stock;
        self
    }

    /// The genome this network was built from.
    pub fn genome(&self) -> &Genome {
        &self.genome
    }

    /// The genome's analysis (shapes, costs).
    pub fn analysis(&self) -> &Analysis {
        &self.analysis
    }

    /// The network's tensors.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every activation, in evaluation order, for a batch `x` of shape `[B, C, H, W]`.
    /// In training mode batch norm uses batch statistics and updates its running
    /// statistics; in evaluation mode it uses the running statistics.
    pub fn activations(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        Ok(self.run(x, train, &[])?.0)
    }

    /// Sets each pass-through batch norm (of a function-preserving mutation) from the
    /// statistics of its input on the batch `x`: running mean and variance measured,
    /// scale `sqrt(var + eps)` and shift `mean`, so that it passes its input on in
    /// evaluation mode exactly and in training mode nearly. Only the first call does
    /// anything.
    pub fn calibrate(&self, x: &Tensor) -> Result<()> {
        if self.calibrate.is_empty() || self.calibrated.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let (_, inputs) = self.run(x, false, &self.calibrate)?;
        for (prefix, input) in inputs {
            let c = input.dim(1)?;
            let mean = input.mean_keepdim((0, 2, 3))?;
            let var = input
                .broadcast_sub(&mean)?
                .sqr()?
                .mean_keepdim((0, 2, 3))?
                .reshape(c)?;
            let mean = mean.reshape(c)?;
            self.weights
                .get(&format!("{prefix}.running_mean"))?
                .set(&mean)?;
            self.weights
                .get(&format!("{prefix}.running_var"))?
                .set(&var)?;
            self.weights
                .get(&format!("{prefix}.weight"))?
                .set(&(var + BN_EPS)?.sqrt()?)?;
            self.weights.get(&format!("{prefix}.bias"))?.set(&mean)?;
        }
        Ok(())
    }

    /// Every activation, and the inputs of the batch norms whose prefixes `keep` names.
    fn run(&self, x: &Tensor, train: bool, keep: &[String]) -> Result<(Vec<Tensor>, KeptInputs)> {
        let mut kept = Vec::new();
        let mut acts: Vec<Tensor> = Vec::with_capacity(self.steps.len() + 1);
        acts.push(x.clone());
        for step in &self.steps {
            let mut sum: Option<Tensor> = None;
            for input in &step.inputs {
                let src = &acts[input.from];
                let mut y = match &input.conv {
                    None => src.clone(),
                    Some((name, stride)) => {
                        let _s = profile::scope("op: conv");
                        let kernel = self.weights.get(name)?.as_tensor();
                        if self.stock_ops {
                            ops::stock_conv2d(src, kernel, *stride)?
                        } else {
                            // No gradient is needed for the input image.
                            ops::conv2d(src, kernel, *stride, input.from != 0)?
                        }
                    }
                };
                if let Some(r) = &input.reconcile {
                    let _s = profile::scope("op: reconcile");
                    y = reconcile(y, r)?;
                }
                sum = Some(match sum {
                    None => y,
                    Some(s) => {
                        let _s = profile::scope("op: sum");
                        (s + y)?
                    }
                });
            }
            let mut y = sum.ok_or_else(|| {
                crate::error::TrainError::Mismatch("a vertex has no input".to_string())
            })?;
            if let Some(prefix) = &step.bn {
                if keep.contains(prefix) {
                    kept.push((prefix.clone(), y.clone()));
                }
                let _s = profile::scope("op: bn_relu");
                y = self.batch_norm_relu(&y, prefix, train)?;
            }
            acts.push(y);
        }
        Ok((acts, kept))
    }

    /// The logits `[B, classes]` for a batch `x` of shape `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let acts = self.activations(x, train)?;
        let out = acts.last().expect("the input is always there");
        let flat = out.flatten_from(1)?;
        let w = self.weights.get("head.weight")?.as_tensor();
        let b = self.weights.get("head.bias")?.as_tensor();
        let _s = profile::scope("op: head");
        Ok(flat.matmul(&w.t()?)?.broadcast_add(b)?)
    }

    fn batch_norm_relu(&self, x: &Tensor, prefix: &str, train: bool) -> Result<Tensor> {
        let gamma = self.weights.get(&format!("{prefix}.weight"))?.as_tensor();
        let beta = self.weights.get(&format!("{prefix}.bias"))?.as_tensor();
        let running_mean = self.weights.get(&format!("{prefix}.running_mean"))?;
        let running_var = self.weights.get(&format!("{prefix}.running_var"))?;
        if self.stock_ops {
            return stock_bn_relu(x, gamma, beta, running_mean, running_var, train);
        }
        if !train {
            return Ok(ops::bn_relu_eval(
                x,
                gamma,
                beta,
                running_mean.as_tensor(),
                running_var.as_tensor(),
                BN_EPS,
            )?);
        }
        let (y, mean, var) = ops::bn_relu_train(x, gamma, beta, BN_EPS)?;
        // Running statistics, as PyTorch: momentum 0.1, unbiased batch variance.
        let n = (x.elem_count() / x.dim(1)?) as f64;
        let m = BN_MOMENTUM;
        let unbiased = (var * (n / (n - 1.0).max(1.0)))?;
        running_mean.set(
            &running_mean
                .as_tensor()
                .affine(1.0 - m, 0.0)?
                .add(&(mean * m)?)?,
        )?;
        running_var.set(
            &running_var
                .as_tensor()
                .affine(1.0 - m, 0.0)?
                .add(&(unbiased * m)?)?,
        )?;
        Ok(y)
    }

    /// Predicted class for each image of a batch.
    pub fn predict(&self, x: &Tensor) -> Result<Vec<u32>> {
        Ok(self
            .forward(x, false)?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genome::{reproduce, seeded_rng, Conv, Edge, EdgeOp, InputShape, Limits, Vertex};

    fn random_input(genome: &Genome, batch: usize, seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let s = genome.input;
        let dims = (
            batch,
            s.channels as usize,
            s.height as usize,
            s.width as usize,
        );
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
    }

    /// Walks `steps` mutations on small images so that networks stay cheap.
    fn walked(seed: u64, steps: usize) -> Genome {
        let input = InputShape {
            height: 8,
            width: 8,
            channels: 3,
        };
        let limits = Limits {
            max_channels: 16,
            max_vertices: 12,
            ..Limits::default()
        };
        let mut rng = seeded_rng(seed);
        let mut g = Genome::initial(input, 4);
        for _ in 0..steps {
            g = reproduce(&g, 1, &mut rng, &limits).unwrap().child;
        }
        g
    }

    #[test]
    fn activations_have_the_inferred_shapes_and_random_walks_train() {
        for seed in 0..12 {
            let g = walked(seed, 25);
            let (net, inh) =
                Network::new(&g, &Device::Cpu, None, &Invalidated::none(), seed).unwrap();
            assert_eq!(inh.inherited, 0);
            let x = random_input(&g, 3, seed);
            let acts = net.activations(&x, true).unwrap();
            for (act, v) in acts.iter().zip(&net.analysis().order) {
                let s = net.analysis().vertex_shapes[v];
                assert_eq!(act.dims(), &[3, s.c as usize, s.h as usize, s.w as usize]);
            }
            // A few SGD steps run and change the weights.
            let before = net.weights().snapshot().unwrap();
            let mut sgd = crate::optim::Sgd::new(Default::default());
            let y = Tensor::new(&[0u32, 1, 3], &Device::Cpu).unwrap();
            for _ in 0..3 {
                let logits = net.forward(&x, true).unwrap();
                assert_eq!(logits.dims(), &[3, 4]);
                let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
                let grads = loss.backward().unwrap();
                sgd.step(net.weights(), &grads, 0.01).unwrap();
            }
            let after = net.weights().snapshot().unwrap();
            let w0 = before["head.weight"].to_vec2::<f32>().unwrap();
            let w1 = after["head.weight"].to_vec2::<f32>().unwrap();
            assert_ne!(w0, w1);
        }
    }

    /// input 1x4x4 -> conv 1x1 s2 (2 channels, kernel = [1, 2]) -> out (LINEAR),
    /// plus an identity skip input -> out: reconciled by nearest resampling to 2x2 and
    /// zero padding from 1 to 2 channels.
    #[test]
    fn reconciliation_resamples_pads_and_sums() {
        let g = Genome {
            input: InputShape {
                height: 4,
                width: 4,
                channels: 1,
            },
            classes: 2,
            learning_rate: 0.1,
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
            edges: vec![
                Edge {
                    id: 2,
                    from: 0,
                    to: 1,
                    primary: true,
                    op: EdgeOp::Conv(Conv {
                        filter_h: 1,
                        filter_w: 1,
                        stride: 2,
                        channels: 2,
                    }),
                },
                Edge {
                    id: 3,
                    from: 0,
                    to: 1,
                    primary: false,
                    op: EdgeOp::Identity,
                },
            ],
            next_id: 4,
        };
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        net.weights()
            .get("conv.e2.weight")
            .unwrap()
            .set(
                &Tensor::new(&[1f32, 2.0], &Device::Cpu)
                    .unwrap()
                    .reshape((2, 1, 1, 1))
                    .unwrap(),
            )
            .unwrap();
        let pixels: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let x = Tensor::from_vec(pixels, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let acts = net.activations(&x, false).unwrap();
        let out = acts[1].squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        // Stride 2 and nearest resampling both pick rows/cols 0 and 2: pixels 0, 2, 8, 10.
        assert_eq!(out[0], vec![vec![0.0, 4.0], vec![16.0, 20.0]]); // x + 1*x
        assert_eq!(out[1], vec![vec![0.0, 4.0], vec![16.0, 20.0]]); // 2*x + 0
    }

    #[test]
    fn non_square_filters_keep_same_padding() {
        let mut g = genome::ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        if let EdgeOp::Conv(c) = &mut g.edges[1].op {
            c.filter_h = 5;
            c.filter_w = 1;
        }
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        let x = random_input(&g, 2, 0);
        let acts = net.activations(&x, true).unwrap();
        assert_eq!(acts[2].dims(), &[2, 32, 16, 16]);
    }

    #[test]
    fn batch_norm_uses_batch_statistics_in_training_and_running_ones_in_evaluation() {
        let g = genome::ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let (net, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 0).unwrap();
        let x = random_input(&g, 4, 0).affine(3.0, 1.0).unwrap();
        let rm0 = net
            .weights()
            .get("bn.v1.running_mean")
            .unwrap()
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        let _ = net.forward(&x, false).unwrap();
        let rm1 = net
            .weights()
            .get("bn.v1.running_mean")
            .unwrap()
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(rm0, rm1, "evaluation must not touch the running statistics");
        let acts = net.activations(&x, true).unwrap();
        let rm2 = net
            .weights()
            .get("bn.v1.running_mean")
            .unwrap()
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        assert_ne!(rm1, rm2);
        // After BN (batch statistics) and ReLU, about half the values are zero.
        let v: Vec<f32> = acts[1].flatten_all().unwrap().to_vec1().unwrap();
        let zeros = v.iter().filter(|&&a| a == 0.0).count() as f64 / v.len() as f64;
        assert!((0.3..0.7).contains(&zeros), "{zeros}");
    }

    /// The fast ops and candle's stock ops give the same logits and the same gradients
    /// for every tensor, on networks from random walks (skips, reconciliation, odd
    /// filters, strides) and in both modes of batch norm.
    #[test]
    fn fast_ops_match_stock_ops_on_whole_networks() {
        for seed in 0..16 {
            let g = walked(100 + seed, 30);
            let build = |stock| {
                Network::new(&g, &Device::Cpu, None, &Invalidated::none(), seed)
                    .unwrap()
                    .0
                    .with_stock_ops(stock)
            };
            let (fast, stock) = (build(false), build(true));
            let x = random_input(&g, 4, seed);
            let y = Tensor::new(&[0u32, 1, 2, 3], &Device::Cpu).unwrap();
            let mut grads = Vec::new();
            for net in [&fast, &stock] {
                let logits = net.forward(&x, true).unwrap();
                let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
                grads.push((logits, loss.backward().unwrap()));
            }
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
                let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        (p - q).abs() <= 2e-3 * scale,
                        "seed {seed} {what}: {p} vs {q}"
                    );
                }
            };
            close(&grads[0].0, &grads[1].0, "logits");
            for ((name, pf), (_, ps)) in fast.weights().iter().zip(stock.weights().iter()) {
                let gf = grads[0].1.get(pf.var.as_tensor());
                let gs = grads[1].1.get(ps.var.as_tensor());
                match (gf, gs) {
                    (Some(a), Some(b)) => close(a, b, name),
                    (None, None) => {}
                    _ => panic!("seed {seed}: {name} has a gradient on one side only"),
                }
                // Running statistics updated alike.
                close(pf.var.as_tensor(), ps.var.as_tensor(), name);
            }
            let (ef, es) = (
                fast.forward(&x, false).unwrap(),
                stock.forward(&x, false).unwrap(),
            );
            close(&ef, &es, "evaluation logits");
        }
    }
}
