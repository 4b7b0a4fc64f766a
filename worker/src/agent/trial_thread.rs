//! What trials tell the agent's loop, and the stand-in trials (`architecture: noop`) that run on a
//! thread of the agent: they have no tensors, so they need no process of their own, and the
//! dispatch benchmark measures orchestration alone.

use std::path::{Path, PathBuf};

use common::outcome::{EpochReport, TrialResult};
use common::trial::TrialSpec;
use tokio::sync::mpsc::UnboundedSender;

use super::LeaseKey;
use crate::run::{run_trial, RanOutOf, RunOptions, TrialEvent, TrialOutcome};

/// What a trial (process or thread) tells the agent's loop.
pub(super) enum TrialMessage {
    /// The trial is working (steps, decoding): the watchdog's evidence.
    Progress {
        lease: LeaseKey,
    },
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
        end: TrialEnd,
    },
}

/// How a trial ended.
pub(super) enum TrialEnd {
    /// Completed or diverged; the result says which.
    Finished(Box<TrialResult>),
    /// Cancelled; the last checkpoint, if any, lets another attempt resume.
    Interrupted { epoch: u32, checkpoint: Option<PathBuf> },
    Failed {
        error: String,
        retryable: bool,
        /// Failed for want of disk or memory (see [`RanOutOf`]).
        ran_out_of: Option<RanOutOf>,
    },
}

impl From<Result<TrialOutcome, crate::error::WorkerError>> for TrialEnd {
    fn from(outcome: Result<TrialOutcome, crate::error::WorkerError>) -> Self {
        match outcome {
            Ok(TrialOutcome::Finished(result)) => TrialEnd::Finished(result),
            Ok(TrialOutcome::Interrupted { epoch, checkpoint }) => {
                TrialEnd::Interrupted { epoch, checkpoint }
            }
            Err(error) => TrialEnd::Failed {
                error: error.to_string(),
                retryable: error.is_retryable(),
                ran_out_of: RanOutOf::of(&error),
            },
        }
    }
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
            TrialEvent::Checkpoint { epoch, path } => match stage(path, &staging, &lease.lease_id, epoch) {
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
        let end = run_trial(&spec, &options, &mut on_event).into();
        let _ = events.send(TrialMessage::Ended { lease, end });
    })?;
    Ok(())
}

/// Freezes the checkpoint of `epoch` under `staging`: the trial overwrites its checkpoint file
/// every epoch, the upload may happen later. A hard link costs nothing; a copy is the fallback.
/// The name carries the lease: the next trial on the same device may start while this one's
/// upload is still on its way.
pub(super) fn stage(path: &Path, staging: &Path, lease_id: &str, epoch: u32) -> std::io::Result<PathBuf> {
    let staged = staging.join(format!("upload-{lease_id}-epoch-{epoch}.ckpt"));
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
