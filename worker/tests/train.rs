//! The training engine on CPU ranks: data parallelism that matches one rank, replicas that stay
//! bit-identical through SAL's interventions, divergence, cancellation and bad trials.

mod common;

use std::sync::Arc;

use common::{cpu_options, serial, synthetic_trial};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;
use worker::train::{Engine, ModelFactory, TrainRun};
use worker::{
    Method, Precision, RunOptions, TrialEvent, TrialOutcome, TrialResult, TrialSpec, TrialStatus, WorkerError,
};

fn options(dir: &std::path::Path, ranks: usize) -> RunOptions {
    cpu_options(dir, ranks, 0)
}

fn finished(run: TrainRun) -> TrialResult {
    match run.outcome {
        TrialOutcome::Finished(result) => *result,
        other => panic!("expected a finished trial, got {other:?}"),
    }
}

/// A model without batch norm or dropout: its gradient over a batch is the sum of its gradients
/// over the batch's shards, so data parallelism must reproduce one rank up to float rounding.
#[derive(Debug)]
struct PlainCnn {
    conv: nn::Conv2D,
    fc: nn::Linear,
}

impl ModuleT for PlainCnn {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let x = self.conv.forward(xs).relu().adaptive_avg_pool2d([2, 2]).flatten(1, -1);
        self.fc.forward(&x)
    }
}

fn plain_cnn() -> Arc<ModelFactory> {
    Arc::new(|path: &nn::Path, _spec: &TrialSpec, classes: i64| {
        let conv = nn::conv2d(path / "conv", 3, 8, 3, nn::ConvConfig { padding: 1, ..Default::default() });
        // Under `head`, as the registry's models keep their heads: the rest is the trunk.
        let fc = nn::linear(path / "head" / "fc", 32, classes, Default::default());
        Ok(Box::new(PlainCnn { conv, fc }) as worker::models::Model)
    })
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn two_ranks_match_one_rank_at_the_same_global_batch() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let spec = synthetic_trial("plain", "sgd", 3);
    let engine = Engine::default().with_model_factory(plain_cnn());
    let one = finished(engine.run(&spec, &options(dir.path(), 1), &mut |_| {}).unwrap());
    let two = finished(engine.run(&spec, &options(dir.path(), 2), &mut |_| {}).unwrap());
    assert_eq!(one.history.len(), 3);
    for (a, b) in one.history.iter().zip(&two.history) {
        assert!(
            close(a.train_loss, b.train_loss, 1e-5),
            "epoch {}: {} vs {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert!(close(a.val_loss, b.val_loss, 1e-5), "epoch {}: {} vs {}", a.epoch, a.val_loss, b.val_loss);
        assert!(
            close(a.grad_norm, b.grad_norm, 1e-4),
            "epoch {}: {} vs {}",
            a.epoch,
            a.grad_norm,
            b.grad_norm
        );
        assert_eq!(a.train_accuracy, b.train_accuracy);
    }
    assert!(close(one.test_loss, two.test_loss, 1e-5));
    assert_eq!(one.confusion, two.confusion);
    // It learned something: the loss fell.
    assert!(one.history[2].train_loss < one.history[0].train_loss);
}

#[test]
fn replicas_stay_bit_identical_through_sal_interventions() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = synthetic_trial("small_cnn", "sgd", 5);
    spec.method = Method::Sal;
    // No epoch counts as improved, so stress rises by theta each epoch: noise and plastic
    // deformation at epoch 2, its verdict (a restore or not) at 3, again at 4.
    spec.sal.warmup_epochs = 0;
    spec.sal.eps_loss = 100.0;
    let engine = Engine::default().check_replicas(true);
    let run = engine.run(&spec, &options(dir.path(), 2), &mut |_| {}).unwrap();
    assert_eq!(run.replica_checksums.len(), 5);
    for (epoch, ranks) in run.replica_checksums.iter().enumerate() {
        assert_eq!(ranks.len(), 2);
        assert_eq!(ranks[0], ranks[1], "replicas differ after epoch {}", epoch + 1);
    }
    let distinct: std::collections::BTreeSet<u64> = run.replica_checksums.iter().map(|r| r[0]).collect();
    assert_eq!(distinct.len(), 5, "the model changes every epoch");
    let result = finished(run);
    let actions: Vec<sal::Action> = result.history.iter().map(|r| r.sal.unwrap().applied).collect();
    assert!(actions.contains(&sal::Action::NoisePlastic), "{actions:?}");
    assert_eq!(actions[0], sal::Action::None);
}

