//! One epoch of a replica: its steps, then what ends it: metrics and batch-norm buffers over
//! the ranks, validation, SAL's decision, the report and the checkpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::outcome::EpochReport;
use sal::{model_checksum, EpochMetrics};
use tch::Kind;

use super::batches::{epoch_seed, permutation, shard};
use super::evaluate::Evaluation;
use super::model::INIT;
use super::replica::Replica;
use super::step::{average_buffers, train_step, Batch, Tally};
use super::{checkpoint, request_stop, Message};
use crate::contract::CancelFlag;
use crate::error::WorkerError;

/// An epoch's numbers over all ranks, before SAL sees them.
pub(super) struct Measured {
    pub(super) metrics: EpochMetrics,
    pub(super) grad_norm: f64,
    /// Validation, reduced over the ranks.
    pub(super) validation: Evaluation,
    pub(super) train_seconds: f64,
}

impl Measured {
    /// False once training has diverged: a loss or the gradient's norm is no longer finite.
    pub(super) fn is_finite(&self) -> bool {
        [self.metrics.loss, self.grad_norm, self.validation.loss()].iter().all(|v| v.is_finite())
    }
}

impl Replica {
    /// Trains on every batch of `epoch`; `None` when the run is cancelled before one of them
    /// (every rank stops before the same step).
    pub(super) fn train_epoch(
        &mut self,
        epoch: u32,
        events: &mut dyn FnMut(Message),
    ) -> Result<Option<Tally>, WorkerError> {
        if self.rank == 0 {
            let _lock = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tch::manual_seed(epoch_seed(self.spec.seed, epoch));
        }
        // Dropout draws from the rank's own stream: distinct per rank, the same on every run.
        crate::models::dropout::seed_stream(self.spec.seed, self.rank, epoch);
        let order = permutation(self.plan.samples, self.spec.seed, epoch).to_device(self.device);
        let mut tally = Tally::new(self.device);
        let steps = self.plan.steps();
        for (step, &(start, len)) in self.plan.batches.iter().enumerate() {
            let global_step = u64::from(epoch - 1) * steps as u64 + step as u64;
            if should_stop(&self.stop_at, &self.options.cancel, global_step) {
                return Ok(None);
            }
            let (from, count) = shard(start, len, self.rank, self.world);
            let index = order.narrow(0, from, count);
            let images = self.data.train_images.index_select(0, &index).to_kind(Kind::Float) / 255.0;
            let batch = Batch {
                images: self.learner.acceleration.input(images),
                labels: self.data.train_labels.index_select(0, &index),
                global: len,
            };
            train_step(&mut self.learner, self.collective.as_ref(), &batch, &mut tally)?;
            if step % self.plan.progress_every == 0 || step + 1 == steps {
                events(Message::Progress { epoch, step: step + 1, steps });
            }
        }
        Ok(Some(tally))
    }

    /// The epoch's metrics over all ranks, the buffers averaged over them, and validation.
    pub(super) fn measure(&mut self, started: Instant, tally: Tally) -> Result<Measured, WorkerError> {
        let metrics = tally.sums().global_metrics(self.collective.as_ref())?;
        // The sums were read from the device and reduced: every step of every rank is done.
        let train_seconds = started.elapsed().as_secs_f64();
        self.sample_device();
        average_buffers(&self.buffers, self.collective.as_ref())?;
        let grad_norm = tally.mean_norm(self.plan.steps());
        let validation = self.evaluate(false)?.reduce(self.collective.as_ref())?;
        Ok(Measured { metrics, grad_norm, validation, train_seconds })
    }

    /// SAL's decision on the epoch, the replica's checksum and the epoch's report, kept in the
    /// history.
    pub(super) fn record(
        &mut self,
        epoch: u32,
        started: Instant,
        measured: Measured,
    ) -> Result<EpochReport, WorkerError> {
        let Measured { metrics, grad_norm, validation, train_seconds } = measured;
        let (val_loss, val_accuracy) = (validation.loss(), validation.accuracy());
        let eval_images_per_s = throughput(validation.count, validation.seconds);
        let record = match self.sal.as_mut() {
            Some(controller) => {
                Some(controller.end_epoch(metrics, &self.vs, &self.learner.optimizer.state_tensors())?)
            }
            None => None,
        };
        if self.check_replicas {
            self.checksums.push(model_checksum(&self.vs));
        }
        let report = EpochReport {
            epoch,
            train_loss: metrics.loss,
            train_accuracy: metrics.accuracy,
            val_loss,
            val_accuracy,
            grad_norm,
            sal: record,
            seconds: started.elapsed().as_secs_f64(),
            peak_device_mb: self.peak_device_mb,
            train_images_per_s: throughput(self.plan.epoch_images, train_seconds),
            eval_images_per_s,
        };
        self.history.push(report.clone());
        Ok(report)
    }

    /// Writes a checkpoint after `epoch` when one is due. Rank 0 writes; every rank learns
    /// whether it could.
    pub(super) fn checkpoint(
        &mut self,
        epoch: u32,
        events: &mut dyn FnMut(Message),
    ) -> Result<(), WorkerError> {
        let every = self.options.checkpoint_every;
        let due = every > 0 && epoch.is_multiple_of(every);
        if !due {
            return Ok(());
        }
        let saved = (self.rank == 0).then(|| {
            let state = self.learner.optimizer.state_tensors();
            let saved = checkpoint::State {
                spec: &self.spec,
                classes: self.class_count(),
                epoch,
                history: &self.history,
                vs: &self.vs,
                optimizer_state: &state,
                sal: self.sal.as_ref(),
            };
            checkpoint::save(&self.options.checkpoint_dir, &saved, self.factory.as_ref())
        });
        // Rank 0 tells the others whether it could write: a failed write (a full disk) then
        // stops every rank, rather than leaving them in the next step's all-reduce.
        let mut failed = [if matches!(saved, Some(Err(_))) { 1.0 } else { 0.0 }];
        self.collective.all_reduce_sum_f64(&mut failed)?;
        match saved {
            Some(Ok(path)) => {
                events(Message::Checkpoint { epoch, path: path.clone() });
                self.last_checkpoint = Some(path);
                Ok(())
            }
            Some(Err(error)) => Err(error),
            None if failed[0] > 0.0 => Err(WorkerError::Sal(sal::SalError::Aborted)),
            None => Ok(()),
        }
    }
}

fn should_stop(stop_at: &AtomicU64, cancel: &CancelFlag, step: u64) -> bool {
    let mut at = stop_at.load(Ordering::SeqCst);
    if at == u64::MAX && cancel.is_cancelled() {
        at = request_stop(stop_at, step);
    }
    step >= at
}

/// Images per second, 0 for an empty or instant pass.
fn throughput(images: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        images / seconds
    } else {
        0.0
    }
}
