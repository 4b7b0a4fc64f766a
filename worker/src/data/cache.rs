//! Decoded datasets on disk, one file per (dataset, resolution, files).
//!
//! The key is a SHA-256 of the format, its options, the resolution and, for every source file, its
//! path, size and modification time: a file added, removed, replaced or touched gives another key,
//! so a changed dataset is decoded again instead of served stale. The file is written to a
//! temporary name and renamed, so concurrent trials on one node never read half a cache.
//!
//! Layout: `SALDATA1`, a little-endian `u64` header length, a JSON header, then the train images,
//! the train labels (`i64` LE), the val images and the val labels.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use tch::Tensor;

use super::{Dataset, HostData, Split};
use crate::error::WorkerError;

const MAGIC: &[u8; 8] = b"SALDATA1";

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    classes: Vec<String>,
    resolution: u32,
    train: usize,
    val: usize,
}

/// The cache key of a dataset decoded from `files` at `resolution`.
pub fn key(
    format: &str,
    options: &BTreeMap<String, serde_json::Value>,
    resolution: u32,
    files: &[PathBuf],
) -> Result<String, WorkerError> {
    let mut hash = Sha256::new();
    hash.update(b"sal-sweep dataset cache v1\0");
    hash.update(format.as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_string(options).unwrap_or_default().as_bytes());
    hash.update(resolution.to_le_bytes());
    for path in files {
        let meta = std::fs::metadata(path).map_err(|e| WorkerError::io(path, e))?;
        let modified =
            meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        hash.update(path.as_os_str().as_encoded_bytes());
        hash.update([0]);
        hash.update(meta.len().to_le_bytes());
        hash.update(modified.to_le_bytes());
    }
    Ok(hex::encode(hash.finalize()))
}

/// Where the cache of a dataset with this key lives.
pub fn path(cache_dir: &Path, name: &str, resolution: u32, key: &str) -> PathBuf {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    cache_dir.join(format!("{name}-{resolution}px-{}.bin", &key[..16.min(key.len())]))
}

/// The cached dataset, or `None` when there is no cache for this key (a damaged or foreign file
/// is a miss too: it is decoded again and replaced). Tensors are made straight from the file's
/// bytes, so a load holds at most twice the dataset in memory.
pub fn read(path: &Path, key: &str) -> Result<Option<Dataset>, WorkerError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WorkerError::io(path, e)),
    };
    let parsed = parse(&bytes, key);
    if parsed.is_none() {
        tracing::warn!(cache = %path.display(), "dataset cache unreadable or stale; decoding again");
    }
    Ok(parsed)
}

fn parse(bytes: &[u8], key: &str) -> Option<Dataset> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (length, rest) = rest.split_at_checked(8)?;
    let length = usize::try_from(u64::from_le_bytes(length.try_into().ok()?)).ok()?;
    let (header, mut body) = rest.split_at_checked(length)?;
    let header: Header = serde_json::from_slice(header).ok()?;
    if header.key != key {
        return None;
    }
    let side = i64::from(header.resolution);
    let per_image = 3 * (header.resolution as usize).pow(2);
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = body.split_at_checked(n)?;
        body = tail;
        Some(head)
    };
    let mut split = |count: usize| -> Option<Split> {
        let images =
            Tensor::from_slice(take(count.checked_mul(per_image)?)?).view([count as i64, 3, side, side]);
        let labels = Tensor::from_slice(&labels(take(count.checked_mul(8)?)?));
        Some(Split { images, labels })
    };
    let train = split(header.train)?;
    let val = split(header.val)?;
    if !body.is_empty() {
        return None;
    }
    Some(Dataset { classes: header.classes, resolution: header.resolution, train, val })
}

fn labels(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect()
}

/// Writes the cache atomically (temporary file in the same folder, then rename).
pub fn write(cache_dir: &Path, path: &Path, key: &str, data: &HostData) -> Result<(), WorkerError> {
    std::fs::create_dir_all(cache_dir).map_err(|e| WorkerError::io(cache_dir, e))?;
    let header = Header {
        key: key.to_string(),
        classes: data.classes.clone(),
        resolution: data.resolution,
        train: data.train_labels.len(),
        val: data.val_labels.len(),
    };
    let header = serde_json::to_vec(&header).map_err(|e| WorkerError::InvalidTrial(e.to_string()))?;
    // Unique per process and per call: two trials may decode the same dataset at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = path.with_extension(format!("partial.{}.{serial}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        file.write_all(MAGIC)?;
        file.write_all(&(header.len() as u64).to_le_bytes())?;
        file.write_all(&header)?;
        file.write_all(&data.train_images)?;
        for label in &data.train_labels {
            file.write_all(&label.to_le_bytes())?;
        }
        file.write_all(&data.val_images)?;
        for label in &data.val_labels {
            file.write_all(&label.to_le_bytes())?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(WorkerError::io(path, e));
    }
    Ok(())
}
