//! A small CNN for tests and demos on two CPU cores: three conv-bn-relu blocks (16, 32, 64
//! channels, 2×2 max pools between them); the head pools globally.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv, ConvInit, ConvSpec, NormSpec};

#[derive(Debug)]
pub(crate) struct SmallCnn {
    blocks: Vec<(nn::Conv2D, nn::BatchNorm)>,
}

impl SmallCnn {
    pub const OUT_CHANNELS: i64 = 64;

    pub fn new(path: &nn::Path) -> Self {
        let widths = [(3, 16), (16, 32), (32, Self::OUT_CHANNELS)];
        let blocks = widths
            .iter()
            .enumerate()
            .map(|(i, &(c_in, c_out))| {
                (
                    conv(path / format!("conv{}", i + 1), c_in, c_out, ConvSpec::new(3), ConvInit::FanOut),
                    batch_norm(path / format!("bn{}", i + 1), c_out, NormSpec::TORCHVISION),
                )
            })
            .collect();
        Self { blocks }
    }
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            ys = bn.forward_t(&conv.forward(&ys), train).relu_();
            if i + 1 < self.blocks.len() {
                ys = ys.max_pool2d_default(2);
            }
        }
        ys
    }
}
