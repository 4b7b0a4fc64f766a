//! The page's questions, answered as JSON (the report's tables as HTML, built by the report):
//! the sweep at a glance, the trial table (paged, sorted and filtered here, so that 13,440 rows
//! never travel), one trial and its curves, one cell's methods against its baseline, the grid's
//! heat map. Numbers come from the report's functions (`report::stats`, `report::tables`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::model::{Model, TrialRow};
use super::{with_model, Shared};
use crate::report::{self, stats, Axis};

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no {what} here") }))).into_response()
}

/// The states a trial goes through, in the order the page shows them.
const STATES: [&str; 6] = ["pending", "leased", "running", "done", "diverged", "failed"];

pub async fn summary(State(shared): State<Arc<Shared>>) -> Response {
    let counts = with_model(&shared, |model| {
        let mut counts: BTreeMap<&str, u32> = STATES.iter().map(|s| (*s, 0)).collect();
        for trial in &model.trials {
            *counts
                .entry(STATES.iter().find(|s| **s == trial.state).copied().unwrap_or("pending"))
                .or_default() += 1;
        }
        let failures: Vec<Value> = model
            .trials
            .iter()
            .filter(|t| matches!(t.state.as_str(), "failed" | "diverged"))
            .take(50)
            .map(|t| json!({ "id": t.id, "label": t.spec.label(), "state": t.state, "error": t.last_error }))
            .collect();
        Ok(json!({
            "sweep": model.sweep,
            "total": model.trials.len(),
            "states": counts,
            "eta_seconds": eta_seconds(model),
            "failures": failures,
            "version": model.version,
        }))
    })
    .await;
    let mut body = match counts {
        Ok(body) => body,
        Err(response) => return response,
    };
    // The running coordinator knows what no file says: its workers, their devices, a full disk.
    body["live"] = json!(shared.live.is_some());
    if let Some(store) = &shared.live {
        if let Ok(status) = store.status().await {
            body["workers"] =
                json!(status.workers.iter().map(super::metrics::worker_json).collect::<Vec<_>>());
            body["state_dir_full"] = json!(status.state_dir_full.map(|f| f.describe()));
        }
    }
    body["state_dir"] = json!(shared.state_dir.display().to_string());
    Json(body).into_response()
}

/// Seconds to the sweep's end from measured epoch times: each unfinished trial's remaining epochs
/// at the mean epoch time of its profile (architecture, resolution, batch) where one is measured,
/// else of the sweep; spread over the trials running at once.
fn eta_seconds(model: &Model) -> Option<f64> {
    fn profile(t: &TrialRow) -> (&str, u32, u32) {
        (t.spec.architecture.as_str(), t.spec.resolution, t.spec.batch_size)
    }
    let mut measured: HashMap<(&str, u32, u32), (f64, u32)> = HashMap::new();
    for trial in &model.trials {
        let seconds = match (&trial.result, &trial.last) {
            (Some(result), _) if result.train_seconds > 0.0 => {
                result.train_seconds / f64::from(trial.spec.epochs)
            }
            (None, Some(last)) if last.seconds > 0.0 => last.seconds,
            _ => continue,
        };
        let entry = measured.entry(profile(trial)).or_default();
        entry.0 += seconds;
        entry.1 += 1;
    }
    let (sum, n) = measured.values().fold((0.0, 0), |(s, n), (ms, mn)| (s + ms, n + mn));
    let overall = (n > 0).then(|| sum / f64::from(n))?;
    let unfinished: Vec<&TrialRow> = model
        .trials
        .iter()
        .filter(|t| matches!(t.state.as_str(), "pending" | "leased" | "running"))
        .collect();
    if unfinished.is_empty() {
        return None;
    }
    let remaining: f64 = unfinished
        .iter()
        .map(|t| {
            let per_epoch = measured.get(&profile(t)).map_or(overall, |(s, n)| s / f64::from(*n));
            let done = t.last.as_ref().map_or(0, |e| e.epoch);
            f64::from(t.spec.epochs.saturating_sub(done)) * per_epoch
        })
        .sum();
    let at_once = unfinished.iter().filter(|t| t.state != "pending").count().max(1);
    Some(remaining / at_once as f64)
}

/// One trial: its row, spec and manifest as stored, its SAL thresholds, the command that
/// reproduces it.
pub async fn trial(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let state_dir = shared.state_dir.display().to_string();
    let answer = with_model(&shared, move |model| {
        let Some(trial) = model.trial(&id) else { return Ok(None) };
        let stored = model.stored_json(&id).map_err(|e| e.to_string())?;
        let (spec_json, manifest_json) = stored.unwrap_or_default();
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let spec = &trial.spec;
        Ok(Some(json!({
            "row": super::table::row(trial),
            "spec": parse(&spec_json),
            "manifest": manifest_json.as_deref().map(parse),
            "error": trial.last_error,
            "learning_rate": spec.learning_rate,
            "sal": spec.method.uses_stress().then(|| json!({ "s_noise": spec.sal.s_noise, "s_yield": spec.sal.s_yield })),
            "cell": { "architecture": spec.architecture, "optimizer": spec.optimizer, "dataset": spec.dataset.name, "resolution": spec.resolution },
            "reproduce": format!("coordinator reproduce {} --state-dir {}", trial.id, shell_word(&state_dir)),
        })))
    })
    .await;
    match answer {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => not_found("such trial"),
        Err(response) => response,
    }
}

