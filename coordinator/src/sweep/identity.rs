//! A trial's identity: what it computes, never where its files happen to lie.
//!
//! The id of a trial is a hash of its *identity form*: the trial's canonical JSON with the
//! deployment settings taken out. The dataset stays by name, format and options, but its root
//! folder goes; the pretrained weights stay by a digest of their content (`sha256:HEX`) where the
//! coordinator can read the file, or by their file name (`file:NAME`) where only workers see it.
//! So a second path to the same files (another `--data-root`, a symlink, another spelling of the
//! sweep file's path) gives the same ids, while new weights under the same path give new ones.
//!
//! The roots and paths a trial runs with are recorded beside it in the store (its `spec_json`,
//! refreshed each time a sweep is loaded) and never hashed.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{Method, TrialSpec};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The version of the identity form. Stores made with another version are migrated on open
/// (`store::migrate`).
pub const IDENTITY_VERSION: u32 = 1;

/// How the pretrained weights of a trial count in its identity: `sha256:HEX` of the file's bytes,
/// or `file:NAME` where the file cannot be read here.
pub fn weights_identity(path: &Path) -> std::io::Result<String> {
    match std::fs::File::open(path) {
        Ok(mut file) => {
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(logical_name(path)),
        Err(e) => Err(e),
    }
}

/// The identity of weights the coordinator cannot see: their file name.
fn logical_name(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
    format!("file:{name}")
}

/// Digests of weights files, each file read once however many trials name it.
#[derive(Debug, Default)]
pub struct WeightsDigests {
    known: HashMap<PathBuf, String>,
}

impl WeightsDigests {
    pub fn of(&mut self, path: &Path) -> std::io::Result<String> {
        if let Some(known) = self.known.get(path) {
            return Ok(known.clone());
        }
        let identity = weights_identity(path)?;
        self.known.insert(path.to_path_buf(), identity.clone());
        Ok(identity)
    }
}

/// The identity form of `spec`: its canonical JSON without the dataset root, with `weights` (see
/// [`weights_identity`]) in place of the pretrained path.
pub fn identity_json(spec: &TrialSpec, weights: Option<&str>) -> String {
    // Serializing plain data cannot fail.
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        if let Some(dataset) = object.get_mut("dataset").and_then(Value::as_object_mut) {
            dataset.remove("root");
        }
        object.remove("pretrained");
        // Filled in from the `sal` trial of the same cell and seed, whose identity fixes it.
        object.remove("deformations");
        if let Some(weights) = weights {
            object.insert("pretrained".into(), Value::String(weights.to_string()));
        }
    }
    // serde_json's maps are sorted: the same trial always gives the same bytes.
    value.to_string()
}

/// The id of the `sal` trial whose applied deformations a `shrink_perturb_random` trial repeats:
/// its identity with `method: sal`, everything else (the `sal:` settings included) the same.
/// `None` for trials of other methods, or an identity that is not a JSON object.
pub fn sal_partner_id(identity_json: &str) -> Option<String> {
    let mut value: Value = serde_json::from_str(identity_json).ok()?;
    let object = value.as_object_mut()?;
    if object.get("method").and_then(Value::as_str) != Some(Method::ShrinkPerturbRandom.name()) {
        return None;
    }
    object.insert("method".into(), Value::String(Method::Sal.name().into()));
    Some(id_of(&value.to_string()))
}

/// The stable id of an identity form: the first 16 hex digits of its SHA-256.
pub fn id_of(identity_json: &str) -> String {
    let digest = Sha256::digest(identity_json.as_bytes());
    hex::encode(&digest[..8])
}

/// A trial's identity form and id, reading its weights file (if any) through `digests`.
pub fn identify(spec: &TrialSpec, digests: &mut WeightsDigests) -> std::io::Result<(String, String)> {
    let weights = spec.pretrained.as_deref().map(|p| digests.of(p)).transpose()?;
    let identity = identity_json(spec, weights.as_deref());
    Ok((id_of(&identity), identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &str, weights: Option<&str>) -> TrialSpec {
        serde_json::from_value(serde_json::json!({
            "architecture": "resnet50", "optimizer": "adam",
            "dataset": {"name": "cifar10", "format": "cifar10_bin", "root": root},
            "resolution": 32, "method": "baseline", "epochs": 2, "batch_size": 4,
            "learning_rate": 0.1, "seed": 1, "pretrained": weights,
        }))
        .unwrap()
    }

    #[test]
    fn roots_do_not_count_and_weights_count_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        std::fs::write(&a, b"weights one").unwrap();
        std::fs::write(&b, b"weights one").unwrap();
        let mut digests = WeightsDigests::default();
        let id = |root: &str, w: &Path, d: &mut WeightsDigests| {
            identify(&spec(root, Some(w.to_str().unwrap())), d).unwrap().0
        };
        let first = id("/data/cifar", &a, &mut digests);
        // Another root, another path to the same bytes: the same trial.
        assert_eq!(first, id("/mnt/other/cifar", &b, &mut digests));
        // Other bytes: another trial.
        std::fs::write(&b, b"weights two").unwrap();
        assert_ne!(first, id("/data/cifar", &b, &mut WeightsDigests::default()));
        // Weights this machine cannot see count by their file name.
        let missing = dir.path().join("elsewhere").join("a.safetensors");
        let (_, form) = identify(&spec("/x", Some(missing.to_str().unwrap())), &mut digests).unwrap();
        assert!(form.contains("\"pretrained\":\"file:a.safetensors\"") && !form.contains("/x"), "{form}");
    }

    #[test]
    fn the_identity_keeps_what_the_trial_computes() {
        let base = identity_json(&spec("/data", None), None);
        let mut other = spec("/data", None);
        other.dataset.options.insert("train_size".into(), serde_json::json!(100));
        assert_ne!(id_of(&base), id_of(&identity_json(&other, None)));
        let mut renamed = spec("/data", None);
        renamed.dataset.name = "cifar10b".into();
        assert_ne!(id_of(&base), id_of(&identity_json(&renamed, None)));
        assert!(!base.contains("root"), "{base}");
    }
}
