//! Evaluating a rank's shard of a split, and summing the shards over the ranks.

use std::time::Instant;

use sal::Collective;
use tch::nn::ModuleT;
use tch::{Device, Kind, Reduction, Tensor};

use super::acceleration::Acceleration;
use super::batches::shard;
use crate::error::WorkerError;

/// Sums of one evaluation pass over a rank's shard of a split.
pub(super) struct Evaluation {
    pub(super) loss_sum: f64,
    pub(super) correct: f64,
    pub(super) top5: f64,
    pub(super) count: f64,
    pub(super) confusion: Vec<f64>,
    pub(super) batches: usize,
    pub(super) seconds: f64,
}

impl Evaluation {
    pub(super) fn reduce(mut self, collective: &dyn Collective) -> Result<Self, WorkerError> {
        let mut values = vec![self.loss_sum, self.correct, self.top5, self.count];
        values.extend_from_slice(&self.confusion);
        collective.all_reduce_sum_f64(&mut values)?;
        (self.loss_sum, self.correct, self.top5, self.count) = (values[0], values[1], values[2], values[3]);
        self.confusion = values[4..].to_vec();
        Ok(self)
    }

    pub(super) fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1.0)
    }

    pub(super) fn accuracy(&self) -> f64 {
        self.correct / self.count.max(1.0)
    }

    pub(super) fn local_ms_per_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            1000.0 * self.seconds / self.batches as f64
        }
    }
}

/// Evaluates the model (inference mode) on `rank`'s contiguous shard of a split; with `full`,
/// also top-5 and the confusion matrix.
#[allow(clippy::too_many_arguments)]
pub(super) fn evaluate(
    model: &dyn ModuleT,
    acceleration: &Acceleration,
    images: &Tensor,
    labels: &Tensor,
    rank: usize,
    world: usize,
    batch: i64,
    classes: i64,
    full: bool,
) -> Result<Evaluation, WorkerError> {
    let _guard = tch::no_grad_guard();
    let device = images.device();
    let samples = labels.size()[0];
    let (from, count) = shard(0, samples, rank, world);
    let loss_sum = Tensor::zeros([], (Kind::Double, device));
    let correct = Tensor::zeros([], (Kind::Int64, device));
    let top5 = Tensor::zeros([], (Kind::Int64, device));
    let confusion = Tensor::zeros([classes * classes], (Kind::Int64, device));
    let k = classes.min(5);
    let started = Instant::now();
    let mut batches = 0;
    let mut start = from;
    while start < from + count {
        let len = batch.min(from + count - start);
        let x = acceleration.input(images.narrow(0, start, len).to_kind(Kind::Float) / 255.0);
        let y = labels.narrow(0, start, len);
        // Metrics in fp32 whatever the forward precision (a no-op in fp32).
        let logits = acceleration.forward(|| model.forward_t(&x, false)).to_kind(Kind::Float);
        let _ = loss_sum.shallow_clone().g_add_(
            &logits
                .f_cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0)?
                .to_kind(Kind::Double),
        );
        let predicted = logits.argmax(-1, false);
        let _ = correct.shallow_clone().g_add_(&predicted.eq_tensor(&y).sum(Kind::Int64));
        if full {
            let (_, best) = logits.topk(k, -1, true, false);
            let _ = top5
                .shallow_clone()
                .g_add_(&best.eq_tensor(&y.unsqueeze(1)).any_dim(1, false).sum(Kind::Int64));
            let cells = (&y * classes + &predicted).bincount::<Tensor>(None, classes * classes);
            let _ = confusion.shallow_clone().g_add_(&cells);
        }
        batches += 1;
        start += len;
    }
    // Reading the sums waits for the device: the time below covers the whole pass.
    let confusion: Vec<f64> = if full {
        Vec::<i64>::try_from(&confusion.to_device(Device::Cpu))?.into_iter().map(|v| v as f64).collect()
    } else {
        Vec::new()
    };
    let evaluation = Evaluation {
        loss_sum: loss_sum.double_value(&[]),
        correct: correct.int64_value(&[]) as f64,
        top5: top5.int64_value(&[]) as f64,
        count: count as f64,
        confusion,
        batches,
        seconds: 0.0,
    };
    Ok(Evaluation { seconds: started.elapsed().as_secs_f64(), ..evaluation })
}
