//! The throughput scripts on their CPU paths, with the binaries `cargo test` built:
//! - `scripts/calibrate.sh` writes rows that the coordinator's dry run reads back and costs with;
//! - `scripts/gpu/packing.sh --cpu` (the GPU machine's packing measurement, as a dry check) runs
//!   its concurrent trials and both sweeps, so that it is known to run before a GPU is lent.
//!
//! They run one at a time: each trains real trials on the machine's cores.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{binary, Process};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn calibration_rows_from_the_script_cost_a_sweep_in_the_dry_run() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("throughput.csv");
    std::fs::write(
        &table,
        "architecture,resolution,batch,device,train_images_per_s,eval_images_per_s,source\n",
    )
    .unwrap();
    let worker = binary("worker");
    let mut command = Command::new(root().join("scripts/calibrate.sh"));
    command
        .arg("--append")
        .arg(&table)
        .env("BIN", worker.parent().unwrap())
        .env("ARCHS", "small_cnn")
        .env("RESOLUTIONS", "16 32")
        .env("EPOCHS", "2")
        .env("TRAIN_SIZE", "64")
        .env("VAL_SIZE", "64");
    let mut process = Process::spawn(&mut command);
    process.wait_success("scripts/calibrate.sh");
    let rows = process.stdout.all();
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(rows.starts_with("small_cnn,16,64,cpu,"), "{rows}");
    assert!(rows.contains("scripts/calibrate.sh 20") && rows.contains("load average"), "{rows}");

    let sweep = dir.path().join("sweep.yaml");
    std::fs::write(
        &sweep,
        "name: c\nepochs: 2\nbatch_size: 64\nlearning_rate: 0.001\nseeds: [1]\nmethods: [baseline]\n\
         architectures: [small_cnn]\noptimizers: [adam]\nresolutions: [16, 32, 48]\n\
         datasets:\n  synthetic:\n    format: synthetic\n",
    )
    .unwrap();
    let output = Command::new(binary("coordinator"))
        .arg("--sweep")
        .arg(&sweep)
        .arg("--dry-run")
        .arg("--calibration")
        .arg(&table)
        .arg("--state-dir")
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("cost on cpu (the default: "), "{stdout}");
    assert!(stdout.contains("for 3 of 3 trials"), "{stdout}");
    assert!(stdout.contains("2 from the table") && stdout.contains("1 extrapolated"), "{stdout}");
}

#[test]
fn the_packing_script_runs_on_cpu_and_compares_auto_with_the_best_fixed_n() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let worker = binary("worker");
    binary("coordinator");
    let out = tempfile::tempdir().unwrap();
    let mut command = Command::new(root().join("scripts/gpu/packing.sh"));
    command
        .arg("--cpu")
        .env("BIN", worker.parent().unwrap())
        .env("OUT", out.path())
        .env("MODELS", "small_cnn")
        .env("RESOLUTIONS", "16")
        .env("NS", "1 2")
        .env("TRAIN_SIZE", "64")
        .env("VAL_SIZE", "32")
        .env("SWEEP_SEEDS", "2");
    let mut process = Process::spawn(&mut command);
    process.wait_success("scripts/gpu/packing.sh --cpu");
    let output = process.stdout.all();
    for n in [1, 2] {
        assert!(output.contains(&format!("| small_cnn | 16 | {n} | ")), "{output}");
    }
    // A CPU trial reports no device memory: `auto` runs one at a time.
    let auto = output
        .lines()
        .find(|l| l.starts_with("packing: sweep with trials_per_gpu: auto: 2 trials in "))
        .unwrap_or_else(|| panic!("{output}"));
    assert!(auto.ends_with("at most 1 trial processes at once"), "{auto}");
    assert!(output.contains("packing: trials_per_gpu auto took "), "{output}");
}
