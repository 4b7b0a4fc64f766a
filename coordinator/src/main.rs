use clap::Parser;

/// Runs a sweep: expands the grid, leases trials to workers, prints reports.
#[derive(Parser, Debug)]
#[command(name = "coordinator", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
