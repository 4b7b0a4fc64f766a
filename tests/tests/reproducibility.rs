//! A trial's numbers depend on its definition, not on how it was deployed. Small sweeps
//! (small_cnn, Adam, generated data, 2 trials) through the real binaries, every result compared
//! bit for bit with the same trials through `worker train`:
//!
//! - one CPU rank per trial: `coordinator --local` with 1, 2 and 4 workers, and standalone agents
//!   with other `--cpu-threads`, one trial killed mid-trial and resumed by an agent with more
//!   threads and ranks; then `coordinator reproduce` on that store (identical: exit 0) and on the
//!   store with one number perturbed (exit 1, naming the epoch and the metric), `show` with the
//!   manifest, and the report's warning when one table mixes versions;
//! - two CPU ranks per trial: `--local` with 1 and 2 workers of 2 ranks, and agents with 2 then 4
//!   ranks (two trials at once on the second), one trial killed and resumed;
//! - `deterministic: true`: through `worker train` and an agent's trial process, which both run
//!   with libtorch's deterministic algorithms on and `CUBLAS_WORKSPACE_CONFIG` set;
//! - `scripts/gpu/determinism-check.sh --cpu`, the GPU machine's check on its CPU fallback.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ::common::run_manifest::CUBLAS_WORKSPACE_CONFIG;
use common::{binary, field, kill_pid, records, start_worker_with, Coordinator, Process};
use coordinator::reproduce::{compare, Comparison};
use coordinator::store::TrialRecord;

const SEEDS: [u64; 2] = [1, 2];

/// One small sweep: its trials' ranks, epochs, dataset and extra keys.
struct Variant {
    /// Names its state dirs.
    name: &'static str,
    /// `gpus_per_trial` (CPU ranks here) and `worker train --cpu-ranks`.
    ranks: u32,
    epochs: u32,
    /// The synthetic dataset's options.
    dataset: &'static str,
    /// Lines added to the sweep and to the trial files.
    extra: &'static str,
}

/// Enough images that an epoch lasts far longer than reading a log line: the resume deployments
/// kill a trial inside its second epoch.
const LONG_EPOCHS: &str = "classes: 4, train_size: 2048, val_size: 64, label_noise: 0.25";

