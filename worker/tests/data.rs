//! Datasets in every distributed layout, written as real files in temporary folders: labels,
//! splits, counts, image modes, the decode cache, and the errors bad data gives.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{class_colour, dataset, write_class_folders, write_image, write_odd_modes};
use worker::data::{self, Dataset, Format, LoadReport};
use worker::{DatasetSpec, WorkerError};

fn load(spec: &DatasetSpec, resolution: u32, cache: &Path) -> (Dataset, LoadReport) {
    data::load(spec, resolution, cache).unwrap_or_else(|e| panic!("load failed: {e}"))
}

fn load_err(spec: &DatasetSpec, resolution: u32, cache: &Path) -> String {
    match data::load(spec, resolution, cache) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn labels(split: &data::Split) -> Vec<i64> {
    Vec::<i64>::try_from(&split.labels).unwrap()
}

fn pixel(split: &data::Split, n: i64, channel: i64) -> i64 {
    split.images.int64_value(&[n, channel, 2, 2])
}

fn with_option(mut spec: DatasetSpec, key: &str, value: serde_json::Value) -> DatasetSpec {
    spec.options.insert(key.into(), value);
    spec
}

#[test]
fn image_folder_labels_counts_and_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imagenette2");
    write_class_folders(&root.join("train"), &["n01", "n02", "n03"], 4, "JPEG");
    write_class_folders(&root.join("val"), &["n01", "n02", "n03"], 2, "png");
    std::fs::write(root.join("train/n01/.DS_Store"), b"junk").unwrap();
    std::fs::write(root.join("train/n02/notes.txt"), b"not an image").unwrap();

    let (data, report) = load(&dataset("imagenette", &root), 8, &dir.path().join("cache"));
    assert_eq!(data.classes, ["n01", "n02", "n03"]);
    assert_eq!((data.train.len(), data.val.len()), (12, 6));
    assert_eq!(data.train.images.size(), [12, 3, 8, 8]);
    assert_eq!(data.train.images.kind(), tch::Kind::Uint8);
    assert_eq!(labels(&data.train), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    assert_eq!(labels(&data.val), [0, 0, 1, 1, 2, 2]);
    assert_eq!(report.decoded, 18);
    assert!(!report.cache_hit);
    // PNG is lossless: the val pixels are the class colours exactly.
    for (n, label) in labels(&data.val).iter().enumerate() {
        let colour = class_colour(*label as usize);
        for channel in 0..3 {
            assert_eq!(pixel(&data.val, n as i64, channel), i64::from(colour[channel as usize]));
        }
    }
    // JPEG is close.
    let colour = class_colour(2);
    assert!((pixel(&data.train, 11, 2) - i64::from(colour[2])).abs() <= 6);
}

#[test]
fn any_image_mode_becomes_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("modes");
    for split in ["train", "val"] {
        write_odd_modes(&root.join(split).join("odd"));
        write_class_folders(&root.join(split), &["plain"], 1, "png");
    }
    let (data, _) = load(&dataset("image_folder", &root), 4, &dir.path().join("cache"));
    // Sorted names: ga.png, gray.jpg, gray16.png, rgba.png in class `odd`.
    assert_eq!(data.train.len(), 5);
    let expected: [[i64; 3]; 4] = [[200, 200, 200], [128, 128, 128], [128, 128, 128], [10, 120, 240]];
    for (n, rgb) in expected.iter().enumerate() {
        for channel in 0..3 {
            let got = pixel(&data.train, n as i64, channel);
            assert!(
                (got - rgb[channel as usize]).abs() <= 2,
                "image {n} channel {channel}: {got} vs {rgb:?}"
            );
        }
    }
}

