//! Image files to `u8` RGB planes at the trial's resolution.
//!
//! Any mode the decoders give (grayscale, gray+alpha, RGBA, 16-bit, palette, CMYK JPEG) becomes
//! 8-bit RGB; alpha is dropped, as Keras' loader does. Images are resized to a square of the
//! trial's side with a bilinear filter that antialiases when shrinking (no crop, no aspect
//! preservation: Keras' `image_dataset_from_directory` default, which the paper used).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::Item;
use crate::error::WorkerError;

/// Images decoded by this process so far: a trial process reports it as progress, so that the
/// agent's watchdog does not take a long first decode for a hang.
static IMAGES_DECODED: AtomicU64 = AtomicU64::new(0);

pub fn images_decoded() -> u64 {
    IMAGES_DECODED.load(Ordering::Relaxed)
}

/// Decodes every item in parallel into one buffer of `[N, 3, R, R]` bytes.
pub fn decode_all(items: &[Item], resolution: u32) -> Result<Vec<u8>, WorkerError> {
    let per_image = 3 * (resolution as usize) * (resolution as usize);
    let mut out = vec![0u8; items.len() * per_image];
    if items.is_empty() {
        return Ok(out);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len());
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .zip(out.chunks_mut(chunk * per_image))
            .map(|(items, out)| {
                scope.spawn(move || -> Result<(), WorkerError> {
                    let mut resizer = Resizer::new();
                    for (item, planes) in items.iter().zip(out.chunks_mut(per_image)) {
                        decode_into(&mut resizer, &item.path, resolution, planes)?;
                        IMAGES_DECODED.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(_) => return Err(WorkerError::InvalidTrial("an image decoding thread panicked".into())),
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Decodes one file into `planes` (`3 * R * R` bytes, channel-major).
pub fn decode_into(
    resizer: &mut Resizer,
    path: &Path,
    resolution: u32,
    planes: &mut [u8],
) -> Result<(), WorkerError> {
    let image = image::ImageReader::open(path)
        .map_err(|e| WorkerError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| WorkerError::io(path, e))?
        .decode()
        .map_err(|e| {
            WorkerError::dataset(path, format!("cannot decode image: {}", one_line(&e.to_string())))
        })?;
    let rgb = image.to_rgb8();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(WorkerError::dataset(path, "image has no pixels"));
    }
    let interleaved = resize_rgb(resizer, rgb.into_raw(), width, height, resolution)
        .map_err(|reason| WorkerError::dataset(path, reason))?;
    interleaved_to_planes(&interleaved, planes);
    Ok(())
}

/// Decoder messages sometimes span lines; errors here are one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Resizes interleaved RGB bytes to `side x side`.
pub fn resize_rgb(
    resizer: &mut Resizer,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    side: u32,
) -> Result<Vec<u8>, String> {
    if width == side && height == side {
        return Ok(rgb);
    }
    let source = Image::from_vec_u8(width, height, rgb, PixelType::U8x3)
        .map_err(|e| format!("bad pixel buffer: {e}"))?;
    let mut target = Image::new(side, side, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer.resize(&source, &mut target, &options).map_err(|e| format!("cannot resize: {e}"))?;
    Ok(target.into_vec())
}

/// `HWC` to `CHW`.
pub fn interleaved_to_planes(interleaved: &[u8], planes: &mut [u8]) {
    let pixels = interleaved.len() / 3;
    let (red, rest) = planes.split_at_mut(pixels);
    let (green, blue) = rest.split_at_mut(pixels);
    for (i, pixel) in interleaved.chunks_exact(3).enumerate() {
        red[i] = pixel[0];
        green[i] = pixel[1];
        blue[i] = pixel[2];
    }
}
