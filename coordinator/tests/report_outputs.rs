//! Every report output on results built here (no sweep needed): the paper's tables and the
//! statistics against numbers computed by hand, the plots parsed as SVG and decoded as PNG, the
//! HTML page parsed whole, `show`'s text.

use std::path::Path;

use coordinator::report::model::{
    Action, ClassMetrics, EpochReport, Method, TrialRecord, TrialResult, TrialSpec, TrialStatus,
};
use coordinator::report::paper_tables::{self, PaperTables};
use coordinator::report::{html, pivot, pivot_grid, plots, stats, trial_view, Axis};

const TABLES_YAML: &str = include_str!("fixtures/paper_tables.yaml");

fn spec(architecture: &str, dataset: &str, resolution: u32, method: Method, seed: u64) -> TrialSpec {
    let method = method.name();
    serde_json::from_value(serde_json::json!({
        "architecture": architecture,
        "optimizer": "adam",
        "dataset": {"name": dataset, "format": "synthetic"},
        "resolution": resolution,
        "method": method,
        "sal": {"s_noise": 0.3, "s_yield": 0.6, "warmup_epochs": 1},
        "epochs": 4,
        "batch_size": 8,
        "learning_rate": 0.001,
        "seed": seed,
    }))
    .unwrap()
}

fn class(label: &str, precision: f64, recall: f64, f1: f64, support: u64) -> ClassMetrics {
    ClassMetrics { label: label.into(), precision, recall, f1, support }
}

/// Four epochs; SAL trials inject noise at epoch 2, deform at 3 and recover at 4.
fn history(sal: bool) -> Vec<EpochReport> {
    let actions = [Action::None, Action::Noise, Action::NoisePlastic, Action::Recovered];
    (1..=4u32)
        .map(|epoch| {
            let e = f64::from(epoch);
            EpochReport {
                epoch,
                train_loss: 2.0 / e,
                train_accuracy: 0.2 * e,
                val_loss: 2.2 / e,
                val_accuracy: 0.18 * e,
                grad_norm: 1.0,
                sal: sal.then(|| sal_core::EpochRecord {
                    epoch,
                    loss: 2.2 / e,
                    accuracy: 0.18 * e,
                    stress: 0.25 * e,
                    stress_after: if epoch == 3 { 0.0 } else { 0.25 * e },
                    decided: actions[epoch as usize - 1],
                    applied: actions[epoch as usize - 1],
                    noise_sigma: if epoch == 2 { 0.01 } else { 0.0 },
                }),
                seconds: 0.5,
                peak_device_mb: None,
                train_images_per_s: 100.0 * e,
                eval_images_per_s: 400.0,
            }
        })
        .collect()
}

fn record(
    id: &str,
    architecture: &str,
    dataset: &str,
    resolution: u32,
    method: Method,
    seed: u64,
    top1: f64,
) -> TrialRecord {
    let tench = class("n01440764", 0.80 + 0.1 * seed as f64, 0.9, 0.85, 10);
    let springer = class("n02102040", 0.70, 0.60 + 0.1 * seed as f64, 0.65, 12);
    let result = TrialResult {
        status: TrialStatus::Completed,
        top1,
        top5: 0.99,
        test_loss: 0.5,
        per_class: vec![tench, springer],
        macro_avg: class("avg", 0.75, 0.75, 0.75, 22),
        weighted_avg: class("avg", 0.76, 0.76, 0.76, 22),
        confusion: vec![vec![9, 1], vec![4, 8]],
        train_seconds: 100.0 * seed as f64,
        peak_host_mb: 500.0 + seed as f64,
        peak_device_mb: Some(1000.0),
        inference_ms_per_batch: 2.0,
        history: history(method == Method::Sal),
        flatness: None,
        manifest: None,
    };
    TrialRecord {
        id: id.into(),
        spec: spec(architecture, dataset, resolution, method, seed),
        state: "done".into(),
        attempts: 1,
        last_error: None,
        result: Some(result),
        epochs: Vec::new(),
    }
}