#[test]
fn second_load_hits_the_cache_and_a_changed_dataset_misses_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("eurosat");
    write_class_folders(&root, &["Forest", "River"], 5, "jpg");
    let cache = dir.path().join("cache");
    let spec = dataset("eurosat", &root);

    let (first, report1) = load(&spec, 8, &cache);
    let (second, report2) = load(&spec, 8, &cache);
    assert_eq!((report1.cache_hit, report1.decoded), (false, 10));
    assert_eq!((report2.cache_hit, report2.decoded), (true, 0));
    assert_eq!(report1.cache_file, report2.cache_file);
    assert!(report1.cache_file.as_ref().unwrap().is_file());
    assert!(first.train.images.equal(&second.train.images));
    assert!(first.val.labels.equal(&second.val.labels));
    assert_eq!(first.classes, second.classes);

    // Another resolution is another cache.
    let (_, other_resolution) = load(&spec, 6, &cache);
    assert!(!other_resolution.cache_hit);
    assert_ne!(other_resolution.cache_file, report1.cache_file);

    // A new file changes the key: decoded again.
    write_image(&root.join("River/img9.jpg"), [1, 2, 3], 12);
    let (changed, report3) = load(&spec, 8, &cache);
    assert_eq!((report3.cache_hit, report3.decoded), (false, 11));
    assert_eq!(changed.train.len() + changed.val.len(), 11);

    // A damaged cache file is a miss, not an error.
    std::fs::write(report3.cache_file.as_ref().unwrap(), b"SALDATA1garbage").unwrap();
    let (_, report4) = load(&spec, 8, &cache);
    assert!(!report4.cache_hit);
    let (_, report5) = load(&spec, 8, &cache);
    assert!(report5.cache_hit);
}

#[test]
fn tiny_imagenet_labels_val_from_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tiny-imagenet-200");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("wnids.txt"), "n002\nn001\n").unwrap();
    for (label, wnid) in ["n001", "n002"].iter().enumerate() {
        for i in 0..3 {
            write_image(&root.join(format!("train/{wnid}/images/{wnid}_{i}.JPEG")), class_colour(label), 12);
        }
        std::fs::write(root.join(format!("train/{wnid}/{wnid}_boxes.txt")), "boxes").unwrap();
    }
    write_image(&root.join("val/images/val_0.JPEG"), class_colour(1), 12);
    write_image(&root.join("val/images/val_1.JPEG"), class_colour(0), 12);
    write_image(&root.join("val/images/val_2.JPEG"), class_colour(1), 12);
    std::fs::write(
        root.join("val/val_annotations.txt"),
        "val_0.JPEG\tn002\t0\t0\t10\t10\nval_1.JPEG\tn001\t1\t1\t9\t9\nval_2.JPEG\tn002\t0\t0\t5\t5\n",
    )
    .unwrap();
    let spec = dataset("tiny_imagenet", &root);
    let (data, _) = load(&spec, 8, &dir.path().join("cache"));
    assert_eq!(data.classes, ["n001", "n002"]);
    assert_eq!(labels(&data.train), [0, 0, 0, 1, 1, 1]);
    assert_eq!(labels(&data.val), [1, 0, 1]);

    // A class with no val image is an error naming the class.
    std::fs::write(root.join("val/val_annotations.txt"), "val_0.JPEG\tn002\t0\t0\t1\t1\n").unwrap();
    let message = load_err(&spec, 8, &dir.path().join("cache"));
    assert!(message.contains("class `n001` is missing from val"), "{message}");
}

#[test]
fn eurosat_split_is_stratified_seeded_and_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("EuroSAT_RGB");
    write_class_folders(&root, &["AnnualCrop", "Forest", "SeaLake"], 10, "jpg");
    let spec = with_option(dataset("eurosat", &root), "val_fraction", serde_json::json!(0.3));
    let listing = data::layout::list(Format::EuroSat, &root, &spec).unwrap();
    assert_eq!((listing.train.len(), listing.val.len()), (21, 9));
    for label in 0..3 {
        assert_eq!(listing.val.iter().filter(|i| i.label == label).count(), 3);
    }
    let train: BTreeSet<_> = listing.train.iter().map(|i| i.path.clone()).collect();
    assert!(listing.val.iter().all(|i| !train.contains(&i.path)));
    // Labels follow the folders.
    assert!(listing.val.iter().all(|i| i
        .path
        .parent()
        .unwrap()
        .ends_with(&listing.classes[i.label as usize])));

    let again = data::layout::list(Format::EuroSat, &root, &spec).unwrap();
    assert_eq!(again, listing);
    let reseeded = with_option(spec.clone(), "split_seed", serde_json::json!(99));
    let other = data::layout::list(Format::EuroSat, &root, &reseeded).unwrap();
    assert_ne!(other.val, listing.val);

    let (loaded, _) = load(&spec, 8, &dir.path().join("cache"));
    assert_eq!((loaded.train.len(), loaded.val.len()), (21, 9));
}

