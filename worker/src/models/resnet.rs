//! torchvision's ResNet (v1.5: the stride sits on the bottleneck's 3×3 convolution), as a trunk.
//!
//! Variable names are torchvision's: `conv1`, `bn1`, `layer{1..4}.{block}.{conv,bn}{1..3}`,
//! `layer{i}.0.downsample.{0,1}`. Convolutions are Kaiming normal (fan out), batch norms 1/0, as
//! torchvision's `ResNet.__init__` (its `zero_init_residual` defaults to off, so here too).

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv, ConvInit, ConvSpec, NormSpec};

/// Which residual block a ResNet stacks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34); expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 (ResNet-50/101/152); expansion 4.
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

fn norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    batch_norm(path, channels, NormSpec::TORCHVISION)
}

fn conv_fan_out(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec) -> nn::Conv2D {
    conv(path, c_in, c_out, spec, ConvInit::FanOut)
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(path: nn::Path, kind: BlockKind, c_in: i64, width: i64, stride: i64) -> Self {
        let c_out = width * kind.expansion();
        let specs: Vec<(i64, i64, ConvSpec)> = match kind {
            BlockKind::Basic => {
                vec![(c_in, width, ConvSpec::new(3).stride(stride)), (width, width, ConvSpec::new(3))]
            }
            BlockKind::Bottleneck => vec![
                (c_in, width, ConvSpec::new(1)),
                (width, width, ConvSpec::new(3).stride(stride)),
                (width, c_out, ConvSpec::new(1)),
            ],
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(i, (cin, cout, spec))| {
                (
                    conv_fan_out(&path / format!("conv{}", i + 1), cin, cout, spec),
                    norm(&path / format!("bn{}", i + 1), cout),
                )
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let path = &path / "downsample";
            (
                conv_fan_out(&path / "0", c_in, c_out, ConvSpec::new(1).stride(stride)),
                norm(&path / "1", c_out),
            )
        });
        Self { convs, downsample }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            ys = bn.forward_t(&conv.forward(&ys), train);
            if i < last {
                ys = ys.relu_();
            }
        }
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward(xs), train),
            None => xs.shallow_clone(),
        };
        // In place, as torchvision: the batch norm output is not needed by its backward.
        ys.g_add_(&shortcut).relu_()
    }
}

/// The trunk: stem (7×7/2 convolution, max pool /2) and four stages; output stride 32.
#[derive(Debug)]
pub(crate) struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<Block>,
    out_channels: i64,
}

impl ResNet {
    pub fn new(path: &nn::Path, kind: BlockKind, depths: [usize; 4]) -> Self {
        let conv1 = conv_fan_out(path / "conv1", 3, 64, ConvSpec::new(7).stride(2).padding(3));
        let bn1 = norm(path / "bn1", 64);
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &depth) in depths.iter().enumerate() {
            let width = 64 << stage;
            let layer = path / format!("layer{}", stage + 1);
            for b in 0..depth {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(&layer / b, kind, c_in, width, stride));
                c_in = width * kind.expansion();
            }
        }
        Self { conv1, bn1, blocks, out_channels: c_in }
    }

    pub fn resnet18(path: &nn::Path) -> Self {
        Self::new(path, BlockKind::Basic, [2, 2, 2, 2])
    }

    pub fn resnet50(path: &nn::Path) -> Self {
        Self::new(path, BlockKind::Bottleneck, [3, 4, 6, 3])
    }

    pub fn out_channels(&self) -> i64 {
        self.out_channels
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let stem = self.bn1.forward_t(&self.conv1.forward(xs), train).relu_();
        let mut ys = stem.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        ys
    }
}
