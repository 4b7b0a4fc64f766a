//! Sweep files: parse, validate and expand into trials.
//!
//! A sweep file is YAML. Every axis (`seeds`, `methods`, `architectures`, `optimizers`,
//! `resolutions`, `datasets`) expands; each cell is one [`TrialSpec`], the same definition
//! `worker train --trial FILE` reads. A trial's id is a hash of what it computes (see
//! [`crate::sweep::identity`]: never its dataset root or weights path), so rerunning a sweep finds its
//! finished cells wherever its files now lie, and a new seed or axis value adds only new cells.
//!
//! Every error names the file, the line and the key: YAML syntax errors carry their own position;
//! for errors found after parsing, [`LineIndex`] finds the line of a key path in the raw text.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use common::flatness::FlatnessConfig;
use common::names::{ARCHITECTURES, NOOP, OPTIMIZERS};
use common::{DatasetSpec, Head, Method, Precision, TrialSpec};
use sal::StressConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::sweep::identity::{self, WeightsDigests};

use crate::schedule::slots::TrialsPerDevice;

/// Every key a sweep file may have.
pub const KEYS: &[&str] = &[
    "name",
    "epochs",
    "batch_size",
    "learning_rate",
    "seeds",
    "methods",
    "architectures",
    "optimizers",
    "resolutions",
    "datasets",
    "sal",
    "head",
    "pretrained",
    "max_attempts",
    "gpus_per_trial",
    "trials_per_gpu",
    "progress_timeout",
    "precision",
    "channels_last",
    "cudnn_benchmark",
    "flatness",
    "sam_rho",
    "cpu_threads",
    "deterministic",
];

const REQUIRED: &[&str] = &[
    "name",
    "epochs",
    "batch_size",
    "learning_rate",
    "seeds",
    "methods",
    "architectures",
    "optimizers",
    "resolutions",
    "datasets",
];

/// Every architecture a trial may name: the worker's registry plus the stand-in.
pub fn known_architectures() -> Vec<&'static str> {
    let mut known: Vec<&'static str> = ARCHITECTURES.to_vec();
    known.push(NOOP);
    known
}

/// A sweep file that cannot be run, with where it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_invalid(file, *line, key, message))]
    Invalid { file: PathBuf, line: usize, key: String, message: String },
    #[error("--only {filter}: {message}")]
    Only { filter: String, message: String },
}

fn render_invalid(file: &Path, line: usize, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!("{}:{line}: {message}", file.display())
    } else {
        format!("{}:{line}: `{key}`: {message}", file.display())
    }
}

/// How to resolve and check what a sweep file points at.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Relative dataset roots and pretrained weights are taken under this folder (default: the
    /// sweep file's folder).
    pub data_root: Option<PathBuf>,
    /// Check that dataset roots and weights exist (when the data must be on this machine).
    pub check_data: bool,
    /// `key=value[,value]` slices of the grid; all must hold.
    pub only: Vec<String>,
}

/// One cell of the grid with one seed, ready to schedule.
#[derive(Debug, Clone)]
pub struct PlannedTrial {
    /// Stable: a hash of `identity`.
    pub id: String,
    /// What the trial computes (see [`crate::sweep::identity`]).
    pub identity: String,
    /// The trial as it runs here: with today's dataset root and weights path.
    pub spec: TrialSpec,
    /// Estimated relative cost (longest first).
    pub cost: f64,
    /// Devices the trial takes; 0: all of a worker's.
    pub devices: u32,
    pub max_attempts: u32,
}

impl PlannedTrial {
    /// The (dataset, resolution) whose decoded cache the trial needs: `name@resolution`.
    pub fn cache_key(&self) -> String {
        cache_key(&self.spec)
    }
}

pub fn cache_key(spec: &TrialSpec) -> String {
    format!("{}@{}", spec.dataset.name, spec.resolution)
}

/// A validated, expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub file: PathBuf,
    pub trials: Vec<PlannedTrial>,
    /// Seconds a trial may go without progress (and more when 10 of its epochs take longer)
    /// before its worker kills it: the sweep's `progress_timeout`.
    pub progress_timeout_s: u32,
    /// How many trials share one device: the sweep's `trials_per_gpu` (see [`crate::schedule::slots`]).
    pub trials_per_device: TrialsPerDevice,
}

/// `progress_timeout` when a sweep sets none: 15 minutes.
pub const DEFAULT_PROGRESS_TIMEOUT_S: u32 = 15 * 60;

/// Reads, validates and expands a sweep file.
pub fn load(file: &Path, options: &LoadOptions) -> Result<Sweep, SpecError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| SpecError::Read { file: file.into(), source })?;
    parse(file, &text, options)
}

