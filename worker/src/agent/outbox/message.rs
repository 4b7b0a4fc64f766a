//! One message about one lease, and how it is sent (checkpoints streamed in chunks both ways).

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::outcome::{EpochReport, TrialResult};
use proto::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::agent::credentials::Client;
use crate::agent::LeaseKey;

/// Checkpoints travel in chunks of this size.
const CHUNK_BYTES: usize = 1 << 20;

/// The slowest link a checkpoint upload is given time for, in bytes per second: beyond the
/// call deadline, an upload gets one second per this many bytes.
const SLOWEST_LINK_BYTES_PER_S: u64 = 1 << 20;

/// One message about one lease.
#[derive(Debug, Clone)]
pub(in crate::agent) enum Outgoing {
    Epoch {
        lease: LeaseKey,
        epoch: u32,
        report_json: String,
    },
    /// `file` is this worker's staged copy, removed once delivered.
    Checkpoint {
        lease: LeaseKey,
        epoch: u32,
        file: PathBuf,
    },
    /// `epochs_json`: this attempt's reports that were still waiting.
    Complete {
        lease: LeaseKey,
        result_json: String,
        epochs_json: Vec<String>,
    },
    Fail {
        lease: LeaseKey,
        error: String,
        retryable: bool,
        /// Ran out of memory, and whether other trials ran beside it (see `FailRequest`).
        out_of_memory: bool,
        shared: bool,
    },
    Release {
        lease: LeaseKey,
    },
}

/// How sending went.
pub(in crate::agent) enum Sent {
    Delivered,
    /// The coordinator does not honour the lease any more.
    LeaseLost(String),
    /// The coordinator will never accept this message.
    Refused(String),
    /// Not delivered; try again later.
    Failed(tonic::Status),
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Plain data: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

impl Outgoing {
    /// A failure that was neither for want of memory nor beside others.
    pub(in crate::agent) fn fail(lease: LeaseKey, error: String, retryable: bool) -> Self {
        Outgoing::Fail { lease, error, retryable, out_of_memory: false, shared: false }
    }

    pub(in crate::agent) fn epoch(lease: LeaseKey, report: &EpochReport) -> Self {
        Outgoing::Epoch { lease, epoch: report.epoch, report_json: to_json(report) }
    }

    pub(in crate::agent) fn complete(
        lease: LeaseKey,
        result: &TrialResult,
        epochs_json: Vec<String>,
    ) -> Self {
        Outgoing::Complete { lease, result_json: to_json(result), epochs_json }
    }

    pub(in crate::agent) fn lease(&self) -> &LeaseKey {
        match self {
            Outgoing::Epoch { lease, .. }
            | Outgoing::Checkpoint { lease, .. }
            | Outgoing::Complete { lease, .. }
            | Outgoing::Fail { lease, .. }
            | Outgoing::Release { lease } => lease,
        }
    }

