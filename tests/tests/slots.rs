//! Device slots end to end: trials sharing a device (`trials_per_gpu`), packed by measured memory
//! (`auto`), and a trial that fits no worker reported at once. One CPU rank with a fake memory
//! size (`--device-memory-mb`) stands in for a GPU; the noop stand-in reports a fake peak device
//! memory (`device_mb`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_all_done_once, binary, field, noop_sweep, records, Coordinator, Process};

/// A noop sweep of `trials` trials with `extra` top-level keys, and `device_mb` as the noop's
/// peak device memory when given.
fn sweep(
    dir: &Path,
    trials: usize,
    epochs: u32,
    epoch_ms: u64,
    device_mb: Option<u64>,
    extra: &str,
) -> PathBuf {
    let path = noop_sweep(dir, trials, epochs, epoch_ms);
    let mut text = std::fs::read_to_string(&path).unwrap();
    // The dataset's options are the file's last block.
    if let Some(mb) = device_mb {
        text.push_str(&format!("      device_mb: {mb}\n"));
    }
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    path
}

/// A worker with one CPU rank standing in for a GPU of `memory_mb`.
fn one_device_worker(url: &str, work_dir: &Path, memory_mb: u64) -> Process {
    let mut command = Command::new(binary("worker"));
    command
        .args(["--coordinator", url, "--worker-id", "w", "--cpu-ranks", "1"])
        .args(["--device-memory-mb", &memory_mb.to_string()])
        .arg("--work-dir")
        .arg(work_dir);
    Process::spawn(&mut command)
}

/// The most trials the worker's log shows running at once: `trial started` up, `trial finished`
/// down (the agent logs it when the trial ends, before its result is sent: the next trial may
/// start meanwhile). One process writes the log, so its order is the order things happened in.
fn most_at_once(log: &str) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for line in log.lines() {
        if line.contains("trial started") {
            now += 1;
            most = most.max(now);
        } else if line.contains("trial finished") {
            now = now.saturating_sub(1);
        }
    }
    most
}

/// Runs a sweep to its end with one one-device worker; answers the worker's log.
fn run(sweep: &Path, dir: &Path, memory_mb: u64, trials: usize, epochs: u32) -> String {
    let state = dir.join("state");
    let mut coordinator = Coordinator::start(sweep, &state, "127.0.0.1:0", &[]);
    let mut worker = one_device_worker(&coordinator.url(), &dir.join("w"), memory_mb);
    coordinator.process.wait_success("coordinator");
    worker.wait_success("worker");
    assert_all_done_once(&records(&state), trials, epochs);
    worker.stderr.all()
}

#[test]
fn two_trials_share_one_device_with_trials_per_gpu_2_and_not_with_1() {
    let dir = tempfile::tempdir().unwrap();
    // Each trial lasts 1 s: the second is assigned a few milliseconds after the first.
    let shared = sweep(dir.path(), 2, 2, 500, None, "gpus_per_trial: 1\ntrials_per_gpu: 2\n");
    let log = run(&shared, &dir.path().join("shared"), 1000, 2, 2);
    assert_eq!(most_at_once(&log), 2, "both trials should run at once on the one device:\n{log}");
    // Two slots of one device: two folders, so that their job files and checkpoints stay apart.
    assert!(
        dir.path().join("shared/w/devices/0").is_dir() && dir.path().join("shared/w/devices/0.1").is_dir()
    );

    let alone = sweep(dir.path(), 2, 2, 500, None, "gpus_per_trial: 1\n");
    let log = run(&alone, &dir.path().join("alone"), 1000, 2, 2);
    assert_eq!(most_at_once(&log), 1, "one trial per device by default:\n{log}");
}

#[test]
fn auto_runs_the_first_trial_alone_then_as_many_as_its_measured_memory_allows() {
    let dir = tempfile::tempdir().unwrap();
    // 300 MB measured, 360 reserved: two fit in 1000 MB, three do not.
    let auto = sweep(dir.path(), 4, 3, 400, Some(300), "gpus_per_trial: 1\ntrials_per_gpu: auto\n");
    let log = run(&auto, dir.path(), 1000, 4, 3);
    assert_eq!(most_at_once(&log), 2, "{log}");
    // Until the first epoch report says how much it takes, the first trial has the device alone.
    let lines: Vec<&str> = log.lines().collect();
    let started: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains("trial started")).collect();
    let first_trial = field(lines[started[0]], "trial").unwrap();
    let first_report = lines
        .iter()
        .position(|l| l.contains("epoch reported") && field(l, "trial") == Some(first_trial))
        .unwrap_or_else(|| panic!("no epoch report of {first_trial}:\n{log}"));
    assert!(started[1] > first_report, "the second trial started before the first was measured:\n{log}");
}

#[test]
fn a_trial_needing_more_devices_than_any_worker_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = sweep(dir.path(), 1, 1, 0, None, "gpus_per_trial: 2\n");
    let state = dir.path().join("state");
    let coordinator = Coordinator::start(&path, &state, "127.0.0.1:0", &[]);
    let _worker = one_device_worker(&coordinator.url(), &dir.path().join("w"), 1000);
    let line = coordinator.process.stderr.wait_for("naming the trial that fits no worker", |l| {
        l.contains("needs 2 devices") && l.contains("the largest worker has 1")
    });
    let trial = &records(&state)[0].id;
    assert!(line.contains(&format!("trial {trial}")), "{line}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        let mut client =
            proto::pb::coordinator_client::CoordinatorClient::connect(coordinator.url()).await.unwrap();
        client.status(proto::pb::StatusRequest {}).await.unwrap().into_inner()
    });
    assert_eq!(status.pending, 1);
    assert_eq!(status.unplaceable.len(), 1, "{:?}", status.unplaceable);
    assert!(
        status.unplaceable[0].contains(&format!("trial {trial} needs 2 devices")),
        "{:?}",
        status.unplaceable
    );
}
