//! Starting an assigned trial: its devices, its checkpoint to resume from, its process.

use std::path::PathBuf;
use std::time::Duration;

use proto::pb;

use super::outbox::{self, Outgoing};
use super::running::Running;
use super::{confine, trial_child, trial_thread, watchdog, LeaseKey, Session};
use crate::run::child_process::{JobDevices, TrialJob};
use crate::run::{CancelFlag, Devices, RunOptions};
use crate::trial::TrialSpec;
use watchdog::Watchdog;

impl Session {
    /// Starts an assigned trial on its own thread (or fails it when it cannot start).
    pub(super) async fn start(&mut self, assignment: pb::Assignment) {
        let lease = LeaseKey { lease_id: assignment.lease_id.clone(), trial_id: assignment.trial_id.clone() };
        if let Err(e) = confine::id(&lease.trial_id, "trial_id").and(confine::id(&lease.lease_id, "lease_id"))
        {
            // Ids become file names here: an odd one is never used, only reported.
            tracing::error!("refusing an assignment: {e}");
            self.outbox.push_back(Outgoing::Fail { lease, error: e.to_string(), retryable: false });
            return;
        }
        let parsed = serde_json::from_str::<TrialSpec>(&assignment.spec_json)
            .map_err(|e| format!("invalid trial definition: {e}"))
            .and_then(|spec| match &self.config.data_root {
                Some(root) => confine::spec(spec, root).map_err(|e| e.to_string()),
                None => Ok(spec),
            });
        let spec: TrialSpec = match parsed {
            Ok(spec) => spec,
            Err(error) => {
                self.outbox.push_back(Outgoing::Fail { lease, error, retryable: false });
                return;
            }
        };
        let placement = match self.devices.take(&lease.lease_id, &assignment.device_indices) {
            Ok(placement) => placement,
            Err(error) => {
                self.outbox.push_back(Outgoing::Fail { lease, error, retryable: true });
                return;
            }
        };
        let slots = placement.devices;
        let slot_dir = self.slot_dir(&placement.folder);
        let resume_from = if assignment.resume_epoch > 0 {
            let path = self
                .config
                .work_dir
                .join("downloads")
                .join(format!("{}-epoch-{}.ckpt", assignment.trial_id, assignment.resume_epoch));
            let mut client = self.client.clone();
            match outbox::download(&mut client, &lease, assignment.resume_epoch, &path, self.deadline).await {
                Ok(()) => Some(path),
                Err(e) => {
                    tracing::warn!(trial = %assignment.trial_id, "cannot download checkpoint, starting afresh: {e}");
                    None
                }
            }
        } else {
            None
        };
        let devices = match &self.config.devices {
            Devices::Cpu { .. } => Devices::Cpu { ranks: slots.len() },
            Devices::Cuda(_) => Devices::Cuda(slots.clone()),
        };
        let cancel = CancelFlag::default();
        let options = RunOptions {
            devices,
            cache_dir: self.config.work_dir.join("cache"),
            checkpoint_dir: slot_dir.clone(),
            resume_from: resume_from.clone(),
            checkpoint_every: 1,
            cancel: cancel.clone(),
        };
        tracing::info!(
            trial = %lease.trial_id,
            lease = %lease.lease_id,
            attempt = assignment.attempt,
            resume_epoch = assignment.resume_epoch,
            "trial started"
        );
        let cache_key = spec.cache_key();
        let cpu_threads = match &options.devices {
            Devices::Cpu { ranks } if spec.architecture != crate::run::NOOP => Some(
                ranks
                    * crate::provenance::rank_threads(&spec, &options.devices)
                        .map_or(1, |t| t.unsigned_abs() as usize),
            ),
            _ => None,
        };
        let progress_timeout = match assignment.progress_timeout_s {
            0 => watchdog::DEFAULT_PROGRESS_TIMEOUT,
            seconds => Duration::from_secs(u64::from(seconds)),
        };
        let running = Running {
            trial_id: lease.trial_id.clone(),
            cancel,
            process: None,
            watchdog: Watchdog::new(progress_timeout),
            folder: slot_dir.clone(),
            cache_key,
            checkpoint_epoch: assignment.resume_epoch,
            download: resume_from,
            lost: false,
            cpu_threads: cpu_threads.unwrap_or(0),
        };
        self.running.insert(lease.lease_id.clone(), running);
        let started = if spec.architecture == crate::run::NOOP {
            trial_thread::spawn(lease.clone(), spec, options, slot_dir, self.events_tx.clone()).map(|()| None)
        } else {
            let job = TrialJob {
                trial_id: lease.trial_id.clone(),
                devices: match &options.devices {
                    Devices::Cpu { ranks } => JobDevices::Cpu { ranks: *ranks },
                    Devices::Cuda(ordinals) => JobDevices::Cuda { count: ordinals.len() },
                },
                threads: cpu_threads,
                spec,
                cache_dir: options.cache_dir,
                checkpoint_dir: options.checkpoint_dir,
                resume_from: options.resume_from,
                checkpoint_every: options.checkpoint_every,
            };
            let launch = trial_child::Launch {
                worker_bin: &self.config.worker_bin,
                job_file: slot_dir.join("job.json"),
                staging: slot_dir,
                cuda_visible: match &self.config.devices {
                    Devices::Cpu { .. } => None,
                    // Device ordinals (two trials may share one), never slot numbers.
                    Devices::Cuda(_) => {
                        Some(slots.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
                    }
                },
            };
            trial_child::spawn(lease.clone(), &job, launch, self.events_tx.clone()).map(Some)
        };
        match started {
            Ok(process) => {
                if let Some(process) = &process {
                    tracing::info!(trial = %lease.trial_id, pid = process.pid(), "trial process started");
                }
                if let Some(running) = self.running.get_mut(&lease.lease_id) {
                    running.process = process;
                }
            }
            Err(e) => {
                // The trial never started: give the devices back and let another attempt try.
                self.running.remove(&lease.lease_id);
                self.devices.release(&lease.lease_id);
                self.outbox.push_back(Outgoing::Fail {
                    lease,
                    error: format!("cannot start the trial: {e}"),
                    retryable: true,
                });
            }
        }
    }

    /// Where the trial in a device slot writes its job file and checkpoints.
    pub(super) fn slot_dir(&self, folder: &str) -> PathBuf {
        self.config.work_dir.join("devices").join(folder)
    }

    /// Whether the running trials leave a CPU thread of `--cpu-threads` free. Each CPU trial
    /// takes its ranks × its own `cpu_threads`, whatever else runs (its numbers must not depend on
    /// this agent's load), so the agent packs trials by that count instead of splitting its cores.
    pub(super) fn has_free_cpu_threads(&self) -> bool {
        let used: usize = self.running.values().map(|r| r.cpu_threads).sum();
        used < self.config.cpu_threads
    }
}