#[test]
fn a_huge_learning_rate_ends_as_diverged_without_a_panic() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = synthetic_trial("small_cnn", "sgd", 30);
    // Large enough that f32 weights overflow to inf within the first epoch whatever the model:
    // at 1e12 small_cnn's batch norms keep the loss finite (huge, but finite: not diverged).
    spec.learning_rate = 1e30;
    let result = finished(Engine::default().run(&spec, &options(dir.path(), 2), &mut |_| {}).unwrap());
    assert_eq!(result.status, TrialStatus::Diverged);
    assert!(result.history.len() < 30);
    assert!(result.history.iter().all(|r| r.train_loss.is_finite() && r.val_loss.is_finite()));
    // The result travels as JSON: no NaN may hide in it.
    let json = serde_json::to_string(&result).unwrap();
    let back: TrialResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back.status, TrialStatus::Diverged);
}

/// A model that trains normally, then produces NaN from its `nan_after`-th training step on:
/// a divergence at a known epoch.
#[derive(Debug)]
struct Faulty {
    inner: PlainCnn,
    steps: std::sync::atomic::AtomicUsize,
    nan_after: usize,
}

impl ModuleT for Faulty {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let logits = self.inner.forward_t(xs, train);
        if train && self.steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.nan_after {
            return logits * f64::NAN;
        }
        logits
    }
}

#[test]
fn a_nan_loss_ends_the_trial_as_diverged_keeping_the_finite_epochs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 96 samples in batches of 16: 6 steps an epoch; NaN from the first step of epoch 3.
    let factory: Arc<ModelFactory> = Arc::new(|path: &nn::Path, _spec: &TrialSpec, classes: i64| {
        let inner = PlainCnn {
            conv: nn::conv2d(path / "conv", 3, 8, 3, nn::ConvConfig { padding: 1, ..Default::default() }),
            fc: nn::linear(path / "fc", 32, classes, Default::default()),
        };
        Ok(Box::new(Faulty { inner, steps: Default::default(), nan_after: 12 }) as worker::models::Model)
    });
    let spec = synthetic_trial("faulty", "sgd", 6);
    let run = Engine::default()
        .with_model_factory(factory)
        .run(&spec, &options(dir.path(), 1), &mut |_| {})
        .unwrap();
    let result = finished(run);
    assert_eq!(result.status, TrialStatus::Diverged);
    assert_eq!(result.history.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);
    assert!(result.history.iter().all(|r| r.train_loss.is_finite()));
}

#[test]
fn cancellation_stops_every_rank_at_the_same_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let spec = synthetic_trial("small_cnn", "sgd", 50);
    let mut opts = options(dir.path(), 2);
    opts.checkpoint_every = 1;
    let cancel = opts.cancel.clone();
    let mut epochs_seen = 0;
    let run = Engine::default()
        .run(&spec, &opts, &mut |event| {
            if let TrialEvent::Epoch(_) = event {
                epochs_seen += 1;
                cancel.cancel();
            }
        })
        .unwrap();
    match run.outcome {
        TrialOutcome::Interrupted { epoch, checkpoint } => {
            assert!((1..50).contains(&epoch), "stopped after epoch {epoch}");
            let path = checkpoint.expect("a checkpoint was written after epoch 1");
            assert!(path.is_file());
        }
        other => panic!("expected an interruption, got {other:?}"),
    }
    assert!(epochs_seen >= 1);

    // Cancelled before the first step: nothing trained, nothing written.
    let early = options(dir.path(), 2);
    early.cancel.cancel();
    let run = Engine::default().run(&spec, &early, &mut |_| {}).unwrap();
    assert!(matches!(run.outcome, TrialOutcome::Interrupted { epoch: 0, checkpoint: None }));
}

