//! Model construction is deterministic in its seed. Alone in its own test binary: libtorch's
//! generator is process-wide, and any test running beside it (a random input, a dropout mask)
//! would draw from it between the seeding and the build.

use tch::nn::VarStore;
use tch::{Device, Tensor};
use worker::models;
use worker::Head;

fn same_values(a: &VarStore, b: &VarStore) -> bool {
    let b_vars = b.variables();
    a.variables().iter().all(|(n, t)| b_vars.get(n).is_some_and(|u| t.equal(u)))
}

/// Replicas built from the same seed start identical (the trainer relies on it), and the
/// trainable variables come in the same order every time (the optimizers' state order).
#[test]
fn same_seed_builds_the_same_model() {
    let build = |seed: i64| {
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let _m = models::build(&vs.root(), "mobilenet_v2", Head::Paper, 10).expect("known");
        vs
    };
    let (a, b, c) = (build(3), build(3), build(4));
    assert!(same_values(&a, &b), "same seed, same weights");
    assert!(!same_values(&a, &c), "another seed, other weights");
    let shapes = |vs: &VarStore| vs.trainable_variables().iter().map(Tensor::size).collect::<Vec<_>>();
    assert_eq!(shapes(&a), shapes(&b));
    let (ta, tb) = (a.trainable_variables(), b.trainable_variables());
    assert!(ta.iter().zip(&tb).all(|(x, y)| x.equal(y)), "same creation order");
}
