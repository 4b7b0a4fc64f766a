//! `worker train --trial FILE`: one trial on this node, without a coordinator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};
use worker::{
    run_trial, CancelFlag, Devices, RunOptions, TrialEvent, TrialOutcome, TrialResult, TrialSpec, WorkerError,
};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The trial definition (YAML).
    #[arg(long, value_name = "FILE")]
    trial: PathBuf,
    /// CUDA devices to train on, one replica each (e.g. `0,1`).
    #[arg(long, value_name = "IDS", value_delimiter = ',', conflicts_with = "cpu_ranks")]
    gpus: Option<Vec<usize>>,
    /// Replicas on the CPU, as threads (data-parallel like GPUs; for tests and small machines).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpu_ranks: u32,
    /// Write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Decoded datasets, shared by every trial on this node.
    #[arg(long, value_name = "DIR", default_value = ".cache/datasets")]
    cache_dir: PathBuf,
    /// Where checkpoints are written.
    #[arg(long, value_name = "DIR", default_value = ".state/checkpoints")]
    checkpoint_dir: PathBuf,
    /// Write a checkpoint every this many epochs (0: never).
    #[arg(long, value_name = "EPOCHS", default_value_t = 1)]
    checkpoint_every: u32,
    /// Resume from a checkpoint written by an earlier run of the same trial.
    #[arg(long, value_name = "CKPT")]
    resume: Option<PathBuf>,
    /// No progress bar (epoch lines are still printed).
    #[arg(long)]
    no_progress: bool,
    /// Compare every replica's parameter checksum after every epoch; exit 1 if any differ.
    #[arg(long)]
    check_replicas: bool,
}

/// Runs the subcommand; exit codes: 0 finished (completed or diverged), 1 failure of the machine
/// or library, 2 bad input (trial file, dataset, checkpoint), 130 interrupted.
pub fn run(args: &TrainArgs) -> ExitCode {
    match train(args) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn bad_input(message: String) -> Self {
        Failure { message, code: 2 }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { message: format!("{error:#}"), code: 1 }
    }
}

