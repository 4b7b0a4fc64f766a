//! A sweep file and what it becomes: parsed and validated (every error names file, line and key),
//! expanded into trials whose ids hash what they compute, and, for `--dry-run`, counted axis by
//! axis with the checkpoint storage it will need; the data it reads checked on the disk before
//! the first trial is leased.

pub mod calibration;
pub mod checkpoint_storage;
pub mod cost;
pub mod data_check;
pub mod dry_run;
pub mod identity;
pub mod spec;
