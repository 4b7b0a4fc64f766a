//! The trials this worker runs: what they say, losing a lease, stopping, deadlines.
//!
//! [`Trials`] is the table of running trials and the channel their threads and processes report
//! on; [`Session::on_trial_message`] turns what a trial says into messages for the coordinator.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::outbox::Outgoing;
use super::trial_thread::{self, TrialEnd, TrialMessage};
use super::watchdog::Watchdog;
use super::{trial_child, Session};
use crate::run::{CancelFlag, RanOutOf};

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
    /// Another trial ran beside it on this worker at some point (its memory was shared).
    pub(super) shared: bool,
    /// It must run alone: no other trial starts here while it runs.
    pub(super) alone: bool,
}

impl Running {
    /// Asks the trial to stop at its next step (it then says how far it got).
    fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(process) = &mut self.process {
            process.cancel();
        }
    }

    /// Ends the trial's process at once (a stand-in thread can only be asked).
    fn kill(&mut self) {
        self.cancel.cancel();
        if let Some(process) = &mut self.process {
            process.kill();
        }
    }
}

/// The running trials, by lease id, and what they report on.
pub(super) struct Trials {
    running: HashMap<String, Running>,
    events_tx: mpsc::UnboundedSender<TrialMessage>,
    events_rx: mpsc::UnboundedReceiver<TrialMessage>,
}

