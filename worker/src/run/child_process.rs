//! The trial process: `worker trial-process --job FILE`, started by the node agent for each trial
//! (not meant for users). One trial per process, so libtorch's process-global state (generators,
//! thread pools, the allocator) and any crash belong to that trial alone, and the process's peak
//! memory is the trial's.
//!
//! The agent and the trial process speak through three pipes:
//! - stdout carries [`TrialProcessEvent`]s as JSON lines (anything else the process would print on
//!   stdout is sent to stderr instead, so that no stray line can break the stream);
//! - stderr is the process's log; the agent keeps its last lines for the failure message;
//! - stdin is the cancel line: when it closes (the agent cancels, or the agent itself died), the
//!   trial stops at the next step and says how far it got.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::outcome::{EpochReport, TrialResult};
use common::trial::TrialSpec;
use serde::{Deserialize, Serialize};

use crate::run::{run_trial, CancelFlag, RanOutOf, RunOptions, TrialEvent, TrialOutcome};

/// What the agent asks a trial process to run: the trial, and the options it runs with as they
/// are (its devices as the process sees them: the agent narrows CUDA devices with
/// `CUDA_VISIBLE_DEVICES`, so a trial on GPUs 2 and 5 sees devices 0 and 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialJob {
    pub trial_id: String,
    pub spec: TrialSpec,
    pub options: RunOptions,
    /// libtorch's intra-op threads of the whole process (its ranks × the trial's `cpu_threads`;
    /// each rank then sets its own), also given to OpenMP's and MKL's pools through their
    /// environment. `None` on GPUs.
    pub threads: Option<usize>,
}

/// What a trial process tells its agent, one JSON object a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrialProcessEvent {
    /// Work is being done: training steps finished (over the whole trial) and images decoded.
    /// Sent at most about once a second, and only when a count moved.
    Progress {
        epoch: u32,
        steps: u64,
        decoded: u64,
    },
    Epoch {
        report: Box<EpochReport>,
    },
    /// A checkpoint was written, atomically, after `epoch`.
    Checkpoint {
        epoch: u32,
        path: PathBuf,
    },
    /// The trial finished (completed or diverged): the last event.
    Result {
        result: Box<TrialResult>,
    },
    /// The trial was cancelled: the last event.
    Interrupted {
        epoch: u32,
        checkpoint: Option<PathBuf>,
    },
    /// The trial failed: the last event.
    Error {
        message: String,
        retryable: bool,
        /// Failed for want of disk or memory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ran_out_of: Option<RanOutOf>,
    },
}

/// Exit codes of a trial process: 0 once it has sent a `result` or `interrupted` event.
pub const EXIT_FAILED: u8 = 1;
/// The job file could not be read.
pub const EXIT_BAD_JOB: u8 = 2;

/// Runs the job in `job_file` and reports on stdout; the process's exit code.
pub fn main(job_file: &std::path::Path) -> u8 {
    let events = match EventStream::take_stdout() {
        Ok(events) => events,
        Err(e) => {
            eprintln!("error: trial process cannot set up its event pipe: {e}");
            return EXIT_FAILED;
        }
    };
    let job: TrialJob = match std::fs::read(job_file)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(job) => job,
        Err(e) => {
            let message = format!("{}: {e}", job_file.display());
            events.send(&TrialProcessEvent::Error {
                message: message.clone(),
                retryable: false,
                ran_out_of: None,
            });
            eprintln!("error: {message}");
            return EXIT_BAD_JOB;
        }
    };
    if let Some(threads) = job.threads {
        tch::set_num_threads(i32::try_from(threads.max(1)).unwrap_or(i32::MAX));
    }
    let cancel = CancelFlag::default();
    watch_stdin(cancel.clone());
    let progress = Arc::new(Progress::default());
    watch_progress(progress.clone(), events.clone());

    let options = RunOptions { cancel, ..job.options };
    let mut on_event = |event: TrialEvent<'_>| match event {
        TrialEvent::Progress { epoch, .. } => {
            progress.epoch.store(u64::from(epoch), Ordering::Relaxed);
            progress.steps.fetch_add(1, Ordering::Relaxed);
        }
        TrialEvent::Epoch(report) => {
            progress.steps.fetch_add(1, Ordering::Relaxed);
            events.send(&TrialProcessEvent::Epoch { report: Box::new(report.clone()) });
        }
        TrialEvent::Checkpoint { epoch, path } => {
            events.send(&TrialProcessEvent::Checkpoint { epoch, path: path.to_path_buf() })
        }
    };
    let (event, code) = match run_trial(&job.spec, &options, &mut on_event) {
        Ok(TrialOutcome::Finished(result)) => (TrialProcessEvent::Result { result }, 0),
        Ok(TrialOutcome::Interrupted { epoch, checkpoint }) => {
            (TrialProcessEvent::Interrupted { epoch, checkpoint }, 0)
        }
        Err(error) => {
            eprintln!("error: trial {}: {error}", job.trial_id);
            (
                TrialProcessEvent::Error {
                    message: error.to_string(),
                    retryable: error.is_retryable(),
                    ran_out_of: RanOutOf::of(&error),
                },
                EXIT_FAILED,
            )
        }
    };
    events.send(&event);
    code
}

/// Counts that move while the trial works; the watchdog's evidence of progress.
#[derive(Default)]
struct Progress {
    epoch: AtomicU64,
    steps: AtomicU64,
}

/// The event pipe: the process's original stdout, shared by the threads that report.
#[derive(Clone)]
struct EventStream(Arc<Mutex<std::fs::File>>);

impl EventStream {
    /// Keeps the original stdout for events and points fd 1 at stderr, so that whatever else
    /// writes to stdout (a library's print) lands in the log, not in the event stream.
    fn take_stdout() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: dup/dup2 on the process's own standard descriptors; the duplicate is owned by
        // the File from here on.
        let file = unsafe {
            let events = libc::dup(1);
            if events < 0 || libc::dup2(2, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::fs::File::from_raw_fd(events)
        };
        Ok(EventStream(Arc::new(Mutex::new(file))))
    }

    /// Writes one event line. A closed pipe (the agent is gone) is not an error here: the trial
    /// notices the closed stdin and stops.
    fn send(&self, event: &TrialProcessEvent) {
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        let mut file = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = file.write_all(&line);
    }
}

/// Cancels the trial when stdin closes.
fn watch_stdin(cancel: CancelFlag) {
    let spawned = std::thread::Builder::new().name("cancel-line".into()).spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock();
        let mut line = String::new();
        // Any line, or the end of the stream, cancels.
        let _ = lines.read_line(&mut line);
        cancel.cancel();
    });
    if let Err(e) = spawned {
        eprintln!("warning: no cancel thread ({e}); the agent can still stop this process by signal");
    }
}

/// Sends a `progress` event about once a second when a count moved: steps, or images decoded
/// (decoding a large dataset is progress too).
fn watch_progress(progress: Arc<Progress>, events: EventStream) {
    let spawned = std::thread::Builder::new().name("progress".into()).spawn(move || {
        let mut last = (u64::MAX, u64::MAX);
        loop {
            let steps = progress.steps.load(Ordering::Relaxed);
            let decoded = crate::data::decode::images_decoded();
            if (steps, decoded) != last {
                last = (steps, decoded);
                let epoch = u32::try_from(progress.epoch.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                events.send(&TrialProcessEvent::Progress { epoch, steps, decoded });
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    if let Err(e) = spawned {
        eprintln!("warning: no progress thread ({e}); the agent's watchdog sees epochs only");
    }
}
