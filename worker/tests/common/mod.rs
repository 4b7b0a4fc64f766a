//! Helpers shared by the worker's integration tests: tiny datasets written as real files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use worker::{CancelFlag, DatasetSpec, Devices, Head, Method, RunOptions, TrialSpec};

/// libtorch's thread settings and generators are process-wide: tests that compare runs bit for
/// bit hold this while they train, so that no two train at once in one test binary (in
/// production each trial has a process of its own).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Options of an engine run on `ranks` CPU ranks in `dir`, checkpointing every `every` epochs
/// (0: never).
pub fn cpu_options(dir: &Path, ranks: usize, every: u32) -> RunOptions {
    RunOptions {
        devices: Devices::Cpu { ranks },
        cache_dir: dir.join("cache"),
        checkpoint_dir: dir.join("checkpoints"),
        resume_from: None,
        checkpoint_every: every,
        cancel: CancelFlag::default(),
    }
}

/// A distinct colour per class, so decoded pixels tell which file they came from.
pub fn class_colour(label: usize) -> [u8; 3] {
    [(40 * label as u32 % 256) as u8, 200, (255 - 30 * label as u32 % 256) as u8]
}

/// Writes a solid image of `colour` at `path` (format from the extension), creating folders.
pub fn write_image(path: &Path, colour: [u8; 3], side: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(side, side, Rgb(colour)).save(path).unwrap();
}

/// `count` images per class in `dir/<class>/`, named `<prefix><i>.<ext>`.
pub fn write_class_folders(dir: &Path, classes: &[&str], count: usize, ext: &str) {
    for (label, class) in classes.iter().enumerate() {
        for i in 0..count {
            write_image(&dir.join(class).join(format!("img{i}.{ext}")), class_colour(label), 12);
        }
    }
}

/// Writes grayscale JPEG, RGBA PNG and 16-bit grayscale PNG versions of a mid-grey image.
pub fn write_odd_modes(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let gray = dir.join("gray.jpg");
    ImageBuffer::from_pixel(10, 6, Luma([128u8])).save(&gray).unwrap();
    let rgba = dir.join("rgba.png");
    ImageBuffer::from_pixel(7, 9, Rgba([10u8, 120, 240, 60])).save(&rgba).unwrap();
    let gray16 = dir.join("gray16.png");
    ImageBuffer::from_pixel(8, 8, Luma([128u16 * 257])).save(&gray16).unwrap();
    let gray_alpha = dir.join("ga.png");
    ImageBuffer::from_pixel(5, 5, LumaA([200u8, 0])).save(&gray_alpha).unwrap();
    vec![gray, rgba, gray16, gray_alpha]
}

/// A trial on the built-in synthetic data.
pub fn synthetic_trial(architecture: &str, optimizer: &str, epochs: u32) -> TrialSpec {
    let options = [("classes", 4u64), ("train_size", 96), ("val_size", 32)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    TrialSpec {
        architecture: architecture.into(),
        optimizer: optimizer.into(),
        dataset: DatasetSpec { name: "synthetic".into(), format: "synthetic".into(), root: None, options },
        resolution: 12,
        method: Method::Baseline,
        sal: Default::default(),
        epochs,
        batch_size: 16,
        learning_rate: 0.05,
        seed: 7,
        head: Head::Linear,
        pretrained: None,
        precision: Default::default(),
        channels_last: false,
        cudnn_benchmark: false,
        flatness: None,
        cpu_threads: None,
        deterministic: false,
        sam_rho: None,
        deformations: None,
    }
}

pub fn dataset(format: &str, root: &Path) -> DatasetSpec {
    DatasetSpec {
        name: format.into(),
        format: format.into(),
        root: Some(root.to_path_buf()),
        options: Default::default(),
    }
}
