//! The trials this worker runs: what they say, losing a lease, stopping, deadlines.

use std::path::PathBuf;

use tokio::time::Instant;

use super::outbox::Outgoing;
use super::trial_thread::{self, TrialEnd, TrialMessage};
use super::watchdog::Watchdog;
use super::{trial_child, Session};
use crate::run::CancelFlag;

/// A trial this worker is running.
pub(super) struct Running {
    pub(super) trial_id: String,
    /// A stand-in trial's thread stops through this; a trial process through `process`.
    pub(super) cancel: CancelFlag,
    pub(super) process: Option<trial_child::TrialProcess>,
    pub(super) watchdog: Watchdog,
    /// Where its job file and checkpoints go: its slot's folder.
    pub(super) folder: PathBuf,
    pub(super) cache_key: String,
    /// The newest checkpoint queued for upload, if any.
    pub(super) checkpoint_epoch: u32,
    /// The checkpoint downloaded to resume from, removed when the trial ends.
    pub(super) download: Option<PathBuf>,
    /// The coordinator no longer honours the lease: whatever the trial does is dropped.
    pub(super) lost: bool,
    /// CPU threads it takes (its ranks × its `cpu_threads`); 0 on GPUs and for stand-ins.
    pub(super) cpu_threads: usize,
}

impl Running {
    /// Asks the trial to stop at its next step (it then says how far it got).
    pub(super) fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(process) = &mut self.process {
            process.cancel();
        }
    }

    /// Ends the trial's process at once (a stand-in thread can only be asked).
    pub(super) fn kill(&mut self) {
        self.cancel.cancel();
        if let Some(process) = &mut self.process {
            process.kill();
        }
    }
}

