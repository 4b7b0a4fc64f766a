//! Pretrained trunks: the published file (torchvision's `.pth`, Keras' `.h5`), verified, is
//! converted to this project's `.safetensors` names by the project's own converters, run with a
//! Python that has what they need (torch for torchvision's files, TensorFlow for Keras'), and the
//! result is checked against the strict loader's manifest before it takes its name.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::catalogue::{Converter, Entry};
use crate::error::DataError;
use crate::publish::{self, Marker};

/// The converters and the Pythons that run them.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Runs `convert_torchvision_weights.py` (needs torch).
    pub python: PathBuf,
    /// Runs `convert_keras_resnet50v2.py` (needs TensorFlow with Keras 3).
    pub keras_python: PathBuf,
    /// The folder holding both scripts.
    pub scripts: PathBuf,
}

impl Tools {
    /// Defaults: `$SAL_PYTHON`, else this checkout's `.venv/bin/python` (what `scripts/setup.sh`
    /// makes), else `python3`; `.tf-venv/bin/python` (what `scripts/check_keras_resnet50v2.sh`
    /// makes) for Keras; the checkout's `scripts/`.
    pub fn discover() -> Tools {
        let checkout =
            Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default();
        let pick = |env: &str, venv: &str| {
            std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
                let python = checkout.join(venv).join("bin").join("python");
                if python.exists() {
                    python
                } else {
                    PathBuf::from("python3")
                }
            })
        };
        let scripts =
            std::env::var_os("SAL_SCRIPTS").map(PathBuf::from).unwrap_or_else(|| checkout.join("scripts"));
        Tools {
            python: pick("SAL_PYTHON", ".venv"),
            keras_python: pick("SAL_KERAS_PYTHON", ".tf-venv"),
            scripts,
        }
    }
}

/// Converts `source` for `entry`'s architecture, checks it, publishes it at `target`.
pub fn convert_and_publish(
    entry: &Entry,
    source: &Path,
    target: &Path,
    marker: &Marker,
    tools: &Tools,
) -> Result<(), DataError> {
    let architecture = entry.architecture.as_deref().unwrap_or_default();
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    // Ends in `.safetensors` (the converters insist), hidden until it is checked.
    let partial = parent.join(format!(".{architecture}.partial.safetensors"));
    let _ = std::fs::remove_file(&partial);
    let mut command = match entry.converter {
        Some(Converter::Keras) => {
            let mut c = Command::new(&tools.keras_python);
            c.arg(tools.scripts.join("convert_keras_resnet50v2.py")).arg(source).arg(&partial);
            c
        }
        _ => {
            let mut c = Command::new(&tools.python);
            c.arg(tools.scripts.join("convert_torchvision_weights.py"))
                .arg(architecture)
                .arg(&partial)
                .arg("--from")
                .arg(source);
            c
        }
    };
    eprintln!("{}: converting with {:?}", entry.name, command);
    let output = command.output().map_err(|e| {
        DataError::entry(
            &entry.name,
            format!(
                "cannot run {} ({e}); set --python / --keras-python",
                command.get_program().to_string_lossy()
            ),
        )
    })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(DataError::entry(
            &entry.name,
            format!("the converter failed ({}): {last}", output.status),
        ));
    }
    if let Err(error) = common::weights_manifest::check_file(architecture, &partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(DataError::entry(&entry.name, format!("the converted file {}", error.reason)));
    }
    marker.write(&publish::file_marker(target))?;
    publish::publish(&partial, target, true)?;
    eprintln!("{}: {} fits the {architecture} trunk's manifest", entry.name, target.display());
    Ok(())
}
