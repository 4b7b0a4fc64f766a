//! The pick: which pending trial an asking worker gets, and on which of its devices.

use std::cell::RefCell;
use std::collections::HashMap;

use super::pending::PendingOrder;
use super::slots::{self, DeviceView, Share, TrialsPerDevice};
use super::{Scheduler, TrialEntry, TrialState, WorkerEntry};

/// What a trial's placement depends on: devices wanted, predicted peak memory (as bits).
type PlacementKind = (u32, Option<u64>);

impl Scheduler {
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
        // A trial that ran out of memory beside others runs on a worker that runs nothing else.
        let busy = on_devices.iter().any(|leases| !leases.is_empty());
        let place = |order: &PendingOrder| -> Option<(&TrialEntry, Vec<u32>)> {
            let t = self.trials.get(&order.id)?;
            if t.alone && busy {
                return None;
            }
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
    pub(super) fn device_views(&self, worker: &WorkerEntry, on_devices: &[Vec<String>]) -> Vec<DeviceView> {
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
}
