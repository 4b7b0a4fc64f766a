//! Stochastic gradient descent as Keras 3 writes it (`keras/src/optimizers/sgd.py`):
//!
//! ```text
//! momentum = 0:  w -= lr * g
//! otherwise:     b = momentum * b - lr * g
//!                w += b                        (nesterov: w += momentum * b - lr * g)
//! ```

use tch::Tensor;

use super::{DeviceScalar, FlatOptimizer, FlatParameters, FlatState, SgdConfig, UpdateRule};

pub type Sgd = FlatOptimizer<SgdRule>;

pub struct SgdRule {
    config: SgdConfig,
    /// `None` unless `momentum > 0`, as in Keras.
    momentums: Option<FlatState>,
    /// `-learning_rate` per segment, for `addcmul_`: `w + g * (-lr)` is Keras' `w - lr * g`
    /// bit for bit, in one pass and without a temporary.
    negative_rates: Vec<DeviceScalar>,
    /// Nesterov's update, `momentum * b - lr * g`, before it is added.
    scratch: Vec<Tensor>,
}

impl UpdateRule for SgdRule {
    type Config = SgdConfig;

    fn new(parameters: &FlatParameters, learning_rate: f64, config: SgdConfig) -> Self {
        let momentums = (config.momentum > 0.0).then(|| parameters.zeros());
        let negative_rates =
            parameters.segments().iter().map(|s| DeviceScalar::new(-learning_rate, &s.values)).collect();
        let scratch = if config.nesterov { parameters.zeros().segments } else { Vec::new() };
        Self { config, momentums, negative_rates, scratch }
    }

    fn update(&mut self, parameters: &FlatParameters, learning_rate: f64, _t: i64) {
        let SgdConfig { momentum, nesterov } = self.config;
        for (s, segment) in parameters.segments().iter().enumerate() {
            let g = &segment.gradients;
            let mut p = segment.values.shallow_clone();
            let negative_rate = self.negative_rates[s].get(-learning_rate);
            match &self.momentums {
                None => {
                    let _ = p.addcmul_(g, negative_rate);
                }
                Some(momentums) => {
                    // b = momentum * b - lr * g
                    let mut b = momentums.segments[s].shallow_clone();
                    let _ = b.g_mul_scalar_(momentum).addcmul_(g, negative_rate);
                    if nesterov {
                        // w += momentum * b - lr * g
                        let mut update = self.scratch[s].shallow_clone();
                        let _ = b.mul_scalar_out(&update, momentum);
                        let _ = update.addcmul_(g, negative_rate);
                        let _ = p.g_add_(&update);
                    } else {
                        let _ = p.g_add_(&b);
                    }
                }
            }
        }
    }

    /// Every momentum buffer (when momentum is on).
    fn state_tensors(&self) -> Vec<Tensor> {
        self.momentums.iter().flat_map(FlatState::handles).collect()
    }
}