impl Session {
    pub(super) fn on_trial_message(&mut self, message: TrialMessage) {
        match message {
            TrialMessage::Progress { lease } => {
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.watchdog.progress();
                }
            }
            TrialMessage::Epoch { lease, report } => {
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.watchdog.epoch();
                }
                if self.is_live(&lease.lease_id) {
                    self.linger(&lease.lease_id);
                    self.outbox.push_back(Outgoing::epoch(lease, &report));
                }
            }
            TrialMessage::Checkpoint { lease, epoch, file } => {
                if !self.is_live(&lease.lease_id) {
                    let _ = std::fs::remove_file(&file);
                    return;
                }
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.checkpoint_epoch = running.checkpoint_epoch.max(epoch);
                }
                // Only the newest checkpoint matters: drop older ones still waiting.
                self.outbox.retain(|m| match m {
                    Outgoing::Checkpoint { lease: l, file: f, .. } if l.lease_id == lease.lease_id => {
                        let _ = std::fs::remove_file(f);
                        false
                    }
                    _ => true,
                });
                self.linger(&lease.lease_id);
                self.outbox.push_back(Outgoing::Checkpoint { lease, epoch, file });
            }
            TrialMessage::Ended { lease, end } => {
                // Whatever waits of this trial goes now (folded into its result where it can).
                self.linger_until.remove(&lease.lease_id);
                let Some(running) = self.running.remove(&lease.lease_id) else { return };
                if let Some(download) = &running.download {
                    let _ = std::fs::remove_file(download);
                }
                self.devices.release(&lease.lease_id);
                self.next_lease = Instant::now();
                if running.lost {
                    tracing::info!(trial = %running.trial_id, "stopped a trial whose lease was lost");
                    return;
                }
                let end = match running.watchdog.fired() {
                    // Whatever a killed trial process said last, the kill is why it ended.
                    Some(seconds) => {
                        TrialEnd::Failed { error: format!("no progress for {seconds} s"), retryable: true }
                    }
                    None => end,
                };
                match end {
                    TrialEnd::Finished(result) => {
                        tracing::info!(trial = %lease.trial_id, "trial finished; its result is queued");
                        self.cached.insert(running.cache_key);
                        // The result supersedes a checkpoint not sent yet (nobody will resume),
                        // and carries the epoch reports still waiting: one message, not many.
                        let mut waiting = Vec::new();
                        self.outbox.retain(|m| match m {
                            Outgoing::Checkpoint { lease: l, .. } if l.lease_id == lease.lease_id => {
                                m.discard();
                                false
                            }
                            Outgoing::Epoch { lease: l, report_json, .. } if l.lease_id == lease.lease_id => {
                                waiting.push(report_json.clone());
                                false
                            }
                            _ => true,
                        });
                        self.outbox.push_back(Outgoing::complete(lease, &result, waiting));
                    }
                    TrialEnd::Interrupted { epoch, checkpoint } => {
                        tracing::info!(trial = %lease.trial_id, epoch, "trial interrupted; handing the lease back");
                        // A checkpoint written on the way out, newer than any announced: upload it
                        // first, so that the next worker loses nothing.
                        if let Some(path) = checkpoint.filter(|_| epoch > running.checkpoint_epoch) {
                            let staging = running.folder.clone();
                            match trial_thread::stage(&path, &staging, &lease.lease_id, epoch) {
                                Ok(file) => self.outbox.push_back(Outgoing::Checkpoint {
                                    lease: lease.clone(),
                                    epoch,
                                    file,
                                }),
                                Err(e) => {
                                    tracing::warn!(trial = %lease.trial_id, "cannot stage the last checkpoint: {e}")
                                }
                            }
                        }
                        self.outbox.push_back(Outgoing::Release { lease });
                    }
                    TrialEnd::Failed { error, retryable } => {
                        tracing::warn!(trial = %lease.trial_id, retryable, "trial failed: {error}");
                        self.outbox.push_back(Outgoing::Fail { lease, error, retryable });
                    }
                }
            }
        }
    }

    pub(super) fn is_live(&self, lease_id: &str) -> bool {
        self.running.get(lease_id).is_some_and(|r| !r.lost)
    }

    /// The coordinator no longer honours a lease: stop its trial, drop what it still has to say.
    pub(super) fn lose(&mut self, lease_id: &str) {
        if let Some(running) = self.running.get_mut(lease_id) {
            if !running.lost {
                tracing::warn!(trial = %running.trial_id, lease = lease_id, "lease lost; stopping the trial");
            }
            running.lost = true;
            // Nothing it says counts any more: end it at once.
            running.cancel.cancel();
            if let Some(process) = &mut running.process {
                process.kill();
            }
        }
        self.linger_until.remove(lease_id);
        self.outbox.retain(|m| {
            let keep = m.lease().lease_id != lease_id;
            if !keep {
                m.discard();
            }
            keep
        });
    }

    pub(super) fn begin_shutdown(&mut self) {
        tracing::info!(running = self.running.len(), "shutting down: cancelling trials, handing leases back");
        self.shutting_down = Some(Instant::now());
        for running in self.running.values_mut() {
            running.stop();
        }
        // Leave a backoff at once: the drain may need the coordinator now.
        self.retry_at = Instant::now();
    }

    pub(super) fn cancel_all(&mut self) {
        for running in self.running.values_mut() {
            running.stop();
        }
    }

    /// Kills the trials that made no progress for too long, and on shutdown those that did not
    /// stop within the grace period. Their `Ended` message follows when the process is reaped.
    pub(super) fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let past_grace =
            self.shutting_down.is_some_and(|since| now.duration_since(since) >= self.config.stop_grace);
        for running in self.running.values_mut() {
            if let Some(seconds) = running.watchdog.check(now) {
                tracing::error!(trial = %running.trial_id, "no progress for {seconds} s: killing its trial process");
                running.kill();
            } else if past_grace {
                tracing::warn!(trial = %running.trial_id, "did not stop within the grace period: killing it");
                running.kill();
            }
        }
    }
}
