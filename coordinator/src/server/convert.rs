//! Protocol messages to domain types and back. Every field a request carries is checked here;
//! a bad one answers `invalid_argument` naming it.

use common::{EpochReport, TrialResult};
use proto::pb;
use tonic::Status;

use crate::server::validate;
use crate::store::{self, Grant, LeaseAsk, LeaseRef, Registration, StoreError};

/// Most devices a worker may declare.
const MAX_DECLARED_DEVICES: u32 = 4096;

fn json<T: serde::de::DeserializeOwned>(text: &str, field: &str) -> Result<T, Status> {
    serde_json::from_str(text).map_err(|e| Status::invalid_argument(format!("`{field}`: {e}")))
}

/// The lease a call names, claimed by `holder` (the worker of the call's session).
pub fn lease_ref(lease: Option<&pb::LeaseRef>, holder: String) -> Result<LeaseRef, Status> {
    let lease = lease.ok_or_else(|| Status::invalid_argument("`lease` is missing"))?;
    validate::id(&lease.lease_id, "lease.lease_id")?;
    validate::id(&lease.trial_id, "lease.trial_id")?;
    Ok(LeaseRef { lease_id: lease.lease_id.clone(), trial_id: lease.trial_id.clone(), holder })
}

/// A worker id a request names must be that of its session.
pub fn same_worker(named: &str, session_worker: &str) -> Result<(), Status> {
    if named != session_worker {
        return Err(Status::invalid_argument(format!(
            "`worker_id`: `{named}` is not the worker of this session"
        )));
    }
    Ok(())
}

/// The number of devices a worker declares.
pub fn device_count(devices: Option<&pb::Devices>) -> Result<u32, Status> {
    let count = match devices.and_then(|d| d.kind.as_ref()) {
        Some(pb::devices::Kind::CpuRanks(ranks)) => *ranks,
        Some(pb::devices::Kind::Cuda(cuda)) => u32::try_from(cuda.ordinals.len())
            .map_err(|_| Status::invalid_argument("`devices.cuda.ordinals`: too many"))?,
        None => return Err(Status::invalid_argument("`devices` is missing")),
    };
    if count == 0 {
        return Err(Status::invalid_argument("`devices`: a worker needs at least one device"));
    }
    if count > MAX_DECLARED_DEVICES {
        return Err(Status::invalid_argument(format!("`devices`: more than {MAX_DECLARED_DEVICES}")));
    }
    Ok(count)
}

/// Checks the protocol version first: a mismatch says both versions.
pub fn registration(request: pb::RegisterRequest) -> Result<Registration, Status> {
    if request.protocol_version != proto::PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "protocol version mismatch: the worker speaks version {}, this coordinator speaks version {}",
            request.protocol_version,
            proto::PROTOCOL_VERSION
        )));
    }
    validate::id(&request.worker_id, "worker_id")?;
    validate::text(&request.hostname, "hostname", validate::MAX_NAME, false)?;
    let devices = device_count(request.devices.as_ref())?;
    let memory_mb = request.devices.map(|d| d.memory_mb).unwrap_or_default();
    if !memory_mb.is_empty() && memory_mb.len() != devices as usize {
        return Err(Status::invalid_argument(format!(
            "`devices.memory_mb`: {} values for {devices} devices (give one per device, or none)",
            memory_mb.len()
        )));
    }
    Ok(Registration { worker_id: request.worker_id, hostname: request.hostname, devices, memory_mb })
}

/// Most devices a lease request may describe: far beyond any node, small enough to check cheaply.
const MAX_DEVICES: usize = 4096;

/// The leases on each device of a lease request.
fn device_loads(devices: Vec<pb::DeviceLoad>) -> Result<Vec<Vec<String>>, Status> {
    if devices.len() > MAX_DEVICES {
        return Err(Status::invalid_argument(format!("`devices`: more than {MAX_DEVICES} devices")));
    }
    for (i, device) in devices.iter().enumerate() {
        validate::ids(&device.leases, &format!("devices[{i}].leases"))?;
    }
    Ok(devices.into_iter().map(|d| d.leases).collect())
}

