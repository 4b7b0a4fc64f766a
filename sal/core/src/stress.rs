//! The stress state machine of SAL: metrics in, decision out, no tensors.
//!
//! One call of [`StressState::step`] per epoch, with that epoch's training loss and accuracy
//! averaged over every sample on every rank, and whether that epoch is the trial's last. It applies
//! Equation 1, then decides on failure recovery, noise (Equation 2) and plastic deformation
//! (Equation 3). The tensor work that carries a decision out lives in [`crate::intervene`].
//!
//! Order within one epoch's step (SAL_SPEC.md, with the points the spec leaves open fixed here):
//! 1. Equation 1 updates `S_g`, `prev_loss` and `prev_acc` (it runs during warm-up too, and at the
//!    last epoch).
//! 2. If a yield point is pending: a loss below the yield point's loss drops it (the deformation
//!    paid off); otherwise, once `recovery_patience` epochs have passed since the deformation, the
//!    yield point is restored. A restoring epoch does nothing else, and `prev_loss`/`prev_acc`
//!    become the yield point's, since the model is back at that state. A restore that falls due
//!    at the last epoch is carried out: it returns to weights that were trained and measured.
//! 3. After warm-up: noise if `S_g > S_noise`; then plastic deformation if `S_g` reached
//!    `S_yield` (`>=` or `>`), which first takes a snapshot (the yield point: the model as trained
//!    this epoch, before this epoch's noise), then resets `S_g` to 0.
//! 4. At the last epoch ([`EpochPosition::Last`]) noise and plastic deformation are decided and
//!    recorded as in step 3, but not applied: an intervention shapes the epochs after it, and none
//!    follows, so the final evaluation sees the weights as trained. Nothing is then snapshotted and
//!    `S_g` is not reset. [`Decision::decided`] and [`Decision::applied`] tell the two apart, and
//!    so does every [`EpochRecord`].

use serde::{Deserialize, Serialize};

use crate::arm::Arm;
use crate::config::StressConfig;
use crate::record::{Action, EpochRecord};

/// One epoch's training metrics, over all samples of all ranks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub loss: f64,
    pub accuracy: f64,
}

/// Whether more epochs follow the one being stepped (SAL_SPEC.md, "The last epoch").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochPosition {
    /// Another epoch follows: every decision is applied.
    BeforeLast,
    /// The trial's final epoch: noise and plastic deformation are decided but not applied.
    Last,
}

impl EpochPosition {
    /// The position of 1-based `epoch` in a trial of `epochs` epochs.
    pub fn of(epoch: u32, epochs: u32) -> Self {
        if epoch >= epochs {
            EpochPosition::Last
        } else {
            EpochPosition::BeforeLast
        }
    }
}

/// The interventions decided for one epoch, and which of them are carried out by the tensor
/// layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// 1-based epoch number.
    pub epoch: u32,
    /// `S_g` after Equation 1: the value the decisions were taken on.
    pub stress: f64,
    /// `S_g` at the end of the step (0 after an applied plastic deformation).
    pub stress_after: f64,
    /// Standard deviation of Equation 2's noise, when noise is decided.
    pub noise_sigma: Option<f64>,
    /// Decided: snapshot the yield point, then deform the last layers (Equation 3).
    pub plastic: bool,
    /// Restore the yield point snapshot (always applied).
    pub restore: bool,
    /// The trial's last epoch: noise and plastic deformation are withheld.
    pub last_epoch: bool,
}

impl Decision {
    /// What Algorithm 1 decided this epoch.
    pub fn decided(&self) -> Action {
        Action::of(self.restore, self.noise_sigma.is_some(), self.plastic)
    }

    /// What is carried out: the decision, less noise and plastic deformation at the last epoch.
    pub fn applied(&self) -> Action {
        Action::of(self.restore, self.applied_noise_sigma().is_some(), self.applies_plastic())
    }

