//! Several zones: `[dns]` as defaults and as a zone, `[[zone]]` tables,
//! which zone each pool is in, and the errors `check` gives for them.

use std::time::Duration;

use super::test_support::{assert_errors, config, diagnostics, find, name, render};
use super::{Secondaries, Severity};

/// `[dns]` (a zone itself, lines 1-5), a second zone (lines 6-9), two
/// nodes (lines 10-15).
const TWO_ZONES: &str = r#"[dns]
server = "127.0.0.1:53"
zone = "example.com"
key_file = "pigeon-dns.key"
ttl = "30s"
[[zone]]
name = "example.org"
server = "127.0.0.2:5353"
secondaries = ["127.0.0.3:53", "[::1]:53"]
[[node]]
name = "mail1"
addresses = ["192.0.2.11"]
[[node]]
name = "mail2"
addresses = ["192.0.2.12"]
"#;

/// Pools from line 16 on.
fn two_zones(pools: &str) -> String {
    format!("{TWO_ZONES}{pools}")
}

#[test]
fn dns_is_a_zone_and_each_zone_table_overrides_its_defaults() {
    let config = config(&two_zones(
        "[[pool]]\nzone = \"example.org\"\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n\
         [[pool]]\nzone = \"example.com\"\nname = \"imap\"\ncheck = \"imap\"\n",
    ));
    let zones: Vec<_> = config.zones.iter().map(|z| z.zone.to_string()).collect();
    assert_eq!(zones, ["example.com.", "example.org."]);
    let org = &config.zones[1];
    assert_eq!(org.server, "127.0.0.2:5353");
    assert_eq!(org.ttl, 30, "inherited from [dns]");
    assert_eq!(
        org.key_file, config.zones[0].key_file,
        "inherited from [dns]"
    );
    assert_eq!(org.timeout, Duration::from_secs(2));
    assert_eq!(
        org.secondaries,
        Secondaries::Servers(vec!["127.0.0.3:53".into(), "[::1]:53".into()])
    );
    assert_eq!(config.zones[0].secondaries, Secondaries::Ns);
    assert_eq!(config.pools[0].zone, 1);
    assert_eq!(config.pools[0].fqdn, name("example.org."));
    assert_eq!(config.pools[1].zone, 0);
    // Hosts default to the first zone: the MX of example.org points there.
    assert_eq!(config.nodes[0].host, name("mail1.example.com."));
}

#[test]
fn without_a_zone_in_dns_the_first_zone_table_is_the_first_zone() {
    let text = "[dns]\nserver = \"127.0.0.1:53\"\nkey_file = \"k.key\"\n\
                [[zone]]\nname = \"b.example\"\n[[zone]]\nname = \"a.example\"\nsecondaries = []\n\
                [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\
                [[pool]]\nzone = \"a.example\"\nname = \"imap\"\ncheck = \"imap\"\n\
                [ha]\n";
    let config = config(text);
    assert_eq!(config.first_zone().zone, name("b.example."));
    assert_eq!(config.nodes[0].host, name("mail1.b.example."));
    assert_eq!(config.pools[0].zone, 1);
    assert_eq!(config.pools[0].fqdn, name("imap.a.example."));
    assert_eq!(
        config.zones[1].secondaries,
        Secondaries::Servers(Vec::new())
    );
    let ha = config.ha.expect("[ha]");
    assert_eq!(
        ha.lease_in(&config.zones[1].zone),
        name("_pigeon-dns-lease.a.example.")
    );
    assert_eq!(
        ha.lease_in(&config.zones[0].zone),
        name("_pigeon-dns-lease.b.example.")
    );
}

#[test]
fn an_absolute_name_in_one_zone_needs_no_zone_key() {
    let config = config(&two_zones(
        "[[pool]]\nname = \"imap.example.org.\"\ncheck = \"imap\"\n\
         [[pool]]\nname = \"smtp.example.com\"\ncheck = \"submission\"\n",
    ));
    assert_eq!(config.pools[0].zone, 1);
    assert_eq!(config.pools[1].zone, 0);
    assert_eq!(config.pools[1].fqdn, name("smtp.example.com."));
}

#[test]
fn a_lease_at_the_apex_is_the_apex_of_each_zone() {
    let config = config(&two_zones(
        "[[pool]]\nzone = \"example.org\"\nname = \"imap\"\ncheck = \"imap\"\n[ha]\nlease = \"@\"\n",
    ));
    let ha = config.ha.expect("[ha]");
    assert_eq!(ha.lease_in(&name("example.org.")), name("example.org."));
    let one = super::test_support::config(&format!(
        "{}{}[ha]\nlease = \"@\"\n",
        super::test_support::BASE,
        super::test_support::IMAP_POOL
    ));
    let ha = one.ha.expect("[ha]");
    assert_eq!(ha.lease_in(&name("example.com.")), name("example.com."));
}

