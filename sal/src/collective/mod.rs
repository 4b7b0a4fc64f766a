//! Collectives that keep data-parallel replicas identical.
//!
//! The training code holds a `Box<dyn Collective>` and never knows the backend:
//! - [`SingleRank`]: one replica, every operation a no-op;
//! - [`ThreadGroup`]: ranks as threads of one process on CPU (tests, local mode);
//! - `NcclRank` (feature `nccl`): one rank per CUDA device, NCCL on the default stream.
//!
//! Every backend returns the same result on every rank, bit for bit: that is what lets each rank
//! take SAL's decisions on its own and still agree with all the others.

#[cfg(feature = "nccl")]
mod nccl;
mod single;
mod threads;

#[cfg(feature = "nccl")]
pub use nccl::{nccl_unique_id, NcclRank, NcclUniqueId};
pub use single::SingleRank;
pub use threads::{ThreadGroup, ThreadRank};

use tch::{Kind, Tensor};

use crate::error::SalError;

/// Operations every rank of a data-parallel group calls in the same order.
pub trait Collective: Send {
    /// This replica's index, `0..world_size`.
    fn rank(&self) -> usize;

    /// How many replicas take part.
    fn world_size(&self) -> usize;

    /// Sums `values` element-wise over all ranks, in place.
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<(), SalError>;

    /// Sums a tensor element-wise over all ranks, in place.
    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), SalError>;

    /// Copies `root`'s tensor into every other rank's, in place.
    fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), SalError>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<(), SalError>;

    /// Sums many tensors with one collective call: they are packed into one flat buffer of the
    /// first tensor's kind and device (the usual gradient bucket), reduced, and unpacked.
    fn all_reduce_sum_many(&self, tensors: &[Tensor]) -> Result<(), SalError> {
        if self.world_size() == 1 || tensors.is_empty() {
            return Ok(());
        }
        self.all_reduce_sum_bucket(tensors).map(drop)
    }

    /// As [`Collective::all_reduce_sum_many`], and returns the summed flat bucket, packed even on
    /// one rank: a trainer computes the global gradient norm on it with one kernel.
    fn all_reduce_sum_bucket(&self, tensors: &[Tensor]) -> Result<Tensor, SalError> {
        let flat = flatten(tensors);
        if self.world_size() > 1 {
            self.all_reduce_sum(&flat)?;
            unflatten_into(&flat, tensors);
        }
        Ok(flat)
    }

    /// Copies rank `root`'s tensors into every other rank's, with one collective call.
    fn broadcast_many(&self, tensors: &[Tensor], root: usize) -> Result<(), SalError> {
        if self.world_size() == 1 || tensors.is_empty() {
            return Ok(());
        }
        let flat = flatten(tensors);
        self.broadcast(&flat, root)?;
        unflatten_into(&flat, tensors);
        Ok(())
    }
}

/// Packs tensors into one flat tensor of the first one's kind (empty for no tensors).
fn flatten(tensors: &[Tensor]) -> Tensor {
    let Some(first) = tensors.first() else {
        return Tensor::zeros([0], (Kind::Float, tch::Device::Cpu));
    };
    let kind = first.kind();
    let parts: Vec<Tensor> = tensors.iter().map(|t| t.detach().to_kind(kind).reshape([-1])).collect();
    Tensor::cat(&parts, 0)
}

fn unflatten_into(flat: &Tensor, tensors: &[Tensor]) {
    let _guard = tch::no_grad_guard();
    let mut offset = 0i64;
    for tensor in tensors {
        let numel = tensor.numel() as i64;
        let part = flat.narrow(0, offset, numel).view(tensor.size().as_slice());
        let mut target = tensor.shallow_clone();
        target.copy_(&part.to_kind(tensor.kind()));
        offset += numel;
    }
}

/// Reads a tensor (any device, any floating or integer kind) as f64 values on the host.
pub(crate) fn to_f64_vec(tensor: &Tensor) -> Result<Vec<f64>, SalError> {
    let flat = tensor.detach().to_device(tch::Device::Cpu).to_kind(Kind::Double).reshape([-1]);
    Ok(Vec::<f64>::try_from(&flat)?)
}

/// Writes host values back into a tensor of any device and kind, in place.
pub(crate) fn copy_from_f64(tensor: &Tensor, values: &[f64]) {
    let _guard = tch::no_grad_guard();
    let source = Tensor::from_slice(values)
        .to_kind(tensor.kind())
        .view(tensor.size().as_slice())
        .to_device(tensor.device());
    let mut target = tensor.shallow_clone();
    target.copy_(&source);
}
