//! How many individuals train at once on a device: each training's memory is estimated
//! from its genome ([`genome::MemoryEstimate`]), and one starts only if it fits in what
//! the device's budget leaves beside the trainings in flight. One that cannot fit even
//! alone fails by itself (recorded as such), never the node. Plain functions; the shard
//! wires them.

use serde::{Deserialize, Serialize};

/// The share of a GPU's memory a node budgets for its trainings (the rest is the CUDA
/// context, the data set kept on the device and fragmentation).
pub const GPU_SHARE: f64 = 0.8;

/// What a training of `needs` bytes may do on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fit {
    /// It fits beside what is in flight: start it.
    Start,
    /// It fits the device but not beside what is in flight: wait for one to finish.
    Wait,
    /// It does not fit the device even alone.
    TooLarge {
        /// Bytes it needs.
        needs: u64,
        /// Bytes the device has for trainings.
        budget: u64,
    },
}

/// Whether a training of `needs` bytes starts, waits or cannot run on a device with
/// `budget` bytes (`None`: no limit) beside trainings using `in_flight` bytes.
pub fn fit(budget: Option<u64>, in_flight: u64, needs: u64) -> Fit {
    let Some(budget) = budget else {
        return Fit::Start;
    };
    if needs > budget {
        Fit::TooLarge { needs, budget }
    } else if in_flight.saturating_add(needs) <= budget {
        Fit::Start
    } else {
        Fit::Wait
    }
}

/// The bytes a node budgets for its trainings: `configured_gib` (`node.memory_gib`) if
/// set above 0; otherwise on a GPU [`GPU_SHARE`] of its memory (`gpu_memory_gib`, when
/// known), and no limit on the CPU.
pub fn budget_bytes(configured_gib: f64, gpu_memory_gib: Option<f64>) -> Option<u64> {
    let gib = if configured_gib > 0.0 {
        configured_gib
    } else {
        gpu_memory_gib? * GPU_SHARE
    };
    Some((gib * (1u64 << 30) as f64) as u64)
}

/// `bytes` in GiB, for messages.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_training_starts_waits_or_is_too_large() {
        assert_eq!(fit(None, u64::MAX, 1 << 40), Fit::Start);
        assert_eq!(fit(Some(100), 0, 60), Fit::Start);
        assert_eq!(fit(Some(100), 40, 60), Fit::Start);
        assert_eq!(fit(Some(100), 41, 60), Fit::Wait);
        assert_eq!(
            fit(Some(100), 0, 101),
            Fit::TooLarge {
                needs: 101,
                budget: 100
            }
        );
        // Too large stays too large however empty the device.
        assert!(matches!(fit(Some(100), 90, 101), Fit::TooLarge { .. }));
    }

    #[test]
    fn the_budget_is_the_setting_or_a_share_of_the_gpu() {
        assert_eq!(budget_bytes(0.0, None), None);
        assert_eq!(budget_bytes(2.0, None), Some(2 << 30));
        assert_eq!(budget_bytes(2.0, Some(80.0)), Some(2 << 30));
        assert_eq!(budget_bytes(0.0, Some(10.0)), Some(8 << 30));
        assert!((gib(3 << 29) - 1.5).abs() < 1e-12);
    }
}