/// Validates and expands a sweep file's text; `file` is only used in messages and to resolve
/// relative paths when no data root is given.
pub fn parse(file: &Path, text: &str, options: &LoadOptions) -> Result<Sweep, SpecError> {
    let doc = Document::new(file, text)?;
    let raw = doc.read()?;
    let data_root = match &options.data_root {
        Some(root) => root.clone(),
        None => file.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut trials = raw.expand(&doc, &data_root, options.check_data)?;
    for filter in &options.only {
        trials = apply_only(filter, trials)?;
    }
    if !options.only.is_empty() {
        require_sal_partners(&trials, &options.only)?;
    }
    Ok(Sweep {
        name: raw.name,
        file: file.to_path_buf(),
        trials,
        progress_timeout_s: raw.progress_timeout_s,
        trials_per_device: raw.trials_per_device,
    })
}

/// The sweep file's keys, typed but not yet checked against each other.
struct RawSweep {
    name: String,
    epochs: u32,
    batch_size: u32,
    learning_rate: f64,
    seeds: Vec<u64>,
    methods: Vec<Method>,
    architectures: Vec<String>,
    optimizers: Vec<String>,
    resolutions: Vec<u32>,
    datasets: BTreeMap<String, DatasetEntry>,
    sal: StressConfig,
    head: Head,
    pretrained: BTreeMap<String, PathBuf>,
    max_attempts: u32,
    gpus_per_trial: u32,
    progress_timeout_s: u32,
    trials_per_device: TrialsPerDevice,
    /// GPU speed options, the same for every trial of the sweep (see [`TrialSpec`]).
    precision: Precision,
    channels_last: bool,
    cudnn_benchmark: bool,
    /// Flatness measured at the end of every trial (opt-in).
    flatness: Option<FlatnessConfig>,
    /// SAM's radius, given to the `sam` trials only.
    sam_rho: Option<f64>,
    /// Intra-op threads of each CPU rank (see [`TrialSpec::cpu_threads`]).
    cpu_threads: Option<u32>,
    deterministic: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetEntry {
    format: String,
    #[serde(default)]
    root: Option<PathBuf>,
    #[serde(default)]
    options: BTreeMap<String, serde_json::Value>,
}

/// The parsed YAML with the text it came from, to put line numbers on errors.
struct Document<'a> {
    file: &'a Path,
    root: serde_yaml_ng::Mapping,
    lines: LineIndex,
}

impl<'a> Document<'a> {
    fn new(file: &'a Path, text: &str) -> Result<Self, SpecError> {
        let lines = LineIndex::new(text);
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
            let message = e.to_string();
            // A duplicate key comes without a position: point at its second occurrence.
            let repeated = message
                .strip_prefix("duplicate entry with key \"")
                .and_then(|rest| rest.split('"').next())
                .and_then(|key| lines.repeated_line(key));
            let line = repeated.or(e.location().map(|l| l.line())).unwrap_or(1);
            SpecError::Invalid {
                file: file.into(),
                line,
                key: String::new(),
                message: format!("invalid YAML: {message}"),
            }
        })?;
        let root = match value {
            Value::Mapping(map) => map,
            Value::Null => serde_yaml_ng::Mapping::new(),
            _ => {
                return Err(SpecError::Invalid {
                    file: file.into(),
                    line: 1,
                    key: String::new(),
                    message: "a sweep file is a mapping of keys (name, epochs, ...)".into(),
                })
            }
        };
        Ok(Self { file, root, lines })
    }

    fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.file.into(),
            line: self.lines.line_of(key),
            key: key.into(),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }

    /// Deserializes one key; on failure, the line of the innermost key the message names.
    fn typed<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SpecError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        serde_yaml_ng::from_value(value.clone()).map(Some).map_err(|e| self.value_error(key, &e))
    }

    fn value_error(&self, key: &str, error: &serde_yaml_ng::Error) -> SpecError {
        let message = error.to_string();
        // serde names an unknown field as "unknown field `x`": point at it when it is indexed.
        let inner = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .and_then(|field| self.lines.find_below(key, field));
        match inner {
            Some(path) => self.error(&path, message),
            None => self.error(key, message),
        }
    }

    fn required<T: DeserializeOwned>(&self, key: &str) -> Result<T, SpecError> {
        self.typed(key)?.ok_or_else(|| SpecError::Invalid {
            file: self.file.into(),
            line: 1,
            key: key.into(),
            message: "missing (required)".into(),
        })
    }

    /// An axis: a non-empty list without repeats.
    fn axis<T: DeserializeOwned + PartialEq + fmt::Debug>(&self, key: &str) -> Result<Vec<T>, SpecError> {
        let values: Vec<T> = self.required(key)?;
        if values.is_empty() {
            return Err(self.error(key, "empty axis: list at least one value"));
        }
        for (i, value) in values.iter().enumerate() {
            if values[..i].contains(value) {
                return Err(self.error(key, format!("{value:?} is listed twice")));
            }
        }
        Ok(values)
    }

    fn read(&self) -> Result<RawSweep, SpecError> {
        for key in self.root.keys() {
            let Some(name) = key.as_str() else {
                return Err(SpecError::Invalid {
                    file: self.file.into(),
                    line: 1,
                    key: String::new(),
                    message: format!("keys are strings, found {key:?}"),
                });
            };
            if !KEYS.contains(&name) {
                return Err(self.error(name, format!("unknown key (known: {})", KEYS.join(", "))));
            }
        }
        for key in REQUIRED {
            if self.get(key).is_none() {
                return Err(SpecError::Invalid {
                    file: self.file.into(),
                    line: 1,
                    key: (*key).into(),
                    message: "missing (required)".into(),
                });
            }
        }
        let datasets: BTreeMap<String, DatasetEntry> = self.required("datasets")?;
        if datasets.is_empty() {
            return Err(self.error("datasets", "empty axis: name at least one dataset"));
        }
        Ok(RawSweep {
            name: self.required("name")?,
            epochs: self.required("epochs")?,
            batch_size: self.required("batch_size")?,
            learning_rate: self.required("learning_rate")?,
            seeds: self.axis("seeds")?,
            methods: self.axis("methods")?,
            architectures: self.axis("architectures")?,
            optimizers: self.axis("optimizers")?,
            resolutions: self.axis("resolutions")?,
            datasets,
            sal: self.typed("sal")?.unwrap_or_default(),
            head: self.typed("head")?.unwrap_or_default(),
            pretrained: self.typed("pretrained")?.unwrap_or_default(),
            max_attempts: self.typed("max_attempts")?.unwrap_or(3),
            gpus_per_trial: self.typed("gpus_per_trial")?.unwrap_or(0),
            progress_timeout_s: self.typed("progress_timeout")?.unwrap_or(DEFAULT_PROGRESS_TIMEOUT_S),
            trials_per_device: self.trials_per_gpu()?,
            precision: self.typed("precision")?.unwrap_or_default(),
            channels_last: self.typed("channels_last")?.unwrap_or(false),
            cudnn_benchmark: self.typed("cudnn_benchmark")?.unwrap_or(false),
            // `flatness: {}` (or `flatness: true`) asks for the spec's defaults.
            flatness: match self.get("flatness") {
                Some(serde_yaml_ng::Value::Bool(false)) | None => None,
                Some(serde_yaml_ng::Value::Bool(true)) => Some(FlatnessConfig::default()),
                Some(_) => self.typed("flatness")?,
            },
            sam_rho: self.typed("sam_rho")?,
            cpu_threads: self.typed("cpu_threads")?,
            deterministic: self.typed("deterministic")?.unwrap_or(false),
        })
    }

    /// `trials_per_gpu`: an integer of at least 1, or `auto`; 1 when absent.
    fn trials_per_gpu(&self) -> Result<TrialsPerDevice, SpecError> {
        const KEY: &str = "trials_per_gpu";
        let expected = "an integer of at least 1, or `auto`";
        match self.get(KEY) {
            None => Ok(TrialsPerDevice::default()),
            Some(Value::String(text)) if text == "auto" => Ok(TrialsPerDevice::Auto),
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n >= 1 => Ok(TrialsPerDevice::Fixed(n)),
                _ => Err(self.error(KEY, format!("must be {expected}, got {n}"))),
            },
            Some(other) => Err(self.error(KEY, format!("must be {expected}, got {other:?}"))),
        }
    }
}

