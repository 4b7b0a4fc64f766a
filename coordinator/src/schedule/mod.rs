//! Which pending trial goes to which asking worker, and what a lost or failed attempt means.
//!
//! Pull-based: a worker asks with what runs on each of its devices; the scheduler picks, among the
//! pending trials that fit its free device slots ([`crate::schedule::slots`]), the one with a cached
//! (dataset, resolution) on that worker if any, longest first by estimated cost, and the devices
//! it runs on. This module is pure bookkeeping in memory; the store persists each decision
//! before applying it here, and rebuilds this state from SQLite on restart.
//!
//! Pending trials are kept in the order they are picked in ([`PendingOrder`]), overall and per
//! cache key, so that a pick reads from the front instead of scanning every trial of the sweep:
//! at the paper grid's 13,440 trials the scan was most of the coordinator's CPU time.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

pub mod simulate;
pub mod slots;
mod workers;

use slots::{DeviceView, MemoryBook, Share, TrialsPerDevice};
use workers::Stranger;
pub use workers::WorkerSpec;

/// Where a trial is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrialState {
    Pending,
    /// Given to a worker, no epoch reported yet.
    Leased,
    /// Its worker has reported at least one epoch of this attempt.
    Running,
    Done,
    Failed,
    Diverged,
}

impl TrialState {
    pub const ALL: [TrialState; 6] = [
        TrialState::Pending,
        TrialState::Leased,
        TrialState::Running,
        TrialState::Done,
        TrialState::Failed,
        TrialState::Diverged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Leased => "leased",
            TrialState::Running => "running",
            TrialState::Done => "done",
            TrialState::Failed => "failed",
            TrialState::Diverged => "diverged",
        }
    }

    /// Nothing more will happen to the trial.
    pub fn is_terminal(self) -> bool {
        matches!(self, TrialState::Done | TrialState::Failed | TrialState::Diverged)
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrialState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrialState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown trial state `{s}`"))
    }
}

/// A trial as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct TrialEntry {
    pub id: String,
    pub state: TrialState,
    pub cost: f64,
    /// Devices it takes; 0: all of a worker's.
    pub devices: u32,
    pub cache_key: String,
    /// Trials of one profile use about the same device memory ([`slots::memory_profile`]).
    pub profile: String,
    /// Attempts started (leases granted).
    pub attempts: u32,
    /// Attempts that failed retryably or whose worker was lost.
    pub failures: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub lease: Option<String>,
    /// A trial that must end with a result before this one can be picked: a
    /// `shrink_perturb_random` trial's `sal` trial, whose deformation count it repeats.
    pub after: Option<String>,
}

/// A worker's grant on one trial, valid until `deadline_ms` (milliseconds since the Unix epoch)
/// unless extended.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    pub trial_id: String,
    pub worker_id: String,
    pub attempt: u32,
    pub devices: u32,
    pub deadline_ms: u64,
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: String,
    pub hostname: String,
    pub devices: u32,
    /// Memory of each device in MB, in the worker's order; empty or 0: unknown.
    pub memory_mb: Vec<u64>,
    pub cached: HashSet<String>,
    pub last_seen_ms: u64,
    /// Has been answered that the sweep is done (the coordinator may stop once all have).
    pub told_done: bool,
}

/// What becomes of a trial whose attempt ended without a result.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterLoss {
    /// Back to pending for another attempt.
    Retry,
    /// Failed for good, with this error.
    Fail(String),
}

/// A pending trial's place in the order of picks: the costliest first, and on equal costs the
/// smaller id, so that the order is reproducible.
#[derive(Debug, Clone, PartialEq)]
struct PendingOrder {
    cost: f64,
    id: String,
}

impl PendingOrder {
    fn of(trial: &TrialEntry) -> Self {
        PendingOrder { cost: trial.cost, id: trial.id.clone() }
    }
}

impl Eq for PendingOrder {}

impl PartialOrd for PendingOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PendingOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        other.cost.total_cmp(&self.cost).then_with(|| self.id.cmp(&other.id))
    }
}

