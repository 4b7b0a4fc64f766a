//! `coordinator backup --state-dir DIR --to FILE`: a consistent copy of a store, even one a
//! running coordinator is writing (SQLite's online backup), checked before it is called done.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use coordinator::store;

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// The state dir whose store to copy (its coordinator may be running).
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// The copy; must not exist. To restore: stop the coordinator, copy FILE over
    /// DIR/coordinator.sqlite, remove DIR/coordinator.sqlite-wal and -shm, start it again.
    #[arg(long, value_name = "FILE")]
    pub(crate) to: PathBuf,
}

pub(crate) fn backup_command(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let report = store::integrity::backup(&args.state_dir, &args.to)?;
    out!(
        "backed up {} ({} trials, {} results) to {} ({}) in {:.1} s",
        args.state_dir.join(store::DB_FILE).display(),
        report.trials,
        report.results,
        report.file.display(),
        common::space::human(report.bytes),
        report.seconds
    );
    out!(
        "to restore: stop the coordinator, copy {} over {}, remove its -wal and -shm files, start it again",
        report.file.display(),
        args.state_dir.join(store::DB_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}
