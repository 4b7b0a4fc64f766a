//! Device slots: several small trials on one device.
//!
//! The model, also in the README and `sweeps/noop.yaml`:
//! - A worker offers devices (its GPUs, or its CPU ranks); a trial with `gpus_per_trial: k` runs on
//!   `k` distinct devices of one worker, one replica on each (`0`: on all of them).
//! - `trials_per_gpu: N` (default 1): each device holds at most `N` trials at once; a trial takes
//!   one slot on each of its devices. A multi-device trial takes a slot on each of `k` distinct
//!   devices, never two slots of one device.
//! - `trials_per_gpu: auto`: a device holds trials while their reservations fit its memory (which
//!   the worker reports when it registers). A trial reserves its predicted peak device memory
//!   times [`MEMORY_MARGIN`]: the larger of its own measured peak (epoch reports carry the running
//!   peak, so its first epoch tells) and the peak of any other trial with the same architecture ×
//!   resolution × batch size. Until a measurement exists, or on a device of unknown memory, a
//!   trial takes the whole device. The reservation of a running trial shrinks as soon as its first
//!   epoch is reported, which is when other trials may join it.
//! - The worker says which leases run on each of its devices whenever it asks for work; the
//!   coordinator picks the devices (the assignment names them). A lease the coordinator does not
//!   hold (lost, its trial still being stopped) counts as taking its devices whole.
//!
//! This module is pure: it sees numbers, not the store.

use std::collections::HashMap;
use std::fmt;

use common::TrialSpec;

/// A reservation is the predicted peak times this: allocator growth, fragmentation, and the
/// evaluation at the end of a trial all come on top of the first epoch's peak.
pub const MEMORY_MARGIN: f64 = 1.2;

/// How many trials one device holds: the sweep's `trials_per_gpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialsPerDevice {
    /// At most this many (at least 1).
    Fixed(u32),
    /// As many as their measured memory allows.
    Auto,
}

impl Default for TrialsPerDevice {
    fn default() -> Self {
        TrialsPerDevice::Fixed(1)
    }
}

impl TrialsPerDevice {
    /// On the wire (`RegisterResponse.trials_per_device`): `N`, or 0 for `auto`.
    pub fn to_wire(self) -> u32 {
        match self {
            TrialsPerDevice::Fixed(n) => n,
            TrialsPerDevice::Auto => 0,
        }
    }
}

impl fmt::Display for TrialsPerDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrialsPerDevice::Fixed(n) => write!(f, "{n}"),
            TrialsPerDevice::Auto => f.write_str("auto"),
        }
    }
}

/// What one trial takes of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    /// All of it: nothing else runs beside it.
    Whole,
    /// One slot of `Fixed(N)`.
    Slot,
    /// This many MB of its memory.
    Memory(u64),
}

/// The share of a device with `capacity_mb` (None: unknown) that a trial whose peak device
/// memory is predicted at `peak_mb` (None: not measured yet) takes.
pub fn share(policy: TrialsPerDevice, capacity_mb: Option<u64>, peak_mb: Option<f64>) -> Share {
    match policy {
        TrialsPerDevice::Fixed(1) => Share::Whole,
        TrialsPerDevice::Fixed(_) => Share::Slot,
        TrialsPerDevice::Auto => match (capacity_mb, peak_mb) {
            (Some(capacity), Some(peak)) if peak.is_finite() && peak >= 0.0 => {
                let reserved = (peak * MEMORY_MARGIN).ceil() as u64;
                if reserved >= capacity {
                    Share::Whole
                } else {
                    // A measured zero still takes something: two trials never see a free lunch.
                    Share::Memory(reserved.max(1))
                }
            }
            _ => Share::Whole,
        },
    }
}

/// One of a worker's devices as the scheduler sees it: what it holds and how big it is.
#[derive(Debug, Clone, Default)]
pub struct DeviceView {
    /// MB; None: unknown.
    pub capacity_mb: Option<u64>,
    /// The shares of the trials on it now.
    pub taken: Vec<Share>,
}