fn train(args: &TrainArgs) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(&args.trial)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", args.trial.display())))?;
    let spec: TrialSpec = serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(&args.trial, &e))?;
    let devices = match &args.gpus {
        Some(ids) if ids.is_empty() => return Err(Failure::bad_input("--gpus: no device ids".into())),
        Some(ids) => Devices::Cuda(ids.clone()),
        None => Devices::Cpu { ranks: args.cpu_ranks as usize },
    };
    // Before any other thread starts (setting the environment is only sound then) and before CUDA.
    worker::provenance::set_cublas_environment(&spec);
    let cancel = CancelFlag::default();
    watch_ctrl_c(cancel.clone());
    let options = RunOptions {
        devices,
        cache_dir: args.cache_dir.clone(),
        checkpoint_dir: args.checkpoint_dir.clone(),
        resume_from: args.resume.clone(),
        checkpoint_every: args.checkpoint_every,
        cancel,
    };

    let bar = if args.no_progress { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let epochs = spec.epochs;
    let mut on_event = |event: TrialEvent<'_>| match event {
        TrialEvent::Progress { epoch, step, steps } => {
            bar.set_prefix(format!("epoch {epoch}/{epochs}"));
            bar.set_length(steps as u64);
            bar.set_position(step as u64);
        }
        TrialEvent::Epoch(report) => {
            let sal =
                report.sal.map_or(String::new(), |r| format!(" stress {:.4} {}", r.stress, sal_action(&r)));
            bar.suspend(|| {
                eprintln!(
                    "epoch {:>3}: loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | grad {:.3e} | {:.1}s{sal}",
                    report.epoch,
                    report.train_loss,
                    report.train_accuracy,
                    report.val_loss,
                    report.val_accuracy,
                    report.grad_norm,
                    report.seconds
                )
            });
            bar.set_position(0);
        }
        TrialEvent::Checkpoint { epoch, path } => {
            tracing::info!(epoch, path = %path.display(), "checkpoint written");
        }
    };
    let outcome = if args.check_replicas {
        worker::train::Engine::default().check_replicas(true).run(&spec, &options, &mut on_event).map(|run| {
            let differing: Vec<usize> = run
                .replica_checksums
                .iter()
                .enumerate()
                .filter(|(_, ranks)| ranks.iter().any(|&c| c != ranks[0]))
                .map(|(i, _)| i + 1)
                .collect();
            (run.outcome, Some((run.replica_checksums, differing)))
        })
    } else {
        run_trial(&spec, &options, &mut on_event).map(|outcome| (outcome, None))
    };
    bar.finish_and_clear();
    let (outcome, replicas) = outcome.map_err(|e| describe_error(&e, &args.trial, &text))?;
    if let Some((checksums, differing)) = replicas {
        let ranks = checksums.first().map_or(0, Vec::len);
        if !differing.is_empty() {
            return Err(Failure {
                message: format!("replicas differ after epoch(s) {differing:?}: {checksums:x?}"),
                code: 1,
            });
        }
        eprintln!("replicas identical after every epoch ({ranks} ranks, {} epochs)", checksums.len());
    }
    match outcome {
        TrialOutcome::Finished(result) => {
            println!("{}", summary(&spec, &result));
            if let Some(out) = &args.out {
                let json = serde_json::to_string_pretty(&*result).context("cannot serialize the result")?;
                std::fs::write(out, json).with_context(|| format!("cannot write {}", out.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        TrialOutcome::Interrupted { epoch, checkpoint } => {
            match checkpoint {
                Some(path) => {
                    eprintln!("interrupted after epoch {epoch}; resume with --resume {}", path.display())
                }
                None => eprintln!("interrupted after epoch {epoch}; no checkpoint was written"),
            }
            Ok(ExitCode::from(130))
        }
    }
}

/// First Ctrl-C: stop at the next step and keep the last checkpoint; the second one kills.
fn watch_ctrl_c(cancel: CancelFlag) {
    let spawned = std::thread::Builder::new().name("ctrl-c".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else {
            return;
        };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("stopping at the next step (Ctrl-C again to kill)");
            cancel.cancel();
            if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                std::process::exit(130);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Ctrl-C will not stop the trial gracefully");
    }
}

/// One line: the trial file, the line of the field at fault when there is one, and the error.
fn describe_error(error: &WorkerError, file: &Path, text: &str) -> Failure {
    let message = one_line(&error.to_string());
    let location = error
        .field_path()
        .and_then(|field| locate(text, field))
        .map_or_else(|| file.display().to_string(), |line| format!("{}:{line}", file.display()));
    let message = format!("{location}: {message}");
    if error.is_bad_input() {
        Failure::bad_input(message)
    } else {
        Failure { message, code: 1 }
    }
}

/// `FILE:LINE:COLUMN: message`, as compilers write it.
fn yaml_error(file: &Path, error: &serde_yaml_ng::Error) -> Failure {
    let message = one_line(&error.to_string());
    match error.location() {
        Some(at) => {
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(head, _)| head);
            Failure::bad_input(format!("{}:{}:{}: {message}", file.display(), at.line(), at.column()))
        }
        None => Failure::bad_input(format!("{}: {message}", file.display())),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The 1-based line of a dotted field path (`dataset.options.val_fraction`) in a YAML block
/// mapping; the deepest part found when the rest is absent (a default that was not written).
fn locate(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut min_indent = 0;
    let mut found = None;
    for (depth, key) in field.split('.').enumerate() {
        let hit = lines.iter().enumerate().skip(from).find_map(|(i, line)| {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start();
            let is_key = trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':'));
            let level_ok = if depth == 0 { indent == 0 } else { indent >= min_indent };
            (level_ok && is_key).then_some((i, indent))
        });
        match hit {
            Some((i, indent)) => {
                found = Some(i + 1);
                from = i + 1;
                min_indent = indent + 1;
            }
            None => break,
        }
    }
    found
}

/// What SAL did at an epoch; a decision withheld at the last epoch shows as such.
fn sal_action(record: &sal::EpochRecord) -> String {
    let name = |action: sal::Action| format!("{action:?}").to_lowercase();
    if record.withheld() {
        format!("{} (decided {}, last epoch)", name(record.applied), name(record.decided))
    } else {
        name(record.applied)
    }
}

fn summary(spec: &TrialSpec, result: &TrialResult) -> String {
    let mut out = String::new();
    let mut history = Table::new();
    history.load_preset(UTF8_FULL_CONDENSED).set_header([
        "epoch",
        "train loss",
        "train acc",
        "val loss",
        "val acc",
        "grad norm",
        "stress",
        "SAL",
        "s",
    ]);
    for r in &result.history {
        let (stress, action) =
            r.sal.map_or((String::new(), String::new()), |s| (format!("{:.4}", s.stress), sal_action(&s)));
        history.add_row([
            r.epoch.to_string(),
            format!("{:.4}", r.train_loss),
            format!("{:.4}", r.train_accuracy),
            format!("{:.4}", r.val_loss),
            format!("{:.4}", r.val_accuracy),
            format!("{:.3e}", r.grad_norm),
            stress,
            action,
            format!("{:.1}", r.seconds),
        ]);
    }
    out.push_str(&history.to_string());
    out.push('\n');

    let mut classes = Table::new();
    classes.load_preset(UTF8_FULL_CONDENSED).set_header(["class", "precision", "recall", "f1", "support"]);
    for m in result.per_class.iter().chain([&result.macro_avg, &result.weighted_avg]) {
        classes.add_row([
            Cell::new(&m.label),
            Cell::new(format!("{:.4}", m.precision)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.4}", m.recall)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.4}", m.f1)).set_alignment(CellAlignment::Right),
            Cell::new(m.support).set_alignment(CellAlignment::Right),
        ]);
    }
    if !result.per_class.is_empty() {
        out.push_str(&classes.to_string());
        out.push('\n');
    }

    let mut totals = Table::new();
    totals.load_preset(UTF8_FULL_CONDENSED).set_header([
        "trial",
        "status",
        "top-1",
        "top-5",
        "test loss",
        "train s",
        "peak MB",
        "infer ms/batch",
    ]);
    totals.add_row([
        format!(
            "{} {} {} {}px {:?}",
            spec.architecture, spec.optimizer, spec.dataset.name, spec.resolution, spec.method
        )
        .to_lowercase(),
        format!("{:?}", result.status).to_lowercase(),
        format!("{:.4}", result.top1),
        format!("{:.4}", result.top5),
        format!("{:.4}", result.test_loss),
        format!("{:.1}", result.train_seconds),
        match result.peak_device_mb {
            Some(device) => format!("{:.0} host / {device:.0} device", result.peak_host_mb),
            None => format!("{:.0}", result.peak_host_mb),
        },
        format!("{:.2}", result.inference_ms_per_batch),
    ]);
    out.push_str(&totals.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locates_nested_fields_and_falls_back_to_the_parent() {
        let yaml =
            "architecture: x\ndataset:\n  name: d\n  format: f\n  options:\n    val_fraction: 2\nepochs: 1\n";
        assert_eq!(locate(yaml, "architecture"), Some(1));
        assert_eq!(locate(yaml, "dataset.format"), Some(4));
        assert_eq!(locate(yaml, "dataset.options.val_fraction"), Some(6));
        assert_eq!(locate(yaml, "dataset.root"), Some(2));
        assert_eq!(locate(yaml, "epochs"), Some(7));
        assert_eq!(locate(yaml, "resolution"), None);
    }
}
