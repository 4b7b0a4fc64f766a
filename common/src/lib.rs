//! The definitions the coordinator and the worker share, in a crate that links no libtorch (the
//! coordinator depends on it alone; the worker re-exports it).
//!
//! - [`trial`]: what a trial is (sweep files, `worker train --trial FILE`, the gRPC protocol);
//! - [`outcome`]: epoch reports and final results;
//! - [`run_manifest`]: what produced a result (build, libraries, machine, threads);
//! - [`dataset`]: the dataset formats and their options, checked without reading a file;
//! - [`layout`]: each format's files on disk, split and labelled (the loader's and `sal-data check`'s);
//! - [`space`]: a full disk told apart from other I/O errors, and the room a folder has left;
//! - [`sizes`]: how many images each published dataset holds;
//! - [`names`]: the architectures and optimizers a worker knows;
//! - [`devices`]: what a trial runs on;
//! - [`error`]: why a definition was refused;
//! - [`flatness`]: how a sweep asks for flatness to be measured, and what was measured;
//! - [`weights_manifest`]: whether a pretrained weights file fits an architecture's trunk, from
//!   its header;
//! - `shutdown` and `logging` (feature `signals`): ctrl-c or SIGTERM, the one shutdown trigger of
//!   both binaries, and their one logger.

pub mod dataset;
pub mod devices;
pub mod error;
pub mod flatness;
pub mod layout;
#[cfg(feature = "signals")]
pub mod logging;
pub mod names;
pub mod outcome;
pub mod run_manifest;
#[cfg(feature = "signals")]
pub mod shutdown;
pub mod sizes;
pub mod space;
pub mod trial;
pub mod weights_manifest;

pub use devices::Devices;
pub use error::SpecError;
pub use outcome::{ClassMetrics, EpochReport, TrialResult, TrialStatus};
pub use trial::{DatasetSpec, Head, Method, Precision, TrialSpec};