/// A worker asking for work, in the session of `worker`.
pub fn lease_ask(request: pb::LeaseRequest, worker: &str) -> Result<LeaseAsk, Status> {
    same_worker(&request.worker_id, worker)?;
    validate::ids(&request.held_leases, "held_leases")?;
    validate::names(&request.cached, "cached")?;
    validate::text(&request.condition, "condition", validate::MAX_ERROR, true)?;
    Ok(LeaseAsk {
        worker_id: request.worker_id,
        devices: device_loads(request.devices)?,
        held: request.held_leases,
        cached: request.cached,
        condition: request.condition,
        usage: request.usage.map(usage),
    })
}

/// What a worker's node uses, as the store keeps it.
pub fn usage(usage: pb::NodeUsage) -> store::Usage {
    store::Usage {
        cpu_percent: usage.cpu_percent,
        rss_mb: usage.rss_mb,
        devices: usage
            .devices
            .into_iter()
            .map(|d| store::DeviceUsage {
                utilisation_percent: d.utilisation_percent,
                memory_used_mb: d.memory_used_mb,
                memory_total_mb: d.memory_total_mb,
            })
            .collect(),
    }
}

/// An epoch report, parsed and as sent (its numbers are checked by `validate`).
pub fn epoch_report(report_json: String) -> Result<(EpochReport, String), Status> {
    let report: EpochReport = json(&report_json, "report_json")?;
    Ok((report, report_json))
}

/// A completion: the lease, the result (parsed, and as sent), and the epoch reports it carries.
pub struct Completion {
    pub lease: LeaseRef,
    pub result: TrialResult,
    pub result_json: String,
    pub epochs: Vec<(EpochReport, String)>,
    /// The worker asks for its next trial in the same round trip.
    pub next: Option<LeaseAsk>,
}

/// A completion of `lease` (already claimed by the session's worker).
pub fn completion(request: pb::CompleteRequest, lease: LeaseRef) -> Result<Completion, Status> {
    let result: TrialResult = json(&request.result_json, "result_json")?;
    if request.epochs_json.len() > validate::MAX_EPOCHS {
        return Err(Status::invalid_argument(format!(
            "`epochs_json`: more than {} reports",
            validate::MAX_EPOCHS
        )));
    }
    let mut epochs = Vec::with_capacity(request.epochs_json.len());
    for (i, text) in request.epochs_json.into_iter().enumerate() {
        let report: EpochReport = json(&text, &format!("epochs_json[{i}]"))?;
        epochs.push((report, text));
    }
    // A worker that does not want another trial leaves `worker_id` empty.
    let next = if request.worker_id.is_empty() {
        None
    } else {
        same_worker(&request.worker_id, &lease.holder)?;
        validate::names(&request.cached, "cached")?;
        Some(LeaseAsk {
            worker_id: request.worker_id,
            devices: device_loads(request.devices)?,
            held: Vec::new(),
            cached: request.cached,
            condition: String::new(),
            usage: None,
        })
    };
    Ok(Completion { lease, result, result_json: request.result_json, epochs, next })
}

impl From<Grant> for pb::Assignment {
    fn from(grant: Grant) -> Self {
        pb::Assignment {
            lease_id: grant.lease_id,
            trial_id: grant.trial_id,
            spec_json: grant.spec_json,
            devices: grant.devices,
            device_indices: grant.device_indices,
            resume_epoch: grant.resume_epoch,
            attempt: grant.attempt,
            progress_timeout_s: grant.progress_timeout_s,
            alone: grant.alone,
        }
    }
}

