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

use super::{with_gradients, zero_grads, zeros_like_each, AdamConfig, Optimizer, StepCounter};

pub struct Adam {
    parameters: Vec<Tensor>,
    learning_rate: f64,
    config: AdamConfig,
    step: StepCounter,
    momentums: Vec<Tensor>,
    velocities: Vec<Tensor>,
}

impl Adam {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: AdamConfig) -> Self {
        let momentums = zeros_like_each(&parameters);
        let velocities = zeros_like_each(&parameters);
        Self { parameters, learning_rate, config, step: StepCounter::new(), momentums, velocities }
    }
}

impl Optimizer for Adam {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        let t = self.step.advance() as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let alpha = self.learning_rate * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
        for (i, p, g) in with_gradients(&self.parameters) {
            let m = &mut self.momentums[i];
            let v = &mut self.velocities[i];
            let _ = m.lerp_(&g, 1.0 - beta_1);
            let _ = v.lerp_(&g.square(), 1.0 - beta_2);
            // w += m / ((sqrt(v) + eps) / -alpha), one temporary for the whole update.
            let denominator = v.sqrt().g_add_scalar_(epsilon).g_div_scalar_(-alpha);
            let _ = p.shallow_clone().addcdiv_(m, &denominator);
        }
    }

    fn zero_grad(&mut self) {
        zero_grads(&self.parameters);
    }

    fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = learning_rate;
    }

    /// The step counter, then every momentum, then every velocity (parameter order).
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor())
            .chain(self.momentums.iter().map(Tensor::shallow_clone))
            .chain(self.velocities.iter().map(Tensor::shallow_clone))
            .collect()
    }
}
