//! `[dns]` and `[[zone]]`: the zones, their primaries and keys, and the
//! timings of updates. `[dns]` holds the defaults of every zone and is one
//! zone itself when it names `zone`; each `[[zone]]` overrides what it sets.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::checker::{Checker, field};
use super::names::parse_name;
use super::raw::{Entries, RawDns, RawDuration, RawSecondaries, RawZone, Section};
use super::types::{Secondaries, ZoneConfig};
use super::values::{Setting, check_server};

const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESYNC: Duration = Duration::from_secs(60);
/// RFC 2181 §8: a TTL is an unsigned 31-bit number.
const MAX_TTL: u64 = 0x7fff_ffff;

/// Where a zone's key is: the key file (resolved) and which key of it.
pub(super) type KeyRef = (PathBuf, Option<String>);

/// The zones as far as they validated, for the other tables and the key
/// loader, which go on even when some zone is invalid.
#[derive(Default)]
pub(super) struct ZoneTable {
    /// By index in `Config::zones`; `None` where the zone is invalid.
    pub(super) zones: Vec<Option<ZoneConfig>>,
    /// The zones' names where they validated, same indexes.
    pub(super) names: Vec<Option<Name>>,
    /// Key file (resolved) and key name of each zone, where both validated.
    pub(super) keys: Vec<Option<KeyRef>>,
    /// Every zone's name validated: a name not found is really unknown.
    pub(super) complete: bool,
}

impl ZoneTable {
    /// The first zone's name: where node hosts default to.
    pub(super) fn first(&self) -> Option<&Name> {
        self.names.first().and_then(Option::as_ref)
    }

    /// The names that validated (for the rule "a name ending in a zone's
    /// name is absolute").
    pub(super) fn known(&self) -> Vec<Name> {
        self.names.iter().flatten().cloned().collect()
    }
}

/// The keys `[dns]` and `[[zone]]` share, borrowed from either.
struct RawZoneKeys<'r> {
    server: Option<&'r Spanned<String>>,
    key_file: Option<&'r Spanned<String>>,
    key_name: Option<&'r Spanned<String>>,
    ttl: Option<&'r Spanned<RawDuration>>,
    timeout: Option<&'r Spanned<RawDuration>>,
    resync_interval: Option<&'r Spanned<RawDuration>>,
    secondaries: Option<&'r Spanned<RawSecondaries>>,
}

/// `keys()` for both tables, which share these fields.
macro_rules! zone_keys {
    ($($table:ty),*) => {$(
        impl $table {
            fn keys(&self) -> RawZoneKeys<'_> {
                RawZoneKeys {
                    server: self.server.as_ref(),
                    key_file: self.key_file.as_ref(),
                    key_name: self.key_name.as_ref(),
                    ttl: self.ttl.as_ref(),
                    timeout: self.timeout.as_ref(),
                    resync_interval: self.resync_interval.as_ref(),
                    secondaries: self.secondaries.as_ref(),
                }
            }
        }
    )*};
}

zone_keys!(RawDns, RawZone);

/// The values of one table, each as far as it validated.
#[derive(Clone)]
struct ZoneValues {
    server: Setting<String>,
    key_file: Setting<PathBuf>,
    key_name: Setting<String>,
    ttl: Setting<u32>,
    timeout: Setting<Duration>,
    resync_interval: Setting<Duration>,
    secondaries: Setting<Secondaries>,
}

impl ZoneValues {
    /// Nothing set; or, for a broken `[dns]`, every default `Invalid`, so
    /// that what it left out is not reported again at each zone.
    fn blank(invalid: bool) -> Self {
        fn one<T>(invalid: bool) -> Setting<T> {
            if invalid {
                Setting::Invalid
            } else {
                Setting::Unset
            }
        }
        Self {
            server: one(invalid),
            key_file: one(invalid),
            key_name: one(invalid),
            ttl: one(invalid),
            timeout: one(invalid),
            resync_interval: one(invalid),
            secondaries: one(invalid),
        }
    }

    /// These values, `defaults` where unset.
    fn or(self, defaults: &ZoneValues) -> Self {
        Self {
            server: self.server.or(defaults.server.clone()),
            key_file: self.key_file.or(defaults.key_file.clone()),
            key_name: self.key_name.or(defaults.key_name.clone()),
            ttl: self.ttl.or(defaults.ttl),
            timeout: self.timeout.or(defaults.timeout),
            resync_interval: self.resync_interval.or(defaults.resync_interval),
            secondaries: self.secondaries.or(defaults.secondaries.clone()),
        }
    }
}