#[test]
fn bad_trials_are_refused_before_training() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run =
        |spec: &TrialSpec| Engine::default().run(spec, &options(dir.path(), 1), &mut |_| {}).err().unwrap();

    let error = run(&synthetic_trial("resnet9000", "sgd", 1));
    assert!(matches!(error, WorkerError::UnknownArchitecture { .. }), "{error}");
    let error = run(&synthetic_trial("small_cnn", "adagrad2", 1));
    assert!(matches!(error, WorkerError::UnknownOptimizer { .. }), "{error}");

    let mut tiny = synthetic_trial("small_cnn", "sgd", 1);
    tiny.resolution = 2;
    let error = run(&tiny);
    assert_eq!(error.field_path(), Some("resolution"), "{error}");
    assert!(error.to_string().contains("2 px") && !error.to_string().contains('\n'), "{error}");

    let mut format = synthetic_trial("small_cnn", "sgd", 1);
    format.dataset.format = "tfrecord".into();
    assert_eq!(run(&format).field_path(), Some("dataset.format"));

    let mut zero = synthetic_trial("small_cnn", "sgd", 1);
    zero.epochs = 0;
    assert_eq!(run(&zero).field_path(), Some("epochs"));

    let mut sal = synthetic_trial("small_cnn", "sgd", 1);
    sal.method = Method::Sal;
    sal.sal.s_noise = 0.5;
    let error = run(&sal);
    assert!(error.is_bad_input() && error.to_string().contains("s_noise"), "{error}");

    let mut missing = synthetic_trial("small_cnn", "sgd", 1);
    missing.dataset = common::dataset("eurosat", &dir.path().join("absent"));
    let error = run(&missing);
    assert!(matches!(error, WorkerError::Dataset { .. }) && error.to_string().contains("absent"), "{error}");

    let mut split = synthetic_trial("small_cnn", "sgd", 1);
    split.batch_size = 3;
    let error = Engine::default().run(&split, &options(dir.path(), 2), &mut |_| {}).err().unwrap();
    assert_eq!(error.field_path(), Some("batch_size"), "{error}");
}

#[test]
fn pretrained_weights_load_by_name_and_mismatches_are_listed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default().with_model_factory(plain_cnn());
    let mut spec = synthetic_trial("plain", "sgd", 1);
    let run = |spec: &TrialSpec| engine.run(spec, &options(dir.path(), 1), &mut |_| {});

    // A trunk file: the conv's weights and bias; the head keeps its initialisation.
    let good = dir.path().join("trunk.safetensors");
    let weight = Tensor::full([8, 3, 3, 3], 0.01, (tch::Kind::Float, tch::Device::Cpu));
    let bias = Tensor::zeros([8], (tch::Kind::Float, tch::Device::Cpu));
    Tensor::write_safetensors(&[("conv.weight", &weight), ("conv.bias", &bias)], &good).unwrap();
    spec.pretrained = Some(good);
    assert!(run(&spec).is_ok());

    let unexpected = dir.path().join("other.safetensors");
    Tensor::write_safetensors(&[("features.0.weight", &weight), ("conv.bias", &bias)], &unexpected).unwrap();
    spec.pretrained = Some(unexpected);
    let error = run(&spec).err().unwrap();
    assert_eq!(error.field_path(), Some("pretrained"));
    assert!(error.to_string().contains("features.0.weight") && !error.to_string().contains('\n'), "{error}");

    let shape = dir.path().join("shape.safetensors");
    let wide = Tensor::zeros([16, 3, 3, 3], (tch::Kind::Float, tch::Device::Cpu));
    Tensor::write_safetensors(&[("conv.weight", &wide), ("conv.bias", &bias)], &shape).unwrap();
    spec.pretrained = Some(shape);
    let error = run(&spec).err().unwrap();
    assert!(
        error.to_string().contains("conv.weight") && error.to_string().contains("[16, 3, 3, 3]"),
        "{error}"
    );

    // A file that covers part of the trunk is refused, and before any data is decoded: with a
    // dataset root that does not exist, the weights are what the error names.
    let partial = dir.path().join("partial.safetensors");
    Tensor::write_safetensors(&[("conv.weight", &weight)], &partial).unwrap();
    spec.pretrained = Some(partial);
    spec.dataset = common::dataset("image_folder", &dir.path().join("no-such-dataset"));
    let error = run(&spec).err().unwrap();
    assert!(matches!(error, WorkerError::Pretrained { .. }), "{error}");
    assert!(error.to_string().contains("1 missing (conv.bias)"), "{error}");
    assert!(error.is_bad_input() && !error.is_retryable(), "{error:?}");
}

#[test]
fn run_trial_dispatches_the_noop_stand_in_and_real_trials() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut events = 0;
    let noop = synthetic_trial(worker::run::NOOP, "sgd", 3);
    match worker::run_trial(&noop, &options(dir.path(), 1), &mut |_| events += 1).unwrap() {
        TrialOutcome::Finished(result) => assert_eq!(result.history.len(), 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(events, 3, "the stand-in reports epochs only");

    let real = synthetic_trial("small_cnn", "sgd", 1);
    let mut progress = 0;
    match worker::run_trial(&real, &options(dir.path(), 1), &mut |event| {
        if let TrialEvent::Progress { epoch, step, steps } = event {
            assert!(epoch == 1 && step >= 1 && step <= steps);
            progress += 1;
        }
    })
    .unwrap()
    {
        TrialOutcome::Finished(result) => {
            assert_eq!(result.status, TrialStatus::Completed);
            assert_eq!(result.confusion.iter().flatten().sum::<u64>(), 32);
        }
        other => panic!("{other:?}"),
    }
    assert!(progress >= 1);
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_every_rank_with_the_cause() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"a file where the checkpoint folder should be").unwrap();
    let mut opts = options(dir.path(), 2);
    opts.checkpoint_every = 1;
    opts.checkpoint_dir = blocker.join("checkpoints");
    let error =
        Engine::default().run(&synthetic_trial("small_cnn", "sgd", 3), &opts, &mut |_| {}).err().unwrap();
    assert!(matches!(error, WorkerError::Io { .. }), "{error}");
    assert!(error.to_string().contains("not-a-folder"), "{error}");
}

