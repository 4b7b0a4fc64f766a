//! What a trial is: the one definition shared by `worker train --trial FILE`, sweep files and the
//! gRPC protocol (which carries it as canonical JSON).

use std::path::PathBuf;

use sal_core::StressConfig;
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
    /// Equation 3 (and its recovery) at epochs drawn at random with the trial's seed, as many as
    /// the `sal` trial of the same cell and seed applied: separates stagnation as the trigger from
    /// a periodic shrink-and-perturb. The count arrives in [`TrialSpec::deformations`].
    ShrinkPerturbRandom,
    /// The baseline trained for twice the sweep's epochs: SAM computes two gradients per step, so
    /// this is the baseline at SAM's training cost.
    #[serde(rename = "baseline_2x")]
    Baseline2x,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Baseline,
        Method::Sal,
        Method::SalStressOnly,
        Method::SalNoiseOnly,
        Method::SalPlasticOnly,
        Method::ShrinkPerturbRandom,
        Method::Sam,
        Method::Baseline2x,
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
            Method::ShrinkPerturbRandom => "shrink_perturb_random",
            Method::Baseline2x => "baseline_2x",
        }
    }

    /// Whether the trial runs SAL's state machine and so keeps its `sal:` settings (the random
    /// shrink-and-perturb arm reads its warm-up, recovery patience and Equation 3's constants).
    pub fn uses_stress(self) -> bool {
        matches!(
            self,
            Method::Sal
                | Method::SalStressOnly
                | Method::SalNoiseOnly
                | Method::SalPlasticOnly
                | Method::ShrinkPerturbRandom
        )
    }

    /// Whether it may deform (Equation 3), and so keeps a yield-point snapshot for recovery.
    pub fn may_deform(self) -> bool {
        matches!(self, Method::Sal | Method::SalPlasticOnly | Method::ShrinkPerturbRandom)
    }

    /// Forward and backward passes per training step: SAM takes a second at the perturbed point.
    pub fn passes_per_step(self) -> u32 {
        if self == Method::Sam {
            2
        } else {
            1
        }
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
    /// For `method: shrink_perturb_random` only: how many plastic deformations the `sal` trial of
    /// the same cell and seed applied. A sweep leaves it out (the `sal` trial has not run yet) and
    /// the coordinator fills it in when it leases the trial; not part of the trial's identity,
    /// which that `sal` trial already fixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deformations: Option<u32>,
}

/// Intra-op threads of a CPU rank when a trial does not say: one, so that trials pack onto cores
/// one per core and the default never depends on the machine.
pub const DEFAULT_CPU_THREADS: u32 = 1;

/// The most intra-op threads a CPU rank may ask for.
pub const MAX_CPU_THREADS: u32 = 1024;

impl TrialSpec {
    /// SAL's arm for a method that runs its state machine; `None` for the baseline and SAM. The
    /// random shrink-and-perturb arm draws its epochs here from the trial's seed and
    /// [`TrialSpec::deformations`], which it needs.
    pub fn arm(&self) -> Result<Option<sal_core::Arm>, SpecError> {
        Ok(Some(match self.method {
            Method::Baseline | Method::Baseline2x | Method::Sam => return Ok(None),
            Method::Sal => sal_core::Arm::Full,
            Method::SalStressOnly => sal_core::Arm::StressOnly,
            Method::SalNoiseOnly => sal_core::Arm::NoiseOnly,
            Method::SalPlasticOnly => sal_core::Arm::PlasticOnly,
            Method::ShrinkPerturbRandom => {
                let Some(count) = self.deformations else {
                    return Err(SpecError::field(
                        "deformations",
                        "`method: shrink_perturb_random` needs it: the number of deformations its `sal` \
                         trial applied (a sweep's coordinator fills it in from that trial)",
                    ));
                };
                sal_core::Arm::Scheduled(sal_core::random_schedule(
                    self.seed,
                    count,
                    self.sal.warmup_epochs,
                    self.epochs,
                ))
            }
        }))
    }

    /// The (dataset, resolution) whose decoded cache the trial needs: `name@resolution`. Part of
    /// the protocol: a worker tells the coordinator the keys it holds, and the scheduler prefers
    /// giving it trials of those.
    pub fn cache_key(&self) -> String {
        format!("{}@{}", self.dataset.name, self.resolution)
    }

    /// The trial's cell without its method and seed: `architecture/optimizer/dataset@resolution`.
    pub fn cell_label(&self) -> String {
        format!("{}/{}/{}", self.architecture, self.optimizer, self.cache_key())
    }

    /// How reports and `status` name a trial: `architecture/optimizer/dataset@resolution method
    /// seed N`.
    pub fn label(&self) -> String {
        format!("{} {} seed {}", self.cell_label(), self.method.name(), self.seed)
    }

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
        if let Some(count) = self.deformations {
            if self.method != Method::ShrinkPerturbRandom {
                return Err(SpecError::field("deformations", "is for `method: shrink_perturb_random` only"));
            }
            if count > self.epochs {
                return Err(SpecError::field(
                    "deformations",
                    format!("{count} is more than the trial's {} epochs", self.epochs),
                ));
            }
        }
        if self.method.uses_stress() {
            self.sal.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: &str) -> TrialSpec {
        serde_json::from_value(serde_json::json!({
            "architecture": "small_cnn", "optimizer": "adam", "resolution": 16, "method": method,
            "epochs": 20, "batch_size": 8, "learning_rate": 0.001, "seed": 7,
            "dataset": {"name": "s", "format": "synthetic"},
        }))
        .unwrap()
    }

    #[test]
    fn the_random_shrink_perturb_arm_draws_its_epochs_from_the_seed_and_the_count() {
        let mut random = spec("shrink_perturb_random");
        let error = random.arm().unwrap_err().to_string();
        assert!(error.contains("deformations") && error.contains("sal"), "{error}");
        random.deformations = Some(3);
        random.sal.warmup_epochs = 5;
        let Some(sal_core::Arm::Scheduled(epochs)) = random.arm().unwrap() else { panic!("not scheduled") };
        assert_eq!(epochs, sal_core::random_schedule(7, 3, 5, 20));
        assert!(epochs.len() == 3 && epochs.iter().all(|e| (6..20).contains(e)), "{epochs:?}");
        assert!(random.validate().is_ok());
        random.deformations = Some(21);
        assert!(random.validate().unwrap_err().to_string().contains("more than the trial's 20 epochs"));
    }

    #[test]
    fn deformations_belong_to_the_random_arm_only_and_methods_spell_as_sweeps_do() {
        let mut sal_trial = spec("sal");
        sal_trial.deformations = Some(1);
        let error = sal_trial.validate().unwrap_err().to_string();
        assert!(error.contains("deformations") && error.contains("shrink_perturb_random` only"), "{error}");
        for method in Method::ALL {
            let json = serde_json::to_value(method).unwrap();
            assert_eq!(json.as_str(), Some(method.name()));
        }
        assert_eq!(spec("baseline_2x").arm().unwrap(), None);
    }
}
