//! A downloaded file against what its entry pins: size, SHA-256, MD5, the MD5 of its first MiB (as
//! fastai pins it) and torchvision's SHA-256 prefix, all from one pass over the file; then against
//! the data root's lock file, which holds the SHA-256 of every file fetched before.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::catalogue::Entry;
use crate::error::DataError;
use crate::lock::{Lock, Pin};

const MIB: usize = 1 << 20;

/// A file's digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub md5_first_mib: String,
}

pub fn digest_file(path: &Path) -> Result<Digests, DataError> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let (mut sha256, mut md5, mut first) = (Sha256::new(), Md5::new(), Md5::new());
    let mut buffer = vec![0u8; MIB];
    let (mut size, mut first_left) = (0u64, MIB);
    loop {
        let n = file.read(&mut buffer).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        sha256.update(&buffer[..n]);
        md5.update(&buffer[..n]);
        let head = n.min(first_left);
        first.update(&buffer[..head]);
        first_left -= head;
        size += n as u64;
    }
    Ok(Digests {
        size,
        sha256: hex::encode(sha256.finalize()),
        md5: hex::encode(md5.finalize()),
        md5_first_mib: hex::encode(first.finalize()),
    })
}

/// What a verification established, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub digests: Digests,
    /// `sha256 (tensorflow-datasets ...)`, `pinned in sal-data.lock`, ...
    pub matched: Vec<String>,
    /// No SHA-256 was published nor pinned: this one is to be recorded in the lock file.
    pub pin_now: bool,
}

/// Checks `path` against `entry` and the lock; a mismatch names the check and both values.
pub fn verify(entry: &Entry, path: &Path, lock: &Lock) -> Result<Verified, DataError> {
    let digests = digest_file(path)?;
    let mismatch = |what: &str, want: &str, got: &str, source: &Option<String>| DataError::Checksum {
        file: path.to_path_buf(),
        message: format!("{what} is {got}, expected {want} ({})", source.as_deref().unwrap_or("catalogue")),
    };
    let mut matched = Vec::new();
    if let Some(size) = entry.size {
        if digests.size != size {
            return Err(mismatch(
                "size",
                &format!("{size} bytes"),
                &format!("{} bytes", digests.size),
                &entry.size_source,
            ));
        }
        matched.push(format!("size {size}"));
    }
    let checks = [
        ("sha256", &entry.sha256, &digests.sha256, &entry.sha256_source),
        ("md5", &entry.md5, &digests.md5, &entry.md5_source),
        ("md5 of the first MiB", &entry.md5_first_mib, &digests.md5_first_mib, &entry.md5_first_mib_source),
    ];
    for (what, want, got, source) in checks {
        if let Some(want) = want {
            if !want.eq_ignore_ascii_case(got) {
                return Err(mismatch(what, want, got, source));
            }
            matched.push(what.to_string());
        }
    }
    if let Some(prefix) = &entry.sha256_prefix {
        if !digests.sha256.starts_with(&prefix.to_ascii_lowercase()) {
            return Err(mismatch(
                "sha256",
                &format!("{prefix}..."),
                &digests.sha256,
                &entry.sha256_prefix_source,
            ));
        }
        matched.push("sha256 prefix".into());
    }
    let mut pin_now = false;
    match lock.get(&entry.name) {
        Some(Pin { sha256, .. }) if sha256 != &digests.sha256 => {
            return Err(DataError::Checksum {
                file: path.to_path_buf(),
                message: format!(
                    "sha256 is {}, but {} pinned {sha256} on an earlier download (remove its `{}` entry to accept a new file)",
                    digests.sha256,
                    lock.path().display(),
                    entry.name
                ),
            });
        }
        Some(_) => matched.push(format!("sha256 pinned in {}", lock.path().display())),
        None => pin_now = true,
    }
    if matched.is_empty() {
        matched.push("nothing published: sha256 pinned now".into());
    }
    Ok(Verified { digests, matched, pin_now })
}
