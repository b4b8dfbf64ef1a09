//! How often each mutation is drawn for a reproduction. The paper draws uniformly among
//! its eleven; beyond the paper an experiment may weight them, e.g. never draw
//! RESET-WEIGHTS when mutations preserve what the parent learned, or draw the mutations
//! that grow a network more often so that a short run reaches useful sizes.

use crate::mutation::Mutation;
use rand::seq::IndexedRandom;
use rand::Rng;
use thiserror::Error;

/// A weight for every mutation: the chance of drawing one is its weight over the sum of
/// the weights of the mutations that could be drawn (ALTER-AUGMENTATION only for genomes
/// with an augmentation gene). Every weight is 1 unless set (the paper's uniform draw).
#[derive(Debug, Clone, PartialEq)]
pub struct MutationWeights {
    weights: [f64; Mutation::WITH_AUGMENTATION.len()],
}

/// A weight that cannot be used.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum WeightsError {
    /// Negative, infinite or NaN.
    #[error("the weight of {mutation} must be a finite number at least 0, not {weight}")]
    Invalid {
        /// The mutation whose weight it is.
        mutation: Mutation,
        /// The weight given.
        weight: f64,
    },
    /// Every mutation of the paper weighted 0: nothing could ever be drawn.
    #[error("every mutation has weight 0: at least one of the paper's eleven must be drawable")]
    AllZero,
}

impl Default for MutationWeights {
    fn default() -> Self {
        MutationWeights::uniform()
    }
}

impl MutationWeights {
    /// Every mutation weighted 1: the paper's uniform draw.
    pub fn uniform() -> Self {
        MutationWeights {
            weights: [1.0; Mutation::WITH_AUGMENTATION.len()],
        }
    }

    /// Uniform but for the given weights; an error if a weight is negative or not finite,
    /// or if every one of the paper's eleven ends at 0.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (Mutation, f64)>,
    ) -> Result<Self, WeightsError> {
        let mut w = MutationWeights::uniform();
        for (mutation, weight) in pairs {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(WeightsError::Invalid { mutation, weight });
            }
            w.weights[Self::index(mutation)] = weight;
        }
        if Mutation::ALL.iter().all(|&m| w.weight(m) == 0.0) {
            return Err(WeightsError::AllZero);
        }
        Ok(w)
    }

    fn index(m: Mutation) -> usize {
        Mutation::WITH_AUGMENTATION
            .iter()
            .position(|&x| x == m)
            .expect("WITH_AUGMENTATION lists every mutation")
    }

    /// The weight of `m`.
    pub fn weight(&self, m: Mutation) -> f64 {
        self.weights[Self::index(m)]
    }

    /// Whether this is the paper's uniform draw.
    pub fn is_uniform(&self) -> bool {
        self.weights.iter().all(|&w| w == 1.0)
    }

    /// Draws one mutation among `candidates` by weight; `None` if all of theirs are 0.
    pub fn draw(&self, candidates: &[Mutation], rng: &mut impl Rng) -> Option<Mutation> {
        candidates
            .choose_weighted(rng, |&m| self.weight(m))
            .ok()
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::seeded_rng;
    use std::collections::BTreeMap;

    fn counts(w: &MutationWeights, candidates: &[Mutation], n: usize) -> BTreeMap<Mutation, usize> {
        let mut rng = seeded_rng(3);
        let mut c = BTreeMap::new();
        for _ in 0..n {
            *c.entry(w.draw(candidates, &mut rng).unwrap()).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn uniform_draws_every_candidate_about_equally() {
        let w = MutationWeights::uniform();
        assert!(w.is_uniform());
        let c = counts(&w, &Mutation::ALL, 22_000);
        assert_eq!(c.len(), 11);
        for (&m, &n) in &c {
            assert!((1700..2300).contains(&n), "{m}: {n} of 22000");
        }
    }

    #[test]
    fn a_zero_weight_is_never_drawn_and_a_double_one_twice_as_often() {
        let w = MutationWeights::from_pairs([
            (Mutation::ResetWeights, 0.0),
            (Mutation::InsertConvolution, 2.0),
        ])
        .unwrap();
        assert!(!w.is_uniform());
        let c = counts(&w, &Mutation::ALL, 24_000);
        assert!(!c.contains_key(&Mutation::ResetWeights));
        let insert = c[&Mutation::InsertConvolution] as f64;
        let identity = c[&Mutation::Identity] as f64;
        assert!(
            (1.7..2.3).contains(&(insert / identity)),
            "{insert} / {identity}"
        );
    }

    #[test]
    fn bad_weights_are_refused() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                MutationWeights::from_pairs([(Mutation::Identity, bad)]),
                Err(WeightsError::Invalid { .. })
            ));
        }
        let zero = Mutation::ALL.iter().map(|&m| (m, 0.0));
        assert_eq!(
            MutationWeights::from_pairs(zero),
            Err(WeightsError::AllZero)
        );
        // Zero for all but ALTER-AUGMENTATION is no better: a genome without the gene
        // could draw nothing.
        let zero = Mutation::ALL
            .iter()
            .map(|&m| (m, 0.0))
            .chain([(Mutation::AlterAugmentation, 5.0)]);
        assert_eq!(
            MutationWeights::from_pairs(zero),
            Err(WeightsError::AllZero)
        );
    }

    #[test]
    fn nothing_is_drawn_when_every_candidate_weighs_zero() {
        let w = MutationWeights::from_pairs([(Mutation::Identity, 0.0)]).unwrap();
        assert_eq!(w.draw(&[Mutation::Identity], &mut seeded_rng(1)), None);
    }
}
