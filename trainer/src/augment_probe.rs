//! An augmentation probe before a long training (beyond the paper): a short copy of the
//! network with its genome's own augmentation gene and one with each other gene asked
//! for, each trained with a full decay of its own; the one that scores best on the
//! validation images decides the gene the long training runs with, and the long training
//! goes on from its weights.
//!
//! Why: a genome's augmentation gene was chosen by short trainings, which favour no
//! augmentation (it slows fitting), while long ones need it against over-fitting. Two
//! copies of a final training on a core each, one per gene, each get half the machine for
//! all of the time; a short trial of each on the whole machine, then the winner alone,
//! gives the winner most of it. The decisions here are plain functions;
//! [`crate::individual_training`] runs the copies.

use genome::AugmentGene;
use serde::{Deserialize, Serialize};

/// Most genes one probe may try besides the genome's own.
pub const MAX_ALTERNATIVES: usize = 3;

/// The genes a probe tries besides the genome's own, and how long each copy trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentProbe {
    /// Genes to try besides the genome's own (in this order; see [`choose`]).
    pub alternatives: Vec<AugmentGene>,
    /// Seconds of SGD each copy trains.
    pub seconds: f64,
    /// How far (a share: 0.01 is one point) the copy with the genome's own gene must
    /// score above the best alternative to be kept: short copies favour less
    /// augmentation than the long training that follows will need, so the alternative
    /// wins near-ties (0: the better score wins, a tie the genome's own).
    #[serde(default)]
    pub margin: f64,
}

impl AugmentProbe {
    /// The genes the probe's copies train with, the genome's own (`own`) first, then each
    /// alternative that differs from it and from those before it; a genome without a
    /// gene trains with the experiment's augmentation (`configured`), which counts as its
    /// own. Fewer than two: nothing to choose.
    pub fn candidates(
        &self,
        own: Option<AugmentGene>,
        configured: AugmentGene,
    ) -> Vec<AugmentGene> {
        let mut genes = vec![own.unwrap_or(configured)];
        for gene in &self.alternatives {
            if !genes.contains(gene) {
                genes.push(*gene);
            }
        }
        genes
    }

    /// Whether the probe has time to try anything (it still needs an alternative that
    /// differs from the genome's gene to have a choice, see [`AugmentProbe::candidates`]).
    pub fn is_active(&self) -> bool {
        !self.alternatives.is_empty() && self.seconds > 0.0
    }
}

/// The index of the gene a probe chooses from its copies' validation accuracies
/// (`scores[0]` for the genome's own gene, then the alternatives): the genome's own where
/// it scores more than `margin` above every alternative, otherwise the best alternative
/// (the first among equals). A score that is not a number (a copy that diverged scores 0
/// before it gets here) never wins; with no usable alternative the genome's own. `None`
/// for no scores.
pub fn choose(scores: &[f64], margin: f64) -> Option<usize> {
    let own = *scores.first()?;
    let best_alternative = crate::rate_probe::choose(&scores[1..])
        .map(|i| i + 1)
        .filter(|&i| !scores[i].is_nan());
    match best_alternative {
        Some(i) if own.is_nan() || own <= scores[i] + margin => Some(i),
        _ => Some(0),
    }
}

/// The learning-rate scale (of the genome's own rate) at which a probe's copies train
/// where they start from a judge's trained weights rather than from the network the
/// training goes on with: the training's own scale (`scale`, e.g. a rate probe's factor
/// chosen on fresh copies), at most 1. The judge's weights were trained at the genome's
/// own rate; above it they can be thrown far: in issue 11's session 44 both copies of a
/// judge at twice its rate lost 16 and 19 points (47.5 and 45.0% against the judge's
/// 64.0%, their losses above a constant guess's) and the probe chose between two wrecked
/// copies.
pub fn judge_lr_scale(scale: f64) -> f64 {
    scale.min(1.0)
}

/// What an augmentation probe found: the validation accuracy of each gene's short copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AugmentProbeReport {
    /// The genes tried, the genome's own first.
    pub genes: Vec<AugmentGene>,
    /// Each copy's validation accuracy (0 if it diverged).
    pub scores: Vec<f64>,
    /// Each copy's mean training loss over its last steps.
    pub losses: Vec<f64>,
    /// The gene the long training went on with.
    pub chosen: AugmentGene,
    /// Seconds the copies took, their validation included.
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: AugmentGene = AugmentGene {
        crop: true,
        flip: true,
    };
    const NO_CROP: AugmentGene = AugmentGene {
        crop: false,
        flip: true,
    };

    #[test]
    fn a_judges_copies_train_at_the_scale_given_but_never_above_the_genomes_own_rate() {
        assert_eq!(judge_lr_scale(0.25), 0.25);
        assert_eq!(judge_lr_scale(1.0), 1.0);
        assert_eq!(judge_lr_scale(2.0), 1.0);
        assert_eq!(judge_lr_scale(4.0), 1.0);
    }

    #[test]
    fn the_genomes_own_gene_comes_first_and_no_gene_is_tried_twice() {
        let p = AugmentProbe {
            alternatives: vec![ON, NO_CROP, ON],
            seconds: 10.0,
            margin: 0.0,
        };
        assert_eq!(p.candidates(Some(NO_CROP), ON), vec![NO_CROP, ON]);
        // An alternative equal to the genome's own gene leaves nothing to choose.
        let same = AugmentProbe {
            alternatives: vec![ON],
            seconds: 10.0,
            margin: 0.0,
        };
        assert_eq!(same.candidates(Some(ON), NO_CROP), vec![ON]);
        // No gene: the experiment's augmentation is the genome's own.
        assert_eq!(same.candidates(None, ON), vec![ON]);
        assert_eq!(same.candidates(None, NO_CROP), vec![NO_CROP, ON]);
    }

    #[test]
    fn the_genomes_own_gene_is_kept_only_where_it_wins_by_more_than_the_margin() {
        assert_eq!(choose(&[0.70, 0.69], 0.01), Some(1));
        assert_eq!(choose(&[0.70, 0.70], 0.0), Some(1));
        assert_eq!(choose(&[0.72, 0.70], 0.01), Some(0));
        assert_eq!(choose(&[0.72, 0.70], 0.0), Some(0));
        // The best alternative, the first among equals.
        assert_eq!(choose(&[0.5, 0.6, 0.7, 0.7], 0.01), Some(2));
        // Not a number never wins.
        assert_eq!(choose(&[0.5, f64::NAN], 0.01), Some(0));
        assert_eq!(choose(&[f64::NAN, 0.1], 0.01), Some(1));
        assert_eq!(choose(&[f64::NAN, f64::NAN], 0.01), Some(0));
        // Only the genome's own: nothing to choose.
        assert_eq!(choose(&[0.5], 0.01), Some(0));
        assert_eq!(choose(&[], 0.01), None);
    }

    #[test]
    fn a_probe_without_alternatives_or_time_is_off() {
        let probe = |alternatives: Vec<AugmentGene>, seconds| AugmentProbe {
            alternatives,
            seconds,
            margin: 0.0,
        };
        assert!(!probe(vec![], 10.0).is_active());
        assert!(!probe(vec![ON], 0.0).is_active());
        assert!(probe(vec![ON], 1.0).is_active());
    }
}
