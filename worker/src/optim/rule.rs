//! What every optimizer shares, written once: the flat parameters it adopts, its learning rate
//! and Keras' step counter, and the [`Optimizer`] methods over them. An optimizer's own file
//! holds only its [`UpdateRule`]: its constants, its moments and its arithmetic.

use tch::{Device, Kind, Tensor};

use super::{FlatParameters, Optimizer};

/// One optimizer's update over flat parameters; [`FlatOptimizer`] makes it an [`Optimizer`].
pub trait UpdateRule: Send + Sized {
    /// The rule's constants (Keras' names and defaults).
    type Config;

    /// The rule's zeroed moments and scratch buffers, laid out like `parameters`' segments.
    fn new(parameters: &FlatParameters, learning_rate: f64, config: Self::Config) -> Self;

    /// Updates every segment from its gradient at step `t` (1-based, Keras' `iterations + 1`);
    /// runs without autograd.
    fn update(&mut self, parameters: &FlatParameters, learning_rate: f64, t: i64);

    /// The rule's state tensors, in a stable order; they follow the step counter in
    /// [`Optimizer::state_tensors`].
    fn state_tensors(&self) -> Vec<Tensor>;
}

/// An [`UpdateRule`] over adopted parameters, with its learning rate and step counter.
pub struct FlatOptimizer<R> {
    parameters: FlatParameters,
    learning_rate: f64,
    step: StepCounter,
    rule: R,
}

impl<R: UpdateRule> FlatOptimizer<R> {
    /// Adopts `parameters` into flat segments (see [`FlatParameters::adopt`]) and sets up the
    /// rule's state beside them.
    pub fn new(parameters: Vec<Tensor>, learning_rate: f64, config: R::Config) -> Self {
        let parameters = FlatParameters::adopt(parameters);
        let rule = R::new(&parameters, learning_rate, config);
        Self { parameters, learning_rate, step: StepCounter::new(), rule }
    }
}

impl<R: UpdateRule> Optimizer for FlatOptimizer<R> {
    fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        let t = self.step.advance();
        self.rule.update(&self.parameters, self.learning_rate, t);
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

    /// The step counter, then the rule's state.
    fn state_tensors(&self) -> Vec<Tensor> {
        std::iter::once(self.step.tensor()).chain(self.rule.state_tensors()).collect()
    }
}

/// Keras' `iterations`: the number of steps taken, in a CPU tensor so that it is part of the
/// state tensors and reading it costs no device synchronization.
#[derive(Debug)]
struct StepCounter(Tensor);

impl StepCounter {
    fn new() -> Self {
        Self(Tensor::zeros([], (Kind::Int64, Device::Cpu)))
    }

    /// Counts one more step and returns its 1-based number (Keras' `iterations + 1`).
    fn advance(&mut self) -> i64 {
        let step = self.0.int64_value(&[]) + 1;
        let _ = self.0.fill_(step);
        step
    }

    fn tensor(&self) -> Tensor {
        self.0.shallow_clone()
    }
}
