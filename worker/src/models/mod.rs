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

use std::collections::HashMap;
use std::path::Path;

use common::trial::Head;
use common::weights_manifest::{self, is_skipped_entry, is_trunk_variable, Shapes};
use tch::nn::{self, ModuleT, VarStore};
use tch::Tensor;

use crate::error::WorkerError;

mod densenet;
pub mod dropout;
mod efficientnet;
mod layers;
mod mobilenet_v2;
mod resnet;
mod resnet_v2;
mod small_cnn;

use layers::{Classifier, ClassifierHead, Features, InputScaling};

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
    let (scaling, trunk, channels) = trunk(path, architecture)?;
    let head = ClassifierHead::new(path / HEAD_PREFIX, head, channels, classes);
    Ok(Box::new(Classifier::new(scaling, trunk, head)))
}

/// The named architecture without a head: images in [0, 1] to the trunk's feature map
/// `[N, C, h, w]`, the trunk's variables alone under `path` (comparisons with a reference
/// implementation of the trunk use it, see `examples/trunk_features.rs`).
pub fn build_features(path: &nn::Path, architecture: &str) -> Result<Model, WorkerError> {
    let (scaling, trunk, _) = trunk(path, architecture)?;
    Ok(Box::new(Features { scaling, trunk }))
}

/// A trunk with the input scaling its pretrained weights expect, and its output channels.
fn trunk(path: &nn::Path, architecture: &str) -> Result<(InputScaling, Model, i64), WorkerError> {
    let imagenet = || InputScaling::imagenet(path.device());
    Ok(match architecture {
        "densenet121" | "densenet201" => {
            let trunk = if architecture == "densenet121" {
                densenet::DenseNet::densenet121(path)
            } else {
                densenet::DenseNet::densenet201(path)
            };
            let channels = trunk.out_channels();
            (imagenet(), Box::new(trunk), channels)
        }
        "resnet18" | "resnet50" => {
            let trunk = if architecture == "resnet18" {
                resnet::ResNet::resnet18(path)
            } else {
                resnet::ResNet::resnet50(path)
            };
            let channels = trunk.out_channels();
            (imagenet(), Box::new(trunk), channels)
        }
        "resnet50_v2" => (
            InputScaling::Symmetric,
            Box::new(resnet_v2::ResNetV2::resnet50_v2(path)),
            resnet_v2::ResNetV2::OUT_CHANNELS,
        ),
        "mobilenet_v2" => (
            imagenet(),
            Box::new(mobilenet_v2::MobileNetV2::new(path)),
            mobilenet_v2::MobileNetV2::OUT_CHANNELS,
        ),
        "efficientnet_b2" => {
            let trunk = efficientnet::EfficientNet::efficientnet_b2(path);
            let channels = trunk.out_channels();
            (imagenet(), Box::new(trunk), channels)
        }
        "small_cnn" => {
            (InputScaling::Unit, Box::new(small_cnn::SmallCnn::new(path)), small_cnn::SmallCnn::OUT_CHANNELS)
        }
        other => {
            return Err(WorkerError::UnknownArchitecture {
                name: other.to_string(),
                known: ARCHITECTURES.join(", "),
            })
        }
    })
}

/// The number of trainable scalars (batch-norm running statistics are not trainable).
pub fn trainable_parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(Tensor::numel).map(|n| n as i64).sum()
}

/// Loads a trunk's weights from `path` (`.safetensors`, or `.ot` as tch's `VarStore::save` and
/// `Tensor::save_multi` write them) into `vs`, built at its root by [`build`]; the head keeps its fresh initialization.
///
/// The one loader of pretrained weights: training calls it (once per rank, and first before any
/// data is decoded). Every trunk variable (running statistics included) must be in the file with
/// its shape, and every file entry must be a trunk variable (apart from the entries
/// [`is_skipped_entry`] names); otherwise nothing is loaded and one error lists the first few
/// missing, unexpected and mismatched names with their counts
/// ([`weights_manifest::compare`], which the coordinator's header check shares).
pub fn load_pretrained(vs: &VarStore, path: &Path) -> Result<(), WorkerError> {
    let pretrained = |reason: String| WorkerError::Pretrained { path: path.to_path_buf(), reason };
    std::fs::metadata(path).map_err(|e| WorkerError::io(path, e))?;
    let entries = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            // The header alone tells a truncated download apart from a damaged file, in one line.
            weights_manifest::read_safetensors_header(path)?;
            Tensor::read_safetensors(path)
        }
        Some("ot") => Tensor::load_multi(path),
        _ => return Err(pretrained("expected a `.safetensors` or `.ot` file".to_string())),
    }
    .map_err(|e| pretrained(format!("cannot read: {}", e.to_string().lines().next().unwrap_or_default())))?;
    let file: HashMap<String, Tensor> =
        entries.into_iter().filter(|(name, _)| !is_skipped_entry(name)).collect();
    let trunk: HashMap<String, Tensor> =
        vs.variables().into_iter().filter(|(name, _)| is_trunk_variable(name)).collect();
    let shapes = |tensors: &HashMap<String, Tensor>| -> Shapes {
        tensors.iter().map(|(name, t)| (name.clone(), t.size())).collect()
    };
    weights_manifest::compare(&shapes(&trunk), &shapes(&file)).map_err(pretrained)?;

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
