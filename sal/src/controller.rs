//! SAL for one replica of one trial: the state machine plus the tensor work its decisions call
//! for. Every rank of a data-parallel group owns one, feeds it the same global metrics, and so
//! takes the same decisions and draws the same random numbers.

use tch::nn::VarStore;
use tch::Tensor;

use crate::arm::Arm;
use crate::collective::Collective;
use crate::config::StressConfig;
use crate::error::SalError;
use crate::intervene::{apply_noise, apply_plastic, intervention_rng, Intervention};
use crate::record::EpochRecord;
use crate::snapshot::Snapshot;
use crate::stress::{EpochMetrics, EpochPosition, StressState};

/// Per-rank sums of one epoch, before they are combined across ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochSums {
    /// Sum over samples of the per-sample loss.
    pub loss_sum: f64,
    /// Samples classified correctly.
    pub correct: f64,
    /// Samples seen.
    pub samples: f64,
}

impl EpochSums {
    /// Loss and accuracy over every sample of every rank (one all-reduce), as Equation 1 wants.
    pub fn global_metrics(&self, collective: &dyn Collective) -> Result<EpochMetrics, SalError> {
        let mut sums = [self.loss_sum, self.correct, self.samples];
        collective.all_reduce_sum_f64(&mut sums)?;
        let [loss_sum, correct, samples] = sums;
        let samples = samples.max(1.0);
        Ok(EpochMetrics { loss: loss_sum / samples, accuracy: correct / samples })
    }
}

/// Stress-Aware Learning for one replica.
pub struct SalController {
    config: StressConfig,
    /// Which interventions the stress may decide (an ablation arm, or the full method).
    arm: Arm,
    state: StressState,
    trial_seed: u64,
    /// The trial's number of epochs: the last one intervenes no further (SAL_SPEC.md).
    epochs: u32,
    yield_point: Option<Snapshot>,
}

impl SalController {
    /// SAL for a trial of `epochs` epochs, drawing its noise from `trial_seed`.
    pub fn new(config: StressConfig, trial_seed: u64, epochs: u32) -> Result<Self, SalError> {
        config.validate()?;
        Ok(Self { config, arm: Arm::Full, state: StressState::new(), trial_seed, epochs, yield_point: None })
    }

    /// The same controller running only the parts of SAL that `arm` keeps.
    pub fn with_arm(mut self, arm: Arm) -> Self {
        self.arm = arm;
        self
    }

    pub fn arm(&self) -> &Arm {
        &self.arm
    }

    pub fn config(&self) -> &StressConfig {
        &self.config
    }

    pub fn state(&self) -> &StressState {
        &self.state
    }

    /// Ends an epoch: Equation 1 on the global metrics, then the decided interventions on the
    /// model (`vs`) and, for the yield point, the optimizer's `state` tensors. At the trial's last
    /// epoch a due restore is applied, noise and plastic deformation are only recorded.
    pub fn end_epoch(
        &mut self,
        metrics: EpochMetrics,
        vs: &VarStore,
        state: &[Tensor],
    ) -> Result<EpochRecord, SalError> {
        let position = EpochPosition::of(self.state.epoch + 1, self.epochs);
        let decision = self.state.step_arm(&self.config, &self.arm, metrics, position);
        if decision.restore {
            if let Some(snapshot) = self.yield_point.take() {
                snapshot.restore(vs, state)?;
                tracing::debug!(epoch = decision.epoch, "SAL restored the yield point");
            }
        } else if self.state.yield_point.is_none() {
            // The deformation paid off (or none is pending): the snapshot is no longer needed.
            self.yield_point = None;
        }
        if decision.applies_plastic() {
            // The yield point is the model as trained this epoch, before this epoch's noise.
            self.yield_point = Some(Snapshot::capture(vs, state));
        }
        if let Some(sigma) = decision.applied_noise_sigma() {
            let mut rng = intervention_rng(self.trial_seed, decision.epoch, Intervention::Noise);
            apply_noise(vs, sigma, &mut rng);
        }
        if decision.applies_plastic() {
            let mut rng = intervention_rng(self.trial_seed, decision.epoch, Intervention::Plastic);
            let layers = apply_plastic(
                vs,
                self.config.plastic_layers,
                self.config.plastic_scale,
                self.config.plastic_std,
                &mut rng,
            )?;
            tracing::debug!(epoch = decision.epoch, ?layers, "SAL plastic deformation");
        }
        Ok(decision.record(metrics))
    }

    /// The pending yield point, for checkpoints.
    pub fn yield_snapshot(&self) -> Option<&Snapshot> {
        self.yield_point.as_ref()
    }

    /// Puts back a checkpointed state and its pending yield point.
    pub fn resume(&mut self, state: StressState, yield_point: Option<Snapshot>) {
        self.state = state;
        self.yield_point = yield_point;
    }
}
