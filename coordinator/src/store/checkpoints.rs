//! The checkpoint index: which file holds a trial's latest checkpoint, and removing those no
//! longer needed.

use std::path::{Path, PathBuf};

use rusqlite::params;
use rusqlite::OptionalExtension;

use crate::schedule::TrialState;

use super::api::LeaseRef;
use super::error::{Result, StoreError};
use super::{checkpoint_files, now_ms, Core, CHECKPOINT_DIR};

impl Core {
    pub(super) fn checkpoint_of(&self, trial_id: &str) -> Result<Option<(u32, PathBuf)>> {
        let row = self
            .conn
            .prepare_cached("SELECT epoch, path FROM checkpoints WHERE trial_id = ?1")?
            .query_row(params![trial_id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
            .optional()?;
        Ok(row.map(|(epoch, path)| (epoch, self.dir.join(path))))
    }

    pub(super) fn record_checkpoint(
        &mut self,
        lease_ref: &LeaseRef,
        epoch: u32,
        path: &Path,
        bytes: u64,
    ) -> Result<()> {
        let lease = match self.held(lease_ref) {
            Ok(lease) => lease.clone(),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        let previous = self.checkpoint_of(&lease.trial_id)?;
        if previous.as_ref().is_some_and(|(e, _)| *e > epoch) {
            // An older epoch arriving late: the newer checkpoint stays.
            let _ = std::fs::remove_file(path);
            return Ok(());
        }
        let relative = path.strip_prefix(&self.dir).unwrap_or(path);
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (trial_id, epoch, attempt, path, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![lease.trial_id, epoch, lease.attempt, relative.display().to_string(), bytes, now_ms()])?;
        // The old file stays until the new row is committed; the new one is garbage otherwise.
        match previous {
            // The same file uploaded again: indexed before and after.
            Some((_, old)) if old == path => {}
            Some((_, old)) => {
                self.files.after_commit(old);
                self.files.after_rollback(path.to_path_buf());
            }
            None => self.files.after_rollback(path.to_path_buf()),
        }
        Ok(())
    }

    /// The folder of a trial's checkpoint files.
    pub(super) fn checkpoint_folder(&self, trial_id: &str) -> PathBuf {
        self.dir.join(CHECKPOINT_DIR).join(trial_id)
    }

    /// An ended trial (done, diverged, failed for good) is never resumed: its checkpoints go,
    /// once the transaction that ends it commits. The paper's grid would keep hundreds of GB.
    pub(super) fn drop_checkpoints(&mut self, trial_id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM checkpoints WHERE trial_id = ?1")?
            .execute(params![trial_id])?;
        self.files.after_commit(self.checkpoint_folder(trial_id));
        Ok(())
    }

    /// Removes the checkpoints of trials that had ended before this start: those a crash left
    /// between a commit and its file removals, and those of stores older than that rule.
    pub(super) fn remove_finished_checkpoints(&mut self) -> Result<()> {
        let root = self.dir.join(CHECKPOINT_DIR);
        let folders = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&root, e)),
        };
        let mut ended = Vec::new();
        for entry in folders {
            let entry = entry.map_err(|e| StoreError::io(&root, e))?;
            let Some(trial_id) = entry.file_name().to_str().map(str::to_string) else { continue };
            let state: Option<String> = self
                .conn
                .query_row("SELECT state FROM trials WHERE id = ?1", params![trial_id], |r| r.get(0))
                .optional()?;
            if state.and_then(|s| s.parse::<TrialState>().ok()).is_some_and(|s| s.is_terminal()) {
                ended.push(trial_id);
            }
        }
        let tx = self.conn.transaction()?;
        for trial_id in &ended {
            tx.execute("DELETE FROM checkpoints WHERE trial_id = ?1", params![trial_id])?;
        }
        tx.commit()?;
        for trial_id in &ended {
            checkpoint_files::remove(&self.checkpoint_folder(trial_id));
        }
        Ok(())
    }
}
