//! A small CNN for tests and demos on two CPU cores: three conv-bn-relu blocks, then the head.

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use crate::trial::Head;

#[derive(Debug)]
pub struct SmallCnn {
    blocks: Vec<(nn::Conv2D, nn::BatchNorm)>,
    head: Vec<nn::Linear>,
}

impl SmallCnn {
    pub fn new(path: &nn::Path, head: Head, classes: i64) -> Self {
        let widths = [(3, 16), (16, 32), (32, 64)];
        let conv = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
        let blocks = widths
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                (
                    nn::conv2d(path / format!("conv{}", i + 1), cin, cout, 3, conv),
                    nn::batch_norm2d(path / format!("bn{}", i + 1), cout, Default::default()),
                )
            })
            .collect();
        let head = match head {
            Head::Paper => vec![
                nn::linear(path / "fc1", 64, 512, Default::default()),
                nn::linear(path / "fc2", 512, 128, Default::default()),
                nn::linear(path / "fc3", 128, classes, Default::default()),
            ],
            Head::Linear => vec![nn::linear(path / "fc", 64, classes, Default::default())],
        };
        Self { blocks, head }
    }
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            x = bn.forward_t(&conv.forward(&x), train).relu();
            if i + 1 < self.blocks.len() {
                x = x.max_pool2d_default(2);
            }
        }
        let mut x = x.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let last = self.head.len() - 1;
        for (i, linear) in self.head.iter().enumerate() {
            x = linear.forward(&x);
            if i < last {
                x = x.relu();
                if i == 0 {
                    x = x.dropout(0.5, train);
                }
            }
        }
        x
    }
}
