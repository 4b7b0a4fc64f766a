//! `coordinator report`: the tables of a sweep's results in every format, its plots, the HTML page.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use coordinator::report::grid::Grid;
use coordinator::report::paper_tables::{self, PaperTables};
use coordinator::report::{self, html, pivot_grid, plots, terminal, Axis, Format, PaperFigures};
use coordinator::store::{self, TrialRecord};

use super::{runtime, ClientArgs, USAGE};

#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// The state dir of a sweep (readable while its coordinator runs).
    #[arg(long, default_value = "sal-state", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// Or ask a running coordinator for its results (with its token, as `status`).
    #[arg(long, value_name = "URL")]
    pub(crate) coordinator: Option<String>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Group by these axes: architecture, optimizer, dataset, resolution, method, seed.
    #[arg(long, default_value = "architecture,dataset,method", value_name = "AXES")]
    pub(crate) by: String,
    /// table: mean ± 95% CI over seeds and SAL − baseline deltas, then the paired statistics; in a
    /// terminal, fitted to its width (COLUMNS, when set, overrides the measured width): headers
    /// wrapped, columns with one value in every row said once above the table, the least
    /// important columns moved to a table below; piped or with --out, every table whole;
    /// markdown, latex: the same tables; csv: the pivot, one column per number; json: the groups
    /// and every trial's spec, result and epoch history; html: one self-contained page with
    /// everything (tables, statistics, the paper's tables, plots, a section per trial).
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json", "markdown", "latex", "html"])]
    pub(crate) format: String,
    /// The sweep to report on, when the state dir holds several (default: the only one).
    #[arg(long, value_name = "NAME")]
    pub(crate) sweep: Option<String>,
    /// List the diverged and failed trials with what went wrong, instead of the tables.
    #[arg(long)]
    pub(crate) failures: bool,
    /// The paper's published figures (tables.yaml): each stands beside a group of ours whose
    /// setup (architecture, dataset, resolution, optimizer, method, training) is the paper's,
    /// with the difference and whether it lies inside our 95% CI.
    #[arg(long, value_name = "FILE")]
    pub(crate) paper: Option<PathBuf>,
    /// Our results in the layout of the paper's table N (1-5) instead of the pivot; with --paper,
    /// the published figures beside ours.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub(crate) table: Option<u8>,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// With --format html: also write one page per trial into this folder (DIR/ID.html), linked
    /// from the page's trial table. Sweeps of more than 64 trials get no per-trial sections inline.
    #[arg(long, value_name = "DIR")]
    pub(crate) trial_pages: Option<PathBuf>,
    /// Also draw the plots (SVG and PNG) of the sweep and of every trial into this folder.
    #[arg(long, value_name = "DIR")]
    pub(crate) plots: Option<PathBuf>,
}

pub(crate) fn default_axes(records: &[TrialRecord]) -> Vec<Axis> {
    report::tables::default_axes(records)
}

/// The diverged and failed trials (the first ten), on stderr.
pub(crate) fn print_failures(sweep: &str, records: &[TrialRecord]) {
    let failures = report::select::failures(records);
    if failures.is_empty() {
        return;
    }
    eprintln!("{sweep}: {} diverged or failed trials:", failures.len());
    for line in failures.iter().take(10) {
        eprintln!("  {line}");
    }
}

pub(crate) fn report_command(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let axes = match report::parse_axes(&args.by) {
        Ok(axes) => axes,
        Err(e) => {
            eprintln!("error: --by {}: {e}", args.by);
            return Ok(ExitCode::from(USAGE));
        }
    };
    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    if args.trial_pages.is_some() && format != Format::Html {
        eprintln!("error: --trial-pages writes HTML pages: give --format html, not {}", args.format);
        return Ok(ExitCode::from(USAGE));
    }
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
    let mut grids: Vec<Grid> = match args.table {
        Some(n) => vec![paper_table(n).map_err(anyhow::Error::msg)?],
        None => report::tables::report_grids(name, records, &axes, paper.as_ref()),
    };
    // Numbers of different builds side by side are worth a warning under every table.
    let versions = report::provenance::versions_warning(records);
    if let Some(warning) = &versions {
        for grid in &mut grids {
            grid.notes.push(warning.clone());
        }
    }
    // Only a terminal gets tables fitted to its width; a file or a pipe gets them whole.
    let width = if args.out.is_none() { super::terminal_width() } else { None };
    let text = match format {
        Format::Table if args.table.is_none() => terminal::text(
            &terminal::Report {
                sweep: name,
                rows: &rows,
                axes: &axes,
                paper: paper.as_ref(),
                versions: versions.as_deref(),
                grids: &grids[1..],
                summary: &summary,
            },
            width,
        ),
        Format::Table => terminal::grids_text(&grids, &summary, width),
        Format::Markdown | Format::Latex => {
            eprintln!("{summary}");
            let render = if format == Format::Markdown { Grid::markdown } else { Grid::latex };
            grids.iter().map(render).collect::<Vec<_>>().join("\n")
        }
        Format::Csv => {
            eprintln!("{summary}");
            if let Some(warning) = &versions {
                eprintln!("{warning}");
            }
            report::csv(&rows, &axes)
        }
        Format::Json => {
            eprintln!("{summary}");
            if let Some(warning) = &versions {
                eprintln!("{warning}");
            }
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
            let trial_pages = match &args.trial_pages {
                Some(dir) => Some(write_trial_pages(dir, name, records, args.out.as_deref())?),
                None => None,
            };
            let page = html::Page {
                sweep: name,
                records,
                pivot: pivot_grid::grid("", &rows, &axes, paper.as_ref()),
                paper_tables: paper_grids,
                trial_pages,
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

/// Writes `DIR/ID.html` for every trial and returns how the main page links to DIR: relative to the
/// page's folder when DIR lies inside it, else DIR as given.
fn write_trial_pages(
    dir: &Path,
    sweep: &str,
    records: &[TrialRecord],
    page: Option<&Path>,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("--trial-pages {}", dir.display()))?;
    for record in records {
        let path = dir.join(format!("{}.html", record.id));
        std::fs::write(&path, html::trial_page(sweep, record)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("{} trial pages in {}", records.len(), dir.display());
    let page_dir =
        page.and_then(Path::parent).map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    let relative = page_dir.and_then(|base| {
        let base = base.canonicalize().ok()?;
        let dir = dir.canonicalize().ok()?;
        dir.strip_prefix(&base).ok().map(Path::to_path_buf)
    });
    Ok(relative.unwrap_or_else(|| dir.to_path_buf()).display().to_string())
}
