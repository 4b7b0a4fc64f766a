//! Starting an assigned trial: first a plan ([`plan`], pure: its options, its threads, its
//! watchdog, where its files go), then the trial's process (or, for a stand-in, its thread).

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::trial::TrialSpec;
use proto::pb;

use super::device_slots::Placement;
use super::outbox::{self, Outgoing};
use super::running::Running;
use super::trial_child::{self, TrialProcess};
use super::{confine, trial_thread, watchdog, ClientConfig, LeaseKey, Session};
use crate::run::child_process::TrialJob;
use crate::run::{CancelFlag, Devices, RunOptions};

/// Everything about starting one trial, decided before anything starts.
pub(super) struct Plan {
    pub(super) job: TrialJob,
    /// `CUDA_VISIBLE_DEVICES` for its process: device ordinals (two trials may share one),
    /// never slot numbers; `None` on CPU.
    pub(super) cuda_visible: Option<String>,
    /// Its slot's folder: the job file, its checkpoints, their staged copies.
    pub(super) folder: PathBuf,
    pub(super) progress_timeout: Duration,
    /// CPU threads it takes, for the agent's packing (its ranks × its `cpu_threads`); 0 on GPUs
    /// and for stand-ins.
    pub(super) cpu_threads: usize,
}

/// The plan of an assigned trial on `placement`, resuming from `resume_from`.
pub(super) fn plan(
    config: &ClientConfig,
    assignment: &pb::Assignment,
    spec: TrialSpec,
    placement: &Placement,
    resume_from: Option<PathBuf>,
) -> Plan {
    let folder = config.work_dir.join("devices").join(&placement.folder);
    let slots = &placement.devices;
    let (devices, cuda_visible) = match &config.devices {
        Devices::Cpu { .. } => (Devices::Cpu { ranks: slots.len() }, None),
        Devices::Cuda(_) => (
            Devices::Cuda((0..slots.len()).collect()),
            Some(slots.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
        ),
    };
    let threads = match &devices {
        Devices::Cpu { ranks } if spec.architecture != crate::run::NOOP => Some(
            ranks * crate::provenance::rank_threads(&spec, &devices).map_or(1, |t| t.unsigned_abs() as usize),
        ),
        _ => None,
    };
    let progress_timeout = match assignment.progress_timeout_s {
        0 => watchdog::DEFAULT_PROGRESS_TIMEOUT,
        seconds => Duration::from_secs(u64::from(seconds)),
    };
    let options = RunOptions {
        devices,
        cache_dir: config.work_dir.join("cache"),
        checkpoint_dir: folder.clone(),
        resume_from,
        checkpoint_every: 1,
        cancel: CancelFlag::default(),
    };
    Plan {
        job: TrialJob { trial_id: assignment.trial_id.clone(), spec, options, threads },
        cuda_visible,
        folder,
        progress_timeout,
        cpu_threads: threads.unwrap_or(0),
    }
}

/// Starts the planned trial: a stand-in on a thread of the agent (it has no tensors), a real one
/// in a process of its own. Its messages arrive on `events`.
fn spawn(
    plan: &Plan,
    lease: &LeaseKey,
    worker_bin: &Path,
    events: tokio::sync::mpsc::UnboundedSender<trial_thread::TrialMessage>,
) -> std::io::Result<Option<TrialProcess>> {
    if plan.job.spec.architecture == crate::run::NOOP {
        let (spec, options) = (plan.job.spec.clone(), plan.job.options.clone());
        return trial_thread::spawn(lease.clone(), spec, options, plan.folder.clone(), events).map(|()| None);
    }
    let launch = trial_child::Launch {
        worker_bin,
        job_file: plan.folder.join("job.json"),
        staging: plan.folder.clone(),
        cuda_visible: plan.cuda_visible.clone(),
    };
    trial_child::spawn(lease.clone(), &plan.job, launch, events).map(Some)
}

impl Session {
    /// Starts an assigned trial (or fails it when it cannot start).
    pub(super) async fn start(&mut self, assignment: pb::Assignment) {
        let lease = LeaseKey { lease_id: assignment.lease_id.clone(), trial_id: assignment.trial_id.clone() };
        if let Err(e) = confine::id(&lease.trial_id, "trial_id").and(confine::id(&lease.lease_id, "lease_id"))
        {
            // Ids become file names here: an odd one is never used, only reported.
            tracing::error!("refusing an assignment: {e}");
            self.outbox.push(Outgoing::fail(lease, e.to_string(), false));
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
                self.outbox.push(Outgoing::fail(lease, error, false));
                return;
            }
        };
        let placement = match self.devices.take(&lease.lease_id, &assignment.device_indices) {
            Ok(placement) => placement,
            Err(error) => {
                self.outbox.push(Outgoing::fail(lease, error, true));
                return;
            }
        };
        let resume_from = self.download_checkpoint(&lease, assignment.resume_epoch).await;
        let plan = plan(&self.config, &assignment, spec, &placement, resume_from);
        tracing::info!(
            trial = %lease.trial_id,
            lease = %lease.lease_id,
            attempt = assignment.attempt,
            resume_epoch = assignment.resume_epoch,
            "trial started"
        );
        let running = Running {
            trial_id: lease.trial_id.clone(),
            cancel: plan.job.options.cancel.clone(),
            process: None,
            watchdog: watchdog::Watchdog::new(plan.progress_timeout),
            folder: plan.folder.clone(),
            cache_key: plan.job.spec.cache_key(),
            checkpoint_epoch: assignment.resume_epoch,
            download: plan.job.options.resume_from.clone(),
            lost: false,
            cpu_threads: plan.cpu_threads,
            shared: false,
            alone: assignment.alone,
        };
        self.trials.insert(lease.lease_id.clone(), running);
        match spawn(&plan, &lease, &self.config.worker_bin, self.trials.events()) {
            Ok(process) => {
                if let Some(process) = &process {
                    tracing::info!(trial = %lease.trial_id, pid = process.pid(), "trial process started");
                }
                if let Some(running) = self.trials.get_mut(&lease.lease_id) {
                    running.process = process;
                }
            }
            Err(e) => {
                // The trial never started: give the devices back and let another attempt try.
                self.trials.remove(&lease.lease_id);
                self.devices.release(&lease.lease_id);
                if common::space::is_out_of_space(&e) {
                    // No room for its job file: the node's disk, not the trial.
                    self.outbox.push(Outgoing::Release { lease });
                    self.work_dir_full(format!("cannot start the trial: {e}"));
                } else {
                    self.outbox.push(Outgoing::fail(lease, format!("cannot start the trial: {e}"), true));
                }
            }
        }
    }

    /// The checkpoint of `epoch` to resume from, downloaded; `None` to start afresh (epoch 0, or
    /// a download that failed).
    async fn download_checkpoint(&self, lease: &LeaseKey, epoch: u32) -> Option<PathBuf> {
        if epoch == 0 {
            return None;
        }
        let path =
            self.config.work_dir.join("downloads").join(format!("{}-epoch-{epoch}.ckpt", lease.trial_id));
        let mut client = self.link.client().clone();
        match outbox::download(&mut client, lease, epoch, &path, self.link.deadline()).await {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(trial = %lease.trial_id, "cannot download checkpoint, starting afresh: {e}");
                None
            }
        }
    }

    /// Whether the running trials leave a CPU thread of `--cpu-threads` free. Each CPU trial
    /// takes its ranks × its own `cpu_threads`, whatever else runs (its numbers must not depend on
    /// this agent's load), so the agent packs trials by that count instead of splitting its cores.
    pub(super) fn has_free_cpu_threads(&self) -> bool {
        self.trials.cpu_threads() < self.config.cpu_threads
    }
}
