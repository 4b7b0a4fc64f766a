//! How much disk a sweep's checkpoints take in the state dir, estimated without libtorch.
//!
//! A checkpoint (`worker/src/train/checkpoint.rs`) is a safetensors file holding every model
//! variable (trainable parameters and batch-norm statistics, f32), the optimizer's state tensors,
//! and, in a SAL trial while a plastic deformation awaits its verdict, a second copy of both (the
//! yield point); then a JSON header and the trial's history. The counts come from
//! [`MODEL_SIZES`], a table that `tests/tests/model_sizes.rs` generates from the real models and
//! optimizers and compares with this committed file, so that it cannot drift from the code.
//!
//! In the state dir a running trial has one checkpoint, and two for a moment while a new upload
//! replaces the old one (the old file is removed once the new row is committed); a trial that
//! has ended keeps none. A sweep's peak is therefore the largest trials' double checkpoints
//! times the trials that run at once.

use std::collections::HashMap;

use common::{Head, TrialSpec};

/// Parameter and tensor counts per architecture and head, and optimizer state per parameter.
pub const MODEL_SIZES: &str = include_str!("model_sizes.txt");

/// Bytes of a model variable's or an optimizer state's element (all are f32).
pub const ELEMENT_BYTES: u64 = 4;
/// A tensor's entry in the safetensors header (name, dtype, shape, offsets), at most.
pub const HEADER_BYTES_PER_TENSOR: u64 = 192;
/// The JSON metadata: the trial, SAL's stress state, and one history row per epoch, at most.
pub const META_BYTES: u64 = 4096;
pub const META_BYTES_PER_EPOCH: u64 = 512;

/// Classes assumed for a dataset whose class count only its files tell (`image_folder`):
/// ImageNet's, more than any dataset of the paper. The head's share is small anyway.
pub const ASSUMED_CLASSES: u64 = 1000;

/// One architecture with one head: its variables as a function of the class count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSize {
    /// Trainable parameters: `params + params_per_class × classes`.
    pub params: u64,
    pub params_per_class: u64,
    /// Non-trainable variables (batch-norm running statistics).
    pub buffers: u64,
    /// Variables (tensors) in all, and how many of them are trainable.
    pub tensors: u64,
    pub trainable_tensors: u64,
}

impl ModelSize {
    pub fn trainable(&self, classes: u64) -> u64 {
        self.params + self.params_per_class * classes
    }
}

/// An optimizer's state: `per_param` f32 copies of every trainable parameter, plus fixed tensors
/// (a step counter, Nadam's momentum product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptimizerState {
    pub per_param: u64,
    pub fixed_bytes: u64,
    pub fixed_tensors: u64,
}

/// The parsed [`MODEL_SIZES`] table.
#[derive(Debug, Clone, Default)]
pub struct SizeTable {
    models: HashMap<(String, String), ModelSize>,
    optimizers: HashMap<String, OptimizerState>,
}

/// Bytes and tensor count of a checkpoint's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Payload {
    pub bytes: u64,
    pub tensors: u64,
}

pub fn head_name(head: Head) -> &'static str {
    match head {
        Head::Paper => "paper",
        Head::Linear => "linear",
    }
}

impl SizeTable {
    /// The committed table.
    pub fn committed() -> SizeTable {
        // Checked by this module's tests; a broken table fails them, not a run.
        SizeTable::parse(MODEL_SIZES).unwrap_or_default()
    }

    /// Lines of `model ARCH HEAD params params_per_class buffers tensors trainable_tensors` and
    /// `optimizer NAME per_param fixed_bytes fixed_tensors`; `#` starts a comment.
    pub fn parse(text: &str) -> Result<SizeTable, String> {
        let mut table = SizeTable::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| format!("model_sizes.txt:{}: {why}: `{line}`", index + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let numbers = |from: usize| -> Result<Vec<u64>, String> {
                fields[from..].iter().map(|f| f.parse::<u64>().map_err(|_| bad("not a count"))).collect()
            };
            match fields.as_slice() {
                ["model", architecture, head, ..] if fields.len() == 8 => {
                    let n = numbers(3)?;
                    let size = ModelSize {
                        params: n[0],
                        params_per_class: n[1],
                        buffers: n[2],
                        tensors: n[3],
                        trainable_tensors: n[4],
                    };
                    table.models.insert((architecture.to_string(), head.to_string()), size);
                }
                ["optimizer", name, ..] if fields.len() == 5 => {
                    let n = numbers(2)?;
                    let state = OptimizerState { per_param: n[0], fixed_bytes: n[1], fixed_tensors: n[2] };
                    table.optimizers.insert(name.to_string(), state);
                }
                _ => return Err(bad("expected `model ARCH HEAD` and 5 counts, or `optimizer NAME` and 3")),
            }
        }
        Ok(table)
    }

    pub fn model(&self, architecture: &str, head: Head) -> Option<ModelSize> {
        self.models.get(&(architecture.to_string(), head_name(head).to_string())).copied()
    }