/// What a trial's placement depends on: devices wanted, predicted peak memory (as bits).
type PlacementKind = (u32, Option<u64>);

/// The pending trials, indexed for [`Scheduler::pick`].
#[derive(Debug, Default)]
struct PendingIndex {
    all: BTreeSet<PendingOrder>,
    by_cache_key: HashMap<String, BTreeSet<PendingOrder>>,
    /// How many pending trials want each device count: with fixed slots, where a trial goes
    /// depends on that alone, so a worker with room for none of them is answered at once.
    by_devices: BTreeMap<u32, usize>,
}

impl PendingIndex {
    fn insert(&mut self, trial: &TrialEntry) {
        let order = PendingOrder::of(trial);
        self.by_cache_key.entry(trial.cache_key.clone()).or_default().insert(order.clone());
        if self.all.insert(order) {
            *self.by_devices.entry(trial.devices).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, trial: &TrialEntry) {
        let order = PendingOrder::of(trial);
        if let Some(set) = self.by_cache_key.get_mut(&trial.cache_key) {
            set.remove(&order);
            if set.is_empty() {
                self.by_cache_key.remove(&trial.cache_key);
            }
        }
        if self.all.remove(&order) {
            if let Some(count) = self.by_devices.get_mut(&trial.devices) {
                *count -= 1;
                if *count == 0 {
                    self.by_devices.remove(&trial.devices);
                }
            }
        }
    }
}

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

