//! The paper's published figures (`tables.yaml`) beside ours, only where the setups are equal.
//!
//! Each of the paper's tables varies one axis and fixes the others, as its caption and section
//! say ([`TABLE_SETUPS`]); every table shares the training setup of section 3.1
//! ([`PAPER_TRAINING`]). A row of `tables.yaml` is read as its table's setup plus the values it
//! names (a value that contradicts its table is an error). A published figure stands beside one
//! of our groups only when the group's trials all share the row's architecture, dataset,
//! resolution, optimizer and method (grouped by, or fixed in the sweep), and the paper's training
//! setup; the comparison then shows ours (mean ± 95% CI, n), the paper's figure, the difference
//! and whether the paper's figure lies inside our interval.

use std::collections::BTreeMap;
use std::path::Path;

use common::Head;
use serde::Serialize;
use serde_yaml_ng::Value;

use super::{Estimate, GroupRow};

/// The axes a published row must fix, by the names reports use.
pub const SETUP_AXES: [&str; 5] = ["architecture", "dataset", "resolution", "optimizer", "method"];

/// What each table of the paper fixes, from its caption and text:
/// - Table 1 (section 3.7): "across architectures on Imagenette (64×64, 50 epochs)", "Baseline (Adam)";
/// - Table 2 (section 3.8): "All models use the Adam optimizer ... 64×64 input resolution", on the
///   paper's default backbone DenseNet201 (section 3.1);
/// - Table 3: "DenseNet201 on Imagenette, 64×64 resolution, 50 epochs";
/// - Table 4 (appendix B.4): "DenseNet201 ... varying the input resolution on the Imagenette
///   dataset", SAL only, Adam (section 3.1);
/// - Table 5 (appendix B.5): "on Imagenette (64×64 resolution)", DenseNet201 and Adam (section 3.1).
pub const TABLE_SETUPS: &[(&str, &[(&str, &str)])] = &[
    ("table1_architectures", &[("dataset", "imagenette"), ("resolution", "64"), ("optimizer", "adam")]),
    ("table2_datasets", &[("architecture", "densenet201"), ("resolution", "64"), ("optimizer", "adam")]),
    (
        "table3_optimizers",
        &[("architecture", "densenet201"), ("dataset", "imagenette"), ("resolution", "64")],
    ),
    (
        "table4_resolutions",
        &[
            ("architecture", "densenet201"),
            ("dataset", "imagenette"),
            ("optimizer", "adam"),
            ("method", "sal"),
        ],
    ),
    (
        "table5_per_class",
        &[
            ("architecture", "densenet201"),
            ("dataset", "imagenette"),
            ("resolution", "64"),
            ("optimizer", "adam"),
        ],
    ),
];

/// The training setup all of the paper's tables share (section 3.1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Training {
    pub epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub head: Head,
    /// An ImageNet-pretrained trunk.
    pub pretrained: bool,
}

pub const PAPER_TRAINING: Training =
    Training { epochs: 50, batch_size: 64, learning_rate: 1e-5, head: Head::Paper, pretrained: true };

impl Training {
    /// How `self` (ours) differs from the paper's, or `None` when it does not.
    pub fn differences(&self) -> Option<String> {
        let paper = &PAPER_TRAINING;
        let mut differences = Vec::new();
        if self.epochs != paper.epochs {
            differences.push(format!("epochs {} (paper {})", self.epochs, paper.epochs));
        }
        if self.batch_size != paper.batch_size {
            differences.push(format!("batch {} (paper {})", self.batch_size, paper.batch_size));
        }
        if (self.learning_rate - paper.learning_rate).abs() > 1e-12 {
            differences.push(format!("lr {} (paper {})", self.learning_rate, paper.learning_rate));
        }
        if self.head != paper.head {
            differences.push(format!("head {:?} (paper {:?})", self.head, paper.head).to_lowercase());
        }
        if self.pretrained != paper.pretrained {
            differences.push("no pretrained trunk (paper: ImageNet weights)".into());
        }
        (!differences.is_empty()).then(|| differences.join(", "))
    }
}

/// One published row: its table, its whole setup, its figures.
#[derive(Debug, Clone)]
struct PaperRow {
    table: String,
    setup: BTreeMap<&'static str, String>,
    top1: Option<f64>,
    top5: Option<f64>,
}

