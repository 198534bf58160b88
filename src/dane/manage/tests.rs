//! The planner on explicit timelines, then a property: random event
//! sequences never break the invariant.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::*;

const TTL: u32 = 60;
const HOLD: Duration = Duration::from_secs(120);
const OWNER: &str = "_25._tcp.mx.example.com.";
const OTHER: &str = "_25._tcp.mx2.example.com.";

fn key(n: u8) -> KeyDigest {
    KeyDigest([n; 32])
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn v4(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
}

fn v6(n: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n))
}

fn record(n: u8) -> Tlsa {
    Tlsa::dane_ee(key(n))
}

fn service(node: &str, owner: &str, served: &[(IpAddr, Option<u8>)], next: &[u8]) -> ServiceKeys {
    ServiceKeys {
        node: node.to_owned(),
        owner: owner.to_owned(),
        served: served.iter().map(|(a, k)| (*a, k.map(key))).collect(),
        next: next.iter().map(|n| key(*n)).collect(),
    }
}

/// The primary's TLSA RRsets, changed by plans as the caller would.
#[derive(Clone, Debug, Default)]
struct Zone {
    rrsets: BTreeMap<String, TlsaRrset>,
}

impl Zone {
    fn new() -> Self {
        Zone::default()
    }

    /// Puts `tlsa` at `owner`, published at `since` (None: unmarked).
    fn with(mut self, owner: &str, tlsa: Tlsa, since: Option<Instant>) -> Self {
        let rrset = self.rrsets.entry(owner.to_owned()).or_default();
        rrset.ttl.get_or_insert(TTL);
        rrset.records.push(Published { tlsa, since });
        self
    }

    /// What the UPDATE of `plan` does when applied at `now`.
    fn apply(&mut self, plan: &TlsaPlan, now: Instant) {
        for (owner, tlsa) in &plan.add {
            let rrset = self.rrsets.entry(owner.clone()).or_default();
            rrset.ttl.get_or_insert(TTL);
            rrset.records.push(Published {
                tlsa: tlsa.clone(),
                since: Some(now),
            });
        }
        for (owner, tlsa) in &plan.remove {
            let rrset = self
                .rrsets
                .get_mut(owner)
                .expect("removal at a known owner");
            let before = rrset.records.len();
            rrset.records.retain(|r| r.tlsa != *tlsa);
            assert_eq!(rrset.records.len(), before - 1, "removed {tlsa} once");
            if rrset.records.is_empty() {
                rrset.ttl = None;
            }
        }
    }

    fn keys(&self, owner: &str) -> BTreeSet<KeyDigest> {
        self.rrsets
            .get(owner)
            .map(|r| {
                r.records
                    .iter()
                    .filter_map(|p| p.tlsa.managed_digest())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn input(&self, services: &[ServiceKeys]) -> ManageInput {
        ManageInput {
            ttl: TTL,
            rrsets: self.rrsets.clone(),
            services: services.to_vec(),
        }
    }
}

fn keys(list: &[u8]) -> BTreeSet<KeyDigest> {
    list.iter().map(|n| key(*n)).collect()
}

fn hold_out_until(until: Instant, waiting: &[u8]) -> Publish {
    Publish::HoldOut {
        until,
        waiting: waiting.iter().map(|n| key(*n)).collect(),
    }
}

#[test]
fn a_renewal_holds_the_node_out_exactly_twice_the_ttl() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    let old = [service("mail1", OWNER, &[(v4(1), Some(0))], &[])];
    let p = manager.plan(t0, &zone.input(&old));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    assert!(!p.changes());
    assert_eq!(p.wake, None);

    // Five minutes later the node serves a new key.
    let t1 = t0 + secs(300);
    let new = [service("mail1", OWNER, &[(v4(1), Some(1))], &[])];
    let p = manager.plan(t1, &zone.input(&new));
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(1))]);
    assert!(p.remove.is_empty(), "{:?}", p.remove);
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t1 + HOLD, &[1]))
    );
    assert_eq!(p.wake, Some(t1 + HOLD));
    zone.apply(&p, t1);
    // The new record beside the old one.
    assert_eq!(zone.keys(OWNER), keys(&[0, 1]));

    // One second short of twice the TTL: still out, nothing removed.
    let p = manager.plan(t1 + HOLD - secs(1), &zone.input(&new));
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t1 + HOLD, &[1]))
    );
    assert!(!p.changes());
    assert_eq!(p.wake, Some(t1 + HOLD));

    // Exactly twice the TTL: back in the pool; the old record, unserved
    // since t1, goes at the same moment.
    let p = manager.plan(t1 + HOLD, &zone.input(&new));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(0))]);
    assert!(p.add.is_empty());
    assert_eq!(p.wake, None);
    zone.apply(&p, t1 + HOLD);
    assert_eq!(zone.keys(OWNER), keys(&[1]));
}

