//! A built-in dataset for demos and tests: deterministic from its seed, any resolution and size,
//! and learnable, so that a small model's accuracy rises well above chance within a few epochs.
//!
//! Each class has a tint and an oriented stripe pattern (angle and frequency) drawn from the seed.
//! A sample is its class's pattern at a random phase, with a random brightness shift and
//! per-pixel noise: telling classes apart takes both colour and orientation, and is never exact.

use std::f32::consts::TAU;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::HostData;
use crate::error::WorkerError;

/// `dataset.options` of the `synthetic` format (checked where sweeps are checked, too).
pub use common::dataset::SyntheticOptions as Options;

/// One class's look: a tint and a stripe pattern.
struct ClassLook {
    tint: [f32; 3],
    /// `sin` and `cos` of the stripe phase at every pixel, at phase 0.
    sin: Vec<f32>,
    cos: Vec<f32>,
}

impl ClassLook {
    fn draw(rng: &mut ChaCha8Rng, side: u32) -> Self {
        let tint = [rng.random_range(0.25..0.75), rng.random_range(0.25..0.75), rng.random_range(0.25..0.75)];
        let angle: f32 = rng.random_range(0.0..std::f32::consts::PI);
        let cycles: f32 = rng.random_range(1.0..4.0);
        let (dy, dx) = angle.sin_cos();
        let pixels = (side * side) as usize;
        let (mut sin, mut cos) = (Vec::with_capacity(pixels), Vec::with_capacity(pixels));
        for y in 0..side {
            for x in 0..side {
                let u = (x as f32 * dx + y as f32 * dy) / side as f32;
                let (s, c) = (TAU * cycles * u).sin_cos();
                sin.push(s);
                cos.push(c);
            }
        }
        Self { tint, sin, cos }
    }
}

/// Generates the dataset at `side` pixels.
pub fn generate(options: &Options, side: u32) -> Result<HostData, WorkerError> {
    options.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let looks: Vec<ClassLook> = (0..options.classes).map(|_| ClassLook::draw(&mut rng, side)).collect();
    let (train_images, mut train_labels) = samples(options, &looks, side, options.train_size, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    rng.set_stream(3);
    for label in &mut train_labels {
        if rng.random_bool(options.label_noise) {
            *label = rng.random_range(0..options.classes as i64);
        }
    }
    let (val_images, val_labels) = samples(options, &looks, side, options.val_size, 2);
    Ok(HostData {
        classes: (0..options.classes).map(|c| format!("class{c}")).collect(),
        resolution: side,
        train_images,
        train_labels,
        val_images,
        val_labels,
    })
}

fn samples(
    options: &Options,
    looks: &[ClassLook],
    side: u32,
    count: usize,
    stream: u64,
) -> (Vec<u8>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    rng.set_stream(stream);
    let pixels = (side * side) as usize;
    let mut images = vec![0u8; count * 3 * pixels];
    let mut labels = Vec::with_capacity(count);
    for (index, image) in images.chunks_mut(3 * pixels).enumerate() {
        let class = index % looks.len();
        labels.push(class as i64);
        let look = &looks[class];
        let (phase_sin, phase_cos) = rng.random_range(0.0..TAU).sin_cos();
        let brightness: f32 = rng.random_range(-0.1..0.1);
        for (channel, plane) in image.chunks_mut(pixels).enumerate() {
            // Stripes swing the channels in different directions, so orientation shows in colour.
            let swing = [0.25, -0.2, 0.15][channel];
            let base = look.tint[channel] + brightness;
            for (i, value) in plane.iter_mut().enumerate() {
                let stripe = look.sin[i] * phase_cos + look.cos[i] * phase_sin;
                let noise = options.noise * (rng.random::<f32>() - 0.5);
                let v = base + swing * stripe + noise;
                *value = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    (images, labels)
}
