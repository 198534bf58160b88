//! What the one-shot commands write: results on stdout, problems on stderr.
//! Every write ignores a closed pipe (`pigeon-dns check | head -1`) instead
//! of panicking as `print!` does.

use std::io::Write as _;

use crate::diagnostic::Diagnostic;

/// `print!` to stdout, ignoring a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `println!` to stdout, ignoring a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!`, ignoring a closed pipe.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(super) use {errln, out, outln};

/// Every diagnostic on stderr, one a line.
pub(super) fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diagnostics {
        let _ = writeln!(err, "{d}");
    }
}
