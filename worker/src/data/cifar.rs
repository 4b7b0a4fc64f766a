//! CIFAR-10's binary version: `data_batch_1.bin` .. `data_batch_5.bin` (train), `test_batch.bin`
//! (validation) and `batches.meta.txt` (class names, one a line). A record is one label byte and
//! 3072 bytes of 32x32 red, green and blue planes.

use std::path::Path;

use common::layout::CifarFiles;

use fast_image_resize::Resizer;

use super::decode::{interleaved_to_planes, resize_rgb};
use super::HostData;
use crate::error::WorkerError;

const SIDE: u32 = 32;
const PIXELS: usize = (SIDE * SIDE) as usize;
const RECORD: usize = common::layout::CIFAR_RECORD as usize;

/// Reads every record, resized to `resolution` when it is not 32.
pub fn decode(files: &CifarFiles, resolution: u32) -> Result<HostData, WorkerError> {
    let classes = common::layout::cifar_classes(&files.meta)?;
    let mut resizer = Resizer::new();
    let (mut train_images, mut train_labels) = (Vec::new(), Vec::new());
    for path in &files.train {
        read_records(path, classes.len(), resolution, &mut resizer, &mut train_images, &mut train_labels)?;
    }
    let (mut val_images, mut val_labels) = (Vec::new(), Vec::new());
    read_records(&files.test, classes.len(), resolution, &mut resizer, &mut val_images, &mut val_labels)?;
    Ok(HostData { classes, resolution, train_images, train_labels, val_images, val_labels })
}

fn read_records(
    path: &Path,
    classes: usize,
    resolution: u32,
    resizer: &mut Resizer,
    images: &mut Vec<u8>,
    labels: &mut Vec<i64>,
) -> Result<(), WorkerError> {
    let bytes = std::fs::read(path).map_err(|e| WorkerError::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(WorkerError::dataset(
            path,
            format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records", bytes.len()),
        ));
    }
    let per_image = 3 * (resolution as usize) * (resolution as usize);
    images.reserve(bytes.len() / RECORD * per_image);
    let mut interleaved = vec![0u8; 3 * PIXELS];
    for (index, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = usize::from(record[0]);
        if label >= classes {
            return Err(WorkerError::dataset(
                path,
                format!("record {index} has label {label}, but batches.meta.txt names {classes} classes"),
            ));
        }
        labels.push(label as i64);
        let planes = &record[1..];
        if resolution == SIDE {
            images.extend_from_slice(planes);
            continue;
        }
        for i in 0..PIXELS {
            interleaved[3 * i] = planes[i];
            interleaved[3 * i + 1] = planes[PIXELS + i];
            interleaved[3 * i + 2] = planes[2 * PIXELS + i];
        }
        let resized = resize_rgb(resizer, interleaved.clone(), SIDE, SIDE, resolution)
            .map_err(|reason| WorkerError::dataset(path, format!("record {index}: {reason}")))?;
        let start = images.len();
        images.resize(start + per_image, 0);
        interleaved_to_planes(&resized, &mut images[start..]);
    }
    Ok(())
}
