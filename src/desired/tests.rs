use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::*;
use crate::config::{CheckKind, DnsConfig, HttpConfig, Node, Pool, ProbeSettings, TlsOptions};

fn node(name: &str, addresses: &[&str]) -> Node {
    Node {
        name: name.into(),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        host: Name::from_ascii(format!("{name}.example.com.")).unwrap(),
        drain: false,
    }
}

fn pool(name: &str, kind: PoolKind, nodes: Vec<usize>, all_down: AllDown) -> Pool {
    Pool {
        name: name.into(),
        fqdn: Name::from_ascii(format!("{name}.example.com.")).unwrap(),
        kind,
        check: CheckKind::Imap,
        port: 993,
        nodes,
        all_down,
        probe: ProbeSettings {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            fast_interval: Duration::from_millis(100),
            watch: true,
        },
        starttls: false,
        path: "/".into(),
        expect_body: None,
        tls: TlsOptions {
            verify: true,
            name: None,
            ca_file: None,
            cert_min_days: 0,
        },
    }
}

fn config(pools: Vec<Pool>) -> Config {
    Config {
        source: PathBuf::from("test.toml"),
        dns: DnsConfig {
            server: "127.0.0.1:53".into(),
            zone: Name::from_ascii("example.com.").unwrap(),
            key_file: PathBuf::from("k"),
            key_name: None,
            ttl: 60,
            timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(60),
        },
        http: HttpConfig { listen: None },
        ha: None,
        nodes: vec![
            node("mail1", &["192.0.2.11", "2001:db8::11"]),
            node("mail2", &["192.0.2.12"]),
            node("mail3", &["192.0.2.13"]),
        ],
        pools,
    }
}

/// Health from a table of (node, address) -> state; missing: unknown.
fn health(states: &[(usize, &str, State)]) -> impl Fn(usize, usize, IpAddr) -> State {
    let map: HashMap<(usize, IpAddr), State> = states
        .iter()
        .map(|(n, a, s)| ((*n, a.parse().unwrap()), *s))
        .collect();
    move |_, n, a| map.get(&(n, a)).copied().unwrap_or(State::Unknown)
}

fn key(name: &str, rtype: RType) -> RRsetKey {
    RRsetKey {
        name: format!("{name}.example.com."),
        rtype,
    }
}

fn a(s: &str) -> Rdata {
    Rdata::address(s.parse().unwrap())
}

