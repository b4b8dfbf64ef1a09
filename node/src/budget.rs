//! How many SGD steps a child trains: the paper's fixed count for every individual, or
//! (beyond the paper) a budget that follows the lineage (a parent that keeps winning
//! tournaments has shown it is worth more, so each further child of it trains longer,
//! up to a cap), one that grows when the search stalls (short trainings favour
//! networks that learn fast over those that end best: once they stop finding better
//! ones, every child trains longer), or one that follows the child's cost (a network
//! cheaper than the population's typical member trains as many more steps as the same
//! compute buys, so that the search compares networks at equal compute and does not
//! favour costly ones that learn fast per step; optionally a costlier one as many fewer,
//! down to a floor). Plain functions of the config and the records.

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
    /// over its own, at least `training.budget_min_factor` and at most
    /// `training.budget_max_factor` times ([`cost_factor`]): a cheaper network gets the
    /// steps the typical member's compute would buy; a costlier one, with a floor of 1
    /// (the default), no fewer than `steps` (so that the first convolutions, far
    /// costlier than the linear start, are still judged fairly), with a floor below 1
    /// as many fewer as its cost asks, down to the floor (equal compute both ways).
    Cost,
}

impl Budget {
    /// Whether this is the paper's fixed budget.
    pub fn is_fixed(&self) -> bool {
        *self == Budget::Fixed
    }
}

/// The steps of a child whose parent had `earlier_children` children before it (`None`
/// for an initial individual), with `base` steps, a cap of `max_factor` times `base` and,
/// for the cost budget, a floor of `min_factor` times `base` (at most 1; not finite or
/// not above 0 counts as 1; never fewer than one step); `factor` is the stall or cost
/// budget's factor for this child ([`stall_factor`], [`cost_factor`]; ignored by the
/// others; a factor that is not finite counts as 1).
pub fn child_steps(
    budget: Budget,
    base: u64,
    max_factor: u32,
    min_factor: f64,
    earlier_children: Option<usize>,
    factor: f64,
) -> u64 {
    let cap = u64::from(max_factor.max(1));
    match (budget, earlier_children) {
        (Budget::Fixed, _) => base,
        (Budget::Stall | Budget::Cost, _) => {
            let floor = match budget {
                Budget::Cost => budget_floor(min_factor),
                _ => 1.0,
            };
            let factor = if factor.is_finite() { factor } else { 1.0 };
            let factor = factor.clamp(floor, cap as f64);
            // Exact for whole factors; a fractional one rounds to the nearest step.
            let steps = (base as f64 * factor).round();
            if steps >= u64::MAX as f64 {
                u64::MAX
            } else {
                // Never below `base` without a floor under 1 (exact however large), and
                // never below one step.
                let least = if floor >= 1.0 { base } else { 1 };
                (steps as u64).max(least)
            }
        }
        (Budget::Lineage, None) => base,
        (Budget::Lineage, Some(n)) => base.saturating_mul((n as u64 + 1).min(cap)),
    }
}

/// A cost budget's floor as it applies: `min_factor` where it is in (0, 1], else 1.
fn budget_floor(min_factor: f64) -> f64 {
    if min_factor.is_finite() && min_factor > 0.0 {
        min_factor.min(1.0)
    } else {
        1.0
    }
}

