//! Checkpoints: a run resumed from one ends exactly where an uninterrupted run ends.
//!
//! In a test binary of its own, its tests one at a time: dropout draws from libtorch's
//! process-wide CPU generator, which concurrent trials in the same process would also draw from.

mod common;

use common::{cpu_options as options, serial, synthetic_trial};
use worker::train::Engine;
use worker::{EpochReport, Head, Method, RunOptions, TrialOutcome, TrialResult, TrialSpec, WorkerError};

fn finish(spec: &TrialSpec, options: &RunOptions) -> TrialResult {
    match Engine::default().run(spec, options, &mut |_| {}).unwrap().outcome {
        TrialOutcome::Finished(result) => *result,
        other => panic!("expected a finished trial, got {other:?}"),
    }
}

/// The history without wall-clock times and the throughputs measured from them.
fn timeless(history: &[EpochReport]) -> Vec<EpochReport> {
    history
        .iter()
        .map(|r| EpochReport { seconds: 0.0, train_images_per_s: 0.0, eval_images_per_s: 0.0, ..r.clone() })
        .collect()
}

/// SAL that intervenes from the start: after the first epoch (an improvement on +inf) no epoch
/// counts as improved, so the stress reaches the yield at epoch 3 and again at epoch 5; a
/// checkpoint after either holds a pending yield point (restored at epoch 4).
fn stressed(mut spec: TrialSpec) -> TrialSpec {
    spec.method = Method::Sal;
    spec.sal.warmup_epochs = 0;
    spec.sal.eps_loss = 100.0;
    // A deformation harsh enough that epoch 4 does not beat the yield point: it is restored from
    // what the checkpoint carried.
    spec.sal.plastic_scale = 0.2;
    spec.sal.plastic_std = 1.0;
    spec
}

/// Runs `spec` whole, then again with one checkpoint after epoch `at` (so `at` > half the epochs),
/// resumes from that checkpoint, and checks that all three end alike.
fn resume_matches_uninterrupted(spec: TrialSpec, ranks: usize, at: u32) {
    assert!(2 * at > spec.epochs && at < spec.epochs, "one checkpoint, before the end");
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = finish(&spec, &options(whole_dir.path(), ranks, 0));

    // The checkpoint comes from a run of the same trial: a shorter trial would end in a last
    // epoch that withholds SAL's interventions (SAL_SPEC.md), which this one's epoch `at` applies.
    let dir = tempfile::tempdir().unwrap();
    let checkpointed = finish(&spec, &options(dir.path(), ranks, at));
    assert_eq!(timeless(&checkpointed.history), timeless(&whole.history), "checkpoints change nothing");
    let checkpoint = dir.path().join("checkpoints").join(worker::train::checkpoint::FILE_NAME);
    assert!(checkpoint.is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the checkpoint itself, no temporary file");

    let mut resumed_options = options(dir.path(), ranks, 0);
    resumed_options.resume_from = Some(checkpoint);
    let resumed = finish(&spec, &resumed_options);

    assert_eq!(timeless(&resumed.history), timeless(&whole.history));
    assert_eq!(resumed.top1, whole.top1);
    assert_eq!(resumed.top5, whole.top5);
    assert_eq!(resumed.test_loss, whole.test_loss);
    assert_eq!(resumed.confusion, whole.confusion);
    let actions: Vec<_> = whole.history.iter().map(|r| r.sal.unwrap().applied).collect();
    assert_eq!(actions[2], sal::Action::NoisePlastic, "{actions:?}");
    assert_eq!(actions[3], sal::Action::Recovered, "{actions:?}");
}

#[test]
fn resume_equals_uninterrupted_with_dropout_and_a_pending_yield_point() {
    let _serial = serial();
    let mut spec = stressed(synthetic_trial("small_cnn", "sgd", 6));
    spec.head = Head::Paper;
    // Epoch 5 deforms again (see `stressed`): the checkpoint after it holds a yield point whose
    // verdict falls at the last epoch, after the resume.
    resume_matches_uninterrupted(spec, 1, 5);
}

#[test]
fn resume_equals_uninterrupted_on_two_ranks() {
    let _serial = serial();
    resume_matches_uninterrupted(stressed(synthetic_trial("small_cnn", "sgd", 5)), 2, 3);
}

#[test]
fn a_checkpoint_of_another_trial_or_a_damaged_one_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let spec = synthetic_trial("small_cnn", "sgd", 1);
    finish(&spec, &options(dir.path(), 1, 1));
    let checkpoint = dir.path().join("checkpoints").join(worker::train::checkpoint::FILE_NAME);

    let other = TrialSpec { learning_rate: 0.5, ..spec.clone() };
    let mut resume = options(dir.path(), 1, 0);
    resume.resume_from = Some(checkpoint.clone());
    let error = Engine::default().run(&other, &resume, &mut |_| {}).err().unwrap();
    assert!(matches!(error, WorkerError::Checkpoint { .. }), "{error}");
    assert!(error.to_string().contains("another trial"), "{error}");

    let longer = TrialSpec { epochs: 2, ..spec.clone() };
    let result = match Engine::default().run(&longer, &resume, &mut |_| {}).unwrap().outcome {
        TrialOutcome::Finished(result) => result,
        other => panic!("{other:?}"),
    };
    assert_eq!(result.history.len(), 2, "epochs may grow on resume");

    std::fs::write(&checkpoint, b"not a checkpoint").unwrap();
    let error = Engine::default().run(&spec, &resume, &mut |_| {}).err().unwrap();
    assert!(matches!(error, WorkerError::Checkpoint { .. }) && !error.to_string().contains('\n'), "{error}");
}
