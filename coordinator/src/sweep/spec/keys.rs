//! The keys a sweep file may have, as one serde structure: its fields are the keys, in the order
//! an unknown key's message lists them and a file with several wrong values hears about them;
//! fields without a default are required. Each key is typed here, and checked against the others
//! in [`super::checks`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use common::flatness::FlatnessConfig;
use common::{Head, Method, Precision};
use sal_core::StressConfig;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use super::DEFAULT_PROGRESS_TIMEOUT_S;
use crate::schedule::slots::TrialsPerDevice;

/// A sweep file's keys, typed but not yet checked against each other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SweepFile {
    pub(super) name: String,
    pub(super) epochs: u32,
    pub(super) batch_size: u32,
    pub(super) learning_rate: f64,
    #[serde(deserialize_with = "axis")]
    pub(super) seeds: Vec<u64>,
    #[serde(deserialize_with = "axis")]
    pub(super) methods: Vec<Method>,
    #[serde(deserialize_with = "axis")]
    pub(super) architectures: Vec<String>,
    #[serde(deserialize_with = "axis")]
    pub(super) optimizers: Vec<String>,
    #[serde(deserialize_with = "axis")]
    pub(super) resolutions: Vec<u32>,
    /// The dataset axis: each name with where and how its data is read.
    #[serde(deserialize_with = "datasets")]
    pub(super) datasets: BTreeMap<String, DatasetEntry>,
    /// Overrides of SAL's defaults, given to the trials of methods that use stress only.
    #[serde(default)]
    pub(super) sal: StressConfig,
    #[serde(default)]
    pub(super) head: Head,
    /// Weights for some of the architectures, relative to the data root.
    #[serde(default)]
    pub(super) pretrained: BTreeMap<String, PathBuf>,
    #[serde(default = "default_max_attempts")]
    pub(super) max_attempts: u32,
    /// 0: all of the devices of whichever worker leases the trial.
    #[serde(default)]
    pub(super) gpus_per_trial: u32,
    #[serde(default, rename = "trials_per_gpu", deserialize_with = "trials_per_gpu")]
    pub(super) trials_per_device: TrialsPerDevice,
    #[serde(default = "default_progress_timeout", rename = "progress_timeout")]
    pub(super) progress_timeout_s: u32,
    /// GPU speed options, the same for every trial of the sweep (see [`common::TrialSpec`]).
    #[serde(default)]
    pub(super) precision: Precision,
    #[serde(default)]
    pub(super) channels_last: bool,
    #[serde(default)]
    pub(super) cudnn_benchmark: bool,
    /// Flatness measured at the end of every trial (opt-in).
    #[serde(default, deserialize_with = "flatness")]
    pub(super) flatness: Option<FlatnessConfig>,
    /// SAM's radius, given to the `sam` trials only.
    #[serde(default, deserialize_with = "given")]
    pub(super) sam_rho: Option<f64>,
    /// Intra-op threads of each CPU rank (see [`common::TrialSpec::cpu_threads`]).
    #[serde(default, deserialize_with = "given")]
    pub(super) cpu_threads: Option<u32>,
    #[serde(default)]
    pub(super) deterministic: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatasetEntry {
    pub(super) format: String,
    #[serde(default)]
    pub(super) root: Option<PathBuf>,
    #[serde(default)]
    pub(super) options: BTreeMap<String, serde_json::Value>,
}

fn default_max_attempts() -> u32 {
    3
}

fn default_progress_timeout() -> u32 {
    DEFAULT_PROGRESS_TIMEOUT_S
}

/// An axis: a non-empty list without repeats (a repeat would be the same trials twice).
fn axis<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + Debug,
{
    let values = Vec::<T>::deserialize(deserializer)?;
    if values.is_empty() {
        return Err(D::Error::custom("empty axis: list at least one value"));
    }
    for (i, value) in values.iter().enumerate() {
        if values[..i].contains(value) {
            return Err(D::Error::custom(format!("{value:?} is listed twice")));
        }
    }
    Ok(values)
}

/// The dataset axis, a mapping of names: at least one.
fn datasets<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, DatasetEntry>, D::Error> {
    let datasets = BTreeMap::deserialize(deserializer)?;
    if datasets.is_empty() {
        return Err(D::Error::custom("empty axis: name at least one dataset"));
    }
    Ok(datasets)
}

/// A key that may be left out but, when given, holds a value: `~` is refused as the value's type
/// would refuse it, not read as absent.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// `trials_per_gpu`: an integer of at least 1, or `auto` (1 when absent).
fn trials_per_gpu<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TrialsPerDevice, D::Error> {
    let expected = "an integer of at least 1, or `auto`";
    match Value::deserialize(deserializer)? {
        Value::String(text) if text == "auto" => Ok(TrialsPerDevice::Auto),
        Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Ok(TrialsPerDevice::Fixed(n)),
            _ => Err(D::Error::custom(format!("must be {expected}, got {n}"))),
        },
        other => Err(D::Error::custom(format!("must be {expected}, got {other:?}"))),
    }
}

/// `flatness`: `false` (or absent) measures nothing, `true` measures with the spec's defaults, a
/// mapping overrides some of them.
fn flatness<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<FlatnessConfig>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some(FlatnessConfig::default())),
        other => FlatnessConfig::deserialize(other).map(Some).map_err(D::Error::custom),
    }
}
