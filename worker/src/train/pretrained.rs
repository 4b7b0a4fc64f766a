//! Converted ImageNet weights (`.safetensors` or `.ot`) for a model's trunk.
//!
//! Every tensor of the file must name a variable of the model with the same shape; the model's
//! variables the file does not hold (the new head) keep their initialisation. A file that matches
//! nothing, or holds names the model lacks, is an error that lists them.

use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::WorkerError;

pub fn load(vs: &VarStore, path: &Path) -> Result<(), WorkerError> {
    let bad = |reason: String| WorkerError::field("pretrained", format!("{}: {reason}", path.display()));
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let tensors = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path),
        Some("ot") => Tensor::load_multi(path),
        _ => return Err(bad("expected a .safetensors or .ot file".into())),
    }
    .map_err(|e| bad(e.to_string().lines().next().unwrap_or_default().to_string()))?;
    let variables = vs.variables();
    let unexpected: Vec<&str> =
        tensors.iter().map(|(name, _)| name.as_str()).filter(|name| !variables.contains_key(*name)).collect();
    if !unexpected.is_empty() {
        return Err(bad(format!("names the model does not have: {}", list(&unexpected))));
    }
    if tensors.is_empty() {
        return Err(bad("holds no tensors".into()));
    }
    let _guard = tch::no_grad_guard();
    for (name, source) in &tensors {
        let target = &variables[name];
        if target.size() != source.size() {
            return Err(bad(format!(
                "`{name}` is {:?} in the file, {:?} in the model",
                source.size(),
                target.size()
            )));
        }
        target.shallow_clone().copy_(&source.to_kind(target.kind()));
    }
    let missing: Vec<&str> =
        variables.keys().map(String::as_str).filter(|name| !tensors.iter().any(|(n, _)| n == name)).collect();
    tracing::info!(loaded = tensors.len(), initialised = missing.len(), "pretrained weights loaded");
    Ok(())
}

fn list(names: &[&str]) -> String {
    let shown: Vec<&str> = names.iter().take(12).copied().collect();
    if names.len() > shown.len() {
        format!("{} and {} more", shown.join(", "), names.len() - shown.len())
    } else {
        shown.join(", ")
    }
}