    /// Forgets the message, with any file it holds.
    pub(in crate::agent) fn discard(&self) {
        if let Outgoing::Checkpoint { file, .. } = self {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Cleans up after delivery and says so in the log.
    pub(in crate::agent) fn delivered(self) {
        match self {
            Outgoing::Epoch { lease, epoch, .. } => {
                tracing::debug!(trial = %lease.trial_id, epoch, "epoch reported");
            }
            Outgoing::Checkpoint { lease, epoch, file } => {
                let _ = std::fs::remove_file(&file);
                tracing::debug!(trial = %lease.trial_id, epoch, "checkpoint uploaded");
            }
            Outgoing::Complete { lease, .. } => tracing::info!(trial = %lease.trial_id, "trial completed"),
            Outgoing::Fail { lease, .. } => tracing::info!(trial = %lease.trial_id, "failure reported"),
            Outgoing::Release { lease } => tracing::info!(trial = %lease.trial_id, "lease handed back"),
        }
    }

    /// How long sending this message may take: `call` for a call, more for a checkpoint's bytes.
    pub(in crate::agent) fn deadline(&self, call: Duration) -> Duration {
        match self {
            Outgoing::Checkpoint { file, .. } => {
                let bytes = std::fs::metadata(file).map_or(0, |m| m.len());
                call + Duration::from_secs(bytes / SLOWEST_LINK_BYTES_PER_S)
            }
            _ => call,
        }
    }

    /// Sends the message. A completion could also ask for the next trial, but its answer waits
    /// for the coordinator's fsync; the agent asks with a lease request of its own instead.
    pub(in crate::agent) async fn send(&self, client: &mut Client) -> Sent {
        let outcome = match self {
            Outgoing::Epoch { lease, report_json, .. } => client
                .report_epoch(pb::EpochReportRequest {
                    lease: Some(lease.to_pb()),
                    report_json: report_json.clone(),
                })
                .await
                .map(drop),
            Outgoing::Checkpoint { lease, epoch, file } => match upload(client, lease, *epoch, file).await {
                Ok(()) => Ok(()),
                Err(UploadError::Status(status)) => Err(status),
                Err(UploadError::Local(e)) => {
                    return Sent::Refused(format!("checkpoint {}: {e}", file.display()));
                }
            },
            Outgoing::Complete { lease, result_json, epochs_json } => {
                let request = pb::CompleteRequest {
                    lease: Some(lease.to_pb()),
                    result_json: result_json.clone(),
                    epochs_json: epochs_json.clone(),
                    ..Default::default()
                };
                client.complete(request).await.map(drop)
            }
            Outgoing::Fail { lease, error, retryable, out_of_memory, shared } => client
                .fail(pb::FailRequest {
                    lease: Some(lease.to_pb()),
                    error: error.clone(),
                    retryable: *retryable,
                    out_of_memory: *out_of_memory,
                    shared: *shared,
                })
                .await
                .map(drop),
            Outgoing::Release { lease } => {
                client.release(pb::ReleaseRequest { lease: Some(lease.to_pb()) }).await.map(drop)
            }
        };
        match outcome {
            Ok(()) => Sent::Delivered,
            Err(status) if status.code() == Code::NotFound => Sent::LeaseLost(status.message().to_string()),
            Err(status) if status.code() == Code::InvalidArgument => {
                Sent::Refused(status.message().to_string())
            }
            Err(status) => Sent::Failed(status),
        }
    }
}

enum UploadError {
    Status(tonic::Status),
    Local(std::io::Error),
}

/// Streams a checkpoint file: a header chunk, then data chunks read as they go.
async fn upload(client: &mut Client, lease: &LeaseKey, epoch: u32, file: &Path) -> Result<(), UploadError> {
    let mut reader = tokio::fs::File::open(file).await.map_err(UploadError::Local)?;
    let total_bytes = reader.metadata().await.map_err(UploadError::Local)?.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let header = pb::CheckpointHeader { lease: Some(lease.to_pb()), epoch, total_bytes };
    let read_error = std::sync::Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
    let read_error_slot = read_error.clone();
    let producer = tokio::spawn(async move {
        let header = pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Header(header)) };
        if tx.send(header).await.is_err() {
            return;
        }
        loop {
            let mut buffer = vec![0u8; CHUNK_BYTES];
            match reader.read(&mut buffer).await {
                Ok(0) => return,
                Ok(n) => {
                    buffer.truncate(n);
                    let chunk = pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Data(buffer)) };
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Ending the stream early makes the coordinator refuse a short upload.
                    if let Ok(mut slot) = read_error_slot.lock() {
                        *slot = Some(e);
                    }
                    return;
                }
            }
        }
    });
    let outcome = client.upload_checkpoint(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    let _ = producer.await;
    if let Some(e) = read_error.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(UploadError::Local(e));
    }
    outcome.map(drop).map_err(UploadError::Status)
}

/// `step` within `deadline`, or an error saying so.
async fn within<T>(
    deadline: Duration,
    step: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(deadline, step).await {
        Ok(outcome) => outcome.map_err(|s| s.message().to_string()),
        Err(_) => Err(format!("no answer within {} ms", deadline.as_millis())),
    }
}

/// Downloads a trial's checkpoint of `epoch` to `path`; each chunk must come within `deadline`
/// (a dead connection is given up, however long the whole download takes).
pub(in crate::agent) async fn download(
    client: &mut Client,
    lease: &LeaseKey,
    epoch: u32,
    path: &Path,
    deadline: Duration,
) -> Result<(), String> {
    let request =
        pb::CheckpointRequest { trial_id: lease.trial_id.clone(), epoch, lease: Some(lease.to_pb()) };
    let mut stream = within(deadline, client.download_checkpoint(request)).await?.into_inner();
    let expected = match within(deadline, stream.message()).await? {
        Some(pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Header(header)) }) => {
            header.total_bytes
        }
        _ => return Err("the download did not start with a header".into()),
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = within(deadline, stream.message()).await? {
        if let Some(pb::checkpoint_chunk::Part::Data(data)) = chunk.part {
            bytes += data.len() as u64;
            if bytes > expected {
                return Err(format!("checkpoint longer than the {expected} bytes announced"));
            }
            file.write_all(&data).await.map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    file.flush().await.map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes != expected {
        return Err(format!("checkpoint truncated: {bytes} of {expected} bytes"));
    }
    Ok(())
}
