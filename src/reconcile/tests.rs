//! The reconciler's timing and fencing under tokio's paused time, against a
//! fake primary that applies RFC 2136 prerequisites and changes exactly and
//! can be slow, down, or refuse names.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::core::desired::{AllDown, Member, Publish};
use crate::core::drain::ALL_POOLS;
use crate::core::health::State;
use crate::core::lease::LeaseRecord;
use crate::core::records::{RRset, RType};
use crate::dns::update::{Change, Prerequisite, Update};
use crate::events::Event;

mod dane;

const ZONE: &str = "example.com.";
const LEASE: &str = "_pigeon-dns-lease.example.com.";
const RESYNC: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------
// The fake primary
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct FakeState {
    zone: BTreeMap<RRsetKey, RRset>,
    /// Every UPDATE received, with when (applied or not).
    updates: Vec<(Instant, Update, Result<(), String>)>,
    reads: usize,
    /// Any UPDATE touching one of these names is REFUSED whole (as BIND's
    /// update-policy does).
    refuse: BTreeSet<String>,
    /// Every request fails with a timeout.
    down: bool,
    /// Each request takes this long.
    delay: Duration,
}

#[derive(Clone, Debug, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    fn records(&self, name: &str, rtype: RType) -> Vec<String> {
        let state = self.state();
        let mut out: Vec<String> = state
            .zone
            .get(&RRsetKey::new(name, rtype))
            .map(|s| s.records.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// UPDATEs that change records other than the lease.
    fn record_updates(&self) -> Vec<(Instant, Update, Result<(), String>)> {
        self.state()
            .updates
            .iter()
            .filter(|(_, u, _)| u.changes.iter().any(|c| c.key().rtype != RType::Txt))
            .cloned()
            .collect()
    }

    fn lease_updates(&self) -> usize {
        self.state()
            .updates
            .iter()
            .filter(|(_, u, _)| u.changes.iter().any(|c| c.key().rtype == RType::Txt))
            .count()
    }

    fn set_lease(&self, record: &LeaseRecord) {
        let mut state = self.state();
        state.zone.insert(
            RRsetKey::new(LEASE, RType::Txt),
            RRset {
                ttl: 0,
                records: [record.rdata()].into(),
            },
        );
    }

    fn timeout() -> DnsError {
        DnsError::Timeout {
            server: "fake".into(),
            timeout: Duration::from_secs(2),
        }
    }

    fn rcode(rcode: ResponseCode) -> DnsError {
        DnsError::Rcode {
            server: "fake".into(),
            rcode,
        }
    }
}

impl Primary for Fake {
    fn server(&self) -> &str {
        "fake:53"
    }

    async fn read_name(&self, name: &str, types: &[RType]) -> Result<NameRead, DnsError> {
        let delay = self.state().delay;
        sleep(delay).await;
        let mut state = self.state();
        if state.down {
            return Err(Self::timeout());
        }
        state.reads += 1;
        let mut read = NameRead::default();
        for &rtype in types {
            let key = RRsetKey::new(name, rtype);
            read.sets
                .insert(rtype, state.zone.get(&key).cloned().unwrap_or_default());
        }
        Ok(read)
    }

    async fn update(&self, update: &Update) -> Result<(), DnsError> {
        let delay = self.state().delay;
        sleep(delay).await;
        let mut state = self.state();
        let result = apply(&mut state, update);
        let text = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        state.updates.push((Instant::now(), update.clone(), text));
        result
    }

    /// One more than the UPDATEs applied, as BIND numbers a new zone's changes.
    async fn soa_serial(&self) -> Result<u32, DnsError> {
        let state = self.state();
        if state.down {
            return Err(Self::timeout());
        }
        let applied = state.updates.iter().filter(|(_, _, r)| r.is_ok()).count();
        Ok(1 + applied as u32)
    }
}

