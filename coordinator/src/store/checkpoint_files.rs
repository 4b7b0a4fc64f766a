//! Checkpoint files beside the store, kept in step with the rows that index them.
//!
//! A file is only removed once the transaction that stops indexing it has committed: removing a
//! replaced checkpoint before its replacement is committed would leave the store pointing at
//! nothing if the commit failed. The store's thread collects removals in [`PendingRemovals`]
//! while its jobs run, and carries them out (or drops them) when the batch commits or rolls back.

use std::path::{Path, PathBuf};

/// Files and folders to remove when the open transaction ends.
#[derive(Debug, Default)]
pub struct PendingRemovals {
    /// No longer indexed once the transaction commits (a replaced checkpoint, an ended trial's).
    after_commit: Vec<PathBuf>,
    /// Indexed only by the transaction: garbage if it rolls back (a new upload).
    after_rollback: Vec<PathBuf>,
}

/// How far the lists were when a job began, to undo that job alone.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    after_commit: usize,
    after_rollback: usize,
}

impl PendingRemovals {
    /// Removes `path` (a file or a folder) once the transaction commits.
    pub fn after_commit(&mut self, path: PathBuf) {
        self.after_commit.push(path);
    }

    /// Removes `path` if the transaction rolls back.
    pub fn after_rollback(&mut self, path: PathBuf) {
        self.after_rollback.push(path);
    }

    pub fn mark(&self) -> Mark {
        Mark { after_commit: self.after_commit.len(), after_rollback: self.after_rollback.len() }
    }

    /// A job's savepoint was rolled back: what it would have unindexed stays, what it indexed is
    /// garbage now.
    pub fn undo_to(&mut self, mark: Mark) {
        self.after_commit.truncate(mark.after_commit);
        for path in self.after_rollback.drain(mark.after_rollback..) {
            remove(&path);
        }
    }

    pub fn committed(&mut self) {
        for path in self.take_committed() {
            remove(&path);
        }
    }

    /// The transaction committed: answers what to remove, for the caller to remove once the
    /// commit is on disk (before that, a power cut could bring the old rows back).
    pub fn take_committed(&mut self) -> Vec<PathBuf> {
        self.after_rollback.clear();
        std::mem::take(&mut self.after_commit)
    }

    pub fn rolled_back(&mut self) {
        self.after_commit.clear();
        for path in self.after_rollback.drain(..) {
            remove(&path);
        }
    }
}

/// Removes a file or a whole folder; a missing one is already gone.
pub fn remove(path: &Path) {
    let outcome = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Disk space is all that is lost: the store no longer points at it.
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Makes a folder's entries durable (a rename or a new file in it survives a power cut).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_removes_what_it_unindexed_and_a_rollback_what_it_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            path
        };
        let (old, new) = (file("old"), file("new"));
        let mut pending = PendingRemovals::default();
        pending.after_commit(old.clone());
        pending.after_rollback(new.clone());
        pending.rolled_back();
        assert!(old.exists() && !new.exists());

        let new = file("new");
        let folder = dir.path().join("trial");
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        pending.after_commit(old.clone());
        pending.after_commit(folder.clone());
        pending.after_rollback(new.clone());
        pending.committed();
        assert!(!old.exists() && !folder.exists() && new.exists());
    }

    #[test]
    fn undoing_a_job_keeps_the_files_it_would_have_replaced_and_drops_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, own, earlier) =
            (dir.path().join("kept"), dir.path().join("own"), dir.path().join("earlier"));
        for path in [&kept, &own, &earlier] {
            std::fs::write(path, b"x").unwrap();
        }
        let mut pending = PendingRemovals::default();
        pending.after_commit(earlier.clone());
        let mark = pending.mark();
        pending.after_commit(kept.clone());
        pending.after_rollback(own.clone());
        pending.undo_to(mark);
        assert!(!own.exists(), "the failed job's upload is garbage at once");
        pending.committed();
        assert!(kept.exists() && !earlier.exists());
    }
}
