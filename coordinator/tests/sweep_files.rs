//! Malformed sweep files: the real binary answers one line naming the file, the line and the key,
//! exits with code 2, and starts nothing (no state dir appears).

use std::path::Path;
use std::process::Command;

const BASE: &str = "\
name: bad
epochs: 2
batch_size: 4
learning_rate: 0.01
seeds: [1]
methods: [baseline, sal]
architectures: [noop]
optimizers: [sgd]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
";

/// Runs the coordinator on `text` (BASE with `from` replaced by `to`) and checks its refusal.
fn refuses(from: &str, to: &str, extra_args: &[&str], expected: &str) {
    refuses_beside(from, to, extra_args, expected, |_| {});
}

/// As [`refuses`], with `setup` first writing files into the sweep file's folder; returns the
/// error line.
fn refuses_beside(
    from: &str,
    to: &str,
    extra_args: &[&str],
    expected: &str,
    setup: impl FnOnce(&Path),
) -> String {
    assert!(BASE.contains(from), "test case does not apply: {from:?}");
    let text = BASE.replacen(from, to, 1);
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let file = dir.path().join("sweep.yaml");
    std::fs::write(&file, text).unwrap();
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--sweep")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra_args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not: {stderr}");
    let expected = format!("error: {}{expected}", file.display());
    assert!(lines[0].starts_with(&expected), "expected {expected:?}\n     got {:?}", lines[0]);
    assert!(!Path::new(&state).exists(), "nothing may run before the sweep is valid");
    assert!(output.stdout.is_empty());
    lines[0].to_string()
}

/// Pretrained weights for `small_cnn`, from `pretrained_weights.safetensors` beside the sweep.
const WITH_WEIGHTS: &str =
    "architectures: [small_cnn]\npretrained:\n  small_cnn: pretrained_weights.safetensors\n";

/// Writes a safetensors file of f32 zeros with `entries` (name, shape), without libtorch.
fn write_safetensors(path: &Path, entries: &[(&str, &[i64])]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in entries {
        let bytes = 4 * shape.iter().product::<i64>() as u64;
        let entry =
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]});
        header.insert(name.to_string(), entry);
        offset += bytes;
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    bytes.resize(bytes.len() + offset as usize, 0);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_weights_file_that_covers_part_of_the_trunk_is_refused_before_anything_runs() {
    let line = refuses_beside(
        "architectures: [noop]\n",
        WITH_WEIGHTS,
        &[],
        ":9: `pretrained.small_cnn`: pretrained weights ",
        |dir| {
            write_safetensors(&dir.join("pretrained_weights.safetensors"), &[("not_a_layer.weight", &[3, 3])])
        },
    );
    assert!(line.contains("pretrained_weights.safetensors: does not fit the model:"), "{line}");
    assert!(line.contains(" missing ("), "{line}");
    assert!(line.contains("1 unexpected (not_a_layer.weight)"), "{line}");
}

#[test]
fn a_missing_weights_file_is_refused_when_the_data_is_here() {
    refuses(
        "architectures: [noop]\n",
        WITH_WEIGHTS,
        &["--check-data"],
        ":9: `pretrained.small_cnn`: weights file ",
    );
}

#[test]
fn deterministic_beside_cudnn_benchmark_is_refused_naming_the_benchmark() {
    refuses(
        "resolutions: [32]\n",
        "resolutions: [32]\ngpus_per_trial: 1\ndeterministic: true\ncudnn_benchmark: true\n",
        &[],
        ":12: `cudnn_benchmark`: cuDNN's benchmark picks algorithms by timing: it cannot be on with `deterministic: true`",
    );
}

#[test]
fn deterministic_on_all_of_a_workers_devices_is_refused() {
    // `gpus_per_trial` absent is 0: every device of whichever worker leases the trial.
    refuses(
        "resolutions: [32]\n",
        "resolutions: [32]\ndeterministic: true\n",
        &[],
        ":10: `deterministic`: the number of replicas would depend on the worker that runs the trial",
    );
}

#[test]
fn cpu_threads_out_of_range_is_refused() {
    refuses(
        "resolutions: [32]\n",
        "resolutions: [32]\ncpu_threads: 0\n",
        &[],
        ":10: `cpu_threads`: must be in 1..=1024, got 0",
    );
    refuses(
        "resolutions: [32]\n",
        "resolutions: [32]\ncpu_threads: many\n",
        &[],
        ":10: `cpu_threads`: invalid type",
    );
}

