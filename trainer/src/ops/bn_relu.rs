//! Batch norm fused with ReLU (NCHW, f32) for the CPU, with exact backward passes.
//!
//! Training mode ([`BnReluTrain`]): one pass gathers each channel's mean and biased
//! variance (sums of values shifted by the channel's first value, f32 within a row of
//! pixels and f64 across rows, so no catastrophic cancellation), one pass writes
//! `y = max(0, x * scale + shift)`. The backward pass takes two: the per-channel sums
//! `Σg` and `Σg(x-μ)` with `g = dy·[y>0]`, then
//! `dx = γσ⁻¹ (g - Σg/N - x̂ Σg x̂ / N)`, `dγ = Σ g x̂`, `dβ = Σ g`. The ReLU's mask is
//! recomputed from `x` with the very expression of the forward pass, so `y` is never read.
//!
//! Affine + ReLU ([`AffineRelu`], used by evaluation-mode batch norm): `y = max(0, x * a + b)`
//! with per-channel `a`, `b`; its backward is a single pass giving `dx`, `da`, `db`.
//!
//! Work is split over rayon's threads by contiguous ranges of (image, channel) rows, and
//! partial sums are combined in a fixed order, so results do not depend on scheduling.
//! The ReLU's derivative at 0 is taken as 0 (as PyTorch).

use super::conv::f32_slice;
use super::gemm::{split_range, threads};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// The layout of an activation: `b` images of `c` channels of `hw` pixels.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    c: usize,
    hw: usize,
}

impl Dims {
    fn of(dims: &[usize]) -> Result<Dims> {
        match dims {
            [b, c, rest @ ..] if !rest.is_empty() => Ok(Dims {
                b: *b,
                c: *c,
                hw: rest.iter().product(),
            }),
            _ => bail!("batch norm: expected an [B, C, H, W] input, got {dims:?}"),
        }
    }

    fn len(&self) -> usize {
        self.b * self.c * self.hw
    }

    /// Elements per channel.
    fn n(&self) -> usize {
        self.b * self.hw
    }
}

/// Two sums over a row, `Σ f(x, g)` componentwise over matching elements of `xs` and
/// `gs`, eight lanes at a time and branch-free so that it vectorizes.
#[inline(always)]
fn sums2(xs: &[f32], gs: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
    let (mut xc, mut gc) = (xs.chunks_exact(8), gs.chunks_exact(8));
    for (x, g) in (&mut xc).zip(&mut gc) {
        for l in 0..8 {
            let (p, q) = f(x[l], g[l]);
            a[l] += p;
            b[l] += q;
        }
    }
    let (mut sa, mut sb) = (0f32, 0f32);
    for (x, g) in xc.remainder().iter().zip(gc.remainder()) {
        let (p, q) = f(*x, *g);
        sa += p;
        sb += q;
    }
    (a.iter().sum::<f32>() + sa, b.iter().sum::<f32>() + sb)
}

/// Runs `f(rows, part)` on contiguous ranges of rows (one per thread), where `part` is the
/// matching part of `out` (`row_len` elements a row), and returns each range's result in
/// order.
fn for_row_ranges<R: Send>(
    rows: usize,
    row_len: usize,
    out: &mut [f32],
    f: impl Fn(Range<usize>, &mut [f32]) -> R + Sync,
) -> Vec<R> {
    let mut parts = Vec::new();
    let mut rest = out;
    for r in split_range(rows, threads()) {
        let (head, tail) = rest.split_at_mut(r.len() * row_len);
        parts.push((r, head));
        rest = tail;
    }
    parts.into_par_iter().map(|(r, part)| f(r, part)).collect()
}

