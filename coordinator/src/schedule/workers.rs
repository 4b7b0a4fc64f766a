//! The workers the scheduler knows: registered ones, and strangers (heard from without a
//! registration, because this coordinator restarted since they registered), with when each was
//! last heard from and whether it has been told that the sweep is done; and read access to the
//! live leases. In memory only: the store persists what must survive a restart (leases and their
//! deadlines), and a worker registers again after one.

use std::collections::{HashMap, HashSet};

use super::{Lease, Scheduler, WorkerEntry};

/// A worker heard from without a registration.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Stranger {
    last_seen_ms: u64,
    told_done: bool,
}

/// What a worker says of itself when it registers.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub id: String,
    pub hostname: String,
    pub devices: u32,
    pub memory_mb: Vec<u64>,
}

impl Scheduler {
    /// Registers a worker (again: its devices and memory replace what it said before; what it
    /// has cached is kept), no longer a stranger.
    pub fn register_worker(&mut self, spec: WorkerSpec, now_ms: u64) {
        self.strangers.remove(&spec.id);
        let entry = self.workers.entry(spec.id.clone()).or_insert_with(|| WorkerEntry {
            id: spec.id.clone(),
            hostname: String::new(),
            devices: 0,
            memory_mb: Vec::new(),
            cached: HashSet::new(),
            last_seen_ms: 0,
            told_done: false,
            condition: String::new(),
            usage: None,
        });
        entry.hostname = spec.hostname;
        entry.devices = spec.devices;
        entry.memory_mb = spec.memory_mb;
        entry.last_seen_ms = now_ms;
    }

    pub fn workers(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values()
    }

    pub fn worker(&self, worker_id: &str) -> Option<&WorkerEntry> {
        self.workers.get(worker_id)
    }

    /// A registered worker just heard from (its `last_seen_ms` set), to update.
    pub fn heard_from(&mut self, worker_id: &str, now_ms: u64) -> Option<&mut WorkerEntry> {
        let worker = self.workers.get_mut(worker_id)?;
        worker.last_seen_ms = now_ms;
        Some(worker)
    }

    /// A worker that sent something is alive, registered or not (an empty id is nobody).
    pub fn seen(&mut self, worker_id: &str, now_ms: u64) {
        if self.heard_from(worker_id, now_ms).is_none() && !worker_id.is_empty() {
            self.strangers.entry(worker_id.to_string()).or_default().last_seen_ms = now_ms;
        }
    }

    /// A stranger heard from, and answered whether the sweep is done.
    pub fn stranger_answered(&mut self, worker_id: &str, now_ms: u64, told_done: bool) {
        let stranger = self.strangers.entry(worker_id.to_string()).or_default();
        stranger.last_seen_ms = now_ms;
        stranger.told_done = told_done;
    }

    /// Every worker heard from since `since_ms`, registered or a stranger, has been told that
    /// the sweep is done.
    pub fn recent_workers_told_done(&self, since_ms: u64) -> bool {
        let registered = self.workers.values().map(|w| (w.last_seen_ms, w.told_done));
        let strangers = self.strangers.values().map(|s| (s.last_seen_ms, s.told_done));
        registered.chain(strangers).filter(|(seen, _)| *seen >= since_ms).all(|(_, told)| told)
    }

    pub fn lease(&self, lease_id: &str) -> Option<&Lease> {
        self.leases.get(lease_id)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Moves a live lease's deadline (already persisted by the store).
    pub fn extend_lease(&mut self, lease_id: &str, deadline_ms: u64) {
        if let Some(lease) = self.leases.get_mut(lease_id) {
            lease.deadline_ms = deadline_ms;
        }
    }

    /// Replaces the live leases (the store's, read back on start).
    pub fn set_leases(&mut self, leases: HashMap<String, Lease>) {
        self.leases = leases;
    }
}
