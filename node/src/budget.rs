//! How many SGD steps a child trains: the paper's fixed count for every individual, or
//! (beyond the paper) a budget that follows the lineage (a parent that keeps winning
//! tournaments has shown it is worth more, so each further child of it trains longer,
//! up to a cap), or one that grows when the search stalls (short trainings favour
//! networks that learn fast over those that end best: once they stop finding better
//! ones, every child trains longer). Plain functions of the config and the records.

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
}

impl Budget {
    /// Whether this is the paper's fixed budget.
    pub fn is_fixed(&self) -> bool {
        *self == Budget::Fixed
    }
}

/// The steps of a child whose parent had `earlier_children` children before it (`None`
/// for an initial individual), with `base` steps and a cap of `max_factor` times `base`;
/// `stall` is the stall budget's factor now ([`stall_factor`]; ignored by the others).
pub fn child_steps(
    budget: Budget,
    base: u64,
    max_factor: u32,
    earlier_children: Option<usize>,
    stall: u32,
) -> u64 {
    let cap = u64::from(max_factor.max(1));
    match (budget, earlier_children) {
        (Budget::Fixed, _) => base,
        (Budget::Stall, _) => base.saturating_mul(u64::from(stall.max(1)).min(cap)),
        (Budget::Lineage, None) => base,
        (Budget::Lineage, Some(n)) => base.saturating_mul((n as u64 + 1).min(cap)),
    }
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
            assert_eq!(child_steps(Budget::Fixed, 400, 4, n, 8), 400);
        }
    }

    #[test]
    fn the_lineage_budget_grows_with_the_parent_s_children_up_to_its_cap() {
        assert_eq!(child_steps(Budget::Lineage, 400, 4, None, 4), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(0), 4), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(1), 4), 800);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(2), 4), 1200);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(3), 4), 1600);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(50), 4), 1600);
        assert_eq!(child_steps(Budget::Lineage, 400, 0, Some(5), 4), 400);
        assert_eq!(
            child_steps(Budget::Lineage, u64::MAX, 4, Some(5), 4),
            u64::MAX
        );
    }

    #[test]
    fn the_stall_budget_multiplies_every_child_by_its_factor_up_to_its_cap() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Stall, 400, 8, n, 1), 400);
            assert_eq!(child_steps(Budget::Stall, 400, 8, n, 4), 1600);
            assert_eq!(child_steps(Budget::Stall, 400, 2, n, 4), 800);
            assert_eq!(child_steps(Budget::Stall, 400, 8, n, 0), 400);
        }
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
