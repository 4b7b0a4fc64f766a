//! One trial, whole: its spec, its epoch history with SAL's actions, its per-class table and its
//! confusion matrix; `coordinator show TRIAL` and the HTML page's trial sections are made of these.

use std::fmt::Write as _;
use std::path::Path;

use super::grid::Grid;
use super::model::{history, title, Action, TrialRecord};
use super::plots;

/// The trial whose id starts with `prefix`; an ambiguous or unknown prefix is an error that says so.
pub fn find<'a>(records: &'a [TrialRecord], prefix: &str) -> Result<&'a TrialRecord, String> {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return Err("give a trial id (or the first characters of one)".into());
    }
    let matches: Vec<&TrialRecord> = records.iter().filter(|r| r.id.starts_with(prefix)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no trial id starts with `{prefix}` ({} trials in the store)", records.len())),
        many => {
            let ids: Vec<&str> = many.iter().take(5).map(|r| r.id.as_str()).collect();
            Err(format!(
                "`{prefix}` is the start of {} trial ids ({}{}); give more characters",
                many.len(),
                ids.join(", "),
                if many.len() > 5 { ", ..." } else { "" }
            ))
        }
    }
}

pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::None => "",
        Action::Noise => "noise",
        Action::Plastic => "plastic",
        Action::NoisePlastic => "noise+plastic",
        Action::Recovered => "recovered",
    }
}

pub fn history_grid(record: &TrialRecord) -> Grid {
    let header = [
        "epoch",
        "train loss",
        "train acc %",
        "val loss",
        "val acc %",
        "grad norm",
        "stress",
        "stress after",
        "SAL action",
        "noise σ",
        "seconds",
    ];
    let rows: Vec<Vec<String>> = history(record)
        .iter()
        .map(|e| {
            let (stress, after, action, sigma) = match &e.sal {
                Some(s) => (
                    format!("{:.4}", s.stress),
                    format!("{:.4}", s.stress_after),
                    if s.withheld() {
                        format!("{} (decided {}, last epoch)", action_name(s.applied), action_name(s.decided))
                    } else {
                        action_name(s.applied).to_string()
                    },
                    if s.noise_sigma > 0.0 { format!("{:.2e}", s.noise_sigma) } else { String::new() },
                ),
                None => Default::default(),
            };
            vec![
                e.epoch.to_string(),
                format!("{:.4}", e.train_loss),
                format!("{:.2}", e.train_accuracy * 100.0),
                format!("{:.4}", e.val_loss),
                format!("{:.2}", e.val_accuracy * 100.0),
                format!("{:.3}", e.grad_norm),
                stress,
                after,
                action,
                sigma,
                format!("{:.2}", e.seconds),
            ]
        })
        .collect();
    let interventions = rows.iter().filter(|r| !r[8].is_empty()).count();
    let mut notes = Vec::new();
    if record.spec.method.uses_stress() {
        let sal = &record.spec.sal;
        notes.push(format!(
            "SAL: S_noise {}, S_yield {}, warm-up {} epochs; {interventions} epoch(s) with an action.",
            sal.s_noise, sal.s_yield, sal.warmup_epochs
        ));
    }
    Grid {
        title: "History".into(),
        header: header.map(String::from).to_vec(),
        rows,
        numeric_from: 0,
        notes,
        importance: &[],
    }
}

/// Precision, recall, F1 (percent) and support per class, then the averages; `None` before a result.
pub fn per_class_grid(record: &TrialRecord) -> Option<Grid> {
    let result = record.result.as_ref()?;
    let row = |c: &super::model::ClassMetrics| {
        vec![
            c.label.clone(),
            format!("{:.2}", c.precision * 100.0),
            format!("{:.2}", c.recall * 100.0),
            format!("{:.2}", c.f1 * 100.0),
            c.support.to_string(),
        ]
    };
    let mut rows: Vec<Vec<String>> = result.per_class.iter().map(row).collect();
    let mut macro_row = row(&result.macro_avg);
    macro_row[0] = "Macro Avg".into();
    let mut weighted_row = row(&result.weighted_avg);
    weighted_row[0] = "Weighted Avg".into();
    rows.push(macro_row);
    rows.push(weighted_row);
    Some(Grid {
        title: "Per class".into(),
        header: ["class", "precision %", "recall %", "F1 %", "support"].map(String::from).to_vec(),
        rows,
        numeric_from: 1,
        notes: vec![format!(
            "top-1 {:.2} %, top-5 {:.2} %, test loss {:.4}",
            result.top1 * 100.0,
            result.top5 * 100.0,
            result.test_loss
        )],
        importance: &[],
    })
}

