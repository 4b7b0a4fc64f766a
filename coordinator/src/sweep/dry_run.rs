//! `--dry-run`: what a sweep file expands to, axis by axis, and the checkpoint storage it needs.

use std::fmt::Write as _;

use crate::sweep::checkpoint_storage::{self, human_bytes, SizeTable};
use crate::sweep::spec::{method_name, Sweep};

/// An axis of the grid: its name and a trial's value on it.
type Axis = (&'static str, fn(&common::TrialSpec) -> String);

/// The lines `coordinator --sweep FILE --dry-run` prints. `running`: trials running at once, to
/// size the peak for (default: every trial of the sweep, the most it can need).
pub fn summary(sweep: &Sweep, running: Option<usize>) -> String {
    let mut out = format!("{}: {} trials\n", sweep.name, sweep.trials.len());
    let axes: [Axis; 6] = [
        ("architecture", |s| s.architecture.clone()),
        ("optimizer", |s| s.optimizer.clone()),
        ("dataset", |s| s.dataset.name.clone()),
        ("resolution", |s| s.resolution.to_string()),
        ("method", |s| method_name(s.method).to_string()),
        ("seed", |s| s.seed.to_string()),
    ];
    for (axis, value_of) in axes {
        // In the grid's order: the sweep file's order of values.
        let mut counts: Vec<(String, usize)> = Vec::new();
        for trial in &sweep.trials {
            let value = value_of(&trial.spec);
            match counts.iter_mut().find(|(v, _)| *v == value) {
                Some((_, n)) => *n += 1,
                None => counts.push((value, 1)),
            }
        }
        let parts: Vec<String> = counts.iter().map(|(value, n)| format!("{value} {n}")).collect();
        let _ = writeln!(out, "  {axis}: {}", parts.join(", "));
    }
    out.push_str(&storage_line(sweep, running));
    out
}

fn storage_line(sweep: &Sweep, running: Option<usize>) -> String {
    let table = SizeTable::committed();
    let mut sizes: Vec<(u64, &common::TrialSpec)> = Vec::new();
    let mut unknown = 0usize;
    let mut assumed_classes = false;
    for trial in &sweep.trials {
        match table.checkpoint_bytes(&trial.spec) {
            Some(bytes) => sizes.push((bytes, &trial.spec)),
            None => unknown += 1,
        }
        assumed_classes |= !checkpoint_storage::classes(&trial.spec).1;
    }
    let Some(&(largest, spec)) = sizes.iter().max_by_key(|(bytes, _)| *bytes) else {
        return "checkpoints: no estimate (no architecture of the sweep is in the size table)\n".into();
    };
    // The largest trials running together, each with two files while an upload replaces the old.
    sizes.sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
    let running = running.unwrap_or(sweep.trials.len()).clamp(1, sizes.len());
    let peak: u64 = sizes.iter().take(running).map(|(bytes, _)| 2 * bytes).sum();
    let mut line = format!(
        "checkpoints: peak {} in the state dir with {running} trials running at once (--running N: fewer); \
         the largest, {}/{}/{}/{}, up to {}, twice while a new upload replaces it; ended trials keep none",
        human_bytes(peak),
        spec.architecture,
        spec.optimizer,
        spec.dataset.name,
        method_name(spec.method),
        human_bytes(largest),
    );
    if assumed_classes {
        let _ = write!(
            line,
            "; {} classes assumed where the format does not fix them",
            checkpoint_storage::ASSUMED_CLASSES
        );
    }
    if unknown > 0 {
        let _ = write!(line, "; {unknown} trials not estimated");
    }
    line.push('\n');
    line
}

/// The sweep replayed by the scheduler on each of `gpus` GPU counts, in nodes of
/// `gpus_per_node` (see [`crate::schedule::simulate`]): makespan over the lower bound, and what
/// sets the bound. Durations are the relative cost estimate ([`crate::sweep::spec::estimate_cost`]),
/// so the ratios hold whatever the GPU; times in hours need a calibrated cost per trial.
pub fn makespan_table(sweep: &Sweep, gpus: &[u32], gpus_per_node: u32) -> String {
    use crate::schedule::simulate::{replay, SimTrial};
    let trials: Vec<SimTrial> = sweep
        .trials
        .iter()
        .map(|t| SimTrial {
            id: t.id.clone(),
            duration: t.cost,
            devices: t.devices,
            cache_key: t.cache_key(),
        })
        .collect();
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["GPUs", "nodes", "makespan / lower bound", "bound set by", "GPU busy"]);
    let mut unplaceable = 0;
    for &count in gpus {
        let result = replay(&trials, count, gpus_per_node);
        unplaceable = unplaceable.max(result.unplaceable);
        let bound_by = if result.longest >= result.work_per_gpu { "longest trial" } else { "work / GPUs" };
        let busy = if result.makespan > 0.0 { result.work_per_gpu / result.makespan } else { 1.0 };
        table.add_row([
            count.to_string(),
            result.nodes.to_string(),
            format!("{:.4}", result.ratio()),
            bound_by.to_string(),
            format!("{:.0}%", 100.0 * busy),
        ]);
    }
    let mut out = format!(
        "makespan, simulated (the scheduler replayed, longest first, one trial per GPU, {gpus_per_node} GPUs per node, relative cost model):\n{table}\n"
    );
    if unplaceable > 0 {
        let _ = writeln!(out, "  {unplaceable} trials want more GPUs than a node has and were left out");
    }
    out
}
