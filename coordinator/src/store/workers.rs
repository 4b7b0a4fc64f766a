//! Workers: registrations, lease extensions, and workers heard from without a registration.

use rusqlite::params;

use crate::schedule::{Usage, WorkerEntry, WorkerSpec};

use super::api::{LeaseReply, Registration};
use super::error::{Result, StoreError};
use super::{now_ms, Core};

impl Core {
    pub(super) fn register(&mut self, registration: Registration) -> Result<()> {
        let spec = WorkerSpec {
            id: registration.worker_id,
            hostname: registration.hostname,
            devices: registration.devices,
            memory_mb: registration.memory_mb,
        };
        self.sched.register_worker(spec, now_ms());
        self.report_unplaceable();
        Ok(())
    }

    /// Extends the leases `held` by `worker_id`; answers those it does not hold any more.
    pub(super) fn extend(&mut self, worker_id: &str, held: &[String]) -> Result<Vec<String>> {
        let deadline = now_ms() + self.lease_ttl_ms;
        let mut lost = Vec::new();
        for lease_id in held {
            match self.sched.lease(lease_id) {
                Some(lease) if lease.worker_id == worker_id => {
                    self.conn
                        .prepare_cached("UPDATE leases SET deadline_ms = ?2 WHERE id = ?1")?
                        .execute(params![lease_id, deadline])?;
                }
                _ => lost.push(lease_id.clone()),
            }
        }
        for lease_id in held {
            if self.sched.lease(lease_id).is_some_and(|l| l.worker_id == worker_id) {
                self.sched.extend_lease(lease_id, deadline);
            }
        }
        Ok(lost)
    }

    pub(super) fn touch_worker(&mut self, worker_id: &str) -> Result<&mut WorkerEntry> {
        self.sched
            .heard_from(worker_id, now_ms())
            .ok_or_else(|| StoreError::UnknownWorker { worker_id: worker_id.to_string() })
    }

    /// A worker that just sent something is alive: the coordinator waits for it to hear that the
    /// sweep is done before exiting (see `workers_told_done`). One that is not registered (this
    /// coordinator restarted since it did) is a stranger, waited for all the same.
    pub(super) fn seen(&mut self, worker_id: &str) {
        self.sched.seen(worker_id, now_ms());
    }

    /// A worker this coordinator does not know (it restarted since the worker registered) is
    /// asked to register again, unless the sweep is done: then it is told so, and its leases are
    /// over. Answers `None` for a registered worker.
    pub(super) fn answer_stranger(&mut self, worker_id: &str, held: &[String]) -> Option<Result<LeaseReply>> {
        if self.sched.worker(worker_id).is_some() {
            return None;
        }
        let sweep_done = self.sched.sweep_done();
        self.sched.stranger_answered(worker_id, now_ms(), sweep_done);
        Some(if sweep_done {
            Ok(LeaseReply { grant: None, lost: held.to_vec(), sweep_done })
        } else {
            Err(StoreError::UnknownWorker { worker_id: worker_id.to_string() })
        })
    }

    pub(super) fn heartbeat(
        &mut self,
        worker_id: &str,
        held: &[String],
        condition: &str,
        usage: Option<&Usage>,
    ) -> Result<LeaseReply> {
        if let Some(reply) = self.answer_stranger(worker_id, held) {
            return reply;
        }
        note_news(self.touch_worker(worker_id)?, condition, usage);
        let lost = self.extend(worker_id, held)?;
        let sweep_done = self.sched.sweep_done();
        self.touch_worker(worker_id)?.told_done = sweep_done;
        Ok(LeaseReply { grant: None, lost, sweep_done })
    }

    /// A lease request or heartbeat while the state dir is full: nothing is leased or written,
    /// the worker's leases are extended in memory (see `full.rs`).
    pub(super) fn keep_alive(
        &mut self,
        worker_id: &str,
        held: &[String],
        condition: &str,
        usage: Option<&Usage>,
    ) -> Result<LeaseReply> {
        if let Some(reply) = self.answer_stranger(worker_id, held) {
            return reply;
        }
        note_news(self.touch_worker(worker_id)?, condition, usage);
        let deadline = now_ms() + self.lease_ttl_ms;
        let mut lost = Vec::new();
        for lease_id in held {
            match self.sched.lease(lease_id) {
                Some(lease) if lease.worker_id == worker_id => self.sched.extend_lease(lease_id, deadline),
                _ => lost.push(lease_id.clone()),
            }
        }
        let sweep_done = self.sched.sweep_done();
        self.touch_worker(worker_id)?.told_done = sweep_done;
        Ok(LeaseReply { grant: None, lost, sweep_done })
    }
}

/// Keeps what a worker says of itself when it calls: its use of its node, and what keeps it from
/// taking trials (said in the log when it changes).
pub(super) fn note_news(worker: &mut WorkerEntry, condition: &str, usage: Option<&Usage>) {
    if usage.is_some() {
        worker.usage = usage.cloned();
    }
    if worker.condition == condition {
        return;
    }
    if condition.is_empty() {
        tracing::info!(worker = %worker.id, "worker takes trials again");
    } else {
        tracing::warn!(worker = %worker.id, "worker takes no trials: {condition}");
    }
    worker.condition = condition.to_string();
}
