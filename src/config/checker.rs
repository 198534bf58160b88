//! The [`Checker`] every table is validated with: it collects the
//! diagnostics of one file, each located by line and field.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::raw::{self, Located};
use crate::diagnostic::{Diagnostic, Severity};

/// Collects diagnostics for one file; knows how to turn a span into a line.
pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    /// Relative paths in the file are relative to this.
    dir: PathBuf,
    text: &'a str,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// The configured zones that validated: a name ending in one of them
    /// is absolute.
    pub(super) zones: Vec<hickory_proto::rr::Name>,
}

/// Joins a table path and a key: `field("pool[2]", "port")` is `pool[2].port`.
pub(super) fn field(base: &str, key: &str) -> String {
    format!("{base}.{key}")
}

impl<'a> Checker<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        let dir = file.parent().map(Path::to_owned).unwrap_or_default();
        Self {
            file,
            dir,
            text,
            diagnostics: Vec::new(),
            zones: Vec::new(),
        }
    }

    pub(super) fn push(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        field: &str,
        message: String,
    ) {
        let line = span.map(|s| raw::line_of(self.text, s.start));
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            field: field.to_owned(),
            message,
        });
    }

    pub(super) fn error<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, Some(at.span()), field, message.into());
    }

    pub(super) fn warn<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, Some(at.span()), field, message.into());
    }

    /// An error about the whole file (e.g. a missing table).
    pub(super) fn error_in_file(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, None, field, message.into());
    }

    pub(super) fn located(&mut self, problem: Located) {
        self.push(
            Severity::Error,
            problem.span,
            &problem.field,
            problem.message,
        );
    }

    /// A path as written, relative to the config file's directory.
    pub(super) fn path(&self, written: &str) -> PathBuf {
        self.dir.join(written)
    }

    /// A required key: reports it missing (at the table's header) with a hint.
    pub(super) fn required<'r, T>(
        &mut self,
        value: &'r Option<Spanned<T>>,
        header: &Range<usize>,
        field: &str,
        hint: &str,
    ) -> Option<&'r Spanned<T>> {
        if value.is_none() {
            let message = format!("missing; required: {hint}");
            self.push(Severity::Error, Some(header.clone()), field, message);
        }
        value.as_ref()
    }
}
