//! What the config tests share: the contract's example, a valid start to
//! build on, and helpers that load a text and find its diagnostics.

use std::path::PathBuf;

use hickory_proto::rr::Name;
use tempfile::TempDir;

use super::{Config, Diagnostic, Loaded, Severity, load};

/// The example of the contract (/work/shared/contract.md), verbatim.
pub(super) const CONTRACT_EXAMPLE: &str = include_str!("../../config/contract-example.toml");

/// A valid start: `[dns]` on lines 1-4, two nodes on lines 5-10.
pub(crate) const BASE: &str = r#"[dns]
server = "127.0.0.1:53"
zone = "example.com"
key_file = "pigeon-dns.key"
[[node]]
name = "mail1"
addresses = ["192.0.2.11", "2001:db8::11"]
[[node]]
name = "mail2"
addresses = ["192.0.2.12"]
"#;

/// A pool to make BASE complete, on lines 11-13.
pub(super) const IMAP_POOL: &str = "[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n";

pub(super) fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

pub(super) fn load_text(text: &str) -> (TempDir, Result<Loaded, Vec<Diagnostic>>) {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "pigeon-dns.toml", text);
    let loaded = load(&path);
    (dir, loaded)
}

pub(super) fn loaded(text: &str) -> Loaded {
    match load_text(text).1 {
        Ok(loaded) => loaded,
        Err(diagnostics) => panic!("expected a valid config, got:\n{}", render(&diagnostics)),
    }
}

pub(super) fn config(text: &str) -> Config {
    loaded(text).config
}

pub(super) fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match load_text(text).1 {
        Ok(_) => panic!("expected errors, the config loaded"),
        Err(diagnostics) => diagnostics,
    }
}

pub(super) fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// The one diagnostic about `field`, checked for its line and severity.
pub(super) fn find<'d>(
    diagnostics: &'d [Diagnostic],
    field: &str,
    severity: Severity,
) -> &'d Diagnostic {
    let found: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.field == field && d.severity == severity)
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one {severity:?} about `{field}`, got:\n{}",
            render(diagnostics)
        ),
    }
}

/// One bad config and the error it must give: what is wrong (named when
/// the row fails), the text, and the error's line, field and words of its
/// message.
pub(super) type Bad = (
    &'static str,
    String,
    Option<usize>,
    &'static str,
    &'static str,
);

/// Why loading `text` does not fail with one error at `line` about `field`
/// whose message contains `needle`; `None` when it does.
fn error_problem(text: &str, line: Option<usize>, field: &str, needle: &str) -> Option<String> {
    let diagnostics = match load_text(text).1 {
        Ok(_) => return Some("the config loaded".into()),
        Err(diagnostics) => diagnostics,
    };
    let found: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.field == field && d.severity == Severity::Error)
        .collect();
    match found.as_slice() {
        [one] if one.line != line => Some(format!("line of {one}: want {line:?}")),
        [one] if !one.message.contains(needle) => Some(format!("`{needle}` not in: {one}")),
        [_] => None,
        _ => Some(format!(
            "expected one Error about `{field}`, got:\n{}",
            render(&diagnostics)
        )),
    }
}

/// Asserts that loading `text` fails with an error at `line` about `field`
/// whose message contains `needle`.
#[track_caller]
pub(super) fn assert_error(text: &str, line: Option<usize>, field: &str, needle: &str) {
    if let Some(problem) = error_problem(text, line, field, needle) {
        panic!("{problem}");
    }
}

/// [`assert_error`] for every row; the rows that fail are reported together.
#[track_caller]
pub(super) fn assert_errors(rows: &[Bad]) {
    let failed: Vec<String> = rows
        .iter()
        .filter_map(|(what, text, line, field, needle)| {
            error_problem(text, *line, field, needle).map(|p| format!("{what}: {p}"))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} bad configs do not give their error:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

/// [`BASE`] followed by `extra` (pools, usually: their lines start at 11).
pub(super) fn base_with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

pub(super) fn assert_pool_error(extra: &str, line: usize, field: &str, needle: &str) {
    assert_error(&base_with(extra), Some(line), field, needle);
}

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("test name")
}
