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

mod config;
mod confine;
pub mod credentials;
mod device_slots;
mod launch;
mod link;
mod orphans;
mod outbox;
mod running;
mod sending;
#[cfg(test)]
mod tests;
mod trial_child;
mod trial_thread;
mod watchdog;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use proto::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::ClientTlsConfig;

use crate::error::WorkerError;
pub use config::{default_worker_id, hostname, ClientConfig, DRAIN_TIMEOUT};
pub use credentials::Credentials;
use credentials::{Client, Stamp};
use link::{within, Interrupt, FIRST_BACKOFF, FIRST_CALL_DEADLINE};
use outbox::{Outgoing, Sent};
use running::Running;
use sending::InFlight;
use trial_thread::TrialMessage;

/// Runs the worker loop until the sweep is done (with `exit_when_done`) or `shutdown` resolves.
pub async fn run(config: ClientConfig, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let mut session = Session::new(config)?;
    session.run(shutdown).await
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

    fn held(&self) -> Vec<String> {
        self.running.iter().filter(|(_, r)| !r.lost).map(|(id, _)| id.clone()).collect()
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
}

pub use common::shutdown::shutdown_signal;
pub use device_slots::cuda_memory_mb;
