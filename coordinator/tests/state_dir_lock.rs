//! One coordinator per state dir, through the real binary: a second one on the same dir exits 2
//! naming the first one's pid; a killed coordinator leaves no stale lock behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SWEEP: &str = "\
name: locked
epochs: 1
batch_size: 1
learning_rate: 0.1
seeds: [1]
methods: [baseline]
architectures: [noop]
optimizers: [sgd]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
";

/// Kills the coordinator when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a coordinator serving `sweep` with no workers (so it serves until killed) and waits
/// for its `listening on` line: by then it holds the state dir's lock.
fn serve(sweep: &str, state: &str) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--sweep", sweep, "--state-dir", state, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The deadline only turns a hang into a failure.
    loop {
        let line =
            rx.recv_timeout(Duration::from_secs(90)).expect("the coordinator prints `listening on ADDR`");
        if line.starts_with("listening on ") {
            return running;
        }
    }
}

#[test]
fn a_second_coordinator_on_a_state_dir_exits_2_naming_the_first_ones_pid() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep.yaml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let (sweep, state) = (sweep.to_str().unwrap(), dir.path().join("state"));
    let state = state.to_str().unwrap();

    let mut first = serve(sweep, state);
    let second = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--sweep", sweep, "--state-dir", state, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("in use by another coordinator (pid {})", first.0.id())), "{stderr}");
    assert!(first.0.try_wait().unwrap().is_none(), "the first coordinator keeps serving");

    // Killed outright, the first leaves no stale lock: the kernel drops it with the process.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let _third = serve(sweep, state);
}
