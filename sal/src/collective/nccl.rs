//! One rank per CUDA device over NCCL (feature `nccl`).
//!
//! NCCL is loaded at run time through cudarc (`libnccl.so`; `scripts/setup.sh` links the wheel's
//! `libnccl.so.2` under that name), so this builds on machines without CUDA. Operations run on the
//! legacy default stream, which is the stream libtorch uses unless told otherwise, so they are
//! ordered after the kernels that produced the gradients without an explicit synchronization.
//!
//! A communicator is not `Send`: create each rank on the thread that drives its device, from one
//! [`NcclUniqueId`] made beforehand.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::CudaContext;
use cudarc::nccl::{result, sys};
use tch::{Device, Kind, Tensor};

use super::Collective;
use crate::error::SalError;

/// The rendezvous token every rank of one group is created from.
#[derive(Clone)]
pub struct NcclUniqueId {
    id: sys::ncclUniqueId,
    /// The communicators of the group made from this id, in this process.
    group: Arc<AbortGroup>,
}

/// The communicators of one group in this process: when a rank leaves (it returned an error, or
/// its thread panicked) every one of them is aborted (`ncclCommAbort`), so that no peer waits
/// forever in a collective for a rank that will never join it.
#[derive(Default)]
struct AbortGroup {
    /// By rank: the communicator's address while it is open.
    comms: std::sync::Mutex<std::collections::BTreeMap<usize, usize>>,
}

