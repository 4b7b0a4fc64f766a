//! The store's tables, in one place; [`super::migrate`] brings older state dirs up to them.

/// The tables every store has had since the first version; [`super::open::open_connection`]
/// creates them.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sweep (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    cost REAL NOT NULL,
    devices INTEGER NOT NULL,
    cache_key TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
-- Readers that follow a running sweep (the dashboard) ask for the trials changed since a moment:
-- without it each look would scan every trial's row, specs included.
CREATE INDEX IF NOT EXISTS trials_by_update ON trials (updated_ms);
CREATE TABLE IF NOT EXISTS attempts (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    lease_id TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    outcome TEXT,
    error TEXT,
    PRIMARY KEY (trial_id, attempt)
);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    trial_id TEXT NOT NULL UNIQUE,
    worker_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    trial_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    report_json TEXT NOT NULL,
    PRIMARY KEY (trial_id, attempt, epoch)
);
CREATE TABLE IF NOT EXISTS results (
    trial_id TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    result_json TEXT NOT NULL,
    completed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    trial_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
";

/// Sweeps and the trials each has loaded (see [`super::sweeps`]); added by identity version 1, so
/// [`super::migrate::upgrade`] creates them.
pub(super) const SWEEPS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_trials (
    sweep TEXT NOT NULL,
    trial_id TEXT NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (sweep, trial_id)
);
";

/// `merged_results`: results dropped by merging duplicate trials, kept for the record; created by
/// [`super::migrate::upgrade`] with the sweeps' tables.
pub(super) const MERGED_RESULTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS merged_results (
    trial_id TEXT NOT NULL,
    old_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    result_json TEXT NOT NULL,
    completed_ms INTEGER NOT NULL,
    merged_ms INTEGER NOT NULL,
    PRIMARY KEY (trial_id, old_id)
);
";
