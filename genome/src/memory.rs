//! How much device memory training a genome takes, estimated from the genome alone (its
//! analysed shapes): the weights, their gradients and momentum buffers, the activations
//! a training step keeps for its backward pass, and the batch itself, all f32. A node
//! uses it to decide how many individuals train at once on a device.

use crate::analysis::Analysis;
use crate::graph::{EdgeOp, Genome, VertexKind};
use serde::{Deserialize, Serialize};

/// Bytes of one value (f32).
pub const BYTES_PER_VALUE: u64 = 4;

/// Where the memory of one training goes, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// The trainable parameters (and batch-norm running statistics).
    pub weights: u64,
    /// Their gradients.
    pub gradients: u64,
    /// The optimizer's momentum buffers.
    pub momentum: u64,
    /// Activations kept for the backward pass (every vertex's output, a convolution's
    /// output before it is reconciled and summed, a batch norm's input), and the
    /// gradient of the largest of them twice over, at the backward pass's peak.
    pub activations: u64,
    /// The batch of images, as loaded and augmented.
    pub batch: u64,
}

impl MemoryEstimate {
    /// The bytes of training `genome` (analysed as `analysis`) with batches of `batch`
    /// images.
    pub fn of(genome: &Genome, analysis: &Analysis, batch: u64) -> MemoryEstimate {
        let params = analysis.cost.params;
        let bn_stats: u64 = genome
            .vertices
            .iter()
            .filter(|v| v.kind == VertexKind::BnRelu && v.id != genome.input_vertex)
            .map(|v| 2 * analysis.vertex_shapes[&v.id].c as u64)
            .sum();
        let mut kept = 0u64;
        let mut largest = 0u64;
        for v in &genome.vertices {
            let n = analysis.vertex_shapes[&v.id].numel();
            largest = largest.max(n);
            let copies = match v.kind {
                // Its input and its output.
                VertexKind::BnRelu if v.id != genome.input_vertex => 2,
                _ => 1,
            };
            kept = kept.saturating_add(copies * n);
        }
        for e in &genome.edges {
            if matches!(e.op, EdgeOp::Conv(_)) {
                let n = analysis.edge_shapes[&e.id].numel();
                largest = largest.max(n);
                kept = kept.saturating_add(n);
            }
        }
        let image =
            (genome.input.height as u64) * genome.input.width as u64 * genome.input.channels as u64;
        let values = |n: u64| n.saturating_mul(BYTES_PER_VALUE);
        MemoryEstimate {
            weights: values(params + bn_stats),
            gradients: values(params),
            momentum: values(params),
            activations: values(kept.saturating_add(2 * largest).saturating_mul(batch)),
            // The images as loaded and as augmented, plus the labels.
            batch: values((2 * image + 1).saturating_mul(batch)),
        }
    }

    /// All of it, in bytes.
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.gradients)
            .saturating_add(self.momentum)
            .saturating_add(self.activations)
            .saturating_add(self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::InputShape;
    use crate::limits::Limits;
    use crate::reference::ReferenceNet;

    #[test]
    fn the_linear_classifier_is_counted_by_hand() {
        let g = Genome::initial(InputShape::CIFAR, 10);
        let a = g.analyze(&Limits::default()).unwrap();
        let m = MemoryEstimate::of(&g, &a, 50);
        let params = 3072 * 10 + 10;
        assert_eq!(m.weights, 4 * params);
        assert_eq!((m.gradients, m.momentum), (4 * params, 4 * params));
        // Input and output vertex (both 3072 values), and twice the largest of them.
        assert_eq!(m.activations, 4 * (3072 * 2 + 2 * 3072) * 50);
        assert_eq!(m.batch, 4 * (2 * 3072 + 1) * 50);
        assert_eq!(
            m.total(),
            m.weights + m.gradients + m.momentum + m.activations + m.batch
        );
    }

    #[test]
    fn bigger_nets_and_batches_take_more() {
        let limits = Limits::default();
        let at = |net: ReferenceNet, batch| {
            let g = net.genome(InputShape::CIFAR, 10);
            let a = g.analyze(&limits).unwrap();
            MemoryEstimate::of(&g, &a, batch).total()
        };
        assert!(at(ReferenceNet::Linear, 50) < at(ReferenceNet::Small, 50));
        assert!(at(ReferenceNet::Small, 50) < at(ReferenceNet::Mid, 50));
        assert!(at(ReferenceNet::Mid, 50) < at(ReferenceNet::Large, 50));
        assert!(at(ReferenceNet::Mid, 50) < at(ReferenceNet::Mid, 100));
        // The mid net at batch 50: tens of megabytes, not gigabytes.
        let mid = at(ReferenceNet::Mid, 50);
        assert!((10 << 20..1 << 30).contains(&mid), "{mid}");
    }
}
