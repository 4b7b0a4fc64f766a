//! What the scheduler knows: trials and their states, leases, workers.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// Where a trial is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrialState {
    Pending,
    /// Given to a worker, no epoch reported yet.
    Leased,
    /// Its worker has reported at least one epoch of this attempt.
    Running,
    Done,
    Failed,
    Diverged,
}

impl TrialState {
    pub const ALL: [TrialState; 6] = [
        TrialState::Pending,
        TrialState::Leased,
        TrialState::Running,
        TrialState::Done,
        TrialState::Failed,
        TrialState::Diverged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Leased => "leased",
            TrialState::Running => "running",
            TrialState::Done => "done",
            TrialState::Failed => "failed",
            TrialState::Diverged => "diverged",
        }
    }

    /// Nothing more will happen to the trial.
    pub fn is_terminal(self) -> bool {
        matches!(self, TrialState::Done | TrialState::Failed | TrialState::Diverged)
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrialState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrialState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown trial state `{s}`"))
    }
}

/// A trial as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct TrialEntry {
    pub id: String,
    pub state: TrialState,
    pub cost: f64,
    /// Devices it takes; 0: all of a worker's.
    pub devices: u32,
    pub cache_key: String,
    /// Trials of one profile use about the same device memory ([`slots::memory_profile`]).
    pub profile: String,
    /// Attempts started (leases granted).
    pub attempts: u32,
    /// Attempts that failed retryably or whose worker was lost.
    pub failures: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub lease: Option<String>,
    /// A trial that must end with a result before this one can be picked: a
    /// `shrink_perturb_random` trial's `sal` trial, whose deformation count it repeats.
    pub after: Option<String>,
    /// The plastic deformations its result applied, once it has one (known for the trials others
    /// wait on): what a trial that waits on it repeats.
    pub deformations: Option<u32>,
    /// It ran out of memory beside other trials: it is leased only to a worker that runs nothing
    /// else, and runs alone there.
    pub alone: bool,
}

/// A worker's grant on one trial, valid until `deadline_ms` (milliseconds since the Unix epoch)
/// unless extended.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    pub trial_id: String,
    pub worker_id: String,
    pub attempt: u32,
    pub devices: u32,
    pub deadline_ms: u64,
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: String,
    pub hostname: String,
    pub devices: u32,
    /// Memory of each device in MB, in the worker's order; empty or 0: unknown.
    pub memory_mb: Vec<u64>,
    pub cached: HashSet<String>,
    pub last_seen_ms: u64,
    /// Has been answered that the sweep is done (the coordinator may stop once all have).
    pub told_done: bool,
    /// What keeps it from taking trials, as it said last (a full work dir); empty: nothing.
    pub condition: String,
    /// What its node used when it last called.
    pub usage: Option<Usage>,
}

/// A worker's node's use of its machine, as it said when it last called.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    pub cpu_percent: f32,
    /// Resident memory of its trial processes together.
    pub rss_mb: u64,
    /// One per GPU, in its order (none on CPU workers).
    pub devices: Vec<DeviceUsage>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceUsage {
    pub utilisation_percent: f32,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
}

/// What becomes of a trial whose attempt ended without a result.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterLoss {
    /// Back to pending for another attempt.
    Retry,
    /// Failed for good, with this error.
    Fail(String),
}
