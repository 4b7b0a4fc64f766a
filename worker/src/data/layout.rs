//! The folder layouts, as `common::layout` lists them (one set of rules for this loader and for
//! `sal-data check`), with their errors as the worker's.

use std::path::Path;

pub use common::layout::{Item, Listing};

use super::Format;
use crate::error::WorkerError;
use common::trial::DatasetSpec;

/// Lists the files of `root` in `format`'s layout.
pub fn list(format: Format, root: &Path, spec: &DatasetSpec) -> Result<Listing, WorkerError> {
    Ok(common::layout::list(format, root, spec)?)
}
