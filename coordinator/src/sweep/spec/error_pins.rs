//! Pins what a malformed sweep file is told, message for message: how the spec reads, checks and
//! expands its keys may change shape, never what a user sees. Every expectation was captured from
//! the coordinator before the keys became one serde structure; the two files with both a missing key
//! and a wrong value are now told about the value first (see the pins of [`super::order_pins`]).

use std::path::Path;

use super::{parse, LoadOptions};

/// A valid file, one key a line (line numbers below count on it).
pub(super) const BASE: &str = "name: t\nepochs: 2\nbatch_size: 4\nlearning_rate: 0.1\nseeds: [1, 2]\n\
    methods: [baseline, sal]\narchitectures: [noop]\noptimizers: [sgd]\nresolutions: [16, 32]\n\
    datasets:\n  synth:\n    format: synthetic\n";

pub(super) fn error(text: &str) -> String {
    match parse(Path::new("s.yaml"), text, &LoadOptions::default()) {
        Ok(_) => "(valid)".into(),
        Err(e) => e.to_string(),
    }
}

/// BASE with each `from` replaced once (it must occur), then `to` appended where `from` is empty.
pub(super) fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_string();
    for (from, to) in edits {
        if from.is_empty() {
            text.push_str(to);
        } else {
            assert!(text.contains(from), "{from:?} is not in {text:?}");
            text = text.replacen(from, to, 1);
        }
    }
    text
}

fn append(extra: &str) -> String {
    edit(&[("", extra)])
}

