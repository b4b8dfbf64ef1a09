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
    /// Which of the seconds left `min_epochs` is counted in.
    #[serde(default)]
    pub epochs_in: EpochsIn,
}

/// Which seconds a width probe counts its floor of epochs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochsIn {
    /// All the seconds the training has left once the widths are timed, those its rate
    /// probe's and augmentation probe's copies then spend and throw away included.
    #[default]
    TimeLeft,
    /// The seconds left less those the later probes' copies spend and throw away
    /// ([`discarded_seconds`]): the time of the training that makes the model.
    MainTraining,
}

/// The probes that run after a width probe, in one training: how many copies each
/// trains, for how many seconds, and whether the chosen one goes on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LaterProbes {
    /// Copies of the rate probe (one per factor; the chosen one goes on).
    pub rate_copies: usize,
    /// Seconds each rate-probe copy trains.
    pub rate_seconds: f64,
    /// Copies of the augmentation probe (one per gene; none where it has no choice).
    pub augment_copies: usize,
    /// Seconds each augmentation copy trains.
    pub augment_seconds: f64,
    /// Whether the augmentation probe's chosen copy goes on (false where the copies
    /// are judged from other weights than those the training goes on from).
    pub augment_chosen_goes_on: bool,
}

/// Seconds the later probes spend on copies they then throw away: every rate-probe copy
/// but the one that goes on, and every augmentation copy but the chosen one (all of them
/// where the chosen one does not go on).
pub fn discarded_seconds(later: &LaterProbes) -> f64 {
    let seconds = |copies: usize, each: f64| copies as f64 * each.max(0.0);
    let rate = seconds(later.rate_copies.saturating_sub(1), later.rate_seconds);
    let kept = usize::from(later.augment_chosen_goes_on);
    let augment = seconds(
        later.augment_copies.saturating_sub(kept),
        later.augment_seconds,
    );
    let total = rate + augment;
    if total.is_finite() {
        total
    } else {
        0.0
    }
}

/// The seconds a width's epochs are counted in: `left` where `epochs_in` is
/// [`EpochsIn::TimeLeft`], `left` less `discarded` (at least 0) where it is
/// [`EpochsIn::MainTraining`].
pub fn counted_seconds(left: f64, discarded: f64, epochs_in: EpochsIn) -> f64 {
    match epochs_in {
        EpochsIn::TimeLeft => left,
        EpochsIn::MainTraining => (left - discarded).max(0.0),
    }
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
    /// Seconds of the time left that the epochs were not counted in (the later probes'
    /// discarded copies, with [`EpochsIn::MainTraining`]; 0 otherwise).
    #[serde(default)]
    pub discarded_seconds: f64,
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
    fn the_later_probes_discard_all_copies_but_those_that_go_on() {
        let later = LaterProbes {
            rate_copies: 3,
            rate_seconds: 36.0,
            augment_copies: 2,
            augment_seconds: 134.7,
            augment_chosen_goes_on: false,
        };
        // Two rate copies thrown away, both augmentation copies (judged elsewhere).
        assert!((discarded_seconds(&later) - (72.0 + 269.4)).abs() < 1e-9);
        let kept = LaterProbes {
            augment_chosen_goes_on: true,
            ..later
        };
        assert!((discarded_seconds(&kept) - (72.0 + 134.7)).abs() < 1e-9);
        // No probes, or one copy that goes on: nothing thrown away.
        assert_eq!(discarded_seconds(&LaterProbes::default()), 0.0);
        let one = LaterProbes {
            rate_copies: 1,
            rate_seconds: 50.0,
            ..LaterProbes::default()
        };
        assert_eq!(discarded_seconds(&one), 0.0);
        // Seconds that are not a number count as none.
        let bad = LaterProbes {
            rate_seconds: f64::NAN,
            ..later
        };
        assert!((discarded_seconds(&bad) - 269.4).abs() < 1e-9);
        let inf = LaterProbes {
            augment_seconds: f64::INFINITY,
            ..later
        };
        assert_eq!(discarded_seconds(&inf), 0.0);
    }

    #[test]
    fn the_main_training_counts_what_the_probes_leave() {
        assert_eq!(counted_seconds(800.0, 340.0, EpochsIn::TimeLeft), 800.0);
        assert_eq!(counted_seconds(800.0, 340.0, EpochsIn::MainTraining), 460.0);
        assert_eq!(counted_seconds(100.0, 340.0, EpochsIn::MainTraining), 0.0);
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
            epochs_in: EpochsIn::TimeLeft,
        };
        assert!(p(2, 3.0).is_active());
        assert!(!p(0, 3.0).is_active());
        assert!(!p(2, 0.0).is_active());
    }
}
