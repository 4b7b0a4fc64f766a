//! The definitions reports read, in one place: where the shared trial and result types live is
//! the only thing here that changes when they move.

pub use crate::store::{StoredEpoch, TrialRecord};
pub use common::{ClassMetrics, EpochReport, Method, TrialResult, TrialSpec, TrialStatus};
pub use sal::{Action, StressConfig};
