//! Adamax as Keras 3 writes it (`keras/src/optimizers/adamax.py`):
//!
//! ```text
//! m += (g - m) * (1 - beta_1)
//! u = max(beta_2 * u, |g|)
//! w -= lr * m / ((1 - beta_1^t) * (u + epsilon))
//! ```

use tch::Tensor;

use super::{AdamConfig, FlatParameters, FlatState, Optimizer, StepCounter};

pub struct Adamax {
    parameters: FlatParameters,
    learning_rate: f64,
    config: AdamConfig,
    step: StepCounter,
    momentums: FlatState,
    norms: FlatState,
    scratch: Vec<Tensor>,
}

impl Adamax {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: AdamConfig) -> Self {
        let parameters = FlatParameters::adopt(parameters);
        let momentums = parameters.zeros();
        let norms = parameters.zeros();
        let scratch = parameters.zeros().segments;
        Self { parameters, learning_rate, config, step: StepCounter::new(), momentums, norms, scratch }
    }
}

impl Optimizer for Adamax {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        let t = self.step.advance() as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let correction = 1.0 - beta_1.powf(t);
        for (s, segment) in self.parameters.segments().iter().enumerate() {
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
            let _ = scratch.shallow_clone().g_mul_scalar_(-correction / self.learning_rate);
            let _ = segment.values.shallow_clone().addcdiv_(&m, scratch);
        }
    }

    fn zero_grad(&mut self) {
        self.parameters.zero_grad();
    }

    fn gradients(&self) -> Vec<Tensor> {
        self.parameters.gradients()
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
            .chain(self.momentums.views.iter().map(Tensor::shallow_clone))
            .chain(self.norms.views.iter().map(Tensor::shallow_clone))
            .collect()
    }
}
