//! An epoch's batches: the order of the samples, the global batches and each rank's shard.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// The shard of the global batch `[start, start + len)` that `rank` of `world` trains on.
pub(super) fn shard(start: i64, len: i64, rank: usize, world: usize) -> (i64, i64) {
    let (rank, world) = (rank as i64, world as i64);
    let lo = len * rank / world;
    let hi = len * (rank + 1) / world;
    (start + lo, hi - lo)
}

/// The global batches of an epoch as `(offset, length)` into the permutation. A last partial
/// batch is kept when every rank gets at least 2 of its samples (batch norm needs 2).
pub(super) fn plan_batches(samples: i64, batch: i64, world: usize) -> Vec<(i64, i64)> {
    let mut batches: Vec<(i64, i64)> = (0..samples / batch).map(|b| (b * batch, batch)).collect();
    let rest = samples % batch;
    if rest >= 2 * world as i64 {
        batches.push((samples - rest, rest));
    }
    batches
}

/// The epoch's order of the training samples, the same on every rank.
pub(super) fn permutation(samples: i64, seed: u64, epoch: u32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(epoch));
    let mut order: Vec<i64> = (0..samples).collect();
    order.shuffle(&mut rng);
    Tensor::from_slice(&order)
}

/// libtorch's generator (dropout) is seeded per epoch, so a resumed run draws what an
/// uninterrupted one would have.
pub(super) fn epoch_seed(seed: u64, epoch: u32) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(epoch)) as i64
}
