//! The gRPC face of the coordinator: adapts requests to the store and answers. Decisions live in
//! `schedule`, durability in `store`; who may call is decided before a call gets here (`auth`),
//! which worker calls by its session (`session`), and what it sends is checked (`validate`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::TrialSpec;
use proto::pb;
use proto::pb::coordinator_server::{Coordinator, CoordinatorServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status, Streaming};

use crate::server::auth::{Authenticated, Guard, Tokens};
use crate::server::convert;
use crate::server::sessions::Sessions;
use crate::server::validate;
use crate::store::checkpoint_files;
use crate::store::{LeaseRef, Store};
use crate::sweep::checkpoint_storage::SizeTable;
use crate::sweep::spec::Sweep;

/// Checkpoints travel in chunks of this size.
pub const CHUNK_BYTES: usize = 1 << 20;

/// How the server guards itself: credentials, transport, limits.
#[derive(Default)]
pub struct ServerSettings {
    /// `None`: every call passes (only ever bound to loopback; see `runner`).
    pub tokens: Option<Tokens>,
    pub tls: Option<ServerTlsConfig>,
    /// Largest message the server decodes; `None`: [`validate::DEFAULT_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: Option<usize>,
    /// Largest checkpoint upload; `None`: estimated from each trial's model.
    pub max_checkpoint_bytes: Option<u64>,
    /// The running sweep's trials by id: what results and reports are checked against.
    pub trials: HashMap<String, TrialSpec>,
}

impl ServerSettings {
    /// Settings that check results against `sweep`'s trials.
    pub fn for_sweep(sweep: &Sweep) -> Self {
        let trials = sweep.trials.iter().map(|t| (t.id.clone(), t.spec.clone())).collect();
        Self { trials, ..Self::default() }
    }
}

pub struct CoordinatorService {
    store: Store,
    heartbeat: Duration,
    sessions: Sessions,
    trials: Arc<HashMap<String, TrialSpec>>,
    max_checkpoint_bytes: Option<u64>,
    /// Model and optimizer sizes, for the cap of a checkpoint upload.
    sizes: SizeTable,
}

impl CoordinatorService {
    /// `lease_ttl`: how long a lease lives without news; workers heartbeat three times as often.
    pub fn new(store: Store, lease_ttl: Duration, settings: &ServerSettings) -> Self {
        Self {
            store,
            heartbeat: lease_ttl / 3,
            sessions: Sessions::default(),
            trials: Arc::new(settings.trials.clone()),
            max_checkpoint_bytes: settings.max_checkpoint_bytes,
            sizes: SizeTable::committed(),
        }
    }

    /// The definition of a trial of the running sweep.
    fn spec(&self, trial_id: &str) -> Option<&TrialSpec> {
        self.trials.get(trial_id)
    }

    /// The lease a call names, claimed by the worker whose session the call carries.
    fn claimed<T>(&self, request: &Request<T>, lease: Option<&pb::LeaseRef>) -> Result<LeaseRef, Status> {
        let holder = self.sessions.worker(request.metadata())?;
        convert::lease_ref(lease, holder)
    }
}

