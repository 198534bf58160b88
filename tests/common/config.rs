//! Writes pigeon-dns TOML configs (contract.md, "Configuration") for tests.
//!
//! Fields are public, raw TOML values (`"\"200ms\""`, `"2"`) can be added
//! to any section with `set`, and [`ConfigBuilder::extra`] appends raw TOML,
//! so a test can also write an invalid config on purpose.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::bind::Bind;

/// A TOML basic string: `"..."` with `\` and `"` escaped.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub fn toml_str_array<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_str(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// `[[node]]`
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub addresses: Vec<String>,
    pub host: Option<String>,
    pub drain: Option<bool>,
    /// More `key = raw value` lines.
    pub extra: Vec<(String, String)>,
}

impl NodeSpec {
    pub fn new(name: &str, addresses: &[IpAddr]) -> NodeSpec {
        NodeSpec {
            name: name.to_owned(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            host: None,
            drain: None,
            extra: Vec::new(),
        }
    }
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }
    pub fn drain(mut self, drain: bool) -> Self {
        self.drain = Some(drain);
        self
    }
    /// `key = value` with `value` raw TOML.
    pub fn set(mut self, key: &str, raw_value: &str) -> Self {
        self.extra.push((key.to_owned(), raw_value.to_owned()));
        self
    }
}

/// `[[pool]]`: `name`, `check`, `type`, then any other key as raw TOML.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    pub name: String,
    pub check: String,
    /// `None`: the default (`A`).
    pub rtype: Option<String>,
    pub port: Option<u16>,
    pub nodes: Option<Vec<String>>,
    /// `port`, `preference`, `all_down`, `interval`, `rise`, ... as raw TOML.
    pub extra: Vec<(String, String)>,
}

impl PoolSpec {
    /// An A/AAAA pool.
    pub fn a(name: &str, check: &str) -> PoolSpec {
        PoolSpec {
            name: name.to_owned(),
            check: check.to_owned(),
            rtype: None,
            port: None,
            nodes: None,
            extra: Vec::new(),
        }
    }
    /// An MX pool with `preference`.
    pub fn mx(name: &str, check: &str, preference: u16) -> PoolSpec {
        let mut p = PoolSpec::a(name, check);
        p.rtype = Some("MX".into());
        p.set("preference", &preference.to_string())
    }
    /// An SRV pool (priority and weight: the defaults unless `set`).
    pub fn srv(name: &str, check: &str) -> PoolSpec {
        let mut p = PoolSpec::a(name, check);
        p.rtype = Some("SRV".into());
        p
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn nodes(mut self, nodes: &[&str]) -> Self {
        self.nodes = Some(nodes.iter().map(|n| (*n).to_owned()).collect());
        self
    }
    /// `"publish-all"` or `"keep"`.
    pub fn all_down(self, policy: &str) -> Self {
        self.set("all_down", &toml_str(policy))
    }
    /// `key = value` with `value` raw TOML, e.g. `.set("rise", "3")`,
    /// `.set("interval", "\"1s\"")`.
    pub fn set(mut self, key: &str, raw_value: &str) -> Self {
        self.extra.push((key.to_owned(), raw_value.to_owned()));
        self
    }
    /// `key = "value"`.
    pub fn set_str(self, key: &str, value: &str) -> Self {
        self.set(key, &toml_str(value))
    }
}

/// A pigeon-dns config as text. Defaults are fast, for tests: probes every
/// 200 ms with a 150 ms timeout, rise 2, fall 2, fast_interval 50 ms,
/// resync every 2 s, DNS timeout 1 s, TTL 60 s.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    /// `[dns]`, each value raw TOML.
    pub dns: Vec<(String, String)>,
    /// Each `[[zone]]`, each value raw TOML.
    pub zones: Vec<Vec<(String, String)>>,
    /// `[probe]`, each value raw TOML.
    pub probe: Vec<(String, String)>,
    /// `[http] listen`; `None` leaves `[http]` out (the daemon's default).
    pub http_listen: Option<String>,
    /// `[ha]`, each value raw TOML; `None` leaves `[ha]` out.
    pub ha: Option<Vec<(String, String)>>,
    pub nodes: Vec<NodeSpec>,
    pub pools: Vec<PoolSpec>,
    /// Raw TOML appended at the end.
    pub extra: String,
}

impl ConfigBuilder {
    /// `[dns]` for `server`, `zone` and `key_file`, with the test defaults.
    pub fn new(server: &str, zone: &str, key_file: &Path) -> ConfigBuilder {
        ConfigBuilder {
            dns: vec![
                ("server".into(), toml_str(server)),
                ("zone".into(), toml_str(zone)),
                ("key_file".into(), toml_str(&key_file.display().to_string())),
                ("ttl".into(), toml_str("60s")),
                ("timeout".into(), toml_str("1s")),
                ("resync_interval".into(), toml_str("2s")),
            ],
            zones: Vec::new(),
            probe: vec![
                ("interval".into(), toml_str("200ms")),
                ("timeout".into(), toml_str("150ms")),
                ("rise".into(), "2".into()),
                ("fall".into(), "2".into()),
                ("fast_interval".into(), toml_str("50ms")),
            ],
            http_listen: None,
            ha: None,
            nodes: Vec::new(),
            pools: Vec::new(),
            extra: String::new(),
        }
    }