#[test]
fn the_old_record_goes_twice_the_ttl_after_the_last_node_stopped_serving_it() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    let old = [service("mail1", OWNER, &[(v4(1), Some(0))], &[])];
    manager.plan(t0, &zone.input(&old));
    // The switch is seen at t1, not before: K0 counts as served until t1.
    let t1 = t0 + secs(1000);
    let new = [service("mail1", OWNER, &[(v4(1), Some(1))], &[])];
    let p = manager.plan(t1, &zone.input(&new));
    zone.apply(&p, t1);
    // A plan in between changes nothing of that.
    let p = manager.plan(t1 + secs(60), &zone.input(&new));
    assert!(!p.changes());
    assert_eq!(p.wake, Some(t1 + HOLD));
    let p = manager.plan(t1 + HOLD - secs(1), &zone.input(&new));
    assert!(p.remove.is_empty());
    let p = manager.plan(t1 + HOLD, &zone.input(&new));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(0))]);
}

#[test]
fn a_pre_published_key_needs_no_hold_out() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    // tlsa_next names the next key: its record goes out now, the node stays.
    let announced = [service("mail1", OWNER, &[(v4(1), Some(0))], &[1])];
    let p = manager.plan(t0, &zone.input(&announced));
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(1))]);
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    zone.apply(&p, t0);

    // Days later, the node switches: its record is old, the node stays in.
    let t1 = t0 + secs(3 * 86_400);
    let switched = [service("mail1", OWNER, &[(v4(1), Some(1))], &[1])];
    let p = manager.plan(t1, &zone.input(&switched));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    assert!(!p.changes());
    assert_eq!(p.wake, Some(t1 + HOLD));
    let p = manager.plan(t1 + HOLD, &zone.input(&switched));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(0))]);
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
}

#[test]
fn a_key_announced_too_late_holds_the_node_out_for_the_rest() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    let announced = [service("mail1", OWNER, &[(v4(1), Some(0))], &[1])];
    let p = manager.plan(t0, &zone.input(&announced));
    zone.apply(&p, t0);
    let switched = [service("mail1", OWNER, &[(v4(1), Some(1))], &[1])];
    let p = manager.plan(t0 + secs(60), &zone.input(&switched));
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + HOLD, &[1]))
    );
    assert!(!p.changes());
}

#[test]
fn a_listed_key_stays_until_unlisted_and_unserved() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    let announced = [service("mail1", OWNER, &[(v4(1), Some(0))], &[1])];
    let p = manager.plan(t0, &zone.input(&announced));
    zone.apply(&p, t0);
    let p = manager.plan(t0 + secs(10), &zone.input(&announced));
    assert!(!p.changes());
    // Listed for a year, never served: never removed.
    let p = manager.plan(t0 + secs(365 * 86_400), &zone.input(&announced));
    assert!(!p.changes());
    assert_eq!(p.wake, None);
    // Unlisted: never served since it was first seen, long ago: it goes.
    let t1 = t0 + secs(365 * 86_400 + 1);
    let unlisted = [service("mail1", OWNER, &[(v4(1), Some(0))], &[])];
    let p = manager.plan(t1, &zone.input(&unlisted));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(1))]);
}

