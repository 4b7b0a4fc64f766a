//! The one error type of the `sal` crate.

/// What can go wrong in SAL's configuration, tensor interventions and collectives.
#[derive(Debug, thiserror::Error)]
pub enum SalError {
    #[error("invalid sal config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    #[error("model has {available} trainable layers, plastic deformation needs at least 1")]
    NoTrainableLayers { available: usize },

    #[error("snapshot does not match the model: {0}")]
    SnapshotMismatch(String),

    #[error("collective `{op}` failed on rank {rank}: {reason}")]
    Collective { op: &'static str, rank: usize, reason: String },

    #[error("collective group aborted: a peer rank failed or left")]
    Aborted,

    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl From<sal_core::ConfigError> for SalError {
    fn from(error: sal_core::ConfigError) -> Self {
        SalError::InvalidConfig { field: error.field, reason: error.reason }
    }
}

impl SalError {
    /// Whether retrying the same work elsewhere may succeed (a lost peer, a device error),
    /// as opposed to a deterministic failure (bad config, mismatched snapshot).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SalError::Collective { .. } | SalError::Aborted | SalError::Torch(_))
    }
}
