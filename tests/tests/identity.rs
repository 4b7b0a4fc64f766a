//! Results a paper can rely on, through the real binaries: a trial is what it computes (moving
//! the data or respelling the sweep's path reruns nothing), a finished result is never dropped,
//! reports are per sweep and keep diverged and failed trials out of the means.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, field, noop_sweep, records, start_worker, Coordinator, Process};

/// A CIFAR-10 binary folder with `per_file` records per file, two classes.
fn tiny_cifar(root: &Path, per_file: usize) {
    std::fs::create_dir_all(root).unwrap();
    let batch = |seed: u8| -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 0..per_file {
            let label = (i % 2) as u8;
            bytes.push(label);
            bytes.extend((0..3072u32).map(|p| (p as u8).wrapping_mul(label + 1).wrapping_add(seed)));
        }
        bytes
    };
    for i in 1..=5u8 {
        std::fs::write(root.join(format!("data_batch_{i}.bin")), batch(i)).unwrap();
    }
    std::fs::write(root.join("test_batch.bin"), batch(9)).unwrap();
    std::fs::write(root.join("batches.meta.txt"), "plane\ncar\n").unwrap();
}

/// Runs `coordinator ARGS... --local --workers 1` to its end; answers its process (exited).
fn run_local(args: &[&std::ffi::OsStr]) -> Process {
    let mut command = Command::new(binary("coordinator"));
    command.args(args).args(["--local", "--workers", "1"]);
    let mut process = Process::spawn(&mut command);
    process.wait_success("coordinator --local");
    process
}

/// `new=N` of the coordinator's "sweep loaded" line.
fn new_trials(coordinator: &Process) -> u32 {
    let log = coordinator.stderr.all();
    let line = log.lines().find(|l| l.contains("sweep loaded")).unwrap_or_else(|| panic!("{log}"));
    field(line, "new").unwrap().parse().unwrap()
}

#[test]
fn moving_the_data_or_respelling_the_sweep_path_reruns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tiny_cifar(&data.join("cifar"), 4);
    std::fs::create_dir_all(data.join("weights")).unwrap();
    std::fs::write(data.join("weights/noop.bin"), b"weights, first version").unwrap();
    std::fs::create_dir_all(dir.path().join("sweeps")).unwrap();
    // A real trial that reads the data (small_cnn), and a stand-in with pretrained weights.
    let sweep = dir.path().join("sweeps/s.yaml");
    std::fs::write(
        &sweep,
        "name: moved\nepochs: 1\nbatch_size: 4\nlearning_rate: 0.01\nseeds: [1, 2]\nmethods: [baseline]\n\
         architectures: [small_cnn, noop]\noptimizers: [sgd]\nresolutions: [8]\nhead: linear\n\
         datasets:\n  cifar:\n    format: cifar10_bin\n    root: cifar\npretrained:\n  noop: weights/noop.bin\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let os = |p: &Path| p.as_os_str().to_owned();
    let run = |sweep: &Path, data_root: &Path, only: Option<&str>| {
        let mut args = vec![
            os(Path::new("--sweep")),
            os(sweep),
            os(Path::new("--state-dir")),
            os(&state),
            os(Path::new("--data-root")),
            os(data_root),
        ];
        if let Some(only) = only {
            args.push(os(Path::new("--only")));
            args.push(os(Path::new(only)));
        }
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_local(&args)
    };

    // Seed 1 under the data's own path.
    let first = run(&sweep, &data, Some("seed=1"));
    assert_eq!(new_trials(&first), 2);
    assert_eq!(records(&state).len(), 2);

    // The whole sweep through a symlink to the same files and another spelling of its path:
    // seed 2 is new; seed 1 is not run again; the new trials read the data through the link.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let respelled = dir.path().join("sweeps/../sweeps/./s.yaml");
    let second = run(&respelled, &link, None);
    assert_eq!(new_trials(&second), 2);
    let after_second = records(&state);
    assert_eq!(after_second.len(), 4);
    for record in &after_second {
        assert_eq!(record.state, "done", "{}: {:?}", record.id, record.last_error);
        assert_eq!(record.attempts, 1, "trial {} ran twice", record.id);
        // Every trial runs with today's paths: recorded beside it, not part of its id.
        if let Some(root) = &record.spec.dataset.root {
            assert!(root.starts_with(&link), "{}", root.display());
        }
    }

    // Back to the first spelling and path: nothing is new, nothing runs.
    let third = run(&sweep, &data, None);
    assert_eq!(new_trials(&third), 0);
    let after_third = records(&state);
    assert_eq!(after_third.len(), 4);
    assert!(after_third.iter().all(|r| r.attempts == 1 && r.epochs.len() == 1));

    // New weights under the same path are another trial: the two stand-ins run again.
    std::fs::write(data.join("weights/noop.bin"), b"weights, second version").unwrap();
    let fourth = run(&sweep, &data, None);
    assert_eq!(new_trials(&fourth), 2);
    assert_eq!(records(&state).len(), 6);
    // The report counts each cell once, with the weights the sweep names now.
    let mut report =
        Process::spawn(Command::new(binary("coordinator")).arg("report").arg("--state-dir").arg(&state));
    report.wait_success("coordinator report");
    let out = report.stdout.all();
    assert!(out.contains("sweep moved: 4 trials, 4 completed (in the means)"), "{out}");
    assert!(out.contains("2 earlier definitions of the same cells left out"), "{out}");
}

