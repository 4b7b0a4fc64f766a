//! `--dry-run`: what a sweep file expands to, axis by axis, the checkpoint storage it needs, its
//! cost in device-hours from measured throughput ([`crate::sweep::calibration`]), and its
//! makespan on a given number of GPUs.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::sweep::calibration::{self, Basis, Calibration, TrialCost, Uncosted};

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

/// What the cost estimate is made of.
pub struct CostInputs<'a> {
    pub calibration: &'a Calibration,
    /// The table's name in the output (its file).
    pub table_name: &'a str,
    /// The device costed on, and why this one (`None`: asked for with --calibration-device).
    pub device: &'a str,
    pub default_reason: Option<String>,
    /// The state dir read (None: none), and how many of its trials taught a throughput.
    pub store: Option<(String, usize)>,
    /// Trials already finished in the state dir: they will not run again.
    pub finished: &'a HashSet<String>,
    /// Devices of a trial that takes a whole worker (`gpus_per_trial: 0`).
    pub gpus_per_node: u32,
}

/// Every trial's cost, in the sweep's order.
pub struct SweepCost {
    pub costs: Vec<Result<TrialCost, Uncosted>>,
}

pub fn cost_sweep(sweep: &Sweep, inputs: &CostInputs<'_>) -> SweepCost {
    let costs = sweep
        .trials
        .iter()
        .map(|t| {
            let devices = if t.devices == 0 { inputs.gpus_per_node } else { t.devices };
            calibration::cost(inputs.calibration, &t.spec, inputs.device, devices)
        })
        .collect();
    SweepCost { costs }
}

/// The lines of the cost estimate: device-hours, how each trial was costed, what is missing.
pub fn cost_lines(sweep: &Sweep, inputs: &CostInputs<'_>, cost: &SweepCost) -> String {
    let unit = if inputs.device.starts_with("cpu") { "CPU-rank-hours" } else { "GPU-hours" };
    let mut out = String::new();
    let how = match &inputs.default_reason {
        Some(reason) => format!(" ({reason}; --calibration-device NAME for another)"),
        None => String::new(),
    };
    let costed: Vec<(usize, &TrialCost)> =
        cost.costs.iter().enumerate().filter_map(|(i, c)| c.as_ref().ok().map(|c| (i, c))).collect();
    let hours: f64 = costed.iter().fold(0.0, |hours, (_, c)| hours + c.device_hours());
    let _ = writeln!(
        out,
        "cost on {}{how}: {hours:.1} {unit} for {} of {} trials",
        inputs.device,
        costed.len(),
        sweep.trials.len()
    );
    let count = |basis: Basis| costed.iter().filter(|(_, c)| c.basis == basis).count();
    let uncosted = cost.costs.len() - costed.len();
    let store = match &inputs.store {
        Some((dir, trials)) => format!("from the store ({dir}, {trials} completed trials measured)"),
        None => "from the store (none read: --state-dir DIR)".to_string(),
    };
    let _ = writeln!(
        out,
        "  costed: {} {store}, {} from the table ({}), {} extrapolated (a resolution without a row: time per \
         image a + b x pixels through the nearest measured resolutions); {uncosted} not costed",
        count(Basis::Store),
        count(Basis::Table),
        inputs.table_name,
        count(Basis::Extrapolated),
    );
    // What lacks a row, grouped: profiles by architecture, batch and device (no resolution has a
    // row), datasets whose size is unknown.
    let mut missing: BTreeMap<String, usize> = BTreeMap::new();
    for failure in cost.costs.iter().filter_map(|c| c.as_ref().err()) {
        let key = match failure {
            Uncosted::NoRow(p) => format!("no row for {} batch {} on {}", p.architecture, p.batch, p.device),
            Uncosted::UnknownSize(dataset) => format!("size of dataset {dataset} unknown"),
        };
        *missing.entry(key).or_insert(0) += 1;
    }
    for (what, trials) in &missing {
        let _ = writeln!(out, "  not costed: {what} ({trials} trials)");
    }
    let finished: Vec<&TrialCost> = costed
        .iter()
        .filter(|(i, _)| inputs.finished.contains(&sweep.trials[*i].id))
        .map(|(_, c)| *c)
        .collect();
    if !inputs.finished.is_empty() {
        let done_hours: f64 = finished.iter().fold(0.0, |hours, c| hours + c.device_hours());
        let finished_in_sweep = sweep.trials.iter().filter(|t| inputs.finished.contains(&t.id)).count();
        let _ = writeln!(
            out,
            "  already finished in the state dir: {finished_in_sweep} trials ({done_hours:.1} {unit}); \
             left to run: {:.1} {unit}",
            hours - done_hours
        );
    }
    if !costed.is_empty() {
        let _ = writeln!(
            out,
            "  assumed: epochs x (training images / train img/s + validation images / eval img/s) per trial; \
             published dataset sizes; a trial on G devices G times as fast (data parallel not measured); \
             one trial per device; SAL's interventions not counted{}",
            if sweep.trials.iter().any(|t| t.spec.flatness.is_some()) {
                "; nor the flatness measured after the last epoch"
            } else {
                ""
            }
        );
    }
    out
}

