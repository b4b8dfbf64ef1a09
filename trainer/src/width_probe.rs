//! A width probe before a long training (beyond the paper): the network widened by
//! doubling the channels of every convolution that can widen exactly
//! ([`genome::widen`]), one round, two, up to a most, each width timed for a few steps
//! on the training's own device and threads; the long training takes the widest whose
//! measured pace still gives it a floor of epochs in the time it has, or the network as
//! it is where none does.
//!
//! Why: short trainings favour networks that learn fast, a long one can use more
//! capacity ("search small, train big"). How wide a long training can afford is a
//! matter of pace, and the pace of a wider network is not its narrow parent's scaled
//! by their FLOPs: on a CPU a wide convolution runs at two to three times the FLOP/s
//! of a narrow one (measured in issue 11: a network of 2.7 MFLOPs per image at 61
//! steps/s on one thread, the same widened twice to 33 MFLOPs at 7.9, where scaling by
//! FLOPs predicts 5). So each width is measured, not predicted. The decisions here are
//! plain functions; [`crate::individual_training`] times the widths.

use serde::{Deserialize, Serialize};

/// Most rounds of doubling one probe may try (each multiplies a network's cost by up to
/// four).
pub const MAX_ROUNDS: u32 = 4;

/// How far a long training may widen its network and what it must still give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidthProbe {
    /// The most rounds of doubling tried (the widest first).
    pub max_rounds: u32,
    /// The fewest epochs of the training images the training's time left must still
    /// give a width at its measured pace for that width to be taken.
    pub min_epochs: f64,
    /// Seconds each width is timed for (its first step, which allocates, not counted).
    pub seconds: f64,
    /// The limits a wider network must stay within (channels, FLOPs, parameters).
    pub limits: genome::Limits,
}

impl WidthProbe {
    /// Whether the probe has anything to try (a round or more, time to time them).
    pub fn is_active(&self) -> bool {
        self.max_rounds > 0 && self.seconds > 0.0
    }
}

/// What a probe measured of one width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidthTrial {
    /// Rounds of doubling asked for.
    pub rounds: u32,
    /// Channel doublings they made (a round doubles every convolution that can).
    pub doublings: usize,
    /// Forward FLOPs per image of the widened network.
    pub forward_flops: u64,
    /// SGD steps per second measured.
    pub steps_per_s: f64,
    /// Epochs that pace gives in the time the training has left.
    pub epochs: f64,
}

/// What a width probe found: the widths it timed (widest first) and the rounds taken
/// (0: the network as it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WidthProbeReport {
    /// Each width timed, widest first.
    pub trials: Vec<WidthTrial>,
    /// The rounds of doubling the training took (0: none).
    pub rounds: u32,
    /// The channel doublings those made.
    pub doublings: usize,
    /// Seconds the probe took (building and timing).
    pub seconds: f64,
}

/// Epochs of `train_images` images that `seconds` of SGD at `steps_per_s` steps of
/// `batch` images give; 0 where an input leaves it undefined.
pub fn epochs(steps_per_s: f64, seconds: f64, batch: usize, train_images: usize) -> f64 {
    if train_images == 0 || !(steps_per_s.is_finite() && seconds.is_finite()) {
        return 0.0;
    }
    steps_per_s.max(0.0) * seconds.max(0.0) * batch as f64 / train_images as f64
}

/// Whether a width whose pace gives `epochs` is taken by a probe asking for `min_epochs`.
pub fn accepts(epochs: f64, min_epochs: f64) -> bool {
    epochs >= min_epochs
}

/// SGD steps per second from `steps` timed steps over `seconds` (0 where none were
/// timed or no time passed).
pub fn pace(steps: u64, seconds: f64) -> f64 {
    if steps == 0 || seconds.is_nan() || seconds <= 0.0 {
        return 0.0;
    }
    steps as f64 / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_images_seen_over_the_training_images() {
        // 10 steps/s of 50 images for 960 s over 48,000 images: 10 epochs.
        assert!((epochs(10.0, 960.0, 50, 48_000) - 10.0).abs() < 1e-9);
        assert_eq!(epochs(10.0, 960.0, 50, 0), 0.0);
        assert_eq!(epochs(f64::NAN, 960.0, 50, 48_000), 0.0);
        assert_eq!(epochs(10.0, f64::INFINITY, 50, 48_000), 0.0);
        assert_eq!(epochs(-1.0, 960.0, 50, 48_000), 0.0);
    }

    #[test]
    fn a_width_is_taken_at_the_floor_and_above() {
        assert!(accepts(10.0, 10.0));
        assert!(accepts(12.5, 10.0));
        assert!(!accepts(9.99, 10.0));
        assert!(!accepts(f64::NAN, 10.0));
    }

    #[test]
    fn the_pace_is_steps_over_seconds() {
        assert_eq!(pace(20, 4.0), 5.0);
        assert_eq!(pace(0, 4.0), 0.0);
        assert_eq!(pace(20, 0.0), 0.0);
        assert_eq!(pace(20, f64::NAN), 0.0);
    }

    #[test]
    fn a_probe_needs_a_round_and_time() {
        let p = |max_rounds, seconds| WidthProbe {
            max_rounds,
            min_epochs: 10.0,
            seconds,
            limits: genome::Limits::default(),
        };
        assert!(p(2, 3.0).is_active());
        assert!(!p(0, 3.0).is_active());
        assert!(!p(2, 0.0).is_active());
    }
}
