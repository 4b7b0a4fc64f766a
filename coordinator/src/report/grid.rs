//! A table as data (title, header, rows of text, notes under it), rendered as a terminal table,
//! Markdown, LaTeX (booktabs) or HTML. Every report table is built once as a grid, so that the
//! formats cannot disagree on a number.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grid {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns from this index on hold numbers (right-aligned).
    pub numeric_from: usize,
    /// Stated under the table: what was computed, how, and what was left out.
    pub notes: Vec<String>,
    /// The columns from `numeric_from` on, by header, in groups that stay in one table (a figure
    /// and its CI), most important first: in a narrow terminal the last ones move to a table
    /// below (see `report::fit`); columns not named follow, each on its own, left to right.
    pub importance: &'static [&'static [&'static str]],
}

impl Grid {
    /// The cell of `row` under the header `column` (tests and lookups by name).
    pub fn cell(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.header.iter().position(|h| h == column)?;
        self.rows.get(row)?.get(index).map(String::as_str)
    }

    pub fn markdown(&self) -> String {
        let escape = |text: &str| text.replace('|', "\\|");
        let mut out = String::new();
        if !self.title.is_empty() {
            let _ = writeln!(out, "**{}**\n", escape(&self.title));
        }
        let _ =
            writeln!(out, "| {} |", self.header.iter().map(|h| escape(h)).collect::<Vec<_>>().join(" | "));
        let rule: Vec<&str> =
            (0..self.header.len()).map(|i| if i >= self.numeric_from { "---:" } else { "---" }).collect();
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.iter().map(|c| escape(c)).collect::<Vec<_>>().join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "{}  ", escape(note));
            }
        }
        out
    }

    pub fn latex(&self) -> String {
        let columns: String =
            (0..self.header.len()).map(|i| if i >= self.numeric_from { 'r' } else { 'l' }).collect();
        let line = |cells: &[String]| cells.iter().map(|c| latex_escape(c)).collect::<Vec<_>>().join(" & ");
        let mut out = String::new();
        let _ = writeln!(out, "\\begin{{table}}[ht]\n\\centering");
        if !self.title.is_empty() {
            let _ = writeln!(out, "\\caption{{{}}}", latex_escape(&self.title));
        }
        let _ = writeln!(out, "\\begin{{tabular}}{{{columns}}}\n\\toprule");
        let _ = writeln!(out, "{} \\\\\n\\midrule", line(&self.header));
        for row in &self.rows {
            let _ = writeln!(out, "{} \\\\", line(row));
        }
        let _ = writeln!(out, "\\bottomrule\n\\end{{tabular}}");
        for note in &self.notes {
            let _ = writeln!(out, "\\par\\footnotesize {}", latex_escape(note));
        }
        let _ = writeln!(out, "\\end{{table}}");
        out
    }

    /// A `<table>` with its caption and notes; `id` for in-page links.
    pub fn html(&self, id: &str) -> String {
        let mut out = String::new();
        let _ = write!(out, "<table id=\"{}\">", html_escape(id));
        if !self.title.is_empty() {
            let _ = write!(out, "<caption>{}</caption>", html_escape(&self.title));
        }
        out.push_str("<thead><tr>");
        for h in &self.header {
            let _ = write!(out, "<th>{}</th>", html_escape(h));
        }
        out.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if i >= self.numeric_from { " class=\"num\"" } else { "" };
                let _ = write!(out, "<td{class}>{}</td>", html_escape(cell));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        for note in &self.notes {
            let _ = write!(out, "<p class=\"note\">{}</p>", html_escape(note));
        }
        out
    }
}

pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn latex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            '±' => out.push_str("$\\pm$"),
            'Δ' => out.push_str("$\\Delta$"),
            '−' => out.push_str("$-$"),
            '–' => out.push_str("--"),
            '≥' => out.push_str("$\\geq$"),
            '≤' => out.push_str("$\\leq$"),
            '×' => out.push_str("$\\times$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        Grid {
            title: "T & t".into(),
            header: vec!["name".into(), "Δ top-1".into()],
            rows: vec![vec!["a_b|c".into(), "1.00 ± 0.50".into()]],
            numeric_from: 1,
            notes: vec!["50% <done>".into()],
            importance: &[],
        }
    }

    #[test]
    fn every_format_escapes_what_it_must_and_keeps_the_numbers() {
        let g = grid();
        assert_eq!(g.cell(0, "Δ top-1"), Some("1.00 ± 0.50"));
        assert!(g.text().contains("1.00 ± 0.50") && g.text().contains("  50% <done>"));
        let md = g.markdown();
        assert!(md.contains("| name | Δ top-1 |\n| --- | ---: |\n| a_b\\|c | 1.00 ± 0.50 |"), "{md}");
        let tex = g.latex();
        assert!(tex.contains("a\\_b|c & 1.00 $\\pm$ 0.50 \\\\"), "{tex}");
        assert!(tex.contains("\\begin{tabular}{lr}") && tex.contains("50\\% <done>"), "{tex}");
        let html = g.html("t1");
        assert!(html.contains("<caption>T &amp; t</caption>") && html.contains("50% &lt;done&gt;"), "{html}");
        assert!(html.contains("<td class=\"num\">1.00 ± 0.50</td>"), "{html}");
    }
}
