//! The model zoo: torchvision's variable names and shapes (from `fixtures/torchvision_trunks.json`,
//! written by `scripts/gen_model_fixtures.py` from torchvision itself), the published parameter
//! counts, forward and backward passes at the paper's resolutions, and pretrained loading.

use std::collections::BTreeMap;

use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use worker::models::{self, load_pretrained, trainable_parameter_count, ARCHITECTURES};
use worker::{Head, WorkerError};

fn torchvision_fixture(architecture: &str) -> Option<(i64, BTreeMap<String, Vec<i64>>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torchvision_trunks.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let arch = json["architectures"].get(architecture)?;
    let count = arch["parameters_with_imagenet_classifier"].as_i64().expect("count");
    let trunk = serde_json::from_value(arch["trunk"].clone()).expect("trunk");
    Some((count, trunk))
}

/// What torchvision's trunk computes from `deterministic_fill`ed weights on `reference_images`.
struct ReferenceFeatures {
    channels: i64,
    stride: usize,
    every_16th: Vec<Vec<f64>>,
    sum: Vec<f64>,
    sum_of_squares: Vec<f64>,
}

fn reference_features(architecture: &str) -> ReferenceFeatures {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torchvision_trunks.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let f = &json["architectures"][architecture]["features_64px"];
    let parse = |key: &str| serde_json::from_value(f[key].clone()).expect("fixture field");
    ReferenceFeatures {
        channels: f["channels"].as_i64().expect("channels"),
        stride: f["stride"].as_u64().expect("stride") as usize,
        every_16th: serde_json::from_value(f["every_16th"].clone()).expect("features"),
        sum: parse("sum"),
        sum_of_squares: parse("sum_of_squares"),
    }
}

/// The formula `scripts/gen_model_fixtures.py` fills torchvision's variables with, computed with
/// the same libtorch ops so that both sides get the same numbers.
fn deterministic_fill(name: &str, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let wave = (Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.61 + (name.len() % 17) as f64 * 0.1).sin();
    let values = if name.ends_with("running_var") {
        wave * 0.5 + 1.0
    } else if name.ends_with("running_mean") || (shape.len() == 1 && !name.ends_with("weight")) {
        wave * 0.1
    } else if shape.len() == 1 {
        wave * 0.1 + 1.0
    } else {
        wave * (3.0 / (n / shape[0]) as f64).sqrt()
    };
    values.to_kind(Kind::Float).reshape(shape)
}

/// Two 64 px images in [0, 1], as the script makes them.
fn reference_images() -> Tensor {
    let n = 2 * 3 * 64 * 64;
    let wave = (Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.013).sin();
    (wave * 0.5 + 0.5).to_kind(Kind::Float).reshape([2, 3, 64, 64])
}

/// Fills the trunk as the script filled torchvision's, makes the linear head the identity (so
/// that the logits are the pooled features), and compares with torchvision's features: this
/// pins the wiring (strides, paddings, activations, concatenation order, residuals, squeeze-
/// excitation), which names and shapes alone do not.
fn check_computes_like_torchvision(architecture: &str) {
    let reference = reference_features(architecture);
    let vs = VarStore::new(Device::Cpu);
    let model = models::build(&vs.root(), architecture, Head::Linear, reference.channels).expect("known");
    tch::no_grad(|| {
        for (name, var) in vs.variables() {
            let value = match name.as_str() {
                "head.fc.weight" => Tensor::eye(reference.channels, (Kind::Float, Device::Cpu)),
                "head.fc.bias" => Tensor::zeros([reference.channels], (Kind::Float, Device::Cpu)),
                _ => deterministic_fill(&name, &var.size()),
            };
            var.shallow_clone().copy_(&value);
        }
    });
    // Training mode, as the script: batch statistics keep the arbitrary weights' activations sane.
    let features = tch::no_grad(|| model.forward_t(&reference_images(), true)).to_kind(Kind::Double);
    let scale = features.abs().max().double_value(&[]);
    for (sample, expected) in reference.every_16th.iter().enumerate() {
        let got =
            Vec::<f64>::try_from(features.get(sample as i64).slice(0, 0, None, reference.stride as i64))
                .expect("values");
        assert_eq!(got.len(), expected.len());
        for (channel, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-3 * scale,
                "{architecture}: sample {sample}, channel {}: {g} vs torchvision {e}",
                channel * reference.stride
            );
        }
        let sum = features.get(sample as i64).sum(Kind::Double).double_value(&[]);
        let squares = features.get(sample as i64).square().sum(Kind::Double).double_value(&[]);
        assert!(
            (sum - reference.sum[sample]).abs() <= 1e-3 * reference.sum[sample].abs(),
            "{architecture}: sum {sum} vs {}",
            reference.sum[sample]
        );
        assert!(
            (squares - reference.sum_of_squares[sample]).abs() <= 1e-3 * reference.sum_of_squares[sample],
            "{architecture}: sum of squares {squares} vs {}",
            reference.sum_of_squares[sample]
        );
    }
}

