//! The `worker` binary: `worker --coordinator URL` serves a coordinator's sweep on this node's
//! devices; `worker train --trial FILE` runs one trial without a coordinator.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Trains Stress-Aware Learning trials on this node's devices.
///
/// With `--coordinator URL` (the default mode) the worker registers with a coordinator, leases
/// trials, runs them, reports every epoch and uploads a checkpoint every epoch, until the sweep is
/// done. SIGTERM or ctrl-c: the running trial stops, its lease is handed back, the worker exits 0.
///
/// `worker train --trial FILE` trains one trial and prints its results.
#[derive(Parser, Debug)]
#[command(name = "worker", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: cli::serve::ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train one trial from a YAML file and print its results.
    ///
    /// The trial file holds a trial definition: architecture, optimizer, dataset (name, format,
    /// root, options), resolution, method, sal overrides, epochs, batch_size, learning_rate,
    /// seed, head, pretrained; optional cpu_threads, deterministic, flatness, sam_rho (method
    /// sam) and deformations (method shrink_perturb_random, which needs it). See
    /// sweeps/trials/synthetic-small.yaml.
    #[command(after_help = "Methods: baseline, sal, sal_stress_only, sal_noise_only, sal_plastic_only, \
                            shrink_perturb_random, sam, baseline_2x.\n\
                            Dataset formats: synthetic, image_folder, imagenette, tiny_imagenet, eurosat, pacs, \
                            cifar10_bin, corel1k.\n\
                            Exit codes: 0 finished (completed or diverged; see the result's status), 1 failure, \
                            2 bad trial file, dataset or checkpoint, 130 interrupted (Ctrl-C).")]
    Train(cli::train::TrainArgs),
    /// Runs one trial for the node agent (not meant for users): events as JSON lines on stdout,
    /// stops when stdin closes.
    #[command(hide = true)]
    TrialProcess {
        /// The job the agent wrote.
        #[arg(long, value_name = "FILE")]
        job: std::path::PathBuf,
    },
}

/// Logs go to stderr; `RUST_LOG` overrides the level each mode defaults to.
fn init_logging(default_level: &str) {
    common::logging::init(default_level);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::TrialProcess { job }) => {
            // Its log is the agent's to keep: info and above, on stderr.
            init_logging("info");
            ExitCode::from(worker::run::child_process::main(&job))
        }
        Some(Command::Train(args)) => {
            // The progress bar and the epoch lines say what happens; logs only for trouble.
            init_logging("warn");
            cli::train::run(&args)
        }
        None => {
            init_logging("info");
            cli::serve::run(cli.serve)
        }
    }
}
