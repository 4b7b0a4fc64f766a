//! `coordinator export FORMAT`: a state dir's trials in another tool's format; for now
//! `tensorboard` (a logdir: a run per trial, the sweep's HParams experiment).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use coordinator::export::tensorboard::{self, ExportError};

use super::USAGE;

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(subcommand)]
    pub(crate) format: ExportFormat,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ExportFormat {
    /// A TensorBoard logdir: one run per trial (every epoch's scalars, SAL's interventions as
    /// text, the trial's hyperparameters and final metrics for the HParams dashboard) under
    /// OUT/architecture/optimizer/dataset@resolution/method-seedN-ID, and the sweep's HParams
    /// experiment at OUT's top. Writing into an earlier export replaces each run's event file.
    Tensorboard(TensorboardArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TensorboardArgs {
    /// The state dir of a sweep (readable while its coordinator runs).
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// The logdir to write: a new or empty folder, or an earlier export.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// The sweep to export, when the state dir holds several (default: the only one).
    #[arg(long, value_name = "NAME")]
    pub(crate) sweep: Option<String>,
}

pub(crate) fn export_command(args: ExportArgs) -> anyhow::Result<ExitCode> {
    match args.format {
        ExportFormat::Tensorboard(args) => export_tensorboard(args),
    }
}

fn export_tensorboard(args: TensorboardArgs) -> anyhow::Result<ExitCode> {
    let summary = match tensorboard::export(&args.state_dir, &args.out, args.sweep.as_deref()) {
        Ok(summary) => summary,
        Err(e @ (ExportError::Select(_) | ExportError::NotAnExport(_))) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(USAGE));
        }
        Err(e) => return Err(e.into()),
    };
    out!(
        "exported sweep {}: {} trials, {} runs, {} files, {} in {:.1} s to {}",
        summary.sweep,
        summary.trials,
        summary.runs,
        summary.files,
        common::space::human(summary.bytes),
        summary.seconds,
        args.out.display()
    );
    out!("to look at it: tensorboard --logdir {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