    /// The noise to add to the weights now, if any.
    pub fn applied_noise_sigma(&self) -> Option<f64> {
        self.noise_sigma.filter(|_| !self.last_epoch)
    }

    /// Whether to snapshot the yield point and deform the last layers now.
    pub fn applies_plastic(&self) -> bool {
        self.plastic && !self.last_epoch
    }

    /// The serializable record of this epoch, for histories, reports and plots.
    pub fn record(&self, metrics: EpochMetrics) -> EpochRecord {
        EpochRecord {
            epoch: self.epoch,
            loss: metrics.loss,
            accuracy: metrics.accuracy,
            stress: self.stress,
            stress_after: self.stress_after,
            decided: self.decided(),
            applied: self.applied(),
            noise_sigma: self.noise_sigma.unwrap_or(0.0),
        }
    }
}

/// The yield point awaiting its verdict: the metrics of the epoch it was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct YieldPoint {
    pub epoch: u32,
    pub loss: f64,
    pub accuracy: f64,
}

/// SAL's state between epochs; serializable so that checkpoints carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressState {
    /// `S_g`, in `[0, S_max]`.
    pub stress: f64,
    /// `None` stands for the spec's `+inf` before the first epoch (JSON has no infinity).
    pub prev_loss: Option<f64>,
    pub prev_acc: f64,
    /// Epochs stepped so far.
    pub epoch: u32,
    /// Set between a plastic deformation and its verdict.
    pub yield_point: Option<YieldPoint>,
    /// Plastic deformations applied so far (a scheduled arm owes the rest of its schedule).
    #[serde(default)]
    pub deformations: u32,
}

impl Default for StressState {
    fn default() -> Self {
        Self::new()
    }
}

impl StressState {
    pub fn new() -> Self {
        Self { stress: 0.0, prev_loss: None, prev_acc: 0.0, epoch: 0, yield_point: None, deformations: 0 }
    }

    /// Equation 1 and Algorithm 1's decisions for the epoch that just ended; at
    /// [`EpochPosition::Last`] noise and plastic deformation are decided but not applied.
    pub fn step(
        &mut self,
        config: &StressConfig,
        metrics: EpochMetrics,
        position: EpochPosition,
    ) -> Decision {
        self.step_arm(config, &Arm::Full, metrics, position)
    }

