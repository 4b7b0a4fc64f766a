//! Flatness of the trained model (SAL_SPEC.md, "Ablation arms and flatness"), measured once
//! after the final epoch on a fixed, seeded subset of the training images: Hutchinson's trace of
//! the Hessian, its top eigenvalue by power iteration, the gradient norm, and the loss along
//! filter-normalized random directions (Li et al. 2018).
//!
//! The loss is the mean cross-entropy over the subset, computed batch by batch; a Hessian-vector
//! product is libtorch's double backward (the gradient with `create_graph`, its dot product with
//! `v`, backward again), summed over the batches. The caller's forward pass runs the model in
//! eval mode (batch norm from its running statistics, no dropout), so that `H` is the Hessian of
//! one fixed function of the weights.
//!
//! Random numbers (probes, the start of the power iteration, directions) are drawn on the host
//! from ChaCha generators seeded by the trial's seed, so a measurement repeats exactly and does
//! not depend on the device. Every dot product is summed in f64.

use std::time::Instant;

use common::flatness::{DirectionTrace, Flatness, FlatnessConfig, FlatnessParams};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::nn::ModuleT;
use tch::{Kind, Reduction, Tensor};

/// Streams of the trial seed's generators, one per use.
const SUBSET_STREAM: u64 = 0xF1A7_0001;
const PROBE_STREAM: u64 = 0xF1A7_0002;
const POWER_STREAM: u64 = 0xF1A7_0003;
const DIRECTION_STREAM: u64 = 0xF1A7_0004;

/// The loss of a model over a fixed set of batches, as a function of some of its parameters.
pub struct Objective<'a> {
    /// Inputs as stored (e.g. u8 images) to logits; must run the model in eval mode.
    pub forward: &'a dyn Fn(&Tensor) -> Tensor,
    /// `(inputs, labels)` batches; together they are the subset.
    pub batches: Vec<(Tensor, Tensor)>,
    /// The parameters the Hessian is taken over (they must require gradients).
    pub parameters: Vec<Tensor>,
}

/// The indices of the subset: `images` distinct training samples out of `available`, drawn with
/// the trial's seed, in increasing order (all of them if there are fewer).
pub fn subset_indices(seed: u64, available: usize, images: usize) -> Vec<i64> {
    let mut rng = stream(seed, SUBSET_STREAM);
    let mut indices: Vec<i64> =
        sample(&mut rng, available, images.min(available)).into_iter().map(|i| i as i64).collect();
    indices.sort_unstable();
    indices
}

/// The parameters `params` names, out of a model's trainable ones.
pub fn select_parameters(trainable: &[Tensor], params: FlatnessParams) -> Vec<Tensor> {
    trainable
        .iter()
        .filter(|p| params == FlatnessParams::All || p.dim() >= 2)
        .map(Tensor::shallow_clone)
        .collect()
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Numbers from `draw`, shaped, typed and placed like `like`.
fn drawn_like(like: &Tensor, mut draw: impl FnMut() -> f32) -> Tensor {
    let values: Vec<f32> = (0..like.numel()).map(|_| draw()).collect();
    Tensor::from_slice(&values).view(like.size().as_slice()).to_kind(like.kind()).to_device(like.device())
}

/// `sum_i <a_i, b_i>` in f64.
fn dot(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_kind(Kind::Double) * y.to_kind(Kind::Double)).sum(Kind::Double).double_value(&[]))
        .sum()
}

fn norm(a: &[Tensor]) -> f64 {
    dot(a, a).sqrt()
}

