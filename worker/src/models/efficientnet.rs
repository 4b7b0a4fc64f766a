//! torchvision's EfficientNet (v1) at B2 scale (width 1.1, depth 1.2), as a trunk.
//!
//! Variable names are torchvision's: `features.0.{0,1}` (stem), MBConv blocks
//! `features.{stage}.{block}.block.{k}` (expand, depthwise, `fc1`/`fc2` of the squeeze-excitation,
//! project), `features.8.{0,1}` (the 1×1 convolution to 4× the last stage's channels).
//! SiLU everywhere, squeeze-excitation as torchvision (squeeze to a quarter of the block's input
//! channels, SiLU, sigmoid gate), batch norms at PyTorch's defaults (torchvision changes them only
//! from B5 up). Convolutions are Kaiming normal (fan out), as torchvision.
//!
//! Omitted: stochastic depth (torchvision drops residual branches with probability rising to 0.2
//! in training). Its effect is a regularizer only; it adds no variables, so weights still load.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layers::{conv, Activation, ConvInit, ConvNormActivation, ConvSpec};

/// `(expansion, kernel, stride, input channels, output channels, layers)` of B0, before scaling.
const B0_STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// torchvision's `_make_divisible(v, 8)`: round to a multiple of 8, never more than 10% down.
fn make_divisible(value: f64) -> i64 {
    const DIVISOR: i64 = 8;
    let rounded = (((value + DIVISOR as f64 / 2.0) as i64) / DIVISOR * DIVISOR).max(DIVISOR);
    if (rounded as f64) < 0.9 * value {
        rounded + DIVISOR
    } else {
        rounded
    }
}

/// Global pool, 1×1 conv down (`fc1`, bias), SiLU, 1×1 conv up (`fc2`, bias), sigmoid gate.
#[derive(Debug)]
struct SqueezeExcitation {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
}

impl SqueezeExcitation {
    fn new(path: nn::Path, channels: i64, squeezed: i64) -> Self {
        let spec = ConvSpec::new(1).with_bias();
        Self {
            fc1: conv(&path / "fc1", channels, squeezed, spec, ConvInit::FanOut),
            fc2: conv(&path / "fc2", squeezed, channels, spec, ConvInit::FanOut),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let pooled = xs.mean_dim(&[2i64, 3][..], true, xs.kind());
        let scale = self.fc2.forward(&self.fc1.forward(&pooled).silu()).sigmoid();
        xs * scale
    }
}

/// Mobile inverted bottleneck: expand (1×1, unless the ratio is 1), depthwise k×k,
/// squeeze-excitation, project (1×1, linear); residual when stride 1 and channels match.
#[derive(Debug)]
struct MBConv {
    expand: Option<ConvNormActivation>,
    depthwise: ConvNormActivation,
    squeeze_excitation: SqueezeExcitation,
    project: ConvNormActivation,
    residual: bool,
}

impl MBConv {
    fn new(path: nn::Path, expansion: i64, kernel: i64, stride: i64, c_in: i64, c_out: i64) -> Self {
        let path = &path / "block";
        let expanded = make_divisible((c_in * expansion) as f64);
        let mut index = 0;
        let mut next = || {
            index += 1;
            &path / (index - 1)
        };
        let expand = (expanded != c_in)
            .then(|| ConvNormActivation::new(next(), c_in, expanded, ConvSpec::new(1), Activation::Silu));
        let depthwise_spec = ConvSpec::new(kernel).stride(stride).groups(expanded);
        let depthwise = ConvNormActivation::new(next(), expanded, expanded, depthwise_spec, Activation::Silu);
        let squeeze_excitation = SqueezeExcitation::new(next(), expanded, (c_in / 4).max(1));
        let project =
            ConvNormActivation::new(next(), expanded, c_out, ConvSpec::new(1), Activation::Identity);
        Self { expand, depthwise, squeeze_excitation, project, residual: stride == 1 && c_in == c_out }
    }
}

impl ModuleT for MBConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = match &self.expand {
            Some(expand) => expand.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let ys = self.depthwise.forward_t(&ys, train);
        let ys = self.project.forward_t(&self.squeeze_excitation.forward(&ys), train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// The trunk; output stride 32.
#[derive(Debug)]
pub(crate) struct EfficientNet {
    stem: ConvNormActivation,
    blocks: Vec<MBConv>,
    last: ConvNormActivation,
    out_channels: i64,
}

impl EfficientNet {
    pub fn new(path: &nn::Path, width: f64, depth: f64) -> Self {
        let features = path / "features";
        let channels = |c: i64| make_divisible(c as f64 * width);
        let stem_channels = channels(B0_STAGES[0].3);
        let stem = ConvNormActivation::new(
            &features / 0,
            3,
            stem_channels,
            ConvSpec::new(3).stride(2),
            Activation::Silu,
        );
        let mut blocks = Vec::new();
        let mut c_in = stem_channels;
        for (stage, &(expansion, kernel, stride, _, c_out, layers)) in B0_STAGES.iter().enumerate() {
            let c_out = channels(c_out);
            let layers = (layers as f64 * depth).ceil() as i64;
            let stage_path = &features / (stage + 1);
            for b in 0..layers {
                let stride = if b == 0 { stride } else { 1 };
                blocks.push(MBConv::new(&stage_path / b, expansion, kernel, stride, c_in, c_out));
                c_in = c_out;
            }
        }
        let out_channels = 4 * c_in;
        let last = ConvNormActivation::new(
            &features / (B0_STAGES.len() + 1),
            c_in,
            out_channels,
            ConvSpec::new(1),
            Activation::Silu,
        );
        Self { stem, blocks, last, out_channels }
    }

    pub fn efficientnet_b2(path: &nn::Path) -> Self {
        Self::new(path, 1.1, 1.2)
    }

    pub fn out_channels(&self) -> i64 {
        self.out_channels
    }
}

impl ModuleT for EfficientNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.stem.forward_t(xs, train);
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        self.last.forward_t(&ys, train)
    }
}
