//! How a worker reaches its coordinator and what it offers.

use std::path::PathBuf;
use std::time::Duration;

use super::credentials::Credentials;
use crate::run::Devices;

/// How a worker reaches its coordinator and what it offers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port`.
    pub coordinator: String,
    pub devices: Devices,
    /// Dataset caches, trial checkpoints and downloads live here.
    pub work_dir: PathBuf,
    /// Unique per process; see [`default_worker_id`].
    pub worker_id: String,
    /// Return once the coordinator says that the sweep is done.
    pub exit_when_done: bool,
    /// Give up when the coordinator cannot be reached for this long.
    pub give_up_after: Duration,
    /// On shutdown with the coordinator away, wait at most this long for it to take the unsent
    /// reports and handed-back leases ([`DRAIN_TIMEOUT`] by default).
    pub drain_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// The binary whose `trial-process` subcommand runs a trial (default: this executable).
    pub worker_bin: PathBuf,
    /// CPU threads this agent's trials may take together: it leases another trial only while its
    /// running CPU trials take fewer (each takes its ranks × its `cpu_threads`, whatever runs
    /// beside it).
    pub cpu_threads: usize,
    /// On shutdown, a trial that has not stopped this long after being asked is killed.
    pub stop_grace: Duration,
    /// Memory of each device in MB, told to the coordinator for `trials_per_gpu: auto`; empty:
    /// unknown (each trial then takes a whole device under `auto`).
    pub device_memory_mb: Vec<u64>,
    /// Token and TLS settings.
    pub credentials: Credentials,
    /// Dataset roots and weights a trial names must lie under this folder (`--data-root`);
    /// `None` trusts the coordinator's paths (`--trust-coordinator-paths`: the workers a
    /// `coordinator --local` starts, whose paths it resolved itself).
    pub data_root: Option<PathBuf>,
}

impl ClientConfig {
    pub fn new(coordinator: impl Into<String>, devices: Devices, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            coordinator: coordinator.into(),
            devices,
            work_dir: work_dir.into(),
            worker_id: default_worker_id(),
            exit_when_done: true,
            give_up_after: Duration::from_secs(600),
            drain_timeout: DRAIN_TIMEOUT,
            max_backoff: Duration::from_secs(5),
            worker_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("worker")),
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop_grace: Duration::from_secs(60),
            device_memory_mb: Vec::new(),
            credentials: Credentials::default(),
            data_root: None,
        }
    }
}

pub use crate::provenance::hostname;

/// `host-pid-nonce`: unique per process, so a restarted worker is a new worker.
pub fn default_worker_id() -> String {
    let nonce =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{nonce:08x}", hostname(), std::process::id())
}

/// How long a worker that was told to stop keeps trying to hand its leases back and send its
/// last reports while the coordinator does not answer: short enough that every process of a
/// cancelled Slurm job (whose coordinator got the same SIGTERM) is gone well inside Slurm's
/// default KillWait of 30 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
