//! The `coordinator` binary: runs a sweep (serving workers, or with local workers), shows its
//! status, prints reports.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::backup_command::{backup_command, BackupArgs};
use cli::dashboard_command::{dashboard_command, DashboardArgs};
use cli::export_command::{export_command, ExportArgs};
use cli::report_command::{report_command, ReportArgs};
use cli::reproduce_command::{reproduce_command, ReproduceArgs};
use cli::run_command::{run, RunArgs};
use cli::show_command::{show_command, ShowArgs};
use cli::status_command::{status, StatusArgs};

/// Runs the Stress-Aware Learning grid: expands a sweep file into trials, leases them to workers
/// over gRPC, keeps every result in a state dir, and prints the tables.
///
/// Examples:
///   coordinator --sweep sweeps/smoke.yaml --local --workers 2     # everything on this machine
///   SAL_TOKEN=... coordinator --sweep sweeps/paper.yaml --data-root /data   # then `worker --coordinator URL` per node
///   SAL_TOKEN=... coordinator status --coordinator http://head:50051
///   coordinator report --state-dir sal-state --by architecture,method --format csv
///   coordinator report --table 1 --paper ../shared/paper/tables.yaml --format latex
///   coordinator report --format html --out report.html --plots sal-state/plots
///   coordinator show 3fa2c1   # one trial, by the start of its id
///   coordinator reproduce 3fa2c1   # rerun it here, compare bit for bit (exit 0 only if identical)
///   coordinator backup --state-dir sal-state --to sal-state.backup.sqlite   # while it runs, too
///   coordinator dashboard --state-dir sal-state   # the live page, from a login node too
///   coordinator export tensorboard --state-dir sal-state --out tb   # then: tensorboard --logdir tb
#[derive(Parser, Debug)]
#[command(name = "coordinator", version, about, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Progress of a sweep: trials done / running / pending / failed, workers, ETA.
    Status(StatusArgs),
    /// Tables of the results: top-1, top-5, training time, memory, inference time, by any axes;
    /// paired statistics; the paper's tables; plots; one HTML page.
    Report(ReportArgs),
    /// One trial: its spec, what produced it, history with SAL's actions, per-class table, where
    /// its plots are.
    Show(ShowArgs),
    /// Reruns one trial of the store from its stored definition in a fresh `worker train` process
    /// on this machine and compares epoch by epoch: bit-identical (exit 0), or the first epoch and
    /// metric that differ (exit 1); the two manifests side by side.
    Reproduce(ReproduceArgs),
    /// A consistent copy of a state dir's store, even while its coordinator runs (SQLite's online
    /// backup), checked before it is called done; says how to restore from it.
    Backup(BackupArgs),
    /// The live dashboard over a state dir whose coordinator runs elsewhere (read-only), or
    /// that has finished: trials, curves, comparisons, the report's tables, /metrics.
    Dashboard(DashboardArgs),
    /// The trials of a sweep in another tool's format: `export tensorboard` writes a TensorBoard
    /// logdir (a run per trial: every epoch's scalars, SAL's interventions, the HParams dashboard's
    /// hyperparameters and final metrics).
    Export(ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // With a progress bar on the terminal, per-trial logs would only scroll it away.
    let quiet = cli.run.local && std::io::stderr().is_terminal();
    init_logging(if quiet { "warn" } else { "info" });
    let outcome = match cli.command {
        Some(Command::Status(args)) => status(args),
        Some(Command::Report(args)) => report_command(args),
        Some(Command::Show(args)) => show_command(args),
        Some(Command::Reproduce(args)) => reproduce_command(args),
        Some(Command::Backup(args)) => backup_command(args),
        Some(Command::Dashboard(args)) => dashboard_command(args),
        Some(Command::Export(args)) => export_command(args),
        None => run(cli.run),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    common::logging::init(default);
}