/// The paper's published figures, each with the setup it was measured in.
#[derive(Debug, Default)]
pub struct PaperFigures {
    rows: Vec<PaperRow>,
}

/// An axis value as reports spell it: `64`, `adam`.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl PaperFigures {
    pub fn load(path: &Path) -> Result<Self, String> {
        let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, &raw)
    }

    pub fn parse(path: &Path, raw: &str) -> Result<Self, String> {
        let tables: BTreeMap<String, Vec<BTreeMap<String, Value>>> =
            serde_yaml_ng::from_str(raw).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut rows = Vec::new();
        for (table, entries) in &tables {
            let fixed: &[(&str, &str)] =
                TABLE_SETUPS.iter().find(|(name, _)| name == table).map_or(&[], |(_, fixed)| fixed);
            for (index, entry) in entries.iter().enumerate() {
                // Per-class rows (table 5) carry no top-1/top-5 of a whole trial.
                if entry.contains_key("class") {
                    continue;
                }
                let at = || format!("{}: {table}, row {}", path.display(), index + 1);
                let mut setup = BTreeMap::new();
                for axis in SETUP_AXES {
                    let named = entry
                        .get(axis)
                        .map(|v| text(v).ok_or_else(|| format!("{}: `{axis}` is not a value", at())));
                    let named = named.transpose()?;
                    let fixed = fixed.iter().find(|(a, _)| *a == axis).map(|(_, v)| v.to_string());
                    let value = match (named, fixed) {
                        (Some(named), Some(fixed)) if named != fixed => {
                            return Err(format!(
                                "{}: `{axis}: {named}`, but the paper's {table} fixes {axis} {fixed}",
                                at()
                            ))
                        }
                        (Some(value), _) | (None, Some(value)) => value,
                        (None, None) => {
                            return Err(format!(
                                "{}: names no `{axis}`, and its table does not fix one",
                                at()
                            ))
                        }
                    };
                    setup.insert(axis, value);
                }
                let figure = |key: &str| entry.get(key).and_then(Value::as_f64);
                rows.push(PaperRow {
                    table: table.clone(),
                    setup,
                    top1: figure("top1"),
                    top5: figure("top5"),
                });
            }
        }
        Ok(Self { rows })
    }

    /// The published rows whose setup is the group's: every setup axis one value in the group,
    /// equal to the row's, and the paper's training setup.
    fn matches<'a>(&'a self, row: &'a GroupRow) -> impl Iterator<Item = &'a PaperRow> + 'a {
        let trained_as_paper = row.training.as_ref().is_some_and(|t| t.differences().is_none());
        self.rows.iter().filter(move |paper| {
            trained_as_paper && SETUP_AXES.iter().all(|axis| row.fixed.get(*axis) == paper.setup.get(axis))
        })
    }

    /// The published top-1 of the group's setup, if the paper has one.
    pub fn top1(&self, row: &GroupRow) -> Option<f64> {
        self.matches(row).find_map(|paper| paper.top1)
    }

    /// Our figures against the paper's, for every group whose setup the paper published.
    pub fn compare(&self, rows: &[GroupRow]) -> Vec<Comparison> {
        let mut comparisons: Vec<Comparison> = Vec::new();
        for row in rows {
            for paper in self.matches(row) {
                for (metric, ours, published) in
                    [("top-1 %", row.top1, paper.top1), ("top-5 %", row.top5, paper.top5)]
                {
                    let (Some(ours), Some(published)) = (ours, published) else { continue };
                    // The same figure appears in several tables (Table 1's DenseNet201 row is
                    // Table 2's Imagenette row): one comparison, naming every table.
                    if let Some(same) = comparisons.iter_mut().find(|c| {
                        c.key == row.key
                            && c.metric == metric
                            && c.paper == published
                            && c.setup == paper.setup
                    }) {
                        same.tables.push(paper.table.clone());
                        continue;
                    }
                    let inside_ci = ours.ci95.map(|ci| (published - ours.mean).abs() <= ci);
                    comparisons.push(Comparison {
                        tables: vec![paper.table.clone()],
                        key: row.key.clone(),
                        setup: paper.setup.clone(),
                        metric,
                        ours,
                        paper: published,
                        difference: ours.mean - published,
                        inside_ci,
                    });
                }
            }
        }
        comparisons
    }

    /// Groups that have a published setup's axes but another training setup: why no figure stands
    /// beside them.
    pub fn near_misses(&self, rows: &[GroupRow]) -> Vec<String> {
        rows.iter()
            .filter_map(|row| {
                let differences = row.training.as_ref().map_or_else(
                    || Some("trials of several training setups".to_string()),
                    Training::differences,
                )?;
                let axes_match =
                    self.rows.iter().any(|p| SETUP_AXES.iter().all(|a| row.fixed.get(*a) == p.setup.get(a)));
                axes_match.then(|| {
                    let key: Vec<&str> = row.key.values().map(String::as_str).collect();
                    format!("{}: {differences}", key.join("/"))
                })
            })
            .collect()
    }
}

