//! A small demonstration of SAL: a small network learns a generated 4-class problem, with a
//! learning rate that makes it plateau; the per-epoch stress trace is printed as a table.
//!
//! `cargo run --release -p sal --example stress_trace`

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use sal::{EpochSums, SalController, SingleRank, StressConfig};
use tch::nn::{self, Module, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

/// A trace long enough to show warm-up, interventions and recoveries, and the last epoch.
const EPOCHS: u32 = 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let classes = 4;
    let samples = 2048;
    // Four Gaussian blobs in 16 dimensions, overlapping enough that accuracy plateaus below 100%.
    let labels = Tensor::randint(classes, [samples], (Kind::Int64, Device::Cpu));
    let centers = Tensor::randn([classes, 16], (Kind::Float, Device::Cpu));
    let x = centers.index_select(0, &labels) + Tensor::randn([samples, 16], (Kind::Float, Device::Cpu)) * 1.5;

    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let model = nn::seq()
        .add(nn::linear(&root / "fc1", 16, 64, Default::default()))
        .add_fn(|t| t.relu())
        .add(nn::linear(&root / "fc2", 64, 32, Default::default()))
        .add_fn(|t| t.relu())
        .add(nn::linear(&root / "fc3", 32, classes, Default::default()));
    let mut optimizer = nn::Adam::default().build(&vs, 1e-3)?;
    let config = StressConfig { warmup_epochs: 5, ..StressConfig::default() };
    let mut sal = SalController::new(config, 0, EPOCHS)?;

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "epoch",
        "train loss",
        "train acc",
        "S_g",
        "S_g after",
        "decided",
        "applied",
        "noise sigma",
    ]);
    for _ in 0..EPOCHS {
        let mut sums = EpochSums::default();
        for (xb, yb) in tch::data::Iter2::new(&x, &labels, 64).shuffle() {
            let logits = model.forward(&xb);
            let loss = logits.cross_entropy_for_logits(&yb);
            optimizer.backward_step(&loss);
            let n = yb.size()[0] as f64;
            sums.loss_sum += loss.double_value(&[]) * n;
            sums.correct += logits.argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64).double_value(&[]);
            sums.samples += n;
        }
        let metrics = sums.global_metrics(&SingleRank)?;
        let r = sal.end_epoch(metrics, &vs, &[])?;
        table.add_row([
            r.epoch.to_string(),
            format!("{:.4}", r.loss),
            format!("{:.4}", r.accuracy),
            format!("{:.4}", r.stress),
            format!("{:.4}", r.stress_after),
            format!("{:?}", r.decided),
            format!("{:?}", r.applied),
            if r.noise_sigma > 0.0 { format!("{:.2e}", r.noise_sigma) } else { "-".into() },
        ]);
    }
    println!("{table}");
    Ok(())
}
