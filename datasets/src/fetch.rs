//! `data fetch` of one entry: download (or take `--from`), verify, extract into a staging folder,
//! check the layout the loader expects, publish by rename, pin the digest. A second fetch of a
//! published, verified entry does nothing and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::trial::DatasetSpec;

use crate::catalogue::Entry;
use crate::download;
use crate::error::DataError;
use crate::extract::{self, Limits};
use crate::lock::{now_unix, Lock, Pin};
use crate::publish::{self, Marker, MARKER, WORK_DIR};
use crate::scan;
use crate::verify::{self, Verified};
use crate::weights::{self, Tools};

/// Where the bytes come from and what may be replaced.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `--mirror URL`: the file is fetched at `URL/<file>`.
    pub mirror: Option<String>,
    /// `--url NAME=URL`.
    pub urls: BTreeMap<String, String>,
    /// `--from FILE`: an archive the user already has (never moved or deleted).
    pub from: Option<PathBuf>,
}

impl Source {
    pub fn url_of(&self, entry: &Entry) -> String {
        if let Some(url) = self.urls.get(&entry.name) {
            return url.clone();
        }
        match &self.mirror {
            Some(mirror) => format!("{}/{}", mirror.trim_end_matches('/'), entry.file),
            None => entry.url.clone(),
        }
    }
}

/// Everything a fetch needs besides the entry.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_root: PathBuf,
    pub source: Source,
    pub download: download::Options,
    pub limits: Limits,
    /// Replace a dataset folder or weights file that `data fetch` did not make from this archive.
    pub force: bool,
    /// Keep the downloaded archive under `.sal-fetch/downloads/` after publishing.
    pub keep_archive: bool,
    pub tools: Tools,
}

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already there and verified earlier: nothing done.
    AlreadyThere(PathBuf),
    Published {
        path: PathBuf,
        verified: Vec<String>,
        pinned: bool,
    },
}

/// Fetches `entry` into `options.data_root`.
pub fn fetch(entry: &Entry, options: &Options, lock: &mut Lock) -> Result<Outcome, DataError> {
    let target = target_of(entry, &options.data_root);
    let marker_path = marker_of(entry, &target);
    if let Some(marker) = Marker::read(&marker_path).filter(|_| !options.force) {
        if is_current(entry, &marker, lock)
            && target.exists()
            && (!entry.is_weights() || weights_fit(entry, &target))
        {
            return Ok(Outcome::AlreadyThere(target));
        }
    }
    if target.exists() && !options.force {
        return Err(DataError::entry(
            &entry.name,
            format!(
                "{} already exists and was not made from this archive by `data fetch` (move it away, or pass --force)",
                target.display()
            ),
        ));
    }
    let (archive, downloaded, earlier) = obtain(entry, options)?;
    let verified = match verify::verify(entry, &archive, lock) {
        Ok(verified) => verified,
        Err(_) if earlier => {
            // Left by an earlier run (another mirror, another catalogue): download it again.
            eprintln!("{}: {} fails verification; downloading it again", entry.name, archive.display());
            std::fs::remove_file(&archive).map_err(|e| DataError::io(&archive, e))?;
            let (archive, _, _) = obtain(entry, options)?;
            verify_or_remove(entry, &archive, lock, true)?
        }
        Err(error) => {
            if downloaded {
                // A file that fails its checksum is no use to a rerun: it would fail again.
                let _ = std::fs::remove_file(&archive);
            }
            return Err(error);
        }
    };
    let url = options
        .source
        .from
        .as_ref()
        .map_or_else(|| options.source.url_of(entry), |f| f.display().to_string());
    let marker = Marker {
        name: entry.name.clone(),
        file: entry.file.clone(),
        url: url.clone(),
        size: verified.digests.size,
        sha256: verified.digests.sha256.clone(),
        fetched_at: now_unix(),
    };
    if entry.is_weights() {
        weights::convert_and_publish(entry, &archive, &target, &marker, &options.tools)?;
    } else {
        extract_and_publish(entry, &archive, &target, &marker, options)?;
    }
    lock.record(
        &entry.name,
        Pin {
            file: entry.file.clone(),
            url,
            size: verified.digests.size,
            sha256: verified.digests.sha256.clone(),
            published: entry.publishes_sha256(),
            pinned_at: lock.get(&entry.name).map_or_else(now_unix, |p| p.pinned_at),
        },
    )?;
    if downloaded && !options.keep_archive {
        let _ = std::fs::remove_file(&archive);
    }
    let Verified { matched, pin_now, .. } = verified;
    Ok(Outcome::Published { path: target, verified: matched, pinned: pin_now && !entry.publishes_sha256() })
}

