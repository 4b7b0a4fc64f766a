//! Running one trial: the entry point the CLI (`worker train`) and the coordinator client share.
//!
//! `architecture: noop` is a stand-in trial that trains nothing: it reports made-up epochs, writes
//! and resumes from checkpoints like a real trial, and can take `dataset.options.epoch_ms`
//! milliseconds per epoch and report `dataset.options.device_mb` as its peak device memory (so
//! that `trials_per_gpu: auto` can be tried without a GPU). The coordinator's tests and dispatch benchmark use it.

pub mod child_process;

use serde::{Deserialize, Serialize};

pub use crate::contract::{CancelFlag, Devices, RanOutOf, RunOptions, TrialEvent, TrialOutcome};
use crate::error::WorkerError;
use common::outcome::{ClassMetrics, EpochReport, TrialResult, TrialStatus};
use common::trial::TrialSpec;

/// Runs a trial to its end, its divergence, or its cancellation.
pub fn run_trial(
    spec: &TrialSpec,
    options: &RunOptions,
    on_event: &mut dyn FnMut(TrialEvent<'_>),
) -> Result<TrialOutcome, WorkerError> {
    let outcome = if spec.architecture == NOOP {
        // In the agent's own process: libtorch's settings are left as they are.
        run_noop(spec, options, on_event)?
    } else {
        crate::provenance::apply(spec);
        crate::train::Engine::default().run(spec, options, on_event)?.outcome
    };
    Ok(match outcome {
        TrialOutcome::Finished(mut result) => {
            result.manifest = Some(crate::provenance::manifest(spec, &options.devices));
            TrialOutcome::Finished(result)
        }
        interrupted => interrupted,
    })
}

/// The name of the stand-in architecture.
pub use common::names::NOOP;

#[derive(Serialize, Deserialize)]
struct NoopCheckpoint {
    epoch: u32,
    history: Vec<EpochReport>,
}

fn run_noop(
    spec: &TrialSpec,
    options: &RunOptions,
    on_event: &mut dyn FnMut(TrialEvent<'_>),
) -> Result<TrialOutcome, WorkerError> {
    let epoch_ms = spec.dataset.options.get("epoch_ms").and_then(|v| v.as_u64()).unwrap_or(0);
    let device_mb = spec.dataset.options.get("device_mb").and_then(|v| v.as_f64());
    let mut history = match &options.resume_from {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| WorkerError::io(path, e))?;
            let checkpoint: NoopCheckpoint = serde_json::from_slice(&bytes).map_err(|e| {
                WorkerError::InvalidTrial(format!("{}: not a noop checkpoint: {e}", path.display()))
            })?;
            checkpoint.history
        }
        None => Vec::new(),
    };
    let mut last_checkpoint = None;
    let first = history.len() as u32 + 1;
    for epoch in first..=spec.epochs {
        if options.cancel.is_cancelled() {
            return Ok(TrialOutcome::Interrupted { epoch: epoch - 1, checkpoint: last_checkpoint });
        }
        if epoch_ms > 0 {
            // Stands in for an epoch's work.
            std::thread::sleep(std::time::Duration::from_millis(epoch_ms));
        }
        let loss = 1.0 / f64::from(epoch);
        let report = EpochReport {
            epoch,
            train_loss: loss,
            train_accuracy: 1.0 - loss / 2.0,
            val_loss: loss,
            val_accuracy: 1.0 - loss / 2.0,
            grad_norm: loss,
            sal: None,
            seconds: epoch_ms as f64 / 1000.0,
            peak_device_mb: device_mb,
            train_images_per_s: 0.0,
            eval_images_per_s: 0.0,
        };
        on_event(TrialEvent::Epoch(&report));
        history.push(report);
        if options.checkpoint_every > 0 && epoch % options.checkpoint_every == 0 {
            std::fs::create_dir_all(&options.checkpoint_dir)
                .map_err(|e| WorkerError::io(&options.checkpoint_dir, e))?;
            let path = options.checkpoint_dir.join("noop-checkpoint.json");
            let partial = path.with_extension("json.partial");
            let bytes = serde_json::to_vec(&NoopCheckpoint { epoch, history: history.clone() })
                .map_err(|e| WorkerError::InvalidTrial(e.to_string()))?;
            std::fs::write(&partial, bytes).map_err(|e| WorkerError::io(&partial, e))?;
            std::fs::rename(&partial, &path).map_err(|e| WorkerError::io(&path, e))?;
            on_event(TrialEvent::Checkpoint { epoch, path: &path });
            last_checkpoint = Some(path);
        }
    }
    let accuracy = history.last().map_or(0.0, |r| r.val_accuracy);
    let average =
        ClassMetrics { label: "avg".into(), precision: accuracy, recall: accuracy, f1: accuracy, support: 1 };
    Ok(TrialOutcome::Finished(Box::new(TrialResult {
        status: TrialStatus::Completed,
        top1: accuracy,
        top5: 1.0,
        test_loss: history.last().map_or(0.0, |r| r.val_loss),
        per_class: Vec::new(),
        macro_avg: average.clone(),
        weighted_avg: average,
        confusion: Vec::new(),
        train_seconds: common::outcome::total_seconds(&history),
        peak_host_mb: 0.0,
        peak_device_mb: device_mb,
        inference_ms_per_batch: 0.0,
        history,
        flatness: None,
        manifest: None,
    })))
}
