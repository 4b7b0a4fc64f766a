//! The `coordinator` binary's subcommands, parsed in `main.rs` and run here: [`run_command`] (serve a
//! sweep, or `--dry-run` it), [`status_command`], [`report_command`], [`show_command`], [`reproduce_command`], [`backup_command`], [`dashboard_command`] and [`export_command`]; and what they share: how a
//! client command reaches a running coordinator ([`ClientArgs`]), the exit code of bad input, one-line
//! errors.

/// Prints a line to stdout; a closed stdout (`coordinator report | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub(crate) mod backup_command;
pub(crate) mod dashboard_command;
pub(crate) mod export_command;
pub(crate) mod report_command;
pub(crate) mod reproduce_command;
pub(crate) mod run_command;
pub(crate) mod show_command;
pub(crate) mod status_command;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use coordinator::client::Remote;
use coordinator::server::auth::{self, READ_TOKEN_ENV, TOKEN_ENV};

/// The width to fit terminal tables to: stdout's terminal's (`COLUMNS` overrides it), `None`
/// when stdout is not a terminal (piped output is printed whole). See
/// [`coordinator::report::fit::terminal_width`].
pub(crate) fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal as _;
    let is_terminal = std::io::stdout().is_terminal();
    let columns = std::env::var("COLUMNS").ok();
    // comfy-table asks the terminal (crossterm) when stdout is one.
    let measured = if is_terminal { comfy_table::Table::new().width() } else { None };
    coordinator::report::fit::terminal_width(is_terminal, columns.as_deref(), measured)
}

/// Exit code of a bad sweep file or command line.
pub(crate) const USAGE: u8 = 2;
/// The state dir stayed full for longer than `--full-disk-wait` (sysexits' EX_TEMPFAIL: run the
/// same command again once there is room).
pub(crate) const STATE_DIR_FULL: u8 = 75;

/// How a client command reaches a coordinator.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// Read the token from this file (mode 600); default: $SAL_TOKEN, else $SAL_READ_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for the coordinator's certificate (with an https:// URL).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), for a coordinator that asks for one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl ClientArgs {
    pub(crate) fn remote(&self, url: &str) -> anyhow::Result<Remote> {
        let token = match auth::read_token(self.token_file.as_deref(), TOKEN_ENV)? {
            Some(token) => Some(token),
            None if self.token_file.is_none() => auth::read_token(None, READ_TOKEN_ENV)?,
            None => None,
        };
        Ok(Remote {
            url: url.to_string(),
            token,
            tls_ca: self.tls_ca.clone(),
            tls_identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }
}

/// An error and its causes on one line, each cause once (many errors already name their source).
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
