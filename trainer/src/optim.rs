//! SGD with momentum and weight decay, as PyTorch's `torch.optim.SGD`:
//! `g += wd * w; b = mu * b + g; w -= lr * b` (the first step's buffer is `g`), with
//! optional adaptive gradient clipping (beyond the paper; Brock et al. 2021, per tensor):
//! a weight matrix or kernel's gradient is scaled down so that its norm is at most
//! `clip` times the tensor's norm.
//!
//! On the CPU each tensor is updated in place by two fused passes (no allocation); on
//! other devices by stock tensor ops.

use crate::error::Result;
use crate::weights::Weights;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum (0.9 in the paper).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Adaptive gradient clipping: the gradient of a kernel or weight matrix is scaled so
    /// that its norm is at most `clip` times the tensor's (at least 1e-3); 0: off (the
    /// paper). Vectors (biases, batch-norm scales and shifts) are not clipped.
    #[serde(default)]
    pub clip: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.9,
            weight_decay: 1e-4,
            clip: 0.0,
        }
    }
}

/// The factor that scales a gradient of norm `grad_norm` for a tensor of norm
/// `weight_norm` under adaptive clipping at `clip` (1 when off or within bounds).
pub fn clip_factor(clip: f64, weight_norm: f64, grad_norm: f64) -> f64 {
    if clip <= 0.0 || !grad_norm.is_finite() || grad_norm <= 0.0 {
        return 1.0;
    }
    let bound = clip * weight_norm.max(1e-3);
    if grad_norm > bound {
        bound / grad_norm
    } else {
        1.0
    }
}

fn norm(t: &Tensor) -> Result<f64> {
    Ok((t
        .sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
    .sqrt())
}

/// SGD state: one momentum buffer per trained tensor.
#[derive(Debug)]
pub struct Sgd {
    config: SgdConfig,
    buffers: HashMap<String, Tensor>,
}

/// `b = mu * b + s * g + wd * w`, in place on `b` (`s`: the clipping factor).
struct MomentumUpdate {
    momentum: f32,
    weight_decay: f32,
    grad_scale: f32,
}

/// `w -= lr * b`, in place on `w`.
struct Descend {
    lr: f32,
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("sgd: expected a contiguous f32 tensor"),
    }
}

fn contiguous_f32_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("sgd: expected a contiguous f32 tensor"),
    }
}

impl InplaceOp3 for MomentumUpdate {
    fn name(&self) -> &'static str {
        "sgd-momentum"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let b = contiguous_f32_mut(s1, l1)?;
        let g = contiguous_f32(s2, l2)?;
        let w = contiguous_f32(s3, l3)?;
        if b.len() != g.len() || b.len() != w.len() {
            candle_core::bail!("sgd: tensor sizes differ");
        }
        let (mu, wd, s) = (self.momentum, self.weight_decay, self.grad_scale);
        for ((b, g), w) in b.iter_mut().zip(g).zip(w) {
            *b = mu * *b + s * g + wd * w;
        }
        Ok(())
    }
}

impl InplaceOp2 for Descend {
    fn name(&self) -> &'static str {
        "sgd-descend"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let w = contiguous_f32_mut(s1, l1)?;
        let b = contiguous_f32(s2, l2)?;
        if w.len() != b.len() {
            candle_core::bail!("sgd: tensor sizes differ");
        }
        for (w, b) in w.iter_mut().zip(b) {
            *w -= self.lr * b;
        }
        Ok(())
    }
}

impl Sgd {
    /// A fresh optimizer (momentum buffers start empty, as in PyTorch).
    pub fn new(config: SgdConfig) -> Self {
        Sgd {
            config,
            buffers: HashMap::new(),
        }
    }

