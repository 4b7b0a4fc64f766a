//! `coordinator status`: a sweep's progress, from a running coordinator or a state dir.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coordinator::report::status_view;
use coordinator::store;

use super::{one_line, runtime, ClientArgs, USAGE};

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Ask a running coordinator (with its token: --token-file, $SAL_TOKEN or $SAL_READ_TOKEN).
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    pub(crate) coordinator: Option<String>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Or read a state dir.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Refresh in place until the sweep is done (with --coordinator).
    #[arg(long, requires = "coordinator")]
    pub(crate) watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub(crate) interval: f64,
}

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = args.coordinator {
        if !(args.interval.is_finite() && args.interval > 0.0) {
            eprintln!("error: --interval must be > 0");
            return Ok(ExitCode::from(USAGE));
        }
        let runtime = runtime()?;
        let remote = args.client.remote(&url)?;
        let ask = || {
            runtime.block_on(async {
                let mut client = remote.connect().await?;
                anyhow::Ok(
                    client
                        .status(proto::pb::StatusRequest {})
                        .await
                        .with_context(|| format!("asking {url}"))?
                        .into_inner(),
                )
            })
        };
        if !args.watch {
            out!("{}", status_view::render(&ask()?).trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        // Refresh in place: clear the screen and draw again, until the sweep is done or Ctrl-C.
        let mut answered = false;
        loop {
            // A coordinator exits by itself once its sweep is done: going away after it answered
            // ends the watch, with the last frame left on screen.
            let status = match ask() {
                Ok(status) => status,
                Err(e) if answered => {
                    eprintln!(
                        "the coordinator stopped answering ({}); above is its last status",
                        one_line(&e)
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => return Err(e),
            };
            answered = true;
            let text = status_view::render(&status);
            if std::io::stdout().is_terminal() {
                out!("\x1b[2J\x1b[H{}", text.trim_end());
            } else {
                out!("{}\n", text.trim_end());
            }
            if status_view::finished(&status) {
                return Ok(ExitCode::SUCCESS);
            }
            let interrupted = runtime.block_on(async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => true,
                    () = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => false,
                }
            });
            if interrupted {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let Some(dir) = args.state_dir else {
        eprintln!("error: give --coordinator URL or --state-dir DIR");
        return Ok(ExitCode::from(USAGE));
    };
    let (_, records) = store::read_records(&dir)?;
    let states: std::collections::HashMap<&str, &str> =
        records.iter().map(|r| (r.id.as_str(), r.state.as_str())).collect();
    // One line per sweep of the state dir (a trial may belong to several).
    for sweep in store::read_sweeps(&dir)? {
        let mut counts = std::collections::BTreeMap::new();
        for (id, _) in &sweep.trials {
            *counts.entry(states.get(id.as_str()).copied().unwrap_or("unknown")).or_insert(0usize) += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
        out!("{}: {} trials: {}", sweep.name, sweep.trials.len(), parts.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
