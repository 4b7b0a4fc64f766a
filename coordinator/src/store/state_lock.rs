//! One coordinator per state dir: an advisory lock on a file inside it, held while serving.
//!
//! Two coordinators on one store would each trust their in-memory scheduler and hand the same
//! trial to two workers, and each would delete the other's checkpoint files. SQLite's own locks
//! only serialize single transactions, so the whole run takes an exclusive `flock` on
//! [`LOCK_FILE`] (through `fs4`; std's `File::try_lock` is newer than the workspace's Rust
//! version). The holder writes its pid into the file so that the one refused can name it.
//!
//! The lock dies with its process (the kernel drops it when the file is closed), so a killed
//! coordinator never leaves a stale lock behind; the file itself stays and is reused. Readers
//! (`coordinator report`, `status --state-dir`) do not take it. `flock` is local to one machine
//! on some network filesystems: keep a state dir on a disk that one node mounts.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file inside the state dir.
pub const LOCK_FILE: &str = "coordinator.lock";

#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    #[error(
        "state dir {} is in use by another coordinator ({holder}); stop it first, or give --state-dir another folder",
        dir.display()
    )]
    Held { dir: PathBuf, holder: Holder },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who holds a lock, as far as its file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Pid(u32),
    /// The holder has not written its pid yet (it took the lock a moment ago).
    Unknown,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Pid(pid) => write!(f, "pid {pid}"),
            Holder::Unknown => f.write_str("pid not yet written"),
        }
    }
}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    // Holding the open file is holding the lock.
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the state dir's lock (creating the dir if need be), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, StateLockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StateLockError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: the holder's pid must survive a refused opener.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(StateLockError::Held { dir: dir.to_path_buf(), holder: read_holder(&mut file) })
            }
            Err(fs4::TryLockError::Error(source)) => return Err(StateLockError::Io { path, source }),
        }
        file.set_len(0).map_err(io(&path))?;
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(StateLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) => text.trim().parse().map_or(Holder::Unknown, Holder::Pid),
        Err(_) => Holder::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_dir_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).unwrap();
        // flock belongs to the open file description: a second open in this process conflicts too.
        match StateLock::acquire(&state) {
            Err(StateLockError::Held { holder, .. }) => assert_eq!(holder, Holder::Pid(std::process::id())),
            other => panic!("expected the lock to be held, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(first.path()).unwrap(), format!("{}\n", std::process::id()));
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        assert_eq!(std::fs::read_to_string(again.path()).unwrap(), format!("{}\n", std::process::id()));
    }
}
