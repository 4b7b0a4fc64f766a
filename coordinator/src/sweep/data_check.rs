//! The data check at start: before any trial is leased, every dataset and trunk the sweep's trials
//! use is read from the disk (layout, classes, images per split, each image's header, weights
//! against their manifest), so that the first trial is never the first to find a broken data root.
//!
//! Which roots are checked: with `--check-data` (always on with `--local`) every one, and a root
//! that is not there is a problem; otherwise the coordinator may run on a host that does not see
//! the data (the workers' nodes do), so it checks only the roots it can see and says which it
//! skipped.

use std::path::Path;

use common::names::NOOP;
use datasets::check::{self, Depth, Plan, Report};

use crate::sweep::spec::Sweep;

/// What the check found, and what it could not look at.
pub struct DataCheck {
    pub report: Report,
    /// Roots and weights not on this machine (only when the check was not required).
    pub not_visible: Vec<String>,
}

impl DataCheck {
    /// One line per problem, `dataset: what` (empty when the data is sound).
    pub fn problems(&self) -> Vec<String> {
        self.report.problems()
    }

    /// How many datasets and trunks were read.
    pub fn checked(&self) -> usize {
        self.report.datasets.len() + self.report.weights.len()
    }
}

/// Checks what `sweep` reads; `required`: every root must be on this machine.
pub fn check_sweep_data(sweep: &Sweep, required: bool) -> DataCheck {
    // A no-op trial reads no data and loads no weights: its roots may be anything.
    let reading = sweep.trials.iter().map(|t| &t.spec).filter(|spec| spec.architecture != NOOP);
    let mut plan = Plan::from_trials(reading);
    let mut not_visible = Vec::new();
    if !required {
        plan.datasets.retain(|d| match &d.root {
            Some(root) if !root.exists() => {
                not_visible.push(format!("{} ({})", d.name, root.display()));
                false
            }
            _ => true,
        });
        plan.weights.retain(|(architecture, path)| {
            let visible = path.exists();
            if !visible {
                not_visible.push(format!("weights:{architecture} ({})", path.display()));
            }
            visible
        });
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    DataCheck { report: check::check(&plan, Depth::Header, threads), not_visible }
}

/// The hint printed under the problems: the commands that mend a data root.
pub fn remedy(sweep_file: &Path) -> String {
    format!(
        "the data root does not hold what {} needs: `sal-data check --sweep {} --data-root DIR` \
         shows the table, `sal-data fetch NAME --to DIR` fetches a dataset",
        sweep_file.display(),
        sweep_file.display()
    )
}
