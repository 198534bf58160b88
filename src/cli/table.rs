//! Plain aligned tables, for terminals, tickets and CI logs: the `probe`
//! and `status` tables and the parts of `check`'s summary.

use super::output::out;

/// Left-aligned columns, two spaces apart, no trailing spaces; one line a
/// row, each ending in a newline.
pub(super) fn render<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.as_ref().get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.as_ref().iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// [`render`]ed on stdout.
pub(super) fn print<R: AsRef<[String]>>(rows: &[R]) {
    out!("{}", render(rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn columns_align_and_lines_end_without_spaces() {
        let rows = [
            row(&["POOL", "NODE", "DETAIL"]),
            row(&["imap", "mail1", ""]),
            row(&["webmail", "m2", "200 OK"]),
        ];
        assert_eq!(
            render(&rows),
            "POOL     NODE   DETAIL\nimap     mail1\nwebmail  m2     200 OK\n"
        );
    }
}
