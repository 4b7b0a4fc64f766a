//! How a replica ends: the final evaluation with its classification report and (on rank 0)
//! flatness, a divergence, or a cancellation.

use common::flatness::Flatness;
use common::outcome::{ClassMetrics, EpochReport, TrialResult, TrialStatus};

use super::epoch::Measured;
use super::replica::{Output, Replica};
use super::report;
use crate::contract::TrialOutcome;
use crate::error::WorkerError;

impl Replica {
    /// The final evaluation over all ranks (top-5 and the confusion matrix too) and the result.
    pub(super) fn finish(mut self) -> Result<Output, WorkerError> {
        let test = self.evaluate(true)?;
        let inference_ms_per_batch = test.local_ms_per_batch();
        self.sample_device();
        let test = test.reduce(self.collective.as_ref())?;
        let class_count = self.class_count() as usize;
        let confusion: Vec<Vec<u64>> =
            test.confusion.chunks(class_count).map(|row| row.iter().map(|&v| v as u64).collect()).collect();
        let (per_class, macro_avg, weighted_avg) = report::classification_report(&self.classes, &confusion);
        let flatness = self.flatness();
        let history = std::mem::take(&mut self.history);
        let result = TrialResult {
            status: TrialStatus::Completed,
            top1: test.accuracy(),
            top5: test.top5 / test.count.max(1.0),
            test_loss: test.loss(),
            per_class,
            macro_avg,
            weighted_avg,
            confusion,
            train_seconds: common::outcome::total_seconds(&history),
            peak_host_mb: report::peak_host_mb(),
            peak_device_mb: self.peak_device_mb,
            inference_ms_per_batch,
            history,
            flatness,
            // The trial's runner adds it (`run::run_trial`): it knows the process, not the rank.
            manifest: None,
        };
        Ok(self.output(TrialOutcome::Finished(Box::new(result))))
    }

    /// Flatness of the trained model, when the trial asks for it. Every rank holds the same
    /// weights: rank 0 measures, on its own (no collective runs meanwhile).
    fn flatness(&self) -> Option<Flatness> {
        let config = self.spec.flatness.as_ref().filter(|_| self.rank == 0)?;
        let acceleration = &self.learner.acceleration;
        Some(super::flatness::measure_model(
            self.learner.model.as_ref(),
            &|x| acceleration.input(x),
            &self.data.train_images,
            &self.data.train_labels,
            &self.learner.trainable,
            self.plan.batch,
            config,
            self.spec.seed,
        ))
    }

    /// Ends a trial whose epoch `epoch` went non-finite.
    pub(super) fn diverged(mut self, epoch: u32, measured: &Measured) -> Output {
        let (loss, grad_norm, val_loss) =
            (measured.metrics.loss, measured.grad_norm, measured.validation.loss());
        tracing::warn!(epoch, loss, grad_norm, val_loss, "trial diverged");
        let result = diverged(std::mem::take(&mut self.history));
        self.output(TrialOutcome::Finished(Box::new(result)))
    }

    /// Ends a cancelled trial after `epoch`, its last complete one.
    pub(super) fn interrupted(self, epoch: u32) -> Output {
        let checkpoint = self.last_checkpoint.clone();
        self.output(TrialOutcome::Interrupted { epoch, checkpoint })
    }
}

/// A diverged trial: its history up to the last finite epoch; final metrics are zero (a model
/// with non-finite weights has none worth reporting, and JSON has no NaN).
fn diverged(history: Vec<EpochReport>) -> TrialResult {
    let zero = ClassMetrics { label: String::new(), precision: 0.0, recall: 0.0, f1: 0.0, support: 0 };
    TrialResult {
        status: TrialStatus::Diverged,
        top1: 0.0,
        top5: 0.0,
        test_loss: 0.0,
        per_class: Vec::new(),
        macro_avg: ClassMetrics { label: "macro avg".into(), ..zero.clone() },
        weighted_avg: ClassMetrics { label: "weighted avg".into(), ..zero },
        confusion: Vec::new(),
        train_seconds: common::outcome::total_seconds(&history),
        peak_host_mb: report::peak_host_mb(),
        peak_device_mb: None,
        inference_ms_per_batch: 0.0,
        history,
        flatness: None,
        manifest: None,
    }
}