/// Two cells: the paper's table-1 setup (2 seeds each method) and a small one (1 seed each).
fn records() -> Vec<TrialRecord> {
    vec![
        record("aa01", "densenet201", "imagenette", 64, Method::Baseline, 1, 0.86),
        record("aa02", "densenet201", "imagenette", 64, Method::Baseline, 2, 0.88),
        record("bb01", "densenet201", "imagenette", 64, Method::Sal, 1, 0.89),
        record("bb02", "densenet201", "imagenette", 64, Method::Sal, 2, 0.90),
        record("cc01", "small_cnn", "synthetic", 32, Method::Baseline, 1, 0.50),
        record("dd01", "small_cnn", "synthetic", 32, Method::Sal, 1, 0.55),
    ]
}

fn paper() -> PaperTables {
    PaperTables::parse(TABLES_YAML).unwrap()
}

#[test]
fn table_1_puts_ours_beside_the_published_row_of_the_same_setup() {
    let grid = paper_tables::table(1, &records(), &paper()).unwrap();
    // 10 published rows, then our one setup-and-method the paper does not have... twice (baseline, SAL).
    assert_eq!(grid.rows.len(), 12, "{}", grid.text());
    assert_eq!(grid.cell(0, "architecture"), Some("densenet201"));
    assert_eq!(grid.cell(0, "setup"), Some("adam imagenette 64px"));
    assert_eq!(grid.cell(0, "method"), Some("baseline"));
    // Baseline 86 and 88: mean 87, s = √2, t(1) = 12.706: ± 12.706·√2/√2; the CI to two
    // significant digits (13), the mean to the same place.
    assert_eq!(grid.cell(0, "top-1 % (ours)"), Some("87 ± 13 (n=2)"));
    assert_eq!(grid.cell(0, "top-1 % (paper)"), Some("86.98"));
    // SAL 89 and 90: mean 89.5, s = √0.5: ± 12.706·0.5 = 6.353.
    assert_eq!(grid.cell(1, "top-1 % (ours)"), Some("89.5 ± 6.4 (n=2)"));
    assert_eq!(grid.cell(1, "top-1 % (paper)"), Some("88.43"));
    // Train seconds 100 and 200 (mean 150, s = 70.71, ± 12.706·50 = 635.3); the paper's 1594.13
    // beside.
    assert_eq!(grid.cell(1, "train s (ours)"), Some("150 ± 640 (n=2)"));
    assert_eq!(grid.cell(1, "train s (paper)"), Some("1594.13"));
    // Host memory (the paper's psutil figure) 501 and 502.
    assert_eq!(grid.cell(0, "host MB (ours)"), Some("501.5 ± 6.4 (n=2)"));
    assert_eq!(grid.cell(0, "host MB (paper)"), Some("1604.84"));
    // A published row we did not run.
    assert_eq!(grid.cell(2, "architecture"), Some("densenet121"));
    assert_eq!(grid.cell(2, "top-1 % (ours)"), Some("–"));
    assert_eq!(grid.cell(2, "top-1 % (paper)"), Some("87.36"));
    // Ours without a published figure: one seed, no interval.
    assert_eq!(grid.cell(10, "architecture"), Some("small_cnn"));
    assert_eq!(grid.cell(10, "top-1 % (ours)"), Some("50.00 (n=1)"));
    assert_eq!(grid.cell(10, "top-1 % (paper)"), Some("–"));
    assert!(grid.notes.iter().any(|n| n.contains("2 of 10 published rows matched")), "{:?}", grid.notes);
    // The same numbers in every format.
    assert!(grid
        .markdown()
        .contains("| densenet201 | adam imagenette 64px | baseline | 87 ± 13 (n=2) | 86.98 |"));
    assert!(grid
        .latex()
        .contains("densenet201 & adam imagenette 64px & baseline & 87 $\\pm$ 13 (n=2) & 86.98"));
}

