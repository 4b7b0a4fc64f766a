//! The yield point: a deep copy of a model's parameters and buffers and of the optimizer's state,
//! restored bit for bit when a plastic deformation does not pay off.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::SalError;

/// State held outside the VarStore that must travel with the model: an optimizer's moments and
/// step counters, for example.
pub trait StateTensors {
    /// Shallow clones of every state tensor, in a stable order; writing into them writes the state.
    fn state_tensors(&self) -> Vec<Tensor>;
}

/// A deep copy of a model (every variable, trainable or not) and of extra state tensors.
pub struct Snapshot {
    variables: BTreeMap<String, Tensor>,
    extra: Vec<Tensor>,
}

impl Snapshot {
    /// Copies the model's variables and the given state, on their own devices.
    pub fn capture(vs: &VarStore, extra: &[Tensor]) -> Self {
        let _guard = tch::no_grad_guard();
        let variables = vs.variables().into_iter().map(|(name, t)| (name, t.detach().copy())).collect();
        let extra = extra.iter().map(|t| t.detach().copy()).collect();
        Self { variables, extra }
    }

    /// Writes the copy back in place, so that optimizers and modules keep their handles.
    pub fn restore(&self, vs: &VarStore, extra: &[Tensor]) -> Result<(), SalError> {
        let current = vs.variables();
        if current.len() != self.variables.len() {
            return Err(SalError::SnapshotMismatch(format!(
                "model has {} variables, snapshot {}",
                current.len(),
                self.variables.len()
            )));
        }
        if extra.len() != self.extra.len() {
            return Err(SalError::SnapshotMismatch(format!(
                "{} state tensors given, snapshot holds {}",
                extra.len(),
                self.extra.len()
            )));
        }
        let _guard = tch::no_grad_guard();
        for (name, saved) in &self.variables {
            let target = current
                .get(name)
                .ok_or_else(|| SalError::SnapshotMismatch(format!("model has no variable `{name}`")))?;
            copy_checked(name, target, saved)?;
        }
        for (index, (target, saved)) in extra.iter().zip(&self.extra).enumerate() {
            copy_checked(&format!("state tensor {index}"), target, saved)?;
        }
        Ok(())
    }
}

fn copy_checked(what: &str, target: &Tensor, saved: &Tensor) -> Result<(), SalError> {
    if target.size() != saved.size() || target.kind() != saved.kind() {
        return Err(SalError::SnapshotMismatch(format!(
            "`{what}` is {:?} {:?} in the model, {:?} {:?} in the snapshot",
            target.kind(),
            target.size(),
            saved.kind(),
            saved.size()
        )));
    }
    target.shallow_clone().copy_(saved);
    Ok(())
}

/// A 64-bit FNV-1a hash of every variable's name and bytes, in name order: equal checksums on
/// two replicas mean bit-identical models.
pub fn model_checksum(vs: &VarStore) -> u64 {
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut hash = Fnv1a::new();
    for (name, tensor) in &variables {
        hash.write(name.as_bytes());
        hash.write(&tensor_bytes(tensor));
    }
    hash.finish()
}

/// A tensor's raw bytes, read on the host.
pub fn tensor_bytes(tensor: &Tensor) -> Vec<u8> {
    let host = tensor.detach().to_device(tch::Device::Cpu).contiguous();
    let numel = host.numel();
    let mut bytes = vec![0u8; numel * host.kind().elt_size_in_bytes()];
    host.copy_data_u8(&mut bytes, numel);
    bytes
}

struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
