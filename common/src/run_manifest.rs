//! What produced a result: the build, the libraries, the machine and the settings a trial ran
//! with, recorded by the trial's own process beside its result (`TrialResult::manifest`).
//!
//! A trial's id says what it computes; its manifest says where and with what it was computed. Two
//! results of one trial are bit-identical only when the things listed here that change floating
//! point agree (README, "Reproducibility"): the intra-op threads of each rank, the ranks, the CPU's
//! instruction set as libtorch uses it, libtorch itself, and on GPUs the GPU model, CUDA, cuDNN and
//! whether deterministic algorithms were on. Everything is plain text, so that results written by
//! another version still read.

use serde::{Deserialize, Serialize};

/// The environment cuBLAS needs for deterministic results (it reads it when CUDA starts): a
/// fixed workspace per stream instead of one whose size, and so whose split of a reduction,
/// depends on what else runs.
pub const CUBLAS_WORKSPACE_CONFIG: (&str, &str) = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8");

/// The longest text a manifest field may hold when a worker sends it (the coordinator checks).
pub const MAX_FIELD_BYTES: usize = 512;

/// What produced one result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunManifest {
    /// This project's version: `0.1.0 (git 1a2b…)` when built from a git checkout, else the crate
    /// version alone.
    pub version: String,
    /// libtorch's version as the loaded library reports it (`2.11.0`).
    pub libtorch: String,
    /// The CUDA runtime libtorch uses, when the trial ran on GPUs (`13.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// cuDNN's version, when the trial ran on GPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cudnn: Option<String>,
    /// The model of each GPU the trial ran on, in rank order; empty on CPU ranks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// The NVIDIA driver's version, when one is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The CPU's model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// The instruction set libtorch's CPU kernels were dispatched to (`AVX2`, `AVX512`): another
    /// one sums in another order.
    pub cpu_capability: String,
    /// `cpu` (ranks are threads of the trial process) or `cuda`.
    pub devices: String,
    /// Data-parallel replicas.
    pub ranks: u32,
    /// libtorch intra-op threads of each CPU rank (the trial's `cpu_threads`); 0 on GPUs, where
    /// libtorch's default applies.
    pub cpu_threads: u32,
    /// Whether libtorch's deterministic algorithms were on (`deterministic: true`).
    pub deterministic: bool,
    /// `CUBLAS_WORKSPACE_CONFIG` as the trial process saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cublas_workspace_config: Option<String>,
    /// The machine's host name.
    pub host: String,
}

impl RunManifest {
    /// The fields as `(name, value)` rows, in a fixed order, for `show`, `reproduce` and reports.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        vec![
            ("version", self.version.clone()),
            ("libtorch", self.libtorch.clone()),
            ("cuda", or_none(&self.cuda)),
            ("cudnn", or_none(&self.cudnn)),
            ("gpus", if self.gpus.is_empty() { "-".into() } else { self.gpus.join(", ") }),
            ("driver", or_none(&self.driver)),
            ("cpu", self.cpu.clone()),
            ("cpu capability", self.cpu_capability.clone()),
            ("devices", self.devices.clone()),
            ("ranks", self.ranks.to_string()),
            ("cpu threads per rank", self.cpu_threads.to_string()),
            ("deterministic", self.deterministic.to_string()),
            ("CUBLAS_WORKSPACE_CONFIG", or_none(&self.cublas_workspace_config)),
            ("host", self.host.clone()),
        ]
    }

    /// One line: what produced these numbers.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("sal-sweep {}", self.version), format!("libtorch {}", self.libtorch)];
        if let Some(cuda) = &self.cuda {
            parts.push(format!("CUDA {cuda}"));
        }
        if let Some(cudnn) = &self.cudnn {
            parts.push(format!("cuDNN {cudnn}"));
        }
        if !self.gpus.is_empty() {
            parts.push(self.gpus.join(", "));
        }
        if let Some(driver) = &self.driver {
            parts.push(format!("driver {driver}"));
        }
        parts.push(format!("{} ({})", self.cpu, self.cpu_capability));
        let threads = if self.devices == "cpu" {
            format!(", {} thread(s) per rank", self.cpu_threads)
        } else {
            String::new()
        };
        parts.push(format!("{} {} rank(s){threads}", self.ranks, self.devices));
        if self.deterministic {
            parts.push("deterministic algorithms".into());
        }
        parts.push(format!("on {}", self.host));
        parts.join(", ")
    }

    /// The first field longer than [`MAX_FIELD_BYTES`], for the coordinator's checks.
    pub fn oversized_field(&self) -> Option<&'static str> {
        let texts: [(&'static str, &str); 10] = [
            ("version", &self.version),
            ("libtorch", &self.libtorch),
            ("cuda", self.cuda.as_deref().unwrap_or("")),
            ("cudnn", self.cudnn.as_deref().unwrap_or("")),
            ("driver", self.driver.as_deref().unwrap_or("")),
            ("cpu", &self.cpu),
            ("cpu_capability", &self.cpu_capability),
            ("devices", &self.devices),
            ("cublas_workspace_config", self.cublas_workspace_config.as_deref().unwrap_or("")),
            ("host", &self.host),
        ];
        if self.gpus.len() > 1024 || self.gpus.iter().any(|g| g.len() > MAX_FIELD_BYTES) {
            return Some("gpus");
        }
        texts.iter().find(|(_, text)| text.len() > MAX_FIELD_BYTES).map(|(name, _)| *name)
    }
}

