//! The whole report as one self-contained HTML page: the tables, the statistics, the paper's
//! tables, the plots as inline SVG, and every trial in one filterable table. No external file, no
//! network: it reads the same offline, attached to an e-mail or archived with the paper. One small
//! inline script filters the trial table; without it the page reads the same.
//!
//! Per-trial detail (spec, plots, history with SAL's actions, per-class table, confusion matrix)
//! is inlined as a section per trial only for sweeps of at most [`INLINE_TRIALS`] trials: the
//! paper's grid with 10 seeds is 13,440 trials, and their sections made a 773 MB page that no
//! browser opens. Above that, `report --trial-pages DIR` writes one page per trial
//! ([`trial_page`]) and the table links to them; `coordinator show ID` prints one.
//!
//! The page is also well-formed XML (self-closed void elements, only XML's entities), so that a
//! test can parse it whole.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::grid::{html_escape, Grid};
use super::model::{self, TrialRecord};
use super::plots::{self, NamedPlot, PlotError};
use super::stats;
use super::trial_view;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
p.note { font-size: 0.8em; color: #555; margin: 0.2em 0; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
figure { margin: 0.6em 0; } svg { max-width: 100%; height: auto; }
nav a { margin-right: 1em; } section.trial { border-top: 1px dashed #bbb; }
input#trial-filter { width: 40em; max-width: 100%; padding: 0.3em; }
";

/// Sweeps of at most this many trials get a section per trial inline.
pub const INLINE_TRIALS: usize = 64;

/// Hides the rows of the trial table that do not contain every word typed in the filter box.
/// Written without `<` and `&` so that the page stays well-formed XML.
const FILTER_SCRIPT: &str = "
(function () {
  var box = document.getElementById('trial-filter');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#trial-index tbody tr'));
  var count = document.getElementById('trial-count');
  box.addEventListener('input', function () {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) !== -1; });
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    count.textContent = shown + ' of ' + rows.length + ' trials';
  });
})();
";

/// Everything the page shows besides the records themselves.
pub struct Page<'a> {
    pub sweep: &'a str,
    pub records: &'a [TrialRecord],
    /// The pivot of the results (by the report's axes).
    pub pivot: Grid,
    /// The paper's tables 1–5 in our layout, when `tables.yaml` was given.
    pub paper_tables: Vec<Grid>,
    /// Where the trial table links each trial's own page (`report --trial-pages DIR`), relative
    /// to the page: `PREFIX/ID.html`. `None`: no per-trial pages.
    pub trial_pages: Option<String>,
}

/// An `id` attribute for a trial's section.
pub fn trial_anchor(id: &str) -> String {
    format!("trial-{id}")
}

fn inline_svg(named: &NamedPlot) -> Result<String, PlotError> {
    let svg = named.plot.svg()?;
    // An XML declaration is not allowed inside HTML.
    let svg = match svg.find("<svg") {
        Some(start) => svg[start..].to_string(),
        None => svg,
    };
    Ok(format!("<figure data-plot=\"{}\">{svg}</figure>", html_escape(&named.name)))
}

pub fn render(page: &Page) -> Result<String, PlotError> {
    let records = page.records;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{} — SAL sweep report</title>\
         <style>{STYLE}</style></head><body>",
        html_escape(page.sweep)
    );
    let _ = write!(out, "<h1>Sweep {}</h1>", html_escape(page.sweep));
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records {
        *states.entry(record.state.as_str()).or_default() += 1;
    }
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = write!(out, "<p>{} trials: {}.</p>", records.len(), html_escape(&states.join(", ")));
    out.push_str(
        "<nav><a href=\"#results\">Results</a><a href=\"#method\">Method</a><a href=\"#statistics\">Statistics</a>\
         <a href=\"#paper\">Paper tables</a><a href=\"#plots\">Plots</a><a href=\"#trials\">Trials</a></nav>",
    );

    out.push_str("<h2 id=\"results\">Results</h2>");
    out.push_str(&page.pivot.html("pivot"));

    out.push_str("<h2 id=\"method\">Method</h2>");
    let _ = write!(out, "<p>{}</p>", html_escape(&super::provenance::method_line(records)));
    if let Some(warning) = super::provenance::versions_warning(records) {
        let _ = write!(out, "<p class=\"note\">{}</p>", html_escape(&warning));
    }

    out.push_str("<h2 id=\"statistics\">Statistics</h2>");
    out.push_str(&stats::grid(&stats::compare_cells(records)).html("statistics-table"));
    for method in stats::other_methods(records) {
        let grid = stats::method_grid(&stats::compare_method(records, method), method);
        out.push_str(&format!("<h3>{}</h3>", grid.title));
        out.push_str(&grid.html(&format!("statistics-{}", method.name())));
    }
    for (grid, id) in [
        (super::ablation::ablation_grid(records), "ablation"),
        (super::ablation::equation11_grid(records), "equation-11"),
    ] {
        if let Some(grid) = grid {
            let _ = write!(out, "<h3 id=\"{id}\">{}</h3>", html_escape(&grid.title));
            out.push_str(&grid.html(&format!("{id}-table")));
        }
    }

    out.push_str("<h2 id=\"paper\">The paper's tables</h2>");
    if page.paper_tables.is_empty() {
        out.push_str("<p>Not included: give <code>--paper tables.yaml</code>.</p>");
    }
    for (i, grid) in page.paper_tables.iter().enumerate() {
        out.push_str(&grid.html(&format!("paper-table-{}", i + 1)));
    }

    out.push_str("<h2 id=\"plots\">Plots</h2>");
    let sweep_plots = plots::sweep_plots(records);
    if sweep_plots.is_empty() {
        out.push_str("<p>No finished trials to plot.</p>");
    }
    for named in &sweep_plots {
        out.push_str(&inline_svg(named)?);
    }

    out.push_str("<h2 id=\"trials\">Trials</h2>");
    let inline = records.len() <= INLINE_TRIALS;
    if !inline {
        let _ = write!(
            out,
            "<p class=\"note\">{} trials: too many to show each one here. {}</p>",
            records.len(),
            match &page.trial_pages {
                Some(_) => "Each id links to the trial's own page.",
                None =>
                    "<code>report --format html --trial-pages DIR</code> writes a page per trial \
                         and links them from this table; <code>coordinator show ID</code> prints one.",
            }
        );
    }
    let _ = write!(
        out,
        "<p><input id=\"trial-filter\" type=\"search\" placeholder=\"filter: words of a row \
         (resnet50 sal failed ...)\" aria-label=\"filter the trials\"/> <span id=\"trial-count\">{n} of {n} \
         trials</span></p>",
        n = records.len()
    );
    out.push_str(&trial_table(records, inline, page.trial_pages.as_deref()));
    if inline {
        for record in records {
            out.push_str(&trial_section(record)?);
        }
    }
    let _ = write!(out, "<script>{FILTER_SCRIPT}</script>");
    out.push_str("</body></html>\n");
    Ok(out)
}