#[test]
fn two_nodes_share_an_owner() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    let both_old = [
        service("mail1", OWNER, &[(v4(1), Some(0))], &[]),
        service("mail2", OWNER, &[(v4(2), Some(0))], &[]),
    ];
    let p = manager.plan(t0, &zone.input(&both_old));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    assert_eq!(p.publish("mail2", OWNER), Some(&Publish::Yes));

    // mail1 renews: it alone is held out; the old record stays for mail2.
    let t1 = t0 + secs(100);
    let one_new = [
        service("mail1", OWNER, &[(v4(1), Some(1))], &[]),
        service("mail2", OWNER, &[(v4(2), Some(0))], &[]),
    ];
    let p = manager.plan(t1, &zone.input(&one_new));
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(1))]);
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t1 + HOLD, &[1]))
    );
    assert_eq!(p.publish("mail2", OWNER), Some(&Publish::Yes));
    zone.apply(&p, t1);
    let p = manager.plan(t1 + secs(1000), &zone.input(&one_new));
    assert!(!p.changes(), "the record mail2 serves stays");
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));

    // mail2 renews to the same key, long after: no hold-out for it.
    let t2 = t1 + secs(2000);
    let both_new = [
        service("mail1", OWNER, &[(v4(1), Some(1))], &[]),
        service("mail2", OWNER, &[(v4(2), Some(1))], &[]),
    ];
    let p = manager.plan(t2, &zone.input(&both_new));
    assert_eq!(p.publish("mail2", OWNER), Some(&Publish::Yes));
    assert!(!p.changes());
    let p = manager.plan(t2 + HOLD, &zone.input(&both_new));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(0))]);
}

#[test]
fn nodes_at_other_owners_are_judged_by_their_own_rrset() {
    let t0 = Instant::now();
    let zone = Zone::new()
        .with(OWNER, record(0), None)
        .with(OTHER, record(1), Some(t0));
    let mut manager = TlsaManager::new();
    let services = [
        service("mail1", OWNER, &[(v4(1), Some(0))], &[]),
        // mail2 serves key 0 too, but its owner has only key 1.
        service("mail2", OTHER, &[(v4(2), Some(0))], &[]),
    ];
    let p = manager.plan(t0, &zone.input(&services));
    assert_eq!(p.add, vec![(OTHER.to_owned(), record(0))]);
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    assert_eq!(
        p.publish("mail2", OTHER),
        Some(&hold_out_until(t0 + HOLD, &[0]))
    );
    // Key 1 at OTHER is served nowhere: due twice the TTL after first seen.
    assert_eq!(p.wake, Some(t0 + HOLD));
    let p = manager.plan(t0 + HOLD, &zone.input(&services));
    assert!(p.remove.contains(&(OTHER.to_owned(), record(1))));
    assert!(!p.remove.contains(&(OWNER.to_owned(), record(0))));
}

#[test]
fn a_restart_keeps_unmarked_records_and_removes_none_at_once() {
    let t0 = Instant::now();
    // Records from before pigeon-dns managed the owner: no marks.
    let mut zone = Zone::new()
        .with(OWNER, record(0), None)
        .with(OWNER, record(9), None);
    let mut manager = TlsaManager::new();
    // Just started: no handshake yet.
    let unknown = [service(
        "mail1",
        OWNER,
        &[(v4(1), None), (v6(1), None)],
        &[],
    )];
    let p = manager.plan(t0, &zone.input(&unknown));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Unknown));
    assert!(!p.changes());
    assert_eq!(p.wake, Some(t0 + HOLD));

    // The probe sees key 0, which an unmarked record matches: published
    // at once (the record is old).
    let seen = [service(
        "mail1",
        OWNER,
        &[(v4(1), Some(0)), (v6(1), None)],
        &[],
    )];
    let p = manager.plan(t0 + secs(5), &zone.input(&seen));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    assert!(!p.changes());
    // Key 9, served by nobody since the start, goes twice the TTL after it.
    let p = manager.plan(t0 + HOLD - secs(1), &zone.input(&seen));
    assert!(p.remove.is_empty());
    let p = manager.plan(t0 + HOLD, &zone.input(&seen));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(9))]);
    zone.apply(&p, t0 + HOLD);
    assert_eq!(zone.keys(OWNER), keys(&[0]));
}

