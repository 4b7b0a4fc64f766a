//! The trial table: `/api/trials`, one page of the sweep's trials sorted and filtered here, so
//! that 13,440 rows never travel to the browser.
//!
//! It is what open tabs ask for most (each refetches it as results arrive), so a page is built
//! without copying the sweep: filters compare in place, every row's sort key is computed once and
//! borrowed, and only the page's rows become JSON. The axes' values for the filter menus are the
//! model's, read once when it loads.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::model::TrialRow;
use super::{with_model, Shared};

/// The columns a filter may name: the grid's axes, the method, the seed, the state.
pub const FILTERS: [&str; 7] =
    ["architecture", "optimizer", "dataset", "resolution", "method", "seed", "state"];

/// `/api/trials?page=0&size=50&sort=top1&desc=1&method=sal&state=done&q=text`: one page of the
/// sweep's trials, with every filter's values (facets) for the page's menus.
pub async fn trials(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let answer = with_model(&shared, move |model| {
        let size = query.get("size").and_then(|s| s.parse::<usize>().ok()).unwrap_or(50).clamp(1, 500);
        let page = query.get("page").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
        let words: Vec<String> = query
            .get("q")
            .map(|q| q.to_lowercase().split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let filters: Vec<(&str, &str)> = FILTERS
            .iter()
            .filter_map(|key| query.get(*key).filter(|v| !v.is_empty()).map(|v| (*key, v.as_str())))
            .collect();
        let column = query.get("sort").map_or("id", String::as_str);
        let descending = query.get("desc").is_some_and(|d| d == "1");
        let mut rows: Vec<(SortKey<'_>, &TrialRow)> = model
            .trials
            .iter()
            .filter(|t| filters.iter().all(|(key, value)| matches(t, key, value)))
            .filter(|t| words.is_empty() || found(t, &words))
            .map(|t| (sort_key(t, column), t))
            .collect();
        rows.sort_unstable_by(|(ka, a), (kb, b)| {
            let order = ka.cmp(kb).then_with(|| a.id.cmp(&b.id));
            if descending {
                order.reverse()
            } else {
                order
            }
        });
        let mut facets = model.facets.clone();
        let states: BTreeSet<&str> = model.trials.iter().map(|t| t.state.as_str()).collect();
        facets.insert("state", states.into_iter().map(String::from).collect());
        let total = rows.len();
        let page_rows: Vec<Value> = rows.into_iter().skip(page * size).take(size).map(|(_, t)| row(t)).collect();
        Ok(json!({ "total": total, "page": page, "size": size, "rows": page_rows, "facets": facets, "version": model.version }))
    })
    .await;
    answer.map_or_else(|r| r, |body| Json(body).into_response())
}

/// Whether a trial has `value` in the column `key` (as the page spells it).
pub(super) fn matches(trial: &TrialRow, key: &str, value: &str) -> bool {
    let spec = &trial.spec;
    match key {
        "architecture" => spec.architecture == value,
        "optimizer" => spec.optimizer == value,
        "dataset" => spec.dataset.name == value,
        "resolution" => value.parse() == Ok(spec.resolution),
        "method" => spec.method.name() == value,
        "seed" => value.parse() == Ok(spec.seed),
        _ => trial.state == value,
    }
}

/// Whether every word of a search is in the trial's id or name (case aside).
fn found(trial: &TrialRow, words: &[String]) -> bool {
    let text = format!("{} {}", trial.id, trial.spec.label()).to_lowercase();
    words.iter().all(|w| text.contains(w.as_str()))
}

/// A row's place in a sorted column: a number (missing ones first) or a text, borrowed.
#[derive(Debug, PartialEq)]
enum SortKey<'a> {
    Number(f64),
    Text(&'a str),
}

impl Eq for SortKey<'_> {}

impl PartialOrd for SortKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            // One column has one kind; numbers before texts for completeness.
            (SortKey::Number(_), SortKey::Text(_)) => Ordering::Less,
            (SortKey::Text(_), SortKey::Number(_)) => Ordering::Greater,
        }
    }
}

fn sort_key<'a>(trial: &'a TrialRow, column: &str) -> SortKey<'a> {
    let spec = &trial.spec;
    let number = |v: Option<f64>| SortKey::Number(v.unwrap_or(f64::NEG_INFINITY));
    match column {
        "resolution" => number(Some(f64::from(spec.resolution))),
        "seed" => number(Some(spec.seed as f64)),
        "attempts" => number(Some(f64::from(trial.attempts))),
        "epoch" => number(trial.last.as_ref().map(|e| f64::from(e.epoch))),
        "train_loss" => number(trial.last.as_ref().map(|e| e.train_loss)),
        "last_val_accuracy" => number(trial.last.as_ref().map(|e| e.val_accuracy)),
        "best_val_accuracy" => number(trial.best_val_accuracy),
        "top1" => number(trial.result.as_ref().map(|r| r.top1)),
        "architecture" => SortKey::Text(&spec.architecture),
        "optimizer" => SortKey::Text(&spec.optimizer),
        "dataset" => SortKey::Text(&spec.dataset.name),
        "method" => SortKey::Text(spec.method.name()),
        "state" => SortKey::Text(&trial.state),
        _ => SortKey::Text(&trial.id),
    }
}

/// A trial's row in the table.
pub(super) fn row(trial: &TrialRow) -> Value {
    let spec = &trial.spec;
    json!({
        "id": trial.id,
        "label": spec.label(),
        "architecture": spec.architecture,
        "optimizer": spec.optimizer,
        "dataset": spec.dataset.name,
        "resolution": spec.resolution,
        "method": spec.method.name(),
        "seed": spec.seed,
        "state": trial.state,
        "attempts": trial.attempts,
        "epoch": trial.last.as_ref().map(|e| e.epoch),
        "epochs": spec.epochs,
        "train_loss": trial.last.as_ref().map(|e| e.train_loss),
        "last_val_accuracy": trial.last.as_ref().map(|e| e.val_accuracy),
        "best_val_accuracy": trial.best_val_accuracy,
        "top1": trial.result.as_ref().map(|r| r.top1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_numbers_by_value_with_missing_ones_first_and_texts_alphabetically() {
        let mut keys = [SortKey::Number(2.5), SortKey::Number(f64::NEG_INFINITY), SortKey::Number(-1.0)];
        keys.sort();
        assert_eq!(keys, [SortKey::Number(f64::NEG_INFINITY), SortKey::Number(-1.0), SortKey::Number(2.5)]);
        let mut texts = [SortKey::Text("sal"), SortKey::Text("baseline")];
        texts.sort();
        assert_eq!(texts, [SortKey::Text("baseline"), SortKey::Text("sal")]);
    }
}
