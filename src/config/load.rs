//! Reading a config file: TOML -> [`raw`](super::raw) structs -> validated [`Config`].
//!
//! Validation goes on after an error, so that `pigeon-dns check` lists every
//! problem of the file at once, each with its line and field. A value that is
//! wrong is reported once; checks that depend on it are skipped rather than
//! repeated in other words.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::diag::{Diagnostic, Severity};
use super::raw::{
    self, Entries, Located, RawDns, RawDocument, RawDuration, RawHa, RawHttp, RawNode, RawPool,
    RawProbe, RawTiming, Section,
};
use super::types::{
    AllDown, CheckKind, Config, DnsConfig, HaConfig, HttpConfig, Node, Pool, PoolKind,
    ProbeSettings, TlsOptions,
};
use crate::dns::key::{TsigKey, load_key_file};

const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESYNC: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 2;
const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_LISTEN: &str = "127.0.0.1:9854";
const DEFAULT_LEASE: &str = "_pigeon-dns-lease";
const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(10);
const DEFAULT_PREFERENCE: u16 = 10;
const DEFAULT_PRIORITY: u16 = 0;
const DEFAULT_WEIGHT: u16 = 1;
/// RFC 2181 §8: a TTL is an unsigned 31-bit number.
const MAX_TTL: u64 = 0x7fff_ffff;
/// BIND's default `max-records-per-type`: an UPDATE that grows an RRset past
/// it is refused, so a pool that could need more is an error at load time.
const MAX_RECORDS_PER_TYPE: usize = 100;
/// Checks that can upgrade a plaintext connection.
const STARTTLS_CHECKS: [CheckKind; 4] = [
    CheckKind::Smtp,
    CheckKind::Submission,
    CheckKind::Pop3,
    CheckKind::Imap,
];

/// A valid config and what `check` should still point out.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// A valid config with the TSIG key it names.
#[derive(Debug)]
pub struct Full {
    pub config: Config,
    pub key: TsigKey,
    /// Of both files.
    pub warnings: Vec<Diagnostic>,
}

/// Loads and validates the config file. On failure, every diagnostic (errors
/// and warnings, sorted by line) is returned.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let outcome = check_file(path);
    match outcome.config {
        Some(config) if !has_errors(&outcome.diagnostics) => Ok(Loaded {
            config,
            warnings: outcome.diagnostics,
        }),
        _ => Err(outcome.diagnostics),
    }
}


/// Loads the config and the key file it names, reporting the problems of
/// both files together (the key file is read even when the config has
/// errors, as long as `dns.key_file` itself was readable).
pub fn load_all(path: &Path) -> Result<Full, Vec<Diagnostic>> {
    let outcome = check_file(path);
    let mut diagnostics = outcome.diagnostics;
    let key = outcome
        .key
        .and_then(|(file, name)| match load_key_file(&file, name.as_deref()) {
            Ok((key, warnings)) => {
                diagnostics.extend(warnings);
                Some(key)
            }
            Err(errors) => {
                diagnostics.extend(errors);
                None
            }
        });
    match (outcome.config, key) {
        (Some(config), Some(key)) if !has_errors(&diagnostics) => Ok(Full {
            config,
            key,
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}

fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}

/// What one pass over the config file found.
struct Outcome {
    /// `Some` only when every part validated (there may still be errors
    /// from elsewhere, so callers also look at the diagnostics).
    config: Option<Config>,
    /// `dns.key_file` (resolved) and `dns.key_name`, when both were valid.
    key: Option<(PathBuf, Option<String>)>,
    /// Sorted by line.
    diagnostics: Vec<Diagnostic>,
}

fn check_file(path: &Path) -> Outcome {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            let diagnostic = Diagnostic {
                severity: Severity::Error,
                file: path.to_owned(),
                line: None,
                field: String::new(),
                message: format!("cannot read the config file: {error}"),
            };
            return Outcome {
                config: None,
                key: None,
                diagnostics: vec![diagnostic],
            };
        }
    };
    check_text(path, &text)
}

/// Validates a config's text as if read from `path` (relative paths in it
/// resolve against `path`'s directory; `tls_ca_file` is looked up on disk).
/// Used by the fuzz target; `load` is this plus reading the file.
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let outcome = check_text(path, text);
    match outcome.config {
        Some(config) if !has_errors(&outcome.diagnostics) => Ok(Loaded {
            config,
            warnings: outcome.diagnostics,
        }),
        _ => Err(outcome.diagnostics),
    }
}

fn check_text(path: &Path, text: &str) -> Outcome {
    let text = text.to_string();
    let mut checker = Checker::new(path, &text);
    let (doc, problems) = raw::parse(&text);
    for problem in problems {
        checker.located(problem);
    }
    let (config, key) = match doc {
        Some(doc) => checker.document(&doc),
        None => (None, None),
    };
    let mut diagnostics = checker.diagnostics;
    // Stable: problems of one line keep the order they were found in.
    diagnostics.sort_by_key(|d| d.line);
    Outcome {
        config,
        key,
        diagnostics,
    }
}

/// Collects diagnostics for one file; knows how to turn a span into a line.
struct Checker<'a> {
    file: &'a Path,
    /// Relative paths in the file are relative to this.
    dir: PathBuf,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

/// A setting that may be left out: unset (a default or inherited value
/// applies), set but invalid (already reported), or set.
#[derive(Clone, Copy, Debug)]
enum Setting<T> {
    Unset,
    Invalid,
    Set(T),
}

impl<T: Copy> Setting<T> {
    /// This setting, or `fallback` where it is unset.
    fn or(self, fallback: Setting<T>) -> Setting<T> {
        match self {
            Setting::Unset => fallback,
            set => set,
        }
    }

    /// The value, `default` where unset, `None` where invalid.
    fn or_default(self, default: T) -> Option<T> {
        match self {
            Setting::Unset => Some(default),
            Setting::Invalid => None,
            Setting::Set(value) => Some(value),
        }
    }
}

/// Probe settings as written in `[probe]` or in one pool.
#[derive(Clone, Copy, Debug)]
struct Timing {
    interval: Setting<Duration>,
    timeout: Setting<Duration>,
    rise: Setting<u32>,
    fall: Setting<u32>,
    fast_interval: Setting<Duration>,
    watch: Setting<bool>,
}

/// The nodes as far as they validated, for the pools that refer to them.
struct NodeTable {
    /// Names as written, by file index (`None` where missing or unreadable).
    names: Vec<Option<String>>,
    nodes: Vec<Option<Node>>,
    /// Every `[[node]]` deserialized: a name not found is really unknown.
    complete: bool,
}

/// What every pool is validated against.
struct PoolContext<'c> {
    zone: Option<&'c Name>,
    nodes: &'c NodeTable,
    probe: Timing,
    /// (owner name, record type) -> index of the first pool publishing it.
    owners: HashMap<(String, &'static str), usize>,
}

