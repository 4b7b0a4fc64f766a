//! The lease lifecycle: granted, held, lost, failed, handed back, expired.

use rusqlite::params;

use crate::schedule::{AfterLoss, Lease, TrialState};

use super::api::{Grant, LeaseAsk, LeaseRef, LeaseReply};
use super::error::{Result, StoreError};
use super::workers::note_news;
use super::{now_ms, Core};

/// A fresh random id: 128 bits, hex.
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl Core {
    pub(super) fn lease(&mut self, ask: LeaseAsk) -> Result<LeaseReply> {
        if let Some(reply) = self.answer_stranger(&ask.worker_id, &ask.held) {
            return reply;
        }
        let worker = self.touch_worker(&ask.worker_id)?;
        worker.cached.extend(ask.cached.iter().cloned());
        note_news(worker, &ask.condition, ask.usage.as_ref());
        let lost = self.extend(&ask.worker_id, &ask.held)?;
        let Some(worker) = self.sched.worker(&ask.worker_id) else {
            return Err(StoreError::UnknownWorker { worker_id: ask.worker_id });
        };
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
            let spec_json = self.leased_spec_json(&trial)?;
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
                alone: trial.alone,
            });
            self.sched.grant(lease);
        }
        reply.sweep_done = self.sched.sweep_done();
        self.touch_worker(&ask.worker_id)?.told_done = reply.sweep_done;
        Ok(reply)
    }

    pub(super) fn held(&self, lease: &LeaseRef) -> Result<&Lease> {
        self.sched
            .lease(&lease.lease_id)
            .filter(|l| l.trial_id == lease.trial_id && l.worker_id == lease.holder)
            .ok_or_else(|| StoreError::LeaseLost { lease_id: lease.lease_id.clone() })
    }

    /// Ends every lease on a trial (the one named and any other), in SQL and then in memory.
    pub(super) fn end_trial_leases(
        &mut self,
        trial_id: &str,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<Vec<String>> {
        let leases: Vec<Lease> = self.sched.leases().filter(|l| l.trial_id == trial_id).cloned().collect();
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

    /// Ends a lost or failed attempt: another attempt, or failure.
    pub(super) fn lose(&mut self, lease: &Lease, error: &str, retryable: bool, outcome: &str) -> Result<()> {
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
        if state == TrialState::Failed {
            self.fail_orphans()?;
        }
        Ok(())
    }

    pub(super) fn fail(&mut self, lease_ref: &LeaseRef, error: &str, retryable: bool) -> Result<()> {
        let lease = self.held(lease_ref)?.clone();
        self.seen(&lease.worker_id);
        self.lose(&lease, error, retryable, "failed")
    }

    /// A trial ran out of memory. Beside other trials (on its devices or its host), and not yet
    /// run alone, it is retried alone with no attempt charged: the neighbours may have taken the
    /// memory. Alone, it fails for good with that reason (more attempts would end the same way).
    pub(super) fn out_of_memory(&mut self, lease_ref: &LeaseRef, error: &str, shared: bool) -> Result<()> {
        let lease = self.held(lease_ref)?.clone();
        self.seen(&lease.worker_id);
        let alone = self.sched.trial(&lease.trial_id).is_some_and(|t| t.alone);
        if alone || !shared {
            let error = format!("out of memory running alone: {error}");
            return self.lose(&lease, &error, false, "failed");
        }
        tracing::warn!(trial = %lease.trial_id, "out of memory beside other trials: it runs alone next, no attempt charged");
        self.conn
            .prepare_cached("UPDATE trials SET alone = 1, last_error = ?2 WHERE id = ?1")?
            .execute(params![lease.trial_id, format!("out of memory beside other trials: {error}")])?;
        self.conn.prepare_cached("DELETE FROM leases WHERE id = ?1")?.execute(params![lease.id])?;
        self.conn
            .prepare_cached(
                "UPDATE attempts SET ended_ms = ?3, outcome = 'out of memory beside others', error = ?4 WHERE trial_id = ?1 AND attempt = ?2",
            )?
            .execute(params![lease.trial_id, lease.attempt, now_ms(), error])?;
        self.set_state(&lease.trial_id, TrialState::Pending)?;
        self.sched.set_alone(&lease.trial_id);
        self.sched.end_lease(&lease.id, TrialState::Pending, false, None);
        Ok(())
    }

    pub(super) fn release(&mut self, lease_ref: &LeaseRef) -> Result<()> {
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

    pub(super) fn expire(&mut self, now: u64) -> Result<usize> {
        let expired = self.sched.expired(now);
        for lease in &expired {
            tracing::warn!(lease = %lease.id, worker = %lease.worker_id, "lease expired: worker lost");
            self.lose(lease, "worker lost (lease expired)", true, "expired")?;
        }
        Ok(expired.len())
    }
}
