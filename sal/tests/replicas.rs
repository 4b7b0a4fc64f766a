//! Data-parallel replicas on in-process thread ranks: the collectives' results, and the
//! invariant SAL depends on: after every epoch all ranks hold the same stress, took the same
//! decisions, and hold bit-identical parameters, although each rank saw different data.

use std::sync::mpsc;
use std::thread;

use sal::{
    model_checksum, Action, Collective, EpochRecord, EpochSums, SalController, SalError, StressConfig,
    ThreadGroup, ThreadRank,
};
use tch::nn::{self, Module, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

fn on_ranks<T: Send + 'static>(world: usize, body: fn(ThreadRank) -> T) -> Vec<T> {
    let handles: Vec<_> =
        ThreadGroup::ranks(world).into_iter().map(|rank| thread::spawn(move || body(rank))).collect();
    handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
}

#[test]
fn all_reduce_broadcast_and_barrier_agree_on_every_rank() {
    let results = on_ranks(3, |rank| {
        let r = rank.rank() as f64;
        let mut values = [r, 10.0 * r, 1.5];
        rank.all_reduce_sum_f64(&mut values).unwrap();

        let tensor = Tensor::from_slice(&[r as f32, 1.0, -r as f32]).view([3, 1]);
        rank.all_reduce_sum(&tensor).unwrap();

        let broadcast = Tensor::from_slice(&[r, r + 0.25]);
        rank.broadcast(&broadcast, 2).unwrap();
        rank.barrier().unwrap();
        (values, Vec::<f32>::try_from(tensor.view([-1])).unwrap(), Vec::<f64>::try_from(broadcast).unwrap())
    });
    for (values, tensor, broadcast) in results {
        assert_eq!(values, [3.0, 30.0, 4.5]);
        assert_eq!(tensor, [3.0, 3.0, -3.0]);
        assert_eq!(broadcast, [2.0, 2.25]);
    }
}

/// Values whose f32 sums round differently in different orders, distinct on every rank.
fn awkward_values(rank: usize, numel: i64) -> Tensor {
    let seed = Tensor::arange(numel, (Kind::Double, Device::Cpu));
    ((seed * 0.7311 + rank as f64 * 13.37).sin() * 10f64.powi(rank as i32 % 5 - 2)).to_kind(Kind::Float)
}

#[test]
fn contiguous_tensors_reduce_in_place_to_the_host_paths_bits() {
    // 1001 elements over 3 ranks: slices of unequal length. A contiguous CPU tensor is summed in
    // place, each rank a slice; a non-contiguous one (a transposed view) goes through the host
    // in f64. Both must give the same bits on every rank, and the exact f64 sum rounded to f32.
    let results = on_ranks(3, |rank| {
        let values = awkward_values(rank.rank(), 1001);
        let in_place = values.copy();
        rank.all_reduce_sum(&in_place).unwrap();
        let host = values.copy().view([7, 143]);
        let transposed = host.transpose(0, 1);
        assert!(!transposed.is_contiguous());
        rank.all_reduce_sum(&transposed).unwrap();
        let doubles = values.to_kind(Kind::Double);
        rank.all_reduce_sum(&doubles).unwrap();
        (
            Vec::<f32>::try_from(&in_place).unwrap(),
            Vec::<f32>::try_from(host.view([-1])).unwrap(),
            Vec::<f64>::try_from(&doubles).unwrap(),
        )
    });
    let expected: Vec<f32> = {
        let parts: Vec<Vec<f32>> =
            (0..3).map(|r| Vec::<f32>::try_from(awkward_values(r, 1001)).unwrap()).collect();
        (0..1001).map(|i| parts.iter().fold(0.0f64, |acc, p| acc + f64::from(p[i])) as f32).collect()
    };
    for (in_place, host, doubles) in &results {
        assert_eq!(in_place, &expected);
        assert_eq!(host, &expected);
        assert_eq!(doubles, &results[0].2, "f64 tensors agree on every rank too");
    }
}