    pub fn optimizer(&self, name: &str) -> Option<OptimizerState> {
        self.optimizers.get(name).copied()
    }

    /// The model's variables and the optimizer's state, once (no yield point).
    pub fn payload(&self, architecture: &str, head: Head, classes: u64, optimizer: &str) -> Option<Payload> {
        let model = self.model(architecture, head)?;
        let state = self.optimizer(optimizer)?;
        let trainable = model.trainable(classes);
        let elements = trainable + model.buffers + state.per_param * trainable;
        Some(Payload {
            bytes: elements * ELEMENT_BYTES + state.fixed_bytes,
            tensors: model.tensors + state.per_param * model.trainable_tensors + state.fixed_tensors,
        })
    }

    /// An upper bound on one checkpoint file of `spec`; `None` for an architecture or optimizer
    /// the table does not know (the stand-in `noop` writes only its small history).
    pub fn checkpoint_bytes(&self, spec: &TrialSpec) -> Option<u64> {
        let meta = META_BYTES + META_BYTES_PER_EPOCH * u64::from(spec.epochs);
        if spec.architecture == common::names::NOOP {
            return Some(meta);
        }
        let (classes, _) = classes(spec);
        let payload = self.payload(&spec.architecture, spec.head, classes, &spec.optimizer)?;
        // A SAL checkpoint may carry the yield point: the model and the optimizer state again.
        let copies = if spec.method.may_deform() { 2 } else { 1 };
        Some(copies * (payload.bytes + payload.tensors * HEADER_BYTES_PER_TENSOR) + meta)
    }
}

/// A dataset's class count as the sweep file tells it: the `classes` option, or the count fixed
/// by the format; `false` when it is assumed ([`ASSUMED_CLASSES`]).
pub fn classes(spec: &TrialSpec) -> (u64, bool) {
    if let Some(classes) = spec.dataset.options.get("classes").and_then(serde_json::Value::as_u64) {
        return (classes, true);
    }
    match spec.dataset.format.as_str() {
        // Imagenette and ImageWoof have 10 classes each; the synthetic set defaults to 10.
        "synthetic" | "imagenette" | "eurosat" | "cifar10_bin" | "corel1k" => (10, true),
        "tiny_imagenet" => (200, true),
        "pacs" => (7, true),
        _ => (ASSUMED_CLASSES, false),
    }
}

/// `bytes` in the largest binary unit that keeps it above 1.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::Method;

    #[test]
    fn the_committed_table_knows_every_architecture_head_and_optimizer() {
        let table = SizeTable::parse(MODEL_SIZES).unwrap();
        for architecture in common::names::ARCHITECTURES {
            for head in [Head::Paper, Head::Linear] {
                let model = table.model(architecture, head);
                assert!(model.is_some_and(|m| m.params > 0 && m.params_per_class > 0), "{architecture}");
            }
        }
        for optimizer in common::names::OPTIMIZERS {
            assert!(table.optimizer(optimizer).is_some(), "{optimizer}");
        }
    }

    #[test]
    fn a_bad_line_is_refused_with_its_line_number() {
        let error = SizeTable::parse("# header\nmodel resnet50 paper 1 2 x 4 5\n").unwrap_err();
        assert!(error.starts_with("model_sizes.txt:2: not a count"), "{error}");
        let error = SizeTable::parse("optimizer adam 2\n").unwrap_err();
        assert!(error.starts_with("model_sizes.txt:1: expected"), "{error}");
    }

    #[test]
    fn a_sal_checkpoint_may_hold_the_model_twice() {
        let table = SizeTable::parse("model m paper 1000 10 100 5 3\noptimizer adam 2 16 2\n").unwrap();
        let payload = table.payload("m", Head::Paper, 10, "adam").unwrap();
        // 1100 trainable, 100 buffers, 2 × 1100 moments: 3400 f32 and a 16-byte counter.
        assert_eq!(payload, Payload { bytes: 3400 * 4 + 16, tensors: 5 + 2 * 3 + 2 });
        let spec = |method| TrialSpec {
            architecture: "m".into(),
            optimizer: "adam".into(),
            dataset: common::DatasetSpec {
                name: "d".into(),
                format: "synthetic".into(),
                root: None,
                options: Default::default(),
            },
            resolution: 32,
            method,
            sal: Default::default(),
            epochs: 10,
            batch_size: 1,
            learning_rate: 0.1,
            seed: 1,
            head: Head::Paper,
            pretrained: None,
            precision: Default::default(),
            channels_last: false,
            cudnn_benchmark: false,
            flatness: None,
            cpu_threads: None,
            deterministic: false,
            sam_rho: None,
            deformations: None,
        };
        let meta = META_BYTES + 10 * META_BYTES_PER_EPOCH;
        let once = payload.bytes + payload.tensors * HEADER_BYTES_PER_TENSOR;
        assert_eq!(table.checkpoint_bytes(&spec(Method::Baseline)), Some(once + meta));
        assert_eq!(table.checkpoint_bytes(&spec(Method::Sal)), Some(2 * once + meta));
    }

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB");
    }
}
