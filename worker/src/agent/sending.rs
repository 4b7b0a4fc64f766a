//! Sending the outbox: each lease's messages in order, one on its way at a time, reports lingering a moment.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::link::Interrupt;
use super::outbox::{Outgoing, Sent};
use super::{orphans, Session};
use crate::error::WorkerError;

/// How long a trial's epoch report and checkpoint wait for what follows them (see the module
/// documentation). Nothing on a trial's critical path waits for it: the trial's end ends it.
pub(super) const LINGER: Duration = Duration::from_millis(20);

/// A message on its way, and what stops it.
pub(super) struct InFlight {
    pub(super) message: Outgoing,
    pub(super) task: tokio::task::AbortHandle,
}

impl Session {
    /// Holds a trial's waiting reports back for [`LINGER`], from the first of them.
    pub(super) fn linger(&mut self, lease_id: &str) {
        self.linger_until.entry(lease_id.to_string()).or_insert_with(|| Instant::now() + LINGER);
    }

    /// Whether a lease's next message may go now: none of its messages is on its way, and its
    /// reports are not lingering.
    pub(super) fn may_send(&self, lease_id: &str, now: Instant, busy: &HashSet<&str>) -> bool {
        !busy.contains(lease_id) && self.linger_until.get(lease_id).is_none_or(|until| *until <= now)
    }

    /// When the next waiting message may go: now, the end of a linger, or never (every lease
    /// with waiting messages has one on its way, whose answer wakes the loop).
    pub(super) fn next_sendable(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut busy: HashSet<&str> =
            self.in_flight.values().map(|f| f.message.lease().lease_id.as_str()).collect();
        let mut next: Option<Instant> = None;
        for message in &self.outbox {
            let lease_id = message.lease().lease_id.as_str();
            if busy.contains(lease_id) {
                continue;
            }
            let ready = self.linger_until.get(lease_id).map_or(now, |until| (*until).max(now));
            next = Some(next.map_or(ready, |n| n.min(ready)));
            // Later messages of this lease wait for this one.
            busy.insert(lease_id);
        }
        next
    }

    /// Sends what may go: the first waiting message of each lease that has none on its way.
    /// Their answers come back through `sent_rx` ([`Session::on_sent`]).
    pub(super) fn flush(&mut self) {
        let now = Instant::now();
        let mut blocked: HashSet<String> =
            self.in_flight.values().map(|f| f.message.lease().lease_id.clone()).collect();
        let mut index = 0;
        while index < self.outbox.len() {
            let lease_id = self.outbox[index].lease().lease_id.clone();
            let busy: HashSet<&str> = blocked.iter().map(String::as_str).collect();
            if !self.may_send(&lease_id, now, &busy) {
                blocked.insert(lease_id);
                index += 1;
                continue;
            }
            self.linger_until.remove(&lease_id);
            blocked.insert(lease_id);
            if let Some(message) = self.outbox.remove(index) {
                self.send(message);
            }
        }
    }

    /// Puts a message on its way.
    pub(super) fn send(&mut self, message: Outgoing) {
        let id = self.next_send;
        self.next_send += 1;
        let copy = message.clone();
        let mut client = self.client.clone();
        let answers = self.sent_tx.clone();
        let deadline = copy.deadline(self.deadline);
        let task = tokio::spawn(async move {
            let sent = match tokio::time::timeout(deadline, copy.send(&mut client)).await {
                Ok(sent) => sent,
                Err(_) => Sent::Failed(tonic::Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    deadline.as_millis()
                ))),
            };
            let _ = answers.send((id, sent));
        });
        self.in_flight.insert(id, InFlight { message, task: task.abort_handle() });
    }

    /// What became of a message sent.
    pub(super) fn on_sent(&mut self, id: u64, sent: Sent) -> Result<(), WorkerError> {
        let Some(InFlight { message, .. }) = self.in_flight.remove(&id) else { return Ok(()) };
        if matches!(sent, Sent::Delivered | Sent::LeaseLost(_)) {
            self.reachable();
        }
        match sent {
            Sent::Delivered => message.delivered(),
            Sent::LeaseLost(reason) => {
                let lease_id = message.lease().lease_id.clone();
                tracing::warn!(lease = %lease_id, "{reason}");
                if let Outgoing::Complete { lease, result_json, epochs_json } = &message {
                    // A finished trial the coordinator never knew: keep its result here.
                    let work_dir = &self.config.work_dir;
                    let coordinator = &self.config.coordinator;
                    match orphans::keep(work_dir, coordinator, lease, result_json, epochs_json, &reason) {
                        Ok(path) => {
                            tracing::warn!(trial = %lease.trial_id, file = %path.display(), "result kept")
                        }
                        Err(e) => tracing::error!(trial = %lease.trial_id, "cannot keep the result: {e}"),
                    }
                } else {
                    message.discard();
                }
                self.lose(&lease_id);
            }
            Sent::Refused(reason) => {
                tracing::error!("coordinator refused a message, dropping it: {reason}");
                message.discard();
            }
            Sent::Failed(status) => {
                // First again, for when the coordinator is back.
                self.outbox.push_front(message);
                match self.interrupt(&status) {
                    Interrupt::Forgotten => self.forgotten(),
                    // Already away, the next attempt already waits its backoff: several messages
                    // on their way fail together, one absence, one backoff.
                    Interrupt::Away(_) if self.away_since.is_some() => {}
                    Interrupt::Away(reason) => self.away(reason)?,
                    Interrupt::Fatal(error) => {
                        self.cancel_all();
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }
}
