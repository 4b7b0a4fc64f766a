//! Our results in the layout of the paper's tables 1–5, with the published figure beside ours
//! where the whole setup (architecture, optimizer, dataset, resolution, method) is the same.
//!
//! Tables 1–4 have one row per (setup, method), led by the axis the paper's table varies
//! (architecture, dataset, optimizer, resolution); the other axes are named in a `setup` column,
//! because a sweep need not hold them where the paper did. Every published row is listed, ours or
//! not; then our rows that the paper has no figure for. Ours is the mean ± 95% CI over seeds
//! (n seeds), in the paper's units: accuracy in percent, time in seconds, memory in MB, inference
//! in ms per batch.
//!
//! Table 5 is per class: precision, recall and F1 (percent) and support, baseline and SAL side by
//! side, averaged over seeds; then top-1, the macro and the weighted averages.

use std::collections::BTreeMap;
use std::path::Path;

use super::estimate;
use super::grid::Grid;
use super::model::{ClassMetrics, Method, TrialRecord, TrialResult, TrialStatus};
use crate::sweep::spec::method_name;

/// A setup: every axis but seed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Setup {
    pub architecture: String,
    pub optimizer: String,
    pub dataset: String,
    pub resolution: u32,
    pub method: Method,
}

impl Setup {
    pub fn of(record: &TrialRecord) -> Setup {
        let spec = &record.spec;
        Setup {
            architecture: spec.architecture.clone(),
            optimizer: spec.optimizer.clone(),
            dataset: spec.dataset.name.clone(),
            resolution: spec.resolution,
            method: spec.method,
        }
    }

    fn axis(&self, axis: PaperAxis) -> String {
        match axis {
            PaperAxis::Architecture => self.architecture.clone(),
            PaperAxis::Dataset => self.dataset.clone(),
            PaperAxis::Optimizer => self.optimizer.clone(),
            PaperAxis::Resolution => self.resolution.to_string(),
        }
    }

    /// The fixed axes of a table (all but its leading one), as the `setup` column shows them.
    fn fixed(&self, leading: PaperAxis) -> String {
        let mut parts = Vec::new();
        for axis in [PaperAxis::Architecture, PaperAxis::Optimizer, PaperAxis::Dataset, PaperAxis::Resolution]
        {
            if axis != leading {
                let value = self.axis(axis);
                parts.push(if axis == PaperAxis::Resolution { format!("{value}px") } else { value });
            }
        }
        parts.join(" ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PaperAxis {
    Architecture,
    Dataset,
    Optimizer,
    Resolution,
}

impl PaperAxis {
    fn title(self) -> &'static str {
        match self {
            PaperAxis::Architecture => "architecture",
            PaperAxis::Dataset => "dataset",
            PaperAxis::Optimizer => "optimizer",
            PaperAxis::Resolution => "resolution",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Top1,
    Top5,
    TrainSeconds,
    MemoryMb,
    InferMs,
}

impl Metric {
    fn title(self) -> &'static str {
        match self {
            Metric::Top1 => "top-1 %",
            Metric::Top5 => "top-5 %",
            Metric::TrainSeconds => "train s",
            Metric::MemoryMb => "host MB",
            Metric::InferMs => "infer ms",
        }
    }

    /// The key of `tables.yaml`.
    fn paper_key(self) -> &'static str {
        match self {
            Metric::Top1 => "top1",
            Metric::Top5 => "top5",
            Metric::TrainSeconds => "train_s",
            Metric::MemoryMb => "memory_mb",
            Metric::InferMs => "infer_ms",
        }
    }

    fn of(self, result: &TrialResult) -> f64 {
        match self {
            Metric::Top1 => result.top1 * 100.0,
            Metric::Top5 => result.top5 * 100.0,
            Metric::TrainSeconds => result.train_seconds,
            // The paper's memory is the process's resident memory (psutil), as our host MB.
            Metric::MemoryMb => result.peak_host_mb,
            Metric::InferMs => result.inference_ms_per_batch,
        }
    }
}

struct Layout {
    number: u8,
    yaml_key: &'static str,
    title: &'static str,
    leading: PaperAxis,
    metrics: &'static [Metric],
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        number: 1,
        yaml_key: "table1_architectures",
        title: "Table 1: Baseline vs SAL across architectures",
        leading: PaperAxis::Architecture,
        metrics: &[Metric::Top1, Metric::Top5, Metric::TrainSeconds, Metric::MemoryMb, Metric::InferMs],
    },
    Layout {
        number: 2,
        yaml_key: "table2_datasets",
        title: "Table 2: Baseline vs SAL across datasets",
        leading: PaperAxis::Dataset,
        metrics: &[Metric::Top1, Metric::Top5],
    },
    Layout {
        number: 3,
        yaml_key: "table3_optimizers",
        title: "Table 3: SAL across optimizers",
        leading: PaperAxis::Optimizer,
        metrics: &[Metric::Top1, Metric::Top5, Metric::TrainSeconds, Metric::MemoryMb],
    },
    Layout {
        number: 4,
        yaml_key: "table4_resolutions",
        title: "Table 4: SAL across input resolutions",
        leading: PaperAxis::Resolution,
        metrics: &[Metric::Top1, Metric::Top5],
    },
];

