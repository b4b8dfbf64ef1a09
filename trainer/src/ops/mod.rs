//! Fast CPU custom ops for training: same-padded convolution and batch norm fused with
//! ReLU, with exact gradients.
//!
//! Stock candle's convolution backward is a naive transposed convolution (computed even for
//! the input image) and its batch norm is a chain of small allocating ops. These ops run as
//! candle custom ops on the CPU ([`conv2d`]: im2col + GEMM in cache-sized tiles, forward and
//! both gradients, images split over rayon's threads; [`bn_relu_train`] and
//! [`bn_relu_eval`]: few fused passes over memory). On other devices (CUDA) and for other
//! dtypes they fall back to the equivalent stock candle ops, so GPU builds keep working.
//!
//! Gradients flow through candle's autograd as usual. The backward passes skip the work
//! for any argument that no gradient can reach (`!Tensor::track_op()`: a plain tensor such
//! as the input image), besides what `input_grad` asks for. The ops are not twice
//! differentiable on the CPU (their gradients are computed by ops without a backward).

mod bn_relu;
mod conv;
#[cfg(target_arch = "x86_64")]
mod direct;
mod gemm;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use candle_core::{bail, DType, Result, Tensor};
use std::sync::{Arc, Mutex};

/// Whether every tensor is an f32 tensor on the CPU (where the custom ops run).
fn fast_path(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Same-padded 2-D convolution without bias, NCHW. `x`: `[B, Cin, H, W]`; `w`:
/// `[Cout, Cin, kh, kw]` with odd `kh`, `kw`; padding `((kh-1)/2, (kw-1)/2)`; output
/// `[B, Cout, ceil(H/stride), ceil(W/stride)]`.
///
/// `input_grad`: whether backward must compute dL/dx (false for the input image: that work
/// is skipped entirely and `x` gets no gradient). On the CPU with f32 tensors this is a
/// custom op with im2col + GEMM kernels for the forward pass and both gradients; elsewhere
/// it is candle's `pad_with_zeros` + `conv2d`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, input_grad: bool) -> Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    if kh % 2 == 0 || kw % 2 == 0 {
        bail!("conv2d: filter sizes must be odd, got {kh}x{kw}");
    }
    if stride == 0 {
        bail!("conv2d: stride must be positive");
    }
    if fast_path(&[x, w]) {
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return x.apply_op2(&w, conv::Conv2d { stride, input_grad });
    }
    let x = if input_grad { x.clone() } else { x.detach() };
    stock_conv2d(&x, w, stride)
}

/// The same convolution with stock candle ops (the reference the fast op is tested
/// against, and what other devices run).
pub fn stock_conv2d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let (ph, pw) = ((kh - 1) / 2, (kw - 1) / 2);
    if ph == pw {
        x.conv2d(w, ph, stride, 1, 1)
    } else {
        x.pad_with_zeros(2, ph, ph)?
            .pad_with_zeros(3, pw, pw)?
            .conv2d(w, 0, stride, 1, 1)
    }
}

/// Training-mode batch norm (batch statistics, biased variance for normalization, `eps`
/// added to it) fused with ReLU, NCHW. `gamma`, `beta`: `[C]`.
///
/// Returns `(y, batch_mean, batch_var_biased)`; the statistics (`[C]` each) are detached
/// values for the caller to update its running statistics with. Backward gives exact
/// gradients for `x`, `gamma` and `beta` (through the batch statistics, masked by the
/// ReLU, whose derivative at 0 is taken as 0).
pub fn bn_relu_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, c, _, _) = x.dims4()?;
    if fast_path(&[x, gamma, beta]) {
        let stats = Arc::new(Mutex::new(bn_relu::BnStats::default()));
        let op = bn_relu::BnReluTrain {
            eps,
            stats: stats.clone(),
        };
        let y = x
            .contiguous()?
            .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
        let s = stats.lock().unwrap_or_else(|e| e.into_inner());
        let mean = Tensor::from_slice(&s.mean, c, x.device())?;
        let var = Tensor::from_slice(&s.var, c, x.device())?;
        return Ok((y, mean, var));
    }
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    let scale = (var.clone() + eps)?
        .sqrt()?
        .recip()?
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?;
    let y = centered
        .broadcast_mul(&scale)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)?
        .relu()?;
    Ok((y, mean.detach().flatten_all()?, var.detach().flatten_all()?))
}

/// Evaluation-mode batch norm (running statistics `mean`, `var`, each `[C]`) fused with
/// ReLU, NCHW: `max(0, (x - mean) * gamma / sqrt(var + eps) + beta)`.
///
/// Differentiable in all five arguments: the per-channel scale and shift are computed with
/// stock ops, and the fused pass over `x` has an exact backward.
pub fn bn_relu_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let scale = (gamma * (var + eps)?.sqrt()?.recip()?)?;
    let shift = (beta - (mean * &scale)?)?;
    if fast_path(&[x, &scale, &shift]) {
        return x.contiguous()?.apply_op3(
            &scale.contiguous()?,
            &shift.contiguous()?,
            bn_relu::AffineRelu,
        );
    }
    x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
        .broadcast_add(&shift.reshape((1, c, 1, 1))?)?
        .relu()
}
