//! Parameters, gradients and optimizer state as views into flat buffers.
//!
//! An optimizer step written per parameter costs a few kernel launches per parameter and per
//! operation: hundreds of small ops for a DenseNet, each with its dispatch overhead and, for
//! out-of-place ops, a temporary. [`FlatParameters::adopt`] moves every parameter into one flat
//! buffer per (kind, device) — a *segment* — and makes each parameter a view into it (PyTorch's
//! `param.data = view`), and does the same for the gradients, into which backward then
//! accumulates in place. An update is then a few large element-wise ops over each segment, and
//! the gradient is already one bucket for the norm and the all-reduce, with nothing to pack.
//!
//! Element-wise arithmetic does not depend on how elements are grouped, so a flat update gives
//! the very same numbers as the per-parameter one. One difference in meaning: a parameter the
//! forward pass did not use has a zero gradient rather than none, and is updated as such (Keras
//! skips it); every model here uses all of its parameters (`tests/models.rs` checks it).
//!
//! A view keeps its parameter's strides (a channels-last convolution weight stays channels-last),
//! and the state views are laid out as the parameter views, so that element `i` of every flat
//! buffer of a segment belongs to the same scalar of the same parameter.

use tch::{Device, Kind, Tensor};

/// Where one parameter lives in its segment.
#[derive(Debug)]
struct Placement {
    size: Vec<i64>,
    stride: Vec<i64>,
    offset: i64,
}

impl Placement {
    fn view_of(&self, flat: &Tensor) -> Tensor {
        flat.as_strided(self.size.as_slice(), self.stride.as_slice(), Some(self.offset))
    }
}

/// The parameters of one kind on one device, back to back.
#[derive(Debug)]
pub struct Segment {
    /// Indices of this segment's parameters in the adopted list, with their placements.
    members: Vec<(usize, Placement)>,
    /// Every parameter's values.
    pub values: Tensor,
    /// Every parameter's gradient.
    pub gradients: Tensor,
}

impl Segment {
    /// A zero buffer shaped like the segment: one optimizer moment for all its parameters.
    pub fn zeros(&self) -> Tensor {
        Tensor::zeros_like(&self.values)
    }
}

/// Parameters adopted into flat segments (see the module documentation).
#[derive(Debug)]
pub struct FlatParameters {
    segments: Vec<Segment>,
    count: usize,
}

/// One optimizer moment (a momentum, a velocity) for every parameter: a flat buffer per segment
/// for the update, and a view per parameter, in parameter order, for snapshots and checkpoints.
#[derive(Debug)]
pub struct FlatState {
    pub segments: Vec<Tensor>,
    pub views: Vec<Tensor>,
}

impl FlatState {
    /// Handles on every parameter's view, in parameter order: writing into them writes the state.
    pub fn handles(&self) -> impl Iterator<Item = Tensor> + '_ {
        self.views.iter().map(Tensor::shallow_clone)
    }
}

impl FlatParameters {
    /// Moves `parameters` into flat segments, in place: every handle on them (modules, the var
    /// store) sees the views; values and existing gradients are kept.
    pub fn adopt(parameters: Vec<Tensor>) -> Self {
        let _guard = tch::no_grad_guard();
        let count = parameters.len();
        let mut groups: Vec<((Kind, Device), Vec<usize>)> = Vec::new();
        for (index, p) in parameters.iter().enumerate() {
            let key = (p.kind(), p.device());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(index),
                None => groups.push((key, vec![index])),
            }
        }
        let segments = groups
            .into_iter()
            .map(|((kind, device), indices)| {
                let total: i64 = indices.iter().map(|&i| parameters[i].numel() as i64).sum();
                let values = Tensor::empty([total], (kind, device));
                let gradients = Tensor::zeros([total], (kind, device));
                let mut offset = 0;
                let mut members = Vec::with_capacity(indices.len());
                for index in indices {
                    let p = &parameters[index];
                    let placement = Placement { size: p.size(), stride: dense_strides(p), offset };
                    offset += p.numel() as i64;
                    let view = placement.view_of(&values);
                    view.shallow_clone().copy_(p);
                    p.shallow_clone().set_data(&view);
                    attach_gradient(p, &placement.view_of(&gradients));
                    members.push((index, placement));
                }
                Segment { members, values, gradients }
            })
            .collect();
        Self { segments, count }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// A zeroed moment for every parameter.
    pub fn zeros(&self) -> FlatState {
        let segments: Vec<Tensor> = self.segments.iter().map(Segment::zeros).collect();
        let views = self.views_of(&segments);
        FlatState { segments, views }
    }

    /// Per-parameter views (parameter order) into per-segment buffers laid out like the values.
    pub fn views_of(&self, buffers: &[Tensor]) -> Vec<Tensor> {
        let mut views: Vec<Option<Tensor>> = (0..self.count).map(|_| None).collect();
        for (segment, buffer) in self.segments.iter().zip(buffers) {
            for (index, placement) in &segment.members {
                views[*index] = Some(placement.view_of(buffer));
            }
        }
        views.into_iter().flatten().collect()
    }

    /// Zeroes every gradient: one fill per segment.
    pub fn zero_grad(&self) {
        let _guard = tch::no_grad_guard();
        for segment in &self.segments {
            let _ = segment.gradients.shallow_clone().zero_();
        }
    }

    /// The flat gradient of every segment (handles on the live buffers).
    pub fn gradients(&self) -> Vec<Tensor> {
        self.segments.iter().map(|s| s.gradients.shallow_clone()).collect()
    }
}

/// `p`'s strides if they lay its elements out densely (contiguous, channels-last, any
/// permutation of a contiguous layout), else the contiguous strides.
fn dense_strides(p: &Tensor) -> Vec<i64> {
    let size = p.size();
    let stride = p.stride();
    let mut order: Vec<usize> = (0..size.len()).collect();
    order.sort_by_key(|&d| std::cmp::Reverse(stride[d]));
    let mut expected = 1;
    let mut dense = true;
    for &d in order.iter().rev() {
        if size[d] != 1 && stride[d] != expected {
            dense = false;
        }
        expected *= size[d];
    }
    if dense {
        return stride;
    }
    let mut contiguous = vec![1; size.len()];
    for d in (0..size.len().saturating_sub(1)).rev() {
        contiguous[d] = contiguous[d + 1] * size[d + 1];
    }
    contiguous
}

/// Makes `view` the gradient of `p`, keeping the gradient's current values. Backward accumulates
/// into a defined gradient in place (`grad += new`), so later gradients land in the view.
fn attach_gradient(p: &Tensor, view: &Tensor) {
    if !p.requires_grad() {
        return;
    }
    if !p.grad().defined() {
        // A gradient exists only once a backward pass reached the parameter: a zero one.
        tch::with_grad(|| (p.sum(p.kind()) * 0.0).backward());
        let _ = view.shallow_clone().zero_();
    } else {
        view.shallow_clone().copy_(&p.grad());
    }
    p.grad().set_data(view);
}
