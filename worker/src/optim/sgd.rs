//! Plain stochastic gradient descent: `w -= lr * g`.

use tch::nn::VarStore;
use tch::Tensor;

use super::Optimizer;

pub struct Sgd {
    parameters: Vec<Tensor>,
    learning_rate: f64,
}

impl Sgd {
    pub fn new(vs: &VarStore, learning_rate: f64) -> Self {
        Self { parameters: vs.trainable_variables(), learning_rate }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        for p in &self.parameters {
            let grad = p.grad();
            if grad.defined() {
                let _ = p.shallow_clone().g_add_(&(grad * -self.learning_rate));
            }
        }
    }

    fn zero_grad(&mut self) {
        for p in &self.parameters {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.detach_();
                let _ = grad.zero_();
            }
        }
    }

    fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = learning_rate;
    }

    fn state_tensors(&self) -> Vec<Tensor> {
        Vec::new()
    }
}
