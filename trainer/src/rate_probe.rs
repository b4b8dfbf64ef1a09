//! A learning-rate probe before a long training (beyond the paper): short copies of the
//! network, one per factor of its genome's rate, each trained with a full decay of its
//! own; the one that scores best on the validation images decides the factor the long
//! training runs at, and the long training goes on from its weights.
//!
//! Why: a genome's rate was chosen by evolution for short trainings. A long training
//! from the same rate can help a network whose rate is low and wreck one whose rate is
//! high, so no single factor suits every network; a short trial of each does. The
//! decisions here are plain functions; [`crate::individual_training`] runs the copies.

use serde::{Deserialize, Serialize};

/// Most factors one probe may try.
pub const MAX_FACTORS: usize = 8;

/// The factors a probe tries and how long each copy trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateProbe {
    /// Factors of the genome's learning rate, each tried by one copy (in this order; a
    /// tie goes to the first).
    pub factors: Vec<f64>,
    /// Seconds of SGD each copy trains.
    pub seconds: f64,
}

impl RateProbe {
    /// Whether the probe has a choice to make (two factors or more, time to try them).
    pub fn is_active(&self) -> bool {
        self.factors.len() > 1 && self.seconds > 0.0
    }
}

/// The index of the factor a probe chooses from the validation accuracies its copies
/// reached (`scores[i]` for `factors[i]`): the best, the first among equals; a score
/// that is not a number (a copy that diverged scores 0 before it gets here) never wins.
/// `None` for no scores.
pub fn choose(scores: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
        .or(if scores.is_empty() { None } else { Some(0) })
}

/// The seconds the long training has left once the probe's copies took `spent` of a
/// budget of `budget` seconds (`None`: no limit, none left to take).
pub fn remaining_seconds(budget: Option<f64>, spent: f64) -> Option<f64> {
    budget.map(|b| (b - spent).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_score_wins_and_the_first_among_equals() {
        assert_eq!(choose(&[0.5, 0.7, 0.6]), Some(1));
        assert_eq!(choose(&[0.7, 0.7, 0.6]), Some(0));
        assert_eq!(choose(&[0.1, 0.2, 0.3]), Some(2));
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn a_score_that_is_not_a_number_never_wins() {
        assert_eq!(choose(&[f64::NAN, 0.2]), Some(1));
        assert_eq!(choose(&[0.0, f64::NAN]), Some(0));
        // All unusable: the first factor, as with no probe.
        assert_eq!(choose(&[f64::NAN, f64::NAN]), Some(0));
    }

    #[test]
    fn the_long_training_gets_what_the_probe_left() {
        assert_eq!(remaining_seconds(Some(100.0), 30.0), Some(70.0));
        assert_eq!(remaining_seconds(Some(10.0), 30.0), Some(0.0));
        assert_eq!(remaining_seconds(None, 30.0), None);
    }

    #[test]
    fn a_probe_needs_two_factors_and_time() {
        let p = |factors: Vec<f64>, seconds| RateProbe { factors, seconds };
        assert!(p(vec![1.0, 0.25], 5.0).is_active());
        assert!(!p(vec![1.0], 5.0).is_active());
        assert!(!p(vec![1.0, 0.5], 0.0).is_active());
    }
}