/// Serves on `listener` until `shutdown` resolves; also returns the trials of expired leases to
/// pending every quarter of a lease's life. Health checking and reflection answer without a token.
pub async fn serve(
    store: Store,
    listener: TcpListener,
    lease_ttl: Duration,
    settings: ServerSettings,
    rpc_times: crate::dashboard::metrics::RpcTimes,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let expiry_store = store.clone();
    let expiry_health = health.clone();
    let expiry = tokio::spawn(async move {
        let mut tick = tokio::time::interval((lease_ttl / 4).max(Duration::from_millis(50)));
        loop {
            tick.tick().await;
            match expiry_store.expire_leases().await {
                Ok(_) => {}
                Err(crate::store::StoreError::Closed) => {
                    set_health(&expiry_health, false).await;
                    return;
                }
                Err(e) => tracing::error!("expiring leases: {e}"),
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the protocol's descriptors are valid: they were compiled with it");
    let max_message = settings.max_message_bytes.unwrap_or(validate::DEFAULT_MAX_MESSAGE_BYTES);
    let service = CoordinatorService::new(store, lease_ttl, &settings);
    let guarded = Authenticated::new(
        CoordinatorServer::new(service).max_decoding_message_size(max_message),
        Guard::new(settings.tokens),
    );
    // TCP_NODELAY on every accepted connection (the builder's `tcp_nodelay` does not reach
    // sockets we accept ourselves): without it a small reply waits for the worker's delayed ACK,
    // tens of milliseconds per exchange.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = settings.tls {
        builder = builder.tls_config(tls)?;
    }
    let mut builder = builder.layer(super::rpc_timing::RpcTiming::new(rpc_times));
    // The store was opened before the server started; it stays open until the server stops.
    set_health(&health, true).await;
    let result = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(guarded)
        .serve_with_incoming_shutdown(incoming, async {
            shutdown.await;
            set_health(&health, false).await;
        })
        .await;
    expiry.abort();
    result
}

/// The overall health ("") and the coordinator service's.
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic_health::ServingStatus;
    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    health.set_service_status("", status).await;
    health
        .set_service_status(
            <CoordinatorServer<CoordinatorService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Binds `addr` (port 0: any free port) and answers the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CheckpointChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    #[tracing::instrument(skip_all, fields(worker = %request.get_ref().worker_id))]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let registration = convert::registration(request.into_inner())?;
        tracing::info!(devices = registration.devices, host = %registration.hostname, "worker registered");
        let worker_id = registration.worker_id.clone();
        self.store.register(registration).await?;
        let status = self.store.status().await?;
        Ok(Response::new(pb::RegisterResponse {
            protocol_version: proto::PROTOCOL_VERSION,
            heartbeat_ms: self.heartbeat.as_millis().try_into().unwrap_or(u32::MAX),
            sweep_name: status.sweep_name,
            trials_per_device: status.trials_per_device.to_wire(),
            session_id: self.sessions.open(&worker_id),
        }))
    }

    async fn lease(&self, request: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseResponse>, Status> {
        let worker = self.sessions.worker(request.metadata())?;
        let ask = convert::lease_ask(request.into_inner(), &worker)?;
        let reply = self.store.lease(ask).await?;
        Ok(Response::new(pb::LeaseResponse {
            assignment: reply.grant.map(Into::into),
            lost_leases: reply.lost,
            sweep_done: reply.sweep_done,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let worker = self.sessions.worker(request.metadata())?;
        let request = request.into_inner();
        convert::same_worker(&request.worker_id, &worker)?;
        validate::ids(&request.held_leases, "held_leases")?;
        validate::text(&request.condition, "condition", validate::MAX_ERROR, true)?;
        let usage = request.usage.map(convert::usage);
        let reply = self.store.heartbeat(worker, request.held_leases, request.condition, usage).await?;
        Ok(Response::new(pb::HeartbeatResponse { lost_leases: reply.lost, sweep_done: reply.sweep_done }))
    }

    async fn report_epoch(
        &self,
        request: Request<pb::EpochReportRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        let lease = self.claimed(&request, request.get_ref().lease.as_ref())?;
        let (report, json) = convert::epoch_report(request.into_inner().report_json)?;
        let epochs = self.spec(&lease.trial_id).map(|s| s.epochs);
        validate::epoch_report(&report, "report_json", epochs)?;
        self.store.report_epoch(lease, report, json).await?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<Streaming<pb::CheckpointChunk>>,
    ) -> Result<Response<pb::Ack>, Status> {
        let holder = self.sessions.worker(request.metadata())?;
        let mut chunks = request.into_inner();
        let header = match chunks.message().await? {
            Some(pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Header(header)) }) => header,
            _ => return Err(Status::invalid_argument("a checkpoint upload starts with its header")),
        };
        let lease = convert::lease_ref(header.lease.as_ref(), holder)?;
        let spec = self.spec(&lease.trial_id);
        let epochs = spec.map_or(validate::MAX_EPOCHS as u32, |s| s.epochs);
        if !(1..=epochs).contains(&header.epoch) {
            return Err(Status::invalid_argument(format!(
                "`header.epoch`: {} is not in 1..={epochs}",
                header.epoch
            )));
        }
        let cap = validate::checkpoint_cap(spec, self.max_checkpoint_bytes, &self.sizes);
        if header.total_bytes > cap {
            return Err(too_large(cap));
        }
        // A full state dir takes no checkpoint: the worker keeps it for later.
        if let Some(full) = self.store.health().borrow().clone() {
            return Err(convert::state_dir_full(full.describe()));
        }
        // Held by this worker, so the trial is one of this sweep's and its id is safe in a path.
        let attempt = self.store.check_lease(lease.clone()).await?;
        let folder = self.store.checkpoint_dir(&lease.trial_id);
        tokio::fs::create_dir_all(&folder).await.map_err(|e| io_status(&folder, e))?;
        let final_path = folder.join(format!("epoch-{}-attempt-{attempt}.ckpt", header.epoch));
        let partial = folder.join(format!(".upload-epoch-{}-attempt-{attempt}", header.epoch));
        let written = receive_file(&mut chunks, &partial, cap).await;
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(status) => {
                let _ = tokio::fs::remove_file(&partial).await;
                if status.metadata().contains_key(proto::STATE_DIR_FULL_METADATA) {
                    // The upload found the state dir full before SQLite did: the store stops too.
                    self.store.found_full(status.message().to_string()).await;
                }
                return Err(status);
            }
        };
        if header.total_bytes != 0 && bytes != header.total_bytes {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(Status::invalid_argument(format!(
                "checkpoint truncated: {bytes} of {} bytes arrived",
                header.total_bytes
            )));
        }
        tokio::fs::rename(&partial, &final_path).await.map_err(|e| io_status(&final_path, e))?;
        // The rename (and the trial's folder, if new) must be on disk before the row that
        // indexes them is committed.
        let synced = tokio::task::spawn_blocking({
            let folder = folder.clone();
            move || {
                checkpoint_files::sync_dir(&folder)?;
                folder.parent().map_or(Ok(()), checkpoint_files::sync_dir)
            }
        })
        .await
        .map_err(|e| Status::internal(format!("syncing {}: {e}", folder.display())))?;
        synced.map_err(|e| io_status(&folder, e))?;
        self.store.record_checkpoint(lease, header.epoch, final_path, bytes).await?;
        Ok(Response::new(pb::Ack {}))
    }

    type DownloadCheckpointStream = ChunkStream;

    async fn download_checkpoint(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        let lease = self.claimed(&request, request.get_ref().lease.as_ref())?;
        let request = request.into_inner();
        if request.trial_id != lease.trial_id {
            return Err(Status::invalid_argument("`trial_id` is not the trial of `lease`"));
        }
        let trial_id = request.trial_id;
        let no_checkpoint =
            || Status::not_found(format!("trial `{trial_id}` has no checkpoint of epoch {}", request.epoch));
        let (epoch, path) = self.store.checkpoint(lease).await?.ok_or_else(no_checkpoint)?;
        if epoch != request.epoch {
            return Err(no_checkpoint());
        }
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| io_status(&path, e))?;
        let total_bytes = file.metadata().await.map_err(|e| io_status(&path, e))?.len();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let header = pb::CheckpointHeader {
            lease: Some(pb::LeaseRef { lease_id: String::new(), trial_id: trial_id.clone() }),
            epoch,
            total_bytes,
        };
        tokio::spawn(async move {
            let first = pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Header(header)) };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let mut buffer = vec![0u8; CHUNK_BYTES];
                match file.read(&mut buffer).await {
                    Ok(0) => return,
                    Ok(n) => {
                        buffer.truncate(n);
                        let chunk =
                            pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Data(buffer)) };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(io_status(&path, e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as ChunkStream))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let lease = self.claimed(&request, request.get_ref().lease.as_ref())?;
        let completion = convert::completion(request.into_inner(), lease)?;
        let spec = self.spec(&completion.lease.trial_id);
        validate::result(&completion.result, spec)?;
        let epochs = spec.map(|s| s.epochs);
        for (i, (report, _)) in completion.epochs.iter().enumerate() {
            validate::epoch_report(report, &format!("epochs_json[{i}]"), epochs)?;
        }
        let (trial, top1) = (completion.lease.trial_id.clone(), completion.result.top1);
        // Answered only once the result (and the reports it carries) is committed; said once it is.
        self.store
            .complete(completion.lease, completion.result, completion.result_json, completion.epochs)
            .await?;
        tracing::info!(%trial, top1, "trial completed");
        let mut response = pb::CompleteResponse::default();
        if let Some(ask) = completion.next {
            // The result is safe whatever happens here: a failed ask only means no next trial.
            match self.store.lease(ask).await {
                Ok(reply) => {
                    response.assignment = reply.grant.map(Into::into);
                    response.sweep_done = reply.sweep_done;
                }
                Err(e) => tracing::warn!("no next trial with the completion: {e}"),
            }
        }
        Ok(Response::new(response))
    }

    async fn fail(&self, request: Request<pb::FailRequest>) -> Result<Response<pb::Ack>, Status> {
        let lease = self.claimed(&request, request.get_ref().lease.as_ref())?;
        let request = request.into_inner();
        validate::text(&request.error, "error", validate::MAX_ERROR, true)?;
        tracing::warn!(trial = %lease.trial_id, retryable = request.retryable, "trial failed: {}", request.error);
        if request.out_of_memory {
            self.store.out_of_memory(lease, request.error, request.shared).await?;
        } else {
            self.store.fail(lease, request.error, request.retryable).await?;
        }
        Ok(Response::new(pb::Ack {}))
    }

    async fn release(&self, request: Request<pb::ReleaseRequest>) -> Result<Response<pb::Ack>, Status> {
        let lease = self.claimed(&request, request.get_ref().lease.as_ref())?;
        tracing::info!(trial = %lease.trial_id, "lease handed back");
        self.store.release(lease).await?;
        Ok(Response::new(pb::Ack {}))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.store.status().await?.into()))
    }

    async fn results(
        &self,
        _request: Request<pb::ResultsRequest>,
    ) -> Result<Response<pb::ResultsResponse>, Status> {
        let dir = self.store.dir().to_path_buf();
        let (_, records) = tokio::task::spawn_blocking(move || crate::store::read_records(&dir))
            .await
            .map_err(|e| Status::internal(format!("reading results: {e}")))??;
        let trials = records
            .into_iter()
            .map(|record| pb::TrialRecord {
                trial_id: record.id,
                spec_json: record.spec.canonical_json(),
                state: record.state,
                attempts: record.attempts,
                last_error: record.last_error.unwrap_or_default(),
                result_json: record.result.and_then(|r| serde_json::to_string(&r).ok()).unwrap_or_default(),
                epochs_json: record
                    .epochs
                    .iter()
                    .filter_map(|e| serde_json::to_string(&e.report).ok())
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ResultsResponse { trials }))
    }
}