/// A path as one shell word, for a command to copy.
fn shell_word(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A trial's curves: one array per series, downsampled to at most `points` epochs (the
/// epochs where SAL acted are always kept), and the stream cursor to resume from.
pub async fn series(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let points = query.get("points").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1000).clamp(10, 100_000);
    let answer = with_model(&shared, move |model| {
        if model.trial(&id).is_none() {
            return Ok(None);
        }
        let (history, cursor) = model.history(&id, 0).map_err(|e| e.to_string())?;
        Ok(Some(json!({ "cursor": cursor, "points": history.len(), "series": series_json(&downsample(&history, points)) })))
    })
    .await;
    match answer {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => not_found("such trial"),
        Err(response) => response,
    }
}

/// At most `points` epochs, evenly spread, the first, the last and every intervention kept.
pub fn downsample(history: &[common::EpochReport], points: usize) -> Vec<common::EpochReport> {
    if history.len() <= points {
        return history.to_vec();
    }
    let every = history.len().div_ceil(points);
    history
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            i % every == 0
                || *i + 1 == history.len()
                || e.sal.as_ref().is_some_and(|s| s.applied != sal_core::Action::None)
        })
        .map(|(_, e)| e.clone())
        .collect()
}

/// Epoch reports as columns, with SAL's interventions as markers.
pub fn series_json(history: &[common::EpochReport]) -> Value {
    let column = |f: &dyn Fn(&common::EpochReport) -> Option<f64>| history.iter().map(f).collect::<Vec<_>>();
    let markers: Vec<Value> = history
        .iter()
        .filter_map(|e| {
            let sal = e.sal.as_ref()?;
            let kind = match sal.applied {
                sal_core::Action::None => return None,
                sal_core::Action::Noise => "noise",
                sal_core::Action::Plastic => "plastic",
                sal_core::Action::NoisePlastic => "noise_plastic",
                sal_core::Action::Recovered => "recovered",
            };
            Some(json!({ "epoch": e.epoch, "kind": kind, "stress": sal.stress }))
        })
        .collect();
    json!({
        "epoch": history.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        "train_loss": column(&|e| Some(e.train_loss)),
        "val_loss": column(&|e| Some(e.val_loss)),
        "train_accuracy": column(&|e| Some(e.train_accuracy)),
        "val_accuracy": column(&|e| Some(e.val_accuracy)),
        "grad_norm": column(&|e| Some(e.grad_norm)),
        "stress": column(&|e| e.sal.as_ref().map(|s| s.stress)),
        "markers": markers,
    })
}

/// `/api/cell?architecture=..&optimizer=..&dataset=..&resolution=..`: the cell's baseline beside
/// each other method, paired by seed: the report's paired statistics (Holm over the sweep's
/// cells, as the report adjusts them), wins out of n, and per seed the Δ validation accuracy per
/// epoch.
pub async fn cell(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let answer = with_model(&shared, move |model| {
        let want = |t: &TrialRow| {
            ["architecture", "optimizer", "dataset", "resolution"]
                .iter()
                .all(|key| query.get(*key).is_none_or(|v| super::table::matches(t, key, v)))
        };
        let members: Vec<&TrialRow> = model.trials.iter().filter(|t| want(t)).collect();
        let Some(first) = members.first() else { return Ok(None) };
        let cell = stats::Cell::of(&first.record(None));
        let records = model.records().map_err(|e| e.to_string())?;
        let methods: BTreeSet<common::Method> =
            members.iter().map(|t| t.spec.method).filter(|m| *m != common::Method::Baseline).collect();
        let baseline: BTreeMap<u64, &TrialRow> =
            members.iter().filter(|t| t.spec.method == common::Method::Baseline).map(|t| (t.spec.seed, *t)).collect();
        let mut out = Vec::new();
        for method in methods {
            let comparison = stats::compare_method(&records, method).into_iter().find(|c| c.cell == cell);
            let mut seeds = Vec::new();
            for trial in members.iter().filter(|t| t.spec.method == method) {
                let Some(base) = baseline.get(&trial.spec.seed) else { continue };
                let (ours, _) = model.history(&trial.id, 0).map_err(|e| e.to_string())?;
                let (theirs, _) = model.history(&base.id, 0).map_err(|e| e.to_string())?;
                let delta: Vec<Value> = ours
                    .iter()
                    .filter_map(|e| {
                        let b = theirs.iter().find(|b| b.epoch == e.epoch)?;
                        Some(json!([e.epoch, (e.val_accuracy - b.val_accuracy) * 100.0]))
                    })
                    .collect();
                seeds.push(json!({ "seed": trial.spec.seed, "trial": trial.id, "baseline": base.id, "delta": delta }));
            }
            out.push(json!({
                "method": method.name(),
                "comparison": comparison.map(|c| comparison_json(&c)),
                "seeds": seeds,
            }));
        }
        Ok(Some(json!({ "cell": cell.label(), "methods": out })))
    })
    .await;
    match answer {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => not_found("trial of that cell"),
        Err(response) => response,
    }
}

