//! The worker: trains one trial at a time on this node's devices.
//!
//! - [`trial`]: what a trial is (shared with sweep files and the gRPC protocol);
//! - [`models`]: the paper's architectures and heads;
//! - [`optim`]: optimizers with Keras' semantics;
//! - [`error`]: the crate's error type.

pub mod error;
pub mod models;
pub mod optim;
pub mod trial;

pub use error::WorkerError;
pub use trial::{DatasetSpec, Head, Method, TrialSpec};
