//! Speed of the training engine on synthetic data: images per second, SAL's cost over the
//! baseline, and the share of an epoch spent preparing input. `scripts/bench_engine.sh` runs it
//! beside `scripts/bench_pytorch.py` (the same model in PyTorch eager) and prints the ratio.
//!
//! cargo run --release -p worker --example bench_engine -- [--architecture small_cnn]
//!     [--resolution 32] [--batch 64] [--train-size 4096] [--epochs 4] [--gpu N]

use std::collections::BTreeMap;
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use worker::train::Engine;
use worker::{CancelFlag, DatasetSpec, Devices, Head, Method, RunOptions, TrialEvent, TrialSpec};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn number(name: &str, default: &str) -> anyhow::Result<u64> {
    let value = arg(name, default);
    value.parse().map_err(|_| anyhow::anyhow!("{name}: `{value}` is not a number"))
}

fn spec(
    architecture: &str,
    method: Method,
    resolution: u32,
    batch: u32,
    train: u64,
    epochs: u32,
) -> TrialSpec {
    let options: BTreeMap<String, serde_json::Value> =
        [("classes", 10), ("train_size", train), ("val_size", 64)]
            .map(|(k, v)| (k.to_string(), v.into()))
            .into();
    let sal = sal::StressConfig { warmup_epochs: 0, ..Default::default() };
    TrialSpec {
        architecture: architecture.into(),
        optimizer: "sgd".into(),
        dataset: DatasetSpec { name: "synthetic".into(), format: "synthetic".into(), root: None, options },
        resolution,
        method,
        sal,
        epochs,
        batch_size: batch,
        learning_rate: 0.01,
        seed: 1,
        head: Head::Paper,
        pretrained: None,
        precision: Default::default(),
        channels_last: false,
        cudnn_benchmark: false,
    }
}

/// The fastest epoch after the first (warm-up): on a shared machine the minimum is the figure
/// least disturbed by other processes.
fn epoch_seconds(spec: &TrialSpec, options: &RunOptions) -> anyhow::Result<f64> {
    let mut seconds = Vec::new();
    Engine::default().run(spec, options, &mut |event| {
        if let TrialEvent::Epoch(report) = event {
            seconds.push(report.seconds);
        }
    })?;
    Ok(seconds.into_iter().skip(1).fold(f64::NAN, f64::min))
}

fn main() -> anyhow::Result<()> {
    let architecture = arg("--architecture", "small_cnn");
    let resolution = number("--resolution", "32")? as u32;
    let batch = number("--batch", "64")? as u32;
    let train = number("--train-size", "4096")?;
    let epochs = number("--epochs", "4")? as u32;
    let gpu = arg("--gpu", "");
    let (devices, device) = if gpu.is_empty() {
        (Devices::Cpu { ranks: 1 }, Device::Cpu)
    } else {
        let ordinal: usize = gpu.parse()?;
        (Devices::Cuda(vec![ordinal]), Device::Cuda(ordinal))
    };
    let dir = tempfile::tempdir()?;
    let options = RunOptions {
        devices,
        cache_dir: dir.path().join("cache"),
        checkpoint_dir: dir.path().join("checkpoints"),
        resume_from: None,
        checkpoint_every: 0,
        cancel: CancelFlag::default(),
    };

    // Alternated, fastest of each: other processes on a shared machine disturb one run, not all.
    let (mut baseline, mut with_sal) = (f64::NAN, f64::NAN);
    for _ in 0..2 {
        let base = spec(&architecture, Method::Baseline, resolution, batch, train, epochs);
        baseline = baseline.min(epoch_seconds(&base, &options)?);
        let stressed = spec(&architecture, Method::Sal, resolution, batch, train, epochs);
        with_sal = with_sal.min(epoch_seconds(&stressed, &options)?);
    }
    let images = (train / u64::from(batch) * u64::from(batch)) as f64;

    // The input pipeline alone over one epoch: cut batches from the u8 tensor on the device and
    // scale them to floats, as the trainer does.
    let trial = spec(&architecture, Method::Baseline, resolution, batch, train, 1);
    let (data, _) = worker::data::load(&trial.dataset, resolution, &options.cache_dir)?;
    let images_u8 = data.train.images.to_device(device);
    let labels = data.train.labels.to_device(device);
    let order = Tensor::randperm(train as i64, (Kind::Int64, device));
    let mut input_seconds = f64::MAX;
    for _ in 0..10 {
        let started = Instant::now();
        let mut checksum = Tensor::zeros([], (Kind::Float, device));
        for step in 0..(train as i64 / i64::from(batch)) {
            let index = order.narrow(0, step * i64::from(batch), i64::from(batch));
            let x = images_u8.index_select(0, &index).to_kind(Kind::Float) / 255.0;
            let y = labels.index_select(0, &index);
            checksum = checksum + x.narrow(0, 0, 1).sum(Kind::Float) + y.narrow(0, 0, 1).to_kind(Kind::Float);
        }
        let _ = checksum.double_value(&[]);
        input_seconds = input_seconds.min(started.elapsed().as_secs_f64());
    }

    println!(
        "engine architecture={architecture} resolution={resolution} batch={batch} threads={} \
         images_per_s={:.1} baseline_epoch_s={baseline:.3} sal_epoch_s={with_sal:.3} \
         sal_overhead_pct={:.2} input_share_pct={:.2}",
        tch::get_num_threads(),
        images / baseline,
        100.0 * (with_sal - baseline) / baseline,
        100.0 * input_seconds / baseline,
    );
    Ok(())
}