impl Objective<'_> {
    fn samples(&self) -> i64 {
        self.batches.iter().map(|(_, labels)| labels.size()[0]).sum()
    }

    /// One batch's share of the mean loss over the subset (its loss sum / subset size).
    fn batch_loss(&self, inputs: &Tensor, labels: &Tensor, samples: i64) -> Tensor {
        // Reduced precision forward passes are measured in f32; f64 models (tests) stay f64.
        let logits = (self.forward)(inputs);
        let logits = if logits.kind() == Kind::Double { logits } else { logits.to_kind(Kind::Float) };
        logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, -100, 0.0) / samples as f64
    }

    fn zeros(&self) -> Vec<Tensor> {
        self.parameters.iter().map(Tensor::zeros_like).collect()
    }

    /// A gradient from `run_backward` may be undefined for a parameter the output does not
    /// depend on: that is a zero.
    fn accumulate(total: &mut [Tensor], parts: Vec<Tensor>) {
        for (t, part) in total.iter_mut().zip(parts) {
            if part.defined() {
                let _ = t.g_add_(&part.detach());
            }
        }
    }

    /// The mean loss without gradients.
    pub fn loss(&self) -> f64 {
        let _guard = tch::no_grad_guard();
        let samples = self.samples();
        self.batches.iter().map(|(x, y)| self.batch_loss(x, y, samples).double_value(&[])).sum()
    }

    /// The mean loss and its gradient.
    pub fn gradient(&self) -> (f64, Vec<Tensor>) {
        let samples = self.samples();
        let mut gradient = self.zeros();
        let mut loss = 0.0;
        for (x, y) in &self.batches {
            let batch_loss = self.batch_loss(x, y, samples);
            loss += batch_loss.double_value(&[]);
            Self::accumulate(
                &mut gradient,
                Tensor::run_backward(&[&batch_loss], &self.parameters, false, false),
            );
        }
        (loss, gradient)
    }

    /// `H v` by double backward, summed over the batches.
    pub fn hvp(&self, v: &[Tensor]) -> Vec<Tensor> {
        let samples = self.samples();
        let mut product = self.zeros();
        for (x, y) in &self.batches {
            let batch_loss = self.batch_loss(x, y, samples);
            let gradient = Tensor::run_backward(&[&batch_loss], &self.parameters, true, true);
            let mut inner: Option<Tensor> = None;
            for (g, vi) in gradient.iter().zip(v) {
                if g.defined() && g.requires_grad() {
                    let term = (g * vi).sum(g.kind());
                    inner = Some(match inner {
                        Some(sum) => sum + term,
                        None => term,
                    });
                }
            }
            // No gradient depends on the weights again: this batch's Hessian is zero.
            if let Some(inner) = inner {
                Self::accumulate(
                    &mut product,
                    Tensor::run_backward(&[&inner], &self.parameters, false, false),
                );
            }
        }
        product
    }

    /// Hutchinson: `mean_k v_k^T H v_k` over `probes` Rademacher probes; (mean, standard error).
    pub fn hutchinson(&self, probes: u32, seed: u64) -> (f64, f64) {
        let mut rng = stream(seed, PROBE_STREAM);
        let samples: Vec<f64> = (0..probes)
            .map(|_| {
                let v: Vec<Tensor> = self
                    .parameters
                    .iter()
                    .map(|p| drawn_like(p, || if rng.random::<bool>() { 1.0 } else { -1.0 }))
                    .collect();
                dot(&v, &self.hvp(&v))
            })
            .collect();
        mean_and_se(&samples)
    }

    /// Power iteration on `H` from a seeded random start: the eigenvalue of largest magnitude,
    /// the residual `||H v - lambda v|| / |lambda|` of the last iterate, and the iterations run.
    /// Stops once lambda changes by less than `tolerance` relatively.
    pub fn power_iteration(&self, iterations: u32, tolerance: f64, seed: u64) -> (f64, f64, u32) {
        let mut rng = stream(seed, POWER_STREAM);
        let start: Vec<Tensor> =
            self.parameters.iter().map(|p| drawn_like(p, || StandardNormal.sample(&mut rng))).collect();
        let mut v = scaled(&start, 1.0 / norm(&start).max(f64::MIN_POSITIVE));
        let (mut lambda, mut residual, mut ran) = (0.0, f64::INFINITY, 0);
        for iteration in 1..=iterations {
            let hv = self.hvp(&v);
            let next = dot(&v, &hv);
            let diff: Vec<Tensor> = hv.iter().zip(&v).map(|(h, x)| h - x * next).collect();
            residual = norm(&diff) / next.abs().max(f64::MIN_POSITIVE);
            let converged = iteration > 1 && (next - lambda).abs() <= tolerance * next.abs();
            (lambda, ran) = (next, iteration);
            let length = norm(&hv);
            if converged || length == 0.0 {
                break;
            }
            v = scaled(&hv, 1.0 / length);
        }
        (lambda, residual, ran)
    }

    /// The loss along `count` filter-normalized random directions at `steps` points in [-1, 1].
    /// A direction is Gaussian, rescaled filter by filter (slices along the first dimension) to
    /// the norm of the weights' filter; parameters of one dimension (biases, norm layers) get a
    /// zero direction, as in Li et al.'s code. The weights are put back exactly afterwards.
    pub fn directions(&self, count: u32, steps: u32, seed: u64) -> Vec<DirectionTrace> {
        let _guard = tch::no_grad_guard();
        let mut rng = stream(seed, DIRECTION_STREAM);
        let original: Vec<Tensor> = self.parameters.iter().map(Tensor::copy).collect();
        let alphas: Vec<f64> = (0..steps)
            .map(|i| if steps < 2 { 0.0 } else { -1.0 + 2.0 * f64::from(i) / f64::from(steps - 1) })
            .collect();
        let mut traces = Vec::new();
        for _ in 0..count {
            let direction: Vec<Tensor> = self
                .parameters
                .iter()
                .map(|p| filter_normalized(&drawn_like(p, || StandardNormal.sample(&mut rng)), p))
                .collect();
            let mut losses = Vec::with_capacity(alphas.len());
            for &alpha in &alphas {
                for ((p, w), d) in self.parameters.iter().zip(&original).zip(&direction) {
                    p.shallow_clone().copy_(&(w + d * alpha));
                }
                losses.push(self.loss());
            }
            traces.push(DirectionTrace { alphas: alphas.clone(), losses });
        }
        for (p, w) in self.parameters.iter().zip(&original) {
            p.shallow_clone().copy_(w);
        }
        traces
    }
}

