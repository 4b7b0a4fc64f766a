//! The durable store: SQLite (WAL) in the state dir, plus checkpoint files beside it.
//!
//! One thread owns the connection and the scheduler's memory; requests reach it as jobs over a
//! channel. The thread runs whatever jobs are queued in one transaction (group commit) and answers
//! them only once the commit is on disk ([`crate::store::durable`] syncs it on a thread of its own, while
//! this one goes on): a result is on disk before its worker hears that it is safe, and a burst of
//! small writes costs one commit. A lease request alone is answered as soon as its transaction
//! commits, before the disk has it (see [`Store::lease`]). Each job runs in a savepoint and writes
//! SQL before it touches memory, so a failed job leaves both as they were.
//!
//! A restart on the same state dir resumes: done trials stay done, leases that expired while the
//! coordinator was away go back to pending, live leases are honoured when their workers return,
//! and a changed sweep file adds its new cells beside every earlier result.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{EpochReport, TrialResult, TrialSpec, TrialStatus};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{oneshot, watch};

use crate::schedule::slots::{self, TrialsPerDevice};
use crate::schedule::{AfterLoss, Lease, Scheduler, TrialEntry, TrialState, WorkerEntry};
use crate::sweep::spec::Sweep;
use checkpoint_files::PendingRemovals;
use durable::{AfterSync, WalSync};

pub mod checkpoint_files;
pub mod durable;
mod in_flight;
mod migrate;
mod outside;
pub mod state_lock;
mod sweeps;

pub use in_flight::TrialProgress;
pub use sweeps::{read_sweeps, SweepInfo};

/// A fresh random id: 128 bits, hex.
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The database file inside the state dir.
pub const DB_FILE: &str = "coordinator.sqlite";
/// Checkpoint files live under this folder of the state dir, one folder per trial.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// Most jobs committed together.
const MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lease `{lease_id}` is not held (expired, handed back or given to another worker)")]
    LeaseLost { lease_id: String },
    #[error("worker `{worker_id}` is not registered")]
    UnknownWorker { worker_id: String },
    #[error("trial `{trial_id}` is unknown to this state dir")]
    UnknownTrial { trial_id: String },
    #[error("{}: {message}", dir.display())]
    Migration { dir: PathBuf, message: String },
    #[error("trial `{trial_id}` has no checkpoint of epoch {epoch}")]
    NoCheckpoint { trial_id: String, epoch: u32 },
    #[error("state store holds unreadable {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("state store: commit failed: {message}")]
    Commit { message: String },
    #[error("state store is closed")]
    Closed,
}

impl StoreError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch: lease deadlines outlive the process.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A lease named by a worker's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRef {
    pub lease_id: String,
    pub trial_id: String,
    /// The worker claiming it (the worker of the request's session): a lease is honoured for its
    /// holder only.
    pub holder: String,
}

/// A worker introducing itself.
#[derive(Debug, Clone)]
pub struct Registration {
    pub worker_id: String,
    pub hostname: String,
    pub devices: u32,
    /// Memory of each device in MB; empty: unknown.
    pub memory_mb: Vec<u64>,
}

/// A worker asking for work (and extending what it holds).
#[derive(Debug, Clone)]
pub struct LeaseAsk {
    pub worker_id: String,
    /// The leases running on each of its devices, in its order.
    pub devices: Vec<Vec<String>>,
    pub held: Vec<String>,
    pub cached: Vec<String>,
}

/// A trial handed to a worker.
#[derive(Debug, Clone)]
pub struct Grant {
    pub lease_id: String,
    pub trial_id: String,
    pub spec_json: String,
    pub devices: u32,
    /// Which of the worker's devices (positions in its list).
    pub device_indices: Vec<u32>,
    pub resume_epoch: u32,
    pub attempt: u32,
    pub progress_timeout_s: u32,
}

#[derive(Debug, Clone, Default)]
pub struct LeaseReply {
    pub grant: Option<Grant>,
    pub lost: Vec<String>,
    pub sweep_done: bool,
}

/// Counts of the running sweep's trials by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub pending: u32,
    pub leased: u32,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub diverged: u32,
}

impl Progress {
    pub fn total(&self) -> u32 {
        self.pending + self.leased + self.running + self.done + self.failed + self.diverged
    }

    pub fn finished(&self) -> u32 {
        self.done + self.failed + self.diverged
    }

    pub fn is_complete(&self) -> bool {
        self.finished() == self.total()
    }
}

#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub worker_id: String,
    pub hostname: String,
    pub devices: u32,
    pub trials: Vec<String>,
    pub idle_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub sweep_name: String,
    pub progress: Progress,
    pub workers: Vec<WorkerStatus>,
    pub eta_seconds: Option<f64>,
    pub in_flight: Vec<TrialProgress>,
    pub trials_per_device: TrialsPerDevice,
    /// Pending trials no registered worker can run, each with why.
    pub unplaceable: Vec<String>,
}

/// What loading a sweep into the store found.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    pub trials: usize,
    pub new: usize,
    pub already_finished: usize,
    pub leases_expired: usize,
}

/// The connection and the scheduler's memory, owned by the store's thread.
pub struct Core {
    conn: Connection,
    dir: PathBuf,
    lease_ttl_ms: u64,
    sched: Scheduler,
    sweep_name: String,
    progress_timeout_s: u32,
    sweep_ids: Vec<String>,
    started: Instant,
    finished_at_start: u32,
    /// Shared with the sync thread, which publishes a batch's progress once it is durable.
    progress: Arc<watch::Sender<Progress>>,
    /// Checkpoint files to remove when the open transaction commits or rolls back.
    files: PendingRemovals,
    /// Workers heard from that are not registered (this coordinator restarted since they did):
    /// the coordinator does not stop while one of them may still need to hear that the sweep is
    /// done.
    strangers: HashMap<String, Stranger>,
}

/// A worker heard from without a registration.
#[derive(Debug, Clone, Copy, Default)]
struct Stranger {
    last_seen_ms: u64,
    told_done: bool,
}

type Delivery = Box<dyn FnOnce(Result<()>) + Send>;

/// A job's answer, given the outcome of its transaction.
struct Answer {
    deliver: Delivery,
    /// Sent once the transaction commits, without waiting for the disk.
    before_sync: bool,
}

/// A job runs on the core inside the batch's transaction, or is handed `None` when that
/// transaction could not begin and must not run at all; either way its answer hears the commit.
type Job = Box<dyn FnOnce(Option<&mut Core>) -> Answer + Send>;

