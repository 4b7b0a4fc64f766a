//! One collective per rank for a trial's devices: single, threads, or NCCL.

use sal::{Collective, SingleRank, ThreadGroup};

use crate::contract::Devices;
use crate::error::WorkerError;

/// A rank's collective, or what it is made from on the rank's own thread (an NCCL communicator
/// must be created on the thread that uses it).
pub enum CollectiveSeed {
    Ready(Box<dyn Collective>),
    #[cfg(feature = "nccl")]
    Nccl {
        id: sal::collective::NcclUniqueId,
        rank: usize,
        world: usize,
        device: usize,
    },
}

impl CollectiveSeed {
    pub(super) fn open(self) -> Result<Box<dyn Collective>, WorkerError> {
        match self {
            CollectiveSeed::Ready(collective) => Ok(collective),
            #[cfg(feature = "nccl")]
            CollectiveSeed::Nccl { id, rank, world, device } => {
                Ok(Box::new(sal::collective::NcclRank::new(id, rank, world, device)?))
            }
        }
    }
}

/// One collective per rank for `devices`.
pub fn collectives(devices: &Devices) -> Result<Vec<CollectiveSeed>, WorkerError> {
    match devices {
        Devices::Cpu { ranks: 1 } => Ok(vec![CollectiveSeed::Ready(Box::new(SingleRank))]),
        Devices::Cpu { ranks } => Ok(ThreadGroup::ranks(*ranks)
            .into_iter()
            .map(|rank| CollectiveSeed::Ready(Box::new(rank) as Box<dyn Collective>))
            .collect()),
        Devices::Cuda(ordinals) => {
            let available = tch::Cuda::device_count().max(0) as usize;
            if let Some(missing) = ordinals.iter().find(|&&o| o >= available) {
                return Err(WorkerError::InvalidTrial(format!(
                    "CUDA device {missing} requested, {available} visible"
                )));
            }
            if ordinals.len() == 1 {
                return Ok(vec![CollectiveSeed::Ready(Box::new(SingleRank))]);
            }
            nccl_group(ordinals)
        }
    }
}

#[cfg(feature = "nccl")]
pub(super) fn nccl_group(ordinals: &[usize]) -> Result<Vec<CollectiveSeed>, WorkerError> {
    let id = sal::collective::nccl_unique_id()?;
    let world = ordinals.len();
    Ok(ordinals
        .iter()
        .enumerate()
        .map(|(rank, &device)| CollectiveSeed::Nccl { id: id.clone(), rank, world, device })
        .collect())
}

#[cfg(not(feature = "nccl"))]
pub(super) fn nccl_group(ordinals: &[usize]) -> Result<Vec<CollectiveSeed>, WorkerError> {
    Err(WorkerError::InvalidTrial(format!(
        "{} GPUs need NCCL: build the worker with `--features nccl`",
        ordinals.len()
    )))
}
