//! Stochastic gradient descent as Keras 3 writes it (`keras/src/optimizers/sgd.py`):
//!
//! ```text
//! momentum = 0:  w -= lr * g
//! otherwise:     b = momentum * b - lr * g
//!                w += b                        (nesterov: w += momentum * b - lr * g)
//! ```

use tch::Tensor;

use super::{with_gradients, zero_grads, zeros_like_each, Optimizer, SgdConfig, StepCounter};

pub struct Sgd {
    parameters: Vec<Tensor>,
    learning_rate: f64,
    config: SgdConfig,
    step: StepCounter,
    /// Empty unless `momentum > 0`, as in Keras.
    momentums: Vec<Tensor>,
}

impl Sgd {
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: SgdConfig) -> Self {
        let momentums = if config.momentum > 0.0 { zeros_like_each(&parameters) } else { Vec::new() };
        Self { parameters, learning_rate, config, step: StepCounter::new(), momentums }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step.advance();
        let SgdConfig { momentum, nesterov } = self.config;
        let lr = self.learning_rate;
        for (i, p, g) in with_gradients(&self.parameters) {
            let mut p = p.shallow_clone();
            match self.momentums.get_mut(i) {
                None => {
                    let _ = p.g_add_(&(g * -lr));
                }
                Some(b) => {
                    let step = g * -lr;
                    let _ = b.g_mul_scalar_(momentum).g_add_(&step);
                    if nesterov {
                        let _ = p.g_add_(&(&*b * momentum)).g_add_(&step);
                    } else {
                        let _ = p.g_add_(b);
                    }
                }
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

    /// The step counter, then every momentum buffer (when momentum is on).
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor()).chain(self.momentums.iter().map(Tensor::shallow_clone)).collect()
    }
}
