//! The worker: trains one trial at a time on this node's devices.
//!
//! - [`data`]: datasets in their distributed layouts, decoded once into a cache;
//! - [`trial`]: what a trial is (shared with sweep files and the gRPC protocol);
//! - [`run`]: running one trial, with events and checkpoints (the CLI and the client share it);
//! - [`train`]: the data-parallel training engine behind `run`;
//! - [`outcome`]: epoch reports and final results;
//! - [`models`]: the paper's architectures and heads;
//! - [`optim`]: optimizers with Keras' semantics;
//! - [`client`]: the node agent (`worker --coordinator URL`): leases, relays, heartbeats, and runs
//!   each trial in a [`trial_process`] of its own;
//! - [`error`]: the crate's error type.

pub mod client;
pub mod data;
pub mod error;
pub mod models;
pub mod optim;
pub mod run;
pub mod train;
pub mod trial_process;

pub use common::Devices;
pub use common::{outcome, trial, weights_manifest};
pub use error::WorkerError;
pub use outcome::{EpochReport, TrialResult, TrialStatus};
pub use run::{run_trial, CancelFlag, RunOptions, TrialEvent, TrialOutcome};
pub use trial::{DatasetSpec, Head, Method, Precision, TrialSpec};
