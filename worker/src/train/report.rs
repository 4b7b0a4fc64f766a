//! The final evaluation's numbers: per-class precision, recall and F1 with support, their macro
//! and weighted averages (the paper's table 5, as scikit-learn's `classification_report` computes
//! them, a division by zero counting as 0), and the process's peak memory.

use common::outcome::ClassMetrics;

/// Per-class metrics and the macro and weighted averages of a confusion matrix
/// (`confusion[true][predicted]`).
pub fn classification_report(
    classes: &[String],
    confusion: &[Vec<u64>],
) -> (Vec<ClassMetrics>, ClassMetrics, ClassMetrics) {
    let count = confusion.len();
    let mut per_class = Vec::with_capacity(count);
    for (c, row) in confusion.iter().enumerate() {
        let true_positive = row[c] as f64;
        let support: u64 = row.iter().sum();
        let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
        let precision = ratio(true_positive, predicted as f64);
        let recall = ratio(true_positive, support as f64);
        let f1 = ratio(2.0 * precision * recall, precision + recall);
        let label = classes.get(c).cloned().unwrap_or_else(|| format!("class{c}"));
        per_class.push(ClassMetrics { label, precision, recall, f1, support });
    }
    let total: u64 = per_class.iter().map(|m| m.support).sum();
    let average = |label: &str, weight: &dyn Fn(&ClassMetrics) -> f64| {
        let weights: f64 = per_class.iter().map(weight).sum();
        let mean = |value: &dyn Fn(&ClassMetrics) -> f64| {
            ratio(per_class.iter().map(|m| weight(m) * value(m)).sum(), weights)
        };
        ClassMetrics {
            label: label.to_string(),
            precision: mean(&|m| m.precision),
            recall: mean(&|m| m.recall),
            f1: mean(&|m| m.f1),
            support: total,
        }
    };
    let macro_avg = average("macro avg", &|_| 1.0);
    let weighted_avg = average("weighted avg", &|m| m.support as f64);
    (per_class, macro_avg, weighted_avg)
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

/// The process's peak resident memory in MB (`VmHWM`), when the platform tells it.
pub fn peak_host_mb() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// This process's own memory on its busiest GPU, in MB, from NVML's per-process accounting
/// (what `nvidia-smi` lists for the process: the CUDA context and the caching allocator's
/// reserve). A trial runs in a process of its own, so this is the trial's, whatever else shares
/// the device. NVML is loaded at run time (`libnvidia-ml.so.1`, the driver's); without it, or on
/// the CPU, there is no figure.
#[cfg(feature = "nccl")]
pub fn device_used_mb(device: tch::Device) -> Option<f64> {
    if !matches!(device, tch::Device::Cuda(_)) {
        return None;
    }
    static NVML: std::sync::OnceLock<Option<nvml_wrapper::Nvml>> = std::sync::OnceLock::new();
    let nvml = NVML.get_or_init(|| nvml_wrapper::Nvml::init().ok()).as_ref()?;
    let pid = std::process::id();
    let mut busiest: Option<u64> = None;
    // NVML numbers devices physically (it ignores CUDA_VISIBLE_DEVICES): look at every one.
    for index in 0..nvml.device_count().ok()? {
        let Ok(gpu) = nvml.device_by_index(index) else { continue };
        let Ok(processes) = gpu.running_compute_processes() else { continue };
        let own: u64 = processes
            .iter()
            .filter(|p| p.pid == pid)
            .map(|p| match p.used_gpu_memory {
                nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) => bytes,
                nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => 0,
            })
            .sum();
        if own > 0 {
            busiest = Some(busiest.map_or(own, |b| b.max(own)));
        }
    }
    busiest.map(|bytes| bytes as f64 / (1024.0 * 1024.0))
}

/// Without feature `nccl` (the CUDA build) there is no device figure.
#[cfg(not(feature = "nccl"))]
pub fn device_used_mb(_device: tch::Device) -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_matches_scikit_learn_on_a_small_matrix() {
        // y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,2,2]; scikit-learn's classification_report:
        // class 0: p 1.0, r 0.6667, f1 0.8; class 1: p 0.5, r 0.5, f1 0.5; class 2: p 0.5, r 1.0,
        // f1 0.6667; macro p 0.6667 r 0.7222 f1 0.6556; weighted p 0.75 r 0.6667 f1 0.6778.
        let confusion = vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]];
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let (per_class, macro_avg, weighted) = classification_report(&classes, &confusion);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        close(per_class[0].recall, 2.0 / 3.0);
        close(per_class[0].f1, 0.8);
        close(per_class[1].precision, 0.5);
        close(per_class[2].f1, 2.0 / 3.0);
        assert_eq!(per_class.iter().map(|m| m.support).collect::<Vec<_>>(), [3, 2, 1]);
        close(macro_avg.precision, 2.0 / 3.0);
        close(macro_avg.recall, 0.722_222);
        close(macro_avg.f1, 0.655_556);
        close(weighted.precision, 0.75);
        close(weighted.recall, 2.0 / 3.0);
        close(weighted.f1, 0.677_778);
        assert_eq!(weighted.support, 6);
    }

    #[test]
    fn a_class_never_predicted_counts_zero_not_nan() {
        let confusion = vec![vec![2, 0], vec![1, 0]];
        let (per_class, macro_avg, _) = classification_report(&["x".into(), "y".into()], &confusion);
        assert_eq!((per_class[1].precision, per_class[1].f1), (0.0, 0.0));
        assert!(macro_avg.f1.is_finite());
    }

    #[test]
    fn peak_memory_is_read() {
        assert!(peak_host_mb() > 1.0);
        assert_eq!(device_used_mb(tch::Device::Cpu), None);
    }
}
