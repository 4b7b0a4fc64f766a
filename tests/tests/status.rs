//! `coordinator status --watch` against a real coordinator and worker: the workers, each trial in
//! flight with its epoch, refreshed until the sweep is done.

mod common;

use std::process::Command;

use common::{binary, noop_sweep, start_worker, Coordinator, Process};

#[test]
fn status_watch_shows_the_worker_and_trials_in_flight_until_the_sweep_is_done() {
    let dir = tempfile::tempdir().unwrap();
    // 3 trials of 6 epochs of 0.25 s on one worker: several refreshes see a trial mid-way.
    let sweep = noop_sweep(dir.path(), 3, 6, 250);
    let state = dir.path().join("state");
    // Kept serving, so that the last refresh finds it after the sweep is done.
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &["--keep-serving"]);
    let mut worker = start_worker(&coordinator.url(), &dir.path().join("a"), "worker-a");
    let mut watch = Process::spawn(Command::new(binary("coordinator")).args([
        "status",
        "--coordinator",
        &coordinator.url(),
        "--watch",
        "--interval",
        "0.2",
    ]));
    // A row of the in-flight table: the trial's setup, its worker and an epoch reported.
    let row = watch.stdout.wait_for("a trial in flight past its first epoch", |l| {
        l.contains("noop/sgd/synthetic@32 baseline seed")
            && l.contains("worker-a")
            && (1..=6).any(|e| l.contains(&format!(" {e}/6 ")))
    });
    assert!(row.contains("–"), "a baseline has no stress: {row}");
    watch.wait_success("status --watch");
    let frames = watch.stdout.all();
    assert!(
        frames.contains("e2e: 3 done, 0 running, 0 leased, 0 pending, 0 failed, 0 diverged (3 trials)"),
        "{frames}"
    );
    // The workers table: the worker's host and when it was last heard.
    assert!(frames.contains("worker-a") && frames.contains("s ago"), "{frames}");
    worker.wait_success("worker");
    coordinator.process.kill();
}
