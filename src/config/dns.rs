//! `[dns]`: the primary, the zone, the key file and the timings of updates.

use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::checker::Checker;
use super::names::parse_name;
use super::raw::{RawDns, RawDuration, Section};
use super::types::DnsConfig;
use super::values::check_server;

const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESYNC: Duration = Duration::from_secs(60);
/// RFC 2181 §8: a TTL is an unsigned 31-bit number.
const MAX_TTL: u64 = 0x7fff_ffff;

/// The parts of `[dns]` other tables and the key loader need, even when
/// the rest of `[dns]` is invalid.
#[derive(Default)]
pub(super) struct DnsParts {
    pub(super) config: Option<DnsConfig>,
    pub(super) zone: Option<Name>,
    pub(super) key: Option<(PathBuf, Option<String>)>,
}

impl Checker<'_> {
    pub(super) fn dns(&mut self, section: &Section<RawDns>) -> DnsParts {
        let dns = match section {
            Section::Present(dns) => dns,
            Section::Absent => {
                self.error_in_file(
                    "dns",
                    "missing [dns] table: server, zone and key_file are required",
                );
                return DnsParts::default();
            }
            Section::Broken => return DnsParts::default(),
        };
        let header = dns.span();
        let dns = dns.get_ref();
        let server = self
            .required(
                &dns.server,
                &header,
                "dns.server",
                "the primary's host:port, e.g. \"127.0.0.1:53\"",
            )
            .and_then(|s| self.server(s));
        let zone = self
            .required(
                &dns.zone,
                &header,
                "dns.zone",
                "the zone to update, e.g. \"example.com\"",
            )
            .and_then(|z| self.zone(z));
        let key_file = self
            .required(
                &dns.key_file,
                &header,
                "dns.key_file",
                "a BIND key file, as tsig-keygen writes it",
            )
            .and_then(|f| self.key_file(f));
        let key_name = match &dns.key_name {
            None => Some(None),
            Some(name) => self.key_name(name).map(Some),
        };
        let ttl = self.ttl(dns.ttl.as_ref());
        let timeout = self
            .duration(dns.timeout.as_ref(), "dns.timeout")
            .or_default(DEFAULT_DNS_TIMEOUT);
        let resync_interval = self
            .duration(dns.resync_interval.as_ref(), "dns.resync_interval")
            .or_default(DEFAULT_RESYNC);
        let key = key_file.clone().zip(key_name.clone());
        let config = (|| {
            Some(DnsConfig {
                server: server?,
                zone: zone.clone()?,
                key_file: key_file?,
                key_name: key_name?,
                ttl: ttl?,
                timeout: timeout?,
                resync_interval: resync_interval?,
            })
        })();
        DnsParts { config, zone, key }
    }

    fn server(&mut self, server: &Spanned<String>) -> Option<String> {
        match check_server(server.get_ref()) {
            Ok(()) => Some(server.get_ref().clone()),
            Err(message) => {
                self.error(server, "dns.server", message);
                None
            }
        }
    }

    fn zone(&mut self, zone: &Spanned<String>) -> Option<Name> {
        let written = zone.get_ref();
        match parse_name(written) {
            Ok(name) if name.is_root() => {
                self.error(zone, "dns.zone", "the root zone cannot be a zone to update");
                None
            }
            Ok(mut name) => {
                name.set_fqdn(true);
                Some(name)
            }
            Err(message) => {
                self.error(zone, "dns.zone", message);
                None
            }
        }
    }

    fn key_file(&mut self, file: &Spanned<String>) -> Option<PathBuf> {
        if file.get_ref().trim().is_empty() {
            self.error(file, "dns.key_file", "empty; name the BIND key file");
            return None;
        }
        Some(self.path(file.get_ref()))
    }

    fn key_name(&mut self, name: &Spanned<String>) -> Option<String> {
        match parse_name(name.get_ref()) {
            Ok(_) => Some(name.get_ref().clone()),
            Err(message) => {
                let message = format!("not a valid key name: {message}");
                self.error(name, "dns.key_name", message);
                None
            }
        }
    }

    /// Whole seconds, at least one: a record's TTL has no finer unit.
    fn ttl(&mut self, ttl: Option<&Spanned<RawDuration>>) -> Option<u32> {
        let value = self.duration(ttl, "dns.ttl").or_default(DEFAULT_TTL)?;
        let Some(ttl) = ttl else {
            return u32::try_from(value.as_secs()).ok();
        };
        if value.subsec_nanos() != 0 {
            self.error(
                ttl,
                "dns.ttl",
                "a TTL is whole seconds, e.g. \"60s\" or \"5m\"",
            );
            return None;
        }
        if value.as_secs() > MAX_TTL {
            self.error(
                ttl,
                "dns.ttl",
                format!("too long: a TTL is at most {MAX_TTL} seconds (RFC 2181)"),
            );
            return None;
        }
        u32::try_from(value.as_secs()).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Severity;
    use crate::config::test_support::{
        BASE, IMAP_POOL, assert_error, assert_errors, config, diagnostics, find, load_text, name,
    };

    fn dns(lines: &str) -> String {
        let rest = BASE
            .split_once("key_file = \"pigeon-dns.key\"\n")
            .map_or("", |(_, r)| r);
        format!("[dns]\n{lines}{rest}{IMAP_POOL}")
    }

    const SERVER_ZONE_KEY: &str =
        "server = \"127.0.0.1:53\"\nzone = \"example.com\"\nkey_file = \"k.key\"\n";

    #[test]
    fn dns_server_needs_a_port_and_brackets_for_ipv6() {
        let with = |server: &str| {
            dns(&format!(
                "server = \"{server}\"\nzone = \"example.com\"\nkey_file = \"k\"\n"
            ))
        };
        let bad = |what, server, needle| (what, with(server), Some(2), "dns.server", needle);
        assert_errors(&[
            bad("no port", "127.0.0.1", "no port"),
            bad("IPv6 without a port", "::1", "\"[::1]:53\""),
            bad("IPv6 without brackets", "2001:db8::1:53", "brackets"),
            bad("IPv6 in brackets without a port", "[::1]", "[IPv6]:port"),
            bad("not IPv6 in brackets", "[::g]:53", "not an IPv6 address"),
            bad("port 0", "ns1:0", "1-65535"),
            bad("a space in the host", "ns 1:53", "not a host name"),
        ]);
        for good in ["[::1]:53", "ns1.example.com:5353", "192.0.2.1:53"] {
            assert_eq!(config(&with(good)).dns.server, good);
        }
    }

    #[test]
    fn dns_zone_is_a_valid_name_stored_fully_qualified() {
        let with = |zone: &str| {
            dns(&format!(
                "server = \"[::1]:53\"\nzone = \"{zone}\"\nkey_file = \"k\"\n"
            ))
        };
        assert_eq!(config(&with("Example.COM.")).dns.zone, name("example.com."));
        assert!(config(&with("example.com")).dns.zone.is_fqdn());
        let bad = |what, zone, needle| (what, with(zone), Some(3), "dns.zone", needle);
        assert_errors(&[
            bad("a space", "exa mple.com", "not a valid DNS name"),
            bad("an empty label", "a..b", "not a valid DNS name"),
            bad("the root", ".", "root zone"),
        ]);
    }

    #[test]
    fn dns_required_keys_are_reported_at_the_table() {
        let text = dns("ttl = \"30s\"\n");
        let diagnostics = diagnostics(&text);
        for field in ["dns.server", "dns.zone", "dns.key_file"] {
            assert_eq!(find(&diagnostics, field, Severity::Error).line, Some(1));
        }
        let text = format!("{}{IMAP_POOL}", BASE.replacen("[dns]", "[probe]", 1).replace("server = \"127.0.0.1:53\"\nzone = \"example.com\"\nkey_file = \"pigeon-dns.key\"\n", ""));
        assert_error(&text, None, "dns", "missing [dns]");
    }

    #[test]
    fn dns_key_file_is_relative_to_the_config() {
        let (dir, loaded) = load_text(&format!("{BASE}{IMAP_POOL}"));
        let config = loaded.expect("valid").config;
        assert_eq!(config.dns.key_file, dir.path().join("pigeon-dns.key"));
        let server_zone = "server = \"[::1]:53\"\nzone = \"example.com\"\n";
        assert_errors(&[
            (
                "an empty key_file",
                dns(&format!("{server_zone}key_file = \"\"\n")),
                Some(4),
                "dns.key_file",
                "empty",
            ),
            (
                "a space in key_name",
                dns(&format!(
                    "{server_zone}key_file = \"/k\"\nkey_name = \"a b\"\n"
                )),
                Some(5),
                "dns.key_name",
                "not a valid key name",
            ),
        ]);
    }

    #[test]
    fn dns_ttl_is_whole_seconds() {
        assert_eq!(
            config(&dns(&format!("{SERVER_ZONE_KEY}ttl = \"5m\"\n")))
                .dns
                .ttl,
            300
        );
        let bad = |what, ttl, needle| {
            let text = dns(&format!("{SERVER_ZONE_KEY}ttl = \"{ttl}\"\n"));
            (what, text, Some(5), "dns.ttl", needle)
        };
        assert_errors(&[
            bad("milliseconds", "1500ms", "whole seconds"),
            bad("zero", "0s", "longer than 0"),
            bad("beyond 2^31 - 1 seconds", "100years", "RFC 2181"),
        ]);
    }

    #[test]
    fn dns_timeouts_must_be_positive() {
        let text = dns(&format!(
            "{SERVER_ZONE_KEY}timeout = \"0ms\"\nresync_interval = \"0s\"\n"
        ));
        let diagnostics = diagnostics(&text);
        assert_eq!(
            find(&diagnostics, "dns.timeout", Severity::Error).line,
            Some(5)
        );
        assert_eq!(
            find(&diagnostics, "dns.resync_interval", Severity::Error).line,
            Some(6)
        );
        let text = dns(&format!(
            "{SERVER_ZONE_KEY}timeout = \"500ms\"\nresync_interval = \"5m\"\n"
        ));
        let config = config(&text);
        assert_eq!(config.dns.timeout, Duration::from_millis(500));
        assert_eq!(config.dns.resync_interval, Duration::from_secs(300));
    }
}
