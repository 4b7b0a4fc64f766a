//! The scheduler replayed on a cost model: how long a sweep takes on W nodes of G GPUs, against
//! the lower bound no schedule can beat, max(longest trial, total work / GPUs).
//!
//! The replay drives the real [`Scheduler::pick`] (longest first, cache preference, device
//! placement) through simulated time: every node asks as its devices free up, a granted trial
//! holds its devices for its cost, and a node caches the (dataset, resolution) of each trial it
//! ran, as a worker does. Each GPU runs one trial at a time here: how much packing several trials
//! onto one GPU buys depends on the GPU and the model, which a cost model in relative units does
//! not know.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::{Lease, Scheduler, TrialEntry, TrialState, TrialsPerDevice, WorkerEntry};

/// A trial to replay: its duration in the model's units and the devices it takes (0: a node's).
#[derive(Debug, Clone)]
pub struct SimTrial {
    pub id: String,
    pub duration: f64,
    pub devices: u32,
    pub cache_key: String,
}

/// The outcome of one replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Makespan {
    pub gpus: u32,
    pub nodes: u32,
    /// When the last trial ends.
    pub makespan: f64,
    pub longest: f64,
    /// Device-time of every trial over the GPUs.
    pub work_per_gpu: f64,
    /// Trials that fit no node (they want more devices than a node has); not replayed.
    pub unplaceable: usize,
}

impl Makespan {
    pub fn lower_bound(&self) -> f64 {
        self.longest.max(self.work_per_gpu)
    }

    /// Makespan over the lower bound: 1.0 is a perfect schedule.
    pub fn ratio(&self) -> f64 {
        if self.lower_bound() > 0.0 {
            self.makespan / self.lower_bound()
        } else {
            1.0
        }
    }
}

/// An end of a trial in simulated time, earliest first (ties: the earlier grant first).
#[derive(Debug, PartialEq)]
struct End {
    at: f64,
    order: u64,
    node: usize,
    lease: String,
}

impl Eq for End {}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for End {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.total_cmp(&other.at).then(self.order.cmp(&other.order))
    }
}

