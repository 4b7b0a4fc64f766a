//! One replica's life: prepared, trained epoch by epoch, finished.

use std::time::Instant;

use super::replica::{Output, Replica, Setup};
use super::Message;
use crate::error::WorkerError;

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
