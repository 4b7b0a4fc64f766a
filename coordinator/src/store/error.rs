//! The store's errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lease `{lease_id}` is not held (expired, handed back or given to another worker)")]
    LeaseLost { lease_id: String },
    #[error("worker `{worker_id}` is not registered")]
    UnknownWorker { worker_id: String },
    #[error("trial `{trial_id}` is unknown to this state dir")]
    UnknownTrial { trial_id: String },
    #[error("{}: {message}", dir.display())]
    Migration { dir: PathBuf, message: String },
    #[error("trial `{trial_id}` has no checkpoint of epoch {epoch}")]
    NoCheckpoint { trial_id: String, epoch: u32 },
    #[error("state store holds unreadable {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// The state file itself is damaged (or newer than this coordinator): refused at open.
    #[error("{}: {what}; {restore}", file.display())]
    Damaged { file: PathBuf, what: String, restore: &'static str },
    #[error("state store: commit failed: {message}")]
    Commit { message: String },
    /// The state dir has no room: nothing was committed (see `full.rs`).
    #[error("{}", .0.describe())]
    Full(Box<super::Full>),
    #[error("state store is closed")]
    Closed,
}

impl StoreError {
    pub(super) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }

    /// The same failure again, for the next job of a batch that failed as a whole (a full state
    /// dir, or a failed commit).
    pub(super) fn again(&self) -> Self {
        match self {
            StoreError::Full(full) => StoreError::Full(full.clone()),
            other => StoreError::Commit { message: other.to_string() },
        }
    }
}

pub(super) type Result<T, E = StoreError> = std::result::Result<T, E>;