/// SAL_SPEC.md, "The last epoch": a SAL trial whose last epoch reaches the yield point records
/// noise and plastic deformation as decided, applies neither, and reports the weights as trained.
#[test]
fn the_last_epoch_decides_but_leaves_the_trained_weights_to_the_final_test() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let baseline = synthetic_trial("small_cnn", "sgd", 3);
    let mut spec = baseline.clone();
    spec.method = Method::Sal;
    // No epoch after the first counts as improved: stress 0, 0.005, then 0.01 = S_yield at the
    // third and last epoch, and nothing before it intervenes.
    spec.sal.warmup_epochs = 0;
    spec.sal.eps_loss = 100.0;
    let engine = Engine::default().check_replicas(true);
    let sal_run = engine.run(&spec, &options(dir.path(), 2), &mut |_| {}).unwrap();
    let baseline_run = engine.run(&baseline, &options(dir.path(), 2), &mut |_| {}).unwrap();

    // With nothing applied, SAL's weights are the baseline's, bit for bit, after every epoch.
    assert_eq!(sal_run.replica_checksums, baseline_run.replica_checksums);
    let (sal_result, baseline_result) = (finished(sal_run), finished(baseline_run));
    let records: Vec<sal::EpochRecord> = sal_result.history.iter().map(|r| r.sal.unwrap()).collect();
    let last = records.last().unwrap();
    assert_eq!(last.stress, 0.01, "Equation 1 runs at the last epoch");
    assert_eq!((last.decided, last.applied), (sal::Action::NoisePlastic, sal::Action::None));
    assert!(records[..2].iter().all(|r| r.decided == sal::Action::None), "{records:?}");

    // The final test runs on the validation split, as the last epoch's validation did, with the
    // same weights: the same loss and accuracy.
    let last_epoch = sal_result.history.last().unwrap();
    assert_eq!(sal_result.test_loss, last_epoch.val_loss);
    assert_eq!(sal_result.top1, last_epoch.val_accuracy);
    assert_eq!(sal_result.test_loss, baseline_result.test_loss);
    assert_eq!(sal_result.confusion, baseline_result.confusion);
}

#[test]
fn gpu_options_stay_out_of_trial_ids_at_their_defaults_and_bf16_needs_gpus() {
    let _serial = serial();
    let spec = synthetic_trial("small_cnn", "sgd", 2);
    let plain = spec.canonical_json();
    for key in ["precision", "channels_last", "cudnn_benchmark"] {
        assert!(!plain.contains(key), "{key} in {plain}");
    }
    let fast =
        TrialSpec { precision: Precision::Bf16, channels_last: true, cudnn_benchmark: true, ..spec.clone() };
    let json = fast.canonical_json();
    assert!(json.contains(r#""precision":"bf16""#) && json.contains(r#""channels_last":true"#), "{json}");
    assert_eq!(serde_json::from_str::<TrialSpec>(&json).unwrap(), fast);

    let dir = tempfile::tempdir().unwrap();
    let bf16 = TrialSpec { precision: Precision::Bf16, ..spec.clone() };
    let error = Engine::default().run(&bf16, &options(dir.path(), 1), &mut |_| {}).err().unwrap();
    assert_eq!(error.field_path(), Some("precision"), "{error}");
    assert!(!error.to_string().contains('\n'), "{error}");

    // Channels-last runs on CPU ranks too (the optimizer keeps the layout of the weights it adopts);
    // every epoch reports its throughput.
    let nhwc = TrialSpec { channels_last: true, cudnn_benchmark: true, ..spec };
    let result = finished(Engine::default().run(&nhwc, &options(dir.path(), 2), &mut |_| {}).unwrap());
    assert_eq!(result.history.len(), 2);
    for epoch in &result.history {
        assert!(epoch.train_loss.is_finite(), "{epoch:?}");
        assert!(epoch.train_images_per_s > 0.0 && epoch.eval_images_per_s > 0.0, "{epoch:?}");
    }
    assert!(result.train_images_per_s().is_some_and(|v| v > 0.0));
}
