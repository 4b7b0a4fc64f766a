//! `worker --coordinator URL`: lease trials from a coordinator until the sweep is done.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use worker::agent::{self, ClientConfig};
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
    /// CPU threads this worker's trials may take together (default: every core of this machine): it
    /// leases another trial only while its running trials take fewer. Each CPU rank runs with its
    /// trial's own `cpu_threads` (default 1), never with a share of these, so that a trial's
    /// numbers do not depend on the worker that runs it.
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
    /// Read the coordinator's token from this file (mode 600); default: $SAL_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for the coordinator's certificate (with an https:// URL).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This worker's certificate (PEM), for a coordinator that asks for one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Dataset roots and weights a trial names must lie under this folder (relative ones are
    /// taken there); default: the current folder.
    #[arg(long, env = "SAL_DATA_ROOT", value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Use the coordinator's dataset and weight paths as they come: for the workers a
    /// `coordinator --local` starts itself (it resolved them; it is their parent process).
    #[arg(long, hide = true)]
    trust_coordinator_paths: bool,
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
        (None, Devices::Cuda(ordinals)) => agent::cuda_memory_mb(ordinals),
        (None, Devices::Cpu { .. }) => Vec::new(),
    };
    let token = match agent::credentials::read_token(args.token_file.as_deref()) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("error: --token-file: {e}");
            return ExitCode::from(2);
        }
    };
    let data_root = match std::path::absolute(args.data_root.as_deref().unwrap_or(Path::new("."))) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("error: --data-root: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = ClientConfig::new(url, devices, args.work_dir);
    config.device_memory_mb = device_memory_mb;
    config.credentials =
        agent::Credentials { token, tls_ca: args.tls_ca, tls_identity: args.tls_cert.zip(args.tls_key) };
    config.data_root = (!args.trust_coordinator_paths).then_some(data_root);
    if let Some(id) = args.worker_id {
        config.worker_id = id;
    }
    config.exit_when_done = !args.stay;
    if let Some(threads) = args.cpu_threads {
        config.cpu_threads = threads.max(1);
    }
    config.give_up_after = Duration::from_secs(args.give_up_after);
    // One thread: the agent is one loop and a few I/O tasks (its trials run in processes, no-op
    // trials on threads of their own), and with a thread pool, waking threads across cores was
    // most of what a no-op trial cost the agent in CPU.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent::run(config, agent::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