/// Starts a coordinator on `--only seed=1`, lets its one trial finish while the coordinator is
/// down, and restarts a coordinator with `state` and `--only seed=2` on the same address.
/// Answers the worker (exited), the finished trial's id and the worker's work dir.
fn finish_while_away(dir: &Path, state: &Path) -> (Process, String, PathBuf) {
    // Long enough that the coordinator is surely down before the trial ends.
    let sweep = noop_sweep(dir, 2, 1, 1500);
    let first_state = dir.join("state");
    let mut coordinator = Coordinator::start(&sweep, &first_state, "127.0.0.1:0", &["--only", "seed=1"]);
    let work_dir = dir.join("w");
    let mut worker = start_worker(&coordinator.url(), &work_dir, "worker-w");
    let started = worker.stderr.wait_for("`trial started`", |l| l.contains("trial started"));
    let trial = field(&started, "trial").unwrap().to_string();
    coordinator.process.kill();
    worker.stderr.wait_for("`trial finished`", |l| l.contains("trial finished") && l.contains(&trial));
    let mut restarted = Coordinator::start(&sweep, state, &coordinator.addr, &["--only", "seed=2"]);
    restarted.process.wait_success("restarted coordinator");
    worker.wait_success("worker");
    (worker, trial, work_dir)
}

#[test]
fn a_result_finished_outside_the_restarted_coordinator_s_slice_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (worker, trial, work_dir) = finish_while_away(dir.path(), &state);
    let records = records(&state);
    assert_eq!(records.len(), 2);
    let kept = records.iter().find(|r| r.id == trial).unwrap();
    assert_eq!((kept.state.as_str(), kept.attempts), ("done", 1));
    assert_eq!(kept.result.as_ref().map(|r| r.history.len()), Some(1));
    assert!(!work_dir.join("orphans").exists(), "{}", worker.stderr.all());
}

#[test]
fn a_result_the_coordinator_never_knew_stays_with_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    // The restarted coordinator has a state dir of its own: the trial is unknown there.
    let other_state = dir.path().join("other-state");
    let (worker, trial, work_dir) = finish_while_away(dir.path(), &other_state);
    let file = work_dir.join("orphans").join(format!("{trial}.json"));
    let log = worker.stderr.all();
    let kept_line = log.lines().find(|l| l.contains("result kept")).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(field(kept_line, "file"), Some(file.to_str().unwrap()));
    let orphan: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(orphan["trial_id"], trial.as_str());
    assert_eq!(orphan["result"]["status"], "completed");
    assert_eq!(orphan["result"]["history"].as_array().map(Vec::len), Some(1));
    assert!(records(&other_state).iter().all(|r| r.id != trial));
}

