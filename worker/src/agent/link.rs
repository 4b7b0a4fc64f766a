//! The link to the coordinator: registering, calls with deadlines, backoff while it is away, giving up.

use std::future::Future;
use std::time::Duration;

use proto::pb;
use tokio::time::Instant;
use tonic::Code;

use super::config::hostname;
use super::{credentials, Session};
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
    Fatal(WorkerError),
}

/// The first wait before calling an absent coordinator again; each failed attempt doubles it, up
/// to `max_backoff`.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How long one call may take before it counts as failed, while the coordinator has not said how
/// often to heartbeat (before the first registration).
pub(super) const FIRST_CALL_DEADLINE: Duration = Duration::from_secs(5);

/// Bounds of a call's deadline, which is otherwise one heartbeat interval (a third of a lease):
/// a call stuck on a dead connection (packets dropped, no reset) is abandoned in time for the
/// next heartbeat, on a fresh connection, to keep the worker's leases alive.
pub(super) const MIN_CALL_DEADLINE: Duration = Duration::from_secs(1);

pub(super) const MAX_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Counts and ordinals on the wire are u32; no node has more devices than that.
pub(super) fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl Session {
    /// The coordinator answered a call: no more backoff.
    pub(super) fn reachable(&mut self) {
        if self.away_since.take().is_some() {
            tracing::info!(coordinator = %self.config.coordinator, "coordinator reachable again");
        }
        self.backoff = FIRST_BACKOFF;
        self.retry_at = Instant::now();
    }

    /// The coordinator answered that it does not know this worker: register again at once.
    pub(super) fn forgotten(&mut self) {
        tracing::info!(coordinator = %self.config.coordinator, "the coordinator does not know this worker (it restarted?): registering again");
        self.registered = false;
        self.reachable();
    }

    /// Records a failed call: the next attempt waits a backoff, on a fresh connection.
    pub(super) fn away(&mut self, reason: String) -> Result<(), WorkerError> {
        let now = Instant::now();
        self.away_since.get_or_insert_with(|| {
            tracing::warn!(coordinator = %self.config.coordinator, "coordinator away, will retry: {reason}");
            now
        });
        self.last_error = reason;
        self.retry_later();
        // A fresh channel: the old one may be stuck on a dead connection.
        if let Ok(client) = credentials::connect(&self.config.coordinator, self.tls.as_ref(), &self.stamp) {
            self.client = client;
        }
        self.give_up_if_away_too_long()
    }

    /// The next attempt waits one backoff, and the one after twice as long.
    pub(super) fn retry_later(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    /// Gives up after `give_up_after` without an answer; when shutting down, leaves
    /// `drain_timeout` after the shutdown began, dropping what is still unsent (a coordinator
    /// that got the same signal may never answer, or answer calls it already had and no more).
    pub(super) fn give_up_if_away_too_long(&mut self) -> Result<(), WorkerError> {
        let now = Instant::now();
        if let Some(shutdown_at) = self.shutting_down {
            if now.duration_since(shutdown_at) >= self.config.drain_timeout
                && !(self.outbox.is_empty() && self.in_flight.is_empty())
            {
                tracing::warn!(
                    unsent = self.outbox.len() + self.in_flight.len(),
                    "the coordinator did not take everything within the drain; leaving"
                );
                for message in self.outbox.drain(..) {
                    message.discard();
                }
                for (_, in_flight) in self.in_flight.drain() {
                    in_flight.task.abort();
                    in_flight.message.discard();
                }
            }
            return Ok(());
        }
        let Some(away_since) = self.away_since else { return Ok(()) };
        if now.duration_since(away_since) >= self.config.give_up_after {
            self.cancel_all();
            return Err(WorkerError::CoordinatorUnreachable {
                url: self.config.coordinator.clone(),
                seconds: self.config.give_up_after.as_secs(),
                last_error: self.last_error.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn interrupt(&mut self, status: &tonic::Status) -> Interrupt {
        if matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied) {
            // A token the coordinator does not take will not start working by retrying.
            return Interrupt::Fatal(WorkerError::CoordinatorRefused {
                url: self.config.coordinator.clone(),
                message: status.message().to_string(),
            });
        }
        if status.code() == Code::FailedPrecondition {
            // The coordinator restarted and forgot us.
            return Interrupt::Forgotten;
        }
        Interrupt::Away(format!("{:?}: {}", status.code(), status.message()))
    }

    pub(super) async fn register(&mut self) -> Result<(), Interrupt> {
        let devices = match &self.config.devices {
            Devices::Cpu { ranks } => pb::devices::Kind::CpuRanks(saturating_u32(*ranks)),
            Devices::Cuda(ordinals) => pb::devices::Kind::Cuda(pb::CudaDevices {
                ordinals: ordinals.iter().map(|o| saturating_u32(*o)).collect(),
            }),
        };
        let request = pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION,
            worker_id: self.config.worker_id.clone(),
            hostname: hostname(),
            devices: Some(pb::Devices {
                kind: Some(devices),
                memory_mb: self.config.device_memory_mb.clone(),
            }),
        };
        match within(self.deadline, self.client.clone().register(request)).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                self.heartbeat = Duration::from_millis(u64::from(reply.heartbeat_ms.max(10)));
                self.deadline = self.heartbeat.clamp(MIN_CALL_DEADLINE, MAX_CALL_DEADLINE);
                self.devices.set_trials_per_device(reply.trials_per_device);
                self.stamp.set_session(&reply.session_id);
                self.registered = true;
                tracing::info!(worker = %self.config.worker_id, sweep = %reply.sweep_name, "registered");
                Ok(())
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
                    url: self.config.coordinator.clone(),
                    message: status.message().to_string(),
                }))
            }
            Err(status) => Err(Interrupt::Away(format!("{:?}: {}", status.code(), status.message()))),
        }
    }
}

/// A call that fails with `DEADLINE_EXCEEDED` when not answered within `deadline`: over a
/// partition (packets dropped, no reset) a call would otherwise wait for TCP to give up, minutes.
pub(super) async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(deadline, call).await.unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!("no answer within {} ms", deadline.as_millis())))
    })
}
