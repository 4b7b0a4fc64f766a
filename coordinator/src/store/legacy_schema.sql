-- The state store's schema before trial ids left out paths (identity version 0); a migration
-- test builds a store of that time from it.
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
