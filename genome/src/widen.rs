//! Widening a whole network for a long training (beyond the paper): every convolution
//! that can double its channels exactly does, so that a network found by short
//! trainings, where cheap networks win, gets the capacity a long training can use
//! ("search small, train big": NASNet and DARTS train the cells they found wider than
//! they searched them). The wider network computes its parent's function before any
//! training: the new channels start fresh and unused
//! ([`crate::morphism::double_channels`]).

use crate::analysis::Analysis;
use crate::error::GenomeError;
use crate::graph::{Genome, Id};
use crate::limits::Limits;
use crate::morphism::{double_channels, TensorInit};

/// A network widened by [`widen`].
#[derive(Debug, Clone)]
pub struct Widened {
    /// The wider genome.
    pub genome: Genome,
    /// Its analysis (it is valid under the limits it was widened within).
    pub analysis: Analysis,
    /// How to initialize its tensors from the parent's so that it computes the parent's
    /// function (one directive per tensor).
    pub inits: Vec<TensorInit>,
    /// How many channel doublings were made (0: none could be).
    pub doublings: usize,
}

/// `parent` with the channels of every convolution that can widen exactly doubled,
/// `rounds` times over; a doubling that would leave `limits` (channels, FLOPs,
/// parameters) or cannot keep the function is skipped. An error only for a parent that
/// is not valid under `limits`.
pub fn widen(parent: &Genome, rounds: u32, limits: &Limits) -> Result<Widened, GenomeError> {
    let mut genome = parent.clone();
    let mut analysis = genome.analyze(limits)?;
    let mut inits: Vec<TensorInit> = Vec::new();
    let mut doublings = 0;
    for _ in 0..rounds {
        let convs: Vec<Id> = genome
            .edges
            .iter()
            .filter(|e| e.primary && e.op.conv().is_some())
            .map(|e| e.id)
            .collect();
        for id in convs {
            let mut wider = genome.clone();
            let Some(more) = double_channels(&mut wider, &analysis, id, limits.max_channels) else {
                continue;
            };
            let Ok(wider_analysis) = wider.analyze(limits) else {
                continue;
            };
            // A later directive for a tensor supersedes an earlier one: each grows the
            // parent's tensor to the latest shape.
            inits.retain(|i| more.iter().all(|m| m.name() != i.name()));
            inits.extend(more);
            genome = wider;
            analysis = wider_analysis;
            doublings += 1;
        }
    }
    Ok(Widened {
        genome,
        analysis,
        inits,
        doublings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::InputShape;
    use crate::reference::ReferenceNet;

    fn small() -> Genome {
        ReferenceNet::Small.genome(InputShape::CIFAR, 10)
    }

    fn channels(g: &Genome) -> Vec<u32> {
        g.edges
            .iter()
            .filter_map(|e| e.op.conv().map(|c| c.channels))
            .collect()
    }

    #[test]
    fn every_convolution_doubles_once_per_round() {
        let small = small();
        assert_eq!(channels(&small), vec![16, 32, 64]);
        let w = widen(&small, 1, &Limits::default()).unwrap();
        assert_eq!(channels(&w.genome), vec![32, 64, 128]);
        assert_eq!(w.doublings, 3);
        // One directive per tensor: three kernels, three batch norms' tensors, the head.
        let mut names: Vec<&str> = w.inits.iter().map(TensorInit::name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "{names:?}");
        assert!(names.contains(&"head.weight"), "{names:?}");
        assert!(crate::morphism::exact(&w.inits));
        let twice = widen(&small, 2, &Limits::default()).unwrap();
        assert_eq!(channels(&twice.genome), vec![64, 128, 256]);
        assert_eq!(twice.doublings, 6);
        // No rounds, no change.
        let none = widen(&small, 0, &Limits::default()).unwrap();
        assert_eq!(none.genome, small);
        assert!(none.inits.is_empty());
    }

    #[test]
    fn limits_stop_a_doubling_and_nothing_else() {
        let small = small();
        let limits = Limits {
            max_channels: 64,
            ..Limits::default()
        };
        let w = widen(&small, 1, &limits).unwrap();
        assert_eq!(channels(&w.genome), vec![32, 64, 64]);
        assert_eq!(w.doublings, 2);
        // A FLOPs cap the wider net would pass: nothing doubles.
        let cost = small
            .analyze(&Limits::default())
            .unwrap()
            .cost
            .forward_flops;
        let tight = Limits {
            max_flops: cost + 1,
            ..Limits::default()
        };
        let w = widen(&small, 1, &tight).unwrap();
        assert_eq!(w.genome, small);
        assert_eq!(w.doublings, 0);
    }

    #[test]
    fn the_linear_start_has_nothing_to_widen() {
        let g = Genome::initial(InputShape::CIFAR, 10);
        let w = widen(&g, 3, &Limits::default()).unwrap();
        assert_eq!(w.genome, g);
        assert_eq!(w.doublings, 0);
    }

    #[test]
    fn an_invalid_parent_is_an_error() {
        let small = small();
        let tiny = Limits {
            max_channels: 8,
            ..Limits::default()
        };
        assert!(widen(&small, 1, &tiny).is_err());
    }
}
