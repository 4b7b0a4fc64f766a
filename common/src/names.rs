//! The names a trial may use, known to both sides: the coordinator refuses a sweep that names
//! anything else before any worker sees it.

/// Every architecture a worker can build (`worker::models::build`).
pub const ARCHITECTURES: &[&str] = &[
    "densenet201",
    "densenet121",
    "mobilenet_v2",
    "resnet50",
    "efficientnet_b2",
    "resnet50_v2",
    "resnet18",
    "small_cnn",
];

/// The stand-in architecture: trains nothing, reports made-up epochs (orchestration tests and
/// benchmarks). Its trials run inside the node agent, without a trial process.
pub const NOOP: &str = "noop";

/// Every optimizer a worker can build (`worker::optim::build`).
pub const OPTIMIZERS: &[&str] = &["adam", "adamax", "nadam", "rmsprop", "sgd"];
