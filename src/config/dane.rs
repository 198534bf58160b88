//! DANE (RFC 7672): a pool's `dane = "off" | "verify" | "manage"` and a
//! node's `tlsa_next = ["next.pem", ...]`, and where a pool's TLSA owners
//! live. Kept apart from the other tables so that DANE touches them at one
//! field each.

use std::path::PathBuf;

use super::checker::{Checker, field};
use super::raw::{RawDocument, RawNode, RawPool};
use super::types::{CheckKind, Config, Node, Pool};
use crate::core::records::{in_zone, name_key};
use crate::dane::{KeyDigest, load_next, tlsa_owner};
use hickory_proto::rr::Name;

/// What a pool does with the TLSA records of its nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DaneMode {
    /// TLSA records are not looked at.
    #[default]
    Off,
    /// The served chain must match the TLSA RRset where one is usable.
    Verify,
    /// As `verify`, and pigeon-dns owns the `3 1 1` records of the keys the
    /// nodes serve, holding a node out of the pool until its record is old
    /// enough.
    Manage,
}

impl DaneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DaneMode::Off => "off",
            DaneMode::Verify => "verify",
            DaneMode::Manage => "manage",
        }
    }

    pub fn is_on(self) -> bool {
        self != DaneMode::Off
    }
}

/// A key a node will serve next (`tlsa_next`), read at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextKey {
    /// The file, resolved against the config's directory (for messages).
    pub path: PathBuf,
    /// The SHA-256 of its SubjectPublicKeyInfo: the data of its `3 1 1` record.
    pub digest: KeyDigest,
}

/// The zone holding a pool's records and the TTL pigeon-dns gives what it
/// adds there: where a `manage` pool's TLSA owners must be (its reconciler
/// writes them), and the floor of the hold-out.
pub fn pool_zone<'c>(config: &'c Config, pool: &Pool) -> (&'c Name, u32) {
    let zone = config.zone_of(pool);
    (&zone.zone, zone.ttl)
}

/// The TLSA owner of a pool's service on a node (RFC 6698 §3):
/// `_<port>._tcp.<host>.`, a name key.
pub fn pool_tlsa_owner(pool: &Pool, node: &Node) -> String {
    tlsa_owner(pool.port, &name_key(&node.host.to_ascii()))
}

