//! Publishing: the extracted folder the loader expects is moved into the data root by one
//! `rename` at the very end, with a marker (`.sal-fetch.json`, hidden from the loaders) that says
//! which verified archive it came from. Until then everything lives under `<root>/.sal-fetch/`, so
//! an interrupted fetch leaves no folder that looks complete; the next fetch clears what it left.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The working folder of `data fetch` inside a data root.
pub const WORK_DIR: &str = ".sal-fetch";
/// The marker inside a published dataset folder.
pub const MARKER: &str = ".sal-fetch.json";

/// What a published folder or file came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub name: String,
    pub file: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub fetched_at: u64,
}

impl Marker {
    pub fn read(path: &Path) -> Option<Marker> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        std::fs::write(path, text).map_err(|e| DataError::io(path, e))
    }
}

/// Holds `data_root` for one `data fetch` (two at once would write the same partial files and
/// the same lock file); released when dropped, or when the process dies.
pub struct RootLock {
    _file: std::fs::File,
}

pub fn lock_root(data_root: &Path) -> Result<RootLock, DataError> {
    let work = data_root.join(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(|e| DataError::io(&work, e))?;
    let path = work.join("fetch.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| DataError::io(&path, e))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(RootLock { _file: file }),
        Err(fs4::TryLockError::WouldBlock) => Err(DataError::entry(
            data_root.display().to_string(),
            format!("another `data fetch` is running here (it holds {})", path.display()),
        )),
        Err(fs4::TryLockError::Error(source)) => Err(DataError::io(&path, source)),
    }
}

/// The sidecar marker of a published file (`weights/.x.safetensors.sal-fetch.json`).
pub fn file_marker(published: &Path) -> PathBuf {
    let name = published.file_name().unwrap_or_default().to_string_lossy();
    published.with_file_name(format!(".{name}{MARKER}"))
}

/// A name usable as a folder name (`weights:resnet50` -> `weights-resnet50`).
pub fn work_name(entry: &str) -> String {
    entry.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect()
}

/// An empty staging folder for `entry` under `data_root`'s work dir; says so when an earlier,
/// interrupted fetch left one.
pub fn fresh_staging(data_root: &Path, entry: &str) -> Result<PathBuf, DataError> {
    let staging = data_root.join(WORK_DIR).join(format!("{}.partial", work_name(entry)));
    if staging.exists() {
        eprintln!("  {entry}: removing {} (left by an interrupted fetch)", staging.display());
        std::fs::remove_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    Ok(staging)
}

/// Moves `from` to `to` in one rename (same file system: both are under the data root),
/// replacing an existing `to` only when `replace` is set, then syncs the parent folder.
pub fn publish(from: &Path, to: &Path, replace: bool) -> Result<(), DataError> {
    let parent = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let mut old = None;
    if to.exists() {
        if !replace {
            return Err(DataError::Archive {
                archive: to.to_path_buf(),
                message: "already exists and was not made from this archive by `data fetch` (move it away, or pass --force)".into(),
            });
        }
        let aside =
            to.with_file_name(format!(".{}.replaced", to.file_name().unwrap_or_default().to_string_lossy()));
        if aside.exists() {
            remove_any(&aside)?;
        }
        std::fs::rename(to, &aside).map_err(|e| DataError::io(to, e))?;
        old = Some(aside);
    }
    std::fs::rename(from, to).map_err(|e| DataError::io(to, e))?;
    if let Ok(dir) = std::fs::File::open(parent) {
        // Makes the rename durable; a file system that cannot sync folders still has it.
        let _ = dir.sync_all();
    }
    if let Some(old) = old {
        remove_any(&old)?;
    }
    Ok(())
}

pub fn remove_any(path: &Path) -> Result<(), DataError> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    result.map_err(|e| DataError::io(path, e))
}
