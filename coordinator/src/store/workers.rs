//! Workers: registrations, lease extensions, and workers heard from without a registration.

use std::collections::HashSet;

use rusqlite::params;

use crate::schedule::WorkerEntry;

use super::api::{LeaseReply, Registration};
use super::error::{Result, StoreError};
use super::{now_ms, Core};

impl Core {
    pub(super) fn register(&mut self, registration: Registration) -> Result<()> {
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
    pub(super) fn extend(&mut self, worker_id: &str, held: &[String]) -> Result<Vec<String>> {
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

    pub(super) fn touch_worker(&mut self, worker_id: &str) -> Result<&mut WorkerEntry> {
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
    pub(super) fn seen(&mut self, worker_id: &str) {
        if let Some(worker) = self.sched.workers.get_mut(worker_id) {
            worker.last_seen_ms = now_ms();
        } else if !worker_id.is_empty() {
            self.strangers.entry(worker_id.to_string()).or_default().last_seen_ms = now_ms();
        }
    }

    /// A worker this coordinator does not know (it restarted since the worker registered) is
    /// asked to register again, unless the sweep is done: then it is told so, and its leases are
    /// over. Answers `None` for a registered worker.
    pub(super) fn answer_stranger(&mut self, worker_id: &str, held: &[String]) -> Option<Result<LeaseReply>> {
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

    pub(super) fn heartbeat(&mut self, worker_id: &str, held: &[String]) -> Result<LeaseReply> {
        if let Some(reply) = self.answer_stranger(worker_id, held) {
            return reply;
        }
        self.touch_worker(worker_id)?;
        let lost = self.extend(worker_id, held)?;
        let sweep_done = self.sched.sweep_done();
        self.touch_worker(worker_id)?.told_done = sweep_done;
        Ok(LeaseReply { grant: None, lost, sweep_done })
    }
}