#[test]
fn a_restart_keeps_the_hold_out_of_a_young_marked_record() {
    let t0 = Instant::now() + secs(3600);
    // Published 30 s before the restart, by the previous run.
    let zone = Zone::new()
        .with(OWNER, record(0), None)
        .with(OWNER, record(1), Some(t0 - secs(30)));
    let mut manager = TlsaManager::new();
    let services = [service("mail1", OWNER, &[(v4(1), Some(1))], &[])];
    let p = manager.plan(t0, &zone.input(&services));
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + secs(90), &[1]))
    );
    assert!(!p.changes());
    // A mark in the future (the writer's clock ran ahead) only lengthens it.
    let ahead = Zone::new().with(OWNER, record(1), Some(t0 + secs(10)));
    let p = manager.plan(t0, &ahead.input(&services));
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + secs(130), &[1]))
    );
}

#[test]
fn two_addresses_serving_two_keys_need_both_records() {
    let t0 = Instant::now();
    let mut zone = Zone::new().with(OWNER, record(0), None);
    let mut manager = TlsaManager::new();
    // IPv4 serves the old key, IPv6 already the new one.
    let split = [service(
        "mail1",
        OWNER,
        &[(v4(1), Some(0)), (v6(1), Some(1))],
        &[],
    )];
    let p = manager.plan(t0, &zone.input(&split));
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(1))]);
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + HOLD, &[1]))
    );
    zone.apply(&p, t0);
    // Both records stay while each is served, however long.
    let p = manager.plan(t0 + secs(10_000), &zone.input(&split));
    assert!(!p.changes());
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
    // An address without a known key is not judged; the other one is.
    let half = [service(
        "mail1",
        OWNER,
        &[(v4(1), None), (v6(1), Some(1))],
        &[],
    )];
    let p = manager.plan(t0 + secs(10_001), &zone.input(&half));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Yes));
}

#[test]
fn a_new_key_on_one_address_holds_the_whole_node_out() {
    let t0 = Instant::now();
    let zone =
        Zone::new()
            .with(OWNER, record(0), None)
            .with(OWNER, record(1), Some(t0 - secs(100)));
    let mut manager = TlsaManager::new();
    let services = [service(
        "mail1",
        OWNER,
        &[(v4(1), Some(0)), (v6(1), Some(1)), (v6(2), Some(2))],
        &[],
    )];
    let p = manager.plan(t0, &zone.input(&services));
    // Key 1 is old enough in 20 s, key 2 (no record yet) in 120 s.
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + HOLD, &[1, 2]))
    );
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(2))]);
}

#[test]
fn foreign_records_are_never_touched_nor_counted() {
    let t0 = Instant::now();
    let foreign = [
        Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: vec![5; 32],
        },
        // The SHA-512 and full-certificate forms of key 0: not the managed form.
        Tlsa {
            usage: 3,
            selector: 1,
            matching: 2,
            data: vec![0; 64],
        },
        Tlsa {
            usage: 3,
            selector: 0,
            matching: 1,
            data: vec![0; 32],
        },
        // 3 1 1 with a digest of the wrong length: not ours to judge.
        Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0; 20],
        },
    ];
    let mut zone = Zone::new();
    for tlsa in &foreign {
        zone = zone.with(OWNER, tlsa.clone(), None);
    }
    let mut manager = TlsaManager::new();
    let services = [service("mail1", OWNER, &[(v4(1), Some(0))], &[])];
    let p = manager.plan(t0, &zone.input(&services));
    // None of the foreign records counts as the key's record.
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(0))]);
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + HOLD, &[0]))
    );
    zone.apply(&p, t0);
    // Nobody serves anything any more (first seen a year later: the
    // manager counts from then): only the managed record goes.
    let nobody = [service("mail1", OWNER, &[(v4(1), None)], &[])];
    let later = t0 + secs(365 * 86_400);
    let p = manager.plan(later, &zone.input(&nobody));
    assert!(p.remove.is_empty());
    let later = later + HOLD;
    let p = manager.plan(later, &zone.input(&nobody));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(0))]);
    zone.apply(&p, later);
    let left: Vec<Tlsa> = zone.rrsets[OWNER]
        .records
        .iter()
        .map(|p| p.tlsa.clone())
        .collect();
    assert_eq!(left, foreign.to_vec());
}