#[test]
fn yaml_syntax_error() {
    refuses("seeds: [1]", "seeds: [1", &[], ":6: invalid YAML:");
}

#[test]
fn unknown_key() {
    refuses(
        "resolutions: [32]\n",
        "resolutions: [32]\nepoch: 3\n",
        &[],
        ":10: `epoch`: unknown key (known: name,",
    );
}

#[test]
fn wrong_type() {
    refuses("epochs: 2", "epochs: two", &[], ":2: `epochs`: invalid type: string \"two\"");
}

#[test]
fn empty_axis() {
    refuses("seeds: [1]", "seeds: []", &[], ":5: `seeds`: empty axis");
}

#[test]
fn unknown_architecture() {
    refuses(
        "[noop]",
        "[noop, resnet9000]",
        &[],
        ":7: `architectures`: unknown architecture `resnet9000` (known:",
    );
}

#[test]
fn unknown_optimizer() {
    refuses("[sgd]", "[sgd, lion]", &[], ":8: `optimizers`: unknown optimizer `lion` (known:");
}

#[test]
fn missing_dataset_root() {
    refuses(
        "    format: synthetic\n",
        "    format: imagenette\n    root: not-here\n",
        &["--check-data"],
        ":13: `datasets.synthetic.root`: dataset root ",
    );
}

#[test]
fn format_without_root() {
    refuses(
        "format: synthetic",
        "format: cifar10_bin",
        &[],
        ":11: `datasets.synthetic`: format `cifar10_bin` needs a `root`",
    );
}

#[test]
fn missing_required_key() {
    refuses("epochs: 2\n", "", &[], ":1: `epochs`: missing (required)");
}

#[test]
fn unknown_method() {
    refuses("[baseline, sal]", "[baseline, stress]", &[], ":6: `methods`: unknown variant `stress`");
}

#[test]
fn duplicate_key() {
    refuses("batch_size: 4\n", "batch_size: 4\nepochs: 3\n", &[], ":4: invalid YAML: duplicate entry");
}

#[test]
fn unknown_field_in_a_dataset() {
    refuses(
        "    format: synthetic\n",
        "    format: synthetic\n    rooot: data\n",
        &[],
        ":13: `datasets.synthetic.rooot`: unknown field `rooot`",
    );
}

#[test]
fn unknown_dataset_option() {
    // The worker's own option checks run before anything starts (noop trials read no data, so
    // this case names a real architecture).
    let block = "architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ndatasets:\n  synthetic:\n    format: synthetic\n";
    let bad = block.replace("[noop]", "[small_cnn]") + "    options:\n      test_size: 64\n";
    refuses(block, &bad, &[], ":13: `datasets.synthetic.options`: unknown field `test_size`");
}

#[test]
fn unknown_dataset_format() {
    refuses(
        "format: synthetic",
        "format: synthetik",
        &[],
        ":12: `datasets.synthetic.format`: unknown dataset format `synthetik`",
    );
}

#[test]
fn invalid_sal_override() {
    refuses(
        "datasets:",
        "sal:\n  s_noise: 0.5\ndatasets:",
        &[],
        ":10: `sal`: invalid sal config: `s_noise` must be below s_yield",
    );
}

#[test]
fn unknown_sal_field() {
    refuses("datasets:", "sal:\n  warmup: 3\ndatasets:", &[], ":11: `sal.warmup`: unknown field `warmup`");
}

#[test]
fn repeated_axis_value() {
    refuses("resolutions: [32]", "resolutions: [32, 32]", &[], ":9: `resolutions`: 32 is listed twice");
}

#[test]
fn non_positive_learning_rate() {
    refuses(
        "learning_rate: 0.01",
        "learning_rate: -1",
        &[],
        ":4: `learning_rate`: must be a finite number > 0",
    );
}

