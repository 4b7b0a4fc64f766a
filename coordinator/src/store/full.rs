//! A state dir with no room left: a state, not an error to retry.
//!
//! The first commit that fails for lack of space (SQLite's `SQLITE_FULL`, or a write that fails
//! with `ENOSPC`/`EDQUOT`) puts the store in this state, says so once in the log, and publishes
//! it (the progress line and `coordinator status` show it). While full, the store leases no
//! trial and writes nothing: what must be committed (results, epoch reports, checkpoints,
//! failures, hand-backs) is refused with [`StoreError::Full`], so that the workers keep it and
//! send it again later (they are not acknowledged, as when the coordinator is away); what needs
//! no write (asking for work, heartbeats, status) is answered from memory, and leases are kept
//! alive there. At most every [`PROBE_EVERY`], once the filesystem has [`ROOM_TO_RESUME`] free,
//! the next batch is tried for real: if it commits, the store goes on by itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::StoreError;
use super::{now_ms, Core};

/// How often a full store looks for room again.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Free bytes on the state dir's filesystem before a full store tries to commit again.
pub const ROOM_TO_RESUME: u64 = 1024 * 1024;

/// What is full, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    /// The state dir.
    pub dir: PathBuf,
    /// Free bytes on its filesystem, when last looked at.
    pub free_bytes: u64,
    /// When the store found it full (milliseconds since the Unix epoch).
    pub since_ms: u64,
    /// What failed (SQLite's or the operating system's words).
    pub cause: String,
}

impl Full {
    /// One line for the log, the progress line and `status`: which path, how much is free, what
    /// the store needs to go on, and what it does meanwhile.
    pub fn describe(&self) -> String {
        format!(
            "state dir {} is full ({} free on its filesystem; {}): no new trials are leased and the workers keep \
             what they could not send; free at least {} there and the sweep goes on by itself",
            self.dir.display(),
            common::space::human(self.free_bytes),
            self.cause,
            common::space::human(ROOM_TO_RESUME)
        )
    }
}

/// Whether a SQLite error on `conn` says the disk (or the quota) is full.
pub(super) fn sqlite_says_full(conn: &rusqlite::Connection, error: &rusqlite::Error) -> bool {
    let rusqlite::Error::SqliteFailure(e, _) = error else { return false };
    if e.code == rusqlite::ErrorCode::DiskFull {
        return true;
    }
    // A quota exceeded (EDQUOT) reaches SQLite as a failed write: the system call's errno tells.
    // SAFETY: the connection's own handle, asked for the errno of its last failed call.
    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
    e.code == rusqlite::ErrorCode::SystemIoFailure
        && common::space::is_out_of_space(&std::io::Error::from_raw_os_error(errno))
}

fn free_bytes(dir: &Path) -> u64 {
    common::space::free_bytes(dir).unwrap_or(0)
}

/// The store's memory of being full: what, and when to look again.
#[derive(Debug)]
pub(super) struct FullState {
    pub(super) full: Full,
    next_probe: Instant,
}

impl Core {
    /// Enters the full state (once: a store already full only notes the newer cause).
    pub(super) fn became_full(&mut self, cause: String) {
        // The running batch (if any) must not take its own commit as proof of room.
        self.found_full = true;
        let next_probe = Instant::now() + PROBE_EVERY;
        if let Some(state) = &mut self.full {
            state.next_probe = next_probe;
            state.full.free_bytes = free_bytes(&self.dir);
            return;
        }
        let full =
            Full { dir: self.dir.clone(), free_bytes: free_bytes(&self.dir), since_ms: now_ms(), cause };
        tracing::error!("{}", full.describe());
        self.health.send_replace(Some(full.clone()));
        self.full = Some(FullState { full, next_probe });
    }

    /// Whether the next batch must be answered without writing: full, and either not yet time
    /// to look again or still without room.
    pub(super) fn stays_full(&mut self) -> bool {
        let Some(state) = &mut self.full else { return false };
        let now = Instant::now();
        if now < state.next_probe {
            return true;
        }
        state.next_probe = now + PROBE_EVERY;
        state.full.free_bytes = free_bytes(&self.dir);
        state.full.free_bytes < ROOM_TO_RESUME
    }

    /// A batch committed while full: there is room again. Every held lease gets a fresh term
    /// (heartbeats were kept in memory only, and a restart while full would have found them
    /// stale), and the store says so once.
    pub(super) fn room_again(&mut self) {
        let Some(state) = self.full.take() else { return };
        let seconds = now_ms().saturating_sub(state.full.since_ms) / 1000;
        tracing::info!(
            state_dir = %self.dir.display(),
            free = %common::space::human(free_bytes(&self.dir)),
            "the state dir has room again after {seconds} s: leasing trials again"
        );
        let deadline = now_ms() + self.lease_ttl_ms;
        let leases: Vec<String> = self.sched.leases().map(|l| l.id.clone()).collect();
        for lease_id in leases {
            self.sched.extend_lease(&lease_id, deadline);
        }
        self.health.send_replace(None);
    }

    /// Looks for room at the next batch, whenever the last look was (tests drive the store batch
    /// by batch and do not wait).
    #[cfg(test)]
    pub(super) fn probe_now(&mut self) {
        if let Some(state) = &mut self.full {
            state.next_probe = Instant::now();
        }
    }

    /// The error a job that must write gets while the store is full.
    pub(super) fn full_error(&self) -> StoreError {
        match &self.full {
            Some(state) => StoreError::Full(Box::new(state.full.clone())),
            None => StoreError::Closed,
        }
    }
}