#[test]
fn tables_2_to_4_lead_with_their_axis_and_table_5_is_per_class() {
    let records = records();
    let paper = paper();
    let t2 = paper_tables::table(2, &records, &paper).unwrap();
    assert_eq!(t2.header[0], "dataset");
    assert_eq!(t2.cell(0, "dataset"), Some("imagenette"));
    assert_eq!(t2.cell(0, "setup"), Some("densenet201 adam 64px"));
    assert_eq!(t2.cell(1, "top-1 % (ours)"), Some("89.5 ± 6.4 (n=2)"));
    let t3 = paper_tables::table(3, &records, &paper).unwrap();
    assert_eq!(t3.header[0], "optimizer");
    let t4 = paper_tables::table(4, &records, &paper).unwrap();
    assert_eq!(t4.header[0], "resolution");
    // Table 4's 64px row is SAL only: our SAL matches it.
    let row = (0..t4.rows.len()).find(|&i| t4.cell(i, "resolution") == Some("64")).unwrap();
    assert_eq!(t4.cell(row, "top-1 % (ours)"), Some("89.5 ± 6.4 (n=2)"));
    assert_eq!(t4.cell(row, "top-1 % (paper)"), Some("88.43"));
    assert!(paper_tables::table(6, &records, &paper).unwrap_err().contains("tables 1 to 5"));

    let t5 = paper_tables::table(5, &records, &paper).unwrap();
    // Per setup: 2 classes, top-1, macro and weighted averages.
    assert_eq!(t5.rows.len(), 10, "{}", t5.text());
    assert_eq!(t5.cell(0, "class"), Some("n01440764"));
    // Precision 0.9 and 1.0 over the two baseline seeds.
    assert_eq!(t5.cell(0, "baseline P %"), Some("95.00"));
    assert_eq!(t5.cell(1, "SAL R %"), Some("75.00"));
    assert_eq!(t5.cell(0, "baseline support"), Some("10"));
    // Imagenette's folder name matched to the paper's class name.
    assert_eq!(t5.cell(0, "paper baseline F1 %"), Some("91.74"));
    assert_eq!(t5.cell(0, "paper SAL F1 %"), Some("91.80"));
    assert_eq!(t5.cell(2, "class"), Some("Top-1 Acc"));
    assert_eq!(t5.cell(2, "baseline F1 %"), Some("87.00"));
    assert_eq!(t5.cell(3, "paper SAL F1 %"), Some("88.44"));
    // The small setup has no paper figures.
    assert_eq!(t5.cell(5, "paper baseline F1 %"), Some("–"));
}

#[test]
fn statistics_pair_by_seed_and_say_when_there_is_no_test() {
    let comparisons = stats::compare_cells(&records());
    assert_eq!(comparisons.len(), 2);
    let grid = stats::grid(&comparisons);
    assert_eq!(grid.cell(0, "architecture"), Some("densenet201"));
    assert_eq!(grid.cell(0, "pairs"), Some("2"));
    // Differences 3 and 2: mean 2.5, s = √0.5, t = 5 with 1 df: p = 1 − 2·atan(5)/π = 0.1257;
    // CI 2.5 ± 12.7062·0.5 = [-3.853, +8.853]: the half-width to two significant digits (6.4),
    // the difference and the ends to the same place.
    assert_eq!(grid.cell(0, "Δ top-1 (pp)"), Some("+2.5"));
    assert_eq!(grid.cell(0, "95% CI"), Some("[-3.9, +8.9]"));
    assert_eq!(grid.cell(0, "t-test p"), Some("0.126"));
    let p = comparisons[0].comparison.t_test.value().unwrap();
    assert!((p - (1.0 - 2.0 * 5f64.atan() / std::f64::consts::PI)).abs() < 1e-12, "{p}");
    // The only tested cell: Holm leaves it as it is.
    assert_eq!(grid.cell(0, "Holm p"), Some("0.126"));
    assert_eq!(grid.cell(0, "Wilcoxon p"), Some("n<6: no test"));
    assert_eq!(grid.cell(1, "pairs"), Some("1"));
    assert_eq!(grid.cell(1, "Δ top-1 (pp)"), Some("+5.00"));
    assert_eq!(grid.cell(1, "t-test p"), Some("n=1: no test"));
    assert_eq!(grid.cell(1, "Holm p"), Some(""));
    assert!(grid.notes.iter().any(|n| n.contains("1 cell(s) in the t-test family")), "{:?}", grid.notes);
}

fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not valid SVG: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc
}

fn texts(doc: &roxmltree::Document) -> String {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("|")
}

#[test]
fn plots_are_valid_svg_and_png_with_what_they_must_show() {
    let records = records();
    let dir = tempfile::tempdir().unwrap();
    let written = plots::write_all(dir.path(), &records).unwrap();
    // forest, heatmap, cost; curves for 6 trials, stress for 3: 12 plots, SVG and PNG each.
    assert_eq!(written.len(), 24, "{written:?}");
    for path in &written {
        match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => {
                parse_svg(&std::fs::read_to_string(path).unwrap());
            }
            Some("png") => {
                let image = image::open(path).unwrap().to_rgb8();
                // Not a blank canvas: dark pixels (text, axes) are there.
                let dark = image.pixels().filter(|p| p.0.iter().all(|c| *c < 80)).count();
                assert!(dark > 200, "{}: {dark} dark pixels", path.display());
            }
            other => panic!("unexpected file {other:?}"),
        }
    }
    let stress = std::fs::read_to_string(dir.path().join("trials/bb01/stress.svg")).unwrap();
    let doc = parse_svg(&stress);
    let labels = texts(&doc);
    assert!(labels.contains("S_noise = 0.3") && labels.contains("S_yield = 0.6"), "{labels}");
    assert!(
        labels.contains("noise") && labels.contains("plastic") && labels.contains("recovery"),
        "{labels}"
    );
    let forest = std::fs::read_to_string(dir.path().join("forest.svg")).unwrap();
    let labels = texts(&parse_svg(&forest));
    assert!(
        labels.contains("densenet201/adam/imagenette@64") && labels.contains("small_cnn/adam/synthetic@32"),
        "{labels}"
    );
    let heatmap = std::fs::read_to_string(dir.path().join("heatmap.svg")).unwrap();
    let labels = texts(&parse_svg(&heatmap));
    // The cell values: +2.50 and +5.00 percentage points.
    assert!(labels.contains("+2.50") && labels.contains("+5.00"), "{labels}");
    // Baselines have no stress trace.
    assert!(!dir.path().join("trials/aa01/stress.svg").exists());
}

