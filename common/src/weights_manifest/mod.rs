//! Whether a pretrained weights file fits an architecture's trunk, without libtorch.
//!
//! A `.safetensors` file opens with its table of contents: an 8-byte little-endian length, then
//! that many bytes of JSON mapping each tensor's name to `{dtype, shape, data_offsets}`. Reading
//! that header is enough to tell whether the file holds exactly the trunk's variables with their
//! shapes, so the coordinator can refuse a bad or missing file before it leases a single trial,
//! and the worker's strict loader (`worker::models::load_pretrained`) reports misfits in the same
//! words.
//!
//! What each trunk holds comes from a manifest per architecture (`manifests/<name>.json`: every
//! trunk variable, running statistics included, with its shape), written from the tch models
//! themselves by `SAL_WRITE_MANIFESTS=1 cargo test -p worker --test weights_manifest`; that test
//! fails whenever a model and its manifest disagree.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Variable names and shapes: a trunk's, or a file's.
pub type Shapes = BTreeMap<String, Vec<i64>>;

/// Where a trunk's variables live apart from the head's (`head.` prefix).
const HEAD_PREFIX: &str = "head.";

/// The largest header this reader accepts; a real one is well under a megabyte (DenseNet-201's,
/// the largest trunk here, is about 130 kB).
const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Every architecture's trunk manifest, as committed.
const MANIFESTS: &[(&str, &str)] = &[
    ("densenet201", include_str!("manifests/densenet201.json")),
    ("densenet121", include_str!("manifests/densenet121.json")),
    ("mobilenet_v2", include_str!("manifests/mobilenet_v2.json")),
    ("resnet50", include_str!("manifests/resnet50.json")),
    ("efficientnet_b2", include_str!("manifests/efficientnet_b2.json")),
    ("resnet50_v2", include_str!("manifests/resnet50_v2.json")),
    ("resnet18", include_str!("manifests/resnet18.json")),
    ("small_cnn", include_str!("manifests/small_cnn.json")),
];

/// A weights file that cannot be used; the message is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pretrained weights {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for WeightsError {}

/// One architecture's trunk: what a pretrained file for it must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub architecture: String,
    /// Every trunk variable with its shape.
    pub tensors: Shapes,
}

impl Manifest {
    /// The committed manifest of `architecture`, if it has one.
    pub fn of(architecture: &str) -> Option<Manifest> {
        let (_, json) = MANIFESTS.iter().find(|(name, _)| *name == architecture)?;
        // The manifests are this crate's own files, checked by its tests.
        serde_json::from_str(json).ok()
    }

    /// The manifest as committed: one variable a line, so that a diff shows what changed.
    pub fn to_json(&self) -> String {
        let lines: Vec<String> = self
            .tensors
            .iter()
            .map(|(name, shape)| {
                format!("    {}: {}", serde_json::Value::from(name.as_str()), serde_json::json!(shape))
            })
            .collect();
        format!(
            "{{\n  \"architecture\": {},\n  \"tensors\": {{\n{}\n  }}\n}}\n",
            serde_json::Value::from(self.architecture.as_str()),
            lines.join(",\n")
        )
    }
}

/// Entries of a pretrained file that are not the trunk's and are skipped, not reported:
/// torchvision's ImageNet classifiers (`fc.`, `classifier.`) and our own head (a checkpoint of a
/// trained model serves as a pretrained trunk for another class count), which the new head
/// replaces; and batch norms' `num_batches_tracked` counters, which tch does not keep.
pub fn is_skipped_entry(name: &str) -> bool {
    ["fc.", "classifier.", HEAD_PREFIX].iter().any(|prefix| name.starts_with(prefix))
        || name.ends_with(".num_batches_tracked")
}

/// Whether a model variable is the trunk's (not the head's).
pub fn is_trunk_variable(name: &str) -> bool {
    !name.starts_with(HEAD_PREFIX)
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TensorEntry {
    pub dtype: String,
    pub shape: Vec<i64>,
    pub data_offsets: [u64; 2],
}

/// The tensors a `.safetensors` file declares, read from its header alone; a header that
/// promises more data than the file holds (a partial download) is an error.
pub fn read_safetensors_header(path: &Path) -> Result<BTreeMap<String, TensorEntry>, WeightsError> {
    let bad = |reason: String| WeightsError { path: path.to_path_buf(), reason };
    let mut file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let file_len = file.metadata().map_err(|e| bad(format!("cannot read: {e}")))?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| bad(format!("{file_len} bytes: too short for a safetensors file")))?;
    let header_len = u64::from_le_bytes(length);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(bad(format!(
            "declares a {header_len}-byte header in a {file_len}-byte file: not a safetensors file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not a JSON map: {e}")))?;
    entries.remove("__metadata__");
    let data_len = file_len - 8 - header_len;
    let mut tensors = BTreeMap::new();
    for (name, entry) in entries {
        let entry: TensorEntry =
            serde_json::from_value(entry).map_err(|e| bad(format!("header entry `{name}`: {e}")))?;
        if entry.data_offsets[1] > data_len || entry.data_offsets[0] > entry.data_offsets[1] {
            return Err(bad(format!(
                "`{name}` lies at bytes {:?} of {data_len} bytes of data: the file is truncated or damaged",
                entry.data_offsets
            )));
        }
        tensors.insert(name, entry);
    }
    Ok(tensors)
}

