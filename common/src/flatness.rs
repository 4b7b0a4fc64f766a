//! Flatness of a trained model (SAL_SPEC.md, "Ablation arms and flatness"): what a sweep asks
//! for (`flatness:` in the sweep file, carried in the trial) and what the worker measures after
//! the final epoch (stored in the trial's result).
//!
//! Equation 11 of the paper claims that SAL reaches flatter minima (lower `E[Tr H]`) and never
//! measures it; these are the measurements that let a sweep test it.

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// Which parameters the Hessian is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FlatnessParams {
    /// Every trainable parameter.
    #[default]
    All,
    /// Convolution and linear weights only (parameters of two or more dimensions).
    Weights,
}

/// How flatness is measured; every key has the spec's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlatnessConfig {
    /// Rademacher probes of Hutchinson's trace estimate (a fixed number, no stopping rule).
    pub probes: u32,
    /// Training images in the fixed subset, drawn with the trial's seed (all of them if fewer).
    pub images: u32,
    /// Most power iterations for the top eigenvalue.
    pub iterations: u32,
    /// Power iteration stops once the eigenvalue changes by less than this, relatively.
    pub tolerance: f64,
    /// Filter-normalized random directions (Li et al. 2018) the loss is traced along.
    pub directions: u32,
    /// Points per direction, evenly spaced in `[-1, 1]`.
    pub steps: u32,
    pub params: FlatnessParams,
}

impl Default for FlatnessConfig {
    fn default() -> Self {
        Self {
            probes: 64,
            images: 1024,
            iterations: 50,
            tolerance: 1e-4,
            directions: 2,
            steps: 21,
            params: FlatnessParams::All,
        }
    }
}

impl FlatnessConfig {
    /// Refuses settings that measure nothing; the error names the key.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.probes < 2 {
            return Err(SpecError::field(
                "flatness.probes",
                "must be at least 2 (a standard error needs two)",
            ));
        }
        if self.images == 0 {
            return Err(SpecError::field("flatness.images", "must be at least 1"));
        }
        if self.iterations == 0 {
            return Err(SpecError::field("flatness.iterations", "must be at least 1"));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(SpecError::field(
                "flatness.tolerance",
                format!("must be a finite number >= 0, got {}", self.tolerance),
            ));
        }
        if self.directions > 0 && self.steps < 2 {
            return Err(SpecError::field("flatness.steps", "must be at least 2 when directions are traced"));
        }
        Ok(())
    }
}

/// The loss along one filter-normalized random direction, at the config's evenly spaced points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionTrace {
    /// Step sizes, from -1 to 1.
    pub alphas: Vec<f64>,
    /// Mean loss over the subset at each step.
    pub losses: Vec<f64>,
}

/// Flatness measured once after the final epoch, on the fixed subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flatness {
    /// Images of the subset.
    pub images: u32,
    /// Which parameters, and how many scalars they hold.
    pub params: FlatnessParams,
    pub parameters: u64,
    /// Mean loss of the subset at the trained weights (batch norm in eval mode).
    pub loss: f64,
    /// Hutchinson's estimate of `Tr(H)`: the mean over the probes ...
    pub trace_h: f64,
    /// ... its standard error (sample standard deviation / sqrt(probes)) ...
    pub trace_h_se: f64,
    /// ... and the number of probes.
    pub probes: u32,
    /// The eigenvalue of largest magnitude by power iteration (the top one at a minimum).
    pub lambda_max: f64,
    /// `||H v - lambda v|| / |lambda|` at the last iteration.
    pub lambda_residual: f64,
    /// Power iterations run.
    pub power_iterations: u32,
    /// Norm of the subset's full gradient (the paper's figure-7 "sharpness").
    pub grad_norm: f64,
    /// Loss along random filter-normalized directions (figure 8, with a meaningful scale).
    pub directions: Vec<DirectionTrace>,
    /// Wall seconds the measurement took.
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_s_and_keys_are_checked() {
        let config: FlatnessConfig = serde_json::from_str("{}").unwrap();
        assert_eq!((config.probes, config.images, config.iterations, config.directions), (64, 1024, 50, 2));
        assert_eq!(config.params, FlatnessParams::All);
        let weights: FlatnessConfig = serde_json::from_str(r#"{"params": "weights", "probes": 8}"#).unwrap();
        assert_eq!((weights.params, weights.probes), (FlatnessParams::Weights, 8));
        assert!(serde_json::from_str::<FlatnessConfig>(r#"{"probe": 8}"#).is_err());
        let error = FlatnessConfig { probes: 1, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(error.contains("flatness.probes"), "{error}");
        assert!(FlatnessConfig::default().validate().is_ok());
    }
}
