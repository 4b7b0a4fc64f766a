//! `--tensorboard DIR`: a running sweep's runs, written as its epochs arrive.
//!
//! [`follow`] tails the store read-only ([`crate::store::Tail`]: the `epochs` and `results`
//! tables by rowid, about once a second, from a connection of its own; the store's thread never
//! hears of it). Each followed trial's run is a [`RunFile`], the export's: the same records in the
//! same files. A run's file stays open while its trial runs and is flushed after every look; a
//! result closes it (at most [`MAX_OPEN`] are open at once: the longest unused is closed, and its
//! next epoch goes into a new file of the run, which TensorBoard reads after the first). The
//! experiment record is written first, from the specs of the sweep's trials (all known when the
//! sweep starts), so that the HParams dashboard has its columns from the start. A coordinator
//! restarted on the same state dir follows from the beginning again: every run is written afresh
//! into a new file and the older files are removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TrialSpec;
use tokio::sync::watch;

use super::export::{check_out_dir, unix_now, write_experiment, ExportError};
use super::run_file::RunFile;
use crate::store::Tail;

/// How often the store is looked at.
pub const POLL: Duration = Duration::from_secs(1);
/// The most event files open at once.
pub const MAX_OPEN: usize = 256;

/// What `--tensorboard` wrote.
#[derive(Debug, Clone, Default)]
pub struct FollowSummary {
    pub runs: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Writes the runs of `trials` (ids of the store in `state_dir`) into `out` as the store receives
/// their epochs and results, until `stop` turns true (or its sender is dropped); then reads what
/// was committed last, flushes and closes. An error ends it (the sweep goes on without it).
pub async fn follow(
    state_dir: PathBuf,
    out: PathBuf,
    trials: HashSet<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<FollowSummary, ExportError> {
    let mut follower = blocking(&out.clone(), move || Follower::start(&state_dir, out, &trials)).await?;
    loop {
        let stopping = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => true,
            () = tokio::time::sleep(POLL) => false,
        };
        let out = follower.out.clone();
        follower = blocking(&out, move || follower.poll().map(|()| follower)).await?;
        if stopping {
            let out = follower.out.clone();
            return blocking(&out, move || follower.finish()).await;
        }
    }
}

/// [`follow`] as a task of its own, which logs how it ended: an error as soon as it happens (the
/// sweep goes on without it).
pub struct Following {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Following {
    /// Starts following `trials` of the store in `state_dir` into `out`.
    pub fn start(state_dir: PathBuf, out: PathBuf, trials: HashSet<String>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            match follow(state_dir, out.clone(), trials, stopped).await {
                Ok(wrote) => tracing::info!(
                    runs = wrote.runs,
                    files = wrote.files,
                    bytes = wrote.bytes,
                    "tensorboard: wrote {}",
                    out.display()
                ),
                Err(e) => tracing::warn!(
                    "tensorboard: stopped writing {}: {e}; the sweep goes on without it \
                     (`coordinator export tensorboard` writes it all afterwards)",
                    out.display()
                ),
            }
        });
        Self { stop, task }
    }

    /// Reads what was committed last, closes the files, and waits for that.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!("tensorboard task: {e}");
        }
    }
}

/// Runs `work` on the blocking pool (SQLite and file writes block).
async fn blocking<T: Send + 'static>(
    out: &Path,
    work: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T, ExportError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ExportError::Io { path: out.to_path_buf(), source: std::io::Error::other(e) })?
}

struct Follower {
    out: PathBuf,
    tail: Tail,
    /// The followed trials' specs.
    specs: HashMap<String, TrialSpec>,
    /// Each run written, with the poll that last wrote it (to close the longest unused).
    runs: HashMap<String, (RunFile, u64)>,
    polls: u64,
    experiment_bytes: u64,
}

impl Follower {
    fn start(state_dir: &Path, out: PathBuf, trials: &HashSet<String>) -> Result<Self, ExportError> {
        check_out_dir(&out)?;
        let tail = Tail::open(state_dir)?;
        let mut specs = tail.specs()?;
        specs.retain(|id, _| trials.contains(id));
        let experiment_bytes = write_experiment(&out, specs.values(), unix_now())?;
        Ok(Self { out, tail, specs, runs: HashMap::new(), polls: 0, experiment_bytes })
    }

    /// Writes what was committed since the last poll, and flushes.
    fn poll(&mut self) -> Result<(), ExportError> {
        self.polls += 1;
        let tailed = self.tail.poll()?;
        for epoch in &tailed.epochs {
            if let Some(run) = self.run(&epoch.trial_id)? {
                run.epoch(&epoch.report).map_err(ExportError::io(&run.dir))?;
            }
        }
        for (trial_id, result) in &tailed.results {
            if let Some(run) = self.run(trial_id)? {
                run.result(result).and_then(|()| run.close()).map_err(ExportError::io(&run.dir))?;
            }
        }
        for (run, _) in self.runs.values_mut() {
            run.flush().map_err(ExportError::io(&run.dir))?;
        }
        let mut open: Vec<(u64, &mut RunFile)> =
            self.runs.values_mut().filter(|(run, _)| run.is_open()).map(|(run, used)| (*used, run)).collect();
        if open.len() > MAX_OPEN {
            open.sort_by_key(|(used, _)| *used);
            let excess = open.len() - MAX_OPEN;
            for (_, run) in open.into_iter().take(excess) {
                run.close().map_err(ExportError::io(&run.dir))?;
            }
        }
        Ok(())
    }

    /// The run of a followed trial (made when first seen); `None` for other trials.
    fn run(&mut self, trial_id: &str) -> Result<Option<&mut RunFile>, ExportError> {
        let Some(spec) = self.specs.get(trial_id) else { return Ok(None) };
        if !self.runs.contains_key(trial_id) {
            let start = self.tail.first_start(trial_id)?.map_or_else(unix_now, |ms| ms as f64 / 1000.0);
            let run = RunFile::new(&self.out, trial_id, spec, start);
            self.runs.insert(trial_id.to_owned(), (run, self.polls));
        }
        let (run, used) = self.runs.get_mut(trial_id).expect("just made");
        *used = self.polls;
        Ok(Some(run))
    }

    /// Closes every run; says what was written.
    fn finish(mut self) -> Result<FollowSummary, ExportError> {
        let mut summary = FollowSummary { runs: self.runs.len(), files: 1, bytes: self.experiment_bytes };
        for (run, _) in self.runs.values_mut() {
            run.close().map_err(ExportError::io(&run.dir))?;
            summary.files += run.files;
            summary.bytes += run.bytes;
        }
        Ok(summary)
    }
}