impl RawSweep {
    fn check(&self, doc: &Document<'_>, data_root: &Path, check_data: bool) -> Result<(), SpecError> {
        if self.name.trim().is_empty() {
            return Err(doc.error("name", "must not be empty"));
        }
        if self.epochs == 0 {
            return Err(doc.error("epochs", "must be at least 1"));
        }
        if self.methods.contains(&Method::Baseline2x) && self.epochs > MAX_EPOCHS_2X {
            return Err(doc.error(
                "epochs",
                format!(
                    "{} is too many for `baseline_2x`, which trains twice as long (at most {MAX_EPOCHS_2X})",
                    self.epochs
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(doc.error("batch_size", "must be at least 1"));
        }
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return Err(doc
                .error("learning_rate", format!("must be a finite number > 0, got {}", self.learning_rate)));
        }
        if self.progress_timeout_s == 0 {
            return Err(doc.error("progress_timeout", "must be at least 1 second"));
        }
        if self.max_attempts == 0 {
            return Err(doc.error("max_attempts", "must be at least 1"));
        }
        // CPU ranks have no bfloat16 autocast here: such a trial would fail on every worker.
        if !self.precision.is_fp32() && self.gpus_per_trial == 0 {
            return Err(doc.error("precision", "bf16 runs on GPUs only: set `gpus_per_trial` to 1 or more"));
        }
        if let Some(threads) = self.cpu_threads {
            if !(1..=common::trial::MAX_CPU_THREADS).contains(&threads) {
                return Err(doc.error(
                    "cpu_threads",
                    format!("must be in 1..={}, got {threads}", common::trial::MAX_CPU_THREADS),
                ));
            }
        }
        // What cannot be deterministic is refused here, not by every worker in turn.
        if self.deterministic && self.cudnn_benchmark {
            return Err(doc.error(
                "cudnn_benchmark",
                "cuDNN's benchmark picks algorithms by timing: it cannot be on with `deterministic: true`",
            ));
        }
        if self.deterministic && self.gpus_per_trial == 0 {
            return Err(doc.error(
                "deterministic",
                "the number of replicas would depend on the worker that runs the trial: set `gpus_per_trial`",
            ));
        }
        if let Some(r) = self.resolutions.iter().find(|r| **r < 8) {
            return Err(doc.error("resolutions", format!("{r} px is too small (at least 8)")));
        }
        let known = known_architectures();
        if let Some(a) = self.architectures.iter().find(|a| !known.contains(&a.as_str())) {
            return Err(doc.error(
                "architectures",
                format!("unknown architecture `{a}` (known: {})", known.join(", ")),
            ));
        }
        let optimizers = OPTIMIZERS;
        if let Some(o) = self.optimizers.iter().find(|o| !optimizers.contains(&o.as_str())) {
            return Err(doc
                .error("optimizers", format!("unknown optimizer `{o}` (known: {})", optimizers.join(", "))));
        }
        if self.methods.iter().any(|m| m.uses_stress()) {
            self.sal.validate().map_err(|e| doc.error("sal", e.to_string()))?;
        }
        if self.methods.contains(&Method::ShrinkPerturbRandom) && !self.methods.contains(&Method::Sal) {
            return Err(doc.error(
                "methods",
                "`shrink_perturb_random` repeats the deformation count of the `sal` trial of its cell and \
                 seed: add `sal` to `methods`",
            ));
        }
        if let Some(rho) = self.sam_rho {
            if !(rho.is_finite() && rho > 0.0) {
                return Err(doc.error("sam_rho", format!("must be a finite number > 0, got {rho}")));
            }
            if !self.methods.contains(&Method::Sam) {
                return Err(doc.error("sam_rho", "is set but `methods` has no `sam`"));
            }
        }
        if let Some(flatness) = &self.flatness {
            // The error names `flatness.KEY`: point at that line when it is indexed.
            flatness.validate().map_err(|e| {
                let common::error::SpecError::InvalidField { field, reason } = e;
                doc.error(&field, reason)
            })?;
        }
        let only_noop = self.architectures.iter().all(|a| a == NOOP);
        for (name, entry) in &self.datasets {
            let key = format!("datasets.{name}");
            if !common::dataset::FORMATS.contains(&entry.format.as_str()) {
                return Err(doc.error(
                    &format!("{key}.format"),
                    format!(
                        "unknown dataset format `{}` (known: {})",
                        entry.format,
                        common::dataset::FORMATS.join(", ")
                    ),
                ));
            }
            // The worker's own checks of the options, so that a typo fails here and not on a
            // worker hours later. The noop stand-in reads no data and has options of its own.
            if !only_noop {
                let dataset = DatasetSpec {
                    name: name.clone(),
                    format: entry.format.clone(),
                    root: entry.root.clone(),
                    options: entry.options.clone(),
                };
                if let Err(common::SpecError::InvalidField { field, reason }) =
                    common::dataset::check(&dataset)
                {
                    let at = field.strip_prefix("dataset").unwrap_or("");
                    return Err(doc.error(&format!("{key}{at}"), reason));
                }
            }
            match (&entry.root, entry.format.as_str()) {
                (None, "synthetic") => {}
                (None, _) => return Err(doc.error(&key, format!("format `{}` needs a `root`", entry.format))),
                (Some(root), _) => {
                    let root = data_root.join(root);
                    if check_data && !root.is_dir() {
                        return Err(doc.error(
                            &format!("{key}.root"),
                            format!("dataset root {} is not a folder", root.display()),
                        ));
                    }
                }
            }
        }
        for (architecture, weights) in &self.pretrained {
            let key = format!("pretrained.{architecture}");
            if !self.architectures.contains(architecture) {
                return Err(doc.error(&key, format!("`{architecture}` is not in `architectures`")));
            }
            let weights = data_root.join(weights);
            if check_data && !weights.is_file() {
                return Err(doc.error(&key, format!("weights file {} does not exist", weights.display())));
            }
            // A file this machine sees is checked before any trial is leased: a partial or foreign
            // one would otherwise fail every trial of the architecture, on every worker. The
            // stand-in loads nothing.
            if weights.is_file() && architecture != NOOP {
                common::weights_manifest::check_file(architecture, &weights)
                    .map_err(|e| doc.error(&key, e.to_string()))?;
            }
        }
        Ok(())
    }

    fn expand(
        &self,
        doc: &Document<'_>,
        data_root: &Path,
        check_data: bool,
    ) -> Result<Vec<PlannedTrial>, SpecError> {
        self.check(doc, data_root, check_data)?;
        let mut digests = WeightsDigests::default();
        let mut trials = Vec::new();
        for architecture in &self.architectures {
            for optimizer in &self.optimizers {
                for (name, entry) in &self.datasets {
                    for &resolution in &self.resolutions {
                        for &method in &self.methods {
                            for &seed in &self.seeds {
                                let spec = TrialSpec {
                                    architecture: architecture.clone(),
                                    optimizer: optimizer.clone(),
                                    dataset: DatasetSpec {
                                        name: name.clone(),
                                        format: entry.format.clone(),
                                        root: entry.root.as_ref().map(|r| data_root.join(r)),
                                        options: entry.options.clone(),
                                    },
                                    resolution,
                                    method,
                                    // Baselines ignore SAL's settings: keep their ids independent of them.
                                    sal: if method.uses_stress() {
                                        self.sal.clone()
                                    } else {
                                        StressConfig::default()
                                    },
                                    // The compute-matched baseline: SAM's two gradients per step.
                                    epochs: if method == Method::Baseline2x {
                                        2 * self.epochs
                                    } else {
                                        self.epochs
                                    },
                                    batch_size: self.batch_size,
                                    learning_rate: self.learning_rate,
                                    seed,
                                    head: self.head,
                                    pretrained: self.pretrained.get(architecture).map(|p| data_root.join(p)),
                                    precision: self.precision,
                                    channels_last: self.channels_last,
                                    cudnn_benchmark: self.cudnn_benchmark,
                                    flatness: self.flatness.clone(),
                                    // Other methods ignore it: keep their ids independent of it.
                                    sam_rho: if method == Method::Sam { self.sam_rho } else { None },
                                    cpu_threads: self.cpu_threads,
                                    deterministic: self.deterministic,
                                    // Leased with the count of its `sal` trial, once that has run.
                                    deformations: None,
                                };
                                let (id, identity) =
                                    identity::identify(&spec, &mut digests).map_err(|e| {
                                        doc.error(
                                            &format!("pretrained.{architecture}"),
                                            format!("cannot read the weights file: {e}"),
                                        )
                                    })?;
                                trials.push(PlannedTrial {
                                    id,
                                    identity,
                                    cost: estimate_cost(&spec),
                                    spec,
                                    devices: self.gpus_per_trial,
                                    max_attempts: self.max_attempts,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(trials)
    }
}

/// The most epochs a sweep with `baseline_2x` may ask for: its trials train twice as many.
const MAX_EPOCHS_2X: u32 = 50_000;

/// A `shrink_perturb_random` trial waits for the `sal` trial of its cell and seed: an `--only`
/// that keeps the one without the other would leave it waiting forever.
fn require_sal_partners(trials: &[PlannedTrial], only: &[String]) -> Result<(), SpecError> {
    let ids: std::collections::HashSet<&str> = trials.iter().map(|t| t.id.as_str()).collect();
    let orphans = trials
        .iter()
        .filter(|t| {
            identity::sal_partner_id(&t.identity).is_some_and(|partner| !ids.contains(partner.as_str()))
        })
        .count();
    if orphans == 0 {
        return Ok(());
    }
    Err(SpecError::Only {
        filter: only.join(" "),
        message: format!(
            "keeps {orphans} `shrink_perturb_random` trial(s) without the `sal` trial each repeats; \
             keep `method=sal` too"
        ),
    })
}

/// Keeps the trials one `--only key=value[,value]` selects.
fn apply_only(filter: &str, trials: Vec<PlannedTrial>) -> Result<Vec<PlannedTrial>, SpecError> {
    let only_error = |message: String| SpecError::Only { filter: filter.into(), message };
    let (key, values) =
        filter.split_once('=').ok_or_else(|| only_error("expected key=value[,value]".into()))?;
    let values: Vec<&str> = values.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return Err(only_error("no value after `=`".into()));
    }
    let axis: fn(&TrialSpec) -> String = match key.trim() {
        "architecture" | "architectures" => |s| s.architecture.clone(),
        "optimizer" | "optimizers" => |s| s.optimizer.clone(),
        "dataset" | "datasets" => |s| s.dataset.name.clone(),
        "resolution" | "resolutions" => |s| s.resolution.to_string(),
        "method" | "methods" => |s| method_name(s.method).to_string(),
        "seed" | "seeds" => |s| s.seed.to_string(),
        other => {
            return Err(only_error(format!(
                "unknown axis `{other}` (known: architecture, optimizer, dataset, resolution, method, seed)"
            )))
        }
    };
    for value in &values {
        if !trials.iter().any(|t| axis(&t.spec) == *value) {
            return Err(only_error(format!("`{value}` is not a value of this axis in the sweep")));
        }
    }
    Ok(trials.into_iter().filter(|t| values.contains(&axis(&t.spec).as_str())).collect())
}

pub fn method_name(method: Method) -> &'static str {
    method.name()
}

/// Relative cost of a trial, to run the longest first: model GFLOPs at 224 px × (resolution /
/// 224)² × training images × epochs (× 2 for SAM's two passes per step). Only the order matters.
pub fn estimate_cost(spec: &TrialSpec) -> f64 {
    let gflops = match spec.architecture.as_str() {
        "densenet201" => 4.3,
        "densenet121" => 2.9,
        "resnet50" | "resnet50_v2" => 4.1,
        "efficientnet_b2" => 1.0,
        "mobilenet_v2" => 0.3,
        "small_cnn" => 0.05,
        NOOP => 0.001,
        _ => 1.0,
    };
    let option_size = spec.dataset.options.get("train_size").and_then(serde_json::Value::as_f64);
    let images = option_size.unwrap_or(match spec.dataset.format.as_str() {
        "imagenette" => 9_500.0,
        "tiny_imagenet" => 100_000.0,
        "eurosat" => 21_600.0,
        "pacs" => 8_000.0,
        "cifar10_bin" => 50_000.0,
        "corel1k" => 800.0,
        _ => 1_000.0,
    });
    let side = f64::from(spec.resolution) / 224.0;
    gflops * side * side * images * f64::from(spec.epochs) * f64::from(spec.method.passes_per_step())
}

/// Where each key path (`datasets.cifar10.root`) starts in block-style YAML. Keys inside flow
/// mappings (`{a: 1}`) are not indexed; a lookup then falls back to the nearest indexed parent.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
    /// Paths seen twice: the line of the second occurrence.
    repeated: HashMap<String, usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut lines = HashMap::new();
        let mut repeated = HashMap::new();
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') || body.starts_with("---") {
                continue;
            }
            let indent = line.len() - body.len();
            let Some((key, _)) = body.split_once(':') else { continue };
            let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
            if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c)) {
                continue;
            }
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, key.to_string()));
            let path = stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join(".");
            match lines.entry(path) {
                std::collections::hash_map::Entry::Occupied(seen) => {
                    repeated.entry(seen.key().clone()).or_insert(number + 1);
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(number + 1);
                }
            }
        }
        Self { lines, repeated }
    }