    /// One update of every trained tensor that has a gradient, at learning rate `lr`.
    pub fn step(&mut self, weights: &Weights, grads: &GradStore, lr: f64) -> Result<()> {
        for (name, param) in weights.iter() {
            if !param.trains() {
                continue;
            }
            let Some(grad) = grads.get(param.var.as_tensor()) else {
                continue;
            };
            let w = param.var.as_tensor();
            let scale = if self.config.clip > 0.0 && w.rank() > 1 {
                clip_factor(self.config.clip, norm(w)?, norm(grad)?)
            } else {
                1.0
            };
            let fused = w.device().is_cpu()
                && w.dtype() == DType::F32
                && grad.dtype() == DType::F32
                && w.is_contiguous();
            if fused {
                self.fused_step(name, w, &grad.contiguous()?, lr, scale)?;
            } else if scale < 1.0 {
                self.stock_step(name, param, &(grad * scale)?, lr)?;
            } else {
                self.stock_step(name, param, grad, lr)?;
            }
        }
        Ok(())
    }

    fn fused_step(
        &mut self,
        name: &str,
        w: &Tensor,
        grad: &Tensor,
        lr: f64,
        grad_scale: f64,
    ) -> Result<()> {
        let momentum = self.config.momentum as f32;
        let buffer = match self.buffers.get(name) {
            Some(b) => b.clone(),
            None => {
                let b = w.zeros_like()?;
                self.buffers.insert(name.to_string(), b.clone());
                b
            }
        };
        buffer.inplace_op3(
            grad,
            w,
            &MomentumUpdate {
                momentum,
                weight_decay: self.config.weight_decay as f32,
                grad_scale: grad_scale as f32,
            },
        )?;
        w.inplace_op2(&buffer, &Descend { lr: lr as f32 })?;
        Ok(())
    }

    fn stock_step(
        &mut self,
        name: &str,
        param: &crate::weights::Param,
        grad: &Tensor,
        lr: f64,
    ) -> Result<()> {
        let w = param.var.as_tensor();
        let mut g = grad.clone();
        if self.config.weight_decay != 0.0 {
            g = (g + (w * self.config.weight_decay)?)?;
        }
        let buf = match self.buffers.get(name) {
            Some(b) => ((b * self.config.momentum)? + g)?,
            None => g,
        };
        param.var.set(&(w - (&buf * lr)?)?)?;
        self.buffers.insert(name.to_string(), buf.detach());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn clipping_bounds_the_gradient_by_the_weights_norm() {
        assert_eq!(clip_factor(0.0, 1.0, 100.0), 1.0);
        assert_eq!(clip_factor(0.1, 2.0, 0.1), 1.0);
        assert!((clip_factor(0.1, 2.0, 10.0) - 0.02).abs() < 1e-12);
        // A zero tensor still moves: its norm counts as 1e-3.
        assert!((clip_factor(0.1, 0.0, 1.0) - 1e-4).abs() < 1e-12);
        assert_eq!(clip_factor(0.1, 1.0, f64::NAN), 1.0);
    }

    /// The fused CPU update equals PyTorch's formula computed by hand, over three steps.
    #[test]
    fn fused_update_matches_the_formula() {
        let w0 = [1.0f32, -2.0, 0.5];
        let grads = [[0.1f32, 0.2, -0.3], [0.0, -0.1, 0.4], [1.0, 1.0, 1.0]];
        let (mu, wd, lr) = (0.9f32, 0.01f32, 0.1f32);
        let mut w = w0;
        let mut b = [0f32; 3];
        for g in grads {
            for i in 0..3 {
                b[i] = mu * b[i] + g[i] + wd * w[i];
                w[i] -= lr * b[i];
            }
        }
        let var = Var::new(&w0[..], &Device::Cpu).unwrap();
        let mut sgd = Sgd::new(SgdConfig {
            momentum: mu as f64,
            weight_decay: wd as f64,
            clip: 0.0,
        });
        for g in grads {
            let g = Tensor::new(&g[..], &Device::Cpu).unwrap();
            sgd.fused_step("w", var.as_tensor(), &g, lr as f64, 1.0)
                .unwrap();
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(w) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {w:?}");
        }
    }
}
