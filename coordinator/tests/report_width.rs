//! The terminal report at a terminal's width, on an ablation sweep built here (every arm, three
//! seeds, flatness measured, as `sweeps/ablation.yaml`): at 80, 100 and 160 columns no line is
//! longer than the terminal, every column of every table is printed (in a table, or once above it
//! when it holds one value in every row), no cell wraps, a line says which columns moved; piped,
//! every table is printed whole.

use coordinator::report::fit::display_width;
use coordinator::report::grid::Grid;
use coordinator::report::model::{Method, TrialRecord, TrialResult, TrialStatus};
use coordinator::report::{pivot, pivot_grid, table, table_fitted, tables, terminal, Axis};

const METHODS: [Method; 8] = [
    Method::Baseline,
    Method::Sal,
    Method::SalStressOnly,
    Method::SalNoiseOnly,
    Method::SalPlasticOnly,
    Method::ShrinkPerturbRandom,
    Method::Sam,
    Method::Baseline2x,
];

fn record(method: Method, index: usize, seed: u64) -> TrialRecord {
    let spec = serde_json::from_value(serde_json::json!({
        "architecture": "small_cnn",
        "optimizer": "adam",
        "dataset": {"name": "synthetic", "format": "synthetic"},
        "resolution": 16,
        "method": method.name(),
        "sal": {"s_noise": 0.3, "s_yield": 0.6, "warmup_epochs": 2},
        "epochs": 16,
        "batch_size": 32,
        "learning_rate": 0.001,
        "seed": seed,
    }))
    .unwrap();
    // Seeds spread as a real sweep's do: wide CIs on Tr H and λ_max, narrow ones on memory; the
    // arms' differences from the baseline vary by seed.
    let (m, s) = (index as f64, seed as f64);
    let jitter = ((index * 7 + seed as usize * 3) % 5) as f64;
    let average = coordinator::report::model::ClassMetrics {
        label: "avg".into(),
        precision: 0.8,
        recall: 0.8,
        f1: 0.8,
        support: 128,
    };
    let flatness = common::flatness::Flatness {
        images: 256,
        params: common::flatness::FlatnessParams::All,
        parameters: 100_000,
        loss: 0.5,
        trace_h: 3000.0 + 900.0 * s + 37.3 * m + 61.0 * jitter,
        trace_h_se: 40.0,
        probes: 16,
        lambda_max: 800.0 + 250.0 * s - 11.7 * m + 13.0 * jitter,
        lambda_residual: 0.01,
        power_iterations: 20,
        grad_norm: 0.3,
        directions: Vec::new(),
        seconds: 1.0,
    };
    let result = TrialResult {
        status: TrialStatus::Completed,
        top1: 0.75 + 0.01 * m + 0.023 * s + 0.006 * jitter,
        top5: 0.97 + 0.004 * s,
        test_loss: 0.6,
        per_class: Vec::new(),
        macro_avg: average.clone(),
        weighted_avg: average,
        confusion: Vec::new(),
        train_seconds: 2.0 + 0.1 * m + 0.2 * s,
        peak_host_mb: 390.0 + 0.4 * s,
        peak_device_mb: None,
        inference_ms_per_batch: 3.0 + 0.7 * s,
        history: Vec::new(),
        flatness: Some(flatness),
        manifest: None,
    };
    TrialRecord {
        id: format!("{}-{seed}", method.name()),
        spec,
        state: "done".into(),
        attempts: 1,
        last_error: None,
        result: Some(result),
        epochs: Vec::new(),
    }
}

fn records() -> Vec<TrialRecord> {
    METHODS
        .iter()
        .enumerate()
        // Stress only trains as the baseline does, bit for bit: every difference exactly zero.
        .map(|(i, &m)| (m, if m == Method::SalStressOnly { 0 } else { i }))
        .flat_map(|(m, i)| (1..=3).map(move |seed| record(m, i, seed)))
        .collect()
}

const AXES: [Axis; 3] = [Axis::Architecture, Axis::Dataset, Axis::Method];

/// Every table of the report after the pivot, as `coordinator report` prints them.
fn grids(records: &[TrialRecord]) -> Vec<Grid> {
    tables::report_grids("ablation", records, &AXES, None).split_off(1)
}

/// The pivot as the terminal prints it: its cells, no notes.
fn pivot_table(records: &[TrialRecord]) -> Grid {
    Grid { notes: Vec::new(), ..pivot_grid::grid("ablation", &pivot(records, &AXES), &AXES, None) }
}

/// The header names of each table drawn in `text`, a header wrapped on several lines joined.
fn drawn_headers(text: &str) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with('┌') {
            continue;
        }
        let mut names: Vec<String> = Vec::new();
        for header in lines.by_ref().take_while(|l| !l.starts_with('╞')) {
            let inner = header.trim_start_matches('│').trim_end_matches('│');
            for (i, part) in inner.split('┆').enumerate() {
                if names.len() <= i {
                    names.push(String::new());
                }
                let part = part.trim();
                if !part.is_empty() {
                    if !names[i].is_empty() {
                        names[i].push(' ');
                    }
                    names[i].push_str(part);
                }
            }
        }
        tables.push(names);
    }
    tables
}

/// The lines of each table's body (between the header's rule and the bottom border).
fn body_lines(text: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('╞') {
            inside = true;
            counts.push(0);
        } else if line.starts_with('└') {
            inside = false;
        } else if inside {
            *counts.last_mut().unwrap() += 1;
        }
    }
    counts
}

