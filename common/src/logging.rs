//! The one way both binaries log: to stderr, colours only on a terminal, `RUST_LOG` (a level, or
//! `target=level` pairs separated by commas) over each mode's default level.

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Installs the logger; `default` (`info`, `warn`, ...) applies when `RUST_LOG` is unset or does
/// not parse.
pub fn init(default: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .or_else(|| default.parse::<Targets>().ok())
        .unwrap_or_default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();
}