    /// [`StressState::step`] for an ablation arm: Equation 1 and the recovery bookkeeping as
    /// always; noise and deformation only where `arm` lets them be decided.
    pub fn step_arm(
        &mut self,
        config: &StressConfig,
        arm: &Arm,
        metrics: EpochMetrics,
        position: EpochPosition,
    ) -> Decision {
        self.epoch += 1;
        let epoch = self.epoch;
        let EpochMetrics { loss, accuracy } = metrics;

        let prev_loss = self.prev_loss.unwrap_or(f64::INFINITY);
        let improved = (prev_loss - loss > config.eps_loss) && (accuracy - self.prev_acc > config.eps_acc);
        self.stress = if improved {
            (self.stress - config.rho).max(0.0)
        } else {
            (self.stress + config.theta).min(config.s_max)
        };
        self.prev_loss = Some(loss);
        self.prev_acc = accuracy;

        let mut decision = Decision {
            epoch,
            stress: self.stress,
            stress_after: self.stress,
            noise_sigma: None,
            plastic: false,
            restore: false,
            last_epoch: position == EpochPosition::Last,
        };

        if let Some(yield_point) = self.yield_point {
            if loss < yield_point.loss {
                self.yield_point = None;
            } else if epoch - yield_point.epoch >= config.recovery_patience {
                self.yield_point = None;
                self.prev_loss = Some(yield_point.loss);
                self.prev_acc = yield_point.accuracy;
                decision.restore = true;
                return decision;
            }
        }

        if let Arm::Scheduled(epochs) = arm {
            // Due: a scheduled epoch has come (or one was carried over a restoring epoch).
            let scheduled = epochs.iter().filter(|&&e| e <= epoch).count() as u32;
            if scheduled > self.deformations {
                decision.plastic = true;
                if decision.applies_plastic() {
                    self.yield_point = Some(YieldPoint { epoch, loss, accuracy });
                    self.deformations += 1;
                }
            }
        } else if epoch > config.warmup_epochs {
            if arm.noise() && self.stress > config.s_noise {
                decision.noise_sigma = Some(config.noise_sigma(self.stress));
            }
            if arm.stress_plastic() && config.has_yielded(self.stress) {
                decision.plastic = true;
                if decision.applies_plastic() {
                    self.yield_point = Some(YieldPoint { epoch, loss, accuracy });
                    self.deformations += 1;
                    self.stress = 0.0;
                    decision.stress_after = 0.0;
                }
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::YieldComparison;

    const BEFORE_LAST: EpochPosition = EpochPosition::BeforeLast;

    /// Defaults without warm-up, so that traces start intervening at once.
    fn no_warmup() -> StressConfig {
        StressConfig { warmup_epochs: 0, ..StressConfig::default() }
    }

    fn m(loss: f64, accuracy: f64) -> EpochMetrics {
        EpochMetrics { loss, accuracy }
    }

    #[test]
    fn two_stagnant_steps_reach_the_yield_exactly_in_f64() {
        // SAL_SPEC.md: 0.005 + 0.005 == 0.01 in f64, so `>=` deforms on the second stagnant epoch.
        assert_eq!(0.0 + 0.005 + 0.005, 0.01_f64);
    }

    #[test]
    fn trace_with_at_least_deforms_on_second_stagnant_epoch_then_recovers() {
        let config = no_warmup();
        let mut state = StressState::new();

        // Epoch 1 improves on (+inf, 0): stress stays clamped at 0.
        let d1 = state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        assert_eq!((d1.stress, d1.decided()), (0.0, Action::None));

        // Epoch 2 stagnates: 0.005, not strictly above S_noise.
        let d2 = state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        assert_eq!((d2.stress, d2.decided()), (0.005, Action::None));

        // Epoch 3 stagnates: exactly 0.01 -> noise (sigma = 1 * (1e-7 + 1e-5 * 0.01)) and plastic.
        let d3 = state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        assert_eq!(d3.stress, 0.01);
        assert_eq!(d3.decided(), Action::NoisePlastic);
        assert_eq!(d3.noise_sigma, Some(1e-7 + 1e-5 * 0.01));
        assert_eq!(d3.stress_after, 0.0);
        assert_eq!(state.yield_point, Some(YieldPoint { epoch: 3, loss: 1.0, accuracy: 0.5 }));

        // Epoch 4 does not beat the yield point's loss within 1 epoch: restore it.
        let d4 = state.step(&config, m(1.2, 0.6), BEFORE_LAST);
        assert_eq!(d4.decided(), Action::Recovered);
        assert_eq!(d4.stress, 0.005);
        assert_eq!(state.yield_point, None);
        assert_eq!((state.prev_loss, state.prev_acc), (Some(1.0), 0.5));

        // Epoch 5 stagnates again from 0.005: 0.01 -> deforms again.
        let d5 = state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        assert_eq!((d5.stress, d5.decided()), (0.01, Action::NoisePlastic));
    }

    #[test]
    fn trace_with_above_deforms_on_third_stagnant_epoch() {
        let config = StressConfig { yield_comparison: YieldComparison::Above, ..no_warmup() };
        let mut state = StressState::new();
        let actions: Vec<(f64, Action)> = (0..4)
            .map(|_| state.step(&config, m(1.0, 0.5), BEFORE_LAST))
            .map(|d| (d.stress, d.decided()))
            .collect();
        assert_eq!(
            actions,
            vec![
                (0.0, Action::None),
                (0.005, Action::None),
                (0.01, Action::Noise),
                (0.015, Action::NoisePlastic),
            ]
        );
    }

    #[test]
    fn a_deformation_that_pays_off_is_kept() {
        let config = no_warmup();
        let mut state = StressState::new();
        for _ in 0..3 {
            state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        }
        assert!(state.yield_point.is_some());
        // Loss below the yield point's loss (1.0) and accuracy up: improving, snapshot dropped.
        let d = state.step(&config, m(0.9, 0.55), BEFORE_LAST);
        assert_eq!((d.stress, d.decided()), (0.0, Action::None));
        assert_eq!(state.yield_point, None);
        assert_eq!(state.prev_loss, Some(0.9));
    }

    #[test]
    fn lower_loss_without_higher_accuracy_is_stagnation() {
        let config = no_warmup();
        let mut state = StressState::new();
        state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        let d = state.step(&config, m(0.5, 0.5), BEFORE_LAST);
        assert_eq!(d.stress, 0.005);
        let d = state.step(&config, m(0.4, 0.6), BEFORE_LAST);
        // 0.005 - 0.0005 in f64.
        assert_eq!(d.stress, 0.0045000000000000005);
    }

    #[test]
    fn first_epoch_with_zero_accuracy_is_stagnant() {
        // prev_acc starts at 0 and the improvement must be strict.
        let mut state = StressState::new();
        let d = state.step(&no_warmup(), m(2.3, 0.0), BEFORE_LAST);
        assert_eq!(d.stress, 0.005);
    }

    #[test]
    fn stress_clamps_at_s_max_and_at_zero() {
        let config = StressConfig { warmup_epochs: 10_000, ..StressConfig::default() };
        let mut state = StressState::new();
        state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        for _ in 0..250 {
            state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        }
        assert_eq!(state.stress, 1.0);
        // 1.0 needs 2000 improving epochs at rho = 0.0005 to come back to 0; clamp below 0.
        let mut loss = 1.0;
        let mut acc = 0.5;
        for _ in 0..2100 {
            loss -= 1e-4;
            acc += 1e-5;
            state.step(&config, m(loss, acc), BEFORE_LAST);
        }
        assert_eq!(state.stress, 0.0);
    }

    #[test]
    fn nothing_intervenes_during_warmup_but_stress_accumulates() {
        let config = StressConfig::default();
        let mut state = StressState::new();
        let mut actions = Vec::new();
        for _ in 0..16 {
            let d = state.step(&config, m(1.0, 0.5), BEFORE_LAST);
            actions.push(d.decided());
        }
        assert!(actions[..15].iter().all(|a| *a == Action::None), "{actions:?}");
        // Epoch 16 is the first after warm-up: 15 stagnant steps of 0.005 = 0.075 >= 0.01.
        assert_eq!(actions[15], Action::NoisePlastic);
        assert!((state.yield_point.map(|y| y.epoch)) == Some(16));
    }

    #[test]
    fn noise_sigma_follows_equation_2() {
        let config = StressConfig::default();
        // alpha = 0.75 below the yield point; alpha = 1 at and above it.
        assert!((config.noise_sigma(0.0075) - 0.75 * (1e-7 + 1e-5 * 0.0075)).abs() < 1e-22);
        assert_eq!(config.noise_sigma(0.5), 1e-7 + 1e-5 * 0.5);
        assert_eq!(config.noise_sigma(0.0), 0.0);
    }

    #[test]
    fn longer_patience_waits_before_restoring() {
        let config = StressConfig { recovery_patience: 2, ..no_warmup() };
        let mut state = StressState::new();
        for _ in 0..3 {
            state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        }
        assert_eq!(state.step(&config, m(1.1, 0.5), BEFORE_LAST).decided(), Action::None);
        assert_eq!(state.step(&config, m(1.1, 0.5), BEFORE_LAST).decided(), Action::Recovered);
    }

    #[test]
    fn records_round_trip_through_json() {
        let config = no_warmup();
        let mut state = StressState::new();
        let metrics = m(1.0, 0.5);
        let record = state.step(&config, metrics, BEFORE_LAST).record(metrics);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"decided\":\"none\",\"applied\":\"none\""), "{json}");
        assert_eq!(serde_json::from_str::<EpochRecord>(&json).unwrap(), record);
        let state_json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<StressState>(&state_json).unwrap(), state);
    }

