//! What a trial reports: one record per epoch while it runs, one result at the end. Both travel
//! to the coordinator as JSON and are what reports are drawn from.

use serde::{Deserialize, Serialize};

/// One epoch of one trial, over all ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: u32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// Global L2 norm of the averaged gradient, mean over the epoch's steps (the paper's
    /// sharpness proxy, figure 7).
    pub grad_norm: f64,
    /// SAL's record of the epoch; `None` for baseline trials.
    pub sal: Option<sal_core::EpochRecord>,
    pub seconds: f64,
    /// The trial's peak device memory so far, in MB (none on CPU): how the coordinator learns,
    /// from a trial's first epoch, how many such trials fit on a device (`trials_per_gpu: auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_device_mb: Option<f64>,
    /// Training images per second over the epoch's steps, all ranks together (0 in histories
    /// written before it was measured).
    #[serde(default)]
    pub train_images_per_s: f64,
    /// Validation images per second, all ranks together (0 when not measured).
    #[serde(default)]
    pub eval_images_per_s: f64,
}

/// Training seconds of a history, summed from +0.0: an empty f64 `sum()` is -0.0, which prints
/// as "-0.0".
pub fn total_seconds(history: &[EpochReport]) -> f64 {
    history.iter().fold(0.0, |total, r| total + r.seconds)
}

impl TrialResult {
    /// Plastic deformations the trial applied, from its SAL records (0 without any): what a
    /// `shrink_perturb_random` trial of the same cell and seed repeats.
    pub fn applied_deformations(&self) -> u32 {
        sal_core::applied_deformations(self.history.iter().filter_map(|e| e.sal.as_ref()))
    }

    /// Mean training throughput over the epochs that measured it, the first (warm-up) excluded
    /// when there are others; `None` for histories without the figure.
    pub fn train_images_per_s(&self) -> Option<f64> {
        let measured: Vec<f64> =
            self.history.iter().map(|r| r.train_images_per_s).filter(|&v| v > 0.0).collect();
        let steady = if measured.len() > 1 { &measured[1..] } else { &measured[..] };
        (!steady.is_empty()).then(|| steady.iter().sum::<f64>() / steady.len() as f64)
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    Completed,
    /// A NaN or infinite loss ended the trial; its history is kept.
    Diverged,
}

/// Precision, recall and F1 of one class, or an average of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// The final evaluation of a trial (the paper's tables 1-5) and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub status: TrialStatus,
    pub top1: f64,
    pub top5: f64,
    pub test_loss: f64,
    pub per_class: Vec<ClassMetrics>,
    pub macro_avg: ClassMetrics,
    pub weighted_avg: ClassMetrics,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    pub train_seconds: f64,
    pub peak_host_mb: f64,
    pub peak_device_mb: Option<f64>,
    pub inference_ms_per_batch: f64,
    pub history: Vec<EpochReport>,
    /// Flatness of the trained model, when the trial asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flatness: Option<crate::flatness::Flatness>,
    /// What produced this result (absent in results stored before manifests existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<crate::run_manifest::RunManifest>,
}