#[test]
fn reports_are_per_sweep_and_keep_diverged_and_failed_trials_apart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let good = noop_sweep(dir.path(), 2, 1, 0);
    let bad = dir.path().join("bad.yaml");
    // lr 1e30 overflows small_cnn's weights in the first epoch (diverged); one PNG of the
    // EuroSAT-shaped folder is cut after its header (failed, not retried): the coordinator's
    // data check at start reads headers and lets it through, the loader's full decode fails.
    for class in ["a", "b"] {
        for i in 0..3 {
            let path = dir.path().join(format!("broken/{class}/{i}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let image =
                image::RgbImage::from_fn(12, 12, |x, y| image::Rgb([x as u8 * 20, y as u8 * 20, i * 40]));
            image.save(&path).unwrap();
        }
    }
    let cut = dir.path().join("broken/b/2.png");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        &bad,
        "name: bad\nepochs: 2\nbatch_size: 16\nlearning_rate: 1.0e30\nseeds: [1]\nmethods: [baseline]\n\
         architectures: [small_cnn]\noptimizers: [sgd]\nresolutions: [12]\nhead: linear\nmax_attempts: 1\n\
         datasets:\n  synthetic:\n    format: synthetic\n    options: {classes: 4, train_size: 96, val_size: 32}\n\
         \x20 broken:\n    format: eurosat\n    root: broken\n",
    )
    .unwrap();
    let mut runs = Vec::new();
    for sweep in [&good, &bad] {
        runs.push(run_local(&[
            "--sweep".as_ref(),
            sweep.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
        ]));
    }
    // The report at the end of a run says what its means leave out.
    let end = runs[1].stdout.all();
    assert!(
        end.contains(
            "sweep bad: 2 trials, 0 completed (in the means); left out of the means: 1 diverged, 1 failed"
        ),
        "{end}"
    );
    let mut status =
        Process::spawn(Command::new(binary("coordinator")).arg("status").arg("--state-dir").arg(&state));
    status.wait_success("coordinator status");
    assert_eq!(status.stdout.all(), "bad: 2 trials: 1 diverged, 1 failed\ne2e: 2 trials: 2 done");
    let report = |args: &[&str]| {
        let mut process = Process::spawn(
            Command::new(binary("coordinator")).arg("report").arg("--state-dir").arg(&state).args(args),
        );
        let status = process.wait();
        (status.code(), process.stdout.all(), process.stderr.all())
    };

    let (code, _, err) = report(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("holds 2 sweeps: bad (2 trials), e2e (2 trials); pick one with --sweep NAME"),
        "{err}"
    );

    let (code, out, err) = report(&["--sweep", "e2e"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("2/2") && out.contains("2 trials of other sweeps in this state dir not shown"),
        "{out}"
    );

    let (code, out, err) = report(&["--sweep", "bad", "--by", "dataset"]);
    assert_eq!(code, Some(0), "{err}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with('│') && l.contains(name))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    let cells = |line: String| {
        let cells: Vec<String> = line.split(['│', '┆']).map(|c| c.trim().to_string()).collect();
        assert!(cells.len() > 6, "{out}");
        cells
    };
    // dataset │ done │ diverged │ failed │ top-1 ...: no mean from a diverged or failed trial.
    assert_eq!(&cells(row("synthetic"))[1..6], ["synthetic", "0/1", "1", "", "–"], "{out}");
    assert_eq!(&cells(row("broken"))[1..6], ["broken", "0/1", "", "1", "–"], "{out}");
    assert!(out.contains("left out of the means: 1 diverged, 1 failed"), "{out}");

    let (code, out, err) = report(&["--sweep", "bad", "--failures"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().any(|l| l.contains("small_cnn/sgd/synthetic@12/baseline seed 1: diverged")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("small_cnn/sgd/broken@12/baseline seed 1: failed after 1 attempt:")
            && l.contains("2.png: cannot decode image")),
        "{out}"
    );
}

/// A finished trial's result as the store keeps it (JSON), with `top1`.
fn result_json(top1: f64) -> String {
    let average =
        serde_json::json!({"label": "avg", "precision": top1, "recall": top1, "f1": top1, "support": 1});
    serde_json::json!({
        "status": "completed", "top1": top1, "top5": 1.0, "test_loss": 0.5, "per_class": [],
        "macro_avg": average, "weighted_avg": average, "confusion": [], "train_seconds": 1.0,
        "peak_host_mb": 1.0, "peak_device_mb": null, "inference_ms_per_batch": 1.0, "history": [],
    })
    .to_string()
}

#[test]
fn a_state_dir_from_before_is_migrated_and_its_duplicates_merged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("imgs")).unwrap();
    let sweep = dir.path().join("s.yaml");
    std::fs::write(
        &sweep,
        "name: old\nepochs: 1\nbatch_size: 4\nlearning_rate: 0.01\nseeds: [1]\nmethods: [baseline]\n\
         architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\n\
         datasets:\n  imgs:\n    format: image_folder\n    root: imgs\n",
    )
    .unwrap();
    // What an earlier coordinator left after running the sweep from two data roots: the same
    // cell twice under ids that hashed its root, both done (the first at t = 100).
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = rusqlite::Connection::open(state.join("coordinator.sqlite")).unwrap();
    db.execute_batch(include_str!("../../coordinator/src/store/legacy_schema.sql")).unwrap();
    db.execute("INSERT INTO sweep (id, name, file, updated_ms) VALUES (1, 'old', 's.yaml', 1)", []).unwrap();
    for (id, root, completed, top1) in [("aaaa", "/data/imgs", 100, 0.6), ("bbbb", "/mnt/imgs", 200, 0.7)] {
        let spec = serde_json::json!({
            "architecture": "noop", "optimizer": "sgd",
            "dataset": {"name": "imgs", "format": "image_folder", "root": root},
            "resolution": 32, "method": "baseline", "epochs": 1, "batch_size": 4,
            "learning_rate": 0.01, "seed": 1,
        });
        db.execute(
            "INSERT INTO trials (id, spec_json, state, cost, devices, cache_key, attempts, max_attempts, created_ms, updated_ms)
             VALUES (?1, ?2, 'done', 1.0, 0, 'imgs@32', 1, 3, ?3, ?3)",
            rusqlite::params![id, spec.to_string(), completed],
        )
        .unwrap();
        db.execute(
            "INSERT INTO results (trial_id, attempt, worker_id, result_json, completed_ms) VALUES (?1, 1, 'w', ?2, ?3)",
            rusqlite::params![id, result_json(top1), completed],
        )
        .unwrap();
    }
    drop(db);

    let run = run_local(&["--sweep".as_ref(), sweep.as_os_str(), "--state-dir".as_ref(), state.as_os_str()]);
    let log = run.stderr.all();
    let migrated = log.lines().find(|l| l.contains("state dir migrated")).unwrap_or_else(|| panic!("{log}"));
    assert_eq!((field(migrated, "trials"), field(migrated, "merged")), (Some("2"), Some("1")), "{migrated}");
    assert_eq!(new_trials(&run), 0, "the merged trial is the sweep's cell: nothing runs");
    let records = records(&state);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].result.as_ref().map(|r| r.top1), Some(0.6), "the first finished result is kept");
}

