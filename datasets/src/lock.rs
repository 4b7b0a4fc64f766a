//! `sal-data.lock` in the data root: the SHA-256 and size of every file `data fetch` verified,
//! keyed by entry name. Where no publisher pins a SHA-256 (PACS, Corel-1k, Tiny ImageNet's MD5 only,
//! torchvision's 8-digit prefixes), the first download's digest is recorded here and every later
//! download, from any mirror or `--from` file, must match it. Written whole to a temporary file and
//! renamed, so that a crash never leaves half a lock.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DataError;

pub const LOCK_FILE: &str = "sal-data.lock";

/// One verified file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub file: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    /// Whether a publisher pins this SHA-256 (else the first download did).
    pub published: bool,
    /// Seconds since the Unix epoch.
    pub pinned_at: u64,
}

#[derive(Debug, Clone)]
pub struct Lock {
    path: PathBuf,
    pins: BTreeMap<String, Pin>,
}

impl Lock {
    /// The lock of data root `root` (empty when there is none yet).
    pub fn open(root: &Path) -> Result<Lock, DataError> {
        let path = root.join(LOCK_FILE);
        let pins = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| DataError::Catalogue {
                file: path.display().to_string(),
                message: format!("not a lock file: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(DataError::io(&path, e)),
        };
        Ok(Lock { path, pins })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<&Pin> {
        self.pins.get(name)
    }

    /// Records `pin` and writes the lock.
    pub fn record(&mut self, name: &str, pin: Pin) -> Result<(), DataError> {
        self.pins.insert(name.to_string(), pin);
        let text = serde_json::to_string_pretty(&self.pins).map_err(|e| DataError::Catalogue {
            file: self.path.display().to_string(),
            message: e.to_string(),
        })? + "\n";
        let temporary = self.path.with_extension("lock.partial");
        let mut file = std::fs::File::create(&temporary).map_err(|e| DataError::io(&temporary, e))?;
        file.write_all(text.as_bytes()).map_err(|e| DataError::io(&temporary, e))?;
        file.sync_all().map_err(|e| DataError::io(&temporary, e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| DataError::io(&self.path, e))
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