/// One row per trial: id (a link to its section or page), setup, state, attempts, epochs run,
/// top-1, training time. Written directly rather than through [`Grid`]: its cells are escaped text,
/// and the links are markup.
fn trial_table(records: &[TrialRecord], inline: bool, pages: Option<&str>) -> String {
    let mut out = String::with_capacity(records.len() * 320);
    out.push_str(
        "<table id=\"trial-index\"><thead><tr><th>trial</th><th>setup</th><th>state</th><th>attempts</th>\
         <th>epochs</th><th>top-1 %</th><th>train s</th></tr></thead><tbody>",
    );
    for record in records {
        let id = html_escape(&record.id);
        let href = match (inline, pages) {
            (true, _) => Some(format!("#{}", html_escape(&trial_anchor(&record.id)))),
            (false, Some(prefix)) => Some(format!("{}/{id}.html", html_escape(prefix))),
            (false, None) => None,
        };
        let id_cell = match href {
            Some(href) => format!("<a href=\"{href}\">{id}</a>"),
            None => id,
        };
        let result = record.result.as_ref();
        let epochs = model::history(record).len();
        let _ = write!(
            out,
            "<tr><td>{id_cell}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{epochs}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            html_escape(&model::title(record)),
            html_escape(&record.state),
            record.attempts,
            result.map_or_else(String::new, |r| format!("{:.2}", r.top1 * 100.0)),
            result.map_or_else(String::new, |r| format!("{:.1}", r.train_seconds)),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// One trial in full: state, spec, plots, history with SAL's actions, per-class table, confusion.
fn trial_section(record: &TrialRecord) -> Result<String, PlotError> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"trial\" id=\"{}\"><h3>{} <small>{}</small></h3>",
        html_escape(&trial_anchor(&record.id)),
        html_escape(&model::title(record)),
        html_escape(&record.id)
    );
    let _ = write!(out, "<p>state {}, {} attempt(s)", html_escape(&record.state), record.attempts);
    if let Some(error) = &record.last_error {
        let _ = write!(out, "; last error: {}", html_escape(error));
    }
    out.push_str(".</p>");
    let spec = serde_yaml_ng::to_string(&record.spec).unwrap_or_default();
    let _ = write!(out, "<details><summary>Spec</summary><pre>{}</pre></details>", html_escape(&spec));
    for named in plots::trial_plots(record) {
        out.push_str(&inline_svg(&named)?);
    }
    out.push_str(&trial_view::history_grid(record).html(&format!("history-{}", record.id)));
    if let Some(grid) = trial_view::per_class_grid(record) {
        out.push_str(&grid.html(&format!("per-class-{}", record.id)));
    }
    if let Some(grid) = trial_view::confusion_grid(record) {
        out.push_str(&grid.html(&format!("confusion-{}", record.id)));
    }
    out.push_str("</section>");
    Ok(out)
}

/// A trial's own page (`report --trial-pages DIR` writes one per trial): its section, whole.
pub fn trial_page(sweep: &str, record: &TrialRecord) -> Result<String, PlotError> {
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{} — {}</title>\
         <style>{STYLE}</style></head><body><p><small>sweep {}</small></p>{}</body></html>\n",
        html_escape(&model::title(record)),
        html_escape(&record.id),
        html_escape(sweep),
        trial_section(record)?
    ))
}
