//! How many SGD steps a child trains: the paper's fixed count for every individual, or
//! (beyond the paper) a budget that follows the lineage (a parent that keeps winning
//! tournaments has shown it is worth more, so each further child of it trains longer,
//! up to a cap), one that grows when the search stalls (short trainings favour
//! networks that learn fast over those that end best: once they stop finding better
//! ones, every child trains longer), or one that follows the child's cost (a network
//! cheaper than the population's typical member trains as many more steps as the same
//! compute buys, so that the search compares networks at equal compute and does not
//! favour costly ones that learn fast per step). Plain functions of the config and the
//! records.

use serde::{Deserialize, Serialize};

/// `training.budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Every individual trains `training.steps` steps (the paper).
    #[default]
    Fixed,
    /// A child trains `training.steps` times one more than the children its parent had
    /// before it, at most `training.budget_max_factor` times: the n-th child of a parent
    /// trains n times the base.
    Lineage,
    /// Every individual trains `training.steps` times a factor that starts at 1 and
    /// doubles each time a generation (`evolution.population_size` births here) brings
    /// no new best validation accuracy, at most `training.budget_max_factor`
    /// ([`stall_factor`]).
    Stall,
    /// A child trains `training.steps` times the population's median forward FLOPs
    /// over its own, at least once and at most `training.budget_max_factor` times
    /// ([`cost_factor`]): a cheaper network gets the steps the typical member's
    /// compute would buy, a costlier one no fewer than `steps` (so that the first
    /// convolutions, far costlier than the linear start, are still judged fairly).
    Cost,
}

impl Budget {
    /// Whether this is the paper's fixed budget.
    pub fn is_fixed(&self) -> bool {
        *self == Budget::Fixed
    }
}

/// The steps of a child whose parent had `earlier_children` children before it (`None`
/// for an initial individual), with `base` steps and a cap of `max_factor` times `base`;
/// `factor` is the stall or cost budget's factor for this child ([`stall_factor`],
/// [`cost_factor`]; ignored by the others; below 1 counts as 1).
pub fn child_steps(
    budget: Budget,
    base: u64,
    max_factor: u32,
    earlier_children: Option<usize>,
    factor: f64,
) -> u64 {
    let cap = u64::from(max_factor.max(1));
    match (budget, earlier_children) {
        (Budget::Fixed, _) => base,
        (Budget::Stall | Budget::Cost, _) => {
            let factor = if factor.is_finite() { factor } else { 1.0 };
            let factor = factor.clamp(1.0, cap as f64);
            // Exact for whole factors; a fractional one rounds to the nearest step.
            let steps = (base as f64 * factor).round();
            if steps >= u64::MAX as f64 {
                u64::MAX
            } else {
                (steps as u64).max(base)
            }
        }
        (Budget::Lineage, None) => base,
        (Budget::Lineage, Some(n)) => base.saturating_mul((n as u64 + 1).min(cap)),
    }
}

/// The cost budget's factor for a child of `own_flops` forward FLOPs per image, among
/// members of `member_flops`: their median over its own, at least 1 and at most
/// `max_factor` (1 with no members or no cost known).
pub fn cost_factor(
    own_flops: u64,
    member_flops: impl IntoIterator<Item = u64>,
    max_factor: u32,
) -> f64 {
    let mut flops: Vec<u64> = member_flops.into_iter().filter(|&f| f > 0).collect();
    if flops.is_empty() || own_flops == 0 {
        return 1.0;
    }
    flops.sort_unstable();
    let n = flops.len();
    let median = if n % 2 == 1 {
        flops[n / 2] as f64
    } else {
        (flops[n / 2 - 1] as f64 + flops[n / 2] as f64) / 2.0
    };
    (median / own_flops as f64).clamp(1.0, f64::from(max_factor.max(1)))
}

