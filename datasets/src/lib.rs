//! Getting the data, without libtorch: what the `data` command of this project does.
//!
//! - [`catalogue`]: every dataset and pretrained trunk of `sweeps/paper.yaml`, with its URL, size
//!   and the checksums its publishers pin (`catalogue.yaml`);
//! - [`download`]: a resumable HTTP download (byte ranges) with a progress bar;
//! - [`verify`]: the file's digests against the catalogue and the data root's lock file
//!   ([`lock`]), where a SHA-256 nobody publishes is pinned on first download;
//! - [`extract`]: tar, tar.gz and zip members written only inside the target (no `..`, no absolute
//!   path, no link), with a cap on what an archive may inflate to;
//! - [`publish`]: the folder the loader expects, renamed into place at the very end;
//! - [`weights`]: pretrained trunks converted to this project's `.safetensors` names and checked
//!   against the strict loader's manifest;
//! - [`scan`] and [`check`]: a data root checked against a sweep before any trial runs;
//! - [`fetch`]: the whole `data fetch` of one entry; [`cli`]: the command line.
//!
//! It links no libtorch, so that the coordinator can use it as well as the worker.

pub mod catalogue;
pub mod check;
pub mod cli;
pub mod download;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod lock;
pub mod publish;
pub mod scan;
pub mod verify;
pub mod weights;

pub use error::DataError;
