//! Optimizers with Keras' semantics (the paper ran Keras), written over tch tensors so that their
//! state is ours to snapshot, checkpoint and restore.

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::WorkerError;

mod sgd;

/// Every optimizer `build` knows.
pub const OPTIMIZERS: &[&str] = &["sgd"];

/// Updates a model's trainable parameters from their gradients.
pub trait Optimizer: Send {
    /// One update from the current gradients (gradients of all ranks already averaged).
    fn step(&mut self);
    /// Clears the gradients of every trainable parameter.
    fn zero_grad(&mut self);
    fn learning_rate(&self) -> f64;
    fn set_learning_rate(&mut self, learning_rate: f64);
    /// Shallow clones of every state tensor (moments, step counter), in a stable order:
    /// snapshots, checkpoints and restores go through these.
    fn state_tensors(&self) -> Vec<Tensor>;
}

/// Creates the named optimizer over `vs`'s trainable variables.
pub fn build(name: &str, vs: &VarStore, learning_rate: f64) -> Result<Box<dyn Optimizer>, WorkerError> {
    match name {
        "sgd" => Ok(Box::new(sgd::Sgd::new(vs, learning_rate))),
        other => Err(WorkerError::UnknownOptimizer { name: other.to_string(), known: OPTIMIZERS.join(", ") }),
    }
}