impl DeviceView {
    /// Whether a trial taking `share` fits beside what the device holds under `policy`.
    pub fn has_room(&self, policy: TrialsPerDevice, share: Share) -> bool {
        if self.taken.contains(&Share::Whole) {
            return false;
        }
        match share {
            Share::Whole => self.taken.is_empty(),
            Share::Slot => match policy {
                TrialsPerDevice::Fixed(n) => self.taken.len() < n as usize,
                TrialsPerDevice::Auto => self.taken.is_empty(),
            },
            Share::Memory(mb) => {
                let used: u64 = self
                    .taken
                    .iter()
                    .map(|s| match s {
                        Share::Memory(mb) => *mb,
                        // A slot under `auto` cannot happen; counted as the whole device if it does.
                        _ => u64::MAX,
                    })
                    .fold(0, u64::saturating_add);
                self.capacity_mb.is_some_and(|capacity| used.saturating_add(mb) <= capacity)
            }
        }
    }

    /// How full it is, to spread trials over the emptiest devices first.
    fn load(&self) -> (usize, u64) {
        let memory = self.taken.iter().map(|s| if let Share::Memory(mb) = s { *mb } else { 0 }).sum();
        (self.taken.len(), memory)
    }
}

/// The devices (positions in the worker's list) a trial wanting `wanted` of them (0: all) runs on,
/// if enough have room: the emptiest first, so that trials spread before they share.
pub fn place(
    policy: TrialsPerDevice,
    devices: &[DeviceView],
    wanted: u32,
    peak_mb: Option<f64>,
) -> Option<Vec<u32>> {
    let wanted = if wanted == 0 { devices.len() } else { wanted as usize };
    if wanted == 0 || wanted > devices.len() {
        return None;
    }
    let mut fitting: Vec<(usize, &DeviceView)> = devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.has_room(policy, share(policy, d.capacity_mb, peak_mb)))
        .collect();
    if fitting.len() < wanted {
        return None;
    }
    fitting.sort_by_key(|(i, d)| (d.load(), *i));
    let mut chosen: Vec<u32> = fitting[..wanted].iter().map(|(i, _)| *i as u32).collect();
    chosen.sort_unstable();
    Some(chosen)
}

/// Trials whose peak device memory should match: same architecture × resolution × batch size.
pub fn memory_profile(spec: &TrialSpec) -> String {
    profile_key(&spec.architecture, spec.resolution, spec.batch_size)
}

/// [`memory_profile`] from its parts (the store reads them out of stored specs).
pub fn profile_key(architecture: &str, resolution: u32, batch_size: u32) -> String {
    format!("{architecture}@{resolution}px@batch{batch_size}")
}

/// Measured peak device memory, per trial and per [`memory_profile`].
#[derive(Debug, Clone, Default)]
pub struct MemoryBook {
    by_trial: HashMap<String, f64>,
    by_profile: HashMap<String, f64>,
}

impl MemoryBook {
    /// Records a measurement (a running peak or a final one); keeps the largest.
    pub fn record(&mut self, trial_id: &str, profile: &str, peak_mb: f64) {
        if !(peak_mb.is_finite() && peak_mb >= 0.0) {
            return;
        }
        let keep = |slot: &mut f64| *slot = slot.max(peak_mb);
        keep(self.by_trial.entry(trial_id.to_string()).or_insert(peak_mb));
        keep(self.by_profile.entry(profile.to_string()).or_insert(peak_mb));
    }

    /// The predicted peak of a trial: the larger of its own and its profile's, if either is known.
    pub fn peak(&self, trial_id: &str, profile: &str) -> Option<f64> {
        match (self.by_trial.get(trial_id), self.by_profile.get(profile)) {
            (Some(a), Some(b)) => Some(a.max(*b)),
            (a, b) => a.or(b).copied(),
        }
    }
}