#[test]
fn the_html_page_is_one_well_formed_self_contained_document() {
    let records = records();
    let axes = [Axis::Architecture, Axis::Method];
    let rows = pivot(&records, &axes);
    let paper = paper();
    let page = html::Page {
        sweep: "fixture <sweep>",
        records: &records,
        pivot: pivot_grid::grid("", &rows, &axes, None),
        paper_tables: (1..=5).map(|n| paper_tables::table(n, &records, &paper).unwrap()).collect(),
        trial_pages: None,
    };
    let text = html::render(&page).unwrap();
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&text, options)
        .unwrap_or_else(|e| panic!("not well-formed: {e}"));
    let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
    // Sweep plots 3, trial plots 9, all inline.
    assert_eq!(count("svg"), 12);
    let sections: Vec<_> =
        doc.descendants().filter(|n| n.has_tag_name("section")).filter_map(|n| n.attribute("id")).collect();
    assert_eq!(sections, records.iter().map(|r| html::trial_anchor(&r.id)).collect::<Vec<_>>());
    for id in ["pivot", "statistics-table", "paper-table-1", "paper-table-5", "trial-index", "confusion-bb01"]
    {
        assert!(doc.descendants().any(|n| n.attribute("id") == Some(id)), "no #{id}");
    }
    // Nothing is fetched: one inline script (the trial filter), no stylesheet link, no image or
    // frame source.
    assert_eq!(count("script"), 1);
    for n in doc.descendants().filter(|n| n.is_element()) {
        assert!(!["link", "img", "iframe"].contains(&n.tag_name().name()), "{:?}", n.tag_name());
        assert!(n.attribute("src").is_none());
        if let Some(href) = n.attribute("href") {
            assert!(href.starts_with('#'), "external link {href}");
        }
    }
    assert!(text.contains("Sweep fixture &lt;sweep&gt;"));
    // A trial's history shows SAL's actions.
    let history = doc.descendants().find(|n| n.attribute("id") == Some("history-bb01")).unwrap();
    let cells: Vec<&str> =
        history.descendants().filter(|n| n.has_tag_name("td")).filter_map(|n| n.text()).collect();
    assert!(
        cells.contains(&"noise") && cells.contains(&"noise+plastic") && cells.contains(&"recovered"),
        "{cells:?}"
    );
    // The page written to a file, for the browser test and for eyes.
    if let Ok(dir) = std::env::var("SAL_REPORT_HTML_OUT") {
        std::fs::write(Path::new(&dir).join("fixture-report.html"), &text).unwrap();
    }
}

#[test]
fn a_large_sweep_gets_one_filterable_table_and_no_section_per_trial() {
    // Above INLINE_TRIALS, a trial costs one table row: the page grows by a row per trial, not by
    // its plots and tables (13,440 inline sections made a 773 MB page).
    let trials = 2_000;
    let base = records();
    let records: Vec<TrialRecord> = (0..trials)
        .map(|i| {
            let mut record = base[i % base.len()].clone();
            record.id = format!("{i:06x}{}", record.id);
            record.spec.seed = (i / base.len()) as u64 + 1;
            record
        })
        .collect();
    let axes = [Axis::Architecture, Axis::Method];
    let render = |trial_pages: Option<String>| {
        html::render(&html::Page {
            sweep: "large",
            records: &records,
            pivot: pivot_grid::grid("", &pivot(&records, &axes), &axes, None),
            paper_tables: Vec::new(),
            trial_pages,
        })
        .unwrap()
    };
    let text = render(None);
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&text, options).unwrap();
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("section")).count(), 0);
    let index = doc.descendants().find(|n| n.attribute("id") == Some("trial-index")).unwrap();
    let rows: Vec<_> = index.descendants().filter(|n| n.has_tag_name("tr")).skip(1).collect();
    assert_eq!(rows.len(), trials);
    assert!(doc.descendants().any(|n| n.attribute("id") == Some("trial-filter")));
    assert!(text.contains("--trial-pages DIR"));
    // Without per-trial pages an id links nowhere; with them, to PREFIX/ID.html.
    assert!(!text.contains("href=\"#trial-"));
    assert!(text.len() < trials * 600 + 200_000, "{} bytes for {trials} trials", text.len());
    let linked = render(Some("pages".into()));
    assert_eq!(linked.matches("href=\"pages/").count(), trials);
    assert!(linked.contains(&format!("href=\"pages/{}.html\"", records[17].id)));
    let page = html::trial_page("large", &records[17]).unwrap();
    let doc = roxmltree::Document::parse_with_options(&page, options).unwrap();
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("section")).count(), 1);
}

