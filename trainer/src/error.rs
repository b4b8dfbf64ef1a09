//! The trainer's error type.

use std::path::PathBuf;
use thiserror::Error;

/// Why building, training, saving or loading a model failed.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The genome is invalid.
    #[error("invalid genome: {0}")]
    Genome(#[from] genome::GenomeError),
    /// The genome file could not be decoded.
    #[error("{path}: {source}")]
    GenomeFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: genome::CodecError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A weights file does not fit the genome it was saved with.
    #[error("{path}: {reason}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// The data set does not fit the genome or the settings.
    #[error("{0}")]
    Mismatch(String),
    /// The training was cancelled by its [`crate::train::Cancel`] before it ended.
    #[error("cancelled")]
    Cancelled,
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The trainer's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
