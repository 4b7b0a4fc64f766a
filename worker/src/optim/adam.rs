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

use super::{AdamConfig, FlatParameters, FlatState, Optimizer, StepCounter};

pub struct Adam {
    parameters: FlatParameters,
    learning_rate: f64,
    config: AdamConfig,
    step: StepCounter,
    momentums: FlatState,
    velocities: FlatState,
    /// One segment-sized buffer for `g²` and the denominator: no allocation per step.
    scratch: Vec<Tensor>,
}

impl Adam {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: AdamConfig) -> Self {
        let parameters = FlatParameters::adopt(parameters);
        let momentums = parameters.zeros();
        let velocities = parameters.zeros();
        let scratch = parameters.zeros().segments;
        Self { parameters, learning_rate, config, step: StepCounter::new(), momentums, velocities, scratch }
    }
}

impl Optimizer for Adam {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        let t = self.step.advance() as f64;
        let AdamConfig { beta_1, beta_2, epsilon } = self.config;
        let alpha = self.learning_rate * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
        for (s, segment) in self.parameters.segments().iter().enumerate() {
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

    /// The step counter, then every momentum, then every velocity (parameter order).
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor())
            .chain(self.momentums.views.iter().map(Tensor::shallow_clone))
            .chain(self.velocities.views.iter().map(Tensor::shallow_clone))
            .collect()
    }
}
