//! Reading a key file and reporting on it: every problem found comes back
//! as a [`Diagnostic`] located in the file; a file others can read is
//! warned about.

use std::path::Path;

use super::select::{build, choose};
use super::syntax::parse;
use super::tsig::TsigKey;
use crate::diagnostic::{Diagnostic, Severity};

/// Reads the key file and picks the key: the one named `key_name`, or the
/// only one. Warnings (a file others can read) come with the key; on
/// failure every problem found is returned.
pub fn load_key_file(
    path: &Path,
    key_name: Option<&str>,
) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
    let report = Report::new(path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return Err(vec![report.error(
                None,
                "",
                format!("cannot read the key file: {error}"),
            )]);
        }
    };
    let warning = permission_warning(path, &report);
    match parse_key_text(path, &text, key_name) {
        Ok((key, mut diagnostics)) => {
            diagnostics.extend(warning);
            Ok((key, diagnostics))
        }
        Err(mut diagnostics) => {
            diagnostics.extend(warning);
            Err(diagnostics)
        }
    }
}

/// Parses a key file's text as if read from `path` (no permission check).
/// Used by the fuzz target; `load_key_file` is this plus reading the file.
pub fn parse_key_text(
    path: &Path,
    text: &str,
    key_name: Option<&str>,
) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
    let report = Report::new(path);
    let mut diagnostics = Vec::new();
    let keys = match parse(text) {
        Ok(keys) => keys,
        Err(problem) => {
            diagnostics.push(report.error(Some(problem.line), &problem.field, problem.message));
            return Err(diagnostics);
        }
    };
    let chosen = choose(&keys, key_name, &report, &mut diagnostics)
        .and_then(|raw| build(raw, &report, &mut diagnostics));
    match chosen {
        Some(key) if !diagnostics.iter().any(|d| d.severity == Severity::Error) => {
            Ok((key, diagnostics))
        }
        _ => Err(diagnostics),
    }
}

/// Builds diagnostics located in one key file.
pub(super) struct Report<'a> {
    file: &'a Path,
}

impl<'a> Report<'a> {
    pub(super) fn new(file: &'a Path) -> Self {
        Self { file }
    }

    pub(super) fn diagnostic(
        &self,
        severity: Severity,
        line: Option<usize>,
        field: &str,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            field: field.to_owned(),
            message,
        }
    }

    pub(super) fn error(&self, line: Option<usize>, field: &str, message: String) -> Diagnostic {
        self.diagnostic(Severity::Error, line, field, message)
    }
}

/// A shared secret others can read is no secret; warned, never refused, so
/// that a first install still works.
#[cfg(unix)]
fn permission_warning(path: &Path, report: &Report<'_>) -> Option<Diagnostic> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        report.diagnostic(
            Severity::Warning,
            None,
            "",
            "key file is readable by other users; chmod 640 (owner root, group pigeon-dns)"
                .to_owned(),
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path, _report: &Report<'_>) -> Option<Diagnostic> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::key::test_support::{SECRET, TSIG_KEYGEN, load_with_mode};

    #[test]
    fn a_world_readable_file_is_warned_about_not_refused() {
        let (_, warnings) = load_with_mode(TSIG_KEYGEN, None, 0o644).expect("still loads");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].severity, Severity::Warning);
        assert_eq!(
            warnings[0].message,
            "key file is readable by other users; chmod 640 (owner root, group pigeon-dns)"
        );
        let (_, warnings) = load_with_mode(TSIG_KEYGEN, None, 0o640).expect("loads");
        assert!(warnings.is_empty());
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let diagnostics =
            load_key_file(Path::new("/nonexistent/pigeon-dns.key"), None).expect_err("no file");
        assert_eq!(diagnostics.len(), 1);
        assert!(diagnostics[0].message.contains("cannot read the key file"));
    }

    /// Every output this module can produce, for every kind of file, never
    /// holds the secret or a recognizable part of it.
    #[test]
    fn the_secret_never_appears_in_any_output() {
        let secret = SECRET;
        let cases = [
            TSIG_KEYGEN.to_owned(),
            TSIG_KEYGEN.replace("hmac-sha256", "hmac-md5"),
            TSIG_KEYGEN.replace("l0fWxlEj", "l0fW*lEj"),
            TSIG_KEYGEN.replace(&format!("\"{secret}\""), secret),
            TSIG_KEYGEN.replace(&format!("\"{secret}\";"), &format!("{secret} {secret};")),
            TSIG_KEYGEN.replace(
                &format!("\"{secret}\""),
                &format!("\"{secret}\" \"{secret}\""),
            ),
            TSIG_KEYGEN.replace("algorithm hmac-sha256", &format!("algorithm {secret}")),
            TSIG_KEYGEN.replace("algorithm hmac-sha256", &format!("{secret} hmac-sha256")),
            TSIG_KEYGEN.replace("};", "}"),
            TSIG_KEYGEN.replace(&format!("\"{secret}\";\n}};"), &format!("\"{secret}")),
            format!("{secret}\n"),
            format!("{TSIG_KEYGEN}{TSIG_KEYGEN}"),
        ];
        let mut outputs = Vec::new();
        for (i, text) in cases.iter().enumerate() {
            for mode in [0o600, 0o644] {
                match load_with_mode(text, None, mode) {
                    Ok((key, warnings)) => {
                        outputs.push(format!(
                            "{key:?} {key:#?} {:?} {:?}",
                            key.name, key.algorithm
                        ));
                        outputs.extend(warnings.iter().map(|d| format!("{d} {d:?}")));
                    }
                    Err(diagnostics) => {
                        assert!(!diagnostics.is_empty(), "case {i}");
                        outputs.extend(diagnostics.iter().map(|d| format!("{d} {d:?}")));
                    }
                }
            }
        }
        let fragments = [secret, &secret[..12], &secret[16..28], "l0fW"];
        for output in &outputs {
            for fragment in fragments {
                assert!(!output.contains(fragment), "secret in output: {output}");
            }
        }
        assert!(outputs.len() > cases.len());
    }
}
