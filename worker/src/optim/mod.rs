//! Optimizers with Keras' semantics (the paper ran Keras), written over tch tensors so that their
//! state is ours to snapshot, checkpoint and restore.
//!
//! Each update follows Keras 3's `keras/src/optimizers/*.py` formula by formula (where epsilon
//! sits, how bias correction enters), with Keras' defaults; `tests/optimizers.rs` checks five
//! steps of each against `scripts/gen_optimizer_fixtures.py`, an independent implementation.
//!
//! An optimizer's file holds only its [`UpdateRule`]: its constants, its moments, its arithmetic.
//! [`FlatOptimizer`] gives every rule the same flat parameters ([`FlatParameters`]), learning
//! rate and step counter, and the [`Optimizer`] methods over them, so that `Adam` is
//! `FlatOptimizer<AdamRule>`.
//!
//! Scalars (bias corrections, Nadam's momentum schedule) are computed on the host in f64 from a
//! step counter that lives in a CPU tensor: reading it never waits for a GPU, and restoring the
//! state tensors restores the counter with the moments.

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::WorkerError;

mod adam;
mod adamax;
mod flat;
mod nadam;
mod rmsprop;
mod rule;
pub mod sam;
mod sgd;

pub use adam::{Adam, AdamRule};
pub use adamax::{Adamax, AdamaxRule};
pub use flat::{FlatParameters, FlatState, Segment};
pub use nadam::{Nadam, NadamRule};
pub use rmsprop::{RmsProp, RmsPropRule};
pub use rule::{FlatOptimizer, UpdateRule};
pub use sgd::{Sgd, SgdRule};

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
