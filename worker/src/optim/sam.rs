//! Sharpness-Aware Minimization (Foret et al. 2021) around any optimizer of this module.
//!
//! One SAM step: the gradient `g` at the weights `w` (all-reduced over the ranks), the ascent
//! `e = rho * g / (||g|| + 1e-12)` with `||g||` the norm over every parameter of every rank, the
//! gradient at `w + e`, then the weights put back to `w` exactly and the optimizer's ordinary step
//! from there with the second gradient. [`Ascent`] is the middle part; the training loop does the
//! forward and backward passes around it, so that SAM runs with whatever optimizer, precision
//! and data parallelism the trial has.
//!
//! Every rank sees the same all-reduced `g`, so every replica moves by the same `e` and replicas
//! stay bit-identical.

use tch::{Kind, Tensor};

/// `sam_rho`'s default (Foret et al. 2021's for most of their experiments).
pub const DEFAULT_RHO: f64 = 0.05;

/// Added to `||g||` so that a zero gradient gives a zero ascent rather than NaN.
const NORM_FLOOR: f64 = 1e-12;

/// The weights moved to `w + e` for SAM's second gradient, and their values at `w`.
#[must_use = "the weights must be put back with `restore` before the optimizer steps"]
pub struct Ascent {
    /// `(parameter, its value at w)`.
    saved: Vec<(Tensor, Tensor)>,
}

impl Ascent {
    /// Moves each of `parameters` by `rho * grad / (grad_norm + 1e-12)`, its current gradient
    /// scaled by the global norm (`grad_norm`, a 0-dimensional tensor: over all parameters of all
    /// ranks). Parameters without a gradient stay where they are.
    pub fn ascend(parameters: &[Tensor], grad_norm: &Tensor, rho: f64) -> Ascent {
        let _guard = tch::no_grad_guard();
        // Kept on the device: reading the norm on the host would wait for the GPU every step.
        let scale = (grad_norm.to_kind(Kind::Double) + NORM_FLOOR).reciprocal() * rho;
        let mut saved = Vec::with_capacity(parameters.len());
        for parameter in parameters {
            let gradient = parameter.grad();
            if !gradient.defined() {
                continue;
            }
            saved.push((parameter.shallow_clone(), parameter.copy()));
            let step = gradient * scale.to_kind(parameter.kind()).to_device(parameter.device());
            let _ = parameter.shallow_clone().g_add_(&step);
        }
        Ascent { saved }
    }

    /// Puts every moved parameter back to its value at `w`, bit for bit.
    pub fn restore(self) {
        let _guard = tch::no_grad_guard();
        for (parameter, original) in self.saved {
            parameter.shallow_clone().copy_(&original);
        }
    }
}
