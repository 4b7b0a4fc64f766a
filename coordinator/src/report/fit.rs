//! A [`Grid`] fitted to a terminal's width, for `coordinator report` in a terminal. Piped, or in
//! any other format, tables are printed whole ([`Grid::text`]): scripts parse them.
//!
//! In a terminal `width` columns wide, in this order, as far as each is needed:
//! 1. the table as it is, when it fits;
//! 2. headers wrapped at their spaces (`Δ top-1 (pp)` on two lines); a cell never wraps, so a
//!    number is never split across lines;
//! 3. key columns (those before [`Grid::numeric_from`]) that hold one value in every row left
//!    out of the table and said once above it (`(the same in every row: optimizer adam, ...)`);
//! 4. the least important columns ([`Grid::importance`], last first) moved to a table below, with
//!    the same key columns, and a line saying which moved; a third table if that one is too wide.
//!
//! Titles, notes and other lines are wrapped at spaces. Below the width of the key columns and one
//! more column a table cannot fit, and is printed as narrow as it can be.

use std::fmt::Write as _;

use comfy_table::{
    presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width,
};

use super::grid::Grid;

/// A grid as terminal text (here rather than in [`super::grid`], which knows no terminal).
impl Grid {
    /// The table whole, as comfy-table draws it, with its title and notes.
    pub fn text(&self) -> String {
        let all: Vec<usize> = (0..self.header.len()).collect();
        let mut out = String::new();
        if !self.title.is_empty() {
            let _ = writeln!(out, "{}", self.title);
        }
        let _ = writeln!(out, "{}", draw(self, &all, None));
        for note in &self.notes {
            let _ = writeln!(out, "  {note}");
        }
        out
    }

    /// [`Grid::text`] fitted to a terminal `width` columns wide (this module); `None` (piped
    /// output, other formats): the table whole.
    pub fn render(&self, width: Option<u16>) -> String {
        match width {
            Some(width) => render(self, usize::from(width)),
            None => self.text(),
        }
    }
}

/// The width to fit the terminal report to; `None` prints every table whole.
///
/// Only a terminal gets fitted tables (`is_terminal`: stdout is one): piped output stays whole,
/// whatever `COLUMNS` says. On a terminal, `COLUMNS` holding a positive number wins (the usual
/// override, as for `ls` and Python's `shutil.get_terminal_size`), then the terminal's own
/// `measured` width; neither known: whole tables.
pub fn terminal_width(is_terminal: bool, columns: Option<&str>, measured: Option<u16>) -> Option<u16> {
    if !is_terminal {
        return None;
    }
    columns.and_then(|c| c.trim().parse::<u16>().ok()).filter(|&c| c > 0).or(measured.filter(|&m| m > 0))
}

/// Columns a text takes in a terminal: every character the reports print (`±`, `Δ`, `λ`, box
/// drawing) is one column wide.
pub fn display_width(text: &str) -> usize {
    text.chars().count()
}

