//! A trial's relative cost, to schedule the longest first.

use common::names::NOOP;
use common::TrialSpec;

/// Relative cost of a trial, to run the longest first: model GFLOPs at 224 px × (resolution /
/// 224)² × training images (`common::sizes`) × epochs (× 2 for SAM's two passes per step). Only the order matters.
pub fn estimate_cost(spec: &TrialSpec) -> f64 {
    let gflops = match spec.architecture.as_str() {
        "densenet201" => 4.3,
        "densenet121" => 2.9,
        "resnet50" | "resnet50_v2" => 4.1,
        "efficientnet_b2" => 1.0,
        "mobilenet_v2" => 0.3,
        "small_cnn" => 0.05,
        NOOP => 0.001,
        _ => 1.0,
    };
    // Datasets of unknown size (an `image_folder`, a stand-in's) count as 1,000 images.
    let images = common::sizes::epoch_images(&spec.dataset).map_or(1_000.0, |(train, _)| train);
    let side = f64::from(spec.resolution) / 224.0;
    gflops * side * side * images * f64::from(spec.epochs) * f64::from(spec.method.passes_per_step())
}
