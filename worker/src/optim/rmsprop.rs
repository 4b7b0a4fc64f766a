//! RMSprop as Keras 3 writes it (`keras/src/optimizers/rmsprop.py`, not centered):
//!
//! ```text
//! v = rho * v + (1 - rho) * g²
//! increment = lr * g / sqrt(v + epsilon)        (epsilon inside the root, unlike Adam's)
//! momentum > 0:  b = momentum * b + increment;  w -= b
//! otherwise:     w -= increment
//! ```

use tch::Tensor;

use super::{FlatOptimizer, FlatParameters, FlatState, RmsPropConfig, UpdateRule};

pub type RmsProp = FlatOptimizer<RmsPropRule>;

pub struct RmsPropRule {
    config: RmsPropConfig,
    velocities: FlatState,
    /// `None` unless `momentum > 0`, as in Keras.
    momentums: Option<FlatState>,
    scratch: Vec<Tensor>,
}

impl UpdateRule for RmsPropRule {
    type Config = RmsPropConfig;

    fn new(parameters: &FlatParameters, _learning_rate: f64, config: RmsPropConfig) -> Self {
        let velocities = parameters.zeros();
        let momentums = (config.momentum > 0.0).then(|| parameters.zeros());
        let scratch = parameters.zeros().segments;
        Self { config, velocities, momentums, scratch }
    }

    fn update(&mut self, parameters: &FlatParameters, learning_rate: f64, _t: i64) {
        let RmsPropConfig { rho, momentum, epsilon } = self.config;
        for (s, segment) in parameters.segments().iter().enumerate() {
            let g = &segment.gradients;
            let mut v = self.velocities.segments[s].shallow_clone();
            let mut root = self.scratch[s].shallow_clone();
            let _ = g.square_out(&root);
            let _ = v.lerp_(&root, 1.0 - rho);
            let _ = v.add_scalar_out(&root, epsilon);
            let _ = root.sqrt_();
            let mut p = segment.values.shallow_clone();
            if let Some(momentums) = &self.momentums {
                // b = momentum * b + lr * g / root;  w -= b
                let mut b = momentums.segments[s].shallow_clone();
                let _ = b.g_mul_scalar_(momentum).addcdiv_(&(g * learning_rate), &root);
                let _ = p.g_sub_(&b);
            } else {
                // w += g / (root / -lr)
                let _ = p.addcdiv_(g, &root.g_div_scalar_(-learning_rate));
            }
        }
    }

    /// Every velocity, then every momentum buffer (when momentum is on).
    fn state_tensors(&self) -> Vec<Tensor> {
        self.velocities.handles().chain(self.momentums.iter().flat_map(FlatState::handles)).collect()
    }
}
