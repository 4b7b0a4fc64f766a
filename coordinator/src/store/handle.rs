//! [`Store`], the handle every other part of the coordinator holds: each call becomes a job for
//! the commit actor and waits for its answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{EpochReport, TrialResult};
use tokio::sync::watch;

use crate::sweep::spec::Sweep;

use super::actor::{job, Job, WhenFull};
use super::api::{LeaseAsk, LeaseRef, LeaseReply, LoadSummary, Progress, Registration, Status};
use super::durable::WalSync;
use super::error::{Result, StoreError};
use super::{now_ms, Core, Full, Usage, CHECKPOINT_DIR, DB_FILE};

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Job>,
    progress: watch::Receiver<Progress>,
    health: watch::Receiver<Option<Full>>,
    dir: PathBuf,
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
        let health = core.health.subscribe();
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let sync = WalSync::start(&dir.join(DB_FILE)).map_err(|e| StoreError::io(dir, e))?;
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || core.serve(rx, sync))
            .map_err(|e| StoreError::io(dir, e))?;
        Ok((Store { jobs, progress: progress_rx, health, dir: dir.to_path_buf() }, summary))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counts by state, updated after every commit.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Whether the state dir is full (and what is), from the moment the store finds it so until
    /// a commit succeeds again.
    pub fn health(&self) -> watch::Receiver<Option<Full>> {
        self.health.clone()
    }

    /// A job that writes: refused while the state dir is full.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.run(f, None, |_| false).await
    }

    /// A job that needs no write (or can do without while the state dir is full): answered from
    /// memory by `f` itself then.
    async fn read<R: Send + 'static>(
        &self,
        f: impl Fn(&mut Core) -> Result<R> + Send + Clone + 'static,
    ) -> Result<R> {
        let when_full: WhenFull<R> = Box::new(f.clone());
        self.run(f, Some(when_full), |_| false).await
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
        when_full: Option<WhenFull<R>>,
        before_sync: impl FnOnce(&Result<R>) -> bool + Send + 'static,
    ) -> Result<R> {
        let (job, rx) = job(f, when_full, before_sync);
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
    ///
    /// While the state dir is full, nothing is leased: the worker's leases are kept alive in
    /// memory and it hears that there is no trial for it now.
    pub async fn lease(&self, ask: LeaseAsk) -> Result<LeaseReply> {
        let waiting = ask.clone();
        let when_full: WhenFull<LeaseReply> = Box::new(move |core| {
            core.keep_alive(&waiting.worker_id, &waiting.held, &waiting.condition, waiting.usage.as_ref())
        });
        self.run(move |core| core.lease(ask), Some(when_full), answered_at_commit).await
    }

    /// A worker's heartbeat, with what keeps it from taking trials (empty: nothing) and what its
    /// node uses.
    pub async fn heartbeat(
        &self,
        worker_id: String,
        held: Vec<String>,
        condition: String,
        usage: Option<Usage>,
    ) -> Result<LeaseReply> {
        let (id, leases, said, used) = (worker_id.clone(), held.clone(), condition.clone(), usage.clone());
        let when_full: WhenFull<LeaseReply> =
            Box::new(move |core| core.keep_alive(&id, &leases, &said, used.as_ref()));
        self.run(
            move |core| core.heartbeat(&worker_id, &held, &condition, usage.as_ref()),
            Some(when_full),
            |_| false,
        )
        .await
    }

    pub async fn report_epoch(&self, lease: LeaseRef, report: EpochReport, json: String) -> Result<()> {
        self.call(move |core| core.report_epoch(&lease, &report, &json)).await
    }

    /// Checks that `lease` is held, before a checkpoint upload is accepted; answers the attempt.
    pub async fn check_lease(&self, lease: LeaseRef) -> Result<u32> {
        self.read(move |core| core.held(&lease).map(|l| l.attempt)).await
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
        self.read(move |core| {
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

    /// A trial ran out of memory; `shared`: other trials ran beside it (see
    /// `Core::out_of_memory`).
    pub async fn out_of_memory(&self, lease: LeaseRef, error: String, shared: bool) -> Result<()> {
        self.call(move |core| core.out_of_memory(&lease, &error, shared)).await
    }

    pub async fn release(&self, lease: LeaseRef) -> Result<()> {
        self.call(move |core| core.release(&lease)).await
    }

    /// Something outside the store (a checkpoint upload) found the state dir full: the store stops
    /// writing too, and looks for room as if its own commit had failed.
    pub async fn found_full(&self, cause: String) {
        let when_full: WhenFull<()> = Box::new(|_| Ok(()));
        let _ = self
            .run(
                move |core| {
                    core.became_full(cause);
                    Ok(())
                },
                Some(when_full),
                |_| false,
            )
            .await;
    }

    /// Returns the trials of expired leases to pending (or failed); answers how many.
    pub async fn expire_leases(&self) -> Result<usize> {
        self.expire_leases_at(now_ms()).await
    }

    /// As [`Store::expire_leases`], as if the clock read `now_ms`. While the state dir is full
    /// nothing expires: heartbeats are kept in memory, and nothing could be written anyway.
    pub async fn expire_leases_at(&self, now_ms: u64) -> Result<usize> {
        let when_full: WhenFull<usize> = Box::new(|_| Ok(0));
        self.run(move |core| core.expire(now_ms), Some(when_full), |_| false).await
    }

    /// Every worker heard from lately has been told that the sweep is done. Once the sweep is
    /// done no worker holds a lease, and a live idle worker asks for work several times a second:
    /// one silent for two seconds is gone (killed, or away and it will give up by itself).
    pub async fn workers_told_done(&self) -> Result<bool> {
        self.read(|core| {
            let recent = now_ms().saturating_sub(core.lease_ttl_ms.min(2000));
            Ok(core.sched.recent_workers_told_done(recent))
        })
        .await
    }

    /// Leases held by workers now.
    pub async fn live_leases(&self) -> Result<usize> {
        self.read(|core| Ok(core.sched.leases().count())).await
    }

    pub async fn status(&self) -> Result<Status> {
        self.read(|core| Ok(core.status())).await
    }

    /// The folder where a trial's checkpoint files go.
    pub fn checkpoint_dir(&self, trial_id: &str) -> PathBuf {
        self.dir.join(CHECKPOINT_DIR).join(trial_id)
    }
}

/// Whether a lease request's answer may leave before the disk has its commit (see
/// [`Store::lease`]).
pub(super) fn answered_at_commit(outcome: &Result<LeaseReply>) -> bool {
    matches!(outcome, Ok(reply) if !reply.sweep_done)
}
