//! Real trials through real processes: a coordinator, node agents, and a trial process per trial.
//! small_cnn on generated data, baseline and SAL; the README's smoke sweep; a trial process
//! SIGKILLed mid-epoch that resumes, bit for bit, where an undisturbed run ends.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{binary, field, kill_pid, records, start_worker_with, timeless, Coordinator, Process};
use coordinator::store::TrialRecord;

/// Real trials take the machine's cores: the tests of this file run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The README's main job, as a user runs it: `coordinator --sweep sweeps/smoke.yaml --local`.
#[test]
fn the_smoke_sweep_trains_baseline_and_sal_in_worker_processes() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sweep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps/smoke.yaml");
    let mut command = Command::new(binary("coordinator"));
    command.arg("--sweep").arg(&sweep).arg("--state-dir").arg(&state).args(["--local", "--workers", "2"]);
    let mut coordinator = Process::spawn(&mut command);
    coordinator.wait_success("coordinator --local");
    let report = coordinator.stdout.all();
    assert!(report.contains("baseline") && report.contains("sal"), "{report}");

    let records = records(&state);
    assert_eq!(records.len(), 6);
    let mut interventions = 0;
    for record in &records {
        assert_eq!(record.state, "done", "{}: {:?}", record.id, record.last_error);
        let result = record.result.as_ref().unwrap();
        assert_eq!(result.history.len(), 10);
        assert!(result.top1 > 0.5, "small_cnn learns the generated data: top-1 {}", result.top1);
        // Each trial ran in a process of its own: its peak memory is its own, not the coordinator's.
        assert!(result.peak_host_mb > 0.0);
        match record.spec.method {
            ::common::Method::Baseline => assert!(result.history.iter().all(|e| e.sal.is_none())),
            ::common::Method::Sal => {
                for epoch in &result.history {
                    let sal = epoch.sal.as_ref().expect("every SAL epoch has its stress record");
                    assert!((0.0..=1.0).contains(&sal.stress), "stress {} out of [0, 1]", sal.stress);
                    if sal.applied != sal::Action::None {
                        interventions += 1;
                    }
                }
            }
            other => panic!("the smoke sweep runs baseline and SAL only, not {}", other.name()),
        }
    }
    // The smoke sweep is tuned so that SAL intervenes (warm-up 2, plateauing labels).
    assert!(interventions > 0, "no SAL trial intervened");
    // The worker processes left their logs in the state dir, and one trial process per trial ran.
    let logs: String = (0..2)
        .map(|i| std::fs::read_to_string(state.join(format!("local-workers/worker-{i}/worker.log"))).unwrap())
        .collect();
    assert_eq!(logs.matches("trial process started").count(), 6, "{logs}");
}

