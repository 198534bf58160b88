//! A pool's check and the options that go with it: the port, STARTTLS, the
//! HTTP path and body, TLS verification.

use std::ops::Range;
use std::path::PathBuf;

use serde_spanned::Spanned;

use super::checker::{Checker, field};
use super::raw::RawPool;
use super::types::{CheckKind, TlsOptions};
use super::values::value_or;
use crate::diagnostic::Severity;

/// Checks that can upgrade a plaintext connection.
pub(super) const STARTTLS_CHECKS: [CheckKind; 4] = [
    CheckKind::Smtp,
    CheckKind::Submission,
    CheckKind::Pop3,
    CheckKind::Imap,
];

impl Checker<'_> {
    pub(super) fn check_kind(
        &mut self,
        pool: &RawPool,
        header: &Range<usize>,
        base: &str,
    ) -> Option<CheckKind> {
        let names = CheckKind::ALL.map(CheckKind::as_str).join(", ");
        let check = self.required(
            &pool.check,
            header,
            &field(base, "check"),
            &format!("one of {names}"),
        )?;
        let parsed = CheckKind::parse(check.get_ref());
        if parsed.is_none() {
            let message = format!(
                "unknown check `{}`; expected one of {names}",
                check.get_ref()
            );
            self.error(check, &field(base, "check"), message);
        }
        parsed
    }

    pub(super) fn port(
        &mut self,
        pool: &RawPool,
        header: &Range<usize>,
        base: &str,
        check: Option<CheckKind>,
    ) -> Option<u16> {
        match &pool.port {
            Some(port) if *port.get_ref() == 0 => {
                self.error(port, &field(base, "port"), "must be 1-65535");
                None
            }
            Some(port) => Some(*port.get_ref()),
            None => {
                let check = check?;
                let port = check.default_port();
                if port.is_none() {
                    let message = format!(
                        "missing; required: a `{}` check has no default port",
                        check.as_str()
                    );
                    self.push(
                        Severity::Error,
                        Some(header.clone()),
                        &field(base, "port"),
                        message,
                    );
                }
                port
            }
        }
    }

    pub(super) fn starttls(
        &mut self,
        pool: &RawPool,
        base: &str,
        check: Option<CheckKind>,
    ) -> Option<bool> {
        let Some(starttls) = &pool.starttls else {
            return Some(false);
        };
        let check = check?;
        if *starttls.get_ref() && !STARTTLS_CHECKS.contains(&check) {
            let why = if check.implicit_tls() {
                "it already starts with TLS"
            } else {
                "it has no STARTTLS"
            };
            let message = format!(
                "applies to smtp, submission, pop3 and imap checks only, not `{}`: {why}",
                check.as_str()
            );
            self.error(starttls, &field(base, "starttls"), message);
            return None;
        }
        Some(*starttls.get_ref())
    }

    /// `path` and `expect_body`: HTTP checks only.
    pub(super) fn http_options(
        &mut self,
        pool: &RawPool,
        base: &str,
        check: Option<CheckKind>,
    ) -> (Option<String>, Option<Option<String>>) {
        let is_http = matches!(check, Some(CheckKind::Http | CheckKind::Https));
        let mut path = Some("/".to_owned());
        if let Some(written) = &pool.path {
            if check.is_some() && !is_http {
                self.error(
                    written,
                    &field(base, "path"),
                    "applies to http and https checks only",
                );
                path = None;
            } else if !written.get_ref().starts_with('/') {
                let message = format!("`{}` must start with \"/\"", written.get_ref());
                self.error(written, &field(base, "path"), message);
                path = None;
            } else {
                path = Some(written.get_ref().clone());
            }
        }
        let mut expect_body = Some(None);
        if let Some(written) = &pool.expect_body {
            if check.is_some() && !is_http {
                self.error(
                    written,
                    &field(base, "expect_body"),
                    "applies to http and https checks only",
                );
                expect_body = None;
            } else {
                expect_body = Some(Some(written.get_ref().clone()));
            }
        }
        (path, expect_body)
    }

    /// TLS options; on a check that never speaks TLS they are only warned
    /// about (they do no harm, but the operator probably expected an effect).
    pub(super) fn tls_options(
        &mut self,
        pool: &RawPool,
        base: &str,
        check: Option<CheckKind>,
        starttls: Option<bool>,
    ) -> Option<TlsOptions> {
        let uses_tls = match (check, starttls) {
            (Some(check), Some(starttls)) => Some(check.implicit_tls() || starttls),
            _ => None,
        };
        if let (Some(false), Some(check)) = (uses_tls, check) {
            let set = [
                pool.tls_verify.as_ref().map(|v| (v.span(), "tls_verify")),
                pool.tls_name.as_ref().map(|v| (v.span(), "tls_name")),
                pool.tls_ca_file.as_ref().map(|v| (v.span(), "tls_ca_file")),
                pool.cert_min_days
                    .as_ref()
                    .map(|v| (v.span(), "cert_min_days")),
            ];
            for (span, key) in set.into_iter().flatten() {
                let message = format!(
                    "has no effect: this `{}` check does not use TLS",
                    check.as_str()
                );
                self.push(Severity::Warning, Some(span), &field(base, key), message);
            }
        }
        let name = match &pool.tls_name {
            Some(name) if name.get_ref().trim().is_empty() => {
                self.error(
                    name,
                    &field(base, "tls_name"),
                    "empty; leave it out for the default name",
                );
                None
            }
            other => Some(other.as_ref().map(|n| n.get_ref().clone())),
        };
        let ca_file = match &pool.tls_ca_file {
            None => Some(None),
            Some(file) => self.ca_file(file, base).map(Some),
        };
        Some(TlsOptions {
            verify: pool.tls_verify.as_ref().is_none_or(|v| *v.get_ref()),
            name: name?,
            ca_file: ca_file?,
            cert_min_days: value_or(&pool.cert_min_days, 0),
        })
    }

    /// The CA file must exist now: `check` is where a typo should show, not
    /// the first probe.
    fn ca_file(&mut self, file: &Spanned<String>, base: &str) -> Option<PathBuf> {
        let path = self.path(file.get_ref());
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Some(path),
            Ok(_) => {
                let message = format!("{} is not a file", path.display());
                self.error(file, &field(base, "tls_ca_file"), message);
                None
            }
            Err(error) => {
                let message = format!("cannot read {}: {error}", path.display());
                self.error(file, &field(base, "tls_ca_file"), message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;
    use crate::config::load;
    use crate::config::test_support::{
        BASE, IMAP_POOL, assert_error, assert_errors, base_with, config, find, loaded, write,
    };

    #[test]
    fn pool_port_defaults_to_the_check_and_tcp_needs_one() {
        let text = format!("{BASE}[[pool]]\nname = \"sieve\"\ncheck = \"tcp\"\nport = 4190\n");
        assert_eq!(config(&text).pools[0].port, 4190);
        assert_errors(&[
            (
                "a tcp check without a port",
                base_with("[[pool]]\nname = \"sieve\"\ncheck = \"tcp\"\n"),
                Some(11),
                "pool[0].port",
                "no default port",
            ),
            (
                "port 0",
                base_with(&format!("{IMAP_POOL}port = 0\n")),
                Some(14),
                "pool[0].port",
                "1-65535",
            ),
        ]);
        for check in CheckKind::ALL.into_iter().filter(|c| *c != CheckKind::Tcp) {
            let text = format!(
                "{BASE}[[pool]]\nname = \"x\"\ncheck = \"{}\"\n",
                check.as_str()
            );
            assert_eq!(Some(config(&text).pools[0].port), check.default_port());
        }
    }

    #[test]
    fn starttls_only_where_a_protocol_has_it() {
        for check in STARTTLS_CHECKS {
            let text = format!(
                "{BASE}[[pool]]\nname = \"x\"\ncheck = \"{}\"\nstarttls = true\n",
                check.as_str()
            );
            assert!(config(&text).pools[0].starttls);
        }
        let pool = |check: &str| {
            format!("[[pool]]\nname = \"x\"\ncheck = \"{check}\"\nport = 1\nstarttls = true\n")
        };
        // Each row is named by its check.
        let bad = |check, needle| {
            (
                check,
                base_with(&pool(check)),
                Some(15),
                "pool[0].starttls",
                needle,
            )
        };
        assert_errors(&[
            bad("imaps", "already starts with TLS"),
            bad("tcp", "has no STARTTLS"),
            bad("http", "smtp, submission, pop3 and imap"),
        ]);
        let text = format!("{BASE}[[pool]]\nname = \"x\"\ncheck = \"smtps\"\nstarttls = false\n");
        assert!(!config(&text).pools[0].starttls);
    }

    #[test]
    fn path_and_expect_body_are_for_http() {
        let text = format!(
            "{BASE}[[pool]]\nname = \"web\"\ncheck = \"https\"\npath = \"/health\"\nexpect_body = \"ok\"\n"
        );
        let pool = &config(&text).pools[0];
        assert_eq!(
            (pool.path.as_str(), pool.expect_body.as_deref()),
            ("/health", Some("ok"))
        );
        let bad =
            |what, pool: &str, field, needle| (what, base_with(pool), Some(14), field, needle);
        assert_errors(&[
            bad(
                "a relative path",
                "[[pool]]\nname = \"web\"\ncheck = \"http\"\npath = \"health\"\n",
                "pool[0].path",
                "start with \"/\"",
            ),
            bad(
                "a path for imap",
                &format!("{IMAP_POOL}path = \"/\"\n"),
                "pool[0].path",
                "http and https checks only",
            ),
            bad(
                "expect_body for imap",
                &format!("{IMAP_POOL}expect_body = \"ok\"\n"),
                "pool[0].expect_body",
                "http and https checks only",
            ),
        ]);
    }

    #[test]
    fn tls_options_are_read_and_ca_file_is_relative() {
        let dir = TempDir::new().expect("tempdir");
        write(&dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n");
        let text = format!(
            "{BASE}[[pool]]\nname = \"imaps\"\ncheck = \"imaps\"\ntls_verify = false\ntls_name = \"mail.example.com\"\ntls_ca_file = \"ca.pem\"\ncert_min_days = 14\n"
        );
        let path = write(&dir, "pigeon-dns.toml", &text);
        let loaded = load(&path).expect("valid");
        assert_eq!(
            loaded.config.pools[0].tls,
            TlsOptions {
                verify: false,
                name: Some("mail.example.com".into()),
                ca_file: Some(dir.path().join("ca.pem")),
                cert_min_days: 14,
            }
        );
        let text = format!(
            "{BASE}[[pool]]\nname = \"imaps\"\ncheck = \"imaps\"\ntls_ca_file = \"missing.pem\"\n"
        );
        assert_error(&text, Some(14), "pool[0].tls_ca_file", "cannot read");
    }

    #[test]
    fn tls_options_without_tls_are_warned_about() {
        let loaded = loaded(&format!("{BASE}{IMAP_POOL}cert_min_days = 7\n"));
        let warning = find(&loaded.warnings, "pool[0].cert_min_days", Severity::Warning);
        assert_eq!(warning.line, Some(14));
        assert!(warning.message.contains("does not use TLS"));
        let loaded = self::loaded(&format!(
            "{BASE}{IMAP_POOL}starttls = true\ncert_min_days = 7\n"
        ));
        assert!(loaded.warnings.is_empty());
    }
}
