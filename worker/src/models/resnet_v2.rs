//! Keras' `ResNet50V2` (pre-activation ResNet, He et al. 2016 "Identity Mappings"), layer for
//! layer as `keras/src/applications/resnet_v2.py` builds it; torchvision has no such model.
//!
//! What distinguishes Keras' variant, all kept here:
//! - the stem is a 7×7/2 convolution *with* bias and no norm, then zero padding and a 3×3/2 max
//!   pool;
//! - each block pre-activates (BN, ReLU) and feeds that to both branches when the shortcut is a
//!   convolution (first block of a stage; 1×1 with bias), while an identity shortcut takes the
//!   block's raw input;
//! - a stage downsamples in its *last* block (stride on the 3×3 convolution; the identity shortcut
//!   becomes a 1×1 max pool with stride 2, i.e. subsampling); the fourth stage does not;
//! - the third convolution of a block has a bias; a final BN + ReLU (`post_bn`) ends the trunk;
//! - batch norms use epsilon 1.001e-5 and Keras' momentum 0.99.
//!
//! Names follow torchvision's ResNet where there is a counterpart; the Keras names map as
//! `conv1_conv` → `conv1`, `conv{s+2}_block{b+1}_{preact_bn,1_conv,1_bn,2_conv,2_bn,3_conv,0_conv}`
//! → `layer{s+1}.{b}.{preact_bn,conv1,bn1,conv2,bn2,conv3,downsample}`, `post_bn` → `post_bn`.
//! Convolutions use Kaiming normal (fan out) like the torchvision trunks, not Keras' Glorot
//! uniform; biases start at zero as in Keras.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv, ConvInit, ConvSpec, NormSpec};

fn norm(path: nn::Path, channels: i64) -> nn::BatchNorm {
    batch_norm(path, channels, NormSpec::KERAS_RESNET)
}

fn conv_fan_out(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec) -> nn::Conv2D {
    conv(path, c_in, c_out, spec, ConvInit::FanOut)
}

/// Keras' `block2`.
#[derive(Debug)]
struct PreActBlock {
    preact_bn: nn::BatchNorm,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    /// `Some` for the convolution shortcut (`conv_shortcut=True`).
    downsample: Option<nn::Conv2D>,
    stride: i64,
}

impl PreActBlock {
    fn new(path: nn::Path, c_in: i64, filters: i64, stride: i64, conv_shortcut: bool) -> Self {
        let c_out = 4 * filters;
        Self {
            preact_bn: norm(&path / "preact_bn", c_in),
            conv1: conv_fan_out(&path / "conv1", c_in, filters, ConvSpec::new(1)),
            bn1: norm(&path / "bn1", filters),
            conv2: conv_fan_out(&path / "conv2", filters, filters, ConvSpec::new(3).stride(stride)),
            bn2: norm(&path / "bn2", filters),
            conv3: conv_fan_out(&path / "conv3", filters, c_out, ConvSpec::new(1).with_bias()),
            downsample: conv_shortcut.then(|| {
                conv_fan_out(&path / "downsample", c_in, c_out, ConvSpec::new(1).stride(stride).with_bias())
            }),
            stride,
        }
    }
}

impl ModuleT for PreActBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let preact = self.preact_bn.forward_t(xs, train).relu_();
        let shortcut = match &self.downsample {
            Some(conv) => conv.forward(&preact),
            // MaxPooling2D(1, strides=stride) on the raw input: plain subsampling.
            None if self.stride > 1 => {
                xs.max_pool2d([1, 1], [self.stride, self.stride], [0, 0], [1, 1], false)
            }
            None => xs.shallow_clone(),
        };
        let ys = self.bn1.forward_t(&self.conv1.forward(&preact), train).relu_();
        let ys = self.bn2.forward_t(&self.conv2.forward(&ys), train).relu_();
        self.conv3.forward(&ys) + shortcut
    }
}

/// The ResNet50V2 trunk; output stride 32, 2048 channels.
#[derive(Debug)]
pub(crate) struct ResNetV2 {
    conv1: nn::Conv2D,
    blocks: Vec<PreActBlock>,
    post_bn: nn::BatchNorm,
}

impl ResNetV2 {
    pub const OUT_CHANNELS: i64 = 2048;

    pub fn resnet50_v2(path: &nn::Path) -> Self {
        // Keras' `stack2(x, filters, blocks, stride1)` for conv2..conv5.
        let stages: [(i64, usize, i64); 4] = [(64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)];
        let conv1 = conv_fan_out(path / "conv1", 3, 64, ConvSpec::new(7).stride(2).padding(3).with_bias());
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, &(filters, depth, stride)) in stages.iter().enumerate() {
            let layer = path / format!("layer{}", stage + 1);
            for b in 0..depth {
                let block_stride = if b + 1 == depth { stride } else { 1 };
                blocks.push(PreActBlock::new(&layer / b, c_in, filters, block_stride, b == 0));
                c_in = 4 * filters;
            }
        }
        Self { conv1, blocks, post_bn: norm(path / "post_bn", Self::OUT_CHANNELS) }
    }
}

impl ModuleT for ResNetV2 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // Keras pads with zeros before the pool (`pool1_pad`); the stem has no ReLU, so a zero
        // can win the max at the border where PyTorch's implicit -inf padding would not.
        let stem = self.conv1.forward(xs).constant_pad_nd([1, 1, 1, 1]);
        let mut ys = stem.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        self.post_bn.forward_t(&ys, train).relu_()
    }
}
