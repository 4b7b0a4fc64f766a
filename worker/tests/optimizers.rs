//! The optimizers against `fixtures/optimizers.json`, written by `scripts/gen_optimizer_fixtures.py`
//! (an element-by-element Python implementation of Keras 3's update rules).
//!
//! The fixture's gradients include a tiny one (1e-8, below epsilon) on purpose: there, Keras'
//! Adam (epsilon added to the raw root, bias correction folded into the learning rate) and
//! PyTorch's (epsilon added to the bias-corrected root) move the parameter by 3.2e-5 and 9.1e-4 at the
//! first step (`fixtures/optimizers.json`, parameter 0, element 1); RMSprop with epsilon outside the
//! root instead of inside moves it by 9.7e-4 instead of 3.2e-7.
//! `variants_are_told_apart` proves that each such mistake lands far outside the tolerance.

use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use worker::optim::{
    self, Adam, AdamConfig, Adamax, Nadam, Optimizer, RmsProp, RmsPropConfig, Sgd, SgdConfig, OPTIMIZERS,
};

/// Per step, per parameter, the flattened values.
type Trajectory = Vec<Vec<Vec<f64>>>;

struct Fixture {
    learning_rate: f64,
    shapes: Vec<Vec<i64>>,
    initial: Vec<Vec<f64>>,
    gradients: Trajectory,
    optimizers: serde_json::Map<String, Value>,
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).expect("fixture field")
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/optimizers.json");
    let text = std::fs::read_to_string(path).expect("the committed fixture");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    Fixture {
        learning_rate: json["learning_rate"].as_f64().expect("learning_rate"),
        shapes: parse(&json["shapes"]),
        initial: parse(&json["initial"]),
        gradients: parse(&json["gradients"]),
        optimizers: json["optimizers"].as_object().expect("optimizers").clone(),
    }
}

impl Fixture {
    fn parameters(&self, kind: Kind) -> Vec<Tensor> {
        self.initial
            .iter()
            .zip(&self.shapes)
            .map(|(values, shape)| {
                Tensor::from_slice(values).reshape(shape.as_slice()).to_kind(kind).set_requires_grad(true)
            })
            .collect()
    }

    fn trajectory(&self, name: &str) -> Trajectory {
        serde_json::from_value(self.optimizers[name]["trajectory"].clone()).expect("trajectory")
    }

