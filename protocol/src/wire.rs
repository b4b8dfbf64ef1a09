//! The messages nodes exchange, and their bounded, versioned encoding.
//!
//! Every message travels as a frame: the magic bytes `EVO`, a protocol version (u16, big
//! endian), a kind byte, then the bincode body. [`decode`] checks the frame's size
//! against the kind's cap *before* reading anything, then the magic, version and kind,
//! decodes with an allocation limit, rejects trailing bytes, and validates what came
//! (genomes against the genome crate's limits, string lengths, counts, the weights'
//! checksum). So bytes from a stranger become a valid message or a [`WireError`], never
//! a panic or an unbounded allocation.
//!
//! - [`Announcement`] (gossipsub, small: under [`MAX_ANNOUNCEMENT_BYTES`]): an island's
//!   size, its best individual and its newest one, without weights.
//! - [`Request`] / [`Response`] (request-response, up to [`MAX_MIGRATION_BYTES`]): the
//!   hello that checks a joining node's config, migrations of trained individuals with
//!   their weights, and pulls of migrants by a node that joins.

use genome::{Genome, Limits, Mutation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The protocol version this build speaks (2: announcements carry the island's FLOPs).
pub const VERSION: u16 = 2;
/// The frame's magic bytes.
pub const MAGIC: [u8; 3] = *b"EVO";
/// Bytes before the body: magic, version, kind.
pub const HEADER_BYTES: usize = 6;
/// The largest announcement (gossipsub's own cap is 64 KiB).
pub const MAX_ANNOUNCEMENT_BYTES: usize = 60 * 1024;
/// The largest request or response (a migration of trained individuals).
pub const MAX_MIGRATION_BYTES: usize = 256 << 20;
/// The most migrants in one message.
pub const MAX_MIGRANTS: usize = 64;
/// The longest string field (ids, names, reasons, JSON metadata).
pub const MAX_TEXT: usize = 64 * 1024;

/// Why bytes are not a valid message.
#[derive(Debug, Error, PartialEq)]
pub enum WireError {
    /// Larger than the cap of its kind; nothing was read.
    #[error("a {kind} of {len} bytes exceeds the {cap}-byte cap")]
    TooLarge {
        /// The kind expected.
        kind: &'static str,
        /// The frame's size.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// Not an evo frame (too short or wrong magic).
    #[error("not an evo message")]
    NotAFrame,
    /// Another protocol version.
    #[error("protocol version {theirs} (this node speaks {ours})")]
    Version {
        /// Ours.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// A frame of another kind than expected.
    #[error("expected a {expected}, got message kind {got}")]
    WrongKind {
        /// The kind expected.
        expected: &'static str,
        /// The kind byte found.
        got: u8,
    },
    /// The body is not a bincode message of that kind.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// The kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The message decoded but breaks a rule (an invalid genome, a bad checksum, a count
    /// or length over its cap, a fitness out of range).
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// The kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a node knows of one individual, without its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Its id on the island that trained it.
    pub id: u64,
    /// The island (node id) that trained it.
    pub island: String,
    /// Its genome.
    pub genome: Genome,
    /// Validation accuracy, 0 to 1.
    pub fitness: f64,
    /// Its parent's id (on the island that trained the parent).
    pub parent: Option<u64>,
    /// The mutations that made it.
    pub mutations: Vec<Mutation>,
    /// FLOPs spent training and validating it.
    pub flops: u64,
    /// When it was born, Unix milliseconds.
    pub born_at_ms: u64,
}

/// Gossip: an island tells the experiment how it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The experiment id (name and fitness fingerprint).
    pub experiment: String,
    /// The sending island (node id).
    pub island: String,
    /// When it was sent, Unix milliseconds.
    pub sent_at_ms: u64,
    /// Live individuals on the island.
    pub population: u32,
    /// Individuals it has trained.
    pub trained: u64,
    /// FLOPs it has spent training and validating.
    pub flops: f64,
    /// Its best live individual.
    pub best: Option<Summary>,
    /// Its newest individual, if it differs from the best.
    pub newborn: Option<Summary>,
}

/// A trained individual with its weights, moving to another island.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migrant {
    /// What is known of it.
    pub summary: Summary,
    /// Its model metadata (`model.json`: normalization, steps, scores).
    pub meta_json: String,
    /// Its weights (`weights.safetensors`).
    pub weights: Vec<u8>,
    /// SHA-256 of `weights`.
    pub checksum: [u8; 32],
}

impl Migrant {
    /// A migrant carrying `weights`, with their checksum.
    pub fn new(summary: Summary, meta_json: String, weights: Vec<u8>) -> Migrant {
        let checksum = checksum(&weights);
        Migrant {
            summary,
            meta_json,
            weights,
            checksum,
        }
    }
}

/// SHA-256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A request from one node to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// A node joining (or meeting a peer) presents its fitness settings.
    Hello {
        /// Its experiment id.
        experiment: String,
        /// Its fitness fingerprint.
        fingerprint: String,
        /// Its fitness settings (JSON), to explain a refusal.
        settings_json: String,
        /// Its node id.
        island: String,
    },
    /// Migrants for the receiver's shard.
    Migrate {
        /// The sending island.
        island: String,
        /// The migrants.
        migrants: Vec<Migrant>,
    },
    /// Asks for up to `count` migrants (a node that joins seeds its shard so).
    Pull {
        /// The asking island.
        island: String,
        /// How many.
        count: u32,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a hello: the receiver's settings, and whether they match.
    Hello {
        /// The receiver's experiment id.
        experiment: String,
        /// The receiver's fitness fingerprint.
        fingerprint: String,
        /// The receiver's fitness settings (JSON).
        settings_json: String,
        /// Whether the fingerprints match.
        compatible: bool,
    },
    /// Which migrants were admitted (ids as sent).
    Admitted {
        /// Their ids.
        ids: Vec<u64>,
    },
    /// Migrants for a pull.
    Migrants {
        /// The migrants.
        migrants: Vec<Migrant>,
    },
    /// The request was refused.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A message with a frame: its kind byte, name and size cap.
pub trait Message: Serialize + for<'de> Deserialize<'de> {
    /// The kind byte in the frame.
    const KIND: u8;
    /// Its name in errors.
    const NAME: &'static str;
    /// The largest frame accepted.
    const CAP: usize;
    /// Checks what decoding alone cannot: genomes, lengths, counts, checksums.
    fn check(&self, limits: &Limits) -> Result<(), String>;
}

fn check_text(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT {
        return Err(format!("{what} of {} bytes exceeds {MAX_TEXT}", s.len()));
    }
    Ok(())
}

fn check_summary(s: &Summary, limits: &Limits) -> Result<(), String> {
    check_text("island", &s.island)?;
    if !(0.0..=1.0).contains(&s.fitness) {
        return Err(format!("fitness {} is not in 0..=1", s.fitness));
    }
    if s.mutations.len() > 1000 {
        return Err(format!("{} mutations", s.mutations.len()));
    }
    s.genome
        .analyze(limits)
        .map(|_| ())
        .map_err(|e| format!("individual {}: {e}", s.id))
}

fn check_migrants(migrants: &[Migrant], limits: &Limits) -> Result<(), String> {
    if migrants.len() > MAX_MIGRANTS {
        return Err(format!(
            "{} migrants (at most {MAX_MIGRANTS})",
            migrants.len()
        ));
    }
    for m in migrants {
        check_summary(&m.summary, limits)?;
        check_text("metadata", &m.meta_json)?;
        if checksum(&m.weights) != m.checksum {
            return Err(format!(
                "the weights of individual {} do not match their checksum",
                m.summary.id
            ));
        }
    }
    Ok(())
}

impl Message for Announcement {
    const KIND: u8 = 1;
    const NAME: &'static str = "announcement";
    const CAP: usize = MAX_ANNOUNCEMENT_BYTES;

    fn check(&self, limits: &Limits) -> Result<(), String> {
        check_text("experiment", &self.experiment)?;
        check_text("island", &self.island)?;
        if !(self.flops.is_finite() && self.flops >= 0.0) {
            return Err(format!("{} FLOPs is not a count", self.flops));
        }
        for s in self.best.iter().chain(&self.newborn) {
            check_summary(s, limits)?;
        }
        Ok(())
    }
}

impl Message for Request {
    const KIND: u8 = 2;
    const NAME: &'static str = "request";
    const CAP: usize = MAX_MIGRATION_BYTES;

    fn check(&self, limits: &Limits) -> Result<(), String> {
        match self {
            Request::Hello {
                experiment,
                fingerprint,
                settings_json,
                island,
            } => {
                check_text("experiment", experiment)?;
                check_text("fingerprint", fingerprint)?;
                check_text("settings", settings_json)?;
                check_text("island", island)
            }
            Request::Migrate { island, migrants } => {
                check_text("island", island)?;
                check_migrants(migrants, limits)
            }
            Request::Pull { island, count } => {
                check_text("island", island)?;
                if *count as usize > MAX_MIGRANTS {
                    return Err(format!("a pull of {count} (at most {MAX_MIGRANTS})"));
                }
                Ok(())
            }
        }
    }
}

impl Message for Response {
    const KIND: u8 = 3;
    const NAME: &'static str = "response";
    const CAP: usize = MAX_MIGRATION_BYTES;

    fn check(&self, limits: &Limits) -> Result<(), String> {
        match self {
            Response::Hello {
                experiment,
                fingerprint,
                settings_json,
                ..
            } => {
                check_text("experiment", experiment)?;
                check_text("fingerprint", fingerprint)?;
                check_text("settings", settings_json)
            }
            Response::Admitted { ids } => {
                if ids.len() > MAX_MIGRANTS {
                    return Err(format!("{} ids", ids.len()));
                }
                Ok(())
            }
            Response::Migrants { migrants } => check_migrants(migrants, limits),
            Response::Refused { reason } => check_text("reason", reason),
        }
    }
}

fn config<const LIMIT: usize>() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes a message as a frame. Fails if the frame would exceed the kind's cap (the
/// receiver would refuse it).
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, WireError> {
    let mut frame = Vec::with_capacity(256);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_be_bytes());
    frame.push(M::KIND);
    bincode::serde::encode_into_std_write(message, &mut frame, bincode::config::standard())
        .map_err(|e| WireError::Malformed {
            kind: M::NAME,
            reason: e.to_string(),
        })?;
    if frame.len() > M::CAP {
        return Err(WireError::TooLarge {
            kind: M::NAME,
            len: frame.len(),
            cap: M::CAP,
        });
    }
    Ok(frame)
}

/// Decodes and validates a frame of kind `M` (see the module documentation).
pub fn decode<M: Message>(frame: &[u8], limits: &Limits) -> Result<M, WireError> {
    if frame.len() > M::CAP {
        return Err(WireError::TooLarge {
            kind: M::NAME,
            len: frame.len(),
            cap: M::CAP,
        });
    }
    if frame.len() < HEADER_BYTES || frame[..3] != MAGIC {
        return Err(WireError::NotAFrame);
    }
    let version = u16::from_be_bytes([frame[3], frame[4]]);
    if version != VERSION {
        return Err(WireError::Version {
            ours: VERSION,
            theirs: version,
        });
    }
    if frame[5] != M::KIND {
        return Err(WireError::WrongKind {
            expected: M::NAME,
            got: frame[5],
        });
    }
    let body = &frame[HEADER_BYTES..];
    let malformed = |reason: String| WireError::Malformed {
        kind: M::NAME,
        reason,
    };
    // The decoder may allocate no more than the frame could hold.
    let (message, read): (M, usize) = if M::CAP <= MAX_ANNOUNCEMENT_BYTES {
        bincode::serde::decode_from_slice(body, config::<MAX_ANNOUNCEMENT_BYTES>())
    } else {
        bincode::serde::decode_from_slice(body, config::<MAX_MIGRATION_BYTES>())
    }
    .map_err(|e| malformed(e.to_string()))?;
    if read != body.len() {
        return Err(malformed(format!(
            "{} unexpected bytes at the end",
            body.len() - read
        )));
    }
    message.check(limits).map_err(|reason| WireError::Invalid {
        kind: M::NAME,
        reason,
    })?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genome::{InputShape, ReferenceNet};
    use proptest::prelude::*;

    fn summary(id: u64) -> Summary {
        Summary {
            id,
            island: "12D3KooWabc".into(),
            genome: ReferenceNet::Small.genome(InputShape::CIFAR, 10),
            fitness: 0.41,
            parent: Some(id.saturating_sub(1)),
            mutations: vec![Mutation::InsertConvolution],
            flops: 123_456_789,
            born_at_ms: 1_700_000_000_000,
        }
    }

    fn announcement() -> Announcement {
        Announcement {
            experiment: "quick-cifar10-abc".into(),
            island: "12D3KooWabc".into(),
            sent_at_ms: 5,
            population: 20,
            trained: 300,
            flops: 4.5e12,
            best: Some(summary(7)),
            newborn: Some(summary(9)),
        }
    }

    fn migration() -> Request {
        Request::Migrate {
            island: "a".into(),
            migrants: vec![Migrant::new(
                summary(3),
                "{}".into(),
                (0..100_000u32).map(|i| (i % 251) as u8).collect(),
            )],
        }
    }

    #[test]
    fn messages_round_trip() {
        let limits = Limits::default();
        let a = announcement();
        let frame = encode(&a).unwrap();
        assert!(frame.len() < MAX_ANNOUNCEMENT_BYTES / 4, "{}", frame.len());
        assert_eq!(decode::<Announcement>(&frame, &limits).unwrap(), a);
        let m = migration();
        assert_eq!(decode::<Request>(&encode(&m).unwrap(), &limits).unwrap(), m);
        for r in [
            Response::Admitted { ids: vec![1, 2] },
            Response::Refused {
                reason: "full".into(),
            },
            Response::Hello {
                experiment: "e".into(),
                fingerprint: "f".into(),
                settings_json: "{}".into(),
                compatible: true,
            },
        ] {
            assert_eq!(
                decode::<Response>(&encode(&r).unwrap(), &limits).unwrap(),
                r
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_decoding() {
        let big = vec![0u8; MAX_ANNOUNCEMENT_BYTES + 1];
        assert!(matches!(
            decode::<Announcement>(&big, &Limits::default()),
            Err(WireError::TooLarge { .. })
        ));
        // An announcement too large to send is refused by the sender too.
        let mut a = announcement();
        a.island = "x".repeat(MAX_ANNOUNCEMENT_BYTES);
        assert!(matches!(encode(&a), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn frames_of_another_version_kind_or_magic_are_refused() {
        let limits = Limits::default();
        let frame = encode(&announcement()).unwrap();
        let mut other = frame.clone();
        other[4] = 99;
        assert!(matches!(
            decode::<Announcement>(&other, &limits),
            Err(WireError::Version { theirs: 99, .. })
        ));
        assert!(matches!(
            decode::<Request>(&frame, &limits),
            Err(WireError::WrongKind { .. })
        ));
        let mut bad = frame.clone();
        bad[0] = b'X';
        assert_eq!(
            decode::<Announcement>(&bad, &limits),
            Err(WireError::NotAFrame)
        );
        assert_eq!(
            decode::<Announcement>(&frame[..4], &limits),
            Err(WireError::NotAFrame)
        );
    }

    #[test]
    fn every_truncation_and_trailing_bytes_are_refused() {
        let limits = Limits::default();
        let frame = encode(&announcement()).unwrap();
        for len in 0..frame.len() {
            assert!(decode::<Announcement>(&frame[..len], &limits).is_err());
        }
        let mut longer = frame.clone();
        longer.push(0);
        assert!(matches!(
            decode::<Announcement>(&longer, &limits),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn tampered_weights_and_invalid_content_are_refused() {
        let limits = Limits::default();
        let Request::Migrate {
            island,
            mut migrants,
        } = migration()
        else {
            unreachable!()
        };
        migrants[0].weights[10] ^= 1;
        let tampered = Request::Migrate {
            island: island.clone(),
            migrants: migrants.clone(),
        };
        let err = decode::<Request>(&encode(&tampered).unwrap(), &limits).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // A genome outside the limits.
        let mut a = announcement();
        a.best.as_mut().unwrap().genome.learning_rate = 1e9;
        assert!(matches!(
            decode::<Announcement>(&encode(&a).unwrap(), &limits),
            Err(WireError::Invalid { .. })
        ));
        // A fitness out of range, FLOPs that are no count; a pull too large.
        let mut a = announcement();
        a.newborn.as_mut().unwrap().fitness = f64::NAN;
        assert!(decode::<Announcement>(&encode(&a).unwrap(), &limits).is_err());
        for flops in [f64::NAN, -1.0, f64::INFINITY] {
            let mut a = announcement();
            a.flops = flops;
            assert!(decode::<Announcement>(&encode(&a).unwrap(), &limits).is_err());
        }
        let pull = Request::Pull {
            island,
            count: 1_000_000,
        };
        assert!(decode::<Request>(&encode(&pull).unwrap(), &limits).is_err());
    }

    #[test]
    fn a_length_prefix_claiming_too_much_is_refused_without_allocating_it() {
        let limits = Limits::default();
        // A pull whose island string claims 2^60 bytes.
        let mut frame = MAGIC.to_vec();
        frame.extend_from_slice(&VERSION.to_be_bytes());
        frame.push(Request::KIND);
        frame.push(2); // variant Pull
        frame.push(253); // u64 length follows
        frame.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode::<Request>(&frame, &limits),
            Err(WireError::Malformed { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let limits = Limits::default();
            let _ = decode::<Announcement>(&bytes, &limits);
            let _ = decode::<Request>(&bytes, &limits);
            let _ = decode::<Response>(&bytes, &limits);
        }

        #[test]
        fn corrupted_frames_are_refused_or_valid(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let limits = Limits::default();
            let mut frame = encode(&announcement()).unwrap();
            for (i, v) in flips {
                let at = i.index(frame.len());
                frame[at] ^= v | 1;
            }
            if let Ok(a) = decode::<Announcement>(&frame, &limits) {
                prop_assert!(a.check(&limits).is_ok());
            }
        }
    }
}