/// Wraps `f` as a job whose outcome arrives on the receiver once its commit is on disk, or, if
/// `before_sync` says so of the outcome, as soon as it commits.
fn job<R: Send + 'static>(
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

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Job>,
    progress: watch::Receiver<Progress>,
    dir: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sweep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    cost REAL NOT NULL,
    devices INTEGER NOT NULL,
    cache_key TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    lease_id TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    outcome TEXT,
    error TEXT,
    PRIMARY KEY (trial_id, attempt)
);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    trial_id TEXT NOT NULL UNIQUE,
    worker_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    report_json TEXT NOT NULL,
    PRIMARY KEY (trial_id, attempt, epoch)
);
CREATE TABLE IF NOT EXISTS results (
    trial_id TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    result_json TEXT NOT NULL,
    completed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
";

fn open_connection(dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut conn = Connection::open(dir.join(DB_FILE))?;
    // WAL: readers (`coordinator report`) never block the writer. synchronous=NORMAL: COMMIT does
    // not wait for the disk; the store's sync thread (`durable`) fsyncs the WAL before any answer
    // that promises durability leaves.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    migrate::upgrade(&mut conn, dir)?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) the store in `dir` and loads `sweep` into it: new cells are added,
    /// nothing is dropped. `retry_failed` gives failed trials a fresh set of attempts.
    pub fn open(
        dir: &Path,
        sweep: &Sweep,
        lease_ttl: Duration,
        retry_failed: bool,
    ) -> Result<(Store, LoadSummary)> {
        let (core, summary, progress_rx) = Core::open(dir, sweep, lease_ttl, retry_failed)?;
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let sync = WalSync::start(&dir.join(DB_FILE)).map_err(|e| StoreError::io(dir, e))?;
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || core.serve(rx, sync))
            .map_err(|e| StoreError::io(dir, e))?;
        Ok((Store { jobs, progress: progress_rx, dir: dir.to_path_buf() }, summary))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counts by state, updated after every commit.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.run(f, |_| false).await
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
        before_sync: impl FnOnce(&Result<R>) -> bool + Send + 'static,
    ) -> Result<R> {
        let (job, rx) = job(f, before_sync);
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn register(&self, registration: Registration) -> Result<()> {
        self.call(move |core| core.register(registration)).await
    }

    /// A lease is answered once its transaction commits, before the disk has it: a worker that
    /// just finished a trial starts its next one without waiting for an fsync. Nothing is lost
    /// if the machine dies before the disk has the grant: the trial is still pending on disk,
    /// the worker's reports under a lease that the restarted coordinator does not know are
    /// refused (it stops the trial), and a result it sends anyway is kept like any result of a
    /// lapsed lease. "The sweep is done" waits for the disk: a worker told so leaves for good.
    pub async fn lease(&self, ask: LeaseAsk) -> Result<LeaseReply> {
        self.run(move |core| core.lease(ask), answered_at_commit).await
    }

    pub async fn heartbeat(&self, worker_id: String, held: Vec<String>) -> Result<LeaseReply> {
        self.call(move |core| core.heartbeat(&worker_id, &held)).await
    }

    pub async fn report_epoch(&self, lease: LeaseRef, report: EpochReport, json: String) -> Result<()> {
        self.call(move |core| core.report_epoch(&lease, &report, &json)).await
    }

    /// Checks that `lease` is held, before a checkpoint upload is accepted; answers the attempt.
    pub async fn check_lease(&self, lease: LeaseRef) -> Result<u32> {
        self.call(move |core| core.held(&lease).map(|l| l.attempt)).await
    }

    /// Indexes an uploaded checkpoint file (already in place under the state dir).
    pub async fn record_checkpoint(
        &self,
        lease: LeaseRef,
        epoch: u32,
        path: PathBuf,
        bytes: u64,
    ) -> Result<()> {
        self.call(move |core| core.record_checkpoint(&lease, epoch, &path, bytes)).await
    }

    /// The latest checkpoint of the trial of a held lease: its epoch and file.
    pub async fn checkpoint(&self, lease: LeaseRef) -> Result<Option<(u32, PathBuf)>> {
        self.call(move |core| {
            core.held(&lease)?;
            core.checkpoint_of(&lease.trial_id)
        })
        .await
    }

    /// Commits a result, with the epoch reports its worker had not sent yet.
    pub async fn complete(
        &self,
        lease: LeaseRef,
        result: TrialResult,
        json: String,
        epochs: Vec<(EpochReport, String)>,
    ) -> Result<()> {
        self.call(move |core| core.complete(&lease, &result, &json, &epochs)).await
    }

    pub async fn fail(&self, lease: LeaseRef, error: String, retryable: bool) -> Result<()> {
        self.call(move |core| core.fail(&lease, &error, retryable)).await
    }

    pub async fn release(&self, lease: LeaseRef) -> Result<()> {
        self.call(move |core| core.release(&lease)).await
    }

    /// Returns the trials of expired leases to pending (or failed); answers how many.
    pub async fn expire_leases(&self) -> Result<usize> {
        self.expire_leases_at(now_ms()).await
    }

    /// As [`Store::expire_leases`], as if the clock read `now_ms`.
    pub async fn expire_leases_at(&self, now_ms: u64) -> Result<usize> {
        self.call(move |core| core.expire(now_ms)).await
    }

    /// Every worker heard from lately has been told that the sweep is done. Once the sweep is
    /// done no worker holds a lease, and a live idle worker asks for work several times a second:
    /// one silent for two seconds is gone (killed, or away and it will give up by itself).
    pub async fn workers_told_done(&self) -> Result<bool> {
        self.call(|core| {
            let recent = now_ms().saturating_sub(core.lease_ttl_ms.min(2000));
            let registered = core.sched.workers.values().map(|w| (w.last_seen_ms, w.told_done));
            let strangers = core.strangers.values().map(|s| (s.last_seen_ms, s.told_done));
            Ok(registered.chain(strangers).filter(|(seen, _)| *seen >= recent).all(|(_, told)| told))
        })
        .await
    }

    pub async fn status(&self) -> Result<Status> {
        self.call(|core| Ok(core.status())).await
    }

    /// The folder where a trial's checkpoint files go.
    pub fn checkpoint_dir(&self, trial_id: &str) -> PathBuf {
        self.dir.join(CHECKPOINT_DIR).join(trial_id)
    }
}

/// Whether a lease request's answer may leave before the disk has its commit (see
/// [`Store::lease`]).
fn answered_at_commit(outcome: &Result<LeaseReply>) -> bool {
    matches!(outcome, Ok(reply) if !reply.sweep_done)
}

fn publish(sender: &watch::Sender<Progress>, progress: Progress) {
    sender.send_if_modified(|current| {
        let changed = *current != progress;
        *current = progress;
        changed
    });
}

impl Core {
    /// Opens the store in `dir` and loads `sweep`; the caller runs the jobs.
    fn open(
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
            strangers: HashMap::new(),
        };
        core.sched.trials_per_device = sweep.trials_per_device;
        let summary = core.load_sweep(sweep, retry_failed)?;
        core.remove_finished_checkpoints()?;
        core.finished_at_start = core.progress().finished();
        core.publish();
        Ok((core, summary, progress_rx))
    }

    fn serve(mut self, jobs: std::sync::mpsc::Receiver<Job>, sync: WalSync) {
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
    fn run_batch(&mut self, batch: Vec<Job>) -> Vec<AfterSync> {
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

    fn in_savepoint<R>(&mut self, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
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

    fn progress(&self) -> Progress {
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

    fn publish(&self) {
        publish(&self.progress, self.progress());
    }

    fn set_state(&self, trial_id: &str, state: TrialState) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE trials SET state = ?2, updated_ms = ?3 WHERE id = ?1")?
            .execute(params![trial_id, state.as_str(), now_ms()])?;
        Ok(())
    }

    fn load_sweep(&mut self, sweep: &Sweep, retry_failed: bool) -> Result<LoadSummary> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO sweep (id, name, file, updated_ms) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET name = ?1, file = ?2, updated_ms = ?3",
            params![sweep.name, sweep.file.display().to_string(), now],
        )?;
        sweeps::record(&tx, sweep, now)?;
        let mut summary = LoadSummary { trials: sweep.trials.len(), ..Default::default() };
        for trial in &sweep.trials {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO trials (id, spec_json, identity_json, state, cost, devices, cache_key, max_attempts, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    trial.id,
                    trial.spec.canonical_json(),
                    trial.identity,
                    trial.cost,
                    trial.devices,
                    trial.cache_key(),
                    trial.max_attempts,
                    now
                ],
            )?;
            if inserted == 1 {
                summary.new += 1;
            } else {
                // The sweep file may have changed how a cell runs and where its files lie (the
                // spec a worker gets), never what it is.
                tx.execute(
                    "UPDATE trials SET spec_json = ?2, cost = ?3, devices = ?4, max_attempts = ?5 WHERE id = ?1",
                    params![trial.id, trial.spec.canonical_json(), trial.cost, trial.devices, trial.max_attempts],
                )?;
            }
            if retry_failed {
                tx.execute(
                    "UPDATE trials SET state = 'pending', failures = 0, updated_ms = ?2 WHERE id = ?1 AND state = 'failed'",
                    params![trial.id, now],
                )?;
            }
        }
        let in_sweep: HashSet<&str> = sweep.trials.iter().map(|t| t.id.as_str()).collect();
        // Leases that expired while the coordinator was away, or that belong to cells this run
        // does not schedule, go back to pending. That is the coordinator's absence, not the
        // trial's failure: no attempt is counted.
        let stale: Vec<(String, String, u32)> = {
            let mut statement = tx.prepare("SELECT id, trial_id, attempt, deadline_ms FROM leases")?;
            let rows = statement.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, u64>(3)?))
            })?;
            let mut stale = Vec::new();
            for row in rows {
                let (id, trial_id, attempt, deadline) = row?;
                if deadline < now || !in_sweep.contains(trial_id.as_str()) {
                    stale.push((id, trial_id, attempt));
                }
            }
            stale
        };
        for (lease_id, trial_id, attempt) in &stale {
            tx.execute("DELETE FROM leases WHERE id = ?1", params![lease_id])?;
            tx.execute(
                "UPDATE trials SET state = 'pending', updated_ms = ?2 WHERE id = ?1 AND state IN ('leased', 'running')",
                params![trial_id, now],
            )?;
            tx.execute(
                "UPDATE attempts SET ended_ms = ?3, outcome = 'expired' WHERE trial_id = ?1 AND attempt = ?2",
                params![trial_id, attempt, now],
            )?;
        }
        summary.leases_expired = stale.len();
        // A leased or running trial without a lease cannot make progress.
        tx.execute(
            "UPDATE trials SET state = 'pending' WHERE state IN ('leased', 'running')
             AND id NOT IN (SELECT trial_id FROM leases)",
            [],
        )?;
        tx.commit()?;
        self.sweep_ids = sweep.trials.iter().map(|t| t.id.clone()).collect();
        self.reload()?;
        summary.already_finished = self.sched.trials.values().filter(|t| t.state.is_terminal()).count();
        Ok(summary)
    }

    /// Rebuilds the scheduler's trials and leases from SQLite; workers stay.
    fn reload(&mut self) -> Result<()> {
        let wanted: HashSet<&str> = self.sweep_ids.iter().map(String::as_str).collect();
        let mut trials = HashMap::new();
        {
            let mut statement = self.conn.prepare(
                "SELECT id, state, cost, devices, cache_key, attempts, failures, max_attempts, last_error,
                 json_extract(spec_json, '$.architecture'), json_extract(spec_json, '$.resolution'),
                 json_extract(spec_json, '$.batch_size') FROM trials",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                if !wanted.contains(id.as_str()) {
                    continue;
                }
                let state: String = row.get(1)?;
                let state = state
                    .parse::<TrialState>()
                    .map_err(|reason| StoreError::Corrupt { what: format!("state of trial {id}"), reason })?;
                trials.insert(
                    id.clone(),
                    TrialEntry {
                        id,
                        state,
                        cost: row.get(2)?,
                        devices: row.get(3)?,
                        cache_key: row.get(4)?,
                        profile: slots::profile_key(
                            &row.get::<_, Option<String>>(9)?.unwrap_or_default(),
                            row.get::<_, Option<u32>>(10)?.unwrap_or_default(),
                            row.get::<_, Option<u32>>(11)?.unwrap_or_default(),
                        ),
                        attempts: row.get(5)?,
                        failures: row.get(6)?,
                        max_attempts: row.get(7)?,
                        last_error: row.get(8)?,
                        lease: None,
                    },
                );
            }
        }
        let mut leases = HashMap::new();
        {
            let mut statement = self
                .conn
                .prepare("SELECT id, trial_id, worker_id, attempt, devices, deadline_ms FROM leases")?;
            let rows = statement.query_map([], |r| {
                Ok(Lease {
                    id: r.get(0)?,
                    trial_id: r.get(1)?,
                    worker_id: r.get(2)?,
                    attempt: r.get(3)?,
                    devices: r.get(4)?,
                    deadline_ms: r.get(5)?,
                })
            })?;
            for lease in rows {
                let lease = lease?;
                if let Some(trial) = trials.get_mut(&lease.trial_id) {
                    trial.lease = Some(lease.id.clone());
                    leases.insert(lease.id.clone(), lease);
                }
            }
        }
        self.sched.set_trials(trials);
        self.sched.leases = leases;
        self.sched.memory = self.measured_memory()?;
        Ok(())
    }

    /// Every peak device memory the store holds (epoch reports' running peaks and results), by
    /// trial and profile: what `trials_per_gpu: auto` packs devices by.
    fn measured_memory(&self) -> Result<slots::MemoryBook> {
        let mut book = slots::MemoryBook::default();
        let mut statement = self.conn.prepare(
            "SELECT t.id, json_extract(t.spec_json, '$.architecture'), json_extract(t.spec_json, '$.resolution'),
                    json_extract(t.spec_json, '$.batch_size'), m.peak
             FROM trials t JOIN (
                 SELECT trial_id, json_extract(report_json, '$.peak_device_mb') AS peak FROM epochs
                 UNION ALL
                 SELECT trial_id, json_extract(result_json, '$.peak_device_mb') AS peak FROM results
             ) m ON m.trial_id = t.id
             WHERE m.peak IS NOT NULL",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let profile = slots::profile_key(
                &row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                row.get::<_, Option<u32>>(2)?.unwrap_or_default(),
                row.get::<_, Option<u32>>(3)?.unwrap_or_default(),
            );
            book.record(&id, &profile, row.get(4)?);
        }
        Ok(book)
    }

    /// Remembers a trial's measured peak device memory.
    fn note_peak(&mut self, trial_id: &str, peak_mb: Option<f64>) {
        let Some(peak_mb) = peak_mb else { return };
        if let Some(profile) = self.sched.trials.get(trial_id).map(|t| t.profile.clone()) {
            self.sched.memory.record(trial_id, &profile, peak_mb);
        }
    }

    /// Logs, once each, the pending trials that no registered worker can run.
    fn report_unplaceable(&mut self) {
        for (trial_id, why) in self.sched.unplaceable() {
            if self.sched.reported_unplaceable.insert(trial_id) {
                tracing::warn!("{why}: it stays pending until a worker that large registers");
            }
        }
    }

    fn register(&mut self, registration: Registration) -> Result<()> {
        let entry = self.sched.workers.entry(registration.worker_id.clone()).or_insert_with(|| WorkerEntry {
            id: registration.worker_id.clone(),
            hostname: registration.hostname.clone(),
            devices: registration.devices,
            memory_mb: registration.memory_mb.clone(),
            cached: HashSet::new(),
            last_seen_ms: 0,
            told_done: false,
        });
        self.strangers.remove(&registration.worker_id);
        entry.hostname = registration.hostname;
        entry.devices = registration.devices;
        entry.memory_mb = registration.memory_mb;
        entry.last_seen_ms = now_ms();
        self.report_unplaceable();
        Ok(())
    }

    /// Extends the leases `held` by `worker_id`; answers those it does not hold any more.
    fn extend(&mut self, worker_id: &str, held: &[String]) -> Result<Vec<String>> {
        let deadline = now_ms() + self.lease_ttl_ms;
        let mut lost = Vec::new();
        for lease_id in held {
            match self.sched.leases.get(lease_id) {
                Some(lease) if lease.worker_id == worker_id => {
                    self.conn
                        .prepare_cached("UPDATE leases SET deadline_ms = ?2 WHERE id = ?1")?
                        .execute(params![lease_id, deadline])?;
                }
                _ => lost.push(lease_id.clone()),
            }
        }
        for lease_id in held {
            if let Some(lease) = self.sched.leases.get_mut(lease_id) {
                if lease.worker_id == worker_id {
                    lease.deadline_ms = deadline;
                }
            }
        }
        Ok(lost)
    }

    fn touch_worker(&mut self, worker_id: &str) -> Result<&mut WorkerEntry> {
        let worker = self
            .sched
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| StoreError::UnknownWorker { worker_id: worker_id.to_string() })?;
        worker.last_seen_ms = now_ms();
        Ok(worker)
    }

    /// A worker that just sent something is alive: the coordinator waits for it to hear that the
    /// sweep is done before exiting (see `workers_told_done`). One that is not registered (this
    /// coordinator restarted since it did) is a stranger, waited for all the same.
    fn seen(&mut self, worker_id: &str) {
        if let Some(worker) = self.sched.workers.get_mut(worker_id) {
            worker.last_seen_ms = now_ms();
        } else if !worker_id.is_empty() {
            self.strangers.entry(worker_id.to_string()).or_default().last_seen_ms = now_ms();
        }
    }

    /// A worker this coordinator does not know (it restarted since the worker registered) is
    /// asked to register again, unless the sweep is done: then it is told so, and its leases are
    /// over. Answers `None` for a registered worker.
    fn answer_stranger(&mut self, worker_id: &str, held: &[String]) -> Option<Result<LeaseReply>> {
        if self.sched.workers.contains_key(worker_id) {
            return None;
        }
        let sweep_done = self.sched.sweep_done();
        let stranger = self.strangers.entry(worker_id.to_string()).or_default();
        stranger.last_seen_ms = now_ms();
        stranger.told_done = sweep_done;
        Some(if sweep_done {
            Ok(LeaseReply { grant: None, lost: held.to_vec(), sweep_done })
        } else {
            Err(StoreError::UnknownWorker { worker_id: worker_id.to_string() })
        })
    }

    fn heartbeat(&mut self, worker_id: &str, held: &[String]) -> Result<LeaseReply> {
        if let Some(reply) = self.answer_stranger(worker_id, held) {
            return reply;
        }
        self.touch_worker(worker_id)?;
        let lost = self.extend(worker_id, held)?;
        let sweep_done = self.sched.sweep_done();
        self.touch_worker(worker_id)?.told_done = sweep_done;
        Ok(LeaseReply { grant: None, lost, sweep_done })
    }

    fn lease(&mut self, ask: LeaseAsk) -> Result<LeaseReply> {
        if let Some(reply) = self.answer_stranger(&ask.worker_id, &ask.held) {
            return reply;
        }
        let worker = self.touch_worker(&ask.worker_id)?;
        worker.cached.extend(ask.cached.iter().cloned());
        let lost = self.extend(&ask.worker_id, &ask.held)?;
        let worker = &self.sched.workers[&ask.worker_id];
        let picked = self.sched.pick(worker, &ask.devices).map(|(trial, on)| (trial.clone(), on));
        let mut reply = LeaseReply { grant: None, lost, sweep_done: false };
        if let Some((trial, device_indices)) = picked {
            let devices = u32::try_from(device_indices.len()).unwrap_or(u32::MAX);
            let attempt = trial.attempts + 1;
            let lease = Lease {
                // Random: a lease id is a secret between the coordinator and its holder.
                id: random_id(),
                trial_id: trial.id.clone(),
                worker_id: ask.worker_id.clone(),
                attempt,
                devices,
                deadline_ms: now_ms() + self.lease_ttl_ms,
            };
            let now = now_ms();
            self.conn
                .prepare_cached(
                    "INSERT INTO leases (id, trial_id, worker_id, attempt, devices, deadline_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![lease.id, lease.trial_id, lease.worker_id, attempt, devices, lease.deadline_ms])?;
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO attempts (trial_id, attempt, worker_id, lease_id, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![trial.id, attempt, ask.worker_id, lease.id, now])?;
            self.conn
                .prepare_cached(
                    "UPDATE trials SET state = 'leased', attempts = ?2, updated_ms = ?3 WHERE id = ?1",
                )?
                .execute(params![trial.id, attempt, now])?;
            let spec_json: String = self
                .conn
                .prepare_cached("SELECT spec_json FROM trials WHERE id = ?1")?
                .query_row(params![trial.id], |r| r.get(0))?;
            let resume_epoch = self.checkpoint_of(&trial.id)?.map_or(0, |(epoch, _)| epoch);
            reply.grant = Some(Grant {
                lease_id: lease.id.clone(),
                trial_id: trial.id.clone(),
                spec_json,
                devices,
                device_indices,
                resume_epoch,
                attempt,
                progress_timeout_s: self.progress_timeout_s,
            });
            self.sched.grant(lease);
        }
        reply.sweep_done = self.sched.sweep_done();
        self.touch_worker(&ask.worker_id)?.told_done = reply.sweep_done;
        Ok(reply)
    }

    fn held(&self, lease: &LeaseRef) -> Result<&Lease> {
        self.sched
            .leases
            .get(&lease.lease_id)
            .filter(|l| l.trial_id == lease.trial_id && l.worker_id == lease.holder)
            .ok_or_else(|| StoreError::LeaseLost { lease_id: lease.lease_id.clone() })
    }

    fn report_epoch(&mut self, lease_ref: &LeaseRef, report: &EpochReport, json: &str) -> Result<()> {
        let lease = self.held(lease_ref)?.clone();
        self.seen(&lease.worker_id);
        let deadline = now_ms() + self.lease_ttl_ms;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO epochs (trial_id, attempt, epoch, worker_id, report_json) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![lease.trial_id, lease.attempt, report.epoch, lease.worker_id, json])?;
        self.conn
            .prepare_cached("UPDATE leases SET deadline_ms = ?2 WHERE id = ?1")?
            .execute(params![lease.id, deadline])?;
        let leased = self.sched.trials.get(&lease.trial_id).is_some_and(|t| t.state == TrialState::Leased);
        if leased {
            self.set_state(&lease.trial_id, TrialState::Running)?;
        }
        if leased {
            self.sched.set_state(&lease.trial_id, TrialState::Running);
        }
        if let Some(lease) = self.sched.leases.get_mut(&lease.id) {
            lease.deadline_ms = deadline;
        }
        self.note_peak(&lease.trial_id, report.peak_device_mb);
        Ok(())
    }

    fn checkpoint_of(&self, trial_id: &str) -> Result<Option<(u32, PathBuf)>> {
        let row = self
            .conn
            .prepare_cached("SELECT epoch, path FROM checkpoints WHERE trial_id = ?1")?
            .query_row(params![trial_id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
            .optional()?;
        Ok(row.map(|(epoch, path)| (epoch, self.dir.join(path))))
    }

    fn record_checkpoint(&mut self, lease_ref: &LeaseRef, epoch: u32, path: &Path, bytes: u64) -> Result<()> {
        let lease = match self.held(lease_ref) {
            Ok(lease) => lease.clone(),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        let previous = self.checkpoint_of(&lease.trial_id)?;
        if previous.as_ref().is_some_and(|(e, _)| *e > epoch) {
            // An older epoch arriving late: the newer checkpoint stays.
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        let relative = path.strip_prefix(&self.dir).unwrap_or(path);
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (trial_id, epoch, attempt, path, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![lease.trial_id, epoch, lease.attempt, relative.display().to_string(), bytes, now_ms()])?;
        // The old file stays until the new row is committed; the new one is garbage otherwise.
        match previous {
            // The same file uploaded again: indexed before and after.
            Some((_, old)) if old == path => {}
            Some((_, old)) => {
                self.files.after_commit(old);
                self.files.after_rollback(path.to_path_buf());
            }
            None => self.files.after_rollback(path.to_path_buf()),
        }
        Ok(())
    }

    /// The folder of a trial's checkpoint files.
    fn checkpoint_folder(&self, trial_id: &str) -> PathBuf {
        self.dir.join(CHECKPOINT_DIR).join(trial_id)
    }

    /// An ended trial (done, diverged, failed for good) is never resumed: its checkpoints go,
    /// once the transaction that ends it commits. The paper's grid would keep hundreds of GB.
    fn drop_checkpoints(&mut self, trial_id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM checkpoints WHERE trial_id = ?1")?
            .execute(params![trial_id])?;
        self.files.after_commit(self.checkpoint_folder(trial_id));
        Ok(())
    }

    /// Removes the checkpoints of trials that had ended before this start: those a crash left
    /// between a commit and its file removals, and those of stores older than that rule.
    fn remove_finished_checkpoints(&mut self) -> Result<()> {
        let root = self.dir.join(CHECKPOINT_DIR);
        let folders = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&root, e)),
        };
        let mut ended = Vec::new();
        for entry in folders {
            let entry = entry.map_err(|e| StoreError::io(&root, e))?;
            let Some(trial_id) = entry.file_name().to_str().map(str::to_string) else { continue };
            let state: Option<String> = self
                .conn
                .query_row("SELECT state FROM trials WHERE id = ?1", params![trial_id], |r| r.get(0))
                .optional()?;
            if state.and_then(|s| s.parse::<TrialState>().ok()).is_some_and(|s| s.is_terminal()) {
                ended.push(trial_id);
            }
        }
        let tx = self.conn.transaction()?;
        for trial_id in &ended {
            tx.execute("DELETE FROM checkpoints WHERE trial_id = ?1", params![trial_id])?;
        }
        tx.commit()?;
        for trial_id in &ended {
            checkpoint_files::remove(&self.checkpoint_folder(trial_id));
        }
        Ok(())
    }

    /// Ends every lease on a trial (the one named and any other), in SQL and then in memory.
    fn end_trial_leases(
        &mut self,
        trial_id: &str,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<Vec<String>> {
        let leases: Vec<Lease> =
            self.sched.leases.values().filter(|l| l.trial_id == trial_id).cloned().collect();
        for lease in &leases {
            self.conn.prepare_cached("DELETE FROM leases WHERE id = ?1")?.execute(params![lease.id])?;
            self.conn
                .prepare_cached(
                    "UPDATE attempts SET ended_ms = ?3, outcome = ?4, error = ?5 WHERE trial_id = ?1 AND attempt = ?2",
                )?
                .execute(params![trial_id, lease.attempt, now_ms(), outcome, error])?;
        }
        Ok(leases.into_iter().map(|l| l.id).collect())
    }

    fn complete(
        &mut self,
        lease_ref: &LeaseRef,
        result: &TrialResult,
        json: &str,
        epochs: &[(EpochReport, String)],
    ) -> Result<()> {
        let Some(trial) = self.sched.trials.get(&lease_ref.trial_id) else {
            // Not scheduled today (another sweep, outside `--only`): still a result to keep.
            return self.complete_outside(lease_ref, result, json, epochs);
        };
        let finished = matches!(trial.state, TrialState::Done | TrialState::Diverged);
        let lost = || StoreError::LeaseLost { lease_id: lease_ref.lease_id.clone() };
        // Only a lease its worker holds, or held: a result from a lease that lapsed is still a
        // result, and its attempt says whose. Anything else changes nothing.
        let (attempt, worker_id) = match self.held(lease_ref) {
            Ok(lease) => (lease.attempt, lease.worker_id.clone()),
            Err(_) => {
                let held: Option<(u32, String)> = self
                    .conn
                    .prepare_cached(
                        "SELECT attempt, worker_id FROM attempts WHERE trial_id = ?1 AND lease_id = ?2",
                    )?
                    .query_row(params![lease_ref.trial_id, lease_ref.lease_id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                match held {
                    Some((attempt, worker_id)) if worker_id == lease_ref.holder => (attempt, worker_id),
                    _ => return Err(lost()),
                }
            }
        };
        if finished {
            // Already has its result (from this or another attempt): acknowledge, keep one.
            return Ok(());
        }
        let state = match result.status {
            TrialStatus::Completed => TrialState::Done,
            TrialStatus::Diverged => TrialState::Diverged,
        };
        self.seen(&worker_id);
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO results (trial_id, attempt, worker_id, result_json, completed_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![lease_ref.trial_id, attempt, worker_id, json, now_ms()])?;
        for (report, report_json) in epochs {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO epochs (trial_id, attempt, epoch, worker_id, report_json) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![lease_ref.trial_id, attempt, report.epoch, worker_id, report_json])?;
            self.note_peak(&lease_ref.trial_id, report.peak_device_mb);
        }
        self.set_state(&lease_ref.trial_id, state)?;
        self.drop_checkpoints(&lease_ref.trial_id)?;
        self.note_peak(&lease_ref.trial_id, result.peak_device_mb);
        let ended = self.end_trial_leases(&lease_ref.trial_id, state.as_str(), None)?;
        for lease_id in ended {
            self.sched.end_lease(&lease_id, state, false, None);
        }
        self.sched.set_state(&lease_ref.trial_id, state);
        Ok(())
    }

    /// Ends a lost or failed attempt: another attempt, or failure.
    fn lose(&mut self, lease: &Lease, error: &str, retryable: bool, outcome: &str) -> Result<()> {
        let after = self.sched.after_loss(&lease.trial_id, error, retryable);
        let (state, last_error) = match &after {
            AfterLoss::Retry => (TrialState::Pending, error.to_string()),
            AfterLoss::Fail(message) => (TrialState::Failed, message.clone()),
        };
        self.conn
            .prepare_cached(
                "UPDATE trials SET state = ?2, failures = failures + 1, last_error = ?3, updated_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![lease.trial_id, state.as_str(), last_error, now_ms()])?;
        self.conn.prepare_cached("DELETE FROM leases WHERE id = ?1")?.execute(params![lease.id])?;
        self.conn
            .prepare_cached("UPDATE attempts SET ended_ms = ?3, outcome = ?4, error = ?5 WHERE trial_id = ?1 AND attempt = ?2")?
            .execute(params![lease.trial_id, lease.attempt, now_ms(), outcome, error])?;
        if state == TrialState::Failed {
            self.drop_checkpoints(&lease.trial_id)?;
        }
        self.sched.end_lease(&lease.id, state, true, Some(last_error));
        Ok(())
    }

    fn fail(&mut self, lease_ref: &LeaseRef, error: &str, retryable: bool) -> Result<()> {
        let lease = self.held(lease_ref)?.clone();
        self.seen(&lease.worker_id);
        self.lose(&lease, error, retryable, "failed")
    }

    fn release(&mut self, lease_ref: &LeaseRef) -> Result<()> {
        let lease = self.held(lease_ref)?.clone();
        self.seen(&lease.worker_id);
        self.conn.prepare_cached("DELETE FROM leases WHERE id = ?1")?.execute(params![lease.id])?;
        self.conn
            .prepare_cached("UPDATE attempts SET ended_ms = ?3, outcome = 'released' WHERE trial_id = ?1 AND attempt = ?2")?
            .execute(params![lease.trial_id, lease.attempt, now_ms()])?;
        self.set_state(&lease.trial_id, TrialState::Pending)?;
        self.sched.end_lease(&lease.id, TrialState::Pending, false, None);
        Ok(())
    }

    fn expire(&mut self, now: u64) -> Result<usize> {
        let expired = self.sched.expired(now);
        for lease in &expired {
            tracing::warn!(lease = %lease.id, worker = %lease.worker_id, "lease expired: worker lost");
            self.lose(lease, "worker lost (lease expired)", true, "expired")?;
        }
        Ok(expired.len())
    }

    fn status(&self) -> Status {
        let progress = self.progress();
        let now = now_ms();
        let mut workers: Vec<WorkerStatus> = self
            .sched
            .workers
            .values()
            .map(|w| WorkerStatus {
                worker_id: w.id.clone(),
                hostname: w.hostname.clone(),
                devices: w.devices,
                trials: self
                    .sched
                    .leases
                    .values()
                    .filter(|l| l.worker_id == w.id)
                    .map(|l| l.trial_id.clone())
                    .collect(),
                idle_ms: now.saturating_sub(w.last_seen_ms),
            })
            .collect();
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        let finished_now = progress.finished().saturating_sub(self.finished_at_start);
        let remaining = progress.total() - progress.finished();
        let eta_seconds = (finished_now > 0).then(|| {
            let rate = f64::from(finished_now) / self.started.elapsed().as_secs_f64().max(1e-3);
            f64::from(remaining) / rate
        });
        Status {
            sweep_name: self.sweep_name.clone(),
            progress,
            workers,
            eta_seconds,
            in_flight: self.in_flight(),
            trials_per_device: self.sched.trials_per_device,
            unplaceable: self.sched.unplaceable().into_iter().map(|(_, why)| why).collect(),
        }
    }
}

/// One epoch report as stored, with the attempt that produced it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredEpoch {
    pub attempt: u32,
    pub worker_id: String,
    pub report: EpochReport,
}

/// Everything the store knows about one trial (for reports).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrialRecord {
    pub id: String,
    pub spec: TrialSpec,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub result: Option<TrialResult>,
    /// Every epoch report of every attempt, by attempt then epoch.
    pub epochs: Vec<StoredEpoch>,
}

/// Reads every trial of the store in `dir` (a running coordinator may be writing meanwhile).
pub fn read_records(dir: &Path) -> Result<(String, Vec<TrialRecord>)> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no state store here"),
        ));
    }
    migrate::ensure_current(dir)?;
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let name: String = conn
        .query_row("SELECT name FROM sweep WHERE id = 1", [], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    let corrupt = |what: String, e: serde_json::Error| StoreError::Corrupt { what, reason: e.to_string() };
    let mut records = Vec::new();
    let mut index = HashMap::new();
    {
        let mut statement = conn.prepare(
            "SELECT t.id, t.spec_json, t.state, t.attempts, t.last_error, r.result_json
             FROM trials t LEFT JOIN results r ON r.trial_id = t.id ORDER BY t.created_ms, t.id",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let spec_json: String = row.get(1)?;
            let result_json: Option<String> = row.get(5)?;
            let spec =
                serde_json::from_str(&spec_json).map_err(|e| corrupt(format!("spec of trial {id}"), e))?;
            let result = result_json
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| corrupt(format!("result of trial {id}"), e))?;
            index.insert(id.clone(), records.len());
            records.push(TrialRecord {
                id,
                spec,
                state: row.get(2)?,
                attempts: row.get(3)?,
                last_error: row.get(4)?,
                result,
                epochs: Vec::new(),
            });
        }
    }
    let mut statement = conn.prepare(
        "SELECT trial_id, attempt, worker_id, report_json FROM epochs ORDER BY trial_id, attempt, epoch",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let trial_id: String = row.get(0)?;
        let json: String = row.get(3)?;
        let report = serde_json::from_str(&json)
            .map_err(|e| corrupt(format!("epoch report of trial {trial_id}"), e))?;
        if let Some(&i) = index.get(&trial_id) {
            records[i].epochs.push(StoredEpoch { attempt: row.get(1)?, worker_id: row.get(2)?, report });
        }
    }
    Ok((name, records))
}