/// Why a pending trial can run on no registered worker, if that is so: it wants more devices
/// than the largest worker (of `largest` devices) has.
pub fn unplaceable(trial_id: &str, wanted: u32, largest: u32) -> Option<String> {
    (wanted > largest).then(|| {
        format!("trial {trial_id} needs {wanted} devices (gpus_per_trial); the largest worker has {largest}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(capacity_mb: Option<u64>, taken: &[Share]) -> DeviceView {
        DeviceView { capacity_mb, taken: taken.to_vec() }
    }

    #[test]
    fn fixed_slots_hold_n_trials_per_device() {
        let policy = TrialsPerDevice::Fixed(2);
        let devices = [device(None, &[Share::Slot, Share::Slot]), device(None, &[Share::Slot])];
        assert_eq!(place(policy, &devices, 1, None), Some(vec![1]));
        // A two-device trial needs a slot on two distinct devices: only one has a free slot.
        assert_eq!(place(policy, &devices, 2, None), None);
        let devices = [device(None, &[Share::Slot]), device(None, &[Share::Slot])];
        assert_eq!(place(policy, &devices, 2, None), Some(vec![0, 1]));
    }

    #[test]
    fn one_trial_per_device_by_default() {
        let policy = TrialsPerDevice::default();
        let devices = [device(None, &[Share::Whole]), device(None, &[])];
        assert_eq!(place(policy, &devices, 1, Some(1.0)), Some(vec![1]));
        assert_eq!(place(policy, &devices, 0, None), None, "all devices: one is busy");
        assert_eq!(place(policy, &[device(None, &[]), device(None, &[])], 0, None), Some(vec![0, 1]));
    }

    #[test]
    fn trials_spread_over_the_emptiest_devices_first() {
        let policy = TrialsPerDevice::Fixed(4);
        let devices =
            [device(None, &[Share::Slot, Share::Slot]), device(None, &[]), device(None, &[Share::Slot])];
        assert_eq!(place(policy, &devices, 1, None), Some(vec![1]));
        assert_eq!(place(policy, &devices, 2, None), Some(vec![1, 2]));
    }

    #[test]
    fn auto_packs_by_measured_memory_with_a_margin() {
        let policy = TrialsPerDevice::Auto;
        // 300 MB measured: 360 reserved. Two fit in 1000 MB, a third does not.
        assert_eq!(share(policy, Some(1000), Some(300.0)), Share::Memory(360));
        let one = [device(Some(1000), &[Share::Memory(360)])];
        assert_eq!(place(policy, &one, 1, Some(300.0)), Some(vec![0]));
        let two = [device(Some(1000), &[Share::Memory(360), Share::Memory(360)])];
        assert_eq!(place(policy, &two, 1, Some(300.0)), None);
        // 250 MB: 300 reserved, and 720 + 300 > 1000 still; 200 MB: 240 fits.
        assert_eq!(place(policy, &two, 1, Some(250.0)), None);
        assert_eq!(place(policy, &two, 1, Some(200.0)), Some(vec![0]));
    }

    #[test]
    fn auto_without_a_measurement_or_a_capacity_takes_the_whole_device() {
        let policy = TrialsPerDevice::Auto;
        assert_eq!(share(policy, Some(1000), None), Share::Whole);
        assert_eq!(share(policy, None, Some(10.0)), Share::Whole);
        // A reservation as large as the device is the whole device.
        assert_eq!(share(policy, Some(1000), Some(900.0)), Share::Whole);
        let busy = [device(Some(1000), &[Share::Memory(100)])];
        assert_eq!(place(policy, &busy, 1, None), None, "an unmeasured trial waits for an empty device");
        let whole = [device(Some(1000), &[Share::Whole])];
        assert_eq!(place(policy, &whole, 1, Some(1.0)), None, "nothing joins an unmeasured trial");
    }

    #[test]
    fn the_book_predicts_from_the_trial_or_its_profile_whichever_is_larger() {
        let mut book = MemoryBook::default();
        assert_eq!(book.peak("a", "p"), None);
        book.record("b", "p", 500.0);
        assert_eq!(book.peak("a", "p"), Some(500.0), "a sibling's measurement");
        book.record("a", "p", 300.0);
        assert_eq!(book.peak("a", "p"), Some(500.0));
        book.record("a", "p", 800.0);
        assert_eq!((book.peak("a", "p"), book.peak("b", "p")), (Some(800.0), Some(800.0)));
        book.record("c", "q", f64::NAN);
        assert_eq!(book.peak("c", "q"), None);
    }

    #[test]
    fn a_trial_wanting_more_devices_than_any_worker_is_named() {
        assert_eq!(unplaceable("t", 2, 2), None);
        let message = unplaceable("t", 4, 2).unwrap();
        assert!(message.contains("trial t needs 4 devices") && message.contains("has 2"), "{message}");
    }
}
