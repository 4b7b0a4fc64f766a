//! The paper's architectures as feature trunks plus a classification head.
//!
//! `build` is the one entry point: the trainer never names a concrete model. Every trunk is ours
//! (tch's DenseNet ends in a fixed 7×7 pool and fails below 224 px; tch has no pre-activation
//! ResNet, MobileNetV2 or EfficientNet): each ends in a feature map that the head pools globally,
//! so any resolution from [`MIN_RESOLUTION`] up works.
//!
//! Variable names: a trunk's follow torchvision's model of the same name (`layer1.0.conv1.weight`,
//! `features.denseblock1.denselayer1.norm1.weight`, …), so that converted ImageNet weights load
//! with [`load_pretrained`]; ResNet50V2 (Keras only) follows torchvision's ResNet where it can
//! (see `resnet_v2.rs`). The head lives under `head.` (`head.fc`, or `head.fc1..3` for `paper`).
//! Build the model at the var store's root for those names to hold.
//!
//! Inputs are images in [0, 1]; each model scales them as its pretrained weights expect
//! (ImageNet mean/std for torchvision trunks, [-1, 1] for ResNet50V2), so the data pipeline is
//! the same for all.
//!
//! Initialization follows torchvision: Kaiming normal convolutions (fan out; fan in for DenseNet),
//! batch norms with scale 1 and shift 0, PyTorch's default for the head's linear layers. Batch
//! norms are tch's (running statistics as non-trainable variables) with torchvision's epsilon
//! 1e-5 and momentum 0.1, except ResNet50V2's, which are Keras' (1.001e-5, momentum 0.99).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tch::nn::{self, ModuleT, VarStore};
use tch::Tensor;

use crate::error::WorkerError;
use crate::trial::Head;

mod densenet;
pub mod dropout;
mod efficientnet;
mod layers;
mod mobilenet_v2;
mod resnet;
mod resnet_v2;
mod small_cnn;

use layers::{Classifier, ClassifierHead, InputScaling};

/// Every architecture `build` knows, in the order `--help` lists them.
pub use common::names::ARCHITECTURES;

/// The smallest input side the trunks are built and tested for: they downsample by 32, to a 1×1
/// map at 32 px. Smaller inputs fail somewhere (DenseNet's average-pooling transitions fail once
/// a map is 1×1 before the last one, at 24 px for instance); the paper's smallest is 32.
pub const MIN_RESOLUTION: i64 = 32;

/// A classifier taking `[N, 3, H, W]` images in [0, 1] to `[N, classes]` logits.
pub type Model = Box<dyn ModuleT>;

/// Where the head's variables live, below the model's path.
pub const HEAD_PREFIX: &str = "head";

/// Creates the named architecture's variables under `path`.
pub fn build(path: &nn::Path, architecture: &str, head: Head, classes: i64) -> Result<Model, WorkerError> {
    if classes < 1 {
        return Err(WorkerError::InvalidTrial(format!(
            "a classifier needs at least one class, got {classes}"
        )));
    }
    let device = path.device();
    let head_path = || path / HEAD_PREFIX;
    let model: Model = match architecture {
        "densenet121" | "densenet201" => {
            let trunk = if architecture == "densenet121" {
                densenet::DenseNet::densenet121(path)
            } else {
                densenet::DenseNet::densenet201(path)
            };
            let head = ClassifierHead::new(head_path(), head, trunk.out_channels(), classes);
            Box::new(Classifier::new(InputScaling::imagenet(device), trunk, head))
        }
        "resnet18" | "resnet50" => {
            let trunk = if architecture == "resnet18" {
                resnet::ResNet::resnet18(path)
            } else {
                resnet::ResNet::resnet50(path)
            };
            let head = ClassifierHead::new(head_path(), head, trunk.out_channels(), classes);
            Box::new(Classifier::new(InputScaling::imagenet(device), trunk, head))
        }
        "resnet50_v2" => {
            let trunk = resnet_v2::ResNetV2::resnet50_v2(path);
            let head = ClassifierHead::new(head_path(), head, resnet_v2::ResNetV2::OUT_CHANNELS, classes);
            Box::new(Classifier::new(InputScaling::Symmetric, trunk, head))
        }
        "mobilenet_v2" => {
            let trunk = mobilenet_v2::MobileNetV2::new(path);
            let head =
                ClassifierHead::new(head_path(), head, mobilenet_v2::MobileNetV2::OUT_CHANNELS, classes);
            Box::new(Classifier::new(InputScaling::imagenet(device), trunk, head))
        }
        "efficientnet_b2" => {
            let trunk = efficientnet::EfficientNet::efficientnet_b2(path);
            let head = ClassifierHead::new(head_path(), head, trunk.out_channels(), classes);
            Box::new(Classifier::new(InputScaling::imagenet(device), trunk, head))
        }
        "small_cnn" => {
            let trunk = small_cnn::SmallCnn::new(path);
            let head = ClassifierHead::new(head_path(), head, small_cnn::SmallCnn::OUT_CHANNELS, classes);
            Box::new(Classifier::new(InputScaling::Unit, trunk, head))
        }
        other => {
            return Err(WorkerError::UnknownArchitecture {
                name: other.to_string(),
                known: ARCHITECTURES.join(", "),
            })
        }
    };
    Ok(model)
}