/// Finite f32 values of every magnitude and sign, subnormals and zeros among them, from a fixed
/// xorshift stream per rank: pairs whose sums round up, down, to even, overflow and cancel.
fn any_finite_values(rank: usize, numel: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (rank as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut values = Vec::with_capacity(numel);
    while values.len() < numel {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bits = state as u32;
        // Every 16th a value near 1 so that close pairs meet; -0 and +0 now and then.
        let value = match state >> 60 {
            0 => f32::from_bits(bits & 0x8000_0000),
            1 => 1.0 + (bits >> 9) as f32 * f32::EPSILON,
            _ => f32::from_bits(bits),
        };
        if value.is_finite() {
            values.push(value);
        }
    }
    // Pairs the stream may miss: an overflow, two negative zeros, a subnormal sum, a tie.
    let fixed: [[f32; 2]; 4] = [
        [f32::MAX, f32::MAX],
        [-0.0, -0.0],
        [f32::from_bits(1), f32::from_bits(1)],
        [1.0, f32::EPSILON / 2.0],
    ];
    for (value, pair) in values.iter_mut().zip(fixed) {
        *value = pair[rank % 2];
    }
    values
}

#[test]
fn two_ranks_sum_in_f32_to_the_bits_of_the_f64_sum() {
    // Two ranks take a path of their own (f32 in place, no f64 buffer): its bits must be those
    // of the exact sum rounded to f32, the general path's, for every kind of pair (but the sign
    // of a zero made of two negative zeros, which no arithmetic after it can tell apart).
    const N: usize = 200_003;
    let results = on_ranks(2, |rank| {
        let values = Tensor::from_slice(&any_finite_values(rank.rank(), N));
        rank.all_reduce_sum(&values).unwrap();
        Vec::<f32>::try_from(&values).unwrap()
    });
    let (a, b) = (any_finite_values(0, N), any_finite_values(1, N));
    let mut zeros = 0;
    for i in 0..N {
        let exact = (f64::from(a[i]) + f64::from(b[i])) as f32;
        for sums in &results {
            if exact == 0.0 {
                zeros += 1;
                assert_eq!(sums[i], 0.0, "element {i}: {} + {}", a[i], b[i]);
            } else {
                assert_eq!(sums[i].to_bits(), exact.to_bits(), "element {i}: {} + {}", a[i], b[i]);
            }
        }
    }
    assert!(zeros > 0, "the stream holds zero sums");
    assert!(results[0][0].is_infinite() && results[0][3] == 1.0, "{:?}", &results[0][..4]);
}

#[test]
fn many_tensors_reduce_in_one_call_and_keep_their_shapes() {
    let results = on_ranks(2, |rank| {
        let r = rank.rank() as f32 + 1.0;
        let a = Tensor::full([2, 3], f64::from(r), (Kind::Float, Device::Cpu));
        let b = Tensor::full([4], f64::from(10.0 * r), (Kind::Float, Device::Cpu));
        rank.all_reduce_sum_many(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        // The bucket form sums again (each element of `a` is 3 on both ranks, then 6) and returns the packed sums.
        let bucket = rank.all_reduce_sum_bucket(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        (
            a.size(),
            a.sum(Kind::Float).double_value(&[]),
            b.sum(Kind::Float).double_value(&[]),
            Vec::<f32>::try_from(bucket).unwrap(),
        )
    });
    for (shape, a_sum, b_sum, bucket) in results {
        assert_eq!(shape, [2, 3]);
        assert_eq!(a_sum, 6.0 * 6.0);
        assert_eq!(b_sum, 4.0 * 60.0);
        assert_eq!(bucket, [[6.0; 6].as_slice(), [60.0; 4].as_slice()].concat());
    }
}

#[test]
fn a_departed_rank_aborts_the_group_instead_of_hanging() {
    let mut ranks = ThreadGroup::ranks(2);
    let survivor = ranks.pop().unwrap();
    drop(ranks);
    assert!(matches!(survivor.barrier(), Err(SalError::Aborted)));
}

#[test]
fn a_rank_that_panics_releases_its_peers() {
    let mut ranks = ThreadGroup::ranks(2);
    let waiting = ranks.pop().unwrap();
    let failing = ranks.pop().unwrap();
    let waiter = thread::spawn(move || waiting.barrier());
    let crasher = thread::spawn(move || {
        let _rank = failing;
        panic!("simulated failure inside a training step");
    });
    assert!(crasher.join().is_err());
    assert!(matches!(waiter.join().unwrap(), Err(SalError::Aborted)));
}

/// What each rank reports after each epoch.
#[derive(Debug, Clone, PartialEq)]
struct EpochState {
    record: EpochRecord,
    checksum: u64,
}

const EPOCHS: u32 = 8;
const FEATURES: i64 = 6;
const CLASSES: i64 = 3;

/// A rank's own data: different on every rank.
fn rank_data(rank: usize) -> (Tensor, Tensor) {
    let n = 48i64;
    let values: Vec<f32> = (0..n * FEATURES)
        .map(|i| (((i as usize * 7919 + rank * 104_729) % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let x = Tensor::from_slice(&values).view([n, FEATURES]);
    let labels: Vec<i64> = (0..n).map(|i| (i + rank as i64) % CLASSES).collect();
    (x, Tensor::from_slice(&labels))
}

/// Trains a replica for EPOCHS epochs; `synchronize` false skips the gradient all-reduce.
fn train_replica(rank: ThreadRank, synchronize: bool, out: mpsc::Sender<(usize, u32, EpochState)>) {
    let me = rank.rank();
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let model = nn::seq()
        .add(nn::linear(&root / "fc1", FEATURES, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(&root / "fc2", 16, CLASSES, Default::default()));
    // Every rank starts from rank 0's initialization, as data-parallel training does.
    let mut names: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let ordered: Vec<Tensor> = names.into_iter().map(|(_, t)| t).collect();
    tch::no_grad(|| rank.broadcast_many(&ordered, 0)).unwrap();

    let mut optimizer = nn::Sgd::default().build(&vs, 0.05).unwrap();
    // eps_loss far above any change: every epoch is stagnant, so noise and plastic deformations
    // happen within a few epochs; a deformation that replaces the last layers by N(0, 1) noise
    // does not pay off, so recoveries happen too.
    let config = StressConfig {
        warmup_epochs: 0,
        eps_loss: 1e9,
        plastic_scale: 0.0,
        plastic_std: 1.0,
        ..StressConfig::default()
    };
    let mut sal = SalController::new(config, 1234, EPOCHS).unwrap();
    let (x, y) = rank_data(me);
    let world = rank.world_size() as f64;

    for _ in 0..EPOCHS {
        let mut sums = EpochSums::default();
        for step in 0..4 {
            let xb = x.narrow(0, step * 12, 12);
            let yb = y.narrow(0, step * 12, 12);
            optimizer.zero_grad();
            let logits = model.forward(&xb);
            let loss = logits.cross_entropy_for_logits(&yb);
            loss.backward();
            if synchronize {
                let grads: Vec<Tensor> = vs.trainable_variables().iter().map(|p| p.grad()).collect();
                rank.all_reduce_sum_many(&grads).unwrap();
                for g in &grads {
                    let _ = g.shallow_clone().g_div_scalar_(world);
                }
            }
            optimizer.step();
            sums.loss_sum += loss.double_value(&[]) * 12.0;
            sums.correct += logits.argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64).double_value(&[]);
            sums.samples += 12.0;
        }
        let metrics = if synchronize {
            sums.global_metrics(&rank).unwrap()
        } else {
            sums.global_metrics(&sal::SingleRank).unwrap()
        };
        let record = sal.end_epoch(metrics, &vs, &[]).unwrap();
        out.send((me, record.epoch, EpochState { record, checksum: model_checksum(&vs) })).unwrap();
    }
    rank.barrier().ok();
}

fn run_replicas(world: usize, synchronize: bool) -> Vec<Vec<EpochState>> {
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = ThreadGroup::ranks(world)
        .into_iter()
        .map(|rank| {
            let tx = tx.clone();
            thread::spawn(move || train_replica(rank, synchronize, tx))
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().expect("replica panicked");
    }
    let mut per_rank = vec![vec![None; EPOCHS as usize]; world];
    for (rank, epoch, state) in rx {
        per_rank[rank][epoch as usize - 1] = Some(state);
    }
    per_rank
        .into_iter()
        .map(|epochs| epochs.into_iter().map(|s| s.expect("missing epoch")).collect())
        .collect()
}

#[test]
fn replicas_stay_bit_identical_through_noise_plastic_and_recovery() {
    for world in [2, 3, 4] {
        let ranks = run_replicas(world, true);
        for (rank, epochs) in ranks.iter().enumerate().skip(1) {
            for (epoch, state) in epochs.iter().enumerate() {
                assert_eq!(state, &ranks[0][epoch], "world {world}, rank {rank}, epoch {}", epoch + 1);
            }
        }
        let actions: Vec<Action> = ranks[0].iter().map(|s| s.record.applied).collect();
        assert!(actions.contains(&Action::NoisePlastic), "world {world}: {actions:?}");
        assert!(actions.contains(&Action::Recovered), "world {world}: {actions:?}");
    }
}

#[test]
fn without_the_all_reduce_replicas_drift_apart() {
    // The negative control of the test above: the checksum comparison can fail.
    let ranks = run_replicas(2, false);
    assert_ne!(ranks[0][0].checksum, ranks[1][0].checksum);
}
