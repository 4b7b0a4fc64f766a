//! `coordinator --sweep FILE --local`: the coordinator and its workers in one process, the report
//! at the end; run again on the same state dir, nothing is rerun.

use std::process::Command;

const SWEEP: &str = "\
name: local
epochs: 2
batch_size: 4
learning_rate: 0.01
seeds: [1, 2]
methods: [baseline, sal]
architectures: [noop]
optimizers: [sgd]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
    options:
      epoch_ms: 10
";

fn run(args: &[&str]) -> (bool, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_coordinator")).args(args).env("RUST_LOG", "info").output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn local_mode_runs_the_sweep_reports_it_and_never_reruns_a_finished_cell() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("local.yaml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let sweep = sweep.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let (ok, stdout, stderr) = run(&["--sweep", sweep, "--state-dir", state, "--local", "--workers", "2"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("local: 4 done, 0 diverged, 0 failed, 0 not finished"), "{stderr}");
    // The report: one row per method, both seeds finished, SAL's delta against the baseline.
    assert!(stdout.contains("baseline") && stdout.contains("sal") && stdout.contains("2/2"), "{stdout}");
    assert!(stdout.contains("+0.00"), "{stdout}");
    let completed = stderr.matches("trial completed").count();
    assert!(completed >= 4, "{stderr}");
    // Every trial ended: none keeps a checkpoint in the state dir.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("state").join("checkpoints"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "checkpoints left behind: {left:?}");

    // Again, with one more seed: only the two new cells run.
    std::fs::write(dir.path().join("local.yaml"), SWEEP.replace("seeds: [1, 2]", "seeds: [1, 2, 3]"))
        .unwrap();
    let (ok, stdout, stderr) = run(&["--sweep", sweep, "--state-dir", state, "--local", "--workers", "2"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("trials=6 new=2 finished=4"), "{stderr}");
    assert!(stdout.contains("3/3"), "{stdout}");

    let (ok, json, stderr) = run(&["report", "--state-dir", state, "--by", "seed", "--format", "json"]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    for trial in trials {
        assert_eq!(trial["state"], "done");
        assert_eq!(trial["attempts"], 1, "a finished cell ran again: {trial}");
        assert_eq!(trial["epochs"].as_array().unwrap().len(), 2);
        assert_eq!(trial["result"]["history"].as_array().unwrap().len(), 2);
    }
}
