//! Opening the state dir's database: its settings, its tables, and older stores brought up to date.

use std::path::Path;

use rusqlite::Connection;

use super::error::{Result, StoreError};
use super::schema::SCHEMA;
use super::{integrity, migrate, DB_FILE};

pub(super) fn open_connection(dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    // A damaged (or newer) file is refused before anything here writes to it.
    integrity::check(dir)?;
    let mut conn = Connection::open(dir.join(DB_FILE))?;
    // WAL: readers (`coordinator report`) never block the writer. synchronous=NORMAL: COMMIT does
    // not wait for the disk; the store's sync thread (`durable`) fsyncs the WAL before any answer
    // that promises durability leaves.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    migrate::upgrade(&mut conn, dir)?;
    add_columns(&conn)?;
    Ok(conn)
}

/// Columns added since a store's tables were made, each with a default that means what an older
/// store meant (older coordinators ignore them).
fn add_columns(conn: &Connection) -> Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('trials')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !columns.iter().any(|c| c == "alone") {
        // A trial that ran out of memory beside others runs alone from then on.
        conn.execute_batch("ALTER TABLE trials ADD COLUMN alone INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}