const TABLE5_KEY: &str = "table5_per_class";

type PaperRow = BTreeMap<String, serde_yaml_ng::Value>;

/// `tables.yaml`: the published rows of each table.
#[derive(Debug, Default, Clone)]
pub struct PaperTables {
    tables: BTreeMap<String, Vec<PaperRow>>,
}

fn text_of(value: &serde_yaml_ng::Value) -> Option<String> {
    value.as_str().map(str::to_string).or_else(|| value.as_u64().map(|v| v.to_string()))
}

impl PaperTables {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let tables: BTreeMap<String, Vec<PaperRow>> =
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        Ok(Self { tables })
    }

    fn rows(&self, key: &str) -> &[PaperRow] {
        self.tables.get(key).map_or(&[], Vec::as_slice)
    }

    /// The setup a published row names; `None` when it lacks an axis (a malformed row).
    fn setup(row: &PaperRow) -> Option<Setup> {
        let get = |k: &str| row.get(k).and_then(text_of);
        let method = match get("method")?.as_str() {
            "baseline" => Method::Baseline,
            "sal" => Method::Sal,
            _ => return None,
        };
        Some(Setup {
            architecture: get("architecture")?,
            optimizer: get("optimizer")?,
            dataset: get("dataset")?,
            resolution: get("resolution")?.parse().ok()?,
            method,
        })
    }
}

/// Our completed results by setup (diverged trials are out of the means, as in the pivot).
fn by_setup(records: &[TrialRecord]) -> BTreeMap<Setup, Vec<&TrialResult>> {
    let mut groups: BTreeMap<Setup, Vec<&TrialResult>> = BTreeMap::new();
    for record in records {
        if let Some(result) = record.result.as_ref().filter(|r| r.status == TrialStatus::Completed) {
            groups.entry(Setup::of(record)).or_default().push(result);
        }
    }
    groups
}

fn show_ours(results: &[&TrialResult], metric: Metric) -> String {
    let values: Vec<f64> = results.iter().map(|r| metric.of(r)).filter(|v| v.is_finite()).collect();
    // The paper prints every metric with two decimals.
    let d = 2;
    match estimate(&values) {
        None => "–".into(),
        Some(e) => match e.ci95 {
            Some(ci) => format!("{} (n={})", super::precision::mean_ci(e.mean, ci, d), e.n),
            None => format!("{:.d$} (n=1)", e.mean),
        },
    }
}

