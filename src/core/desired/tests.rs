use std::collections::HashMap;

use super::*;
use crate::core::records::RRset;

/// The nodes of the old fixture: mail1 (two addresses), mail2, mail3.
fn member(index: usize) -> Member {
    let (name, addresses): (&str, &[&str]) = match index {
        0 => ("mail1", &["192.0.2.11", "2001:db8::11"]),
        1 => ("mail2", &["192.0.2.12"]),
        _ => ("mail3", &["192.0.2.13"]),
    };
    Member {
        node: name.into(),
        host: format!("{name}.example.com."),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        drain: false,
    }
}

fn pool(name: &str, publish: Publish, nodes: Vec<usize>, all_down: AllDown) -> PoolShape {
    PoolShape {
        label: name.into(),
        owner: format!("{name}.example.com."),
        publish,
        all_down,
        members: nodes.into_iter().map(member).collect(),
    }
}

/// Health from a table of (node, address) -> state; missing: unknown.
struct Health(HashMap<(usize, IpAddr), State>);

impl Inputs for Health {
    fn health(&self, _pool: &str, node: &str, address: IpAddr) -> State {
        let index = node.trim_start_matches("mail").parse::<usize>().unwrap() - 1;
        self.0
            .get(&(index, address))
            .copied()
            .unwrap_or(State::Unknown)
    }
    fn drained(&self, _pool: &str, _node: &str) -> bool {
        false
    }
}

/// The pools of one test (the core takes them as they are).
fn config(pools: Vec<PoolShape>) -> Vec<PoolShape> {
    pools
}

fn health(states: &[(usize, &str, State)]) -> Health {
    Health(
        states
            .iter()
            .map(|(n, a, s)| ((*n, a.parse().unwrap()), *s))
            .collect(),
    )
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
        Publish::Address,
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
    assert_eq!(owned(&c)[&key("imap", RType::A)].len(), 3);
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
        Publish::Address,
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
        Publish::Address,
        vec![0, 1, 2],
        AllDown::PublishAll,
    )]);
    let d = desired(&c, &down, &current);
    assert_eq!(wanted(&d, &key("imap", RType::A)).len(), 3);
    assert!(d.pools[0].all_down);

    let c = config(vec![pool(
        "imap",
        Publish::Address,
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
        Publish::Address,
        vec![0, 1, 2],
        AllDown::PublishAll,
    )]);
    c[0].members[1].drain = true;
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
    assert!(owned(&c)[&key("imap", RType::A)].contains(&a("192.0.2.12")));
}

#[test]
fn mx_and_srv_count_a_node_up_when_any_address_is_up() {
    let c = config(vec![
        pool(
            "mx",
            Publish::Mx { preference: 10 },
            vec![0, 1],
            AllDown::PublishAll,
        ),
        pool(
            "_imaps._tcp",
            Publish::Srv {
                priority: 0,
                weight: 1,
                port: 993,
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
        Publish::Address,
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

/// Health with drains at run time: (pool, node) pairs.
struct Drained<'a>(&'a Health, &'a [(&'a str, &'a str)]);

impl Inputs for Drained<'_> {
    fn health(&self, pool: &str, node: &str, address: IpAddr) -> State {
        self.0.health(pool, node, address)
    }
    fn drained(&self, pool: &str, node: &str) -> bool {
        self.1.contains(&(pool, node))
    }
}

#[test]
fn a_runtime_drain_holds_out_one_pool_and_never_publishes_under_all_down() {
    for policy in [AllDown::PublishAll, AllDown::Keep] {
        let c = config(vec![
            pool("imap", Publish::Address, vec![1, 2], policy),
            pool("pop", Publish::Address, vec![1, 2], policy),
        ]);
        let h = health(&[(1, "192.0.2.12", State::Up), (2, "192.0.2.13", State::Up)]);
        // Drained in imap only: still published in pop.
        let d = desired(&c, &Drained(&h, &[("imap", "mail2")]), &View::new());
        assert_eq!(wanted(&d, &key("imap", RType::A)), vec![a("192.0.2.13")]);
        assert_eq!(
            wanted(&d, &key("pop", RType::A)),
            vec![a("192.0.2.12"), a("192.0.2.13")]
        );
        // Every other node down: the drained one stays out, and `keep`
        // does not keep it even though the primary holds it.
        let h = health(&[(1, "192.0.2.12", State::Up), (2, "192.0.2.13", State::Down)]);
        let mut current = View::new();
        current.insert(
            key("imap", RType::A),
            RRset {
                ttl: 60,
                records: [a("192.0.2.12"), a("192.0.2.13")].into(),
            },
        );
        let d = desired(&c, &Drained(&h, &[("imap", "mail2")]), &current);
        assert_eq!(
            wanted(&d, &key("imap", RType::A)),
            vec![a("192.0.2.13")],
            "{policy:?}"
        );
        assert!(d.pools[0].all_down, "{policy:?}");
    }
}
