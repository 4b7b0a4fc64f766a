//! Which trials a report counts: one sweep's, one per cell and seed, and what was left out.
//!
//! A state dir may hold several sweeps (each trial belongs to every sweep that loaded it). A
//! report is about one: the one named by `--sweep`, or the only one there is. Within a sweep,
//! a cell and seed counts once: when a changed sweep file redefined the cell (other epochs, a
//! new SAL setting), the definition its sweep loaded last is the one reported. The means are
//! over completed trials; diverged, failed and unfinished ones are counted apart.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::store::{SweepInfo, TrialRecord};

use super::Axis;

/// The trials of one sweep that a report shows.
#[derive(Debug)]
pub struct Selection {
    pub sweep: String,
    pub records: Vec<TrialRecord>,
    /// Trials of the sweep whose cell a later definition replaced.
    pub superseded: usize,
    /// Trials of the state dir that are not in this sweep.
    pub other_sweeps: usize,
}

/// Why no sweep could be picked.
#[derive(Debug, PartialEq, Eq)]
pub struct SelectError(pub String);

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn listing(sweeps: &[SweepInfo]) -> String {
    let parts: Vec<String> =
        sweeps.iter().map(|s| format!("{} ({} trials)", s.name, s.trials.len())).collect();
    parts.join(", ")
}

/// Picks the sweep named `name` (or the only one) and its trials, one per cell and seed.
pub fn select(
    sweeps: &[SweepInfo],
    records: Vec<TrialRecord>,
    name: Option<&str>,
) -> Result<Selection, SelectError> {
    let sweep = match name {
        Some(name) => sweeps.iter().find(|s| s.name == name).ok_or_else(|| {
            SelectError(if sweeps.is_empty() {
                format!("--sweep {name}: this state dir holds no sweep")
            } else {
                format!("--sweep {name}: no such sweep here (this state dir holds {})", listing(sweeps))
            })
        })?,
        None => match sweeps {
            [] => {
                // Nothing loaded yet: an empty report.
                return Ok(Selection {
                    sweep: String::new(),
                    records: Vec::new(),
                    superseded: 0,
                    other_sweeps: 0,
                });
            }
            [only] => only,
            several => {
                return Err(SelectError(format!(
                    "this state dir holds {} sweeps: {}; pick one with --sweep NAME",
                    several.len(),
                    listing(several)
                )))
            }
        },
    };
    let seen: HashMap<&str, u64> = sweep.trials.iter().map(|(id, seen)| (id.as_str(), *seen)).collect();
    let total = records.len();
    let members: Vec<TrialRecord> =
        records.into_iter().filter(|r| seen.contains_key(r.id.as_str())).collect();
    let other_sweeps = total - members.len();
    // One trial per cell and seed: the one its sweep named last.
    let mut by_cell: BTreeMap<Vec<String>, TrialRecord> = BTreeMap::new();
    let mut superseded = 0;
    for record in members {
        let cell: Vec<String> = Axis::ALL.iter().map(|a| a.value(&record)).collect();
        let newer = |r: &TrialRecord| (seen[r.id.as_str()], r.id.clone());
        match by_cell.get(&cell) {
            Some(kept) if newer(kept) >= newer(&record) => superseded += 1,
            Some(_) => {
                superseded += 1;
                by_cell.insert(cell, record);
            }
            None => {
                by_cell.insert(cell, record);
            }
        }
    }
    Ok(Selection {
        sweep: sweep.name.clone(),
        records: by_cell.into_values().collect(),
        superseded,
        other_sweeps,
    })
}

/// Counts of a selection's trials by what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcomes {
    pub completed: usize,
    pub diverged: usize,
    pub failed: usize,
    pub unfinished: usize,
}

