//! Adamax as Keras 3 writes it (`keras/src/optimizers/adamax.py`):
//!
//! ```text
//! m += (g - m) * (1 - beta_1)
//! u = max(beta_2 * u, |g|)
//! w -= lr * m / ((1 - beta_1^t) * (u + epsilon))
//! ```

use tch::Tensor;

use super::{AdamConfig, FlatOptimizer, FlatParameters, FlatState, UpdateRule};

pub type Adamax = FlatOptimizer<AdamaxRule>;

pub struct AdamaxRule {
    config: AdamConfig,
    momentums: FlatState,
    norms: FlatState,
    scratch: Vec<Tensor>,
}

impl UpdateRule for AdamaxRule {
    type Config = AdamConfig;

    fn new(parameters: &FlatParameters, _learning_rate: f64, config: AdamConfig) -> Self {
        let momentums = parameters.zeros();
        let norms = parameters.zeros();
        let scratch = parameters.zeros().segments;
        Self { config, momentums, norms, scratch }
    }

    fn update(&mut self, parameters: &FlatParameters, learning_rate: f64, t: i64) {
        let t = t as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let correction = 1.0 - beta_1.powf(t);
        for (s, segment) in parameters.segments().iter().enumerate() {
            let g = &segment.gradients;
            let mut m = self.momentums.segments[s].shallow_clone();
            let mut u = self.norms.segments[s].shallow_clone();
            let scratch = &self.scratch[s];
            let _ = m.lerp_(g, 1.0 - beta_1);
            let _ = u.g_mul_scalar_(beta_2);
            let _ = g.abs_out(scratch);
            let _ = u.maximum_out(&u, scratch);
            // w += m / ((u + eps) * (1 - beta_1^t) / -lr)
            let _ = u.add_scalar_out(scratch, epsilon);
            let _ = scratch.shallow_clone().g_mul_scalar_(-correction / learning_rate);
            let _ = segment.values.shallow_clone().addcdiv_(&m, scratch);
        }
    }

    /// Every momentum, then every infinity norm (parameter order).
    fn state_tensors(&self) -> Vec<Tensor> {
        self.momentums.handles().chain(self.norms.handles()).collect()
    }
}
