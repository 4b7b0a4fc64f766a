//! Durability off the store's thread.
//!
//! SQLite commits in WAL mode with `synchronous = NORMAL`: a commit writes its frames to the WAL
//! file without waiting for the disk. This thread then fsyncs the WAL file and only after that
//! runs the answers that promise durability ("your result is safe"). The store's thread goes on
//! with the next batch of jobs while the disk syncs, and one fsync covers every batch committed
//! meanwhile: on a disk where an fsync takes 7 ms (16 ms at the 90th percentile on the build
//! machine), waiting for it inside the store's thread capped the whole coordinator at one batch
//! per fsync and made every lease wait for one.
//!
//! Why the WAL's fsync is enough: a transaction's frames, its commit frame included, are in the
//! WAL once COMMIT returns; after the fsync they survive a power loss. If a checkpoint copied them
//! into the database file first, that checkpoint synced the WAL before and the database after
//! (`synchronous = NORMAL` does that for checkpoints), so they were durable already. The WAL file
//! stays the same file while the store's connection is open (SQLite deletes it only when the last
//! connection closes).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Runs once the commits submitted before it are durable, or with the reason they may not be.
pub type AfterSync = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The handle of the syncing thread; dropping it ends the thread once everything submitted ran.
pub struct WalSync {
    tx: mpsc::Sender<Vec<AfterSync>>,
}

impl WalSync {
    /// Starts the thread for the database file `db` (its WAL is `db` + `-wal`).
    pub fn start(db: &Path) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Vec<AfterSync>>();
        let mut target = Target::new(db);
        std::thread::Builder::new().name("wal-sync".into()).spawn(move || {
            while let Ok(mut waiting) = rx.recv() {
                // Everything committed by now is covered by the same fsync.
                while let Ok(more) = rx.try_recv() {
                    waiting.extend(more);
                }
                let synced = target.sync();
                if let Err(e) = &synced {
                    tracing::error!("state store: cannot make commits durable: {e}");
                }
                for answer in waiting {
                    answer(synced.clone());
                }
            }
        })?;
        Ok(Self { tx })
    }

    /// Runs `answers`, in order, once every commit made so far is on disk.
    pub fn after_sync(&self, answers: Vec<AfterSync>) {
        if let Err(mpsc::SendError(answers)) = self.tx.send(answers) {
            // The thread is gone (it cannot panic short of a bug): nothing can be promised.
            for answer in answers {
                answer(Err("the state store's sync thread is gone".into()));
            }
        }
    }
}

/// The WAL file, opened once it exists.
struct Target {
    db: PathBuf,
    wal: PathBuf,
    open: Option<File>,
}

impl Target {
    fn new(db: &Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Self { db: db.to_path_buf(), wal: PathBuf::from(wal), open: None }
    }

    fn sync(&mut self) -> Result<(), String> {
        if self.open.is_none() {
            match File::open(&self.wal) {
                Ok(file) => {
                    // A new file's name must be durable too: sync its folder once.
                    if let Some(dir) = self.wal.parent() {
                        File::open(dir)
                            .and_then(|d| d.sync_all())
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                    }
                    self.open = Some(file);
                }
                // No WAL (yet): whatever was committed lies in the database file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return File::open(&self.db)
                        .and_then(|f| f.sync_data())
                        .map_err(|e| format!("{}: {e}", self.db.display()));
                }
                Err(e) => return Err(format!("{}: {e}", self.wal.display())),
            }
        }
        match &self.open {
            Some(file) => file.sync_data().map_err(|e| format!("{}: {e}", self.wal.display())),
            None => Ok(()),
        }
    }
}