#[test]
fn pacs_holds_out_a_domain_or_splits_all() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("PACS");
    for domain in ["art_painting", "cartoon", "photo", "sketch"] {
        write_class_folders(&root.join(domain), &["dog", "horse"], 3, "jpg");
    }
    let held = with_option(dataset("pacs", &root), "holdout_domain", serde_json::json!("sketch"));
    let listing = data::layout::list(Format::Pacs, &root, &held).unwrap();
    assert_eq!(listing.classes, ["dog", "horse"]);
    assert_eq!((listing.train.len(), listing.val.len()), (18, 6));
    assert!(listing.val.iter().all(|i| i.path.starts_with(root.join("sketch"))));
    assert!(listing.train.iter().all(|i| !i.path.starts_with(root.join("sketch"))));

    let split = data::layout::list(Format::Pacs, &root, &dataset("pacs", &root)).unwrap();
    // 12 per class, 20 %: round(2.4) = 2 per class in val.
    assert_eq!((split.train.len(), split.val.len()), (20, 4));

    let unknown = with_option(dataset("pacs", &root), "holdout_domain", serde_json::json!("clipart"));
    let message = load_err(&unknown, 8, &dir.path().join("cache"));
    assert!(message.contains("dataset.options.holdout_domain") && message.contains("clipart"), "{message}");
}

fn cifar_record(label: u8, value: u8) -> Vec<u8> {
    let mut record = vec![label];
    // Red plane `value`, green plane 0, blue plane 255.
    record.extend(std::iter::repeat_n(value, 1024));
    record.extend(std::iter::repeat_n(0, 1024));
    record.extend(std::iter::repeat_n(255, 1024));
    record
}

fn write_cifar(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    for batch in 1..=5u8 {
        let bytes: Vec<u8> = (0..2u8).flat_map(|i| cifar_record((batch + i) % 3, 10 * batch + i)).collect();
        std::fs::write(root.join(format!("data_batch_{batch}.bin")), bytes).unwrap();
    }
    let test: Vec<u8> = [cifar_record(2, 7), cifar_record(0, 9)].concat();
    std::fs::write(root.join("test_batch.bin"), test).unwrap();
    std::fs::write(root.join("batches.meta.txt"), "airplane\nautomobile\nbird\n\n").unwrap();
}

#[test]
fn cifar10_binary_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cifar-10-batches-bin");
    write_cifar(&root);
    let cache = dir.path().join("cache");
    let (data, report) = load(&dataset("cifar10_bin", &root), 32, &cache);
    assert_eq!(data.classes, ["airplane", "automobile", "bird"]);
    assert_eq!(report.decoded, 12);
    assert_eq!(labels(&data.train), [1, 2, 2, 0, 0, 1, 1, 2, 2, 0]);
    assert_eq!(labels(&data.val), [2, 0]);
    assert_eq!(data.train.images.size(), [10, 3, 32, 32]);
    assert_eq!((pixel(&data.train, 3, 0), pixel(&data.train, 3, 1), pixel(&data.train, 3, 2)), (21, 0, 255));
    assert_eq!(pixel(&data.val, 1, 0), 9);

    // Resized to 16 px, solid planes stay solid.
    let (small, _) = load(&dataset("cifar10_bin", &root), 16, &cache);
    assert_eq!(small.val.images.size(), [2, 3, 16, 16]);
    assert_eq!((pixel(&small.val, 0, 0), pixel(&small.val, 0, 2)), (7, 255));

    // A truncated batch is reported by name.
    let bytes = std::fs::read(root.join("data_batch_3.bin")).unwrap();
    std::fs::write(root.join("data_batch_3.bin"), &bytes[..bytes.len() - 5]).unwrap();
    let message = load_err(&dataset("cifar10_bin", &root), 32, &cache);
    assert!(message.contains("data_batch_3.bin") && message.contains("records"), "{message}");
    std::fs::remove_file(root.join("test_batch.bin")).unwrap();
    let message = load_err(&dataset("cifar10_bin", &root), 32, &cache);
    assert!(message.contains("test_batch.bin") && message.contains("missing"), "{message}");
}