/// `confusion[true][predicted]`, labelled with the classes; `None` before a result.
pub fn confusion_grid(record: &TrialRecord) -> Option<Grid> {
    let result = record.result.as_ref()?;
    if result.confusion.is_empty() {
        return None;
    }
    let labels: Vec<String> = (0..result.confusion.len())
        .map(|i| result.per_class.get(i).map_or_else(|| i.to_string(), |c| c.label.clone()))
        .collect();
    let mut header = vec!["true \\ predicted".to_string()];
    header.extend(labels.iter().cloned());
    let rows = result
        .confusion
        .iter()
        .zip(&labels)
        .map(|(counts, label)| {
            let mut row = vec![label.clone()];
            row.extend(counts.iter().map(u64::to_string));
            row
        })
        .collect();
    Some(Grid {
        title: "Confusion matrix".into(),
        header,
        rows,
        numeric_from: 1,
        notes: Vec::new(),
        importance: &[],
    })
}

/// What `coordinator show TRIAL` prints: the spec, the history, the per-class table and where the
/// trial's plots are (under `plots_dir`, as `coordinator report --plots DIR` writes them).
pub fn show(record: &TrialRecord, plots_dir: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trial {}: {}", record.id, title(record));
    let _ = writeln!(out, "state {}, {} attempt(s)", record.state, record.attempts);
    if let Some(error) = &record.last_error {
        let _ = writeln!(out, "last error: {error}");
    }
    let spec = serde_yaml_ng::to_string(&record.spec).unwrap_or_default();
    let _ = writeln!(out, "\nspec:");
    for line in spec.lines() {
        let _ = writeln!(out, "  {line}");
    }
    match record.result.as_ref().map(|r| r.manifest.as_ref()) {
        Some(Some(manifest)) => {
            let _ = writeln!(out, "\nproduced by:");
            for (name, value) in manifest.rows() {
                let _ = writeln!(out, "  {name}: {value}");
            }
        }
        Some(None) => {
            let _ = writeln!(out, "\nproduced by: not recorded (stored before results carried a manifest)");
        }
        None => {}
    }
    out.push('\n');
    out.push_str(&history_grid(record).text());
    match per_class_grid(record) {
        Some(grid) => {
            out.push('\n');
            out.push_str(&grid.text());
        }
        None => out.push_str("\nno result yet: no per-class table\n"),
    }
    if let Some(f) = record.result.as_ref().and_then(|r| r.flatness.as_ref()) {
        let _ = writeln!(
            out,
            "\nflatness ({} images, {} parameters, {:?}): Tr(H) {:.6e} ± {:.2e} (SE, {} probes), \
             λ_max {:.6e} (residual {:.1e}, {} iterations), gradient norm {:.4e}, loss {:.6}",
            f.images,
            f.parameters,
            f.params,
            f.trace_h,
            f.trace_h_se,
            f.probes,
            f.lambda_max,
            f.lambda_residual,
            f.power_iterations,
            f.grad_norm,
            f.loss
        );
    }
    let files = plots::trial_plot_files(plots_dir, record);
    let present: Vec<_> = files.iter().filter(|p| p.is_file()).collect();
    out.push('\n');
    if present.is_empty() {
        let _ = writeln!(
            out,
            "plots: none under {} yet (coordinator report --plots {} writes them)",
            plots_dir.display(),
            plots_dir.display()
        );
    } else {
        let _ = writeln!(out, "plots:");
        for path in present {
            let _ = writeln!(out, "  {}", path.display());
        }
    }
    out
}