/// One of our figures against the paper's.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub tables: Vec<String>,
    pub key: super::GroupKey,
    pub setup: BTreeMap<&'static str, String>,
    pub metric: &'static str,
    pub ours: Estimate,
    pub paper: f64,
    /// Ours − paper, in points.
    pub difference: f64,
    /// Whether the paper's figure lies inside our 95% CI; `None` with fewer than two trials.
    pub inside_ci: Option<bool>,
}

/// The comparisons' header and cells, for [`comparison_table`] and [`comparison_grid`].
fn comparison_cells(comparisons: &[Comparison]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = SETUP_AXES.map(String::from).to_vec();
    header.extend(
        ["metric", "ours (mean ± 95% CI)", "n", "paper", "ours − paper", "paper in our CI", "tables"]
            .map(String::from),
    );
    let rows = comparisons
        .iter()
        .map(|c| {
            let mut cells: Vec<String> = SETUP_AXES.iter().map(|a| c.setup[a].clone()).collect();
            let tables: Vec<&str> = c.tables.iter().map(|t| t.split('_').next().unwrap_or(t)).collect();
            cells.extend([
                c.metric.to_string(),
                super::show(Some(c.ours), 2),
                c.ours.n.to_string(),
                format!("{:.2}", c.paper),
                format!("{:+.2}", c.difference),
                match c.inside_ci {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "– (n < 2)",
                }
                .to_string(),
                tables.join(", "),
            ]);
            cells
        })
        .collect();
    (header, rows)
}