#[test]
fn corel1k_flat_numbers_and_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("corel-flat");
    for class in 0..3usize {
        for i in 0..5 {
            write_image(&flat.join(format!("{}.jpg", class * 100 + i)), class_colour(class), 12);
        }
    }
    let listing = data::layout::list(Format::Corel1k, &flat, &dataset("corel1k", &flat)).unwrap();
    assert_eq!(listing.classes, ["africans", "beaches", "buildings"]);
    assert_eq!((listing.train.len(), listing.val.len()), (12, 3));
    for item in listing.train.iter().chain(&listing.val) {
        let number: i64 = item.path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(item.label, number / 100);
    }

    let folders = dir.path().join("corel-folders");
    write_class_folders(&folders, &["beach", "bus"], 5, "jpg");
    let (data, _) = load(&dataset("corel1k", &folders), 8, &dir.path().join("cache"));
    assert_eq!(data.classes, ["beach", "bus"]);
    assert_eq!((data.train.len(), data.val.len()), (8, 2));

    write_image(&flat.join("cover.jpg"), [0, 0, 0], 4);
    let message = load_err(&dataset("corel1k", &flat), 8, &dir.path().join("cache"));
    assert!(message.contains("cover.jpg"), "{message}");
}

#[test]
fn synthetic_is_deterministic_and_balanced() {
    let spec = DatasetSpec {
        name: "synthetic".into(),
        format: "synthetic".into(),
        root: None,
        options: [
            ("classes".to_string(), serde_json::json!(3)),
            ("train_size".to_string(), serde_json::json!(30)),
        ]
        .into_iter()
        .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, report) = load(&spec, 16, dir.path());
    let (b, _) = load(&spec, 16, dir.path());
    assert_eq!(report.cache_file, None);
    assert!(a.train.images.equal(&b.train.images));
    assert_eq!(a.train.images.size(), [30, 3, 16, 16]);
    assert_eq!(a.val.len(), 500);
    assert_eq!(labels(&a.train).iter().filter(|&&l| l == 2).count(), 10);
    // Train and val are different samples.
    assert!(!a.train.images.narrow(0, 0, 3).equal(&a.val.images.narrow(0, 0, 3)));
    let reseeded = with_option(spec.clone(), "seed", serde_json::json!(1));
    let (c, _) = load(&reseeded, 16, dir.path());
    assert!(!a.train.images.equal(&c.train.images));

    // Label noise changes some training labels, never the validation labels.
    let noisy = with_option(spec.clone(), "label_noise", serde_json::json!(0.5));
    let (n, _) = load(&noisy, 16, dir.path());
    let changed = labels(&n.train).iter().zip(labels(&a.train)).filter(|(x, y)| *x != y).count();
    assert!((3..=20).contains(&changed), "{changed} of 30 labels changed");
    assert_eq!(labels(&n.val), labels(&a.val));
    assert!(n.train.images.equal(&a.train.images));
}

#[test]
fn bad_datasets_give_one_line_errors_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let check = |spec: &DatasetSpec, needles: &[&str]| {
        let message = load_err(spec, 8, &cache);
        assert!(!message.contains('\n'), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "`{needle}` not in: {message}");
        }
    };

    let missing = dir.path().join("nowhere");
    check(&dataset("imagenette", &missing), &["nowhere", "not a folder"]);

    let empty = dir.path().join("empty-class");
    write_class_folders(&empty.join("train"), &["a", "b"], 2, "jpg");
    write_class_folders(&empty.join("val"), &["a", "b"], 1, "jpg");
    std::fs::create_dir_all(empty.join("train/c")).unwrap();
    check(&dataset("imagenette", &empty), &["train/c", "empty class folder"]);

    let no_val = dir.path().join("no-val-class");
    write_class_folders(&no_val.join("train"), &["a", "b"], 2, "jpg");
    write_class_folders(&no_val.join("val"), &["a"], 1, "jpg");
    check(&dataset("imagenette", &no_val), &["class `b` is missing from val"]);

    let corrupt = dir.path().join("corrupt");
    write_class_folders(&corrupt, &["a", "b"], 3, "jpg");
    std::fs::write(corrupt.join("b/img1.jpg"), b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();
    check(&dataset("eurosat", &corrupt), &["b/img1.jpg", "cannot decode"]);

    check(&dataset("imagefolder", &corrupt), &["dataset.format", "imagefolder", "image_folder"]);
    check(
        &with_option(dataset("eurosat", &corrupt), "val_fraction", serde_json::json!(1.5)),
        &["val_fraction"],
    );
    check(
        &with_option(dataset("eurosat", &corrupt), "valfraction", serde_json::json!(0.5)),
        &["dataset.options", "valfraction"],
    );
    let no_root = DatasetSpec { root: None, ..dataset("eurosat", &corrupt) };
    check(&no_root, &["dataset.root"]);

    let error = data::load(&dataset("imagenette", &missing), 8, &cache).err().unwrap();
    assert!(matches!(error, WorkerError::Dataset { .. }));
    assert!(error.is_bad_input());
}
