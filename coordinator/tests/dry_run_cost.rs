//! `coordinator --sweep FILE --dry-run`'s cost estimate, through the real binary: device-hours
//! from a calibration table, extrapolated resolutions, what is not costed, the makespan in hours;
//! a state dir whose finished trial measured its throughput takes precedence over the table; bad
//! input is one line naming what and where.

use std::path::Path;
use std::process::{Command, Output};

const HEADER: &str = "architecture,resolution,batch,device,train_images_per_s,eval_images_per_s,source\n";

fn sweep_text(architectures: &str, resolutions: &str, seeds: &str, options: &str, epochs: u32) -> String {
    format!(
        "name: cost\nepochs: {epochs}\nbatch_size: 32\nlearning_rate: 0.001\nseeds: {seeds}\n\
         methods: [baseline]\narchitectures: {architectures}\noptimizers: [adam]\nresolutions: {resolutions}\n\
         datasets:\n  synthetic:\n    format: synthetic\n    options: {options}\nhead: linear\ngpus_per_trial: 1\n"
    )
}

fn coordinator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coordinator")).args(args).output().unwrap()
}

fn stdout_of(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The cells of the makespan table's data rows.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('│') && !l.contains("GPU busy"))
        .map(|l| l.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect())
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_dry_run_costs_the_sweep_from_the_table_extrapolates_and_names_what_it_cannot_cost() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("cost.yaml");
    // small_cnn at 16 and 32 px, resnet50 at both: 4 trials of 40 epochs, 36,000 + 7,200 images.
    let text =
        sweep_text("[small_cnn, resnet50]", "[16, 32]", "[1]", "{train_size: 36000, val_size: 7200}", 40);
    std::fs::write(&sweep, text).unwrap();
    let table = dir.path().join("throughput.csv");
    std::fs::write(
        &table,
        format!("# test rows\n{HEADER}small_cnn,16,32,test-gpu,100,400,made up, for the test\n"),
    )
    .unwrap();
    let none = dir.path().join("no-state");
    let output = coordinator(&[
        "--sweep",
        path(&sweep),
        "--dry-run",
        "--state-dir",
        path(&none),
        "--calibration",
        path(&table),
        "--gpus-available",
        "1,2",
    ]);
    let text = stdout_of(&output);
    // 16 px, from the table: 40 × (36000 / 100 + 7200 / 400) = 15,120 s. 32 px, extrapolated
    // (one measured resolution: cost ∝ pixels, 4×): 40 × (36000 / 25 + 7200 / 100) = 60,480 s.
    // 75,600 s in all: 21.0 GPU-hours.
    assert!(
        text.contains(
            "cost on test-gpu (the default: the calibration table's GPU with the most rows; \
             --calibration-device NAME for another): 21.0 GPU-hours for 2 of 4 trials\n"
        ),
        "{text}"
    );
    let costed = format!(
        "  costed: 0 from the store (none read: --state-dir DIR), 1 from the table ({}), 1 extrapolated",
        table.display()
    );
    assert!(text.contains(&costed), "{text}");
    assert!(text.contains("; 2 not costed\n"), "{text}");
    assert!(text.contains("  not costed: no row for resnet50 batch 32 on test-gpu (2 trials)\n"), "{text}");
    // The replay in hours: on 1 GPU the trials one after the other (21 h), on 2 the longest one.
    let rows = table_rows(&text);
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[0][5..], ["21.00", "21.00"], "{text}");
    assert_eq!(rows[1][3], "longest trial", "{text}");
    assert_eq!(rows[1][5..], ["16.80", "16.80"], "{text}");
    assert!(text.contains("  2 trials not costed are left out of the replay"), "{text}");
}

#[test]
fn the_paper_sweep_gets_gpu_hours_from_the_committed_table() {
    let paper = concat!(env!("CARGO_MANIFEST_DIR"), "/../sweeps/paper.yaml");
    let text = stdout_of(&coordinator(&["--sweep", paper, "--dry-run", "--state-dir", "/nonexistent/state"]));
    let line = text.lines().find(|l| l.starts_with("cost on ")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("cost on nvidia-h200 (the default: "), "{line}");
    let hours: f64 = line
        .split(": ")
        .last()
        .and_then(|tail| tail.split(" GPU-hours").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(hours > 0.0, "{line}");
    // On the CPU rows every architecture of the paper has a row.
    let cpu = stdout_of(&coordinator(&[
        "--sweep",
        paper,
        "--dry-run",
        "--state-dir",
        "/nonexistent/state",
        "--calibration-device",
        "cpu",
    ]));
    assert!(cpu.contains("CPU-rank-hours for 1344 of 1344 trials"), "{cpu}");
}

#[test]
fn an_unknown_device_or_a_malformed_row_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("cost.yaml");
    std::fs::write(&sweep, sweep_text("[small_cnn]", "[16]", "[1]", "{}", 2)).unwrap();
    let table = dir.path().join("throughput.csv");
    std::fs::write(&table, format!("{HEADER}small_cnn,16,32,test-gpu,100,400,test\n")).unwrap();
    let refused = |args: &[&str], expected: &str| {
        let mut all = vec!["--sweep", path(&sweep), "--dry-run", "--state-dir", "/nonexistent/state"];
        all.extend(args);
        let output = coordinator(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(expected), "expected {expected:?}\n     got {stderr:?}");
    };
    refused(
        &["--calibration", path(&table), "--calibration-device", "h100"],
        &format!(
            "error: --calibration-device h100: no row of {} is for it (known: test-gpu)",
            table.display()
        ),
    );
    std::fs::write(
        &table,
        format!("{HEADER}small_cnn,16,32,test-gpu,100,400,test\nsmall_cnn,32,32,test-gpu,fast,400,x\n"),
    )
    .unwrap();
    refused(
        &["--calibration", path(&table)],
        &format!(
            "error: --calibration: {}:3: `train_images_per_s`: expected images per second > 0, got `fast`",
            table.display()
        ),
    );
    refused(
        &["--calibration", "/nonexistent/table.csv"],
        "error: --calibration: /nonexistent/table.csv: cannot read",
    );
}

