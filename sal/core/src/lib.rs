//! Stress-Aware Learning without tensors: what the coordinator and the trial definitions need, so
//! that they build and link without libtorch. The `sal` crate adds the tensor work and the
//! collectives on top and re-exports all of this.
//!
//! - [`config`]: every constant of `SAL_SPEC.md`, validated;
//! - [`stress`]: the pure state machine (Equation 1, warm-up, decisions, recovery bookkeeping);
//! - [`record`]: what SAL did at an epoch, as histories keep it;
//! - [`arm`]: the ablation arms (which interventions a trial applies, random schedules).

pub mod arm;
pub mod config;
pub mod error;
pub mod record;
pub mod stress;

pub use arm::{applied_deformations, random_schedule, Arm};
pub use config::{StressConfig, YieldComparison};
pub use error::ConfigError;
pub use record::{Action, EpochRecord};
pub use stress::{Decision, EpochMetrics, EpochPosition, StressState};
