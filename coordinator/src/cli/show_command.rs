//! `coordinator show TRIAL`: one trial, by the start of its id.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use coordinator::report::trial_view;
use coordinator::store;

use super::USAGE;

#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// The trial's id, or enough of its first characters to name one trial.
    pub(crate) trial: String,
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// Where `report --plots DIR` wrote the plots (default: STATE_DIR/plots).
    #[arg(long, value_name = "DIR")]
    pub(crate) plots: Option<PathBuf>,
}

pub(crate) fn show_command(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let (_, records) = store::read_records(&args.state_dir)?;
    let record = match trial_view::find(&records, &args.trial) {
        Ok(record) => record,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    let plots_dir = args.plots.unwrap_or_else(|| args.state_dir.join("plots"));
    out!("{}", trial_view::show(record, &plots_dir).trim_end());
    Ok(ExitCode::SUCCESS)
}
