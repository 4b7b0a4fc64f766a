//! The parsed YAML with the text it came from: its keys typed as a [`SweepFile`], and the line of
//! every key path for errors.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml_ng::Value;

use super::keys::SweepFile;
use super::top_level::{self, KeyError};
use super::SpecError;

/// The parsed YAML with the text it came from, to put line numbers on errors.
pub(super) struct Document<'a> {
    file: &'a Path,
    root: serde_yaml_ng::Mapping,
    lines: LineIndex,
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

    /// A value's error: at the key, or at the innermost key the message names when it is indexed.
    fn value_error(&self, key: &str, message: String) -> SpecError {
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

    /// The file's keys, typed; the first wrong key, value or missing key with its line.
    pub(super) fn read(&self) -> Result<SweepFile, SpecError> {
        // A missing key, or one that is not a string, has no line of its own: the file's first.
        let at_top = |key: &str, message: String| SpecError::Invalid {
            file: self.file.into(),
            line: 1,
            key: key.into(),
            message,
        };
        top_level::deserialize(&self.root).map_err(|e| match e {
            KeyError::NotAString(key) => at_top("", format!("keys are strings, found {key}")),
            KeyError::Unknown { key, known } => {
                self.error(&key, format!("unknown key (known: {})", known.join(", ")))
            }
            KeyError::Missing(key) => at_top(key, "missing (required)".into()),
            KeyError::Value { key, message } => self.value_error(&key, message),
            KeyError::Other(message) => at_top("", message),
        })
    }
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
