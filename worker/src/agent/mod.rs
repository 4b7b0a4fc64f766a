//! The node agent: `worker --coordinator URL`.
//!
//! Pull-based: the agent registers with its devices, asks for a trial whenever a device has a free
//! slot ([`device_slots`]: it says which leases run on which device, the coordinator names the
//! devices a trial takes; asking doubles as the heartbeat of the leases it holds; a busy agent
//! heartbeats instead), runs each trial in a process of its own on the trial's devices
//! ([`launch`], [`trial_child`]), relays its epoch reports and the checkpoint it writes every epoch
//! (so that any worker can resume the trial), and completes it. The agent never touches a tensor:
//! a trial's crash, hang or libtorch state stays in its process. A watchdog kills a trial process
//! that stops making progress.
//!
//! What a trial produces goes through the [`outbox`], in order for each lease: while the
//! coordinator is away the trial keeps running, its reports wait, and the [`link`] reconnects with
//! backoff. A finished trial's result is committed (an fsync at the coordinator) while the next
//! trial already runs. On shutdown (SIGTERM, ctrl-c) the running trials are cancelled, their
//! leases handed back (their last uploaded checkpoint lets the next worker resume), and `run`
//! returns.
//!
//! One file per part: [`config`], [`link`] (the coordinator), [`outbox`] (what goes to it),
//! [`answers`] (what its answers mean), [`launch`] (starting a trial), [`running`] (the trials,
//! what they say, deadlines); this one ties them together in one loop.

mod answers;
mod config;
mod confine;
pub mod credentials;
mod device_slots;
mod exhaustion;
mod launch;
mod link;
mod orphans;
mod outbox;
mod running;
#[cfg(test)]
mod tests;
mod trial_child;
mod trial_thread;
mod usage;
mod watchdog;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use proto::pb;
use tokio::time::Instant;

use crate::error::WorkerError;
pub use config::{default_worker_id, hostname, ClientConfig, DRAIN_TIMEOUT};
pub use credentials::Credentials;
use link::{Interrupt, Link};
use outbox::Outbox;
use running::Trials;

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

/// The agent: its parts, and when it next asks for work or heartbeats.
struct Session {
    config: ClientConfig,
    link: Link,
    devices: device_slots::DeviceTable,
    trials: Trials,
    outbox: Outbox,
    /// The (dataset, resolution) caches this node holds (see `TrialSpec::cache_key`).
    cached: BTreeSet<String>,
    /// The coordinator said the sweep is done.
    sweep_done: bool,
    /// The work dir has no room: no trials until it has (see [`exhaustion`]).
    disk_full: Option<exhaustion::DiskFull>,
    /// What the node uses, sent with every lease request and heartbeat.
    usage: usage::UsageSampler,
    shutting_down: Option<Instant>,
    next_lease: Instant,
    next_heartbeat: Instant,
}