impl Checker<'_> {
    /// `dane`: a mode, and only on a mail check that speaks TLS.
    pub(super) fn dane_mode(
        &mut self,
        pool: &RawPool,
        base: &str,
        check: Option<CheckKind>,
        starttls: Option<bool>,
    ) -> Option<DaneMode> {
        let Some(written) = &pool.dane else {
            return Some(DaneMode::Off);
        };
        let here = field(base, "dane");
        let mode = match written.get_ref().as_str() {
            "off" => DaneMode::Off,
            "verify" => DaneMode::Verify,
            "manage" => DaneMode::Manage,
            other => {
                let message =
                    format!("unknown mode `{other}`; expected \"off\", \"verify\" or \"manage\"");
                self.error(written, &here, message);
                return None;
            }
        };
        let (Some(check), Some(starttls)) = (check, starttls) else {
            return Some(mode);
        };
        if mode.is_on() && !check.is_mail() {
            let message = format!(
                "applies to mail checks only, not `{}`: DANE here is SMTP's (RFC 7672), checked \
                 in the mail protocols' own TLS",
                check.as_str()
            );
            self.error(written, &here, message);
            return None;
        }
        if mode.is_on() && !check.implicit_tls() && !starttls {
            let message = format!(
                "needs a TLS check: this `{}` check speaks no TLS; set starttls = true, or use \
                 an implicit-TLS check (smtps, pop3s, imaps)",
                check.as_str()
            );
            self.error(written, &here, message);
            return None;
        }
        Some(mode)
    }

    /// `tlsa_next`: every file read now, so that `check` shows a typo or a
    /// private key, and the daemon never reads one.
    pub(super) fn tlsa_next(&mut self, raw: &RawNode, i: usize) -> Option<Vec<NextKey>> {
        let Some(list) = &raw.tlsa_next else {
            return Some(Vec::new());
        };
        let base = field(&format!("node[{i}]"), "tlsa_next");
        let mut keys = Vec::new();
        let mut valid = true;
        for (j, written) in list.get_ref().iter().enumerate() {
            let path = self.path(written.get_ref());
            match load_next(&path) {
                Ok(digest) if keys.iter().any(|k: &NextKey| k.digest == digest) => {
                    let message = format!("{} names a key listed already", path.display());
                    self.warn(written, &format!("{base}[{j}]"), message);
                }
                Ok(digest) => keys.push(NextKey { path, digest }),
                Err(error) => {
                    self.error(written, &format!("{base}[{j}]"), error.to_string());
                    valid = false;
                }
            }
        }
        valid.then_some(keys)
    }

    /// What needs the whole config: every TLSA owner of a DANE pool lies in
    /// the pool's zone (its TLSA RRset is read from, and with `manage`
    /// written to, that zone's primary), and `tlsa_next` is warned about
    /// where no `manage` pool would publish it.
    pub(super) fn dane_owners(&mut self, doc: &RawDocument, config: &Config) {
        for (i, (pool, raw)) in config.pools.iter().zip(&doc.pools.items).enumerate() {
            let Some(written) = raw.as_ref().and_then(|r| r.get_ref().dane.as_ref()) else {
                continue;
            };
            if !pool.dane.is_on() {
                continue;
            }
            // verify reads each owner from the zone that holds it, any
            // configured zone; manage writes it with the pool's zone.
            let (zone, _) = pool_zone(config, pool);
            let zone = name_key(&zone.to_ascii());
            let zones: Vec<String> = if pool.dane == DaneMode::Manage {
                vec![zone.clone()]
            } else {
                config
                    .zones
                    .iter()
                    .map(|z| name_key(&z.zone.to_ascii()))
                    .collect()
            };
            let outside: Vec<String> = pool
                .nodes
                .iter()
                .filter_map(|&n| config.nodes.get(n))
                .map(|node| pool_tlsa_owner(pool, node))
                .filter(|owner| !zones.iter().any(|z| in_zone(owner, z)))
                .collect();
            if let Some(first) = outside.first() {
                let more = match outside.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let message = if pool.dane == DaneMode::Manage {
                    format!(
                        "the TLSA owner {first}{more} is outside the pool's zone {zone}: manage \
                         writes the TLSA records with the pool's zone (put the pool in the zone \
                         of its hosts, or use dane = \"verify\")"
                    )
                } else {
                    format!(
                        "the TLSA owner {first}{more} is in no zone pigeon-dns updates: DANE \
                         reads the TLSA RRset from the primary of the zone that holds it"
                    )
                };
                self.error(written, &field(&format!("pool[{i}]"), "dane"), message);
            }
        }
        for (i, (node, raw)) in config.nodes.iter().zip(&doc.nodes.items).enumerate() {
            let Some(written) = raw.as_ref().and_then(|r| r.get_ref().tlsa_next.as_ref()) else {
                continue;
            };
            let managed = config
                .pools
                .iter()
                .any(|p| p.dane == DaneMode::Manage && p.nodes.contains(&i));
            if !managed && !node.tlsa_next.is_empty() {
                self.warn(
                    written,
                    &field(&format!("node[{i}]"), "tlsa_next"),
                    "has no effect: no pool with dane = \"manage\" lists this node",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;
    use crate::config::test_support::{
        BASE, assert_errors, base_with, config, find, render, write,
    };
    use crate::config::{Severity, load};

    fn pool(lines: &str) -> String {
        base_with(&format!("[[pool]]\nname = \"@\"\ntype = \"MX\"\n{lines}"))
    }

    #[test]
    fn dane_is_off_by_default_and_read_on_tls_mail_checks() {
        let text = pool("check = \"smtp\"\n");
        assert_eq!(config(&text).pools[0].dane, DaneMode::Off);
        for (check, starttls) in [
            ("smtp", true),
            ("submission", true),
            ("smtps", false),
            ("imaps", false),
            ("pop3", true),
        ] {
            for mode in [DaneMode::Off, DaneMode::Verify, DaneMode::Manage] {
                let text = pool(&format!(
                    "check = \"{check}\"\nstarttls = {starttls}\ndane = \"{}\"\n",
                    mode.as_str()
                ));
                assert_eq!(config(&text).pools[0].dane, mode, "{check} {mode:?}");
            }
        }
    }

    #[test]
    fn dane_needs_a_tls_mail_check() {
        assert_errors(&[
            (
                "smtp without starttls",
                pool("check = \"smtp\"\ndane = \"verify\"\n"),
                Some(15),
                "pool[0].dane",
                "set starttls = true",
            ),
            (
                "https",
                base_with("[[pool]]\nname = \"web\"\ncheck = \"https\"\ndane = \"verify\"\n"),
                Some(14),
                "pool[0].dane",
                "mail checks only",
            ),
            (
                "a typo",
                pool("check = \"smtps\"\ndane = \"on\"\n"),
                Some(15),
                "pool[0].dane",
                "unknown mode `on`",
            ),
        ]);
        // Off is fine anywhere.
        let text = pool("check = \"tcp\"\nport = 25\ndane = \"off\"\n");
        assert_eq!(config(&text).pools[0].dane, DaneMode::Off);
    }

    #[test]
    fn the_tlsa_owners_must_be_in_the_zone() {
        let text = format!(
            "{BASE}[[node]]\nname = \"mx3\"\naddresses = [\"192.0.2.13\"]\nhost = \"mx3.example.net.\"\n\
             [[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtps\"\ndane = \"manage\"\n"
        );
        assert_errors(&[
            (
                "manage, a host in another zone",
                text.clone(),
                Some(19),
                "pool[0].dane",
                "the TLSA owner _465._tcp.mx3.example.net. is outside the pool's zone example.com.",
            ),
            (
                "verify, a host in no zone",
                text.replace("\"manage\"", "\"verify\""),
                Some(19),
                "pool[0].dane",
                "the TLSA owner _465._tcp.mx3.example.net. is in no zone pigeon-dns updates",
            ),
        ]);
        // verify reads an owner from any zone pigeon-dns updates.
        let other = text
            .replace("\"manage\"", "\"verify\"")
            .replacen("[[node]]", "[[zone]]\nname = \"example.net\"\n[[node]]", 1)
            .replace(
                "[[pool]]\nname = \"@\"",
                "[[pool]]\nzone = \"example.com\"\nname = \"@\"",
            );
        assert_eq!(config(&other).pools[0].dane, DaneMode::Verify);
        let config = config(&pool("check = \"smtps\"\ndane = \"verify\"\n"));
        let owners: Vec<String> = config
            .nodes
            .iter()
            .map(|n| pool_tlsa_owner(&config.pools[0], n))
            .collect();
        assert_eq!(
            owners,
            [
                "_465._tcp.mail1.example.com.",
                "_465._tcp.mail2.example.com."
            ]
        );
        assert_eq!(pool_zone(&config, &config.pools[0]).1, 60);
    }

    /// A self-signed certificate's PEM and the digest of its key.
    fn certificate() -> (String, KeyDigest) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["mail1.example.com".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let digest = crate::dane::spki_sha256(cert.der()).expect("digest");
        (cert.pem(), digest)
    }

    #[test]
    fn tlsa_next_files_are_read_relative_to_the_config() {
        let dir = TempDir::new().expect("tempdir");
        let (pem, digest) = certificate();
        write(&dir, "next.pem", &pem);
        let key = rcgen::KeyPair::generate().expect("key");
        write(&dir, "next.key", &key.serialize_pem());
        let node = |list: &str| {
            format!(
                "{BASE}[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\ntlsa_next = [{list}]\n\
                 [[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtps\"\ndane = \"manage\"\n"
            )
        };
        let path = write(&dir, "pigeon-dns.toml", &node("\"next.pem\""));
        let loaded = load(&path).expect("valid");
        assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
        assert_eq!(
            loaded.config.nodes[2].tlsa_next,
            [NextKey {
                path: dir.path().join("next.pem"),
                digest
            }]
        );
        assert!(loaded.config.nodes[0].tlsa_next.is_empty());

        let path = write(&dir, "pigeon-dns.toml", &node("\"next.pem\", \"next.key\""));
        let errors = load(&path).expect_err("a private key");
        let error = find(&errors, "node[2].tlsa_next[1]", Severity::Error);
        assert_eq!(error.line, Some(14));
        assert!(
            error.message.contains("holds a private key"),
            "{}",
            error.message
        );
        let path = write(&dir, "pigeon-dns.toml", &node("\"missing.pem\""));
        let errors = load(&path).expect_err("a missing file");
        let error = find(&errors, "node[2].tlsa_next[0]", Severity::Error);
        assert!(
            error.message.contains("cannot read it"),
            "{}",
            error.message
        );
    }

    #[test]
    fn tlsa_next_without_a_manage_pool_is_warned_about() {
        let dir = TempDir::new().expect("tempdir");
        let (pem, _) = certificate();
        write(&dir, "next.pem", &pem);
        let text = format!(
            "{BASE}[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\ntlsa_next = [\"next.pem\"]\n\
             [[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtps\"\ndane = \"verify\"\n"
        );
        let path = write(&dir, "pigeon-dns.toml", &text);
        let loaded = load(&path).expect("valid");
        let warning = find(&loaded.warnings, "node[2].tlsa_next", Severity::Warning);
        assert_eq!(warning.line, Some(14));
        assert!(warning.message.contains("dane = \"manage\""));
    }
}