/// Our results in the layout of the paper's table `number` (1–5).
pub fn table(number: u8, records: &[TrialRecord], paper: &PaperTables) -> Result<Grid, String> {
    if number == 5 {
        return Ok(per_class_table(records, paper));
    }
    let layout = LAYOUTS
        .iter()
        .find(|l| l.number == number)
        .ok_or_else(|| format!("--table {number}: the paper has tables 1 to 5"))?;
    let ours = by_setup(records);
    let published: Vec<(Setup, &PaperRow)> = paper
        .rows(layout.yaml_key)
        .iter()
        .filter_map(|row| PaperTables::setup(row).map(|s| (s, row)))
        .collect();

    let mut header = vec![layout.leading.title().to_string(), "setup".into(), "method".into()];
    for metric in layout.metrics {
        header.push(format!("{} (ours)", metric.title()));
        header.push(format!("{} (paper)", metric.title()));
    }
    let row = |setup: &Setup, paper_row: Option<&PaperRow>| {
        let results = ours.get(setup).map_or(&[][..], Vec::as_slice);
        let mut cells = vec![
            setup.axis(layout.leading),
            setup.fixed(layout.leading),
            method_name(setup.method).to_string(),
        ];
        for metric in layout.metrics {
            cells.push(show_ours(results, *metric));
            let published =
                paper_row.and_then(|r| r.get(metric.paper_key())).and_then(serde_yaml_ng::Value::as_f64);
            cells.push(published.map_or_else(|| "–".into(), |v| format!("{v:.2}")));
        }
        cells
    };
    let mut rows: Vec<Vec<String>> = published.iter().map(|(setup, r)| row(setup, Some(r))).collect();
    let matched = published.iter().filter(|(setup, _)| ours.contains_key(setup)).count();
    let unpublished: Vec<&Setup> = ours.keys().filter(|s| !published.iter().any(|(p, _)| p == *s)).collect();
    rows.extend(unpublished.iter().map(|setup| row(setup, None)));
    let notes = vec![
        format!(
            "Ours: mean ± 95% CI over seeds (n completed trials; {}); paper: the published figure, \
             shown on its own row. A row joins ours and the paper's only when architecture, optimizer, \
             dataset, resolution and method all match.",
            super::precision::RULE
        ),
        format!(
            "{matched} of {} published rows matched by our results; {} rows of ours have no published figure.",
            published.len(),
            unpublished.len()
        ),
    ];
    // Every metric's column of ours before the paper's, left to right: the default order.
    Ok(Grid { title: layout.title.into(), header, rows, numeric_from: 3, notes, importance: &[] })
}

/// Imagenette's folder names (WordNet ids) and the class names the paper prints.
const IMAGENETTE_CLASSES: [(&str, &str); 10] = [
    ("n01440764", "tench"),
    ("n02102040", "english springer"),
    ("n02979186", "cassette player"),
    ("n03000684", "chain saw"),
    ("n03028079", "church"),
    ("n03394916", "french horn"),
    ("n03417042", "garbage truck"),
    ("n03425413", "gas pump"),
    ("n03445777", "golf ball"),
    ("n03888605", "parachute"),
];

/// A class label as the paper would print it, lower-cased, for matching.
fn class_key(label: &str) -> String {
    let lower = label.trim().to_lowercase();
    IMAGENETTE_CLASSES.iter().find(|(wnid, _)| *wnid == lower).map_or(lower, |(_, name)| name.to_string())
}

/// Mean precision, recall, F1 (percent) and support of one class over seeds.
fn mean_class(metrics: &[&ClassMetrics]) -> [String; 4] {
    let n = metrics.len() as f64;
    let mean = |f: &dyn Fn(&ClassMetrics) -> f64| metrics.iter().map(|m| f(m)).sum::<f64>() / n;
    [
        format!("{:.2}", mean(&|m| m.precision * 100.0)),
        format!("{:.2}", mean(&|m| m.recall * 100.0)),
        format!("{:.2}", mean(&|m| m.f1 * 100.0)),
        format!("{:.0}", mean(&|m| m.support as f64)),
    ]
}