/// Joins a table path and a key: `field("pool[2]", "port")` is `pool[2].port`.
fn field(base: &str, key: &str) -> String {
    format!("{base}.{key}")
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        let dir = file.parent().map(Path::to_owned).unwrap_or_default();
        Self {
            file,
            dir,
            text,
            diagnostics: Vec::new(),
        }
    }

    fn push(
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

    fn error<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, Some(at.span()), field, message.into());
    }

    fn warn<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, Some(at.span()), field, message.into());
    }

    /// An error about the whole file (e.g. a missing table).
    fn error_in_file(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, None, field, message.into());
    }

    fn located(&mut self, problem: Located) {
        self.push(
            Severity::Error,
            problem.span,
            &problem.field,
            problem.message,
        );
    }

    /// A path as written, relative to the config file's directory.
    fn path(&self, written: &str) -> PathBuf {
        self.dir.join(written)
    }

    // ---- the document ----

    fn document(
        &mut self,
        doc: &RawDocument,
    ) -> (Option<Config>, Option<(PathBuf, Option<String>)>) {
        let dns = self.dns(&doc.dns);
        let probe = self.probe(&doc.probe);
        let http = self.http(&doc.http);
        let zone = dns.zone.as_ref();
        let ha = self.ha(&doc.ha, zone);
        let nodes = self.nodes(&doc.nodes, zone);
        let pools = self.pools(&doc.pools, zone, &nodes, probe);
        let config = (|| {
            Some(Config {
                source: self.file.to_owned(),
                dns: dns.config?,
                http: http?,
                ha: ha?,
                nodes: nodes.nodes.into_iter().collect::<Option<_>>()?,
                pools: pools?,
            })
        })();
        (config, dns.key)
    }

    // ---- [dns] ----

    fn dns(&mut self, section: &Section<RawDns>) -> DnsParts {
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

    /// A required key: reports it missing (at the table's header) with a hint.
    fn required<'r, T>(
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

    // ---- durations ----

    /// A duration written as a string with a unit; zero is refused (every
    /// duration of the config is a wait or a timeout).
    fn duration(&mut self, raw: Option<&Spanned<RawDuration>>, field: &str) -> Setting<Duration> {
        let Some(raw) = raw else {
            return Setting::Unset;
        };
        match parse_duration(raw.get_ref()) {
            Ok(value) if value.is_zero() => {
                self.error(raw, field, "must be longer than 0");
                Setting::Invalid
            }
            Ok(value) => Setting::Set(value),
            Err(message) => {
                self.error(raw, field, message);
                Setting::Invalid
            }
        }
    }

    fn at_least_one(&mut self, raw: Option<&Spanned<u32>>, field: &str) -> Setting<u32> {
        match raw {
            None => Setting::Unset,
            Some(value) if *value.get_ref() == 0 => {
                self.error(value, field, "must be at least 1");
                Setting::Invalid
            }
            Some(value) => Setting::Set(*value.get_ref()),
        }
    }

    // ---- [probe] and per-pool overrides ----

    fn probe(&mut self, section: &Section<RawProbe>) -> Timing {
        let default = RawProbe::default();
        let raw = match section {
            Section::Present(probe) => probe.get_ref(),
            Section::Absent | Section::Broken => &default,
        };
        let timing = self.timing(raw.timing(), "probe");
        let defaults = Timing::defaults();
        let interval = timing
            .interval
            .or(defaults.interval)
            .or_default(DEFAULT_INTERVAL);
        let timeout = timing
            .timeout
            .or(defaults.timeout)
            .or_default(DEFAULT_PROBE_TIMEOUT);
        if let (Some(interval), Some(timeout)) = (interval, timeout) {
            let (at, name) = match (raw.timeout.as_ref(), raw.interval.as_ref()) {
                (Some(at), _) => (at, "probe.timeout"),
                (None, Some(at)) => (at, "probe.interval"),
                (None, None) => return timing,
            };
            if timeout >= interval {
                self.error(at, name, shorter_message(timeout, interval));
            }
        }
        timing
    }

    fn timing(&mut self, raw: RawTiming<'_>, base: &str) -> Timing {
        Timing {
            interval: self.duration(raw.interval, &field(base, "interval")),
            timeout: self.duration(raw.timeout, &field(base, "timeout")),
            rise: self.at_least_one(raw.rise, &field(base, "rise")),
            fall: self.at_least_one(raw.fall, &field(base, "fall")),
            fast_interval: self.duration(raw.fast_interval, &field(base, "fast_interval")),
            watch: raw
                .watch
                .map_or(Setting::Unset, |w| Setting::Set(*w.get_ref())),
        }
    }

    /// The pool's settings over `[probe]` over the defaults. A timeout not
    /// shorter than the interval is reported where the pool set one of
    /// them; when it set neither, `[probe]` was already checked.
    fn pool_probe(
        &mut self,
        raw: &RawPool,
        base: &str,
        inherited: Timing,
        check: Option<CheckKind>,
    ) -> Option<ProbeSettings> {
        let own = self.timing(raw.timing(), base);
        let interval = own
            .interval
            .or(inherited.interval)
            .or_default(DEFAULT_INTERVAL);
        let timeout = own
            .timeout
            .or(inherited.timeout)
            .or_default(DEFAULT_PROBE_TIMEOUT);
        let rise = own.rise.or(inherited.rise).or_default(DEFAULT_RISE);
        let fall = own.fall.or(inherited.fall).or_default(DEFAULT_FALL);
        let fast_interval = own
            .fast_interval
            .or(inherited.fast_interval)
            .or_default(DEFAULT_FAST_INTERVAL);
        let watch = own.watch.or(inherited.watch).or_default(check?.is_mail());
        let (interval, timeout) = (interval?, timeout?);
        if timeout >= interval {
            let at = match (raw.timeout.as_ref(), raw.interval.as_ref()) {
                (Some(at), _) => Some((at, "timeout")),
                (None, Some(at)) => Some((at, "interval")),
                (None, None) => None,
            };
            if let Some((at, key)) = at {
                self.error(at, &field(base, key), shorter_message(timeout, interval));
            }
            return None;
        }
        Some(ProbeSettings {
            interval,
            timeout,
            rise: rise?,
            fall: fall?,
            fast_interval: fast_interval?,
            watch: watch?,
        })
    }

    // ---- [http] ----

    fn http(&mut self, section: &Section<RawHttp>) -> Option<HttpConfig> {
        let listen = match section {
            Section::Broken => return None,
            Section::Absent => None,
            Section::Present(http) => http.get_ref().listen.as_ref(),
        };
        let Some(listen) = listen else {
            let default = DEFAULT_LISTEN.parse().ok();
            return Some(HttpConfig { listen: default });
        };
        let written = listen.get_ref().trim();
        if written.is_empty() {
            return Some(HttpConfig { listen: None });
        }
        match written.parse::<SocketAddr>() {
            Ok(addr) => Some(HttpConfig { listen: Some(addr) }),
            Err(_) => {
                let message = format!(
                    "`{written}` is not an IP address and port, e.g. \"127.0.0.1:9854\" or \"[::1]:9854\" (\"\" turns HTTP off)"
                );
                self.error(listen, "http.listen", message);
                None
            }
        }
    }

    // ---- [ha] ----

    /// `Some(None)`: no `[ha]`, a single writer. `None`: invalid.
    fn ha(&mut self, section: &Section<RawHa>, zone: Option<&Name>) -> Option<Option<HaConfig>> {
        let ha = match section {
            Section::Absent => return Some(None),
            Section::Broken => return None,
            Section::Present(ha) => ha.get_ref(),
        };
        let lease = match (&ha.lease, zone) {
            (_, None) => None,
            (Some(lease), Some(zone)) => self.owner_name(lease, zone, "ha.lease"),
            (None, Some(zone)) => resolve_name(DEFAULT_LEASE, zone).ok().map(|(name, _)| name),
        };
        let lease_time = self
            .duration(ha.lease_time.as_ref(), "ha.lease_time")
            .or_default(DEFAULT_LEASE_TIME);
        let instance = match &ha.instance {
            None => Some(default_instance()),
            Some(instance) if instance.get_ref().trim().is_empty() => {
                self.error(
                    instance,
                    "ha.instance",
                    "empty; leave it out for hostname and process id",
                );
                None
            }
            Some(instance) => Some(instance.get_ref().clone()),
        };
        Some(Some(HaConfig {
            lease: lease?,
            lease_time: lease_time?,
            instance: instance?,
        }))
    }

    /// A name in the zone as written in the file: an error when invalid, a
    /// warning when a relative name looks meant to be absolute.
    fn owner_name(&mut self, written: &Spanned<String>, zone: &Name, field: &str) -> Option<Name> {
        match resolve_name(written.get_ref(), zone) {
            Ok((name, warning)) => {
                if let Some(warning) = warning {
                    self.warn(written, field, warning);
                }
                Some(name)
            }
            Err(message) => {
                self.error(written, field, message);
                None
            }
        }
    }

    // ---- [[node]] ----

    fn nodes(&mut self, entries: &Entries<RawNode>, zone: Option<&Name>) -> NodeTable {
        if entries.items.is_empty() && !entries.malformed {
            self.error_in_file("node", "no [[node]]: at least one node is required");
        }
        let mut first_name: HashMap<String, usize> = HashMap::new();
        let mut first_address: HashMap<IpAddr, (usize, usize)> = HashMap::new();
        let mut table = NodeTable {
            names: Vec::new(),
            nodes: Vec::new(),
            complete: entries.complete(),
        };
        for (i, item) in entries.items.iter().enumerate() {
            let node = item.as_ref().and_then(|raw| {
                let name = self.node_name(raw, i, &mut first_name);
                let addresses = self.addresses(raw, i, &mut first_address);
                let host = self.node_host(raw.get_ref(), i, name.as_deref(), zone);
                let drain = raw.get_ref().drain.as_ref().is_some_and(|d| *d.get_ref());
                Some(Node {
                    name: name?,
                    addresses: addresses?,
                    host: host?,
                    drain,
                })
            });
            let written = item
                .as_ref()
                .and_then(|raw| raw.get_ref().name.as_ref())
                .map(|name| name.get_ref().clone());
            table.names.push(written);
            table.nodes.push(node);
        }
        table
    }

    fn node_name(
        &mut self,
        raw: &Spanned<RawNode>,
        i: usize,
        first: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let base = format!("node[{i}]");
        let name = self.required(
            &raw.get_ref().name,
            &raw.span(),
            &field(&base, "name"),
            "unique, [a-z0-9-]",
        )?;
        let written = name.get_ref();
        let valid = !written.is_empty()
            && written
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            let message = format!("`{written}`: a node name is lower-case letters, digits and '-'");
            self.error(name, &field(&base, "name"), message);
            return None;
        }
        if let Some(other) = first.get(written) {
            let message = format!("duplicate node name `{written}` (also node[{other}])");
            self.error(name, &field(&base, "name"), message);
            return None;
        }
        first.insert(written.clone(), i);
        Some(written.clone())
    }

    /// Every address parses, none repeats, none belongs to another node
    /// (one address is one probe target, with one health).
    fn addresses(
        &mut self,
        raw: &Spanned<RawNode>,
        i: usize,
        first: &mut HashMap<IpAddr, (usize, usize)>,
    ) -> Option<Vec<IpAddr>> {
        let base = field(&format!("node[{i}]"), "addresses");
        let list = self.required(
            &raw.get_ref().addresses,
            &raw.span(),
            &base,
            "the node's IPv4 and IPv6 addresses",
        )?;
        if list.get_ref().is_empty() {
            self.error(list, &base, "empty: a node needs at least one address");
            return None;
        }
        let mut valid = true;
        let mut addresses = Vec::new();
        for (j, written) in list.get_ref().iter().enumerate() {
            let here = format!("{base}[{j}]");
            let Ok(address) = written.get_ref().trim().parse::<IpAddr>() else {
                let message = format!("`{}` is not an IP address", written.get_ref());
                self.error(written, &here, message);
                valid = false;
                continue;
            };
            match first.get(&address) {
                Some(&(node, other)) if node == i => {
                    let message = format!("duplicate address {address} (also addresses[{other}])");
                    self.error(written, &here, message);
                    valid = false;
                }
                Some(&(node, other)) => {
                    let message = format!(
                        "address {address} is also node[{node}].addresses[{other}]: an address belongs to one node"
                    );
                    self.error(written, &here, message);
                    valid = false;
                }
                None => {
                    first.insert(address, (i, j));
                    addresses.push(address);
                }
            }
        }
        valid.then_some(addresses)
    }

    fn node_host(
        &mut self,
        raw: &RawNode,
        i: usize,
        name: Option<&str>,
        zone: Option<&Name>,
    ) -> Option<Name> {
        let zone = zone?;
        match &raw.host {
            Some(host) => self.owner_name(host, zone, &format!("node[{i}].host")),
            None => Name::from_ascii(name?).ok()?.append_domain(zone).ok(),
        }
    }

    // ---- [[pool]] ----

    fn pools(
        &mut self,
        entries: &Entries<RawPool>,
        zone: Option<&Name>,
        nodes: &NodeTable,
        probe: Timing,
    ) -> Option<Vec<Pool>> {
        if entries.items.is_empty() && !entries.malformed {
            self.error_in_file("pool", "no [[pool]]: at least one pool is required");
        }
        let mut context = PoolContext {
            zone,
            nodes,
            probe,
            owners: HashMap::new(),
        };
        let pools: Vec<Option<Pool>> = entries
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_ref()
                    .and_then(|raw| self.pool(raw, i, &mut context))
            })
            .collect();
        pools.into_iter().collect()
    }

    fn pool(
        &mut self,
        raw: &Spanned<RawPool>,
        i: usize,
        context: &mut PoolContext<'_>,
    ) -> Option<Pool> {
        let base = format!("pool[{i}]");
        let header = raw.span();
        let pool = raw.get_ref();
        let name = self.required(
            &pool.name,
            &header,
            &field(&base, "name"),
            "the owner name, e.g. \"imap\" or \"@\"",
        );
        let fqdn = match (name, context.zone) {
            (Some(name), Some(zone)) => self.owner_name(name, zone, &field(&base, "name")),
            _ => None,
        };
        let check = self.check_kind(pool, &header, &base);
        let kind = self.pool_kind(pool, &base);
        let port = self.port(pool, &header, &base, check);
        let members = self.members(pool, &base, context.nodes);
        let all_down = self.all_down(pool, &base);
        let probe = self.pool_probe(pool, &base, context.probe, check);
        let starttls = self.starttls(pool, &base, check);
        let (path, expect_body) = self.http_options(pool, &base, check);
        let tls = self.tls_options(pool, &base, check, starttls);
        if let (Some(name), Some(fqdn), Some(kind)) = (name, &fqdn, kind) {
            self.unique_owner(name, fqdn, kind, i, &base, &mut context.owners);
        }
        if let (Some(kind), Some(members)) = (kind, &members) {
            self.rrset_limit(pool, &header, &base, kind, members, context.nodes);
        }
        Some(Pool {
            name: name?.get_ref().clone(),
            fqdn: fqdn?,
            kind: kind?,
            check: check?,
            port: port?,
            nodes: members?,
            all_down: all_down?,
            probe: probe?,
            starttls: starttls?,
            path: path?,
            expect_body: expect_body?,
            tls: tls?,
        })
    }

    fn check_kind(
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

    /// `type` with its record fields; a field of another type is an error
    /// (a `preference` on an SRV pool is a mistake, not a no-op).
    fn pool_kind(&mut self, pool: &RawPool, base: &str) -> Option<PoolKind> {
        let written = pool.kind.as_ref().map(|k| k.get_ref().to_ascii_uppercase());
        let kind = match written.as_deref() {
            None | Some("A") => Some(PoolKind::Address),
            Some("MX") => Some(PoolKind::Mx {
                preference: value_or(&pool.preference, DEFAULT_PREFERENCE),
            }),
            Some("SRV") => Some(PoolKind::Srv {
                priority: value_or(&pool.priority, DEFAULT_PRIORITY),
                weight: value_or(&pool.weight, DEFAULT_WEIGHT),
            }),
            Some(other) => {
                let hint = if other == "AAAA" {
                    "; an \"A\" pool publishes both A and AAAA records"
                } else {
                    ""
                };
                let message =
                    format!("unknown type `{other}`; expected \"A\", \"MX\" or \"SRV\"{hint}");
                if let Some(at) = &pool.kind {
                    self.error(at, &field(base, "type"), message);
                }
                None
            }
        };
        let is_mx = matches!(kind, Some(PoolKind::Mx { .. }));
        let is_srv = matches!(kind, Some(PoolKind::Srv { .. }));
        let mut valid = kind.is_some();
        if let (Some(at), false) = (&pool.preference, is_mx) {
            self.error(
                at,
                &field(base, "preference"),
                "applies to MX pools only (type = \"MX\")",
            );
            valid = false;
        }
        for (value, key) in [(&pool.priority, "priority"), (&pool.weight, "weight")] {
            if let (Some(at), false) = (value, is_srv) {
                self.error(
                    at,
                    &field(base, key),
                    "applies to SRV pools only (type = \"SRV\")",
                );
                valid = false;
            }
        }
        kind.filter(|_| valid)
    }

    fn port(
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

    /// Indexes of the pool's nodes: every node by default.
    fn members(&mut self, pool: &RawPool, base: &str, nodes: &NodeTable) -> Option<Vec<usize>> {
        let Some(list) = &pool.nodes else {
            return Some((0..nodes.names.len()).collect());
        };
        let here = field(base, "nodes");
        if list.get_ref().is_empty() {
            self.error(list, &here, "empty; leave `nodes` out to use every node");
            return None;
        }
        let mut members = Vec::new();
        let mut valid = true;
        for (j, written) in list.get_ref().iter().enumerate() {
            let name = written.get_ref();
            let found = nodes
                .names
                .iter()
                .position(|n| n.as_deref() == Some(name.as_str()));
            match found {
                Some(index) if members.contains(&index) => {
                    self.error(
                        written,
                        &format!("{here}[{j}]"),
                        format!("node `{name}` is listed twice"),
                    );
                    valid = false;
                }
                Some(index) => members.push(index),
                None if nodes.complete => {
                    let known: Vec<String> = nodes
                        .names
                        .iter()
                        .flatten()
                        .map(|n| format!("`{n}`"))
                        .collect();
                    let message =
                        format!("unknown node `{name}`; the nodes are {}", known.join(", "));
                    self.error(written, &format!("{here}[{j}]"), message);
                    valid = false;
                }
                // A [[node]] that failed to parse may be the one named here.
                None => valid = false,
            }
        }
        valid.then_some(members)
    }

    fn all_down(&mut self, pool: &RawPool, base: &str) -> Option<AllDown> {
        let Some(written) = &pool.all_down else {
            return Some(AllDown::PublishAll);
        };
        match written.get_ref().as_str() {
            "publish-all" => Some(AllDown::PublishAll),
            "keep" => Some(AllDown::Keep),
            other => {
                let message =
                    format!("unknown policy `{other}`; expected \"publish-all\" or \"keep\"");
                self.error(written, &field(base, "all_down"), message);
                None
            }
        }
    }

    fn starttls(&mut self, pool: &RawPool, base: &str, check: Option<CheckKind>) -> Option<bool> {
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
    fn http_options(
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
    fn tls_options(
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

    /// Two pools may share a name (an A pool and an MX pool at "@"), not a
    /// name and a record type: they would fight over the same RRset.
    fn unique_owner(
        &mut self,
        name: &Spanned<String>,
        fqdn: &Name,
        kind: PoolKind,
        i: usize,
        base: &str,
        owners: &mut HashMap<(String, &'static str), usize>,
    ) {
        let key = (fqdn.to_lowercase().to_ascii(), record_type(kind));
        if let Some(&first) = owners.get(&key) {
            let message = format!(
                "pool[{first}] already publishes the {} records of {fqdn}",
                record_type(kind)
            );
            self.error(name, &field(base, "name"), message);
        } else {
            owners.insert(key, i);
        }
    }

    /// BIND refuses an UPDATE that grows an RRset past `max-records-per-type`.
    fn rrset_limit(
        &mut self,
        pool: &RawPool,
        header: &Range<usize>,
        base: &str,
        kind: PoolKind,
        members: &[usize],
        nodes: &NodeTable,
    ) {
        let addresses = || {
            members
                .iter()
                .filter_map(|&i| nodes.nodes.get(i).and_then(Option::as_ref))
                .flat_map(|node| node.addresses.iter())
        };
        let counts = match kind {
            PoolKind::Address => vec![
                (
                    "IPv4 addresses (A records)",
                    addresses().filter(|a| a.is_ipv4()).count(),
                ),
                (
                    "IPv6 addresses (AAAA records)",
                    addresses().filter(|a| a.is_ipv6()).count(),
                ),
            ],
            PoolKind::Mx { .. } => vec![("nodes (MX records)", members.len())],
            PoolKind::Srv { .. } => vec![("nodes (SRV records)", members.len())],
        };
        let span = pool.nodes.as_ref().map_or(header.clone(), Spanned::span);
        for (what, count) in counts {
            if count > MAX_RECORDS_PER_TYPE {
                let message = format!(
                    "{count} {what} in one RRset: BIND refuses more than {MAX_RECORDS_PER_TYPE} records per type by default (max-records-per-type); split the pool"
                );
                self.push(
                    Severity::Error,
                    Some(span.clone()),
                    &field(base, "nodes"),
                    message,
                );
            }
        }
    }
}

/// The parts of `[dns]` other tables and the key loader need, even when
/// the rest of `[dns]` is invalid.
#[derive(Default)]
struct DnsParts {
    config: Option<DnsConfig>,
    zone: Option<Name>,
    key: Option<(PathBuf, Option<String>)>,
}

impl Timing {
    fn defaults() -> Self {
        Timing {
            interval: Setting::Set(DEFAULT_INTERVAL),
            timeout: Setting::Set(DEFAULT_PROBE_TIMEOUT),
            rise: Setting::Set(DEFAULT_RISE),
            fall: Setting::Set(DEFAULT_FALL),
            fast_interval: Setting::Set(DEFAULT_FAST_INTERVAL),
            watch: Setting::Unset,
        }
    }
}

fn value_or<T: Copy>(value: &Option<Spanned<T>>, default: T) -> T {
    value.as_ref().map_or(default, |v| *v.get_ref())
}

fn record_type(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Address => "A/AAAA",
        PoolKind::Mx { .. } => "MX",
        PoolKind::Srv { .. } => "SRV",
    }
}

fn shorter_message(timeout: Duration, interval: Duration) -> String {
    format!(
        "timeout ({}) must be shorter than interval ({})",
        humantime::format_duration(timeout),
        humantime::format_duration(interval)
    )
}

fn default_instance() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "pigeon-dns".to_owned());
    format!("{host}-{}", std::process::id())
}

/// "2s", "500ms", "1m"; a bare number is refused with the fix.
fn parse_duration(raw: &RawDuration) -> Result<Duration, String> {
    match raw {
        RawDuration::Number(n) => Err(format!(
            "a bare number is not a duration: write it as a string with a unit, e.g. \"{n}s\" or \"{n}ms\""
        )),
        RawDuration::Text(text) => {
            let trimmed = text.trim();
            if trimmed.parse::<f64>().is_ok() {
                return Err(format!(
                    "`{trimmed}` has no unit: write e.g. \"{trimmed}s\" or \"{trimmed}ms\""
                ));
            }
            humantime::parse_duration(trimmed).map_err(|error| {
                format!(
                    "`{text}` is not a duration ({error}); write e.g. \"2s\", \"500ms\" or \"1m\""
                )
            })
        }
    }
}

/// `host:port`, with an IPv6 host in brackets. The host is not resolved
/// here: `check` needs no resolver.
fn check_server(server: &str) -> Result<(), String> {
    let example = "e.g. \"127.0.0.1:53\", \"ns1.example.com:53\" or \"[::1]:53\"";
    if let Some(rest) = server.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{server}`: expected [IPv6]:port, {example}"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{host}` is not an IPv6 address"))?;
        return check_port(port, server);
    }
    if server.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "`{server}`: put an IPv6 address in brackets and add the port, e.g. \"[{server}]:53\""
        ));
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(format!("`{server}` has no port: write \"{server}:53\""));
    };
    if host.contains(':') {
        return Err(format!(
            "`{server}`: put an IPv6 address in brackets, e.g. \"[{host}]:{port}\""
        ));
    }
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_host {
        return Err(format!(
            "`{host}` is not a host name or IP address; {example}"
        ));
    }
    check_port(port, server)
}