fn wanted(d: &Desired, k: &RRsetKey) -> Vec<Rdata> {
    d.wanted
        .get(k)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn address_pool_publishes_up_addresses_per_family() {
    let c = config(vec![pool(
        "imap",
        PoolKind::Address,
        vec![0, 1, 2],
        AllDown::PublishAll,
    )]);
    let h = health(&[
        (0, "192.0.2.11", State::Up),
        (0, "2001:db8::11", State::Up),
        (1, "192.0.2.12", State::Down),
        (2, "192.0.2.13", State::Up),
    ]);
    let d = desired(&c, &h, &View::new());
    assert_eq!(
        wanted(&d, &key("imap", RType::A)),
        vec![a("192.0.2.11"), a("192.0.2.13")]
    );
    assert_eq!(
        wanted(&d, &key("imap", RType::Aaaa)),
        vec![a("2001:db8::11")]
    );
    assert_eq!(d.owned[&key("imap", RType::A)].len(), 3);
    assert_eq!(
        d.pools[0],
        PoolOutcome {
            all_down: false,
            published: 3
        }
    );
}

#[test]
fn unknown_targets_are_left_as_they_are() {
    let c = config(vec![pool(
        "imap",
        PoolKind::Address,
        vec![0, 1, 2],
        AllDown::PublishAll,
    )]);
    let mut current = View::new();
    current.insert(
        key("imap", RType::A),
        RRset {
            ttl: 60,
            records: [a("192.0.2.12")].into(),
        },
    );
    // mail2 unknown and present stays; mail3 unknown and absent stays absent.
    let h = health(&[(0, "192.0.2.11", State::Up)]);
    let d = desired(&c, &h, &current);
    assert_eq!(
        wanted(&d, &key("imap", RType::A)),
        vec![a("192.0.2.11"), a("192.0.2.12")]
    );
}

#[test]
fn all_down_publish_all_and_keep() {
    let down = health(&[
        (0, "192.0.2.11", State::Down),
        (0, "2001:db8::11", State::Down),
        (1, "192.0.2.12", State::Down),
        (2, "192.0.2.13", State::Down),
    ]);
    let mut current = View::new();
    current.insert(
        key("imap", RType::A),
        RRset {
            ttl: 60,
            records: [a("192.0.2.12")].into(),
        },
    );
    let c = config(vec![pool(
        "imap",
        PoolKind::Address,
        vec![0, 1, 2],
        AllDown::PublishAll,
    )]);
    let d = desired(&c, &down, &current);
    assert_eq!(wanted(&d, &key("imap", RType::A)).len(), 3);
    assert!(d.pools[0].all_down);

    let c = config(vec![pool(
        "imap",
        PoolKind::Address,
        vec![0, 1, 2],
        AllDown::Keep,
    )]);
    let d = desired(&c, &down, &current);
    assert_eq!(wanted(&d, &key("imap", RType::A)), vec![a("192.0.2.12")]);
    // keep publishes all where none is left (AAAA: nothing present).
    assert_eq!(
        wanted(&d, &key("imap", RType::Aaaa)),
        vec![a("2001:db8::11")]
    );
}

#[test]
fn drained_nodes_are_never_published_even_when_all_are_down() {
    let mut c = config(vec![pool(
        "imap",
        PoolKind::Address,
        vec![0, 1, 2],
        AllDown::PublishAll,
    )]);
    c.nodes[1].drain = true;
    let h = health(&[
        (0, "192.0.2.11", State::Down),
        (1, "192.0.2.12", State::Up),
        (2, "192.0.2.13", State::Down),
    ]);
    let d = desired(&c, &h, &View::new());
    assert_eq!(
        wanted(&d, &key("imap", RType::A)),
        vec![a("192.0.2.11"), a("192.0.2.13")]
    );
    assert!(d.owned[&key("imap", RType::A)].contains(&a("192.0.2.12")));
}

#[test]
fn mx_and_srv_count_a_node_up_when_any_address_is_up() {
    let c = config(vec![
        pool(
            "mx",
            PoolKind::Mx { preference: 10 },
            vec![0, 1],
            AllDown::PublishAll,
        ),
        pool(
            "_imaps._tcp",
            PoolKind::Srv {
                priority: 0,
                weight: 1,
            },
            vec![0, 1],
            AllDown::PublishAll,
        ),
    ]);
    let h = health(&[
        (0, "192.0.2.11", State::Down),
        (0, "2001:db8::11", State::Up),
        (1, "192.0.2.12", State::Down),
    ]);
    let d = desired(&c, &h, &View::new());
    assert_eq!(
        wanted(&d, &key("mx", RType::Mx)),
        vec![Rdata::Mx {
            preference: 10,
            exchange: "mail1.example.com.".into()
        }]
    );
    assert_eq!(
        wanted(&d, &key("_imaps._tcp", RType::Srv)),
        vec![Rdata::Srv {
            priority: 0,
            weight: 1,
            port: 993,
            target: "mail1.example.com.".into()
        }]
    );
}

#[test]
fn publish_all_never_adds_an_undecided_target() {
    // mail1 unknown and absent, mail2 down, mail3 drained away: all_down
    // publishes mail2 only, and a second pass with the same health agrees.
    let c = config(vec![pool(
        "imap",
        PoolKind::Address,
        vec![0, 1],
        AllDown::PublishAll,
    )]);
    let h = health(&[(1, "192.0.2.12", State::Down)]);
    let d = desired(&c, &h, &View::new());
    assert_eq!(wanted(&d, &key("imap", RType::A)), vec![a("192.0.2.12")]);
    let mut after = View::new();
    after.insert(
        key("imap", RType::A),
        RRset {
            ttl: 60,
            records: [a("192.0.2.12")].into(),
        },
    );
    let again = desired(&c, &h, &after);
    assert_eq!(again.wanted, d.wanted);
}
