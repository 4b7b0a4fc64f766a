//! What this node is using, sent with every lease request and heartbeat for the coordinator's
//! dashboard and metrics: the node's CPU use since the previous sample (`/proc/stat`), the
//! resident memory of the agent and its trial processes (`/proc/PID/status`), and each
//! registered GPU's utilisation and memory (NVML, in CUDA builds).
//!
//! Every figure is best effort: a file or a library that cannot be read leaves its figure out
//! (zero, or no device entry) rather than stopping the worker.

use proto::pb;

use crate::run::Devices;

pub(super) struct UsageSampler {
    /// Busy and total jiffies of all CPUs at the previous sample.
    previous_cpu: Option<(u64, u64)>,
    gpus: Vec<usize>,
    #[cfg(feature = "nccl")]
    nvml: Option<nvml_wrapper::Nvml>,
}

impl UsageSampler {
    pub(super) fn new(devices: &Devices) -> Self {
        let gpus = match devices {
            Devices::Cuda(ordinals) => ordinals.clone(),
            Devices::Cpu { .. } => Vec::new(),
        };
        Self {
            previous_cpu: cpu_jiffies(),
            #[cfg(feature = "nccl")]
            nvml: if gpus.is_empty() { None } else { nvml_wrapper::Nvml::init().ok() },
            gpus,
        }
    }

    /// The node's use now; `trial_pids` are the trial processes this agent runs.
    pub(super) fn sample(&mut self, trial_pids: impl IntoIterator<Item = u32>) -> pb::NodeUsage {
        let now = cpu_jiffies();
        let cpu_percent = match (self.previous_cpu, now) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                100.0 * busy1.saturating_sub(busy0) as f32 / (total1 - total0) as f32
            }
            _ => 0.0,
        };
        if now.is_some() {
            self.previous_cpu = now;
        }
        let rss_kib: u64 = std::iter::once(std::process::id())
            .chain(trial_pids)
            .filter_map(super::exhaustion::rss_kib)
            .sum();
        pb::NodeUsage { cpu_percent, rss_mb: rss_kib / 1024, devices: self.devices() }
    }

    #[cfg(feature = "nccl")]
    fn devices(&self) -> Vec<pb::DeviceUsage> {
        let Some(nvml) = &self.nvml else { return Vec::new() };
        // NVML numbers devices physically, as `--gpus` does (unless CUDA_VISIBLE_DEVICES renumbers
        // them, in which case the figures are of the physical devices with those numbers).
        self.gpus
            .iter()
            .filter_map(|&ordinal| {
                let gpu = nvml.device_by_index(u32::try_from(ordinal).ok()?).ok()?;
                let memory = gpu.memory_info().ok()?;
                let utilisation = gpu.utilization_rates().map(|u| u.gpu as f32).unwrap_or(0.0);
                Some(pb::DeviceUsage {
                    utilisation_percent: utilisation,
                    memory_used_mb: memory.used / (1024 * 1024),
                    memory_total_mb: memory.total / (1024 * 1024),
                })
            })
            .collect()
    }

    /// Without feature `nccl` (the CUDA build) there is no NVML and no device figure.
    #[cfg(not(feature = "nccl"))]
    fn devices(&self) -> Vec<pb::DeviceUsage> {
        let _ = &self.gpus;
        Vec::new()
    }
}

/// Busy and total jiffies over all CPUs, from the `cpu` line of `/proc/stat` (idle and iowait
/// count as not busy).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user and nice]
    let counted = &values[..values.len().min(8)];
    let total: u64 = counted.iter().sum();
    let idle = counted.get(3).copied().unwrap_or(0) + counted.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_gives_busy_and_total_without_idle_and_iowait() {
        let (busy, total) = parse_cpu_line("cpu  100 5 50 800 40 3 2 0 7 0").unwrap();
        assert_eq!(total, 100 + 5 + 50 + 800 + 40 + 3 + 2);
        assert_eq!(busy, total - 840);
        assert!(parse_cpu_line("cpu0 1 2 3 4").is_none());
        assert!(parse_cpu_line("cpu  1 x 3").is_none());
    }

    #[test]
    fn a_sample_counts_this_process_s_memory_and_a_busy_cpu() {
        let mut sampler = UsageSampler::new(&Devices::Cpu { ranks: 1 });
        // Keep a CPU busy until the kernel's counters move (they tick every 10 ms or so).
        let start = cpu_jiffies().unwrap();
        let mut spin = 0u64;
        while cpu_jiffies().unwrap().1 < start.1 + 20 {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let usage = sampler.sample([]);
        assert!(usage.rss_mb > 0, "{usage:?}");
        assert!(usage.cpu_percent > 0.0 && usage.cpu_percent <= 100.0, "{usage:?}");
        assert!(usage.devices.is_empty());
    }
}
