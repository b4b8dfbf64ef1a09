//! The speed benchmark: a reference net trained on random in-memory data exactly like
//! `torch_reference.py` (a pool of 2,000 random images, uniform labels over 10 classes,
//! mini-batches drawn at random, SGD momentum 0.9, weight decay 5e-4, learning rate 0.05).

use crate::error::Result;
use crate::network::Network;
use crate::optim::{Sgd, SgdConfig};
use crate::profile;
use candle_core::{Device, Tensor};
use genome::{InputShape, Invalidated, ReferenceNet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use std::time::Instant;

/// Images in the random pool.
pub const POOL: usize = 2000;
/// Warm-up steps before timing.
pub const WARMUP: u64 = 5;

/// How long to run.
#[derive(Debug, Clone, Copy)]
pub enum BenchLength {
    /// A number of timed steps.
    Steps(u64),
    /// A number of seconds.
    Seconds(f64),
}

/// One benchmark result, printed as a JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Reference net name.
    pub net: &'static str,
    /// Always "evo (candle)".
    pub framework: String,
    /// Device name.
    pub device: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps.
    pub steps: u64,
    /// Timed seconds.
    pub seconds: f64,
    /// Steps per second.
    pub steps_per_s: f64,
    /// Images per second.
    pub images_per_s: f64,
    /// Training GFLOP/s (3 x forward FLOPs, convolutions and the head only, as the
    /// reference script counts).
    pub train_gflops: f64,
    /// Where a step's time went (milliseconds per step, by scope), when profiling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<ProfileLine>>,
}

/// One scope of a profile, per step.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileLine {
    /// Scope name ("step: ..." for the phases of a step, "op: ..." inside them).
    pub name: &'static str,
    /// Milliseconds per timed step.
    pub ms_per_step: f64,
    /// Calls per timed step.
    pub calls_per_step: f64,
}

/// Runs the benchmark for `net` on `device` (with candle's stock convolution and batch
/// norm instead of the fast CPU ops when `stock_ops`).
pub fn bench(
    net: ReferenceNet,
    device: &Device,
    batch: usize,
    length: BenchLength,
    stock_ops: bool,
) -> Result<BenchReport> {
    let genome = net.genome(InputShape::CIFAR, 10);
    let (network, _) = Network::new(&genome, device, None, &Invalidated::none(), 0)?;
    let network = network.with_stock_ops(stock_ops);
    let forward_flops = network.analysis().cost.forward_flops;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pool: Vec<f32> = (0..POOL * 3 * 32 * 32)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut rng);
            z
        })
        .collect();
    let pool = Tensor::from_vec(pool, (POOL, 3, 32, 32), device)?;
    let labels: Vec<u32> = (0..POOL).map(|_| rng.random_range(0..10)).collect();
    let labels = Tensor::from_vec(labels, POOL, device)?;
    let mut sgd = Sgd::new(SgdConfig {
        momentum: 0.9,
        weight_decay: 5e-4,
        clip: 0.0,
    });
    let lr = genome.learning_rate;
    let mut step = |rng: &mut ChaCha8Rng| -> Result<()> {
        let (x, y) = {
            let _s = profile::scope("step: batch");
            let idx: Vec<u32> = (0..batch)
                .map(|_| rng.random_range(0..POOL as u32))
                .collect();
            let idx = Tensor::from_vec(idx, batch, device)?;
            (pool.index_select(&idx, 0)?, labels.index_select(&idx, 0)?)
        };
        let logits = {
            let _s = profile::scope("step: forward");
            network.forward(&x, true)?
        };
        let loss = {
            let _s = profile::scope("step: loss");
            candle_nn::loss::cross_entropy(&logits, &y)?
        };
        let grads = {
            let _s = profile::scope("step: backward");
            loss.backward()?
        };
        let _s = profile::scope("step: optimizer");
        sgd.step(network.weights(), &grads, lr)?;
        Ok(())
    };
    for _ in 0..WARMUP {
        step(&mut rng)?;
    }
    device.synchronize()?;
    profile::reset();
    let start = Instant::now();
    let mut steps = 0u64;
    loop {
        let done = match length {
            BenchLength::Steps(n) => steps >= n,
            BenchLength::Seconds(s) => start.elapsed().as_secs_f64() >= s,
        };
        if done {
            break;
        }
        step(&mut rng)?;
        steps += 1;
    }
    device.synchronize()?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let images_per_s = (steps as usize * batch) as f64 / seconds;
    Ok(BenchReport {
        net: net.name(),
        framework: if stock_ops {
            "evo (candle, stock ops)".to_string()
        } else {
            "evo (candle)".to_string()
        },
        device: crate::device::describe(device),
        batch,
        steps,
        seconds,
        steps_per_s: steps as f64 / seconds,
        images_per_s,
        train_gflops: 3.0 * forward_flops as f64 * images_per_s / 1e9,
        profile: profile::enabled().then(|| {
            profile::report()
                .into_iter()
                .map(|e| ProfileLine {
                    name: e.name,
                    ms_per_step: e.seconds * 1e3 / steps.max(1) as f64,
                    calls_per_step: e.calls as f64 / steps.max(1) as f64,
                })
                .collect()
        }),
    })
}
