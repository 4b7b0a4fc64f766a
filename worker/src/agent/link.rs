//! The link to the coordinator: the connection with its token, registering, each call's
//! deadline, the backoff while the coordinator is away, and when to give up on it.

use std::future::Future;
use std::time::Duration;

use proto::pb;
use tokio::time::Instant;
use tonic::transport::ClientTlsConfig;
use tonic::Code;

use super::config::{hostname, ClientConfig};
use super::credentials::{self, Client, Stamp};
use crate::error::WorkerError;
use crate::run::Devices;

/// Why a round with the coordinator stopped early.
pub(super) enum Interrupt {
    /// The coordinator is away: retry after a backoff.
    Away(String),
    /// The coordinator answered but does not know this worker (it restarted): register again at
    /// once. Not an absence: backing off here could outlast a coordinator that is about to
    /// finish the sweep and exit, leaving this worker to knock on a closed door.
    Forgotten,
    /// The coordinator answered but has no room to store anything (its state dir is full): keep
    /// what waits and send it again later. Not an absence either: no giving up.
    Held(String),
    Fatal(WorkerError),
}

/// The coordinator cannot store what this worker sends (its state dir is full): since when, and
/// when to try again.
struct Held {
    retry_at: Instant,
    backoff: Duration,
}

/// The first wait before calling an absent coordinator again; each failed attempt doubles it, up
/// to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How long one call may take before it counts as failed, while the coordinator has not said how
/// often to heartbeat (before the first registration).
const FIRST_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// Bounds of a call's deadline, which is otherwise one heartbeat interval (a third of a lease):
/// a call stuck on a dead connection (packets dropped, no reset) is abandoned in time for the
/// next heartbeat, on a fresh connection, to keep the worker's leases alive.
const MIN_CALL_DEADLINE: Duration = Duration::from_secs(1);
const MAX_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Counts and ordinals on the wire are u32; no node has more devices than that.
fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The connection to the coordinator and what the worker knows of its state.
pub(super) struct Link {
    url: String,
    client: Client,
    /// Adds the token and the registration's session to every call.
    stamp: Stamp,
    tls: Option<ClientTlsConfig>,
    registered: bool,
    /// How often a busy worker heartbeats (the coordinator says, at registration).
    heartbeat: Duration,
    /// How long one call may take (see [`MIN_CALL_DEADLINE`]).
    deadline: Duration,
    /// Since when no call has been answered (`None`: the last call was).
    away_since: Option<Instant>,
    backoff: Duration,
    max_backoff: Duration,
    give_up_after: Duration,
    /// No call before then (a backoff).
    retry_at: Instant,
    /// Why the last failed call failed.
    last_error: String,
    /// Set while the coordinator cannot store messages.
    held: Option<Held>,
}

impl Link {
    pub(super) fn new(config: &ClientConfig) -> Result<Self, WorkerError> {
        let stamp = Stamp::new(&config.credentials)?;
        let tls = config.credentials.tls()?;
        let client = credentials::connect(&config.coordinator, tls.as_ref(), &stamp)?;
        Ok(Self {
            url: config.coordinator.clone(),
            client,
            stamp,
            tls,
            registered: false,
            heartbeat: Duration::from_secs(1),
            deadline: FIRST_CALL_DEADLINE,
            away_since: None,
            backoff: FIRST_BACKOFF,
            max_backoff: config.max_backoff,
            give_up_after: config.give_up_after,
            retry_at: Instant::now(),
            last_error: String::new(),
            held: None,
        })
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(super) fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    pub(super) fn is_registered(&self) -> bool {
        self.registered
    }

    pub(super) fn is_away(&self) -> bool {
        self.away_since.is_some()
    }

    /// When the next call may be made (now, or after a backoff).
    pub(super) fn retry_at(&self) -> Instant {
        self.retry_at
    }

    /// A call with this link's deadline: one that fails with `DEADLINE_EXCEEDED` when not
    /// answered in time (over a partition, packets dropped and no reset, a call would otherwise
    /// wait for TCP to give up, minutes).
    pub(super) async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, Interrupt> {
        within(self.deadline, call).await.map_err(|status| self.interrupt(&status))
    }

    /// What a failed call means: absence, a restarted coordinator, or a refusal for good.
    pub(super) fn interrupt(&self, status: &tonic::Status) -> Interrupt {
        if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) {
            // A token the coordinator does not take will not start working by retrying.
            return Interrupt::Fatal(WorkerError::CoordinatorRefused {
                url: self.url.clone(),
                message: status.message().to_string(),
            });
        }
        if status.code() == Code::FailedPrecondition {
            // The coordinator restarted and forgot us.
            return Interrupt::Forgotten;
        }
        if status.code() == Code::ResourceExhausted
            && status.metadata().contains_key(proto::STATE_DIR_FULL_METADATA)
        {
            return Interrupt::Held(status.message().to_string());
        }
        Interrupt::Away(format!("{:?}: {}", status.code(), status.message()))
    }

