//! A trial's GPU speed options (`precision`, `channels_last`, `cudnn_benchmark`), applied to one
//! rank. All are off by default: the paper trained in fp32, and these change the arithmetic
//! (bf16) or the algorithms (cuDNN's benchmark picks per shape, not always the same one).

use std::os::raw::c_int;

use common::trial::{Precision, TrialSpec};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::contract::Devices;
use crate::error::WorkerError;

extern "C" {
    // csrc/autocast.cpp
    fn sal_autocast_bf16_enter() -> c_int;
    fn sal_autocast_exit(previous: c_int);
}

/// Refuses options the devices cannot honour, before anything is loaded.
pub fn check(spec: &TrialSpec, devices: &Devices) -> Result<(), WorkerError> {
    if spec.precision == Precision::Bf16 && matches!(devices, Devices::Cpu { .. }) {
        return Err(WorkerError::field(
            "precision",
            "bf16 runs under CUDA autocast: it needs GPUs, not CPU ranks",
        ));
    }
    Ok(())
}

/// The options as one rank applies them.
#[derive(Debug, Clone, Copy)]
pub struct Acceleration {
    bf16: bool,
    channels_last: bool,
}

impl Acceleration {
    /// Reads the options; cuDNN's benchmark mode is process-wide and set here.
    pub fn new(spec: &TrialSpec, device: Device) -> Self {
        if spec.cudnn_benchmark && device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        Self {
            bf16: spec.precision == Precision::Bf16 && device.is_cuda(),
            channels_last: spec.channels_last,
        }
    }

    /// Lays out the model's 4-D variables (convolution weights) channels-last, in place; before
    /// the optimizer adopts them, which keeps their layout.
    pub fn prepare_model(&self, vs: &VarStore) {
        if !self.channels_last {
            return;
        }
        let _guard = tch::no_grad_guard();
        for (_, variable) in vs.variables() {
            if variable.dim() == 4 {
                let reordered = channels_last(&variable);
                variable.shallow_clone().set_data(&reordered);
            }
        }
    }

    /// A batch of images as the model takes it.
    pub fn input(&self, images: Tensor) -> Tensor {
        if self.channels_last {
            channels_last(&images)
        } else {
            images
        }
    }

    /// Runs `f` (a forward pass) in the trial's precision.
    pub fn forward<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.bf16 {
            return f();
        }
        struct Exit(c_int);
        impl Drop for Exit {
            fn drop(&mut self) {
                // SAFETY: pairs with the enter below on this thread (autocast state is per thread).
                unsafe { sal_autocast_exit(self.0) }
            }
        }
        // SAFETY: plain calls into libtorch's autocast state of this thread; nothing is borrowed.
        let _exit = Exit(unsafe { sal_autocast_bf16_enter() });
        f()
    }
}

/// The same values with NHWC strides (PyTorch's `channels_last` memory format).
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
