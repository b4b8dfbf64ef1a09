//! SGD with momentum and weight decay, as PyTorch's `torch.optim.SGD`:
//! `g += wd * w; b = mu * b + g; w -= lr * b`.

use crate::error::Result;
use crate::weights::Weights;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Momentum (0.9 in the paper).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.9,
            weight_decay: 1e-4,
        }
    }
}

/// SGD state: one momentum buffer per trained tensor.
#[derive(Debug)]
pub struct Sgd {
    config: SgdConfig,
    buffers: HashMap<String, Tensor>,
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
            let mut g = grad.clone();
            if self.config.weight_decay != 0.0 {
                g = (g + (w * self.config.weight_decay)?)?;
            }
            let buf = match self.buffers.get(name) {
                Some(b) if self.config.momentum != 0.0 => ((b * self.config.momentum)? + g)?,
                _ => g,
            };
            param.var.set(&(w - (&buf * lr)?)?)?;
            if self.config.momentum != 0.0 {
                self.buffers.insert(name.to_string(), buf.detach());
            }
        }
        Ok(())
    }
}