/// `text`'s words in lines of at most `width` columns, the first line after `first`, the others
/// after `rest`; a word longer than a line stands alone on its line. No newline at the end.
pub fn wrap(text: &str, width: usize, first: &str, rest: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && display_width(&line) + 1 + display_width(word) > width {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines.join("\n")
}

/// The table of `columns` of `grid` (header indices, in this order), as comfy-table draws it:
/// each column as wide as its content when `widths` is `None` (the whole table, as always
/// printed), else `widths[i]` characters of content for column `i`, headers wrapped to it.
pub(crate) fn draw(grid: &Grid, columns: &[usize], widths: Option<&[usize]>) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    let text = |cells: &[String], i: usize| cells.get(i).cloned().unwrap_or_default();
    table.set_header(columns.iter().map(|&i| text(&grid.header, i)).collect::<Vec<_>>());
    for row in &grid.rows {
        table.add_row(columns.iter().map(|&i| {
            let cell = Cell::new(text(row, i));
            if i >= grid.numeric_from {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    if let Some(widths) = widths {
        let total = table_width(widths, columns);
        table
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(u16::try_from(total).unwrap_or(u16::MAX))
            .set_constraints(columns.iter().map(|&i| {
                // The constraint's width includes the padding of one space either side.
                ColumnConstraint::Absolute(Width::Fixed(u16::try_from(widths[i] + 2).unwrap_or(u16::MAX)))
            }));
    }
    table.to_string()
}

/// Characters of a table line with `columns` of content `widths`: each column padded by a space
/// either side, a border before each and one at the end.
fn table_width(widths: &[usize], columns: &[usize]) -> usize {
    columns.iter().map(|&i| widths[i] + 2).sum::<usize>() + columns.len() + 1
}

/// What `grid` prints in a terminal `width` columns wide (see the module's documentation): the
/// title, the table or tables, the notes; each line ends with a newline, as [`Grid::text`].
pub fn render(grid: &Grid, width: usize) -> String {
    let count = grid.header.len();
    let cells =
        |i: usize| grid.rows.iter().map(|row| row.get(i).map_or(0, |c| display_width(c))).max().unwrap_or(0);
    let natural: Vec<usize> = (0..count).map(|i| display_width(&grid.header[i]).max(cells(i))).collect();
    // A header wraps at its spaces; a cell never does.
    let narrowest: Vec<usize> = (0..count)
        .map(|i| grid.header[i].split_whitespace().map(display_width).max().unwrap_or(0).max(cells(i)))
        .collect();
    let all: Vec<usize> = (0..count).collect();

    let mut out = String::new();
    if !grid.title.is_empty() {
        let _ = writeln!(out, "{}", wrap(&grid.title, width, "", ""));
    }
    if table_width(&natural, &all) <= width {
        let _ = writeln!(out, "{}", draw(grid, &all, None));
    } else if table_width(&narrowest, &all) <= width {
        let widths = widths(grid, &narrowest, &natural, &all, width);
        let _ = writeln!(out, "{}", draw(grid, &all, Some(&widths)));
    } else {
        let keys: Vec<usize> = (0..grid.numeric_from.min(count)).collect();
        let constant: Vec<usize> = keys
            .iter()
            .copied()
            .filter(|&k| {
                let first = grid.rows.first().and_then(|r| r.get(k));
                first.is_some() && grid.rows.iter().all(|r| r.get(k) == first)
            })
            .collect();
        if !constant.is_empty() {
            let same: Vec<String> =
                constant.iter().map(|&k| format!("{} {}", grid.header[k], grid.rows[0][k])).collect();
            let line = format!("(the same in every row: {})", same.join(", "));
            let _ = writeln!(out, "{}", wrap(&line, width, "", " "));
        }
        let keys: Vec<usize> = keys.into_iter().filter(|k| !constant.contains(k)).collect();
        let tables = pack(&keys, &importance_order(grid), &narrowest, width);
        for (n, columns) in tables.iter().enumerate() {
            let mut shown: Vec<usize> = keys.iter().chain(columns).copied().collect();
            shown.sort_unstable();
            let widths = widths(grid, &narrowest, &natural, &shown, width);
            let _ = writeln!(out, "{}", draw(grid, &shown, Some(&widths)));
            if n == 0 && tables.len() > 1 {
                let mut moved: Vec<usize> = tables[1..].iter().flatten().copied().collect();
                moved.sort_unstable();
                let names: Vec<&str> = moved.iter().map(|&i| grid.header[i].as_str()).collect();
                let line = format!(
                    "({} {} in the {} below: the terminal is {width} columns wide)",
                    if names.len() == 1 { "column" } else { "columns" },
                    names.join(", "),
                    if tables.len() == 2 { "table" } else { "tables" },
                );
                let _ = writeln!(out, "{}", wrap(&line, width, "", " "));
            }
        }
    }
    for note in &grid.notes {
        let _ = writeln!(out, "{}", wrap(note, width, "  ", "  "));
    }
    out
}

/// The columns after the keys in groups that stay together, most important first: those
/// [`Grid::importance`] names, in its order, then the others one by one from left to right.
fn importance_order(grid: &Grid) -> Vec<Vec<usize>> {
    let first = grid.numeric_from.min(grid.header.len());
    let mut placed: Vec<usize> = Vec::new();
    let mut order: Vec<Vec<usize>> = Vec::new();
    for group in grid.importance {
        let columns: Vec<usize> = group
            .iter()
            .filter_map(|name| grid.header.iter().position(|h| h == name))
            .filter(|i| *i >= first && !placed.contains(i))
            .collect();
        placed.extend(&columns);
        if !columns.is_empty() {
            order.push(columns);
        }
    }
    order.extend((first..grid.header.len()).filter(|i| !placed.contains(i)).map(|i| vec![i]));
    order
}

/// `order`'s groups of columns into tables that each fit `width` beside the `keys`: the most
/// important in the first table, the first group that does not fit starting the next one. A
/// group too wide for any table gets one of its own.
fn pack(keys: &[usize], order: &[Vec<usize>], narrowest: &[usize], width: usize) -> Vec<Vec<usize>> {
    let mut tables: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for group in order {
        let with: Vec<usize> = keys.iter().chain(&current).chain(group).copied().collect();
        if current.is_empty() || table_width(narrowest, &with) <= width {
            current.extend(group);
        } else {
            tables.push(std::mem::replace(&mut current, group.clone()));
        }
    }
    if !current.is_empty() || tables.is_empty() {
        tables.push(current);
    }
    tables
}

/// Content widths for `columns` of `grid` that fit `width`: each header on as few lines as the
/// width allows (the same number for every column), each column as narrow as that lets it be;
/// what is left given from left to right to columns whose header still wraps.
fn widths(
    grid: &Grid,
    narrowest: &[usize],
    natural: &[usize],
    columns: &[usize],
    width: usize,
) -> Vec<usize> {
    let lines = |i: usize, w: usize| wrap(&grid.header[i], w, "", "").lines().count();
    // The narrowest width at which column `i`'s header takes at most `height` lines.
    let at_most = |i: usize, height: usize| {
        (narrowest[i]..=natural[i]).find(|&w| lines(i, w) <= height).unwrap_or(natural[i])
    };
    let tallest = columns.iter().map(|&i| lines(i, narrowest[i])).max().unwrap_or(1);
    let mut widths = narrowest.to_vec();
    for height in 1..=tallest {
        let mut trial = narrowest.to_vec();
        for &i in columns {
            trial[i] = at_most(i, height);
        }
        if table_width(&trial, columns) <= width || height == tallest {
            widths = trial;
            break;
        }
    }
    let mut left = width.saturating_sub(table_width(&widths, columns));
    for &i in columns {
        let more = (natural[i] - widths[i]).min(left);
        widths[i] += more;
        left -= more;
    }
    widths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_gets_a_width_and_columns_overrides_its_size() {
        assert_eq!(terminal_width(false, Some("80"), Some(120)), None);
        assert_eq!(terminal_width(false, None, None), None);
        assert_eq!(terminal_width(true, Some("80"), Some(120)), Some(80));
        assert_eq!(terminal_width(true, Some(" 100 "), None), Some(100));
        assert_eq!(terminal_width(true, Some("wide"), Some(120)), Some(120));
        assert_eq!(terminal_width(true, Some("0"), Some(120)), Some(120));
        assert_eq!(terminal_width(true, None, Some(0)), None);
        assert_eq!(terminal_width(true, None, None), None);
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("one two three four", 9, "  ", "  "), "  one two\n  three\n  four");
        assert_eq!(wrap("a verylongword b", 6, "", ""), "a\nverylongword\nb");
        assert_eq!(wrap("fits", 80, "  ", "  "), "  fits");
    }

    fn grid() -> Grid {
        Grid {
            title: "A title".into(),
            header: vec!["name".into(), "fixed".into(), "Δ top-1 (pp)".into(), "b".into(), "c".into()],
            rows: vec![
                vec!["alpha".into(), "x".into(), "+1.00".into(), "1234 ± 56".into(), "7".into()],
                vec!["beta".into(), "x".into(), "-2.00".into(), "12 ± 3".into(), "8".into()],
            ],
            numeric_from: 2,
            notes: vec!["A note of some length that wraps in a narrow terminal.".into()],
            importance: &[&["c"], &["Δ top-1 (pp)"]],
        }
    }

    #[test]
    fn a_table_that_fits_prints_as_it_always_did() {
        let g = grid();
        assert_eq!(render(&g, 200), g.text());
        assert_eq!(g.render(None), g.text());
    }

    #[test]
    fn headers_wrap_before_columns_move_and_cells_never_wrap() {
        let g = grid();
        // The table's top border: as wide as the table.
        let widest = display_width(g.text().lines().nth(1).unwrap());
        // One column narrower than the whole table: `Δ top-1 (pp)` wraps, nothing moves.
        let text = render(&g, widest - 1);
        assert!(text.lines().all(|l| display_width(l) < widest), "{text}");
        assert!(text.contains("┆ Δ top-1 ") && text.contains("(pp)"), "{text}");
        assert!(!text.contains("the same in every row") && !text.contains("below"), "{text}");
        assert!(text.contains("1234 ± 56"), "{text}");
    }

    #[test]
    fn constant_keys_fold_and_the_least_important_columns_move_below() {
        let g = grid();
        let text = render(&g, 32);
        assert!(text.lines().all(|l| display_width(l) <= 32), "{text}");
        // Lines of prose wrapped, continued after a space.
        let prose = text.replace("\n ", " ");
        assert!(prose.contains("(the same in every row: fixed x)"), "{text}");
        // `c` and `Δ top-1 (pp)` first, then `b`, which moves below with the key `name`.
        assert!(prose.contains("(column b in the table below: the terminal is 32 columns wide)"), "{text}");
        let tables: Vec<&str> = text.split("┌").skip(1).collect();
        assert_eq!(tables.len(), 2, "{text}");
        assert!(tables[0].contains("name") && tables[0].contains("Δ top-1") && tables[0].contains("┆ c │"));
        assert!(
            tables[1].contains("name") && tables[1].contains("1234 ± 56") && !tables[1].contains("+1.00")
        );
        // Every row is in both tables, and each cell whole on one line.
        for cell in ["alpha", "beta", "+1.00", "-2.00", "1234 ± 56", "12 ± 3"] {
            assert!(text.contains(cell), "{cell}: {text}");
        }
        assert!(text.lines().last().unwrap().starts_with("  "), "{text}");
    }
}