/// A small_cnn SAL trial with dropout (the paper's head) that intervenes early.
fn real_sweep(dir: &Path, ranks: u32, epochs: u32) -> std::path::PathBuf {
    let text = format!(
        "name: isolation\nepochs: {epochs}\nbatch_size: 16\nlearning_rate: 0.01\nseeds: [1, 2]\nmethods: [sal]\n\
         architectures: [small_cnn]\noptimizers: [adam]\nresolutions: [16]\nhead: paper\ngpus_per_trial: {ranks}\n\
         max_attempts: 3\nsal:\n  warmup_epochs: 0\n  eps_loss: 100.0\n\
         datasets:\n  synthetic:\n    format: synthetic\n    options:\n      classes: 4\n      train_size: 256\n      val_size: 64\n"
    );
    let path = dir.join("sweep.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the sweep with one agent of `slots` CPU ranks until done; its records by trial id.
fn run_sweep(dir: &Path, sweep: &Path, slots: u32, kill_one: bool) -> BTreeMap<String, TrialRecord> {
    let state = dir.join("state");
    let mut coordinator = Coordinator::start(sweep, &state, "127.0.0.1:0", &[]);
    let mut agent = start_worker_with(
        &coordinator.url(),
        &dir.join("agent"),
        "agent",
        &["--cpu-ranks", &slots.to_string(), "--cpu-threads", &slots.to_string()],
    );
    if kill_one {
        // Both trials run at once in this agent; kill the process of the first once its
        // checkpoint of epoch 2 is uploaded (it is then inside epoch 3).
        let started =
            agent.stderr.wait_for("`trial process started`", |l| l.contains("trial process started"));
        let trial = field(&started, "trial").unwrap().to_string();
        let pid = field(&started, "pid").unwrap().to_string();
        agent.stderr.wait_for("a second trial process", |l| {
            l.contains("trial process started") && field(l, "trial") != Some(&trial)
        });
        agent.stderr.wait_for("its checkpoint of epoch 2", |l| {
            l.contains("checkpoint uploaded")
                && field(l, "trial") == Some(&trial)
                && field(l, "epoch") == Some("2")
        });
        kill_pid(&pid);
        agent.stderr.wait_for("the retry of the killed trial", |l| {
            l.contains("trial started")
                && field(l, "trial") == Some(&trial)
                && field(l, "attempt") == Some("2")
        });
    }
    coordinator.process.wait_success("coordinator");
    agent.wait_success("agent");
    records(&state).into_iter().map(|r| (r.id.clone(), r)).collect()
}

fn killed_trial_resumes_bit_identical(ranks: u32) {
    let _serial = one_at_a_time();
    let epochs = 5;
    let undisturbed_dir = tempfile::tempdir().unwrap();
    let sweep = real_sweep(undisturbed_dir.path(), ranks, epochs);
    let undisturbed = run_sweep(undisturbed_dir.path(), &sweep, 2 * ranks, false);

    let dir = tempfile::tempdir().unwrap();
    let sweep = real_sweep(dir.path(), ranks, epochs);
    let disturbed = run_sweep(dir.path(), &sweep, 2 * ranks, true);

    assert_eq!(undisturbed.keys().collect::<Vec<_>>(), disturbed.keys().collect::<Vec<_>>());
    let retried: Vec<&TrialRecord> = disturbed.values().filter(|r| r.attempts == 2).collect();
    assert_eq!(retried.len(), 1, "exactly the killed trial ran twice");
    let error = retried[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("SIGKILL"), "the first attempt failed by the signal: {error}");
    for (id, expected) in &undisturbed {
        let got = disturbed[id].result.as_ref().unwrap_or_else(|| panic!("{id} has no result"));
        let expected = expected.result.as_ref().unwrap();
        assert_eq!(timeless(&got.history), timeless(&expected.history), "history of {id}");
        assert_eq!(got.top1, expected.top1, "{id}");
        assert_eq!(got.test_loss.to_bits(), expected.test_loss.to_bits(), "{id}");
        assert_eq!(got.confusion, expected.confusion, "{id}");
        let actions: Vec<_> = got.history.iter().map(|e| e.sal.as_ref().unwrap().applied).collect();
        assert!(actions.iter().any(|a| *a != sal::Action::None), "SAL intervened in {id}: {actions:?}");
    }
}

#[test]
fn a_killed_one_rank_trial_process_resumes_bit_identical_beside_another_trial() {
    killed_trial_resumes_bit_identical(1);
}

#[test]
fn a_killed_two_rank_trial_process_resumes_bit_identical_beside_another_trial() {
    killed_trial_resumes_bit_identical(2);
}

/// A trial process that stops making progress (here: stopped by SIGSTOP, as a rank blocked in a
/// collective would be) is killed by its agent's watchdog and failed with the silence it showed.
#[test]
fn the_watchdog_kills_a_silent_trial_process_and_fails_it_as_retryable() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let text = "name: hang\nepochs: 50\nbatch_size: 16\nlearning_rate: 0.01\nseeds: [1]\nmethods: [baseline]\n\
                architectures: [small_cnn]\noptimizers: [sgd]\nresolutions: [16]\nhead: linear\nmax_attempts: 1\n\
                progress_timeout: 20\n\
                datasets:\n  synthetic:\n    format: synthetic\n    options:\n      classes: 4\n      train_size: 64\n      val_size: 16\n";
    let sweep = dir.path().join("sweep.yaml");
    std::fs::write(&sweep, text).unwrap();
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let mut agent = start_worker_with(&coordinator.url(), &dir.path().join("agent"), "agent", &[]);
    let started = agent.stderr.wait_for("`trial process started`", |l| l.contains("trial process started"));
    let pid = field(&started, "pid").unwrap().to_string();
    // Let it finish an epoch first: the watchdog's limit is then max(10 epochs, 20 s). (20 s, not
    // less: before its first event a trial process is silent while libtorch loads, which takes
    // seconds on a loaded machine.)
    agent.stderr.wait_for("an uploaded checkpoint", |l| l.contains("checkpoint uploaded"));
    let status = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(status.success());
    let killed = agent.stderr.wait_for("the watchdog's kill", |l| l.contains("no progress for"));
    assert!(killed.contains("killing its trial process"), "{killed}");

    coordinator.process.wait_success("coordinator");
    agent.wait_success("agent");
    let records = records(&state);
    assert_eq!(records[0].state, "failed");
    let error = records[0].last_error.clone().unwrap_or_default();
    assert!(error.starts_with("no progress for ") && error.contains(" s"), "{error}");
    // The stopped process is gone: SIGKILL reaches a stopped process group.
    let alive = Command::new("kill").args(["-0", &pid]).status().unwrap().success();
    assert!(!alive, "trial process {pid} survived its watchdog");
}

/// SAL's ablation arms, SAM and the compute-matched baseline as values of the sweep's `methods:`
/// axis, through the real binaries: each arm does only its part, `sal_stress_only` ends bit for bit
/// where the baseline of its seed does, `shrink_perturb_random` runs after the `sal` trial of its
/// seed and deforms at its drawn epochs, and the report pairs every arm with the baseline and
/// tests Equation 11.
#[test]
fn ablation_arms_run_as_methods_and_stress_only_matches_the_baseline_bit_for_bit() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let smoke =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps/smoke.yaml")).unwrap();
    let sweep = dir.path().join("ablation.yaml");
    let text = smoke
        .replace("name: smoke", "name: ablation")
        .replace("epochs: 10", "epochs: 5")
        .replace("seeds: [1, 2, 3]", "seeds: [1, 2]")
        .replace(
            "methods: [baseline, sal]",
            "methods: [baseline, sal, sal_stress_only, sal_noise_only, sal_plastic_only, shrink_perturb_random, \
             sam, baseline_2x]",
        )
        // No warm-up and no epoch counted as improved: the stress climbs every epoch.
        .replace("  warmup_epochs: 2", "  warmup_epochs: 0\n  eps_loss: 100.0")
        // Flatness at the end of every trial, small.
        .replace(
            "head: linear",
            "head: linear\nflatness: {probes: 4, images: 32, iterations: 10, directions: 1, steps: 3}",
        );
    assert!(
        text.contains("eps_loss: 100.0") && text.contains("sal_plastic_only"),
        "smoke.yaml changed shape"
    );
    std::fs::write(&sweep, text).unwrap();
    let mut command = Command::new(binary("coordinator"));
    command.arg("--sweep").arg(&sweep).arg("--state-dir").arg(&state).args(["--local", "--workers", "2"]);
    let mut coordinator = Process::spawn(&mut command);
    coordinator.wait_success("coordinator --local");
    let output =
        Command::new(binary("coordinator")).arg("report").arg("--state-dir").arg(&state).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();

    let records = records(&state);
    assert_eq!(records.len(), 16);
    let by = |method: ::common::Method, seed: u64| {
        let record = records.iter().find(|r| r.spec.method == method && r.spec.seed == seed).unwrap();
        record.result.as_ref().unwrap_or_else(|| panic!("{}: no result", record.id))
    };
    use ::common::Method::*;
    for seed in [1, 2] {
        let (baseline, stress_only) = (by(Baseline, seed), by(SalStressOnly, seed));
        let losses = |r: &::common::outcome::TrialResult| {
            r.history.iter().map(|e| (e.train_loss.to_bits(), e.val_loss.to_bits())).collect::<Vec<_>>()
        };
        assert_eq!(losses(stress_only), losses(baseline), "seed {seed}");
        assert_eq!(stress_only.top1.to_bits(), baseline.top1.to_bits(), "seed {seed}");
        let applied = |r: &::common::outcome::TrialResult| {
            r.history
                .iter()
                .map(|e| e.sal.as_ref().expect("a stress record per epoch").applied)
                .collect::<Vec<_>>()
        };
        assert!(applied(stress_only).iter().all(|a| *a == sal::Action::None));
        let noise = applied(by(SalNoiseOnly, seed));
        assert!(noise.contains(&sal::Action::Noise), "{noise:?}");
        assert!(noise.iter().all(|a| matches!(a, sal::Action::None | sal::Action::Noise)), "{noise:?}");
        let plastic = applied(by(SalPlasticOnly, seed));
        assert!(plastic.contains(&sal::Action::Plastic), "{plastic:?}");
        assert!(
            plastic
                .iter()
                .all(|a| matches!(a, sal::Action::None | sal::Action::Plastic | sal::Action::Recovered)),
            "{plastic:?}"
        );
    }
    // Flatness was measured for every trial, and `show` prints it.
    assert!(records.iter().all(|r| r
        .result
        .as_ref()
        .unwrap()
        .flatness
        .as_ref()
        .is_some_and(|f| f.probes == 4)));
    let shown = Command::new(binary("coordinator"))
        .args(["show", &records[0].id[..8], "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("flatness (32 images") && shown.contains("4 probes"), "{shown}");
    // One statistics table per arm, each paired with the baseline; stress only differs by nothing.
    // SAM trained (no stress record: it is not SAL) and ended elsewhere than the baseline.
    for seed in [1, 2] {
        let sam = by(Sam, seed);
        assert!(sam.history.iter().all(|e| e.sal.is_none()));
        assert_ne!(sam.history[4].train_loss.to_bits(), by(Baseline, seed).history[4].train_loss.to_bits());
    }
    for arm in [
        "sal_stress_only",
        "sal_noise_only",
        "sal_plastic_only",
        "shrink_perturb_random",
        "sam",
        "baseline_2x",
    ] {
        assert!(report.contains(&format!("{arm} vs baseline, paired by seed")), "{report}");
    }
    // The arms side by side, and Equation 11 tested on Tr H, one row per arm beyond the baseline.
    let ablation =
        report.split("Ablation: every arm against the baseline").nth(1).expect("the ablation table");
    let equation11 = ablation.split("Equation 11: flatness").nth(1).expect("the Equation 11 table");
    let rows = equation11.lines().filter(|l| l.contains("small_cnn")).count();
    assert_eq!(rows, 7, "{equation11}");
    assert!(
        equation11.contains("no detectable difference at n=2") || equation11.contains("flatter"),
        "{equation11}"
    );

    // The random arm repeats the sal trial's deformation count at epochs drawn from its seed, and
    // was leased only once that trial's result was in.
    let db = rusqlite::Connection::open(state.join("coordinator.sqlite")).unwrap();
    let moment = |sql: &str, id: &str| -> u64 { db.query_row(sql, [id], |r| r.get(0)).unwrap() };
    for seed in [1, 2] {
        let plastic_epochs = |r: &::common::outcome::TrialResult| {
            r.history
                .iter()
                .filter(|e| {
                    matches!(
                        e.sal.as_ref().unwrap().applied,
                        sal::Action::Plastic | sal::Action::NoisePlastic
                    )
                })
                .map(|e| e.epoch)
                .collect::<Vec<_>>()
        };
        let sal_count = plastic_epochs(by(Sal, seed)).len() as u32;
        assert!(sal_count > 0, "seed {seed}: sal never deformed (the test's settings make it yield)");
        let schedule = sal::random_schedule(seed, sal_count, 0, 5);
        let random = plastic_epochs(by(ShrinkPerturbRandom, seed));
        // The first drawn epoch is never carried (only a restore that follows a deformation is).
        assert_eq!(random.first(), schedule.first(), "seed {seed}: {random:?} against {schedule:?}");
        assert!(random.len() as u32 <= sal_count && !random.is_empty(), "{random:?}");
        let id = |method: ::common::Method| {
            records.iter().find(|r| r.spec.method == method && r.spec.seed == seed).unwrap().id.clone()
        };
        let sal_done = moment("SELECT completed_ms FROM results WHERE trial_id = ?1", &id(Sal));
        let random_leased =
            moment("SELECT MIN(started_ms) FROM attempts WHERE trial_id = ?1", &id(ShrinkPerturbRandom));
        assert!(
            random_leased >= sal_done,
            "seed {seed}: leased at {random_leased}, its sal trial done at {sal_done}"
        );
        // The compute-matched baseline trained twice the epochs from the same start.
        let (baseline, twice) = (by(Baseline, seed), by(Baseline2x, seed));
        assert_eq!(twice.history.len(), 10);
        assert_eq!(twice.history[0].train_loss.to_bits(), baseline.history[0].train_loss.to_bits());
    }
    let stress_only_table = report.split("sal_stress_only vs baseline").nth(1).unwrap();
    let row = stress_only_table.lines().find(|l| l.contains("small_cnn")).unwrap();
    assert!(row.contains("+0.00"), "{row}");
}
