//! The agent's side of device slots (the model is the coordinator's `slots` module): which leases
//! run on which of this node's devices. Lease requests say so device by device; the coordinator
//! answers with the devices a trial takes (positions in the list the agent registered), and two
//! trials may get the same device. A trial's `CUDA_VISIBLE_DEVICES` lists device ordinals, never
//! slot numbers; its folder (job file, checkpoints) is per slot, so that trials sharing a device
//! never share a folder.

use proto::pb;

use crate::run::Devices;

/// This node's devices and the leases on each.
#[derive(Debug)]
pub(super) struct DeviceTable {
    /// What each device is: a CUDA ordinal, or a CPU rank's index.
    ids: Vec<usize>,
    /// The leases on each device, with the slot number each has there (unique per device).
    on: Vec<Vec<(String, usize)>>,
    /// Trials one device may hold, from registration; 0: `auto` (the coordinator alone knows).
    per_device: u32,
}

/// Where an assigned trial runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    /// CUDA ordinals, or CPU rank indices: one replica each.
    pub devices: Vec<usize>,
    /// The trial's folder name under `devices/`: its first device, and its slot there when that
    /// is not the first (`0`, `0.1`, ...). Kept from trial to trial: creating and deleting a folder
    /// per trial costs more than a no-op trial does.
    pub folder: String,
}

impl DeviceTable {
    pub fn new(devices: &Devices) -> Self {
        let ids: Vec<usize> = match devices {
            Devices::Cpu { ranks } => (0..*ranks).collect(),
            Devices::Cuda(ordinals) => ordinals.clone(),
        };
        Self { on: vec![Vec::new(); ids.len()], ids, per_device: 1 }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// What the coordinator said at registration (the sweep's `trials_per_gpu`; 0: `auto`).
    pub fn set_trials_per_device(&mut self, per_device: u32) {
        self.per_device = per_device;
    }

    /// Whether asking for work makes sense: some device may take one more trial. Under `auto`
    /// only the coordinator can tell (it knows what each trial needs), so the agent asks.
    pub fn has_room(&self) -> bool {
        match self.per_device {
            0 => true,
            n => self.on.iter().any(|leases| leases.len() < n as usize),
        }
    }

    /// For a lease request: the leases on each device, in registration order.
    pub fn loads(&self) -> Vec<pb::DeviceLoad> {
        self.on
            .iter()
            .map(|leases| pb::DeviceLoad { leases: leases.iter().map(|(lease, _)| lease.clone()).collect() })
            .collect()
    }

    /// Takes the devices an assignment names (positions in this table) for `lease`.
    pub fn take(&mut self, lease: &str, indices: &[u32]) -> Result<Placement, String> {
        let positions: Vec<usize> = indices.iter().map(|i| *i as usize).collect();
        if positions.is_empty() {
            return Err("assigned no device".into());
        }
        for (n, &i) in positions.iter().enumerate() {
            if i >= self.ids.len() {
                return Err(format!("assigned device #{i}; this worker has {}", self.ids.len()));
            }
            if positions[..n].contains(&i) {
                return Err(format!("assigned device #{i} twice"));
            }
            if self.per_device > 0 && self.on[i].len() >= self.per_device as usize {
                return Err(format!(
                    "assigned device #{i}, which already runs {} trials (trials_per_gpu {})",
                    self.on[i].len(),
                    self.per_device
                ));
            }
        }
        let mut folder = String::new();
        for (n, &i) in positions.iter().enumerate() {
            let slot = (0..).find(|s| self.on[i].iter().all(|(_, taken)| taken != s)).unwrap_or(0);
            if n == 0 {
                folder = match slot {
                    0 => self.ids[i].to_string(),
                    _ => format!("{}.{slot}", self.ids[i]),
                };
            }
            self.on[i].push((lease.to_string(), slot));
        }
        Ok(Placement { devices: positions.iter().map(|&i| self.ids[i]).collect(), folder })
    }

    /// Frees whatever `lease` held.
    pub fn release(&mut self, lease: &str) {
        for leases in &mut self.on {
            leases.retain(|(l, _)| l != lease);
        }
    }
}

/// Memory of each CUDA device in MB, as the driver reports it (the ordinals as
/// `CUDA_VISIBLE_DEVICES` numbers them, like libtorch); empty when it cannot tell.
#[cfg(feature = "nccl")]
pub fn cuda_memory_mb(ordinals: &[usize]) -> Vec<u64> {
    use cudarc::driver::result;
    // cudarc loads the driver at run time and panics when there is none.
    let probe = std::panic::catch_unwind(|| {
        result::init().ok()?;
        ordinals
            .iter()
            .map(|&ordinal| {
                let device = result::device::get(i32::try_from(ordinal).ok()?).ok()?;
                // SAFETY: `device` is a handle the initialized driver just returned.
                let bytes = unsafe { result::device::total_mem(device) }.ok()?;
                Some((bytes / (1 << 20)) as u64)
            })
            .collect::<Option<Vec<u64>>>()
    });
    probe.ok().flatten().unwrap_or_default()
}

/// Without the `nccl` feature the agent links no CUDA driver bindings: capacity is unknown unless
/// `--device-memory-mb` says it.
#[cfg(not(feature = "nccl"))]
pub fn cuda_memory_mb(_ordinals: &[usize]) -> Vec<u64> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_devices_get_distinct_folders_and_ordinals_not_slots() {
        let mut table = DeviceTable::new(&Devices::Cuda(vec![2, 5]));
        table.set_trials_per_device(2);
        let a = table.take("a", &[1]).unwrap();
        let b = table.take("b", &[1]).unwrap();
        assert_eq!((a.devices, a.folder.as_str()), (vec![5], "5"));
        assert_eq!((b.devices, b.folder.as_str()), (vec![5], "5.1"));
        // Device #1 is full; #0 still has room.
        assert!(table.has_room());
        assert!(table.take("c", &[1]).unwrap_err().contains("already runs 2 trials"));
        let both = table.take("d", &[0, 1]);
        assert!(both.is_err(), "device #1 is full: {both:?}");
        table.release("a");
        // The freed slot is reused: no new folder.
        let d = table.take("d", &[0, 1]).unwrap();
        assert_eq!((d.devices, d.folder.as_str()), (vec![2, 5], "2"));
        let loads: Vec<Vec<String>> = table.loads().into_iter().map(|l| l.leases).collect();
        assert_eq!(loads, vec![vec!["d".to_string()], vec!["b".to_string(), "d".to_string()]]);
        assert!(table.has_room(), "device #0 has a slot left");
        assert_eq!(table.take("e", &[0]).unwrap().folder, "2.1");
        assert!(!table.has_room());
    }

    #[test]
    fn bad_assignments_are_refused() {
        let mut table = DeviceTable::new(&Devices::Cpu { ranks: 2 });
        assert!(table.take("a", &[]).is_err());
        assert!(table.take("a", &[2]).unwrap_err().contains("this worker has 2"));
        assert!(table.take("a", &[0, 0]).unwrap_err().contains("twice"));
        // Refusals take nothing.
        assert_eq!(table.take("a", &[0, 1]).unwrap().devices, vec![0, 1]);
    }

    #[test]
    fn under_auto_the_agent_always_asks() {
        let mut table = DeviceTable::new(&Devices::Cpu { ranks: 1 });
        table.set_trials_per_device(0);
        table.take("a", &[0]).unwrap();
        table.take("b", &[0]).unwrap();
        assert!(table.has_room());
    }
}
