//! Checkpoints: everything a trial needs to continue as if never stopped, in one safetensors file
//! written atomically (a temporary name, then a rename over the previous checkpoint).
//!
//! Tensors: `model.<variable>` (weights and buffers), `optim.<i>` (the optimizer's state tensors),
//! and, while a plastic deformation awaits its verdict, SAL's yield point as `yield.model.<var>`
//! and `yield.optim.<i>`. A `meta` tensor holds JSON bytes: the trial, the epoch, the history, and
//! SAL's stress state. Random state needs no saving: every draw of a run (the epoch's permutation,
//! dropout, SAL's noise) is seeded from the trial seed and the epoch; dropout from the rank's own
//! stream too (`models::dropout`), so ranks and concurrent trials never share a generator.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use common::outcome::EpochReport;
use common::trial::TrialSpec;
use sal::{SalController, Snapshot, StressState};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::ModelFactory;
use crate::error::WorkerError;

const FORMAT: &str = "sal-sweep checkpoint v1";
/// The file name in the checkpoint folder; each checkpoint replaces the previous one.
pub const FILE_NAME: &str = "checkpoint.safetensors";

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    /// The trial's canonical JSON; a resume must be of the same trial (`epochs` may grow).
    trial: serde_json::Value,
    epoch: u32,
    history: Vec<EpochReport>,
    stress: Option<StressState>,
    optimizer_tensors: usize,
    has_yield_point: bool,
}

/// What a checkpoint restores besides tensors.
pub struct Restored {
    pub epoch: u32,
    pub history: Vec<EpochReport>,
}

/// Everything [`save`] writes.
pub struct State<'a> {
    pub spec: &'a TrialSpec,
    pub classes: i64,
    pub epoch: u32,
    pub history: &'a [EpochReport],
    pub vs: &'a VarStore,
    pub optimizer_state: &'a [Tensor],
    pub sal: Option<&'a SalController>,
}

/// Writes a checkpoint into `dir`, atomically; returns its path.
pub fn save(dir: &Path, state: &State<'_>, factory: &ModelFactory) -> Result<PathBuf, WorkerError> {
    std::fs::create_dir_all(dir).map_err(|e| WorkerError::io(dir, e))?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    push_model(&mut tensors, "model.", state.vs);
    push_state(&mut tensors, "optim.", state.optimizer_state);
    let yield_point = state.sal.and_then(SalController::yield_snapshot);
    if let Some(snapshot) = yield_point {
        // A snapshot's tensors are private to `sal`: restore it into a scratch model to read them.
        let (scratch, scratch_state) = scratch(state.spec, state.classes, state.optimizer_state, factory)?;
        snapshot.restore(&scratch, &scratch_state)?;
        push_model(&mut tensors, "yield.model.", &scratch);
        push_state(&mut tensors, "yield.optim.", &scratch_state);
    }
    let meta = Meta {
        format: FORMAT.into(),
        trial: serde_json::to_value(state.spec).unwrap_or_default(),
        epoch: state.epoch,
        history: state.history.to_vec(),
        stress: state.sal.map(|s| s.state().clone()),
        optimizer_tensors: state.optimizer_state.len(),
        has_yield_point: yield_point.is_some(),
    };
    let meta = serde_json::to_vec(&meta).map_err(|e| WorkerError::InvalidTrial(e.to_string()))?;
    tensors.push(("meta".into(), Tensor::from_slice(&meta)));

    let path = dir.join(FILE_NAME);
    let partial = dir.join(format!("{FILE_NAME}.partial"));
    Tensor::write_safetensors(&tensors, &partial)?;
    std::fs::rename(&partial, &path).map_err(|e| WorkerError::io(&path, e))?;
    Ok(path)
}

