//! The `data` command line, shared by every binary that hosts it (`sal-data`, and `coordinator
//! data` / `worker data` once hooked in): parse with [`DataCommand`], run with [`run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::catalogue::Catalogue;
use crate::check::{self, Depth, Plan};
use crate::download;
use crate::extract::Limits;
use crate::fetch::{self, Outcome, Source};
use crate::lock::Lock;
use crate::weights::Tools;

/// Exit status of `data check` when it found problems.
pub const PROBLEMS_FOUND: u8 = 2;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Downloads, verifies and lays out datasets and pretrained trunks under a data root.
    ///
    /// NAME is a catalogue entry (`data list`): imagenette, imagewoof2, tiny_imagenet,
    /// eurosat_rgb, pacs, cifar10, corel1k, weights:densenet201, weights:densenet121,
    /// weights:mobilenet_v2, weights:resnet50, weights:efficientnet_b2, weights:resnet50_v2,
    /// or `all`. Each archive is checked against every checksum its publishers pin (and against
    /// the data root's sal-data.lock, which pins a SHA-256 on first download where nobody
    /// publishes one) before anything is extracted; members are extracted only inside the target;
    /// the folder the loader expects appears by one rename at the end. A partial download
    /// resumes (HTTP range) on the next run. A second fetch of a verified entry does nothing.
    ///
    /// Trunks are converted to this project's `.safetensors` names by the project's converters,
    /// run with Python: torchvision's files by scripts/convert_torchvision_weights.py with the
    /// venv of scripts/setup.sh (torch is enough), Keras' ResNet50V2 file by
    /// scripts/convert_keras_resnet50v2.py with a Python that has TensorFlow (the .tf-venv of
    /// scripts/check_keras_resnet50v2.sh); the result is checked against the trunk's manifest.
    ///
    /// Examples:
    ///   sal-data fetch imagenette cifar10 --to /data
    ///   sal-data fetch all --to /data --mirror https://mirror.internal/sal
    ///   sal-data fetch pacs --to /data --from ~/Downloads/PACS.zip
    ///   sal-data fetch weights:resnet50 --to /data
    #[command(verbatim_doc_comment)]
    Fetch(FetchArgs),
    /// Checks a data root against a sweep: every dataset found, its layout recognised, classes
    /// and images per split, unreadable files named, every trunk present and fitting its
    /// manifest. Prints a table; exits 2 with one line per problem.
    ///
    /// Example:
    ///   sal-data check --sweep sweeps/paper.yaml --data-root /data
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
    /// The catalogue: every entry with its URL, size, checks and their sources, licence.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Catalogue entries, or `all`.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// The data root (what sweeps call --data-root).
    #[arg(long, env = "SAL_DATA_ROOT", value_name = "DIR")]
    pub to: PathBuf,
    /// Fetch every file from this base URL instead (`URL/<file name>`): a proxy or an internal
    /// mirror. The checksums stay those of the catalogue.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// One entry's URL, instead of the catalogue's (repeatable).
    #[arg(long = "url", value_name = "NAME=URL")]
    pub urls: Vec<String>,
    /// An archive already on this machine (one NAME only); verified like a download.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Entries to add to, or replace in, the built-in catalogue (YAML, the same fields).
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// Fetch again even when already fetched and verified, and replace a folder or file that
    /// `data fetch` did not make from this archive.
    #[arg(long)]
    pub force: bool,
    /// Keep downloaded archives (under DIR/.sal-fetch/downloads) after publishing.
    #[arg(long)]
    pub keep_archives: bool,
    /// Largest size one archive may inflate to.
    #[arg(long, default_value_t = 64.0, value_name = "GIB")]
    pub max_extract_gib: f64,
    /// Download attempts after the first, each resuming where the last stopped.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// A connection silent this long is dropped and resumed.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub read_timeout: u64,
    /// Python for torchvision's weights (default: $SAL_PYTHON, this checkout's .venv, python3).
    #[arg(long, value_name = "FILE")]
    pub python: Option<PathBuf>,
    /// Python with TensorFlow for Keras' weights (default: $SAL_KERAS_PYTHON, .tf-venv, python3).
    #[arg(long, value_name = "FILE")]
    pub keras_python: Option<PathBuf>,
    /// Folder of the converter scripts (default: $SAL_SCRIPTS, this checkout's scripts/).
    #[arg(long, value_name = "DIR")]
    pub scripts: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The sweep file whose datasets and pretrained weights to check.
    #[arg(long, value_name = "FILE")]
    pub sweep: PathBuf,
    /// Relative dataset roots and weights are taken under this folder (default: the sweep
    /// file's folder).
    #[arg(long, env = "SAL_DATA_ROOT", value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Decode every image fully (default: read each image's header, which finds empty, garbage
    /// and misnamed files; a full decode also finds truncated PNGs, GIFs, ..., though not a JPEG
    /// cut short after its header, which decoders fill with grey, as the loader's does).
    #[arg(long)]
    pub decode: bool,
    /// Threads reading images (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Entries to add to, or replace in, the built-in catalogue.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
}