/// The project versions among `manifests` (results without one count as `unknown`), sorted and
/// without repeats: more than one means a table mixes the numbers of different builds.
pub fn distinct_versions<'a>(manifests: impl IntoIterator<Item = Option<&'a RunManifest>>) -> Vec<String> {
    let mut versions: Vec<String> = manifests
        .into_iter()
        .map(|m| m.map_or_else(|| "unknown (no manifest)".to_string(), |m| m.version.clone()))
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> RunManifest {
        RunManifest {
            version: version.into(),
            libtorch: "2.11.0".into(),
            cpu: "Some CPU".into(),
            cpu_capability: "AVX2".into(),
            devices: "cpu".into(),
            ranks: 2,
            cpu_threads: 1,
            host: "node1".into(),
            ..RunManifest::default()
        }
    }

    #[test]
    fn a_manifest_reads_back_and_old_results_without_fields_still_read() {
        let m = manifest("0.1.0 (git abc)");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<RunManifest>(&json).unwrap(), m);
        // Off-GPU fields are left out of the JSON; a manifest with fewer fields reads as defaults.
        assert!(!json.contains("cuda") && !json.contains("gpus"), "{json}");
        let partial: RunManifest = serde_json::from_str(r#"{"version":"x"}"#).unwrap();
        assert_eq!(partial.version, "x");
        assert_eq!(partial.ranks, 0);
    }

    #[test]
    fn the_summary_names_what_changes_the_numbers() {
        let summary = manifest("0.1.0 (git abc)").summary();
        for part in
            ["0.1.0 (git abc)", "libtorch 2.11.0", "AVX2", "2 cpu rank(s), 1 thread(s) per rank", "node1"]
        {
            assert!(summary.contains(part), "{part} missing from {summary}");
        }
        let mut gpu = manifest("v");
        gpu.devices = "cuda".into();
        gpu.gpus = vec!["NVIDIA H200".into()];
        gpu.deterministic = true;
        let summary = gpu.summary();
        assert!(summary.contains("NVIDIA H200") && summary.contains("deterministic"), "{summary}");
        assert!(!summary.contains("per rank"), "{summary}");
    }

    #[test]
    fn versions_are_counted_once_and_missing_manifests_count_as_unknown() {
        let (a, b) = (manifest("a"), manifest("b"));
        assert_eq!(distinct_versions([Some(&a), Some(&a)]), vec!["a".to_string()]);
        assert_eq!(distinct_versions([Some(&a), None, Some(&b)]).len(), 3);
    }

    #[test]
    fn oversized_fields_are_named() {
        let mut m = manifest("v");
        assert_eq!(m.oversized_field(), None);
        m.host = "h".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(m.oversized_field(), Some("host"));
    }
}