    /// Registers with the worker's devices; the coordinator answers with the heartbeat interval,
    /// how many trials share a device, and the session every later call carries.
    pub(super) async fn register(
        &mut self,
        worker_id: &str,
        devices: &Devices,
        memory_mb: &[u64],
    ) -> Result<pb::RegisterResponse, Interrupt> {
        let kind = match devices {
            Devices::Cpu { ranks } => pb::devices::Kind::CpuRanks(saturating_u32(*ranks)),
            Devices::Cuda(ordinals) => pb::devices::Kind::Cuda(pb::CudaDevices {
                ordinals: ordinals.iter().map(|o| saturating_u32(*o)).collect(),
            }),
        };
        let request = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            worker_id: worker_id.to_string(),
            hostname: hostname(),
            devices: Some(pb::Devices { kind: Some(kind), memory_mb: memory_mb.to_vec() }),
        };
        match within(self.deadline, self.client.clone().register(request)).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                self.heartbeat = Duration::from_millis(u64::from(reply.heartbeat_ms.max(10)));
                self.deadline = self.heartbeat.clamp(MIN_CALL_DEADLINE, MAX_CALL_DEADLINE);
                self.stamp.set_session(&reply.session_id);
                self.registered = true;
                tracing::info!(worker = %worker_id, sweep = %reply.sweep_name, "registered");
                Ok(reply)
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::FailedPrecondition
                        | Code::InvalidArgument
                        | Code::Unauthenticated
                        | Code::PermissionDenied
                ) =>
            {
                Err(Interrupt::Fatal(WorkerError::CoordinatorRefused {
                    url: self.url.clone(),
                    message: status.message().to_string(),
                }))
            }
            Err(status) => Err(self.interrupt(&status)),
        }
    }

    /// The coordinator could not store a message (its state dir is full): what waits is sent
    /// again after a backoff; said once.
    pub(super) fn held_back(&mut self, reason: String) {
        let now = Instant::now();
        let backoff = match &self.held {
            Some(held) => (held.backoff * 2).min(self.max_backoff),
            None => {
                tracing::warn!(
                    coordinator = %self.url,
                    "the coordinator has no room to store results now; keeping them here and sending them again later: {reason}"
                );
                FIRST_BACKOFF
            }
        };
        self.held = Some(Held { retry_at: now + backoff, backoff });
    }

    /// A message was stored: the coordinator has room again.
    pub(super) fn stored(&mut self) {
        if self.held.take().is_some() {
            tracing::info!(coordinator = %self.url, "the coordinator stores results again");
        }
    }

    /// When waiting messages may go, while the coordinator cannot store them; `None`: now.
    pub(super) fn held_until(&self) -> Option<Instant> {
        self.held.as_ref().map(|held| held.retry_at)
    }

    /// The coordinator answered a call: no more backoff.
    pub(super) fn reachable(&mut self) {
        if self.away_since.take().is_some() {
            tracing::info!(coordinator = %self.url, "coordinator reachable again");
        }
        self.backoff = FIRST_BACKOFF;
        self.retry_at = Instant::now();
    }

    /// The coordinator answered that it does not know this worker: register again at once.
    pub(super) fn forgotten(&mut self) {
        tracing::info!(coordinator = %self.url, "the coordinator does not know this worker (it restarted?): registering again");
        self.registered = false;
        self.reachable();
    }

    /// Forgotten again right after registering: not worth a tight loop, so an absence.
    pub(super) fn forgotten_at_once(&mut self) {
        self.registered = false;
        self.away("the coordinator forgot this worker as soon as it registered".into());
    }

    /// Records a failed call: the next attempt waits a backoff, on a fresh connection.
    pub(super) fn away(&mut self, reason: String) {
        let now = Instant::now();
        self.away_since.get_or_insert_with(|| {
            tracing::warn!(coordinator = %self.url, "coordinator away, will retry: {reason}");
            now
        });
        self.last_error = reason;
        self.retry_later();
        // A fresh channel: the old one may be stuck on a dead connection.
        if let Ok(client) = credentials::connect(&self.url, self.tls.as_ref(), &self.stamp) {
            self.client = client;
        }
    }

    /// The next attempt waits one backoff, and the one after twice as long.
    pub(super) fn retry_later(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }

    /// Lets the next call go now (a shutdown's drain may need the coordinator at once).
    pub(super) fn retry_now(&mut self) {
        self.retry_at = Instant::now();
    }

    /// An error once the coordinator has not answered for `give_up_after`.
    pub(super) fn given_up(&self) -> Option<WorkerError> {
        let away_since = self.away_since?;
        (away_since.elapsed() >= self.give_up_after).then(|| WorkerError::CoordinatorUnreachable {
            url: self.url.clone(),
            seconds: self.give_up_after.as_secs(),
            last_error: self.last_error.clone(),
        })
    }
}

/// `call`, or `DEADLINE_EXCEEDED` when it is not answered within `deadline`.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(deadline, call).await.unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!("no answer within {} ms", deadline.as_millis())))
    })
}