/// Adds per-range per-channel partial sums in range order.
fn combine(partials: Vec<Vec<f64>>, len: usize) -> Vec<f64> {
    let mut total = vec![0f64; len];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Per-channel mean and biased variance.
fn channel_stats(x: &[f32], d: Dims) -> (Vec<f64>, Vec<f64>) {
    let shift: Vec<f32> = (0..d.c)
        .map(|c| x.get(c * d.hw).copied().unwrap_or(0.0))
        .collect();
    let partials = for_row_ranges(d.b * d.c, 0, &mut [], |rows, _| {
        let mut acc = vec![0f64; 2 * d.c];
        for row in rows {
            let c = row % d.c;
            let xs = &x[row * d.hw..(row + 1) * d.hw];
            let k = shift[c];
            let (s1, s2) = sums2(xs, xs, |x, _| ((x - k), (x - k) * (x - k)));
            acc[2 * c] += s1 as f64;
            acc[2 * c + 1] += s2 as f64;
        }
        acc
    });
    let acc = combine(partials, 2 * d.c);
    let n = d.n().max(1) as f64;
    let mut mean = Vec::with_capacity(d.c);
    let mut var = Vec::with_capacity(d.c);
    for c in 0..d.c {
        let m = acc[2 * c] / n;
        mean.push(shift[c] as f64 + m);
        var.push((acc[2 * c + 1] / n - m * m).max(0.0));
    }
    (mean, var)
}

/// The ReLU's input: `x * a + b` (the one expression both passes use, so that the
/// backward pass recomputes the forward pass's mask exactly).
#[inline(always)]
fn pre(x: f32, a: f32, b: f32) -> f32 {
    x * a + b
}

/// `y = max(0, x * scale[c] + shift[c])`.
fn affine_relu(x: &[f32], d: Dims, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; d.len()];
    for_row_ranges(d.b * d.c, d.hw, &mut y, |rows, out| {
        for (j, row) in rows.enumerate() {
            let c = row % d.c;
            let (a, b) = (scale[c], shift[c]);
            let xs = &x[row * d.hw..(row + 1) * d.hw];
            for (o, v) in out[j * d.hw..(j + 1) * d.hw].iter_mut().zip(xs) {
                *o = pre(*v, a, b).max(0.0);
            }
        }
    });
    y
}

/// The output gradient where the ReLU passed its input (`x * a + b > 0`), 0 elsewhere;
/// branch-free.
#[inline(always)]
fn masked(x: f32, a: f32, b: f32, g: f32) -> f32 {
    if pre(x, a, b) > 0.0 {
        g
    } else {
        0.0
    }
}

/// What the training forward pass leaves for the caller and the backward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct BnStats {
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub var: Vec<f32>,
    /// `1 / sqrt(var + eps)` per channel.
    inv_std: Vec<f32>,
    /// γ per channel.
    gamma: Vec<f32>,
    /// The affine map the forward pass applied before the ReLU: `γσ⁻¹`, `β - μγσ⁻¹`.
    scale: Vec<f32>,
    shift: Vec<f32>,
}

/// Training-mode batch norm + ReLU as a candle op (`x`, `γ`, `β`) -> `y`; the forward pass
/// writes the batch statistics into `stats`.
#[derive(Debug)]
pub(crate) struct BnReluTrain {
    /// Added to the variance.
    pub eps: f64,
    /// Filled by the forward pass.
    pub stats: Arc<Mutex<BnStats>>,
}

/// The per-channel parameters of a candle op input.
fn channel_params(s: &CpuStorage, l: &Layout, c: usize, what: &str) -> Result<Vec<f32>> {
    let v = f32_slice(s, l, what)?;
    if v.len() != c || l.dims().len() != 1 {
        bail!(
            "batch norm: {what} must have shape [{c}], got {:?}",
            l.dims()
        );
    }
    Ok(v.to_vec())
}

/// Splits the output of a backward op, `[dx…, d1…, d2…]` (`dx` present when `want_dx`),
/// into the gradients of the three arguments, each only where that argument needs one.
fn split_grads(
    out: &Tensor,
    x: &Tensor,
    p1: &Tensor,
    p2: &Tensor,
    want_dx: bool,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let c = p1.elem_count();
    let n = if want_dx { x.elem_count() } else { 0 };
    let dx = if want_dx {
        Some(out.narrow(0, 0, n)?.reshape(x.shape())?)
    } else {
        None
    };
    let d1 = p1.track_op().then(|| out.narrow(0, n, c)).transpose()?;
    let d2 = p2.track_op().then(|| out.narrow(0, n + c, c)).transpose()?;
    Ok((dx, d1, d2))
}

