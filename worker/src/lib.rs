//! The worker: trains one trial at a time on this node's devices.
//!
//! - [`data`]: datasets in their distributed layouts, decoded once into a cache;
//! - [`trial`]: what a trial is (shared with sweep files and the gRPC protocol);
//! - [`run`]: running one trial, with events and checkpoints (the CLI and the client share it);
//! - [`train`]: the data-parallel training engine behind `run`;
//! - [`outcome`]: epoch reports and final results;
//! - [`models`]: the paper's architectures and heads;
//! - [`optim`]: optimizers with Keras' semantics;
//! - [`client`]: the coordinator client loop (`worker --coordinator URL`);
//! - [`error`]: the crate's error type.

pub mod client;
pub mod data;
pub mod error;
pub mod models;
pub mod optim;
pub mod outcome;
pub mod run;
pub mod train;
pub mod trial;

pub use error::WorkerError;
pub use outcome::{EpochReport, TrialResult, TrialStatus};
pub use run::{run_trial, CancelFlag, Devices, RunOptions, TrialEvent, TrialOutcome};
pub use trial::{DatasetSpec, Head, Method, TrialSpec};
