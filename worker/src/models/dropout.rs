//! Dropout from a stream of the rank's own: libtorch's `dropout` draws from the process-wide
//! generator, which every rank thread of a trial shares, so the masks of two CPU ranks would
//! depend on how their threads interleave and a resumed run could not redraw them. Here each rank
//! thread draws its masks from ChaCha8 seeded by (trial seed, rank, epoch): distinct across ranks,
//! the same on every run, on every device.

use std::cell::RefCell;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

thread_local! {
    static STREAM: RefCell<Option<ChaCha8Rng>> = const { RefCell::new(None) };
}

/// Starts this thread's dropout stream for an epoch of a rank; the engine calls it on each rank's
/// thread before the epoch's first step.
pub fn seed_stream(seed: u64, rank: usize, epoch: u32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD50F_0D50_F0D5_0F0D);
    // One stream per (rank, epoch): 2^32 epochs per rank are plenty.
    rng.set_stream(((rank as u64) << 32) | u64::from(epoch));
    STREAM.with(|stream| *stream.borrow_mut() = Some(rng));
}

/// Ends this thread's stream (models used outside the engine fall back to libtorch's dropout).
pub fn clear_stream() {
    STREAM.with(|stream| *stream.borrow_mut() = None);
}

/// Inverted dropout with keep probability `1 - p`; the identity when not training.
pub fn dropout(xs: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return xs.shallow_clone();
    }
    let mask = STREAM.with(|stream| {
        let mut stream = stream.borrow_mut();
        let rng = stream.as_mut()?;
        let count = xs.numel();
        // Keep with probability 1 - p: compare 24 random bits against the threshold.
        let threshold = ((1.0 - p) * f64::from(1u32 << 24)) as u32;
        let scale = (1.0 / (1.0 - p)) as f32;
        let mut values = Vec::with_capacity(count);
        while values.len() < count {
            let word = rng.next_u64();
            for bits in [word & 0xFF_FFFF, (word >> 24) & 0xFF_FFFF] {
                if values.len() < count {
                    values.push(if (bits as u32) < threshold { scale } else { 0.0 });
                }
            }
        }
        Some(Tensor::from_slice(&values).view(xs.size().as_slice()))
    });
    match mask {
        Some(mask) => xs * mask.to_device(xs.device()).to_kind(xs.kind()),
        None => xs.dropout(p, train),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn draw(seed: u64, rank: usize, epoch: u32) -> Vec<f32> {
        seed_stream(seed, rank, epoch);
        let xs = Tensor::ones([4, 64], (Kind::Float, tch::Device::Cpu));
        let out = dropout(&xs, 0.5, true);
        clear_stream();
        Vec::<f32>::try_from(out.flatten(0, -1)).unwrap()
    }

    #[test]
    fn masks_repeat_per_rank_and_epoch_and_differ_across_them() {
        let a = draw(7, 0, 1);
        assert_eq!(a, draw(7, 0, 1), "the same stream draws the same mask");
        assert_ne!(a, draw(7, 1, 1), "another rank draws another mask");
        assert_ne!(a, draw(7, 0, 2), "another epoch draws another mask");
        assert!(a.iter().all(|&v| v == 0.0 || v == 2.0), "kept values are scaled by 1 / (1 - p)");
        let kept = a.iter().filter(|&&v| v > 0.0).count();
        assert!((64..=192).contains(&kept), "about half of 256 kept, got {kept}");
    }

    #[test]
    fn evaluation_is_the_identity() {
        seed_stream(1, 0, 1);
        let xs = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let out = dropout(&xs, 0.5, false);
        clear_stream();
        assert_eq!(Vec::<f32>::try_from(out).unwrap(), vec![1.0, 2.0, 3.0]);
    }
}
