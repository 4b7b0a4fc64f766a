//! Building a model: seeded and initialised under one lock, so that its weights depend on its seed alone.

use std::sync::Mutex;

use common::trial::TrialSpec;
use tch::nn::VarStore;

use super::ModelFactory;
use crate::error::WorkerError;

/// Model construction draws from libtorch's process-wide generator: seed and build under one
/// lock so that a trial's initial weights depend on its seed alone.
pub(super) static INIT: Mutex<()> = Mutex::new(());

/// Builds a model under [`INIT`] (scratch and probe models too: their draws must not fall between
/// another trial's seeding and its initialisation).
pub(super) fn build_locked(
    factory: &ModelFactory,
    vs: &VarStore,
    spec: &TrialSpec,
    classes: i64,
    seed: Option<u64>,
) -> Result<crate::models::Model, WorkerError> {
    let _lock = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(seed) = seed {
        tch::manual_seed(seed as i64);
    }
    factory(&vs.root(), spec, classes)
}