fn check_fitted(grid: &Grid, width: u16) -> usize {
    let text = grid.render(Some(width));
    let w = usize::from(width);
    for line in text.lines() {
        assert!(
            display_width(line) <= w,
            "{}: a line of {} > {w}:\n{line}\n{text}",
            grid.title,
            display_width(line)
        );
    }
    // Prose continues after a space on the next line.
    let prose = text.replace("\n ", " ");
    let tables = drawn_headers(&text);
    assert!(!tables.is_empty(), "{text}");
    for header in &grid.header {
        let drawn = tables.iter().any(|t| t.contains(header));
        let said = prose.contains("(the same in every row: ")
            && prose.contains(&format!(
                "{header} {}",
                grid.rows[0][grid.header.iter().position(|h| h == header).unwrap()]
            ));
        assert!(drawn || said, "{}: column `{header}` is nowhere at {w} columns:\n{text}", grid.title);
    }
    // No cell wraps: each table has one line per row, and every cell is whole on a line.
    assert!(body_lines(&text).iter().all(|&n| n == grid.rows.len()), "{text}");
    for cell in grid.rows.iter().flatten().filter(|c| !c.is_empty()) {
        assert!(text.lines().any(|l| l.contains(cell.as_str())), "`{cell}` split at {w} columns:\n{text}");
    }
    let moved = prose.contains("below: the terminal is");
    assert_eq!(moved, tables.len() > 1, "{text}");
    if moved {
        assert!(prose.contains(&format!("below: the terminal is {w} columns wide)")), "{text}");
    }
    // A table that fits is the table as always.
    if grid.text().lines().all(|l| display_width(l) <= w) {
        assert_eq!(text, grid.text());
    }
    tables.len()
}

#[test]
fn fitted_tables_stay_inside_the_terminal_and_keep_every_column() {
    let records = records();
    let pivot_grid = pivot_table(&records);
    let grids = grids(&records);
    assert_eq!(grids.len(), 9, "SAL, 6 arms, ablation, Equation 11");
    let mut tables_at = Vec::new();
    for width in [80u16, 100, 160] {
        let mut tables = check_fitted(&pivot_grid, width);
        for grid in &grids {
            tables += check_fitted(grid, width);
        }
        tables_at.push(tables);
        // The whole report: every line inside the terminal, the summary at the end.
        let rows = pivot(&records, &AXES);
        let report = terminal::Report {
            sweep: "ablation",
            rows: &rows,
            axes: &AXES,
            paper: None,
            versions: Some(
                "Warning: these results were produced by 2 different versions (0.1.0, 0.0.9); rerun with one build.",
            ),
            grids: &grids,
            summary: "sweep ablation: 24 trials, 24 completed (in the means)",
        };
        let text = terminal::text(&report, Some(width));
        assert!(text.lines().all(|l| display_width(l) <= usize::from(width)), "{text}");
        assert!(text.starts_with("ablation\n") && text.ends_with("24 completed (in the means)"), "{text}");
    }
    // Narrower terminals, more tables; at 160 the statistics tables fit whole.
    assert!(tables_at[0] > tables_at[1] && tables_at[1] > tables_at[2], "{tables_at:?}");
    let sal = Grid { notes: Vec::new(), ..grids[0].clone() };
    assert_eq!(sal.render(Some(160)), sal.text());
}

#[test]
fn the_pivot_moves_its_least_important_columns_and_says_so() {
    let records = records();
    let text = table_fitted(&pivot(&records, &AXES), &AXES, None, Some(100));
    let prose = text.replace("\n ", " ");
    // Architecture and dataset are the same in every row: said once, not a column.
    assert!(
        prose.starts_with("(the same in every row: architecture small_cnn, dataset synthetic)"),
        "{text}"
    );
    let tables = drawn_headers(&text);
    let first = &tables[0];
    for kept in ["method", "done", "failed", "top-1 %", "Δ top-1"] {
        assert!(first.iter().any(|h| h == kept), "`{kept}` not in the first table: {first:?}\n{text}");
    }
    for moved in ["host MB", "infer ms", "train img/s"] {
        assert!(!first.iter().any(|h| h == moved), "`{moved}` in the first table:\n{text}");
        assert!(tables[1..].iter().any(|t| t.iter().any(|h| h == moved)), "{text}");
    }
    // Every later table repeats the key.
    assert!(tables.iter().all(|t| t[0] == "method"), "{text}");
    assert!(
        prose.contains("host MB") && prose.contains("in the tables below: the terminal is 100 columns wide)")
    );
}

#[test]
fn piped_the_report_is_every_table_whole() {
    let records = records();
    let rows = pivot(&records, &AXES);
    let grids = grids(&records);
    let summary = "sweep ablation: 24 trials, 24 completed (in the means)";
    let report = terminal::Report {
        sweep: "ablation",
        rows: &rows,
        axes: &AXES,
        paper: None,
        versions: None,
        grids: &grids,
        summary,
    };
    let text = terminal::text(&report, None);
    // As `report` printed it before tables were fitted: the pivot, then each table, then the summary.
    let tables: Vec<String> = grids.iter().map(Grid::text).collect();
    let expected = format!("ablation\n{}\n{}{summary}", table(&rows, &AXES, None), tables.join("\n"));
    assert_eq!(text, expected);
    assert_eq!(table_fitted(&rows, &AXES, None, None), table(&rows, &AXES, None));
    assert!(grids.iter().all(|g| g.render(None) == g.text()));
    // Nothing fitted: the pivot keeps all its columns in one table, wider than any terminal here.
    assert!(text.lines().any(|l| display_width(l) > 160));
    assert!(!text.contains("the same in every row") && !text.contains("below: the terminal is"));
    assert_eq!(terminal::grids_text(&grids[..1], summary, None), format!("{}\n{summary}", grids[0].text()));
}
