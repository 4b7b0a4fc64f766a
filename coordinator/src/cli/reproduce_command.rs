//! `coordinator reproduce TRIAL`: one trial of the store rerun here and compared bit for bit
//! ([`coordinator::reproduce`]); exit 0 only when the rerun is bit-identical.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use coordinator::reproduce::{self, ReproduceError};

use super::USAGE;

#[derive(Args, Debug)]
pub(crate) struct ReproduceArgs {
    /// The trial's id, or enough of its first characters to name one trial.
    pub(crate) trial: String,
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// The `worker` binary (default: the one beside this executable).
    #[arg(long, value_name = "FILE")]
    pub(crate) worker_bin: Option<PathBuf>,
    /// Where the rerun's trial file, result and dataset cache go (default: STATE_DIR/reproduce).
    #[arg(long, value_name = "DIR")]
    pub(crate) work_dir: Option<PathBuf>,
}

pub(crate) fn reproduce_command(args: ReproduceArgs) -> anyhow::Result<ExitCode> {
    let options = reproduce::RerunOptions {
        worker_bin: args.worker_bin.unwrap_or_else(coordinator::server::local_workers::default_worker_bin),
        work_dir: args.work_dir.unwrap_or_else(|| args.state_dir.join("reproduce")),
    };
    match reproduce::reproduce(&args.state_dir, &args.trial, &options) {
        Ok(outcome) => {
            out!("{}", outcome.text.trim_end());
            Ok(if outcome.identical { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(e @ (ReproduceError::NoSuchTrial(_) | ReproduceError::NoResult { .. })) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(USAGE))
        }
        Err(e) => Err(e.into()),
    }
}