/// The comparisons as a table (whole, as printed when piped).
pub fn comparison_table(comparisons: &[Comparison]) -> String {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    let (header, rows) = comparison_cells(comparisons);
    // The numbers right-aligned; the answer and the table names read as text.
    let numbers = SETUP_AXES.len() + 1..SETUP_AXES.len() + 5;
    table.set_header(header);
    for row in rows {
        table.add_row(row.into_iter().enumerate().map(|(i, text)| {
            let cell = Cell::new(text);
            if numbers.contains(&i) {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    table.to_string()
}

/// The comparisons as a [`Grid`] titled `title`, for a terminal's width ([`super::fit`]): the
/// setup and metric are its keys, every other column right-aligned.
pub fn comparison_grid(title: &str, comparisons: &[Comparison]) -> super::grid::Grid {
    let (header, rows) = comparison_cells(comparisons);
    super::grid::Grid {
        title: title.to_string(),
        header,
        rows,
        numeric_from: SETUP_AXES.len() + 1,
        notes: Vec::new(),
        importance: &[
            &["ours (mean ± 95% CI)", "paper"],
            &["ours − paper"],
            &["paper in our CI"],
            &["n"],
            &["tables"],
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::select::tests::record;
    use crate::report::{pivot, Axis};

    const TABLES: &str = "
table1_architectures:
  - {architecture: densenet201, method: sal, top1: 88.43, top5: 98.73}
  - {architecture: densenet201, method: baseline, top1: 86.98, top5: 98.68}
table4_resolutions:
  - {resolution: 64, top1: 88.43, top5: 98.73}
table5_per_class:
  - {method: sal, class: Tench, precision: 89.66}
";

    fn figures() -> PaperFigures {
        PaperFigures::parse(Path::new("tables.yaml"), TABLES).unwrap()
    }

    #[test]
    fn rows_take_their_table_s_setup_and_may_not_contradict_it() {
        let figures = figures();
        assert_eq!(figures.rows.len(), 3);
        let table4 = figures.rows.iter().find(|r| r.table == "table4_resolutions").unwrap();
        assert_eq!(table4.setup["optimizer"], "adam");
        assert_eq!(table4.setup["method"], "sal");
        let wrong =
            "table1_architectures:\n  - {architecture: resnet50, method: sal, dataset: cifar10, top1: 1}\n";
        let error = PaperFigures::parse(Path::new("t.yaml"), wrong).unwrap_err();
        assert_eq!(
            error,
            "t.yaml: table1_architectures, row 1: `dataset: cifar10`, but the paper's table1_architectures fixes dataset imagenette"
        );
        let vague = "table9:\n  - {architecture: resnet50, top1: 1}\n";
        let error = PaperFigures::parse(Path::new("t.yaml"), vague).unwrap_err();
        assert!(error.contains("table9, row 1: names no `dataset`"), "{error}");
    }

    #[test]
    fn a_figure_stands_only_beside_a_group_of_the_same_setup() {
        let figures = figures();
        // Three seeds of the paper's setup, and one trial on another dataset in the same
        // architecture × method group: that group mixes datasets, the paper's figure is not its.
        let setup = |seed: u64| serde_json::json!({"seed": seed});
        let mut records = vec![
            record("s1", "done", Some(0.880), setup(1)),
            record("s2", "done", Some(0.885), setup(2)),
            record("s3", "done", Some(0.890), setup(3)),
            record("d", "diverged", Some(0.0), setup(4)),
        ];
        let rows = pivot(&records, &[Axis::Architecture, Axis::Method]);
        assert_eq!(figures.top1(&rows[0]), Some(88.43));
        let comparisons = figures.compare(&rows);
        let top1 = comparisons.iter().find(|c| c.metric == "top-1 %").unwrap();
        // The diverged trial is not in the mean: 88.5 over n = 3.
        assert_eq!(top1.ours.n, 3);
        assert!((top1.ours.mean - 88.5).abs() < 1e-9 && (top1.difference - 0.07).abs() < 1e-9);
        assert_eq!(top1.inside_ci, Some(true));
        // Table 1's and Table 4's rows are the same setup and figure: one comparison naming both.
        assert_eq!(top1.tables, vec!["table1_architectures".to_string(), "table4_resolutions".to_string()]);
        let top5 = comparisons.iter().find(|c| c.metric == "top-5 %").unwrap();
        assert_eq!(top5.inside_ci, Some(false), "99 ± 0 does not hold 98.73");
        // Whole (piped): the numbers right-aligned, the answer and the tables left-aligned.
        let table = comparison_table(&comparisons);
        let line = table.lines().find(|l| l.contains("top-1 %")).unwrap();
        assert!(line.ends_with("┆        +0.07 ┆ yes             ┆ table1, table4 │"), "{table}");
        // Fitted to 60 columns: every line inside, the setup said once above the table.
        let fitted = comparison_grid("ours against the paper", &comparisons).render(Some(60));
        assert!(fitted.lines().all(|l| l.chars().count() <= 60), "{fitted}");
        assert!(fitted.contains("(the same in every row: architecture densenet201"), "{fitted}");

        records.push(record(
            "other",
            "done",
            Some(0.5),
            serde_json::json!({"dataset": {"name": "cifar10", "format": "cifar10_bin"}}),
        ));
        let rows = pivot(&records, &[Axis::Architecture, Axis::Method]);
        assert_eq!(figures.top1(&rows[0]), None);
        assert!(figures.compare(&rows).is_empty());
        let rows = pivot(&records, &[Axis::Dataset, Axis::Method]);
        assert_eq!(rows.iter().filter_map(|r| figures.top1(r)).count(), 1);

        // The paper's axes, but 10 epochs: no figure, and a line says why.
        let short = vec![record("e", "done", Some(0.8), serde_json::json!({"epochs": 10}))];
        let rows = pivot(&short, &[Axis::Architecture]);
        assert_eq!(figures.top1(&rows[0]), None);
        assert_eq!(figures.near_misses(&rows), vec!["densenet201: epochs 10 (paper 50)".to_string()]);
    }
}
