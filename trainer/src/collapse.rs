//! Telling a training whose network has collapsed: it has lost what it started with and
//! guesses no better than a constant would, typically because every unit of some layer
//! died (each image then gets the same logits and the loss sits at that of the best
//! constant guess, ln(classes) on balanced data), from which SGD rarely comes back, since
//! no gradient reaches the weights before the dead layer.
//!
//! A network with BN_RELU vertices trained at a high rate from its parent's weights can
//! collapse within its first steps; the rest of its training is then wasted and its
//! score says nothing of its architecture. [`CollapseWatch`] looks at the first step and
//! every [`CollapseWatch::EVERY`] steps from [`CollapseWatch::FROM`] on, and says the
//! network collapsed once, at [`CollapseWatch::STREAK`] checks in a row, either the
//! spread of its logits over a batch (how far apart the images' outputs are) has fallen
//! below [`CollapseWatch::SHRINK`] of the first step's, or its mean training loss since
//! the last check is within [`CollapseWatch::NEAR`] of the best constant guess's
//! ([`constant_guess_loss`]) while its first step's was at least [`CollapseWatch::KNEW`]
//! below it. A network that knew nothing at its start (fresh weights, a zero-initialized
//! layer) is never flagged: it had nothing to lose.

use crate::{Result, Tensor};