fn check_port(port: &str, server: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{server}`: the port must be 1-65535")),
        Ok(_) => Ok(()),
    }
}

/// A DNS name as written: letters, digits, '-', '_' and dots, in valid labels.
fn parse_name(written: &str) -> Result<Name, String> {
    if written.is_empty() {
        return Err("empty name; write \"@\" for the zone apex".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(bad) = written.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "`{written}` is not a valid DNS name: {bad:?} is not allowed"
        ));
    }
    Name::from_ascii(written)
        .map_err(|error| format!("`{written}` is not a valid DNS name: {error}"))
}

/// The config's name rules: "@" is the apex; a name that ends with a dot or
/// with the zone's name is absolute; any other is relative to the zone, and
/// warned about when it contains a dot (`mx.other.org` is most likely meant
/// outside the zone). Service names such as `_imaps._tcp` end with an
/// underscore label that no domain has: they are plainly relative, and not
/// warned about.
fn resolve_name(written: &str, zone: &Name) -> Result<(Name, Option<String>), String> {
    if written == "@" {
        return Ok((zone.clone(), None));
    }
    let name = parse_name(written)?;
    if name.is_fqdn() {
        return Ok((name, None));
    }
    let mut absolute = name.clone();
    absolute.set_fqdn(true);
    if zone.zone_of(&absolute) {
        return Ok((absolute, None));
    }
    let full = name
        .clone()
        .append_domain(zone)
        .map_err(|error| format!("`{written}` in {zone} is too long: {error}"))?;
    let service = written
        .rsplit('.')
        .next()
        .is_some_and(|l| l.starts_with('_'));
    let warning = (name.num_labels() > 1 && !service).then(|| {
        format!("relative name `{written}` is read as `{full}`; write `{written}.` for a name outside the zone")
    });
    Ok((full, warning))
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::IpAddr;

    use tempfile::TempDir;

    use super::*;

    /// The example of the contract (/work/shared/contract.md), verbatim.
    pub(crate) const CONTRACT_EXAMPLE: &str = r##"[dns]
server = "127.0.0.1:53"        # the primary that accepts RFC 2136 updates (host:port; IPv6 as "[::1]:53")
zone = "example.com"           # the zone to update
key_file = "/etc/pigeon-dns/pigeon-dns.key"  # a BIND key file, as tsig-keygen writes it
key_name = "pigeon-dns"        # optional: which key of the file; required only when it holds several
ttl = "60s"                    # TTL of the records it adds (default 60s)
timeout = "2s"                 # per DNS request (default 2s)
resync_interval = "60s"        # re-read the owned names and repair drift (default 60s)

[probe]                        # defaults for every pool; a pool may override each one
interval = "2s"                # default 2s
timeout = "1s"                 # default 1s; must be shorter than interval
rise = 2                       # consecutive successes to become up (default 2)
fall = 2                       # consecutive failures to become down (default 2)
fast_interval = "100ms"        # while a target's state is in doubt (unknown, a failure while up, a
                               # success while down), the next probe starts this long after the last
                               # one ended, until rise/fall decides (default 100ms)
watch = true                   # keep one idle connection to each up target; when the peer closes or
                               # resets it, probe again at once (default true for mail checks). Watch
                               # adds to the periodic probes, it never replaces them, and a close is
                               # not itself a failure: the probe it triggers decides.

[http]
listen = "127.0.0.1:9854"      # /metrics, /healthz, /readyz, /status (default 127.0.0.1:9854; "" turns it off)

[ha]                           # optional: several instances, exactly one writes at a time
lease = "_pigeon-dns-lease"    # a TXT record in the zone holding the writer's identity and expiry,
                               # taken and renewed by RFC 2136 prerequisites (compare-and-swap)
lease_time = "10s"             # default 10s; renewed every third of it
# instance = "dns1"            # identity (default: hostname and process id); unique per instance
# Without [ha] there is no lease: one instance is assumed. The writer releases the
# lease when it stops; a standby probes too and takes over once the lease expires.

[[node]]
name = "mail1"                              # unique, [a-z0-9-]
addresses = ["192.0.2.11", "2001:db8::11"]  # A and AAAA records are published from these
host = "mail1.example.com"                  # optional; the target of MX and SRV records (default: <name>.<zone>)
# drain = true                              # maintenance: the node's records are removed whatever its health

[[node]]
name = "mail2"
addresses = ["192.0.2.12"]

# A pool publishes, under one name, the records of its healthy nodes.
[[pool]]
name = "imap"                  # imap.example.com
check = "imap"                 # see the checks below
# port = 143                   # default: the check's well-known port
# nodes = ["mail1", "mail2"]   # default: every node
# type = "A"                   # "A" (A and AAAA, the default), "MX" or "SRV"
# all_down = "publish-all"     # when no node is up: "publish-all" (default) or "keep"
# interval, timeout, rise, fall, fast_interval, watch: per-pool overrides of [probe]

[[pool]]
name = "pop"
check = "pop3"

[[pool]]
name = "smtp"
check = "submission"           # port 587

[[pool]]
name = "webmail"
check = "http"
path = "/"                     # http/https: expects a 2xx or 3xx status

[[pool]]
name = "@"                     # the zone apex: example.com MX 10 <node host>
type = "MX"
preference = 10
check = "smtp"                 # port 25

[[pool]]
name = "_imaps._tcp"           # RFC 6186: _imaps._tcp.example.com SRV 0 1 993 <node host>
type = "SRV"
check = "imaps"
# priority = 0, weight = 1; the SRV port is the pool's port
"##;

    /// A valid start: `[dns]` on lines 1-4, two nodes on lines 5-10.
    const BASE: &str = r#"[dns]
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
    const IMAP_POOL: &str = "[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n";

    pub(crate) fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    pub(crate) fn load_text(text: &str) -> (TempDir, Result<Loaded, Vec<Diagnostic>>) {
        let dir = TempDir::new().expect("tempdir");
        let path = write(&dir, "pigeon-dns.toml", text);
        let loaded = load(&path);
        (dir, loaded)
    }

    fn loaded(text: &str) -> Loaded {
        match load_text(text).1 {
            Ok(loaded) => loaded,
            Err(diagnostics) => panic!("expected a valid config, got:\n{}", render(&diagnostics)),
        }
    }

    fn config(text: &str) -> Config {
        loaded(text).config
    }

    fn diagnostics(text: &str) -> Vec<Diagnostic> {
        match load_text(text).1 {
            Ok(_) => panic!("expected errors, the config loaded"),
            Err(diagnostics) => diagnostics,
        }
    }

    fn render(diagnostics: &[Diagnostic]) -> String {
        diagnostics.iter().map(|d| format!("{d}\n")).collect()
    }

    /// The one diagnostic about `field`, checked for its line and severity.
    fn find<'d>(diagnostics: &'d [Diagnostic], field: &str, severity: Severity) -> &'d Diagnostic {
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

    /// Asserts that loading `text` fails with an error at `line` about `field`
    /// whose message contains `needle`.
    fn assert_error(text: &str, line: Option<usize>, field: &str, needle: &str) {
        let diagnostics = diagnostics(text);
        let found = find(&diagnostics, field, Severity::Error);
        assert_eq!(found.line, line, "line of {found}");
        assert!(found.message.contains(needle), "`{needle}` not in: {found}");
    }

    fn assert_pool_error(extra: &str, line: usize, field: &str, needle: &str) {
        assert_error(&format!("{BASE}{extra}"), Some(line), field, needle);
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("test name")
    }

    // ---- whole files ----

    #[test]
    fn the_contract_example_loads() {
        let loaded = loaded(CONTRACT_EXAMPLE);
        assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
        let config = loaded.config;
        assert_eq!(config.dns.server, "127.0.0.1:53");
        assert_eq!(config.dns.zone, name("example.com."));
        assert_eq!(
            config.dns.key_file,
            PathBuf::from("/etc/pigeon-dns/pigeon-dns.key")
        );
        assert_eq!(config.dns.key_name.as_deref(), Some("pigeon-dns"));
        assert_eq!(config.dns.ttl, 60);
        assert_eq!(config.dns.timeout, Duration::from_secs(2));
        assert_eq!(config.dns.resync_interval, Duration::from_secs(60));
        assert_eq!(config.http.listen, "127.0.0.1:9854".parse().ok());
        let ha = config.ha.expect("[ha]");
        assert_eq!(ha.lease, name("_pigeon-dns-lease.example.com."));
        assert_eq!(ha.lease_time, Duration::from_secs(10));
        assert!(ha.instance.ends_with(&format!("-{}", std::process::id())));

        assert_eq!(config.nodes.len(), 2);
        assert_eq!(config.nodes[0].host, name("mail1.example.com."));
        assert_eq!(config.nodes[1].host, name("mail2.example.com."));
        let two: [IpAddr; 2] = [
            "192.0.2.11".parse().expect("ip"),
            "2001:db8::11".parse().expect("ip"),
        ];
        assert_eq!(config.nodes[0].addresses, two);
        assert!(!config.nodes[0].drain);

        let names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["imap", "pop", "smtp", "webmail", "@", "_imaps._tcp"]
        );
        let imap = &config.pools[0];
        assert_eq!(imap.fqdn, name("imap.example.com."));
        assert_eq!(
            (imap.check, imap.port, imap.kind),
            (CheckKind::Imap, 143, PoolKind::Address)
        );
        assert_eq!(imap.nodes, [0, 1]);
        assert_eq!(imap.all_down, AllDown::PublishAll);
        assert_eq!(
            imap.probe,
            ProbeSettings {
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                rise: 2,
                fall: 2,
                fast_interval: Duration::from_millis(100),
                watch: true,
            }
        );
        assert_eq!(config.pools[2].port, 587);
        let webmail = &config.pools[3];
        assert_eq!(
            (webmail.check, webmail.port, webmail.path.as_str()),
            (CheckKind::Http, 80, "/")
        );
        assert!(webmail.probe.watch, "[probe] watch = true is explicit");
        let mx = &config.pools[4];
        assert_eq!(mx.fqdn, name("example.com."));
        assert_eq!(mx.kind, PoolKind::Mx { preference: 10 });
        assert_eq!(mx.port, 25);
        let srv = &config.pools[5];
        assert_eq!(srv.fqdn, name("_imaps._tcp.example.com."));
        assert_eq!(
            srv.kind,
            PoolKind::Srv {
                priority: 0,
                weight: 1
            }
        );
        assert_eq!(srv.port, 993);
        assert_eq!(
            srv.tls,
            TlsOptions {
                verify: true,
                name: None,
                ca_file: None,
                cert_min_days: 0
            }
        );
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pigeon-dns.toml");
        let loaded = match load(&path) {
            Ok(loaded) => loaded,
            Err(diagnostics) => panic!("{}", render(&diagnostics)),
        };
        assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
        assert_eq!(loaded.config.dns.zone, name("example.com."));
        assert_eq!(loaded.config.nodes.len(), 3);
        assert!(loaded.config.pools.len() >= 7);
    }

    #[test]
    fn the_shipped_example_loads_with_its_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pigeon-dns.toml");
        let text = std::fs::read_to_string(path).expect("example config");
        let dir = TempDir::new().expect("tempdir");
        let key = "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n\tsecret \"l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=\";\n};\n";
        write(&dir, "pigeon-dns.key", key);
        let text = text.replace("\"/etc/pigeon-dns/pigeon-dns.key\"", "\"pigeon-dns.key\"");
        let config = write(&dir, "pigeon-dns.toml", &text);
        set_mode(&dir.path().join("pigeon-dns.key"), 0o640);
        let full = match load_all(&config) {
            Ok(full) => full,
            Err(diagnostics) => panic!("{}", render(&diagnostics)),
        };
        assert_eq!(full.key.name, name("pigeon-dns."));
        assert_eq!(full.key.algorithm_name(), "hmac-sha256");
        assert_eq!(full.config.dns.key_file, dir.path().join("pigeon-dns.key"));
        assert!(full.warnings.is_empty(), "{}", render(&full.warnings));
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let config = config(&format!("{BASE}{IMAP_POOL}"));
        assert_eq!(config.dns.ttl, 60);
        assert_eq!(config.dns.key_name, None);
        assert_eq!(config.http.listen, "127.0.0.1:9854".parse().ok());
        assert_eq!(config.ha, None);
        assert_eq!(config.pools[0].probe.interval, Duration::from_secs(2));
        assert_eq!(config.pools[0].path, "/");
        assert_eq!(config.pools[0].expect_body, None);
        assert!(!config.pools[0].starttls);
    }

    #[test]
    fn an_unreadable_file_is_one_error_without_line() {
        let dir = TempDir::new().expect("tempdir");
        let diagnostics = load(&dir.path().join("missing.toml")).expect_err("no file");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].line, None);
        assert!(diagnostics[0].message.contains("cannot read"));
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let text = format!("{BASE}[[pool]]\nname = imap\ncheck = \"imap\"\n");
        let diagnostics = diagnostics(&text);
        assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
        assert_eq!(diagnostics[0].line, Some(12));
        assert!(diagnostics[0].message.starts_with("TOML syntax"));
        assert!(diagnostics[0].to_string().starts_with("error: "));
    }

    #[test]
    fn every_error_of_a_file_is_reported_at_once() {
        let text = r#"[dns]
server = "127.0.0.1"
zone = "example.com"
key_file = "k"
ttl = 60
[probe]
rise = 0
[http]
listen = "localhost"
[[node]]
name = "Mail1"
addresses = ["192.0.2.300"]
[[node]]
name = "mail2"
adresses = ["192.0.2.1"]
[[pool]]
name = "imap"
check = "imapx"
[[pool]]
name = "smtp"
check = "smtp"
port = "25"
[[pool]]
check = "tcp"
nodes = ["mail9"]
"#;
        let diagnostics = diagnostics(text);
        let got: Vec<(Option<usize>, &str)> = diagnostics
            .iter()
            .map(|d| (d.line, d.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(2), "dns.server"),
                (Some(5), "dns.ttl"),
                (Some(7), "probe.rise"),
                (Some(9), "http.listen"),
                (Some(11), "node[0].name"),
                (Some(12), "node[0].addresses[0]"),
                (Some(15), "node[1].adresses"),
                (Some(18), "pool[0].check"),
                (Some(22), "pool[1].port"),
                (Some(23), "pool[2].name"),
                (Some(23), "pool[2].port"),
            ],
            "{}",
            render(&diagnostics)
        );
    }

    // ---- serde: unknown keys, types ----

    #[test]
    fn unknown_keys_are_errors() {
        let text = format!("{BASE}{IMAP_POOL}tls_verfy = false\n");
        assert_error(
            &text,
            Some(14),
            "pool[0].tls_verfy",
            "unknown field `tls_verfy`",
        );
        let text = "[dns]\nserver = \"127.0.0.1:53\"\nzonefile = \"x\"\n";
        assert_error(text, Some(3), "dns.zonefile", "unknown field");
        assert_error(
            &format!("{BASE}{IMAP_POOL}[pools]\n"),
            Some(14),
            "pools",
            "unknown key `pools`",
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        assert_pool_error(
            &format!("{IMAP_POOL}port = \"143\"\n"),
            14,
            "pool[0].port",
            "expected u16",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}port = 70000\n"),
            14,
            "pool[0].port",
            "70000",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}watch = \"yes\"\n"),
            14,
            "pool[0].watch",
            "expected a boolean",
        );
    }

    // ---- durations ----

    #[test]
    fn a_bare_number_is_not_a_duration() {
        let text = format!("{BASE}{IMAP_POOL}interval = 5\n");
        assert_error(&text, Some(14), "pool[0].interval", "\"5s\"");
        let text = format!("{BASE}{IMAP_POOL}interval = \"5\"\n");
        assert_error(&text, Some(14), "pool[0].interval", "has no unit");
        let text = format!("{BASE}{IMAP_POOL}interval = 0.5\n");
        assert_error(&text, Some(14), "pool[0].interval", "bare number");
    }

    #[test]
    fn durations_take_humantime_units() {
        let text = format!(
            "{BASE}{IMAP_POOL}interval = \"1m\"\ntimeout = \"1500ms\"\nfast_interval = \"250ms\"\n"
        );
        let probe = config(&text).pools[0].probe;
        assert_eq!(probe.interval, Duration::from_secs(60));
        assert_eq!(probe.timeout, Duration::from_millis(1500));
        assert_eq!(probe.fast_interval, Duration::from_millis(250));
        let text = format!("{BASE}{IMAP_POOL}interval = \"2 parsecs\"\n");
        assert_error(&text, Some(14), "pool[0].interval", "not a duration");
        let text = format!("{BASE}{IMAP_POOL}fast_interval = \"0s\"\n");
        assert_error(&text, Some(14), "pool[0].fast_interval", "longer than 0");
    }

    // ---- [dns] ----

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
        assert_error(&with("127.0.0.1"), Some(2), "dns.server", "no port");
        assert_error(&with("::1"), Some(2), "dns.server", "\"[::1]:53\"");
        assert_error(&with("2001:db8::1:53"), Some(2), "dns.server", "brackets");
        assert_error(&with("[::1]"), Some(2), "dns.server", "[IPv6]:port");
        assert_error(
            &with("[::g]:53"),
            Some(2),
            "dns.server",
            "not an IPv6 address",
        );
        assert_error(&with("ns1:0"), Some(2), "dns.server", "1-65535");
        assert_error(&with("ns 1:53"), Some(2), "dns.server", "not a host name");
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
        assert_error(
            &with("exa mple.com"),
            Some(3),
            "dns.zone",
            "not a valid DNS name",
        );
        assert_error(&with("a..b"), Some(3), "dns.zone", "not a valid DNS name");
        assert_error(&with("."), Some(3), "dns.zone", "root zone");
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
        let text = dns("server = \"[::1]:53\"\nzone = \"example.com\"\nkey_file = \"\"\n");
        assert_error(&text, Some(4), "dns.key_file", "empty");
        let text = dns(
            "server = \"[::1]:53\"\nzone = \"example.com\"\nkey_file = \"/k\"\nkey_name = \"a b\"\n",
        );
        assert_error(&text, Some(5), "dns.key_name", "not a valid key name");
    }

    #[test]
    fn dns_ttl_is_whole_seconds() {
        assert_eq!(
            config(&dns(&format!("{SERVER_ZONE_KEY}ttl = \"5m\"\n")))
                .dns
                .ttl,
            300
        );
        let text = dns(&format!("{SERVER_ZONE_KEY}ttl = \"1500ms\"\n"));
        assert_error(&text, Some(5), "dns.ttl", "whole seconds");
        let text = dns(&format!("{SERVER_ZONE_KEY}ttl = \"0s\"\n"));
        assert_error(&text, Some(5), "dns.ttl", "longer than 0");
        let text = dns(&format!("{SERVER_ZONE_KEY}ttl = \"100years\"\n"));
        assert_error(&text, Some(5), "dns.ttl", "RFC 2181");
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

    // ---- [probe] and overrides ----

    #[test]
    fn probe_timeout_must_be_shorter_than_interval() {
        let text = format!("{BASE}[probe]\ninterval = \"1s\"\ntimeout = \"1s\"\n{IMAP_POOL}");
        assert_error(&text, Some(13), "probe.timeout", "shorter than interval");
        // Only the interval set: the default timeout (1s) is too long.
        let text = format!("{BASE}[probe]\ninterval = \"500ms\"\n{IMAP_POOL}");
        assert_error(
            &text,
            Some(12),
            "probe.interval",
            "timeout (1s) must be shorter than interval (500ms)",
        );
    }

    #[test]
    fn pool_overrides_are_checked_after_merging() {
        let text = format!("{BASE}{IMAP_POOL}timeout = \"3s\"\n");
        assert_error(
            &text,
            Some(14),
            "pool[0].timeout",
            "timeout (3s) must be shorter than interval (2s)",
        );
        let text = format!("{BASE}[probe]\ntimeout = \"800ms\"\n{IMAP_POOL}interval = \"500ms\"\n");
        assert_error(&text, Some(16), "pool[0].interval", "shorter than interval");
        let text = format!(
            "{BASE}[probe]\ninterval = \"10s\"\ntimeout = \"5s\"\n{IMAP_POOL}interval = \"6s\"\n"
        );
        let probe = config(&text).pools[0].probe;
        assert_eq!(
            (probe.interval, probe.timeout),
            (Duration::from_secs(6), Duration::from_secs(5))
        );
    }

    #[test]
    fn rise_and_fall_are_at_least_one() {
        let text = format!("{BASE}[probe]\nrise = 0\nfall = 3\n{IMAP_POOL}fall = 0\n");
        let diagnostics = diagnostics(&text);
        assert_eq!(
            find(&diagnostics, "probe.rise", Severity::Error).line,
            Some(12)
        );
        assert_eq!(
            find(&diagnostics, "pool[0].fall", Severity::Error).line,
            Some(17)
        );
        let text = format!("{BASE}[probe]\nrise = 3\nfall = 4\n{IMAP_POOL}fall = 1\n");
        let probe = config(&text).pools[0].probe;
        assert_eq!((probe.rise, probe.fall), (3, 1));
    }

    #[test]
    fn watch_defaults_to_the_check_and_explicit_values_win() {
        let pools = "[[pool]]\nname = \"a\"\ncheck = \"imap\"\n[[pool]]\nname = \"b\"\ncheck = \"tcp\"\nport = 4190\n[[pool]]\nname = \"c\"\ncheck = \"https\"\n[[pool]]\nname = \"d\"\ncheck = \"smtp\"\nwatch = false\n";
        let watch: Vec<bool> = config(&format!("{BASE}{pools}"))
            .pools
            .iter()
            .map(|p| p.probe.watch)
            .collect();
        assert_eq!(watch, [true, false, false, false]);
        let with_probe = format!(
            "{BASE}[probe]\nwatch = false\n{pools}[[pool]]\nname = \"e\"\ncheck = \"pop3\"\nwatch = true\n"
        );
        let watch: Vec<bool> = config(&with_probe)
            .pools
            .iter()
            .map(|p| p.probe.watch)
            .collect();
        assert_eq!(watch, [false, false, false, false, true]);
    }

    // ---- [http] and [ha] ----

    #[test]
    fn http_listen_is_an_address_or_empty() {
        let text = format!("{BASE}{IMAP_POOL}[http]\nlisten = \"\"\n");
        assert_eq!(config(&text).http.listen, None);
        let text = format!("{BASE}{IMAP_POOL}[http]\nlisten = \"[::1]:9000\"\n");
        assert_eq!(config(&text).http.listen, "[::1]:9000".parse().ok());
        let text = format!("{BASE}{IMAP_POOL}[http]\nlisten = \"localhost:9854\"\n");
        assert_error(&text, Some(15), "http.listen", "not an IP address and port");
    }

    #[test]
    fn ha_lease_is_a_name_in_the_zone() {
        let text = format!(
            "{BASE}{IMAP_POOL}[ha]\nlease = \"lease.pigeon\"\nlease_time = \"30s\"\ninstance = \"dns1\"\n"
        );
        let loaded = loaded(&text);
        let ha = loaded.config.ha.expect("[ha]");
        assert_eq!(ha.lease, name("lease.pigeon.example.com."));
        assert_eq!(ha.lease_time, Duration::from_secs(30));
        assert_eq!(ha.instance, "dns1");
        let warning = find(&loaded.warnings, "ha.lease", Severity::Warning);
        assert_eq!(warning.line, Some(15));
        let text = format!(
            "{BASE}{IMAP_POOL}[ha]\nlease = \"bad lease\"\nlease_time = \"0s\"\ninstance = \"\"\n"
        );
        let diagnostics = diagnostics(&text);
        assert_eq!(
            find(&diagnostics, "ha.lease", Severity::Error).line,
            Some(15)
        );
        assert_eq!(
            find(&diagnostics, "ha.lease_time", Severity::Error).line,
            Some(16)
        );
        assert_eq!(
            find(&diagnostics, "ha.instance", Severity::Error).line,
            Some(17)
        );
    }

    // ---- [[node]] ----

    #[test]
    fn at_least_one_node_and_one_pool() {
        let text = "[dns]\nserver = \"[::1]:53\"\nzone = \"example.com\"\nkey_file = \"k\"\n";
        let diagnostics = diagnostics(text);
        assert_eq!(find(&diagnostics, "node", Severity::Error).line, None);
        assert_eq!(find(&diagnostics, "pool", Severity::Error).line, None);
    }

    #[test]
    fn node_names_are_lowercase_and_unique() {
        let text =
            format!("{BASE}[[node]]\nname = \"Mail_3\"\naddresses = [\"192.0.2.13\"]\n{IMAP_POOL}");
        assert_error(
            &text,
            Some(12),
            "node[2].name",
            "lower-case letters, digits and '-'",
        );
        let text =
            format!("{BASE}[[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.13\"]\n{IMAP_POOL}");
        assert_error(
            &text,
            Some(12),
            "node[2].name",
            "duplicate node name `mail1` (also node[0])",
        );
        let text = format!("{BASE}[[node]]\naddresses = [\"192.0.2.13\"]\n{IMAP_POOL}");
        assert_error(&text, Some(11), "node[2].name", "missing");
    }

    #[test]
    fn node_addresses_are_valid_and_unique() {
        let node = |list: &str| {
            format!("{BASE}[[node]]\nname = \"mail3\"\naddresses = [{list}]\n{IMAP_POOL}")
        };
        assert_error(
            &node(""),
            Some(13),
            "node[2].addresses",
            "at least one address",
        );
        assert_error(
            &node("\"192.0.2.13\", \"mail3\""),
            Some(13),
            "node[2].addresses[1]",
            "not an IP address",
        );
        assert_error(
            &node("\"2001:db8::13\", \"2001:DB8:0::13\""),
            Some(13),
            "node[2].addresses[1]",
            "duplicate address 2001:db8::13 (also addresses[0])",
        );
        assert_error(
            &node("\"192.0.2.12\""),
            Some(13),
            "node[2].addresses[0]",
            "also node[1].addresses[0]",
        );
        let text = format!("{BASE}[[node]]\nname = \"mail3\"\n{IMAP_POOL}");
        assert_error(&text, Some(11), "node[2].addresses", "missing");
    }

    #[test]
    fn node_host_follows_the_name_rules() {
        let node = |host: &str| {
            format!(
                "{BASE}[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\nhost = \"{host}\"\n{IMAP_POOL}"
            )
        };
        let host = |text: &str| config(text).nodes[2].host.clone();
        assert_eq!(host(&node("m3")), name("m3.example.com."));
        assert_eq!(host(&node("m3.example.com")), name("m3.example.com."));
        assert_eq!(host(&node("M3.EXAMPLE.com")), name("m3.example.com."));
        assert_eq!(host(&node("mx.other.org.")), name("mx.other.org."));
        assert_eq!(host(&node("@")), name("example.com."));
        let loaded = loaded(&node("mx.other.org"));
        assert_eq!(
            loaded.config.nodes[2].host,
            name("mx.other.org.example.com.")
        );
        let warning = find(&loaded.warnings, "node[2].host", Severity::Warning);
        assert_eq!(warning.line, Some(14));
        assert_eq!(
            warning.message,
            "relative name `mx.other.org` is read as `mx.other.org.example.com.`; write `mx.other.org.` for a name outside the zone"
        );
        assert_error(
            &node("bad host"),
            Some(14),
            "node[2].host",
            "not a valid DNS name",
        );
        assert_error(
            &node("-x"),
            Some(14),
            "node[2].host",
            "not a valid DNS name",
        );
        assert_error(&node(""), Some(14), "node[2].host", "empty name");
        let long = "a".repeat(64);
        assert_error(
            &node(&long),
            Some(14),
            "node[2].host",
            "not a valid DNS name",
        );
    }

    #[test]
    fn drain_is_read() {
        let text = format!(
            "{BASE}[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\ndrain = true\n{IMAP_POOL}"
        );
        let config = config(&text);
        assert_eq!(
            config.nodes.iter().map(|n| n.drain).collect::<Vec<_>>(),
            [false, false, true]
        );
    }

    // ---- [[pool]] ----

    #[test]
    fn pool_name_and_check_are_required() {
        assert_pool_error(
            "[[pool]]\ncheck = \"imap\"\n",
            11,
            "pool[0].name",
            "missing",
        );
        assert_pool_error(
            "[[pool]]\nname = \"imap\"\n",
            11,
            "pool[0].check",
            "one of tcp, smtp",
        );
        assert_pool_error(
            "[[pool]]\nname = \"imap\"\ncheck = \"IMAP4\"\n",
            13,
            "pool[0].check",
            "unknown check `IMAP4`",
        );
    }

    #[test]
    fn pool_names_follow_the_name_rules() {
        let pool = |name: &str| format!("{BASE}[[pool]]\nname = \"{name}\"\ncheck = \"imap\"\n");
        let fqdn = |text: &str| config(text).pools[0].fqdn.clone();
        assert_eq!(fqdn(&pool("@")), name("example.com."));
        assert_eq!(fqdn(&pool("imap")), name("imap.example.com."));
        assert_eq!(fqdn(&pool("imap.example.com")), name("imap.example.com."));
        assert_eq!(fqdn(&pool("imap.example.com.")), name("imap.example.com."));
        assert_eq!(fqdn(&pool("example.com")), name("example.com."));
        assert_eq!(fqdn(&pool("imap.other.org.")), name("imap.other.org."));
        // Label-wise: "notexample.com" does not end with the zone.
        assert_eq!(
            fqdn(&pool("notexample.com")),
            name("notexample.com.example.com.")
        );
        let warning = find(
            &loaded(&pool("mx.other.org")).warnings,
            "pool[0].name",
            Severity::Warning,
        )
        .clone();
        assert_eq!(warning.line, Some(12));
        assert!(warning.message.contains("write `mx.other.org.`"));
        assert!(loaded(&pool("_imaps._tcp")).warnings.is_empty());
        assert_pool_error(
            "[[pool]]\nname = \"im ap\"\ncheck = \"imap\"\n",
            12,
            "pool[0].name",
            "not a valid DNS name",
        );
        assert_pool_error(
            "[[pool]]\nname = \"*.x\"\ncheck = \"imap\"\n",
            12,
            "pool[0].name",
            "not a valid DNS name",
        );
    }

    #[test]
    fn pool_port_defaults_to_the_check_and_tcp_needs_one() {
        let text = format!("{BASE}[[pool]]\nname = \"sieve\"\ncheck = \"tcp\"\nport = 4190\n");
        assert_eq!(config(&text).pools[0].port, 4190);
        assert_pool_error(
            "[[pool]]\nname = \"sieve\"\ncheck = \"tcp\"\n",
            11,
            "pool[0].port",
            "no default port",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}port = 0\n"),
            14,
            "pool[0].port",
            "1-65535",
        );
        for check in CheckKind::ALL.into_iter().filter(|c| *c != CheckKind::Tcp) {
            let text = format!(
                "{BASE}[[pool]]\nname = \"x\"\ncheck = \"{}\"\n",
                check.as_str()
            );
            assert_eq!(Some(config(&text).pools[0].port), check.default_port());
        }
    }

    #[test]
    fn pool_nodes_name_known_nodes_once() {
        let text = format!("{IMAP_POOL}nodes = [\"mail2\"]\n");
        assert_eq!(config(&format!("{BASE}{text}")).pools[0].nodes, [1]);
        assert_pool_error(
            &format!("{IMAP_POOL}nodes = [\"mail2\", \"mail3\"]\n"),
            14,
            "pool[0].nodes[1]",
            "unknown node `mail3`; the nodes are `mail1`, `mail2`",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}nodes = [\"mail2\", \"mail2\"]\n"),
            14,
            "pool[0].nodes[1]",
            "listed twice",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}nodes = []\n"),
            14,
            "pool[0].nodes",
            "empty",
        );
    }

    #[test]
    fn pool_types_and_their_fields() {
        let pool = |lines: &str| format!("{BASE}[[pool]]\nname = \"@\"\ncheck = \"smtp\"\n{lines}");
        assert_eq!(
            config(&pool("type = \"mx\"\n")).pools[0].kind,
            PoolKind::Mx { preference: 10 }
        );
        assert_eq!(
            config(&pool("type = \"MX\"\npreference = 20\n")).pools[0].kind,
            PoolKind::Mx { preference: 20 }
        );
        assert_eq!(
            config(&pool("type = \"srv\"\n")).pools[0].kind,
            PoolKind::Srv {
                priority: 0,
                weight: 1
            }
        );
        assert_eq!(
            config(&pool("type = \"SRV\"\npriority = 5\nweight = 0\n")).pools[0].kind,
            PoolKind::Srv {
                priority: 5,
                weight: 0
            }
        );
        assert_eq!(
            config(&pool("type = \"a\"\n")).pools[0].kind,
            PoolKind::Address
        );
        assert_error(
            &pool("type = \"AAAA\"\n"),
            Some(14),
            "pool[0].type",
            "publishes both A and AAAA",
        );
        assert_error(
            &pool("type = \"CNAME\"\n"),
            Some(14),
            "pool[0].type",
            "unknown type `CNAME`",
        );
        assert_error(
            &pool("preference = 5\n"),
            Some(14),
            "pool[0].preference",
            "MX pools only",
        );
        assert_error(
            &pool("type = \"MX\"\npriority = 5\n"),
            Some(15),
            "pool[0].priority",
            "SRV pools only",
        );
        assert_error(
            &pool("weight = 5\n"),
            Some(14),
            "pool[0].weight",
            "SRV pools only",
        );
        assert_error(
            &pool("type = \"SRV\"\npreference = 5\n"),
            Some(15),
            "pool[0].preference",
            "MX pools only",
        );
    }

    #[test]
    fn pool_all_down_is_a_known_policy() {
        let text = format!("{BASE}{IMAP_POOL}all_down = \"keep\"\n");
        assert_eq!(config(&text).pools[0].all_down, AllDown::Keep);
        assert_pool_error(
            &format!("{IMAP_POOL}all_down = \"publish_all\"\n"),
            14,
            "pool[0].all_down",
            "\"publish-all\" or \"keep\"",
        );
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
        assert_pool_error(
            &pool("imaps"),
            15,
            "pool[0].starttls",
            "already starts with TLS",
        );
        assert_pool_error(&pool("tcp"), 15, "pool[0].starttls", "has no STARTTLS");
        assert_pool_error(
            &pool("http"),
            15,
            "pool[0].starttls",
            "smtp, submission, pop3 and imap",
        );
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
        assert_pool_error(
            "[[pool]]\nname = \"web\"\ncheck = \"http\"\npath = \"health\"\n",
            14,
            "pool[0].path",
            "start with \"/\"",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}path = \"/\"\n"),
            14,
            "pool[0].path",
            "http and https checks only",
        );
        assert_pool_error(
            &format!("{IMAP_POOL}expect_body = \"ok\"\n"),
            14,
            "pool[0].expect_body",
            "http and https checks only",
        );
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

    #[test]
    fn two_pools_may_share_a_name_not_a_type() {
        let a_and_mx = "[[pool]]\nname = \"@\"\ncheck = \"imap\"\n[[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n";
        assert_eq!(config(&format!("{BASE}{a_and_mx}")).pools.len(), 2);
        let twice =
            format!("{IMAP_POOL}[[pool]]\nname = \"IMAP.example.com.\"\ncheck = \"imaps\"\n");
        assert_pool_error(
            &twice,
            15,
            "pool[1].name",
            "pool[0] already publishes the A/AAAA records of IMAP.example.com.",
        );
        let two_mx = "[[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n[[pool]]\nname = \"example.com.\"\ntype = \"MX\"\ncheck = \"smtps\"\n";
        assert_pool_error(two_mx, 16, "pool[1].name", "MX records");
    }

    /// `count` nodes of one IPv4 address each.
    fn many_nodes(count: usize) -> String {
        (0..count)
            .map(|i| {
                format!(
                    "[[node]]\nname = \"n{i}\"\naddresses = [\"10.0.{}.{}\"]\n",
                    i / 250,
                    i % 250
                )
            })
            .collect()
    }

    #[test]
    fn rrsets_stay_within_bind_max_records_per_type() {
        let head = "[dns]\nserver = \"[::1]:53\"\nzone = \"example.com\"\nkey_file = \"k\"\n";
        let ok = format!(
            "{head}{}[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
            many_nodes(100)
        );
        assert_eq!(config(&ok).pools[0].nodes.len(), 100);
        let line = 4 + 3 * 101 + 1;
        let a = format!(
            "{head}{}[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
            many_nodes(101)
        );
        assert_error(&a, Some(line), "pool[0].nodes", "max-records-per-type");
        let mx = format!(
            "{head}{}[[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\nnodes = [{}]\n",
            many_nodes(101),
            (0..101)
                .map(|i| format!("\"n{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_error(
            &mx,
            Some(line + 4),
            "pool[0].nodes",
            "BIND refuses more than 100 records per type",
        );
    }

    // ---- load_all ----

    #[test]
    fn load_all_reports_both_files_together() {
        let dir = TempDir::new().expect("tempdir");
        let key = write(
            &dir,
            "pigeon-dns.key",
            "key \"pigeon-dns\" {\n\talgorithm hmac-md5;\n\tsecret \"bm90IGEgcmVhbCBzZWNyZXQ=\";\n};\n",
        );
        set_mode(&key, 0o600);
        let config = write(
            &dir,
            "pigeon-dns.toml",
            &format!("{BASE}{IMAP_POOL}port = 0\n"),
        );
        let diagnostics = load_all(&config).expect_err("both files are wrong");
        assert_eq!(
            find(&diagnostics, "pool[0].port", Severity::Error).file,
            config
        );
        let bad_key = find(
            &diagnostics,
            "key \"pigeon-dns\".algorithm",
            Severity::Error,
        );
        assert_eq!(
            (bad_key.file.as_path(), bad_key.line),
            (key.as_path(), Some(2))
        );
    }

    #[test]
    fn load_all_reports_a_missing_key_file() {
        let dir = TempDir::new().expect("tempdir");
        let config = write(&dir, "pigeon-dns.toml", &format!("{BASE}{IMAP_POOL}"));
        let diagnostics = load_all(&config).expect_err("no key file");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].file, dir.path().join("pigeon-dns.key"));
        assert!(diagnostics[0].message.contains("cannot read the key file"));
    }
}
