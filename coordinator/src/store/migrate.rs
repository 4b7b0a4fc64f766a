//! Bringing a state dir made by an earlier coordinator up to today's schema and trial ids.
//!
//! `PRAGMA user_version` holds the identity version a store was made with
//! ([`crate::sweep::identity::IDENTITY_VERSION`]); 0 is a store from before trial ids left paths out.
//! Opening such a store migrates it, in one transaction:
//! - the tables this version adds (sweeps and their trials, merged duplicates) and the trials'
//!   `identity_json` column are created; every trial joins the sweep the store last ran;
//! - every trial's id is recomputed from its stored spec (its weights digested where this machine
//!   can read them, else named by file name, as [`crate::sweep::identity`] says);
//! - trials that turn out to be the same (the same cell run under two data roots, say) are merged
//!   into one: the first finished result is kept, with its attempts, epochs and checkpoint; the
//!   other results are kept in the `merged_results` table, never shown in reports;
//! - leases are ended: workers name trials by their old ids (their trials go back to pending,
//!   with no attempt counted).
//!
//! A store made by a newer coordinator is refused with a line saying so.

use std::collections::BTreeMap;
use std::path::Path;

use common::TrialSpec;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::schema::{MERGED_RESULTS_SCHEMA, SWEEPS_SCHEMA};
use super::{now_ms, Result, StoreError, DB_FILE};
use crate::sweep::identity::{self, WeightsDigests, IDENTITY_VERSION};

fn version(conn: &Connection) -> Result<u32> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn refuse_newer(dir: &Path, found: u32) -> StoreError {
    StoreError::Migration {
        dir: dir.to_path_buf(),
        message: format!(
            "made by a newer coordinator (trial identity version {found}; this one knows {IDENTITY_VERSION}): \
             use that coordinator, or another --state-dir"
        ),
    }
}