#[test]
fn unknown_only_axis() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.yaml");
    std::fs::write(&file, BASE).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--sweep")
        .arg(&file)
        .args(["--only", "colour=red", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --only colour=red: unknown axis `colour`"), "{stderr}");
}

#[test]
fn a_valid_file_expands_and_only_slices_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.yaml");
    std::fs::write(&file, BASE.replace("seeds: [1]", "seeds: [1, 2, 3]")).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .arg("--sweep")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let first_line = |text: String| text.lines().next().unwrap_or_default().to_string();
    assert_eq!(first_line(run(&["--dry-run"])), "bad: 6 trials");
    let sliced = run(&["--dry-run", "--only", "method=sal", "--only", "seed=1,3"]);
    assert_eq!(first_line(sliced.clone()), "bad: 2 trials");
    assert!(sliced.contains("\n  method: sal 2\n  seed: 1 1, 3 1\n"), "{sliced}");
}

#[test]
fn a_dry_run_counts_trials_per_axis_and_sizes_their_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.yaml");
    let text = BASE
        .replace("architectures: [noop]", "architectures: [resnet50, small_cnn]")
        .replace("optimizers: [sgd]", "optimizers: [adam, sgd]");
    std::fs::write(&file, text).unwrap();
    let dry_run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .arg("--sweep")
            .arg(&file)
            .arg("--dry-run")
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let all = dry_run(&[]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "bad: 8 trials",
            "  architecture: resnet50 4, small_cnn 4",
            "  optimizer: adam 4, sgd 4",
            "  dataset: synthetic 8",
            "  resolution: 32 8",
            "  method: baseline 4, sal 4",
            "  seed: 1 8",
        ],
        "{all}"
    );
    // The largest: ResNet-50 with the paper's head for 10 classes (24 624 074 parameters, 53 120
    // batch-norm statistics), Adam's two moments, twice for SAL's yield point, f32: 564.2 MiB.
    assert!(
        lines[7].starts_with("checkpoints: peak ") && lines[7].contains("with 8 trials running at once"),
        "{all}"
    );
    assert!(lines[7].contains("the largest, resnet50/adam/synthetic/sal, up to 564.2 MiB,"), "{all}");
    let one = dry_run(&["--running", "1"]);
    assert!(
        one.contains("checkpoints: peak 1.1 GiB in the state dir with 1 trials running at once"),
        "{one}"
    );
}

#[test]
fn a_dry_run_replays_the_scheduler_on_the_gpu_counts_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweep.yaml");
    // 2 architectures x 2 resolutions x 2 methods x 4 seeds = 32 trials of four sizes.
    let text = BASE
        .replace("architectures: [noop]", "architectures: [resnet50, small_cnn]")
        .replace("resolutions: [32]", "resolutions: [32, 64]")
        .replace("seeds: [1]", "seeds: [1, 2, 3, 4]");
    std::fs::write(&file, text).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .arg("--sweep")
            .arg(&file)
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&["--dry-run", "--gpus-available", "4,64", "--gpus-per-node", "2"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with('│') && !l.contains("GPU busy"))
        .map(|l| l.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(rows[0][..2], ["4", "2"], "{stdout}");
    // 64 GPUs for 32 trials: every trial starts at once, the longest one is the makespan, and
    // most GPUs idle most of the time.
    assert_eq!(rows[1][..4], ["64", "32", "1.0000", "longest trial"], "{stdout}");
    assert!(rows[1][4].trim_end_matches('%').parse::<u32>().unwrap() < 50, "{stdout}");
    let ratio: f64 = rows[0][2].parse().unwrap();
    assert!((1.0..=1.05).contains(&ratio), "{stdout}");

    let refused = run(&["--dry-run", "--gpus-available", "8,0"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--gpus-available") && stderr.contains("not 0"), "{stderr}");
    // Only a dry run simulates: clap names the missing flag.
    let refused = run(&["--gpus-available", "8"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--dry-run"));
}

#[test]
fn a_flatness_setting_that_measures_nothing_is_refused_naming_its_key() {
    refuses(
        "datasets:",
        "flatness:\n  probes: 1\ndatasets:",
        &[],
        ":11: `flatness.probes`: must be at least 2 (a standard error needs two)",
    );
}

#[test]
fn sam_rho_without_a_sam_method_is_refused() {
    refuses("datasets:", "sam_rho: 0.1\ndatasets:", &[], ":10: `sam_rho`: is set but `methods` has no `sam`");
    refuses(
        "methods: [baseline, sal]",
        "methods: [baseline, sam]\nsam_rho: -1.0",
        &[],
        ":7: `sam_rho`: must be a finite number > 0, got -1",
    );
}