/// Every variable outside the head, with its shape.
fn trunk_variables(vs: &VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("head."))
        .map(|(n, t)| (n, t.size()))
        .collect()
}

/// Images in [0, 1], `[n, 3, side, side]`.
fn images(n: i64, side: i64) -> Tensor {
    Tensor::rand([n, 3, side, side], (Kind::Float, Device::Cpu))
}

/// One training step's forward and backward at `side` px, batch 2: the logits have the right
/// shape, every trainable variable gets a finite gradient, and the gradient is not all zero.
fn forward_backward(vs: &VarStore, model: &models::Model, side: i64, classes: i64) {
    let logits = model.forward_t(&images(2, side), true);
    assert_eq!(logits.size(), [2, classes]);
    let loss = logits.cross_entropy_for_logits(&Tensor::from_slice(&[0i64, classes - 1]));
    loss.backward();
    let mut norm = 0.0;
    for (name, var) in vs.variables() {
        if !var.requires_grad() {
            continue;
        }
        let grad = var.grad();
        assert!(grad.defined(), "{name} got no gradient: a layer the forward pass does not use");
        let finite = grad.isfinite().all().int64_value(&[]) == 1;
        assert!(finite, "{name} has a non-finite gradient");
        norm += grad.square().sum(Kind::Double).double_value(&[]);
    }
    assert!(norm > 0.0, "all gradients are zero");
}

/// Inference at the paper's other resolutions: shapes and finite logits.
fn forward_eval(model: &models::Model, sides: &[i64], classes: i64) {
    tch::no_grad(|| {
        for &side in sides {
            let logits = model.forward_t(&images(1, side), false);
            assert_eq!(logits.size(), [1, classes], "at {side} px");
            assert_eq!(logits.isfinite().all().int64_value(&[]), 1, "finite logits at {side} px");
        }
    });
}

/// Builds `architecture` with a 1000-class linear head, checks its trainable count (and, for a
/// torchvision architecture, every trunk name and shape), then runs it at 32 px (train, with
/// backward) and at 64, 96 and 128 px (eval).
fn check_architecture(architecture: &str, expected_count: i64) {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let model = models::build(&vs.root(), architecture, Head::Linear, 1000).expect("known architecture");
    assert_eq!(trainable_parameter_count(&vs), expected_count, "{architecture}: trainable parameters");
    if let Some((torchvision_count, trunk)) = torchvision_fixture(architecture) {
        assert_eq!(torchvision_count, expected_count, "the fixture agrees with the published count");
        let ours = trunk_variables(&vs);
        let missing: Vec<_> = trunk.keys().filter(|k| !ours.contains_key(*k)).take(5).collect();
        let extra: Vec<_> = ours.keys().filter(|k| !trunk.contains_key(*k)).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{architecture}: missing {missing:?}, not in torchvision {extra:?}"
        );
        assert_eq!(ours, trunk, "{architecture}: shapes differ from torchvision's");
    }
    forward_backward(&vs, &model, 32, 1000);
    forward_eval(&model, &[64, 96, 128], 1000);
}

#[test]
fn resnet50_is_torchvisions() {
    check_architecture("resnet50", 25_557_032);
}

#[test]
fn resnet18_is_torchvisions() {
    check_architecture("resnet18", 11_689_512);
}

#[test]
fn densenet121_is_torchvisions() {
    check_architecture("densenet121", 7_978_856);
}

#[test]
fn densenet201_is_torchvisions() {
    check_architecture("densenet201", 20_013_928);
}

#[test]
fn mobilenet_v2_is_torchvisions() {
    check_architecture("mobilenet_v2", 3_504_872);
}

