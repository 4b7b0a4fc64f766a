//! Which sweeps a state dir holds, and which trials each has loaded.
//!
//! A trial belongs to every sweep (by name) that has loaded it, so reports are per sweep: two
//! sweeps in one state dir, or one sweep loaded from two spellings of its path, never count a
//! trial twice. `seen_ms` is the last load that named the trial: when a changed sweep file
//! redefines a cell (other epochs, say), reports keep the cell's newest definition.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{Result, StoreError, DB_FILE};
use crate::sweep::spec::Sweep;

/// Records that `sweep` (its trials, as loaded now) is in the store.
pub(super) fn record(tx: &Transaction<'_>, sweep: &Sweep, now: u64) -> Result<()> {
    tx.execute(
        "INSERT INTO sweeps (name, file, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT(name) DO UPDATE SET file = ?2, updated_ms = ?3",
        params![sweep.name, sweep.file.display().to_string(), now],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO sweep_trials (sweep, trial_id, seen_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(sweep, trial_id) DO UPDATE SET seen_ms = ?3",
    )?;
    for trial in &sweep.trials {
        insert.execute(params![sweep.name, trial.id, now])?;
    }
    Ok(())
}

/// One sweep of a state dir.
#[derive(Debug, Clone)]
pub struct SweepInfo {
    pub name: String,
    /// The sweep file as last given.
    pub file: PathBuf,
    /// Its trials, each with the last time a load of the sweep named it (ms since the epoch).
    pub trials: Vec<(String, u64)>,
}

/// Every sweep the store in `dir` holds, by name.
pub fn read_sweeps(dir: &Path) -> Result<Vec<SweepInfo>> {
    super::migrate::ensure_current(dir)?;
    let path = dir.join(DB_FILE);
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let exists: Option<String> = conn
        .query_row("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sweeps'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::Corrupt { what: "sweep list".into(), reason: "no `sweeps` table".into() });
    }
    let mut sweeps: Vec<SweepInfo> = conn
        .prepare("SELECT name, file FROM sweeps ORDER BY name")?
        .query_map([], |r| {
            Ok(SweepInfo { name: r.get(0)?, file: PathBuf::from(r.get::<_, String>(1)?), trials: Vec::new() })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut statement =
        conn.prepare("SELECT trial_id, seen_ms FROM sweep_trials WHERE sweep = ?1 ORDER BY trial_id")?;
    for sweep in &mut sweeps {
        sweep.trials = statement
            .query_map(params![sweep.name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(sweeps)
}
