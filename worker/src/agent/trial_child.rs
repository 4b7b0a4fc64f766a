//! The agent's side of a trial process: starts `worker trial-process --job FILE` in a process
//! group of its own on the trial's devices, turns its event lines into [`TrialMessage`]s, keeps
//! the last lines of its stderr, and ends it (politely through its stdin, or the whole group by
//! SIGKILL).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc::UnboundedSender;

use super::trial_thread::{stage, TrialEnd, TrialMessage};
use super::{exhaustion, LeaseKey};
use crate::run::child_process::{TrialJob, TrialProcessEvent};
use crate::run::RanOutOf;

/// Lines of a trial process's stderr kept for its failure message.
const STDERR_TAIL_LINES: usize = 20;

/// A running trial process.
pub(super) struct TrialProcess {
    pid: u32,
    /// Closing it asks the trial to stop at the next step.
    stdin: Option<ChildStdin>,
    /// Set when this agent kills it: a SIGKILL it did not send came from elsewhere (the kernel).
    killed_by_agent: Arc<AtomicBool>,
}

impl TrialProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Asks the trial to stop at its next step and say how far it got.
    pub fn cancel(&mut self) {
        self.stdin.take();
    }

    /// Ends the trial process and anything it started, at once.
    pub fn kill(&mut self) {
        self.killed_by_agent.store(true, Ordering::SeqCst);
        self.stdin.take();
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: killpg(2) takes no memory. The group is the trial process's own (it was
            // started as its leader); its id is not reused while the leader is unreaped, and the
            // agent reaps it only in the task that reads its exit.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }
}

/// Where a trial process runs.
pub(super) struct Launch<'a> {
    pub worker_bin: &'a Path,
    /// The job file, written here before the process starts.
    pub job_file: PathBuf,
    /// Where staged checkpoints wait for upload.
    pub staging: PathBuf,
    /// `CUDA_VISIBLE_DEVICES` for the process (none on CPU).
    pub cuda_visible: Option<String>,
}

/// Starts the trial process; its events arrive on `events`, ending with one `Ended`.
pub(super) fn spawn(
    lease: LeaseKey,
    job: &TrialJob,
    launch: Launch<'_>,
    events: UnboundedSender<TrialMessage>,
) -> std::io::Result<TrialProcess> {
    let bytes = serde_json::to_vec(job).map_err(std::io::Error::other)?;
    if let Some(dir) = launch.job_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&launch.job_file, bytes)?;
    let mut command = Command::new(launch.worker_bin);
    command
        .arg("trial-process")
        .arg("--job")
        .arg(&launch.job_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a terminal's ctrl-c reaches the agent alone (which hands the lease back
        // in order), and killing the group ends everything the trial started.
        .process_group(0)
        .kill_on_drop(false);
    if let Some(threads) = job.threads {
        // Thread pools that libtorch's own setting does not reach (OpenMP's, MKL's).
        command.env("OMP_NUM_THREADS", threads.to_string()).env("MKL_NUM_THREADS", threads.to_string());
    }
    if job.spec.deterministic {
        // cuBLAS reads it when CUDA starts in the process, before any of the trial's code runs.
        let (name, value) = crate::provenance::CUBLAS_WORKSPACE_CONFIG;
        command.env(name, value);
    }
    match &launch.cuda_visible {
        Some(devices) => command.env("CUDA_VISIBLE_DEVICES", devices),
        // A CPU trial must not grab a GPU of another trial.
        None => command.env("CUDA_VISIBLE_DEVICES", ""),
    };
    // Starting a trial costs a process, libtorch's load and the job's setup: timed from here to
    // the process's first event, and logged.
    let spawned = std::time::Instant::now();
    let oom_kills_before = exhaustion::oom_kills();
    let mut child = command.spawn()?;
    let pid = child.id().unwrap_or(0);
    let killed_by_agent = Arc::new(AtomicBool::new(false));
    let peak_rss_kib = sample_peak_rss(pid);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
    let stderr_task = stderr.map(|stderr| {
        let tail = tail.clone();
        let trial = lease.trial_id.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // The trial's log goes on into the agent's, marked with its trial.
                eprintln!("[trial {trial}] {line}");
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        })
    });

    let staging = launch.staging;
    let killed = killed_by_agent.clone();
    tokio::spawn(async move {
        let mut last: Option<TrialEnd> = None;
        if let Some(stdout) = stdout {
            let mut lines = BufReader::new(stdout).lines();
            let mut first = true;
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<TrialProcessEvent>(&line) {
                    Ok(event) => {
                        if std::mem::take(&mut first) {
                            let ms = spawned.elapsed().as_secs_f64() * 1000.0;
                            tracing::info!(trial = %lease.trial_id, start_ms = format!("{ms:.0}"), "trial process up (spawn to first event)");
                        }
                        if let Some(end) = relay(&lease, event, &staging, &events) {
                            last = Some(end);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(trial = %lease.trial_id, "unreadable line from the trial process ({e}): {line}")
                    }
                }
            }
        }
        let status = child.wait().await;
        if let Some(task) = stderr_task {
            let _ = task.await;
        }
        let end = match (last, status) {
            (Some(end), _) => end,
            (None, status) => {
                let peak = common::space::human(peak_rss_kib.load(Ordering::Relaxed) * 1024);
                let killed_by_kernel = status.as_ref().ok().and_then(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    (s.signal() == Some(libc::SIGKILL) && !killed.load(Ordering::SeqCst))
                        .then(|| oom_record(oom_kills_before.as_ref()))
                });
                let (how, ran_out_of) = match (status, killed_by_kernel) {
                    (_, Some(Some(record))) => {
                        (format!("was killed by the kernel's OOM killer ({record}; peak RSS {peak})"), Some(RanOutOf::Memory))
                    }
                    (_, Some(None)) => (
                        format!(
                            "was killed by SIGKILL, not sent by this agent (peak RSS {peak}): the kernel's OOM \
                             killer or a memory limit, most likely, though no OOM record could be read"
                        ),
                        None,
                    ),
                    (Ok(status), None) => (format!("{} (peak RSS {peak})", describe_exit(status)), None),
                    (Err(e), None) => (format!("could not be waited for ({e})"), None),
                };
                let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
                TrialEnd::Failed {
                    error: if tail.is_empty() {
                        format!("trial process {how}; its stderr was empty")
                    } else {
                        format!("trial process {how}; last lines of its stderr:\n{}", tail.join("\n"))
                    },
                    retryable: true,
                    ran_out_of,
                }
            }
        };
        let _ = events.send(TrialMessage::Ended { lease, end });
    });
    Ok(TrialProcess { pid, stdin, killed_by_agent })
}

