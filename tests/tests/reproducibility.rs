//! A trial's numbers depend on its definition, not on how it was deployed: one small sweep
//! (small_cnn, Adam, generated data, 2 trials) through `worker train`, `coordinator --local` with
//! 1 and 2 workers, and standalone agents with other `--cpu-threads`, one of its trials killed
//! mid-trial and resumed by an agent with more threads: every result bit-identical. Then
//! `coordinator reproduce` on that store (identical: exit 0) and on the store with one number
//! perturbed (exit 1, naming the epoch and the metric).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, field, kill_pid, records, start_worker_with, Coordinator, Process};
use coordinator::reproduce::{compare, Comparison};
use coordinator::store::TrialRecord;

const EPOCHS: u32 = 4;
const SEEDS: [u64; 2] = [1, 2];
/// Enough images that an epoch lasts far longer than reading a log line: the resume test kills a
/// trial inside its second epoch.
const DATASET: &str = "classes: 4, train_size: 2048, val_size: 64, label_noise: 0.25";

fn sweep(dir: &Path) -> PathBuf {
    let text = format!(
        "name: invariance\nepochs: {EPOCHS}\nbatch_size: 16\nlearning_rate: 0.001\nseeds: [1, 2]\n\
         methods: [baseline]\narchitectures: [small_cnn]\noptimizers: [adam]\nresolutions: [16]\nhead: paper\n\
         gpus_per_trial: 1\ndatasets:\n  synthetic:\n    format: synthetic\n    options: {{{DATASET}}}\n"
    );
    let path = dir.join("sweep.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The sweep's trial of `seed` as a trial file for `worker train`.
fn trial_file(dir: &Path, seed: u64) -> PathBuf {
    let text = format!(
        "architecture: small_cnn\noptimizer: adam\nhead: paper\n\
         dataset: {{name: synthetic, format: synthetic, options: {{{DATASET}}}}}\n\
         resolution: 16\nmethod: baseline\nepochs: {EPOCHS}\nbatch_size: 16\nlearning_rate: 0.001\nseed: {seed}\n"
    );
    let path = dir.join(format!("trial-{seed}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Results by seed.
type Results = BTreeMap<u64, ::common::TrialResult>;

fn by_seed(records: Vec<TrialRecord>) -> Results {
    assert_eq!(records.len(), SEEDS.len());
    records
        .into_iter()
        .map(|r| {
            assert_eq!(r.state, "done", "trial {}: {:?}", r.id, r.last_error);
            (r.spec.seed, r.result.unwrap_or_else(|| panic!("trial {} has no result", r.id)))
        })
        .collect()
}

fn assert_identical(expected: &Results, got: &Results, deployment: &str) {
    for seed in SEEDS {
        match compare(&expected[&seed], &got[&seed]) {
            Comparison::Identical { epochs } => assert_eq!(epochs, EPOCHS as usize),
            Comparison::Differs(d) => panic!("seed {seed} through {deployment}: {}", d.describe()),
        }
    }
}

/// `worker train`, one process per trial, with libtorch's default threads (every core).
fn through_worker_train(dir: &Path) -> Results {
    SEEDS
        .iter()
        .map(|&seed| {
            let out = dir.join(format!("result-{seed}.json"));
            let mut command = Command::new(binary("worker"));
            command
                .arg("train")
                .arg("--trial")
                .arg(trial_file(dir, seed))
                .arg("--out")
                .arg(&out)
                .arg("--cache-dir")
                .arg(dir.join("cache"))
                .arg("--checkpoint-dir")
                .arg(dir.join("checkpoints"))
                .arg("--no-progress");
            Process::spawn(&mut command).wait_success("worker train");
            let result = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
            (seed, result)
        })
        .collect()
}

fn through_local(dir: &Path, workers: u32) -> (PathBuf, Results) {
    let state = dir.join(format!("local-{workers}"));
    let mut command = Command::new(binary("coordinator"));
    command.arg("--sweep").arg(sweep(dir)).arg("--state-dir").arg(&state).args([
        "--local",
        "--workers",
        &workers.to_string(),
    ]);
    Process::spawn(&mut command).wait_success("coordinator --local");
    let results = by_seed(records(&state));
    (state, results)
}

/// A coordinator and an agent with `--cpu-threads 1`; once the first trial's checkpoint of epoch 1
/// is uploaded, that agent and the trial's process are killed, and an agent with two ranks and
/// `--cpu-threads 2` finishes the sweep: the killed trial resumes there from its checkpoint.
fn through_agents_with_a_kill(dir: &Path) -> Results {
    let state = dir.join("agents");
    let mut coordinator = Coordinator::start(&sweep(dir), &state, "127.0.0.1:0", &["--lease-seconds", "3"]);
    let mut first = start_worker_with(&coordinator.url(), &dir.join("a"), "a", &["--cpu-threads", "1"]);
    let started = first.stderr.wait_for("`trial process started`", |l| l.contains("trial process started"));
    let (trial, pid) =
        (field(&started, "trial").unwrap().to_string(), field(&started, "pid").unwrap().to_string());
    first.stderr.wait_for("its checkpoint of epoch 1", |l| {
        l.contains("checkpoint uploaded")
            && field(l, "trial") == Some(&trial)
            && field(l, "epoch") == Some("1")
    });
    first.kill();
    kill_pid(&pid);
    let mut second = start_worker_with(
        &coordinator.url(),
        &dir.join("b"),
        "b",
        &["--cpu-ranks", "2", "--cpu-threads", "2"],
    );
    coordinator.process.wait_success("coordinator");
    second.wait_success("second agent");
    let records = records(&state);
    let killed = records.iter().find(|r| r.id == trial).expect("the killed trial is in the store");
    assert_eq!(killed.attempts, 2, "the killed trial ran a second attempt");
    let resumed_from = killed.epochs.iter().filter(|e| e.attempt == 2).map(|e| e.report.epoch).min();
    assert!(
        resumed_from.is_some_and(|e| e > 1),
        "the second attempt resumed from a checkpoint, not from scratch: its first epoch {resumed_from:?}"
    );
    by_seed(records)
}

/// `coordinator reproduce PREFIX --state-dir DIR`.
fn reproduce(state: &Path, prefix: &str) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(binary("coordinator"));
    command.args(["reproduce", prefix]).arg("--state-dir").arg(state);
    let mut process = Process::spawn(&mut command);
    let status = process.wait();
    (status, format!("{}\n{}", process.stdout.all(), process.stderr.all()))
}

#[test]
fn one_sweep_deployed_five_ways_gives_the_same_bits_and_reproduce_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let reference = through_worker_train(dir.path());
    let (state, local_one) = through_local(dir.path(), 1);
    assert_identical(&reference, &local_one, "--local --workers 1");
    let (_, local_two) = through_local(dir.path(), 2);
    assert_identical(&reference, &local_two, "--local --workers 2");
    let agents = through_agents_with_a_kill(dir.path());
    assert_identical(&reference, &agents, "agents with --cpu-threads 1 then 2, one trial killed and resumed");

    // Every result says what produced it.
    for result in reference.values().chain(local_two.values()) {
        let manifest = result.manifest.as_ref().expect("a result carries its manifest");
        assert_eq!((manifest.devices.as_str(), manifest.ranks, manifest.cpu_threads), ("cpu", 1, 1));
        assert!(manifest.libtorch.starts_with("2.") && !manifest.cpu.is_empty(), "{manifest:?}");
        assert!(manifest.version.contains(env!("CARGO_PKG_VERSION")), "{manifest:?}");
    }

    // `reproduce` on an untouched store: a fresh process computes the same bits.
    let record = records(&state).into_iter().find(|r| r.spec.seed == 1).unwrap();
    let (status, output) = reproduce(&state, &record.id[..8]);
    assert!(status.success(), "reproduce of an identical store: {status}\n{output}");
    assert!(output.contains("bit-identical"), "{output}");
    assert!(
        output.contains("this rerun") && output.contains("libtorch"),
        "manifests side by side:\n{output}"
    );

    // One bit of one stored number changed: reproduce names where, and fails.
    let mut perturbed = record.result.clone().unwrap();
    let loss = perturbed.history[1].val_loss;
    perturbed.history[1].val_loss = f64::from_bits(loss.to_bits() + 1);
    let db = rusqlite::Connection::open(state.join(coordinator::store::DB_FILE)).unwrap();
    let changed = db
        .execute(
            "UPDATE results SET result_json = ?1 WHERE trial_id = ?2",
            (serde_json::to_string(&perturbed).unwrap(), &record.id),
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let (status, output) = reproduce(&state, &record.id[..8]);
    assert_eq!(status.code(), Some(1), "reproduce of a perturbed store:\n{output}");
    assert!(output.contains("differs, first at epoch 2, val_loss"), "{output}");
}