    /// The 1-based line of `path`, or of its nearest indexed parent, or 1.
    pub fn line_of(&self, path: &str) -> usize {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return *line;
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => return 1,
            }
        }
    }

    /// The first line where a key named `key` (at any depth) appears a second time.
    fn repeated_line(&self, key: &str) -> Option<usize> {
        let dotted = format!(".{key}");
        self.repeated
            .iter()
            .filter(|(path, _)| *path == key || path.ends_with(&dotted))
            .map(|(_, line)| *line)
            .min()
    }

    /// The indexed path `prefix.….field` with the smallest line, if any.
    fn find_below(&self, prefix: &str, field: &str) -> Option<String> {
        let start = format!("{prefix}.");
        let end = format!(".{field}");
        self.lines
            .iter()
            .filter(|(path, _)| path.starts_with(&start) && path.ends_with(&end))
            .min_by_key(|(_, line)| **line)
            .map(|(path, _)| path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOOP: &str = "name: t\nepochs: 2\nbatch_size: 4\nlearning_rate: 0.1\nseeds: [1, 2]\n\
        methods: [baseline, sal]\narchitectures: [noop]\noptimizers: [sgd]\nresolutions: [16, 32]\n\
        datasets:\n  synth:\n    format: synthetic\n";

    fn parse_str(text: &str) -> Result<Sweep, SpecError> {
        parse(Path::new("s.yaml"), text, &LoadOptions::default())
    }

    #[test]
    fn the_random_shrink_perturb_arm_needs_sal_and_names_its_sal_trial() {
        let alone = NOOP.replace("methods: [baseline, sal]", "methods: [baseline, shrink_perturb_random]");
        let error = parse_str(&alone).unwrap_err().to_string();
        assert!(error.starts_with("s.yaml:6: `methods`") && error.contains("add `sal`"), "{error}");

        let both = NOOP.replace("methods: [baseline, sal]", "methods: [sal, shrink_perturb_random]");
        let sweep = parse_str(&both).unwrap();
        for random in sweep.trials.iter().filter(|t| t.spec.method == Method::ShrinkPerturbRandom) {
            let partner = identity::sal_partner_id(&random.identity).unwrap();
            let sal = sweep.trials.iter().find(|t| t.id == partner).expect("its sal trial is in the sweep");
            assert_eq!(sal.spec, TrialSpec { method: Method::Sal, ..random.spec.clone() });
            assert_eq!(random.spec.deformations, None);
        }
        assert!(sweep
            .trials
            .iter()
            .filter(|t| t.spec.method == Method::Sal)
            .all(|t| identity::sal_partner_id(&t.identity).is_none()));
        // --only that keeps the arm without its sal trials would leave it waiting forever.
        let only = LoadOptions { only: vec!["method=shrink_perturb_random".into()], ..Default::default() };
        let error = parse(Path::new("s.yaml"), &both, &only).unwrap_err().to_string();
        assert!(error.contains("keep `method=sal` too"), "{error}");
    }

    #[test]
    fn the_compute_matched_baseline_trains_twice_the_epochs_and_sam_costs_two_passes() {
        let text = NOOP.replace("methods: [baseline, sal]", "methods: [baseline, baseline_2x, sam]");
        let sweep = parse_str(&text).unwrap();
        let of = |method: Method| {
            sweep.trials.iter().find(|t| t.spec.method == method && t.spec.resolution == 16).unwrap()
        };
        let (baseline, twice, sam) = (of(Method::Baseline), of(Method::Baseline2x), of(Method::Sam));
        assert_eq!(twice.spec, TrialSpec { method: Method::Baseline2x, epochs: 4, ..baseline.spec.clone() });
        assert_eq!(twice.cost, 2.0 * baseline.cost);
        assert_eq!(sam.cost, 2.0 * baseline.cost);
        let error = parse_str(&text.replace("epochs: 2", "epochs: 60000")).unwrap_err().to_string();
        assert!(error.contains("`epochs`") && error.contains("baseline_2x"), "{error}");
    }

    #[test]
    fn expands_every_axis_with_distinct_stable_ids() {
        let sweep = parse_str(NOOP).unwrap();
        assert_eq!(sweep.trials.len(), 2 * 2 * 2);
        let again = parse_str(NOOP).unwrap();
        let ids: Vec<_> = sweep.trials.iter().map(|t| t.id.clone()).collect();
        assert_eq!(ids, again.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn trials_per_gpu_is_a_positive_integer_or_auto_and_does_not_change_ids() {
        assert_eq!(parse_str(NOOP).unwrap().trials_per_device, TrialsPerDevice::Fixed(1));
        let three = parse_str(&format!("{NOOP}trials_per_gpu: 3\n")).unwrap();
        assert_eq!(three.trials_per_device, TrialsPerDevice::Fixed(3));
        assert_eq!(three.trials[0].id, parse_str(NOOP).unwrap().trials[0].id);
        let auto = parse_str(&format!("{NOOP}trials_per_gpu: auto\n")).unwrap();
        assert_eq!(auto.trials_per_device, TrialsPerDevice::Auto);
        for bad in ["0", "-1", "1.5", "many", "[2]"] {
            let message = parse_str(&format!("{NOOP}trials_per_gpu: {bad}\n")).unwrap_err().to_string();
            assert!(
                message.starts_with("s.yaml:13: `trials_per_gpu`: must be an integer of at least 1"),
                "{message}"
            );
        }
    }

    #[test]
    fn adding_a_seed_keeps_the_existing_ids() {
        let before = parse_str(NOOP).unwrap();
        let after = parse_str(&NOOP.replace("seeds: [1, 2]", "seeds: [1, 2, 3]")).unwrap();
        assert_eq!(after.trials.len(), 12);
        for trial in &before.trials {
            assert!(after.trials.iter().any(|t| t.id == trial.id));
        }
    }

    #[test]
    fn ids_do_not_depend_on_where_the_files_lie_but_on_the_weights_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/weights")).unwrap();
        std::fs::write(dir.path().join("data/weights/w.bin"), b"one").unwrap();
        let text = NOOP.replace("format: synthetic\n", "format: image_folder\n    root: imgs\n")
            + "pretrained:\n  noop: weights/w.bin\n";
        let load = |sweep_file: &str, root: Option<PathBuf>| {
            parse(Path::new(sweep_file), &text, &LoadOptions { data_root: root, ..Default::default() })
                .unwrap()
        };
        let ids = |s: &Sweep| s.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        let first = load("a/s.yaml", Some(dir.path().join("data")));
        let moved = load("b/../a/./s.yaml", Some(dir.path().join("data/../data")));
        assert_eq!(ids(&first), ids(&moved));
        // The spec a worker gets carries today's paths.
        assert_ne!(first.trials[0].spec.dataset.root, moved.trials[0].spec.dataset.root);
        std::fs::write(dir.path().join("data/weights/w.bin"), b"two").unwrap();
        let reweighted = load("a/s.yaml", Some(dir.path().join("data")));
        assert!(ids(&first).iter().all(|id| !ids(&reweighted).contains(id)));
    }

    #[test]
    fn sal_overrides_do_not_change_baseline_ids() {
        let before = parse_str(NOOP).unwrap();
        let after = parse_str(&format!("{NOOP}sal:\n  warmup_epochs: 3\n")).unwrap();
        let baseline = |s: &Sweep| {
            s.trials
                .iter()
                .filter(|t| t.spec.method == Method::Baseline)
                .map(|t| t.id.clone())
                .collect::<Vec<_>>()
        };
        let sal = |s: &Sweep| {
            s.trials.iter().filter(|t| t.spec.method == Method::Sal).map(|t| t.id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(baseline(&before), baseline(&after));
        assert_ne!(sal(&before), sal(&after));
    }

    #[test]
    fn every_sweep_file_shipped_in_sweeps_loads() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let sweep = load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
                assert!(!sweep.trials.is_empty(), "{}", path.display());
                loaded += 1;
            }
        }
        assert!(loaded >= 4, "only {loaded} sweep files in {}", folder.display());
    }

    #[test]
    fn gpu_options_reach_every_trial_and_change_ids_only_when_set() {
        let plain = parse_str(NOOP).unwrap();
        let fast = parse_str(&format!(
            "{NOOP}gpus_per_trial: 1\nprecision: bf16\nchannels_last: true\ncudnn_benchmark: true\n"
        ))
        .unwrap();
        assert!(fast
            .trials
            .iter()
            .all(|t| t.spec.precision == Precision::Bf16 && t.spec.channels_last && t.spec.cudnn_benchmark));
        assert!(plain.trials.iter().all(|t| !fast.trials.iter().any(|f| f.id == t.id)));
        // Spelled out at their defaults, they change nothing.
        let defaults =
            parse_str(&format!("{NOOP}precision: fp32\nchannels_last: false\ncudnn_benchmark: false\n"))
                .unwrap();
        let ids = |s: &Sweep| s.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&plain), ids(&defaults));
        let error = parse_str(&format!("{NOOP}precision: bf16\n")).unwrap_err().to_string();
        assert!(error.contains("`precision`") && error.contains("gpus_per_trial"), "{error}");
        let error = parse_str(&format!("{NOOP}precision: fp16\n")).unwrap_err().to_string();
        assert!(error.contains("`precision`") && error.contains("fp16"), "{error}");
    }

    #[test]
    fn only_selects_a_slice_and_refuses_unknown_values() {
        let options =
            LoadOptions { only: vec!["method=sal".into(), "resolution=16".into()], ..Default::default() };
        let sweep = parse(Path::new("s.yaml"), NOOP, &options).unwrap();
        assert_eq!(sweep.trials.len(), 2);
        assert!(sweep.trials.iter().all(|t| t.spec.method == Method::Sal && t.spec.resolution == 16));
        let bad = LoadOptions { only: vec!["resolution=99".into()], ..Default::default() };
        let error = parse(Path::new("s.yaml"), NOOP, &bad).unwrap_err().to_string();
        assert!(error.contains("--only resolution=99") && error.contains("`99`"), "{error}");
    }

    #[test]
    fn errors_name_the_line_of_the_key() {
        let text = NOOP.replace("optimizers: [sgd]", "optimizers: [lion]");
        let error = parse_str(&text).unwrap_err().to_string();
        assert!(error.starts_with("s.yaml:8: `optimizers`: unknown optimizer `lion`"), "{error}");
        let text = format!("{NOOP}    bogus: 1\n");
        let error = parse_str(&text).unwrap_err().to_string();
        assert!(error.starts_with("s.yaml:13: `datasets.synth.bogus`: unknown field `bogus`"), "{error}");
    }

    #[test]
    fn line_index_follows_nesting_and_falls_back_to_parents() {
        let index = LineIndex::new("a: 1\nb:\n  c:\n    d: 2\n  e: {f: 1}\n# x: 1\ng: 3\n");
        assert_eq!(index.line_of("a"), 1);
        assert_eq!(index.line_of("b.c.d"), 4);
        assert_eq!(index.line_of("b.e.f"), 5);
        assert_eq!(index.line_of("g"), 7);
        assert_eq!(index.line_of("zzz"), 1);
    }

    #[test]
    fn cost_orders_bigger_models_and_resolutions_first() {
        let sweep = parse_str(&NOOP.replace("[noop]", "[noop, small_cnn]")).unwrap();
        let cost = |arch: &str, res: u32| {
            sweep
                .trials
                .iter()
                .find(|t| t.spec.architecture == arch && t.spec.resolution == res)
                .unwrap()
                .cost
        };
        assert!(cost("small_cnn", 32) > cost("small_cnn", 16));
        assert!(cost("small_cnn", 16) > cost("noop", 32));
    }
}
