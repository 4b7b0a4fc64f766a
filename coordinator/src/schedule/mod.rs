//! Which pending trial goes to which asking worker, and what a lost or failed attempt means.
//!
//! Pull-based: a worker asks with what runs on each of its devices; the scheduler picks, among the
//! pending trials that fit its free device slots ([`crate::schedule::slots`]), the one with a cached
//! (dataset, resolution) on that worker if any, longest first by estimated cost, and the devices
//! it runs on. This module is pure bookkeeping in memory; the store persists each decision
//! before applying it here, and rebuilds this state from SQLite on restart.
//!
//! One module per part: [`model`] (trials, leases, workers), [`pending`] (the pending trials in
//! pick order), [`pick`] (which trial an asking worker gets), and this one (state changes, leases
//! granted and lost, counts).

use std::collections::{HashMap, HashSet};

mod model;
mod pending;
mod pick;
pub mod simulate;
pub mod slots;
#[cfg(test)]
mod tests;
mod workers;

pub use model::{AfterLoss, DeviceUsage, Lease, TrialEntry, TrialState, Usage, WorkerEntry};
use pending::PendingIndex;
use slots::{MemoryBook, TrialsPerDevice};
use workers::Stranger;
pub use workers::WorkerSpec;

/// The scheduler's memory: trials of the current sweep, live leases, workers.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Changed only through [`Scheduler::set_state`] and the lease methods, which keep the
    /// counts and the pending index; read through [`Scheduler::trial`] and [`Scheduler::trials`].
    trials: HashMap<String, TrialEntry>,
    pending: PendingIndex,
    leases: HashMap<String, Lease>,
    workers: HashMap<String, WorkerEntry>,
    /// Workers heard from that are not registered (see [`workers`]).
    strangers: HashMap<String, Stranger>,
    /// The sweep's `trials_per_gpu`.
    pub trials_per_device: TrialsPerDevice,
    /// Measured peak device memory, for `trials_per_gpu: auto`.
    pub memory: MemoryBook,
    /// Trials already named as fitting no registered worker.
    reported_unplaceable: HashSet<String>,
    /// Trials per state, kept as states change: progress is read after every commit.
    tally: HashMap<TrialState, u32>,
    /// The trials that wait for each trial ([`TrialEntry::after`]): they join the pending index
    /// when it ends with a result.
    waiting_on: HashMap<String, Vec<String>>,
}

impl Scheduler {
    pub fn with_trials(trials: HashMap<String, TrialEntry>) -> Self {
        let mut scheduler = Scheduler::default();
        scheduler.set_trials(trials);
        scheduler
    }

    /// Replaces the trials (and counts and indexes them).
    pub fn set_trials(&mut self, trials: HashMap<String, TrialEntry>) {
        self.tally.clear();
        self.pending = PendingIndex::default();
        self.waiting_on.clear();
        for trial in trials.values() {
            *self.tally.entry(trial.state).or_insert(0) += 1;
            if let Some(first) = &trial.after {
                self.waiting_on.entry(first.clone()).or_default().push(trial.id.clone());
            }
        }
        self.trials = trials;
        for trial in self.trials.values() {
            if trial.state == TrialState::Pending && self.is_ready(trial) {
                self.pending.insert(trial);
            }
        }
    }

    /// Whether the trial it waits for, if any, has ended with a result (a diverged trial's
    /// history counts its deformations too).
    fn is_ready(&self, trial: &TrialEntry) -> bool {
        trial.after.as_ref().is_none_or(|first| {
            self.trials.get(first).is_some_and(|t| matches!(t.state, TrialState::Done | TrialState::Diverged))
        })
    }

