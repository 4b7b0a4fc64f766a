//! A read-only tail of a store that a coordinator may be writing: the epoch reports and results
//! committed since the last look (for `--tensorboard`), trials' specs, and when each trial's
//! first attempt started. It never goes through the store's thread: it has a connection of its
//! own, opened read-only, and reads what is committed.
//!
//! `epochs` and `results` are rowid tables that only the store's thread writes, by `INSERT OR
//! REPLACE`, and nothing deletes their rows once the store is open (only a migration at open
//! does). SQLite gives a new row a rowid above every rowid in the table (the largest plus one,
//! chosen before a replaced row is removed), one transaction commits at a time, and a reader sees
//! whole commits: so "rowid > the last one seen" is exactly what was committed since. A replaced
//! row (an epoch reported again, a result sent again) comes back with its new rowid.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{EpochReport, TrialResult, TrialSpec};
use rusqlite::{params, Connection, OpenFlags};

use super::error::{Result, StoreError};
use super::DB_FILE;

/// One epoch report as the tail read it.
#[derive(Debug, Clone)]
pub struct TailedEpoch {
    pub trial_id: String,
    pub attempt: u32,
    pub report: EpochReport,
}

/// What was committed since the last [`Tail::poll`], each table in commit order.
#[derive(Debug, Default)]
pub struct Tailed {
    pub epochs: Vec<TailedEpoch>,
    pub results: Vec<(String, TrialResult)>,
}

/// A read-only connection that remembers the last rowid it read of `epochs` and `results`.
pub struct Tail {
    conn: Connection,
    epochs_after: i64,
    results_after: i64,
}

fn corrupt(what: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt { what, reason: e.to_string() }
}

impl Tail {
    /// Opens the store in `dir` read-only; the first [`poll`](Self::poll) reads everything.
    pub fn open(dir: &Path) -> Result<Self> {
        let conn = open_read_only(dir)?;
        Ok(Self { conn, epochs_after: 0, results_after: 0 })
    }

    /// Epoch reports and results committed since the last poll, from one snapshot of the store.
    pub fn poll(&mut self) -> Result<Tailed> {
        let tx = self.conn.transaction()?;
        let mut tailed = Tailed::default();
        {
            let mut statement = tx.prepare_cached(
                "SELECT rowid, trial_id, attempt, report_json FROM epochs WHERE rowid > ?1 ORDER BY rowid",
            )?;
            let mut rows = statement.query(params![self.epochs_after])?;
            while let Some(row) = rows.next()? {
                let trial_id: String = row.get(1)?;
                let json: String = row.get(3)?;
                let report = serde_json::from_str(&json)
                    .map_err(|e| corrupt(format!("epoch report of trial {trial_id}"), e))?;
                tailed.epochs.push(TailedEpoch { trial_id, attempt: row.get(2)?, report });
                self.epochs_after = row.get(0)?;
            }
            let mut statement = tx.prepare_cached(
                "SELECT rowid, trial_id, result_json FROM results WHERE rowid > ?1 ORDER BY rowid",
            )?;
            let mut rows = statement.query(params![self.results_after])?;
            while let Some(row) = rows.next()? {
                let trial_id: String = row.get(1)?;
                let json: String = row.get(2)?;
                let result = serde_json::from_str(&json)
                    .map_err(|e| corrupt(format!("result of trial {trial_id}"), e))?;
                tailed.results.push((trial_id, result));
                self.results_after = row.get(0)?;
            }
        }
        tx.commit()?;
        Ok(tailed)
    }

    /// The spec of every trial of the store, by id.
    pub fn specs(&self) -> Result<HashMap<String, TrialSpec>> {
        let mut statement = self.conn.prepare("SELECT id, spec_json FROM trials")?;
        let mut rows = statement.query([])?;
        let mut specs = HashMap::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let json: String = row.get(1)?;
            let spec = serde_json::from_str(&json).map_err(|e| corrupt(format!("spec of trial {id}"), e))?;
            specs.insert(id, spec);
        }
        Ok(specs)
    }

    /// When the first attempt of `trial_id` started (ms since the epoch), if it has one.
    pub fn first_start(&self, trial_id: &str) -> Result<Option<u64>> {
        let started: Option<u64> = self
            .conn
            .prepare_cached("SELECT MIN(started_ms) FROM attempts WHERE trial_id = ?1")?
            .query_row(params![trial_id], |r| r.get(0))?;
        Ok(started)
    }
}

/// When the first attempt of each trial of the store in `dir` started (ms since the epoch).
pub fn first_attempt_starts(dir: &Path) -> Result<HashMap<String, u64>> {
    let conn = open_read_only(dir)?;
    let mut statement = conn.prepare("SELECT trial_id, MIN(started_ms) FROM attempts GROUP BY trial_id")?;
    let starts = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(starts)
}

fn open_read_only(dir: &Path) -> Result<Connection> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no state store here"),
        ));
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}
