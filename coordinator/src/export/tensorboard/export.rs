//! `coordinator export tensorboard`: the trials of one sweep of a state dir, each as a run of a
//! TensorBoard logdir, and the sweep's experiment record at the logdir's top.
//!
//! The trials are a report's ([`crate::report::select`]: one sweep, one trial per cell and seed);
//! a trial's epochs are its result's history when it finished, else its stored reports (the
//! latest attempt's of each epoch, [`crate::report::model::history`]); a trial with neither has
//! no run. Writing into an earlier export replaces each run's event file (and the experiment's);
//! runs of trials this export does not hold are left as they are.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::TrialSpec;

use super::run::{experiment_hparams, METRICS};
use super::run_file::{event_files, RunFile};
use super::{is_event_file, EventWriter};
use crate::report::model::history;
use crate::report::select;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No sweep could be picked (`--sweep`).
    #[error("{0}")]
    Select(String),
    #[error(
        "{}: exists, is not empty and holds no TensorBoard export (no event file at its top): give a new or \
         empty folder, or an earlier export's",
        .0.display()
    )]
    NotAnExport(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ExportError {
    pub(super) fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| ExportError::Io { path: path.to_path_buf(), source }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub sweep: String,
    /// Trials of the sweep, and those with something to show (a run each).
    pub trials: usize,
    pub runs: usize,
    /// Event files written (the runs' and the experiment's) and their bytes.
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Refuses an `out` that exists, is not empty, and has no event file at its top (so is not an
/// earlier export, whose experiment record lies there): thousands of run folders are not to be
/// spread into some other folder by a typo.
pub fn check_out_dir(out: &Path) -> Result<(), ExportError> {
    let entries = match fs::read_dir(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(ExportError::io(out))?,
    };
    let mut empty = true;
    for entry in entries {
        let entry = entry.map_err(ExportError::io(out))?;
        if is_event_file(&entry.file_name()) {
            return Ok(());
        }
        empty = false;
    }
    if empty {
        Ok(())
    } else {
        Err(ExportError::NotAnExport(out.to_path_buf()))
    }
}

/// Writes the trials of `sweep` (or of the only sweep) of the store in `state_dir` into `out`.
pub fn export(state_dir: &Path, out: &Path, sweep: Option<&str>) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    check_out_dir(out)?;
    let (_, records) = store::read_records(state_dir)?;
    let sweeps = store::read_sweeps(state_dir)?;
    let selection = select::select(&sweeps, records, sweep).map_err(|e| ExportError::Select(e.0))?;
    let starts = store::first_attempt_starts(state_dir)?;
    let now = unix_now();
    fs::create_dir_all(out).map_err(ExportError::io(out))?;
    let mut summary = ExportSummary {
        sweep: selection.sweep.clone(),
        trials: selection.records.len(),
        ..Default::default()
    };
    for record in &selection.records {
        let epochs = history(record);
        if epochs.is_empty() && record.result.is_none() {
            continue;
        }
        let start = starts.get(&record.id).map_or(now, |&ms| ms as f64 / 1000.0);
        let mut run = RunFile::new(out, &record.id, &record.spec, start);
        let mut write = || -> io::Result<()> {
            for report in &epochs {
                run.epoch(report)?;
            }
            if let Some(result) = &record.result {
                run.final_metrics(result)?;
            }
            run.close()
        };
        write().map_err(|source| ExportError::Io { path: run.dir.clone(), source })?;
        summary.runs += 1;
        summary.files += run.files;
        summary.bytes += run.bytes;
    }
    summary.bytes += write_experiment(out, selection.records.iter().map(|r| &r.spec), now)?;
    summary.files += 1;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes the experiment record of these trials at the top of `out` (replacing an earlier one);
/// answers its bytes.
pub(super) fn write_experiment<'a>(
    out: &Path,
    specs: impl IntoIterator<Item = &'a TrialSpec>,
    wall_time: f64,
) -> Result<u64, ExportError> {
    let write = || -> io::Result<u64> {
        let mut writer = EventWriter::create(out, wall_time)?;
        let stale = event_files(out, writer.path())?;
        writer.hparams_experiment(&experiment_hparams(specs), &METRICS, wall_time)?;
        writer.flush()?;
        for path in stale {
            fs::remove_file(path)?;
        }
        Ok(writer.bytes())
    };
    write().map_err(ExportError::io(out))
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
