use clap::Parser;

/// Trains Stress-Aware Learning trials on this node's devices.
#[derive(Parser, Debug)]
#[command(name = "worker", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