impl Variant {
    fn sweep(&self, dir: &Path) -> PathBuf {
        let text = format!(
            "name: {}\nepochs: {}\nbatch_size: 16\nlearning_rate: 0.001\nseeds: [1, 2]\n\
             methods: [baseline]\narchitectures: [small_cnn]\noptimizers: [adam]\nresolutions: [16]\nhead: paper\n\
             gpus_per_trial: {}\n{}datasets:\n  synthetic:\n    format: synthetic\n    options: {{{}}}\n",
            self.name, self.epochs, self.ranks, self.extra, self.dataset
        );
        let path = dir.join(format!("{}.yaml", self.name));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The sweep's trial of `seed` as a trial file for `worker train`.
    fn trial_file(&self, dir: &Path, seed: u64) -> PathBuf {
        let text = format!(
            "architecture: small_cnn\noptimizer: adam\nhead: paper\n\
             dataset: {{name: synthetic, format: synthetic, options: {{{}}}}}\n\
             resolution: 16\nmethod: baseline\nepochs: {}\nbatch_size: 16\nlearning_rate: 0.001\nseed: {seed}\n{}",
            self.dataset, self.epochs, self.extra
        );
        let path = dir.join(format!("{}-trial-{seed}.yaml", self.name));
        std::fs::write(&path, text).unwrap();
        path
    }
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

fn assert_identical(expected: &Results, got: &Results, epochs: u32, deployment: &str) {
    for seed in SEEDS {
        match compare(&expected[&seed], &got[&seed]) {
            Comparison::Identical { epochs: compared } => assert_eq!(compared, epochs as usize),
            Comparison::Differs(d) => panic!("seed {seed} through {deployment}: {}", d.describe()),
        }
    }
}

/// `worker train --cpu-ranks R`, one process per trial.
fn through_worker_train(variant: &Variant, dir: &Path) -> Results {
    SEEDS
        .iter()
        .map(|&seed| {
            let out = dir.join(format!("{}-result-{seed}.json", variant.name));
            let mut command = Command::new(binary("worker"));
            command
                .arg("train")
                .arg("--trial")
                .arg(variant.trial_file(dir, seed))
                .arg("--out")
                .arg(&out)
                .arg("--cache-dir")
                .arg(dir.join("cache"))
                .arg("--checkpoint-dir")
                .arg(dir.join(format!("{}-checkpoints", variant.name)))
                .args(["--cpu-ranks", &variant.ranks.to_string()])
                .arg("--no-progress");
            Process::spawn(&mut command).wait_success("worker train");
            let result = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
            (seed, result)
        })
        .collect()
}

/// `coordinator --local --workers N --cpu-ranks R`.
fn through_local(variant: &Variant, dir: &Path, workers: u32) -> (PathBuf, Results) {
    let state = dir.join(format!("{}-local-{workers}", variant.name));
    let mut command = Command::new(binary("coordinator"));
    command.arg("--sweep").arg(variant.sweep(dir)).arg("--state-dir").arg(&state).args([
        "--local",
        "--workers",
        &workers.to_string(),
        "--cpu-ranks",
        &variant.ranks.to_string(),
    ]);
    Process::spawn(&mut command).wait_success("coordinator --local");
    let results = by_seed(records(&state));
    (state, results)
}

/// A coordinator and an agent started with `first`; once the first trial's checkpoint of epoch 1
/// is uploaded, that agent and the trial's process are killed, and an agent started with `second`
/// finishes the sweep: the killed trial resumes there from its checkpoint.
fn through_agents_with_a_kill(variant: &Variant, dir: &Path, first: &[&str], second: &[&str]) -> Results {
    let state = dir.join(format!("{}-agents", variant.name));
    let mut coordinator =
        Coordinator::start(&variant.sweep(dir), &state, "127.0.0.1:0", &["--lease-seconds", "3"]);
    let work = |name: &str| dir.join(format!("{}-{name}", variant.name));
    let mut agent = start_worker_with(&coordinator.url(), &work("a"), "a", first);
    let started = agent.stderr.wait_for("`trial process started`", |l| l.contains("trial process started"));
    let (trial, pid) =
        (field(&started, "trial").unwrap().to_string(), field(&started, "pid").unwrap().to_string());
    agent.stderr.wait_for("its checkpoint of epoch 1", |l| {
        l.contains("checkpoint uploaded")
            && field(l, "trial") == Some(&trial)
            && field(l, "epoch") == Some("1")
    });
    agent.kill();
    kill_pid(&pid);
    let mut second = start_worker_with(&coordinator.url(), &work("b"), "b", second);
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

/// Runs `coordinator ARGS...`; answers its exit status and its stdout and stderr together.
fn coordinator_command(args: &[&str], state: &Path) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(binary("coordinator"));
    command.args(args).arg("--state-dir").arg(state);
    let mut process = Process::spawn(&mut command);
    let status = process.wait();
    (status, format!("{}\n{}", process.stdout.all(), process.stderr.all()))
}

/// Replaces the stored result of trial `id` with `result`.
fn store_result(state: &Path, id: &str, result: &::common::TrialResult) {
    let db = rusqlite::Connection::open(state.join(coordinator::store::DB_FILE)).unwrap();
    let changed = db
        .execute(
            "UPDATE results SET result_json = ?1 WHERE trial_id = ?2",
            (serde_json::to_string(result).unwrap(), id),
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// The manifest of every result says what ran it.
fn assert_manifests(results: &Results, ranks: u32, deterministic: bool) {
    for result in results.values() {
        let manifest = result.manifest.as_ref().expect("a result carries its manifest");
        assert_eq!((manifest.devices.as_str(), manifest.ranks, manifest.cpu_threads), ("cpu", ranks, 1));
        assert!(manifest.libtorch.starts_with("2.") && !manifest.cpu.is_empty(), "{manifest:?}");
        assert!(manifest.version.contains(env!("CARGO_PKG_VERSION")), "{manifest:?}");
        assert_eq!(manifest.deterministic, deterministic, "libtorch's deterministic algorithms, read back");
        if deterministic {
            assert_eq!(manifest.cublas_workspace_config.as_deref(), Some(CUBLAS_WORKSPACE_CONFIG.1));
        } else if std::env::var_os(CUBLAS_WORKSPACE_CONFIG.0).is_none() {
            assert_eq!(manifest.cublas_workspace_config, None, "only deterministic trials get it");
        }
    }
}

/// The tests of this file run one at a time. An agent packs trials so that their threads fit its
/// `--cpu-threads`; tests running beside each other would load the cores beyond what any agent
/// promised, and a trial of `cpu_threads: 2` then once read another grad_norm (relative 3e-5)
/// than the same trial run alone: bit-identity with more than one thread per rank is claimed for
/// cores that are not oversubscribed (README, "Reproducibility").
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn one_rank_deployed_six_ways_gives_the_same_bits_and_reproduce_show_and_report_say_so() {
    let _serial = one_at_a_time();
    let variant = Variant { name: "one-rank", ranks: 1, epochs: 4, dataset: LONG_EPOCHS, extra: "" };
    let dir = tempfile::tempdir().unwrap();
    let reference = through_worker_train(&variant, dir.path());
    let (state, local_one) = through_local(&variant, dir.path(), 1);
    assert_identical(&reference, &local_one, variant.epochs, "--local --workers 1");
    for workers in [2, 4] {
        let (_, local) = through_local(&variant, dir.path(), workers);
        assert_identical(&reference, &local, variant.epochs, &format!("--local --workers {workers}"));
        assert_manifests(&local, 1, false);
    }
    let agents = through_agents_with_a_kill(
        &variant,
        dir.path(),
        &["--cpu-threads", "1"],
        &["--cpu-ranks", "2", "--cpu-threads", "2"],
    );
    assert_identical(
        &reference,
        &agents,
        variant.epochs,
        "agents with --cpu-threads 1 then 2, one trial killed and resumed",
    );
    assert_manifests(&reference, 1, false);

    // `reproduce` on an untouched store: a fresh process computes the same bits.
    let stored = records(&state);
    let record = stored.iter().find(|r| r.spec.seed == 1).unwrap();
    let prefix = &record.id[..8];
    let (status, output) = coordinator_command(&["reproduce", prefix], &state);
    assert!(status.success(), "reproduce of an identical store: {status}\n{output}");
    assert!(output.contains("bit-identical"), "{output}");
    assert!(
        output.contains("this rerun") && output.contains("libtorch"),
        "manifests side by side:\n{output}"
    );

    // `show` lists what produced the result.
    let (status, output) = coordinator_command(&["show", prefix], &state);
    assert!(status.success(), "{output}");
    assert!(output.contains("produced by:"), "{output}");
    for row in ["  cpu threads per rank: 1", "  ranks: 1", "  devices: cpu", "  deterministic: false"] {
        assert!(output.contains(row), "`{row}` missing from show:\n{output}");
    }

    // One bit of one stored number changed: reproduce names where, and fails.
    let mut perturbed = record.result.clone().unwrap();
    let loss = perturbed.history[1].val_loss;
    perturbed.history[1].val_loss = f64::from_bits(loss.to_bits() + 1);
    store_result(&state, &record.id, &perturbed);
    let (status, output) = coordinator_command(&["reproduce", prefix], &state);
    assert_eq!(status.code(), Some(1), "reproduce of a perturbed store:\n{output}");
    assert!(output.contains("differs, first at epoch 2, val_loss"), "{output}");

    // One build's numbers in the table: no warning; another build's beside them: a warning under
    // the text table and on the HTML page.
    let warning = "Warning: these results were produced by 2 different versions";
    let (status, output) = coordinator_command(&["report"], &state);
    assert!(status.success() && !output.contains("Warning"), "{output}");
    let other = stored.iter().find(|r| r.spec.seed == 2).unwrap();
    let mut older = other.result.clone().unwrap();
    older.manifest.as_mut().unwrap().version = "0.0.9 (git 0000000)".into();
    store_result(&state, &other.id, &older);
    let (status, output) = coordinator_command(&["report"], &state);
    assert!(status.success() && output.contains(warning), "{output}");
    assert!(output.contains("0.0.9 (git 0000000)"), "{output}");
    let page = dir.path().join("report.html");
    let page_arg = page.to_str().unwrap();
    let (status, output) = coordinator_command(&["report", "--format", "html", "--out", page_arg], &state);
    assert!(status.success(), "{output}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(warning) && html.contains("What produced these numbers"), "the HTML page");
}

#[test]
fn two_ranks_give_the_same_bits_through_local_workers_and_agents_resumed_or_not() {
    let _serial = one_at_a_time();
    let variant = Variant { name: "two-ranks", ranks: 2, epochs: 3, dataset: LONG_EPOCHS, extra: "" };
    let dir = tempfile::tempdir().unwrap();
    let reference = through_worker_train(&variant, dir.path());
    assert_manifests(&reference, 2, false);
    for workers in [1, 2] {
        let (_, local) = through_local(&variant, dir.path(), workers);
        assert_identical(
            &reference,
            &local,
            variant.epochs,
            &format!("--local --workers {workers} --cpu-ranks 2"),
        );
    }
    // The second agent runs both trials at once (4 ranks, 4 threads: 2 × 2 each).
    let agents = through_agents_with_a_kill(
        &variant,
        dir.path(),
        &["--cpu-ranks", "2", "--cpu-threads", "2"],
        &["--cpu-ranks", "4", "--cpu-threads", "4"],
    );
    assert_identical(
        &reference,
        &agents,
        variant.epochs,
        "agents with 2 ranks then 4 ranks and --cpu-threads 4, one trial killed and resumed",
    );
}

#[test]
fn deterministic_reaches_the_trial_process_through_worker_train_and_an_agent() {
    let _serial = one_at_a_time();
    let variant = Variant {
        name: "deterministic",
        ranks: 1,
        epochs: 2,
        dataset: "classes: 4, train_size: 128, val_size: 32",
        extra: "deterministic: true\n",
    };
    let dir = tempfile::tempdir().unwrap();
    let reference = through_worker_train(&variant, dir.path());
    assert_manifests(&reference, 1, true);
    // `--local` workers are agents: each trial runs in a trial process the agent starts.
    let (_, local) = through_local(&variant, dir.path(), 2);
    assert_manifests(&local, 1, true);
    assert_identical(&reference, &local, variant.epochs, "--local --workers 2, deterministic");
}

/// The GPU machine's determinism check, on its CPU fallback: both pairs of runs bit-identical,
/// and the deterministic run's manifest showing its settings (so the script is known to run
/// before a GPU is lent).
#[test]
fn the_gpu_determinism_script_runs_on_cpu_and_finds_both_pairs_identical() {
    let _serial = one_at_a_time();
    let worker = binary("worker");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut command = Command::new(root.join("scripts/gpu/determinism-check.sh"));
    command.arg("--cpu").env("BIN", worker.parent().unwrap()).env("EPOCHS", "2").env("TRAIN_SIZE", "128");
    let mut process = Process::spawn(&mut command);
    process.wait_success("scripts/gpu/determinism-check.sh --cpu");
    let output = process.stdout.all();
    assert!(output.contains("without deterministic: bit-identical (2 epochs"), "{output}");
    assert!(output.contains("with deterministic: true: bit-identical (2 epochs"), "{output}");
    assert!(output.contains("\"deterministic\": true"), "{output}");
}

/// The most trials an agent ran at once, from its log: `trial process started` and `trial
/// finished` lines in the order it wrote them.
fn most_at_once(log: &str) -> usize {
    let (mut running, mut most) = (0usize, 0usize);
    for line in log.lines() {
        if line.contains("trial process started") {
            running += 1;
            most = most.max(running);
        } else if line.contains("trial finished") {
            running = running.saturating_sub(1);
        }
    }
    most
}

/// An agent packs CPU trials by the threads each takes (its ranks × its `cpu_threads`), not by
/// its free device slots: two ranks and `--cpu-threads 2` run trials of `cpu_threads: 2` one at a
/// time, though either rank could take one; `--cpu-threads 4` runs two at once.
#[test]
fn an_agent_packs_cpu_trials_by_the_threads_each_takes() {
    let _serial = one_at_a_time();
    // A trial lasts seconds (a process start, libtorch, two epochs); the agent asks for work every
    // 200 ms while it has room, so with room the second trial starts beside the first.
    let variant = Variant {
        name: "packing",
        ranks: 1,
        epochs: 2,
        dataset: "classes: 4, train_size: 512, val_size: 32",
        extra: "cpu_threads: 2\n",
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |threads: &str| {
        let state = dir.path().join(format!("packing-{threads}"));
        let mut coordinator = Coordinator::start(&variant.sweep(dir.path()), &state, "127.0.0.1:0", &[]);
        let mut agent = start_worker_with(
            &coordinator.url(),
            &dir.path().join(format!("agent-{threads}")),
            "agent",
            &["--cpu-ranks", "2", "--cpu-threads", threads],
        );
        coordinator.process.wait_success("coordinator");
        agent.wait_success("agent");
        let results = by_seed(records(&state));
        for result in results.values() {
            assert_eq!(
                result.manifest.as_ref().map(|m| m.cpu_threads),
                Some(2),
                "each rank ran with 2 threads"
            );
        }
        (most_at_once(&agent.stderr.all()), results)
    };
    let (one_at_a_time, alone) = run("2");
    assert_eq!(one_at_a_time, 1, "2 threads of --cpu-threads 2 are taken by one trial");
    let (together, side_by_side) = run("4");
    assert_eq!(together, 2, "--cpu-threads 4 has room for two trials of 2 threads");
    assert_identical(&alone, &side_by_side, variant.epochs, "alone and side by side");
}
