//! How many SGD steps a child trains: the paper's fixed count for every individual, or
//! (beyond the paper) a budget that follows the lineage: a parent that keeps winning
//! tournaments has shown it is worth more, so each further child of it trains longer,
//! up to a cap. A plain function of the config and the parent's record of children.

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
}

impl Budget {
    /// Whether this is the paper's fixed budget.
    pub fn is_fixed(&self) -> bool {
        *self == Budget::Fixed
    }
}

/// The steps of a child whose parent had `earlier_children` children before it (`None`
/// for an initial individual), with `base` steps and a cap of `max_factor` times `base`.
pub fn child_steps(
    budget: Budget,
    base: u64,
    max_factor: u32,
    earlier_children: Option<usize>,
) -> u64 {
    match (budget, earlier_children) {
        (Budget::Fixed, _) | (_, None) => base,
        (Budget::Lineage, Some(n)) => {
            let factor = (n as u64 + 1).min(u64::from(max_factor.max(1)));
            base.saturating_mul(factor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_budget_is_the_paper_s() {
        for n in [None, Some(0), Some(7)] {
            assert_eq!(child_steps(Budget::Fixed, 400, 4, n), 400);
        }
    }

    #[test]
    fn the_lineage_budget_grows_with_the_parent_s_children_up_to_its_cap() {
        assert_eq!(child_steps(Budget::Lineage, 400, 4, None), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(0)), 400);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(1)), 800);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(2)), 1200);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(3)), 1600);
        assert_eq!(child_steps(Budget::Lineage, 400, 4, Some(50)), 1600);
        assert_eq!(child_steps(Budget::Lineage, 400, 0, Some(5)), 400);
        assert_eq!(child_steps(Budget::Lineage, u64::MAX, 4, Some(5)), u64::MAX);
    }
}
