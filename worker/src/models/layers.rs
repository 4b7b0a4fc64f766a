//! Building blocks shared by the trunks: convolutions and batch norms initialized as torchvision
//! initializes them, a conv-bn-activation unit, and the classification heads.

use common::trial::Head;
use tch::nn::{self, init, Module, ModuleT};
use tch::Tensor;

/// How a trunk's convolutions are initialized: Kaiming normal (He et al.) with the fan each
/// torchvision model uses. ResNet, MobileNetV2 and EfficientNet use `fan_out`; DenseNet uses
/// `kaiming_normal_`'s default, `fan_in`. The ReLU gain √2 in both cases.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConvInit {
    FanIn,
    FanOut,
}

impl ConvInit {
    fn init(self) -> nn::Init {
        let fan = match self {
            ConvInit::FanIn => init::FanInOut::FanIn,
            ConvInit::FanOut => init::FanInOut::FanOut,
        };
        nn::Init::Kaiming {
            dist: init::NormalOrUniform::Normal,
            fan,
            non_linearity: init::NonLinearity::ReLU,
        }
    }
}

/// A convolution's shape: kernel, stride, padding, groups, and whether it has a bias.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSpec {
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub bias: bool,
}

impl ConvSpec {
    /// A `kernel`×`kernel` convolution without bias, padded to keep the size at stride 1
    /// (torchvision's `(kernel - 1) / 2`).
    pub fn new(kernel: i64) -> Self {
        Self { kernel, stride: 1, padding: (kernel - 1) / 2, groups: 1, bias: false }
    }

    pub fn stride(self, stride: i64) -> Self {
        Self { stride, ..self }
    }

    pub fn padding(self, padding: i64) -> Self {
        Self { padding, ..self }
    }

    pub fn groups(self, groups: i64) -> Self {
        Self { groups, ..self }
    }

    pub fn with_bias(self) -> Self {
        Self { bias: true, ..self }
    }
}

/// A convolution with `spec`'s shape; weights Kaiming normal, bias (if any) zero.
pub(crate) fn conv(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec, init: ConvInit) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride: spec.stride,
        padding: spec.padding,
        groups: spec.groups,
        bias: spec.bias,
        ws_init: init.init(),
        bs_init: nn::Init::Const(0.),
        ..Default::default()
    };
    nn::conv2d(path, c_in, c_out, spec.kernel, config)
}

/// Batch-norm constants. `momentum` is PyTorch's (the weight of the new batch statistic); a Keras
/// momentum `m` is PyTorch's `1 - m`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormSpec {
    pub eps: f64,
    pub momentum: f64,
}

impl NormSpec {
    /// torchvision's (PyTorch's defaults).
    pub const TORCHVISION: NormSpec = NormSpec { eps: 1e-5, momentum: 0.1 };
    /// Keras applications' ResNetV2: `epsilon=1.001e-5`, Keras' default momentum 0.99.
    pub const KERAS_RESNET: NormSpec = NormSpec { eps: 1.001e-5, momentum: 0.01 };
}

/// A batch norm with scale 1 and shift 0 (torchvision's init; tch's default scale is uniform);
/// the running statistics are non-trainable variables of the var store.
pub(crate) fn batch_norm(path: nn::Path, channels: i64, spec: NormSpec) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        eps: spec.eps,
        momentum: spec.momentum,
        ws_init: nn::Init::Const(1.),
        bs_init: nn::Init::Const(0.),
        ..Default::default()
    };
    nn::batch_norm2d(path, channels, config)
}

/// The activations the trunks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Relu6,
    Silu,
    /// None: a linear projection (MobileNetV2's and EfficientNet's bottleneck outputs).
    Identity,
}

impl Activation {
    /// In place, as torchvision's `Conv2dNormActivation` (`inplace=True`): `xs` is a batch norm's
    /// fresh output, and one activation-sized allocation less per unit counts at 64 px and up.
    pub fn apply(self, mut xs: Tensor) -> Tensor {
        match self {
            Activation::Relu6 => xs.relu6_(),
            Activation::Silu => xs.silu_(),
            Activation::Identity => xs,
        }
    }
}

/// torchvision's `Conv2dNormActivation`: convolution (variable `0`), batch norm (`1`), activation.
#[derive(Debug)]
pub(crate) struct ConvNormActivation {
    conv: nn::Conv2D,
    norm: nn::BatchNorm,
    activation: Activation,
}

