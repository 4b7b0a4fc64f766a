//! TensorBoard: a real sweep of two real trials (small_cnn on generated data, baseline and SAL,
//! SAL set to intervene) served by a real coordinator with `--tensorboard DIR`, then `coordinator
//! export tensorboard`; both logdirs read back by the `tensorboard` package's own
//! EventAccumulator (`scripts/tensorboard_readback.py`), and checked against the store: every
//! epoch's scalars (the stored f64s as f32, bit for bit), SAL's interventions at their epochs,
//! every trial's hyperparameters and final metrics, the experiment record; and the live logdir
//! holds what the export writes.
//!
//! The Python is the first of `$TB_PYTHON`, the project's `.venv/bin/python` and `python3` that
//! can import tensorboard (`scripts/setup.sh --test-tools` installs it into `.venv`); without one the
//! test says SKIPPED (and fails under `SAL_REQUIRE_TEST_TOOLS`, as in `.ci/run`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ::common::{EpochReport, TrialResult};
use common::{binary, records, start_worker_with, Coordinator};
use coordinator::export::tensorboard::run::{intervention_text, run_dir, METRICS};
use coordinator::report::model::history;
use coordinator::store::TrialRecord;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Python that can import TensorBoard's EventAccumulator.
fn tensorboard_python() -> Option<String> {
    let venv = repo().join(".venv/bin/python").display().to_string();
    let candidates = std::env::var("TB_PYTHON").into_iter().chain([venv, "python3".to_owned()]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import tensorboard.backend.event_processing.event_accumulator"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// Two trials of 6 epochs, baseline and SAL; SAL without warm-up and with a loss improvement it
/// never makes (`eps_loss`), so its stress rises from the first epoch and it intervenes.
fn sweep(dir: &Path) -> PathBuf {
    let text =
        "name: tb\nepochs: 6\nbatch_size: 16\nlearning_rate: 0.01\nseeds: [1]\nmethods: [baseline, sal]\n\
                architectures: [small_cnn]\noptimizers: [adam]\nresolutions: [16]\nhead: linear\n\
                sal:\n  warmup_epochs: 0\n  eps_loss: 100.0\n\
                datasets:\n  synthetic:\n    format: synthetic\n    options:\n      classes: 4\n      \
                train_size: 256\n      val_size: 64\n      label_noise: 0.25\n";
    let path = dir.join("sweep.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn readback(python: &str, logdir: &Path) -> Value {
    let out = Command::new(python)
        .arg(repo().join("scripts/tensorboard_readback.py"))
        .arg(logdir)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "readback failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("readback prints JSON")
}

fn export(state: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(binary("coordinator"))
        .args(["export", "tensorboard", "--state-dir"])
        .arg(state)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("coordinator runs")
}

/// Each epoch's scalars as they should be, written out here rather than taken from the exporter.
fn expected_epoch(report: &EpochReport, learning_rate: f64) -> Vec<(&'static str, f64)> {
    let mut scalars = vec![
        ("train/loss", report.train_loss),
        ("train/accuracy", report.train_accuracy),
        ("val/loss", report.val_loss),
        ("val/accuracy", report.val_accuracy),
        ("train/grad_norm", report.grad_norm),
        ("train/learning_rate", learning_rate),
        ("time/epoch_seconds", report.seconds),
        ("time/train_images_per_s", report.train_images_per_s),
    ];
    if let Some(sal) = &report.sal {
        scalars.extend([
            ("sal/stress", sal.stress),
            ("sal/stress_after", sal.stress_after),
            ("sal/noise_sigma", sal.noise_sigma),
        ]);
    }
    scalars
}

/// Every scalar of a run, as TensorBoard shows it: tag -> [[step, value]].
fn expected_scalars(history: &[EpochReport], result: &TrialResult, lr: f64) -> BTreeMap<String, Value> {
    let mut scalars: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for report in history {
        for (tag, value) in expected_epoch(report, lr) {
            // TensorBoard keeps a float32; Python holds it as an exact double.
            scalars.entry(tag.into()).or_default().push(json!([report.epoch, value as f32 as f64]));
        }
    }
    let last = history.last().unwrap().epoch;
    for (tag, value) in
        [("test/top1", result.top1), ("test/top5", result.top5), ("test/loss", result.test_loss)]
    {
        scalars.entry(tag.into()).or_default().push(json!([last, value as f32 as f64]));
    }
    scalars.into_iter().map(|(tag, points)| (tag, Value::Array(points))).collect()
}

fn check_run(run: &Value, record: &TrialRecord) -> usize {
    let result = record.result.as_ref().expect("a finished trial");
    let epochs = history(record);
    assert_eq!(epochs.len(), 6);
    let spec = &record.spec;
    let scalars: BTreeMap<String, Value> =
        run["scalars"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scalars, expected_scalars(&epochs, result, spec.learning_rate), "scalars of {}", record.id);

    let interventions: Vec<Value> = epochs
        .iter()
        .filter_map(|e| {
            let sal = e.sal.as_ref()?;
            let text = intervention_text(sal)?;
            assert!(text.starts_with(&format!("epoch {}: **", e.epoch)), "{text}");
            Some(json!([e.epoch, text]))
        })
        .collect();
    let want_texts =
        if interventions.is_empty() { json!({}) } else { json!({"sal/intervention": interventions}) };
    assert_eq!(run["texts"], want_texts, "texts of {}", record.id);

    assert_eq!(
        run["session_start_info"],
        json!({
            "method": {"string_value": spec.method.name()},
            "architecture": {"string_value": "small_cnn"},
            "optimizer": {"string_value": "adam"},
            "dataset": {"string_value": "synthetic"},
            "resolution": {"number_value": 16.0},
            "seed": {"number_value": 1.0},
            "learning_rate": {"number_value": 0.01},
            "batch_size": {"number_value": 16.0},
            "epochs": {"number_value": 6.0},
        }),
        "hparams of {}",
        record.id
    );
    assert!(run["experiment"].is_null());
    interventions.len()
}

fn check_logdir(json: &Value, records: &[TrialRecord]) -> usize {
    let runs = json["runs"].as_object().unwrap();
    let mut want: BTreeSet<String> =
        records.iter().map(|r| run_dir(&r.id, &r.spec).display().to_string()).collect();
    want.insert(".".into());
    assert_eq!(runs.keys().cloned().collect::<BTreeSet<_>>(), want);

    let top = &runs["."];
    assert_eq!(top["scalars"], json!({}));
    let string = |s: &str| json!({"string_value": s});
    let number = |x: f64| json!({"number_value": x});
    let discrete = |name: &str, values: Vec<Value>, ty: u32| json!({"name": name, "type": ty, "differs": values.len() > 1, "domain_discrete": values});
    // api.proto DataType: STRING 1, FLOAT64 3. The column that varies (method) first, marked so.
    assert_eq!(
        top["experiment"]["hparams"],
        json!([
            discrete("method", vec![string("baseline"), string("sal")], 1),
            discrete("architecture", vec![string("small_cnn")], 1),
            discrete("optimizer", vec![string("adam")], 1),
            discrete("dataset", vec![string("synthetic")], 1),
            discrete("resolution", vec![number(16.0)], 3),
            discrete("seed", vec![number(1.0)], 3),
            discrete("learning_rate", vec![number(0.01)], 3),
            discrete("batch_size", vec![number(16.0)], 3),
            discrete("epochs", vec![number(6.0)], 3),
        ])
    );
    let metrics: Vec<Value> = METRICS.iter().map(|tag| json!(["", tag])).collect();
    assert_eq!(top["experiment"]["metrics"], Value::Array(metrics));

    records.iter().map(|r| check_run(&runs[&run_dir(&r.id, &r.spec).display().to_string()], r)).sum()
}

/// The event files of each run folder of a logdir.
fn files_per_run(logdir: &Path) -> BTreeMap<PathBuf, usize> {
    let mut found = BTreeMap::new();
    let mut stack = vec![logdir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap().to_string_lossy().contains("tfevents") {
                *found.entry(dir.strip_prefix(logdir).unwrap().to_path_buf()).or_default() += 1;
            }
        }
    }
    found
}

#[test]
fn a_followed_and_an_exported_sweep_read_back_in_tensorboard() {
    let Some(python) = tensorboard_python() else {
        let why = "no python with tensorboard (scripts/setup.sh --test-tools installs it into .venv)";
        // CI (.ci/run) requires the tools: a missing one is a failure there, not a skip.
        assert!(std::env::var_os("SAL_REQUIRE_TEST_TOOLS").is_none(), "{why}");
        println!("SKIPPED: {why}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (state, live, exported) =
        (dir.path().join("state"), dir.path().join("live"), dir.path().join("export"));
    let sweep = sweep(dir.path());
    let mut coordinator =
        Coordinator::start(&sweep, &state, "127.0.0.1:0", &["--tensorboard", live.to_str().unwrap()]);
    let mut agent = start_worker_with(
        &coordinator.url(),
        &dir.path().join("agent"),
        "agent",
        &["--cpu-ranks", "2", "--cpu-threads", "1"],
    );
    coordinator.process.wait_success("coordinator");
    agent.wait_success("agent");
    let records = records(&state);
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.state == "done"), "{records:?}");

    let out = export(&state, &exported, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("exported sweep tb: 2 trials, 2 runs, 3 files"), "{stdout}");
    assert!(stdout.contains(&format!("tensorboard --logdir {}", exported.display())), "{stdout}");

    let exported_json = readback(&python, &exported);
    let interventions = check_logdir(&exported_json, &records);
    assert!(interventions > 0, "the SAL trial intervened");
    let live_json = readback(&python, &live);
    check_logdir(&live_json, &records);
    assert_eq!(live_json["runs"], exported_json["runs"], "the live logdir holds what the export writes");
    for logdir in [&live, &exported] {
        assert!(files_per_run(logdir).values().all(|&n| n == 1), "{:?}", files_per_run(logdir));
    }

    // Into an earlier export: each run's file is replaced, nothing doubles.
    let again = export(&state, &exported, &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(files_per_run(&exported).values().all(|&n| n == 1), "{:?}", files_per_run(&exported));
    assert_eq!(readback(&python, &exported)["runs"], exported_json["runs"]);

    // Refused in one line, with the usage exit code: a folder that is not an export, a sweep
    // that is not there.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    for (out, extra, says) in [
        (&other, &[][..], "is not empty and holds no TensorBoard export"),
        (&dir.path().join("new"), &["--sweep", "nope"][..], "--sweep nope: no such sweep here"),
    ] {
        let refused = export(&state, out, extra);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says) && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1, "nothing written into it");
}