#[test]
fn show_finds_a_trial_by_a_prefix_and_refuses_ambiguous_ones() {
    let records = records();
    let record = trial_view::find(&records, "bb0").unwrap_err();
    assert!(record.contains("start of 2 trial ids"), "{record}");
    assert!(trial_view::find(&records, "zz").unwrap_err().contains("no trial id starts with `zz`"));
    let record = trial_view::find(&records, "bb01").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = trial_view::show(record, dir.path());
    assert!(text.starts_with("trial bb01: densenet201/adam/imagenette@64 sal seed 1"), "{text}");
    assert!(text.contains("architecture: densenet201"), "{text}");
    assert!(text.contains("noise+plastic") && text.contains("recovered"), "{text}");
    assert!(text.contains("n02102040") && text.contains("Macro Avg"), "{text}");
    assert!(text.contains("plots: none under"), "{text}");
    plots::write_all(dir.path(), &records).unwrap();
    let text = trial_view::show(record, dir.path());
    assert!(text.contains("trials/bb01/stress.svg") && text.contains("trials/bb01/curves.png"), "{text}");
}

/// Chromium's command line for one headless run with a fresh profile in `dir`.
fn chromium(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    let binary = ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|name| {
        std::process::Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
    })?;
    let profile = dir.join(format!("profile-{}", args.len()));
    let output = std::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap();
    Some(output)
}

/// Console messages (errors included) as Chromium logs them with `--enable-logging=stderr`.
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect()
}

#[test]
fn the_html_page_renders_in_headless_chromium_without_console_errors() {
    let dir = tempfile::tempdir().unwrap();
    // The check can fail: a page with a console error and an uncaught exception is caught.
    let probe = dir.path().join("probe.html");
    std::fs::write(
        &probe,
        "<!DOCTYPE html><html><body><script>console.error('probe'); missing();</script></body></html>",
    )
    .unwrap();
    let Some(output) = chromium(dir.path(), &["--dump-dom", &format!("file://{}", probe.display())]) else {
        let why = "no chromium on this machine (Debian: apt-get install chromium); the page was not rendered";
        // CI (.ci/run) requires the tools: a missing one is a failure there, not a skip.
        assert!(std::env::var_os("SAL_REQUIRE_TEST_TOOLS").is_none(), "{why}");
        println!("SKIPPED: {why}");
        return;
    };
    let probe_console = console_lines(&output.stderr);
    assert!(
        probe_console.iter().any(|l| l.contains("probe"))
            && probe_console.iter().any(|l| l.contains("Uncaught")),
        "the console check sees nothing: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let records = records();
    let axes = [Axis::Architecture, Axis::Method];
    let page = html::Page {
        sweep: "fixture",
        records: &records,
        pivot: pivot_grid::grid("", &pivot(&records, &axes), &axes, None),
        paper_tables: (1..=5).map(|n| paper_tables::table(n, &records, &paper()).unwrap()).collect(),
        trial_pages: None,
    };
    let path = dir.path().join("report.html");
    std::fs::write(&path, html::render(&page).unwrap()).unwrap();
    let url = format!("file://{}", path.display());
    let output = chromium(dir.path(), &["--dump-dom", &url]).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(console_lines(&output.stderr), Vec::<String>::new());
    // The DOM Chromium built holds every trial's section and every plot.
    let dom = String::from_utf8_lossy(&output.stdout);
    for record in &records {
        assert!(dom.contains(&format!("id=\"{}\"", html::trial_anchor(&record.id))), "{}", record.id);
    }
    assert_eq!(dom.matches("<svg").count(), 12);
    let shot = dir.path().join("report.png");
    let output =
        chromium(dir.path(), &["--window-size=1280,2400", &format!("--screenshot={}", shot.display()), &url])
            .unwrap();
    assert!(output.status.success() && shot.is_file(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(console_lines(&output.stderr), Vec::<String>::new());
    if let Ok(out) = std::env::var("SAL_REPORT_HTML_OUT") {
        std::fs::copy(&shot, Path::new(&out).join("fixture-report.png")).unwrap();
    }
}
