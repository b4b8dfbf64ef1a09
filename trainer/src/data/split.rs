//! Deterministic hold-out of a validation set from the training examples.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::DataError;

/// Splits the indices `0..len` into `(train_indices, validation_indices)`.
///
/// `validation` indices are chosen by a shuffle seeded with `seed` (ChaCha8), so the same
/// `(len, validation, seed)` always gives the same split. Both lists are sorted ascending
/// and together hold every index exactly once.
///
/// # Errors
/// [`DataError::BadValidationSize`] when `validation >= len` (no training examples left).
pub fn validation_split(
    len: usize,
    validation: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if validation >= len {
        return Err(DataError::BadValidationSize { len, validation });
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut train = order.split_off(validation);
    let mut held_out = order;
    train.sort_unstable();
    held_out.sort_unstable();
    Ok((train, held_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_split_is_deterministic_disjoint_and_sized() {
        let (train, val) = validation_split(100, 20, 7).unwrap();
        assert_eq!(train.len(), 80);
        assert_eq!(val.len(), 20);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(
            validation_split(100, 20, 7).unwrap(),
            (train.clone(), val.clone())
        );
        let (_, other) = validation_split(100, 20, 8).unwrap();
        assert_ne!(
            other, val,
            "a different seed should hold out different examples"
        );
        // Not simply the first or last examples.
        assert_ne!(val, (0..20).collect::<Vec<_>>());
        assert_ne!(val, (80..100).collect::<Vec<_>>());
    }

    #[test]
    fn validation_split_edge_sizes() {
        let (train, val) = validation_split(5, 0, 1).unwrap();
        assert_eq!(train, vec![0, 1, 2, 3, 4]);
        assert!(val.is_empty());
        assert!(matches!(
            validation_split(5, 5, 1),
            Err(DataError::BadValidationSize {
                len: 5,
                validation: 5
            })
        ));
        assert!(validation_split(0, 0, 1).is_err());
    }
}