#[test]
fn paper_figures_stand_only_beside_groups_of_the_paper_s_setup() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Three seeds of Table 1's DenseNet201 + SAL setup, and a 10-epoch run of ResNet50 + SAL,
    // written as an earlier coordinator stored them (the report migrates the store).
    let db = rusqlite::Connection::open(state.join("coordinator.sqlite")).unwrap();
    db.execute_batch(include_str!("../../coordinator/src/store/legacy_schema.sql")).unwrap();
    db.execute("INSERT INTO sweep (id, name, file, updated_ms) VALUES (1, 'paper', 'p.yaml', 1)", [])
        .unwrap();
    let trials = [
        ("densenet201", 50, 1, 0.880),
        ("densenet201", 50, 2, 0.885),
        ("densenet201", 50, 3, 0.890),
        ("resnet50", 10, 1, 0.5),
    ];
    for (i, (architecture, epochs, seed, top1)) in trials.into_iter().enumerate() {
        let spec = serde_json::json!({
            "architecture": architecture, "optimizer": "adam",
            "dataset": {"name": "imagenette", "format": "imagenette", "root": "/data/imagenette2"},
            "resolution": 64, "method": "sal", "epochs": epochs, "batch_size": 64,
            "learning_rate": 1e-5, "seed": seed, "head": "paper",
            "pretrained": format!("/data/weights/{architecture}.safetensors"),
        });
        db.execute(
            "INSERT INTO trials (id, spec_json, state, cost, devices, cache_key, attempts, max_attempts, created_ms, updated_ms)
             VALUES (?1, ?2, 'done', 1.0, 0, 'imagenette@64', 1, 3, ?3, ?3)",
            rusqlite::params![format!("t{i}"), spec.to_string(), i],
        )
        .unwrap();
        db.execute(
            "INSERT INTO results (trial_id, attempt, worker_id, result_json, completed_ms) VALUES (?1, 1, 'w', ?2, ?3)",
            rusqlite::params![format!("t{i}"), result_json(top1), i],
        )
        .unwrap();
    }
    drop(db);
    let tables = dir.path().join("tables.yaml");
    std::fs::write(
        &tables,
        "table1_architectures:\n  - {architecture: densenet201, method: sal, top1: 88.43, top5: 98.73}\n\
         \x20 - {architecture: resnet50, method: sal, top1: 82.04, top5: 97.35}\n",
    )
    .unwrap();
    let mut report = Process::spawn(
        Command::new(binary("coordinator"))
            .arg("report")
            .arg("--state-dir")
            .arg(&state)
            .args(["--by", "architecture,method", "--paper"])
            .arg(&tables),
    );
    report.wait_success("coordinator report --paper");
    let out = report.stdout.all();
    let comparison: Vec<&str> = out.lines().filter(|l| l.starts_with('│') && l.contains("table1")).collect();
    // Top-1 and top-5 of DenseNet201; none of the 10-epoch ResNet50.
    assert_eq!(comparison.len(), 2, "{out}");
    let top1: Vec<&str> = comparison[0].split(['│', '┆']).map(str::trim).collect();
    assert_eq!(
        &top1[1..13],
        [
            "densenet201",
            "imagenette",
            "64",
            "adam",
            "sal",
            "top-1 %",
            "88.5 ± 1.2",
            "3",
            "88.43",
            "+0.07",
            "yes",
            "table1"
        ],
        "{out}"
    );
    assert!(out.contains("no paper figure beside 1 groups with a published setup's axes but another training (first: resnet50/sal: epochs 10 (paper 50))"), "{out}");
}
