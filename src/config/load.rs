//! Reading a config file: TOML -> [`raw`](super::raw) structs -> validated [`Config`].
//!
//! Validation goes on after an error, so that `pigeon-dns check` lists every
//! problem of the file at once, each with its line and field. A value that is
//! wrong is reported once; checks that depend on it are skipped rather than
//! repeated in other words. Each table has its own file; this one reads the
//! file and assembles the [`Config`].

use std::path::Path;

use super::checker::Checker;
use super::dns::KeyRef;
use super::raw::{self, RawDocument};
use super::types::Config;
use crate::diagnostic::{Diagnostic, Severity};
use crate::dns::key::{TsigKey, load_key_file};

/// A valid config and what `check` should still point out.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// A valid config with the TSIG keys it names.
#[derive(Debug)]
pub struct Full {
    pub config: Config,
    /// The key of each zone, by index in `Config::zones` (a key file named
    /// by several zones is read once).
    pub keys: Vec<TsigKey>,
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
impl Full {
    /// The key of zone `zone` (an index in `Config::zones`).
    pub fn key(&self, zone: usize) -> &TsigKey {
        &self.keys[zone]
    }
}

/// Loads the config and the key files it names, reporting the problems of
/// every file together (a key file is read even when the config has
/// errors, as long as its `key_file` itself was readable).
pub fn load_all(path: &Path) -> Result<Full, Vec<Diagnostic>> {
    let outcome = check_file(path);
    let mut diagnostics = outcome.diagnostics;
    let mut read: Vec<(KeyRef, Option<TsigKey>)> = Vec::new();
    let mut keys = Vec::new();
    for key in &outcome.keys {
        let Some(key) = key else {
            keys.push(None);
            continue;
        };
        if let Some((_, loaded)) = read.iter().find(|(k, _)| k == key) {
            keys.push(loaded.clone());
            continue;
        }
        let loaded = match load_key_file(&key.0, key.1.as_deref()) {
            Ok((loaded, warnings)) => {
                diagnostics.extend(warnings);
                Some(loaded)
            }
            Err(errors) => {
                diagnostics.extend(errors);
                None
            }
        };
        read.push((key.clone(), loaded.clone()));
        keys.push(loaded);
    }
    let keys: Option<Vec<TsigKey>> = keys.into_iter().collect();
    match (outcome.config, keys) {
        (Some(config), Some(keys)) if !has_errors(&diagnostics) && !keys.is_empty() => Ok(Full {
            config,
            keys,
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
    /// Each zone's key file (resolved) and key name, when both were valid.
    keys: Vec<Option<KeyRef>>,
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
                keys: Vec::new(),
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
    let (config, keys) = match doc {
        Some(doc) => checker.document(&doc),
        None => (None, Vec::new()),
    };
    let mut diagnostics = checker.diagnostics;
    // Stable: problems of one line keep the order they were found in.
    diagnostics.sort_by_key(|d| d.line);
    Outcome {
        config,
        keys,
        diagnostics,
    }
}

impl Checker<'_> {
    fn document(&mut self, doc: &RawDocument) -> (Option<Config>, Vec<Option<KeyRef>>) {
        let zones = self.zones(&doc.dns, &doc.zones);
        self.zones = zones.known();
        let probe = self.probe(&doc.probe);
        let http = self.http(&doc.http);
        let ha = self.ha(&doc.ha, &zones);
        let nodes = self.nodes(&doc.nodes, zones.first());
        let pools = self.pools(&doc.pools, &zones, &nodes, probe);
        let config = (|| {
            Some(Config {
                source: self.file.to_owned(),
                zones: zones.zones.iter().cloned().collect::<Option<Vec<_>>>()?,
                http: http?,
                ha: ha?,
                nodes: nodes.nodes.into_iter().collect::<Option<_>>()?,
                pools: pools?,
            })
        })();
        if let Some(config) = &config {
            self.dane_owners(doc, config);
        }
        let config = config.filter(|c| !c.zones.is_empty());
        (config, zones.keys)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;
    use std::time::Duration;

    use tempfile::TempDir;

    use super::*;
    use crate::config::test_support::{
        BASE, CONTRACT_EXAMPLE, IMAP_POOL, assert_errors, base_with, config, diagnostics, find,
        loaded, name, render, write,
    };
    use crate::config::{AllDown, CheckKind, PoolKind, ProbeSettings, TlsOptions};

    // ---- whole files ----

    #[test]
    fn the_contract_example_loads() {
        let loaded = loaded(CONTRACT_EXAMPLE);
        assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
        let config = loaded.config;
        assert_eq!(config.first_zone().server, "127.0.0.1:53");
        assert_eq!(config.first_zone().zone, name("example.com."));
        assert_eq!(
            config.first_zone().key_file,
            std::path::PathBuf::from("/etc/pigeon-dns/pigeon-dns.key")
        );
        assert_eq!(config.first_zone().key_name.as_deref(), Some("pigeon-dns"));
        assert_eq!(config.first_zone().ttl, 60);
        assert_eq!(config.first_zone().timeout, Duration::from_secs(2));
        assert_eq!(config.first_zone().resync_interval, Duration::from_secs(60));
        assert_eq!(config.http.listen, "127.0.0.1:9854".parse().ok());
        let ha = config.ha.clone().expect("[ha]");
        assert_eq!(
            ha.lease_in(&config.first_zone().zone),
            name("_pigeon-dns-lease.example.com.")
        );
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
        assert_eq!(loaded.config.first_zone().zone, name("example.com."));
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
        assert_eq!(full.key(0).name, name("pigeon-dns."));
        assert_eq!(full.key(0).algorithm_name(), "hmac-sha256");
        assert_eq!(
            full.config.first_zone().key_file,
            dir.path().join("pigeon-dns.key")
        );
        assert!(full.warnings.is_empty(), "{}", render(&full.warnings));
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let config = config(&format!("{BASE}{IMAP_POOL}"));
        assert_eq!(config.first_zone().ttl, 60);
        assert_eq!(config.first_zone().key_name, None);
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
        assert_errors(&[
            (
                "a misspelt pool key",
                format!("{BASE}{IMAP_POOL}tls_verfy = false\n"),
                Some(14),
                "pool[0].tls_verfy",
                "unknown field `tls_verfy`",
            ),
            (
                "an unknown [dns] key",
                "[dns]\nserver = \"127.0.0.1:53\"\nzonefile = \"x\"\n".into(),
                Some(3),
                "dns.zonefile",
                "unknown field",
            ),
            (
                "an unknown table",
                format!("{BASE}{IMAP_POOL}[pools]\n"),
                Some(14),
                "pools",
                "unknown key `pools`",
            ),
        ]);
    }

    #[test]
    fn wrong_types_are_errors() {
        let bad = |what, line, field, needle| {
            let text = base_with(&format!("{IMAP_POOL}{line}\n"));
            (what, text, Some(14), field, needle)
        };
        assert_errors(&[
            bad(
                "a port as a string",
                "port = \"143\"",
                "pool[0].port",
                "expected u16",
            ),
            bad("a port beyond u16", "port = 70000", "pool[0].port", "70000"),
            bad(
                "watch as a string",
                "watch = \"yes\"",
                "pool[0].watch",
                "expected a boolean",
            ),
        ]);
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
