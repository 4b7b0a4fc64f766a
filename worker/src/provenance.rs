//! A trial's settings that decide its floating point beyond its definition, and the manifest of
//! what produced its result ([`common::run_manifest`]).
//!
//! - Threads: each CPU rank runs with the trial's own `cpu_threads` intra-op threads, whatever the
//!   agent's load or `--cpu-threads`: libtorch splits a reduction into one chunk per thread, so
//!   another count sums in another order and the last bits differ.
//! - `deterministic: true`: cuDNN's deterministic algorithms, no cuDNN benchmark, libtorch's
//!   deterministic algorithms (an op without one fails the trial instead of running), and
//!   `CUBLAS_WORKSPACE_CONFIG` (cuBLAS reads it when CUDA starts, so the agent puts it in the
//!   trial process's environment, and `worker train` sets it before touching a GPU).
//! - The manifest is read from the loaded libtorch (`at::show_config`), the machine (`/proc`)
//!   and, with the `nccl` feature, NVML.

use std::os::raw::{c_char, c_int};

use common::run_manifest::RunManifest;
use common::{Devices, TrialSpec};

pub use common::run_manifest::CUBLAS_WORKSPACE_CONFIG;

extern "C" {
    // csrc/determinism.cpp
    fn sal_set_deterministic();
    fn sal_deterministic_algorithms() -> c_int;
    fn sal_show_config(out: *mut c_char, capacity: c_int) -> c_int;
    fn sal_cpu_capability(out: *mut c_char, capacity: c_int) -> c_int;
}

/// This build's version: the crate's, and the git commit it was built from when there was one
/// (`build.rs`).
pub fn version() -> String {
    match option_env!("SAL_GIT_COMMIT") {
        Some(commit) if !commit.is_empty() => format!("{} (git {commit})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Intra-op threads of each CPU rank of `spec`; `None` on GPUs (libtorch's default: the host
/// side of CUDA ops does not depend on it).
pub fn rank_threads(spec: &TrialSpec, devices: &Devices) -> Option<i32> {
    match devices {
        Devices::Cpu { .. } => Some(i32::try_from(spec.cpu_threads()).unwrap_or(i32::MAX).max(1)),
        Devices::Cuda(_) => None,
    }
}

/// Applies `deterministic: true` to this process (libtorch's settings are process-wide); a no-op
/// for other trials. Call before the first op of the trial.
pub fn apply(spec: &TrialSpec) {
    if spec.deterministic {
        // SAFETY: takes and returns nothing; libtorch's global context is initialized on first use.
        unsafe { sal_set_deterministic() }
    }
}

/// Sets `CUBLAS_WORKSPACE_CONFIG` in this process's environment for a deterministic trial, unless
/// the user set it. Only sound before other threads run (`worker train` calls it first thing);
/// the agent sets it in the trial process's environment instead.
pub fn set_cublas_environment(spec: &TrialSpec) {
    let (name, value) = CUBLAS_WORKSPACE_CONFIG;
    if spec.deterministic && std::env::var_os(name).is_none() {
        std::env::set_var(name, value);
    }
}

/// Reads a C string out of the shim, growing the buffer once if it was too small.
fn shim_text(read: unsafe extern "C" fn(*mut c_char, c_int) -> c_int) -> String {
    let mut buffer = vec![0u8; 4096];
    for _ in 0..2 {
        let capacity = c_int::try_from(buffer.len()).unwrap_or(c_int::MAX);
        // SAFETY: the shim writes at most `capacity` bytes, NUL included, into `buffer`.
        let length = unsafe { read(buffer.as_mut_ptr().cast(), capacity) };
        let length = usize::try_from(length).unwrap_or(0);
        if length < buffer.len() {
            return String::from_utf8_lossy(&buffer[..length]).into_owned();
        }
        buffer.resize(length + 1, 0);
    }
    String::new()
}

/// libtorch's version from its build settings (`TORCH_VERSION=2.11.0`).
fn libtorch_version(config: &str) -> String {
    config
        .split([',', '\n'])
        .find_map(|part| part.trim().strip_prefix("TORCH_VERSION="))
        .map_or_else(|| "unknown".into(), |v| v.trim().to_string())
}

/// A version libtorch reports as an integer (`13000` for CUDA 13.0, `91000` for cuDNN 9.10.0).
fn cuda_version(v: i64) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

fn cudnn_version(v: i64) -> String {
    // cuDNN 9: major * 10000 + minor * 100 + patch.
    format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
}

/// This machine's host name (also the start of an agent's default worker id).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The CPU's model name.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The NVIDIA driver's version, from the kernel module.
fn driver_from_proc() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Tue ..."
    let line = text.lines().next()?;
    line.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_string)
}

/// GPU models and driver: NVML with the `nccl` feature (it lists the machine's GPUs by their PCI
/// order, not by `CUDA_VISIBLE_DEVICES`, so the names of different GPUs are listed once each).
#[cfg(feature = "nccl")]
fn gpus_and_driver(count: usize) -> (Vec<String>, Option<String>) {
    let Ok(nvml) = nvml_wrapper::Nvml::init() else { return (Vec::new(), driver_from_proc()) };
    let mut names: Vec<String> = (0..nvml.device_count().unwrap_or(0))
        .filter_map(|i| nvml.device_by_index(i).ok()?.name().ok())
        .collect();
    names.sort();
    names.dedup();
    if names.len() == 1 {
        names = vec![names[0].clone(); count];
    }
    (names, nvml.sys_driver_version().ok().or_else(driver_from_proc))
}

#[cfg(not(feature = "nccl"))]
fn gpus_and_driver(_count: usize) -> (Vec<String>, Option<String>) {
    let mut names: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .into_iter()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("information")).ok())
        .filter_map(|text| {
            text.lines().find_map(|line| line.strip_prefix("Model:").map(|m| m.trim().to_string()))
        })
        .collect();
    names.sort();
    names.dedup();
    (names, driver_from_proc())
}

