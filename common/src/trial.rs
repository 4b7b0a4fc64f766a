//! What a trial is: the one definition shared by `worker train --trial FILE`, sweep files and the
//! gRPC protocol (which carries it as canonical JSON).

use std::path::PathBuf;

use sal::StressConfig;
use serde::{Deserialize, Serialize};

pub use crate::dataset::DatasetSpec;
use crate::error::SpecError;
pub use crate::flatness::FlatnessConfig;

/// Baseline (the optimizer alone), SAL (the optimizer plus the stress-aware interventions), or
/// one of SAL's ablation arms (SAL_SPEC.md, "Ablation arms and flatness"): every method trains
/// from the baseline's initialisation and data order for the seed, so method − baseline is a
/// paired difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Baseline,
    Sal,
    /// Equation 1 computed and logged, nothing applied: must train exactly as the baseline.
    SalStressOnly,
    /// Equation 2's noise only.
    SalNoiseOnly,
    /// Equation 3's plastic deformation (and its failure recovery) only.
    SalPlasticOnly,
    /// Sharpness-Aware Minimization (Foret et al. 2021) around the trial's optimizer: each step
    /// takes the gradient at `w + rho * g / ||g||` and steps from `w` (`sam_rho`, default 0.05).
    Sam,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Baseline,
        Method::Sal,
        Method::SalStressOnly,
        Method::SalNoiseOnly,
        Method::SalPlasticOnly,
        Method::Sam,
    ];

    /// As sweep files and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Baseline => "baseline",
            Method::Sal => "sal",
            Method::SalStressOnly => "sal_stress_only",
            Method::SalNoiseOnly => "sal_noise_only",
            Method::SalPlasticOnly => "sal_plastic_only",
            Method::Sam => "sam",
        }
    }

    /// Whether the trial keeps SAL's stress (Equation 1) and so its `sal:` settings.
    pub fn uses_stress(self) -> bool {
        matches!(self, Method::Sal | Method::SalStressOnly | Method::SalNoiseOnly | Method::SalPlasticOnly)
    }

    /// Whether it may deform (Equation 3), and so keeps a yield-point snapshot for recovery.
    pub fn may_deform(self) -> bool {
        matches!(self, Method::Sal | Method::SalPlasticOnly)
    }

    /// SAL's arm for a stress-keeping method; `None` for the baseline.
    pub fn arm(self) -> Option<sal::Arm> {
        Some(match self {
            Method::Baseline | Method::Sam => return None,
            Method::Sal => sal::Arm::Full,
            Method::SalStressOnly => sal::Arm::StressOnly,
            Method::SalNoiseOnly => sal::Arm::NoiseOnly,
            Method::SalPlasticOnly => sal::Arm::PlasticOnly,
        })
    }
}

/// The classifier put on top of the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Global average pool, Linear 512, Dropout 0.5, Linear 128, Linear classes (section 3.1).
    #[default]
    Paper,
    /// Global average pool, Linear classes.
    Linear,
}

/// The arithmetic of the forward pass. The paper trained in fp32; `bf16` runs the forward pass
/// under CUDA autocast in bfloat16 (weights, gradients and optimizer stay fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

/// One trial: a cell of the grid with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialSpec {
    pub architecture: String,
    pub optimizer: String,
    pub dataset: DatasetSpec,
    /// Square input side in pixels.
    pub resolution: u32,
    pub method: Method,
    /// Overrides of SAL's defaults; used when `method` is `sal`.
    #[serde(default)]
    pub sal: StressConfig,
    pub epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub seed: u64,
    #[serde(default)]
    pub head: Head,
    /// Converted ImageNet weights for the trunk (`.safetensors` or `.ot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// GPU speed options, off by default and then left out of the JSON, so that the ids of trials
    /// that do not use them stay what they were. `precision: bf16` needs CUDA devices.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Convolution weights and input batches in channels-last (NHWC) memory layout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channels_last: bool,
    /// cuDNN's benchmark mode: each convolution shape tries the available algorithms once and
    /// keeps the fastest (no effect on CPU ranks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cudnn_benchmark: bool,
    /// Flatness measured after the final epoch (the sweep's `flatness:`); absent: not measured,
    /// and the trial's id is what it was before this key existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flatness: Option<crate::flatness::FlatnessConfig>,
    /// libtorch intra-op threads of each CPU rank ([`DEFAULT_CPU_THREADS`] when absent): part of
    /// what a trial computes, since another count sums reductions in another order. Left out of
    /// the JSON when absent, so that the ids of trials without it stay what they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<u32>,
    /// Deterministic algorithms on GPUs (cuDNN's deterministic convolutions, no cuDNN benchmark,
    /// libtorch's deterministic algorithms, `CUBLAS_WORKSPACE_CONFIG`); README, "Reproducibility".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// SAM's ascent radius, for `method: sam` only (absent: 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sam_rho: Option<f64>,
}

/// Intra-op threads of a CPU rank when a trial does not say: one, so that trials pack onto cores
/// one per core and the default never depends on the machine.
pub const DEFAULT_CPU_THREADS: u32 = 1;

/// The most intra-op threads a CPU rank may ask for.
pub const MAX_CPU_THREADS: u32 = 1024;

impl TrialSpec {
    /// Intra-op threads of each CPU rank.
    pub fn cpu_threads(&self) -> u32 {
        self.cpu_threads.unwrap_or(DEFAULT_CPU_THREADS)
    }

    /// The canonical JSON form: the same trial always gives the same bytes (map keys sorted,
    /// fields in declaration order), so a hash of it is a stable trial id.
    pub fn canonical_json(&self) -> String {
        // Serializing plain data to a String cannot fail.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        value.to_string()
    }
}

impl TrialSpec {
    /// Refuses values no trial can run with; the error names the field. Names (architecture,
    /// optimizer, dataset format) are checked where they are resolved.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.epochs == 0 {
            return Err(SpecError::field("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(SpecError::field("batch_size", "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(SpecError::field(
                "learning_rate",
                format!("must be a finite number > 0, got {}", self.learning_rate),
            ));
        }
        if !(1..=4096).contains(&self.resolution) {
            return Err(SpecError::field(
                "resolution",
                format!("must be in 1..=4096 pixels, got {}", self.resolution),
            ));
        }
        if self.dataset.name.trim().is_empty() {
            return Err(SpecError::field("dataset.name", "must not be empty"));
        }
        crate::dataset::Format::parse(&self.dataset.format)?;
        if let Some(threads) = self.cpu_threads {
            if !(1..=MAX_CPU_THREADS).contains(&threads) {
                return Err(SpecError::field(
                    "cpu_threads",
                    format!("must be in 1..={MAX_CPU_THREADS}, got {threads}"),
                ));
            }
        }
        if self.deterministic && self.cudnn_benchmark {
            return Err(SpecError::field(
                "cudnn_benchmark",
                "cuDNN's benchmark picks algorithms by timing: it cannot be on with `deterministic: true`",
            ));
        }
        if let Some(flatness) = &self.flatness {
            flatness.validate()?;
        }
        if let Some(rho) = self.sam_rho {
            if self.method != Method::Sam {
                return Err(SpecError::field("sam_rho", "is for `method: sam` only"));
            }
            if !(rho.is_finite() && rho > 0.0) {
                return Err(SpecError::field("sam_rho", format!("must be a finite number > 0, got {rho}")));
            }
        }
        if self.method.uses_stress() {
            self.sal.validate()?;
        }
        Ok(())
    }
}
