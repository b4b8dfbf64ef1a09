//! `evo doctor`: every op the trainer uses, run on a device and checked against a
//! reference within a stated tolerance, then a few training steps of a small genome.
//!
//! The references are computed on the CPU: direct f64 loops for the convolution (at
//! several shapes, strides and filter sizes, forward and both gradients), the
//! reconciling of shapes where edges meet and the head with its cross-entropy; candle's
//! stock ops in f64 for batch norm + ReLU; the host's batch assembly for the device's;
//! and for a whole training step of a network with every kind of vertex and edge (and
//! the optimizer's update), the same network on the CPU with candle's stock ops. On the
//! CPU that checks the fast custom ops against candle's stock ones.

use crate::batch::{assemble, AugmentConfig, Augmentation, DeviceSplit, ImageDims, Normalization};
use crate::error::Result;
use crate::network::Network;
use crate::ops::{bn_relu_eval, bn_relu_train, conv2d};
use crate::optim::{Sgd, SgdConfig};
use candle_core::{DType, Device, Tensor, Var};
use genome::{Conv, Edge, EdgeOp, Genome, InputShape, Invalidated, Vertex, VertexKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;

/// One check: what was compared, how far apart, the bound, and how long the device took.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The op and its shape.
    pub op: String,
    /// Largest difference from the reference, relative to the reference's largest value
    /// (`|a - r| / (1 + max |r|)`); for the training check, the last loss over the first.
    pub max_error: f64,
    /// The largest error that passes.
    pub tolerance: f64,
    /// Whether it passed.
    pub passed: bool,
    /// Seconds the device took.
    pub seconds: f64,
}

/// The tolerance of the op checks on `device`: f32 against f64 on the CPU; looser on a
/// GPU, whose libraries may sum in another order or use TF32 products.
pub fn tolerance(device: &Device) -> f64 {
    if device.is_cpu() {
        1e-4
    } else {
        2e-3
    }
}

/// Largest `|a - r|` over `1 + max |r|`; infinite if the lengths differ or a value is
/// not finite.
pub fn relative_error(a: &[f64], r: &[f64]) -> f64 {
    if a.len() != r.len() {
        return f64::INFINITY;
    }
    let mut diff = 0.0f64;
    let mut scale = 0.0f64;
    for (x, y) in a.iter().zip(r) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        diff = diff.max((x - y).abs());
        scale = scale.max(y.abs());
    }
    diff / (1.0 + scale)
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1()?)
}

fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn check(op: String, max_error: f64, tolerance: f64, seconds: f64) -> Check {
    Check {
        op,
        passed: max_error <= tolerance,
        max_error,
        tolerance,
        seconds,
    }
}

/// A convolution's shape: batch, channels in and out, image size, filter and stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Images.
    pub b: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Filter height (odd).
    pub kh: usize,
    /// Filter width (odd).
    pub kw: usize,
    /// Stride.
    pub stride: usize,
}

impl ConvShape {
    fn out(&self) -> (usize, usize) {
        (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride))
    }
}

