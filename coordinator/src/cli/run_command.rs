//! Running a sweep: serving its workers (or starting local ones) until it is done, then its report;
//! or, with `--dry-run`, what it expands to.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coordinator::report;
use coordinator::server::auth::{self, READ_TOKEN_ENV, TOKEN_ENV};
use coordinator::store::state_lock::StateLockError;
use coordinator::store::{self, TrialRecord};
use coordinator::sweep::data_check;
use coordinator::sweep::spec::{self, LoadOptions, Sweep};
use coordinator::tls::ServerTlsFiles;
use coordinator::{serve_sweep, LocalWorkers, RunnerError, Security, ServeOptions};

use super::report_command::{default_axes, print_failures};
use super::{one_line, runtime, STATE_DIR_FULL, USAGE};

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The sweep file to run (see sweeps/).
    #[arg(long, value_name = "FILE")]
    pub(crate) sweep: Option<PathBuf>,
    /// Where the store (SQLite) and checkpoints live; rerunning on the same dir resumes.
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// Address to serve workers on (port 0: any free port; the bound address is printed).
    /// Default: 0.0.0.0:50051 with a token, 127.0.0.1:50051 without, 127.0.0.1:0 with --local.
    /// A non-loopback address needs a token (or --insecure).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// The worker token (all calls), from this file (mode 600); default: $SAL_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// A read-only token (Status and Results), from this file (mode 600); default:
    /// $SAL_READ_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub(crate) read_token_file: Option<PathBuf>,
    /// Serve a non-loopback address without a token: anyone who reaches it can read and change
    /// the sweep.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// TLS: this server's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS: the key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<PathBuf>,
    /// Largest gRPC message the server accepts.
    #[arg(long, default_value_t = 16, value_name = "MB")]
    pub(crate) max_message_mb: usize,
    /// Largest checkpoint one upload may carry (default: estimated from each trial's model).
    #[arg(long, value_name = "MB")]
    pub(crate) max_checkpoint_mb: Option<u64>,
    /// Run only a slice of the grid: `axis=value[,value]` (architecture, optimizer, dataset,
    /// resolution, method, seed); repeat to intersect.
    #[arg(long, value_name = "AXIS=VALUES")]
    pub(crate) only: Vec<String>,
    /// Relative dataset roots and weights are taken under this folder.
    #[arg(long, env = "SAL_DATA_ROOT", value_name = "DIR")]
    pub(crate) data_root: Option<PathBuf>,
    /// Every dataset root and trunk must be on this machine, and is read before the first trial
    /// (layout, classes, each image's header, weights against their manifest). Always on with
    /// --local; without it the coordinator checks only the roots it can see.
    #[arg(long)]
    pub(crate) check_data: bool,
    /// Also start worker processes on this machine (CPU ranks), over loopback gRPC.
    #[arg(long)]
    pub(crate) local: bool,
    /// Local workers (with --local).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub(crate) workers: usize,
    /// CPU replicas per local worker (with --local).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) cpu_ranks: usize,
    /// The `worker` binary local mode starts (default: the one beside this coordinator).
    #[arg(long, value_name = "FILE")]
    pub(crate) worker_bin: Option<PathBuf>,
    /// A lease lives this long without news from its worker.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub(crate) lease_seconds: f64,
    /// Give failed trials a fresh set of attempts.
    #[arg(long)]
    pub(crate) retry_failed: bool,
    /// When the state dir's filesystem is full, lease nothing and wait this long for room (the
    /// sweep goes on by itself as soon as there is), then stop; 0: wait for ever.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub(crate) full_disk_wait: u64,
    /// Serve the live dashboard (a web page: trials, curves, comparisons, /metrics) on this
    /// address; its URL is printed. On by default with --local (127.0.0.1, any free port). Off
    /// loopback it asks for the token; with --tls-cert it is served over HTTPS.
    #[arg(long, value_name = "ADDR")]
    pub(crate) dashboard: Option<SocketAddr>,
    /// No dashboard, even with --local.
    #[arg(long, conflicts_with = "dashboard")]
    pub(crate) no_dashboard: bool,
    /// Also write the bound address to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) addr_file: Option<PathBuf>,
    /// Keep serving after the sweep is done.
    #[arg(long)]
    pub(crate) keep_serving: bool,
    /// Also write a TensorBoard logdir here as the epochs arrive (about once a second; what
    /// `coordinator export tensorboard` writes): `tensorboard --logdir DIR` to watch the sweep.
    /// A new or empty folder, or an earlier export (its runs are written afresh).
    #[arg(long, value_name = "DIR")]
    pub(crate) tensorboard: Option<PathBuf>,
    /// Validate the sweep file, count its trials per axis and estimate the checkpoint storage
    /// its state dir needs; run nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// With --dry-run: size the checkpoint storage for this many trials running at once
    /// (default: all of them).
    #[arg(long, value_name = "N", requires = "dry_run")]
    pub(crate) running: Option<usize>,
    /// With --dry-run: replay the scheduler on these GPU counts (e.g. 8,64,512) and print the
    /// simulated makespan against its lower bound, max(longest trial, total work / GPUs).
    #[arg(long, value_name = "N,N", value_delimiter = ',', requires = "dry_run")]
    pub(crate) gpus_available: Vec<u32>,
    /// With --dry-run: GPUs per node (worker), for --gpus-available and for trials that take a
    /// whole node (`gpus_per_trial: 0`).
    #[arg(long, value_name = "N", default_value_t = 8, requires = "dry_run")]
    pub(crate) gpus_per_node: u32,
    /// With --dry-run: the device whose measured throughput costs the sweep (a device of the
    /// calibration table or of the store; default: the table's GPU with the most rows).
    #[arg(long, value_name = "NAME", requires = "dry_run")]
    pub(crate) calibration_device: Option<String>,
    /// With --dry-run: the calibration table (CSV, as scripts/calibrate.sh writes it; default:
    /// the committed coordinator/calibration/throughput.csv).
    #[arg(long, value_name = "FILE", requires = "dry_run")]
    pub(crate) calibration: Option<PathBuf>,
    /// Report grouping printed at the end (default: the axes with several values, and method).
    #[arg(long, value_name = "AXES")]
    pub(crate) by: Option<String>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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
    // A dry run reads the data only when asked: it is meant to answer at once.
    if !args.dry_run || args.check_data {
        if let Some(code) = check_data(&sweep, load.check_data) {
            return Ok(code);
        }
    }
    if args.dry_run {
        return dry_run(&args, &sweep);
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
    if let Some(dir) = &args.tensorboard {
        if let Err(e) = coordinator::export::tensorboard::check_out_dir(dir) {
            eprintln!("error: --tensorboard {e}");
            return Ok(ExitCode::from(USAGE));
        }
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
        full_disk_wait: (args.full_disk_wait > 0).then(|| Duration::from_secs(args.full_disk_wait)),
        dashboard: match (args.dashboard, args.local && !args.no_dashboard) {
            (Some(addr), _) => Some(addr),
            (None, true) => Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            (None, false) => None,
        },
        tensorboard: args.tensorboard.clone(),
    };
    let progress =
        match runtime()?.block_on(serve_sweep(&sweep, &options, common::shutdown::shutdown_signal())) {
            Ok(progress) => progress,
            Err(e @ RunnerError::StateLock(StateLockError::Held { .. })) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(USAGE));
            }
            Err(e @ RunnerError::StateDirFull { .. }) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(STATE_DIR_FULL));
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
    out!("{}", report::table_fitted(&rows, &axes, None, super::terminal_width()));
    print_failures(&sweep.name, &records);
    let other_sweeps = total - records.len();
    let selection =
        report::select::Selection { sweep: sweep.name.clone(), records, superseded: 0, other_sweeps };
    out!("{}", report::select::summary(&selection));
    if options.dashboard.is_some() {
        // The page went with the coordinator; the same views over the finished state dir:
        eprintln!(
            "the dashboard stopped with the sweep; to look again: coordinator dashboard --state-dir {}",
            args.state_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run`: the expansion, the storage, the cost estimate and the makespan table.
fn dry_run(args: &RunArgs, sweep: &Sweep) -> anyhow::Result<ExitCode> {
    use coordinator::sweep::calibration::{self, Calibration, Learned};
    use coordinator::sweep::dry_run::{cost_lines, cost_sweep, makespan_table, summary, CostInputs};
    if let Some(zero) =
        args.gpus_available.iter().find(|&&n| n == 0).or((args.gpus_per_node == 0).then_some(&0))
    {
        eprintln!("error: --gpus-available and --gpus-per-node take counts of at least 1, not {zero}");
        return Ok(ExitCode::from(USAGE));
    }
    let (table, table_name) = match &args.calibration {
        Some(file) => match calibration::Table::load(file) {
            Ok(table) => (table, file.display().to_string()),
            Err(e) => {
                eprintln!("error: --calibration: {e}");
                return Ok(ExitCode::from(USAGE));
            }
        },
        None => match calibration::Table::parse(calibration::COMMITTED, calibration::COMMITTED_NAME) {
            Ok(table) => (table, calibration::COMMITTED_NAME.to_string()),
            Err(e) => anyhow::bail!("the committed calibration table is broken: {e}"),
        },
    };
    // What earlier runs on this state dir measured, when it holds a store.
    let (learned, finished, store) = if args.state_dir.join(store::DB_FILE).is_file() {
        let (_, records) = store::read_records(&args.state_dir)
            .with_context(|| format!("reading the store in {}", args.state_dir.display()))?;
        let learned = Learned::from_completed(
            records.iter().filter(|r| r.state == "done").filter_map(|r| Some((&r.spec, r.result.as_ref()?))),
        );
        let finished: std::collections::HashSet<String> = records
            .iter()
            .filter(|r| r.state == "done" || r.state == "diverged")
            .map(|r| r.id.clone())
            .collect();
        let measured: usize = learned.profiles.values().map(|(_, n)| n).sum();
        (learned, finished, Some((args.state_dir.display().to_string(), measured)))
    } else {
        (Learned::default(), Default::default(), None)
    };
    let (device, default_reason) = match &args.calibration_device {
        Some(name) => {
            if !table.devices().contains_key(name) && !learned.devices().contains(name) {
                let mut known: std::collections::BTreeSet<String> = table.devices().into_keys().collect();
                known.extend(learned.devices());
                let known: Vec<String> = known.into_iter().collect();
                eprintln!(
                    "error: --calibration-device {name}: no row of {table_name}{} is for it (known: {})",
                    if store.is_some() { " nor of the store" } else { "" },
                    known.join(", ")
                );
                return Ok(ExitCode::from(USAGE));
            }
            (name.clone(), None)
        }
        None => match table.default_device() {
            Some(device) => {
                let others: Vec<String> = table.devices().into_keys().filter(|d| *d != device).collect();
                let which = if device.starts_with("cpu") {
                    "the calibration table has no GPU rows"
                } else {
                    "the calibration table's GPU with the most rows"
                };
                let reason = format!(
                    "the default: {which}{}",
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!("; also there: {}", others.join(", "))
                    }
                );
                (device, Some(reason))
            }
            None => (String::from("none"), Some(format!("{table_name} has no rows"))),
        },
    };
    let calibration = Calibration::new(&table, &learned);
    let inputs = CostInputs {
        calibration: &calibration,
        table_name: &table_name,
        device: &device,
        default_reason,
        store,
        finished: &finished,
        gpus_per_node: args.gpus_per_node,
    };
    let cost = cost_sweep(sweep, &inputs);
    out!("{}", summary(sweep, args.running).trim_end());
    out!("{}", cost_lines(sweep, &inputs, &cost).trim_end());
    if !args.gpus_available.is_empty() {
        let table = makespan_table(sweep, &args.gpus_available, args.gpus_per_node, Some(&cost), &finished);
        out!("{}", table.trim_end());
    }
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

/// The data check at start (see [`coordinator::sweep::data_check`]): problems are printed one per
/// line and refuse the run, before any worker is booked.
fn check_data(sweep: &Sweep, required: bool) -> Option<ExitCode> {
    let found = data_check::check_sweep_data(sweep, required);
    for skipped in &found.not_visible {
        tracing::info!("data check: {skipped} is not on this machine; its workers will read it");
    }
    let problems = found.problems();
    if problems.is_empty() {
        if found.checked() > 0 {
            let (datasets, trunks) = (found.report.datasets.len(), found.report.weights.len());
            tracing::info!("data check: ok ({datasets} datasets, {trunks} trunks read)");
        }
        return None;
    }
    for problem in &problems {
        eprintln!("error: data: {problem}");
    }
    eprintln!("{}", data_check::remedy(&sweep.file));
    Some(ExitCode::from(USAGE))
}