/// How often a trial process's peak resident memory is read while it runs.
const RSS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The peak resident memory of process `pid` in KiB, kept up to date while it lives: its
/// failure message says how much it had taken when it was killed.
fn sample_peak_rss(pid: u32) -> Arc<AtomicU64> {
    let peak = Arc::new(AtomicU64::new(0));
    let shared = peak.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RSS_EVERY);
        loop {
            tick.tick().await;
            // The process is reaped (or its pid gone): nothing more to read.
            let Some(kib) = exhaustion::peak_rss_kib(pid) else { return };
            shared.fetch_max(kib, Ordering::Relaxed);
        }
    });
    peak
}

/// The kernel's OOM record since `before`, in words; `None` when it says nothing new (or cannot
/// be read).
fn oom_record(before: Option<&(PathBuf, u64)>) -> Option<String> {
    let (file, before) = before?;
    let (_, after) = exhaustion::oom_kills()?;
    (after > *before).then(|| format!("{}: oom_kill {before} -> {after}", file.display()))
}

/// Passes one event on; the final ones are returned, to be sent once the process has exited.
fn relay(
    lease: &LeaseKey,
    event: TrialProcessEvent,
    staging: &Path,
    events: &UnboundedSender<TrialMessage>,
) -> Option<TrialEnd> {
    match event {
        TrialProcessEvent::Progress { .. } => {
            let _ = events.send(TrialMessage::Progress { lease: lease.clone() });
            None
        }
        TrialProcessEvent::Epoch { report } => {
            let _ = events.send(TrialMessage::Epoch { lease: lease.clone(), report: *report });
            None
        }
        TrialProcessEvent::Checkpoint { epoch, path } => {
            match stage(&path, staging, &lease.lease_id, epoch) {
                Ok(file) => {
                    let _ = events.send(TrialMessage::Checkpoint { lease: lease.clone(), epoch, file });
                }
                Err(e) => {
                    tracing::warn!(trial = %lease.trial_id, epoch, "cannot stage checkpoint for upload: {e}")
                }
            }
            None
        }
        TrialProcessEvent::Result { result } => Some(TrialEnd::Finished(result)),
        TrialProcessEvent::Interrupted { epoch, checkpoint } => {
            Some(TrialEnd::Interrupted { epoch, checkpoint })
        }
        TrialProcessEvent::Error { message, retryable, ran_out_of } => {
            Some(TrialEnd::Failed { error: message, retryable, ran_out_of })
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code} without a result"),
        (None, Some(signal)) => format!("was killed by signal {signal} ({})", signal_name(signal)),
        (None, None) => format!("ended without a result ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        _ => "signal",
    }
}
