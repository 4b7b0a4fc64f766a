//! Results for trials the store knows but does not schedule today.
//!
//! The store keeps every trial it has ever known. A worker may finish a trial of another sweep,
//! or one outside today's `--only` slice (it was leased before a restart that narrowed the
//! slice): that result is as good as any, so it is committed and acknowledged. Only a trial the
//! store has never known is refused (`UnknownTrial`); the worker then keeps the result itself.

use common::{EpochReport, TrialResult, TrialStatus};
use rusqlite::{params, OptionalExtension};

use super::{now_ms, Core, LeaseRef, Result, StoreError};
use crate::schedule::TrialState;

impl Core {
    /// Commits the result of a trial that is in the store but not in the scheduler's memory.
    pub(super) fn complete_outside(
        &mut self,
        lease_ref: &LeaseRef,
        result: &TrialResult,
        json: &str,
        epochs: &[(EpochReport, String)],
    ) -> Result<()> {
        let trial_id = &lease_ref.trial_id;
        let state: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM trials WHERE id = ?1")?
            .query_row(params![trial_id], |r| r.get(0))
            .optional()?;
        let Some(state) = state else {
            return Err(StoreError::UnknownTrial { trial_id: trial_id.clone() });
        };
        // The lease was dropped when this run did not schedule the trial; its attempt row remains.
        // Only the worker that was granted it may complete it: anything else changes nothing.
        let attempt: Option<(u32, String)> = self
            .conn
            .prepare_cached("SELECT attempt, worker_id FROM attempts WHERE trial_id = ?1 AND lease_id = ?2")?
            .query_row(params![trial_id, lease_ref.lease_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (attempt, worker_id) = match attempt {
            Some((attempt, worker_id)) if worker_id == lease_ref.holder => (attempt, worker_id),
            _ => return Err(StoreError::LeaseLost { lease_id: lease_ref.lease_id.clone() }),
        };
        if state == TrialState::Done.as_str() || state == TrialState::Diverged.as_str() {
            // Already has its result: acknowledge, keep one.
            return Ok(());
        }
        let now = now_ms();
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO results (trial_id, attempt, worker_id, result_json, completed_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![trial_id, attempt, worker_id, json, now])?;
        for (report, report_json) in epochs {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO epochs (trial_id, attempt, epoch, worker_id, report_json) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![trial_id, attempt, report.epoch, worker_id, report_json])?;
        }
        let state = match result.status {
            TrialStatus::Completed => TrialState::Done,
            TrialStatus::Diverged => TrialState::Diverged,
        };
        self.set_state(trial_id, state)?;
        // Never resumed now: its checkpoints go once this commits.
        self.drop_checkpoints(trial_id)?;
        self.conn.prepare_cached("DELETE FROM leases WHERE trial_id = ?1")?.execute(params![trial_id])?;
        self.conn
            .prepare_cached(
                "UPDATE attempts SET ended_ms = ?3, outcome = ?4 WHERE trial_id = ?1 AND attempt = ?2",
            )?
            .execute(params![trial_id, attempt, now, state.as_str()])?;
        tracing::info!(trial = %trial_id, "stored the result of a trial outside the running sweep");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::{read_records, LeaseAsk, Registration, Store};
    use super::*;
    use crate::sweep::spec::{self, LoadOptions};

    fn sweep(only: &[&str]) -> crate::sweep::spec::Sweep {
        let text =
            "name: t\nepochs: 1\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [1, 2]\nmethods: [baseline]\n\
                    architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\n\
                    datasets:\n  s:\n    format: synthetic\n";
        let options =
            LoadOptions { only: only.iter().map(|o| o.to_string()).collect(), ..Default::default() };
        spec::parse(Path::new("t.yaml"), text, &options).unwrap()
    }

    fn result() -> TrialResult {
        crate::store::stand_in_result(TrialStatus::Completed, 0.75)
    }

    #[tokio::test]
    async fn a_result_for_a_known_trial_outside_the_slice_is_kept_and_an_unknown_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(30);
        // Seed 1 leased, then the coordinator restarts on seed 2 alone.
        let grant = {
            let (store, _) = Store::open(dir.path(), &sweep(&["seed=1"]), ttl, false).unwrap();
            let registration = Registration {
                worker_id: "w".into(),
                hostname: "h".into(),
                devices: 1,
                memory_mb: Vec::new(),
            };
            store.register(registration).await.unwrap();
            let ask = LeaseAsk {
                worker_id: "w".into(),
                devices: vec![Vec::new()],
                held: Vec::new(),
                cached: Vec::new(),
                condition: String::new(),
                usage: None,
            };
            store.lease(ask).await.unwrap().grant.unwrap()
        };
        let (store, _) = Store::open(dir.path(), &sweep(&["seed=2"]), ttl, false).unwrap();
        let lease = LeaseRef {
            lease_id: grant.lease_id.clone(),
            trial_id: grant.trial_id.clone(),
            holder: "w".into(),
        };
        let json = serde_json::to_string(&result()).unwrap();
        // Another worker naming the lease, or a made-up lease: refused, nothing stored.
        for forged in [
            LeaseRef { holder: "intruder".into(), ..lease.clone() },
            LeaseRef { lease_id: format!("{}-1", grant.trial_id), ..lease.clone() },
        ] {
            let refused = store.complete(forged, result(), json.clone(), Vec::new()).await;
            assert!(matches!(refused, Err(StoreError::LeaseLost { .. })), "{refused:?}");
        }
        assert!(read_records(dir.path()).unwrap().1.iter().all(|r| r.result.is_none()));
        store.complete(lease, result(), json.clone(), Vec::new()).await.unwrap();
        let (_, records) = read_records(dir.path()).unwrap();
        let kept = records.iter().find(|r| r.id == grant.trial_id).unwrap();
        assert_eq!(kept.state, "done");
        assert_eq!(kept.result.as_ref().map(|r| r.top1), Some(0.75));
        // Today's sweep still waits for its own trial.
        assert_eq!(store.progress().borrow().pending, 1);

        let stranger =
            LeaseRef { lease_id: "x-1".into(), trial_id: "0123456789abcdef".into(), holder: "w".into() };
        let refused = store.complete(stranger, result(), json, Vec::new()).await;
        assert!(matches!(refused, Err(StoreError::UnknownTrial { .. })), "{refused:?}");
    }
}