impl Session {
    fn new(config: ClientConfig) -> Result<Self, WorkerError> {
        let link = Link::new(&config)?;
        let devices = device_slots::DeviceTable::new(&config.devices);
        let usage = usage::UsageSampler::new(&config.devices);
        if devices.is_empty() {
            return Err(WorkerError::InvalidTrial("a worker needs at least one device".into()));
        }
        let now = Instant::now();
        Ok(Self {
            config,
            link,
            devices,
            trials: Trials::new(),
            outbox: Outbox::new(),
            cached: BTreeSet::new(),
            sweep_done: false,
            disk_full: None,
            usage,
            shutting_down: None,
            next_lease: now,
            next_heartbeat: now,
        })
    }

    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        tokio::pin!(shutdown);
        loop {
            if Instant::now() >= self.link.retry_at() {
                let was_registered = self.link.is_registered();
                match self.round().await {
                    Ok(true) => self.link.reachable(),
                    // Nothing was answered (the round only put messages on their way): their
                    // answers, or the next attempt after a backoff, tell whether it is back.
                    Ok(false) if self.link.is_away() => self.link.retry_later(),
                    Ok(false) => {}
                    Err(Interrupt::Forgotten) if !was_registered => self.link.forgotten_at_once(),
                    Err(Interrupt::Forgotten) => self.link.forgotten(),
                    Err(Interrupt::Away(reason)) => self.link.away(reason),
                    Err(Interrupt::Held(reason)) => self.link.held_back(reason),
                    Err(Interrupt::Fatal(error)) => {
                        self.trials.stop_all();
                        return Err(error);
                    }
                }
            }
            let now = Instant::now();
            let past_grace =
                self.shutting_down.is_some_and(|since| now.duration_since(since) >= self.config.stop_grace);
            self.trials.enforce_deadlines(now, past_grace);
            if self.disk_full.as_mut().is_some_and(exhaustion::DiskFull::room_again) {
                self.disk_full = None;
                // Say so at once: the coordinator's status shows the worker as taking trials.
                self.next_lease = now;
                self.next_heartbeat = now;
            }
            self.give_up_if_away_too_long()?;
            if self.finished() {
                return Ok(());
            }
            let wake = self.next_wake();
            tokio::select! {
                Some(message) = self.trials.recv() => {
                    self.on_trial_message(message);
                    // Take whatever else the trials said before talking to the coordinator.
                    while let Some(message) = self.trials.try_recv() {
                        self.on_trial_message(message);
                    }
                }
                Some((message, sent)) = self.outbox.answer() => self.on_answer(message, sent)?,
                () = &mut shutdown, if self.shutting_down.is_none() => self.begin_shutdown(),
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn finished(&self) -> bool {
        let idle = self.trials.is_empty() && self.outbox.is_empty();
        idle && (self.shutting_down.is_some() || (self.sweep_done && self.config.exit_when_done))
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        // The end of the drain, when shutting down.
        let drained =
            self.shutting_down.map(|since| since + self.config.drain_timeout).filter(|end| *end > now);
        if self.link.is_away() {
            let retry_at = self.link.retry_at();
            return drained.map_or(retry_at, |end| end.min(retry_at));
        }
        if !self.link.is_registered() {
            return now;
        }
        let mut wake = now + Duration::from_secs(3600);
        if let Some(ready) = self.outbox.next_sendable() {
            wake = wake.min(self.link.held_until().map_or(ready, |until| ready.max(until)));
        }
        if self.wants_work() {
            wake = wake.min(self.next_lease);
        }
        if !self.trials.is_empty() || self.shutting_down.is_some() || self.disk_full.is_some() {
            wake = wake.min(self.next_heartbeat);
        }
        if let Some(full) = &self.disk_full {
            wake = wake.min(Instant::from_std(full.next_probe()));
        }
        if let Some(end) = drained {
            wake = wake.min(end);
        }
        if !self.trials.is_empty() {
            // The watchdog and the shutdown grace period are checked at least this often.
            wake = wake.min(now + watchdog::CHECK_EVERY);
        }
        wake
    }

    fn wants_work(&self) -> bool {
        self.shutting_down.is_none()
            && !self.sweep_done
            && self.disk_full.is_none()
            && !self.trials.has_one_alone()
            && self.devices.has_room()
            && self.has_free_cpu_threads()
    }

    /// What keeps this worker from taking trials, for the coordinator's `status`; empty: nothing.
    fn condition(&self) -> String {
        self.disk_full.as_ref().map(exhaustion::DiskFull::describe).unwrap_or_default()
    }

    /// The work dir has no room (a trial could not write there): hand leases back as their trials
    /// end, take nothing new, and say so until there is room.
    fn work_dir_full(&mut self, cause: String) {
        if self.disk_full.is_none() {
            self.disk_full = Some(exhaustion::DiskFull::new(&self.config.work_dir, cause));
            // The coordinator hears of it with the next heartbeat, at once.
            self.next_heartbeat = Instant::now();
        }
    }

    fn poll_interval(&self) -> Duration {
        (self.link.heartbeat() / 2).min(Duration::from_millis(200))
    }

    /// One exchange with the coordinator: register if needed, send what waits, ask for work or
    /// heartbeat when due. Says whether the coordinator answered a call: a round that only put
    /// messages on their way proves nothing (their answers come through [`Session::on_answer`]).
    async fn round(&mut self) -> Result<bool, Interrupt> {
        let mut answered = false;
        if !self.link.is_registered() {
            let config = &self.config;
            let reply =
                self.link.register(&config.worker_id, &config.devices, &config.device_memory_mb).await?;
            self.devices.set_trials_per_device(reply.trials_per_device);
            answered = true;
        }
        let now = Instant::now();
        if self.link.held_until().is_none_or(|until| now >= until) {
            self.outbox.flush(self.link.client(), self.link.deadline());
        }
        if self.wants_work() && now >= self.next_lease {
            self.ask_for_work().await?;
            answered = true;
        } else if (!self.trials.is_empty() || self.disk_full.is_some()) && now >= self.next_heartbeat {
            self.heartbeat().await?;
            answered = true;
        }
        Ok(answered)
    }

    async fn heartbeat(&mut self) -> Result<(), Interrupt> {
        let request = pb::HeartbeatRequest {
            worker_id: self.config.worker_id.clone(),
            held_leases: self.trials.held(),
            condition: self.condition(),
            usage: Some(self.usage.sample(self.trials.pids())),
        };
        let reply = self.link.call(self.link.client().clone().heartbeat(request)).await?.into_inner();
        self.next_heartbeat = Instant::now() + self.link.heartbeat();
        self.sweep_done = reply.sweep_done;
        for lease_id in reply.lost_leases {
            self.lose(&lease_id);
        }
        Ok(())
    }

    async fn ask_for_work(&mut self) -> Result<(), Interrupt> {
        let request = pb::LeaseRequest {
            worker_id: self.config.worker_id.clone(),
            held_leases: self.trials.held(),
            cached: self.cached.iter().cloned().collect(),
            devices: self.devices.loads(),
            condition: self.condition(),
            usage: Some(self.usage.sample(self.trials.pids())),
        };
        let reply = self.link.call(self.link.client().clone().lease(request)).await?.into_inner();
        let now = Instant::now();
        self.next_heartbeat = now + self.link.heartbeat();
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

    fn begin_shutdown(&mut self) {
        tracing::info!(running = self.trials.len(), "shutting down: cancelling trials, handing leases back");
        self.shutting_down = Some(Instant::now());
        self.trials.stop_all();
        // Leave a backoff at once: the drain may need the coordinator now.
        self.link.retry_now();
    }

    /// Gives up after `give_up_after` without an answer; when shutting down, leaves
    /// `drain_timeout` after the shutdown began, dropping what is still unsent (a coordinator
    /// that got the same signal may never answer, or answer calls it already had and no more).
    fn give_up_if_away_too_long(&mut self) -> Result<(), WorkerError> {
        if let Some(shutdown_at) = self.shutting_down {
            if shutdown_at.elapsed() >= self.config.drain_timeout && !self.outbox.is_empty() {
                tracing::warn!(
                    unsent = self.outbox.len(),
                    "the coordinator did not take everything within the drain; leaving"
                );
                self.keep_unsent_results("the coordinator did not take it before this worker stopped");
            }
            return Ok(());
        }
        match self.link.given_up() {
            Some(error) => {
                self.trials.stop_all();
                self.keep_unsent_results(&error.to_string());
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// Gives up on what waits for the coordinator; finished trials' results stay on this node
    /// (`WORK_DIR/orphans/`), never dropped.
    fn keep_unsent_results(&mut self, why: &str) {
        for message in self.outbox.give_up() {
            if let outbox::Outgoing::Complete { lease, result_json, epochs_json } = &message {
                let (work_dir, coordinator) = (&self.config.work_dir, &self.config.coordinator);
                match orphans::keep(work_dir, coordinator, lease, result_json, epochs_json, why) {
                    Ok(path) => {
                        tracing::warn!(trial = %lease.trial_id, file = %path.display(), "result kept")
                    }
                    Err(e) => tracing::error!(trial = %lease.trial_id, "cannot keep the result: {e}"),
                }
            }
        }
    }
}

pub use common::shutdown::shutdown_signal;
pub use device_slots::cuda_memory_mb;
