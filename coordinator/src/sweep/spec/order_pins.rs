//! Pins which of several problems a sweep file is told about first: a user fixing a file meets its
//! errors in the same order, however the spec reads and checks its keys. Captured, as
//! [`super::error_pins`], from the coordinator before the keys became one serde structure.

use super::error_pins::{edit, error, BASE};

/// Applies every fault, then takes them back one at a time: the messages, in turn, say in which
/// order a file with several problems hears about them.
fn in_turn(text: impl Fn(&[bool]) -> String, faults: usize) -> Vec<String> {
    (0..=faults)
        .map(|fixed| {
            let active: Vec<bool> = (0..faults).map(|i| i >= fixed).collect();
            error(&text(&active))
        })
        .collect()
}

/// Compares the messages in turn, printing all of them on a difference (as a pin would list them).
fn assert_in_turn(got: Vec<String>, expected: &[&str]) {
    let got: Vec<&str> = got.iter().map(String::as_str).collect();
    if got != expected {
        let lines: Vec<String> = got.iter().map(|g| format!("{g:?},")).collect();
        panic!("the messages in turn differ from the pin; they are now:\n{}", lines.join("\n"));
    }
}

/// Missing keys are named in the order of the key list, each at line 1.
#[test]
fn missing_keys_are_named_in_order() {
    let lines: Vec<&str> = BASE.split_inclusive('\n').collect();
    // The first nine lines are one required key each; the last three are `datasets`.
    let text = |active: &[bool]| {
        let mut text = String::new();
        for (i, line) in lines.iter().enumerate() {
            if !active[i.min(9)] {
                text.push_str(line);
            }
        }
        text
    };
    assert_in_turn(
        in_turn(text, 10),
        &[
            "s.yaml:1: `name`: missing (required)",
            "s.yaml:1: `epochs`: missing (required)",
            "s.yaml:1: `batch_size`: missing (required)",
            "s.yaml:1: `learning_rate`: missing (required)",
            "s.yaml:1: `seeds`: missing (required)",
            "s.yaml:1: `methods`: missing (required)",
            "s.yaml:1: `architectures`: missing (required)",
            "s.yaml:1: `optimizers`: missing (required)",
            "s.yaml:1: `resolutions`: missing (required)",
            "s.yaml:1: `datasets`: missing (required)",
            "(valid)",
        ],
    );
}

/// Values are read in the order of the keys (the fields of [`super::keys::SweepFile`]), whatever
/// their order in the file: here the keys come last first. (Before the keys became one structure,
/// `datasets` was read first and `progress_timeout` before `trials_per_gpu`: an order the key list
/// alone cannot give.)
#[test]
fn wrong_values_are_named_in_the_order_of_the_keys() {
    #[rustfmt::skip]
    let keys: &[(&str, &str, &str)] = &[
        ("name", "t", "[a]"),
        ("epochs", "2", "two"),
        ("batch_size", "4", "x"),
        ("learning_rate", "0.1", "x"),
        ("seeds", "[1, 2]", "[]"),
        ("methods", "[baseline, sal]", "[stress]"),
        ("architectures", "[noop]", "[noop, noop]"),
        ("optimizers", "[sgd]", "sgd"),
        ("resolutions", "[16, 32]", "[x]"),
        ("datasets", "\n  synth:\n    format: synthetic", "{}"),
        ("sal", "{}", "3"),
        ("head", "paper", "bogus"),
        ("pretrained", "{}", "3"),
        ("max_attempts", "3", "x"),
        ("gpus_per_trial", "1", "x"),
        ("trials_per_gpu", "1", "0"),
        ("progress_timeout", "900", "x"),
        ("precision", "fp32", "fp16"),
        ("channels_last", "false", "3"),
        ("cudnn_benchmark", "false", "3"),
        ("flatness", "false", "3"),
        ("sam_rho", "", "x"),
        ("cpu_threads", "1", "x"),
        ("deterministic", "false", "3"),
    ];
    let text = |active: &[bool]| {
        let mut text = String::new();
        for (i, (key, good, bad)) in keys.iter().enumerate().rev() {
            let value = if active[i] { bad } else { good };
            if !value.is_empty() {
                text.push_str(&format!("{key}: {value}\n"));
            }
        }
        text
    };
    assert_in_turn(in_turn(text, keys.len()), &[
        "s.yaml:24: `name`: invalid type: sequence, expected a string",
        "s.yaml:23: `epochs`: invalid type: string \"two\", expected u32",
        "s.yaml:22: `batch_size`: invalid type: string \"x\", expected u32",
        "s.yaml:21: `learning_rate`: invalid type: string \"x\", expected f64",
        "s.yaml:20: `seeds`: empty axis: list at least one value",
        "s.yaml:19: `methods`: unknown variant `stress`, expected one of `baseline`, `sal`, `sal_stress_only`, `sal_noise_only`, `sal_plastic_only`, `sam`, `shrink_perturb_random`, `baseline_2x`",
        "s.yaml:18: `architectures`: \"noop\" is listed twice",
        "s.yaml:17: `optimizers`: invalid type: string \"sgd\", expected a sequence",
        "s.yaml:16: `resolutions`: invalid type: string \"x\", expected u32",
        "s.yaml:15: `datasets`: empty axis: name at least one dataset",
        "s.yaml:14: `sal`: invalid type: integer `3`, expected struct StressConfig",
        "s.yaml:13: `head`: unknown variant `bogus`, expected `paper` or `linear`",
        "s.yaml:12: `pretrained`: invalid type: integer `3`, expected a map",
        "s.yaml:11: `max_attempts`: invalid type: string \"x\", expected u32",
        "s.yaml:10: `gpus_per_trial`: invalid type: string \"x\", expected u32",
        "s.yaml:9: `trials_per_gpu`: must be an integer of at least 1, or `auto`, got 0",
        "s.yaml:8: `progress_timeout`: invalid type: string \"x\", expected u32",
        "s.yaml:7: `precision`: unknown variant `fp16`, expected `fp32` or `bf16`",
        "s.yaml:6: `channels_last`: invalid type: integer `3`, expected a boolean",
        "s.yaml:5: `cudnn_benchmark`: invalid type: integer `3`, expected a boolean",
        "s.yaml:4: `flatness`: invalid type: integer `3`, expected struct FlatnessConfig",
        "s.yaml:3: `sam_rho`: invalid type: string \"x\", expected f64",
        "s.yaml:2: `cpu_threads`: invalid type: string \"x\", expected u32",
        "s.yaml:1: `deterministic`: invalid type: integer `3`, expected a boolean",
        "(valid)",
    ]);
}

