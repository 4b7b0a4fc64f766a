//! A damaged state file is refused before anything touches it, and a running store can be copied.
//!
//! [`check`] reads the store as it lies on disk, read-only (see [`open_as_it_lies`]): a file that is not a
//! database, a truncated one, one whose pages `PRAGMA quick_check` finds damaged, or one made by
//! a newer coordinator is refused with one line that names the file, says what is wrong and how
//! to restore it. [`backup`] copies a store, even one a coordinator is writing, with SQLite's
//! online backup: a consistent snapshot of one moment.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::error::{Result, StoreError};
use super::DB_FILE;
use crate::sweep::identity::IDENTITY_VERSION;

/// What to do about a damaged state file, said with every refusal.
const RESTORE: &str = "nothing was changed; restore it from a copy made by `coordinator backup` (stop the \
                       coordinator, copy the backup over it, remove its -wal and -shm files), or move the \
                       state dir aside to start afresh";

/// Refuses the store in `dir` when its file is damaged or newer than this coordinator; a state
/// dir without a store passes (one will be made).
pub(super) fn check(dir: &Path) -> Result<()> {
    let file = dir.join(DB_FILE);
    if !file.exists() {
        return Ok(());
    }
    let damaged = |what: String| StoreError::Damaged {
        file: file.clone(),
        what: format!("damaged ({what})"),
        restore: RESTORE,
    };
    let conn = open_as_it_lies(&file).map_err(|e| damaged(e.to_string()))?;
    let found: u32 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| damaged(e.to_string()))?;
    if found > IDENTITY_VERSION {
        return Err(StoreError::Damaged {
            file: file.clone(),
            what: format!(
                "made by a newer coordinator (trial identity version {found}; this one knows {IDENTITY_VERSION})"
            ),
            restore: "nothing was changed; use that coordinator, or another --state-dir",
        });
    }
    // The first problem is enough to refuse, and names where it is.
    let verdict: String =
        conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0)).map_err(|e| damaged(e.to_string()))?;
    if verdict != "ok" {
        let first = verdict.lines().find(|l| !l.starts_with("***")).unwrap_or(&verdict).to_string();
        return Err(damaged(format!("SQLite's quick_check found: {first}")));
    }
    Ok(())
}

/// The store as it lies, read-only. With no write-ahead log beside it, the file alone is the
/// store: it is read as immutable (no lock, no file created beside it). With one, the log holds
/// commits the file has not taken in yet (and a checkpoint may have been cut short): the file is
/// read through it, which may create SQLite's shared-memory index, never a write to either.
fn open_as_it_lies(file: &Path) -> rusqlite::Result<Connection> {
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(PathBuf::from(wal)).is_ok_and(|m| m.len() > 0) {
        let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        return Ok(conn);
    }
    let uri = format!("file:{}?mode=ro&immutable=1", uri_path(file));
    Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
}

/// A path as a `file:` URI's path: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// What a backup copied.
#[derive(Debug)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub trials: u64,
    pub results: u64,
    pub seconds: f64,
}

/// Copies the store in `dir` to `to` (which must not exist), consistently, while a coordinator
/// may be writing it; the copy is checked (`quick_check`) before it is called done.
pub fn backup(dir: &Path, to: &Path) -> Result<BackupReport> {
    let started = Instant::now();
    let source_file = dir.join(DB_FILE);
    if !source_file.is_file() {
        return Err(StoreError::io(
            &source_file,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no state store here"),
        ));
    }
    check(dir)?;
    if to.exists() {
        return Err(StoreError::io(
            to,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists already: choose another name"),
        ));
    }
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let source = Connection::open_with_flags(&source_file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(Duration::from_secs(5))?;
    {
        let mut copy = Connection::open(&partial)?;
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        // A few hundred pages a step, a pause between: a running coordinator keeps committing.
        backup.run_to_completion(256, Duration::from_millis(5), None)?;
    }
    let copy = Connection::open(&partial)?;
    let verdict: String = copy.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    if verdict != "ok" {
        let _ = std::fs::remove_file(&partial);
        return Err(StoreError::Corrupt { what: format!("backup {}", partial.display()), reason: verdict });
    }
    let count = |table: &str| -> Result<u64> {
        Ok(copy.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    let (trials, results) = (count("trials")?, count("results")?);
    drop(copy);
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| StoreError::io(&partial, e))?;
    std::fs::rename(&partial, to).map_err(|e| StoreError::io(to, e))?;
    let bytes = std::fs::metadata(to).map_err(|e| StoreError::io(to, e))?.len();
    Ok(BackupReport {
        file: to.to_path_buf(),
        bytes,
        trials,
        results,
        seconds: started.elapsed().as_secs_f64(),
    })
}
