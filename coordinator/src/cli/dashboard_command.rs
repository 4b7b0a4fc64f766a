//! `coordinator dashboard --state-dir DIR`: the live dashboard over a state dir that a coordinator
//! runs elsewhere (read beside it: the store is read-only here) or that has finished. Serves until
//! ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use coordinator::dashboard::{self, DashboardOptions};
use coordinator::server::auth::{self, TOKEN_ENV};
use coordinator::tls::ServerTlsFiles;

use super::runtime;

#[derive(Args, Debug)]
pub(crate) struct DashboardArgs {
    /// The state dir to show (its coordinator may be running).
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// The sweep to show, when the state dir holds several.
    #[arg(long, value_name = "NAME")]
    pub(crate) sweep: Option<String>,
    /// Where to serve the page (port 0: any free port). Off loopback, the token is required.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
    /// The token a browser must give off loopback, from this file (mode 600); default: $SAL_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Serve over HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

pub(crate) fn dashboard_command(args: DashboardArgs) -> anyhow::Result<ExitCode> {
    let token = auth::read_token(args.token_file.as_deref(), TOKEN_ENV)?;
    let options = DashboardOptions {
        state_dir: args.state_dir,
        sweep: args.sweep,
        listen: args.listen,
        token,
        tls: ServerTlsFiles { cert: args.tls_cert, key: args.tls_key, client_ca: None },
        rpc: Default::default(),
    };
    runtime()?.block_on(async {
        let served = dashboard::start(options, None).await?;
        out!("dashboard on {}", served.url);
        common::shutdown::shutdown_signal().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