#[test]
fn without_a_known_key_a_node_is_not_published_and_nothing_is_added() {
    let t0 = Instant::now();
    let zone = Zone::new();
    let services = [service("mail1", OWNER, &[(v4(1), None)], &[])];
    let p = TlsaManager::new().plan(t0, &zone.input(&services));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Unknown));
    assert!(!p.changes());
    assert_eq!(p.wake, None);
    let no_address = [service("mail1", OWNER, &[], &[])];
    let p = TlsaManager::new().plan(t0, &zone.input(&no_address));
    assert_eq!(p.publish("mail1", OWNER), Some(&Publish::Unknown));
}

#[test]
fn the_hold_out_follows_the_longer_of_the_rrset_ttl_and_dns_ttl() {
    let t0 = Instant::now();
    let services = [service("mail1", OWNER, &[(v4(1), Some(0))], &[])];
    // Foreign records hold the RRset at 300 s: additions take that TTL.
    let mut zone = Zone::new().with(
        OWNER,
        Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: vec![5; 32],
        },
        None,
    );
    zone.rrsets.get_mut(OWNER).unwrap().ttl = Some(300);
    let p = plan(t0, &zone.input(&services), &LastServed::new());
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + secs(600), &[0]))
    );
    // An empty owner: dns.ttl.
    let p = plan(t0, &Zone::new().input(&services), &LastServed::new());
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + HOLD, &[0]))
    );
    // An RRset still at an older, shorter TTL: dns.ttl wins.
    let mut short = Zone::new().with(OWNER, record(0), Some(t0 - secs(100)));
    short.rrsets.get_mut(OWNER).unwrap().ttl = Some(10);
    let p = plan(t0, &short.input(&services), &LastServed::new());
    assert_eq!(
        p.publish("mail1", OWNER),
        Some(&hold_out_until(t0 + secs(20), &[0]))
    );
    assert_eq!(hold_out(TTL), HOLD);
}

#[test]
fn owners_compare_case_insensitively() {
    let t0 = Instant::now();
    let zone = Zone::new().with("_25._TCP.MX.Example.com.", record(0), None);
    let services = [service(
        "mail1",
        OWNER,
        &[(v4(1), Some(0)), (v6(1), Some(1))],
        &[],
    )];
    let p = TlsaManager::new().plan(t0, &zone.input(&services));
    assert_eq!(p.add, vec![(OWNER.to_owned(), record(1))]);
    assert!(p.remove.is_empty());
    assert!(p.publish("mail1", "_25._TCP.mx.example.com.").is_some());
}

#[test]
fn the_pure_plan_never_removes_on_a_guess() {
    let t0 = Instant::now() + secs(86_400);
    let zone = Zone::new()
        .with(OWNER, record(0), None)
        .with(OWNER, record(1), None);
    let services = [service("mail1", OWNER, &[(v4(1), Some(0))], &[])];
    // No memory of key 1: counted as served now.
    let p = plan(t0, &zone.input(&services), &LastServed::new());
    assert!(p.remove.is_empty());
    assert_eq!(p.wake, Some(t0 + HOLD));
    // A served key is kept even when memory says it was served long ago.
    let mut old = LastServed::new();
    old.insert((OWNER.to_owned(), key(0)), t0 - secs(86_000));
    old.insert((OWNER.to_owned(), key(1)), t0 - secs(86_000));
    let p = plan(t0, &zone.input(&services), &old);
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(1))]);
}

#[test]
fn an_owner_without_nodes_is_emptied_in_time() {
    // A node removed from the config: its owner is still listed.
    let t0 = Instant::now();
    let zone = Zone::new().with(OWNER, record(0), Some(t0 - secs(5000)));
    let mut manager = TlsaManager::new();
    let p = manager.plan(t0, &zone.input(&[]));
    assert!(p.remove.is_empty());
    let p = manager.plan(t0 + HOLD, &zone.input(&[]));
    assert_eq!(p.remove, vec![(OWNER.to_owned(), record(0))]);
}

