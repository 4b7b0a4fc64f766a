//! RMSprop as Keras 3 writes it (`keras/src/optimizers/rmsprop.py`, not centered):
//!
//! ```text
//! v = rho * v + (1 - rho) * g²
//! increment = lr * g / sqrt(v + epsilon)        (epsilon inside the root, unlike Adam's)
//! momentum > 0:  b = momentum * b + increment;  w -= b
//! otherwise:     w -= increment
//! ```

use tch::Tensor;

use super::{FlatParameters, FlatState, Optimizer, RmsPropConfig, StepCounter};

pub struct RmsProp {
    parameters: FlatParameters,
    learning_rate: f64,
    config: RmsPropConfig,
    step: StepCounter,
    velocities: FlatState,
    /// `None` unless `momentum > 0`, as in Keras.
    momentums: Option<FlatState>,
    scratch: Vec<Tensor>,
}

impl RmsProp {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: RmsPropConfig) -> Self {
        let parameters = FlatParameters::adopt(parameters);
        let velocities = parameters.zeros();
        let momentums = (config.momentum > 0.0).then(|| parameters.zeros());
        let scratch = parameters.zeros().segments;
        Self { parameters, learning_rate, config, step: StepCounter::new(), velocities, momentums, scratch }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step.advance();
        let RmsPropConfig { rho, momentum, epsilon } = self.config;
        for (s, segment) in self.parameters.segments().iter().enumerate() {
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
                let _ = b.g_mul_scalar_(momentum).addcdiv_(&(g * self.learning_rate), &root);
                let _ = p.g_sub_(&b);
            } else {
                // w += g / (root / -lr)
                let _ = p.addcdiv_(g, &root.g_div_scalar_(-self.learning_rate));
            }
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

    /// The step counter, every velocity, then every momentum buffer (when momentum is on).
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor())
            .chain(self.velocities.views.iter().map(Tensor::shallow_clone))
            .chain(self.momentums.iter().flat_map(|m| m.views.iter().map(Tensor::shallow_clone)))
            .collect()
    }
}