impl ConvNormActivation {
    pub fn new(path: nn::Path, c_in: i64, c_out: i64, spec: ConvSpec, activation: Activation) -> Self {
        Self {
            conv: conv(&path / "0", c_in, c_out, spec, ConvInit::FanOut),
            norm: batch_norm(&path / "1", c_out, NormSpec::TORCHVISION),
            activation,
        }
    }
}

impl ModuleT for ConvNormActivation {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.activation.apply(self.norm.forward_t(&self.conv.forward(xs), train))
    }
}

/// Global average pooling: `[N, C, H, W]` to `[N, C]`, whatever H and W are.
pub(crate) fn global_average_pool(xs: &Tensor) -> Tensor {
    xs.mean_dim(&[2i64, 3][..], false, xs.kind())
}

/// The classification head on a trunk's feature map (variables under `head`):
/// - `paper` (section 3.1): GAP, Linear 512 (`fc1`), ReLU, Dropout 0.5, Linear 128 (`fc2`), ReLU,
///   Linear classes (`fc3`);
/// - `linear`: GAP, Linear classes (`fc`).
///
/// Linear layers keep PyTorch's default init (Kaiming uniform weights, uniform biases).
#[derive(Debug)]
pub(crate) struct ClassifierHead {
    layers: Vec<nn::Linear>,
}

impl ClassifierHead {
    pub fn new(path: nn::Path, head: Head, features: i64, classes: i64) -> Self {
        let layers = match head {
            Head::Paper => vec![
                nn::linear(&path / "fc1", features, 512, Default::default()),
                nn::linear(&path / "fc2", 512, 128, Default::default()),
                nn::linear(&path / "fc3", 128, classes, Default::default()),
            ],
            Head::Linear => vec![nn::linear(&path / "fc", features, classes, Default::default())],
        };
        Self { layers }
    }
}

impl ModuleT for ClassifierHead {
    fn forward_t(&self, feature_map: &Tensor, train: bool) -> Tensor {
        let mut xs = global_average_pool(feature_map);
        let last = self.layers.len() - 1;
        for (i, linear) in self.layers.iter().enumerate() {
            xs = linear.forward(&xs);
            if i < last {
                xs = xs.relu_();
                if i == 0 {
                    xs = super::dropout::dropout(&xs, 0.5, train);
                }
            }
        }
        xs
    }
}

/// How a trunk expects its input, given images in [0, 1]: the scaling its pretrained weights were
/// trained with, applied inside the model so that the data pipeline stays the same for all.
#[derive(Debug)]
pub(crate) enum InputScaling {
    /// As is (the small CNN, trained from scratch only).
    Unit,
    /// torchvision: per-channel ImageNet mean and standard deviation.
    ImageNet { mean: Tensor, std: Tensor },
    /// Keras' `preprocess_input` in "tf" mode (ResNetV2): to [-1, 1].
    Symmetric,
}

impl InputScaling {
    pub fn imagenet(device: tch::Device) -> Self {
        let channels = |values: [f32; 3]| Tensor::from_slice(&values).reshape([1, 3, 1, 1]).to_device(device);
        InputScaling::ImageNet { mean: channels([0.485, 0.456, 0.406]), std: channels([0.229, 0.224, 0.225]) }
    }

    pub fn apply(&self, xs: &Tensor) -> Tensor {
        match self {
            InputScaling::Unit => xs.shallow_clone(),
            // A no-op move unless the var store was moved to another device after `build`.
            InputScaling::ImageNet { mean, std } => {
                (xs - mean.to_device(xs.device())) / std.to_device(xs.device())
            }
            InputScaling::Symmetric => xs * 2.0 - 1.0,
        }
    }
}

/// A trunk (a feature extractor ending in a `[N, C, h, w]` map) with its input scaling and head.
#[derive(Debug)]
pub(crate) struct Classifier {
    scaling: InputScaling,
    trunk: Box<dyn ModuleT>,
    head: ClassifierHead,
}

impl Classifier {
    pub fn new(scaling: InputScaling, trunk: Box<dyn ModuleT>, head: ClassifierHead) -> Self {
        Self { scaling, trunk, head }
    }
}

impl ModuleT for Classifier {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let features = self.trunk.forward_t(&self.scaling.apply(xs), train);
        self.head.forward_t(&features, train)
    }
}

/// A trunk with its input scaling and no head: images in [0, 1] to the feature map.
#[derive(Debug)]
pub(crate) struct Features {
    pub scaling: InputScaling,
    pub trunk: Box<dyn ModuleT>,
}

impl ModuleT for Features {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.trunk.forward_t(&self.scaling.apply(xs), train)
    }
}
