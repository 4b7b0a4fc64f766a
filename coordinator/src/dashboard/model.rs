//! What the dashboard knows of a state dir, kept up to date by reading the store read-only.
//!
//! One [`Model`] per dashboard, whatever the number of tabs: it loads every trial of the sweep
//! once (spec, state, result without its history, a summary of its epochs), then follows the
//! store by cursors: epoch reports and results by their SQLite rowid (rows only ever arrive with a
//! larger one), trial states by their `updated_ms`. Each refresh costs a few indexed queries and
//! the parsing of what is new, so a sweep of 13,440 trials is followed at the cost of its newest
//! rows. The same numbers the report computes come from the report's own functions, fed with
//! these records (see [`Model::records`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::{EpochReport, TrialResult, TrialSpec};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Deserialize;

use crate::report::select::{self, Selection};
use crate::store::{self, StoreError, TrialRecord, DB_FILE};

/// A trial as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct TrialRow {
    pub id: String,
    pub spec: TrialSpec,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What the table and the ETA read of its result; the whole result is read when a view asks
    /// for the report's records ([`Model::records`]).
    pub result: Option<Finished>,
    /// The latest attempt's newest epoch report, as far as the table reads it.
    pub last: Option<EpochBrief>,
    /// The best validation accuracy of any epoch reported.
    pub best_val_accuracy: Option<f64>,
}

impl TrialRow {
    /// The report's view of the trial with `result` (no epochs: the statistics read results only).
    pub fn record(&self, result: Option<TrialResult>) -> TrialRecord {
        TrialRecord {
            id: self.id.clone(),
            spec: self.spec.clone(),
            state: self.state.clone(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            result,
            epochs: Vec::new(),
        }
    }
}

/// What the table and the ETA read of an epoch report: parsing only these fields (serde skips
/// the rest without building it) keeps a fast sweep cheap to follow.
#[derive(Debug, Clone, Deserialize)]
pub struct EpochBrief {
    pub epoch: u32,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

impl From<&EpochReport> for EpochBrief {
    fn from(e: &EpochReport) -> Self {
        Self { epoch: e.epoch, train_loss: e.train_loss, val_accuracy: e.val_accuracy, seconds: e.seconds }
    }
}

/// What the table and the ETA read of a result.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub top1: f64,
    pub train_seconds: f64,
}

/// A result as the refresh reads it.
#[derive(Deserialize)]
struct ResultBrief {
    top1: f64,
    train_seconds: f64,
    history: Vec<EpochBrief>,
}

/// The sweep's whole results, for the report's records: read once at load, then the new ones
/// only when a view asks ([`Model::records`]).
#[derive(Default)]
struct FullResults {
    /// The results' rowid read up to.
    cursor: i64,
    /// By the trial's index in [`Model::trials`], without their epoch histories.
    by_trial: HashMap<usize, TrialResult>,
}

/// Where the model has read up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursors {
    pub epochs: i64,
    pub results: i64,
    pub updated_ms: i64,
    pub sweep_trials: i64,
}

/// The sweep's trials, in the report's order, and where the reading is.
pub struct Model {
    db: PathBuf,
    conn: Connection,
    pub sweep: String,
    pub trials: Vec<TrialRow>,
    index: HashMap<String, usize>,
    pub cursors: Cursors,
    /// The values of each axis of the grid, for the trial table's filters (fixed with the trials).
    pub facets: BTreeMap<&'static str, Vec<String>>,
    /// Bumped whenever anything changed: tabs wait on it.
    pub version: u64,
    full: Mutex<FullResults>,
}