    /// Pending trials that can never become ready, with why: the trial each waits for failed for
    /// good, or is not among the sweep's trials. The store fails them.
    pub fn orphans(&self) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .trials
            .values()
            .filter(|t| t.state == TrialState::Pending)
            .filter_map(|t| {
                let first = t.after.as_ref()?;
                match self.trials.get(first).map(|f| f.state) {
                    Some(TrialState::Failed) => Some(format!("the sal trial {first} it repeats failed")),
                    None => Some(format!("the sal trial {first} it repeats is not in the sweep")),
                    Some(_) => None,
                }
                .map(|why| (t.id.clone(), why))
            })
            .collect();
        found.sort();
        found
    }

    /// A trial runs alone from now on (it ran out of memory beside others). Set while it is
    /// leased: it joins the pending index again when its lease ends.
    pub fn set_alone(&mut self, trial_id: &str) {
        if let Some(trial) = self.trials.get_mut(trial_id) {
            trial.alone = true;
        }
    }

    /// A trial's result applied `deformations` plastic deformations.
    pub fn set_deformations(&mut self, trial_id: &str, deformations: u32) {
        if let Some(trial) = self.trials.get_mut(trial_id) {
            trial.deformations = Some(deformations);
        }
    }

    /// The deformation count `trial` repeats, when it waits on a trial ([`TrialEntry::after`]):
    /// that trial's. A trial is picked only once it is known ([`Scheduler::is_ready`]).
    pub fn repeated_deformations(&self, trial: &TrialEntry) -> Option<u32> {
        self.trials.get(trial.after.as_ref()?)?.deformations
    }

    pub fn trial(&self, trial_id: &str) -> Option<&TrialEntry> {
        self.trials.get(trial_id)
    }

    pub fn trials(&self) -> impl Iterator<Item = &TrialEntry> {
        self.trials.values()
    }

    pub fn set_state(&mut self, trial_id: &str, state: TrialState) {
        let Some(trial) = self.trials.get_mut(trial_id) else { return };
        let before = trial.state;
        if let Some(count) = self.tally.get_mut(&before) {
            *count = count.saturating_sub(1);
        }
        *self.tally.entry(state).or_insert(0) += 1;
        trial.state = state;
        if before == TrialState::Pending && state != TrialState::Pending {
            self.pending.remove(&self.trials[trial_id]);
        } else if before != TrialState::Pending && state == TrialState::Pending {
            let trial = &self.trials[trial_id];
            if self.is_ready(trial) {
                self.pending.insert(trial);
            }
        }
        // The trials waiting for this one become pickable when it ends with a result (and stop
        // being so, should it be run again).
        if let Some(waiting) = self.waiting_on.get(trial_id) {
            for id in waiting {
                let Some(dependent) = self.trials.get(id).filter(|t| t.state == TrialState::Pending) else {
                    continue;
                };
                if self.is_ready(dependent) {
                    self.pending.insert(dependent);
                } else {
                    self.pending.remove(dependent);
                }
            }
        }
    }

    /// Records a granted lease.
    pub fn grant(&mut self, lease: Lease) {
        self.set_state(&lease.trial_id, TrialState::Leased);
        if let Some(trial) = self.trials.get_mut(&lease.trial_id) {
            trial.attempts = lease.attempt;
            trial.lease = Some(lease.id.clone());
        }
        self.leases.insert(lease.id.clone(), lease);
    }

    /// Leases past their deadline at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<Lease> {
        self.leases.values().filter(|l| l.deadline_ms < now_ms).cloned().collect()
    }

    /// What a lost or retryably failed attempt leads to: another attempt, or failure once
    /// `max_attempts` attempts have failed.
    pub fn after_loss(&self, trial_id: &str, error: &str, retryable: bool) -> AfterLoss {
        let Some(trial) = self.trials.get(trial_id) else { return AfterLoss::Fail(error.to_string()) };
        if retryable && trial.failures + 1 < trial.max_attempts {
            AfterLoss::Retry
        } else if retryable {
            let attempts = trial.failures + 1;
            AfterLoss::Fail(format!(
                "{error} (after {attempts} attempt{})",
                if attempts == 1 { "" } else { "s" }
            ))
        } else {
            AfterLoss::Fail(error.to_string())
        }
    }

    /// Ends a lease; `failed` counts an attempt against the trial.
    pub fn end_lease(&mut self, lease_id: &str, new_state: TrialState, failed: bool, error: Option<String>) {
        let Some(lease) = self.leases.remove(lease_id) else { return };
        if self.trials.get(&lease.trial_id).is_some_and(|t| !t.state.is_terminal()) {
            self.set_state(&lease.trial_id, new_state);
        }
        if let Some(trial) = self.trials.get_mut(&lease.trial_id) {
            if trial.lease.as_deref() == Some(lease_id) {
                trial.lease = None;
            }
            if failed {
                trial.failures += 1;
            }
            if error.is_some() {
                trial.last_error = error;
            }
        }
    }

    /// Records why a trial ended without an attempt of its own (see [`Scheduler::orphans`]).
    pub fn set_error(&mut self, trial_id: &str, error: String) {
        if let Some(trial) = self.trials.get_mut(trial_id) {
            trial.last_error = Some(error);
        }
    }

    /// Counts of trials per state.
    pub fn count(&self, state: TrialState) -> u32 {
        self.tally.get(&state).copied().unwrap_or(0)
    }

    /// Every trial of the sweep has ended.
    pub fn sweep_done(&self) -> bool {
        TrialState::ALL.iter().filter(|s| !s.is_terminal()).all(|s| self.count(*s) == 0)
    }
}