#[test]
fn efficientnet_b2_is_torchvisions() {
    check_architecture("efficientnet_b2", 9_109_994);
}

#[test]
fn resnet18_computes_like_torchvision() {
    check_computes_like_torchvision("resnet18");
}

#[test]
fn resnet50_computes_like_torchvision() {
    check_computes_like_torchvision("resnet50");
}

#[test]
fn densenet121_computes_like_torchvision() {
    check_computes_like_torchvision("densenet121");
}

#[test]
fn densenet201_computes_like_torchvision() {
    check_computes_like_torchvision("densenet201");
}

#[test]
fn mobilenet_v2_computes_like_torchvision() {
    check_computes_like_torchvision("mobilenet_v2");
}

#[test]
fn efficientnet_b2_computes_like_torchvision() {
    check_computes_like_torchvision("efficientnet_b2");
}

/// Keras' `ResNet50V2(weights=None)` reports 25,568,360 trainable parameters (25,613,800 in all;
/// the difference, 45,440, is the batch norms' moving statistics, which are buffers here).
#[test]
fn resnet50_v2_has_keras_trainable_count() {
    check_architecture("resnet50_v2", 25_568_360);
    let vs = VarStore::new(Device::Cpu);
    let _model = models::build(&vs.root(), "resnet50_v2", Head::Linear, 1000).expect("known");
    let buffers: i64 = vs.variables().values().filter(|v| !v.requires_grad()).map(|v| v.numel() as i64).sum();
    assert_eq!(buffers, 45_440, "moving means and variances: Keras' non-trainable count");
}

#[test]
fn small_cnn_trains_at_every_resolution() {
    let vs = VarStore::new(Device::Cpu);
    let model = models::build(&vs.root(), "small_cnn", Head::Linear, 10).expect("known");
    forward_backward(&vs, &model, 32, 10);
    forward_eval(&model, &[64, 96, 128], 10);
}