/// What a process reports the same for every trial: read once (the agent runs stand-in trials on
/// threads of its own, thousands a minute in the dispatch benchmark).
struct Machine {
    version: String,
    libtorch: String,
    cpu: String,
    cpu_capability: String,
    driver: Option<String>,
    host: String,
}

fn machine() -> &'static Machine {
    static MACHINE: std::sync::OnceLock<Machine> = std::sync::OnceLock::new();
    MACHINE.get_or_init(|| Machine {
        version: version(),
        libtorch: libtorch_version(&shim_text(sal_show_config)),
        cpu: cpu_model(),
        cpu_capability: shim_text(sal_cpu_capability),
        driver: driver_from_proc(),
        host: hostname(),
    })
}

/// What produces this trial's numbers in this process, read once the trial's settings are in
/// force.
pub fn manifest(spec: &TrialSpec, devices: &Devices) -> RunManifest {
    let machine = machine();
    let cuda = matches!(devices, Devices::Cuda(_));
    let (gpus, driver) =
        if cuda { gpus_and_driver(devices.count()) } else { (Vec::new(), machine.driver.clone()) };
    RunManifest {
        version: machine.version.clone(),
        libtorch: machine.libtorch.clone(),
        cuda: cuda.then(|| cuda_version(tch::utils::version_cudart())),
        cudnn: cuda.then(|| cudnn_version(tch::utils::version_cudnn())),
        gpus,
        driver,
        cpu: machine.cpu.clone(),
        cpu_capability: machine.cpu_capability.clone(),
        devices: if cuda { "cuda" } else { "cpu" }.into(),
        ranks: u32::try_from(devices.count()).unwrap_or(u32::MAX),
        cpu_threads: rank_threads(spec, devices).map_or(0, |t| t.unsigned_abs()),
        // SAFETY: a read of libtorch's global context.
        deterministic: unsafe { sal_deterministic_algorithms() } != 0,
        cublas_workspace_config: std::env::var(CUBLAS_WORKSPACE_CONFIG.0).ok(),
        host: machine.host.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_people_write_them() {
        assert_eq!(
            libtorch_version("  - Build settings: BLAS_INFO=mkl, TORCH_VERSION=2.11.0, USE_CUDA=ON"),
            "2.11.0"
        );
        assert_eq!(libtorch_version("nothing here"), "unknown");
        assert_eq!(cuda_version(13000), "13.0");
        assert_eq!(cuda_version(12080), "12.8");
        assert_eq!(cudnn_version(91000), "9.10.0");
    }

    #[test]
    fn the_loaded_libtorch_describes_itself() {
        let config = shim_text(sal_show_config);
        assert!(libtorch_version(&config).starts_with("2."), "{config}");
        let capability = shim_text(sal_cpu_capability);
        assert!(
            !capability.is_empty() && capability.chars().all(|c| c.is_ascii_alphanumeric()),
            "{capability}"
        );
    }
}
