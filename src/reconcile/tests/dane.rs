//! `dane = "manage"` in the reconciler, under paused time against the fake
//! primary: the records and marks it writes, the hold-out of a node whose
//! key changed, the removal of a record no longer served, pre-publication,
//! and the pool rules when every node rolls at once.

use std::time::SystemTime;

use super::*;
use crate::dane::{KeyDigest, Tlsa, TlsaMark};
use crate::reconcile::{ManagedService, TlsaShape};

/// `dns.ttl` of [`setup`]: the hold-out is twice that.
const HOLD: Duration = Duration::from_secs(120);

fn owner(n: u8) -> String {
    format!("_25._tcp.mail{n}.example.com.")
}

fn key(n: u8) -> KeyDigest {
    KeyDigest([n; 32])
}

/// The MX pool `@` over mail1..=n.
fn mx(n: u8) -> Vec<PoolShape> {
    vec![PoolShape {
        label: "@".into(),
        owner: ZONE.into(),
        publish: Publish::Mx { preference: 10 },
        all_down: AllDown::PublishAll,
        members: (1..=n).map(member).collect(),
    }]
}

/// Every node of [`mx`] managed at its owner; `next` per node.
fn shape(n: u8, next: &[(u8, u8)]) -> TlsaShape {
    TlsaShape {
        services: (1..=n)
            .map(|i| ManagedService {
                node: format!("mail{i}").into(),
                owner: owner(i),
                pools: vec!["@".into()],
                addresses: vec![ip(10 + i)],
                next: next
                    .iter()
                    .filter(|(node, _)| *node == i)
                    .map(|(_, k)| key(*k))
                    .collect(),
            })
            .collect(),
        dane: true,
    }
}

/// A wall clock that moves with paused time.
fn anchored() -> WallClock {
    let (at, wall) = (Instant::now(), SystemTime::now());
    Arc::new(move |now: Instant| wall + now.saturating_duration_since(at))
}

fn start(n: u8, next: &[(u8, u8)], fake: Fake) -> Harness {
    let shape = Arc::new(shape(n, next));
    Harness::start_with(
        mx(n),
        Writer::new(Mode::Write, None, "t", "h"),
        fake,
        move |r| {
            r.managing(shape, None, Duration::from_secs(2))
                .with_wall_clock(anchored())
        },
    )
}

/// mail1 and mail2 up, serving keys 1 and 2 whose records are there, with
/// `next` per node.
async fn running(next: &[(u8, u8)]) -> Harness {
    let h = start(2, next, seeded(2));
    for n in 1..=2 {
        h.serve(n, n);
        h.set("@", n, State::Up);
    }
    sleep(Duration::from_millis(100)).await;
    h
}

/// mail1..=n's address records (an MX target needs one) and `3 1 1`
/// records at their owners, unmarked (published long before pigeon-dns
/// managed them), for key n of each node.
fn seeded(n: u8) -> Fake {
    let fake = Fake::default();
    for i in 1..=n {
        fake.state().zone.insert(
            RRsetKey::new(&format!("mail{i}.example.com."), RType::A),
            RRset {
                ttl: 60,
                records: [Rdata::address(ip(10 + i))].into(),
            },
        );
        fake.state().zone.insert(
            RRsetKey::new(&owner(i), RType::Tlsa),
            RRset {
                ttl: 60,
                records: [Tlsa::dane_ee(key(i)).rdata()].into(),
            },
        );
    }
    fake
}

impl Harness {
    fn serve(&self, n: u8, k: u8) {
        let _ = self.inbox.send(Input::Event(Event::ServedKey {
            generation: 0,
            target: TargetId::new("@", &format!("mail{n}"), ip(10 + n)),
            key: key(k),
        }));
    }

    fn mx(&self) -> Vec<String> {
        self.fake.records(ZONE, RType::Mx)
    }