    /// The pending trial for a worker whose devices run the leases `on_devices` (one list per
    /// device, in the worker's order), if any fits, and the devices it would run on.
    ///
    /// Costs a few lookups when the front of the order fits; with `trials_per_gpu: auto`, a
    /// worker with room for nothing pending walks the pending trials (their placements are
    /// memoised by kind, so each is a hash lookup).
    pub fn pick(&self, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Option<(&TrialEntry, Vec<u32>)> {
        let devices = self.device_views(worker, on_devices);
        if let TrialsPerDevice::Fixed(_) = self.trials_per_device {
            let any_fits = self
                .pending
                .by_devices
                .keys()
                .any(|&wanted| slots::place(self.trials_per_device, &devices, wanted, None).is_some());
            if !any_fits {
                return None;
            }
        }
        // Where a trial goes depends only on how many devices it wants and its predicted memory:
        // place each kind once, not each pending trial.
        let placements: RefCell<HashMap<PlacementKind, Option<Vec<u32>>>> = RefCell::default();
        let place = |order: &PendingOrder| -> Option<(&TrialEntry, Vec<u32>)> {
            let t = self.trials.get(&order.id)?;
            let peak = match self.trials_per_device {
                TrialsPerDevice::Auto => self.memory.peak(&t.id, &t.profile),
                TrialsPerDevice::Fixed(_) => None,
            };
            let on = placements
                .borrow_mut()
                .entry((t.devices, peak.map(f64::to_bits)))
                .or_insert_with(|| slots::place(self.trials_per_device, &devices, t.devices, peak))
                .clone()?;
            Some((t, on))
        };
        // A trial whose (dataset, resolution) the worker has cached beats any other; among those,
        // and among the rest, the order decides.
        let cached = worker
            .cached
            .iter()
            .filter_map(|key| self.pending.by_cache_key.get(key))
            .filter_map(|pending| pending.iter().find_map(&place))
            .min_by(|(a, _), (b, _)| PendingOrder::of(a).cmp(&PendingOrder::of(b)));
        cached.or_else(|| self.pending.all.iter().find_map(&place))
    }

    /// A worker's devices with the shares its running trials take (see [`crate::schedule::slots`]).
    fn device_views(&self, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Vec<DeviceView> {
        (0..worker.devices as usize)
            .map(|i| {
                let capacity_mb = worker.memory_mb.get(i).copied().filter(|mb| *mb > 0);
                let taken = on_devices
                    .get(i)
                    .map(|leases| {
                        leases
                            .iter()
                            .map(|lease_id| {
                                let trial = self
                                    .leases
                                    .get(lease_id)
                                    .filter(|l| l.worker_id == worker.id)
                                    .and_then(|l| self.trials.get(&l.trial_id));
                                match trial {
                                    Some(t) => slots::share(
                                        self.trials_per_device,
                                        capacity_mb,
                                        self.memory.peak(&t.id, &t.profile),
                                    ),
                                    // Not ours any more, but still on the device until it stops.
                                    None => Share::Whole,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                DeviceView { capacity_mb, taken }
            })
            .collect()
    }

    /// Pending trials that want more devices than any registered worker has, with why; none
    /// while no worker is registered.
    pub fn unplaceable(&self) -> Vec<(String, String)> {
        let Some(largest) = self.workers.values().map(|w| w.devices).max() else { return Vec::new() };
        let mut found: Vec<(String, String)> = self
            .trials
            .values()
            .filter(|t| t.state == TrialState::Pending)
            .filter_map(|t| slots::unplaceable(&t.id, t.devices, largest).map(|why| (t.id.clone(), why)))
            .collect();
        found.sort();
        found
    }

    /// Why each pending trial that fits no registered worker does not, for the trials not named
    /// before (each is named once).
    pub fn newly_unplaceable(&mut self) -> Vec<String> {
        let found = self.unplaceable();
        found
            .into_iter()
            .filter(|(id, _)| self.reported_unplaceable.insert(id.clone()))
            .map(|(_, why)| why)
            .collect()
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
            AfterLoss::Fail(format!("{error} (after {} attempts)", trial.failures + 1))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: &str, cost: f64, devices: u32, cache_key: &str) -> TrialEntry {
        TrialEntry {
            id: id.into(),
            state: TrialState::Pending,
            cost,
            devices,
            cache_key: cache_key.into(),
            profile: "noop@32px@batch8".into(),
            attempts: 0,
            failures: 0,
            max_attempts: 3,
            last_error: None,
            lease: None,
            after: None,
        }
    }

    fn worker(devices: u32, cached: &[&str]) -> WorkerEntry {
        WorkerEntry {
            id: "w".into(),
            hostname: "h".into(),
            devices,
            memory_mb: Vec::new(),
            cached: cached.iter().map(|s| s.to_string()).collect(),
            last_seen_ms: 0,
            told_done: false,
        }
    }

    /// `devices` devices running nothing.
    fn idle(devices: usize) -> Vec<Vec<String>> {
        vec![Vec::new(); devices]
    }

    /// `devices` devices, those in `busy` running a lease the scheduler does not know.
    fn busy(devices: usize, busy: &[usize]) -> Vec<Vec<String>> {
        (0..devices).map(|i| if busy.contains(&i) { vec!["elsewhere".into()] } else { Vec::new() }).collect()
    }

    fn lease(id: &str, trial_id: &str) -> Lease {
        Lease {
            id: id.into(),
            trial_id: trial_id.into(),
            worker_id: "w".into(),
            attempt: 1,
            devices: 1,
            deadline_ms: u64::MAX,
        }
    }

    fn picked(s: &Scheduler, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Option<(String, Vec<u32>)> {
        s.pick(worker, on_devices).map(|(t, devices)| (t.id.clone(), devices))
    }

    fn scheduler(trials: Vec<TrialEntry>) -> Scheduler {
        Scheduler::with_trials(trials.into_iter().map(|t| (t.id.clone(), t)).collect())
    }

    #[test]
    fn picks_the_longest_pending_trial_first() {
        let s = scheduler(vec![
            trial("a", 1.0, 0, "x@32"),
            trial("b", 5.0, 0, "x@32"),
            trial("c", 3.0, 0, "x@32"),
        ]);
        assert_eq!(s.pick(&worker(2, &[]), &idle(2)).unwrap().0.id, "b");
    }

    #[test]
    fn prefers_a_trial_whose_dataset_the_worker_has_cached() {
        let s = scheduler(vec![trial("big", 9.0, 0, "x@224"), trial("cached", 1.0, 0, "y@32")]);
        assert_eq!(s.pick(&worker(1, &["y@32"]), &idle(1)).unwrap().0.id, "cached");
        assert_eq!(s.pick(&worker(1, &[]), &idle(1)).unwrap().0.id, "big");
    }

    #[test]
    fn a_trial_takes_its_devices_or_all_of_a_worker() {
        let s = scheduler(vec![trial("two", 9.0, 2, "x"), trial("all", 1.0, 0, "x")]);
        // Two of four free: only the two-device trial fits, on the free ones.
        assert_eq!(picked(&s, &worker(4, &[]), &busy(4, &[0, 2])), Some(("two".into(), vec![1, 3])));
        // One free: nothing fits.
        assert!(s.pick(&worker(4, &[]), &busy(4, &[0, 1, 2])).is_none());
        let s = scheduler(vec![trial("all", 1.0, 0, "x")]);
        assert!(s.pick(&worker(4, &[]), &busy(4, &[3])).is_none());
        assert_eq!(picked(&s, &worker(4, &[]), &idle(4)), Some(("all".into(), vec![0, 1, 2, 3])));
    }

    #[test]
    fn leased_trials_are_not_picked_again() {
        let mut s = scheduler(vec![trial("a", 1.0, 0, "x")]);
        s.grant(Lease {
            id: "l".into(),
            trial_id: "a".into(),
            worker_id: "w".into(),
            attempt: 1,
            devices: 1,
            deadline_ms: 10,
        });
        assert!(s.pick(&worker(1, &[]), &idle(1)).is_none());
        assert_eq!(s.expired(11).len(), 1);
        assert!(s.expired(10).is_empty());
    }

    #[test]
    fn losses_retry_until_max_attempts_then_fail_with_the_last_error() {
        let mut s = scheduler(vec![trial("a", 1.0, 0, "x")]);
        for attempt in 1..=3 {
            let lease = Lease {
                id: format!("l{attempt}"),
                trial_id: "a".into(),
                worker_id: "w".into(),
                attempt,
                devices: 1,
                deadline_ms: 0,
            };
            s.grant(lease);
            let after = s.after_loss("a", "worker lost", true);
            if attempt < 3 {
                assert_eq!(after, AfterLoss::Retry);
                s.end_lease(&format!("l{attempt}"), TrialState::Pending, true, Some("worker lost".into()));
                assert_eq!(s.trial("a").unwrap().state, TrialState::Pending);
            } else {
                assert_eq!(after, AfterLoss::Fail("worker lost (after 3 attempts)".into()));
            }
        }
    }

    #[test]
    fn a_waiting_trial_is_picked_only_once_the_trial_it_waits_for_has_a_result() {
        // The waiting trial is the costlier: without the wait it would go first.
        let waiting = TrialEntry { after: Some("sal".into()), ..trial("random", 9.0, 0, "x") };
        let mut s = scheduler(vec![trial("sal", 1.0, 0, "x"), waiting]);
        let w = worker(1, &[]);
        assert_eq!(s.pick(&w, &[Vec::new()]).unwrap().0.id, "sal");
        s.grant(lease("l", "sal"));
        assert!(s.pick(&w, &[Vec::new()]).is_none());
        // Handed back: pending again, and still the only one to pick.
        s.end_lease("l", TrialState::Pending, false, None);
        assert_eq!(s.pick(&w, &[Vec::new()]).unwrap().0.id, "sal");
        s.set_state("sal", TrialState::Done);
        assert_eq!(s.pick(&w, &[Vec::new()]).unwrap().0.id, "random");
        assert!(s.orphans().is_empty());
        // Rebuilt from scratch (a restart) with the trial it waits for done: ready at once.
        let trials: Vec<TrialEntry> = s.trials().cloned().collect();
        let rebuilt = scheduler(trials);
        assert_eq!(rebuilt.pick(&w, &[Vec::new()]).unwrap().0.id, "random");
    }

    #[test]
    fn a_trial_waiting_for_a_failed_or_absent_trial_is_an_orphan() {
        let waiting = |id: &str, on: &str| TrialEntry { after: Some(on.into()), ..trial(id, 1.0, 0, "x") };
        let mut s = scheduler(vec![trial("sal", 1.0, 0, "x"), waiting("a", "sal"), waiting("b", "gone")]);
        let names = |s: &Scheduler| s.orphans().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(names(&s), ["b"]);
        s.set_state("sal", TrialState::Failed);
        assert_eq!(names(&s), ["a", "b"]);
        assert!(s.orphans()[0].1.contains("sal trial sal it repeats failed"), "{:?}", s.orphans());
        let w = worker(1, &[]);
        assert!(s.pick(&w, &[Vec::new()]).is_none());
    }

    #[test]
    fn counts_follow_state_changes() {
        let mut s = scheduler(vec![trial("a", 1.0, 0, "x"), trial("b", 1.0, 0, "x")]);
        assert_eq!(s.count(TrialState::Pending), 2);
        s.grant(Lease {
            id: "l".into(),
            trial_id: "a".into(),
            worker_id: "w".into(),
            attempt: 1,
            devices: 1,
            deadline_ms: 0,
        });
        assert_eq!((s.count(TrialState::Pending), s.count(TrialState::Leased)), (1, 1));
        s.end_lease("l", TrialState::Done, false, None);
        s.set_state("b", TrialState::Failed);
        assert_eq!(
            (s.count(TrialState::Leased), s.count(TrialState::Done), s.count(TrialState::Failed)),
            (0, 1, 1)
        );
        assert!(s.sweep_done());
    }

    #[test]
    fn trials_per_gpu_lets_trials_share_a_device_and_no_more() {
        let mut s =
            scheduler(vec![trial("a", 3.0, 1, "x"), trial("b", 2.0, 1, "x"), trial("c", 1.0, 1, "x")]);
        s.trials_per_device = TrialsPerDevice::Fixed(2);
        let w = worker(1, &[]);
        s.grant(lease("la", "a"));
        // Device 0 runs `a`: one slot of two is free.
        assert_eq!(picked(&s, &w, &[vec!["la".into()]]), Some(("b".into(), vec![0])));
        s.grant(lease("lb", "b"));
        assert_eq!(picked(&s, &w, &[vec!["la".into(), "lb".into()]]), None, "both slots taken");
        // A lease the worker still runs but the coordinator gave up takes the whole device.
        s.end_lease("lb", TrialState::Pending, false, None);
        assert_eq!(picked(&s, &w, &[vec!["la".into(), "lb".into()]]), None);
        assert_eq!(picked(&s, &w, &[vec!["la".into()]]), Some(("b".into(), vec![0])));
    }

    #[test]
    fn auto_shares_a_device_once_a_trial_of_the_profile_is_measured() {
        let mut s =
            scheduler(vec![trial("a", 3.0, 1, "x"), trial("b", 2.0, 1, "x"), trial("c", 1.0, 1, "x")]);
        s.trials_per_device = TrialsPerDevice::Auto;
        let mut w = worker(1, &[]);
        w.memory_mb = vec![1000];
        assert_eq!(picked(&s, &w, &idle(1)), Some(("a".into(), vec![0])));
        s.grant(lease("la", "a"));
        // `a` is not measured yet: it has the device to itself.
        assert_eq!(picked(&s, &w, &[vec!["la".into()]]), None);
        // Its first epoch peaked at 300 MB: 360 reserved, and `b` (same profile) fits beside it.
        s.memory.record("a", "noop@32px@batch8", 300.0);
        assert_eq!(picked(&s, &w, &[vec!["la".into()]]), Some(("b".into(), vec![0])));
        s.grant(lease("lb", "b"));
        assert_eq!(picked(&s, &w, &[vec!["la".into(), "lb".into()]]), None, "720 + 360 > 1000");
        // A worker that did not say how big its device is runs one trial on it.
        let mut unknown = worker(1, &[]);
        unknown.id = "w".into();
        assert_eq!(picked(&s, &unknown, &[vec!["la".into()]]), None);
    }

    #[test]
    fn trials_wanting_more_devices_than_any_worker_are_named_once_workers_exist() {
        let mut s = scheduler(vec![trial("big", 1.0, 4, "x"), trial("small", 1.0, 1, "x")]);
        assert!(s.unplaceable().is_empty(), "no worker yet: nothing to compare with");
        s.workers.insert("w".into(), worker(2, &[]));
        let found = s.unplaceable();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "big");
        assert!(found[0].1.contains("needs 4 devices"), "{}", found[0].1);
        s.workers.insert("w4".into(), WorkerEntry { id: "w4".into(), ..worker(4, &[]) });
        assert!(s.unplaceable().is_empty());
    }

    #[test]
    fn final_failures_do_not_retry() {
        let s = scheduler(vec![trial("a", 1.0, 0, "x")]);
        assert_eq!(s.after_loss("a", "bad config", false), AfterLoss::Fail("bad config".into()));
    }

    /// What `pick` chose before the pending index: every pending trial scanned, the best by
    /// (cached, cost, smaller id). The index must choose the same trial.
    fn picked_by_scan(s: &Scheduler, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Option<String> {
        let devices = s.device_views(worker, on_devices);
        s.trials
            .values()
            .filter(|t| t.state == TrialState::Pending)
            .filter(|t| slots::place(s.trials_per_device, &devices, t.devices, None).is_some())
            .max_by(|a, b| {
                let hit = |t: &TrialEntry| worker.cached.contains(&t.cache_key);
                hit(a).cmp(&hit(b)).then(a.cost.total_cmp(&b.cost)).then_with(|| b.id.cmp(&a.id))
            })
            .map(|t| t.id.clone())
    }

    #[test]
    fn the_pending_index_picks_what_a_scan_of_every_trial_would_through_leases_and_losses() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Few distinct costs, so that ties (broken by id) are common; a few two-device trials.
        let trials = (0..300)
            .map(|i| {
                let cost = f64::from(rng.random_range(1..6u8));
                let devices = if i % 17 == 0 { 2 } else { 1 };
                trial(&format!("t{i:03}"), cost, devices, &format!("k{}", rng.random_range(0..4u8)))
            })
            .collect();
        let mut s = scheduler(trials);
        let mut live: Vec<Lease> = Vec::new();
        let mut picks = 0;
        for step in 0..600u32 {
            let cached: Vec<String> =
                (0..4).filter(|_| rng.random_bool(0.3)).map(|k| format!("k{k}")).collect();
            let cached: Vec<&str> = cached.iter().map(String::as_str).collect();
            let devices = if rng.random_bool(0.5) { 1 } else { 2 };
            let on = if devices == 2 && rng.random_bool(0.3) { busy(2, &[1]) } else { idle(devices) };
            let asking = worker(devices as u32, &cached);
            let expected = picked_by_scan(&s, &asking, &on);
            let got = s.pick(&asking, &on).map(|(t, _)| t.id.clone());
            assert_eq!(got, expected, "step {step}");
            if let Some(id) = got.filter(|_| rng.random_bool(0.8)) {
                let granted = Lease { id: format!("l{step}"), ..lease("", &id) };
                s.grant(granted.clone());
                live.push(granted);
                picks += 1;
            }
            // Some leases end: lost (back to pending) or done.
            if !live.is_empty() && rng.random_bool(0.5) {
                let ended = live.swap_remove(rng.random_range(0..live.len()));
                let back = if rng.random_bool(0.3) { TrialState::Pending } else { TrialState::Done };
                s.end_lease(&ended.id, back, back == TrialState::Pending, None);
            }
        }
        assert!(picks > 200, "the walk leased trials: {picks}");
        assert_eq!(s.pending.all.len() as u32, s.count(TrialState::Pending));
    }
}
