//! What a training step does across replicas: gradients' norm, buffers' mean.

use sal::Collective;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::WorkerError;

/// The L2 norm of all buckets together, in f64 (a 0-dimensional tensor on their device).
pub(super) fn global_norm(buckets: &[Tensor]) -> Tensor {
    match buckets {
        [] => Tensor::zeros([], (Kind::Double, Device::Cpu)),
        [bucket] => bucket.norm().to_kind(Kind::Double),
        _ => {
            let norms: Vec<Tensor> = buckets.iter().map(|b| b.norm().to_kind(Kind::Double)).collect();
            Tensor::stack(&norms, 0).norm()
        }
    }
}

/// The model's floating-point variables that are not trained: batch-norm running statistics.
pub(super) fn float_buffers(vs: &VarStore, trainable: &[Tensor]) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.is_floating_point())
        .filter(|t| !trainable.iter().any(|p| p.data_ptr() == t.data_ptr()))
        .collect()
}

/// Replaces every rank's buffers by their mean over the ranks.
pub(super) fn average_buffers(buffers: &[Tensor], collective: &dyn Collective) -> Result<(), WorkerError> {
    let world = collective.world_size();
    if world == 1 || buffers.is_empty() {
        return Ok(());
    }
    collective.all_reduce_sum_many(buffers)?;
    let _guard = tch::no_grad_guard();
    for buffer in buffers {
        let _ = buffer.shallow_clone().g_div_scalar_(world as f64);
    }
    Ok(())
}