/// Direct f64 loops: the same-padded convolution of `x` (`[b, cin, h, w]`) with `w`
/// (`[cout, cin, kh, kw]`), and for the loss `Σ y·r` the gradients of `x` and `w`.
pub fn naive_conv(
    c: &ConvShape,
    x: &[f64],
    w: &[f64],
    r: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (ho, wo) = c.out();
    let (ph, pw) = ((c.kh - 1) / 2, (c.kw - 1) / 2);
    let mut y = vec![0f64; c.b * c.cout * ho * wo];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    for b in 0..c.b {
        for co in 0..c.cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((b * c.cout + co) * ho + oy) * wo + ox;
                    for ci in 0..c.cin {
                        for ky in 0..c.kh {
                            for kx in 0..c.kw {
                                let (iy, ix) = (oy * c.stride + ky, ox * c.stride + kx);
                                if iy < ph || ix < pw || iy - ph >= c.h || ix - pw >= c.w {
                                    continue;
                                }
                                let xi = ((b * c.cin + ci) * c.h + iy - ph) * c.w + ix - pw;
                                let wi = ((co * c.cin + ci) * c.kh + ky) * c.kw + kx;
                                y[yi] += w[wi] * x[xi];
                                dx[xi] += w[wi] * r[yi];
                                dw[wi] += x[xi] * r[yi];
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

/// The convolutions checked: 3x3 and other odd filters, strides 1, 2 and 4, the image's
/// three channels and wider inputs.
pub const CONV_SHAPES: [ConvShape; 5] = [
    ConvShape {
        b: 4,
        cin: 3,
        cout: 16,
        h: 16,
        w: 16,
        kh: 3,
        kw: 3,
        stride: 1,
    },
    ConvShape {
        b: 2,
        cin: 16,
        cout: 32,
        h: 16,
        w: 16,
        kh: 3,
        kw: 3,
        stride: 2,
    },
    ConvShape {
        b: 2,
        cin: 5,
        cout: 6,
        h: 9,
        w: 7,
        kh: 5,
        kw: 3,
        stride: 1,
    },
    ConvShape {
        b: 2,
        cin: 8,
        cout: 4,
        h: 8,
        w: 8,
        kh: 1,
        kw: 1,
        stride: 1,
    },
    ConvShape {
        b: 1,
        cin: 3,
        cout: 5,
        h: 12,
        w: 12,
        kh: 7,
        kw: 7,
        stride: 4,
    },
];

fn check_conv(
    device: &Device,
    c: &ConvShape,
    tol: f64,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Check>> {
    let (ho, wo) = c.out();
    let x = random(c.b * c.cin * c.h * c.w, rng);
    let w = random(c.cout * c.cin * c.kh * c.kw, rng);
    let r = random(c.b * c.cout * ho * wo, rng);
    let start = Instant::now();
    let xv = Var::from_tensor(&Tensor::from_slice(&x, (c.b, c.cin, c.h, c.w), device)?)?;
    let wv = Var::from_tensor(&Tensor::from_slice(
        &w,
        (c.cout, c.cin, c.kh, c.kw),
        device,
    )?)?;
    let rt = Tensor::from_slice(&r, (c.b, c.cout, ho, wo), device)?;
    let y = conv2d(xv.as_tensor(), wv.as_tensor(), c.stride, true)?;
    let grads = (&y * &rt)?.sum_all()?.backward()?;
    let (y, dx, dw) = (
        values(&y)?,
        grads.get(xv.as_tensor()).map(values).transpose()?,
        grads.get(wv.as_tensor()).map(values).transpose()?,
    );
    let seconds = start.elapsed().as_secs_f64();
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let (ry, rdx, rdw) = naive_conv(c, &f64s(&x), &f64s(&w), &f64s(&r));
    let name = format!(
        "conv {}x{} s{} {}->{} on {}x{}",
        c.kh, c.kw, c.stride, c.cin, c.cout, c.h, c.w
    );
    let err = |got: Option<Vec<f64>>, want: &[f64]| {
        got.map_or(f64::INFINITY, |g| relative_error(&g, want))
    };
    Ok(vec![
        check(
            format!("{name}: forward"),
            relative_error(&y, &ry),
            tol,
            seconds,
        ),
        check(format!("{name}: input gradient"), err(dx, &rdx), tol, 0.0),
        check(format!("{name}: filter gradient"), err(dw, &rdw), tol, 0.0),
    ])
}

fn check_batch_norm(device: &Device, tol: f64, rng: &mut ChaCha8Rng) -> Result<Vec<Check>> {
    let (b, c, h, w) = (4, 6, 5, 5);
    let x = random(b * c * h * w, rng);
    let gamma: Vec<f32> = random(c, rng).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = random(c, rng);
    let r = random(b * c * h * w, rng);
    let run = |dev: &Device, dtype: DType| -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let t = |v: &[f32], shape: &[usize]| -> Result<Var> {
            Ok(Var::from_tensor(
                &Tensor::from_slice(v, shape, dev)?.to_dtype(dtype)?,
            )?)
        };
        let (xv, gv, bv) = (t(&x, &[b, c, h, w])?, t(&gamma, &[c])?, t(&beta, &[c])?);
        let rt = Tensor::from_slice(&r, (b, c, h, w), dev)?.to_dtype(dtype)?;
        let (y, _, _) = bn_relu_train(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 1e-5)?;
        let grads = (&y * &rt)?.sum_all()?.backward()?;
        let mut g = Vec::new();
        for v in [&xv, &gv, &bv] {
            g.extend(
                grads
                    .get(v.as_tensor())
                    .map(values)
                    .transpose()?
                    .unwrap_or_default(),
            );
        }
        // Evaluation mode with running statistics.
        let mean = Tensor::from_slice(&beta, c, dev)?.to_dtype(dtype)?;
        let var = (Tensor::from_slice(&gamma, c, dev)?.to_dtype(dtype)?.sqr()? + 0.1)?;
        let e = bn_relu_eval(
            xv.as_tensor(),
            gv.as_tensor(),
            bv.as_tensor(),
            &mean,
            &var,
            1e-5,
        )?;
        Ok((values(&y)?, g, values(&e)?))
    };
    let start = Instant::now();
    let (y, g, e) = run(device, DType::F32)?;
    let seconds = start.elapsed().as_secs_f64();
    // The stock path in f64 on the CPU (the fast path takes f32 only).
    let (ry, rg, re) = run(&Device::Cpu, DType::F64)?;
    Ok(vec![
        check(
            "batch norm + ReLU (training): forward".into(),
            relative_error(&y, &ry),
            tol,
            seconds,
        ),
        check(
            "batch norm + ReLU (training): gradients".into(),
            relative_error(&g, &rg),
            tol,
            0.0,
        ),
        check(
            "batch norm + ReLU (evaluation)".into(),
            relative_error(&e, &re),
            tol,
            0.0,
        ),
    ])
}

fn check_reconcile(device: &Device, tol: f64, rng: &mut ChaCha8Rng) -> Result<Vec<Check>> {
    let (b, c, h, w) = (2usize, 6usize, 8usize, 8usize);
    let x = random(b * c * h * w, rng);
    let mut out = Vec::new();
    for (th, tw, tc) in [(4usize, 5usize, 4usize), (11, 8, 9)] {
        let start = Instant::now();
        let t = Tensor::from_slice(&x, (b, c, h, w), device)?;
        let from = genome::Shape {
            h: h as u32,
            w: w as u32,
            c: c as u32,
        };
        let to = genome::Shape {
            h: th as u32,
            w: tw as u32,
            c: tc as u32,
        };
        let got = values(&crate::network::reconciled(t, from, to)?)?;
        let seconds = start.elapsed().as_secs_f64();
        let mut want = vec![0f64; b * tc * th * tw];
        for bi in 0..b {
            for ci in 0..tc.min(c) {
                for i in 0..th {
                    for j in 0..tw {
                        let (si, sj) = (i * h / th, j * w / tw);
                        want[((bi * tc + ci) * th + i) * tw + j] =
                            x[((bi * c + ci) * h + si) * w + sj] as f64;
                    }
                }
            }
        }
        out.push(check(
            format!("reconcile {h}x{w}x{c} -> {th}x{tw}x{tc}"),
            relative_error(&got, &want),
            tol,
            seconds,
        ));
    }
    Ok(out)
}

fn check_head(device: &Device, tol: f64, rng: &mut ChaCha8Rng) -> Result<Vec<Check>> {
    let (b, f, k) = (5usize, 20usize, 4usize);
    let x = random(b * f, rng);
    let w = random(k * f, rng);
    let bias = random(k, rng);
    let labels: Vec<u32> = (0..b as u32).map(|i| i % k as u32).collect();
    let start = Instant::now();
    let xt = Tensor::from_slice(&x, (b, f), device)?;
    let wv = Var::from_tensor(&Tensor::from_slice(&w, (k, f), device)?)?;
    let bv = Var::from_tensor(&Tensor::from_slice(&bias, k, device)?)?;
    let y = Tensor::from_slice(&labels, b, device)?;
    let logits = xt
        .matmul(&wv.as_tensor().t()?)?
        .broadcast_add(bv.as_tensor())?;
    let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
    let grads = loss.backward()?;
    let mut got = values(&logits)?;
    got.extend(values(&loss)?);
    let mut got_grads = Vec::new();
    for v in [&wv, &bv] {
        got_grads.extend(
            grads
                .get(v.as_tensor())
                .map(values)
                .transpose()?
                .unwrap_or_default(),
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    // The reference: logits, the mean cross-entropy, and its gradients.
    let mut want = vec![0f64; b * k];
    let mut dlogits = vec![0f64; b * k];
    let mut loss_sum = 0.0;
    for i in 0..b {
        for j in 0..k {
            let mut s = bias[j] as f64;
            for q in 0..f {
                s += x[i * f + q] as f64 * w[j * f + q] as f64;
            }
            want[i * k + j] = s;
        }
        let row = &want[i * k..(i + 1) * k];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - max).exp()).sum();
        loss_sum += -(row[labels[i] as usize] - max - z.ln());
        for j in 0..k {
            let p = (row[j] - max).exp() / z;
            let target = if j == labels[i] as usize { 1.0 } else { 0.0 };
            dlogits[i * k + j] = (p - target) / b as f64;
        }
    }
    want.push(loss_sum / b as f64);
    let mut want_grads = vec![0f64; k * f + k];
    for i in 0..b {
        for j in 0..k {
            for q in 0..f {
                want_grads[j * f + q] += dlogits[i * k + j] * x[i * f + q] as f64;
            }
            want_grads[k * f + j] += dlogits[i * k + j];
        }
    }
    Ok(vec![
        check(
            "head (linear) and cross-entropy: forward".into(),
            relative_error(&got, &want),
            tol,
            seconds,
        ),
        check(
            "head (linear) and cross-entropy: gradients".into(),
            relative_error(&got_grads, &want_grads),
            tol,
            0.0,
        ),
    ])
}

fn check_batches(device: &Device, tol: f64, rng: &mut ChaCha8Rng) -> Result<Vec<Check>> {
    let dims = ImageDims { c: 3, h: 9, w: 7 };
    let n = 8;
    let images: Vec<u8> = (0..n * dims.len()).map(|_| rng.random()).collect();
    let labels: Vec<u32> = (0..n as u32).collect();
    let all: Vec<usize> = (0..n).collect();
    let norm = Normalization::measure(&images, dims.c, dims.h * dims.w, &all);
    let indices = [5, 2, 2, 7, 0];
    let pad = 2;
    let augs: Vec<Augmentation> = indices
        .iter()
        .map(|_| Augmentation::draw(&AugmentConfig::default(), pad, rng))
        .collect();
    let mut host = Vec::new();
    assemble(
        &images,
        dims,
        &indices,
        &norm,
        Some(augs.as_slice()),
        &mut host,
    );
    let start = Instant::now();
    let split = DeviceSplit::upload(&images, &labels, dims, device)?;
    let (x, y) = split.batch(&indices, &norm, Some((augs.as_slice(), pad as usize)))?;
    let got = values(&x)?;
    let seconds = start.elapsed().as_secs_f64();
    let want: Vec<f64> = host.iter().map(|&v| v as f64).collect();
    let labels_ok = y.to_device(&Device::Cpu)?.to_vec1::<u32>()? == vec![5, 2, 2, 7, 0];
    let err = if labels_ok {
        relative_error(&got, &want)
    } else {
        f64::INFINITY
    };
    Ok(vec![check(
        "batch assembly on the device (crop, flip, normalize)".into(),
        err,
        tol,
        seconds,
    )])
}

/// A small genome with every kind of vertex and edge: 3x3 and 5x3 convolutions at
/// strides 1 and 2, batch norm + ReLU and linear vertices, and a skip connection whose
/// input is resampled and zero padded where it meets the backbone.
pub fn every_kind_genome() -> Genome {
    let conv = |filter_h, filter_w, stride, channels| {
        EdgeOp::Conv(Conv {
            filter_h,
            filter_w,
            stride,
            channels,
        })
    };
    let edge = |id, from, to, primary, op| Edge {
        id,
        from,
        to,
        primary,
        op,
    };
    Genome {
        input: InputShape {
            height: 12,
            width: 12,
            channels: 3,
        },
        classes: 5,
        learning_rate: 0.05,
        augment: None,
        input_vertex: 0,
        output_vertex: 3,
        vertices: vec![
            Vertex {
                id: 0,
                kind: VertexKind::Linear,
            },
            Vertex {
                id: 1,
                kind: VertexKind::BnRelu,
            },
            Vertex {
                id: 2,
                kind: VertexKind::BnRelu,
            },
            Vertex {
                id: 3,
                kind: VertexKind::Linear,
            },
        ],
        edges: vec![
            edge(4, 0, 1, true, conv(3, 3, 1, 8)),
            edge(5, 1, 2, true, conv(5, 3, 2, 12)),
            edge(6, 2, 3, true, conv(1, 1, 1, 12)),
            edge(7, 1, 3, false, EdgeOp::Identity),
        ],
        next_id: 8,
    }
}

fn check_network(device: &Device, tol: f64, rng: &mut ChaCha8Rng) -> Result<Vec<Check>> {
    let g = every_kind_genome();
    let b = 6;
    let x = random(b * 3 * 12 * 12, rng);
    let labels: Vec<u32> = (0..b as u32).map(|i| i % 5).collect();
    let (reference, _) = Network::new(&g, &Device::Cpu, None, &Invalidated::none(), 7)?;
    let reference = reference.with_stock_ops(true);
    let start_weights = reference.weights().snapshot()?;
    let (net, _) = Network::new(&g, device, Some(&start_weights), &Invalidated::none(), 7)?;
    let sgd_config = SgdConfig {
        momentum: 0.9,
        weight_decay: 1e-4,
        clip: 0.1,
    };
    // One step on either: logits, every gradient, then the weights after the update.
    let step = |n: &Network, dev: &Device| -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let xt = Tensor::from_slice(&x, (b, 3, 12, 12), dev)?;
        let y = Tensor::from_slice(&labels, b, dev)?;
        let logits = n.forward(&xt, true)?;
        let grads = candle_nn::loss::cross_entropy(&logits, &y)?.backward()?;
        let mut names: Vec<&str> = n.weights().iter().map(|(k, _)| k).collect();
        names.sort_unstable();
        let mut g = Vec::new();
        for name in &names {
            if let Some(t) = grads.get(n.weights().get(name)?.as_tensor()) {
                g.extend(values(t)?);
            }
        }
        Sgd::new(sgd_config).step(n.weights(), &grads, 0.05)?;
        let mut w = Vec::new();
        for name in &names {
            w.extend(values(n.weights().get(name)?.as_tensor())?);
        }
        Ok((values(&logits)?, g, w))
    };
    let start = Instant::now();
    let (logits, grads, weights) = step(&net, device)?;
    let seconds = start.elapsed().as_secs_f64();
    let (r_logits, r_grads, r_weights) = step(&reference, &Device::Cpu)?;
    let mut out = vec![
        check(
            "network forward (every kind of vertex and edge)".into(),
            relative_error(&logits, &r_logits),
            tol,
            seconds,
        ),
        check(
            "network gradients".into(),
            relative_error(&grads, &r_grads),
            tol,
            0.0,
        ),
        check(
            "SGD update (momentum, weight decay, clipping)".into(),
            relative_error(&weights, &r_weights),
            tol,
            0.0,
        ),
    ];
    // A few steps: the loss must fall and stay finite.
    let xt = Tensor::from_slice(&x, (b, 3, 12, 12), device)?;
    let y = Tensor::from_slice(&labels, b, device)?;
    let mut sgd = Sgd::new(sgd_config);
    let start = Instant::now();
    let mut losses = Vec::new();
    for _ in 0..30 {
        let loss = candle_nn::loss::cross_entropy(&net.forward(&xt, true)?, &y)?;
        losses.push(loss.to_device(&Device::Cpu)?.to_scalar::<f32>()? as f64);
        sgd.step(net.weights(), &loss.backward()?, 0.05)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    let ratio = if first.is_finite() && last.is_finite() && first > 0.0 {
        last / first
    } else {
        f64::INFINITY
    };
    out.push(check(
        format!("training 30 steps: loss {first:.3} -> {last:.3} (ratio)"),
        ratio,
        0.9,
        seconds,
    ));
    Ok(out)
}

/// Runs every check on `device`.
pub fn run(device: &Device) -> Result<Vec<Check>> {
    let tol = tolerance(device);
    let mut rng = ChaCha8Rng::seed_from_u64(2017);
    let mut out = Vec::new();
    for c in &CONV_SHAPES {
        out.extend(check_conv(device, c, tol, &mut rng)?);
    }
    out.extend(check_batch_norm(device, tol, &mut rng)?);
    out.extend(check_reconcile(device, tol, &mut rng)?);
    out.extend(check_head(device, tol, &mut rng)?);
    out.extend(check_batches(device, tol, &mut rng)?);
    out.extend(check_network(device, tol, &mut rng)?);
    Ok(out)
}

/// The checks as a table: op, max error, tolerance, pass, time.
pub fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.op.len()).max().unwrap_or(2).max(2);
    let mut s = format!(
        "{:<width$}  {:>10}  {:>9}  {:>4}  {:>9}\n",
        "op", "max error", "tolerance", "pass", "time"
    );
    for c in checks {
        // A check that shares its computation with the one above shows no time.
        let time = if c.seconds > 0.0 {
            format!("{:.1}ms", 1000.0 * c.seconds)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "{:<width$}  {:>10.2e}  {:>9.0e}  {:>4}  {:>9}\n",
            c.op,
            c.max_error,
            c.tolerance,
            if c.passed { "ok" } else { "FAIL" },
            time
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_relative_to_the_reference_and_catch_nonsense() {
        assert_eq!(relative_error(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((relative_error(&[1.0, 2.5], &[1.0, 2.0]) - 0.5 / 3.0).abs() < 1e-12);
        assert_eq!(relative_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(relative_error(&[f64::NAN], &[1.0]), f64::INFINITY);
    }

    #[test]
    fn every_check_passes_on_the_cpu() {
        let checks = run(&Device::Cpu).unwrap();
        assert!(checks.len() >= 25, "{}", checks.len());
        let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed).collect();
        assert!(failed.is_empty(), "{}", table(&checks));
        let t = table(&checks);
        assert!(t.contains("conv 5x3 s1") && t.contains("SGD update"), "{t}");
    }

    #[test]
    fn a_wrong_op_fails_its_check() {
        // The naive reference against itself shifted: the check must see it.
        let c = CONV_SHAPES[0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = |k: usize, rng: &mut ChaCha8Rng| -> Vec<f64> {
            random(k, rng).iter().map(|&v| v as f64).collect()
        };
        let (ho, wo) = c.out();
        let x = n(c.b * c.cin * c.h * c.w, &mut rng);
        let w = n(c.cout * c.cin * c.kh * c.kw, &mut rng);
        let r = n(c.b * c.cout * ho * wo, &mut rng);
        let (y, _, _) = naive_conv(&c, &x, &w, &r);
        let mut wrong = y.clone();
        wrong[3] += 0.01;
        let e = relative_error(&wrong, &y);
        assert!(e > tolerance(&Device::Cpu), "{e}");
        assert!(!check("x".into(), e, tolerance(&Device::Cpu), 0.0).passed);
    }
}
