//! `--only key=value[,value]`: a slice of the grid.

use common::TrialSpec;

use super::{method_name, PlannedTrial, SpecError};
use crate::sweep::identity;

/// A `shrink_perturb_random` trial waits for the `sal` trial of its cell and seed: an `--only`
/// that keeps the one without the other would leave it waiting forever.
pub(super) fn require_sal_partners(trials: &[PlannedTrial], only: &[String]) -> Result<(), SpecError> {
    let ids: std::collections::HashSet<&str> = trials.iter().map(|t| t.id.as_str()).collect();
    let orphans = trials
        .iter()
        .filter(|t| {
            identity::sal_partner_id(&t.identity).is_some_and(|partner| !ids.contains(partner.as_str()))
        })
        .count();
    if orphans == 0 {
        return Ok(());
    }
    Err(SpecError::Only {
        filter: only.join(" "),
        message: format!(
            "keeps {orphans} `shrink_perturb_random` trial(s) without the `sal` trial each repeats; \
             keep `method=sal` too"
        ),
    })
}

/// Keeps the trials one `--only key=value[,value]` selects.
pub(super) fn apply_only(filter: &str, trials: Vec<PlannedTrial>) -> Result<Vec<PlannedTrial>, SpecError> {
    let only_error = |message: String| SpecError::Only { filter: filter.into(), message };
    let (key, values) =
        filter.split_once('=').ok_or_else(|| only_error("expected key=value[,value]".into()))?;
    let values: Vec<&str> = values.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return Err(only_error("no value after `=`".into()));
    }
    let axis: fn(&TrialSpec) -> String = match key.trim() {
        "architecture" | "architectures" => |s| s.architecture.clone(),
        "optimizer" | "optimizers" => |s| s.optimizer.clone(),
        "dataset" | "datasets" => |s| s.dataset.name.clone(),
        "resolution" | "resolutions" => |s| s.resolution.to_string(),
        "method" | "methods" => |s| method_name(s.method).to_string(),
        "seed" | "seeds" => |s| s.seed.to_string(),
        other => {
            return Err(only_error(format!(
                "unknown axis `{other}` (known: architecture, optimizer, dataset, resolution, method, seed)"
            )))
        }
    };
    for value in &values {
        if !trials.iter().any(|t| axis(&t.spec) == *value) {
            return Err(only_error(format!("`{value}` is not a value of this axis in the sweep")));
        }
    }
    Ok(trials.into_iter().filter(|t| values.contains(&axis(&t.spec).as_str())).collect())
}
