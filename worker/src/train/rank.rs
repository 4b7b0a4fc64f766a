//! One replica's life: prepared, trained epoch by epoch, finished.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use tch::Device;

use super::collectives::CollectiveSeed;
use super::replica::Replica;
use super::{Message, ModelFactory};
use crate::contract::{RunOptions, TrialOutcome};
use crate::data::Split;
use crate::error::WorkerError;
use crate::trial::TrialSpec;

/// Everything a rank thread owns.
pub struct Setup {
    pub rank: usize,
    pub world: usize,
    pub device: Device,
    pub collective: CollectiveSeed,
    pub train: Split,
    pub val: Split,
    pub classes: Vec<String>,
    pub spec: TrialSpec,
    pub options: RunOptions,
    pub factory: Arc<ModelFactory>,
    pub check_replicas: bool,
    /// Intra-op threads for this rank's thread (CPU ranks share the cores), or libtorch's default.
    pub threads: Option<i32>,
    pub stop_at: Arc<AtomicU64>,
}

/// How a rank ended, and its checksum after every epoch (when asked for).
pub struct Output {
    pub outcome: TrialOutcome,
    pub checksums: Vec<u64>,
}

/// Trains one rank to the end; `events` hears its progress, epoch reports and checkpoints (only
/// rank 0's are passed on: every rank sees the same).
pub fn run(setup: Setup, events: &mut dyn FnMut(Message)) -> Result<Output, WorkerError> {
    let mut replica = Replica::prepare(setup)?;
    for epoch in replica.first_epoch..=replica.spec.epochs {
        let started = Instant::now();
        let Some(tally) = replica.train_epoch(epoch, events)? else {
            // Cancelled mid-epoch: the last checkpoint, not this half epoch, is what resumes.
            return Ok(replica.interrupted(epoch - 1));
        };
        let measured = replica.measure(started, tally)?;
        if !measured.is_finite() {
            // Before SAL and the checkpoint: neither should see non-finite weights.
            return Ok(replica.diverged(epoch, &measured));
        }
        let report = replica.record(epoch, started, measured)?;
        events(Message::Epoch(report));
        replica.checkpoint(epoch, events)?;
    }
    replica.finish()
}
