//! One training step across replicas (forward, backward, the gradients summed over the ranks,
//! SAM's second pass, the optimizer's step), and what an epoch of steps accumulates.

use sal::{Collective, EpochSums};
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use super::acceleration::Acceleration;
use crate::error::WorkerError;
use crate::models::Model;
use crate::optim::sam::Ascent;
use crate::optim::Optimizer;

/// What a step changes and how it runs: the rank's model, its optimizer, the trial's precision
/// and layout, and SAM's radius for a SAM trial.
pub(super) struct Learner {
    pub(super) model: Model,
    pub(super) optimizer: Box<dyn Optimizer>,
    pub(super) acceleration: Acceleration,
    /// The parameters SAM moves (and flatness measures), in the var store's order.
    pub(super) trainable: Vec<Tensor>,
    /// SAM's radius: every step then takes two forward and backward passes.
    pub(super) sam_rho: Option<f64>,
}

/// A rank's shard of one global batch.
pub(super) struct Batch {
    pub(super) images: Tensor,
    pub(super) labels: Tensor,
    /// The global batch's size: each rank's loss is its share of the global mean.
    pub(super) global: i64,
}

/// An epoch's sums, kept on the device and read once, at its end.
pub(super) struct Tally {
    loss_sum: Tensor,
    correct: Tensor,
    norm_sum: Tensor,
    samples: i64,
}

impl Tally {
    pub(super) fn new(device: Device) -> Self {
        Self {
            loss_sum: Tensor::zeros([], (Kind::Double, device)),
            correct: Tensor::zeros([], (Kind::Int64, device)),
            norm_sum: Tensor::zeros([], (Kind::Double, device)),
            samples: 0,
        }
    }

    /// This rank's loss, hits and samples (reading them waits for the device).
    pub(super) fn sums(&self) -> EpochSums {
        EpochSums {
            loss_sum: self.loss_sum.double_value(&[]),
            correct: self.correct.int64_value(&[]) as f64,
            samples: self.samples as f64,
        }
    }

    /// The global gradient's norm, averaged over the epoch's `steps`.
    pub(super) fn mean_norm(&self, steps: usize) -> f64 {
        self.norm_sum.double_value(&[]) / steps.max(1) as f64
    }
}

/// Trains on one batch: the gradient of the global batch's mean (all-reduced), its norm, SAM's
/// ascent and second gradient for a SAM trial, then the optimizer's step.
pub(super) fn train_step(
    learner: &mut Learner,
    collective: &dyn Collective,
    batch: &Batch,
    tally: &mut Tally,
) -> Result<(), WorkerError> {
    let Learner { model, optimizer, acceleration, trainable, sam_rho } = learner;
    let world = collective.world_size();
    optimizer.zero_grad();
    let (logits, batch_loss) = forward(model, acceleration, batch);
    // This rank's share of the global batch's mean: the all-reduced sum is the mean's gradient.
    (&batch_loss / batch.global as f64).backward();
    let norm = {
        let _guard = tch::no_grad_guard();
        let gradients = optimizer.gradients();
        sum_over_ranks(&gradients, collective, world)?;
        global_norm(&gradients)
    };
    let _ = tally.norm_sum.shallow_clone().g_add_(&norm);
    if let Some(rho) = *sam_rho {
        // SAM: the gradient again at w + rho * g / ||g|| (every rank moves by the same,
        // all-reduced g), then the weights back to w for the optimizer's step.
        let ascent = Ascent::ascend(trainable, &norm, rho);
        optimizer.zero_grad();
        let (_, perturbed) = forward(model, acceleration, batch);
        (&perturbed / batch.global as f64).backward();
        let _guard = tch::no_grad_guard();
        sum_over_ranks(&optimizer.gradients(), collective, world)?;
        ascent.restore();
    }
    let _guard = tch::no_grad_guard();
    optimizer.step();

    let _ = tally.loss_sum.shallow_clone().g_add_(&batch_loss.detach().to_kind(Kind::Double));
    let hits = logits.detach().argmax(-1, false).eq_tensor(&batch.labels).sum(Kind::Int64);
    let _ = tally.correct.shallow_clone().g_add_(&hits);
    tally.samples += batch.labels.size()[0];
    Ok(())
}

/// The logits and the summed loss of a training-mode forward pass, in the trial's precision.
fn forward(model: &Model, acceleration: &Acceleration, batch: &Batch) -> (Tensor, Tensor) {
    acceleration.forward(|| {
        let logits = model.forward_t(&batch.images, true);
        let loss = logits.cross_entropy_loss::<Tensor>(&batch.labels, None, Reduction::Sum, -100, 0.0);
        (logits, loss)
    })
}

/// Sums the gradient buckets over the ranks, in place. They already lie in flat buckets (views,
/// see `optim::FlatParameters`): one collective per bucket with no packing, none with one rank.
fn sum_over_ranks(buckets: &[Tensor], collective: &dyn Collective, world: usize) -> Result<(), WorkerError> {
    if world > 1 {
        for bucket in buckets {
            collective.all_reduce_sum(bucket)?;
        }
    }
    Ok(())
}

/// The L2 norm of all buckets together, in f64 (a 0-dimensional tensor on their device).
pub(super) fn global_norm(buckets: &[Tensor]) -> Tensor {
    match buckets {
        [] => Tensor::zeros([], (Kind::Double, Device::Cpu)),
        [bucket] => bucket.norm().to_kind(Kind::Double),
        _ => {
            let norms: Vec<Tensor> = buckets.iter().map(|b| b.norm().to_kind(Kind::Double)).collect();
            Tensor::stack(&norms, 0).norm()
        }
    }
}

/// The model's floating-point variables that are not trained: batch-norm running statistics.
pub(super) fn float_buffers(vs: &VarStore, trainable: &[Tensor]) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.is_floating_point())
        .filter(|t| !trainable.iter().any(|p| p.data_ptr() == t.data_ptr()))
        .collect()
}

/// Replaces every rank's buffers by their mean over the ranks.
pub(super) fn average_buffers(buffers: &[Tensor], collective: &dyn Collective) -> Result<(), WorkerError> {
    let world = collective.world_size();
    if world == 1 || buffers.is_empty() {
        return Ok(());
    }
    collective.all_reduce_sum_many(buffers)?;
    let _guard = tch::no_grad_guard();
    for buffer in buffers {
        let _ = buffer.shallow_clone().g_div_scalar_(world as f64);
    }
    Ok(())
}
