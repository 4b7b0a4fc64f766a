//! Optimizers with Keras' semantics (the paper ran Keras), written over tch tensors so that their
//! state is ours to snapshot, checkpoint and restore.
//!
//! Each update follows Keras 3's `keras/src/optimizers/*.py` formula by formula (where epsilon
//! sits, how bias correction enters), with Keras' defaults; `tests/optimizers.rs` checks five
//! steps of each against `scripts/gen_optimizer_fixtures.py`, an independent implementation.
//!
//! Scalars (bias corrections, Nadam's momentum schedule) are computed on the host in f64 from a
//! step counter that lives in a CPU tensor: reading it never waits for a GPU, and restoring the
//! state tensors restores the counter with the moments.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::WorkerError;

mod adam;
mod adamax;
mod flat;
mod nadam;
mod rmsprop;
pub mod sam;
mod sgd;

pub use adam::Adam;
pub use adamax::Adamax;
pub use flat::{FlatParameters, FlatState, Segment};
pub use nadam::Nadam;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

/// Every optimizer `build` knows.
pub use common::names::OPTIMIZERS;

/// Keras' default epsilon for Adam, Adamax, Nadam and RMSprop.
pub const KERAS_EPSILON: f64 = 1e-7;

/// Updates a model's trainable parameters from their gradients.
pub trait Optimizer: Send {
    /// One update from the current gradients (gradients of all ranks already averaged).
    fn step(&mut self);
    /// Clears the gradients of every trainable parameter.
    fn zero_grad(&mut self);
    /// Every parameter's gradient as flat buffers (one per kind and device, usually one): the
    /// gradient bucket to all-reduce and take the norm of, in place.
    fn gradients(&self) -> Vec<Tensor>;
    fn learning_rate(&self) -> f64;
    fn set_learning_rate(&mut self, learning_rate: f64);
    /// Shallow clones of every state tensor (moments, step counter), in a stable order:
    /// snapshots, checkpoints and restores go through these.
    fn state_tensors(&self) -> Vec<Tensor>;
}

/// Creates the named optimizer over `vs`'s trainable variables, with Keras' defaults.
pub fn build(name: &str, vs: &VarStore, learning_rate: f64) -> Result<Box<dyn Optimizer>, WorkerError> {
    let parameters = vs.trainable_variables();
    match name {
        "adam" => Ok(Box::new(Adam::new(parameters, learning_rate, AdamConfig::default()))),
        "adamax" => Ok(Box::new(Adamax::new(parameters, learning_rate, AdamConfig::default()))),
        "nadam" => Ok(Box::new(Nadam::new(parameters, learning_rate, AdamConfig::default()))),
        "rmsprop" => Ok(Box::new(RmsProp::new(parameters, learning_rate, RmsPropConfig::default()))),
        "sgd" => Ok(Box::new(Sgd::new(parameters, learning_rate, SgdConfig::default()))),
        other => Err(WorkerError::UnknownOptimizer { name: other.to_string(), known: OPTIMIZERS.join(", ") }),
    }
}

/// Adam, Adamax and Nadam's constants (Keras' names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: KERAS_EPSILON }
    }
}

/// RMSprop's constants (Keras' names and defaults; `centered` is not offered).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    pub rho: f64,
    pub momentum: f64,
    pub epsilon: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self { rho: 0.9, momentum: 0.0, epsilon: KERAS_EPSILON }
    }
}

/// SGD's constants (Keras' names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdConfig {
    pub momentum: f64,
    pub nesterov: bool,
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

/// A 0-dimensional tensor holding `value`, of `like`'s kind and on its device, refilled only
/// when the value changes: a scalar operand for in-place ops that take a tensor (`addcmul_`),
/// without a host-to-device copy per step.
#[derive(Debug)]
struct DeviceScalar {
    value: f64,
    tensor: Tensor,
}

impl DeviceScalar {
    fn new(value: f64, like: &Tensor) -> Self {
        let tensor = Tensor::full([], value, (like.kind(), like.device()));
        Self { value, tensor }
    }

    fn get(&mut self, value: f64) -> &Tensor {
        if value != self.value {
            let _ = self.tensor.fill_(value);
            self.value = value;
        }
        &self.tensor
    }
}
