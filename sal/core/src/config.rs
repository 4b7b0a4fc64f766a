//! Every constant of Stress-Aware Learning, with the defaults of SAL_SPEC.md (paper section 3.1).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How the stress is compared with the yield threshold before a plastic deformation.
///
/// Section 3.1 of the paper writes `S_g >= S_yield`, Algorithm 1 prints `S_g > S_yield`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum YieldComparison {
    /// `S_g >= S_yield` (section 3.1; the default).
    #[default]
    AtLeast,
    /// `S_g > S_yield` (Algorithm 1).
    Above,
}

/// The stress model and its interventions. Field names are the YAML/JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StressConfig {
    /// Stress decay on an improving epoch (`rho`).
    pub rho: f64,
    /// Stress accumulation on a stagnant epoch (`theta`).
    pub theta: f64,
    /// Upper clamp of the stress (`S_max`).
    pub s_max: f64,
    /// Noise is injected when the stress is strictly above this (`S_noise`).
    pub s_noise: f64,
    /// Plastic deformation happens when the stress reaches this (`S_yield`).
    pub s_yield: f64,
    /// `>=` or `>` against `s_yield`.
    pub yield_comparison: YieldComparison,
    /// Base noise scale (`delta` of Equation 2).
    pub delta: f64,
    /// Stress sensitivity of the noise (`lambda` of Equation 2).
    pub lambda: f64,
    /// Weight shrink factor of Equation 3.
    pub plastic_scale: f64,
    /// Standard deviation of the fresh noise of Equation 3.
    pub plastic_std: f64,
    /// How many of the last trainable layers a plastic deformation touches.
    pub plastic_layers: usize,
    /// An epoch improves only if the loss falls by more than this ...
    pub eps_loss: f64,
    /// ... and the accuracy rises by more than this.
    pub eps_acc: f64,
    /// No intervention during the first `warmup_epochs` epochs (the stress still accumulates).
    pub warmup_epochs: u32,
    /// Epochs after a deformation within which the loss must beat the yield point's loss,
    /// or the yield point is restored.
    pub recovery_patience: u32,
}

impl Default for StressConfig {
    fn default() -> Self {
        Self {
            rho: 0.0005,
            theta: 0.005,
            s_max: 1.0,
            s_noise: 0.005,
            s_yield: 0.01,
            yield_comparison: YieldComparison::AtLeast,
            delta: 1e-7,
            lambda: 1e-5,
            plastic_scale: 0.9,
            plastic_std: 0.02,
            plastic_layers: 3,
            eps_loss: 0.0,
            eps_acc: 0.0,
            warmup_epochs: 15,
            recovery_patience: 1,
        }
    }
}

impl StressConfig {
    /// Refuses values for which the algorithm is meaningless; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let finite_non_negative = [
            ("rho", self.rho),
            ("theta", self.theta),
            ("s_max", self.s_max),
            ("s_noise", self.s_noise),
            ("s_yield", self.s_yield),
            ("delta", self.delta),
            ("lambda", self.lambda),
            ("plastic_scale", self.plastic_scale),
            ("plastic_std", self.plastic_std),
            ("eps_loss", self.eps_loss),
            ("eps_acc", self.eps_acc),
        ];
        for (field, value) in finite_non_negative {
            if !value.is_finite() || value < 0.0 {
                return Err(invalid(field, format!("must be a finite number >= 0, got {value}")));
            }
        }
        if self.s_max <= 0.0 {
            return Err(invalid("s_max", format!("must be > 0, got {}", self.s_max)));
        }
        if self.s_yield <= 0.0 {
            return Err(invalid("s_yield", format!("must be > 0, got {}", self.s_yield)));
        }
        if self.s_noise >= self.s_yield {
            return Err(invalid(
                "s_noise",
                format!("must be below s_yield ({}), got {}", self.s_yield, self.s_noise),
            ));
        }
        if self.s_yield > self.s_max {
            return Err(invalid(
                "s_yield",
                format!("must not exceed s_max ({}), got {}", self.s_max, self.s_yield),
            ));
        }
        if self.theta == 0.0 {
            return Err(invalid("theta", "must be > 0, or stress never accumulates".to_string()));
        }
        if self.plastic_scale > 1.0 {
            return Err(invalid(
                "plastic_scale",
                format!("must be in [0, 1] (a deformation shrinks weights), got {}", self.plastic_scale),
            ));
        }
        if self.plastic_layers == 0 {
            return Err(invalid("plastic_layers", "must be at least 1".to_string()));
        }
        if self.recovery_patience == 0 {
            return Err(invalid("recovery_patience", "must be at least 1 epoch".to_string()));
        }
        Ok(())
    }

    /// Whether a stress value has reached the yield point under the configured comparison.
    pub fn has_yielded(&self, stress: f64) -> bool {
        match self.yield_comparison {
            YieldComparison::AtLeast => stress >= self.s_yield,
            YieldComparison::Above => stress > self.s_yield,
        }
    }

    /// Standard deviation of Equation 2's noise at this stress:
    /// `alpha * (delta + lambda * S_g)` with `alpha = min(1, S_g / S_yield)`.
    pub fn noise_sigma(&self, stress: f64) -> f64 {
        let alpha = (stress / self.s_yield).min(1.0);
        alpha * (self.delta + self.lambda * stress)
    }
}

fn invalid(field: &'static str, reason: String) -> ConfigError {
    ConfigError { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers_and_valid() {
        let c = StressConfig::default();
        assert_eq!((c.rho, c.theta, c.s_max, c.s_noise, c.s_yield), (0.0005, 0.005, 1.0, 0.005, 0.01));
        assert_eq!((c.delta, c.lambda, c.plastic_scale, c.plastic_std), (1e-7, 1e-5, 0.9, 0.02));
        assert_eq!((c.plastic_layers, c.warmup_epochs, c.recovery_patience), (3, 15, 1));
        assert_eq!(c.yield_comparison, YieldComparison::AtLeast);
        c.validate().unwrap();
    }

    #[test]
    fn nonsense_is_refused_naming_the_field() {
        let cases = [
            (StressConfig { rho: -0.1, ..Default::default() }, "`rho`"),
            (StressConfig { s_noise: 0.02, ..Default::default() }, "`s_noise`"),
            (StressConfig { s_yield: 2.0, ..Default::default() }, "`s_yield`"),
            (StressConfig { theta: 0.0, ..Default::default() }, "`theta`"),
            (StressConfig { plastic_std: f64::NAN, ..Default::default() }, "`plastic_std`"),
            (StressConfig { plastic_scale: 1.5, ..Default::default() }, "`plastic_scale`"),
            (StressConfig { plastic_layers: 0, ..Default::default() }, "`plastic_layers`"),
            (StressConfig { recovery_patience: 0, ..Default::default() }, "`recovery_patience`"),
        ];
        for (config, field) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{message} should name {field}");
        }
    }

    #[test]
    fn yaml_overrides_keep_other_defaults_and_refuse_unknown_keys() {
        let c: StressConfig = serde_yaml_ng::from_str("theta: 0.01\nyield_comparison: above\n").unwrap();
        assert_eq!(c.theta, 0.01);
        assert_eq!(c.yield_comparison, YieldComparison::Above);
        assert_eq!(c.rho, 0.0005);
        let err = serde_yaml_ng::from_str::<StressConfig>("thetta: 0.01\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `thetta`"), "{err}");
    }
}