fn too_large(cap: u64) -> Status {
    Status::invalid_argument(format!(
        "checkpoint: larger than this trial's cap of {cap} bytes (the coordinator's --max-checkpoint-mb)"
    ))
}

/// Writes an upload's data chunks to `path` and syncs it; answers the bytes written. Stops at
/// `cap` bytes: nobody fills the coordinator's disk through one upload.
async fn receive_file(
    chunks: &mut Streaming<pb::CheckpointChunk>,
    path: &PathBuf,
    cap: u64,
) -> Result<u64, Status> {
    let mut file = tokio::fs::File::create(path).await.map_err(|e| io_status(path, e))?;
    let mut bytes = 0u64;
    while let Some(chunk) = chunks.next().await {
        match chunk?.part {
            Some(pb::checkpoint_chunk::Part::Data(data)) => {
                bytes += data.len() as u64;
                if bytes > cap {
                    return Err(too_large(cap));
                }
                file.write_all(&data).await.map_err(|e| io_status(path, e))?;
            }
            _ => return Err(Status::invalid_argument("only the first chunk of an upload is a header")),
        }
    }
    file.sync_all().await.map_err(|e| io_status(path, e))?;
    Ok(bytes)
}

/// An I/O error of the state dir as a worker hears it: no room is the state dir being full (the
/// worker keeps its upload and sends it again later), anything else an internal error.
fn io_status(path: &std::path::Path, error: std::io::Error) -> Status {
    let message = format!("{}: {error}", path.display());
    if common::space::is_out_of_space(&error) {
        return convert::state_dir_full(message);
    }
    Status::internal(message)
}
