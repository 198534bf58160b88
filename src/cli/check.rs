//! `check`: reads the config and the key file (no DNS server needed) and
//! prints every problem, or the one-screen summary of what the daemon would
//! do with them.

use std::path::Path;

use super::ExitCode;
use super::output::{errln, out, outln, print_diagnostics};
use crate::config;
use crate::diagnostic::Severity;

/// `check`: reads the files only; prints every error, or the summary.
pub fn check(path: &Path) -> ExitCode {
    match config::load_all(path) {
        Ok(full) => {
            print_diagnostics(&full.warnings);
            out!("{}", config::render_summary(&full.config, &full.key));
            outln!("{}: OK", path.display());
            ExitCode::Ok
        }
        Err(errors) => {
            print_diagnostics(&errors);
            let count = errors
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            errln!(
                "{}: {count} error(s); configuration NOT valid",
                path.display()
            );
            ExitCode::Failure
        }
    }
}
