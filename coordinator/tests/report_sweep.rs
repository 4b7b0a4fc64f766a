//! Every report output of a real sweep: 2 cells (small_cnn with Adam and with SGD) × baseline and
//! SAL × 3 seeds, trained on generated data through `coordinator --local`; then the tables, the
//! statistics, the paper's tables, the plots, the HTML page and `show`, each checked.

use std::path::Path;
use std::process::Command;

use coordinator::report::stats;
use coordinator::store;

const SWEEP: &str = "\
name: reports
epochs: 8
batch_size: 32
learning_rate: 0.001
seeds: [1, 2, 3]
methods: [baseline, sal]
architectures: [small_cnn]
optimizers: [adam, sgd]
resolutions: [32]
datasets:
  synthetic:
    format: synthetic
    options:
      classes: 10
      train_size: 256
      val_size: 128
      label_noise: 0.2
      noise: 0.9
# Stress that builds fast, so that SAL acts within 8 epochs (once accuracy stalls) and its
# results differ from the baseline's.
sal:
  warmup_epochs: 2
  theta: 0.1
  s_noise: 0.05
  s_yield: 0.15
head: linear
";

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_coordinator")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn paper() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/paper_tables.yaml").to_string()
}

#[test]
fn a_real_sweep_gives_every_report_output() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("reports.yaml");
    std::fs::write(&sweep, SWEEP).unwrap();
    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap();
    let (ok, _, stderr) =
        run(&["--sweep", sweep.to_str().unwrap(), "--state-dir", state_arg, "--local", "--workers", "2"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("reports: 12 done"), "{stderr}");
    let (_, records) = store::read_records(&state).unwrap();
    assert_eq!(records.len(), 12);
    let acted = records
        .iter()
        .filter_map(|r| r.result.as_ref())
        .flat_map(|r| &r.history)
        .filter(|e| e.sal.is_some_and(|s| s.applied != sal_core::Action::None))
        .count();
    assert!(acted > 0, "SAL never acted: the comparison would be of identical runs");

    // Statistics: the Δ of each cell computed here from the stored results, by hand, printed to
    // the precision of its CI (the CI's half-width to two significant digits).
    let (ok, markdown, stderr) = run(&["report", "--state-dir", state_arg, "--format", "markdown"]);
    assert!(ok, "{stderr}");
    let comparisons = stats::compare_cells(&records);
    for optimizer in ["adam", "sgd"] {
        let top1 = |method: &str, seed: u64| {
            records
                .iter()
                .find(|r| {
                    r.spec.optimizer == optimizer
                        && r.spec.seed == seed
                        && coordinator::sweep::spec::method_name(r.spec.method) == method
                })
                .and_then(|r| r.result.as_ref())
                .map(|r| r.top1 * 100.0)
                .unwrap()
        };
        let delta = (1..=3).map(|seed| top1("sal", seed) - top1("baseline", seed)).sum::<f64>() / 3.0;
        let ci = comparisons.iter().find(|c| c.cell.optimizer == optimizer).unwrap().comparison.mean_ci;
        let shown = ci
            .and_then(|c| c.ci95)
            .and_then(|ci| coordinator::report::precision::difference(delta, ci, false))
            .map_or_else(|| format!("{delta:+.2}"), |(shown, _)| shown);
        let row = format!("| small_cnn | {optimizer} | synthetic | 32 | 3 | {shown} |");
        assert!(markdown.contains(&row), "no `{row}` in\n{markdown}");
    }
    assert!(markdown.contains("Wilcoxon") && markdown.contains("n<6: no test"), "{markdown}");
    assert_eq!(comparisons.len(), 2, "{markdown}");
    assert!(
        comparisons.iter().all(|c| c.comparison.n == 3 && c.comparison.t_test.value().is_some()),
        "{markdown}"
    );

    // The paper's table 1, in LaTeX: ours on rows of their own (no published setup matches).
    let (ok, latex, stderr) =
        run(&["report", "--state-dir", state_arg, "--table", "1", "--paper", &paper(), "--format", "latex"]);
    assert!(ok, "{stderr}");
    assert!(
        latex.contains("\\begin{tabular}") && latex.contains("small\\_cnn & adam synthetic 32px & baseline"),
        "{latex}"
    );
    assert!(latex.contains("(n=3)") && latex.contains("0 of 10 published rows matched"), "{latex}");
    let (ok, _, stderr) = run(&["report", "--state-dir", state_arg, "--table", "5"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&["report", "--state-dir", state_arg, "--table", "9"]);
    assert!(!ok && stderr.contains("9"), "{stderr}");

    // The HTML page and the plots.
    let html = dir.path().join("report.html");
    let plots = dir.path().join("plots");
    let (ok, _, stderr) = run(&[
        "report",
        "--state-dir",
        state_arg,
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
        "--paper",
        &paper(),
    ]);
    assert!(ok, "{stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&page, options).unwrap();
    let sections = doc.descendants().filter(|n| n.has_tag_name("section")).count();
    assert_eq!(sections, 12);
    // Sweep: forest, heatmap, cost; trials: 12 curves, 6 stress traces.
    assert_eq!(doc.descendants().filter(|n| n.has_tag_name("svg")).count(), 3 + 12 + 6);
    let mut svgs = 0;
    let mut pngs = 0;
    for entry in walk(&plots) {
        match entry.extension().and_then(|e| e.to_str()) {
            Some("svg") => {
                roxmltree::Document::parse(&std::fs::read_to_string(&entry).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
                svgs += 1;
            }
            Some("png") => {
                image::open(&entry).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
                pngs += 1;
            }
            _ => panic!("unexpected {}", entry.display()),
        }
    }
    assert_eq!((svgs, pngs), (21, 21));
    // One page per trial, linked from the page's trial table relative to it.
    let pages = dir.path().join("pages");
    let (ok, _, stderr) = run(&[
        "report",
        "--state-dir",
        state_arg,
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
        "--trial-pages",
        pages.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let linked = std::fs::read_to_string(&html).unwrap();
    for record in &records {
        let trial_page = std::fs::read_to_string(pages.join(format!("{}.html", record.id))).unwrap();
        let trial_doc = roxmltree::Document::parse_with_options(&trial_page, options).unwrap();
        assert_eq!(trial_doc.descendants().filter(|n| n.has_tag_name("section")).count(), 1);
        assert!(trial_page.contains(&format!("history-{}", record.id)));
        // 12 trials are few enough to inline: the table links each to its section on the page.
        assert!(linked.contains(&format!("href=\"#trial-{}\"", record.id)), "{}", record.id);
    }
    let (ok, _, stderr) = run(&[
        "report",
        "--state-dir",
        state_arg,
        "--format",
        "json",
        "--trial-pages",
        pages.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.trim().lines().count() == 1 && stderr.contains("--format html"), "{stderr}");
    if let Ok(out) = std::env::var("SAL_REPORT_HTML_OUT") {
        std::fs::copy(&html, Path::new(&out).join("sweep-report.html")).unwrap();
        let _ = std::fs::remove_dir_all(Path::new(&out).join("plots"));
        copy_dir(&plots, &Path::new(&out).join("plots"));
    }

    // One trial, by the start of its id.
    let sal = records.iter().find(|r| coordinator::sweep::spec::method_name(r.spec.method) == "sal").unwrap();
    let prefix = &sal.id[..10];
    let (ok, shown, stderr) =
        run(&["show", prefix, "--state-dir", state_arg, "--plots", plots.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(shown.starts_with(&format!("trial {}", sal.id)), "{shown}");
    assert!(shown.contains("SAL action") && shown.contains("Macro Avg"), "{shown}");
    assert!(shown.contains(&format!("trials/{}/stress.svg", sal.id)), "{shown}");
    let (ok, _, stderr) = run(&["show", "zzzz", "--state-dir", state_arg]);
    assert!(
        !ok && stderr.trim().lines().count() == 1 && stderr.contains("no trial id starts with `zzzz`"),
        "{stderr}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