impl AbortGroup {
    fn join(&self, rank: usize, comm: sys::ncclComm_t) {
        self.lock().insert(rank, comm as usize);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<usize, usize>> {
        self.comms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes `rank`'s communicator and aborts every other one still open: peers blocked in a
    /// collective return with an error instead of waiting forever. Each communicator is freed
    /// exactly once, here, under the lock.
    fn leave(&self, rank: usize) {
        let mut comms = self.lock();
        let Some(own) = comms.remove(&rank) else { return };
        // SAFETY: `own` is this rank's communicator, registered at creation and removed just now,
        // so nobody else frees it.
        if let Err(e) = unsafe { result::comm_abort(own as sys::ncclComm_t) } {
            tracing::warn!(rank, error = ?e, "NCCL communicator did not close cleanly");
        }
        for (peer, comm) in std::mem::take(&mut *comms) {
            // SAFETY: as above; a peer whose communicator is aborted here finds it gone from the
            // map when it leaves, and frees nothing.
            if let Err(e) = unsafe { result::comm_abort(comm as sys::ncclComm_t) } {
                tracing::warn!(rank = peer, error = ?e, "NCCL communicator did not abort cleanly");
            }
        }
    }
}

// SAFETY: the id is 128 plain bytes, meaningful in any thread of the process.
unsafe impl Send for NcclUniqueId {}

/// Makes a fresh rendezvous token; fails if NCCL cannot be loaded.
pub fn nccl_unique_id() -> Result<NcclUniqueId, SalError> {
    ensure_loaded(0)?;
    result::get_uniqueid()
        .map(|id| NcclUniqueId { id, group: Arc::default() })
        .map_err(|e| nccl_error("unique_id", 0, e))
}

/// One rank of an NCCL group, bound to one CUDA device.
pub struct NcclRank {
    comm: sys::ncclComm_t,
    rank: usize,
    world_size: usize,
    device: usize,
    group: Arc<AbortGroup>,
    _context: Arc<CudaContext>,
}

impl NcclRank {
    /// Joins the group on this thread; blocks until all `world_size` ranks have joined.
    pub fn new(id: NcclUniqueId, rank: usize, world_size: usize, device: usize) -> Result<Self, SalError> {
        ensure_loaded(rank)?;
        // libtorch and cudarc share the device's primary context: bind it to this thread so that
        // NCCL sets its communicator up on the right device.
        let context = CudaContext::new(device).map_err(|e| SalError::Collective {
            op: "init",
            rank,
            reason: format!("cannot open CUDA device {device}: {e}"),
        })?;
        context.bind_to_thread().map_err(|e| SalError::Collective {
            op: "init",
            rank,
            reason: format!("cannot bind CUDA device {device}: {e}"),
        })?;
        let mut comm = std::mem::MaybeUninit::uninit();
        let world = i32::try_from(world_size).map_err(|_| too_large("init", rank, world_size))?;
        let me = i32::try_from(rank).map_err(|_| too_large("init", rank, rank))?;
        // SAFETY: `comm` is written by NCCL on success, and only read then.
        let comm = unsafe {
            result::comm_init_rank(comm.as_mut_ptr(), world, id.id, me)
                .map_err(|e| nccl_error("init", rank, e))?;
            comm.assume_init()
        };
        id.group.join(rank, comm);
        Ok(Self { comm, rank, world_size, device, group: id.group, _context: context })
    }

    fn check_tensor(&self, op: &'static str, tensor: &Tensor) -> Result<(), SalError> {
        if tensor.device() != Device::Cuda(self.device) {
            return Err(SalError::Collective {
                op,
                rank: self.rank,
                reason: format!("tensor is on {:?}, this rank drives cuda:{}", tensor.device(), self.device),
            });
        }
        Ok(())
    }

    fn all_reduce_contiguous(&self, tensor: &Tensor) -> Result<(), SalError> {
        let kind = data_type(tensor.kind(), self.rank)?;
        let pointer = tensor.data_ptr();
        // SAFETY: `pointer` addresses `numel` contiguous elements of `kind` on this rank's
        // device, alive for the call; the legacy default stream orders it with libtorch's work.
        unsafe {
            result::all_reduce(
                pointer as *const c_void,
                pointer,
                tensor.numel(),
                kind,
                sys::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(|e| nccl_error("all_reduce", self.rank, e))?;
        Ok(())
    }
}

impl Drop for NcclRank {
    /// A rank that leaves aborts the group's other communicators (see [`AbortGroup`]). First it
    /// waits for its own device's work: every collective it joined has then completed on every
    /// rank, so after a clean end nothing is cut short; after an error, peers waiting for this
    /// rank's next collective are released.
    fn drop(&mut self) {
        tch::Cuda::synchronize(self.device as i64);
        self.group.leave(self.rank);
    }
}

// SAFETY: an NCCL communicator may move to another thread as long as one thread at a time uses
// it; `NcclRank` is used through `&self` from the thread that owns it (it is not `Sync`).
unsafe impl Send for NcclRank {}

impl Collective for NcclRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<(), SalError> {
        let buffer = Tensor::from_slice(values).to_device(Device::Cuda(self.device));
        self.all_reduce_contiguous(&buffer)?;
        let summed = Vec::<f64>::try_from(&buffer.to_device(Device::Cpu))?;
        values.copy_from_slice(&summed);
        Ok(())
    }

    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), SalError> {
        self.check_tensor("all_reduce", tensor)?;
        if tensor.is_contiguous() {
            return self.all_reduce_contiguous(tensor);
        }
        let packed = tensor.contiguous();
        self.all_reduce_contiguous(&packed)?;
        let _guard = tch::no_grad_guard();
        tensor.shallow_clone().copy_(&packed);
        Ok(())
    }

    fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), SalError> {
        self.check_tensor("broadcast", tensor)?;
        let root_i32 = i32::try_from(root).map_err(|_| too_large("broadcast", self.rank, root))?;
        let packed = if tensor.is_contiguous() { tensor.shallow_clone() } else { tensor.contiguous() };
        let kind = data_type(packed.kind(), self.rank)?;
        let pointer = packed.data_ptr();
        // SAFETY: as in `all_reduce_contiguous`.
        unsafe {
            result::broadcast(
                pointer as *const c_void,
                pointer,
                packed.numel(),
                kind,
                root_i32,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(|e| nccl_error("broadcast", self.rank, e))?;
        if !tensor.is_contiguous() {
            let _guard = tch::no_grad_guard();
            tensor.shallow_clone().copy_(&packed);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<(), SalError> {
        let mut token = [0.0];
        self.all_reduce_sum_f64(&mut token)
    }
}

fn data_type(kind: Kind, rank: usize) -> Result<sys::ncclDataType_t, SalError> {
    use sys::ncclDataType_t as T;
    Ok(match kind {
        Kind::Float => T::ncclFloat32,
        Kind::Double => T::ncclFloat64,
        Kind::Half => T::ncclFloat16,
        Kind::BFloat16 => T::ncclBfloat16,
        Kind::Int => T::ncclInt32,
        Kind::Int64 => T::ncclInt64,
        Kind::Int8 => T::ncclInt8,
        Kind::Uint8 => T::ncclUint8,
        other => {
            return Err(SalError::Collective {
                op: "data_type",
                rank,
                reason: format!("NCCL cannot reduce tensors of kind {other:?}"),
            })
        }
    })
}

/// cudarc panics when the library is missing; check first and say what to do instead.
fn ensure_loaded(rank: usize) -> Result<(), SalError> {
    // SAFETY: only tries to open the library.
    if unsafe { sys::is_culib_present() } {
        return Ok(());
    }
    Err(SalError::Collective {
        op: "load",
        rank,
        reason: "libnccl.so not found: run scripts/setup.sh (it links the torch wheel's \
                 nvidia/nccl/lib/libnccl.so.2 as libnccl.so) or add a folder holding libnccl.so \
                 to LD_LIBRARY_PATH"
            .to_string(),
    })
}

fn nccl_error(op: &'static str, rank: usize, error: result::NcclError) -> SalError {
    SalError::Collective { op, rank, reason: format!("NCCL returned {:?}", error.0) }
}

fn too_large(op: &'static str, rank: usize, value: usize) -> SalError {
    SalError::Collective { op, rank, reason: format!("{value} does not fit NCCL's 32-bit int") }
}