/// Migrates the store in `dir` if an earlier coordinator made it (a reader's way in: `report`
/// and `status` read stores that no coordinator of this version has opened yet).
pub(super) fn ensure_current(dir: &Path) -> Result<()> {
    let path = dir.join(DB_FILE);
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let found = version(&conn)?;
    drop(conn);
    if found == IDENTITY_VERSION {
        return Ok(());
    }
    if found > IDENTITY_VERSION {
        return Err(refuse_newer(dir, found));
    }
    let mut conn = Connection::open(&path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    upgrade(&mut conn, dir)
}

/// Creates this version's tables and, in a store made before them, migrates its trials.
pub(super) fn upgrade(conn: &mut Connection, dir: &Path) -> Result<()> {
    let found = version(conn)?;
    if found > IDENTITY_VERSION {
        return Err(refuse_newer(dir, found));
    }
    if found == IDENTITY_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(SWEEPS_SCHEMA)?;
    tx.execute_batch(MERGED_RESULTS_SCHEMA)?;
    let has_identity = {
        let mut statement = tx.prepare("SELECT name FROM pragma_table_info('trials')")?;
        let columns: Vec<String> = statement.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        columns.iter().any(|c| c == "identity_json")
    };
    if !has_identity {
        tx.execute_batch("ALTER TABLE trials ADD COLUMN identity_json TEXT")?;
    }
    let summary = migrate_trials(&tx, dir)?;
    tx.execute_batch(&format!("PRAGMA user_version = {IDENTITY_VERSION}"))?;
    tx.commit()?;
    // Files follow the committed rows (a crash in between costs a resume, never a result).
    let checkpoints = dir.join(super::CHECKPOINT_DIR);
    for (old, new) in &summary.renamed {
        let (from, to) = (checkpoints.join(old), checkpoints.join(new));
        if from.is_dir() && !to.exists() {
            if let Err(e) = std::fs::rename(&from, &to) {
                tracing::warn!("cannot move {} to {}: {e}", from.display(), to.display());
            }
        }
    }
    for old in &summary.merged_away {
        crate::store::checkpoint_files::remove(&checkpoints.join(old));
    }
    if summary.trials > 0 {
        tracing::info!(
            state_dir = %dir.display(),
            trials = summary.trials,
            merged = summary.merged,
            leases_ended = summary.leases_ended,
            "state dir migrated: trial ids no longer depend on data roots or weights paths"
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Summary {
    trials: usize,
    merged: usize,
    leases_ended: usize,
    /// Trials whose id changed, old and new: their checkpoint folders move.
    renamed: Vec<(String, String)>,
    /// Duplicates merged away: their checkpoint folders go.
    merged_away: Vec<String>,
}

/// One trial as an earlier coordinator stored it.
struct OldTrial {
    id: String,
    identity: String,
    created_ms: u64,
    /// When its result was committed, if it has one.
    completed_ms: Option<u64>,
}

/// Tables whose rows name a trial by id, and the column that does.
const TRIAL_COLUMNS: [(&str, &str); 6] = [
    ("attempts", "trial_id"),
    ("epochs", "trial_id"),
    ("results", "trial_id"),
    ("checkpoints", "trial_id"),
    ("leases", "trial_id"),
    ("sweep_trials", "trial_id"),
];

fn migrate_trials(tx: &Transaction<'_>, dir: &Path) -> Result<Summary> {
    let now = now_ms();
    // The sweep an earlier coordinator ran last: its name is all it kept.
    let last_sweep: Option<(String, String)> = tx
        .query_row("SELECT name, file FROM sweep WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((name, file)) = &last_sweep {
        tx.execute(
            "INSERT OR IGNORE INTO sweeps (name, file, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
            params![name, file, now],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO sweep_trials (sweep, trial_id, seen_ms) SELECT ?1, id, created_ms FROM trials",
            params![name],
        )?;
    }
    let mut digests = WeightsDigests::default();
    let mut groups: BTreeMap<String, Vec<OldTrial>> = BTreeMap::new();
    let mut summary = Summary::default();
    {
        let mut statement = tx.prepare(
            "SELECT t.id, t.spec_json, t.created_ms, r.completed_ms FROM trials t
             LEFT JOIN results r ON r.trial_id = t.id",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let spec_json: String = row.get(1)?;
            let spec: TrialSpec = serde_json::from_str(&spec_json).map_err(|e| StoreError::Corrupt {
                what: format!("spec of trial {id}"),
                reason: e.to_string(),
            })?;
            let (new_id, identity) =
                identity::identify(&spec, &mut digests).map_err(|e| StoreError::Migration {
                    dir: dir.to_path_buf(),
                    message: format!("trial {id}: cannot read its weights file: {e}"),
                })?;
            summary.trials += 1;
            groups.entry(new_id).or_default().push(OldTrial {
                id,
                identity,
                created_ms: row.get(2)?,
                completed_ms: row.get(3)?,
            });
        }
    }
    for (new_id, mut members) in groups {
        // The first finished result wins; among unfinished trials, the oldest.
        members.sort_by_key(|t| (t.completed_ms.is_none(), t.completed_ms.unwrap_or(0), t.created_ms));
        let mut members = members.into_iter();
        let Some(keeper) = members.next() else { continue };
        for duplicate in members {
            summary.merged += 1;
            merge_away(tx, &duplicate.id, &new_id, now)?;
            summary.merged_away.push(duplicate.id);
        }
        let ended = tx.execute("DELETE FROM leases WHERE trial_id = ?1", params![keeper.id])?;
        if ended > 0 {
            summary.leases_ended += ended;
            tx.execute(
                "UPDATE attempts SET ended_ms = ?2, outcome = 'expired' WHERE trial_id = ?1 AND ended_ms IS NULL",
                params![keeper.id, now],
            )?;
            tx.execute(
                "UPDATE trials SET state = 'pending' WHERE id = ?1 AND state IN ('leased', 'running')",
                params![keeper.id],
            )?;
        }
        if keeper.id != new_id {
            // Checkpoint files live in a folder named by the trial's id.
            let old_prefix = format!("{}/{}/", super::CHECKPOINT_DIR, keeper.id);
            let new_prefix = format!("{}/{}/", super::CHECKPOINT_DIR, new_id);
            let path: Option<String> = tx
                .query_row("SELECT path FROM checkpoints WHERE trial_id = ?1", params![keeper.id], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(rest) = path.as_deref().and_then(|p| p.strip_prefix(&old_prefix)) {
                tx.execute(
                    "UPDATE checkpoints SET path = ?2 WHERE trial_id = ?1",
                    params![keeper.id, format!("{new_prefix}{rest}")],
                )?;
            }
            summary.renamed.push((keeper.id.clone(), new_id.clone()));
            for (table, column) in TRIAL_COLUMNS {
                tx.execute(
                    &format!("UPDATE OR IGNORE {table} SET {column} = ?2 WHERE {column} = ?1"),
                    params![keeper.id, new_id],
                )?;
                tx.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), params![keeper.id])?;
            }
            tx.execute("UPDATE trials SET id = ?2 WHERE id = ?1", params![keeper.id, new_id])?;
        }
        tx.execute("UPDATE trials SET identity_json = ?2 WHERE id = ?1", params![new_id, keeper.identity])?;
    }
    Ok(summary)
}

/// Removes a duplicate of trial `kept`: its result goes to `merged_results`, its sweeps to the
/// kept trial, the rest (attempts, epochs, checkpoint rows) away.
fn merge_away(tx: &Transaction<'_>, old_id: &str, kept: &str, now: u64) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO merged_results (trial_id, old_id, attempt, worker_id, result_json, completed_ms, merged_ms)
         SELECT ?2, trial_id, attempt, worker_id, result_json, completed_ms, ?3 FROM results WHERE trial_id = ?1",
        params![old_id, kept, now],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO sweep_trials (sweep, trial_id, seen_ms) SELECT sweep, ?2, seen_ms FROM sweep_trials WHERE trial_id = ?1",
        params![old_id, kept],
    )?;
    for (table, column) in TRIAL_COLUMNS {
        tx.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), params![old_id])?;
    }
    tx.execute("DELETE FROM trials WHERE id = ?1", params![old_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of the coordinator before this version, as it made state dirs.
    const LEGACY_SCHEMA: &str = include_str!("legacy_schema.sql");

    fn legacy_spec(root: &str, seed: u64) -> String {
        serde_json::json!({
            "architecture": "noop", "optimizer": "sgd",
            "dataset": {"name": "imgs", "format": "image_folder", "root": root},
            "resolution": 32, "method": "baseline", "epochs": 2, "batch_size": 1,
            "learning_rate": 0.1, "seed": seed,
        })
        .to_string()
    }

    fn legacy_store(dir: &Path) {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch(LEGACY_SCHEMA).unwrap();
        conn.execute("INSERT INTO sweep (id, name, file, updated_ms) VALUES (1, 'old', 'a/s.yaml', 1)", [])
            .unwrap();
        // The same two cells under two data roots (four trials), as the bug made them; one cell
        // finished under both roots (the second root's result later), the other under neither,
        // and a lease still held on it.
        let rows = [
            ("a1", legacy_spec("/data/imgs", 1), "done", 10, Some(100)),
            ("b1", legacy_spec("/mnt/imgs", 1), "done", 20, Some(200)),
            ("a2", legacy_spec("/data/imgs", 2), "pending", 11, None),
            ("b2", legacy_spec("/mnt/imgs", 2), "leased", 21, None),
        ];
        for (id, spec, state, created, completed) in rows {
            conn.execute(
                "INSERT INTO trials (id, spec_json, state, cost, devices, cache_key, attempts, max_attempts, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 1.0, 0, 'imgs@32', 1, 3, ?4, ?4)",
                params![id, spec, state, created],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO attempts (trial_id, attempt, worker_id, lease_id, started_ms) VALUES (?1, 1, 'w', ?2, ?3)",
                params![id, format!("{id}-1"), created],
            )
            .unwrap();
            if let Some(completed) = completed {
                conn.execute(
                    "INSERT INTO results (trial_id, attempt, worker_id, result_json, completed_ms) VALUES (?1, 1, 'w', ?2, ?3)",
                    params![id, format!("{{\"from\":\"{id}\"}}"), completed],
                )
                .unwrap();
            }
        }
        // A checkpoint of the unfinished cell's older trial (the one kept), and one of a
        // duplicate that goes.
        for id in ["a2", "b1"] {
            let folder = dir.join(super::super::CHECKPOINT_DIR).join(id);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("epoch-1.ckpt"), id).unwrap();
            conn.execute(
                "INSERT INTO checkpoints (trial_id, epoch, attempt, path, bytes, created_ms) VALUES (?1, 1, 1, ?2, 2, 1)",
                params![id, format!("checkpoints/{id}/epoch-1.ckpt")],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO leases (id, trial_id, worker_id, attempt, devices, deadline_ms) VALUES ('b2-1', 'b2', 'w', 1, 1, 9999999999999)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_legacy_store_is_migrated_once_merging_duplicates_and_keeping_the_first_result() {
        let dir = tempfile::tempdir().unwrap();
        legacy_store(dir.path());
        let mut conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        upgrade(&mut conn, dir.path()).unwrap();

        let spec = |seed| serde_json::from_str::<TrialSpec>(&legacy_spec("/anywhere", seed)).unwrap();
        let expected = |seed| identity::id_of(&identity::identity_json(&spec(seed), None));
        let trials: Vec<(String, String, String)> = conn
            .prepare("SELECT id, state, identity_json FROM trials ORDER BY created_ms")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(trials.len(), 2, "{trials:?}");
        assert_eq!((trials[0].0.clone(), trials[0].1.as_str()), (expected(1), "done"));
        // The held lease named an old id: ended, its trial back to pending.
        assert_eq!((trials[1].0.clone(), trials[1].1.as_str()), (expected(2), "pending"));
        let leases: u32 = conn.query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0)).unwrap();
        assert_eq!(leases, 0);
        // The first finished result is the one kept; the other is on record, not in results.
        let kept: String = conn.query_row("SELECT result_json FROM results", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, "{\"from\":\"a1\"}");
        let merged: (String, String) = conn
            .query_row("SELECT old_id, result_json FROM merged_results", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(merged, ("b1".to_string(), "{\"from\":\"b1\"}".to_string()));
        let attempts: Vec<String> = conn
            .prepare("SELECT trial_id FROM attempts ORDER BY trial_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(attempts.len(), 2);
        assert!(attempts.iter().all(|id| *id == expected(1) || *id == expected(2)), "{attempts:?}");
        // The kept checkpoint moved to the folder of the trial's new id; the duplicate's went.
        let path: String = conn.query_row("SELECT path FROM checkpoints", [], |r| r.get(0)).unwrap();
        assert_eq!(path, format!("checkpoints/{}/epoch-1.ckpt", expected(2)));
        assert_eq!(std::fs::read(dir.path().join(&path)).unwrap(), b"a2");
        assert!(!dir.path().join("checkpoints/a2").exists() && !dir.path().join("checkpoints/b1").exists());
        // Both trials belong to the sweep the store last ran.
        let members: u32 = conn
            .query_row("SELECT COUNT(*) FROM sweep_trials WHERE sweep = 'old'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(members, 2);
        // A second open changes nothing.
        drop(conn);
        let mut conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        upgrade(&mut conn, dir.path()).unwrap();
        let count: u32 = conn.query_row("SELECT COUNT(*) FROM trials", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn a_store_from_a_newer_coordinator_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", IDENTITY_VERSION + 1)).unwrap();
        let error = upgrade(&mut conn, dir.path()).unwrap_err().to_string();
        assert!(error.contains("made by a newer coordinator") && !error.contains('\n'), "{error}");
    }
}