fn scaled(v: &[Tensor], factor: f64) -> Vec<Tensor> {
    v.iter().map(|x| x * factor).collect()
}

/// `direction` rescaled so that each of its filters has the norm of `weight`'s filter.
fn filter_normalized(direction: &Tensor, weight: &Tensor) -> Tensor {
    if weight.dim() <= 1 {
        return Tensor::zeros_like(weight);
    }
    let dims: Vec<i64> = (1..weight.dim() as i64).collect();
    let weight_norms = weight.norm_scalaropt_dim(2.0, dims.as_slice(), true);
    let direction_norms = direction.norm_scalaropt_dim(2.0, dims.as_slice(), true);
    direction * weight_norms / (direction_norms + 1e-10)
}

/// Mean and standard error (sample standard deviation / sqrt(n)).
fn mean_and_se(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    let mean = samples.iter().sum::<f64>() / n;
    if samples.len() < 2 {
        return (mean, 0.0);
    }
    let variance = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// Every measurement of the spec on `objective`, with `seed` (the trial's) for its draws.
pub fn measure(objective: &Objective<'_>, config: &FlatnessConfig, seed: u64) -> Flatness {
    let started = Instant::now();
    let (loss, gradient) = objective.gradient();
    let (trace_h, trace_h_se) = objective.hutchinson(config.probes, seed);
    let (lambda_max, lambda_residual, power_iterations) =
        objective.power_iteration(config.iterations, config.tolerance, seed);
    let directions = objective.directions(config.directions, config.steps, seed);
    Flatness {
        images: objective.samples() as u32,
        params: config.params,
        parameters: objective.parameters.iter().map(|p| p.numel() as u64).sum(),
        loss,
        trace_h,
        trace_h_se,
        probes: config.probes,
        lambda_max,
        lambda_residual,
        power_iterations,
        grad_norm: norm(&gradient),
        directions,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Measures a trained model on the fixed subset of its training split: `images` (u8, as the
/// split stores them) and `labels` on the model's device, `input` the trial's input layout, in
/// batches of `batch`. Over the parameters `config.params` names out of `trainable`.
#[allow(clippy::too_many_arguments)]
pub fn measure_model(
    model: &dyn ModuleT,
    input: &dyn Fn(Tensor) -> Tensor,
    images: &Tensor,
    labels: &Tensor,
    trainable: &[Tensor],
    batch: i64,
    config: &FlatnessConfig,
    seed: u64,
) -> Flatness {
    let available = labels.size()[0].max(0) as usize;
    let chosen = Tensor::from_slice(&subset_indices(seed, available, config.images as usize))
        .to_device(labels.device());
    let (subset_images, subset_labels) = (images.index_select(0, &chosen), labels.index_select(0, &chosen));
    let count = subset_labels.size()[0];
    let batch = batch.max(1);
    let batches = (0..count)
        .step_by(batch as usize)
        .map(|start| {
            let len = batch.min(count - start);
            (subset_images.narrow(0, start, len), subset_labels.narrow(0, start, len))
        })
        .collect();
    // Eval mode (batch norm from running statistics, no dropout), in fp32 whatever the trial's
    // training precision: H is the Hessian of one fixed function of the weights.
    let forward = |x: &Tensor| model.forward_t(&input(x.to_kind(Kind::Float) / 255.0), false);
    let objective =
        Objective { forward: &forward, batches, parameters: select_parameters(trainable, config.params) };
    measure(&objective, config, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_error_is_the_sample_sd_over_root_n() {
        let (mean, se) = mean_and_se(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        // Sample variance 5/3, over 4, square root.
        assert!((se - (5.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn the_subset_is_seeded_distinct_and_capped() {
        let a = subset_indices(3, 100, 10);
        assert_eq!(a, subset_indices(3, 100, 10));
        assert_ne!(a, subset_indices(4, 100, 10));
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a.iter().all(|&i| (0..100).contains(&i)));
        assert_eq!(subset_indices(3, 5, 10), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn filters_take_the_weights_norms_and_biases_get_none() {
        let weight = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 1.0]).view([2, 2]);
        let direction = Tensor::from_slice(&[1.0f32, 1.0, 2.0, 0.0]).view([2, 2]);
        let d = filter_normalized(&direction, &weight);
        let norms = Vec::<f32>::try_from(d.norm_scalaropt_dim(2.0, [1].as_slice(), false)).unwrap();
        assert!((norms[0] - 5.0).abs() < 1e-5 && (norms[1] - 1.0).abs() < 1e-5, "{norms:?}");
        let bias = Tensor::from_slice(&[1.0f32, 2.0]);
        assert_eq!(filter_normalized(&bias, &bias).abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