/// Each input with the one error it gets.
fn cases() -> Vec<(String, &'static str)> {
    vec![
        // The document: YAML, its shape, its keys.
        (edit(&[("seeds: [1, 2]", "seeds: [1, 2")]), "s.yaml:6: invalid YAML: did not find expected ',' or ']' at line 6 column 8, while parsing a flow sequence at line 5 column 8"),
        (append("epochs: 3\n"), "s.yaml:13: invalid YAML: duplicate entry with key \"epochs\""),
        (edit(&[("    format: synthetic\n", "    format: synthetic\n    format: synthetic\n")]), "s.yaml:12: invalid YAML: datasets.synth: duplicate entry with key \"format\" at line 12 column 5"),
        ("- a\n- b\n".into(), "s.yaml:1: a sweep file is a mapping of keys (name, epochs, ...)"),
        ("42\n".into(), "s.yaml:1: a sweep file is a mapping of keys (name, epochs, ...)"),
        (String::new(), "s.yaml:1: `name`: missing (required)"),
        ("~\n".into(), "s.yaml:1: `name`: missing (required)"),
        (append("1: x\n"), "s.yaml:1: keys are strings, found Number(1)"),
        (append("bogus: 1\n2: x\n"), "s.yaml:13: `bogus`: unknown key (known: name, epochs, batch_size, learning_rate, seeds, methods, architectures, optimizers, resolutions, datasets, sal, head, pretrained, max_attempts, gpus_per_trial, trials_per_gpu, progress_timeout, precision, channels_last, cudnn_benchmark, flatness, sam_rho, cpu_threads, deterministic)"),
        (append("2: x\nbogus: 1\n"), "s.yaml:1: keys are strings, found Number(2)"),
        (append("epoch: 3\n"), "s.yaml:13: `epoch`: unknown key (known: name, epochs, batch_size, learning_rate, seeds, methods, architectures, optimizers, resolutions, datasets, sal, head, pretrained, max_attempts, gpus_per_trial, trials_per_gpu, progress_timeout, precision, channels_last, cudnn_benchmark, flatness, sam_rho, cpu_threads, deterministic)"),
        (append("zeta: 1\nalpha: 2\n"), "s.yaml:13: `zeta`: unknown key (known: name, epochs, batch_size, learning_rate, seeds, methods, architectures, optimizers, resolutions, datasets, sal, head, pretrained, max_attempts, gpus_per_trial, trials_per_gpu, progress_timeout, precision, channels_last, cudnn_benchmark, flatness, sam_rho, cpu_threads, deterministic)"),
        (edit(&[("name: t\n", ""), ("", "bogus: 1\n")]), "s.yaml:12: `bogus`: unknown key (known: name, epochs, batch_size, learning_rate, seeds, methods, architectures, optimizers, resolutions, datasets, sal, head, pretrained, max_attempts, gpus_per_trial, trials_per_gpu, progress_timeout, precision, channels_last, cudnn_benchmark, flatness, sam_rho, cpu_threads, deterministic)"),
        // Training settings.
        (edit(&[("name: t", "name: [a]")]), "s.yaml:1: `name`: invalid type: sequence, expected a string"),
        (edit(&[("name: t", "name: ~")]), "s.yaml:1: `name`: invalid type: unit value, expected a string"),
        (edit(&[("name: t", "name: 3")]), "s.yaml:1: `name`: invalid type: integer `3`, expected a string"),
        (edit(&[("name: t", "name: ' '")]), "s.yaml:1: `name`: must not be empty"),
        (edit(&[("epochs: 2", "epochs: two")]), "s.yaml:2: `epochs`: invalid type: string \"two\", expected u32"),
        (edit(&[("epochs: 2", "epochs: -1")]), "s.yaml:2: `epochs`: invalid value: integer `-1`, expected u32"),
        (edit(&[("epochs: 2", "epochs: 1.5")]), "s.yaml:2: `epochs`: invalid type: floating point `1.5`, expected u32"),
        (edit(&[("epochs: 2", "epochs: 4294967296")]), "s.yaml:2: `epochs`: invalid value: integer `4294967296`, expected u32"),
        (edit(&[("epochs: 2", "epochs: ~")]), "s.yaml:2: `epochs`: invalid type: unit value, expected u32"),
        (edit(&[("epochs: 2", "epochs: 0")]), "s.yaml:2: `epochs`: must be at least 1"),
        (edit(&[("epochs: 2", "epochs: 60000"), ("[baseline, sal]", "[baseline_2x]")]), "s.yaml:2: `epochs`: 60000 is too many for `baseline_2x`, which trains twice as long (at most 50000)"),
        (edit(&[("batch_size: 4", "batch_size: x")]), "s.yaml:3: `batch_size`: invalid type: string \"x\", expected u32"),
        (edit(&[("batch_size: 4", "batch_size: 0")]), "s.yaml:3: `batch_size`: must be at least 1"),
        (edit(&[("learning_rate: 0.1", "learning_rate: x")]), "s.yaml:4: `learning_rate`: invalid type: string \"x\", expected f64"),
        (edit(&[("learning_rate: 0.1", "learning_rate: ~")]), "s.yaml:4: `learning_rate`: invalid type: unit value, expected f64"),
        (edit(&[("learning_rate: 0.1", "learning_rate: .nan")]), "s.yaml:4: `learning_rate`: must be a finite number > 0, got NaN"),
        (edit(&[("learning_rate: 0.1", "learning_rate: 0")]), "s.yaml:4: `learning_rate`: must be a finite number > 0, got 0"),
        (append("max_attempts: x\n"), "s.yaml:13: `max_attempts`: invalid type: string \"x\", expected u32"),
        (append("max_attempts: ~\n"), "s.yaml:13: `max_attempts`: invalid type: unit value, expected u32"),
        (append("max_attempts: -1\n"), "s.yaml:13: `max_attempts`: invalid value: integer `-1`, expected u32"),
        (append("max_attempts: 0\n"), "s.yaml:13: `max_attempts`: must be at least 1"),
        (append("progress_timeout: x\n"), "s.yaml:13: `progress_timeout`: invalid type: string \"x\", expected u32"),
        (append("progress_timeout: 15m\n"), "s.yaml:13: `progress_timeout`: invalid type: string \"15m\", expected u32"),
        (append("progress_timeout: 0\n"), "s.yaml:13: `progress_timeout`: must be at least 1 second"),
        // Axes.
        (edit(&[("seeds: [1, 2]", "seeds: 1")]), "s.yaml:5: `seeds`: invalid type: integer `1`, expected a sequence"),
        (edit(&[("seeds: [1, 2]", "seeds: [a]")]), "s.yaml:5: `seeds`: invalid type: string \"a\", expected u64"),
        (edit(&[("seeds: [1, 2]", "seeds: []")]), "s.yaml:5: `seeds`: empty axis: list at least one value"),
        (edit(&[("seeds: [1, 2]", "seeds: [1, 1]")]), "s.yaml:5: `seeds`: 1 is listed twice"),
        (edit(&[("seeds: [1, 2]", "seeds: ~")]), "s.yaml:5: `seeds`: empty axis: list at least one value"),
        (edit(&[("seeds: [1, 2]", "seeds: {a: 1}")]), "s.yaml:5: `seeds`: invalid type: map, expected a sequence"),
        (edit(&[("[baseline, sal]", "[stress]")]), "s.yaml:6: `methods`: unknown variant `stress`, expected one of `baseline`, `sal`, `sal_stress_only`, `sal_noise_only`, `sal_plastic_only`, `sam`, `shrink_perturb_random`, `baseline_2x`"),
        (edit(&[("[baseline, sal]", "[]")]), "s.yaml:6: `methods`: empty axis: list at least one value"),
        (edit(&[("[baseline, sal]", "[sal, sal]")]), "s.yaml:6: `methods`: Sal is listed twice"),
        (edit(&[("[baseline, sal]", "sal")]), "s.yaml:6: `methods`: invalid type: string \"sal\", expected a sequence"),
        (edit(&[("[noop]", "[]")]), "s.yaml:7: `architectures`: empty axis: list at least one value"),
        (edit(&[("[noop]", "[noop, noop]")]), "s.yaml:7: `architectures`: \"noop\" is listed twice"),
        (edit(&[("[noop]", "noop")]), "s.yaml:7: `architectures`: invalid type: string \"noop\", expected a sequence"),
        (edit(&[("[noop]", "[noop, resnet9000]")]), "s.yaml:7: `architectures`: unknown architecture `resnet9000` (known: densenet201, densenet121, mobilenet_v2, resnet50, efficientnet_b2, resnet50_v2, resnet18, small_cnn, noop)"),
        (edit(&[("[sgd]", "[]")]), "s.yaml:8: `optimizers`: empty axis: list at least one value"),
        (edit(&[("[sgd]", "[sgd, sgd]")]), "s.yaml:8: `optimizers`: \"sgd\" is listed twice"),
        (edit(&[("[sgd]", "[sgd, lion]")]), "s.yaml:8: `optimizers`: unknown optimizer `lion` (known: adam, adamax, nadam, rmsprop, sgd)"),
        (edit(&[("[16, 32]", "[x]")]), "s.yaml:9: `resolutions`: invalid type: string \"x\", expected u32"),
        (edit(&[("[16, 32]", "[16, 16]")]), "s.yaml:9: `resolutions`: 16 is listed twice"),
        (edit(&[("[16, 32]", "[]")]), "s.yaml:9: `resolutions`: empty axis: list at least one value"),
        (edit(&[("[16, 32]", "[4, 16]")]), "s.yaml:9: `resolutions`: 4 px is too small (at least 8)"),
        // Datasets.
        (edit(&[("datasets:\n  synth:\n    format: synthetic\n", "datasets: []\n")]), "s.yaml:10: `datasets`: invalid type: sequence, expected a map"),
        (edit(&[("datasets:\n  synth:\n    format: synthetic\n", "datasets: {}\n")]), "s.yaml:10: `datasets`: empty axis: name at least one dataset"),
        (edit(&[("datasets:\n  synth:\n    format: synthetic\n", "datasets: ~\n")]), "s.yaml:10: `datasets`: empty axis: name at least one dataset"),
        (edit(&[("  synth:\n    format: synthetic\n", "  synth: ~\n")]), "s.yaml:10: `datasets`: missing field `format`"),
        (edit(&[("  synth:\n    format: synthetic\n", "  synth: 3\n")]), "s.yaml:10: `datasets`: invalid type: integer `3`, expected struct DatasetEntry"),
        (edit(&[("    format: synthetic\n", "    root: x\n")]), "s.yaml:10: `datasets`: missing field `format`"),
        (append("    bogus: 1\n"), "s.yaml:13: `datasets.synth.bogus`: unknown field `bogus`, expected one of `format`, `root`, `options`"),
        (edit(&[("format: synthetic", "format: [a]")]), "s.yaml:10: `datasets`: invalid type: sequence, expected a string"),
        (append("    root: [1]\n"), "s.yaml:10: `datasets`: invalid type: sequence, expected path string"),
        (append("    options: 3\n"), "s.yaml:10: `datasets`: invalid type: integer `3`, expected a map"),
        (
            edit(&[("datasets:\n  synth:\n    format: synthetic\n", "datasets: {s: {format: synthetic, bogus: 1}}\n")]),
            "s.yaml:10: `datasets`: unknown field `bogus`, expected one of `format`, `root`, `options`",
        ),
        (edit(&[("format: synthetic", "format: synthetik")]), "s.yaml:12: `datasets.synth.format`: unknown dataset format `synthetik` (known: synthetic, image_folder, imagenette, tiny_imagenet, eurosat, pacs, cifar10_bin, corel1k)"),
        (edit(&[("format: synthetic", "format: cifar10_bin")]), "s.yaml:11: `datasets.synth`: format `cifar10_bin` needs a `root`"),
        (edit(&[("[noop]", "[small_cnn]"), ("", "    options:\n      test_size: 64\n")]), "s.yaml:13: `datasets.synth.options`: unknown field `test_size`, expected one of `classes`, `train_size`, `val_size`, `noise`, `label_noise`, `seed` (format `synthetic`)"),
        // SAL, the random arm, SAM.
        (append("sal: 3\n"), "s.yaml:13: `sal`: invalid type: integer `3`, expected struct StressConfig"),
        (append("sal: ~\n"), "(valid)"),
        (append("sal:\n  warmup: 3\n"), "s.yaml:14: `sal.warmup`: unknown field `warmup`, expected one of `rho`, `theta`, `s_max`, `s_noise`, `s_yield`, `yield_comparison`, `delta`, `lambda`, `plastic_scale`, `plastic_std`, `plastic_layers`, `eps_loss`, `eps_acc`, `warmup_epochs`, `recovery_patience`"),
        (append("sal: {warmup: 3}\n"), "s.yaml:13: `sal`: unknown field `warmup`, expected one of `rho`, `theta`, `s_max`, `s_noise`, `s_yield`, `yield_comparison`, `delta`, `lambda`, `plastic_scale`, `plastic_std`, `plastic_layers`, `eps_loss`, `eps_acc`, `warmup_epochs`, `recovery_patience`"),
        (append("sal:\n  s_noise: 0.5\n"), "s.yaml:13: `sal`: invalid sal config: `s_noise` must be below s_yield (0.01), got 0.5"),
        (edit(&[("[baseline, sal]", "[baseline, shrink_perturb_random]")]), "s.yaml:6: `methods`: `shrink_perturb_random` repeats the deformation count of the `sal` trial of its cell and seed: add `sal` to `methods`"),
        (append("sam_rho: ~\n"), "s.yaml:13: `sam_rho`: invalid type: unit value, expected f64"),
        (append("sam_rho: x\n"), "s.yaml:13: `sam_rho`: invalid type: string \"x\", expected f64"),
        (append("sam_rho: 0.1\n"), "s.yaml:13: `sam_rho`: is set but `methods` has no `sam`"),
        (edit(&[("[baseline, sal]", "[sam]"), ("", "sam_rho: -1\n")]), "s.yaml:13: `sam_rho`: must be a finite number > 0, got -1"),
        (edit(&[("[baseline, sal]", "[sam]"), ("", "sam_rho: .inf\n")]), "s.yaml:13: `sam_rho`: must be a finite number > 0, got inf"),
        // Head and pretrained weights.
        (append("head: bogus\n"), "s.yaml:13: `head`: unknown variant `bogus`, expected `paper` or `linear`"),
        (append("pretrained: [x]\n"), "s.yaml:13: `pretrained`: invalid type: sequence, expected a map"),
        (append("pretrained: 3\n"), "s.yaml:13: `pretrained`: invalid type: integer `3`, expected a map"),
        (append("pretrained:\n  noop: [1]\n"), "s.yaml:13: `pretrained`: invalid type: sequence, expected path string"),
        (append("pretrained:\n  resnet50: w.bin\n"), "s.yaml:14: `pretrained.resnet50`: `resnet50` is not in `architectures`"),
        (append("pretrained:\n  noop: /nonexistent/w.bin\n"), "(valid)"),
        // Devices and reproducibility.
        (append("gpus_per_trial: x\n"), "s.yaml:13: `gpus_per_trial`: invalid type: string \"x\", expected u32"),
        (append("gpus_per_trial: -1\n"), "s.yaml:13: `gpus_per_trial`: invalid value: integer `-1`, expected u32"),
        (append("trials_per_gpu: 0\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got 0"),
        (append("trials_per_gpu: -1\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got -1"),
        (append("trials_per_gpu: 1.5\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got 1.5"),
        (append("trials_per_gpu: many\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got String(\"many\")"),
        (append("trials_per_gpu: [2]\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got Sequence [Number(2)]"),
        (append("trials_per_gpu: ~\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got Null"),
        (append("trials_per_gpu: true\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got Bool(true)"),
        (append("trials_per_gpu: {a: 1}\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got Mapping {\"a\": Number(1)}"),
        (append("trials_per_gpu: 4294967296\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got 4294967296"),
        (append("trials_per_gpu: '3'\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got String(\"3\")"),
        (append("trials_per_gpu: !t 2\n"), "s.yaml:13: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got TaggedValue { tag: !t, value: Number(2) }"),
        (append("precision: fp16\n"), "s.yaml:13: `precision`: unknown variant `fp16`, expected `fp32` or `bf16`"),
        (append("precision: bf16\n"), "s.yaml:13: `precision`: bf16 runs on GPUs only: set `gpus_per_trial` to 1 or more"),
        (append("channels_last: 3\n"), "s.yaml:13: `channels_last`: invalid type: integer `3`, expected a boolean"),
        (append("channels_last: yes\n"), "s.yaml:13: `channels_last`: invalid type: string \"yes\", expected a boolean"),
        (append("cudnn_benchmark: x\n"), "s.yaml:13: `cudnn_benchmark`: invalid type: string \"x\", expected a boolean"),
        (append("cpu_threads: ~\n"), "s.yaml:13: `cpu_threads`: invalid type: unit value, expected u32"),
        (append("cpu_threads: many\n"), "s.yaml:13: `cpu_threads`: invalid type: string \"many\", expected u32"),
        (append("cpu_threads: 0\n"), "s.yaml:13: `cpu_threads`: must be in 1..=1024, got 0"),
        (append("cpu_threads: 2000\n"), "s.yaml:13: `cpu_threads`: must be in 1..=1024, got 2000"),
        (append("deterministic: 3\n"), "s.yaml:13: `deterministic`: invalid type: integer `3`, expected a boolean"),
        (append("deterministic: true\n"), "s.yaml:13: `deterministic`: the number of replicas would depend on the worker that runs the trial: set `gpus_per_trial`"),
        (append("gpus_per_trial: 1\ndeterministic: true\ncudnn_benchmark: true\n"), "s.yaml:15: `cudnn_benchmark`: cuDNN's benchmark picks algorithms by timing: it cannot be on with `deterministic: true`"),
        // Flatness.
        (append("flatness: 3\n"), "s.yaml:13: `flatness`: invalid type: integer `3`, expected struct FlatnessConfig"),
        (append("flatness: ~\n"), "(valid)"),
        (append("flatness: x\n"), "s.yaml:13: `flatness`: invalid type: string \"x\", expected struct FlatnessConfig"),
        (append("flatness: [1]\n"), "s.yaml:13: `flatness`: invalid type: sequence, expected struct FlatnessConfig"),
        (append("flatness:\n  bogus: 1\n"), "s.yaml:14: `flatness.bogus`: unknown field `bogus`, expected one of `probes`, `images`, `iterations`, `tolerance`, `directions`, `steps`, `params`"),
        (append("flatness:\n  probes: x\n"), "s.yaml:13: `flatness`: invalid type: string \"x\", expected u32"),
        (append("flatness:\n  probes: 1\n"), "s.yaml:14: `flatness.probes`: must be at least 2 (a standard error needs two)"),
        (append("flatness: {tolerance: -1}\n"), "s.yaml:13: `flatness.tolerance`: must be a finite number >= 0, got -1"),
        (append("flatness:\n  params: bogus\n"), "s.yaml:13: `flatness`: unknown variant `bogus`, expected `all` or `weights`"),
        // Several problems at once: unknown keys before wrong values before missing keys (serde
        // looks for those last; before the keys were one structure, missing keys came before
        // wrong values) before checks.
        (edit(&[("name: t\n", ""), ("epochs: 2", "epochs: two")]), "s.yaml:1: `epochs`: invalid type: string \"two\", expected u32"),
        (edit(&[("learning_rate: 0.1\n", ""), ("seeds: [1, 2]", "seeds: []")]), "s.yaml:4: `seeds`: empty axis: list at least one value"),
        (edit(&[("name: t\n", ""), ("batch_size: 4", "batch_size: 0")]), "s.yaml:1: `name`: missing (required)"),
        (edit(&[("epochs: 2", "epochs: two"), ("", "bogus: 1\n")]), "s.yaml:13: `bogus`: unknown key (known: name, epochs, batch_size, learning_rate, seeds, methods, architectures, optimizers, resolutions, datasets, sal, head, pretrained, max_attempts, gpus_per_trial, trials_per_gpu, progress_timeout, precision, channels_last, cudnn_benchmark, flatness, sam_rho, cpu_threads, deterministic)"),
        (edit(&[("epochs: 2", "epochs: 0"), ("batch_size: 4", "batch_size: x")]), "s.yaml:3: `batch_size`: invalid type: string \"x\", expected u32"),
    ]
}

#[test]
fn each_malformed_file_gets_todays_message() {
    let mut wrong = Vec::new();
    for (i, (text, expected)) in cases().iter().enumerate() {
        let got = error(text);
        if got != *expected {
            wrong.push(format!("case {i}: expected {expected:?}\n         got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// Errors found with the files a sweep points at, with the folder they lie in shown as `DIR`.
#[test]
fn the_files_a_sweep_points_at_get_todays_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("folder")).unwrap();
    let run = |text: &str, check_data: bool| {
        let options = LoadOptions { data_root: Some(dir.path().into()), check_data, ..Default::default() };
        match parse(Path::new("s.yaml"), text, &options) {
            Ok(_) => "(valid)".to_string(),
            Err(e) => e.to_string().replace(&dir.path().display().to_string(), "DIR"),
        }
    };
    let cases = [
        (
            run(&edit(&[("format: synthetic", "format: image_folder\n    root: imgs")]), true),
            "s.yaml:13: `datasets.synth.root`: dataset root DIR/imgs is not a folder",
        ),
        (run(&edit(&[("format: synthetic", "format: image_folder\n    root: imgs")]), false), "(valid)"),
        (
            run(&append("pretrained:\n  noop: w.bin\n"), true),
            "s.yaml:14: `pretrained.noop`: weights file DIR/w.bin does not exist",
        ),
        (
            run(&append("pretrained:\n  noop: folder\n"), false),
            "s.yaml:14: `pretrained.noop`: cannot read the weights file: Is a directory (os error 21)",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .enumerate()
        .filter(|(_, (got, expected))| got != expected)
        .map(|(i, (got, expected))| format!("case {i}: expected {expected:?}\n         got {got:?}"))
        .collect();
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
