//! The pending trials in the order they are picked in ([`PendingOrder`]), overall and per cache
//! key, so that a pick reads from the front instead of scanning every trial of the sweep: at the
//! paper grid's 13,440 trials the scan was most of the coordinator's CPU time.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::TrialEntry;

/// A pending trial's place in the order of picks: the costliest first, and on equal costs the
/// smaller id, so that the order is reproducible.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PendingOrder {
    pub(super) cost: f64,
    pub(super) id: String,
}

impl PendingOrder {
    pub(super) fn of(trial: &TrialEntry) -> Self {
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

/// The pending trials, indexed for [`Scheduler::pick`].
#[derive(Debug, Default)]
pub(super) struct PendingIndex {
    pub(super) all: BTreeSet<PendingOrder>,
    pub(super) by_cache_key: HashMap<String, BTreeSet<PendingOrder>>,
    /// How many pending trials want each device count: with fixed slots, where a trial goes
    /// depends on that alone, so a worker with room for none of them is answered at once.
    pub(super) by_devices: BTreeMap<u32, usize>,
}

impl PendingIndex {
    pub(super) fn insert(&mut self, trial: &TrialEntry) {
        let order = PendingOrder::of(trial);
        self.by_cache_key.entry(trial.cache_key.clone()).or_default().insert(order.clone());
        if self.all.insert(order) {
            *self.by_devices.entry(trial.devices).or_insert(0) += 1;
        }
    }

    pub(super) fn remove(&mut self, trial: &TrialEntry) {
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
