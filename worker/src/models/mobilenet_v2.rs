//! torchvision's MobileNetV2 (width 1.0), as a trunk.
//!
//! Variable names are torchvision's: `features.0.{0,1}` (stem conv, BN), inverted residuals
//! `features.{1..17}.conv.{…}`, `features.18.{0,1}` (the 1×1 convolution to 1280 channels).
//! Convolutions are Kaiming normal (fan out), batch norms 1/0, as torchvision.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv, Activation, ConvInit, ConvNormActivation, ConvSpec, NormSpec};

/// `(expansion t, output channels c, repeats n, first stride s)` of the paper's table 2.
const SETTINGS: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const STEM_CHANNELS: i64 = 32;
const LAST_CHANNELS: i64 = 1280;

/// Expand (1×1, unless t = 1), depthwise 3×3, project (1×1, linear); residual when shapes allow.
#[derive(Debug)]
struct InvertedResidual {
    units: Vec<ConvNormActivation>,
    project: nn::Conv2D,
    project_norm: nn::BatchNorm,
    residual: bool,
}

impl InvertedResidual {
    fn new(path: nn::Path, c_in: i64, c_out: i64, stride: i64, expansion: i64) -> Self {
        let path = &path / "conv";
        let hidden = c_in * expansion;
        let mut units = Vec::new();
        if expansion != 1 {
            units.push(ConvNormActivation::new(&path / 0, c_in, hidden, ConvSpec::new(1), Activation::Relu6));
        }
        let depthwise = ConvSpec::new(3).stride(stride).groups(hidden);
        units.push(ConvNormActivation::new(
            &path / units.len(),
            hidden,
            hidden,
            depthwise,
            Activation::Relu6,
        ));
        let project = conv(&path / units.len(), hidden, c_out, ConvSpec::new(1), ConvInit::FanOut);
        let project_norm = batch_norm(&path / (units.len() + 1), c_out, NormSpec::TORCHVISION);
        Self { units, project, project_norm, residual: stride == 1 && c_in == c_out }
    }
}

impl ModuleT for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for unit in &self.units {
            ys = unit.forward_t(&ys, train);
        }
        let ys = self.project_norm.forward_t(&self.project.forward(&ys), train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// The trunk; output stride 32, 1280 channels.
#[derive(Debug)]
pub(crate) struct MobileNetV2 {
    stem: ConvNormActivation,
    blocks: Vec<InvertedResidual>,
    last: ConvNormActivation,
}

impl MobileNetV2 {
    pub const OUT_CHANNELS: i64 = LAST_CHANNELS;

    pub fn new(path: &nn::Path) -> Self {
        let features = path / "features";
        let stem = ConvNormActivation::new(
            &features / 0,
            3,
            STEM_CHANNELS,
            ConvSpec::new(3).stride(2),
            Activation::Relu6,
        );
        let mut blocks = Vec::new();
        let mut c_in = STEM_CHANNELS;
        for &(expansion, c_out, repeats, stride) in &SETTINGS {
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                blocks.push(InvertedResidual::new(
                    &features / (blocks.len() + 1),
                    c_in,
                    c_out,
                    stride,
                    expansion,
                ));
                c_in = c_out;
            }
        }
        let last = ConvNormActivation::new(
            &features / (blocks.len() + 1),
            c_in,
            LAST_CHANNELS,
            ConvSpec::new(1),
            Activation::Relu6,
        );
        Self { stem, blocks, last }
    }
}

impl ModuleT for MobileNetV2 {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        self.last.forward_t(&ys, train)
    }
}
