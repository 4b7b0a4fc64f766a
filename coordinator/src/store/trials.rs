//! Loading a sweep into the store and rebuilding the scheduler's memory from SQLite on restart.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, OptionalExtension};

use crate::schedule::{slots, Lease, TrialEntry, TrialState};
use crate::sweep::identity;
use crate::sweep::spec::Sweep;

use super::api::LoadSummary;
use super::error::{Result, StoreError};
use super::{now_ms, sweeps, Core};

impl Core {
    pub(super) fn set_state(&self, trial_id: &str, state: TrialState) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE trials SET state = ?2, updated_ms = ?3 WHERE id = ?1")?
            .execute(params![trial_id, state.as_str(), now_ms()])?;
        Ok(())
    }

    pub(super) fn load_sweep(&mut self, sweep: &Sweep, retry_failed: bool) -> Result<LoadSummary> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO sweep (id, name, file, updated_ms) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET name = ?1, file = ?2, updated_ms = ?3",
            params![sweep.name, sweep.file.display().to_string(), now],
        )?;
        sweeps::record(&tx, sweep, now)?;
        let mut summary = LoadSummary { trials: sweep.trials.len(), ..Default::default() };
        for trial in &sweep.trials {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO trials (id, spec_json, identity_json, state, cost, devices, cache_key, max_attempts, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    trial.id,
                    trial.spec.canonical_json(),
                    trial.identity,
                    trial.cost,
                    trial.devices,
                    trial.spec.cache_key(),
                    trial.max_attempts,
                    now
                ],
            )?;
            if inserted == 1 {
                summary.new += 1;
            } else {
                // The sweep file may have changed how a cell runs and where its files lie (the
                // spec a worker gets), never what it is.
                tx.execute(
                    "UPDATE trials SET spec_json = ?2, cost = ?3, devices = ?4, max_attempts = ?5 WHERE id = ?1",
                    params![trial.id, trial.spec.canonical_json(), trial.cost, trial.devices, trial.max_attempts],
                )?;
            }
            if retry_failed {
                tx.execute(
                    "UPDATE trials SET state = 'pending', failures = 0, updated_ms = ?2 WHERE id = ?1 AND state = 'failed'",
                    params![trial.id, now],
                )?;
            }
        }
        let in_sweep: HashSet<&str> = sweep.trials.iter().map(|t| t.id.as_str()).collect();
        // Leases that expired while the coordinator was away, or that belong to cells this run
        // does not schedule, go back to pending. That is the coordinator's absence, not the
        // trial's failure: no attempt is counted.
        let stale: Vec<(String, String, u32)> = {
            let mut statement = tx.prepare("SELECT id, trial_id, attempt, deadline_ms FROM leases")?;
            let rows = statement.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, u64>(3)?))
            })?;
            let mut stale = Vec::new();
            for row in rows {
                let (id, trial_id, attempt, deadline) = row?;
                if deadline < now || !in_sweep.contains(trial_id.as_str()) {
                    stale.push((id, trial_id, attempt));
                }
            }
            stale
        };
        for (lease_id, trial_id, attempt) in &stale {
            tx.execute("DELETE FROM leases WHERE id = ?1", params![lease_id])?;
            tx.execute(
                "UPDATE trials SET state = 'pending', updated_ms = ?2 WHERE id = ?1 AND state IN ('leased', 'running')",
                params![trial_id, now],
            )?;
            tx.execute(
                "UPDATE attempts SET ended_ms = ?3, outcome = 'expired' WHERE trial_id = ?1 AND attempt = ?2",
                params![trial_id, attempt, now],
            )?;
        }
        summary.leases_expired = stale.len();
        // A leased or running trial without a lease cannot make progress.
        tx.execute(
            "UPDATE trials SET state = 'pending' WHERE state IN ('leased', 'running')
             AND id NOT IN (SELECT trial_id FROM leases)",
            [],
        )?;
        tx.commit()?;
        self.sweep_ids = sweep.trials.iter().map(|t| t.id.clone()).collect();
        self.reload()?;
        self.fail_orphans()?;
        summary.already_finished = self.sched.trials().filter(|t| t.state.is_terminal()).count();
        Ok(summary)
    }

    /// Fails the pending trials that wait for a trial that failed for good (or is not in the
    /// sweep): they would otherwise keep the sweep from ending.
    pub(super) fn fail_orphans(&mut self) -> Result<()> {
        for (trial_id, why) in self.sched.orphans() {
            tracing::warn!(trial = %trial_id, "{why}: failed without running");
            self.conn
                .prepare_cached(
                    "UPDATE trials SET state = 'failed', last_error = ?2, updated_ms = ?3 WHERE id = ?1",
                )?
                .execute(params![trial_id, why, now_ms()])?;
            self.sched.set_state(&trial_id, TrialState::Failed);
            self.sched.set_error(&trial_id, why);
        }
        Ok(())
    }

    /// The spec a worker gets for `trial`: its stored spec, with the deformation count of the
    /// `sal` trial it waits for filled in, as the scheduler knows it (see
    /// [`common::TrialSpec::deformations`]).
    pub(super) fn leased_spec_json(&self, trial: &TrialEntry) -> Result<String> {
        let spec_json: String = self
            .conn
            .prepare_cached("SELECT spec_json FROM trials WHERE id = ?1")?
            .query_row(params![trial.id], |r| r.get(0))?;
        let Some(first) = &trial.after else { return Ok(spec_json) };
        let corrupt = |what: String, reason: String| StoreError::Corrupt { what, reason };
        let deformations = self.sched.repeated_deformations(trial).ok_or_else(|| {
            corrupt(format!("result of trial {first}, which {} repeats", trial.id), "not known".into())
        })?;
        let mut spec: common::TrialSpec = serde_json::from_str(&spec_json)
            .map_err(|e| corrupt(format!("spec of trial {}", trial.id), e.to_string()))?;
        spec.deformations = Some(deformations);
        Ok(spec.canonical_json())
    }

    /// The deformation counts of the trials others wait on that already have a result (a
    /// restart's memory of what [`super::results`] told the scheduler as they arrived).
    fn count_awaited_deformations(&self, trials: &mut HashMap<String, TrialEntry>) -> Result<()> {
        let awaited: HashSet<String> = trials.values().filter_map(|t| t.after.clone()).collect();
        let mut statement =
            self.conn.prepare_cached("SELECT result_json FROM results WHERE trial_id = ?1")?;
        for first in awaited {
            let Some(trial) = trials.get_mut(&first) else { continue };
            let Some(json) = statement.query_row(params![first], |r| r.get::<_, String>(0)).optional()?
            else {
                continue;
            };
            let result: common::TrialResult = serde_json::from_str(&json).map_err(|e| {
                StoreError::Corrupt { what: format!("result of trial {first}"), reason: e.to_string() }
            })?;
            trial.deformations = Some(result.applied_deformations());
        }
        Ok(())
    }

    /// Rebuilds the scheduler's trials and leases from SQLite; workers stay.
    pub(super) fn reload(&mut self) -> Result<()> {
        let wanted: HashSet<&str> = self.sweep_ids.iter().map(String::as_str).collect();
        let mut trials = HashMap::new();
        {
            let mut statement = self.conn.prepare(
                "SELECT id, state, cost, devices, cache_key, attempts, failures, max_attempts, last_error,
                 json_extract(spec_json, '$.architecture'), json_extract(spec_json, '$.resolution'),
                 json_extract(spec_json, '$.batch_size'),
                 CASE WHEN json_extract(identity_json, '$.method') = 'shrink_perturb_random' THEN identity_json END,
                 alone
                 FROM trials",
            )?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                if !wanted.contains(id.as_str()) {
                    continue;
                }
                let state: String = row.get(1)?;
                let state = state
                    .parse::<TrialState>()
                    .map_err(|reason| StoreError::Corrupt { what: format!("state of trial {id}"), reason })?;
                trials.insert(
                    id.clone(),
                    TrialEntry {
                        id,
                        state,
                        cost: row.get(2)?,
                        devices: row.get(3)?,
                        cache_key: row.get(4)?,
                        profile: slots::profile_key(
                            &row.get::<_, Option<String>>(9)?.unwrap_or_default(),
                            row.get::<_, Option<u32>>(10)?.unwrap_or_default(),
                            row.get::<_, Option<u32>>(11)?.unwrap_or_default(),
                        ),
                        attempts: row.get(5)?,
                        failures: row.get(6)?,
                        max_attempts: row.get(7)?,
                        last_error: row.get(8)?,
                        lease: None,
                        after: row
                            .get::<_, Option<String>>(12)?
                            .and_then(|identity| identity::sal_partner_id(&identity)),
                        deformations: None,
                        alone: row.get(13)?,
                    },
                );
            }
        }
        let mut leases = HashMap::new();
        {
            let mut statement = self
                .conn
                .prepare("SELECT id, trial_id, worker_id, attempt, devices, deadline_ms FROM leases")?;
            let rows = statement.query_map([], |r| {
                Ok(Lease {
                    id: r.get(0)?,
                    trial_id: r.get(1)?,
                    worker_id: r.get(2)?,
                    attempt: r.get(3)?,
                    devices: r.get(4)?,
                    deadline_ms: r.get(5)?,
                })
            })?;
            for lease in rows {
                let lease = lease?;
                if let Some(trial) = trials.get_mut(&lease.trial_id) {
                    trial.lease = Some(lease.id.clone());
                    leases.insert(lease.id.clone(), lease);
                }
            }
        }
        self.count_awaited_deformations(&mut trials)?;
        self.sched.set_trials(trials);
        self.sched.set_leases(leases);
        self.sched.memory = self.measured_memory()?;
        Ok(())
    }

    /// Every peak device memory the store holds (epoch reports' running peaks and results), by
    /// trial and profile: what `trials_per_gpu: auto` packs devices by.
    pub(super) fn measured_memory(&self) -> Result<slots::MemoryBook> {
        let mut book = slots::MemoryBook::default();
        let mut statement = self.conn.prepare(
            "SELECT t.id, json_extract(t.spec_json, '$.architecture'), json_extract(t.spec_json, '$.resolution'),
                    json_extract(t.spec_json, '$.batch_size'), m.peak
             FROM trials t JOIN (
                 SELECT trial_id, json_extract(report_json, '$.peak_device_mb') AS peak FROM epochs
                 UNION ALL
                 SELECT trial_id, json_extract(result_json, '$.peak_device_mb') AS peak FROM results
             ) m ON m.trial_id = t.id
             WHERE m.peak IS NOT NULL",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let profile = slots::profile_key(
                &row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                row.get::<_, Option<u32>>(2)?.unwrap_or_default(),
                row.get::<_, Option<u32>>(3)?.unwrap_or_default(),
            );
            book.record(&id, &profile, row.get(4)?);
        }
        Ok(book)
    }

    /// Remembers a trial's measured peak device memory.
    pub(super) fn note_peak(&mut self, trial_id: &str, peak_mb: Option<f64>) {
        let Some(peak_mb) = peak_mb else { return };
        if let Some(profile) = self.sched.trial(trial_id).map(|t| t.profile.clone()) {
            self.sched.memory.record(trial_id, &profile, peak_mb);
        }
    }

    /// Logs, once each, the pending trials that no registered worker can run.
    pub(super) fn report_unplaceable(&mut self) {
        for why in self.sched.newly_unplaceable() {
            tracing::warn!("{why}: it stays pending until a worker that large registers");
        }
    }
}