#[test]
fn decisions_read_well() {
    let t0 = Instant::now();
    let decision = |publish| ServiceDecision {
        node: "mail1".to_owned(),
        owner: OWNER.to_owned(),
        publish,
    };
    assert_eq!(
        decision(Publish::Yes).detail(t0),
        "DANE: every key mail1 serves has had its TLSA record at _25._tcp.mx.example.com for twice the TTL"
    );
    assert_eq!(
        decision(hold_out_until(t0 + secs(95), &[0xab])).detail(t0),
        "DANE: mail1 held out for 95s more: the TLSA record of key abababababababab… at \
         _25._tcp.mx.example.com is not yet published for twice the TTL"
    );
    assert_eq!(
        decision(Publish::Unknown).detail(t0),
        "DANE: mail1 not published until a TLS handshake shows the key it serves at _25._tcp.mx.example.com"
    );
}

// ---------------------------------------------------------------------------
// Property: random event sequences never break the invariant.
// ---------------------------------------------------------------------------

/// The property's `dns.ttl`, and its RRset TTL at each owner: owner 1 has
/// foreign records at a longer TTL, so additions there take it.
const WORLD_DNS_TTL: u32 = 10;
const WORLD_TTLS: [u32; 2] = [10, 15];
const WORLD_OWNERS: [&str; 2] = ["_25._tcp.a.test.", "_25._tcp.b.test."];
/// (node, owner index, addresses): two nodes share owner 0.
const WORLD_SERVICES: [(&str, usize, usize); 3] = [("n0", 0, 2), ("n1", 0, 1), ("n2", 1, 2)];
const KEYS: u8 = 4;

#[derive(Clone, Debug)]
enum Event {
    /// Time passes.
    Advance(u64),
    /// A probe sees an address serve a key, `after` seconds after the last
    /// plan (when nothing changed in between, no plan ran).
    Serve {
        service: usize,
        address: usize,
        key: u8,
        after: u64,
    },
    /// The operator edits a node's `tlsa_next` (a bit per key).
    Next { service: usize, keys: u8 },
    /// The daemon restarts: the planner's memory is lost, and with `forget`
    /// the keys seen by the probes too.
    Restart { forget: bool },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1u64..=25).prop_map(Event::Advance),
        3 => (0..WORLD_SERVICES.len(), 0..2usize, 0..KEYS, 0..10u64)
            .prop_map(|(service, address, key, after)| Event::Serve { service, address, key, after }),
        1 => (0..WORLD_SERVICES.len(), 0..16u8).prop_map(|(service, keys)| Event::Next { service, keys }),
        1 => any::<bool>().prop_map(|forget| Event::Restart { forget }),
    ]
}

/// One version of an owner's managed keys, from an instant on.
type History = Vec<(Instant, BTreeSet<KeyDigest>)>;

struct World {
    now: Instant,
    zone: Zone,
    /// Per service and address, the key the probes saw.
    served: Vec<Vec<Option<KeyDigest>>>,
    next: Vec<BTreeSet<KeyDigest>>,
    history: [History; 2],
    manager: TlsaManager,
    /// The oracle's memory: until when each record was needed (served or
    /// listed), with the manager's rules, to check removals come on time.
    needed: BTreeMap<(String, KeyDigest), (Instant, bool)>,
}

impl World {
    fn new(initial_keys: &[Option<u8>], initial_records: [u8; 2]) -> Self {
        // Far enough from the process start that "forever ago" exists.
        let start = Instant::now() + secs(86_400);
        let mut zone = Zone::new();
        let mut history: [History; 2] = [Vec::new(), Vec::new()];
        for (i, owner) in WORLD_OWNERS.iter().enumerate() {
            // A foreign record at each owner, so its RRset has a TTL.
            zone = zone.with(
                owner,
                Tlsa {
                    usage: 2,
                    selector: 0,
                    matching: 1,
                    data: vec![0xee; 32],
                },
                None,
            );
            zone.rrsets.get_mut(*owner).unwrap().ttl = Some(WORLD_TTLS[i]);
            let mut set = BTreeSet::new();
            for k in 0..KEYS {
                if initial_records[i] & (1 << k) != 0 {
                    zone = zone.with(owner, record(k), None);
                    set.insert(key(k));
                }
            }
            // Unmarked records: there since "forever".
            history[i].push((start - secs(86_000), set));
        }
        let mut keys = initial_keys.iter();
        let served = WORLD_SERVICES
            .iter()
            .map(|(_, _, addresses)| {
                (0..*addresses)
                    .map(|_| keys.next().copied().flatten().map(key))
                    .collect()
            })
            .collect();
        World {
            now: start,
            zone,
            served,
            next: vec![BTreeSet::new(); WORLD_SERVICES.len()],
            history,
            manager: TlsaManager::new(),
            needed: BTreeMap::new(),
        }
    }

