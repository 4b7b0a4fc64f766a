//! The node agent: `worker --coordinator URL`.
//!
//! Pull-based: the agent registers with its devices, asks for a trial whenever a device has a free
//! slot ([`slots`]: it says which leases run on which device, the coordinator names the devices a
//! trial takes; asking doubles as the heartbeat of the leases it holds; a busy agent heartbeats
//! instead), runs
//! each trial in a process of its own on the trial's devices ([`trial_process`]), relays its epoch
//! reports and the checkpoint it writes every epoch (so that any worker can resume the trial), and
//! completes it. The agent never touches a tensor: a trial's crash, hang or libtorch state stays
//! in its process. A watchdog kills a trial process that stops making progress.
//!
//! What a trial produces goes through an outbox, in order for each lease: while the coordinator
//! is away the trial keeps running, its reports wait, and the worker reconnects with backoff and
//! sends them in order. Leases do not wait for each other, and nothing waits for a message to be
//! acknowledged unless it must: a finished trial's result is committed (an fsync at the
//! coordinator) while the next trial already runs. A trial's epoch report and checkpoint linger
//! a moment before they are sent, so that a result right behind them carries the report and
//! supersedes the checkpoint: one message, not three.
//! On shutdown (SIGTERM, ctrl-c) the running trials are cancelled, their leases handed back (their
//! last uploaded checkpoint lets the next worker resume), and `run` returns.

mod confine;
pub mod credentials;
mod device_slots;
mod orphans;
mod outbox;
#[cfg(test)]
mod tests;
mod trial_child;
mod trial_thread;
mod watchdog;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use proto::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::ClientTlsConfig;
use tonic::Code;

use crate::error::WorkerError;
use crate::run::child_process::{JobDevices, TrialJob};
use crate::run::{CancelFlag, Devices, RunOptions};
use crate::trial::TrialSpec;
pub use credentials::Credentials;
use credentials::{Client, Stamp};
use outbox::{Outgoing, Sent};
use trial_thread::{TrialEnd, TrialMessage};
use watchdog::Watchdog;

/// How a worker reaches its coordinator and what it offers.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port`.
    pub coordinator: String,
    pub devices: Devices,
    /// Dataset caches, trial checkpoints and downloads live here.
    pub work_dir: PathBuf,
    /// Unique per process; see [`default_worker_id`].
    pub worker_id: String,
    /// Return once the coordinator says that the sweep is done.
    pub exit_when_done: bool,
    /// Give up when the coordinator cannot be reached for this long.
    pub give_up_after: Duration,
    /// On shutdown with the coordinator away, wait at most this long for it to take the unsent
    /// reports and handed-back leases ([`DRAIN_TIMEOUT`] by default).
    pub drain_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// The binary whose `trial-process` subcommand runs a trial (default: this executable).
    pub worker_bin: PathBuf,
    /// CPU threads this agent's trials may take together: it leases another trial only while its
    /// running CPU trials take fewer (each takes its ranks × its `cpu_threads`, whatever runs
    /// beside it).
    pub cpu_threads: usize,
    /// On shutdown, a trial that has not stopped this long after being asked is killed.
    pub stop_grace: Duration,
    /// Memory of each device in MB, told to the coordinator for `trials_per_gpu: auto`; empty:
    /// unknown (each trial then takes a whole device under `auto`).
    pub device_memory_mb: Vec<u64>,
    /// Token and TLS settings.
    pub credentials: Credentials,
    /// Dataset roots and weights a trial names must lie under this folder (`--data-root`);
    /// `None` trusts the coordinator's paths (`--trust-coordinator-paths`: the workers a
    /// `coordinator --local` starts, whose paths it resolved itself).
    pub data_root: Option<PathBuf>,
}

impl ClientConfig {
    pub fn new(coordinator: impl Into<String>, devices: Devices, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            coordinator: coordinator.into(),
            devices,
            work_dir: work_dir.into(),
            worker_id: default_worker_id(),
            exit_when_done: true,
            give_up_after: Duration::from_secs(600),
            drain_timeout: DRAIN_TIMEOUT,
            max_backoff: Duration::from_secs(5),
            worker_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("worker")),
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop_grace: Duration::from_secs(60),
            device_memory_mb: Vec::new(),
            credentials: Credentials::default(),
            data_root: None,
        }
    }
}

pub use crate::provenance::hostname;

/// `host-pid-nonce`: unique per process, so a restarted worker is a new worker.
pub fn default_worker_id() -> String {
    let nonce =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{nonce:08x}", hostname(), std::process::id())
}

/// Runs the worker loop until the sweep is done (with `exit_when_done`) or `shutdown` resolves.
pub async fn run(config: ClientConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let mut session = Session::new(config)?;
    session.run(shutdown).await
}

