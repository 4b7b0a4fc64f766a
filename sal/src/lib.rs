//! Stress-Aware Learning (SAL) on tch models, and the collectives that keep data-parallel replicas
//! identical.
//!
//! The pure part (constants, the stress state machine, the ablation arms, the epoch record) is the
//! `sal-core` crate, re-exported here whole, so that the coordinator uses it without linking
//! libtorch while a worker sees one `sal`. This crate adds:
//! - [`intervene`]: Equation 2's noise and Equation 3's plastic deformation on a tch model;
//! - [`snapshot`]: the yield point, and model checksums;
//! - [`controller`]: all of the above for one replica of one trial;
//! - [`collective`]: one rank, in-process thread ranks, NCCL (feature `nccl`).

pub mod collective;
pub mod controller;
pub mod error;
pub mod intervene;
pub mod snapshot;

pub use sal_core::{
    applied_deformations, random_schedule, Action, Arm, ConfigError, Decision, EpochMetrics, EpochPosition,
    EpochRecord, StressConfig, StressState, YieldComparison,
};
pub use sal_core::{arm, config, record, stress};

pub use collective::{Collective, SingleRank, ThreadGroup, ThreadRank};
pub use controller::{EpochSums, SalController};
pub use error::SalError;
pub use snapshot::{model_checksum, Snapshot, StateTensors};