/// A made-up final result for the store's and the reports' tests (their trials are stand-ins that
/// train nothing).
#[cfg(test)]
pub(crate) fn stand_in_result(status: TrialStatus, top1: f64) -> TrialResult {
    let average =
        common::ClassMetrics { label: "avg".into(), precision: 1.0, recall: 1.0, f1: 1.0, support: 1 };
    TrialResult {
        status,
        top1,
        top5: 1.0,
        test_loss: 0.1,
        per_class: Vec::new(),
        macro_avg: average.clone(),
        weighted_avg: average,
        confusion: Vec::new(),
        train_seconds: 1.0,
        peak_host_mb: 1.0,
        peak_device_mb: None,
        inference_ms_per_batch: 1.0,
        history: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::spec::{self, LoadOptions};

    fn sweep(seeds: &str, max_attempts: u32) -> Sweep {
        let text = format!(
            "name: t\nepochs: 2\nbatch_size: 1\nlearning_rate: 0.1\nseeds: {seeds}\nmethods: [baseline]\n\
             architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\nmax_attempts: {max_attempts}\n\
             datasets:\n  s:\n    format: synthetic\n"
        );
        spec::parse(Path::new("t.yaml"), &text, &LoadOptions::default()).unwrap()
    }

    fn result() -> TrialResult {
        super::stand_in_result(TrialStatus::Completed, 0.5)
    }

    async fn worker(store: &Store) {
        store
            .register(Registration {
                worker_id: "w".into(),
                hostname: "h".into(),
                devices: 1,
                memory_mb: Vec::new(),
            })
            .await
            .unwrap();
    }

    async fn lease(store: &Store) -> Option<Grant> {
        let ask = LeaseAsk {
            worker_id: "w".into(),
            devices: vec![Vec::new()],
            held: Vec::new(),
            cached: Vec::new(),
        };
        store.lease(ask).await.unwrap().grant
    }

    fn lease_ref(grant: &Grant) -> LeaseRef {
        LeaseRef { lease_id: grant.lease_id.clone(), trial_id: grant.trial_id.clone(), holder: "w".into() }
    }

    async fn complete(store: &Store, grant: &Grant) {
        let json = serde_json::to_string(&result()).unwrap();
        store.complete(lease_ref(grant), result(), json, Vec::new()).await.unwrap();
    }

    #[tokio::test]
    async fn a_result_is_on_disk_when_complete_returns_and_a_second_completion_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), Duration::from_secs(30), false).unwrap();
        worker(&store).await;
        let grant = lease(&store).await.unwrap();
        complete(&store, &grant).await;
        let (_, records) = read_records(dir.path()).unwrap();
        assert_eq!(records[0].state, "done");
        assert_eq!(records[0].result.as_ref().unwrap().top1, 0.5);
        // The worker did not hear the acknowledgement and sends again: still one result, done.
        complete(&store, &grant).await;
        assert_eq!(read_records(dir.path()).unwrap().1.len(), 1);
        assert!(lease(&store).await.is_none());
        assert!(store.progress().borrow().is_complete());
    }

    #[tokio::test]
    async fn only_the_holder_of_a_lease_acts_on_it_and_a_forged_completion_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
        worker(&store).await;
        store
            .register(Registration {
                worker_id: "intruder".into(),
                hostname: "h".into(),
                devices: 1,
                memory_mb: Vec::new(),
            })
            .await
            .unwrap();
        let grant = lease(&store).await.unwrap();
        assert_eq!(grant.lease_id.len(), 32, "128 random bits, hex: {}", grant.lease_id);
        assert!(!grant.lease_id.contains(&grant.trial_id));
        let json = serde_json::to_string(&result()).unwrap();
        let stolen = LeaseRef { holder: "intruder".into(), ..lease_ref(&grant) };
        let forged = LeaseRef { lease_id: format!("{}-1", grant.trial_id), ..lease_ref(&grant) };
        for lease in [stolen.clone(), forged] {
            let refused = store.complete(lease, result(), json.clone(), Vec::new()).await;
            assert!(matches!(refused, Err(StoreError::LeaseLost { .. })), "{refused:?}");
        }
        assert!(matches!(store.release(stolen.clone()).await, Err(StoreError::LeaseLost { .. })));
        assert!(matches!(
            store.fail(stolen.clone(), "x".into(), false).await,
            Err(StoreError::LeaseLost { .. })
        ));
        assert!(matches!(store.checkpoint(stolen).await, Err(StoreError::LeaseLost { .. })));
        let (_, records) = read_records(dir.path()).unwrap();
        assert!(records.iter().all(|r| r.result.is_none() && r.state != "done" && r.state != "failed"));
        // The holder's completion counts, and so does its repeat after the lease ended.
        complete(&store, &grant).await;
        complete(&store, &grant).await;
        let (_, records) = read_records(dir.path()).unwrap();
        assert_eq!(records.iter().filter(|r| r.state == "done").count(), 1);
    }

    #[tokio::test]
    async fn a_completion_commits_the_epoch_reports_it_carries() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), Duration::from_secs(30), false).unwrap();
        worker(&store).await;
        let grant = lease(&store).await.unwrap();
        let epochs: Vec<(EpochReport, String)> = (1..=2)
            .map(|epoch| {
                let report = EpochReport {
                    epoch,
                    train_loss: 1.0,
                    train_accuracy: 0.5,
                    val_loss: 1.0,
                    val_accuracy: 0.5,
                    grad_norm: 0.1,
                    sal: None,
                    seconds: 0.0,
                    peak_device_mb: None,
                    train_images_per_s: 0.0,
                    eval_images_per_s: 0.0,
                };
                let json = serde_json::to_string(&report).unwrap();
                (report, json)
            })
            .collect();
        let json = serde_json::to_string(&result()).unwrap();
        store.complete(lease_ref(&grant), result(), json, epochs).await.unwrap();
        let (_, records) = read_records(dir.path()).unwrap();
        let stored: Vec<(u32, u32, &str)> =
            records[0].epochs.iter().map(|e| (e.attempt, e.report.epoch, e.worker_id.as_str())).collect();
        assert_eq!(stored, vec![(1, 1, "w"), (1, 2, "w")]);
    }

    #[tokio::test]
    async fn a_restart_keeps_finished_trials_and_adds_only_new_cells() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, summary) =
                Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
            assert_eq!((summary.trials, summary.new), (2, 2));
            worker(&store).await;
            let grant = lease(&store).await.unwrap();
            complete(&store, &grant).await;
        }
        let (store, summary) =
            Store::open(dir.path(), &sweep("[1, 2, 3]", 3), Duration::from_secs(30), false).unwrap();
        assert_eq!((summary.trials, summary.new, summary.already_finished), (3, 1, 1));
        worker(&store).await;
        let first = lease(&store).await.unwrap();
        let second = lease(&store).await.unwrap();
        assert_ne!(first.trial_id, second.trial_id);
        // The finished trial is never handed out again.
        assert!(lease(&store).await.is_none());
        // A sweep that drops a cell keeps its result.
        drop(store);
        let (_, summary) = Store::open(dir.path(), &sweep("[3]", 3), Duration::from_secs(30), false).unwrap();
        assert_eq!(summary.trials, 1);
        let (_, records) = read_records(dir.path()).unwrap();
        assert_eq!(records.iter().filter(|r| r.result.is_some()).count(), 1);
    }

    #[tokio::test]
    async fn after_a_restart_an_unregistered_worker_is_waited_for_and_told_that_the_sweep_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(30);
        let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), ttl, false).unwrap();
        worker(&store).await;
        let grant = lease(&store).await.unwrap();
        drop(store);

        // The coordinator restarted: "w" still runs its trial but is not registered here.
        let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), ttl, false).unwrap();
        let ask = || LeaseAsk {
            worker_id: "w".into(),
            devices: vec![vec![grant.lease_id.clone()]],
            held: vec![grant.lease_id.clone()],
            cached: Vec::new(),
        };
        let unknown = store.lease(ask()).await;
        assert!(matches!(unknown, Err(StoreError::UnknownWorker { .. })), "{unknown:?}");
        complete(&store, &grant).await;
        // The sweep is done, but "w" has not heard it yet: the coordinator must not stop.
        assert!(!store.workers_told_done().await.unwrap());
        // Asking again, still unregistered, it hears that the sweep is done; no need to register.
        let reply = store.lease(ask()).await.unwrap();
        assert!(reply.sweep_done && reply.grant.is_none());
        assert_eq!(reply.lost, vec![grant.lease_id.clone()]);
        assert!(store.workers_told_done().await.unwrap());
    }

    #[tokio::test]
    async fn expired_leases_retry_until_max_attempts_then_fail_with_the_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(30);
        let (store, _) = Store::open(dir.path(), &sweep("[1]", 2), ttl, false).unwrap();
        worker(&store).await;
        let later = || now_ms() + 10 * ttl.as_millis() as u64;
        let first = lease(&store).await.unwrap();
        assert_eq!(store.expire_leases().await.unwrap(), 0, "a fresh lease is live");
        assert_eq!(store.expire_leases_at(later()).await.unwrap(), 1);
        // The lost worker's late report is refused: its lease is gone.
        let report = EpochReport {
            epoch: 1,
            train_loss: 1.0,
            train_accuracy: 0.0,
            val_loss: 1.0,
            val_accuracy: 0.0,
            grad_norm: 0.0,
            sal: None,
            seconds: 0.0,
            peak_device_mb: None,
            train_images_per_s: 0.0,
            eval_images_per_s: 0.0,
        };
        let late = store.report_epoch(lease_ref(&first), report, "{}".into()).await;
        assert!(matches!(late, Err(StoreError::LeaseLost { .. })), "{late:?}");
        let second = lease(&store).await.unwrap();
        assert_eq!((second.trial_id.as_str(), second.attempt), (first.trial_id.as_str(), 2));
        assert_eq!(store.expire_leases_at(later()).await.unwrap(), 1);
        assert!(lease(&store).await.is_none());
        let (_, records) = read_records(dir.path()).unwrap();
        assert_eq!(records[0].state, "failed");
        assert_eq!(records[0].last_error.as_deref(), Some("worker lost (lease expired) (after 2 attempts)"));
    }

    #[tokio::test]
    async fn a_final_failure_does_not_retry_and_a_released_lease_costs_no_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            Store::open(dir.path(), &sweep("[1, 2]", 2), Duration::from_secs(30), false).unwrap();
        worker(&store).await;
        let a = lease(&store).await.unwrap();
        store.fail(lease_ref(&a), "bad config".into(), false).await.unwrap();
        let b = lease(&store).await.unwrap();
        assert_ne!(a.trial_id, b.trial_id);
        store.release(lease_ref(&b)).await.unwrap();
        // Handed back more often than max_attempts: still pending, never failed.
        for _ in 0..3 {
            let again = lease(&store).await.unwrap();
            assert_eq!(again.trial_id, b.trial_id);
            store.release(lease_ref(&again)).await.unwrap();
        }
        let (_, records) = read_records(dir.path()).unwrap();
        let failed = records.iter().find(|r| r.id == a.trial_id).unwrap();
        assert_eq!((failed.state.as_str(), failed.last_error.as_deref()), ("failed", Some("bad config")));
        assert_eq!(records.iter().find(|r| r.id == b.trial_id).unwrap().state, "pending");
    }

    #[tokio::test]
    async fn retry_failed_gives_failed_trials_new_attempts_and_leaves_done_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) =
                Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
            worker(&store).await;
            let a = lease(&store).await.unwrap();
            store.fail(lease_ref(&a), "bad data".into(), false).await.unwrap();
            let b = lease(&store).await.unwrap();
            complete(&store, &b).await;
        }
        let (store, _) =
            Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
        assert_eq!((store.progress().borrow().failed, store.progress().borrow().done), (1, 1));
        drop(store);
        let (store, _) = Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), true).unwrap();
        assert_eq!((store.progress().borrow().pending, store.progress().borrow().done), (1, 1));
        worker(&store).await;
        let again = lease(&store).await.unwrap();
        assert_eq!(again.attempt, 2);
        assert!(lease(&store).await.is_none());
    }

    #[tokio::test]
    async fn measured_device_memory_packs_trials_under_auto_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "name: t\nepochs: 2\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [1, 2, 3]\nmethods: [baseline]\n\
                    architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ngpus_per_trial: 1\n\
                    trials_per_gpu: auto\ndatasets:\n  s:\n    format: synthetic\n";
        let auto = spec::parse(Path::new("t.yaml"), text, &LoadOptions::default()).unwrap();
        let register = |store: Store| async move {
            let registration = Registration {
                worker_id: "w".into(),
                hostname: "h".into(),
                devices: 1,
                memory_mb: vec![1000],
            };
            store.register(registration).await.unwrap();
            store
        };
        let ask = |on_device: Vec<String>| LeaseAsk {
            worker_id: "w".into(),
            devices: vec![on_device],
            held: Vec::new(),
            cached: Vec::new(),
        };
        let ttl = Duration::from_secs(30);
        let first = {
            let store = register(Store::open(dir.path(), &auto, ttl, false).unwrap().0).await;
            let first = store.lease(ask(Vec::new())).await.unwrap().grant.unwrap();
            assert_eq!(first.device_indices, vec![0]);
            // Not measured yet: it has the device to itself.
            assert!(store.lease(ask(vec![first.lease_id.clone()])).await.unwrap().grant.is_none());
            let report = EpochReport {
                epoch: 1,
                train_loss: 1.0,
                train_accuracy: 0.5,
                val_loss: 1.0,
                val_accuracy: 0.5,
                grad_norm: 0.1,
                sal: None,
                seconds: 0.0,
                peak_device_mb: Some(300.0),
                train_images_per_s: 0.0,
                eval_images_per_s: 0.0,
            };
            let json = serde_json::to_string(&report).unwrap();
            store.report_epoch(lease_ref(&first), report, json).await.unwrap();
            first
        };
        // A restart reads the measurement back: 360 MB reserved, and a second trial fits beside it.
        let store = register(Store::open(dir.path(), &auto, ttl, false).unwrap().0).await;
        let second = store.lease(ask(vec![first.lease_id.clone()])).await.unwrap().grant.unwrap();
        assert_ne!(second.trial_id, first.trial_id);
        assert_eq!(second.device_indices, vec![0]);
        let both = vec![first.lease_id.clone(), second.lease_id.clone()];
        assert!(store.lease(ask(both)).await.unwrap().grant.is_none(), "720 + 360 MB > 1000 MB");
    }

    #[tokio::test]
    async fn the_next_attempt_resumes_from_the_newest_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), Duration::from_secs(30), false).unwrap();
        worker(&store).await;
        let grant = lease(&store).await.unwrap();
        assert_eq!(grant.resume_epoch, 0);
        let folder = store.checkpoint_dir(&grant.trial_id);
        std::fs::create_dir_all(&folder).unwrap();
        for epoch in [2, 1] {
            let path = folder.join(format!("epoch-{epoch}"));
            std::fs::write(&path, b"state").unwrap();
            store.record_checkpoint(lease_ref(&grant), epoch, path, 5).await.unwrap();
        }
        // The late epoch-1 upload did not replace epoch 2, and its file is gone.
        assert!(!folder.join("epoch-1").exists());
        store.release(lease_ref(&grant)).await.unwrap();
        let next = lease(&store).await.unwrap();
        assert_eq!((next.resume_epoch, next.attempt), (2, 2));
        let (epoch, path) = store.checkpoint(lease_ref(&next)).await.unwrap().unwrap();
        assert_eq!((epoch, std::fs::read(path).unwrap()), (2, b"state".to_vec()));
    }
}

/// Commit failures and checkpoint files: what a failed transaction leaves, what an ended trial.
#[cfg(test)]
mod commit_tests;
