//! The parsed YAML with the text it came from: typed keys, and the line of every key path for errors.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use common::flatness::FlatnessConfig;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::keys::{DatasetEntry, RawSweep, KEYS, REQUIRED};
use super::{SpecError, DEFAULT_PROGRESS_TIMEOUT_S};
use crate::schedule::slots::TrialsPerDevice;

/// The parsed YAML with the text it came from, to put line numbers on errors.
pub(super) struct Document<'a> {
    pub(super) file: &'a Path,
    pub(super) root: serde_yaml_ng::Mapping,
    pub(super) lines: LineIndex,
}

impl<'a> Document<'a> {
    pub(super) fn new(file: &'a Path, text: &str) -> Result<Self, SpecError> {
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

    pub(super) fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            file: self.file.into(),
            line: self.lines.line_of(key),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }

    /// Deserializes one key; on failure, the line of the innermost key the message names.
    pub(super) fn typed<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SpecError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        serde_yaml_ng::from_value(value.clone()).map(Some).map_err(|e| self.value_error(key, &e))
    }

    pub(super) fn value_error(&self, key: &str, error: &serde_yaml_ng::Error) -> SpecError {
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

    pub(super) fn required<T: DeserializeOwned>(&self, key: &str) -> Result<T, SpecError> {
        self.typed(key)?.ok_or_else(|| SpecError::Invalid {
            file: self.file.into(),
            line: 1,
            key: key.into(),
            message: "missing (required)".into(),
        })
    }

    /// An axis: a non-empty list without repeats.
    pub(super) fn axis<T: DeserializeOwned + PartialEq + fmt::Debug>(
        &self,
        key: &str,
    ) -> Result<Vec<T>, SpecError> {
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

    pub(super) fn read(&self) -> Result<RawSweep, SpecError> {
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
    pub(super) fn trials_per_gpu(&self) -> Result<TrialsPerDevice, SpecError> {
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

/// Where each key path (`datasets.cifar10.root`) starts in block-style YAML. Keys inside flow
/// mappings (`{a: 1}`) are not indexed; a lookup then falls back to the nearest indexed parent.
#[derive(Debug, Default)]
pub struct LineIndex {
    pub(super) lines: HashMap<String, usize>,
    /// Paths seen twice: the line of the second occurrence.
    pub(super) repeated: HashMap<String, usize>,
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
    pub(super) fn repeated_line(&self, key: &str) -> Option<usize> {
        let dotted = format!(".{key}");
        self.repeated
            .iter()
            .filter(|(path, _)| *path == key || path.ends_with(&dotted))
            .map(|(_, line)| *line)
            .min()
    }

    /// The indexed path `prefix.….field` with the smallest line, if any.
    pub(super) fn find_below(&self, prefix: &str, field: &str) -> Option<String> {
        let start = format!("{prefix}.");
        let end = format!(".{field}");
        self.lines
            .iter()
            .filter(|(path, _)| path.starts_with(&start) && path.ends_with(&end))
            .min_by_key(|(_, line)| **line)
            .map(|(path, _)| path.clone())
    }
}
