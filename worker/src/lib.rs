//! The worker: trains trials on this node's devices, in folders by stage of a trial's life.
//!
//! - [`run`]: running one trial, with events and checkpoints: the contract that `worker train`,
//!   the node agent and the trial process share; [`run::child_process`] is the trial process's
//!   side (`worker trial-process`), one trial per process;
//! - [`contract`]: what running a trial takes and gives (below both `run` and `train`);
//! - [`agent`]: the node agent (`worker --coordinator URL`): leases, relays, heartbeats, and runs
//!   each trial in a process of its own;
//! - [`train`]: the data-parallel training engine behind `run`;
//! - [`data`]: datasets in their distributed layouts, decoded once into a cache;
//! - [`models`]: the paper's architectures and heads;
//! - [`optim`]: optimizers with Keras' semantics;
//! - [`provenance`]: the settings that decide a trial's floating point beyond its definition
//!   (threads, determinism) and the manifest of what produced its result;
//! - [`trial`] and [`outcome`] (from `common`): what a trial is, its epoch reports and results;
//! - [`error`]: the crate's error type.

pub mod agent;
pub mod contract;
pub mod data;
pub mod error;
pub mod models;
pub mod optim;
pub mod provenance;
pub mod run;
pub mod train;

pub use common::Devices;
pub use common::{outcome, trial, weights_manifest};
pub use error::WorkerError;
pub use outcome::{EpochReport, TrialResult, TrialStatus};
pub use run::{run_trial, CancelFlag, RunOptions, TrialEvent, TrialOutcome};
pub use trial::{DatasetSpec, Head, Method, Precision, TrialSpec};
