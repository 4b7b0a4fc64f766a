//! RMSprop as Keras 3 writes it (`keras/src/optimizers/rmsprop.py`, not centered):
//!
//! ```text
//! v = rho * v + (1 - rho) * g²
//! increment = lr * g / sqrt(v + epsilon)        (epsilon inside the root, unlike Adam's)
//! momentum > 0:  b = momentum * b + increment;  w -= b
//! otherwise:     w -= increment
//! ```

use tch::Tensor;

use super::{with_gradients, zero_grads, zeros_like_each, Optimizer, RmsPropConfig, StepCounter};

pub struct RmsProp {
    parameters: Vec<Tensor>,
    learning_rate: f64,
    config: RmsPropConfig,
    step: StepCounter,
    velocities: Vec<Tensor>,
    /// Empty unless `momentum > 0`, as in Keras.
    momentums: Vec<Tensor>,
}

impl RmsProp {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: RmsPropConfig) -> Self {
        let velocities = zeros_like_each(&parameters);
        let momentums = if config.momentum > 0.0 { zeros_like_each(&parameters) } else { Vec::new() };
        Self { parameters, learning_rate, config, step: StepCounter::new(), velocities, momentums }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step.advance();
        let RmsPropConfig { rho, momentum, epsilon } = self.config;
        for (i, p, g) in with_gradients(&self.parameters) {
            let v = &mut self.velocities[i];
            let _ = v.lerp_(&g.square(), 1.0 - rho);
            let mut root = (&*v + epsilon).sqrt_();
            if let Some(b) = self.momentums.get_mut(i) {
                // b = momentum * b + lr * g / root;  w -= b
                let _ = b.g_mul_scalar_(momentum).addcdiv_(&(g * self.learning_rate), &root);
                let _ = p.shallow_clone().g_sub_(b);
            } else {
                // w += g / (root / -lr)
                let _ = p.shallow_clone().addcdiv_(&g, &root.g_div_scalar_(-self.learning_rate));
            }
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

    /// The step counter, every velocity, then every momentum buffer (when momentum is on).
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor())
            .chain(self.velocities.iter().map(Tensor::shallow_clone))
            .chain(self.momentums.iter().map(Tensor::shallow_clone))
            .collect()
    }
}
