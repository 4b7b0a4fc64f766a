//! One replica's life: model, optimizer, SAL, the epochs, the final evaluation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sal::{model_checksum, Collective, SalController};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::acceleration::Acceleration;
use super::batches::{epoch_seed, permutation, plan_batches, shard};
use super::collectives::CollectiveSeed;
use super::evaluate::evaluate;
use super::model::{build_locked, INIT};
use super::step::{average_buffers, float_buffers, train_step, Batch, Learner, Tally};
use super::{checkpoint, report, request_stop, Message, ModelFactory};
use crate::contract::{CancelFlag, RunOptions, TrialOutcome};
use crate::data::Split;
use crate::error::WorkerError;
use crate::optim;
use crate::optim::sam;
use crate::outcome::{ClassMetrics, EpochReport, TrialResult, TrialStatus};
use crate::trial::{Method, TrialSpec};

/// Everything a rank thread owns.
pub struct Setup {
    pub rank: usize,
    pub world: usize,
    pub device: Device,
    pub collective: CollectiveSeed,
    pub train: Split,
    pub val: Split,
    pub classes: Vec<String>,
    pub spec: TrialSpec,
    pub options: RunOptions,
    pub factory: Arc<ModelFactory>,
    pub check_replicas: bool,
    /// Intra-op threads for this rank's thread (CPU ranks share the cores), or libtorch's default.
    pub threads: Option<i32>,
    pub stop_at: Arc<AtomicU64>,
}

/// How a rank ended, and its checksum after every epoch (when asked for).
pub struct Output {
    pub outcome: TrialOutcome,
    pub checksums: Vec<u64>,
}

fn should_stop(stop_at: &AtomicU64, cancel: &CancelFlag, step: u64) -> bool {
    let mut at = stop_at.load(Ordering::SeqCst);
    if at == u64::MAX && cancel.is_cancelled() {
        at = request_stop(stop_at, step);
    }
    step >= at
}

