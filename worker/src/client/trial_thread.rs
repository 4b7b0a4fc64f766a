//! A trial on its own thread: `run_trial` is blocking, the client loop is not.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::UnboundedSender;

use super::LeaseKey;
use crate::error::WorkerError;
use crate::outcome::EpochReport;
use crate::run::{run_trial, RunOptions, TrialEvent, TrialOutcome};
use crate::trial::TrialSpec;

/// What a trial thread tells the client loop.
pub(super) enum TrialMessage {
    Epoch {
        lease: LeaseKey,
        report: EpochReport,
    },
    /// A staged copy of the checkpoint written after `epoch`, for upload.
    Checkpoint {
        lease: LeaseKey,
        epoch: u32,
        file: PathBuf,
    },
    Ended {
        lease: LeaseKey,
        outcome: Result<TrialOutcome, WorkerError>,
    },
}

pub(super) fn spawn(
    lease: LeaseKey,
    spec: TrialSpec,
    options: RunOptions,
    staging: PathBuf,
    events: UnboundedSender<TrialMessage>,
) -> std::io::Result<()> {
    let name = format!("trial-{}", lease.trial_id);
    std::thread::Builder::new().name(name).spawn(move || {
        let mut on_event = |event: TrialEvent<'_>| match event {
            TrialEvent::Epoch(report) => {
                let _ = events.send(TrialMessage::Epoch { lease: lease.clone(), report: report.clone() });
            }
            TrialEvent::Checkpoint { epoch, path } => match stage(path, &staging, epoch) {
                Ok(file) => {
                    let _ = events.send(TrialMessage::Checkpoint { lease: lease.clone(), epoch, file });
                }
                Err(e) => {
                    tracing::warn!(trial = %lease.trial_id, epoch, "cannot stage checkpoint for upload: {e}")
                }
            },
            // Step progress stays on the node; the coordinator hears of whole epochs.
            TrialEvent::Progress { .. } => {}
        };
        let outcome = run_trial(&spec, &options, &mut on_event);
        let _ = events.send(TrialMessage::Ended { lease, outcome });
    })?;
    Ok(())
}

/// Freezes the checkpoint of `epoch` under `staging`: the trial overwrites its checkpoint file
/// every epoch, the upload may happen later. A hard link costs nothing; a copy is the fallback.
pub(super) fn stage(path: &Path, staging: &Path, epoch: u32) -> std::io::Result<PathBuf> {
    let staged = staging.join(format!("upload-epoch-{epoch}.ckpt"));
    let _ = std::fs::remove_file(&staged);
    if let Err(e) = std::fs::hard_link(path, &staged) {
        if e.kind() == std::io::ErrorKind::NotFound {
            std::fs::create_dir_all(staging)?;
        }
        if std::fs::hard_link(path, &staged).is_err() {
            std::fs::copy(path, &staged)?;
        }
    }
    Ok(staged)
}