fn comparison_json(c: &stats::CellComparison) -> Value {
    let p = &c.comparison;
    json!({
        "n": p.n,
        "mean": p.mean_ci.map(|m| m.mean),
        "ci95": p.mean_ci.and_then(|m| m.ci95),
        "t_p": p.t_test.value(),
        "t_holm": c.t_holm,
        "wilcoxon_p": p.wilcoxon.value(),
        "wilcoxon_holm": c.wilcoxon_holm,
        "wins": p.differences.iter().filter(|d| **d > 0.0).count(),
        "unpaired": c.unpaired,
    })
}

/// `/api/grid?rows=architecture&cols=dataset&method=sal`: mean Δ top-1 (method − baseline,
/// percentage points) over the cells that share a row and a column value, each with its cells.
pub async fn grid(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let answer = with_model(&shared, move |model| {
        let axis = |key: &str, default: &str| -> Result<String, String> {
            let name = query.get(key).map_or(default, String::as_str);
            ["architecture", "optimizer", "dataset", "resolution"]
                .contains(&name)
                .then(|| name.to_string())
                .ok_or_else(|| format!("`{key}`: {name} is not a cell axis"))
        };
        let (rows, cols) = (axis("rows", "architecture")?, axis("cols", "dataset")?);
        let method = query.get("method").map_or("sal", String::as_str);
        let method: common::Method =
            serde_json::from_value(json!(method)).map_err(|_| format!("`method`: unknown method {method}"))?;
        let records = model.records().map_err(|e| e.to_string())?;
        let methods: Vec<&str> = stats::other_methods(&records)
            .into_iter()
            .chain((records.iter().any(|r| r.spec.method == common::Method::Sal)).then_some(common::Method::Sal))
            .map(|m| m.name())
            .collect();
        let mut cells: BTreeMap<(String, String), Vec<(f64, Value)>> = BTreeMap::new();
        for c in stats::compare_method(&records, method) {
            let Some(mean) = c.comparison.mean_ci.map(|m| m.mean) else { continue };
            let value = |a: &str| match a {
                "architecture" => c.cell.architecture.clone(),
                "optimizer" => c.cell.optimizer.clone(),
                "dataset" => c.cell.dataset.clone(),
                _ => c.cell.resolution.to_string(),
            };
            let link = json!({ "architecture": c.cell.architecture, "optimizer": c.cell.optimizer, "dataset": c.cell.dataset, "resolution": c.cell.resolution, "label": c.cell.label(), "mean": mean });
            cells.entry((value(&rows), value(&cols))).or_default().push((mean, link));
        }
        let row_values: BTreeSet<&String> = cells.keys().map(|k| &k.0).collect();
        let col_values: BTreeSet<&String> = cells.keys().map(|k| &k.1).collect();
        let entries: Vec<Value> = cells
            .iter()
            .map(|((r, c), list)| {
                let mean = list.iter().map(|(m, _)| m).sum::<f64>() / list.len() as f64;
                json!({ "row": r, "col": c, "mean": mean, "cells": list.iter().map(|(_, l)| l).collect::<Vec<_>>() })
            })
            .collect();
        Ok(json!({ "rows_axis": rows, "cols_axis": cols, "method": method.name(), "methods": methods,
                   "rows": row_values, "cols": col_values, "entries": entries }))
    })
    .await;
    answer.map_or_else(|r| r, |body| Json(body).into_response())
}

/// The report's tables (the list `coordinator report` prints) and its sweep plots, as HTML
/// fragments escaped by the report itself.
pub async fn report(State(shared): State<Arc<Shared>>) -> Response {
    let answer = with_model(&shared, |model| {
        let records = model.records().map_err(|e| e.to_string())?;
        let axes: Vec<Axis> = report::tables::default_axes(&records);
        let tables: Vec<String> = report::tables::report_grids(&model.sweep, &records, &axes, None)
            .iter()
            .enumerate()
            .map(|(i, grid)| grid.html(&format!("table-{i}")))
            .collect();
        let plots: Vec<String> = report::plots::sweep_plots(&records)
            .iter()
            .filter_map(|named| {
                named.plot.svg().ok().map(|svg| svg[svg.find("<svg").unwrap_or(0)..].to_string())
            })
            .collect();
        Ok(json!({ "tables": tables, "plots": plots, "version": model.version }))
    })
    .await;
    answer.map_or_else(|r| r, |body| Json(body).into_response())
}