impl CustomOp3 for BnReluTrain {
    fn name(&self) -> &'static str {
        "fast-bn-relu-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1.dims())?;
        let x = f32_slice(s1, l1, "batch norm input")?;
        let gamma = channel_params(s2, l2, d.c, "γ")?;
        let beta = channel_params(s3, l3, d.c, "β")?;
        let (mean, var) = channel_stats(x, d);
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| (1.0 / (v + self.eps).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = (0..d.c).map(|c| gamma[c] * inv_std[c]).collect();
        let shift: Vec<f32> = (0..d.c)
            .map(|c| (beta[c] as f64 - mean[c] * scale[c] as f64) as f32)
            .collect();
        let y = affine_relu(x, d, &scale, &shift);
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        *stats = BnStats {
            mean: mean.iter().map(|&m| m as f32).collect(),
            var: var.iter().map(|&v| v as f32).collect(),
            inv_std,
            gamma,
            scale,
            shift,
        };
        Ok((CpuStorage::F32(y), Shape::from(l1.dims())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let want_dx = x.track_op();
        let op = BnReluBackward { stats, want_dx };
        let _s = crate::profile::scope("op: bn_relu backward");
        let out = x.apply_op2_no_bwd(&dy.contiguous()?, &op)?;
        split_grads(&out, x, gamma, beta, want_dx)
    }
}

/// The training backward pass as a candle op (`x`, `dy`) -> `[dx…, dγ…, dβ…]` (`dx` left
/// out unless `want_dx`). The ReLU's mask is recomputed from `x` and the forward pass's
/// affine map, which saves reading `y`.
struct BnReluBackward {
    stats: BnStats,
    want_dx: bool,
}

impl CustomOp2 for BnReluBackward {
    fn name(&self) -> &'static str {
        "fast-bn-relu-train-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1.dims())?;
        let x = f32_slice(s1, l1, "batch norm input")?;
        let dy = f32_slice(s2, l2, "batch norm output gradient")?;
        let st = &self.stats;
        if dy.len() != d.len() || st.mean.len() != d.c || st.scale.len() != d.c {
            bail!("batch norm backward: mismatched shapes");
        }
        // Pass 1: Σg and Σg(x-μ) per channel.
        let partials = for_row_ranges(d.b * d.c, 0, &mut [], |rows, _| {
            let mut acc = vec![0f64; 2 * d.c];
            for row in rows {
                let c = row % d.c;
                let (m, a, b) = (st.mean[c], st.scale[c], st.shift[c]);
                let r = row * d.hw..(row + 1) * d.hw;
                let (xs, gs) = (&x[r.clone()], &dy[r]);
                let (sg, sgx) = sums2(xs, gs, |x, g| {
                    let g = masked(x, a, b, g);
                    (g, g * (x - m))
                });
                acc[2 * c] += sg as f64;
                acc[2 * c + 1] += sgx as f64;
            }
            acc
        });
        let acc = combine(partials, 2 * d.c);
        let n_dx = if self.want_dx { d.len() } else { 0 };
        let mut out = vec![0f32; n_dx + 2 * d.c];
        let n = d.n().max(1) as f64;
        let mut coef = Vec::with_capacity(d.c);
        for c in 0..d.c {
            let (sg, sgx) = (acc[2 * c], acc[2 * c + 1]);
            let inv_std = st.inv_std[c] as f64;
            out[n_dx + c] = (sgx * inv_std) as f32;
            out[n_dx + d.c + c] = sg as f32;
            // dx = k g + kx x + k0, with γσ⁻¹ (g - Σg/N - x̂ Σg x̂ / N) expanded.
            let k = st.gamma[c] as f64 * inv_std;
            let kx = -k * inv_std * inv_std * sgx / n;
            let k0 = -k * sg / n - kx * st.mean[c] as f64;
            coef.push((k as f32, kx as f32, k0 as f32));
        }
        if self.want_dx {
            // Pass 2: dx.
            for_row_ranges(d.b * d.c, d.hw, &mut out[..n_dx], |rows, part| {
                for (j, row) in rows.enumerate() {
                    let c = row % d.c;
                    let (k, kx, k0) = coef[c];
                    let (a, b) = (st.scale[c], st.shift[c]);
                    let r = row * d.hw..(row + 1) * d.hw;
                    let (xs, gs) = (&x[r.clone()], &dy[r]);
                    let o = &mut part[j * d.hw..(j + 1) * d.hw];
                    for ((o, x), g) in o.iter_mut().zip(xs).zip(gs) {
                        *o = k * masked(*x, a, b, *g) + kx * x + k0;
                    }
                }
            });
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// `y = max(0, x * a[c] + b[c])` as a candle op (`x`, `a`, `b`) -> `y`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AffineRelu;

impl CustomOp3 for AffineRelu {
    fn name(&self) -> &'static str {
        "fast-affine-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1.dims())?;
        let x = f32_slice(s1, l1, "affine input")?;
        let a = channel_params(s2, l2, d.c, "scale")?;
        let b = channel_params(s3, l3, d.c, "shift")?;
        let y = affine_relu(x, d, &a, &b);
        Ok((CpuStorage::F32(y), Shape::from(l1.dims())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let want_dx = x.track_op();
        let op = AffineReluBackward {
            scale: a.to_vec1::<f32>()?,
            shift: b.to_vec1::<f32>()?,
            want_dx,
        };
        let out = x.apply_op2_no_bwd(&dy.contiguous()?, &op)?;
        split_grads(&out, x, a, b, want_dx)
    }
}

/// The backward pass of [`AffineRelu`] as a candle op (`x`, `dy`) -> `[dx…, da…, db…]`.
struct AffineReluBackward {
    scale: Vec<f32>,
    shift: Vec<f32>,
    want_dx: bool,
}

impl CustomOp2 for AffineReluBackward {
    fn name(&self) -> &'static str {
        "fast-affine-relu-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1.dims())?;
        let x = f32_slice(s1, l1, "affine input")?;
        let dy = f32_slice(s2, l2, "affine output gradient")?;
        if dy.len() != d.len() || self.scale.len() != d.c || self.shift.len() != d.c {
            bail!("affine backward: mismatched shapes");
        }
        let n_dx = if self.want_dx { d.len() } else { 0 };
        let mut out = vec![0f32; n_dx + 2 * d.c];
        let (dx, _) = out.split_at_mut(n_dx);
        let row_len = if self.want_dx { d.hw } else { 0 };
        let partials = for_row_ranges(d.b * d.c, row_len, dx, |rows, part| {
            let mut acc = vec![0f64; 2 * d.c];
            for (j, row) in rows.enumerate() {
                let c = row % d.c;
                let (a, b) = (self.scale[c], self.shift[c]);
                let r = row * d.hw..(row + 1) * d.hw;
                let (xs, gs) = (&x[r.clone()], &dy[r]);
                let (sgx, sg) = sums2(xs, gs, |x, g| {
                    let g = masked(x, a, b, g);
                    (g * x, g)
                });
                acc[2 * c] += sgx as f64;
                acc[2 * c + 1] += sg as f64;
                if !part.is_empty() {
                    let o = &mut part[j * d.hw..(j + 1) * d.hw];
                    for ((o, x), g) in o.iter_mut().zip(xs).zip(gs) {
                        *o = a * masked(*x, a, b, *g);
                    }
                }
            }
            acc
        });
        let acc = combine(partials, 2 * d.c);
        for c in 0..d.c {
            out[n_dx + c] = acc[2 * c] as f32;
            out[n_dx + d.c + c] = acc[2 * c + 1] as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