fn open(db: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn corrupt(what: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt { what, reason: e.to_string() }
}

impl Model {
    /// Loads the sweep named `sweep` (or the state dir's only one) from `state_dir`.
    pub fn load(state_dir: &Path, sweep: Option<&str>) -> Result<Model, StoreError> {
        let db = state_dir.join(DB_FILE);
        let (_, records) = store::read_records(state_dir)?;
        let sweeps = store::read_sweeps(state_dir)?;
        let Selection { sweep: name, records, .. } = select::select(&sweeps, records, sweep)
            .map_err(|e| StoreError::Corrupt { what: "the sweep to show".into(), reason: e.0 })?;
        let conn = open(&db)?;
        let mut model = Model {
            db,
            conn,
            sweep: name,
            trials: Vec::new(),
            index: HashMap::new(),
            cursors: Cursors::default(),
            facets: Default::default(),
            version: 1,
            full: Mutex::new(FullResults::default()),
        };
        let mut full = FullResults::default();
        for record in records {
            let history = crate::report::model::history(&record);
            let best = history
                .iter()
                .map(|e| e.val_accuracy)
                .fold(None, |best: Option<f64>, v| Some(best.map_or(v, |b| b.max(v))));
            let finished =
                record.result.as_ref().map(|r| Finished { top1: r.top1, train_seconds: r.train_seconds });
            if let Some(mut result) = record.result {
                result.history = Vec::new();
                full.by_trial.insert(model.trials.len(), result);
            }
            model.index.insert(record.id.clone(), model.trials.len());
            model.trials.push(TrialRow {
                id: record.id,
                spec: record.spec,
                state: record.state,
                attempts: record.attempts,
                last_error: record.last_error,
                result: finished,
                last: history.last().map(EpochBrief::from),
                best_val_accuracy: best,
            });
        }
        model.cursors = model.current_cursors()?;
        full.cursor = model.cursors.results;
        model.full = Mutex::new(full);
        model.facets = axis_values(&model.trials);
        Ok(model)
    }

    fn current_cursors(&self) -> Result<Cursors, StoreError> {
        let max = |sql: &str| -> Result<i64, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?.unwrap_or(0))
        };
        Ok(Cursors {
            epochs: max("SELECT MAX(rowid) FROM epochs")?,
            results: max("SELECT MAX(rowid) FROM results")?,
            updated_ms: max("SELECT MAX(updated_ms) FROM trials")?,
            sweep_trials: max("SELECT MAX(rowid) FROM sweep_trials")?,
        })
    }

    /// Reads what changed since the last refresh; answers whether anything did. A sweep that
    /// gained trials (another run of a changed sweep file) is loaded again whole.
    pub fn refresh(&mut self) -> Result<bool, StoreError> {
        // Membership only grows: its newest rowid says whether it did (without counting it).
        let members: i64 = self
            .conn
            .query_row("SELECT MAX(rowid) FROM sweep_trials", [], |r| r.get::<_, Option<i64>>(0))?
            .unwrap_or(0);
        if members != self.cursors.sweep_trials {
            let state_dir = self.db.parent().map(Path::to_path_buf).unwrap_or_default();
            let version = self.version;
            *self = Model::load(&state_dir, Some(&self.sweep))?;
            self.version = version + 1;
            return Ok(true);
        }
        let mut changed = false;
        changed |= self.read_states()?;
        // Results first: the epoch reports of a trial whose result is in need no reading (its
        // result holds them), which in a fast sweep is most of them.
        let finished = self.read_results()?;
        changed |= !finished.is_empty();
        changed |= self.read_epochs(&finished)?;
        if changed {
            self.version += 1;
        }
        Ok(changed)
    }

    fn read_states(&mut self) -> Result<bool, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, state, attempts, last_error, updated_ms FROM trials WHERE updated_ms >= ?1",
        )?;
        let mut rows = statement.query(params![self.cursors.updated_ms])?;
        let mut changed = false;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let updated: i64 = row.get(4)?;
            self.cursors.updated_ms = self.cursors.updated_ms.max(updated);
            let Some(&i) = self.index.get(&id) else { continue };
            let (state, attempts, last_error): (String, u32, Option<String>) =
                (row.get(1)?, row.get(2)?, row.get(3)?);
            let trial = &mut self.trials[i];
            if trial.state != state || trial.attempts != attempts || trial.last_error != last_error {
                (trial.state, trial.attempts, trial.last_error) = (state, attempts, last_error);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Reads the epoch reports stored since the last look, but those of the `finished` trials.
    fn read_epochs(&mut self, finished: &HashSet<usize>) -> Result<bool, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT rowid, trial_id, report_json FROM epochs WHERE rowid > ?1 ORDER BY rowid",
        )?;
        let mut rows = statement.query(params![self.cursors.epochs])?;
        let mut changed = false;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            self.cursors.epochs = rowid;
            let trial_id: String = row.get(1)?;
            let Some(&i) = self.index.get(&trial_id) else { continue };
            if finished.contains(&i) {
                continue;
            }
            let json: String = row.get(2)?;
            let report: EpochBrief =
                serde_json::from_str(&json).map_err(|e| corrupt(format!("epoch report of {trial_id}"), e))?;
            let trial = &mut self.trials[i];
            trial.best_val_accuracy =
                Some(trial.best_val_accuracy.map_or(report.val_accuracy, |b| b.max(report.val_accuracy)));
            trial.last = Some(report);
            changed = true;
        }
        Ok(changed)
    }

    /// Reads the results stored since the last look; answers the trials (by index) they finished.
    fn read_results(&mut self) -> Result<HashSet<usize>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT rowid, trial_id, result_json FROM results WHERE rowid > ?1 ORDER BY rowid",
        )?;
        let mut rows = statement.query(params![self.cursors.results])?;
        let mut finished = HashSet::new();
        while let Some(row) = rows.next()? {
            self.cursors.results = row.get(0)?;
            let trial_id: String = row.get(1)?;
            let Some(&i) = self.index.get(&trial_id) else { continue };
            let json: String = row.get(2)?;
            let result: ResultBrief =
                serde_json::from_str(&json).map_err(|e| corrupt(format!("result of {trial_id}"), e))?;
            let trial = &mut self.trials[i];
            let best = result.history.iter().map(|e| e.val_accuracy).fold(f64::NEG_INFINITY, f64::max);
            if best.is_finite() {
                trial.best_val_accuracy = Some(trial.best_val_accuracy.map_or(best, |b| b.max(best)));
            }
            if let Some(last) = result.history.into_iter().last() {
                trial.last = Some(last);
            }
            trial.result = Some(Finished { top1: result.top1, train_seconds: result.train_seconds });
            finished.insert(i);
        }
        Ok(finished)
    }

    /// Every epoch report the store holds (of every sweep and attempt): a counter.
    pub fn epochs_stored(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM epochs", [], |r| r.get(0))?)
    }

    pub fn trial(&self, id: &str) -> Option<&TrialRow> {
        self.index.get(id).map(|&i| &self.trials[i])
    }

    /// The report's records of the sweep, for its statistics (results only, no epochs): the
    /// results stored since the last call are read whole first.
    pub fn records(&self) -> Result<Vec<TrialRecord>, StoreError> {
        let mut full = self.full.lock().unwrap_or_else(|p| p.into_inner());
        let mut statement = self.conn.prepare_cached(
            "SELECT rowid, trial_id, result_json FROM results WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid",
        )?;
        let mut rows = statement.query(params![full.cursor, self.cursors.results])?;
        while let Some(row) = rows.next()? {
            full.cursor = row.get(0)?;
            let trial_id: String = row.get(1)?;
            let Some(&i) = self.index.get(&trial_id) else { continue };
            let json: String = row.get(2)?;
            let mut result: TrialResult =
                serde_json::from_str(&json).map_err(|e| corrupt(format!("result of {trial_id}"), e))?;
            result.history = Vec::new();
            full.by_trial.insert(i, result);
        }
        Ok(self.trials.iter().enumerate().map(|(i, t)| t.record(full.by_trial.get(&i).cloned())).collect())
    }

    /// A trial's epoch reports: its result's history when finished, else every attempt's stored
    /// reports (the report's own rule, `report::model::history`); `after_rowid` leaves out the
    /// reports already sent (a stream resuming), and answers the newest rowid.
    pub fn history(&self, id: &str, after_rowid: i64) -> Result<(Vec<EpochReport>, i64), StoreError> {
        let Some(trial) = self.trial(id) else { return Ok((Vec::new(), after_rowid)) };
        let mut statement = self.conn.prepare_cached(
            "SELECT rowid, attempt, worker_id, report_json FROM epochs WHERE trial_id = ?1 AND rowid > ?2 ORDER BY attempt, epoch",
        )?;
        let mut rows = statement.query(params![id, after_rowid])?;
        let mut epochs = Vec::new();
        let mut newest = after_rowid;
        while let Some(row) = rows.next()? {
            newest = newest.max(row.get(0)?);
            let json: String = row.get(3)?;
            let report =
                serde_json::from_str(&json).map_err(|e| corrupt(format!("epoch report of {id}"), e))?;
            epochs.push(store::StoredEpoch { attempt: row.get(1)?, worker_id: row.get(2)?, report });
        }
        if after_rowid == 0 {
            let result: Option<String> = self
                .conn
                .prepare_cached("SELECT result_json FROM results WHERE trial_id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            let result: Option<TrialResult> = result
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| corrupt(format!("result of {id}"), e))?;
            let record = TrialRecord { epochs, ..trial.record(result) };
            return Ok((crate::report::model::history(&record), newest));
        }
        // Resuming: only what is new, the latest attempt's last word on each epoch.
        let mut latest: Vec<EpochReport> = Vec::new();
        for stored in epochs {
            latest.retain(|e| e.epoch != stored.report.epoch);
            latest.push(stored.report);
        }
        latest.sort_by_key(|e| e.epoch);
        Ok((latest, newest))
    }

    /// The trial's manifest and spec as stored (JSON), for its page.
    pub fn stored_json(&self, id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT t.spec_json, json_extract(r.result_json, '$.manifest') FROM trials t LEFT JOIN results r ON r.trial_id = t.id WHERE t.id = ?1",
            )?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
}

/// The values of each axis of the grid among `trials`, for the filter menus: numbers in their
/// order, names in the alphabet's.
fn axis_values(trials: &[TrialRow]) -> BTreeMap<&'static str, Vec<String>> {
    let texts = |f: &dyn Fn(&TrialRow) -> &str| -> Vec<String> {
        trials.iter().map(f).collect::<BTreeSet<&str>>().into_iter().map(String::from).collect()
    };
    let numbers = |f: &dyn Fn(&TrialRow) -> u64| -> Vec<String> {
        trials.iter().map(f).collect::<BTreeSet<u64>>().into_iter().map(|n| n.to_string()).collect()
    };
    [
        ("architecture", texts(&|t| t.spec.architecture.as_str())),
        ("optimizer", texts(&|t| t.spec.optimizer.as_str())),
        ("dataset", texts(&|t| t.spec.dataset.name.as_str())),
        ("resolution", numbers(&|t| u64::from(t.spec.resolution))),
        ("method", texts(&|t| t.spec.method.name())),
        ("seed", numbers(&|t| t.spec.seed)),
    ]
    .into_iter()
    .collect()
}