/// RFC 2136 §3.2 (prerequisites, all or nothing) and §3.4 (changes).
fn apply(state: &mut FakeState, update: &Update) -> Result<(), DnsError> {
    if state.down {
        return Err(Fake::timeout());
    }
    if update
        .changes
        .iter()
        .any(|c| state.refuse.contains(&c.key().name))
    {
        return Err(Fake::rcode(ResponseCode::Refused));
    }
    for prerequisite in &update.prerequisites {
        match prerequisite {
            Prerequisite::RRset { key, records } => {
                let held = state.zone.get(key).map(|s| &s.records);
                let held_empty = held.is_none_or(BTreeSet::is_empty);
                if records.is_empty() && !held_empty {
                    return Err(Fake::rcode(ResponseCode::YXRRSet));
                }
                if !records.is_empty() && held != Some(records) {
                    return Err(Fake::rcode(ResponseCode::NXRRSet));
                }
            }
            Prerequisite::Exists(key) => {
                if state.zone.get(key).is_none_or(|s| s.records.is_empty()) {
                    return Err(Fake::rcode(ResponseCode::NXRRSet));
                }
            }
        }
    }
    for change in &update.changes {
        match change {
            Change::Add { key, rdata, ttl } => {
                let set = state.zone.entry(key.clone()).or_default();
                set.ttl = *ttl;
                set.records.insert(rdata.clone());
            }
            Change::Delete { key, rdata } => {
                if let Some(set) = state.zone.get_mut(key) {
                    set.records.remove(rdata);
                }
            }
        }
    }
    state.zone.retain(|_, s| !s.records.is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------
// The setup
// ---------------------------------------------------------------------------

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn member(n: u8) -> Member {
    Member {
        node: format!("mail{n}").into(),
        host: format!("mail{n}.example.com."),
        addresses: vec![ip(10 + n)],
        drain: false,
    }
}

/// `imap` and `pop` A pools over nodes mail1..=n.
fn pools(n: u8) -> Vec<PoolShape> {
    ["imap", "pop"]
        .into_iter()
        .map(|name| PoolShape {
            label: name.into(),
            owner: format!("{name}.example.com."),
            publish: Publish::Address,
            all_down: AllDown::PublishAll,
            members: (1..=n).map(member).collect(),
        })
        .collect()
}

fn setup() -> ZoneSetup {
    ZoneSetup {
        zone: ZONE.into(),
        ttl: 60,
        resync_interval: RESYNC,
        max_records: 100,
    }
}

fn ha(lease_time: Duration) -> LeaseSetup {
    LeaseSetup {
        zone: ZONE.into(),
        name: LEASE.into(),
        lease_time,
        instance: "dns1".into(),
    }
}

struct Harness {
    fake: Fake,
    inbox: mpsc::UnboundedSender<Input<Fake>>,
    shutdown: CancellationToken,
    metrics: Metrics,
    board: Arc<Board>,
    task: JoinHandle<()>,
}

impl Harness {
    fn start(pools: Vec<PoolShape>, writer: Writer, fake: Fake) -> Self {
        Self::start_with(pools, writer, fake, |r| r)
    }

    /// [`Harness::start`], the reconciler adjusted by `tweak` before it runs.
    fn start_with(
        pools: Vec<PoolShape>,
        writer: Writer,
        fake: Fake,
        tweak: impl FnOnce(ZoneReconciler<Fake>) -> ZoneReconciler<Fake>,
    ) -> Self {
        let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
        let board = Arc::new(Board::default());
        let targets = pools.iter().map(|p| p.members.len()).sum();
        let reconciler = ZoneReconciler::new(
            setup(),
            Arc::new(Shape::new(pools)),
            fake.clone(),
            writer,
            metrics.clone(),
            board.clone(),
            HashMap::new(),
            targets,
        );
        let reconciler = tweak(reconciler);
        let (inbox, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(reconciler.run(rx, shutdown.clone()));
        Self {
            fake,
            inbox,
            shutdown,
            metrics,
            board,
            task,
        }
    }

    fn plain(pools: Vec<PoolShape>) -> Self {
        Self::start(
            pools,
            Writer::new(Mode::Write, None, "t1", "host"),
            Fake::default(),
        )
    }

    fn event(&self, generation: u64, pool: &str, n: u8, state: State) {
        let target = TargetId::new(pool, &format!("mail{n}"), ip(10 + n));
        let _ = self.inbox.send(Input::Event(Event::Transition {
            generation,
            target,
            state,
        }));
    }

    fn set(&self, pool: &str, n: u8, state: State) {
        self.event(0, pool, n, state);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

fn a(n: u8) -> String {
    ip(10 + n).to_string()
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_lone_transition_reaches_the_primary_after_the_quiet_time_only() {
    let h = Harness::plain(pools(2));
    sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    h.set("imap", 1, State::Up);
    sleep(Duration::from_millis(100)).await;
    let updates = h.fake.record_updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let waited = updates[0].0 - t0;
    assert!(
        waited >= task::COALESCE_QUIET && waited < task::COALESCE_QUIET * 2,
        "{waited:?}"
    );
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_transitions_goes_out_as_one_update() {
    let h = Harness::plain(pools(4));
    sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    for (n, after) in [(1, 0), (2, 5), (3, 9), (4, 18)] {
        sleep(Duration::from_millis(after) - (Instant::now() - t0)).await;
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    sleep(Duration::from_millis(200)).await;
    let updates = h.fake.record_updates();
    assert_eq!(updates.len(), 1, "one UPDATE for the burst: {updates:?}");
    assert!(updates[0].0 - t0 <= task::COALESCE_MAX + Duration::from_millis(1));
    assert_eq!(h.fake.records("pop.example.com.", RType::A).len(), 4);
    h.stop().await;
}

impl Harness {
    fn falling(&self, pool: &str, n: u8, within: Option<Duration>) {
        let target = TargetId::new(pool, &format!("mail{n}"), ip(10 + n));
        let _ = self.inbox.send(Input::Event(Event::Falling {
            generation: 0,
            target,
            within,
        }));
    }
}

/// Both pools up on mail1 and mail2, published.
async fn both_up(h: &Harness) {
    for n in [1, 2] {
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    sleep(Duration::from_millis(100)).await;
}

#[tokio::test(start_paused = true)]
async fn a_node_leaves_its_pools_in_one_update_whatever_order_they_decide_in() {
    let h = Harness::plain(pools(2));
    both_up(&h).await;
    let before = h.fake.record_updates().len();
    // pop sees mail2 fail and will decide within 100 ms; imap decides first.
    h.falling("pop", 2, Some(Duration::from_millis(100)));
    sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    h.set("imap", 2, State::Down);
    sleep(Duration::from_millis(60)).await;
    assert_eq!(h.fake.record_updates().len(), before, "held for pop");
    h.set("pop", 2, State::Down);
    sleep(Duration::from_millis(100)).await;
    let updates = h.fake.record_updates();
    assert_eq!(updates.len(), before + 1, "one UPDATE: {updates:?}");
    let (at, update, _) = &updates[before];
    assert_eq!(update.changes.len(), 2, "{update:?}");
    // Sent once pop decided, not at the end of its window.
    assert!(*at - t0 < Duration::from_millis(60 + 15), "{:?}", *at - t0);
    assert_eq!(h.fake.records("pop.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lone_failure_and_a_recovered_sibling_hold_nothing() {
    let h = Harness::plain(pools(2));
    both_up(&h).await;
    let before = h.fake.record_updates().len();
    // Another node falling does not hold mail2's removal...
    h.falling("pop", 1, Some(Duration::from_millis(400)));
    // ...nor does a sibling that recovered.
    h.falling("pop", 2, Some(Duration::from_millis(400)));
    h.falling("pop", 2, None);
    sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    h.set("imap", 2, State::Down);
    sleep(Duration::from_millis(50)).await;
    let updates = h.fake.record_updates();
    assert_eq!(updates.len(), before + 1, "{updates:?}");
    assert!(updates[before].0 - t0 < task::COALESCE_QUIET * 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_sibling_that_never_decides_holds_the_removal_no_longer_than_it_said() {
    let h = Harness::plain(pools(2));
    both_up(&h).await;
    let before = h.fake.record_updates().len();
    h.falling("pop", 2, Some(Duration::from_millis(150)));
    let t0 = Instant::now();
    h.set("imap", 2, State::Down);
    sleep(Duration::from_millis(400)).await;
    let updates = h.fake.record_updates();
    assert_eq!(updates.len(), before + 1, "{updates:?}");
    let waited = updates[before].0 - t0;
    assert!(
        (Duration::from_millis(150)..Duration::from_millis(160)).contains(&waited),
        "{waited:?}"
    );
    // And never longer than the cap, whatever a sibling says.
    h.set("imap", 2, State::Up);
    sleep(Duration::from_millis(100)).await;
    h.falling("pop", 1, Some(Duration::from_secs(5)));
    let t1 = Instant::now();
    h.set("imap", 1, State::Down);
    sleep(Duration::from_secs(1)).await;
    let updates = h.fake.record_updates();
    let waited = updates.last().map(|u| u.0 - t1).unwrap_or_default();
    assert!(
        waited <= task::SIBLINGS_MAX + Duration::from_millis(1),
        "{waited:?}"
    );
    assert!(
        waited >= task::SIBLINGS_MAX - Duration::from_millis(10),
        "{waited:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_primary_is_retried_with_doubling_backoff_capped_at_resync() {
    let fake = Fake::default();
    fake.state().down = true;
    let h = Harness::start(pools(1), Writer::new(Mode::Write, None, "t", "h"), fake);
    // Count the reads that failed: one per attempt (the view cannot be read).
    let mut attempts = Vec::new();
    let t0 = Instant::now();
    let mut seen = 0;
    while Instant::now() - t0 < Duration::from_secs(12) {
        sleep(Duration::from_millis(5)).await;
        let failures = h
            .metrics
            .dns_updates_total
            .with_label_values(&["example.com", "timeout"])
            .get();
        if failures as usize > seen {
            seen = failures as usize;
            attempts.push((Instant::now() - t0).as_millis() / 10 * 10);
        }
    }
    // 0, +250 ms, +500 ms, +1 s, +2 s, then every 4 s (resync_interval).
    assert_eq!(&attempts[..7], [0, 250, 750, 1750, 3750, 7750, 11750]);
    // Back: it converges at the next attempt.
    h.fake.state().down = false;
    h.set("imap", 1, State::Up);
    sleep(RESYNC + Duration::from_millis(100)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn drift_is_repaired_at_the_next_resync() {
    let h = Harness::plain(pools(1));
    h.set("imap", 1, State::Up);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.fake.state().zone.clear();
    sleep(RESYNC).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

// ---------------------------------------------------------------------------
// Refusals hold back nothing else (issue: a refused record delayed every failover)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_refused_rrset_holds_back_no_other_change_and_retries_on_its_own_backoff() {
    let fake = Fake::default();
    fake.state().refuse.insert("pop.example.com.".into());
    let h = Harness::start(pools(2), Writer::new(Mode::Write, None, "t", "h"), fake);
    sleep(Duration::from_millis(50)).await;
    h.set("imap", 1, State::Up);
    h.set("pop", 1, State::Up);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    assert!(h.fake.records("pop.example.com.", RType::A).is_empty());
    // While pop's retry waits, a failover in imap goes out at once.
    let t0 = Instant::now();
    h.set("imap", 2, State::Up);
    sleep(Duration::from_millis(20)).await;
    let last = h.fake.record_updates().last().cloned().unwrap();
    assert!(last.2.is_ok(), "{last:?}");
    assert!(
        last.0 - t0 <= Duration::from_millis(5),
        "waited {:?}",
        last.0 - t0
    );
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1), a(2)]);
    // pop is retried alone, after 250 ms, then 500 ms, ...
    let pop_attempts = |fake: &Fake| {
        fake.state()
            .updates
            .iter()
            .filter(|(_, u, r)| {
                r.is_err() && u.changes.iter().all(|c| c.key().name == "pop.example.com.")
            })
            .map(|(at, _, _)| *at)
            .collect::<Vec<_>>()
    };
    sleep(Duration::from_secs(2)).await;
    let attempts = pop_attempts(&h.fake);
    let gaps: Vec<u128> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() / 10 * 10)
        .collect();
    assert!(gaps.starts_with(&[250, 500]), "{gaps:?}");
    // Granted at last: it lands at its next retry.
    h.fake.state().refuse.clear();
    sleep(RESYNC).await;
    assert_eq!(h.fake.records("pop.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pool_refused_on_its_own_keeps_readyz_steady() {
    let fake = Fake::default();
    fake.state().refuse.insert("pop.example.com.".into());
    let h = Harness::start(pools(2), Writer::new(Mode::Write, None, "t", "h"), fake);
    sleep(Duration::from_millis(50)).await;
    for n in 1..=2 {
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    // Ready at every moment over three resyncs, pop's retries refused
    // throughout: the primary takes imap, so it is not failing.
    let mut seen = Vec::new();
    for _ in 0..(3 * RESYNC.as_millis() / 250) {
        sleep(Duration::from_millis(250)).await;
        seen.push(h.board.is_ready(RESYNC));
    }
    assert!(seen.iter().all(|&ready| ready), "{seen:?}");
    assert!(h.fake.records("pop.example.com.", RType::A).is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_update_larger_than_a_dns_message_is_split_and_every_record_lands() {
    // 3,000 addresses in one RRset (no size limit at this primary): one
    // UPDATE would exceed 65,535 bytes.
    let members: Vec<Member> = (0..3000u32)
        .map(|i| Member {
            node: format!("n{i}").into(),
            host: format!("n{i}.example.com."),
            addresses: vec![IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8 + 1])],
            drain: false,
        })
        .collect();
    let pool = PoolShape {
        label: "imap".into(),
        owner: "imap.example.com.".into(),
        publish: Publish::Address,
        all_down: AllDown::PublishAll,
        members: members.clone(),
    };
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let fake = Fake::default();
    let health = members
        .iter()
        .map(|m| (TargetId::new("imap", &m.node, m.addresses[0]), State::Up))
        .collect();
    let mut zone = ZoneReconciler::new(
        ZoneSetup {
            max_records: 0,
            ..setup()
        },
        Arc::new(Shape::new(vec![pool])),
        fake.clone(),
        Writer::new(Mode::Write, None, "t", "h"),
        metrics,
        Arc::new(Board::default()),
        health,
        3000,
    );
    let outcome = zone.pass(Instant::now()).await.unwrap();
    assert_eq!((outcome.applied, outcome.blocked), (3000, 0));
    assert_eq!(fake.records("imap.example.com.", RType::A).len(), 3000);
    let updates = fake.record_updates();
    assert!(updates.len() > 1, "one UPDATE cannot hold it");
    for (_, update, result) in &updates {
        assert!(result.is_ok());
        let bytes = update.to_message().unwrap().to_vec().unwrap().len();
        assert!(bytes <= u16::MAX as usize - 1024, "{bytes} bytes");
    }
}

// ---------------------------------------------------------------------------
// Fencing (issue: a reconcile that outlasts the lease wrote without a fence)
// ---------------------------------------------------------------------------

fn lease_prerequisite(update: &Update) -> Option<&BTreeSet<Rdata>> {
    update.prerequisites.iter().find_map(|p| match p {
        Prerequisite::RRset { key, records } if key.name == LEASE => Some(records),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn every_update_of_records_carries_the_lease_even_after_it_expired_locally() {
    let lease_time = Duration::from_secs(3);
    let h = Harness::start(
        pools(3),
        Writer::new(Mode::Write, Some(ha(lease_time)), "tok1", "h"),
        Fake::default(),
    );
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.metrics
            .lease_held
            .with_label_values(&["example.com"])
            .get(),
        1.0,
        "the free lease is taken"
    );
    // The primary turns slow: each request takes 2 s, so a pass (several
    // reads, then the UPDATE) outlasts the lease time.
    h.fake.state().delay = Duration::from_secs(2);
    for n in 1..=3 {
        h.set("imap", n, State::Up);
    }
    sleep(Duration::from_secs(20)).await;
    let updates = h.fake.record_updates();
    assert!(!updates.is_empty());
    for (_, update, _) in &updates {
        let fence = lease_prerequisite(update)
            .unwrap_or_else(|| panic!("an UPDATE of records without the lease: {update:?}"));
        let lease = LeaseRecord::parse(&fence.iter().next().unwrap().txt_text().unwrap()).unwrap();
        assert_eq!(lease.token.as_deref(), Some("tok1"));
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_writer_whose_lease_was_taken_during_a_slow_pass_changes_nothing() {
    let lease_time = Duration::from_secs(3);
    let h = Harness::start(
        pools(1),
        Writer::new(Mode::Write, Some(ha(lease_time)), "tok1", "h"),
        Fake::default(),
    );
    sleep(Duration::from_millis(100)).await;
    h.fake.state().delay = Duration::from_millis(1500);
    h.set("imap", 1, State::Up);
    // While the pass reads, another instance takes the lease and keeps
    // renewing it.
    sleep(Duration::from_millis(500)).await;
    let rival = {
        let fake = h.fake.clone();
        tokio::spawn(async move {
            for seq in 99.. {
                fake.set_lease(&LeaseRecord {
                    holder: "dns2".into(),
                    token: Some("other".into()),
                    expires: 0,
                    seq,
                });
                sleep(Duration::from_secs(1)).await;
            }
        })
    };
    sleep(Duration::from_secs(10)).await;
    rival.abort();
    assert!(
        h.fake.records("imap.example.com.", RType::A).is_empty(),
        "a fenced UPDATE must not apply once the lease changed hands"
    );
    assert!(
        h.fake.record_updates().iter().all(|(_, _, r)| r.is_err()),
        "every attempt was refused by its fence"
    );
    assert_eq!(
        h.metrics
            .lease_held
            .with_label_values(&["example.com"])
            .get(),
        0.0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn two_instances_taking_a_free_lease_at_once_count_one_take_and_one_lost_swap() {
    let fake = Fake::default();
    fake.state().delay = Duration::from_millis(10);
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let series = metrics.zone(ZONE);
    let mut one = Writer::new(Mode::Write, Some(ha(Duration::from_secs(3))), "tok1", "h1");
    let mut two = Writer::new(
        Mode::Write,
        Some(LeaseSetup {
            instance: "dns2".into(),
            ..ha(Duration::from_secs(3))
        }),
        "tok2",
        "h2",
    );
    // Both read the free lease, both swap: the primary's compare-and-swap
    // lets the first in.
    let now = Instant::now();
    let (a, b) = tokio::join!(one.tick(&fake, &series, now), two.tick(&fake, &series, now));
    let took = [a.unwrap().took, b.unwrap().took];
    assert_eq!(took.iter().filter(|&&t| t).count(), 1, "{took:?}");
    let count = |op: &str, result: &str| {
        metrics
            .lease_operations_total
            .with_label_values(&["example.com", op, result])
            .get()
    };
    assert_eq!((count("take", "ok"), count("take", "lost")), (1, 1));
    assert_eq!(count("take", "error"), 0);
    let now = Instant::now();
    assert_ne!(one.status(now).0, two.status(now).0);
}

#[tokio::test(start_paused = true)]
async fn a_standby_never_writes_and_takes_over_once_the_lease_is_unchanged_for_a_lease_time() {
    let lease_time = Duration::from_secs(3);
    let fake = Fake::default();
    fake.set_lease(&LeaseRecord {
        holder: "dns2".into(),
        token: Some("other".into()),
        expires: 0,
        seq: 7,
    });
    let h = Harness::start(
        pools(1),
        Writer::new(Mode::Write, Some(ha(lease_time)), "tok1", "h"),
        fake,
    );
    h.set("imap", 1, State::Up);
    sleep(lease_time - Duration::from_millis(100)).await;
    assert!(h.fake.record_updates().is_empty(), "a standby wrote");
    assert_eq!(
        h.metrics
            .lease_held
            .with_label_values(&["example.com"])
            .get(),
        0.0
    );
    sleep(lease_time).await;
    assert_eq!(
        h.metrics
            .lease_held
            .with_label_values(&["example.com"])
            .get(),
        1.0,
        "took the stale lease"
    );
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

// ---------------------------------------------------------------------------
// Dry run (issue: a dry run took the lease and froze DNS)
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_dry_run_never_takes_renews_or_releases_a_lease_nor_marks_success() {
    let h = Harness::start(
        pools(2),
        Writer::new(Mode::DryRun, Some(ha(Duration::from_secs(3))), "t", "h"),
        Fake::default(),
    );
    h.set("imap", 1, State::Up);
    h.set("pop", 2, State::Up);
    sleep(Duration::from_secs(15)).await;
    let metrics = h.metrics.clone();
    let fake = h.fake.clone();
    h.stop().await;
    assert_eq!(fake.lease_updates(), 0, "a dry run touched the lease");
    assert!(fake.state().updates.is_empty(), "a dry run sent an UPDATE");
    assert_eq!(
        metrics.lease_held.with_label_values(&["example.com"]).get(),
        0.0
    );
    assert_eq!(
        metrics
            .last_reconcile_success
            .with_label_values(&["example.com"])
            .get(),
        0.0
    );
}

// ---------------------------------------------------------------------------
// Reloads
// ---------------------------------------------------------------------------

fn reload(generation: u64, pools: Vec<PoolShape>, health: &[(&str, u8)]) -> Input<Fake> {
    let targets = pools.iter().map(|p| p.members.len()).sum();
    Input::Reload(Box::new(ZoneReload {
        generation,
        setup: setup(),
        shape: Arc::new(Shape::new(pools)),
        primary: Fake::default(),
        ha: None,
        health: health
            .iter()
            .map(|(pool, n)| {
                (
                    TargetId::new(pool, &format!("mail{n}"), ip(10 + n)),
                    State::Up,
                )
            })
            .collect(),
        targets,
        changed: None,
        tlsa: Arc::default(),
        tlsa_cache: None,
        stamp_ahead: Duration::from_secs(2),
    }))
}

#[tokio::test(start_paused = true)]
async fn events_count_only_after_their_generation_s_reload() {
    let fake = Fake::default();
    let h = Harness::start(
        pools(2),
        Writer::new(Mode::Write, None, "t", "h"),
        fake.clone(),
    );
    sleep(Duration::from_millis(50)).await;
    // A transition of generation 1 that overtook its reload is stale...
    h.event(1, "imap", 1, State::Up);
    let Input::Reload(mut r) = reload(1, pools(2), &[]) else {
        unreachable!()
    };
    r.primary = fake.clone();
    let _ = h.inbox.send(Input::Reload(r));
    sleep(Duration::from_millis(100)).await;
    assert!(fake.records("imap.example.com.", RType::A).is_empty());
    // ...which is why the daemon sends the reload first: then it counts.
    h.event(1, "imap", 2, State::Up);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.records("imap.example.com.", RType::A), [a(2)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_health_and_deletes_the_records_of_a_removed_node() {
    let fake = Fake::default();
    let h = Harness::start(
        pools(2),
        Writer::new(Mode::Write, None, "t", "h"),
        fake.clone(),
    );
    for n in 1..=2 {
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.records("pop.example.com.", RType::A), [a(1), a(2)]);
    let Input::Reload(mut r) = reload(1, pools(1), &[("imap", 1), ("pop", 1)]) else {
        unreachable!()
    };
    r.primary = fake.clone();
    let _ = h.inbox.send(Input::Reload(r));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.records("pop.example.com.", RType::A), [a(1)]);
    assert_eq!(fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_retired_zone_deletes_what_it_owned_and_stops() {
    let fake = Fake::default();
    let h = Harness::start(
        pools(1),
        Writer::new(Mode::Write, None, "t", "h"),
        fake.clone(),
    );
    h.set("imap", 1, State::Up);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.records("imap.example.com.", RType::A), [a(1)]);
    let _ = h.inbox.send(Input::Retire);
    sleep(Duration::from_millis(100)).await;
    assert!(fake.records("imap.example.com.", RType::A).is_empty());
    assert!(h.task.is_finished(), "a retired zone's task ends");
}

#[tokio::test(start_paused = true)]
async fn a_refused_deletion_of_a_retired_record_stays_retired_until_it_lands() {
    let fake = Fake::default();
    let h = Harness::start(
        pools(2),
        Writer::new(Mode::Write, None, "t", "h"),
        fake.clone(),
    );
    for n in 1..=2 {
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    sleep(Duration::from_millis(100)).await;
    // mail2 leaves the configuration while pop is refused: its pop record
    // cannot be deleted yet, its imap record can.
    fake.state().refuse.insert("pop.example.com.".into());
    let Input::Reload(mut r) = reload(1, pools(1), &[("imap", 1), ("pop", 1)]) else {
        unreachable!()
    };
    r.primary = fake.clone();
    let _ = h.inbox.send(Input::Reload(r));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.records("imap.example.com.", RType::A), [a(1)]);
    assert_eq!(fake.records("pop.example.com.", RType::A), [a(1), a(2)]);
    // Granted again: the retired record goes at its next retry.
    fake.state().refuse.clear();
    sleep(RESYNC).await;
    assert_eq!(fake.records("pop.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_one_shot_write_is_fenced_by_the_lease_as_observed() {
    let fake = Fake::default();
    let stale = LeaseRecord {
        holder: "dns1".into(),
        token: Some("gone".into()),
        expires: 0,
        seq: 3,
    };
    fake.set_lease(&stale);
    let observed: BTreeSet<Rdata> = [stale.rdata()].into();
    let health: HashMap<TargetId, State> =
        [(TargetId::new("imap", "mail1", ip(11)), State::Up)].into();
    let mut zone = ZoneReconciler::new(
        setup(),
        Arc::new(Shape::new(pools(1))),
        fake.clone(),
        Writer::one_shot(Some((LEASE, observed)), "h"),
        Metrics::new(prometheus::Registry::new()).unwrap(),
        Arc::new(Board::default()),
        health,
        2,
    );
    let plan = zone.plan(Instant::now()).await.unwrap();
    // Between the plan and the write, a writer comes back and renews.
    fake.set_lease(&LeaseRecord { seq: 4, ..stale });
    assert!(zone.pass(Instant::now()).await.is_err());
    assert!(fake.records("imap.example.com.", RType::A).is_empty());
    let update = zone.update_of(&plan).unwrap();
    assert!(lease_prerequisite(&update).is_some());
    assert_eq!(
        fake.lease_updates(),
        0,
        "a one-shot write never touches the lease"
    );
}

// ---------------------------------------------------------------------------
// Drains at run time
// ---------------------------------------------------------------------------

fn drain_mark(node: &str, pool: &str) -> crate::core::drain::DrainMark {
    crate::core::drain::DrainMark {
        node: node.into(),
        pool: pool.into(),
        by: "alice@dns1".into(),
        at: 1_800_000_000,
        reason: "kernel update".into(),
    }
}

fn marks(marks: &[crate::core::drain::DrainMark]) -> Drains {
    Drains {
        marks: marks.iter().cloned().collect(),
    }
}

/// What the watcher sends after a good read.
fn read(marks: Drains) -> DrainRead {
    DrainRead {
        marks: Some(marks),
        failure: None,
    }
}

/// The reconciler with a drains channel, not read yet.
fn watching(pools: Vec<PoolShape>) -> (Harness, tokio::sync::watch::Sender<DrainRead>) {
    let (tx, rx) = tokio::sync::watch::channel(DrainRead::default());
    let h = Harness::start_with(
        pools,
        Writer::new(Mode::Write, None, "t1", "host"),
        Fake::default(),
        |r| r.watching_drains(rx),
    );
    (h, tx)
}

#[tokio::test(start_paused = true)]
async fn a_mark_takes_a_node_out_at_once_and_its_removal_puts_it_back() {
    let (h, drains) = watching(pools(2));
    drains.send_replace(read(Drains::default()));
    for n in [1, 2] {
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    sleep(Duration::from_millis(100)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1), a(2)]);

    let t0 = Instant::now();
    drains.send_replace(read(marks(&[drain_mark("mail2", "imap")])));
    sleep(Duration::from_millis(50)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    assert_eq!(
        h.fake.records("pop.example.com.", RType::A),
        [a(1), a(2)],
        "a pool mark leaves the other pools alone"
    );
    let (at, _, _) = h.fake.record_updates().last().cloned().unwrap();
    assert!(at - t0 < Duration::from_millis(10), "{:?}", at - t0);
    let sample = |pool: &str| h.metrics.drains.get(pool, "mail2", "runtime");
    assert_eq!((sample("imap"), sample("pop")), (Some(true), Some(false)));

    // Every other node down: the drained one is not published under all_down.
    h.set("imap", 1, State::Down);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);

    drains.send_replace(read(Drains::default()));
    sleep(Duration::from_millis(50)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(2)]);
    assert_eq!(sample("imap"), Some(false));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_first_pass_waits_for_the_first_read_of_the_marks() {
    let (h, drains) = watching(pools(2));
    for n in [1, 2] {
        h.set("imap", n, State::Up);
        h.set("pop", n, State::Up);
    }
    sleep(Duration::from_secs(1)).await;
    assert!(
        h.fake.record_updates().is_empty(),
        "published before the marks were known"
    );
    drains.send_replace(read(marks(&[drain_mark("mail1", ALL_POOLS)])));
    sleep(Duration::from_millis(50)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(2)]);
    assert_eq!(h.fake.records("pop.example.com.", RType::A), [a(2)]);
    let updates = h.fake.record_updates();
    assert!(
        updates.iter().all(|(_, u, _)| !u.summary().contains(&a(1))),
        "mail1 was published for a moment: {updates:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_first_read_the_reconciler_goes_on_after_a_while() {
    let (h, _drains) = watching(pools(1));
    h.set("imap", 1, State::Up);
    sleep(FIRST_READ_WAIT - Duration::from_millis(100)).await;
    assert!(h.fake.record_updates().is_empty());
    sleep(Duration::from_millis(200)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_watcher_reads_the_marks_every_half_second_and_keeps_them_through_failures() {
    let fake = Fake::default();
    let name = format!("{}.{ZONE}", crate::core::drain::DRAIN_LABEL);
    let (_source_tx, source) = tokio::sync::watch::channel(DrainSource::new(ZONE, fake.clone()));
    let board = Arc::new(Board::default());
    let (watcher, mut rx) = DrainWatcher::new(source, board.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watcher.run(shutdown.clone()));
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().marks, Some(Drains::default()));

    let mark = drain_mark("mail1", ALL_POOLS);
    let t0 = Instant::now();
    fake.state().zone.insert(
        RRsetKey::new(&name, RType::Txt),
        RRset {
            ttl: 0,
            records: [mark.rdata(), Rdata::txt("v=spf1 -all")].into(),
        },
    );
    rx.changed().await.unwrap();
    assert!(
        Instant::now() - t0 <= DRAIN_POLL,
        "{:?}",
        Instant::now() - t0
    );
    assert_eq!(
        *rx.borrow_and_update(),
        read(marks(std::slice::from_ref(&mark)))
    );
    let status = board.status(Duration::from_secs(1));
    assert_eq!(status.drains.len(), 1);
    assert_eq!(status.drains[0].source, "runtime");
    assert_eq!(status.drains[0].by.as_deref(), Some("alice@dns1"));

    // The primary fails: the last marks stand, with the failure beside them
    // (told once, not at every read).
    fake.state().down = true;
    rx.changed().await.unwrap();
    let failed = rx.borrow_and_update().clone();
    assert_eq!(failed.marks, Some(marks(std::slice::from_ref(&mark))));
    assert_eq!(failed.failure.map(|f| f.1), Some("timeout"));
    sleep(DRAIN_POLL * 4).await;
    assert!(!rx.has_changed().unwrap());
    fake.state().down = false;
    fake.state().zone.clear();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), read(Drains::default()));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_read_of_the_marks_is_a_failed_pass_retried_with_backoff() {
    let (h, drains) = watching(pools(1));
    h.set("imap", 1, State::Up);
    drains.send_replace(DrainRead {
        marks: None,
        failure: Some(("no answer".into(), "timeout")),
    });
    let failures = || {
        h.metrics
            .dns_updates_total
            .with_label_values(&["example.com", "timeout"])
            .get()
    };
    // 250 ms, 500 ms, 1 s: four failed passes within 2 s, none sent.
    sleep(Duration::from_millis(1800)).await;
    assert_eq!(failures(), 4);
    assert!(h.fake.record_updates().is_empty());
    drains.send_replace(read(Drains::default()));
    sleep(Duration::from_millis(50)).await;
    assert!(h.fake.record_updates().is_empty(), "the backoff stands");
    sleep(Duration::from_secs(2)).await;
    assert_eq!(h.fake.records("imap.example.com.", RType::A), [a(1)]);
    h.stop().await;
}
