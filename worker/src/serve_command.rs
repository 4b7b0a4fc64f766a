//! `worker --coordinator URL`: lease trials from a coordinator until the sweep is done.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use worker::client::{self, ClientConfig};
use worker::Devices;

/// `worker --coordinator URL [--gpus 0,1 | --cpu-ranks N]`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The coordinator's address, e.g. http://head-node:50051.
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    /// CUDA devices to offer, by ordinal: one trial replica per device.
    #[arg(long, value_delimiter = ',', value_name = "ORDINALS", conflicts_with = "cpu_ranks")]
    gpus: Vec<usize>,
    /// Offer N CPU replicas instead of GPUs (default when no --gpus: 1).
    #[arg(long, value_name = "N")]
    cpu_ranks: Option<usize>,
    /// Dataset caches, checkpoints and downloads go here.
    #[arg(long, default_value = "sal-worker", value_name = "DIR")]
    work_dir: PathBuf,
    /// This worker's name at the coordinator (default: host-pid-nonce).
    #[arg(long)]
    worker_id: Option<String>,
    /// Keep asking for work after the sweep is done.
    #[arg(long)]
    stay: bool,
    /// CPU threads the trials of this worker share (libtorch intra-op threads, split between the
    /// trials that run at once; default: every core of this machine).
    #[arg(long, value_name = "N")]
    cpu_threads: Option<usize>,
    /// Memory of each device in MB, for sweeps with `trials_per_gpu: auto` (default on GPUs: what
    /// the CUDA driver reports, with the `nccl` feature; otherwise unknown, and each trial takes a
    /// whole device). On CPU it makes the ranks stand in for GPUs of this size.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    device_memory_mb: Option<u64>,
    /// Give up when the coordinator is unreachable this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    give_up_after: u64,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let Some(url) = args.coordinator else {
        eprintln!("error: give --coordinator URL (or a subcommand; see --help)");
        return ExitCode::from(2);
    };
    let devices = if args.gpus.is_empty() {
        Devices::Cpu { ranks: args.cpu_ranks.unwrap_or(1).max(1) }
    } else {
        let available = tch::Cuda::device_count().max(0) as usize;
        if let Some(missing) = args.gpus.iter().find(|ordinal| **ordinal >= available) {
            eprintln!("error: --gpus: no CUDA device {missing} on this node ({available} visible)");
            return ExitCode::from(2);
        }
        Devices::Cuda(args.gpus)
    };
    let device_memory_mb = match (args.device_memory_mb, &devices) {
        (Some(mb), devices) => vec![mb; devices.count()],
        (None, Devices::Cuda(ordinals)) => client::cuda_memory_mb(ordinals),
        (None, Devices::Cpu { .. }) => Vec::new(),
    };
    let mut config = ClientConfig::new(url, devices, args.work_dir);
    config.device_memory_mb = device_memory_mb;
    if let Some(id) = args.worker_id {
        config.worker_id = id;
    }
    config.exit_when_done = !args.stay;
    if let Some(threads) = args.cpu_threads {
        config.cpu_threads = threads.max(1);
    }
    config.give_up_after = Duration::from_secs(args.give_up_after);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(client::run(config, client::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
