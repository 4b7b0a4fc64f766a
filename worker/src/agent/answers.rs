//! What the coordinator's answer to a message sent means for the session: delivered, a lease it
//! no longer honours (a finished trial's result is then kept on this node), refused for good, or
//! not delivered (the coordinator is away: the message goes first again when it is back).

use super::link::Interrupt;
use super::outbox::{Outgoing, Sent};
use super::{orphans, Session};
use crate::error::WorkerError;

impl Session {
    /// What became of `message`.
    pub(super) fn on_answer(&mut self, message: Outgoing, sent: Sent) -> Result<(), WorkerError> {
        if matches!(sent, Sent::Delivered | Sent::LeaseLost(_)) {
            self.link.reachable();
        }
        match sent {
            Sent::Delivered => {
                self.link.stored();
                message.delivered();
            }
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
                self.outbox.retry_first(message);
                match self.link.interrupt(&status) {
                    Interrupt::Forgotten => self.link.forgotten(),
                    // Already away, the next attempt already waits its backoff: several messages
                    // on their way fail together, one absence, one backoff.
                    Interrupt::Away(_) if self.link.is_away() => {}
                    Interrupt::Away(reason) => {
                        self.link.away(reason);
                        self.give_up_if_away_too_long()?;
                    }
                    Interrupt::Held(reason) => self.link.held_back(reason),
                    Interrupt::Fatal(error) => {
                        self.trials.stop_all();
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }
}