/// Replays `trials` on `gpus` GPUs in nodes of `gpus_per_node` (the last node takes the rest).
pub fn replay(trials: &[SimTrial], gpus: u32, gpus_per_node: u32) -> Makespan {
    let gpus_per_node = gpus_per_node.clamp(1, gpus.max(1));
    let node_sizes: Vec<u32> =
        (0..gpus.div_ceil(gpus_per_node)).map(|i| gpus_per_node.min(gpus - i * gpus_per_node)).collect();
    let largest = node_sizes.iter().copied().max().unwrap_or(0);
    let (placeable, unplaceable): (Vec<&SimTrial>, Vec<&SimTrial>) =
        trials.iter().partition(|t| t.devices <= largest);
    let durations: HashMap<&str, f64> = placeable.iter().map(|t| (t.id.as_str(), t.duration)).collect();
    let entries = placeable
        .iter()
        .map(|t| {
            let entry = TrialEntry {
                id: t.id.clone(),
                state: TrialState::Pending,
                cost: t.duration,
                devices: t.devices,
                cache_key: t.cache_key.clone(),
                profile: String::new(),
                attempts: 0,
                failures: 0,
                max_attempts: 1,
                last_error: None,
                lease: None,
                // The replay keeps no order between trials: a `shrink_perturb_random` trial's
                // wait for its `sal` trial is not modelled.
                after: None,
                deformations: None,
                alone: false,
            };
            (t.id.clone(), entry)
        })
        .collect();
    let mut scheduler = Scheduler::with_trials(entries);
    scheduler.trials_per_device = TrialsPerDevice::Fixed(1);
    let mut nodes: Vec<WorkerEntry> = node_sizes
        .iter()
        .enumerate()
        .map(|(i, &devices)| WorkerEntry {
            id: format!("node-{i}"),
            hostname: format!("node-{i}"),
            devices,
            memory_mb: Vec::new(),
            cached: HashSet::new(),
            last_seen_ms: 0,
            told_done: false,
            condition: String::new(),
            usage: None,
        })
        .collect();
    let mut on_devices: Vec<Vec<Vec<String>>> =
        node_sizes.iter().map(|&d| vec![Vec::new(); d as usize]).collect();
    let mut ends = BinaryHeap::new();
    let (mut now, mut granted) = (0.0_f64, 0u64);
    let mut asking: Vec<usize> = (0..nodes.len()).collect();
    loop {
        for &node in &asking {
            while let Some((trial, devices)) = scheduler.pick(&nodes[node], &on_devices[node]) {
                let (trial_id, cache_key) = (trial.id.clone(), trial.cache_key.clone());
                let lease_id = format!("lease-{granted}");
                scheduler.grant(Lease {
                    id: lease_id.clone(),
                    trial_id: trial_id.clone(),
                    worker_id: nodes[node].id.clone(),
                    attempt: 1,
                    devices: devices.len() as u32,
                    deadline_ms: u64::MAX,
                });
                for &device in &devices {
                    on_devices[node][device as usize].push(lease_id.clone());
                }
                nodes[node].cached.insert(cache_key);
                let at = now + durations[trial_id.as_str()];
                ends.push(Reverse(End { at, order: granted, node, lease: lease_id }));
                granted += 1;
            }
        }
        let Some(Reverse(first)) = ends.pop() else { break };
        now = first.at;
        asking.clear();
        let mut ended = vec![first];
        while ends.peek().is_some_and(|Reverse(e)| e.at <= now) {
            ended.extend(ends.pop().map(|Reverse(e)| e));
        }
        for end in ended {
            scheduler.end_lease(&end.lease, TrialState::Done, false, None);
            for leases in &mut on_devices[end.node] {
                leases.retain(|l| *l != end.lease);
            }
            if !asking.contains(&end.node) {
                asking.push(end.node);
            }
        }
        asking.sort_unstable();
    }
    let device_time: f64 = placeable
        .iter()
        .map(|t| t.duration * f64::from(if t.devices == 0 { gpus_per_node } else { t.devices }))
        .sum();
    Makespan {
        gpus,
        nodes: node_sizes.len() as u32,
        makespan: now,
        longest: placeable.iter().map(|t| t.duration).fold(0.0, f64::max),
        work_per_gpu: if gpus > 0 { device_time / f64::from(gpus) } else { 0.0 },
        unplaceable: unplaceable.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials(durations: &[f64]) -> Vec<SimTrial> {
        durations
            .iter()
            .enumerate()
            .map(|(i, &duration)| SimTrial {
                id: format!("t{i:03}"),
                duration,
                devices: 1,
                cache_key: format!("k{}", i % 3),
            })
            .collect()
    }

    #[test]
    fn equal_trials_fill_every_gpu_and_meet_the_bound() {
        let result = replay(&trials(&[1.0; 16]), 4, 2);
        assert_eq!((result.nodes, result.makespan), (2, 4.0));
        assert_eq!(result.ratio(), 1.0);
    }

    #[test]
    fn longest_first_packs_a_long_tail_under_the_bound_a_fifo_order_would_miss() {
        // One trial of 4 and four of 1 on 2 GPUs: longest first ends at 4 (the bound); the long
        // one started last would end at 6.
        let result = replay(&trials(&[1.0, 1.0, 1.0, 1.0, 4.0]), 2, 2);
        assert_eq!(result.lower_bound(), 4.0);
        assert_eq!(result.makespan, 4.0);
    }

    #[test]
    fn a_trial_taking_a_whole_node_waits_for_it_and_trials_too_big_are_counted_apart() {
        let mut set = trials(&[2.0, 1.0, 1.0]);
        set[0].devices = 0;
        set.push(SimTrial { id: "big".into(), duration: 1.0, devices: 3, cache_key: "k".into() });
        let result = replay(&set, 2, 2);
        assert_eq!(result.unplaceable, 1);
        // The whole-node trial first (longest), then the two others side by side.
        assert_eq!(result.makespan, 3.0);
        assert_eq!(result.work_per_gpu, (2.0 * 2.0 + 1.0 + 1.0) / 2.0);
    }
}
