//! Serialization: JSON for people and files, bincode for the wire. Decoding checks the
//! size before reading, bounds what the decoder may allocate, rejects trailing bytes and
//! validates the result, so a genome from a stranger is either valid or an error.

use crate::error::GenomeError;
use crate::graph::Genome;
use crate::limits::Limits;
use thiserror::Error;

/// Largest bincode-encoded genome accepted (well under gossipsub's 64 KiB message cap).
pub const MAX_WIRE_BYTES: usize = 32 * 1024;

/// Largest JSON genome accepted.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// Why bytes could not become a genome.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The input is larger than the cap.
    #[error("genome of {len} bytes exceeds the {max}-byte cap")]
    TooLarge {
        /// Input size.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The bytes are not a bincode genome (truncated, garbled, or claiming too much).
    #[error("malformed genome bytes: {0}")]
    Bincode(String),
    /// Bytes were left after the genome.
    #[error("{0} unexpected bytes after the genome")]
    TrailingBytes(usize),
    /// The text is not a JSON genome.
    #[error("malformed genome JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The genome decoded but breaks a rule.
    #[error("invalid genome: {0}")]
    Invalid(#[from] GenomeError),
}

fn wire_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_WIRE_BYTES>()
}

impl Genome {
    /// Encodes for the wire.
    pub fn to_bincode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("a genome always encodes")
    }

    /// Decodes wire bytes and validates the genome against `limits`.
    pub fn from_bincode(bytes: &[u8], limits: &Limits) -> Result<Genome, CodecError> {
        if bytes.len() > MAX_WIRE_BYTES {
            return Err(CodecError::TooLarge {
                len: bytes.len(),
                max: MAX_WIRE_BYTES,
            });
        }
        let (genome, read): (Genome, usize) =
            bincode::serde::decode_from_slice(bytes, wire_config())
                .map_err(|e| CodecError::Bincode(e.to_string()))?;
        if read != bytes.len() {
            return Err(CodecError::TrailingBytes(bytes.len() - read));
        }
        genome.analyze(limits)?;
        Ok(genome)
    }

    /// Pretty JSON, for people and files.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a genome always serializes")
    }

    /// Parses JSON and validates the genome against `limits`.
    pub fn from_json(text: &str, limits: &Limits) -> Result<Genome, CodecError> {
        if text.len() > MAX_JSON_BYTES {
            return Err(CodecError::TooLarge {
                len: text.len(),
                max: MAX_JSON_BYTES,
            });
        }
        let genome: Genome = serde_json::from_str(text)?;
        genome.analyze(limits)?;
        Ok(genome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::InputShape;
    use crate::reference::ReferenceNet;

    #[test]
    fn round_trips_are_exact() {
        let mut g = ReferenceNet::Mid.genome(InputShape::CIFAR, 100);
        g.learning_rate = 0.1 * 2f64.powf(0.123456789);
        let limits = Limits::default();
        assert_eq!(Genome::from_bincode(&g.to_bincode(), &limits).unwrap(), g);
        assert_eq!(Genome::from_json(&g.to_json(), &limits).unwrap(), g);
    }

    #[test]
    fn rejects_truncated_trailing_and_oversized_bytes() {
        let g = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let bytes = g.to_bincode();
        let limits = Limits::default();
        for cut in 0..bytes.len() {
            assert!(
                Genome::from_bincode(&bytes[..cut], &limits).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Genome::from_bincode(&longer, &limits),
            Err(CodecError::TrailingBytes(1))
        ));
        let huge = vec![0u8; MAX_WIRE_BYTES + 1];
        assert!(matches!(
            Genome::from_bincode(&huge, &limits),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_a_length_prefix_claiming_billions_of_vertices() {
        // InputShape (3 varints), classes, f64 rate, input and output ids, then the
        // vertices' length: 0xFD marks a u64 varint.
        let mut bytes = vec![32, 32, 3, 10];
        bytes.extend_from_slice(&0.1f64.to_le_bytes());
        bytes.extend_from_slice(&[0, 1, 0xFD]);
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Genome::from_bincode(&bytes, &Limits::default()),
            Err(CodecError::Bincode(_))
        ));
    }

    #[test]
    fn rejects_json_that_is_not_a_valid_genome() {
        let limits = Limits::default();
        assert!(matches!(
            Genome::from_json("{", &limits),
            Err(CodecError::Json(_))
        ));
        let mut g = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        if let crate::graph::EdgeOp::Conv(c) = &mut g.edges[0].op {
            c.channels = 4_000_000_000;
        }
        assert!(matches!(
            Genome::from_json(&g.to_json(), &limits),
            Err(CodecError::Invalid(GenomeError::BadChannels { .. }))
        ));
    }
}
