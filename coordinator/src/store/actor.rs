//! The commit actor: one thread owns the connection and runs queued jobs in one transaction (group
//! commit); answers leave once the sync thread ([`super::durable`]) has the commit on disk, or at
//! commit for a lease request alone.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::schedule::{Scheduler, TrialState};
use crate::sweep::spec::Sweep;

use super::api::{LoadSummary, Progress};
use super::checkpoint_files::PendingRemovals;
use super::durable::{AfterSync, WalSync};
use super::error::{Result, StoreError};
use super::open::open_connection;
use super::{checkpoint_files, Core};

/// Most jobs committed together.
pub(super) const MAX_BATCH: usize = 512;

pub(super) type Delivery = Box<dyn FnOnce(Result<()>) + Send>;

/// A job's answer, given the outcome of its transaction.
pub(super) struct Answer {
    deliver: Delivery,
    /// Sent once the transaction commits, without waiting for the disk.
    before_sync: bool,
}

/// A job runs on the core inside the batch's transaction, or is handed `None` when that
/// transaction could not begin and must not run at all; either way its answer hears the commit.
pub(super) type Job = Box<dyn FnOnce(Option<&mut Core>) -> Answer + Send>;

/// Wraps `f` as a job whose outcome arrives on the receiver once its commit is on disk, or, if
/// `before_sync` says so of the outcome, as soon as it commits.
pub(super) fn job<R: Send + 'static>(
    f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
    before_sync: impl FnOnce(&Result<R>) -> bool + Send + 'static,
) -> (Job, oneshot::Receiver<Result<R>>) {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |core: Option<&mut Core>| {
        let outcome = core.map(|core| core.in_savepoint(f));
        let before_sync = outcome.as_ref().is_some_and(before_sync);
        Answer {
            deliver: Box::new(move |commit: Result<()>| {
                let _ = tx.send(commit.and_then(|()| outcome.unwrap_or(Err(StoreError::Closed))));
            }),
            before_sync,
        }
    });
    (job, rx)
}

pub(super) fn publish(sender: &watch::Sender<Progress>, progress: Progress) {
    sender.send_if_modified(|current| {
        let changed = *current != progress;
        *current = progress;
        changed
    });
}

impl Core {
    /// Opens the store in `dir` and loads `sweep`; the caller runs the jobs.
    pub(super) fn open(
        dir: &Path,
        sweep: &Sweep,
        lease_ttl: Duration,
        retry_failed: bool,
    ) -> Result<(Core, LoadSummary, watch::Receiver<Progress>)> {
        let conn = open_connection(dir)?;
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let mut core = Core {
            conn,
            dir: dir.to_path_buf(),
            lease_ttl_ms: lease_ttl.as_millis() as u64,
            sched: Scheduler::default(),
            sweep_name: sweep.name.clone(),
            progress_timeout_s: sweep.progress_timeout_s,
            sweep_ids: Vec::new(),
            started: Instant::now(),
            finished_at_start: 0,
            progress: Arc::new(progress_tx),
            files: PendingRemovals::default(),
        };
        core.sched.trials_per_device = sweep.trials_per_device;
        let summary = core.load_sweep(sweep, retry_failed)?;
        core.remove_finished_checkpoints()?;
        core.finished_at_start = core.progress().finished();
        core.publish();
        Ok((core, summary, progress_rx))
    }

    pub(super) fn serve(mut self, jobs: std::sync::mpsc::Receiver<Job>, sync: WalSync) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let mut after_sync = self.run_batch(batch);
            // Progress is published in order, and only once durable: the runner ends the sweep
            // on it.
            let progress = self.progress();
            let sender = self.progress.clone();
            after_sync.push(Box::new(move |_| publish(&sender, progress)));
            sync.after_sync(after_sync);
        }
    }

    /// Runs `batch` in one transaction. Answers the jobs that may hear of the commit before the
    /// disk has it, and every job when the batch failed; returns what must wait for the disk.
    pub(super) fn run_batch(&mut self, batch: Vec<Job>) -> Vec<AfterSync> {
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            // Outside a transaction each job's savepoint would commit on its own while its caller
            // hears that the commit failed: run none of them.
            tracing::error!("state store cannot begin a transaction: {e}");
            let message = e.to_string();
            for job in batch {
                (job(None).deliver)(Err(StoreError::Commit { message: message.clone() }));
            }
            return Vec::new();
        }
        let answers: Vec<Answer> = batch.into_iter().map(|job| job(Some(&mut *self))).collect();
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                let mut after_sync: Vec<AfterSync> = Vec::new();
                for answer in answers {
                    if answer.before_sync {
                        (answer.deliver)(Ok(()));
                    } else {
                        let deliver = answer.deliver;
                        after_sync.push(Box::new(move |synced: std::result::Result<(), String>| {
                            deliver(synced.map_err(|message| StoreError::Commit { message }))
                        }));
                    }
                }
                // Files the commit stopped indexing go once the disk has it: until then a power
                // cut could bring back the rows that point at them.
                let removals = self.files.take_committed();
                if !removals.is_empty() {
                    after_sync.push(Box::new(move |synced: std::result::Result<(), String>| {
                        if synced.is_ok() {
                            removals.iter().for_each(|path| checkpoint_files::remove(path));
                        }
                    }));
                }
                after_sync
            }
            Err(e) => {
                tracing::error!("state store commit failed: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.files.rolled_back();
                // Memory ran ahead of the rolled-back transaction: rebuild it from disk.
                if let Err(e) = self.reload() {
                    tracing::error!("state store reload failed: {e}");
                }
                let message = e.to_string();
                for answer in answers {
                    (answer.deliver)(Err(StoreError::Commit { message: message.clone() }));
                }
                Vec::new()
            }
        }
    }

    pub(super) fn in_savepoint<R>(&mut self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
        self.conn.execute_batch("SAVEPOINT job")?;
        let mark = self.files.mark();
        let outcome = f(self);
        let end = if outcome.is_ok() {
            "RELEASE job"
        } else {
            self.files.undo_to(mark);
            "ROLLBACK TO job; RELEASE job"
        };
        self.conn.execute_batch(end)?;
        outcome
    }

    pub(super) fn progress(&self) -> Progress {
        let count = |state| self.sched.count(state);
        Progress {
            pending: count(TrialState::Pending),
            leased: count(TrialState::Leased),
            running: count(TrialState::Running),
            done: count(TrialState::Done),
            failed: count(TrialState::Failed),
            diverged: count(TrialState::Diverged),
        }
    }

    pub(super) fn publish(&self) {
        publish(&self.progress, self.progress());
    }
}
