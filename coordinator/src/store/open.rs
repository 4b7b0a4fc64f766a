//! Opening the state dir's database: its settings, its tables, and older stores brought up to date.

use std::path::Path;

use rusqlite::Connection;

use super::error::{Result, StoreError};
use super::schema::SCHEMA;
use super::{migrate, DB_FILE};

pub(super) fn open_connection(dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut conn = Connection::open(dir.join(DB_FILE))?;
    // WAL: readers (`coordinator report`) never block the writer. synchronous=NORMAL: COMMIT does
    // not wait for the disk; the store's sync thread (`durable`) fsyncs the WAL before any answer
    // that promises durability leaves.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    migrate::upgrade(&mut conn, dir)?;
    Ok(conn)
}
