//! `--local`: the coordinator starts `worker` processes on this machine, each a node agent that
//! connects back over loopback gRPC like any remote worker. The coordinator itself links no
//! libtorch; a trial's crash ends its own trial process, never the coordinator.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

/// Workers this coordinator starts itself (`--local`).
#[derive(Debug, Clone)]
pub struct LocalWorkers {
    pub count: usize,
    /// CPU replicas per worker.
    pub cpu_ranks: usize,
    /// The `worker` binary (default: the one beside this executable).
    pub worker_bin: PathBuf,
}

/// Why local workers could not be started or did not end well.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "no worker binary at {}: build it (`cargo build --release -p worker`) or give --worker-bin",
        path.display()
    )]
    MissingBinary { path: PathBuf },
    #[error("cannot start local worker {index} ({}): {source}", bin.display())]
    Spawn {
        index: usize,
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local worker {index} exited with {status}; its log: {}", log.display())]
    Exited { index: usize, status: std::process::ExitStatus, log: PathBuf },
}

/// The `worker` binary beside the running executable (`target/release/worker` next to
/// `target/release/coordinator`).
pub fn default_worker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // Test binaries live one level down, in `target/<profile>/deps/`.
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let beside = dir.join("worker");
    if beside.is_file() || dir.file_name().is_none_or(|n| n != "deps") {
        return beside;
    }
    dir.parent().map_or(beside, |p| p.join("worker"))
}

/// The running worker processes.
pub struct LocalWorkerProcesses {
    children: Vec<(usize, Child, PathBuf)>,
}

impl LocalWorkerProcesses {
    /// Starts `workers.count` agents against `url`, their work dirs and logs under `dir`.
    /// `token`, when given, is handed to each worker in its environment (never on its command
    /// line, which other users of the machine can read).
    pub fn start(
        workers: &LocalWorkers,
        url: &str,
        dir: &Path,
        token: Option<&str>,
    ) -> Result<Self, LocalError> {
        if !workers.worker_bin.is_file() {
            return Err(LocalError::MissingBinary { path: workers.worker_bin.clone() });
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads_per_worker = (cores / workers.count.max(1)).max(1);
        let mut children = Vec::new();
        for index in 0..workers.count {
            let work_dir = dir.join(format!("worker-{index}"));
            std::fs::create_dir_all(&work_dir).map_err(|source| LocalError::Spawn {
                index,
                bin: workers.worker_bin.clone(),
                source,
            })?;
            let log = work_dir.join("worker.log");
            let log_file = std::fs::File::create(&log).map_err(|source| LocalError::Spawn {
                index,
                bin: workers.worker_bin.clone(),
                source,
            })?;
            let mut command = Command::new(&workers.worker_bin);
            command
                .arg("--coordinator")
                .arg(url)
                .arg("--cpu-ranks")
                .arg(workers.cpu_ranks.max(1).to_string())
                .arg("--work-dir")
                .arg(&work_dir)
                .arg("--worker-id")
                .arg(format!("local-{index}"))
                // The local workers share this machine's cores.
                .arg("--cpu-threads")
                .arg(threads_per_worker.to_string())
                // This coordinator resolved the trials' paths itself (`--data-root`, or the sweep
                // file's folder): nothing for its own workers to confine them to.
                .arg("--trust-coordinator-paths")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .kill_on_drop(true);
            if let Some(token) = token {
                command.env("SAL_TOKEN", token);
            }
            let child = command.spawn().map_err(|source| LocalError::Spawn {
                index,
                bin: workers.worker_bin.clone(),
                source,
            })?;
            children.push((index, child, log));
        }
        Ok(Self { children })
    }

    /// A handle that can ask the workers to stop while another task waits for them.
    pub fn stopper(&self) -> Stopper {
        Stopper { pids: self.children.iter().filter_map(|(_, child, _)| child.id()).collect() }
    }

    /// Waits for every worker to exit; the first that failed is the error.
    pub async fn wait(mut self) -> Result<(), LocalError> {
        let mut first_error = None;
        for (index, child, log) in &mut self.children {
            match child.wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    tracing::error!(worker = index, log = %log.display(), "local worker exited with {status}");
                    first_error.get_or_insert(LocalError::Exited { index: *index, status, log: log.clone() });
                }
                Err(e) => tracing::error!(worker = index, "cannot wait for local worker: {e}"),
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Asks the local workers to stop.
#[derive(Debug, Clone)]
pub struct Stopper {
    pids: Vec<u32>,
}

impl Stopper {
    /// SIGTERM to every worker: each hands its leases back and exits.
    pub fn terminate(&self) {
        for &pid in &self.pids {
            let Ok(pid) = libc::pid_t::try_from(pid) else { continue };
            // SAFETY: kill(2) takes no memory; a pid of a child that has exited and been reaped
            // may have been reused, which the caller avoids by stopping before waiting ends.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}