    /// `[dns]` pointing at `bind` with its main key.
    pub fn for_bind(bind: &Bind) -> ConfigBuilder {
        ConfigBuilder::new(&bind.server(), bind.zone(), &bind.key_file())
    }

    /// Sets (or replaces) `[dns] key = raw value`.
    pub fn dns(mut self, key: &str, raw_value: &str) -> Self {
        upsert(&mut self.dns, key, raw_value);
        self
    }
    /// Adds a `[[zone]]` named `name` with `server` and `key_file` (the
    /// rest from `[dns]`) and more keys as raw TOML.
    pub fn zone(
        mut self,
        name: &str,
        server: &str,
        key_file: &Path,
        more: &[(&str, &str)],
    ) -> Self {
        let mut kv = vec![
            ("name".to_owned(), toml_str(name)),
            ("server".to_owned(), toml_str(server)),
            (
                "key_file".to_owned(),
                toml_str(&key_file.display().to_string()),
            ),
        ];
        for (key, raw) in more {
            upsert(&mut kv, key, raw);
        }
        self.zones.push(kv);
        self
    }
    /// Sets (or replaces) `[probe] key = raw value`.
    pub fn probe(mut self, key: &str, raw_value: &str) -> Self {
        upsert(&mut self.probe, key, raw_value);
        self
    }
    /// Removes `[dns] key` (to test a default or a missing field).
    pub fn without_dns(mut self, key: &str) -> Self {
        self.dns.retain(|(k, _)| k != key);
        self
    }
    pub fn http(mut self, listen: SocketAddr) -> Self {
        self.http_listen = Some(listen.to_string());
        self
    }
    /// `[http] listen = ""`: no HTTP server.
    pub fn no_http(mut self) -> Self {
        self.http_listen = Some(String::new());
        self
    }
    /// `[ha]` with `instance`, a `lease_time`, and the default lease name.
    pub fn ha(mut self, instance: &str, lease_time: &str) -> Self {
        self.ha = Some(vec![
            ("instance".into(), toml_str(instance)),
            ("lease_time".into(), toml_str(lease_time)),
        ]);
        self
    }
    /// Sets (or replaces) `[ha] key = raw value`; needs [`ConfigBuilder::ha`].
    pub fn ha_set(mut self, key: &str, raw_value: &str) -> Self {
        let ha = self.ha.as_mut().expect("ha() first");
        upsert(ha, key, raw_value);
        self
    }
    pub fn node(mut self, node: NodeSpec) -> Self {
        self.nodes.push(node);
        self
    }
    pub fn pool(mut self, pool: PoolSpec) -> Self {
        self.pools.push(pool);
        self
    }
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// The `[http] listen` address, when set and not empty.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listen.as_deref().and_then(|s| s.parse().ok())
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Written by the pigeon-dns test harness.\n");
        section(&mut out, "[dns]", &self.dns);
        for zone in &self.zones {
            section(&mut out, "[[zone]]", zone);
        }
        section(&mut out, "[probe]", &self.probe);
        if let Some(listen) = &self.http_listen {
            let _ = writeln!(out, "[http]\nlisten = {}\n", toml_str(listen));
        }
        if let Some(ha) = &self.ha {
            section(&mut out, "[ha]", ha);
        }
        for node in &self.nodes {
            let mut kv = vec![
                ("name".to_owned(), toml_str(&node.name)),
                ("addresses".to_owned(), toml_str_array(&node.addresses)),
            ];
            if let Some(host) = &node.host {
                kv.push(("host".into(), toml_str(host)));
            }
            if let Some(drain) = node.drain {
                kv.push(("drain".into(), drain.to_string()));
            }
            kv.extend(node.extra.iter().cloned());
            section(&mut out, "[[node]]", &kv);
        }
        for pool in &self.pools {
            let mut kv = vec![
                ("name".to_owned(), toml_str(&pool.name)),
                ("check".to_owned(), toml_str(&pool.check)),
            ];
            if let Some(rtype) = &pool.rtype {
                kv.push(("type".into(), toml_str(rtype)));
            }
            if let Some(port) = pool.port {
                kv.push(("port".into(), port.to_string()));
            }
            if let Some(nodes) = &pool.nodes {
                kv.push(("nodes".into(), toml_str_array(nodes)));
            }
            kv.extend(pool.extra.iter().cloned());
            section(&mut out, "[[pool]]", &kv);
        }
        out.push_str(&self.extra);
        out
    }

    /// Writes the config to `path` and returns it.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_toml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_owned()
    }
}

fn upsert(kv: &mut Vec<(String, String)>, key: &str, raw_value: &str) {
    match kv.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = raw_value.to_owned(),
        None => kv.push((key.to_owned(), raw_value.to_owned())),
    }
}

fn section(out: &mut String, header: &str, kv: &[(String, String)]) {
    out.push_str(header);
    out.push('\n');
    for (k, v) in kv {
        let _ = writeln!(out, "{k} = {v}");
    }
    out.push('\n');
}