/// The largest, over the classes, of the spread of a batch's logits (`(batch,
/// classes)`): the most any class's logit differs between two images of the batch; 0
/// where every image gets the same output.
pub fn logit_spread(logits: &Tensor) -> Result<f64> {
    let spread = (logits.max(0)? - logits.min(0)?)?;
    Ok(spread
        .max(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?)
}

/// The cross-entropy of the best constant guess on the images at `indices` of a split
/// whose labels are `labels`: the entropy of their class frequencies (ln(classes) where
/// the classes are balanced); 0 for no images.
pub fn constant_guess_loss(labels: &[u32], indices: &[usize]) -> f64 {
    let mut counts = std::collections::HashMap::<u32, usize>::new();
    for &i in indices {
        if let Some(&label) = labels.get(i) {
            *counts.entry(label).or_default() += 1;
        }
    }
    let n: usize = counts.values().sum();
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum()
}

/// Watches one training for a collapse (see the module's doc).
#[derive(Debug, Clone)]
pub struct CollapseWatch {
    guess_loss: f64,
    first: Option<(f64, f64)>,
    streak: u32,
}

impl CollapseWatch {
    /// Steps between two checks.
    pub const EVERY: u64 = 20;
    /// The first step checked after the first one: a network gets this many steps to
    /// move before it can be called collapsed.
    pub const FROM: u64 = 40;
    /// The share of its first spread a network's spread must fall below to count as
    /// constant: a network that learns does not lose three orders of magnitude of it.
    pub const SHRINK: f64 = 1e-3;
    /// How far below the constant guess's loss a mean loss may be and still count as
    /// guessing (in nats).
    pub const NEAR: f64 = 0.01;
    /// How far below the constant guess's loss the first step's must be for the network
    /// to have known something it can lose (in nats).
    pub const KNEW: f64 = 0.1;
    /// Checks in a row that must find the network collapsed.
    pub const STREAK: u32 = 2;

    /// A watch for a new training on images whose best constant guess has a loss of
    /// `guess_loss` ([`constant_guess_loss`]).
    pub fn new(guess_loss: f64) -> Self {
        CollapseWatch {
            guess_loss,
            first: None,
            streak: 0,
        }
    }

    /// Whether step `step` (from 1) is one the watch looks at.
    pub fn due(step: u64) -> bool {
        step == 1 || (step >= Self::FROM && step.is_multiple_of(Self::EVERY))
    }

    /// Takes the logit spread and the mean training loss since the last check (the
    /// step's own loss at the first step) at a step that was [`Self::due`] and says
    /// whether the network has collapsed.
    pub fn observe(&mut self, step: u64, spread: f64, loss: f64) -> bool {
        let Some((first_spread, first_loss)) = self.first else {
            if step == 1 {
                self.first = Some((spread, loss));
            }
            return false;
        };
        let constant = first_spread > 0.0 && spread < Self::SHRINK * first_spread;
        let guessing =
            first_loss <= self.guess_loss - Self::KNEW && loss >= self.guess_loss - Self::NEAR;
        if constant || guessing {
            self.streak += 1;
        } else {
            self.streak = 0;
        }
        self.streak >= Self::STREAK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_spread_is_the_widest_gap_between_two_images_in_one_class() {
        let logits = Tensor::new(&[[1.0f32, 5.0], [3.0, 5.5], [2.0, 4.0]], &Device::Cpu).unwrap();
        assert!((logit_spread(&logits).unwrap() - 2.0).abs() < 1e-9);
        let constant = Tensor::new(&[[0.3f32, -1.0], [0.3, -1.0]], &Device::Cpu).unwrap();
        assert_eq!(logit_spread(&constant).unwrap(), 0.0);
    }

    #[test]
    fn the_watch_looks_at_the_first_step_and_then_every_twenty_from_the_fortieth() {
        let due: Vec<u64> = (1..=100).filter(|&s| CollapseWatch::due(s)).collect();
        assert_eq!(due, vec![1, 40, 60, 80, 100]);
    }

    const LN10: f64 = std::f64::consts::LN_10;

    #[test]
    fn the_constant_guess_is_the_entropy_of_the_class_frequencies() {
        let balanced: Vec<u32> = (0..100).map(|i| i % 10).collect();
        let all: Vec<usize> = (0..100).collect();
        assert!((constant_guess_loss(&balanced, &all) - LN10).abs() < 1e-12);
        // Three of one class, one of another: -(3/4 ln 3/4 + 1/4 ln 1/4).
        let skewed = [0u32, 0, 0, 1, 5];
        let h = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((constant_guess_loss(&skewed, &[0, 1, 2, 3]) - h).abs() < 1e-12);
        assert_eq!(constant_guess_loss(&skewed, &[4]), 0.0);
        assert_eq!(constant_guess_loss(&skewed, &[]), 0.0);
    }

    #[test]
    fn a_network_whose_output_stays_constant_for_two_checks_has_collapsed() {
        let mut w = CollapseWatch::new(LN10);
        assert!(!w.observe(1, 4.0, 1.2));
        assert!(!w.observe(40, 0.0, 1.5));
        assert!(w.observe(60, 1e-6, 1.5));
    }

    /// Session 25's collapsed child #107 (a rate of 0.166 from a parent at 47.7%): its
    /// first loss 1.22, then its output at times constant and at times not, its loss at
    /// chance from step 80 on.
    #[test]
    fn a_network_that_lost_what_it_knew_and_guesses_has_collapsed() {
        let mut w = CollapseWatch::new(LN10);
        assert!(!w.observe(1, 10.5, 1.22));
        assert!(!w.observe(40, 7.97, 2.60));
        assert!(!w.observe(60, 10.3, 2.23));
        assert!(!w.observe(80, 2.34, 2.27));
        assert!(!w.observe(100, 0.089, 2.33));
        assert!(w.observe(120, 0.055, 2.30));
    }

    #[test]
    fn one_bad_check_between_lively_ones_is_not_a_collapse() {
        let mut w = CollapseWatch::new(LN10);
        w.observe(1, 4.0, 1.0);
        assert!(!w.observe(40, 0.0, 2.31));
        assert!(!w.observe(60, 0.5, 2.1));
        assert!(!w.observe(80, 0.0, 1.4));
        assert!(!w.observe(100, 3.0, 1.4));
        assert!(!w.observe(120, 3.0, 2.31));
        assert!(!w.observe(140, 3.0, 2.2));
    }

    #[test]
    fn a_network_that_learns_or_knew_nothing_at_its_start_is_never_flagged() {
        let mut learning = CollapseWatch::new(LN10);
        learning.observe(1, 0.01, LN10);
        let mut zero_start = CollapseWatch::new(LN10);
        zero_start.observe(1, 0.0, LN10);
        let mut struggling = CollapseWatch::new(LN10);
        struggling.observe(1, 12.0, 1.12);
        for step in (40..=400).step_by(20) {
            assert!(!learning.observe(step, 0.01 + step as f64, LN10 - step as f64 / 1000.0));
            assert!(!zero_start.observe(step, 0.0, LN10));
            assert!(!struggling.observe(step, 5.0, 2.2));
        }
    }

    #[test]
    fn a_spread_that_shrinks_but_stays_above_the_share_is_not_a_collapse() {
        let mut w = CollapseWatch::new(LN10);
        w.observe(1, 10.0, 1.0);
        for step in (40..=200).step_by(20) {
            assert!(!w.observe(step, 0.011, 1.9));
        }
        assert!(!w.observe(220, 0.009, 1.9));
        assert!(w.observe(240, 0.009, 1.9));
    }
}
