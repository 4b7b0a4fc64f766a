//! Sweep files: parse, validate and expand into trials.
//!
//! A sweep file is YAML. Every axis (`seeds`, `methods`, `architectures`, `optimizers`,
//! `resolutions`, `datasets`) expands; each cell is one [`TrialSpec`], the same definition
//! `worker train --trial FILE` reads. A trial's id is a hash of what it computes (see
//! [`crate::sweep::identity`]: never its dataset root or weights path), so rerunning a sweep finds its
//! finished cells wherever its files now lie, and a new seed or axis value adds only new cells.
//!
//! Every error names the file, the line and the key: YAML syntax errors carry their own position;
//! for errors found after parsing, [`LineIndex`] finds the line of a key path in the raw text.
//!
//! A file goes through, in turn: `document` (the YAML and its lines), `keys` (its keys as one
//! serde structure, fed one key at a time by `top_level`), `checks` (what the keys must
//! satisfy together), `expand` (a base trial multiplied over the axes) and `only` (`--only`).

mod checks;
mod document;
#[cfg(test)]
mod error_pins;
mod expand;
#[cfg(test)]
mod expansion_pins;
mod keys;
mod only;
#[cfg(test)]
mod order_pins;
#[cfg(test)]
mod tests;
mod top_level;

use std::path::{Path, PathBuf};

use common::names::{ARCHITECTURES, NOOP};
use common::{Method, TrialSpec};

use crate::schedule::slots::TrialsPerDevice;
pub use crate::sweep::cost::estimate_cost;
use document::Document;
pub use document::LineIndex;
use only::{apply_only, require_sal_partners};

/// Every architecture a trial may name: the worker's registry plus the stand-in.
pub fn known_architectures() -> Vec<&'static str> {
    let mut known: Vec<&'static str> = ARCHITECTURES.to_vec();
    known.push(NOOP);
    known
}

/// A sweep file that cannot be run, with where it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_invalid(file, *line, key, message))]
    Invalid { file: PathBuf, line: usize, key: String, message: String },
    #[error("--only {filter}: {message}")]
    Only { filter: String, message: String },
}

fn render_invalid(file: &Path, line: usize, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!("{}:{line}: {message}", file.display())
    } else {
        format!("{}:{line}: `{key}`: {message}", file.display())
    }
}

/// How to resolve and check what a sweep file points at.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Relative dataset roots and pretrained weights are taken under this folder (default: the
    /// sweep file's folder).
    pub data_root: Option<PathBuf>,
    /// Check that dataset roots and weights exist (when the data must be on this machine).
    pub check_data: bool,
    /// `key=value[,value]` slices of the grid; all must hold.
    pub only: Vec<String>,
}

/// One cell of the grid with one seed, ready to schedule.
#[derive(Debug, Clone)]
pub struct PlannedTrial {
    /// Stable: a hash of `identity`.
    pub id: String,
    /// What the trial computes (see [`crate::sweep::identity`]).
    pub identity: String,
    /// The trial as it runs here: with today's dataset root and weights path.
    pub spec: TrialSpec,
    /// Estimated relative cost (longest first).
    pub cost: f64,
    /// Devices the trial takes; 0: all of a worker's.
    pub devices: u32,
    pub max_attempts: u32,
}

/// A validated, expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub file: PathBuf,
    pub trials: Vec<PlannedTrial>,
    /// Seconds a trial may go without progress (and more when 10 of its epochs take longer)
    /// before its worker kills it: the sweep's `progress_timeout`.
    pub progress_timeout_s: u32,
    /// How many trials share one device: the sweep's `trials_per_gpu` (see [`crate::schedule::slots`]).
    pub trials_per_device: TrialsPerDevice,
}

/// `progress_timeout` when a sweep sets none: 15 minutes.
pub const DEFAULT_PROGRESS_TIMEOUT_S: u32 = 15 * 60;

/// Reads, validates and expands a sweep file.
pub fn load(file: &Path, options: &LoadOptions) -> Result<Sweep, SpecError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| SpecError::Read { file: file.into(), source })?;
    parse(file, &text, options)
}

/// Validates and expands a sweep file's text; `file` is only used in messages and to resolve
/// relative paths when no data root is given.
pub fn parse(file: &Path, text: &str, options: &LoadOptions) -> Result<Sweep, SpecError> {
    let doc = Document::new(file, text)?;
    let raw = doc.read()?;
    let data_root = match &options.data_root {
        Some(root) => root.clone(),
        None => file.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut trials = raw.expand(&doc, &data_root, options.check_data)?;
    for filter in &options.only {
        trials = apply_only(filter, trials)?;
    }
    if !options.only.is_empty() {
        require_sal_partners(&trials, &options.only)?;
    }
    Ok(Sweep {
        name: raw.name,
        file: file.to_path_buf(),
        trials,
        progress_timeout_s: raw.progress_timeout_s,
        trials_per_device: raw.trials_per_device,
    })
}

pub fn method_name(method: Method) -> &'static str {
    method.name()
}
