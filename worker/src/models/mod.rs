//! The paper's architectures as feature trunks plus a classification head.
//!
//! `build` is the one entry point: the trainer never names a concrete model.

use tch::nn::{self, ModuleT};

use crate::error::WorkerError;
use crate::trial::Head;

mod small_cnn;

/// Every architecture `build` knows, in the order `--help` lists them.
pub const ARCHITECTURES: &[&str] = &["small_cnn"];

/// A classifier taking `[N, 3, H, W]` images in [0, 1] to `[N, classes]` logits.
pub type Model = Box<dyn ModuleT>;

/// Creates the named architecture's variables under `path`.
pub fn build(path: &nn::Path, architecture: &str, head: Head, classes: i64) -> Result<Model, WorkerError> {
    match architecture {
        "small_cnn" => Ok(Box::new(small_cnn::SmallCnn::new(path, head, classes))),
        other => {
            Err(WorkerError::UnknownArchitecture { name: other.to_string(), known: ARCHITECTURES.join(", ") })
        }
    }
}
