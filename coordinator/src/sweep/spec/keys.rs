//! The keys a sweep file may have, typed but not yet checked against each other.

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::flatness::FlatnessConfig;
use common::{Head, Method, Precision};
use sal_core::StressConfig;
use serde::Deserialize;

use crate::schedule::slots::TrialsPerDevice;

/// Every key a sweep file may have.
pub const KEYS: &[&str] = &[
    "name",
    "epochs",
    "batch_size",
    "learning_rate",
    "seeds",
    "methods",
    "architectures",
    "optimizers",
    "resolutions",
    "datasets",
    "sal",
    "head",
    "pretrained",
    "max_attempts",
    "gpus_per_trial",
    "trials_per_gpu",
    "progress_timeout",
    "precision",
    "channels_last",
    "cudnn_benchmark",
    "flatness",
    "sam_rho",
    "cpu_threads",
    "deterministic",
];

pub(super) const REQUIRED: &[&str] = &[
    "name",
    "epochs",
    "batch_size",
    "learning_rate",
    "seeds",
    "methods",
    "architectures",
    "optimizers",
    "resolutions",
    "datasets",
];

/// The sweep file's keys, typed but not yet checked against each other.
pub(super) struct RawSweep {
    pub(super) name: String,
    pub(super) epochs: u32,
    pub(super) batch_size: u32,
    pub(super) learning_rate: f64,
    pub(super) seeds: Vec<u64>,
    pub(super) methods: Vec<Method>,
    pub(super) architectures: Vec<String>,
    pub(super) optimizers: Vec<String>,
    pub(super) resolutions: Vec<u32>,
    pub(super) datasets: BTreeMap<String, DatasetEntry>,
    pub(super) sal: StressConfig,
    pub(super) head: Head,
    pub(super) pretrained: BTreeMap<String, PathBuf>,
    pub(super) max_attempts: u32,
    pub(super) gpus_per_trial: u32,
    pub(super) progress_timeout_s: u32,
    pub(super) trials_per_device: TrialsPerDevice,
    /// GPU speed options, the same for every trial of the sweep (see [`TrialSpec`]).
    pub(super) precision: Precision,
    pub(super) channels_last: bool,
    pub(super) cudnn_benchmark: bool,
    /// Flatness measured at the end of every trial (opt-in).
    pub(super) flatness: Option<FlatnessConfig>,
    /// SAM's radius, given to the `sam` trials only.
    pub(super) sam_rho: Option<f64>,
    /// Intra-op threads of each CPU rank (see [`TrialSpec::cpu_threads`]).
    pub(super) cpu_threads: Option<u32>,
    pub(super) deterministic: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatasetEntry {
    pub(super) format: String,
    #[serde(default)]
    pub(super) root: Option<PathBuf>,
    #[serde(default)]
    pub(super) options: BTreeMap<String, serde_json::Value>,
}