fn catalogue(extra: Option<&PathBuf>) -> anyhow::Result<Catalogue> {
    let catalogue = Catalogue::built_in();
    Ok(match extra {
        Some(file) => catalogue.with_overrides(file)?,
        None => catalogue,
    })
}

/// Runs one `data` command.
pub fn run(command: DataCommand) -> anyhow::Result<ExitCode> {
    match command {
        DataCommand::Fetch(args) => run_fetch(args),
        DataCommand::Check(args) => run_check(args),
        DataCommand::List(args) => {
            let catalogue = catalogue(args.catalogue.as_ref())?;
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(["name", "url", "size", "checked against", "licence"]);
            for entry in catalogue.entries() {
                let size = entry.size.map_or("not published".into(), |s| format!("{s}"));
                table.add_row([
                    entry.name.clone(),
                    entry.url.clone(),
                    size,
                    entry.checks_summary(),
                    entry.licence.clone(),
                ]);
            }
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let catalogue = catalogue(args.catalogue.as_ref())?;
    let names: Vec<String> = if args.names.iter().any(|n| n == "all") {
        catalogue.entries().map(|e| e.name.clone()).collect()
    } else {
        args.names.clone()
    };
    let entries = names.iter().map(|n| catalogue.get(n)).collect::<Result<Vec<_>, _>>()?;
    if args.from.is_some() && entries.len() != 1 {
        bail!("--from FILE takes exactly one NAME (got {})", entries.len());
    }
    let mut urls = std::collections::BTreeMap::new();
    for pair in &args.urls {
        let Some((name, url)) = pair.split_once('=') else {
            bail!("--url {pair}: expected NAME=URL");
        };
        catalogue.get(name)?;
        urls.insert(name.to_string(), url.to_string());
    }
    if !args.max_extract_gib.is_finite() || args.max_extract_gib <= 0.0 {
        bail!("--max-extract-gib must be positive, got {}", args.max_extract_gib);
    }
    std::fs::create_dir_all(&args.to).with_context(|| format!("cannot create {}", args.to.display()))?;
    let mut tools = Tools::discover();
    tools.python = args.python.unwrap_or(tools.python);
    tools.keras_python = args.keras_python.unwrap_or(tools.keras_python);
    tools.scripts = args.scripts.unwrap_or(tools.scripts);
    let options = fetch::Options {
        data_root: args.to.clone(),
        source: Source { mirror: args.mirror, urls, from: args.from },
        download: download::Options {
            retries: args.retries,
            read_timeout: Duration::from_secs(args.read_timeout.max(1)),
            ..download::Options::default()
        },
        limits: Limits { max_total_bytes: (args.max_extract_gib * (1u64 << 30) as f64) as u64 },
        force: args.force,
        keep_archive: args.keep_archives,
        tools,
    };
    let _held = crate::publish::lock_root(&args.to)?;
    let mut lock = Lock::open(&args.to)?;
    let mut failed = 0;
    for entry in entries {
        match fetch::fetch(entry, &options, &mut lock) {
            Ok(Outcome::AlreadyThere(path)) => {
                println!("{}: already fetched and verified at {}; nothing to do", entry.name, path.display())
            }
            Ok(Outcome::Published { path, verified, pinned }) => {
                let pin = if pinned {
                    format!("; no published sha256: pinned in {}", lock.path().display())
                } else {
                    String::new()
                };
                println!(
                    "{}: verified ({}) and published at {}{pin}",
                    entry.name,
                    verified.join(", "),
                    path.display()
                );
            }
            Err(error) => {
                eprintln!("error: {error}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} entries failed", names.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_sweep(&args.sweep, args.data_root.as_deref())?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let depth = if args.decode { Depth::Decode } else { Depth::Header };
    let report = check::check(&plan, depth, threads);
    println!("{}", report.table());
    let problems = report.problems();
    if problems.is_empty() {
        println!("{}: every dataset and trunk is in place", args.sweep.display());
        return Ok(ExitCode::SUCCESS);
    }
    for line in &problems {
        eprintln!("problem: {line}");
    }
    eprintln!(
        "{} problem(s); fix them (or `sal-data fetch NAME --to DIR`) before the sweep runs",
        problems.len()
    );
    Ok(ExitCode::from(PROBLEMS_FOUND))
}
