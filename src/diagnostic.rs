//! Located messages about a config or key file: `file:line: field: message`.
//!
//! Its own module, below both [`crate::config`] and [`crate::dns::key`], so
//! that the key-file parser reports in the same form as the config checker
//! without depending on the config that loads it.

use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a file, located by line and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; `None` when the problem has no single place (e.g. the file is unreadable).
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `pool[2].check` or `dns.zone`; may be empty.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    /// `FILE:LINE: FIELD: MESSAGE`, without the severity (for log lines,
    /// which carry their own level).
    pub fn located(&self) -> String {
        let text = self.to_string();
        match text.split_once(": ") {
            Some((_, rest)) => rest.to_string(),
            None => text,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}
