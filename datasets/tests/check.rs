//! `sal-data check` on data roots with the faults a trial would otherwise find first.

mod common;

use common::*;

#[test]
fn check_names_a_missing_class_folder_a_corrupt_image_a_missing_dataset_and_missing_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    // Imagenette with a class in train but not in val.
    for (split, class) in [("train", "n01440764"), ("train", "n02102040"), ("val", "n01440764")] {
        write(&root.join(format!("imagenette2/{split}/{class}/1.JPEG")), &jpeg(1));
        write(&root.join(format!("imagenette2/{split}/{class}/2.JPEG")), &jpeg(2));
    }
    // EuroSAT with one file that is not an image at all, named like one.
    for class in ["Forest", "River"] {
        for i in 1..=3 {
            write(&root.join(format!("EuroSAT_RGB/{class}/{class}_{i}.jpg")), &jpeg(i));
        }
    }
    write(&root.join("EuroSAT_RGB/River/River_4.jpg"), b"\xff\xd8 this is not a JPEG");
    let sweep = write(
        &dir.path().join("sweep.yaml"),
        b"name: s\narchitectures: [resnet50]\ndatasets:\n  imagenette: {format: imagenette, root: imagenette2}\n  eurosat_rgb: {format: eurosat, root: EuroSAT_RGB}\n  pacs: {format: pacs, root: PACS}\npretrained:\n  resnet50: weights/resnet50.safetensors\n  densenet201: weights/densenet201.safetensors\n",
    );
    let out = sal_data(&[
        "check",
        "--sweep",
        &sweep.display().to_string(),
        "--data-root",
        &root.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with("problem: ")).collect();
    assert_eq!(problems.len(), 4, "{stderr}");
    assert!(
        problems[0].starts_with("problem: eurosat_rgb: ") && problems[0].contains("River_4.jpg: unreadable"),
        "{stderr}"
    );
    assert_eq!(
        problems[1],
        format!(
            "problem: imagenette: {}: class `n02102040` is missing from val",
            root.join("imagenette2/val").display()
        )
    );
    assert_eq!(
        problems[2],
        format!("problem: pacs: {}: dataset root is not a folder (missing?)", root.join("PACS").display())
    );
    // Only the sweep's architectures: densenet201 is listed under pretrained but not trained.
    assert_eq!(problems[3], "problem: weights:resnet50: no such file");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(row(&table, "eurosat_rgb")[3..], ["unreadable files", "2", "5", "2", "1"], "{table}");
    assert_eq!(row(&table, "pacs")[3], "missing", "{table}");
    assert_eq!(row(&table, "imagenette")[3], "layout not recognised", "{table}");
    assert_eq!(row(&table, "resnet50")[2], "missing", "{table}");
    assert!(!table.contains("densenet201"), "{table}");
}

#[test]
fn a_truncated_image_passes_the_header_read_and_is_named_by_a_full_decode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    for i in 0..3 {
        write(&root.join(format!("corel1k/{i}.jpg")), &jpeg(i));
        write(&root.join(format!("corel1k/{}.jpg", 100 + i)), &jpeg(i));
    }
    // Cut short: its header is whole. (JPEG decoders fill a cut-off scan with grey; PNG's does not.)
    std::fs::remove_file(root.join("corel1k/101.jpg")).expect("remove");
    let whole = noisy_png(64, 9);
    write(&root.join("corel1k/101.png"), &whole[..whole.len() * 3 / 4]);
    let sweep =
        write(&dir.path().join("sweep.yaml"), b"datasets:\n  corel1k: {format: corel1k, root: corel1k}\n");
    let args = ["check", "--sweep", &sweep.display().to_string(), "--data-root", &root.display().to_string()];
    let header = sal_data(&args);
    assert!(header.status.success(), "{}", text(&header));
    assert_eq!(row(&text(&header), "corel1k")[3..], ["ok", "2", "4", "2", "0"], "{}", text(&header));
    let mut decode = args.to_vec();
    decode.push("--decode");
    let full = sal_data(&decode);
    assert_eq!(full.status.code(), Some(2), "{}", text(&full));
    assert!(
        text(&full).contains(&format!("{}: unreadable", root.join("corel1k/101.png").display())),
        "{}",
        text(&full)
    );
}
