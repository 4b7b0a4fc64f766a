//! Pins the expansion of rich sweep files: every trial's id, identity, spec, cost, devices and
//! attempts, in order. Expansion may change shape; a store made before keeps its results only if
//! none of these moves. The digests were captured from the coordinator before expansion became a
//! base spec multiplied over the axes.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{parse, LoadOptions, Sweep};
use crate::schedule::slots::TrialsPerDevice;

/// Several values on every axis (given out of order), every method, every sweep-wide setting.
const RICH: &str = "\
name: rich
epochs: 3
batch_size: 8
learning_rate: 0.05
seeds: [7, 3]
methods: [baseline, sal, sal_stress_only, sal_noise_only, sal_plastic_only, shrink_perturb_random, sam, baseline_2x]
architectures: [small_cnn, noop]
optimizers: [sgd, adam]
resolutions: [32, 16]
head: linear
gpus_per_trial: 1
max_attempts: 5
progress_timeout: 120
trials_per_gpu: 2
precision: bf16
channels_last: true
deterministic: true
sam_rho: 0.1
cpu_threads: 2
flatness:
  probes: 8
sal:
  warmup_epochs: 2
datasets:
  b_synth:
    format: synthetic
    options: {classes: 4}
  a_folder:
    format: image_folder
    root: images
pretrained:
  noop: weights/noop.bin
";

/// Loads `text` with its data (and the noop's weights) under a fresh folder.
fn load(text: &str) -> (Sweep, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/noop.bin"), b"noop weights").unwrap();
    let options = LoadOptions { data_root: Some(dir.path().into()), ..Default::default() };
    let sweep = parse(Path::new("rich.yaml"), text, &options).unwrap();
    (sweep, dir.path().display().to_string())
}

/// One line per trial, in order, with the data folder shown as `DIR`.
fn lines(sweep: &Sweep, dir: &str) -> Vec<String> {
    sweep
        .trials
        .iter()
        .map(|t| {
            let spec = serde_json::to_string(&t.spec).unwrap().replace(dir, "DIR");
            format!("{} {} {} {} {} {}", t.id, t.identity, t.cost, t.devices, t.max_attempts, spec)
        })
        .collect()
}

fn digest(lines: &[String]) -> String {
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
}

#[test]
fn a_rich_sweep_expands_to_todays_trials_in_todays_order() {
    let (sweep, dir) = load(RICH);
    assert_eq!(sweep.trials.len(), 2 * 2 * 2 * 2 * 8 * 2);
    assert_eq!((sweep.progress_timeout_s, sweep.trials_per_device), (120, TrialsPerDevice::Fixed(2)));
    // Seeds vary fastest, then methods, resolutions, datasets, optimizers, architectures.
    let order: Vec<String> = [0, 1, 2, 16, 32, 64, 128, 255]
        .iter()
        .map(|&i| {
            let s = &sweep.trials[i].spec;
            format!(
                "{} {} {} {} {} {}",
                s.architecture,
                s.optimizer,
                s.dataset.name,
                s.resolution,
                s.method.name(),
                s.seed
            )
        })
        .collect();
    let ids: Vec<String> = sweep.trials.iter().map(|t| t.id.clone()).collect();
    let lines = lines(&sweep, &dir);
    let mut got = order;
    got.extend([ids[0].clone(), ids[1].clone(), ids[255].clone(), digest(&ids), digest(&lines)]);
    assert_pinned(
        &got,
        &[
            "small_cnn sgd a_folder 32 baseline 7",
            "small_cnn sgd a_folder 32 baseline 3",
            "small_cnn sgd a_folder 32 sal 7",
            "small_cnn sgd a_folder 16 baseline 7",
            "small_cnn sgd b_synth 32 baseline 7",
            "small_cnn adam a_folder 32 baseline 7",
            "noop sgd a_folder 32 baseline 7",
            "noop adam b_synth 16 baseline_2x 3",
            "7bca32aafe11d5a5",
            "ec6256e28f3a323f",
            "8625ab8b3602dd65",
            "5a8fdea8c74c492536c6ca08e08c7c9f8b10712d1260ec1837f36dfe9fad20e4",
            "cec6cbcafe3726542d1a8599030cc475ce9fb7005bd17395c3debfc5548981ce",
        ],
    );
}

/// Compares with the pin, printing everything on a difference (as the pin would list it).
fn assert_pinned(got: &[String], expected: &[&str]) {
    if got != expected {
        let lines: Vec<String> = got.iter().map(|g| format!("{g:?},")).collect();
        panic!("differs from the pin; now:\n{}", lines.join("\n"));
    }
}

/// Absent and `false` measure nothing; `true`, `~` and `{}` measure with the spec's defaults.
#[test]
fn flatness_true_false_and_absent_expand_as_today() {
    let plain = RICH.replace("flatness:\n  probes: 8\n", "");
    let texts = [
        plain.clone(),
        plain.replace("head: linear", "head: linear\nflatness: false"),
        plain.replace("head: linear", "head: linear\nflatness: true"),
        plain.replace("head: linear", "head: linear\nflatness: ~"),
        plain.replace("head: linear", "head: linear\nflatness: {}"),
    ];
    let got: Vec<String> = texts
        .iter()
        .map(|text| {
            let (sweep, dir) = load(text);
            digest(&lines(&sweep, &dir))
        })
        .collect();
    assert_pinned(
        &got,
        &[
            "c97e106797433119a9f3a4051541d88f60c88c6124f22b7b48f77a6991752a41",
            "c97e106797433119a9f3a4051541d88f60c88c6124f22b7b48f77a6991752a41",
            "ede5978f2c616f5e1565abace380d72aa7865d61481ebda9a3c7aa11d9194ab9",
            "ede5978f2c616f5e1565abace380d72aa7865d61481ebda9a3c7aa11d9194ab9",
            "ede5978f2c616f5e1565abace380d72aa7865d61481ebda9a3c7aa11d9194ab9",
        ],
    );
}
