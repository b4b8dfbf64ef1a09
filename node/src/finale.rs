//! The final training of a run (beyond the paper, `stop.final_training_share`): for the
//! last share of its wall time a node stops breeding and trains its best members further,
//! each worker a copy (IDENTITY) of the best member nobody has taken yet, with one
//! learning-rate decay that ends at the wall-time limit. A run then ends with a trained
//! model rather than with the last of many short trainings: evolution chose the
//! architecture and its weights, the final training spends what is left on them.
//!
//! Plain functions of the clock, the config and the population's ranking; the shard
//! wires them.

use crate::population::IndividualId;
use std::collections::BTreeSet;

/// The fewest seconds of SGD worth a final training: with less left, a worker stays idle.
pub const MIN_FINAL_SECONDS: f64 = 5.0;

/// Seconds allowed for building, validating and saving a final training when its
/// parent's own figures are not known (an immigrant, or a record from before they were
/// kept).
pub const DEFAULT_OVERHEAD_SECONDS: f64 = 10.0;

/// The run minute at which the final training begins: `None` when it is off (a share of
/// 0) or the run has no wall-time limit to end it.
pub fn starts_at(max_wall_minutes: Option<f64>, share: f64) -> Option<f64> {
    match max_wall_minutes {
        Some(max) if share > 0.0 => Some(max * (1.0 - share)),
        _ => None,
    }
}

/// Whether a run `run_minutes` old is in its final training.
pub fn is_final(run_minutes: f64, max_wall_minutes: Option<f64>, share: f64) -> bool {
    starts_at(max_wall_minutes, share).is_some_and(|start| run_minutes >= start)
}

/// How long past its wall-time limit a run with a final training waits for the final
/// trainings to validate and save before it abandons them: a twentieth of the limit,
/// at least half a minute.
pub fn grace_minutes(max_wall_minutes: f64) -> f64 {
    (max_wall_minutes * 0.05).max(0.5)
}

/// The member whose copy trains next: the first of `ranked` (best first) not in `taken`
/// (members already chosen, and those the final training made).
pub fn next_parent(
    ranked: impl IntoIterator<Item = IndividualId>,
    taken: &BTreeSet<IndividualId>,
) -> Option<IndividualId> {
    ranked.into_iter().find(|id| !taken.contains(id))
}

/// Whether another final training may start when `started` have: at most `members`
/// of them (`stop.final_training_members`), or with 0 as many as workers ask for.
pub fn another_member(members: usize, started: usize) -> bool {
    members == 0 || started < members
}

/// The time a parent's training spent outside SGD (building, validating, saving), with a
/// margin: twice that and two seconds more, or [`DEFAULT_OVERHEAD_SECONDS`] if unknown.
pub fn overhead_seconds(outside_sgd: Option<f64>) -> f64 {
    match outside_sgd {
        Some(s) if s.is_finite() && s >= 0.0 => 2.0 * s + 2.0,
        _ => DEFAULT_OVERHEAD_SECONDS,
    }
}

/// The seconds of SGD a final training gets when `remaining_s` of the run are left: the
/// rest less `overhead_s`, or `None` when that is under [`MIN_FINAL_SECONDS`].
pub fn training_seconds(remaining_s: f64, overhead_s: f64) -> Option<f64> {
    let s = remaining_s - overhead_s;
    (s.is_finite() && s >= MIN_FINAL_SECONDS).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_training_takes_the_last_share_of_the_wall_time() {
        assert_eq!(starts_at(Some(10.0), 0.3), Some(7.0));
        assert_eq!(starts_at(Some(10.0), 0.0), None);
        assert_eq!(starts_at(None, 0.3), None);
        assert!(!is_final(6.99, Some(10.0), 0.3));
        assert!(is_final(7.0, Some(10.0), 0.3));
        assert!(is_final(12.0, Some(10.0), 0.3));
        // Off: never, however late.
        assert!(!is_final(100.0, Some(10.0), 0.0));
        assert!(!is_final(100.0, None, 0.5));
    }

    #[test]
    fn the_grace_is_a_twentieth_of_the_limit_and_at_least_half_a_minute() {
        assert_eq!(grace_minutes(30.0), 1.5);
        assert_eq!(grace_minutes(2.0), 0.5);
    }

    #[test]
    fn each_worker_takes_the_best_member_not_taken() {
        let mut taken = BTreeSet::new();
        assert_eq!(next_parent([7, 3, 9], &taken), Some(7));
        taken.insert(7);
        assert_eq!(next_parent([7, 3, 9], &taken), Some(3));
        taken.extend([3, 9]);
        assert_eq!(next_parent([7, 3, 9], &taken), None);
        assert_eq!(next_parent([], &BTreeSet::new()), None);
    }

    #[test]
    fn the_final_training_trains_as_many_members_as_set() {
        assert!(another_member(1, 0));
        assert!(!another_member(1, 1));
        assert!(another_member(2, 1));
        assert!(!another_member(2, 2));
        // 0: one per worker that asks.
        assert!(another_member(0, 0));
        assert!(another_member(0, 7));
    }

    #[test]
    fn a_final_training_runs_until_what_is_left_less_the_overhead() {
        assert_eq!(overhead_seconds(Some(1.5)), 5.0);
        assert_eq!(overhead_seconds(None), DEFAULT_OVERHEAD_SECONDS);
        assert_eq!(overhead_seconds(Some(f64::NAN)), DEFAULT_OVERHEAD_SECONDS);
        assert_eq!(training_seconds(180.0, 5.0), Some(175.0));
        assert_eq!(training_seconds(9.0, 5.0), None);
        assert_eq!(training_seconds(-3.0, 5.0), None);
        assert_eq!(training_seconds(f64::INFINITY, 5.0), None);
    }
}