    /// The `3 1 1` keys at mail n's owner.
    fn keys(&self, n: u8) -> Vec<KeyDigest> {
        let state = self.fake.state();
        state
            .zone
            .get(&RRsetKey::new(&owner(n), RType::Tlsa))
            .map(|s| {
                s.records
                    .iter()
                    .filter_map(|r| Tlsa::of_rdata(r)?.managed_digest())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn marks(&self, n: u8) -> Vec<TlsaMark> {
        self.fake
            .records(&owner(n), RType::Txt)
            .iter()
            .filter_map(|t| TlsaMark::parse(t.trim_matches('"')))
            .collect()
    }
}

fn mx_of(nodes: &[u8]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| format!("10 mail{n}.example.com."))
        .collect()
}

/// Polls (1 s of paused time a step) until `done`; returns when.
async fn until(h: &Harness, limit: Duration, done: impl Fn(&Harness) -> bool) -> Instant {
    let end = Instant::now() + limit;
    while !done(h) {
        assert!(
            Instant::now() < end,
            "not within {limit:?}: mx {:?}",
            h.mx()
        );
        sleep(Duration::from_millis(250)).await;
    }
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn a_new_key_holds_its_node_out_twice_the_ttl_and_the_old_record_goes_after() {
    let h = running(&[]).await;
    assert_eq!(
        h.mx(),
        mx_of(&[1, 2]),
        "records there long ago: no hold-out"
    );
    assert!(h.marks(1).is_empty(), "nothing added, nothing marked");

    // mail1 renews its certificate with a new key.
    let swapped = Instant::now();
    h.serve(1, 3);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(h.mx(), mx_of(&[2]), "held out at once");
    assert_eq!(h.keys(1), [key(1), key(3)], "the new record beside the old");
    let marks = h.marks(1);
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].digest, key(3));

    let back = until(&h, HOLD * 2, |h| h.mx() == mx_of(&[1, 2])).await;
    let held = back - swapped;
    // The mark is stamped a request timeout ahead, rounded up to the second.
    assert!(
        held >= HOLD && held <= HOLD + Duration::from_secs(4),
        "{held:?}"
    );
    // The old key's record went twice the TTL after mail1 stopped serving it.
    assert_eq!(h.keys(1), [key(3)]);
    let deleted = Tlsa::dane_ee(key(1)).rdata();
    let gone = h
        .fake
        .record_updates()
        .into_iter()
        .find(|(_, u, r)| {
            r.is_ok()
                && u.changes
                    .iter()
                    .any(|c| matches!(c, Change::Delete { rdata, .. } if *rdata == deleted))
        })
        .map(|(at, _, _)| at - swapped);
    assert!(
        gone.is_some_and(|g| g >= HOLD && g <= HOLD + Duration::from_millis(50)),
        "{gone:?}"
    );
    assert_eq!(h.marks(1).len(), 1, "key 3's mark stays with its record");
    assert_eq!(h.keys(2), [key(2)], "mail2's owner untouched");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pre_published_key_switches_without_leaving_the_pool() {
    let h = running(&[(1, 3)]).await;
    assert_eq!(h.keys(1), [key(1), key(3)], "tlsa_next published ahead");
    assert_eq!(h.mx(), mx_of(&[1, 2]));
    sleep(HOLD + Duration::from_secs(5)).await;
    let updates = h.fake.record_updates().len();
    h.serve(1, 3);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(h.mx(), mx_of(&[1, 2]), "never left the MX");
    assert_eq!(h.fake.record_updates().len(), updates, "nothing to change");
    // Key 1 goes twice the TTL after its last use.
    until(&h, HOLD * 2, |h| h.keys(1) == [key(3)]).await;
    assert_eq!(h.mx(), mx_of(&[1, 2]));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn when_every_node_rolls_at_once_the_pool_is_never_empty() {
    let h = running(&[]).await;
    h.serve(1, 3);
    h.serve(2, 4);
    sleep(Duration::from_millis(100)).await;
    // Both held out: all_down = "publish-all" keeps them published.
    assert_eq!(h.mx(), mx_of(&[1, 2]));
    assert_eq!(h.metrics.pool_all_down.with_label_values(&["@"]).get(), 1.0);
    assert_eq!(h.keys(1), [key(1), key(3)]);
    until(&h, HOLD * 2, |h| {
        h.metrics.pool_all_down.with_label_values(&["@"]).get() == 0.0
    })
    .await;
    assert_eq!(h.mx(), mx_of(&[1, 2]));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn foreign_records_at_the_owner_are_left_alone() {
    let fake = seeded(1);
    let foreign = Tlsa {
        usage: 2,
        selector: 0,
        matching: 1,
        data: vec![9; 32],
    };
    {
        let mut state = fake.state();
        let set = state
            .zone
            .get_mut(&RRsetKey::new(&owner(1), RType::Tlsa))
            .unwrap();
        set.records.insert(foreign.rdata());
        set.ttl = 300;
        state.zone.insert(
            RRsetKey::new(&owner(1), RType::Txt),
            RRset {
                ttl: 300,
                records: [Rdata::txt("v=foreign")].into(),
            },
        );
    }
    let h = start(1, &[], fake);
    h.serve(1, 5);
    h.set("@", 1, State::Up);
    sleep(Duration::from_millis(100)).await;
    // Key 1's record is not served any more; key 5's is added with the
    // RRset's own TTL (the hold-out is then twice 300 s).
    let state_ttl = h
        .fake
        .state()
        .zone
        .get(&RRsetKey::new(&owner(1), RType::Tlsa))
        .map(|s| s.ttl);
    assert_eq!(state_ttl, Some(300));
    sleep(Duration::from_secs(2 * 300 + 10)).await;
    let records = h.fake.records(&owner(1), RType::Tlsa);
    assert!(records.contains(&foreign.to_string()), "{records:?}");
    assert_eq!(h.keys(1), [key(5)]);
    assert!(
        h.fake
            .records(&owner(1), RType::Txt)
            .contains(&"\"v=foreign\"".to_owned())
    );
    h.stop().await;
}