impl From<store::Status> for pb::StatusResponse {
    fn from(status: store::Status) -> Self {
        let p = status.progress;
        pb::StatusResponse {
            sweep_name: status.sweep_name,
            pending: p.pending,
            leased: p.leased,
            running: p.running,
            done: p.done,
            failed: p.failed,
            diverged: p.diverged,
            workers: status
                .workers
                .into_iter()
                .map(|w| pb::WorkerStatus {
                    worker_id: w.worker_id,
                    hostname: w.hostname,
                    devices: w.devices,
                    trials: w.trials,
                    idle_ms: w.idle_ms,
                    condition: w.condition,
                    usage: w.usage.map(|u| pb::NodeUsage {
                        cpu_percent: u.cpu_percent,
                        rss_mb: u.rss_mb,
                        devices: u
                            .devices
                            .into_iter()
                            .map(|d| pb::DeviceUsage {
                                utilisation_percent: d.utilisation_percent,
                                memory_used_mb: d.memory_used_mb,
                                memory_total_mb: d.memory_total_mb,
                            })
                            .collect(),
                    }),
                })
                .collect(),
            eta_seconds: status.eta_seconds,
            in_flight: status
                .in_flight
                .into_iter()
                .map(|t| pb::TrialProgress {
                    trial_id: t.trial_id,
                    worker_id: t.worker_id,
                    label: t.label,
                    epoch: t.epoch,
                    epochs: t.epochs,
                    train_loss: t.train_loss,
                    val_accuracy: t.val_accuracy,
                    stress: t.stress,
                })
                .collect(),
            unplaceable: status.unplaceable,
            state_dir_full: status.state_dir_full.map(|full| full.describe()).unwrap_or_default(),
        }
    }
}

/// The answer to a message the coordinator could not store for want of room: `resource_exhausted`
/// marked with [`proto::STATE_DIR_FULL_METADATA`], so that the worker keeps the message and sends it
/// again later, without counting the coordinator as away.
pub fn state_dir_full(message: String) -> Status {
    let mut status = Status::resource_exhausted(message);
    status
        .metadata_mut()
        .insert(proto::STATE_DIR_FULL_METADATA, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// How a store error reaches a worker: `not_found` means "stop that trial", `failed_precondition`
/// "register again", `unavailable` "retry later", `resource_exhausted` with the state-dir-full
/// mark "keep it, the coordinator has no room now".
impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::LeaseLost { .. }
            | StoreError::UnknownTrial { .. }
            | StoreError::NoCheckpoint { .. } => Status::not_found(message),
            StoreError::UnknownWorker { .. } => Status::failed_precondition(message),
            StoreError::Commit { .. } | StoreError::Closed => Status::unavailable(message),
            StoreError::Full(_) => state_dir_full(message),
            StoreError::Sqlite(_)
            | StoreError::Io { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Damaged { .. }
            | StoreError::Migration { .. } => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_mismatch_names_both_versions() {
        let request = pb::RegisterRequest {
            protocol_version: 99,
            worker_id: "w".into(),
            hostname: "h".into(),
            devices: Some(pb::Devices { kind: Some(pb::devices::Kind::CpuRanks(1)), memory_mb: Vec::new() }),
        };
        let status = registration(request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("version 99"), "{}", status.message());
        assert!(status.message().contains(&format!("version {}", proto::PROTOCOL_VERSION)));
    }

    #[test]
    fn missing_and_malformed_fields_are_invalid_arguments() {
        let missing = lease_ref(None, "w".into()).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
        let traversal = pb::LeaseRef { lease_id: "l".into(), trial_id: "../../etc".into() };
        let status = lease_ref(Some(&traversal), "w".into()).unwrap_err();
        assert!(status.message().starts_with("`lease.trial_id`"), "{}", status.message());
        let status = epoch_report("{not json".into()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("report_json"));
        let no_devices = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            worker_id: "w".into(),
            hostname: String::new(),
            devices: Some(pb::Devices { kind: Some(pb::devices::Kind::CpuRanks(0)), memory_mb: Vec::new() }),
        };
        assert_eq!(registration(no_devices).unwrap_err().code(), tonic::Code::InvalidArgument);
        let memory_mismatch = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            worker_id: "w".into(),
            hostname: String::new(),
            devices: Some(pb::Devices { kind: Some(pb::devices::Kind::CpuRanks(2)), memory_mb: vec![1000] }),
        };
        let status = registration(memory_mismatch).unwrap_err();
        assert!(status.message().contains("1 values for 2 devices"), "{}", status.message());
        let bad_epoch = pb::CompleteRequest {
            lease: Some(pb::LeaseRef { lease_id: "l".into(), trial_id: "t".into() }),
            result_json: "{}".into(),
            epochs_json: vec!["[]".into()],
            ..Default::default()
        };
        let lease = LeaseRef { lease_id: "l".into(), trial_id: "t".into(), holder: "w".into() };
        let status = completion(bad_epoch, lease).err().unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("`result_json`"), "{}", status.message());
    }
}