    fn services(&self) -> Vec<ServiceKeys> {
        WORLD_SERVICES
            .iter()
            .enumerate()
            .map(|(i, (node, owner, _))| ServiceKeys {
                node: (*node).to_owned(),
                owner: WORLD_OWNERS[*owner].to_owned(),
                served: self.served[i]
                    .iter()
                    .enumerate()
                    .map(|(a, k)| (v4(a as u8), *k))
                    .collect(),
                next: self.next[i].iter().copied().collect(),
            })
            .collect()
    }

    /// Twice the TTL, computed here rather than by the code under test.
    fn hold(owner: usize) -> Duration {
        secs(2 * u64::from(WORLD_TTLS[owner].max(WORLD_DNS_TTL)))
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Advance(s) => self.now += secs(*s),
            Event::Serve {
                service,
                address,
                key: k,
                after,
            } => {
                self.now += secs(*after);
                let addresses = &mut self.served[*service];
                let a = address % addresses.len();
                addresses[a] = Some(key(*k));
            }
            Event::Next {
                service,
                keys: bits,
            } => {
                self.next[*service] = (0..KEYS)
                    .filter(|k| bits & (1 << k) != 0)
                    .map(key)
                    .collect();
            }
            Event::Restart { forget } => {
                self.manager = TlsaManager::new();
                self.needed.clear();
                if *forget {
                    for addresses in &mut self.served {
                        addresses.iter_mut().for_each(|k| *k = None);
                    }
                }
            }
        }
    }

    /// The oracle's memory, updated like the manager's before it plans.
    fn remember(&mut self) {
        let mut served_now = BTreeSet::new();
        for (i, (_, owner, _)) in WORLD_SERVICES.iter().enumerate() {
            let owner = WORLD_OWNERS[*owner].to_owned();
            for k in self.served[i].iter().flatten() {
                served_now.insert((owner.clone(), *k));
            }
        }
        let present: BTreeSet<(String, KeyDigest)> = WORLD_OWNERS
            .iter()
            .flat_map(|o| self.zone.keys(o).into_iter().map(|k| ((*o).to_owned(), k)))
            .collect();
        self.needed
            .retain(|k, _| present.contains(k) || served_now.contains(k));
        for k in &served_now {
            self.needed.insert(k.clone(), (self.now, true));
        }
        for k in present.difference(&served_now) {
            let entry = self.needed.entry(k.clone()).or_insert((self.now, false));
            if entry.1 {
                *entry = (self.now, false);
            }
        }
    }

    /// One step: plan, check, apply the plan to the zone, check again.
    fn step(&mut self) -> Result<(), TestCaseError> {
        self.remember();
        let input = ManageInput {
            ttl: WORLD_DNS_TTL,
            rrsets: self.zone.rrsets.clone(),
            services: self.services(),
        };
        let plan = self.manager.plan(self.now, &input);

        for (node, owner, _) in &WORLD_SERVICES {
            let owner_name = WORLD_OWNERS[*owner];
            let needed: BTreeSet<KeyDigest> = WORLD_SERVICES
                .iter()
                .enumerate()
                .filter(|(_, s)| s.1 == *owner)
                .flat_map(|(j, _)| {
                    self.served[j]
                        .iter()
                        .flatten()
                        .chain(self.next[j].iter())
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            for (o, tlsa) in &plan.remove {
                if o == owner_name {
                    let Some(k) = tlsa.managed_digest() else {
                        return Err(TestCaseError::fail(format!(
                            "removed a foreign record {tlsa}"
                        )));
                    };
                    prop_assert!(
                        !needed.contains(&k),
                        "removed {tlsa}, which is served or listed"
                    );
                    // Nor before twice the TTL after it was last served.
                    if let Some((until, _)) = self.needed.get(&(owner_name.to_owned(), k)) {
                        prop_assert!(
                            self.now >= *until + Self::hold(*owner),
                            "removed {tlsa} too early"
                        );
                    }
                }
            }
            let decision = plan.publish(node, owner_name).cloned();
            if let Some(Publish::HoldOut { until, .. }) = &decision {
                prop_assert!(*until > self.now, "a hold-out already over");
            }
        }
        for (o, tlsa) in &plan.add {
            prop_assert!(
                !self.zone.keys(o).contains(&tlsa.managed_digest().unwrap()),
                "added {tlsa} twice"
            );
        }
        if let Some(wake) = plan.wake {
            prop_assert!(wake > self.now, "a wake-up in the past");
        }

        self.zone.apply(&plan, self.now);
        for (i, owner) in WORLD_OWNERS.iter().enumerate() {
            let keys = self.zone.keys(owner);
            if self.history[i].last().map(|(_, s)| s) != Some(&keys) {
                self.history[i].push((self.now, keys));
            }
        }

        // The invariant, judged on the RRset's history, not on the marks:
        // a node is published if and only if every key it serves was in
        // every version of its RRset a cache may still hold.
        for (i, (node, owner, _)) in WORLD_SERVICES.iter().enumerate() {
            let keys: BTreeSet<KeyDigest> = self.served[i].iter().flatten().copied().collect();
            let window_start = self.now - Self::hold(*owner);
            let history = &self.history[*owner];
            let cached = history.iter().enumerate().filter(|(v, (from, _))| {
                *from <= self.now
                    && history
                        .get(v + 1)
                        .is_none_or(|(next_from, _)| *next_from > window_start)
            });
            let covered = keys
                .iter()
                .all(|k| cached.clone().all(|(_, (_, set))| set.contains(k)));
            let decision = plan.publish(node, WORLD_OWNERS[*owner]).cloned();
            match decision {
                Some(Publish::Yes) => prop_assert!(
                    !keys.is_empty() && covered,
                    "{node} published while a cached RRset lacks one of its keys"
                ),
                Some(Publish::HoldOut { .. }) => prop_assert!(
                    !keys.is_empty() && !covered,
                    "{node} held out although every cached RRset matches it"
                ),
                Some(Publish::Unknown) => prop_assert!(keys.is_empty()),
                None => return Err(TestCaseError::fail(format!("no decision for {node}"))),
            }
        }

        // Removals come on time: a record nobody needs is gone twice the TTL
        // after it was last needed.
        for (i, owner) in WORLD_OWNERS.iter().enumerate() {
            for k in self.zone.keys(owner) {
                let needed_now = WORLD_SERVICES.iter().enumerate().any(|(j, s)| {
                    s.1 == i && (self.served[j].contains(&Some(k)) || self.next[j].contains(&k))
                });
                if needed_now {
                    continue;
                }
                let until = self
                    .needed
                    .get(&((*owner).to_owned(), k))
                    .map(|(at, _)| *at)
                    .unwrap_or(self.now);
                prop_assert!(
                    self.now < until + Self::hold(i),
                    "record {} at {owner} kept past its time",
                    record(k.0[0])
                );
            }
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Nothing written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the nodes serve, whenever the operator edits `tlsa_next` and
    /// however often the daemon restarts, a node is published exactly when
    /// every key it serves was in every TLSA RRset a cache may still hold,
    /// served and listed records are never removed, foreign ones never, and
    /// the others go on time.
    #[test]
    fn random_rollovers_never_break_the_invariant(
        initial_keys in prop::collection::vec(prop::option::of(0..KEYS), 5),
        initial_records in (0..16u8, 0..16u8),
        events in prop::collection::vec(event(), 1..80),
    ) {
        let mut world = World::new(&initial_keys, [initial_records.0, initial_records.1]);
        world.step()?;
        for event in &events {
            world.apply(event);
            world.step()?;
        }
    }
}