#[test]
fn paper_head_at_64_px() {
    let vs = VarStore::new(Device::Cpu);
    let model = models::build(&vs.root(), "mobilenet_v2", Head::Paper, 7).expect("known");
    let head: BTreeMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with("head."))
        .map(|(n, t)| (n, t.size()))
        .collect();
    let expected: BTreeMap<String, Vec<i64>> = [
        ("head.fc1.weight", vec![512, 1280]),
        ("head.fc1.bias", vec![512]),
        ("head.fc2.weight", vec![128, 512]),
        ("head.fc2.bias", vec![128]),
        ("head.fc3.weight", vec![7, 128]),
        ("head.fc3.bias", vec![7]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(head, expected);
    forward_backward(&vs, &model, 64, 7);

    // Dropout is on in training only: eval is deterministic, training is not.
    tch::no_grad(|| {
        let x = images(2, 64);
        let eval = (model.forward_t(&x, false), model.forward_t(&x, false));
        assert!(eval.0.equal(&eval.1));
        let train = (model.forward_t(&x, true), model.forward_t(&x, true));
        assert!(!train.0.equal(&train.1), "dropout 0.5 in the paper head");
    });
}

#[test]
fn unknown_architecture_lists_the_known_ones() {
    let vs = VarStore::new(Device::Cpu);
    let error = models::build(&vs.root(), "vgg16", Head::Linear, 10).expect_err("unknown").to_string();
    assert!(error.contains("vgg16") && ARCHITECTURES.iter().all(|a| error.contains(a)), "{error}");
    let error = models::build(&vs.root(), "small_cnn", Head::Linear, 0).expect_err("no classes").to_string();
    assert!(error.contains("at least one class"), "{error}");
}

/// Trunk variables equal, name by name.
fn same_values(a: &VarStore, b: &VarStore, prefix_filter: impl Fn(&str) -> bool) -> bool {
    let b_vars = b.variables();
    a.variables()
        .iter()
        .filter(|(n, _)| prefix_filter(n))
        .all(|(n, t)| b_vars.get(n).is_some_and(|u| t.equal(u)))
}

#[test]
fn pretrained_trunk_loads_from_safetensors_and_ot() {
    let dir = tempfile::tempdir().expect("temp dir");
    tch::manual_seed(1);
    let source = VarStore::new(Device::Cpu);
    let _m = models::build(&source.root(), "resnet18", Head::Paper, 10).expect("known");
    tch::no_grad(|| {
        // Non-default running statistics, so that the buffers are seen to load too.
        for (name, var) in source.variables() {
            if name.ends_with("running_mean") {
                var.shallow_clone().copy_(&Tensor::randn_like(&var));
            }
        }
    });

    // A whole-model save (the head under `head.` is skipped) and a torchvision-style trunk with
    // its ImageNet classifier and `num_batches_tracked` counters (skipped too).
    let safetensors = dir.path().join("resnet18.safetensors");
    source.save(&safetensors).expect("save");
    let ot = dir.path().join("resnet18.ot");
    let mut entries: Vec<(String, Tensor)> =
        source.variables().into_iter().filter(|(n, _)| !n.starts_with("head.")).collect();
    entries.push(("fc.weight".into(), Tensor::zeros([1000, 512], (Kind::Float, Device::Cpu))));
    entries.push(("bn1.num_batches_tracked".into(), Tensor::from(7i64)));
    Tensor::save_multi(&entries, &ot).expect("save .ot");

    for file in [&safetensors, &ot] {
        tch::manual_seed(2);
        let target = VarStore::new(Device::Cpu);
        let _m = models::build(&target.root(), "resnet18", Head::Linear, 3).expect("known");
        let head_before: Vec<Tensor> =
            ["head.fc.weight", "head.fc.bias"].iter().map(|n| target.variables()[*n].copy()).collect();
        assert!(!same_values(&source, &target, |n| !n.starts_with("head.")), "fresh weights differ");

        load_pretrained(&target, file).expect("a matching file loads");
        assert!(same_values(&source, &target, |n| !n.starts_with("head.")), "{file:?}: trunk loaded");
        let vars = target.variables();
        assert!(
            vars["head.fc.weight"].equal(&head_before[0]) && vars["head.fc.bias"].equal(&head_before[1]),
            "head untouched"
        );
    }
}

#[test]
fn mismatched_pretrained_file_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = VarStore::new(Device::Cpu);
    let _m = models::build(&source.root(), "resnet18", Head::Linear, 10).expect("known");
    let file = dir.path().join("resnet18.safetensors");
    source.save(&file).expect("save");

    let target = VarStore::new(Device::Cpu);
    let _m = models::build(&target.root(), "resnet50", Head::Linear, 10).expect("known");
    let before = target.variables()["conv1.weight"].copy();
    let error = load_pretrained(&target, &file).expect_err("resnet18 weights do not fit resnet50");
    assert!(matches!(error, WorkerError::Pretrained { .. }), "{error:?}");
    let message = error.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains("resnet18.safetensors"), "names the file: {message}");
    // ResNet-18's basic blocks have no conv3/bn3 (missing), ResNet-50's layer1.0.conv1 is 1x1
    // where ResNet-18's is 3x3 (shape mismatch); every block of ResNet-18 exists in ResNet-50.
    assert!(message.contains("missing (layer1.0.bn3.bias"), "{message}");
    assert!(
        message
            .contains("shape mismatches (layer1.0.conv1.weight (file [64, 64, 3, 3], model [64, 64, 1, 1])"),
        "{message}"
    );
    assert!(message.contains("more"), "long lists are cut: {message}");
    assert!(target.variables()["conv1.weight"].equal(&before), "nothing loaded on error");

    // Entries the model does not have are reported as unexpected.
    let small = VarStore::new(Device::Cpu);
    let _m = models::build(&small.root(), "small_cnn", Head::Linear, 10).expect("known");
    let file = dir.path().join("small_cnn.safetensors");
    small.save(&file).expect("save");
    let target = VarStore::new(Device::Cpu);
    let _m = models::build(&target.root(), "resnet18", Head::Linear, 10).expect("known");
    let message = load_pretrained(&target, &file).expect_err("does not fit").to_string();
    assert!(message.contains("unexpected (bn2.bias, bn2.running_mean"), "{message}");

    let error = load_pretrained(&target, &dir.path().join("absent.safetensors")).expect_err("no file");
    assert!(matches!(error, WorkerError::Io { .. }), "{error:?}");
    let wrong = dir.path().join("weights.pth");
    std::fs::write(&wrong, b"not ours").expect("write");
    let message = load_pretrained(&target, &wrong).expect_err("wrong format").to_string();
    assert!(message.contains(".safetensors") && message.contains("weights.pth"), "{message}");
}
