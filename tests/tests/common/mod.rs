//! Starting, watching and killing the real binaries.
//!
//! Every wait is for an event (a line a process prints, a process exiting) with a deadline that
//! only turns a hang into a failure; nothing sleeps to synchronize.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::store::{self, TrialRecord};

pub mod browser;

/// How long a wait may last before it counts as a hang. Generous: it only turns a hang into a
/// failure, and a two-core machine running real trials in parallel test binaries is slow.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// `target/<profile>/<name>`, built by `cargo test --workspace` (see the crate documentation).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/e2e-<hash>
    let dir = exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo test --workspace`, or `cargo build -p coordinator -p worker` before `cargo test -p e2e`",
        path.display()
    );
    path
}

/// The lines a process writes to one stream, read by a thread as they come.
pub struct Lines {
    rx: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Lines {
    fn spawn(stream: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                log.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // Nobody waits any more; keep draining so the process never blocks on a pipe.
                }
            }
        });
        Self { rx, seen, reader: Mutex::new(Some(reader)) }
    }

    /// Waits until the stream is closed and read to its end (the process has exited).
    fn finish(&self) {
        if let Some(reader) = self.reader.lock().unwrap().take() {
            let _ = reader.join();
        }
    }

    /// Waits for the next line matching `predicate` and returns it.
    pub fn wait_for(&self, what: &str, predicate: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if predicate(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line {what} within {PATIENCE:?}:\n{}", self.all())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stream closed before a line {what}:\n{}", self.all())
                }
            }
        }
    }

    /// Everything read so far.
    pub fn all(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

/// The value of `key=value` in a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// A process killed (SIGKILL) when dropped, so that a failing test leaves nothing behind.
pub struct Process {
    child: Option<Child>,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Process {
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info,worker::agent=debug")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = Lines::spawn(child.stdout.take().expect("piped"));
        let stderr = Lines::spawn(child.stderr.take().expect("piped"));
        Self { child: Some(child), stdout, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit by itself (a thread blocks in `wait`; no polling).
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process still owned");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(status) => {
                // Everything the process wrote is read before anyone looks at it.
                self.stdout.finish();
                self.stderr.finish();
                status.expect("wait works")
            }
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!(
                    "process did not exit within {PATIENCE:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout.all(),
                    self.stderr.all()
                );
            }
        }
    }

    /// Waits at most `limit` for the process to exit by itself; `None` (the process is then
    /// killed) when it did not.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("process still owned");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => {
                self.stdout.finish();
                self.stderr.finish();
                Some(status.expect("wait works"))
            }
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                let _ = rx.recv_timeout(PATIENCE);
                None
            }
        }
    }

    /// Waits for a successful exit; shows the process's output otherwise.
    pub fn wait_success(&mut self, name: &str) {
        let status = self.wait();
        assert!(
            status.success(),
            "{name} exited with {status}\nstdout:\n{}\nstderr:\n{}",
            self.stdout.all(),
            self.stderr.all()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A coordinator process serving a sweep.
pub struct Coordinator {
    pub process: Process,
    pub addr: String,
}

impl Coordinator {
    /// Starts `coordinator --sweep FILE --state-dir DIR --listen ADDR ARGS...` and waits until it
    /// listens.
    pub fn start(sweep: &Path, state_dir: &Path, listen: &str, args: &[&str]) -> Self {
        let mut command = Command::new(binary("coordinator"));
        command
            .arg("--sweep")
            .arg(sweep)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", listen])
            .args(args);
        let process = Process::spawn(&mut command);
        let line = process.stdout.wait_for("`listening on`", |l| l.starts_with("listening on "));
        let addr = line.trim_start_matches("listening on ").trim().to_string();
        Self { process, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `worker --coordinator URL --work-dir DIR --worker-id ID`.
pub fn start_worker(url: &str, work_dir: &Path, id: &str) -> Process {
    start_worker_with(url, work_dir, id, &[])
}

/// Starts `worker --coordinator URL --work-dir DIR --worker-id ID ARGS...`.
pub fn start_worker_with(url: &str, work_dir: &Path, id: &str, args: &[&str]) -> Process {
    let mut command = Command::new(binary("worker"));
    command.args(["--coordinator", url, "--worker-id", id]).arg("--work-dir").arg(work_dir).args(args);
    Process::spawn(&mut command)
}

/// Sends SIGTERM to every one of `processes` with one `kill` (as Slurm's scancel does: all at the
/// same moment).
pub fn terminate_all(processes: &[&Process]) {
    let pids: Vec<String> = processes.iter().map(|p| p.pid().to_string()).collect();
    let status = Command::new("kill").arg("-TERM").args(&pids).status().expect("kill runs");
    assert!(status.success(), "kill -TERM {pids:?}");
}

/// Sends SIGKILL to a process that is not ours to reap (a worker's trial process).
pub fn kill_pid(pid: &str) {
    let status = Command::new("kill").args(["-KILL", pid]).status().expect("kill runs");
    assert!(status.success(), "kill -KILL {pid}");
}

/// Writes a noop sweep: `trials` cells (seeds), `epochs` epochs of `epoch_ms` each.
pub fn noop_sweep(dir: &Path, trials: usize, epochs: u32, epoch_ms: u64) -> PathBuf {
    let seeds: Vec<String> = (1..=trials).map(|s| s.to_string()).collect();
    let text = format!(
        "name: e2e\nepochs: {epochs}\nbatch_size: 8\nlearning_rate: 0.01\nseeds: [{}]\nmethods: [baseline]\n\
         architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ndatasets:\n  synthetic:\n    format: synthetic\n\
         \x20   options:\n      epoch_ms: {epoch_ms}\n",
        seeds.join(", ")
    );
    let path = dir.join("sweep.yaml");
    std::fs::write(&path, text).expect("temp dir is writable");
    path
}

/// Every trial in the state dir.
pub fn records(state_dir: &Path) -> Vec<TrialRecord> {
    store::read_records(state_dir).expect("the state dir is readable").1
}

/// Asserts that every trial is done with one result and a full, gap-free epoch history (the
/// latest report of each epoch, over attempts).
pub fn assert_all_done_once(records: &[TrialRecord], trials: usize, epochs: u32) {
    assert_eq!(records.len(), trials);
    for record in records {
        assert_eq!(record.state, "done", "trial {} is {}: {:?}", record.id, record.state, record.last_error);
        let result = record.result.as_ref().unwrap_or_else(|| panic!("trial {} has no result", record.id));
        let history: Vec<u32> = result.history.iter().map(|r| r.epoch).collect();
        assert_eq!(history, (1..=epochs).collect::<Vec<_>>(), "history of trial {}", record.id);
        let mut reported: Vec<u32> = record.epochs.iter().map(|e| e.report.epoch).collect();
        reported.sort_unstable();
        reported.dedup();
        assert_eq!(reported, (1..=epochs).collect::<Vec<_>>(), "epoch reports of trial {}", record.id);
    }
}

/// An epoch history without what wall-clock time decides (seconds and the throughputs measured
/// from them), which differs between runs that computed the same numbers.
pub fn timeless(history: &[::common::EpochReport]) -> Vec<::common::EpochReport> {
    history
        .iter()
        .map(|e| ::common::EpochReport {
            seconds: 0.0,
            train_images_per_s: 0.0,
            eval_images_per_s: 0.0,
            ..e.clone()
        })
        .collect()
}