/// The checks of values against each other run in a fixed order.
#[test]
fn checks_report_in_a_fixed_order() {
    #[rustfmt::skip]
    let faults: &[(&str, &str)] = &[
        ("name: t", "name: ' '"),
        ("epochs: 2", "epochs: 0"),
        ("batch_size: 4", "batch_size: 0"),
        ("learning_rate: 0.1", "learning_rate: -1"),
        ("", "progress_timeout: 0\n"),
        ("", "max_attempts: 0\n"),
        ("", "precision: bf16\n"),
        ("", "cpu_threads: 0\n"),
        ("", "cudnn_benchmark: true\n"),
        ("", "deterministic: true\n"),
        ("[16, 32]", "[4, 16]"),
        ("[noop, small_cnn]", "[noop, small_cnn, resnet9000]"),
        ("[sgd]", "[sgd, lion]"),
        ("", "sal:\n  s_noise: 0.5\n"),
        ("[baseline, sal]", "[baseline, shrink_perturb_random]"),
        ("", "sam_rho: 0.1\n"),
        ("", "flatness:\n  probes: 1\n"),
        ("format: synthetic", "format: synthetik"),
        ("    options: {}", "    options: {test_size: 64}"),
        ("", "  zz:\n    format: cifar10_bin\n"),
        ("", "pretrained:\n  resnet50: w.bin\n"),
    ];
    let base = edit(&[("[noop]", "[noop, small_cnn]"), ("", "    options: {}\n")]);
    let text = |active: &[bool]| {
        let mut text = base.clone();
        let mut appended = String::new();
        for ((from, to), on) in faults.iter().zip(active) {
            match (on, from.is_empty()) {
                (false, _) => {}
                (true, true) => appended.push_str(to),
                (true, false) => text = text.replacen(from, to, 1),
            }
        }
        // Appended keys go after `datasets`, except a second dataset, which goes inside it.
        let (datasets, rest): (Vec<&str>, Vec<&str>) = appended
            .split_inclusive('\n')
            .partition(|l| l.starts_with("  zz:") || l.starts_with("    format: cifar"));
        text.push_str(&datasets.concat());
        text.push_str(&rest.concat());
        text
    };
    assert_in_turn(in_turn(text, faults.len()), &[
        "s.yaml:1: `name`: must not be empty",
        "s.yaml:2: `epochs`: must be at least 1",
        "s.yaml:3: `batch_size`: must be at least 1",
        "s.yaml:4: `learning_rate`: must be a finite number > 0, got -1",
        "s.yaml:16: `progress_timeout`: must be at least 1 second",
        "s.yaml:16: `max_attempts`: must be at least 1",
        "s.yaml:16: `precision`: bf16 runs on GPUs only: set `gpus_per_trial` to 1 or more",
        "s.yaml:16: `cpu_threads`: must be in 1..=1024, got 0",
        "s.yaml:16: `cudnn_benchmark`: cuDNN's benchmark picks algorithms by timing: it cannot be on with `deterministic: true`",
        "s.yaml:16: `deterministic`: the number of replicas would depend on the worker that runs the trial: set `gpus_per_trial`",
        "s.yaml:9: `resolutions`: 4 px is too small (at least 8)",
        "s.yaml:7: `architectures`: unknown architecture `resnet9000` (known: densenet201, densenet121, mobilenet_v2, resnet50, efficientnet_b2, resnet50_v2, resnet18, small_cnn, noop)",
        "s.yaml:8: `optimizers`: unknown optimizer `lion` (known: adam, adamax, nadam, rmsprop, sgd)",
        "s.yaml:16: `sal`: invalid sal config: `s_noise` must be below s_yield (0.01), got 0.5",
        "s.yaml:6: `methods`: `shrink_perturb_random` repeats the deformation count of the `sal` trial of its cell and seed: add `sal` to `methods`",
        "s.yaml:16: `sam_rho`: is set but `methods` has no `sam`",
        "s.yaml:17: `flatness.probes`: must be at least 2 (a standard error needs two)",
        "s.yaml:12: `datasets.synth.format`: unknown dataset format `synthetik` (known: synthetic, image_folder, imagenette, tiny_imagenet, eurosat, pacs, cifar10_bin, corel1k)",
        "s.yaml:13: `datasets.synth.options`: unknown field `test_size`, expected one of `classes`, `train_size`, `val_size`, `noise`, `label_noise`, `seed` (format `synthetic`)",
        "s.yaml:14: `datasets.zz`: format `cifar10_bin` needs a `root`",
        "s.yaml:15: `pretrained.resnet50`: `resnet50` is not in `architectures`",
        "(valid)",
    ]);
}
