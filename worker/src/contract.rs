//! The contract of running one trial: where and how it runs ([`RunOptions`]), what it announces
//! ([`TrialEvent`]), how it ended ([`TrialOutcome`]) and how it is asked to stop ([`CancelFlag`]).
//!
//! It lies below both [`crate::run`], which dispatches a trial (a real one or the `noop` stand-in),
//! and [`crate::train`], the engine that trains a real one, so that neither imports the other's
//! internals; `run` re-exports it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::outcome::{EpochReport, TrialResult};
pub use common::Devices;
use serde::{Deserialize, Serialize};

/// Asks a running trial to stop at the next step boundary; cloneable across threads.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where and how a trial runs. The node agent hands it to the trial process as it is (in the
/// job file, see `run::child_process::TrialJob`), devices as that process sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    pub devices: Devices,
    /// Decoded datasets, shared by every trial on this node.
    pub cache_dir: PathBuf,
    /// Where this trial's checkpoints are written.
    pub checkpoint_dir: PathBuf,
    /// A checkpoint to resume from (written by this or another worker).
    pub resume_from: Option<PathBuf>,
    /// Write a checkpoint every this many epochs (0: never).
    pub checkpoint_every: u32,
    /// Set by whoever runs the trial, never carried in a job file.
    #[serde(skip)]
    pub cancel: CancelFlag,
}

/// Progress a trial announces while it runs.
#[derive(Debug)]
pub enum TrialEvent<'a> {
    /// Training progress within an epoch (about a hundred per epoch), for progress bars.
    Progress {
        epoch: u32,
        step: usize,
        steps: usize,
    },
    Epoch(&'a EpochReport),
    /// A checkpoint was written, atomically, after `epoch`.
    Checkpoint {
        epoch: u32,
        path: &'a Path,
    },
}

/// How a run ended.
#[derive(Debug)]
pub enum TrialOutcome {
    /// Completed or diverged; the result says which.
    Finished(Box<TrialResult>),
    /// Cancelled; the last checkpoint, if any, lets it resume.
    Interrupted { epoch: u32, checkpoint: Option<PathBuf> },
}

/// What a trial ran out of, when it failed for want of something of the machine's: disk (or
/// quota) is the node's problem (its lease is handed back, no attempt charged); memory may be the
/// neighbours' (a trial that shared its device or host is retried alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RanOutOf {
    Space,
    Memory,
}

impl RanOutOf {
    pub fn of(error: &crate::error::WorkerError) -> Option<Self> {
        if error.is_out_of_space() {
            Some(RanOutOf::Space)
        } else if error.is_out_of_memory() {
            Some(RanOutOf::Memory)
        } else {
            None
        }
    }
}
