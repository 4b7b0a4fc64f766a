//! `worker train` as a user runs it: the real binary, real trial files.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::write_class_folders;
use worker::{TrialResult, TrialStatus};

const SMALL: &str = "\
architecture: small_cnn
optimizer: sgd
head: linear
dataset:
  name: synthetic
  format: synthetic
  options:
    classes: 4
    train_size: 64
    val_size: 16
resolution: 12
method: sal
epochs: 2
batch_size: 16
learning_rate: 0.05
seed: 3
";

fn worker(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .arg("--no-progress")
        .output()
        .unwrap()
}

fn write_trial(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn trains_a_trial_prints_the_summary_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let trial = write_trial(dir.path(), "small.yaml", SMALL);
    let out = dir.path().join("result.json");
    let output = worker(
        dir.path(),
        &["train", "--trial", &trial, "--cpu-ranks", "2", "--check-replicas", "--out", out.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("top-1") && stdout.contains("macro avg") && stdout.contains("small_cnn sgd"),
        "{stdout}"
    );
    assert!(stderr.contains("epoch   2:"), "{stderr}");
    assert!(stderr.contains("replicas identical after every epoch (2 ranks, 2 epochs)"), "{stderr}");
    let result: TrialResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(result.status, TrialStatus::Completed);
    assert_eq!(result.history.len(), 2);
    assert_eq!(result.per_class.len(), 4);
    assert_eq!(result.weighted_avg.support, 16);
    assert!(result.peak_host_mb > 0.0 && result.inference_ms_per_batch > 0.0);
    assert!(dir.path().join("checkpoints").join(worker::train::checkpoint::FILE_NAME).is_file());

    // The checkpoint of epoch 2 resumes into a 3-epoch run of the same trial.
    let longer = write_trial(dir.path(), "longer.yaml", &SMALL.replace("epochs: 2", "epochs: 3"));
    let checkpoint = dir.path().join("checkpoints").join(worker::train::checkpoint::FILE_NAME);
    let output = worker(
        dir.path(),
        &[
            "train",
            "--trial",
            &longer,
            "--resume",
            checkpoint.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let resumed: TrialResult = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(resumed.history.len(), 3);
    assert_eq!(resumed.history[..2], result.history[..2]);
}

/// Runs a bad trial; returns its one-line message, after checking the exit code 2.
fn refused(dir: &Path, name: &str, text: &str) -> String {
    let trial = write_trial(dir, name, text);
    let output = worker(dir, &["train", "--trial", &trial]);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(name), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    stderr
}

#[test]
fn bad_trials_exit_2_with_one_line_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let message = refused(d, "arch.yaml", &SMALL.replace("small_cnn", "resnet9000"));
    assert!(message.contains("arch.yaml:1:") && message.contains("resnet9000"), "{message}");

    let message = refused(d, "optim.yaml", &SMALL.replace("optimizer: sgd", "optimizer: adagrad9"));
    assert!(message.contains("optim.yaml:2:") && message.contains("adagrad9"), "{message}");

    let message = refused(d, "format.yaml", &SMALL.replace("format: synthetic", "format: parquet"));
    assert!(message.contains("format.yaml:6:") && message.contains("dataset.format"), "{message}");

    let message = refused(d, "typo.yaml", &SMALL.replace("epochs: 2", "epocs: 2"));
    assert!(message.contains("typo.yaml:13:1: unknown field `epocs`"), "{message}");

    let message = refused(d, "type.yaml", &SMALL.replace("batch_size: 16", "batch_size: many"));
    assert!(message.contains("type.yaml:14:") && message.contains("batch_size"), "{message}");

    let message = refused(d, "tiny.yaml", &SMALL.replace("resolution: 12", "resolution: 2"));
    assert!(message.contains("tiny.yaml:11:") && message.contains("resolution"), "{message}");

    let message = refused(d, "option.yaml", &SMALL.replace("    classes: 4", "    clases: 4"));
    assert!(message.contains("option.yaml:7:") && message.contains("clases"), "{message}");

    // What cannot be deterministic, refused before anything runs (the trial file's keys).
    let benchmark = format!("{SMALL}deterministic: true\ncudnn_benchmark: true\n");
    let message = refused(d, "benchmark.yaml", &benchmark);
    assert!(message.contains("benchmark.yaml:18: `cudnn_benchmark`: cuDNN's benchmark"), "{message}");
    let message = refused(d, "threads.yaml", &format!("{SMALL}cpu_threads: 0\n"));
    assert!(message.contains("threads.yaml:17: `cpu_threads`: must be in 1..=1024, got 0"), "{message}");

    let folder = |root: &Path| {
        SMALL.replace(
            "  format: synthetic\n  options:\n    classes: 4\n    train_size: 64\n    val_size: 16\n",
            &format!("  format: imagenette\n  root: {}\n", root.display()),
        )
    };
    let message = refused(d, "root.yaml", &folder(&d.join("absent")));
    assert!(message.contains("root.yaml:7:") && message.contains("absent"), "{message}");

    let empty = d.join("empty-class");
    write_class_folders(&empty.join("train"), &["a", "b"], 2, "png");
    write_class_folders(&empty.join("val"), &["a", "b"], 1, "png");
    std::fs::create_dir_all(empty.join("train/c")).unwrap();
    let message = refused(d, "empty.yaml", &folder(&empty));
    assert!(message.contains("empty class folder") && message.contains("train/c"), "{message}");

    let no_val = d.join("no-val");
    write_class_folders(&no_val.join("train"), &["a", "b"], 2, "png");
    write_class_folders(&no_val.join("val"), &["a"], 1, "png");
    let message = refused(d, "noval.yaml", &folder(&no_val));
    assert!(message.contains("class `b` is missing from val"), "{message}");

    let output = worker(d, &["train", "--trial", &d.join("nope.yaml").display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope.yaml"));
}

#[test]
fn help_lists_the_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_worker")).args(["train", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for option in ["--trial", "--gpus", "--cpu-ranks", "--out", "--cache-dir", "--checkpoint-dir", "--resume"]
    {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn ctrl_c_stops_at_the_next_step_and_names_the_checkpoint() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let trial = write_trial(dir.path(), "long.yaml", &SMALL.replace("epochs: 2", "epochs: 500"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["train", "--trial", &trial, "--no-progress", "--cache-dir"])
        .arg(dir.path().join("cache"))
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    // The first epoch line means a checkpoint has been written (every epoch by default).
    while !line.starts_with("epoch") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "worker ended before its first epoch");
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130), "{rest}");
    assert!(rest.contains("interrupted after epoch") && rest.contains("--resume"), "{rest}");
    assert!(dir.path().join("checkpoints").join(worker::train::checkpoint::FILE_NAME).is_file());
}
