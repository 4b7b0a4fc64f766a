//! SAL's ablation arms through the real training path (the engine, two CPU thread ranks,
//! generated data): SAL_SPEC.md, "Ablation arms and flatness".

mod common;

use common::{cpu_options, serial, synthetic_trial};
use sal::Action;
use worker::train::{Engine, TrainRun};
use worker::{Method, RunOptions, TrialOutcome, TrialResult, TrialSpec};

fn options(dir: &std::path::Path, ranks: usize) -> RunOptions {
    cpu_options(dir, ranks, 0)
}

fn finished(run: &TrainRun) -> &TrialResult {
    match &run.outcome {
        TrialOutcome::Finished(result) => result,
        other => panic!("expected a finished trial, got {other:?}"),
    }
}

/// `small_cnn` (batch norm, dropout-free linear head) for `epochs`, SAL tuned so that the full
/// method intervenes: no warm-up and no epoch counted as improved, so the stress climbs by theta
/// every epoch.
fn trial(method: Method, epochs: u32) -> TrialSpec {
    let mut spec = synthetic_trial("small_cnn", "adam", epochs);
    spec.learning_rate = 0.01;
    spec.method = method;
    spec.sal.warmup_epochs = 0;
    spec.sal.eps_loss = 100.0;
    spec
}

fn run(spec: &TrialSpec, ranks: usize) -> TrainRun {
    let dir = tempfile::tempdir().unwrap();
    Engine::default().check_replicas(true).run(spec, &options(dir.path(), ranks), &mut |_| {}).unwrap()
}

fn applied(result: &TrialResult) -> Vec<Action> {
    result.history.iter().map(|r| r.sal.expect("a SAL-family arm records every epoch").applied).collect()
}

fn assert_replicas_identical(run: &TrainRun) {
    for (epoch, ranks) in run.replica_checksums.iter().enumerate() {
        assert!(ranks.windows(2).all(|w| w[0] == w[1]), "replicas differ after epoch {}", epoch + 1);
    }
}

#[test]
fn stress_only_trains_bit_for_bit_as_the_baseline() {
    let _serial = serial();
    let baseline = run(&trial(Method::Baseline, 5), 2);
    let stress_only = run(&trial(Method::SalStressOnly, 5), 2);
    let full = run(&trial(Method::Sal, 5), 2);
    // The weights after every epoch, on every rank, are the baseline's.
    assert_eq!(stress_only.replica_checksums, baseline.replica_checksums);
    let (b, s) = (finished(&baseline), finished(&stress_only));
    for (x, y) in b.history.iter().zip(&s.history) {
        assert_eq!(
            (x.train_loss.to_bits(), x.val_loss.to_bits(), x.grad_norm.to_bits()),
            (y.train_loss.to_bits(), y.val_loss.to_bits(), y.grad_norm.to_bits()),
            "epoch {}",
            x.epoch
        );
    }
    assert_eq!((b.top1.to_bits(), b.test_loss.to_bits()), (s.top1.to_bits(), s.test_loss.to_bits()));
    assert_eq!(b.confusion, s.confusion);
    // Stress is computed and logged (it climbs), nothing applied.
    let stresses: Vec<f64> = s.history.iter().map(|r| r.sal.unwrap().stress).collect();
    assert!(stresses[4] > stresses[1], "{stresses:?}");
    assert!(applied(s).iter().all(|a| *a == Action::None));
    // The same settings make the full method intervene, so the comparison above could fail.
    assert!(applied(finished(&full)).contains(&Action::NoisePlastic));
    assert_ne!(full.replica_checksums, baseline.replica_checksums);
}

#[test]
fn noise_only_and_plastic_only_apply_their_part_alone() {
    let _serial = serial();
    let noise = run(&trial(Method::SalNoiseOnly, 5), 2);
    let plastic = run(&trial(Method::SalPlasticOnly, 5), 2);
    assert_replicas_identical(&noise);
    assert_replicas_identical(&plastic);
    let noise_actions = applied(finished(&noise));
    assert!(noise_actions.contains(&Action::Noise), "{noise_actions:?}");
    assert!(noise_actions.iter().all(|a| matches!(a, Action::None | Action::Noise)), "{noise_actions:?}");
    let plastic_actions = applied(finished(&plastic));
    assert!(plastic_actions.contains(&Action::Plastic), "{plastic_actions:?}");
    assert!(
        plastic_actions.iter().all(|a| matches!(a, Action::None | Action::Plastic | Action::Recovered)),
        "{plastic_actions:?}"
    );
}

/// Flatness at the end of a real trial (SAL_SPEC.md: a fixed, seeded subset, batch norm in eval
/// mode): measured once, on rank 0, with the probes asked for, and the same on a rerun.
#[test]
fn flatness_is_measured_after_the_final_epoch_and_repeats_exactly() {
    let _serial = serial();
    let mut spec = trial(Method::Baseline, 2);
    spec.flatness = Some(common_flatness(8));
    let first = run(&spec, 2);
    let again = run(&spec, 2);
    let (a, b) = (finished(&first), finished(&again));
    let flatness = a.flatness.as_ref().expect("the trial asked for flatness");
    assert_eq!(flatness.probes, 8);
    assert_eq!(flatness.images, 64, "the subset: 64 of the generated training images");
    assert!(flatness.trace_h.is_finite() && flatness.trace_h_se > 0.0, "{flatness:?}");
    assert!(flatness.lambda_max > 0.0 && flatness.lambda_residual.is_finite(), "{flatness:?}");
    assert_eq!(flatness.directions.len(), 1);
    assert_eq!(flatness.directions[0].losses.len(), 5);
    // The loss along a direction is lowest near the trained weights (alpha 0, the middle point).
    let losses = &flatness.directions[0].losses;
    assert!(losses[2] <= losses[0] && losses[2] <= losses[4], "{losses:?}");
    let again = b.flatness.as_ref().unwrap();
    assert_eq!(
        (flatness.trace_h.to_bits(), flatness.lambda_max.to_bits()),
        (again.trace_h.to_bits(), again.lambda_max.to_bits())
    );
    // Measuring changed nothing of the trained model: the final metrics are those without it.
    let plain = run(&trial(Method::Baseline, 2), 2);
    assert_eq!(finished(&plain).top1.to_bits(), a.top1.to_bits());
    assert!(finished(&plain).flatness.is_none());
}

fn common_flatness(probes: u32) -> worker::trial::FlatnessConfig {
    worker::trial::FlatnessConfig {
        probes,
        images: 64,
        iterations: 20,
        directions: 1,
        steps: 5,
        ..Default::default()
    }
}

/// SAM through the engine on two ranks: the ascent uses the all-reduced gradient, so both
/// replicas take the same steps; the trial trains, and differently from the baseline.
#[test]
fn sam_keeps_replicas_identical_and_trains_differently_from_the_baseline() {
    let _serial = serial();
    let baseline = run(&trial(Method::Baseline, 3), 2);
    let mut spec = trial(Method::Sam, 3);
    spec.sam_rho = Some(0.05);
    let sam = run(&spec, 2);
    assert_replicas_identical(&sam);
    assert_ne!(sam.replica_checksums, baseline.replica_checksums);
    let result = finished(&sam);
    assert!(result.history.iter().all(|e| e.train_loss.is_finite() && e.sal.is_none()));
    assert!(result.history[2].train_loss < result.history[0].train_loss, "{:?}", result.history);
}
