//! Adam as Keras 3 writes it (`keras/src/optimizers/adam.py`, amsgrad off):
//!
//! ```text
//! m += (g - m) * (1 - beta_1)
//! v += (g² - v) * (1 - beta_2)
//! alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//! w -= alpha * m / (sqrt(v) + epsilon)
//! ```
//!
//! The bias correction is folded into the learning rate, so epsilon is added to the raw
//! `sqrt(v)`; PyTorch adds it to the bias-corrected one, a different update when `v` is small.

use tch::Tensor;

use super::{AdamConfig, FlatOptimizer, FlatParameters, FlatState, UpdateRule};

pub type Adam = FlatOptimizer<AdamRule>;

pub struct AdamRule {
    config: AdamConfig,
    momentums: FlatState,
    velocities: FlatState,
    /// One segment-sized buffer for `g²` and the denominator: no allocation per step.
    scratch: Vec<Tensor>,
}

impl UpdateRule for AdamRule {
    type Config = AdamConfig;

    fn new(parameters: &FlatParameters, _learning_rate: f64, config: AdamConfig) -> Self {
        let momentums = parameters.zeros();
        let velocities = parameters.zeros();
        let scratch = parameters.zeros().segments;
        Self { config, momentums, velocities, scratch }
    }

    fn update(&mut self, parameters: &FlatParameters, learning_rate: f64, t: i64) {
        let t = t as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let alpha = learning_rate * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
        for (s, segment) in parameters.segments().iter().enumerate() {
            let g = &segment.gradients;
            let mut m = self.momentums.segments[s].shallow_clone();
            let mut v = self.velocities.segments[s].shallow_clone();
            let mut scratch = self.scratch[s].shallow_clone();
            let _ = m.lerp_(g, 1.0 - beta_1);
            let _ = g.square_out(&scratch);
            let _ = v.lerp_(&scratch, 1.0 - beta_2);
            // w += m / ((sqrt(v) + eps) / -alpha)
            let _ = v.sqrt_out(&scratch);
            let _ = scratch.g_add_scalar_(epsilon).g_div_scalar_(-alpha);
            let _ = segment.values.shallow_clone().addcdiv_(&m, &scratch);
        }
    }

    /// Every momentum, then every velocity (parameter order).
    fn state_tensors(&self) -> Vec<Tensor> {
        self.momentums.handles().chain(self.velocities.handles()).collect()
    }
}
