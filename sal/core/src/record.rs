//! What SAL did at the end of an epoch, as recorded in histories, reports and plots.

use serde::{Deserialize, Serialize};

/// What SAL did at the end of an epoch, as recorded in histories and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    Noise,
    Plastic,
    /// Noise, then a plastic deformation, in the same epoch (Algorithm 1 allows both).
    NoisePlastic,
    /// The yield point was restored because the deformation did not pay off.
    Recovered,
}

impl Action {
    pub(crate) fn of(restore: bool, noise: bool, plastic: bool) -> Self {
        match (restore, noise, plastic) {
            (true, _, _) => Action::Recovered,
            (false, true, true) => Action::NoisePlastic,
            (false, true, false) => Action::Noise,
            (false, false, true) => Action::Plastic,
            (false, false, false) => Action::None,
        }
    }
}

/// One line of the stress trace (figures 5-7 of the paper are drawn from these).
///
/// Records written before `decided`/`applied` existed carry one `action`, which was both (every
/// decision was applied then); they read as such.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "EpochRecordFields")]
pub struct EpochRecord {
    pub epoch: u32,
    pub loss: f64,
    pub accuracy: f64,
    pub stress: f64,
    pub stress_after: f64,
    /// What Algorithm 1 decided from this epoch's stress.
    pub decided: Action,
    /// What was done to the weights: `decided`, except at the last epoch, where noise and plastic
    /// deformation are withheld (SAL_SPEC.md, "The last epoch").
    pub applied: Action,
    /// Equation 2's standard deviation for the decided noise; 0 when no noise was decided.
    pub noise_sigma: f64,
}

impl EpochRecord {
    /// Whether the decision was withheld in part (only ever at the last epoch).
    pub fn withheld(&self) -> bool {
        self.decided != self.applied
    }
}

/// [`EpochRecord`] as stored, old records' `action` included.
#[derive(Deserialize)]
struct EpochRecordFields {
    epoch: u32,
    loss: f64,
    accuracy: f64,
    stress: f64,
    stress_after: f64,
    #[serde(default)]
    decided: Option<Action>,
    #[serde(default)]
    applied: Option<Action>,
    #[serde(default)]
    action: Option<Action>,
    noise_sigma: f64,
}

impl From<EpochRecordFields> for EpochRecord {
    fn from(f: EpochRecordFields) -> Self {
        let applied = f.applied.or(f.action).or(f.decided).unwrap_or(Action::None);
        EpochRecord {
            epoch: f.epoch,
            loss: f.loss,
            accuracy: f.accuracy,
            stress: f.stress,
            stress_after: f.stress_after,
            decided: f.decided.unwrap_or(applied),
            applied,
            noise_sigma: f.noise_sigma,
        }
    }
}