/// The cost budget's factor for a child of `own_flops` forward FLOPs per image, among
/// members of `member_flops`: their median over its own, at least `min_factor` (at most
/// 1; see [`child_steps`]) and at most `max_factor` (1 with no members or no cost known).
pub fn cost_factor(
    own_flops: u64,
    member_flops: impl IntoIterator<Item = u64>,
    max_factor: u32,
    min_factor: f64,
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
    (median / own_flops as f64).clamp(budget_floor(min_factor), f64::from(max_factor.max(1)))
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
            assert_eq!(child_steps(Budget::Fixed, 400, 4, 1.0, n, 8.0), 400);
        }
    }

    #[test]
    fn the_lineage_budget_grows_with_the_parent_s_children_up_to_its_cap() {
        assert_eq!(child_steps(Budget::Lineage, 400, 4, 1.0, None, 4.0), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, 1.0, Some(0), 4.0), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, 1.0, Some(1), 4.0), 800);
        assert_eq!(
            child_steps(Budget::Lineage, 400, 4, 1.0, Some(2), 4.0),
            1200
        );
        assert_eq!(
            child_steps(Budget::Lineage, 400, 4, 1.0, Some(3), 4.0),
            1600
        );
        assert_eq!(
            child_steps(Budget::Lineage, 400, 4, 1.0, Some(50), 4.0),
            1600
        );
        assert_eq!(child_steps(Budget::Lineage, 400, 0, 1.0, Some(5), 4.0), 400);
        assert_eq!(
            child_steps(Budget::Lineage, u64::MAX, 4, 1.0, Some(5), 4.0),
            u64::MAX
        );
    }

    #[test]
    fn the_stall_budget_multiplies_every_child_by_its_factor_up_to_its_cap() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Stall, 400, 8, 1.0, n, 1.0), 400);
            assert_eq!(child_steps(Budget::Stall, 400, 8, 1.0, n, 4.0), 1600);
            assert_eq!(child_steps(Budget::Stall, 400, 2, 1.0, n, 4.0), 800);
            assert_eq!(child_steps(Budget::Stall, 400, 8, 1.0, n, 0.0), 400);
        }
    }

    #[test]
    fn the_cost_budget_scales_by_its_factor_between_once_and_its_cap() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Cost, 400, 4, 1.0, n, 1.0), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 1.0, n, 2.5), 1000);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 1.0, n, 9.0), 1600);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 1.0, n, 0.1), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 1.0, n, f64::NAN), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 0, 1.0, n, 3.0), 400);
        }
        assert_eq!(
            child_steps(Budget::Cost, u64::MAX, 4, 1.0, None, 4.0),
            u64::MAX
        );
    }

    #[test]
    fn a_cost_budget_floor_below_one_gives_a_costlier_child_fewer_steps_down_to_it() {
        for n in [None, Some(0), Some(7)] {
            // Between the floor and the cap the factor is taken as it is.
            assert_eq!(child_steps(Budget::Cost, 400, 4, 0.25, n, 0.5), 200);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 0.25, n, 2.0), 800);
            // Below the floor: the floor.
            assert_eq!(child_steps(Budget::Cost, 400, 4, 0.25, n, 0.01), 100);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 0.25, n, 0.0), 100);
            // Not finite: 1.
            assert_eq!(child_steps(Budget::Cost, 400, 4, 0.25, n, f64::NAN), 400);
            // A floor that is no floor (not above 0, not finite) is 1; above 1 is 1.
            assert_eq!(child_steps(Budget::Cost, 400, 4, 0.0, n, 0.5), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, -1.0, n, 0.5), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, f64::NAN, n, 0.5), 400);
            assert_eq!(child_steps(Budget::Cost, 400, 4, 3.0, n, 0.5), 400);
            // Never fewer than one step.
            assert_eq!(child_steps(Budget::Cost, 1, 4, 0.01, n, 0.01), 1);
            // The stall budget has no floor below 1.
            assert_eq!(child_steps(Budget::Stall, 400, 4, 0.25, n, 0.5), 400);
            // Nor do the paper's and the lineage budget.
            assert_eq!(child_steps(Budget::Fixed, 400, 4, 0.25, n, 0.5), 400);
        }
        assert_eq!(
            child_steps(Budget::Lineage, 400, 4, 0.25, Some(0), 0.5),
            400
        );
    }

    #[test]
    fn the_cost_factor_of_a_costlier_child_goes_down_to_the_floor() {
        // The median member (200) over a child of 400: a half, above a floor of 0.25.
        assert_eq!(cost_factor(400, [100, 200, 300], 4, 0.25), 0.5);
        // Far costlier: the floor.
        assert_eq!(cost_factor(100_000, [100, 200, 300], 4, 0.25), 0.25);
        // A cheaper child is unchanged by the floor.
        assert_eq!(cost_factor(100, [100, 200, 300], 4, 0.25), 2.0);
        // No members, or no cost known: 1 whatever the floor.
        assert_eq!(cost_factor(100, [], 4, 0.25), 1.0);
        assert_eq!(cost_factor(0, [100], 4, 0.25), 1.0);
        // A floor that is no floor counts as 1.
        assert_eq!(cost_factor(400, [100, 200, 300], 4, 0.0), 1.0);
        assert_eq!(cost_factor(400, [100, 200, 300], 4, f64::INFINITY), 1.0);
    }

    #[test]
    fn the_cost_factor_is_the_median_member_s_cost_over_the_child_s() {
        // No members, or no cost known: 1.
        assert_eq!(cost_factor(100, [], 4, 1.0), 1.0);
        assert_eq!(cost_factor(0, [100, 200], 4, 1.0), 1.0);
        assert_eq!(cost_factor(100, [0, 0], 4, 1.0), 1.0);
        // Odd count: the middle one (400) over 200.
        assert_eq!(cost_factor(200, [100, 400, 900], 4, 1.0), 2.0);
        // Even count: the mean of the middle two (250) over 100.
        assert_eq!(cost_factor(100, [400, 100, 200, 300], 4, 1.0), 2.5);
        // A costlier child than the median trains the base steps, never fewer.
        assert_eq!(cost_factor(1000, [100, 200, 300], 4, 1.0), 1.0);
        // Capped.
        assert_eq!(cost_factor(1, [100, 200, 300], 4, 1.0), 4.0);
        assert_eq!(cost_factor(1, [100, 200, 300], 0, 1.0), 1.0);
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
