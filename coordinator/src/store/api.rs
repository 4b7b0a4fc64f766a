//! What the store is asked and answers: leases named by workers, registrations, lease requests
//! and grants, progress and status.

use crate::schedule::slots::TrialsPerDevice;
pub use crate::schedule::{DeviceUsage, Usage};

use super::in_flight::TrialProgress;

/// A lease named by a worker's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRef {
    pub lease_id: String,
    pub trial_id: String,
    /// The worker claiming it (the worker of the request's session): a lease is honoured for its
    /// holder only.
    pub holder: String,
}

/// A worker introducing itself.
#[derive(Debug, Clone)]
pub struct Registration {
    pub worker_id: String,
    pub hostname: String,
    pub devices: u32,
    /// Memory of each device in MB; empty: unknown.
    pub memory_mb: Vec<u64>,
}

/// A worker asking for work (and extending what it holds).
#[derive(Debug, Clone)]
pub struct LeaseAsk {
    pub worker_id: String,
    /// The leases running on each of its devices, in its order.
    pub devices: Vec<Vec<String>>,
    pub held: Vec<String>,
    pub cached: Vec<String>,
    /// What keeps the worker from taking trials (a full work dir), in words; empty: nothing.
    pub condition: String,
    /// What its node uses now.
    pub usage: Option<Usage>,
}

/// A trial handed to a worker.
#[derive(Debug, Clone)]
pub struct Grant {
    pub lease_id: String,
    pub trial_id: String,
    pub spec_json: String,
    pub devices: u32,
    /// Which of the worker's devices (positions in its list).
    pub device_indices: Vec<u32>,
    pub resume_epoch: u32,
    pub attempt: u32,
    pub progress_timeout_s: u32,
    /// It runs alone on its worker (it ran out of memory beside others).
    pub alone: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LeaseReply {
    pub grant: Option<Grant>,
    pub lost: Vec<String>,
    pub sweep_done: bool,
}

/// Counts of the running sweep's trials by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub pending: u32,
    pub leased: u32,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub diverged: u32,
}

impl Progress {
    pub fn total(&self) -> u32 {
        self.pending + self.leased + self.running + self.done + self.failed + self.diverged
    }

    pub fn finished(&self) -> u32 {
        self.done + self.failed + self.diverged
    }

    pub fn is_complete(&self) -> bool {
        self.finished() == self.total()
    }
}

#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub worker_id: String,
    pub hostname: String,
    pub devices: u32,
    pub trials: Vec<String>,
    pub idle_ms: u64,
    /// What keeps it from taking trials, as it said last; empty: nothing.
    pub condition: String,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub sweep_name: String,
    pub progress: Progress,
    pub workers: Vec<WorkerStatus>,
    pub eta_seconds: Option<f64>,
    pub in_flight: Vec<TrialProgress>,
    pub trials_per_device: TrialsPerDevice,
    /// Pending trials no registered worker can run, each with why.
    pub unplaceable: Vec<String>,
    /// Set while the state dir has no room for a commit.
    pub state_dir_full: Option<super::Full>,
}

/// What loading a sweep into the store found.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    pub trials: usize,
    pub new: usize,
    pub already_finished: usize,
    pub leases_expired: usize,
}