/// The stall budget's factor after the births `fitnesses` (validation accuracies, in
/// order of birth): 1 at first, doubled each time `window` births in a row bring no new
/// best (each doubling starts a new window), at most `max_factor`.
pub fn stall_factor(
    fitnesses: impl IntoIterator<Item = f64>,
    window: usize,
    max_factor: u32,
) -> u32 {
    let cap = max_factor.max(1);
    let window = window.max(1);
    let (mut factor, mut best, mut since) = (1u32, f64::NEG_INFINITY, 0usize);
    for f in fitnesses {
        if f > best {
            (best, since) = (f, 0);
        } else {
            since += 1;
            if since == window {
                (factor, since) = (factor.saturating_mul(2).min(cap), 0);
            }
        }
    }
    factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_budget_is_the_paper_s() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Fixed, 400, 4, n, 8.0), 400);
        }
    }

    #[test]
    fn the_lineage_budget_grows_with_the_parent_s_children_up_to_its_cap() {
        assert_eq!(child_steps(Budget::Lineage, 400, 4, None, 4.0), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(0), 4.0), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(1), 4.0), 800);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(2), 4.0), 1200);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(3), 4.0), 1600);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(50), 4.0), 1600);
        assert_eq!(child_steps(Budget::Lineage, 400, 0, Some(5), 4.0), 400);
        assert_eq!(
            child_steps(Budget::Lineage, u64::MAX, 4, Some(5), 4.0),
            u64::MAX
        );
    }

    #[test]
    fn the_stall_budget_multiplies_every_child_by_its_factor_up_to_its_cap() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Stall, 400, 8, n, 1.0), 400);
            assert_eq!(child_steps(Budget::Stall, 400, 8, n, 4.0), 1600);
            assert_eq!(child_steps(Budget::Stall, 400, 2, n, 4.0), 800);
            assert_eq!(child_steps(Budget::Stall, 400, 8, n, 0.0), 400);
        }
    }

    #[test]
    fn the_cost_budget_scales_by_its_factor_between_once_and_its_cap() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Cost, 400, 4, n, 1.0), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, n, 2.5), 1000);
            assert_eq!(child_steps(Budget::Cost, 400, 4, n, 9.0), 1600);
            assert_eq!(child_steps(Budget::Cost, 400, 4, n, 0.1), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, n, f64::NAN), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 0, n, 3.0), 400);
        }
        assert_eq!(child_steps(Budget::Cost, u64::MAX, 4, None, 4.0), u64::MAX);
    }

    #[test]
    fn the_cost_factor_is_the_median_member_s_cost_over_the_child_s() {
        // No members, or no cost known: 1.
        assert_eq!(cost_factor(100, [], 4), 1.0);
        assert_eq!(cost_factor(0, [100, 200], 4), 1.0);
        assert_eq!(cost_factor(100, [0, 0], 4), 1.0);
        // Odd count: the middle one (400) over 200.
        assert_eq!(cost_factor(200, [100, 400, 900], 4), 2.0);
        // Even count: the mean of the middle two (250) over 100.
        assert_eq!(cost_factor(100, [400, 100, 200, 300], 4), 2.5);
        // A costlier child than the median trains the base steps, never fewer.
        assert_eq!(cost_factor(1000, [100, 200, 300], 4), 1.0);
        // Capped.
        assert_eq!(cost_factor(1, [100, 200, 300], 4), 4.0);
        assert_eq!(cost_factor(1, [100, 200, 300], 0), 1.0);
    }

    #[test]
    fn the_stall_factor_doubles_after_each_window_without_a_new_best() {
        assert_eq!(stall_factor([], 3, 8), 1);
        // A new best every time: no stall.
        assert_eq!(stall_factor([0.1, 0.2, 0.3, 0.4, 0.5], 3, 8), 1);
        // Three births no better than 0.5 (ties included): doubled once.
        assert_eq!(stall_factor([0.5, 0.4, 0.5, 0.3], 3, 8), 2);
        // Two short of a second window.
        assert_eq!(stall_factor([0.5, 0.4, 0.5, 0.3, 0.1, 0.2], 3, 8), 2);
        assert_eq!(stall_factor([0.5, 0.4, 0.5, 0.3, 0.1, 0.2, 0.2], 3, 8), 4);
        // A new best restarts the window but keeps the factor.
        assert_eq!(stall_factor([0.5, 0.4, 0.4, 0.4, 0.6, 0.1, 0.1], 3, 8), 2);
        // Capped.
        assert_eq!(stall_factor(std::iter::repeat_n(0.5, 100), 3, 8), 8);
        assert_eq!(stall_factor(std::iter::repeat_n(0.5, 100), 3, 0), 1);
        assert_eq!(stall_factor(std::iter::repeat_n(0.5, 100), 0, 4), 4);
    }
}
