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

    /// A pretrained weights file that cannot be read or does not fit the model.
    #[error("pretrained weights {path}: {reason}")]
    Pretrained { path: PathBuf, reason: String },

    #[error("invalid trial: {0}")]
    InvalidTrial(String),

    /// A field of the trial definition holds a value the worker cannot run; `field` is its
    /// dotted path in the trial file (`dataset.options.val_fraction`).
    #[error("`{field}`: {reason}")]
    InvalidField { field: String, reason: String },

    /// A checkpoint that cannot be resumed from (another trial's, or damaged).
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    /// A replica's thread died; libtorch reports most failures (out of memory, a shape that does
    /// not fit the model) this way.
    #[error("rank {rank} failed: {message}")]
    RankFailed { rank: usize, message: String },

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

impl From<common::SpecError> for WorkerError {
    fn from(error: common::SpecError) -> Self {
        match error {
            common::SpecError::InvalidField { field, reason } => WorkerError::InvalidField { field, reason },
        }
    }
}

impl From<common::layout::LayoutError> for WorkerError {
    fn from(error: common::layout::LayoutError) -> Self {
        match error {
            common::layout::LayoutError::Invalid { path, reason } => WorkerError::Dataset { path, reason },
            common::layout::LayoutError::Io { path, source } => WorkerError::Io { path, source },
            common::layout::LayoutError::Spec(spec) => spec.into(),
        }
    }
}

impl From<common::weights_manifest::WeightsError> for WorkerError {
    fn from(e: common::weights_manifest::WeightsError) -> Self {
        WorkerError::Pretrained { path: e.path, reason: e.reason }
    }
}

impl WorkerError {
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        WorkerError::InvalidField { field: field.into(), reason: reason.into() }
    }

    pub fn dataset(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        WorkerError::Dataset { path: path.into(), reason: reason.into() }
    }

    /// The trial-file field this error is about, when it is about one (the CLI turns it into a
    /// line number).
    pub fn field_path(&self) -> Option<&str> {
        match self {
            WorkerError::UnknownArchitecture { .. } => Some("architecture"),
            WorkerError::UnknownOptimizer { .. } => Some("optimizer"),
            WorkerError::InvalidField { field, .. } => Some(field),
            WorkerError::Dataset { .. } => Some("dataset.root"),
            WorkerError::Pretrained { .. } => Some("pretrained"),
            WorkerError::Sal(sal::SalError::InvalidConfig { .. }) => Some("sal"),
            _ => None,
        }
    }

    /// Whether the trial definition or its data is at fault (the CLI exits with 2), rather than
    /// the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            WorkerError::UnknownArchitecture { .. }
                | WorkerError::UnknownOptimizer { .. }
                | WorkerError::InvalidTrial(_)
                | WorkerError::InvalidField { .. }
                | WorkerError::Dataset { .. }
                | WorkerError::Pretrained { .. }
                | WorkerError::Checkpoint { .. }
                | WorkerError::Sal(sal::SalError::InvalidConfig { .. })
        )
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WorkerError::Io { path: path.into(), source }
    }

    /// Whether the machine ran out of disk (or quota) for it: the node's problem, not the
    /// trial's. libtorch reports a failed save in words only.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            WorkerError::Io { source, .. } => common::space::is_out_of_space(source),
            other => {
                let text = other.to_string();
                text.contains("No space left on device") || text.contains("Disk quota exceeded")
            }
        }
    }

    /// Whether a device or the host ran out of memory for it (libtorch's words: CUDA's
    /// allocator, or the CPU allocator's failed allocation).
    pub fn is_out_of_memory(&self) -> bool {
        let text = self.to_string();
        text.contains("CUDA out of memory")
            || text.contains("out of memory")
            || text.contains("DefaultCPUAllocator: can't allocate memory")
    }

    /// Whether another attempt may succeed: lost peers and device errors (out of memory among
    /// them) are retryable; bad trials and bad data are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkerError::Sal(e) => e.is_retryable(),
            WorkerError::Torch(_) | WorkerError::Io { .. } | WorkerError::RankFailed { .. } => true,
            _ => false,
        }
    }
}
