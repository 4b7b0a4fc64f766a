//! Epoch reports and final results, committed before the worker hears they are safe.

use common::{EpochReport, TrialResult, TrialStatus};
use rusqlite::params;
use rusqlite::OptionalExtension;

use crate::schedule::TrialState;

use super::api::LeaseRef;
use super::error::{Result, StoreError};
use super::{now_ms, Core};

impl Core {
    pub(super) fn report_epoch(
        &mut self,
        lease_ref: &LeaseRef,
        report: &EpochReport,
        json: &str,
    ) -> Result<()> {
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
        let leased = self.sched.trial(&lease.trial_id).is_some_and(|t| t.state == TrialState::Leased);
        if leased {
            self.set_state(&lease.trial_id, TrialState::Running)?;
        }
        if leased {
            self.sched.set_state(&lease.trial_id, TrialState::Running);
        }
        self.sched.extend_lease(&lease.id, deadline);
        self.note_peak(&lease.trial_id, report.peak_device_mb);
        Ok(())
    }

    pub(super) fn complete(
        &mut self,
        lease_ref: &LeaseRef,
        result: &TrialResult,
        json: &str,
        epochs: &[(EpochReport, String)],
    ) -> Result<()> {
        let Some(trial) = self.sched.trial(&lease_ref.trial_id) else {
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
        self.sched.set_deformations(&lease_ref.trial_id, result.applied_deformations());
        self.sched.set_state(&lease_ref.trial_id, state);
        Ok(())
    }
}
