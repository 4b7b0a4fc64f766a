//! The ablation arms of SAL (SAL_SPEC.md, "Ablation arms and flatness"): which of Equation 2's
//! noise and Equation 3's plastic deformation a trial applies, and, for the random
//! shrink-and-perturb arm, at which epochs.
//!
//! Every arm runs the same state machine ([`crate::StressState::step_arm`]): Equation 1 is always
//! computed and logged, and the arm only filters what is decided from it. So `StressOnly` takes
//! the very code path of `Full` up to the tensor work, and applies none of it.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::record::{Action, EpochRecord};

/// What an arm lets the stress decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The paper's method: Equations 1, 2, 3 and failure recovery.
    #[default]
    Full,
    /// Equation 1 computed and logged; nothing applied (must train exactly as the baseline).
    StressOnly,
    /// Equation 2 only. No deformation ever resets `S_g`, so once above `S_noise` it stays there.
    NoiseOnly,
    /// Equation 3 and its failure recovery, no noise.
    PlasticOnly,
    /// Equation 3 and its recovery at these 1-based epochs, whatever the stress; no noise.
    /// A scheduled deformation that falls on a restoring epoch (which does nothing else) is
    /// carried to the next epoch, so that the arm applies as many as were scheduled.
    Scheduled(Vec<u32>),
}

impl Arm {
    /// Whether the stress may decide Equation 2's noise.
    pub fn noise(&self) -> bool {
        matches!(self, Arm::Full | Arm::NoiseOnly)
    }

    /// Whether the stress may decide Equation 3's deformation.
    pub fn stress_plastic(&self) -> bool {
        matches!(self, Arm::Full | Arm::PlasticOnly)
    }
}

/// `count` distinct epochs drawn uniformly from `warmup_epochs + 1 ..= epochs - 1` with the
/// trial's seed, in increasing order (SAL_SPEC.md: `shrink_perturb_random`). Fewer epochs than
/// `count` in that range gives them all. The last epoch is excluded: nothing would follow it.
pub fn random_schedule(trial_seed: u64, count: u32, warmup_epochs: u32, epochs: u32) -> Vec<u32> {
    let first = warmup_epochs + 1;
    if epochs <= first {
        return Vec::new();
    }
    let range = (epochs - first) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(trial_seed);
    // A stream of its own, so that these draws share nothing with data order or noise.
    rng.set_stream(0x5348_5249_4E4B);
    let mut epochs: Vec<u32> =
        sample(&mut rng, range, (count as usize).min(range)).into_iter().map(|i| first + i as u32).collect();
    epochs.sort_unstable();
    epochs
}

/// How many plastic deformations a trial's history applied: what `shrink_perturb_random` repeats
/// for the same cell and seed (decided but withheld ones, at the last epoch, do not count).
pub fn applied_deformations<'a>(records: impl IntoIterator<Item = &'a EpochRecord>) -> u32 {
    records.into_iter().filter(|r| matches!(r.applied, Action::Plastic | Action::NoisePlastic)).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_seeded_distinct_and_inside_the_range() {
        let a = random_schedule(7, 4, 15, 50);
        assert_eq!(a, random_schedule(7, 4, 15, 50));
        assert_ne!(a, random_schedule(8, 4, 15, 50));
        assert_eq!(a.len(), 4);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
        assert!(a.iter().all(|&e| (16..=49).contains(&e)), "{a:?}");
    }

    #[test]
    fn applied_deformations_count_what_was_done() {
        let record = |applied, decided| EpochRecord {
            epoch: 1,
            loss: 1.0,
            accuracy: 0.5,
            stress: 0.01,
            stress_after: 0.0,
            decided,
            applied,
            noise_sigma: 0.0,
        };
        let history = [
            record(Action::Plastic, Action::Plastic),
            record(Action::NoisePlastic, Action::NoisePlastic),
            record(Action::Noise, Action::Noise),
            record(Action::Recovered, Action::Recovered),
            // The last epoch: decided, withheld.
            record(Action::None, Action::NoisePlastic),
        ];
        assert_eq!(applied_deformations(&history), 2);
    }

    #[test]
    fn schedule_is_capped_by_the_range() {
        assert_eq!(random_schedule(1, 10, 2, 6), vec![3, 4, 5]);
        assert!(random_schedule(1, 3, 5, 6).is_empty());
        assert!(random_schedule(1, 0, 0, 6).is_empty());
    }
}
