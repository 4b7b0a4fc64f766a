//! What the worker has to tell the coordinator, in order for each lease.
//!
//! A lease's messages go one at a time (each waits for the answer to the one before), leases do
//! not wait for each other, and nothing waits for an answer unless it must. A trial's epoch report
//! and checkpoint linger a moment ([`LINGER`]) before they go, so that a result right behind them
//! carries the report and supersedes the checkpoint: one message, not three. While the
//! coordinator is away, messages wait here; the one that failed goes first when it is back.

mod message;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

pub(super) use message::{download, Outgoing, Sent};

use super::credentials::Client;
use super::LeaseKey;
use common::outcome::TrialResult;

/// How long a trial's epoch report and checkpoint wait for what follows them. Nothing on a
/// trial's critical path waits for it: the trial's end ends it.
pub(super) const LINGER: Duration = Duration::from_millis(20);

/// A message on its way, and what stops it.
struct InFlight {
    message: Outgoing,
    task: tokio::task::AbortHandle,
}

/// The messages waiting to go and those on their way.
pub(super) struct Outbox {
    waiting: VecDeque<Outgoing>,
    /// Sent, not answered yet; at most one per lease.
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    answers_tx: mpsc::UnboundedSender<(u64, Sent)>,
    answers_rx: mpsc::UnboundedReceiver<(u64, Sent)>,
    /// Leases whose waiting reports are held back until then.
    linger_until: HashMap<String, Instant>,
}

impl Outbox {
    pub(super) fn new() -> Self {
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        Self {
            waiting: VecDeque::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            answers_tx,
            answers_rx,
            linger_until: HashMap::new(),
        }
    }

    /// Nothing waits and nothing is on its way.
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    /// Messages not yet answered, waiting or on their way.
    pub(super) fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    /// Queues a message to go as soon as its lease's earlier ones are answered.
    pub(super) fn push(&mut self, message: Outgoing) {
        self.waiting.push_back(message);
    }

    /// Queues a trial's epoch report, lingering (see [`LINGER`]).
    pub(super) fn push_report(&mut self, message: Outgoing) {
        self.linger(&message.lease().lease_id);
        self.waiting.push_back(message);
    }

    /// Queues a trial's newest checkpoint, lingering; an older one still waiting is dropped (only
    /// the newest matters to whoever resumes).
    pub(super) fn push_checkpoint(&mut self, lease: LeaseKey, epoch: u32, file: PathBuf) {
        self.waiting.retain(|m| match m {
            Outgoing::Checkpoint { lease: l, .. } if l.lease_id == lease.lease_id => {
                m.discard();
                false
            }
            _ => true,
        });
        self.linger(&lease.lease_id);
        self.waiting.push_back(Outgoing::Checkpoint { lease, epoch, file });
    }

    /// Queues a finished trial's result, carrying the epoch reports still waiting and
    /// superseding a checkpoint not sent yet (nobody will resume): one message, not many.
    pub(super) fn push_result(&mut self, lease: LeaseKey, result: &TrialResult) {
        let mut waiting_reports = Vec::new();
        self.waiting.retain(|m| match m {
            Outgoing::Checkpoint { lease: l, .. } if l.lease_id == lease.lease_id => {
                m.discard();
                false
            }
            Outgoing::Epoch { lease: l, report_json, .. } if l.lease_id == lease.lease_id => {
                waiting_reports.push(report_json.clone());
                false
            }
            _ => true,
        });
        self.waiting.push_back(Outgoing::complete(lease, result, waiting_reports));
    }

    /// Holds a lease's waiting reports back for [`LINGER`], from the first of them.
    fn linger(&mut self, lease_id: &str) {
        self.linger_until.entry(lease_id.to_string()).or_insert_with(|| Instant::now() + LINGER);
    }

    /// Lets a lease's waiting messages go at once (its trial ended: nothing more will follow).
    pub(super) fn end_linger(&mut self, lease_id: &str) {
        self.linger_until.remove(lease_id);
    }

    /// Drops whatever waits for a lease the coordinator no longer honours.
    pub(super) fn drop_lease(&mut self, lease_id: &str) {
        self.linger_until.remove(lease_id);
        self.waiting.retain(|m| {
            let keep = m.lease().lease_id != lease_id;
            if !keep {
                m.discard();
            }
            keep
        });
    }

    /// Gives up on everything, waiting or on its way (a shutdown whose drain ran out, a
    /// coordinator away for too long); answers the finished trials' results among it, which are
    /// never dropped (the caller keeps them on this node).
    pub(super) fn give_up(&mut self) -> Vec<Outgoing> {
        for (_, in_flight) in self.in_flight.drain() {
            in_flight.task.abort();
            self.waiting.push_back(in_flight.message);
        }
        let mut results = Vec::new();
        for message in self.waiting.drain(..) {
            match message {
                Outgoing::Complete { .. } => results.push(message),
                other => other.discard(),
            }
        }
        results
    }

    /// Whether a lease's next message may go now: none of its messages is on its way, and its
    /// reports are not lingering.
    fn may_send(&self, lease_id: &str, now: Instant, busy: &HashSet<&str>) -> bool {
        !busy.contains(lease_id) && self.linger_until.get(lease_id).is_none_or(|until| *until <= now)
    }

    /// When the next waiting message may go: now, the end of a linger, or never (every lease
    /// with waiting messages has one on its way, whose answer wakes the loop).
    pub(super) fn next_sendable(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut busy: HashSet<&str> =
            self.in_flight.values().map(|f| f.message.lease().lease_id.as_str()).collect();
        let mut next: Option<Instant> = None;
        for message in &self.waiting {
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

    /// Sends what may go: the first waiting message of each lease that has none on its way, each
    /// call within `deadline`. Their answers come back through [`Outbox::answer`].
    pub(super) fn flush(&mut self, client: &Client, deadline: Duration) {
        let now = Instant::now();
        let mut blocked: HashSet<String> =
            self.in_flight.values().map(|f| f.message.lease().lease_id.clone()).collect();
        let mut index = 0;
        while index < self.waiting.len() {
            let lease_id = self.waiting[index].lease().lease_id.clone();
            let busy: HashSet<&str> = blocked.iter().map(String::as_str).collect();
            if !self.may_send(&lease_id, now, &busy) {
                blocked.insert(lease_id);
                index += 1;
                continue;
            }
            self.linger_until.remove(&lease_id);
            blocked.insert(lease_id);
            if let Some(message) = self.waiting.remove(index) {
                self.send(message, client, deadline);
            }
        }
    }

    /// Puts a message on its way.
    fn send(&mut self, message: Outgoing, client: &Client, deadline: Duration) {
        let id = self.next_id;
        self.next_id += 1;
        let copy = message.clone();
        let mut client = client.clone();
        let answers = self.answers_tx.clone();
        let deadline = copy.deadline(deadline);
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

    /// The next answer to a message on its way, with the message; `None` for a message dropped
    /// meanwhile (its answer no longer matters).
    pub(super) async fn answer(&mut self) -> Option<(Outgoing, Sent)> {
        let (id, sent) = self.answers_rx.recv().await?;
        let in_flight = self.in_flight.remove(&id)?;
        Some((in_flight.message, sent))
    }

    /// Puts a message that could not be delivered back first, for when the coordinator is back.
    pub(super) fn retry_first(&mut self, message: Outgoing) {
        self.waiting.push_front(message);
    }

    #[cfg(test)]
    pub(super) fn waiting(&self) -> &VecDeque<Outgoing> {
        &self.waiting
    }

    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
