//! A read-only view of a store for reports (a running coordinator may be writing meanwhile).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{EpochReport, TrialResult, TrialSpec};
use rusqlite::Connection;
use rusqlite::OptionalExtension;

use super::error::{Result, StoreError};
use super::{migrate, DB_FILE};

/// One epoch report as stored, with the attempt that produced it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredEpoch {
    pub attempt: u32,
    pub worker_id: String,
    pub report: EpochReport,
}

/// Everything the store knows about one trial (for reports).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrialRecord {
    pub id: String,
    pub spec: TrialSpec,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub result: Option<TrialResult>,
    /// Every epoch report of every attempt, by attempt then epoch.
    pub epochs: Vec<StoredEpoch>,
}

/// Reads every trial of the store in `dir` (a running coordinator may be writing meanwhile).
pub fn read_records(dir: &Path) -> Result<(String, Vec<TrialRecord>)> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no state store here"),
        ));
    }
    super::integrity::check(dir)?;
    migrate::ensure_current(dir)?;
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let name: String = conn
        .query_row("SELECT name FROM sweep WHERE id = 1", [], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    let corrupt = |what: String, e: serde_json::Error| StoreError::Corrupt { what, reason: e.to_string() };
    let mut records = Vec::new();
    let mut index = HashMap::new();
    {
        let mut statement = conn.prepare(
            "SELECT t.id, t.spec_json, t.state, t.attempts, t.last_error, r.result_json
             FROM trials t LEFT JOIN results r ON r.trial_id = t.id ORDER BY t.created_ms, t.id",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let spec_json: String = row.get(1)?;
            let result_json: Option<String> = row.get(5)?;
            let spec =
                serde_json::from_str(&spec_json).map_err(|e| corrupt(format!("spec of trial {id}"), e))?;
            let result = result_json
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| corrupt(format!("result of trial {id}"), e))?;
            index.insert(id.clone(), records.len());
            records.push(TrialRecord {
                id,
                spec,
                state: row.get(2)?,
                attempts: row.get(3)?,
                last_error: row.get(4)?,
                result,
                epochs: Vec::new(),
            });
        }
    }
    let mut statement = conn.prepare(
        "SELECT trial_id, attempt, worker_id, report_json FROM epochs ORDER BY trial_id, attempt, epoch",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let trial_id: String = row.get(0)?;
        let json: String = row.get(3)?;
        let report = serde_json::from_str(&json)
            .map_err(|e| corrupt(format!("epoch report of trial {trial_id}"), e))?;
        if let Some(&i) = index.get(&trial_id) {
            records[i].epochs.push(StoredEpoch { attempt: row.get(1)?, worker_id: row.get(2)?, report });
        }
    }
    Ok((name, records))
}
