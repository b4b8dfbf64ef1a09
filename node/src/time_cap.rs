//! Beyond the paper: a cap on the wall time of one child's training, as a share of the
//! search's wall time (`training.child_time_cap`). A child whose training, at the pace
//! of its first steps, would take longer is abandoned and dies untrained: in a short
//! run one costly network (a wide convolution at full resolution, say) can otherwise
//! hold a worker for minutes, and its children after it, while cheaper children would
//! have tried many more architectures. Plain functions of the config and the pace.

/// Steps a training must have done before its pace is judged (the first carry the
/// network's build, its calibration and cold caches), unless its time is already past
/// the cap.
pub const STEPS_BEFORE_JUDGING: u64 = 20;

/// The cap in seconds on one child's training: `share` of the search's wall time, which
/// is `max_wall_minutes` less the final training's share; `None` (no cap) where `share`
/// is 0 or not a number in (0, 1), where the run has no wall-time limit, or where the
/// search has no time.
pub fn child_time_cap(
    share: f64,
    max_wall_minutes: Option<f64>,
    final_training_share: f64,
) -> Option<f64> {
    if !(share > 0.0 && share < 1.0) {
        return None;
    }
    let minutes = max_wall_minutes.filter(|m| m.is_finite() && *m > 0.0)?;
    let final_share = if final_training_share.is_finite() {
        final_training_share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let search = minutes * 60.0 * (1.0 - final_share);
    (search > 0.0).then_some(share * search)
}

/// The seconds a training that has done `step` of its `steps` in `elapsed` seconds will
/// take at that pace.
pub fn projected_seconds(elapsed: f64, step: u64, steps: u64) -> f64 {
    elapsed / step.max(1) as f64 * steps.max(step) as f64
}

/// Whether a training that has done `step` of its `steps` in `elapsed` seconds is to be
/// abandoned under a cap of `cap` seconds: its time is already past the cap, or, once
/// it has done [`STEPS_BEFORE_JUDGING`] steps, its pace would take it past.
pub fn over_time_cap(elapsed: f64, step: u64, steps: u64, cap: f64) -> bool {
    if elapsed > cap {
        return true;
    }
    step >= STEPS_BEFORE_JUDGING && projected_seconds(elapsed, step, steps) > cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_share_of_the_search_s_time() {
        // 30 minutes, half of them the final training: 900 s of search.
        let cap = child_time_cap(0.05, Some(30.0), 0.5).unwrap();
        assert!((cap - 45.0).abs() < 1e-9, "{cap}");
        let cap = child_time_cap(0.1, Some(10.0), 0.0).unwrap();
        assert!((cap - 60.0).abs() < 1e-9, "{cap}");
        // Off: no share, no wall-time limit, or no search time.
        assert_eq!(child_time_cap(0.0, Some(30.0), 0.5), None);
        assert_eq!(child_time_cap(f64::NAN, Some(30.0), 0.5), None);
        assert_eq!(child_time_cap(1.0, Some(30.0), 0.5), None);
        assert_eq!(child_time_cap(0.05, None, 0.5), None);
        assert_eq!(child_time_cap(0.05, Some(0.0), 0.5), None);
        assert_eq!(child_time_cap(0.05, Some(f64::INFINITY), 0.5), None);
        assert_eq!(child_time_cap(0.05, Some(30.0), 1.0), None);
        // A share of the final training that is not a number counts as none.
        let cap = child_time_cap(0.05, Some(30.0), f64::NAN).unwrap();
        assert!((cap - 90.0).abs() < 1e-9, "{cap}");
    }

    #[test]
    fn a_training_is_judged_by_its_pace_after_its_first_steps() {
        // 400 steps, 10 s for the first 20: 200 s at that pace, over a cap of 45 s.
        assert!(over_time_cap(10.0, 20, 400, 45.0));
        assert!((projected_seconds(10.0, 20, 400) - 200.0).abs() < 1e-9);
        // 2 s for 20 steps: 40 s, under the cap.
        assert!(!over_time_cap(2.0, 20, 400, 45.0));
        // Before 20 steps its pace is not judged (the first steps are slow)...
        assert!(!over_time_cap(10.0, 19, 400, 45.0));
        // ...unless its time is already past the cap.
        assert!(over_time_cap(46.0, 5, 400, 45.0));
        // At the cap exactly it goes on.
        assert!(!over_time_cap(4.5, 40, 400, 45.0));
        // A training with no steps or past its steps is judged by the steps done.
        assert!(!over_time_cap(1.0, 20, 0, 45.0));
        assert!((projected_seconds(1.0, 0, 0)).abs() < 1e-9);
    }
}