impl Outcomes {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a TrialRecord>) -> Self {
        let mut counts = Outcomes::default();
        for record in records {
            match outcome(record) {
                Outcome::Completed => counts.completed += 1,
                Outcome::Diverged => counts.diverged += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Unfinished => counts.unfinished += 1,
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, with a result: the only trials the means count.
    Completed,
    Diverged,
    Failed,
    /// Pending, leased or running.
    Unfinished,
}

pub fn outcome(record: &TrialRecord) -> Outcome {
    match record.state.as_str() {
        "done" if record.result.as_ref().is_some_and(|r| r.status == common::TrialStatus::Completed) => {
            Outcome::Completed
        }
        "diverged" => Outcome::Diverged,
        "failed" => Outcome::Failed,
        _ if record.result.as_ref().is_some_and(|r| r.status == common::TrialStatus::Diverged) => {
            Outcome::Diverged
        }
        _ => Outcome::Unfinished,
    }
}

/// One line on what the report counts and what it leaves out, and why.
pub fn summary(selection: &Selection) -> String {
    let counts = Outcomes::of(&selection.records);
    let mut text = format!(
        "sweep {}: {} trials, {} completed (in the means)",
        selection.sweep,
        selection.records.len(),
        counts.completed
    );
    let mut left_out = Vec::new();
    if counts.diverged > 0 {
        left_out.push(format!("{} diverged", counts.diverged));
    }
    if counts.failed > 0 {
        left_out.push(format!("{} failed", counts.failed));
    }
    if counts.unfinished > 0 {
        left_out.push(format!("{} not finished", counts.unfinished));
    }
    if !left_out.is_empty() {
        text.push_str(&format!("; left out of the means: {}", left_out.join(", ")));
        if counts.diverged + counts.failed > 0 {
            text.push_str(" (`report --failures` lists them)");
        }
    }
    if selection.superseded > 0 {
        text.push_str(&format!(
            "; {} earlier definitions of the same cells left out (the sweep file changed them since)",
            selection.superseded
        ));
    }
    if selection.other_sweeps > 0 {
        text.push_str(&format!(
            "; {} trials of other sweeps in this state dir not shown",
            selection.other_sweeps
        ));
    }
    text
}

/// The diverged and failed trials, each with its cell and what went wrong.
pub fn failures(records: &[TrialRecord]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| {
            let why = match outcome(record) {
                Outcome::Failed => {
                    format!(
                        "failed after {} attempt{}: {}",
                        record.attempts,
                        if record.attempts == 1 { "" } else { "s" },
                        record.last_error.as_deref().unwrap_or("?")
                    )
                }
                Outcome::Diverged => {
                    let last = record.result.as_ref().and_then(|r| r.history.last());
                    match last {
                        Some(epoch) => format!(
                            "diverged (a loss not finite); last epoch recorded: {}, train loss {}",
                            epoch.epoch, epoch.train_loss
                        ),
                        None => "diverged (a loss not finite) before its first epoch ended".to_string(),
                    }
                }
                Outcome::Completed | Outcome::Unfinished => return None,
            };
            let spec = &record.spec;
            Some(format!(
                "{} {}/{} seed {}: {why}",
                record.id,
                spec.cell_label(),
                spec.method.name(),
                spec.seed
            ))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use common::{TrialResult, TrialSpec, TrialStatus};

    /// A trial record: `setup` overrides fields of a noop spec (`{"epochs": 50}`, ...).
    pub(crate) fn record(id: &str, state: &str, top1: Option<f64>, setup: serde_json::Value) -> TrialRecord {
        let mut spec = serde_json::json!({
            "architecture": "densenet201", "optimizer": "adam",
            "dataset": {"name": "imagenette", "format": "imagenette", "root": "/data/imagenette2"},
            "resolution": 64, "method": "sal", "epochs": 50, "batch_size": 64,
            "learning_rate": 1e-5, "seed": 1, "head": "paper", "pretrained": "/w/densenet201.safetensors",
        });
        for (key, value) in setup.as_object().unwrap() {
            spec[key] = value.clone();
        }
        let spec: TrialSpec = serde_json::from_value(spec).unwrap();
        let status = if state == "diverged" { TrialStatus::Diverged } else { TrialStatus::Completed };
        let result =
            top1.map(|top1| TrialResult { top5: 0.99, ..crate::store::stand_in_result(status, top1) });
        TrialRecord {
            id: id.into(),
            spec,
            state: state.into(),
            attempts: 1,
            last_error: (state == "failed").then(|| "dataset root missing".to_string()),
            result,
            epochs: Vec::new(),
        }
    }

    fn sweep(name: &str, trials: &[(&str, u64)]) -> SweepInfo {
        SweepInfo {
            name: name.into(),
            file: format!("{name}.yaml").into(),
            trials: trials.iter().map(|(id, seen)| (id.to_string(), *seen)).collect(),
        }
    }

    #[test]
    fn a_state_dir_with_several_sweeps_needs_a_name_and_reports_each_alone() {
        let records = || {
            vec![
                record("a", "done", Some(0.8), serde_json::json!({"seed": 1})),
                record("b", "done", Some(0.9), serde_json::json!({"seed": 2})),
                record("c", "done", Some(0.1), serde_json::json!({"seed": 1, "architecture": "resnet50"})),
            ]
        };
        let sweeps = [sweep("paper", &[("a", 1), ("b", 1)]), sweep("smoke", &[("c", 1), ("a", 1)])];
        let error = select(&sweeps, records(), None).unwrap_err().0;
        assert_eq!(
            error,
            "this state dir holds 2 sweeps: paper (2 trials), smoke (2 trials); pick one with --sweep NAME"
        );
        let smoke = select(&sweeps, records(), Some("smoke")).unwrap();
        let ids: Vec<&str> = smoke.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!((ids.len(), smoke.other_sweeps), (2, 1));
        assert!(ids.contains(&"a") && ids.contains(&"c"));
        let error = select(&sweeps, records(), Some("nope")).unwrap_err().0;
        assert!(error.contains("--sweep nope") && error.contains("paper (2 trials)"), "{error}");
        // One sweep: no name needed.
        assert_eq!(select(&sweeps[..1], records(), None).unwrap().records.len(), 2);
    }

    #[test]
    fn a_redefined_cell_counts_once_with_its_latest_definition() {
        let records = vec![
            record("old", "done", Some(0.5), serde_json::json!({"epochs": 10})),
            record("new", "done", Some(0.9), serde_json::json!({"epochs": 50})),
            record("gone", "diverged", Some(0.0), serde_json::json!({"seed": 2})),
            record("bad", "failed", None, serde_json::json!({"seed": 3})),
            record("wait", "pending", None, serde_json::json!({"seed": 4})),
        ];
        let sweeps = [sweep("paper", &[("old", 1), ("new", 2), ("gone", 2), ("bad", 2), ("wait", 2)])];
        let selection = select(&sweeps, records, None).unwrap();
        assert_eq!(selection.records.len(), 4);
        assert!(
            selection.records.iter().any(|r| r.id == "new")
                && !selection.records.iter().any(|r| r.id == "old")
        );
        assert_eq!(selection.superseded, 1);
        let summary = summary(&selection);
        assert_eq!(
            summary,
            "sweep paper: 4 trials, 1 completed (in the means); left out of the means: 1 diverged, 1 failed, \
             1 not finished (`report --failures` lists them); 1 earlier definitions of the same cells left out \
             (the sweep file changed them since)"
        );
        let failures = failures(&selection.records);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures
            .iter()
            .any(|l| l.starts_with("bad ") && l.contains("failed after 1 attempt: dataset root missing")));
        assert!(failures.iter().any(|l| l.starts_with("gone ") && l.contains("diverged")));
    }
}
