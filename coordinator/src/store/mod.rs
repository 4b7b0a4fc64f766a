//! The durable store: SQLite (WAL) in the state dir, plus checkpoint files beside it.
//!
//! One thread owns the connection and the scheduler's memory; requests reach it as jobs over a
//! channel. The thread runs whatever jobs are queued in one transaction (group commit) and answers
//! them only once the commit is on disk ([`crate::store::durable`] syncs it on a thread of its own, while
//! this one goes on): a result is on disk before its worker hears that it is safe, and a burst of
//! small writes costs one commit. A lease request alone is answered as soon as its transaction
//! commits, before the disk has it (see [`Store::lease`]). Each job runs in a savepoint and writes
//! SQL before it touches memory, so a failed job leaves both as they were.
//!
//! A restart on the same state dir resumes: done trials stay done, leases that expired while the
//! coordinator was away go back to pending, live leases are honoured when their workers return,
//! and a changed sweep file adds its new cells beside every earlier result.
//!
//! One module per part: [`schema`] (every table, in one place), [`migrate`] (older state dirs
//! brought up to it) and [`open`] (settings, tables and migration at open); [`actor`] (the thread
//! that owns the connection, group commit) and [`durable`] (the fsync, on a thread of its own);
//! [`handle`] ([`Store`], what the rest of the coordinator calls); one module per kind of record:
//! [`trials`] (loading a sweep, rebuilding memory on restart), [`workers`], [`leases`], [`results`]
//! (and [`outside`] for trials not scheduled today), [`checkpoints`] (the index;
//! [`checkpoint_files`] the files), [`sweeps`]; [`status`] and [`in_flight`] for `coordinator
//! status`; [`reader`], read-only, for reports, and [`tail`], read-only, what was committed since
//! it last looked (`--tensorboard`); [`state_lock`]: one coordinator per state dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[cfg(test)]
use common::{TrialResult, TrialStatus};
use rusqlite::Connection;
use tokio::sync::watch;

use crate::schedule::Scheduler;
use checkpoint_files::PendingRemovals;

mod actor;
mod api;
pub mod checkpoint_files;
mod checkpoints;
pub mod durable;
mod error;
mod full;
mod handle;
mod in_flight;
pub mod integrity;
mod leases;
mod migrate;
mod open;
mod outside;
mod reader;
mod results;
mod schema;
pub mod state_lock;
mod status;
mod sweeps;
mod tail;
mod trials;
mod workers;

pub use api::{
    DeviceUsage, Grant, LeaseAsk, LeaseRef, LeaseReply, LoadSummary, Progress, Registration, Status, Usage,
    WorkerStatus,
};
use error::Result;
pub use error::StoreError;
pub use full::Full;
pub use handle::Store;
pub use in_flight::TrialProgress;
pub use leases::random_id;
pub use reader::{read_records, StoredEpoch, TrialRecord};
pub use sweeps::{read_sweeps, SweepInfo};
pub use tail::{first_attempt_starts, Tail, Tailed, TailedEpoch};

/// The database file inside the state dir.
pub const DB_FILE: &str = "coordinator.sqlite";
/// Checkpoint files live under this folder of the state dir, one folder per trial.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// Milliseconds since the Unix epoch: lease deadlines outlive the process.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The connection and the scheduler's memory, owned by the store's thread.
pub struct Core {
    conn: Connection,
    dir: PathBuf,
    lease_ttl_ms: u64,
    sched: Scheduler,
    sweep_name: String,
    progress_timeout_s: u32,
    sweep_ids: Vec<String>,
    started: Instant,
    finished_at_start: u32,
    /// Shared with the sync thread, which publishes a batch's progress once it is durable.
    progress: Arc<watch::Sender<Progress>>,
    /// Checkpoint files to remove when the open transaction commits or rolls back.
    files: PendingRemovals,
    /// Set while the state dir has no room for a commit ([`full`]).
    full: Option<full::FullState>,
    /// A job of the running batch found no room: the batch's commit does not mean there is.
    found_full: bool,
    /// Whether the state dir is full, for the progress line and `status`.
    health: watch::Sender<Option<Full>>,
}

/// A made-up final result for the store's and the reports' tests (their trials are stand-ins that
/// train nothing).
#[cfg(test)]
pub(crate) fn stand_in_result(status: TrialStatus, top1: f64) -> TrialResult {
    let average =
        common::ClassMetrics { label: "avg".into(), precision: 1.0, recall: 1.0, f1: 1.0, support: 1 };
    TrialResult {
        status,
        top1,
        top5: 1.0,
        test_loss: 0.1,
        per_class: Vec::new(),
        macro_avg: average.clone(),
        weighted_avg: average,
        confusion: Vec::new(),
        train_seconds: 1.0,
        peak_host_mb: 1.0,
        peak_device_mb: None,
        inference_ms_per_batch: 1.0,
        history: Vec::new(),
        flatness: None,
        manifest: None,
    }
}

/// Commit failures and checkpoint files: what a failed transaction leaves, what an ended trial.
#[cfg(test)]
mod commit_tests;
#[cfg(test)]
mod tests;
