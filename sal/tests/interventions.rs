//! The tensor side of SAL on a small real model: Equation 2's noise, Equation 3's plastic
//! deformation, batch-norm statistics left alone, and bit-identical restores.

use sal::intervene::{apply_noise, apply_plastic, intervention_rng, trainable_layers, Intervention};
use sal::{model_checksum, Action, EpochMetrics, SalController, Snapshot, StressConfig};
use tch::nn::{self, Module, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// conv1 -> bn1 -> (pool) -> fc1 -> fc2: four trainable layers, bn1 with running statistics.
struct SmallNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl SmallNet {
    fn new(vs: &VarStore) -> Self {
        let root = vs.root();
        Self {
            conv1: nn::conv2d(&root / "conv1", 3, 8, 3, Default::default()),
            bn1: nn::batch_norm2d(&root / "bn1", 8, Default::default()),
            fc1: nn::linear(&root / "fc1", 8, 400, Default::default()),
            fc2: nn::linear(&root / "fc2", 400, 250, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.conv1.forward(x);
        let x = self.bn1.forward_t(&x, train).relu();
        let x = x.mean_dim(&[2i64, 3][..], false, Kind::Float);
        self.fc2.forward(&self.fc1.forward(&x).relu())
    }
}

/// libtorch's default generator is one per process and the tests run on threads of one process:
/// whoever draws from it holds this, so that a test's draws between `manual_seed` and its last
/// initializer are its own.
static GLOBAL_GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn global_generator() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `Tensor::randn` from the default generator, never between another test's seed and its draws.
fn randn(shape: &[i64]) -> Tensor {
    let _generator = global_generator();
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn model() -> (VarStore, SmallNet) {
    let _generator = global_generator();
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let net = SmallNet::new(&vs);
    // Move the batch-norm running statistics away from their initial values.
    let _ = net.forward(&Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu)), true);
    (vs, net)
}

fn variable(vs: &VarStore, name: &str) -> Tensor {
    vs.variables()[name].detach().copy()
}

/// Standard deviation of `after - scale * before`.
fn std_of_change(after: &Tensor, before: &Tensor, scale: f64) -> f64 {
    (after - before * scale).std(true).double_value(&[])
}

#[test]
fn layers_follow_construction_order_and_group_bias_with_weight() {
    let (vs, _net) = model();
    let layers = trainable_layers(&vs);
    let paths: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["conv1", "bn1", "fc1", "fc2"]);
    let mut fc2: Vec<&str> = layers[3].parameters.iter().map(|(n, _)| n.as_str()).collect();
    fc2.sort();
    assert_eq!(fc2, ["fc2.bias", "fc2.weight"]);
}

#[test]
fn noise_has_the_requested_standard_deviation_on_every_parameter() {
    let (vs, _net) = model();
    let before: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    let mut rng = intervention_rng(1, 1, Intervention::Noise);
    apply_noise(&vs, 0.01, &mut rng);
    for (name, old) in &before {
        let new = variable(&vs, name);
        if name.contains("running_") || name.contains("num_batches") {
            assert!(new.equal(old), "{name} is a running statistic and must not move");
            continue;
        }
        assert!(!new.equal(old), "{name} received no noise");
        if old.numel() >= 10_000 {
            let std = std_of_change(&new, old, 1.0);
            assert!((std - 0.01).abs() < 0.0005, "{name}: noise std {std}, want 0.01");
        }
    }
}

#[test]
fn controller_noise_uses_alpha_times_delta_plus_lambda_stress() {
    // One stagnant epoch (accuracy 0 is no improvement) gives S = theta = 0.0075: noise, no
    // plastic. sigma = (0.0075 / 0.01) * (0.01 + 1.0 * 0.0075) = 0.013125.
    let config =
        StressConfig { theta: 0.0075, delta: 0.01, lambda: 1.0, warmup_epochs: 0, ..StressConfig::default() };
    let (vs, _net) = model();
    let before = variable(&vs, "fc2.weight");
    let mut sal = SalController::new(config, 42, 10).unwrap();
    let record = sal.end_epoch(EpochMetrics { loss: 2.0, accuracy: 0.0 }, &vs, &[]).unwrap();
    assert_eq!(record.applied, Action::Noise);
    assert!((record.noise_sigma - 0.013125).abs() < 1e-15);
    let std = std_of_change(&variable(&vs, "fc2.weight"), &before, 1.0);
    assert!((std - 0.013125).abs() < 0.0004, "measured {std}, want 0.013125");
}

#[test]
fn plastic_touches_exactly_the_last_n_layers() {
    let (vs, _net) = model();
    let before: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    let mut rng = intervention_rng(3, 5, Intervention::Plastic);
    let deformed = apply_plastic(&vs, 2, 0.9, 0.05, &mut rng).unwrap();
    assert_eq!(deformed, ["fc1", "fc2"]);
    for (name, old) in &before {
        let new = variable(&vs, name);
        if name.starts_with("fc1.") || name.starts_with("fc2.") {
            assert!(!new.equal(old), "{name} should be deformed");
        } else {
            assert!(new.equal(old), "{name} must not change");
        }
    }
    // Equation 3: w' = 0.9 w + N(0, 0.05).
    let old = &before.iter().find(|(n, _)| n == "fc2.weight").unwrap().1;
    let std = std_of_change(&variable(&vs, "fc2.weight"), old, 0.9);
    assert!((std - 0.05).abs() < 0.002, "measured {std}, want 0.05");
    let mean = (variable(&vs, "fc2.weight") - old * 0.9).mean(Kind::Float).double_value(&[]);
    assert!(mean.abs() < 0.002, "mean {mean}");
}

#[test]
fn plastic_on_more_layers_than_the_model_has_deforms_all() {
    let (vs, _net) = model();
    let mut rng = intervention_rng(3, 5, Intervention::Plastic);
    let deformed = apply_plastic(&vs, 10, 0.9, 0.02, &mut rng).unwrap();
    assert_eq!(deformed, ["conv1", "bn1", "fc1", "fc2"]);
}

#[test]
fn same_seed_same_numbers_other_epoch_other_numbers() {
    let (vs_a, _a) = model();
    let (vs_b, _b) = model();
    let (vs_c, _c) = model();
    assert_eq!(model_checksum(&vs_a), model_checksum(&vs_b));
    apply_noise(&vs_a, 0.1, &mut intervention_rng(9, 4, Intervention::Noise));
    apply_noise(&vs_b, 0.1, &mut intervention_rng(9, 4, Intervention::Noise));
    apply_noise(&vs_c, 0.1, &mut intervention_rng(9, 5, Intervention::Noise));
    assert_eq!(model_checksum(&vs_a), model_checksum(&vs_b));
    assert_ne!(model_checksum(&vs_a), model_checksum(&vs_c));
}

#[test]
fn restore_is_bit_identical_for_parameters_buffers_and_optimizer_state() {
    let (vs, net) = model();
    let moment = randn(&[17]);
    let checksum = model_checksum(&vs);
    let moment_before = moment.copy();
    let snapshot = Snapshot::capture(&vs, &[moment.shallow_clone()]);

    apply_noise(&vs, 0.5, &mut intervention_rng(1, 1, Intervention::Noise));
    apply_plastic(&vs, 3, 0.5, 0.5, &mut intervention_rng(1, 1, Intervention::Plastic)).unwrap();
    let _ = net.forward(&randn(&[4, 3, 8, 8]), true);
    let _ = moment.shallow_clone().fill_(3.0);
    assert_ne!(model_checksum(&vs), checksum);

    snapshot.restore(&vs, &[moment.shallow_clone()]).unwrap();
    assert_eq!(model_checksum(&vs), checksum);
    assert!(moment.equal(&moment_before));
}

#[test]
fn restore_refuses_a_different_model() {
    let (vs, _net) = model();
    let snapshot = Snapshot::capture(&vs, &[]);
    let other = VarStore::new(Device::Cpu);
    let _ = nn::linear(other.root() / "fc", 2, 2, Default::default());
    let err = snapshot.restore(&other, &[]).unwrap_err().to_string();
    assert!(err.contains("variables"), "{err}");
}

#[test]
fn controller_restores_the_yield_point_when_deformation_does_not_pay_off() {
    let (vs, _net) = model();
    let config = StressConfig { warmup_epochs: 0, ..StressConfig::default() };
    let mut sal = SalController::new(config, 5, 10).unwrap();
    let stagnant = EpochMetrics { loss: 1.0, accuracy: 0.5 };
    assert_eq!(sal.end_epoch(stagnant, &vs, &[]).unwrap().applied, Action::None);
    assert_eq!(sal.end_epoch(stagnant, &vs, &[]).unwrap().applied, Action::None);
    let at_yield = model_checksum(&vs);
    let record = sal.end_epoch(stagnant, &vs, &[]).unwrap();
    assert_eq!(record.applied, Action::NoisePlastic);
    assert_ne!(model_checksum(&vs), at_yield);
    let record = sal.end_epoch(EpochMetrics { loss: 1.5, accuracy: 0.4 }, &vs, &[]).unwrap();
    assert_eq!(record.applied, Action::Recovered);
    assert_eq!(model_checksum(&vs), at_yield);
    assert!(sal.yield_snapshot().is_none());
}

/// SAL_SPEC.md, "The last epoch": noise and plastic deformation are decided and recorded, but the
/// weights stay as trained.
#[test]
fn controller_leaves_the_weights_alone_at_the_last_epoch() {
    let (vs, _net) = model();
    let config = StressConfig { warmup_epochs: 0, ..StressConfig::default() };
    let mut sal = SalController::new(config, 5, 3).unwrap();
    let stagnant = EpochMetrics { loss: 1.0, accuracy: 0.5 };
    sal.end_epoch(stagnant, &vs, &[]).unwrap();
    sal.end_epoch(stagnant, &vs, &[]).unwrap();
    let trained = model_checksum(&vs);
    // Epoch 3 of 3 reaches the yield point: the same epoch deforms in a longer trial (above).
    let record = sal.end_epoch(stagnant, &vs, &[]).unwrap();
    assert_eq!((record.decided, record.applied), (Action::NoisePlastic, Action::None));
    assert_eq!(model_checksum(&vs), trained);
    assert!(sal.yield_snapshot().is_none(), "no deformation, so no yield point to keep");
}

#[test]
fn controller_applies_a_recovery_due_at_the_last_epoch() {
    let (vs, _net) = model();
    let config = StressConfig { warmup_epochs: 0, ..StressConfig::default() };
    let mut sal = SalController::new(config, 5, 4).unwrap();
    let stagnant = EpochMetrics { loss: 1.0, accuracy: 0.5 };
    sal.end_epoch(stagnant, &vs, &[]).unwrap();
    sal.end_epoch(stagnant, &vs, &[]).unwrap();
    let at_yield = model_checksum(&vs);
    assert_eq!(sal.end_epoch(stagnant, &vs, &[]).unwrap().applied, Action::NoisePlastic);
    assert_ne!(model_checksum(&vs), at_yield);
    let record = sal.end_epoch(EpochMetrics { loss: 1.5, accuracy: 0.4 }, &vs, &[]).unwrap();
    assert_eq!((record.decided, record.applied), (Action::Recovered, Action::Recovered));
    assert_eq!(model_checksum(&vs), at_yield);
}
