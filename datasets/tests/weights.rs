//! `sal-data fetch weights:ARCH`: a torchvision weights file served on loopback, verified by its
//! name's SHA-256 prefix, converted by the project's converter with the project's venv (torch),
//! checked against the trunk's manifest.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The venv `scripts/setup.sh` makes (CI runs it before the tests).
fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup.sh", python.display());
    python
}

/// A DenseNet-121 state dict as torchvision's files have it: the legacy `norm.1` names, the
/// ImageNet classifier and batch-norm counters (all skipped by the converter).
const MAKE_STATE_DICT: &str = r#"
import json, re, sys, torch
tensors = json.load(open(sys.argv[1]))["tensors"]
state = {}
for name, shape in tensors.items():
    legacy = re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", name)
    state[legacy] = torch.full(shape, 0.25)
    if name.endswith("running_mean"):
        state[legacy.replace("running_mean", "num_batches_tracked")] = torch.tensor(7)
state["classifier.weight"] = torch.zeros(1000, 1024)
state["classifier.bias"] = torch.zeros(1000)
assert any(".norm.1." in k for k in state), "legacy names"
torch.save(state, sys.argv[2])
"#;

#[test]
fn a_torchvision_file_with_legacy_densenet_names_is_verified_converted_and_fits_the_manifest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let python = venv_python();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/src/weights_manifest/manifests/densenet121.json");
    let pth = dir.path().join("state.pth");
    let made = Command::new(&python)
        .args(["-c", MAKE_STATE_DICT])
        .arg(&manifest)
        .arg(&pth)
        .output()
        .expect("python");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let bytes = std::fs::read(&pth).expect("pth");
    let prefix = &sha256(&bytes)[..8];
    let file = format!("densenet121-{prefix}.pth");
    let server = Server::start();
    let url = server.add(&format!("/models/{file}"), Served { bytes, ..Served::default() });
    let catalogue = write(
        &dir.path().join("catalogue.yaml"),
        format!(
            "- name: weights:densenet121\n  title: t\n  url: {url}\n  file: {file}\n  archive: file\n  sha256_prefix: {prefix}\n  architecture: densenet121\n  converter: torchvision\n  output: weights/densenet121.safetensors\n  licence: l\n  homepage: h\n"
        )
        .as_bytes(),
    );
    let root = dir.path().join("data");
    let args = [
        "fetch",
        "weights:densenet121",
        "--to",
        &root.display().to_string(),
        "--catalogue",
        &catalogue.display().to_string(),
        "--python",
        &python.display().to_string(),
    ];
    let out = sal_data(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("verified (sha256 prefix)"), "{}", text(&out));
    let converted = root.join("weights/densenet121.safetensors");
    common_check(&converted);
    assert!(
        !root.join(".sal-fetch/downloads").join(&file).exists(),
        "the download is removed once converted"
    );

    let again = sal_data(&args);
    assert!(text(&again).contains("weights:densenet121: already fetched and verified"), "{}", text(&again));
    assert_eq!(server.seen().len(), 1);
}

fn common_check(path: &Path) {
    ::common::weights_manifest::check_file("densenet121", path).expect("fits the densenet121 manifest");
}