/// The number of trainable scalars (batch-norm running statistics are not trainable).
pub fn trainable_parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(Tensor::numel).map(|n| n as i64).sum()
}

/// Entries of a pretrained file that are not the trunk's and are skipped, not reported:
/// torchvision's ImageNet classifiers (`fc.`, `classifier.`) and our own head (a checkpoint of a
/// trained model serves as a pretrained trunk for another class count), which the new head
/// replaces; and batch norms' `num_batches_tracked` counters, which tch does not keep.
fn is_skipped_entry(name: &str) -> bool {
    ["fc.", "classifier.", "head."].iter().any(|prefix| name.starts_with(prefix))
        || name.ends_with(".num_batches_tracked")
}

/// Loads a trunk's weights from `path` (`.safetensors`, or `.ot` as tch's `VarStore::save` and
/// `Tensor::save_multi` write them) into `vs`, built at its root by [`build`]; the head keeps its fresh initialization.
///
/// Every trunk variable (running statistics included) must be in the file with its shape, and
/// every file entry must be a trunk variable (apart from the skipped ones, see above); otherwise
/// nothing is loaded and one error lists the first few missing, unexpected and mismatched names
/// with their counts.
pub fn load_pretrained(vs: &mut VarStore, path: &Path) -> Result<(), WorkerError> {
    let pretrained = |reason: String| WorkerError::Pretrained { path: path.to_path_buf(), reason };
    std::fs::metadata(path).map_err(|e| WorkerError::io(path, e))?;
    let entries = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path),
        Some("ot") => Tensor::load_multi(path),
        _ => return Err(pretrained("expected a `.safetensors` or `.ot` file".to_string())),
    }
    .map_err(|e| pretrained(format!("cannot read: {e}")))?;
    let file: HashMap<String, Tensor> =
        entries.into_iter().filter(|(name, _)| !is_skipped_entry(name)).collect();

    let head = format!("{HEAD_PREFIX}.");
    let trunk: HashMap<String, Tensor> =
        vs.variables().into_iter().filter(|(name, _)| !name.starts_with(&head)).collect();

    let missing: BTreeSet<&str> =
        trunk.keys().filter(|name| !file.contains_key(*name)).map(String::as_str).collect();
    let unexpected: BTreeSet<&str> =
        file.keys().filter(|name| !trunk.contains_key(*name)).map(String::as_str).collect();
    let mismatched: BTreeSet<String> = trunk
        .iter()
        .filter_map(|(name, var)| {
            let src = file.get(name)?;
            (src.size() != var.size())
                .then(|| format!("{name} (file {:?}, model {:?})", src.size(), var.size()))
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty()) {
        let mut problems = Vec::new();
        for (what, names) in [
            ("missing", missing.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            ("unexpected", unexpected.iter().map(|s| s.to_string()).collect()),
            ("shape mismatches", mismatched.into_iter().collect()),
        ] {
            if !names.is_empty() {
                problems.push(format!("{} {what} ({})", names.len(), first_few(&names)));
            }
        }
        return Err(pretrained(format!("does not fit the model: {}", problems.join("; "))));
    }

    tch::no_grad(|| {
        for (name, var) in &trunk {
            let src = &file[name];
            var.shallow_clone()
                .f_copy_(&src.to_kind(var.kind()))
                .map_err(|e| pretrained(format!("cannot load `{name}`: {e}")))?;
        }
        Ok(())
    })
}

/// The first five names, then how many more.
fn first_few(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let shown = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        format!("{shown}, … {} more", names.len() - SHOWN)
    } else {
        shown
    }
}
