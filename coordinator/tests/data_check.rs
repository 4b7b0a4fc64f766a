//! The data check at start: a sweep whose data root is broken is refused before any trial is
//! leased, naming each problem; a coordinator that does not see a root checks the others.

use std::path::Path;
use std::process::Command;

use coordinator::sweep::data_check::check_sweep_data;
use coordinator::sweep::spec::{self, LoadOptions};

fn jpeg(seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([seed, x as u8 * 16, y as u8 * 16]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image).write_to(&mut bytes, image::ImageFormat::Jpeg).unwrap();
    bytes.into_inner()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// EuroSAT's layout (a folder per class) with `River_4.jpg` not an image at all.
fn eurosat_with_a_corrupt_image(root: &Path) {
    for class in ["Forest", "River"] {
        for i in 1..=3 {
            write(&root.join(format!("EuroSAT_RGB/{class}/{class}_{i}.jpg")), &jpeg(i));
        }
    }
    write(&root.join("EuroSAT_RGB/River/River_4.jpg"), b"\xff\xd8 not a JPEG");
}

const SWEEP: &str = "\
name: data
epochs: 1
batch_size: 4
learning_rate: 0.01
seeds: [1]
methods: [baseline]
architectures: [small_cnn]
optimizers: [sgd]
resolutions: [32]
datasets:
  eurosat_rgb: {format: eurosat, root: EuroSAT_RGB}
";

fn coordinator(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_coordinator")).args(args).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_local_run_on_a_root_with_a_corrupt_image_is_refused_before_any_trial() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    eurosat_with_a_corrupt_image(&root);
    let sweep = dir.path().join("sweep.yaml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let state = dir.path().join("state");
    let (sweep, root_arg, state_arg) =
        (sweep.to_str().unwrap(), root.to_str().unwrap(), state.to_str().unwrap());

    let (code, stderr) =
        coordinator(&["--sweep", sweep, "--data-root", root_arg, "--state-dir", state_arg, "--local"]);
    assert_eq!(code, Some(2), "{stderr}");
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: data: ")).collect();
    assert_eq!(problems.len(), 1, "{stderr}");
    assert!(
        problems[0].starts_with("error: data: eurosat_rgb: ")
            && problems[0].contains(&root.join("EuroSAT_RGB/River/River_4.jpg").display().to_string())
            && problems[0].contains("unreadable"),
        "{stderr}"
    );
    assert!(stderr.contains("sal-data check --sweep"), "the remedy is named: {stderr}");
    // Refused before anything ran: not even the state dir was made.
    assert!(!state.exists(), "{stderr}");

    // A dry run answers at once, without reading the data; asked to, it checks too.
    let (code, stderr) = coordinator(&["--sweep", sweep, "--data-root", root_arg, "--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) =
        coordinator(&["--sweep", sweep, "--data-root", root_arg, "--dry-run", "--check-data"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("River_4.jpg"), "{stderr}");

    // Mended, the same dry run passes the check.
    std::fs::remove_file(root.join("EuroSAT_RGB/River/River_4.jpg")).unwrap();
    let (code, stderr) =
        coordinator(&["--sweep", sweep, "--data-root", root_arg, "--dry-run", "--check-data"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_coordinator_that_does_not_see_a_root_checks_the_roots_it_sees() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    eurosat_with_a_corrupt_image(&root);
    let sweep = dir.path().join("sweep.yaml");
    let two_datasets = format!("{SWEEP}  pacs: {{format: pacs, root: PACS}}\n");
    std::fs::write(&sweep, two_datasets).unwrap();
    let options = LoadOptions { data_root: Some(root.clone()), ..LoadOptions::default() };
    let loaded = spec::load(&sweep, &options).unwrap();

    let found = check_sweep_data(&loaded, false);
    assert_eq!(found.not_visible, [format!("pacs ({})", root.join("PACS").display())]);
    let problems = found.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("eurosat_rgb: ") && problems[0].contains("River_4.jpg"), "{problems:?}");

    // Required (`--check-data`), the missing root is a problem of its own.
    let found = check_sweep_data(&loaded, true);
    assert!(found.not_visible.is_empty());
    assert_eq!(found.problems().len(), 2, "{:?}", found.problems());
}

#[test]
fn no_op_trials_read_no_data_and_their_roots_are_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    eurosat_with_a_corrupt_image(&root);
    let sweep = dir.path().join("sweep.yaml");
    std::fs::write(&sweep, SWEEP.replace("architectures: [small_cnn]", "architectures: [noop]")).unwrap();
    let options = LoadOptions { data_root: Some(root), check_data: true, ..LoadOptions::default() };
    let found = check_sweep_data(&spec::load(&sweep, &options).unwrap(), true);
    assert!(found.problems().is_empty() && found.checked() == 0, "{:?}", found.problems());
}
