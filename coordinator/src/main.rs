//! The `coordinator` binary: runs a sweep (serving workers, or with local workers), shows its
//! status, prints reports.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use coordinator::client::Remote;
use coordinator::report::grid::Grid;
use coordinator::report::paper_tables::{self, PaperTables};
use coordinator::report::status_view;
use coordinator::report::{self, html, pivot_grid, plots, stats, trial_view, Axis, Format, PaperFigures};
use coordinator::server::auth::{self, READ_TOKEN_ENV, TOKEN_ENV};
use coordinator::server::tls::ServerTlsFiles;
use coordinator::store::state_lock::StateLockError;
use coordinator::store::{self, TrialRecord};
use coordinator::sweep::spec::{self, LoadOptions};
use coordinator::{serve_sweep, LocalWorkers, RunnerError, Security, ServeOptions};

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
    /// One trial: its spec, history with SAL's actions, per-class table, where its plots are.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The sweep file to run (see sweeps/).
    #[arg(long, value_name = "FILE")]
    sweep: Option<PathBuf>,
    /// Where the store (SQLite) and checkpoints live; rerunning on the same dir resumes.
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    state_dir: PathBuf,
    /// Address to serve workers on (port 0: any free port; the bound address is printed).
    /// Default: 0.0.0.0:50051 with a token, 127.0.0.1:50051 without, 127.0.0.1:0 with --local.
    /// A non-loopback address needs a token (or --insecure).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The worker token (all calls), from this file (mode 600); default: $SAL_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A read-only token (Status and Results), from this file (mode 600); default:
    /// $SAL_READ_TOKEN.
    #[arg(long, value_name = "FILE")]
    read_token_file: Option<PathBuf>,
    /// Serve a non-loopback address without a token: anyone who reaches it can read and change
    /// the sweep.
    #[arg(long)]
    insecure: bool,
    /// TLS: this server's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: the key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Largest gRPC message the server accepts.
    #[arg(long, default_value_t = 16, value_name = "MB")]
    max_message_mb: usize,
    /// Largest checkpoint one upload may carry (default: estimated from each trial's model).
    #[arg(long, value_name = "MB")]
    max_checkpoint_mb: Option<u64>,
    /// Run only a slice of the grid: `axis=value[,value]` (architecture, optimizer, dataset,
    /// resolution, method, seed); repeat to intersect.
    #[arg(long, value_name = "AXIS=VALUES")]
    only: Vec<String>,
    /// Relative dataset roots and weights are taken under this folder.
    #[arg(long, env = "SAL_DATA_ROOT", value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Check that dataset roots exist here (always on with --local).
    #[arg(long)]
    check_data: bool,
    /// Also start worker processes on this machine (CPU ranks), over loopback gRPC.
    #[arg(long)]
    local: bool,
    /// Local workers (with --local).
    #[arg(long, default_value_t = 2, value_name = "N")]
    workers: usize,
    /// CPU replicas per local worker (with --local).
    #[arg(long, default_value_t = 1, value_name = "N")]
    cpu_ranks: usize,
    /// The `worker` binary local mode starts (default: the one beside this coordinator).
    #[arg(long, value_name = "FILE")]
    worker_bin: Option<PathBuf>,
    /// A lease lives this long without news from its worker.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    lease_seconds: f64,
    /// Give failed trials a fresh set of attempts.
    #[arg(long)]
    retry_failed: bool,
    /// Also write the bound address to this file.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// Keep serving after the sweep is done.
    #[arg(long)]
    keep_serving: bool,
    /// Validate the sweep file, count its trials per axis and estimate the checkpoint storage
    /// its state dir needs; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: size the checkpoint storage for this many trials running at once
    /// (default: all of them).
    #[arg(long, value_name = "N", requires = "dry_run")]
    running: Option<usize>,
    /// Report grouping printed at the end (default: the axes with several values, and method).
    #[arg(long, value_name = "AXES")]
    by: Option<String>,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Ask a running coordinator (with its token: --token-file, $SAL_TOKEN or $SAL_READ_TOKEN).
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    coordinator: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    /// Or read a state dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Refresh in place until the sweep is done (with --coordinator).
    #[arg(long, requires = "coordinator")]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    interval: f64,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// The trial's id, or enough of its first characters to name one trial.
    trial: String,
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    state_dir: PathBuf,
    /// Where `report --plots DIR` wrote the plots (default: STATE_DIR/plots).
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
}