impl Checker<'_> {
    /// `[dns]` and every `[[zone]]`.
    pub(super) fn zones(&mut self, dns: &Section<RawDns>, entries: &Entries<RawZone>) -> ZoneTable {
        let mut table = ZoneTable {
            complete: entries.complete() && !matches!(dns, Section::Broken),
            ..ZoneTable::default()
        };
        let defaults = match dns {
            Section::Present(raw) => self.zone_values(&raw.get_ref().keys(), "dns"),
            Section::Absent => ZoneValues::blank(false),
            Section::Broken => ZoneValues::blank(true),
        };
        let mut seen: HashMap<Name, String> = HashMap::new();
        if let Section::Present(raw) = dns {
            let header = raw.span();
            match &raw.get_ref().zone {
                Some(zone) => {
                    let name = self.zone_name(zone, "dns.zone", &mut seen);
                    self.add_zone(&mut table, name, defaults.clone(), &header, "dns");
                }
                None if entries.items.is_empty() && !entries.malformed => {
                    let hint = "the zone to update, e.g. \"example.com\" (or [[zone]] tables)";
                    self.required(&raw.get_ref().zone, &header, "dns.zone", hint);
                    self.add_zone(&mut table, None, defaults.clone(), &header, "dns");
                }
                None => {}
            }
        } else if matches!(dns, Section::Absent) && entries.items.is_empty() && !entries.malformed {
            self.error_in_file(
                "dns",
                "missing [dns] table: server, zone and key_file are required",
            );
        }
        for (i, item) in entries.items.iter().enumerate() {
            let base = format!("zone[{i}]");
            let Some(raw) = item else {
                table.zones.push(None);
                table.names.push(None);
                table.keys.push(None);
                continue;
            };
            let zone = raw.get_ref();
            let name = self
                .required(
                    &zone.name,
                    &raw.span(),
                    &field(&base, "name"),
                    "the zone, e.g. \"example.org\"",
                )
                .and_then(|name| self.zone_name(name, &field(&base, "name"), &mut seen));
            let values = self.zone_values(&zone.keys(), &base).or(&defaults);
            self.add_zone(&mut table, name, values, &raw.span(), &base);
        }
        table
    }

    /// One zone from its name and values; reports what is still missing.
    fn add_zone(
        &mut self,
        table: &mut ZoneTable,
        name: Option<Name>,
        values: ZoneValues,
        header: &Range<usize>,
        base: &str,
    ) {
        let whence = if base == "dns" {
            ""
        } else {
            " here or in [dns]"
        };
        let server = self.needed(
            values.server,
            header,
            &field(base, "server"),
            &format!("the primary's host:port{whence}, e.g. \"127.0.0.1:53\""),
        );
        let key_file = self.needed(
            values.key_file,
            header,
            &field(base, "key_file"),
            &format!("a BIND key file{whence}, as tsig-keygen writes it"),
        );
        let key_name = match values.key_name {
            Setting::Unset => Some(None),
            Setting::Invalid => None,
            Setting::Set(name) => Some(Some(name)),
        };
        let key = key_file.clone().zip(key_name.clone());
        let config = (|| {
            Some(ZoneConfig {
                server: server?,
                zone: name.clone()?,
                key_file: key_file?,
                key_name: key_name?,
                ttl: values
                    .ttl
                    .or_default(u32::try_from(DEFAULT_TTL.as_secs()).ok()?)?,
                timeout: values.timeout.or_default(DEFAULT_DNS_TIMEOUT)?,
                resync_interval: values.resync_interval.or_default(DEFAULT_RESYNC)?,
                secondaries: values.secondaries.or_default(Secondaries::Ns)?,
            })
        })();
        table.zones.push(config);
        table.names.push(name);
        table.keys.push(key);
    }

    /// A value a zone cannot do without: missing is reported at its table.
    fn needed<T>(
        &mut self,
        value: Setting<T>,
        header: &Range<usize>,
        field: &str,
        hint: &str,
    ) -> Option<T> {
        match value {
            Setting::Set(value) => Some(value),
            Setting::Invalid => None,
            Setting::Unset => {
                self.required::<()>(&None, header, field, hint);
                None
            }
        }
    }

    fn zone_values(&mut self, raw: &RawZoneKeys<'_>, base: &str) -> ZoneValues {
        ZoneValues {
            server: setting(raw.server, |s| self.server(s, &field(base, "server"))),
            key_file: setting(raw.key_file, |f| self.key_file(f, &field(base, "key_file"))),
            key_name: setting(raw.key_name, |n| self.key_name(n, &field(base, "key_name"))),
            ttl: setting(raw.ttl, |t| self.ttl(t, &field(base, "ttl"))),
            timeout: self.duration(raw.timeout, &field(base, "timeout")),
            resync_interval: self.duration(raw.resync_interval, &field(base, "resync_interval")),
            secondaries: setting(raw.secondaries, |s| {
                self.secondaries(s, &field(base, "secondaries"))
            }),
        }
    }

    fn zone_name(
        &mut self,
        zone: &Spanned<String>,
        field: &str,
        seen: &mut HashMap<Name, String>,
    ) -> Option<Name> {
        let name = match parse_name(zone.get_ref()) {
            Ok(name) if name.is_root() => {
                self.error(zone, field, "the root zone cannot be a zone to update");
                return None;
            }
            Ok(mut name) => {
                name.set_fqdn(true);
                name.to_lowercase()
            }
            Err(message) => {
                self.error(zone, field, message);
                return None;
            }
        };
        if let Some(first) = seen.get(&name) {
            let message = format!("the zone {name} is already configured by `{first}`");
            self.error(zone, field, message);
            return None;
        }
        seen.insert(name.clone(), field.to_string());
        Some(name)
    }

    fn server(&mut self, server: &Spanned<String>, field: &str) -> Option<String> {
        match check_server(server.get_ref()) {
            Ok(()) => Some(server.get_ref().clone()),
            Err(message) => {
                self.error(server, field, message);
                None
            }
        }
    }

    fn key_file(&mut self, file: &Spanned<String>, field: &str) -> Option<PathBuf> {
        if file.get_ref().trim().is_empty() {
            self.error(file, field, "empty; name the BIND key file");
            return None;
        }
        Some(self.path(file.get_ref()))
    }

    fn key_name(&mut self, name: &Spanned<String>, field: &str) -> Option<String> {
        match parse_name(name.get_ref()) {
            Ok(_) => Some(name.get_ref().clone()),
            Err(message) => {
                let message = format!("not a valid key name: {message}");
                self.error(name, field, message);
                None
            }
        }
    }

    /// Whole seconds, at least one: a record's TTL has no finer unit.
    fn ttl(&mut self, ttl: &Spanned<RawDuration>, field: &str) -> Option<u32> {
        let Setting::Set(value) = self.duration(Some(ttl), field) else {
            return None;
        };
        if value.subsec_nanos() != 0 {
            self.error(ttl, field, "a TTL is whole seconds, e.g. \"60s\" or \"5m\"");
            return None;
        }
        if value.as_secs() > MAX_TTL {
            let message = format!("too long: a TTL is at most {MAX_TTL} seconds (RFC 2181)");
            self.error(ttl, field, message);
            return None;
        }
        u32::try_from(value.as_secs()).ok()
    }

    /// `"ns"`, or a list of `host:port` (empty: no secondaries checked).
    fn secondaries(&mut self, raw: &Spanned<RawSecondaries>, field: &str) -> Option<Secondaries> {
        match raw.get_ref() {
            RawSecondaries::Word(word) if word == "ns" => Some(Secondaries::Ns),
            RawSecondaries::Word(word) => {
                let message = format!(
                    "`{word}`: write \"ns\" for the addresses of the zone's NS names, a list of \"host:port\", or [] for none"
                );
                self.error(raw, field, message);
                None
            }
            RawSecondaries::List(servers) => {
                let mut valid = true;
                for (i, server) in servers.iter().enumerate() {
                    if let Err(message) = check_server(server) {
                        self.error(raw, &format!("{field}[{i}]"), message);
                        valid = false;
                    }
                }
                valid.then(|| Secondaries::Servers(servers.clone()))
            }
        }
    }
}

/// A key that may be left out, validated by `check` when present.
fn setting<R, T>(raw: Option<&R>, check: impl FnOnce(&R) -> Option<T>) -> Setting<T> {
    match raw {
        None => Setting::Unset,
        Some(raw) => check(raw).map_or(Setting::Invalid, Setting::Set),
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
            assert_eq!(config(&with(good)).first_zone().server, good);
        }
    }

    #[test]
    fn dns_zone_is_a_valid_name_stored_fully_qualified() {
        let with = |zone: &str| {
            dns(&format!(
                "server = \"[::1]:53\"\nzone = \"{zone}\"\nkey_file = \"k\"\n"
            ))
        };
        assert_eq!(
            config(&with("Example.COM.")).first_zone().zone,
            name("example.com.")
        );
        assert!(config(&with("example.com")).first_zone().zone.is_fqdn());
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
        assert_eq!(
            config.first_zone().key_file,
            dir.path().join("pigeon-dns.key")
        );
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
                .first_zone()
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
        assert_eq!(config.first_zone().timeout, Duration::from_millis(500));
        assert_eq!(
            config.first_zone().resync_interval,
            Duration::from_secs(300)
        );
    }
}