/// Trains one rank to the end; `events` hears its progress, epoch reports and checkpoints (only
/// rank 0's are passed on: every rank sees the same).
pub fn run(setup: Setup, events: &mut dyn FnMut(Message)) -> Result<Output, WorkerError> {
    let Setup {
        rank,
        world,
        device,
        collective,
        train,
        val,
        classes,
        spec,
        options,
        factory,
        check_replicas,
        threads,
        stop_at,
    } = setup;
    if let Some(threads) = threads {
        // Per thread (OpenMP's setting is per calling thread): this rank's ops use that many.
        tch::set_num_threads(threads);
    }
    let collective = collective.open()?;
    let collective: &dyn Collective = collective.as_ref();
    let class_count = classes.len() as i64;

    // The whole dataset moves to the device once; batches are cut there.
    let (train_images, train_labels) = (train.images.to_device(device), train.labels.to_device(device));
    let (val_images, val_labels) = (val.images.to_device(device), val.labels.to_device(device));
    drop((train, val));

    let vs = VarStore::new(device);
    let model = build_locked(factory.as_ref(), &vs, &spec, class_count, Some(spec.seed))?;
    // Every rank reads the file, so that a bad one fails all ranks alike instead of leaving the
    // others waiting in a collective (NCCL has no abort); rank 0's copy is broadcast anyway.
    if let Some(path) = &spec.pretrained {
        crate::models::load_pretrained(&vs, path)?;
    }
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let variables: Vec<Tensor> = variables.into_iter().map(|(_, t)| t).collect();
    collective.broadcast_many(&variables, 0)?;
    let acceleration = Acceleration::new(&spec, device);
    acceleration.prepare_model(&vs);

    let optimizer = optim::build(&spec.optimizer, &vs, spec.learning_rate)?;
    let sam_rho = (spec.method == Method::Sam).then(|| spec.sam_rho.unwrap_or(sam::DEFAULT_RHO));
    // SAL's controller for SAL and its ablation arms; none for the baseline.
    let mut sal = match spec.arm()? {
        Some(arm) => Some(SalController::new(spec.sal.clone(), spec.seed, spec.epochs)?.with_arm(arm)),
        None => None,
    };
    let (mut history, mut last_checkpoint, first_epoch) = match &options.resume_from {
        Some(path) => {
            let state = optimizer.state_tensors();
            let restored =
                checkpoint::load(path, &spec, class_count, &vs, &state, sal.as_mut(), factory.as_ref())?;
            (restored.history, Some(path.clone()), restored.epoch + 1)
        }
        None => (Vec::new(), None, 1),
    };

    let samples = train_labels.size()[0];
    let batch = i64::from(spec.batch_size);
    let batches = plan_batches(samples, batch, world);
    let steps = batches.len();
    let epoch_images = batches.iter().map(|&(_, len)| len).sum::<i64>() as f64;
    let progress_every = (steps / 100).max(1);
    let trainable = vs.trainable_variables();
    let buffers = float_buffers(&vs, &trainable);
    let mut learner = Learner { model, optimizer, acceleration, trainable, sam_rho };
    let mut checksums = Vec::new();
    // Sampled after each epoch's steps and after the final evaluation, when usage is highest.
    let mut peak_device_mb: Option<f64> = None;
    let sample_device = |peak_device_mb: &mut Option<f64>| {
        if let Some(used) = report::device_used_mb(device) {
            *peak_device_mb = Some(peak_device_mb.map_or(used, |peak: f64| peak.max(used)));
        }
    };

    for epoch in first_epoch..=spec.epochs {
        let started = Instant::now();
        if rank == 0 {
            let _lock = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tch::manual_seed(epoch_seed(spec.seed, epoch));
        }
        // Dropout draws from the rank's own stream: distinct per rank, the same on every run.
        crate::models::dropout::seed_stream(spec.seed, rank, epoch);
        let order = permutation(samples, spec.seed, epoch).to_device(device);
        let mut tally = Tally::new(device);
        for (step, &(start, len)) in batches.iter().enumerate() {
            let global_step = u64::from(epoch - 1) * steps as u64 + step as u64;
            if should_stop(&stop_at, &options.cancel, global_step) {
                let outcome = TrialOutcome::Interrupted { epoch: epoch - 1, checkpoint: last_checkpoint };
                return Ok(Output { outcome, checksums });
            }
            let (from, count) = shard(start, len, rank, world);
            let index = order.narrow(0, from, count);
            let images = train_images.index_select(0, &index).to_kind(Kind::Float) / 255.0;
            let batch = Batch {
                images: learner.acceleration.input(images),
                labels: train_labels.index_select(0, &index),
                global: len,
            };
            train_step(&mut learner, collective, &batch, &mut tally)?;
            if step % progress_every == 0 || step + 1 == steps {
                events(Message::Progress { epoch, step: step + 1, steps });
            }
        }

        let metrics = tally.sums().global_metrics(collective)?;
        // The sums were read from the device and reduced: every step of every rank is done.
        let train_seconds = started.elapsed().as_secs_f64();
        sample_device(&mut peak_device_mb);
        average_buffers(&buffers, collective)?;
        let grad_norm = tally.mean_norm(steps);
        let validation = evaluate(
            learner.model.as_ref(),
            &learner.acceleration,
            &val_images,
            &val_labels,
            rank,
            world,
            batch,
            class_count,
            false,
        )?
        .reduce(collective)?;
        let (val_loss, val_accuracy) = (validation.loss(), validation.accuracy());
        let eval_images_per_s = throughput(validation.count, validation.seconds);
        if ![metrics.loss, grad_norm, val_loss].iter().all(|v| v.is_finite()) {
            tracing::warn!(epoch, loss = metrics.loss, grad_norm, val_loss, "trial diverged");
            return Ok(Output { outcome: TrialOutcome::Finished(Box::new(diverged(history))), checksums });
        }
        let record = match sal.as_mut() {
            Some(controller) => {
                Some(controller.end_epoch(metrics, &vs, &learner.optimizer.state_tensors())?)
            }
            None => None,
        };
        if check_replicas {
            checksums.push(model_checksum(&vs));
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
            peak_device_mb,
            train_images_per_s: throughput(epoch_images, train_seconds),
            eval_images_per_s,
        };
        history.push(report.clone());
        events(Message::Epoch(report));
        if options.checkpoint_every > 0 && epoch % options.checkpoint_every == 0 {
            let saved = (rank == 0).then(|| {
                let state = learner.optimizer.state_tensors();
                let saved = checkpoint::State {
                    spec: &spec,
                    classes: class_count,
                    epoch,
                    history: &history,
                    vs: &vs,
                    optimizer_state: &state,
                    sal: sal.as_ref(),
                };
                checkpoint::save(&options.checkpoint_dir, &saved, factory.as_ref())
            });
            // Rank 0 tells the others whether it could write: a failed write (a full disk) then
            // stops every rank, rather than leaving them in the next step's all-reduce.
            let mut failed = [if matches!(saved, Some(Err(_))) { 1.0 } else { 0.0 }];
            collective.all_reduce_sum_f64(&mut failed)?;
            match saved {
                Some(Ok(path)) => {
                    events(Message::Checkpoint { epoch, path: path.clone() });
                    last_checkpoint = Some(path);
                }
                Some(Err(error)) => return Err(error),
                None if failed[0] > 0.0 => return Err(WorkerError::Sal(sal::SalError::Aborted)),
                None => {}
            }
        }
    }

    let test = evaluate(
        learner.model.as_ref(),
        &learner.acceleration,
        &val_images,
        &val_labels,
        rank,
        world,
        batch,
        class_count,
        true,
    )?;
    let inference_ms_per_batch = test.local_ms_per_batch();
    sample_device(&mut peak_device_mb);
    let test = test.reduce(collective)?;
    let confusion: Vec<Vec<u64>> = test
        .confusion
        .chunks(class_count as usize)
        .map(|row| row.iter().map(|&v| v as u64).collect())
        .collect();
    let (per_class, macro_avg, weighted_avg) = report::classification_report(&classes, &confusion);
    // Every rank holds the same weights: rank 0 measures, on its own (no collective runs meanwhile).
    let flatness = match (&spec.flatness, rank) {
        (Some(config), 0) => Some(super::flatness::measure_model(
            learner.model.as_ref(),
            &|x| learner.acceleration.input(x),
            &train_images,
            &train_labels,
            &learner.trainable,
            batch,
            config,
            spec.seed,
        )),
        _ => None,
    };
    let result = TrialResult {
        status: TrialStatus::Completed,
        top1: test.accuracy(),
        top5: test.top5 / test.count.max(1.0),
        test_loss: test.loss(),
        per_class,
        macro_avg,
        weighted_avg,
        confusion,
        train_seconds: crate::outcome::total_seconds(&history),
        peak_host_mb: report::peak_host_mb(),
        peak_device_mb,
        inference_ms_per_batch,
        history,
        flatness,
        // The trial's runner adds it (`run::run_trial`): it knows the process, not the rank.
        manifest: None,
    };
    Ok(Output { outcome: TrialOutcome::Finished(Box::new(result)), checksums })
}

/// Images per second, 0 for an empty or instant pass.
fn throughput(images: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        images / seconds
    } else {
        0.0
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
        train_seconds: crate::outcome::total_seconds(&history),
        peak_host_mb: report::peak_host_mb(),
        peak_device_mb: None,
        inference_ms_per_batch: 0.0,
        history,
        flatness: None,
        manifest: None,
    }
}