fn verify_or_remove(
    entry: &Entry,
    archive: &Path,
    lock: &Lock,
    downloaded: bool,
) -> Result<Verified, DataError> {
    verify::verify(entry, archive, lock).inspect_err(|_| {
        if downloaded {
            let _ = std::fs::remove_file(archive);
        }
    })
}

/// The dataset folder or weights file an entry publishes.
pub fn target_of(entry: &Entry, data_root: &Path) -> PathBuf {
    data_root.join(entry.root.as_deref().or(entry.output.as_deref()).unwrap_or(&entry.file))
}

fn marker_of(entry: &Entry, target: &Path) -> PathBuf {
    if entry.is_weights() {
        publish::file_marker(target)
    } else {
        target.join(MARKER)
    }
}

fn is_current(entry: &Entry, marker: &Marker, lock: &Lock) -> bool {
    marker.name == entry.name
        && marker.file == entry.file
        && entry.sha256.as_ref().is_none_or(|s| s.eq_ignore_ascii_case(&marker.sha256))
        && entry.sha256_prefix.as_ref().is_none_or(|p| marker.sha256.starts_with(&p.to_ascii_lowercase()))
        && entry.size.is_none_or(|s| s == marker.size)
        && lock.get(&entry.name).is_none_or(|pin| pin.sha256 == marker.sha256)
}

fn weights_fit(entry: &Entry, target: &Path) -> bool {
    entry.architecture.as_deref().is_some_and(|a| common::weights_manifest::check_file(a, target).is_ok())
}

/// The archive to verify, whether `data fetch` downloaded it (and may delete it), and whether an
/// earlier run did.
fn obtain(entry: &Entry, options: &Options) -> Result<(PathBuf, bool, bool), DataError> {
    if let Some(from) = &options.source.from {
        if !from.is_file() {
            return Err(DataError::entry(&entry.name, format!("--from {}: no such file", from.display())));
        }
        eprintln!("{}: using {}", entry.name, from.display());
        return Ok((from.clone(), false, false));
    }
    let downloads = options.data_root.join(WORK_DIR).join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| DataError::io(&downloads, e))?;
    let dest = downloads.join(&entry.file);
    if dest.is_file() {
        eprintln!("{}: using {} (downloaded earlier)", entry.name, dest.display());
        return Ok((dest, true, true));
    }
    let url = options.source.url_of(entry);
    let part = download::partial_path(&dest);
    match std::fs::metadata(&part) {
        Ok(meta) if meta.len() > 0 => {
            eprintln!("{}: resuming {url} at byte {} of {}", entry.name, meta.len(), size_text(entry.size))
        }
        _ => eprintln!("{}: downloading {url} ({})", entry.name, size_text(entry.size)),
    }
    download::download(&url, &dest, entry.size, &options.download)?;
    Ok((dest, true, false))
}

fn size_text(size: Option<u64>) -> String {
    size.map_or("size not published".into(), |s| format!("{:.1} MB", s as f64 / 1e6))
}

fn extract_and_publish(
    entry: &Entry,
    archive: &Path,
    target: &Path,
    marker: &Marker,
    options: &Options,
) -> Result<(), DataError> {
    let staging = publish::fresh_staging(&options.data_root, &entry.name)?;
    eprintln!("{}: extracting {}", entry.name, archive.display());
    let extracted = extract::extract(archive, entry.archive, &staging, options.limits)?;
    let Some(member) = entry.members.iter().map(|m| staging.join(m)).find(|p| p.is_dir()) else {
        let found: Vec<String> = std::fs::read_dir(&staging)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&staging);
        return Err(DataError::Archive {
            archive: archive.to_path_buf(),
            message: format!(
                "holds none of the folders {} (its top level: {})",
                entry.members.join(", "),
                if found.is_empty() { "empty".into() } else { found.join(", ") }
            ),
        });
    };
    let format = entry.format.clone().unwrap_or_default();
    let spec = DatasetSpec {
        name: entry.name.clone(),
        format: format.clone(),
        root: Some(member.clone()),
        options: BTreeMap::new(),
    };
    let layout = match scan::scan(&spec) {
        Ok(layout) => layout,
        Err(problem) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(DataError::Archive {
                archive: archive.to_path_buf(),
                message: format!("does not hold the `{format}` layout the loader reads: {problem}"),
            });
        }
    };
    marker.write(&member.join(MARKER))?;
    publish::publish(&member, target, options.force)?;
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!(
        "{}: {} files ({:.1} MB) laid out at {}: {} classes, {} train / {} val",
        entry.name,
        extracted.files,
        extracted.bytes as f64 / 1e6,
        target.display(),
        layout.classes.len(),
        layout.train,
        layout.val
    );
    Ok(())
}
