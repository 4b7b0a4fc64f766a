//! torchvision's DenseNet-BC (growth 32, bottleneck width 4·growth, compression 0.5), as a trunk.
//!
//! Unlike `tch::vision::densenet`, which ends in a fixed 7×7 average pool (and fails below
//! 224 px), the trunk ends at `features.norm5` + ReLU; the head pools globally.
//!
//! Variable names are torchvision's: `features.{conv0,norm0}`,
//! `features.denseblock{i}.denselayer{j}.{norm1,conv1,norm2,conv2}`,
//! `features.transition{i}.{norm,conv}`, `features.norm5`. Convolutions are Kaiming normal with
//! torchvision's `kaiming_normal_` default (fan in), batch norms 1/0.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv, ConvInit, ConvSpec, NormSpec};

const GROWTH_RATE: i64 = 32;
const BOTTLENECK_WIDTH: i64 = 4 * GROWTH_RATE;
const INITIAL_FEATURES: i64 = 64;

fn norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    batch_norm(path, channels, NormSpec::TORCHVISION)
}

fn conv_fan_in(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec) -> nn::Conv2D {
    conv(path, c_in, c_out, spec, ConvInit::FanIn)
}

/// BN-ReLU-Conv1×1-BN-ReLU-Conv3×3 on the concatenation of every earlier feature map.
#[derive(Debug)]
struct DenseLayer {
    norm1: nn::BatchNorm,
    conv1: nn::Conv2D,
    norm2: nn::BatchNorm,
    conv2: nn::Conv2D,
}

impl DenseLayer {
    fn new(path: nn::Path, c_in: i64) -> Self {
        Self {
            norm1: norm(&path / "norm1", c_in),
            conv1: conv_fan_in(&path / "conv1", c_in, BOTTLENECK_WIDTH, ConvSpec::new(1)),
            norm2: norm(&path / "norm2", BOTTLENECK_WIDTH),
            conv2: conv_fan_in(&path / "conv2", BOTTLENECK_WIDTH, GROWTH_RATE, ConvSpec::new(3)),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv1.forward(&self.norm1.forward_t(xs, train).relu_());
        self.conv2.forward(&self.norm2.forward_t(&ys, train).relu_())
    }
}

#[derive(Debug)]
struct DenseBlock {
    layers: Vec<DenseLayer>,
}

impl DenseBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = vec![xs.shallow_clone()];
        for layer in &self.layers {
            let ys = layer.forward_t(&Tensor::cat(&features, 1), train);
            features.push(ys);
        }
        Tensor::cat(&features, 1)
    }
}

/// BN-ReLU-Conv1×1 (halving the channels), then a 2×2 average pool.
#[derive(Debug)]
struct Transition {
    norm: nn::BatchNorm,
    conv: nn::Conv2D,
}

impl Transition {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv.forward(&self.norm.forward_t(xs, train).relu_());
        ys.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None)
    }
}

/// The trunk; output stride 32.
#[derive(Debug)]
pub(crate) struct DenseNet {
    conv0: nn::Conv2D,
    norm0: nn::BatchNorm,
    blocks: Vec<(DenseBlock, Option<Transition>)>,
    norm5: nn::BatchNorm,
    out_channels: i64,
}

impl DenseNet {
    pub fn new(path: &nn::Path, block_depths: [i64; 4]) -> Self {
        let features = path / "features";
        let conv0 =
            conv_fan_in(&features / "conv0", 3, INITIAL_FEATURES, ConvSpec::new(7).stride(2).padding(3));
        let norm0 = norm(&features / "norm0", INITIAL_FEATURES);
        let mut channels = INITIAL_FEATURES;
        let mut blocks = Vec::new();
        for (i, &depth) in block_depths.iter().enumerate() {
            let block_path = &features / format!("denseblock{}", i + 1);
            let layers = (0..depth)
                .map(|j| {
                    DenseLayer::new(&block_path / format!("denselayer{}", j + 1), channels + j * GROWTH_RATE)
                })
                .collect();
            channels += depth * GROWTH_RATE;
            let transition = (i + 1 < block_depths.len()).then(|| {
                let path = &features / format!("transition{}", i + 1);
                let transition = Transition {
                    norm: norm(&path / "norm", channels),
                    conv: conv_fan_in(&path / "conv", channels, channels / 2, ConvSpec::new(1)),
                };
                channels /= 2;
                transition
            });
            blocks.push((DenseBlock { layers }, transition));
        }
        let norm5 = norm(&features / "norm5", channels);
        Self { conv0, norm0, blocks, norm5, out_channels: channels }
    }

    pub fn densenet121(path: &nn::Path) -> Self {
        Self::new(path, [6, 12, 24, 16])
    }

    pub fn densenet201(path: &nn::Path) -> Self {
        Self::new(path, [6, 12, 48, 32])
    }

    pub fn out_channels(&self) -> i64 {
        self.out_channels
    }
}

impl ModuleT for DenseNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let stem = self.norm0.forward_t(&self.conv0.forward(xs), train).relu_();
        let mut ys = stem.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (block, transition) in &self.blocks {
            ys = block.forward_t(&ys, train);
            if let Some(transition) = transition {
                ys = transition.forward_t(&ys, train);
            }
        }
        self.norm5.forward_t(&ys, train).relu_()
    }
}
