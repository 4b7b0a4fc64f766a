//! Trial ids of sweeps that do not set `cpu_threads` or `deterministic` are what they were before
//! those keys existed: the ids below were computed by the coordinator of main at 0d3806c (before
//! the keys), so a store made then keeps its results (a changed id would rerun every trial).

use std::path::Path;

use coordinator::sweep::spec::{parse, LoadOptions};

/// Every kind of key a sweep sets, none of the new ones: two methods, architectures, optimizers and
/// seeds, SAL settings, dataset options, GPU settings.
const SWEEP: &str = "\
name: pins
epochs: 3
batch_size: 16
learning_rate: 0.001
seeds: [1, 2]
methods: [baseline, sal]
architectures: [small_cnn, resnet50]
optimizers: [adam, sgd]
resolutions: [16]
head: paper
gpus_per_trial: 1
precision: bf16
channels_last: true
cudnn_benchmark: true
sal:
  theta: 0.2
datasets:
  synthetic:
    format: synthetic
    options: {classes: 4, train_size: 256, val_size: 64, label_noise: 0.25}
";

/// Each trial's `architecture optimizer method seed` and its id.
fn ids(text: &str) -> Vec<(String, String)> {
    let sweep = parse(Path::new("/sweeps/pins.yaml"), text, &LoadOptions::default()).unwrap();
    sweep
        .trials
        .iter()
        .map(|t| {
            let s = &t.spec;
            (format!("{} {} {:?} {}", s.architecture, s.optimizer, s.method, s.seed), t.id.clone())
        })
        .collect()
}

fn owned(pins: &[(&str, &str)]) -> Vec<(String, String)> {
    pins.iter().map(|(what, id)| (what.to_string(), id.to_string())).collect()
}

/// What main's coordinator computed for [`SWEEP`].
const WITH_GPU_SETTINGS: &[(&str, &str)] = &[
    ("small_cnn adam Baseline 1", "c147a56630baf98e"),
    ("small_cnn adam Baseline 2", "0293bfb8028343e5"),
    ("small_cnn adam Sal 1", "588a0f941b7abcf8"),
    ("small_cnn adam Sal 2", "3c4fe73ef6fb329f"),
    ("small_cnn sgd Baseline 1", "f1274749ec1ef092"),
    ("small_cnn sgd Baseline 2", "7f90f34b7008d8af"),
    ("small_cnn sgd Sal 1", "f9babf8dcf2f4f0b"),
    ("small_cnn sgd Sal 2", "4c3b29f89acb28b6"),
    ("resnet50 adam Baseline 1", "1217bac5ed0918ca"),
    ("resnet50 adam Baseline 2", "36afec8a0245a02e"),
    ("resnet50 adam Sal 1", "a04ea31ebf05acc1"),
    ("resnet50 adam Sal 2", "dcd4560c2ca7a06f"),
    ("resnet50 sgd Baseline 1", "447835fe893272bc"),
    ("resnet50 sgd Baseline 2", "55bf9a00b261c236"),
    ("resnet50 sgd Sal 1", "77ac3355d12910f7"),
    ("resnet50 sgd Sal 2", "d434e896e464289a"),
];

/// What main's coordinator computed for [`SWEEP`] without `precision`, `channels_last` and
/// `cudnn_benchmark`.
const PLAIN: &[(&str, &str)] = &[
    ("small_cnn adam Baseline 1", "e8691fab1ef41b9b"),
    ("small_cnn adam Baseline 2", "d653eb6aa9360f13"),
    ("small_cnn adam Sal 1", "3d921bb4d98fde3b"),
    ("small_cnn adam Sal 2", "49b42b939dd7dd63"),
    ("small_cnn sgd Baseline 1", "e0905515ada1bab7"),
    ("small_cnn sgd Baseline 2", "e5be53202f463b4b"),
    ("small_cnn sgd Sal 1", "2456e69c3a425bd5"),
    ("small_cnn sgd Sal 2", "bb31475e92ee6933"),
    ("resnet50 adam Baseline 1", "454422f8e107fa5c"),
    ("resnet50 adam Baseline 2", "b08d1677441f982c"),
    ("resnet50 adam Sal 1", "c030833fcdce7bed"),
    ("resnet50 adam Sal 2", "6e3dcfbd71fb6470"),
    ("resnet50 sgd Baseline 1", "90f1c4340e9c3f0a"),
    ("resnet50 sgd Baseline 2", "504e09e2906f1915"),
    ("resnet50 sgd Sal 1", "4da7966901b630a2"),
    ("resnet50 sgd Sal 2", "b7cb3d677e520bad"),
];

const GPU_SETTINGS: &str = "precision: bf16\nchannels_last: true\ncudnn_benchmark: true\n";

#[test]
fn sweeps_without_the_new_keys_keep_the_ids_they_had() {
    assert_eq!(ids(SWEEP), owned(WITH_GPU_SETTINGS));
    assert!(SWEEP.contains(GPU_SETTINGS));
    assert_eq!(ids(&SWEEP.replace(GPU_SETTINGS, "")), owned(PLAIN));
}

#[test]
fn setting_a_new_key_makes_other_trials() {
    let plain = SWEEP.replace(GPU_SETTINGS, "");
    let old: Vec<String> = owned(PLAIN).into_iter().map(|(_, id)| id).collect();
    // `cpu_threads: 1` is the default, yet spelled out it is part of the id: the file says what
    // the trial computes, and a changed default must not pass for the same trial.
    for key in ["cpu_threads: 1\n", "cpu_threads: 4\n", "deterministic: true\n"] {
        let new = ids(&format!("{plain}{key}"));
        assert_eq!(new.len(), old.len());
        for ((what, id), old_id) in new.iter().zip(&old) {
            assert_ne!(id, old_id, "{key:?} left the id of {what} as it was");
        }
    }
    let one = ids(&format!("{plain}cpu_threads: 1\n"));
    let four = ids(&format!("{plain}cpu_threads: 4\n"));
    assert_ne!(one[0].1, four[0].1, "another thread count sums in another order: another trial");
}