/// A trial this worker is running.
struct Running {
    trial_id: String,
    /// A stand-in trial's thread stops through this; a trial process through `process`.
    cancel: CancelFlag,
    process: Option<trial_child::TrialProcess>,
    watchdog: Watchdog,
    /// Where its job file and checkpoints go: its slot's folder.
    folder: PathBuf,
    cache_key: String,
    /// The newest checkpoint queued for upload, if any.
    checkpoint_epoch: u32,
    /// The checkpoint downloaded to resume from, removed when the trial ends.
    download: Option<PathBuf>,
    /// The coordinator no longer honours the lease: whatever the trial does is dropped.
    lost: bool,
    /// CPU threads it takes (its ranks × its `cpu_threads`); 0 on GPUs and for stand-ins.
    cpu_threads: usize,
}

impl Running {
    /// Asks the trial to stop at its next step (it then says how far it got).
    fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(process) = &mut self.process {
            process.cancel();
        }
    }

    /// Ends the trial's process at once (a stand-in thread can only be asked).
    fn kill(&mut self) {
        self.cancel.cancel();
        if let Some(process) = &mut self.process {
            process.kill();
        }
    }
}

/// The lease a message is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseKey {
    pub lease_id: String,
    pub trial_id: String,
}

impl LeaseKey {
    fn to_pb(&self) -> pb::LeaseRef {
        pb::LeaseRef { lease_id: self.lease_id.clone(), trial_id: self.trial_id.clone() }
    }
}

/// Counts and ordinals on the wire are u32; no node has more devices than that.
fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Why a round with the coordinator stopped early.
enum Interrupt {
    /// The coordinator is away: retry after a backoff.
    Away(String),
    /// The coordinator answered but does not know this worker (it restarted): register again at
    /// once. Not an absence: backing off here could outlast a coordinator that is about to
    /// finish the sweep and exit, leaving this worker to knock on a closed door.
    Forgotten,
    Fatal(WorkerError),
}

/// How long a worker that was told to stop keeps trying to hand its leases back and send its
/// last reports while the coordinator does not answer: short enough that every process of a
/// cancelled Slurm job (whose coordinator got the same SIGTERM) is gone well inside Slurm's
/// default KillWait of 30 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait before calling an absent coordinator again; each failed attempt doubles it, up
/// to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How long one call may take before it counts as failed, while the coordinator has not said how
/// often to heartbeat (before the first registration).
const FIRST_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// Bounds of a call's deadline, which is otherwise one heartbeat interval (a third of a lease):
/// a call stuck on a dead connection (packets dropped, no reset) is abandoned in time for the
/// next heartbeat, on a fresh connection, to keep the worker's leases alive.
const MIN_CALL_DEADLINE: Duration = Duration::from_secs(1);
const MAX_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// How long a trial's epoch report and checkpoint wait for what follows them (see the module
/// documentation). Nothing on a trial's critical path waits for it: the trial's end ends it.
const LINGER: Duration = Duration::from_millis(20);

/// A message on its way, and what stops it.
struct InFlight {
    message: Outgoing,
    task: tokio::task::AbortHandle,
}

struct Session {
    config: ClientConfig,
    client: Client,
    /// Adds the token and the registration's session to every call.
    stamp: Stamp,
    tls: Option<ClientTlsConfig>,
    registered: bool,
    heartbeat: Duration,
    devices: device_slots::DeviceTable,
    running: HashMap<String, Running>,
    outbox: VecDeque<Outgoing>,
    /// Sent, not acknowledged yet; at most one per lease (a lease's messages go in order).
    in_flight: HashMap<u64, InFlight>,
    next_send: u64,
    sent_tx: mpsc::UnboundedSender<(u64, Sent)>,
    sent_rx: mpsc::UnboundedReceiver<(u64, Sent)>,
    /// Leases whose waiting reports are held back until then (see [`LINGER`]).
    linger_until: HashMap<String, Instant>,
    cached: BTreeSet<String>,
    events_tx: mpsc::UnboundedSender<TrialMessage>,
    events_rx: mpsc::UnboundedReceiver<TrialMessage>,
    sweep_done: bool,
    shutting_down: Option<Instant>,
    next_lease: Instant,
    next_heartbeat: Instant,
    /// Since when no call has been answered (`None`: the last call was).
    away_since: Option<Instant>,
    backoff: Duration,
    retry_at: Instant,
    /// How long one call may take (see [`MIN_CALL_DEADLINE`]).
    deadline: Duration,
    /// Why the last failed call failed.
    last_error: String,
}

