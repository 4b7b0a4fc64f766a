//! The definitions reports read, in one place: where the shared trial and result types live is
//! the only thing here that changes when they move.

use std::collections::BTreeMap;

pub use crate::store::{StoredEpoch, TrialRecord};
pub use common::{ClassMetrics, EpochReport, Method, TrialResult, TrialSpec, TrialStatus};
pub use sal_core::{Action, StressConfig};

/// A short name of the trial: `architecture/optimizer/dataset@resolution method seed N`.
pub fn title(record: &TrialRecord) -> String {
    record.spec.label()
}

/// The epochs of the trial: the result's history when it finished, otherwise the stored reports
/// (for an epoch run by several attempts, the latest attempt's).
pub fn history(record: &TrialRecord) -> Vec<EpochReport> {
    if let Some(result) = &record.result {
        if !result.history.is_empty() {
            return result.history.clone();
        }
    }
    let mut latest: BTreeMap<u32, (u32, &EpochReport)> = BTreeMap::new();
    for stored in &record.epochs {
        let entry = latest.entry(stored.report.epoch).or_insert((stored.attempt, &stored.report));
        if stored.attempt >= entry.0 {
            *entry = (stored.attempt, &stored.report);
        }
    }
    latest.into_values().map(|(_, report)| report.clone()).collect()
}