impl Trials {
    pub(super) fn new() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self { running: HashMap::new(), events_tx, events_rx }
    }

    /// Where a trial's thread or process reports.
    pub(super) fn events(&self) -> mpsc::UnboundedSender<TrialMessage> {
        self.events_tx.clone()
    }

    /// The next thing a trial says.
    pub(super) async fn recv(&mut self) -> Option<TrialMessage> {
        self.events_rx.recv().await
    }

    /// What else the trials said meanwhile, without waiting.
    pub(super) fn try_recv(&mut self) -> Option<TrialMessage> {
        self.events_rx.try_recv().ok()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    /// Adds a trial; it and every trial already running now share this worker.
    pub(super) fn insert(&mut self, lease_id: String, mut running: Running) {
        if !self.running.is_empty() {
            running.shared = true;
            self.running.values_mut().for_each(|other| other.shared = true);
        }
        self.running.insert(lease_id, running);
    }

    /// Whether a running trial must run alone (see `Assignment.alone`).
    pub(super) fn has_one_alone(&self) -> bool {
        self.running.values().any(|r| r.alone)
    }

    pub(super) fn get_mut(&mut self, lease_id: &str) -> Option<&mut Running> {
        self.running.get_mut(lease_id)
    }

    pub(super) fn remove(&mut self, lease_id: &str) -> Option<Running> {
        self.running.remove(lease_id)
    }

    /// The leases whose trials still count (not lost): what a heartbeat keeps alive.
    pub(super) fn held(&self) -> Vec<String> {
        self.running.iter().filter(|(_, r)| !r.lost).map(|(id, _)| id.clone()).collect()
    }

    /// The trial processes' ids (stand-in trials run as threads of the agent).
    pub(super) fn pids(&self) -> Vec<u32> {
        self.running.values().filter_map(|r| r.process.as_ref()).map(trial_child::TrialProcess::pid).collect()
    }

    pub(super) fn is_live(&self, lease_id: &str) -> bool {
        self.running.get(lease_id).is_some_and(|r| !r.lost)
    }

    /// CPU threads the running trials take together.
    pub(super) fn cpu_threads(&self) -> usize {
        self.running.values().map(|r| r.cpu_threads).sum()
    }

    /// The coordinator no longer honours a lease: its trial ends at once (nothing it says
    /// counts any more).
    pub(super) fn lose(&mut self, lease_id: &str) {
        if let Some(running) = self.running.get_mut(lease_id) {
            if !running.lost {
                tracing::warn!(trial = %running.trial_id, lease = lease_id, "lease lost; stopping the trial");
            }
            running.lost = true;
            running.kill();
        }
    }

    /// Asks every trial to stop at its next step.
    pub(super) fn stop_all(&mut self) {
        for running in self.running.values_mut() {
            running.stop();
        }
    }

    /// Kills the trials that made no progress for too long, and, `past_grace`, those that did
    /// not stop when asked. Their `Ended` message follows when the process is reaped.
    pub(super) fn enforce_deadlines(&mut self, now: Instant, past_grace: bool) {
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

impl Session {
    /// What a trial said, as messages for the coordinator.
    pub(super) fn on_trial_message(&mut self, message: TrialMessage) {
        match message {
            TrialMessage::Progress { lease } => {
                if let Some(running) = self.trials.get_mut(&lease.lease_id) {
                    running.watchdog.progress();
                }
            }
            TrialMessage::Epoch { lease, report } => {
                if let Some(running) = self.trials.get_mut(&lease.lease_id) {
                    running.watchdog.epoch();
                }
                if self.trials.is_live(&lease.lease_id) {
                    self.outbox.push_report(Outgoing::epoch(lease, &report));
                }
            }
            TrialMessage::Checkpoint { lease, epoch, file } => {
                let Some(running) = self.trials.get_mut(&lease.lease_id).filter(|r| !r.lost) else {
                    let _ = std::fs::remove_file(&file);
                    return;
                };
                running.checkpoint_epoch = running.checkpoint_epoch.max(epoch);
                self.outbox.push_checkpoint(lease, epoch, file);
            }
            TrialMessage::Ended { lease, end } => self.on_trial_end(lease, end),
        }
    }

    fn on_trial_end(&mut self, lease: super::LeaseKey, end: TrialEnd) {
        // Whatever waits of this trial goes now (folded into its result where it can).
        self.outbox.end_linger(&lease.lease_id);
        let Some(running) = self.trials.remove(&lease.lease_id) else { return };
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
            Some(seconds) => TrialEnd::Failed {
                error: format!("no progress for {seconds} s"),
                retryable: true,
                ran_out_of: None,
            },
            None => end,
        };
        match end {
            TrialEnd::Finished(result) => {
                tracing::info!(trial = %lease.trial_id, "trial finished; its result is queued");
                self.cached.insert(running.cache_key);
                self.outbox.push_result(lease, &result);
            }
            TrialEnd::Interrupted { epoch, checkpoint } => {
                tracing::info!(trial = %lease.trial_id, epoch, "trial interrupted; handing the lease back");
                // A checkpoint written on the way out, newer than any announced: upload it
                // first, so that the next worker loses nothing.
                if let Some(path) = checkpoint.filter(|_| epoch > running.checkpoint_epoch) {
                    match trial_thread::stage(&path, &running.folder, &lease.lease_id, epoch) {
                        Ok(file) => {
                            self.outbox.push(Outgoing::Checkpoint { lease: lease.clone(), epoch, file })
                        }
                        Err(e) => {
                            tracing::warn!(trial = %lease.trial_id, "cannot stage the last checkpoint: {e}")
                        }
                    }
                }
                self.outbox.push(Outgoing::Release { lease });
            }
            TrialEnd::Failed { error, ran_out_of: Some(RanOutOf::Space), .. } => {
                // The node's disk, not the trial: its lease goes back with no attempt charged,
                // and this worker takes nothing until there is room.
                self.outbox.push(Outgoing::Release { lease });
                self.work_dir_full(error);
            }
            TrialEnd::Failed { error, retryable, ran_out_of } => {
                tracing::warn!(trial = %lease.trial_id, retryable, "trial failed: {error}");
                let out_of_memory = ran_out_of == Some(RanOutOf::Memory);
                let shared = running.shared;
                self.outbox.push(Outgoing::Fail { lease, error, retryable, out_of_memory, shared });
            }
        }
    }

    /// The coordinator no longer honours a lease: stop its trial, drop what it still has to say.
    pub(super) fn lose(&mut self, lease_id: &str) {
        self.trials.lose(lease_id);
        self.outbox.drop_lease(lease_id);
    }
}