impl Session {
    fn new(config: ClientConfig) -> Result<Self, WorkerError> {
        let stamp = Stamp::new(&config.credentials)?;
        let tls = config.credentials.tls()?;
        let client = credentials::connect(&config.coordinator, tls.as_ref(), &stamp)?;
        let devices = device_slots::DeviceTable::new(&config.devices);
        if devices.is_empty() {
            return Err(WorkerError::InvalidTrial("a worker needs at least one device".into()));
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (sent_tx, sent_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        Ok(Self {
            devices,
            config,
            client,
            stamp,
            tls,
            registered: false,
            heartbeat: Duration::from_secs(1),
            running: HashMap::new(),
            outbox: VecDeque::new(),
            in_flight: HashMap::new(),
            next_send: 0,
            sent_tx,
            sent_rx,
            linger_until: HashMap::new(),
            cached: BTreeSet::new(),
            events_tx,
            events_rx,
            sweep_done: false,
            shutting_down: None,
            next_lease: now,
            next_heartbeat: now,
            away_since: None,
            backoff: FIRST_BACKOFF,
            retry_at: now,
            deadline: FIRST_CALL_DEADLINE,
            last_error: String::new(),
        })
    }

    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        tokio::pin!(shutdown);
        loop {
            if Instant::now() >= self.retry_at {
                let was_registered = self.registered;
                match self.round().await {
                    Ok(true) => self.reachable(),
                    // Nothing was answered (the round only put messages on their way): their
                    // answers, or the next attempt after a backoff, tell whether it is back.
                    Ok(false) if self.away_since.is_some() => self.retry_later(),
                    Ok(false) => {}
                    // Forgotten again right after registering: not worth a tight loop.
                    Err(Interrupt::Forgotten) if !was_registered => {
                        self.registered = false;
                        self.away("the coordinator forgot this worker as soon as it registered".into())?;
                    }
                    Err(Interrupt::Forgotten) => self.forgotten(),
                    Err(Interrupt::Away(reason)) => self.away(reason)?,
                    Err(Interrupt::Fatal(error)) => {
                        self.cancel_all();
                        return Err(error);
                    }
                }
            }
            self.enforce_deadlines();
            self.give_up_if_away_too_long()?;
            if self.finished() {
                return Ok(());
            }
            let wake = self.next_wake();
            tokio::select! {
                Some(message) = self.events_rx.recv() => {
                    self.on_trial_message(message);
                    // Take whatever else the trials said before talking to the coordinator.
                    while let Ok(message) = self.events_rx.try_recv() {
                        self.on_trial_message(message);
                    }
                }
                Some((id, sent)) = self.sent_rx.recv() => self.on_sent(id, sent)?,
                () = &mut shutdown, if self.shutting_down.is_none() => self.begin_shutdown(),
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The coordinator answered a call: no more backoff.
    fn reachable(&mut self) {
        if self.away_since.take().is_some() {
            tracing::info!(coordinator = %self.config.coordinator, "coordinator reachable again");
        }
        self.backoff = FIRST_BACKOFF;
        self.retry_at = Instant::now();
    }

    /// The coordinator answered that it does not know this worker: register again at once.
    fn forgotten(&mut self) {
        tracing::info!(coordinator = %self.config.coordinator, "the coordinator does not know this worker (it restarted?): registering again");
        self.registered = false;
        self.reachable();
    }

    /// Records a failed call: the next attempt waits a backoff, on a fresh connection.
    fn away(&mut self, reason: String) -> Result<(), WorkerError> {
        let now = Instant::now();
        self.away_since.get_or_insert_with(|| {
            tracing::warn!(coordinator = %self.config.coordinator, "coordinator away, will retry: {reason}");
            now
        });
        self.last_error = reason;
        self.retry_later();
        // A fresh channel: the old one may be stuck on a dead connection.
        if let Ok(client) = credentials::connect(&self.config.coordinator, self.tls.as_ref(), &self.stamp) {
            self.client = client;
        }
        self.give_up_if_away_too_long()
    }

    /// The next attempt waits one backoff, and the one after twice as long.
    fn retry_later(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    /// Gives up after `give_up_after` without an answer; when shutting down, leaves
    /// `drain_timeout` after the shutdown began, dropping what is still unsent (a coordinator
    /// that got the same signal may never answer, or answer calls it already had and no more).
    fn give_up_if_away_too_long(&mut self) -> Result<(), WorkerError> {
        let now = Instant::now();
        if let Some(shutdown_at) = self.shutting_down {
            if now.duration_since(shutdown_at) >= self.config.drain_timeout
                && !(self.outbox.is_empty() && self.in_flight.is_empty())
            {
                tracing::warn!(
                    unsent = self.outbox.len() + self.in_flight.len(),
                    "the coordinator did not take everything within the drain; leaving"
                );
                for message in self.outbox.drain(..) {
                    message.discard();
                }
                for (_, in_flight) in self.in_flight.drain() {
                    in_flight.task.abort();
                    in_flight.message.discard();
                }
            }
            return Ok(());
        }
        let Some(away_since) = self.away_since else { return Ok(()) };
        if now.duration_since(away_since) >= self.config.give_up_after {
            self.cancel_all();
            return Err(WorkerError::CoordinatorUnreachable {
                url: self.config.coordinator.clone(),
                seconds: self.config.give_up_after.as_secs(),
                last_error: self.last_error.clone(),
            });
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        let idle = self.running.is_empty() && self.outbox.is_empty() && self.in_flight.is_empty();
        idle && (self.shutting_down.is_some() || (self.sweep_done && self.config.exit_when_done))
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        // The end of the drain, when shutting down.
        let drained =
            self.shutting_down.map(|since| since + self.config.drain_timeout).filter(|end| *end > now);
        if self.away_since.is_some() {
            return drained.map_or(self.retry_at, |end| end.min(self.retry_at));
        }
        if !self.registered {
            return now;
        }
        let mut wake = now + Duration::from_secs(3600);
        if let Some(ready) = self.next_sendable() {
            wake = wake.min(ready);
        }
        if self.wants_work() {
            wake = wake.min(self.next_lease);
        }
        if !self.running.is_empty() || self.shutting_down.is_some() {
            wake = wake.min(self.next_heartbeat);
        }
        if let Some(end) = drained {
            wake = wake.min(end);
        }
        if !self.running.is_empty() {
            // The watchdog and the shutdown grace period are checked at least this often.
            wake = wake.min(now + watchdog::CHECK_EVERY);
        }
        wake
    }

    fn wants_work(&self) -> bool {
        self.shutting_down.is_none()
            && !self.sweep_done
            && self.devices.has_room()
            && self.has_free_cpu_threads()
    }

    fn poll_interval(&self) -> Duration {
        (self.heartbeat / 2).min(Duration::from_millis(200))
    }

    /// One exchange with the coordinator: register if needed, send what waits, ask for work or
    /// heartbeat when due. Says whether the coordinator answered a call: a round that only put
    /// messages on their way proves nothing (their answers come through [`Session::on_sent`]).
    async fn round(&mut self) -> Result<bool, Interrupt> {
        let mut answered = false;
        if !self.registered {
            self.register().await?;
            answered = true;
        }
        self.flush();
        let now = Instant::now();
        if self.wants_work() && now >= self.next_lease {
            self.ask_for_work().await?;
            answered = true;
        } else if !self.running.is_empty() && now >= self.next_heartbeat {
            let request =
                pb::HeartbeatRequest { worker_id: self.config.worker_id.clone(), held_leases: self.held() };
            let mut client = self.client.clone();
            let reply = within(self.deadline, client.heartbeat(request))
                .await
                .map_err(|s| self.interrupt(&s))?
                .into_inner();
            answered = true;
            self.next_heartbeat = Instant::now() + self.heartbeat;
            self.sweep_done = reply.sweep_done;
            for lease_id in reply.lost_leases {
                self.lose(&lease_id);
            }
        }
        Ok(answered)
    }

    fn interrupt(&mut self, status: &tonic::Status) -> Interrupt {
        if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) {
            // A token the coordinator does not take will not start working by retrying.
            return Interrupt::Fatal(WorkerError::CoordinatorRefused {
                url: self.config.coordinator.clone(),
                message: status.message().to_string(),
            });
        }
        if status.code() == Code::FailedPrecondition {
            // The coordinator restarted and forgot us.
            return Interrupt::Forgotten;
        }
        Interrupt::Away(format!("{:?}: {}", status.code(), status.message()))
    }

    fn held(&self) -> Vec<String> {
        self.running.iter().filter(|(_, r)| !r.lost).map(|(id, _)| id.clone()).collect()
    }

    async fn register(&mut self) -> Result<(), Interrupt> {
        let devices = match &self.config.devices {
            Devices::Cpu { ranks } => pb::devices::Kind::CpuRanks(saturating_u32(*ranks)),
            Devices::Cuda(ordinals) => pb::devices::Kind::Cuda(pb::CudaDevices {
                ordinals: ordinals.iter().map(|o| saturating_u32(*o)).collect(),
            }),
        };
        let request = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            worker_id: self.config.worker_id.clone(),
            hostname: hostname(),
            devices: Some(pb::Devices {
                kind: Some(devices),
                memory_mb: self.config.device_memory_mb.clone(),
            }),
        };
        match within(self.deadline, self.client.clone().register(request)).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                self.heartbeat = Duration::from_millis(u64::from(reply.heartbeat_ms.max(10)));
                self.deadline = self.heartbeat.clamp(MIN_CALL_DEADLINE, MAX_CALL_DEADLINE);
                self.devices.set_trials_per_device(reply.trials_per_device);
                self.stamp.set_session(&reply.session_id);
                self.registered = true;
                tracing::info!(worker = %self.config.worker_id, sweep = %reply.sweep_name, "registered");
                Ok(())
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::FailedPrecondition
                        | Code::InvalidArgument
                        | Code::Unauthenticated
                        | Code::PermissionDenied
                ) =>
            {
                Err(Interrupt::Fatal(WorkerError::CoordinatorRefused {
                    url: self.config.coordinator.clone(),
                    message: status.message().to_string(),
                }))
            }
            Err(status) => Err(Interrupt::Away(format!("{:?}: {}", status.code(), status.message()))),
        }
    }

    fn lease_request(&self) -> pb::LeaseRequest {
        pb::LeaseRequest {
            worker_id: self.config.worker_id.clone(),
            held_leases: self.held(),
            cached: self.cached.iter().cloned().collect(),
            devices: self.devices.loads(),
        }
    }

    async fn ask_for_work(&mut self) -> Result<(), Interrupt> {
        let request = self.lease_request();
        let mut client = self.client.clone();
        let reply =
            within(self.deadline, client.lease(request)).await.map_err(|s| self.interrupt(&s))?.into_inner();
        let now = Instant::now();
        self.next_heartbeat = now + self.heartbeat;
        self.sweep_done = reply.sweep_done;
        for lease_id in reply.lost_leases {
            self.lose(&lease_id);
        }
        match reply.assignment {
            Some(assignment) => {
                self.start(assignment).await;
                // More devices may be free: ask again at once.
                self.next_lease = now;
            }
            None => self.next_lease = now + self.poll_interval(),
        }
        Ok(())
    }

    /// Starts an assigned trial on its own thread (or fails it when it cannot start).
    async fn start(&mut self, assignment: pb::Assignment) {
        let lease = LeaseKey { lease_id: assignment.lease_id.clone(), trial_id: assignment.trial_id.clone() };
        if let Err(e) = confine::id(&lease.trial_id, "trial_id").and(confine::id(&lease.lease_id, "lease_id"))
        {
            // Ids become file names here: an odd one is never used, only reported.
            tracing::error!("refusing an assignment: {e}");
            self.outbox.push_back(Outgoing::Fail { lease, error: e.to_string(), retryable: false });
            return;
        }
        let parsed = serde_json::from_str::<TrialSpec>(&assignment.spec_json)
            .map_err(|e| format!("invalid trial definition: {e}"))
            .and_then(|spec| match &self.config.data_root {
                Some(root) => confine::spec(spec, root).map_err(|e| e.to_string()),
                None => Ok(spec),
            });
        let spec: TrialSpec = match parsed {
            Ok(spec) => spec,
            Err(error) => {
                self.outbox.push_back(Outgoing::Fail { lease, error, retryable: false });
                return;
            }
        };
        let placement = match self.devices.take(&lease.lease_id, &assignment.device_indices) {
            Ok(placement) => placement,
            Err(error) => {
                self.outbox.push_back(Outgoing::Fail { lease, error, retryable: true });
                return;
            }
        };
        let slots = placement.devices;
        let slot_dir = self.slot_dir(&placement.folder);
        let resume_from = if assignment.resume_epoch > 0 {
            let path = self
                .config
                .work_dir
                .join("downloads")
                .join(format!("{}-epoch-{}.ckpt", assignment.trial_id, assignment.resume_epoch));
            let mut client = self.client.clone();
            match outbox::download(&mut client, &lease, assignment.resume_epoch, &path, self.deadline).await {
                Ok(()) => Some(path),
                Err(e) => {
                    tracing::warn!(trial = %assignment.trial_id, "cannot download checkpoint, starting afresh: {e}");
                    None
                }
            }
        } else {
            None
        };
        let devices = match &self.config.devices {
            Devices::Cpu { .. } => Devices::Cpu { ranks: slots.len() },
            Devices::Cuda(_) => Devices::Cuda(slots.clone()),
        };
        let cancel = CancelFlag::default();
        let options = RunOptions {
            devices,
            cache_dir: self.config.work_dir.join("cache"),
            checkpoint_dir: slot_dir.clone(),
            resume_from: resume_from.clone(),
            checkpoint_every: 1,
            cancel: cancel.clone(),
        };
        tracing::info!(
            trial = %lease.trial_id,
            lease = %lease.lease_id,
            attempt = assignment.attempt,
            resume_epoch = assignment.resume_epoch,
            "trial started"
        );
        let cache_key = format!("{}@{}", spec.dataset.name, spec.resolution);
        let cpu_threads = match &options.devices {
            Devices::Cpu { ranks } if spec.architecture != crate::run::NOOP => Some(
                ranks
                    * crate::provenance::rank_threads(&spec, &options.devices)
                        .map_or(1, |t| t.unsigned_abs() as usize),
            ),
            _ => None,
        };
        let progress_timeout = match assignment.progress_timeout_s {
            0 => watchdog::DEFAULT_PROGRESS_TIMEOUT,
            seconds => Duration::from_secs(u64::from(seconds)),
        };
        let running = Running {
            trial_id: lease.trial_id.clone(),
            cancel,
            process: None,
            watchdog: Watchdog::new(progress_timeout),
            folder: slot_dir.clone(),
            cache_key,
            checkpoint_epoch: assignment.resume_epoch,
            download: resume_from,
            lost: false,
            cpu_threads: cpu_threads.unwrap_or(0),
        };
        self.running.insert(lease.lease_id.clone(), running);
        let started = if spec.architecture == crate::run::NOOP {
            trial_thread::spawn(lease.clone(), spec, options, slot_dir, self.events_tx.clone()).map(|()| None)
        } else {
            let job = TrialJob {
                trial_id: lease.trial_id.clone(),
                devices: match &options.devices {
                    Devices::Cpu { ranks } => JobDevices::Cpu { ranks: *ranks },
                    Devices::Cuda(ordinals) => JobDevices::Cuda { count: ordinals.len() },
                },
                threads: cpu_threads,
                spec,
                cache_dir: options.cache_dir,
                checkpoint_dir: options.checkpoint_dir,
                resume_from: options.resume_from,
                checkpoint_every: options.checkpoint_every,
            };
            let launch = trial_child::Launch {
                worker_bin: &self.config.worker_bin,
                job_file: slot_dir.join("job.json"),
                staging: slot_dir,
                cuda_visible: match &self.config.devices {
                    Devices::Cpu { .. } => None,
                    // Device ordinals (two trials may share one), never slot numbers.
                    Devices::Cuda(_) => {
                        Some(slots.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
                    }
                },
            };
            trial_child::spawn(lease.clone(), &job, launch, self.events_tx.clone()).map(Some)
        };
        match started {
            Ok(process) => {
                if let Some(process) = &process {
                    tracing::info!(trial = %lease.trial_id, pid = process.pid(), "trial process started");
                }
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.process = process;
                }
            }
            Err(e) => {
                // The trial never started: give the devices back and let another attempt try.
                self.running.remove(&lease.lease_id);
                self.devices.release(&lease.lease_id);
                self.outbox.push_back(Outgoing::Fail {
                    lease,
                    error: format!("cannot start the trial: {e}"),
                    retryable: true,
                });
            }
        }
    }

    /// Whether the running trials leave a CPU thread of `--cpu-threads` free. Each CPU trial
    /// takes its ranks × its own `cpu_threads`, whatever else runs (its numbers must not depend on
    /// this agent's load), so the agent packs trials by that count instead of splitting its cores.
    fn has_free_cpu_threads(&self) -> bool {
        let used: usize = self.running.values().map(|r| r.cpu_threads).sum();
        used < self.config.cpu_threads
    }

    fn on_trial_message(&mut self, message: TrialMessage) {
        match message {
            TrialMessage::Progress { lease } => {
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.watchdog.progress();
                }
            }
            TrialMessage::Epoch { lease, report } => {
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.watchdog.epoch();
                }
                if self.is_live(&lease.lease_id) {
                    self.linger(&lease.lease_id);
                    self.outbox.push_back(Outgoing::epoch(lease, &report));
                }
            }
            TrialMessage::Checkpoint { lease, epoch, file } => {
                if !self.is_live(&lease.lease_id) {
                    let _ = std::fs::remove_file(&file);
                    return;
                }
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.checkpoint_epoch = running.checkpoint_epoch.max(epoch);
                }
                // Only the newest checkpoint matters: drop older ones still waiting.
                self.outbox.retain(|m| match m {
                    Outgoing::Checkpoint { lease: l, file: f, .. } if l.lease_id == lease.lease_id => {
                        let _ = std::fs::remove_file(f);
                        false
                    }
                    _ => true,
                });
                self.linger(&lease.lease_id);
                self.outbox.push_back(Outgoing::Checkpoint { lease, epoch, file });
            }
            TrialMessage::Ended { lease, end } => {
                // Whatever waits of this trial goes now (folded into its result where it can).
                self.linger_until.remove(&lease.lease_id);
                let Some(running) = self.running.remove(&lease.lease_id) else { return };
                if let Some(download) = &running.download {
                    let _ = std::fs::remove_file(download);
                }
                self.devices.release(&lease.lease_id);
                self.next_lease = Instant::now();
                if running.lost {
                    tracing::info!(trial = %running.trial_id, "stopped a trial whose lease was lost");
                    return;
                }
                let end = match running.watchdog.fired() {
                    // Whatever a killed trial process said last, the kill is why it ended.
                    Some(seconds) => {
                        TrialEnd::Failed { error: format!("no progress for {seconds} s"), retryable: true }
                    }
                    None => end,
                };
                match end {
                    TrialEnd::Finished(result) => {
                        tracing::info!(trial = %lease.trial_id, "trial finished; its result is queued");
                        self.cached.insert(running.cache_key);
                        // The result supersedes a checkpoint not sent yet (nobody will resume),
                        // and carries the epoch reports still waiting: one message, not many.
                        let mut waiting = Vec::new();
                        self.outbox.retain(|m| match m {
                            Outgoing::Checkpoint { lease: l, .. } if l.lease_id == lease.lease_id => {
                                m.discard();
                                false
                            }
                            Outgoing::Epoch { lease: l, report_json, .. } if l.lease_id == lease.lease_id => {
                                waiting.push(report_json.clone());
                                false
                            }
                            _ => true,
                        });
                        self.outbox.push_back(Outgoing::complete(lease, &result, waiting));
                    }
                    TrialEnd::Interrupted { epoch, checkpoint } => {
                        tracing::info!(trial = %lease.trial_id, epoch, "trial interrupted; handing the lease back");
                        // A checkpoint written on the way out, newer than any announced: upload it
                        // first, so that the next worker loses nothing.
                        if let Some(path) = checkpoint.filter(|_| epoch > running.checkpoint_epoch) {
                            let staging = running.folder.clone();
                            match trial_thread::stage(&path, &staging, &lease.lease_id, epoch) {
                                Ok(file) => self.outbox.push_back(Outgoing::Checkpoint {
                                    lease: lease.clone(),
                                    epoch,
                                    file,
                                }),
                                Err(e) => {
                                    tracing::warn!(trial = %lease.trial_id, "cannot stage the last checkpoint: {e}")
                                }
                            }
                        }
                        self.outbox.push_back(Outgoing::Release { lease });
                    }
                    TrialEnd::Failed { error, retryable } => {
                        tracing::warn!(trial = %lease.trial_id, retryable, "trial failed: {error}");
                        self.outbox.push_back(Outgoing::Fail { lease, error, retryable });
                    }
                }
            }
        }
    }

    /// Holds a trial's waiting reports back for [`LINGER`], from the first of them.
    fn linger(&mut self, lease_id: &str) {
        self.linger_until.entry(lease_id.to_string()).or_insert_with(|| Instant::now() + LINGER);
    }

    /// Where the trial in a device slot writes its job file and checkpoints.
    fn slot_dir(&self, folder: &str) -> PathBuf {
        self.config.work_dir.join("devices").join(folder)
    }

    fn is_live(&self, lease_id: &str) -> bool {
        self.running.get(lease_id).is_some_and(|r| !r.lost)
    }

    /// The coordinator no longer honours a lease: stop its trial, drop what it still has to say.
    fn lose(&mut self, lease_id: &str) {
        if let Some(running) = self.running.get_mut(lease_id) {
            if !running.lost {
                tracing::warn!(trial = %running.trial_id, lease = lease_id, "lease lost; stopping the trial");
            }
            running.lost = true;
            // Nothing it says counts any more: end it at once.
            running.cancel.cancel();
            if let Some(process) = &mut running.process {
                process.kill();
            }
        }
        self.linger_until.remove(lease_id);
        self.outbox.retain(|m| {
            let keep = m.lease().lease_id != lease_id;
            if !keep {
                m.discard();
            }
            keep
        });
    }

    fn begin_shutdown(&mut self) {
        tracing::info!(running = self.running.len(), "shutting down: cancelling trials, handing leases back");
        self.shutting_down = Some(Instant::now());
        for running in self.running.values_mut() {
            running.stop();
        }
        // Leave a backoff at once: the drain may need the coordinator now.
        self.retry_at = Instant::now();
    }

    fn cancel_all(&mut self) {
        for running in self.running.values_mut() {
            running.stop();
        }
    }

    /// Kills the trials that made no progress for too long, and on shutdown those that did not
    /// stop within the grace period. Their `Ended` message follows when the process is reaped.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let past_grace =
            self.shutting_down.is_some_and(|since| now.duration_since(since) >= self.config.stop_grace);
        for running in self.running.values_mut() {
            if let Some(seconds) = running.watchdog.check(now) {
                tracing::error!(trial = %running.trial_id, "no progress for {seconds} s: killing its trial process");
                running.kill();
            } else if past_grace {
                tracing::warn!(trial = %running.trial_id, "did not stop within the grace period: killing it");
                running.kill();
            }
        }
    }

    /// Whether a lease's next message may go now: none of its messages is on its way, and its
    /// reports are not lingering.
    fn may_send(&self, lease_id: &str, now: Instant, busy: &HashSet<&str>) -> bool {
        !busy.contains(lease_id) && self.linger_until.get(lease_id).is_none_or(|until| *until <= now)
    }

    /// When the next waiting message may go: now, the end of a linger, or never (every lease
    /// with waiting messages has one on its way, whose answer wakes the loop).
    fn next_sendable(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut busy: HashSet<&str> =
            self.in_flight.values().map(|f| f.message.lease().lease_id.as_str()).collect();
        let mut next: Option<Instant> = None;
        for message in &self.outbox {
            let lease_id = message.lease().lease_id.as_str();
            if busy.contains(lease_id) {
                continue;
            }
            let ready = self.linger_until.get(lease_id).map_or(now, |until| (*until).max(now));
            next = Some(next.map_or(ready, |n| n.min(ready)));
            // Later messages of this lease wait for this one.
            busy.insert(lease_id);
        }
        next
    }

    /// Sends what may go: the first waiting message of each lease that has none on its way.
    /// Their answers come back through `sent_rx` ([`Session::on_sent`]).
    fn flush(&mut self) {
        let now = Instant::now();
        let mut blocked: HashSet<String> =
            self.in_flight.values().map(|f| f.message.lease().lease_id.clone()).collect();
        let mut index = 0;
        while index < self.outbox.len() {
            let lease_id = self.outbox[index].lease().lease_id.clone();
            let busy: HashSet<&str> = blocked.iter().map(String::as_str).collect();
            if !self.may_send(&lease_id, now, &busy) {
                blocked.insert(lease_id);
                index += 1;
                continue;
            }
            self.linger_until.remove(&lease_id);
            blocked.insert(lease_id);
            if let Some(message) = self.outbox.remove(index) {
                self.send(message);
            }
        }
    }

    /// Puts a message on its way.
    fn send(&mut self, message: Outgoing) {
        let id = self.next_send;
        self.next_send += 1;
        let copy = message.clone();
        let mut client = self.client.clone();
        let answers = self.sent_tx.clone();
        let deadline = copy.deadline(self.deadline);
        let task = tokio::spawn(async move {
            let sent = match tokio::time::timeout(deadline, copy.send(&mut client)).await {
                Ok(sent) => sent,
                Err(_) => Sent::Failed(tonic::Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    deadline.as_millis()
                ))),
            };
            let _ = answers.send((id, sent));
        });
        self.in_flight.insert(id, InFlight { message, task: task.abort_handle() });
    }

    /// What became of a message sent.
    fn on_sent(&mut self, id: u64, sent: Sent) -> Result<(), WorkerError> {
        let Some(InFlight { message, .. }) = self.in_flight.remove(&id) else { return Ok(()) };
        if matches!(sent, Sent::Delivered | Sent::LeaseLost(_)) {
            self.reachable();
        }
        match sent {
            Sent::Delivered => message.delivered(),
            Sent::LeaseLost(reason) => {
                let lease_id = message.lease().lease_id.clone();
                tracing::warn!(lease = %lease_id, "{reason}");
                if let Outgoing::Complete { lease, result_json, epochs_json } = &message {
                    // A finished trial the coordinator never knew: keep its result here.
                    let work_dir = &self.config.work_dir;
                    let coordinator = &self.config.coordinator;
                    match orphans::keep(work_dir, coordinator, lease, result_json, epochs_json, &reason) {
                        Ok(path) => {
                            tracing::warn!(trial = %lease.trial_id, file = %path.display(), "result kept")
                        }
                        Err(e) => tracing::error!(trial = %lease.trial_id, "cannot keep the result: {e}"),
                    }
                } else {
                    message.discard();
                }
                self.lose(&lease_id);
            }
            Sent::Refused(reason) => {
                tracing::error!("coordinator refused a message, dropping it: {reason}");
                message.discard();
            }
            Sent::Failed(status) => {
                // First again, for when the coordinator is back.
                self.outbox.push_front(message);
                match self.interrupt(&status) {
                    Interrupt::Forgotten => self.forgotten(),
                    // Already away, the next attempt already waits its backoff: several messages
                    // on their way fail together, one absence, one backoff.
                    Interrupt::Away(_) if self.away_since.is_some() => {}
                    Interrupt::Away(reason) => self.away(reason)?,
                    Interrupt::Fatal(error) => {
                        self.cancel_all();
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A call that fails with `DEADLINE_EXCEEDED` when not answered within `deadline`: over a
/// partition (packets dropped, no reset) a call would otherwise wait for TCP to give up, minutes.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(deadline, call).await.unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!("no answer within {} ms", deadline.as_millis())))
    })
}

pub use common::shutdown::shutdown_signal;
pub use device_slots::cuda_memory_mb;