#[test]
fn pools_and_zones_that_check_rejects() {
    let imap = |zone: &str, name: &str| {
        let zone = if zone.is_empty() {
            String::new()
        } else {
            format!("zone = \"{zone}\"\n")
        };
        two_zones(&format!(
            "[[pool]]\n{zone}name = \"{name}\"\ncheck = \"imap\"\n"
        ))
    };
    let nested = "[[zone]]\nname = \"sub.example.com\"\n";
    assert_errors(&[
        (
            "a relative name among several zones",
            imap("", "imap"),
            Some(17),
            "pool[0].name",
            "missing `zone`: required when there are several zones",
        ),
        (
            "the apex among several zones",
            imap("", "@"),
            Some(17),
            "pool[0].name",
            "missing `zone`",
        ),
        (
            "an unknown zone",
            imap("example.net", "imap"),
            Some(17),
            "pool[0].zone",
            "`example.net` is not a configured zone; the zones are example.com., example.org.",
        ),
        (
            "a name outside its zone",
            imap("example.org", "imap.example.com."),
            Some(18),
            "pool[0].name",
            "outside the zone example.org.",
        ),
        (
            "an absolute name outside every zone",
            imap("", "imap.example.net."),
            Some(17),
            "pool[0].name",
            "outside every zone",
        ),
        (
            "an absolute name two nested zones could hold",
            format!(
                "{TWO_ZONES}{nested}[[pool]]\nname = \"imap.sub.example.com.\"\ncheck = \"imap\"\n"
            ),
            Some(19),
            "pool[0].name",
            "could belong to the zones example.com. and sub.example.com.: name one with `zone`",
        ),
        (
            "a name in a deeper zone of the config",
            format!(
                "{TWO_ZONES}{nested}[[pool]]\nzone = \"example.com\"\nname = \"imap.sub\"\ncheck = \"imap\"\n"
            ),
            Some(20),
            "pool[0].name",
            "is in the zone sub.example.com., which this config updates as a zone of its own",
        ),
        (
            "a zone twice",
            format!("{TWO_ZONES}[[zone]]\nname = \"Example.ORG.\"\n"),
            Some(17),
            "zone[1].name",
            "already configured by `zone[0].name`",
        ),
        (
            "a zone without a name",
            format!("{TWO_ZONES}[[zone]]\nserver = \"127.0.0.1:53\"\n"),
            Some(16),
            "zone[1].name",
            "missing",
        ),
        (
            "secondaries as another word",
            format!("{TWO_ZONES}[[zone]]\nname = \"c.example\"\nsecondaries = \"all\"\n"),
            Some(18),
            "zone[1].secondaries",
            "write \"ns\"",
        ),
        (
            "a secondary without a port",
            format!("{TWO_ZONES}[[zone]]\nname = \"c.example\"\nsecondaries = [\"192.0.2.53\"]\n"),
            Some(18),
            "zone[1].secondaries[0]",
            "no port",
        ),
        (
            "a lease written for one zone among several",
            two_zones(
                "[[pool]]\nzone = \"example.org\"\nname = \"imap\"\ncheck = \"imap\"\n[ha]\nlease = \"_lease.example.com.\"\n",
            ),
            Some(21),
            "ha.lease",
            "each zone holds its own lease",
        ),
    ]);
}

#[test]
fn a_zone_without_server_or_key_is_reported_at_its_table() {
    let text = "[dns]\nttl = \"30s\"\n\
                [[zone]]\nname = \"example.org\"\n\
                [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\
                [[pool]]\nname = \"imap\"\ncheck = \"imap\"\nzone = \"example.org\"\n";
    let diagnostics = diagnostics(text);
    let server = find(&diagnostics, "zone[0].server", Severity::Error);
    assert_eq!(server.line, Some(3), "{}", render(&diagnostics));
    assert!(server.message.contains("here or in [dns]"));
    let key = find(&diagnostics, "zone[0].key_file", Severity::Error);
    assert_eq!(key.line, Some(3));
    assert_eq!(
        diagnostics.len(),
        2,
        "nothing else is wrong:\n{}",
        render(&diagnostics)
    );
}

#[test]
fn zone_tables_without_dns_are_enough() {
    let text = "[[zone]]\nname = \"example.org\"\nserver = \"127.0.0.1:53\"\nkey_file = \"k.key\"\n\
                [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\
                [[pool]]\nname = \"imap\"\ncheck = \"imap\"\n";
    let config = config(text);
    assert_eq!(config.zones.len(), 1);
    assert_eq!(config.pools[0].fqdn, name("imap.example.org."));
}

#[test]
fn a_name_ending_in_another_zone_is_absolute() {
    let text = two_zones(
        "[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\nhost = \"mx.example.org\"\n\
         [[pool]]\nzone = \"example.com\"\nname = \"imap\"\ncheck = \"imap\"\n",
    );
    let loaded = super::test_support::loaded(&text);
    assert_eq!(loaded.config.nodes[2].host, name("mx.example.org."));
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
}