/// Reads a checkpoint of `spec` into the model, the optimizer's state and SAL.
pub fn load(
    path: &Path,
    spec: &TrialSpec,
    classes: i64,
    vs: &VarStore,
    optimizer_state: &[Tensor],
    sal: Option<&mut SalController>,
    factory: &ModelFactory,
) -> Result<Restored, WorkerError> {
    let bad = |reason: String| WorkerError::Checkpoint { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(bad("no such file".into()));
    }
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| bad(format!("not a readable checkpoint: {}", first_line(&e.to_string()))))?
        .into_iter()
        .collect();
    let meta = tensors.get("meta").ok_or_else(|| bad("no `meta` entry".into()))?;
    let meta: Vec<u8> = Vec::<u8>::try_from(meta).map_err(|e| bad(e.to_string()))?;
    let meta: Meta = serde_json::from_slice(&meta).map_err(|e| bad(format!("bad metadata: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!("format `{}`, expected `{FORMAT}`", meta.format)));
    }
    if without_epochs(&meta.trial) != without_epochs(&serde_json::to_value(spec).unwrap_or_default()) {
        return Err(bad("belongs to another trial (only `epochs` may differ on resume)".into()));
    }
    if meta.optimizer_tensors != optimizer_state.len() {
        return Err(bad(format!(
            "holds {} optimizer state tensors, this optimizer has {}",
            meta.optimizer_tensors,
            optimizer_state.len()
        )));
    }
    restore_model(&tensors, "model.", vs).map_err(bad)?;
    restore_state(&tensors, "optim.", optimizer_state).map_err(bad)?;
    match (sal, meta.stress) {
        (Some(controller), Some(stress)) => {
            let yield_point = if meta.has_yield_point {
                let (scratch_vs, scratch_state) = scratch(spec, classes, optimizer_state, factory)?;
                restore_model(&tensors, "yield.model.", &scratch_vs).map_err(bad)?;
                restore_state(&tensors, "yield.optim.", &scratch_state).map_err(bad)?;
                Some(Snapshot::capture(&scratch_vs, &scratch_state))
            } else {
                None
            };
            controller.resume(stress, yield_point);
        }
        (None, None) => {}
        _ => return Err(bad("SAL state does not match the trial's method".into())),
    }
    Ok(Restored { epoch: meta.epoch, history: meta.history })
}

fn without_epochs(trial: &serde_json::Value) -> serde_json::Value {
    let mut trial = trial.clone();
    if let Some(map) = trial.as_object_mut() {
        map.remove("epochs");
    }
    trial
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

/// A model of the trial's architecture on the CPU, and zeroed state tensors shaped like the
/// optimizer's, to pass a yield point through.
fn scratch(
    spec: &TrialSpec,
    classes: i64,
    optimizer_state: &[Tensor],
    factory: &ModelFactory,
) -> Result<(VarStore, Vec<Tensor>), WorkerError> {
    let vs = VarStore::new(Device::Cpu);
    let _model = super::model::build_locked(factory, &vs, spec, classes, None)?;
    let state = optimizer_state.iter().map(|t| Tensor::zeros_like(t).to_device(Device::Cpu)).collect();
    Ok((vs, state))
}

fn host(tensor: &Tensor) -> Tensor {
    tensor.detach().to_device(Device::Cpu).contiguous()
}

fn push_model(out: &mut Vec<(String, Tensor)>, prefix: &str, vs: &VarStore) {
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    for (name, tensor) in variables {
        out.push((format!("{prefix}{name}"), host(&tensor)));
    }
}

fn push_state(out: &mut Vec<(String, Tensor)>, prefix: &str, state: &[Tensor]) {
    for (i, tensor) in state.iter().enumerate() {
        out.push((format!("{prefix}{i}"), host(tensor)));
    }
}

fn restore_model(saved: &HashMap<String, Tensor>, prefix: &str, vs: &VarStore) -> Result<(), String> {
    let _guard = tch::no_grad_guard();
    let variables = vs.variables();
    let expected: usize = saved.keys().filter(|k| k.starts_with(prefix)).count();
    if expected != variables.len() {
        return Err(format!("holds {expected} `{prefix}` variables, the model has {}", variables.len()));
    }
    for (name, target) in variables {
        let key = format!("{prefix}{name}");
        let source = saved.get(&key).ok_or_else(|| format!("missing `{key}`"))?;
        copy_into(&key, &target, source)?;
    }
    Ok(())
}

fn restore_state(saved: &HashMap<String, Tensor>, prefix: &str, state: &[Tensor]) -> Result<(), String> {
    let _guard = tch::no_grad_guard();
    for (i, target) in state.iter().enumerate() {
        let key = format!("{prefix}{i}");
        let source = saved.get(&key).ok_or_else(|| format!("missing `{key}`"))?;
        copy_into(&key, target, source)?;
    }
    Ok(())
}

fn copy_into(name: &str, target: &Tensor, source: &Tensor) -> Result<(), String> {
    if target.size() != source.size() {
        return Err(format!(
            "`{name}` is {:?} in the checkpoint, {:?} in the model",
            source.size(),
            target.size()
        ));
    }
    let source =
        if source.kind() == target.kind() { source.shallow_clone() } else { source.to_kind(target.kind()) };
    target.shallow_clone().copy_(&source);
    Ok(())
}