/// How a client command reaches a coordinator.
#[derive(Args, Debug)]
struct ClientArgs {
    /// Read the token from this file (mode 600); default: $SAL_TOKEN, else $SAL_READ_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for the coordinator's certificate (with an https:// URL).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), for a coordinator that asks for one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ClientArgs {
    fn remote(&self, url: &str) -> anyhow::Result<Remote> {
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

#[derive(Args, Debug)]
struct ReportArgs {
    /// The state dir of a sweep (readable while its coordinator runs).
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    state_dir: PathBuf,
    /// Or ask a running coordinator for its results (with its token, as `status`).
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    /// Group by these axes: architecture, optimizer, dataset, resolution, method, seed.
    #[arg(long, default_value = "architecture,dataset,method", value_name = "AXES")]
    by: String,
    /// table: mean ± 95% CI over seeds and SAL − baseline deltas, then the paired statistics;
    /// markdown, latex: the same tables; csv: the pivot, one column per number; json: the groups
    /// and every trial's spec, result and epoch history; html: one self-contained page with
    /// everything (tables, statistics, the paper's tables, plots, a section per trial).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json", "markdown", "latex", "html"])]
    format: String,
    /// The sweep to report on, when the state dir holds several (default: the only one).
    #[arg(long, value_name = "NAME")]
    sweep: Option<String>,
    /// List the diverged and failed trials with what went wrong, instead of the tables.
    #[arg(long)]
    failures: bool,
    /// The paper's published figures (tables.yaml): each stands beside a group of ours whose
    /// setup (architecture, dataset, resolution, optimizer, method, training) is the paper's,
    /// with the difference and whether it lies inside our 95% CI.
    #[arg(long, value_name = "FILE")]
    paper: Option<PathBuf>,
    /// Our results in the layout of the paper's table N (1-5) instead of the pivot; with --paper,
    /// the published figures beside ours.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    table: Option<u8>,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also draw the plots (SVG and PNG) of the sweep and of every trial into this folder.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
}

/// Prints a line to stdout; a closed stdout (`coordinator report | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit code of a bad sweep file or command line.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // With a progress bar on the terminal, per-trial logs would only scroll it away.
    let quiet = cli.run.local && std::io::stderr().is_terminal();
    init_logging(if quiet { "warn" } else { "info" });
    let outcome = match cli.command {
        Some(Command::Status(args)) => status(args),
        Some(Command::Report(args)) => report_command(args),
        Some(Command::Show(args)) => show_command(args),
        None => run(cli.run),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once (many errors already name their source).
fn one_line(error: &anyhow::Error) -> String {
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

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(sweep_file) = &args.sweep else {
        eprintln!("error: give --sweep FILE, or a subcommand (see --help)");
        return Ok(ExitCode::from(USAGE));
    };
    let load = LoadOptions {
        data_root: args.data_root.clone(),
        check_data: args.check_data || args.local,
        only: args.only.clone(),
    };
    let sweep = match spec::load(sweep_file, &load) {
        Ok(sweep) => sweep,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    let by = match &args.by {
        Some(list) => match report::parse_axes(list) {
            Ok(axes) => Some(axes),
            Err(e) => {
                eprintln!("error: --by {list}: {e}");
                return Ok(ExitCode::from(USAGE));
            }
        },
        None => None,
    };
    if args.dry_run {
        out!("{}", coordinator::sweep::dry_run::summary(&sweep, args.running).trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    if !(args.lease_seconds.is_finite() && args.lease_seconds > 0.0) {
        eprintln!("error: --lease-seconds must be > 0");
        return Ok(ExitCode::from(USAGE));
    }
    let security = match security(&args) {
        Ok(security) => security,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            return Ok(ExitCode::from(USAGE));
        }
    };
    let listen = match args.listen {
        Some(addr) => addr,
        None if args.local => SocketAddr::from(([127, 0, 0, 1], 0)),
        None if security.token.is_some() => SocketAddr::from(([0, 0, 0, 0], 50051)),
        None => SocketAddr::from(([127, 0, 0, 1], 50051)),
    };
    // Local mode makes a token for its own workers when none is given.
    if security.token.is_none() && !args.local && !listen.ip().is_loopback() {
        if !args.insecure {
            eprintln!(
                "error: --listen {listen} is not loopback and no token is set: write one to a file \
                 (`head -c 32 /dev/urandom | base64 > token && chmod 600 token`) and pass --token-file \
                 token, or set SAL_TOKEN (or pass --insecure to serve without one)"
            );
            return Ok(ExitCode::from(USAGE));
        }
        tracing::warn!(%listen, "--insecure: serving without a token; anyone who reaches this address can read and change the sweep");
    }
    let options = ServeOptions {
        state_dir: args.state_dir.clone(),
        listen,
        lease_ttl: Duration::from_secs_f64(args.lease_seconds),
        retry_failed: args.retry_failed,
        addr_file: args.addr_file.clone(),
        local: args.local.then(|| LocalWorkers {
            count: args.workers.max(1),
            cpu_ranks: args.cpu_ranks,
            worker_bin: args
                .worker_bin
                .clone()
                .unwrap_or_else(coordinator::server::local_workers::default_worker_bin),
        }),
        keep_serving: args.keep_serving,
        progress_bar: std::io::stderr().is_terminal(),
        security,
    };
    let progress =
        match runtime()?.block_on(serve_sweep(&sweep, &options, common::shutdown::shutdown_signal())) {
            Ok(progress) => progress,
            Err(e @ RunnerError::StateLock(StateLockError::Held { .. })) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(USAGE));
            }
            Err(e) => return Err(e.into()),
        };
    eprintln!(
        "{}: {} done, {} diverged, {} failed, {} not finished",
        sweep.name,
        progress.done,
        progress.diverged,
        progress.failed,
        progress.total() - progress.finished()
    );
    let (_, records) = store::read_records(&args.state_dir)?;
    let ids: std::collections::HashSet<&str> = sweep.trials.iter().map(|t| t.id.as_str()).collect();
    let total = records.len();
    let records: Vec<TrialRecord> = records.into_iter().filter(|r| ids.contains(r.id.as_str())).collect();
    let axes = by.unwrap_or_else(|| default_axes(&records));
    let rows = report::pivot(&records, &axes);
    out!("{}", report::table(&rows, &axes, None));
    print_failures(&sweep.name, &records);
    let other_sweeps = total - records.len();
    let selection =
        report::select::Selection { sweep: sweep.name.clone(), records, superseded: 0, other_sweeps };
    out!("{}", report::select::summary(&selection));
    Ok(ExitCode::SUCCESS)
}

/// Tokens, TLS files and limits from the command line and the environment.
fn security(args: &RunArgs) -> anyhow::Result<Security> {
    let token = auth::read_token(args.token_file.as_deref(), TOKEN_ENV).context("--token-file")?;
    let read_token =
        auth::read_token(args.read_token_file.as_deref(), READ_TOKEN_ENV).context("--read-token-file")?;
    if read_token.is_some() && token.is_none() && !args.local {
        anyhow::bail!("a read-only token needs a worker token too (--token-file or SAL_TOKEN)");
    }
    if args.local && args.tls_cert.is_some() {
        anyhow::bail!("--local serves its own workers on loopback: --tls-cert is for remote workers");
    }
    if args.max_message_mb == 0 {
        anyhow::bail!("--max-message-mb must be at least 1");
    }
    Ok(Security {
        token,
        read_token,
        tls: ServerTlsFiles {
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            client_ca: args.tls_client_ca.clone(),
        },
        max_message_bytes: Some(args.max_message_mb.saturating_mul(1 << 20)),
        max_checkpoint_bytes: args.max_checkpoint_mb.map(|mb| mb.saturating_mul(1 << 20)),
    })
}

/// The axes with more than one value, then method.
fn default_axes(records: &[TrialRecord]) -> Vec<Axis> {
    let mut axes: Vec<Axis> = [Axis::Architecture, Axis::Optimizer, Axis::Dataset, Axis::Resolution]
        .into_iter()
        .filter(|axis| {
            let values: std::collections::HashSet<String> = records.iter().map(|r| axis.value(r)).collect();
            values.len() > 1
        })
        .collect();
    if axes.is_empty() {
        axes.push(Axis::Architecture);
    }
    axes.push(Axis::Method);
    axes
}

/// The diverged and failed trials (the first ten), on stderr.
fn print_failures(sweep: &str, records: &[TrialRecord]) {
    let failures = report::select::failures(records);
    if failures.is_empty() {
        return;
    }
    eprintln!("{sweep}: {} diverged or failed trials:", failures.len());
    for line in failures.iter().take(10) {
        eprintln!("  {line}");
    }
}

fn report_command(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let axes = match report::parse_axes(&args.by) {
        Ok(axes) => axes,
        Err(e) => {
            eprintln!("error: --by {}: {e}", args.by);
            return Ok(ExitCode::from(USAGE));
        }
    };
    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    if args.table.is_some() && !matches!(format, Format::Table | Format::Markdown | Format::Latex) {
        eprintln!("error: --table prints as table, markdown or latex, not {}", args.format);
        return Ok(ExitCode::from(USAGE));
    }
    let paper = args.paper.as_deref().map(PaperFigures::load).transpose().map_err(anyhow::Error::msg)?;
    let paper_tables =
        args.paper.as_deref().map(PaperTables::load).transpose().map_err(anyhow::Error::msg)?;
    let (records, sweeps, source) = match &args.coordinator {
        Some(url) => {
            let remote = args.client.remote(url)?;
            let (name, records) = runtime()?.block_on(remote.records())?;
            // A coordinator answers for the sweep it runs.
            let trials = records.iter().map(|r| (r.id.clone(), 0)).collect();
            (records, vec![store::SweepInfo { name, file: PathBuf::new(), trials }], url.clone())
        }
        None => {
            let (_, records) = store::read_records(&args.state_dir)?;
            let sweeps = store::read_sweeps(&args.state_dir)?;
            (records, sweeps, args.state_dir.display().to_string())
        }
    };
    let selection = match report::select::select(&sweeps, records, args.sweep.as_deref()) {
        Ok(selection) => selection,
        Err(e) => {
            eprintln!("error: {source}: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    let summary = report::select::summary(&selection);
    if args.failures {
        let failures = report::select::failures(&selection.records);
        out!("{summary}");
        for line in &failures {
            out!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let records = &selection.records;
    let name = selection.sweep.as_str();
    let rows = report::pivot(records, &axes);
    let statistics = stats::grid(&stats::compare_cells(records));
    let paper_table = |n: u8| {
        paper_tables.as_ref().map_or_else(
            || {
                let mut grid = paper_tables::table(n, records, &PaperTables::default())?;
                grid.notes.push("No published figures: give --paper tables.yaml.".into());
                Ok(grid)
            },
            |paper| paper_tables::table(n, records, paper),
        )
    };
    // The tables of a text report: the paper's table N, or the pivot and the statistics.
    let grids: Vec<Grid> = match args.table {
        Some(n) => vec![paper_table(n).map_err(anyhow::Error::msg)?],
        None => vec![pivot_grid::grid(name, &rows, &axes, paper.as_ref()), statistics],
    };
    let text = match format {
        Format::Table if args.table.is_none() => {
            let mut text = format!("{name}\n{}\n", report::table(&rows, &axes, paper.as_ref()));
            if let Some(paper) = &paper {
                let comparisons = paper.compare(&rows);
                if comparisons.is_empty() {
                    text.push_str("no group has a setup the paper published\n");
                } else {
                    text.push_str("ours against the paper, where the setups are equal:\n");
                    text.push_str(&format!("{}\n", report::comparison_table(&comparisons)));
                }
                let misses = paper.near_misses(&rows);
                if let Some(first) = misses.first() {
                    text.push_str(&format!(
                        "no paper figure beside {} groups with a published setup's axes but another training (first: {first})\n",
                        misses.len()
                    ));
                }
            }
            text.push_str(&grids[1].text());
            text.push_str(&summary);
            text
        }
        Format::Table => {
            let tables: Vec<String> = grids.iter().map(Grid::text).collect();
            format!("{}\n{summary}", tables.join("\n"))
        }
        Format::Markdown | Format::Latex => {
            eprintln!("{summary}");
            let render = if format == Format::Markdown { Grid::markdown } else { Grid::latex };
            grids.iter().map(render).collect::<Vec<_>>().join("\n")
        }
        Format::Csv => {
            eprintln!("{summary}");
            report::csv(&rows, &axes)
        }
        Format::Json => {
            eprintln!("{summary}");
            report::json(name, &rows, &axes, records)
        }
        Format::Html => {
            eprintln!("{summary}");
            let paper_grids = match &paper_tables {
                Some(paper) => (1..=5)
                    .map(|n| paper_tables::table(n, records, paper))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?,
                None => Vec::new(),
            };
            let page = html::Page {
                sweep: name,
                records,
                pivot: pivot_grid::grid("", &rows, &axes, paper.as_ref()),
                paper_tables: paper_grids,
            };
            html::render(&page)?
        }
    };
    if let Some(dir) = &args.plots {
        let written = plots::write_all(dir, records)?;
        eprintln!("{} plot files in {}", written.len(), dir.display());
    }
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => out!("{}", text.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

fn show_command(args: ShowArgs) -> anyhow::Result<ExitCode> {
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

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
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