/// Table 5: per class, baseline and SAL side by side, one block per setup (all axes but method).
fn per_class_table(records: &[TrialRecord], paper: &PaperTables) -> Grid {
    let ours = by_setup(records);
    let mut setups: Vec<Setup> =
        ours.keys().map(|s| Setup { method: Method::Baseline, ..s.clone() }).collect();
    setups.dedup();
    let published = paper.rows(TABLE5_KEY);
    let header: Vec<String> = [
        "setup",
        "class",
        "baseline P %",
        "baseline R %",
        "baseline F1 %",
        "baseline support",
        "SAL P %",
        "SAL R %",
        "SAL F1 %",
        "SAL support",
        "paper baseline F1 %",
        "paper SAL F1 %",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    let mut matched_setups = 0;
    for setup in &setups {
        let sal_setup = Setup { method: Method::Sal, ..setup.clone() };
        let baseline = ours.get(setup).map_or(&[][..], Vec::as_slice);
        let sal = ours.get(&sal_setup).map_or(&[][..], Vec::as_slice);
        let paper_f1 = |method: Method, class: &str| {
            let wanted = Setup { method, ..setup.clone() };
            published
                .iter()
                .find(|row| {
                    PaperTables::setup(row).as_ref() == Some(&wanted)
                        && row
                            .get("class")
                            .and_then(text_of)
                            .is_some_and(|c| class_key(&c) == class_key(class))
                })
                .and_then(|row| row.get("f1").and_then(serde_yaml_ng::Value::as_f64))
                .map_or_else(|| "–".into(), |v| format!("{v:.2}"))
        };
        if published.iter().any(|row| {
            PaperTables::setup(row).is_some_and(|s| {
                s.architecture == setup.architecture
                    && s.optimizer == setup.optimizer
                    && s.dataset == setup.dataset
                    && s.resolution == setup.resolution
            })
        }) {
            matched_setups += 1;
        }
        // Class labels in the order of the first result that has them.
        let labels: Vec<String> = baseline
            .iter()
            .chain(sal)
            .next()
            .map(|r| r.per_class.iter().map(|c| c.label.clone()).collect())
            .unwrap_or_default();
        let side = |results: &[&TrialResult], pick: &dyn Fn(&TrialResult) -> Option<ClassMetrics>| {
            let metrics: Vec<ClassMetrics> = results.iter().filter_map(|r| pick(r)).collect();
            if metrics.is_empty() {
                ["–".to_string(), "–".into(), "–".into(), "–".into()]
            } else {
                mean_class(&metrics.iter().collect::<Vec<_>>())
            }
        };
        let fixed =
            format!("{} {} {} {}px", setup.architecture, setup.optimizer, setup.dataset, setup.resolution);
        let line = |class: &str, b: [String; 4], s: [String; 4]| {
            let mut row = vec![fixed.clone(), class.to_string()];
            row.extend(b);
            row.extend(s);
            row.push(paper_f1(Method::Baseline, class));
            row.push(paper_f1(Method::Sal, class));
            row
        };
        for label in &labels {
            let pick = |r: &TrialResult| r.per_class.iter().find(|c| &c.label == label).cloned();
            rows.push(line(label, side(baseline, &pick), side(sal, &pick)));
        }
        let top1 = |results: &[&TrialResult]| {
            let values: Vec<f64> = results.iter().map(|r| r.top1 * 100.0).collect();
            estimate(&values).map_or_else(|| "–".into(), |e| format!("{:.2}", e.mean))
        };
        let dash = || "–".to_string();
        let mut top1_row = vec![fixed.clone(), "Top-1 Acc".into(), dash(), dash(), top1(baseline), dash()];
        top1_row.extend([dash(), dash(), top1(sal), dash(), dash(), dash()]);
        rows.push(top1_row);
        rows.push(line(
            "Macro Avg",
            side(baseline, &|r| Some(r.macro_avg.clone())),
            side(sal, &|r| Some(r.macro_avg.clone())),
        ));
        rows.push(line(
            "Weighted Avg",
            side(baseline, &|r| Some(r.weighted_avg.clone())),
            side(sal, &|r| Some(r.weighted_avg.clone())),
        ));
    }
    let notes = vec![
        "Precision, recall and F1 in percent, support in test images: means over seeds. The Top-1 row \
         shows top-1 % in the F1 column. Paper F1 only where the setup (architecture, optimizer, \
         dataset, resolution) is the paper's."
            .to_string(),
        format!("{matched_setups} of {} setups of ours match the paper's table 5 setup.", setups.len()),
    ];
    Grid {
        title: "Table 5: per-class Baseline vs SAL".into(),
        header,
        rows,
        numeric_from: 2,
        notes,
        importance: &[],
    }
}