    /// Runs `steps` of the fixture's gradients, starting at step `from`, through the real
    /// autograd path: the loss `sum(p * G)` has gradient `G`.
    fn run(
        &self,
        optimizer: &mut dyn Optimizer,
        parameters: &[Tensor],
        from: usize,
        steps: usize,
    ) -> Trajectory {
        (from..from + steps)
            .map(|s| {
                optimizer.zero_grad();
                let loss = parameters
                    .iter()
                    .zip(&self.gradients[s])
                    .map(|(p, g)| {
                        (p * Tensor::from_slice(g).reshape(p.size()).to_kind(p.kind())).sum(Kind::Double)
                    })
                    .fold(Tensor::zeros([], (Kind::Double, Device::Cpu)), |a, b| a + b);
                loss.backward();
                optimizer.step();
                parameters.iter().map(values).collect()
            })
            .collect()
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("values")
}

/// The optimizer a fixture case describes, with Keras' defaults except what `config` sets.
fn make(name: &str, config: &Value, parameters: Vec<Tensor>, learning_rate: f64) -> Box<dyn Optimizer> {
    let momentum = config.get("momentum").and_then(Value::as_f64).unwrap_or(0.0);
    let nesterov = config.get("nesterov").and_then(Value::as_bool).unwrap_or(false);
    match name {
        "adam" => Box::new(Adam::new(parameters, learning_rate, AdamConfig::default())),
        "adamax" => Box::new(Adamax::new(parameters, learning_rate, AdamConfig::default())),
        "nadam" => Box::new(Nadam::new(parameters, learning_rate, AdamConfig::default())),
        "rmsprop" | "rmsprop_momentum" => Box::new(RmsProp::new(
            parameters,
            learning_rate,
            RmsPropConfig { momentum, ..Default::default() },
        )),
        "sgd" | "sgd_momentum" | "sgd_nesterov" => {
            Box::new(Sgd::new(parameters, learning_rate, SgdConfig { momentum, nesterov }))
        }
        other => panic!("fixture case `{other}` has no optimizer here"),
    }
}

/// The largest error, per element relative to the farthest that element moves from its start
/// over the trajectory (not step by step: a parameter that comes back to its start would make
/// rounding look like an error). The 1e-9 floor keeps f64 rounding of an O(1) parameter that
/// moves by only 1e-9 (SGD on the 1e-8 gradient) from counting as an error.
fn relative_error(got: &Trajectory, expected: &Trajectory, initial: &[Vec<f64>]) -> f64 {
    let mut worst: f64 = 0.0;
    for (p, start) in initial.iter().enumerate() {
        for (i, s) in start.iter().enumerate() {
            let reach = expected.iter().map(|step| (step[p][i] - s).abs()).fold(0.0, f64::max);
            for (got_step, expected_step) in got.iter().zip(expected) {
                worst = worst.max((got_step[p][i] - expected_step[p][i]).abs() / (reach + 1e-9));
            }
        }
    }
    worst
}

/// Relative to the displacement, in f64: agreement far below 1e-6 is expected (only the order
/// of floating-point operations differs).
const TOLERANCE: f64 = 1e-7;

#[test]
fn every_case_matches_keras_in_double_precision() {
    let fixture = fixture();
    assert!(fixture.optimizers.len() >= 8, "the fixture covers every optimizer");
    for (name, case) in &fixture.optimizers {
        let parameters = fixture.parameters(Kind::Double);
        let mut optimizer = make(
            name,
            &case["config"],
            parameters.iter().map(Tensor::shallow_clone).collect(),
            fixture.learning_rate,
        );
        let got = fixture.run(optimizer.as_mut(), &parameters, 0, fixture.gradients.len());
        let error = relative_error(&got, &fixture.trajectory(name), &fixture.initial);
        assert!(error < TOLERANCE, "{name}: relative error {error:e} against the Keras fixture");
    }
}

#[test]
fn variants_are_told_apart() {
    let fixture = fixture();
    let mut checked = 0;
    for (name, case) in &fixture.optimizers {
        for (variant, trajectory) in case["variants"].as_object().expect("variants") {
            let variant_trajectory: Trajectory = serde_json::from_value(trajectory.clone()).expect("variant");
            let distance = relative_error(&variant_trajectory, &fixture.trajectory(name), &fixture.initial);
            assert!(
                distance > 1e4 * TOLERANCE,
                "{name}/{variant} is only {distance:e} from Keras: the fixture cannot tell"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "adam (2), adamax, nadam (2), rmsprop variants");
}

#[test]
fn registry_builds_keras_defaults_in_single_precision() {
    let fixture = fixture();
    for &name in OPTIMIZERS {
        let vs = VarStore::new(Device::Cpu);
        let parameters: Vec<Tensor> = fixture
            .parameters(Kind::Float)
            .iter()
            .enumerate()
            .map(|(i, p)| vs.root().var_copy(&format!("p{i}"), &p.detach()))
            .collect();
        let mut optimizer = optim::build(name, &vs, fixture.learning_rate).expect("known optimizer");
        let got = fixture.run(optimizer.as_mut(), &parameters, 0, fixture.gradients.len());
        let expected = fixture.trajectory(name);
        for (got_step, expected_step) in got.iter().zip(&expected) {
            for (g, e) in got_step.iter().flatten().zip(expected_step.iter().flatten()) {
                assert!((g - e).abs() < 2e-6, "{name} in f32: {g} vs Keras {e}");
            }
        }
    }
}

#[test]
fn unknown_optimizer_lists_the_known_ones() {
    let vs = VarStore::new(Device::Cpu);
    let error = optim::build("adagrad", &vs, 0.1).err().expect("unknown name").to_string();
    assert!(error.contains("adagrad") && OPTIMIZERS.iter().all(|name| error.contains(name)), "{error}");
}

#[test]
fn state_tensors_round_trip() {
    let fixture = fixture();
    for (name, case) in &fixture.optimizers {
        let parameters = fixture.parameters(Kind::Float);
        let mut optimizer = make(
            name,
            &case["config"],
            parameters.iter().map(Tensor::shallow_clone).collect(),
            fixture.learning_rate,
        );
        fixture.run(optimizer.as_mut(), &parameters, 0, 2);
        let saved_parameters: Vec<Tensor> = parameters.iter().map(|p| p.detach().copy()).collect();
        let saved_state: Vec<Tensor> = optimizer.state_tensors().iter().map(Tensor::copy).collect();

        let first = fixture.run(optimizer.as_mut(), &parameters, 2, 3);
        restore(optimizer.as_ref(), &parameters, &saved_parameters, Some(&saved_state));
        let second = fixture.run(optimizer.as_mut(), &parameters, 2, 3);
        assert_eq!(first, second, "{name}: restored state must replay bit for bit");

        // The state is not decoration: replaying from the parameters alone (state moved on by
        // three steps) gives a different path for every stateful optimizer.
        if !optimizer.state_tensors().is_empty() && name != "sgd" && name != "rmsprop" {
            restore(optimizer.as_ref(), &parameters, &saved_parameters, None);
            let stale = fixture.run(optimizer.as_mut(), &parameters, 2, 3);
            assert_ne!(first, stale, "{name}: state tensors did not carry the state");
        }
    }
}

/// Puts back saved parameters and, when given, saved optimizer state.
fn restore(
    optimizer: &dyn Optimizer,
    parameters: &[Tensor],
    saved_parameters: &[Tensor],
    saved_state: Option<&[Tensor]>,
) {
    tch::no_grad(|| {
        for (p, saved) in parameters.iter().zip(saved_parameters) {
            p.shallow_clone().copy_(saved);
        }
        if let Some(saved_state) = saved_state {
            for (t, saved) in optimizer.state_tensors().iter().zip(saved_state) {
                t.shallow_clone().copy_(saved);
            }
        }
    })
}

#[test]
fn parameters_and_gradients_become_views_into_flat_buckets() {
    let fixture = fixture();
    let parameters = fixture.parameters(Kind::Float);
    let mut optimizer = make(
        "adam",
        &Value::Null,
        parameters.iter().map(Tensor::shallow_clone).collect(),
        fixture.learning_rate,
    );
    let buckets = optimizer.gradients();
    assert_eq!(buckets.len(), 1, "one kind on one device: one bucket");
    let total: usize = parameters.iter().map(Tensor::numel).sum();
    assert_eq!(buckets[0].numel(), total);
    // Back to back in one buffer, in order.
    for pair in parameters.windows(2) {
        assert_eq!(pair[1].data_ptr() as usize, pair[0].data_ptr() as usize + 4 * pair[0].numel());
    }
    // Backward accumulates into the bucket: after a step it holds that step's gradient.
    fixture.run(optimizer.as_mut(), &parameters, 0, 1);
    let expected: Vec<f64> = fixture.gradients[0].concat().iter().map(|&g| f64::from(g as f32)).collect();
    assert_eq!(values(&buckets[0]), expected);
    optimizer.zero_grad();
    assert_eq!(values(&buckets[0]), vec![0.0; total]);

    // Parameters of two kinds: a bucket per kind.
    let mixed = vec![
        Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true),
        Tensor::ones([2], (Kind::Double, Device::Cpu)).set_requires_grad(true),
    ];
    let optimizer = make("sgd", &Value::Null, mixed, 0.1);
    let kinds: Vec<Kind> = optimizer.gradients().iter().map(Tensor::kind).collect();
    assert_eq!(kinds, [Kind::Float, Kind::Double]);

    // A channels-last weight keeps its layout and its values; SGD moves it by -lr * g.
    let values = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 3, 2, 2]);
    let nhwc = values.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]).set_requires_grad(true);
    let strides = nhwc.stride();
    assert_ne!(strides, values.stride());
    let mut optimizer = make("sgd", &Value::Null, vec![nhwc.shallow_clone()], 0.5);
    assert_eq!(nhwc.stride(), strides);
    assert!(nhwc.allclose(&values, 0.0, 0.0, false));
    optimizer.zero_grad();
    (&nhwc * &values).sum(Kind::Float).backward();
    optimizer.step();
    assert!(nhwc.allclose(&(&values * 0.5), 0.0, 0.0, false), "w - 0.5 * w");
}
