//! `sal-data`: the `data` commands on their own, for a login or storage node that has neither
//! libtorch nor a GPU. The same commands are `coordinator data ...`.

use std::process::ExitCode;

use clap::Parser;
use datasets::cli::{self, DataCommand};

/// Gets and checks the paper's datasets and pretrained trunks (see README, "Getting the data").
#[derive(Parser, Debug)]
#[command(name = "sal-data", version, about)]
struct Cli {
    #[command(subcommand)]
    command: DataCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
