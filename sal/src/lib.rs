//! Stress-Aware Learning (SAL) and the collectives that keep data-parallel replicas identical.
//!
//! - [`arm`]: the ablation arms (which interventions a trial applies, random schedules);
//! - [`config`]: every constant of `SAL_SPEC.md`, validated;
//! - [`stress`]: the pure state machine (Equation 1, warm-up, decisions, recovery bookkeeping);
//! - [`record`]: what SAL did at an epoch, as histories keep it;
//! - [`intervene`]: Equation 2's noise and Equation 3's plastic deformation on a tch model;
//! - [`snapshot`]: the yield point, and model checksums;
//! - [`controller`]: all of the above for one replica of one trial;
//! - [`collective`]: one rank, in-process thread ranks, NCCL (feature `nccl`).
//!
//! Everything that touches a tensor sits behind the default feature `torch`; without it the crate
//! is the pure part (config, stress state machine, records) and links no libtorch.

pub mod arm;
#[cfg(feature = "torch")]
pub mod collective;
pub mod config;
#[cfg(feature = "torch")]
pub mod controller;
pub mod error;
#[cfg(feature = "torch")]
pub mod intervene;
pub mod record;
#[cfg(feature = "torch")]
pub mod snapshot;
pub mod stress;

pub use arm::{applied_deformations, random_schedule, Arm};
#[cfg(feature = "torch")]
pub use collective::{Collective, SingleRank, ThreadGroup, ThreadRank};
pub use config::{StressConfig, YieldComparison};
#[cfg(feature = "torch")]
pub use controller::{EpochSums, SalController};
pub use error::SalError;
pub use record::{Action, EpochRecord};
#[cfg(feature = "torch")]
pub use snapshot::{model_checksum, Snapshot, StateTensors};
pub use stress::{Decision, EpochMetrics, EpochPosition, StressState};
