//! What a coordinator sends never reaches the file system unchecked: ids become file names only
//! when they are hex and `-`, and dataset roots and weights resolve under the worker's
//! `--data-root` (relative paths are taken there; `..` and absolute paths elsewhere are refused).

use std::path::{Component, Path, PathBuf};

use common::trial::TrialSpec;

use crate::error::WorkerError;

/// Longest id accepted from the coordinator.
const MAX_ID: usize = 128;

/// Refuses an id that is not 1 to 128 of `[0-9a-f-]`.
pub fn id(value: &str, field: &str) -> Result<(), WorkerError> {
    let plain = value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    if value.is_empty() || value.len() > MAX_ID || !plain {
        return Err(WorkerError::field(field, format!("{value:?} is not an id (hex digits and `-`)")));
    }
    Ok(())
}

/// `path` resolved under `root`: relative paths are joined to it; absolute ones must lie in it;
/// a `..` anywhere is refused (it could climb out after a symlink).
pub fn under(root: &Path, path: &Path, field: &str) -> Result<PathBuf, WorkerError> {
    let outside = |why: &str| {
        WorkerError::field(
            field,
            format!("{} {why} the worker's --data-root {}", path.display(), root.display()),
        )
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(outside("climbs (`..`) out of"));
    }
    if path.is_absolute() {
        return if path.starts_with(root) { Ok(path.to_path_buf()) } else { Err(outside("is outside")) };
    }
    Ok(root.join(path))
}

/// The trial with its dataset root and weights resolved under `root`.
pub fn spec(mut spec: TrialSpec, root: &Path) -> Result<TrialSpec, WorkerError> {
    if let Some(dataset_root) = &spec.dataset.root {
        spec.dataset.root = Some(under(root, dataset_root, "dataset.root")?);
    }
    if let Some(weights) = &spec.pretrained {
        spec.pretrained = Some(under(root, weights, "pretrained")?);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_data_root() {
        let root = Path::new("/data");
        assert_eq!(
            under(root, Path::new("imagenette"), "dataset.root").unwrap(),
            Path::new("/data/imagenette")
        );
        assert_eq!(
            under(root, Path::new("/data/eurosat"), "dataset.root").unwrap(),
            Path::new("/data/eurosat")
        );
        for bad in ["/etc", "../etc", "/data/../etc", "a/../../etc", "/database"] {
            let error = under(root, Path::new(bad), "dataset.root").unwrap_err().to_string();
            assert!(
                error.starts_with("`dataset.root`") && error.contains("--data-root /data"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn ids_are_hex_and_dashes() {
        id("3fa2b9c0d1e2f3a4", "trial_id").unwrap();
        id("0123abcd-1", "lease_id").unwrap();
        for bad in ["", "..", "../x", "a/b", "ABC", "x", &"a".repeat(129)] {
            assert!(id(bad, "trial_id").is_err(), "{bad:?}");
        }
    }
}