/// The sweep replayed by the scheduler on each of `gpus` GPU counts, in nodes of
/// `gpus_per_node` (see [`crate::schedule::simulate`]): makespan over the lower bound, and what
/// sets the bound. With `cost` (a calibrated estimate that costed some trials), durations are the
/// estimated seconds of those trials (the others left out) and the table says hours; without, the
/// relative cost estimate ([`crate::sweep::spec::estimate_cost`]), whose ratios hold whatever the
/// GPU. Trials already finished in the state dir (`finished`) are not replayed.
pub fn makespan_table(
    sweep: &Sweep,
    gpus: &[u32],
    gpus_per_node: u32,
    cost: Option<&SweepCost>,
    finished: &HashSet<String>,
) -> String {
    use crate::schedule::simulate::{replay, SimTrial};
    let calibrated = cost.filter(|c| c.costs.iter().any(Result::is_ok));
    let mut left_out = 0usize;
    let trials: Vec<SimTrial> = sweep
        .trials
        .iter()
        .enumerate()
        .filter(|(_, t)| !finished.contains(&t.id))
        .filter_map(|(i, t)| {
            let duration = match calibrated {
                Some(cost) => match &cost.costs[i] {
                    Ok(c) => c.seconds,
                    Err(_) => {
                        left_out += 1;
                        return None;
                    }
                },
                None => t.cost,
            };
            Some(SimTrial { id: t.id.clone(), duration, devices: t.devices, cache_key: t.spec.cache_key() })
        })
        .collect();
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["GPUs", "nodes", "makespan / lower bound", "bound set by", "GPU busy"];
    if calibrated.is_some() {
        header.extend(["makespan (h)", "lower bound (h)"]);
    }
    table.set_header(header);
    let mut unplaceable = 0;
    for &count in gpus {
        let result = replay(&trials, count, gpus_per_node);
        unplaceable = unplaceable.max(result.unplaceable);
        let bound_by = if result.longest >= result.work_per_gpu { "longest trial" } else { "work / GPUs" };
        let busy = if result.makespan > 0.0 { result.work_per_gpu / result.makespan } else { 1.0 };
        let mut row = vec![
            count.to_string(),
            result.nodes.to_string(),
            format!("{:.4}", result.ratio()),
            bound_by.to_string(),
            format!("{:.0}%", 100.0 * busy),
        ];
        if calibrated.is_some() {
            row.push(format!("{:.2}", result.makespan / 3600.0));
            row.push(format!("{:.2}", result.lower_bound() / 3600.0));
        }
        table.add_row(row);
    }
    let model = if calibrated.is_some() { "estimated seconds per trial" } else { "relative cost model" };
    let mut out = format!(
        "makespan, simulated (the scheduler replayed, longest first, one trial per GPU, {gpus_per_node} GPUs per node, {model}):\n{table}\n"
    );
    if left_out > 0 {
        let _ = writeln!(out, "  {left_out} trials not costed are left out of the replay");
    }
    let skipped = sweep.trials.iter().filter(|t| finished.contains(&t.id)).count();
    if skipped > 0 {
        let _ = writeln!(out, "  {skipped} trials already finished in the state dir are not replayed");
    }
    if unplaceable > 0 {
        let _ = writeln!(out, "  {unplaceable} trials want more GPUs than a node has and were left out");
    }
    out
}