/// Compares a file's tensors (skipped entries already left out) with what a trunk holds; the
/// error lists the first few missing, unexpected and mis-shaped names with their counts, in one
/// line.
pub fn compare(expected: &Shapes, found: &Shapes) -> Result<(), String> {
    let missing: Vec<String> = expected.keys().filter(|name| !found.contains_key(*name)).cloned().collect();
    let unexpected: Vec<String> =
        found.keys().filter(|name| !expected.contains_key(*name)).cloned().collect();
    let mismatched: Vec<String> = expected
        .iter()
        .filter_map(|(name, want)| {
            let have = found.get(name)?;
            (have != want).then(|| format!("{name} (file {have:?}, model {want:?})"))
        })
        .collect();
    let mut problems = Vec::new();
    for (what, names) in [("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched)]
    {
        if !names.is_empty() {
            problems.push(format!("{} {what} ({})", names.len(), first_few(&names)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("does not fit the model: {}", problems.join("; ")))
    }
}

/// Checks, without loading it, that `path` can serve as `architecture`'s pretrained trunk: the
/// file exists, and for `.safetensors` its header holds exactly the trunk's variables with their
/// shapes. A `.ot` file (tch's own format) can only be read with libtorch: it is checked for
/// existence here and in full by the worker before it decodes any data.
pub fn check_file(architecture: &str, path: &Path) -> Result<(), WeightsError> {
    let bad = |reason: String| WeightsError { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {}
        Some("ot") => return Ok(()),
        _ => return Err(bad("expected a `.safetensors` or `.ot` file".into())),
    }
    let header = read_safetensors_header(path)?;
    let Some(manifest) = Manifest::of(architecture) else {
        return Err(bad(format!("architecture `{architecture}` has no trunk to load weights into")));
    };
    let found: Shapes = header
        .into_iter()
        .filter(|(name, _)| !is_skipped_entry(name))
        .map(|(name, entry)| (name, entry.shape))
        .collect();
    compare(&manifest.tensors, &found).map_err(bad)
}

/// The first five names, then how many more.
fn first_few(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let shown = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        format!("{shown}, … {} more", names.len() - SHOWN)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a safetensors file with `entries` (name, shape) of f32 zeros; `cut` bytes short.
    fn write(path: &Path, entries: &[(&str, &[i64])], cut: usize) {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut offset = 0u64;
        for (name, shape) in entries {
            let bytes = 4 * shape.iter().product::<i64>() as u64;
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
        }
        let json = serde_json::to_vec(&header).unwrap();
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&json);
        file.resize(file.len() + offset as usize - cut, 0);
        std::fs::write(path, file).unwrap();
    }

    fn small_cnn_entries() -> Vec<(String, Vec<i64>)> {
        Manifest::of("small_cnn").unwrap().tensors.into_iter().collect()
    }

    fn write_manifest_file(path: &Path, entries: &[(String, Vec<i64>)], cut: usize) {
        let entries: Vec<(&str, &[i64])> = entries.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
        write(path, &entries, cut);
    }

    #[test]
    fn every_architecture_has_a_manifest_that_parses() {
        let listed: Vec<&str> = MANIFESTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, crate::names::ARCHITECTURES, "one manifest per architecture, in order");
        for (name, _) in MANIFESTS {
            let manifest = Manifest::of(name).unwrap_or_else(|| panic!("{name}: manifest does not parse"));
            assert_eq!(manifest.architecture, *name);
            assert!(!manifest.tensors.is_empty());
            assert!(manifest.tensors.keys().all(|n| is_trunk_variable(n)), "{name}: head variables listed");
        }
    }

    #[test]
    fn a_file_with_exactly_the_trunk_passes_and_skipped_entries_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.safetensors");
        let mut entries = small_cnn_entries();
        entries.push(("head.fc.weight".into(), vec![10, 64]));
        entries.push(("fc.bias".into(), vec![1000]));
        write_manifest_file(&path, &entries, 0);
        check_file("small_cnn", &path).unwrap();
        let header = read_safetensors_header(&path).unwrap();
        assert_eq!(header.len(), entries.len(), "`__metadata__` is not a tensor");
    }

    #[test]
    fn a_partial_trunk_is_one_error_naming_missing_unexpected_and_misshaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial.safetensors");
        let mut entries = small_cnn_entries();
        let (first, _) = entries.remove(0);
        entries[0].1 = vec![1, 2, 3];
        let misshaped = entries[0].0.clone();
        entries.push(("layer9.conv.weight".into(), vec![3]));
        write_manifest_file(&path, &entries, 0);
        let message = check_file("small_cnn", &path).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("partial.safetensors"), "{message}");
        assert!(message.contains(&format!("1 missing ({first})")), "{message}");
        assert!(message.contains("1 unexpected (layer9.conv.weight)"), "{message}");
        let want = Manifest::of("small_cnn").unwrap().tensors[&misshaped].clone();
        assert!(
            message.contains(&format!("1 shape mismatches ({misshaped} (file [1, 2, 3], model {want:?}))")),
            "{message}"
        );
    }

    #[test]
    fn truncated_missing_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let truncated = dir.path().join("cut.safetensors");
        write_manifest_file(&truncated, &small_cnn_entries(), 4);
        let message = check_file("small_cnn", &truncated).unwrap_err().to_string();
        assert!(message.contains("truncated"), "{message}");

        let absent = dir.path().join("absent.safetensors");
        assert!(check_file("small_cnn", &absent).unwrap_err().to_string().contains("no such file"));

        let text = dir.path().join("text.safetensors");
        std::fs::write(&text, "this is not a weights file at all").unwrap();
        let message = check_file("small_cnn", &text).unwrap_err().to_string();
        assert!(message.contains("not a safetensors file"), "{message}");

        let tiny = dir.path().join("tiny.safetensors");
        std::fs::write(&tiny, b"abc").unwrap();
        assert!(check_file("small_cnn", &tiny).unwrap_err().to_string().contains("too short"));

        let pth = dir.path().join("weights.pth");
        std::fs::write(&pth, b"x").unwrap();
        assert!(check_file("small_cnn", &pth).unwrap_err().to_string().contains(".safetensors"));
    }
}