#[test]
fn a_finished_trial_in_the_state_dir_overrides_the_table_with_what_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    // One real trial on a CPU rank (small_cnn, 16 px, batch 32, 3 epochs) through --local.
    let ran = dir.path().join("ran.yaml");
    std::fs::write(&ran, sweep_text("[small_cnn]", "[16]", "[1]", "{train_size: 256, val_size: 128}", 3))
        .unwrap();
    let state = dir.path().join("state");
    let output =
        coordinator(&["--sweep", path(&ran), "--state-dir", path(&state), "--local", "--workers", "1"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (_, records) = coordinator::store::read_records(&state).unwrap();
    assert_eq!(records.len(), 1);
    let result = records[0].result.as_ref().unwrap();
    let manifest = result.manifest.as_ref().unwrap();
    assert_eq!((manifest.devices.as_str(), manifest.ranks, manifest.cpu_threads), ("cpu", 1, 1));
    // What the store learned, as the coordinator computes it: epochs after the first, per replica.
    let steady: Vec<_> = result.history[1..].iter().collect();
    assert_eq!(steady.len(), 2);
    let n = steady.len() as f64;
    let train = steady.iter().map(|e| e.train_images_per_s).sum::<f64>() / n / 1.0;
    let eval = steady.iter().map(|e| e.eval_images_per_s).sum::<f64>() / n / 1.0;
    assert!(train > 0.0 && eval > 0.0);

    // Another seed and a bigger dataset: same profile, another trial, 100 epochs of 1,000,000 +
    // 100,000 images; the table says 1 image per second.
    let planned = dir.path().join("planned.yaml");
    std::fs::write(
        &planned,
        sweep_text("[small_cnn]", "[16]", "[2]", "{train_size: 1000000, val_size: 100000}", 100),
    )
    .unwrap();
    let table = dir.path().join("throughput.csv");
    std::fs::write(&table, format!("{HEADER}small_cnn,16,32,cpu,1,1,slow on purpose\n")).unwrap();
    let dry_run = |state_dir: &Path| {
        stdout_of(&coordinator(&[
            "--sweep",
            path(&planned),
            "--dry-run",
            "--state-dir",
            path(state_dir),
            "--calibration",
            path(&table),
            "--calibration-device",
            "cpu",
        ]))
    };
    let from_table = dry_run(&dir.path().join("no-state"));
    // 100 × (1,000,000 / 1 + 100,000 / 1) s = 30,555.6 h.
    assert!(from_table.contains("cost on cpu: 30555.6 CPU-rank-hours for 1 of 1 trials\n"), "{from_table}");
    assert!(from_table.contains("  costed: 0 from the store (none read"), "{from_table}");
    let from_store = dry_run(&state);
    let seconds = 100.0 * (1_000_000.0 / train + 100_000.0 / eval);
    let expected = format!("cost on cpu: {:.1} CPU-rank-hours for 1 of 1 trials\n", seconds / 3600.0);
    assert!(from_store.contains(&expected), "expected {expected:?} in\n{from_store}");
    assert_ne!(expected, "cost on cpu: 30555.6 CPU-rank-hours for 1 of 1 trials\n");
    let costed = format!(
        "  costed: 1 from the store ({}, 1 completed trials measured), 0 from the table",
        state.display()
    );
    assert!(from_store.contains(&costed), "{from_store}");

    // The sweep that ran: its trial is finished, nothing is left to run.
    let again = stdout_of(&coordinator(&[
        "--sweep",
        path(&ran),
        "--dry-run",
        "--state-dir",
        path(&state),
        "--calibration-device",
        "cpu",
    ]));
    assert!(again.contains("  already finished in the state dir: 1 trials ("), "{again}");
    assert!(again.contains("left to run: 0.0 CPU-rank-hours"), "{again}");
}
