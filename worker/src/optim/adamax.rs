//! Adamax as Keras 3 writes it (`keras/src/optimizers/adamax.py`):
//!
//! ```text
//! m += (g - m) * (1 - beta_1)
//! u = max(beta_2 * u, |g|)
//! w -= lr * m / ((1 - beta_1^t) * (u + epsilon))
//! ```

use tch::Tensor;

use super::{with_gradients, zero_grads, zeros_like_each, AdamConfig, Optimizer, StepCounter};

pub struct Adamax {
    parameters: Vec<Tensor>,
    learning_rate: f64,
    config: AdamConfig,
    step: StepCounter,
    momentums: Vec<Tensor>,
    norms: Vec<Tensor>,
}

impl Adamax {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: AdamConfig) -> Self {
        let momentums = zeros_like_each(&parameters);
        let norms = zeros_like_each(&parameters);
        Self { parameters, learning_rate, config, step: StepCounter::new(), momentums, norms }
    }
}

impl Optimizer for Adamax {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        let t = self.step.advance() as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let correction = 1.0 - beta_1.powf(t);
        for (i, p, g) in with_gradients(&self.parameters) {
            let m = &mut self.momentums[i];
            let u = &mut self.norms[i];
            let _ = m.lerp_(&g, 1.0 - beta_1);
            let _ = u.g_mul_scalar_(beta_2);
            let _ = u.maximum_out(u, &g.abs());
            // w += m / ((u + eps) * (1 - beta_1^t) / -lr)
            let denominator = (&*u + epsilon).g_mul_scalar_(-correction / self.learning_rate);
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

    /// The step counter, then every momentum, then every infinity norm (parameter order).
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor())
            .chain(self.momentums.iter().map(Tensor::shallow_clone))
            .chain(self.norms.iter().map(Tensor::shallow_clone))
            .collect()
    }
}