    #[test]
    fn records_written_before_decided_and_applied_read_as_both() {
        // The shape of a record before the last-epoch rule: one `action`, always applied.
        let old = r#"{"epoch":3,"loss":1.0,"accuracy":0.5,"stress":0.01,"stress_after":0.0,
                      "action":"noise_plastic","noise_sigma":2e-7}"#;
        let record: EpochRecord = serde_json::from_str(old).unwrap();
        assert_eq!((record.decided, record.applied), (Action::NoisePlastic, Action::NoisePlastic));
        assert!(!record.withheld());
    }

    #[test]
    fn the_last_epoch_decides_noise_and_plastic_but_applies_neither() {
        let config = no_warmup();
        let mut state = StressState::new();
        state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        // The third stagnant epoch reaches the yield point (0.01), and it is the last.
        let d = state.step(&config, m(1.0, 0.5), EpochPosition::Last);
        assert_eq!(d.stress, 0.01, "Equation 1 still runs at the last epoch");
        assert_eq!(d.decided(), Action::NoisePlastic);
        assert_eq!(d.applied(), Action::None);
        assert_eq!(d.applied_noise_sigma(), None);
        assert!(!d.applies_plastic());
        // Nothing deformed: no yield point to keep, and the stress is not reset.
        assert_eq!(d.stress_after, 0.01);
        assert_eq!(state.stress, 0.01);
        assert_eq!(state.yield_point, None);
        let record = d.record(m(1.0, 0.5));
        assert_eq!((record.decided, record.applied), (Action::NoisePlastic, Action::None));
        assert_eq!(record.noise_sigma, 1e-7 + 1e-5 * 0.01, "the decided sigma is logged");
        assert!(record.withheld());
    }

    #[test]
    fn the_last_epoch_withholds_noise_alone_too() {
        let config = StressConfig { yield_comparison: YieldComparison::Above, ..no_warmup() };
        let mut state = StressState::new();
        state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        let d = state.step(&config, m(1.0, 0.5), EpochPosition::Last);
        assert_eq!((d.decided(), d.applied()), (Action::Noise, Action::None));
    }

    #[test]
    fn a_recovery_due_at_the_last_epoch_is_applied() {
        let config = no_warmup();
        let mut state = StressState::new();
        for _ in 0..3 {
            state.step(&config, m(1.0, 0.5), BEFORE_LAST);
        }
        assert!(state.yield_point.is_some());
        let d = state.step(&config, m(1.2, 0.6), EpochPosition::Last);
        assert_eq!((d.decided(), d.applied()), (Action::Recovered, Action::Recovered));
        assert_eq!(state.yield_point, None);
        assert_eq!((state.prev_loss, state.prev_acc), (Some(1.0), 0.5));
    }

    #[test]
    fn epochs_before_the_last_apply_what_they_decide() {
        let config = no_warmup();
        let mut state = StressState::new();
        let epochs = 6;
        let decisions: Vec<Decision> = (1..=epochs)
            .map(|epoch| state.step(&config, m(1.0, 0.5), EpochPosition::of(epoch, epochs)))
            .collect();
        let (last, before) = decisions.split_last().unwrap();
        assert!(before.iter().all(|d| d.decided() == d.applied()), "{before:?}");
        assert!(before.iter().any(|d| d.applied() == Action::NoisePlastic), "{before:?}");
        assert!(last.last_epoch);
        assert_eq!(EpochPosition::of(5, 6), EpochPosition::BeforeLast);
        assert_eq!(EpochPosition::of(6, 6), EpochPosition::Last);
    }

    /// Eight stagnant epochs through an arm: `(stress, decided, stress_after)` per epoch.
    fn stagnant_trace(arm: &Arm) -> Vec<(f64, Action, f64)> {
        let config = no_warmup();
        let mut state = StressState::new();
        (1..=8)
            .map(|epoch| state.step_arm(&config, arm, m(1.0, 0.5), EpochPosition::of(epoch, 8)))
            .map(|d| (d.stress, d.decided(), d.stress_after))
            .collect()
    }

    #[test]
    fn the_full_arm_is_the_plain_step() {
        let config = no_warmup();
        let (mut a, mut b) = (StressState::new(), StressState::new());
        for epoch in 1..=8 {
            let metrics = m(1.0 + 0.01 * f64::from(epoch % 3), 0.5);
            let position = EpochPosition::of(epoch, 8);
            assert_eq!(
                a.step(&config, metrics, position),
                b.step_arm(&config, &Arm::Full, metrics, position)
            );
        }
        assert_eq!(a, b);
    }

    #[test]
    fn stress_only_logs_the_stress_and_decides_nothing() {
        let trace = stagnant_trace(&Arm::StressOnly);
        assert!(trace.iter().all(|&(_, action, _)| action == Action::None), "{trace:?}");
        // Equation 1 still runs: the stress climbs by theta per stagnant epoch, never reset.
        assert_eq!(trace[2].0, 0.01);
        assert!(trace[7].0 > trace[6].0);
    }

    #[test]
    fn noise_only_never_deforms_and_so_never_resets_the_stress() {
        let trace = stagnant_trace(&Arm::NoiseOnly);
        let actions: Vec<Action> = trace.iter().map(|t| t.1).collect();
        assert!(actions[2..].iter().all(|&a| a == Action::Noise), "{actions:?}");
        assert!(trace.iter().all(|&(stress, _, after)| stress == after), "{trace:?}");
        assert!(trace[7].0 > 0.03, "{trace:?}");
    }

    #[test]
    fn plastic_only_deforms_and_recovers_without_noise() {
        let trace = stagnant_trace(&Arm::PlasticOnly);
        let actions: Vec<Action> = trace.iter().map(|t| t.1).collect();
        assert!(!actions.iter().any(|a| matches!(a, Action::Noise | Action::NoisePlastic)), "{actions:?}");
        // The full method's trace with noise removed: deform at 3, restore at 4, deform at 5...
        let full: Vec<Action> = stagnant_trace(&Arm::Full)
            .iter()
            .map(|t| if t.1 == Action::NoisePlastic { Action::Plastic } else { t.1 })
            .collect();
        assert_eq!(actions, full);
        assert_eq!(actions[2], Action::Plastic);
        assert_eq!(actions[3], Action::Recovered);
    }

    #[test]
    fn a_schedule_deforms_at_its_epochs_and_carries_one_over_a_restore() {
        // Epoch 3 deforms; 4 restores (stagnant loss), so the deformation scheduled at 4 moves to 5.
        let trace = stagnant_trace(&Arm::Scheduled(vec![3, 4]));
        let actions: Vec<Action> = trace.iter().map(|t| t.1).collect();
        assert_eq!(
            actions,
            vec![
                Action::None,
                Action::None,
                Action::Plastic,
                Action::Recovered,
                Action::Plastic,
                Action::Recovered,
                Action::None,
                Action::None
            ]
        );
        // The stress plays no part, and a deformation does not reset it.
        assert!(trace.iter().all(|&(stress, _, after)| stress == after), "{trace:?}");
        let mut state = StressState::new();
        for epoch in 1..=8 {
            state.step_arm(
                &no_warmup(),
                &Arm::Scheduled(vec![3, 4]),
                m(1.0, 0.5),
                EpochPosition::of(epoch, 8),
            );
        }
        assert_eq!(state.deformations, 2);
    }
}
