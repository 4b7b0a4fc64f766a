//! Stress-Aware Learning (SAL) and the collectives that keep data-parallel replicas identical.
//!
//! - [`config`]: every constant of `SAL_SPEC.md`, validated;
//! - [`stress`]: the pure state machine (Equation 1, warm-up, decisions, recovery bookkeeping);
//! - [`intervene`]: Equation 2's noise and Equation 3's plastic deformation on a tch model;
//! - [`snapshot`]: the yield point, and model checksums;
//! - [`controller`]: all of the above for one replica of one trial;
//! - [`collective`]: one rank, in-process thread ranks, NCCL (feature `nccl`).

pub mod collective;
pub mod config;
pub mod controller;
pub mod error;
pub mod intervene;
pub mod snapshot;
pub mod stress;

pub use collective::{Collective, SingleRank, ThreadGroup, ThreadRank};
pub use config::{StressConfig, YieldComparison};
pub use controller::{EpochSums, SalController};
pub use error::SalError;
pub use snapshot::{model_checksum, Snapshot, StateTensors};
pub use stress::{Action, Decision, EpochMetrics, EpochRecord, StressState};
