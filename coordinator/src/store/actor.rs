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
use super::full::sqlite_says_full;
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

/// How a batch's jobs run.
pub(super) enum Turn<'a> {
    /// Inside the batch's transaction.
    Commit(&'a mut Core),
    /// Without writing: the state dir is full ([`super::full`]); a job answers from memory, or
    /// is refused with [`StoreError::Full`].
    Full(&'a mut Core),
    /// Not at all: the transaction could not begin.
    Refused,
}

/// A job, run in its batch's turn; its answer hears the commit (none in a full turn).
pub(super) type Job = Box<dyn FnOnce(Turn<'_>) -> Answer + Send>;

/// What a job does while the store is full: its answer from memory alone.
pub(super) type WhenFull<R> = Box<dyn FnOnce(&mut Core) -> Result<R> + Send>;

/// Wraps `f` as a job whose outcome arrives on the receiver once its commit is on disk, or, if
/// `before_sync` says so of the outcome, as soon as it commits. While the store is full, the job
/// runs `when_full` instead, or is refused without it.
pub(super) fn job<R: Send + 'static>(
    f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
    when_full: Option<WhenFull<R>>,
    before_sync: impl FnOnce(&Result<R>) -> bool + Send + 'static,
) -> (Job, oneshot::Receiver<Result<R>>) {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |turn: Turn<'_>| {
        let outcome = match turn {
            // After a job of the batch found no room, SQLite has rolled the transaction back: a
            // job run now would commit on its own while its caller hears that the batch failed.
            Turn::Commit(core) if core.found_full => Some(Err(core.full_error())),
            Turn::Commit(core) => Some(core.in_savepoint(f)),
            Turn::Full(core) => Some(match when_full {
                Some(from_memory) => from_memory(core),
                None => Err(core.full_error()),
            }),
            Turn::Refused => None,
        };
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
            full: None,
            found_full: false,
            health: watch::channel(None).0,
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
            let mut after_sync = self.take_batch(batch);
            // Progress is published in order, and only once durable: the runner ends the sweep
            // on it.
            let progress = self.progress();
            let sender = self.progress.clone();
            after_sync.push(Box::new(move |_| publish(&sender, progress)));
            sync.after_sync(after_sync);
        }
    }

    /// Runs `batch`: in one transaction, or, while the state dir is full and has no room yet,
    /// from memory, each job answered at once. Returns what must wait for the disk.
    pub(super) fn take_batch(&mut self, batch: Vec<Job>) -> Vec<AfterSync> {
        if !self.stays_full() {
            return self.run_batch(batch);
        }
        for job in batch {
            (job(Turn::Full(self)).deliver)(Ok(()));
        }
        Vec::new()
    }

    /// Runs `batch` in one transaction. Answers the jobs that may hear of the commit before the
    /// disk has it, and every job when the batch failed; returns what must wait for the disk.
    pub(super) fn run_batch(&mut self, batch: Vec<Job>) -> Vec<AfterSync> {
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            // Outside a transaction each job's savepoint would commit on its own while its caller
            // hears that the commit failed: run none of them.
            tracing::error!("state store cannot begin a transaction: {e}");
            let error = self.commit_error(&e);
            for job in batch {
                (job(Turn::Refused).deliver)(Err(error.again()));
            }
            return Vec::new();
        }
        let answers: Vec<Answer> = batch.into_iter().map(|job| job(Turn::Commit(&mut *self))).collect();
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                // A commit while full: the disk has room again (unless a job just found none).
                if self.full.is_some() && !self.found_full {
                    self.room_again();
                }
                self.found_full = false;
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
                let error = self.commit_error(&e);
                let _ = self.conn.execute_batch("ROLLBACK");
                self.found_full = false;
                self.files.rolled_back();
                // Memory ran ahead of the rolled-back transaction: rebuild it from disk.
                if let Err(e) = self.reload() {
                    tracing::error!("state store reload failed: {e}");
                }
                for answer in answers {
                    (answer.deliver)(Err(error.again()));
                }
                Vec::new()
            }
        }
    }

    /// The error a failed commit (or begin) answers: the state dir is full (the store enters that
    /// state, and says so once), or the commit failed for another reason (said every time).
    fn commit_error(&mut self, error: &rusqlite::Error) -> StoreError {
        // A job found no room: SQLite then rolls the whole transaction back by itself, and the
        // commit fails for want of one.
        if self.found_full {
            return self.full_error();
        }
        if sqlite_says_full(&self.conn, error) {
            self.became_full(error.to_string());
            return self.full_error();
        }
        tracing::error!("state store commit failed: {error}");
        StoreError::Commit { message: error.to_string() }
    }

    pub(super) fn in_savepoint<R>(&mut self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
        self.conn.execute_batch("SAVEPOINT job")?;
        let mark = self.files.mark();
        let outcome = f(self).map_err(|e| match e {
            // A write that found no room: the store is full from now on.
            StoreError::Sqlite(sqlite) if sqlite_says_full(&self.conn, &sqlite) => {
                self.became_full(sqlite.to_string());
                self.full_error()
            }
            other => other,
        });
        let end = if outcome.is_ok() {
            "RELEASE job"
        } else {
            self.files.undo_to(mark);
            "ROLLBACK TO job; RELEASE job"
        };
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (it does for a full disk): nothing to end.
            return outcome;
        }
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
