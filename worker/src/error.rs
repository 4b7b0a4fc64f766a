//! The one error type of the worker library.

use std::path::PathBuf;

/// Everything that can stop a trial; `is_retryable` tells the coordinator whether another attempt
/// (perhaps on another worker) may succeed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("unknown architecture `{name}` (known: {known})")]
    UnknownArchitecture { name: String, known: String },

    #[error("unknown optimizer `{name}` (known: {known})")]
    UnknownOptimizer { name: String, known: String },

    #[error("invalid trial: {0}")]
    InvalidTrial(String),

    #[error("{path}: {reason}")]
    Dataset { path: PathBuf, reason: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Sal(#[from] sal::SalError),

    #[error(transparent)]
    Torch(#[from] tch::TchError),

    /// The coordinator refused this worker for good (a protocol mismatch, a bad address).
    #[error("coordinator {url}: {message}")]
    CoordinatorRefused { url: String, message: String },

    /// The coordinator could not be reached for longer than the worker waits.
    #[error("coordinator {url} unreachable for {seconds} s: {last_error}")]
    CoordinatorUnreachable { url: String, seconds: u64, last_error: String },
}

impl WorkerError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WorkerError::Io { path: path.into(), source }
    }

    /// Whether another attempt may succeed: lost peers and device errors (out of memory among
    /// them) are retryable; bad trials and bad data are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkerError::Sal(e) => e.is_retryable(),
            WorkerError::Torch(_) | WorkerError::Io { .. } => true,
            _ => false,
        }
    }
}
