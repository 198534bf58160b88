//! Property tests of the pure core (README, "How records follow health").
//!
//! For any configuration, any health and any record set at the primary
//! (owned and foreign records, random TTLs), the UPDATE that
//! `diff::plan(desired(..))` computes is applied through an RFC 2136 model
//! written here, from the wire message `build_message` makes (not through
//! `diff::apply`):
//! - its prerequisites hold against the state they were computed from;
//! - afterwards the owned records are exactly what the README's rules ask
//!   for (up records, undecided ones as they were, the all_down policy,
//!   drained nodes never), computed here by an oracle of those rules;
//! - every foreign record is untouched, and an RRset holding foreign records
//!   keeps its TTL (when pigeon-dns added to it, it added with that TTL).
//!
//! And rise/fall never flips on fewer than rise/fall consecutive results.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use pigeon_dns::config::{
    AllDown, CheckKind, Config, DnsConfig, HttpConfig, Node, Pool, PoolKind, ProbeSettings,
    TlsOptions,
};
use pigeon_dns::desired::{View, desired};
use pigeon_dns::diff;
use pigeon_dns::dns::records::{RRset, RRsetKey, RType, Rdata, name_key};
use pigeon_dns::dns::update::{build_message, nsupdate_script};
use pigeon_dns::health::{Health, State};

const ZONE: &str = "example.com.";
/// `dns.ttl` of the generated configs.
const OWN_TTL: u32 = 60;
const MAX_NODES: usize = 4;
const MAX_ADDRESSES: usize = 3;
const MAX_POOLS: usize = 4;
/// Pool owner names: two pools may share one (an A and an MX pool at `@`).
const POOL_NAMES: [&str; 4] = ["imap", "@", "smtp", "_imaps._tcp"];

// ---------------------------------------------------------------------------
// Generated cases
// ---------------------------------------------------------------------------

/// One node as drawn: per address its family (true: IPv6), and drain.
#[derive(Clone, Debug)]
struct RawNode {
    v6: Vec<bool>,
    drain: bool,
}

/// One pool as drawn.
#[derive(Clone, Debug)]
struct RawPool {
    /// 0: A, 1: MX, 2: SRV.
    kind: u8,
    name: usize,
    /// Which nodes (bit i: node i); none set means every node.
    nodes: u8,
    keep: bool,
    preference: u16,
    priority: u16,
    weight: u16,
}

/// What the primary holds at one RRset key, as drawn.
#[derive(Clone, Debug)]
struct RawSet {
    ttl: u32,
    /// Foreign records (indexes into a per-type range disjoint from owned ones).
    foreign: Vec<u8>,
    /// Records owned under a previous configuration (retired): present, to delete.
    retired: Vec<u8>,
    /// Retired records that are also absent (must stay absent).
    retired_absent: Vec<u8>,
}

#[derive(Clone, Debug)]
struct RawCase {
    nodes: Vec<RawNode>,
    pools: Vec<RawPool>,
    /// Health of target (pool, node, address): indexed by `target_index`.
    health: Vec<State>,
    /// Whether each candidate record is present at the primary, indexed like `health`.
    present: Vec<bool>,
    /// Per RRset slot (pool index * 2 + family/type slot): foreign content and TTL.
    sets: Vec<RawSet>,
    /// A foreign-only RRset (`www A`) that nothing may touch.
    www_ttl: u32,
}

fn target_index(pool: usize, node: usize, address: usize) -> usize {
    (pool * MAX_NODES + node) * MAX_ADDRESSES + address
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![Just(State::Unknown), Just(State::Up), Just(State::Down)]
}

fn ttl() -> impl Strategy<Value = u32> {
    prop_oneof![Just(OWN_TTL), Just(300u32), Just(3600u32), 0u32..100_000]
}

fn raw_case() -> impl Strategy<Value = RawCase> {
    let node = (
        prop::collection::vec(any::<bool>(), 1..=MAX_ADDRESSES),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(v6, drain)| RawNode { v6, drain });
    let pool = (
        0u8..3,
        0..POOL_NAMES.len(),
        any::<u8>(),
        any::<bool>(),
        0u16..3,
        0u16..3,
        0u16..3,
    )
        .prop_map(
            |(kind, name, nodes, keep, pref, priority, weight)| RawPool {
                kind,
                name,
                nodes,
                keep,
                preference: pref * 10,
                priority,
                weight,
            },
        );
    let set = (
        ttl(),
        prop::collection::vec(0u8..4, 0..3),
        prop::collection::vec(0u8..4, 0..2),
        prop::collection::vec(4u8..8, 0..2),
    )
        .prop_map(|(ttl, foreign, retired, retired_absent)| RawSet {
            ttl,
            foreign,
            retired,
            retired_absent,
        });
    let targets = MAX_POOLS * MAX_NODES * MAX_ADDRESSES;
    (
        prop::collection::vec(node, 1..=MAX_NODES),
        prop::collection::vec(pool, 1..=MAX_POOLS),
        prop::collection::vec(state(), targets),
        prop::collection::vec(any::<bool>(), targets),
        prop::collection::vec(set, MAX_POOLS * 2),
        ttl(),
    )
        .prop_map(|(nodes, pools, health, present, sets, www_ttl)| RawCase {
            nodes,
            pools,
            health,
            present,
            sets,
            www_ttl,
        })
}

/// A case made concrete: a validated-looking config, health, and the zone.
#[derive(Debug)]
struct Case {
    config: Config,
    health: BTreeMap<(usize, usize, IpAddr), State>,
    /// The primary's records (only non-empty RRsets).
    zone: Zone,
    /// Records owned under a previous configuration, per RRset.
    retired: BTreeMap<RRsetKey, BTreeSet<Rdata>>,
}

type Zone = BTreeMap<RRsetKey, RRset>;

fn node_ip(node: usize, address: usize, v6: bool) -> IpAddr {
    let host = u8::try_from(10 * (node + 1) + address).unwrap();
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, host))
    }
}

fn host_of(node: usize) -> String {
    format!("mail{}.example.com.", node + 1)
}

fn fqdn(name: &str) -> String {
    if name == "@" {
        ZONE.to_owned()
    } else {
        format!("{name}.{ZONE}")
    }
}

/// A record of `rtype` that no configured node owns: `i` < 4 foreign, 4..8 retired.
fn other_rdata(rtype: RType, i: u8) -> Rdata {
    match rtype {
        RType::A => Rdata::A(Ipv4Addr::new(198, 51, 100, 1 + i)),
        RType::Aaaa => Rdata::Aaaa(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xf,
            0,
            0,
            0,
            0,
            1 + u16::from(i),
        )),
        RType::Mx => Rdata::Mx {
            preference: 50,
            exchange: format!("backup{i}.example.net."),
        },
        RType::Srv => Rdata::Srv {
            priority: 5,
            weight: 0,
            port: 993,
            target: format!("other{i}.example.net."),
        },
    }
}

fn probe_settings() -> ProbeSettings {
    ProbeSettings {
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 2,
        fast_interval: Duration::from_millis(100),
        watch: true,
    }
}

fn make_case(raw: &RawCase) -> Case {
    let nodes: Vec<Node> = raw
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            name: format!("mail{}", i + 1),
            addresses: n
                .v6
                .iter()
                .enumerate()
                .map(|(a, v6)| node_ip(i, a, *v6))
                .collect(),
            host: Name::from_ascii(host_of(i)).unwrap(),
            drain: n.drain,
        })
        .collect();
    let mut owners: BTreeSet<(String, u8)> = BTreeSet::new();
    let mut pools = Vec::new();
    for p in &raw.pools {
        let name = POOL_NAMES[p.name];
        // Unique (owner, type), as `check` demands.
        if !owners.insert((name.to_owned(), p.kind)) {
            continue;
        }
        let kind = match p.kind {
            0 => PoolKind::Address,
            1 => PoolKind::Mx {
                preference: p.preference,
            },
            _ => PoolKind::Srv {
                priority: p.priority,
                weight: p.weight,
            },
        };
        let mut members: Vec<usize> = (0..nodes.len())
            .filter(|i| p.nodes & (1 << i) != 0)
            .collect();
        if members.is_empty() {
            members = (0..nodes.len()).collect();
        }
        pools.push(Pool {
            name: name.to_owned(),
            fqdn: Name::from_ascii(fqdn(name)).unwrap(),
            kind,
            check: CheckKind::Imap,
            port: 993,
            nodes: members,
            all_down: if p.keep {
                AllDown::Keep
            } else {
                AllDown::PublishAll
            },
            probe: probe_settings(),
            starttls: false,
            path: "/".into(),
            expect_body: None,
            tls: TlsOptions {
                verify: true,
                name: None,
                ca_file: None,
                cert_min_days: 0,
            },
        });
    }
    let config = Config {
        source: PathBuf::from("properties.toml"),
        dns: DnsConfig {
            server: "127.0.0.1:53".into(),
            zone: Name::from_ascii(ZONE).unwrap(),
            key_file: PathBuf::from("k"),
            key_name: None,
            ttl: OWN_TTL,
            timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(60),
        },
        http: HttpConfig { listen: None },
        ha: None,
        nodes,
        pools,
    };

    let mut health = BTreeMap::new();
    let mut zone: Zone = BTreeMap::new();
    let mut retired: BTreeMap<RRsetKey, BTreeSet<Rdata>> = BTreeMap::new();
    for (pi, pool) in config.pools.iter().enumerate() {
        for &ni in &pool.nodes {
            for (ai, &address) in config.nodes[ni].addresses.iter().enumerate() {
                let t = target_index(pi, ni, ai);
                health.insert((pi, ni, address), raw.health[t]);
            }
        }
        for (slot, rtype) in rtypes(pool.kind).into_iter().enumerate() {
            let key = RRsetKey {
                name: name_key(&pool.fqdn),
                rtype,
            };
            let raw_set = &raw.sets[pi * 2 + slot];
            let mut records = BTreeSet::new();
            for c in candidates(&config, pi, rtype, &|_, _, _| State::Unknown) {
                if raw.present[c.index] {
                    records.insert(c.rdata);
                }
            }
            records.extend(raw_set.foreign.iter().map(|&i| other_rdata(rtype, i)));
            let gone: BTreeSet<Rdata> = raw_set
                .retired
                .iter()
                .chain(&raw_set.retired_absent)
                .map(|&i| other_rdata(rtype, i + 4))
                .collect();
            records.extend(raw_set.retired.iter().map(|&i| other_rdata(rtype, i + 4)));
            if !gone.is_empty() {
                retired.insert(key.clone(), gone);
            }
            if !records.is_empty() {
                zone.insert(
                    key,
                    RRset {
                        ttl: raw_set.ttl,
                        records,
                    },
                );
            }
        }
    }
    // A foreign-only RRset at a name no pool uses.
    zone.insert(
        RRsetKey {
            name: fqdn("www"),
            rtype: RType::A,
        },
        RRset {
            ttl: raw.www_ttl,
            records: [other_rdata(RType::A, 0)].into(),
        },
    );
    Case {
        config,
        health,
        zone,
        retired,
    }
}

fn rtypes(kind: PoolKind) -> Vec<RType> {
    match kind {
        PoolKind::Address => vec![RType::A, RType::Aaaa],
        PoolKind::Mx { .. } => vec![RType::Mx],
        PoolKind::Srv { .. } => vec![RType::Srv],
    }
}

// ---------------------------------------------------------------------------
// The oracle: the README's rules, written from the README
// ---------------------------------------------------------------------------

/// One record a pool may publish and what decides it.
#[derive(Clone, Debug)]
struct Candidate {
    rdata: Rdata,
    state: State,
    drained: bool,
    /// Index into `RawCase::present` (the first address for MX/SRV).
    index: usize,
}

/// The records pool `pi` may publish in its RRset of `rtype`.
fn candidates(
    config: &Config,
    pi: usize,
    rtype: RType,
    health: &dyn Fn(usize, usize, IpAddr) -> State,
) -> Vec<Candidate> {
    let pool = &config.pools[pi];
    let mut out = Vec::new();
    for &ni in &pool.nodes {
        let node = &config.nodes[ni];
        match pool.kind {
            PoolKind::Address => {
                // "An A or AAAA record is published when its own address is up."
                for (ai, &address) in node.addresses.iter().enumerate() {
                    let rdata = Rdata::address(address);
                    if rdata.rtype() == rtype {
                        out.push(Candidate {
                            rdata,
                            state: health(pi, ni, address),
                            drained: node.drain,
                            index: target_index(pi, ni, ai),
                        });
                    }
                }
            }
            PoolKind::Mx { preference } => out.push(Candidate {
                rdata: Rdata::Mx {
                    preference,
                    exchange: name_key(&node.host),
                },
                state: node_state(config, pi, ni, health),
                drained: node.drain,
                index: target_index(pi, ni, 0),
            }),
            PoolKind::Srv { priority, weight } => out.push(Candidate {
                rdata: Rdata::Srv {
                    priority,
                    weight,
                    port: pool.port,
                    target: name_key(&node.host),
                },
                state: node_state(config, pi, ni, health),
                drained: node.drain,
                index: target_index(pi, ni, 0),
            }),
        }
    }
    out
}

/// "For MX and SRV pools a node counts as up when any of its addresses is
/// up"; down when every address is down; undecided otherwise.
fn node_state(
    config: &Config,
    pi: usize,
    ni: usize,
    health: &dyn Fn(usize, usize, IpAddr) -> State,
) -> State {
    let states: Vec<State> = config.nodes[ni]
        .addresses
        .iter()
        .map(|&a| health(pi, ni, a))
        .collect();
    if states.contains(&State::Up) {
        State::Up
    } else if states.iter().all(|s| *s == State::Down) {
        State::Down
    } else {
        State::Unknown
    }
}

/// The owned records an RRset must hold afterwards, from the README:
/// - up records are published; drained nodes never are, "not even then";
/// - an undecided target: "nothing is added or removed for it", so it stays
///   as it was;
/// - when that leaves the name without records because targets are down
///   ("no address of a family, or no node, of a pool is up"), the policy:
///   `publish-all` publishes them all (every non-drained record, except an
///   undecided one that is absent: nothing is added for it until rise or fall
///   decides), `keep` leaves the records as they are and publishes all where
///   none is left.
fn expected_owned(
    cands: &[Candidate],
    before: &BTreeSet<Rdata>,
    policy: AllDown,
) -> BTreeSet<Rdata> {
    let active: Vec<&Candidate> = cands.iter().filter(|c| !c.drained).collect();
    let stays: BTreeSet<Rdata> = active
        .iter()
        .filter(|c| match c.state {
            State::Up => true,
            State::Unknown => before.contains(&c.rdata),
            State::Down => false,
        })
        .map(|c| c.rdata.clone())
        .collect();
    let some_down = active.iter().any(|c| c.state == State::Down);
    if !stays.is_empty() || !some_down {
        return stays;
    }
    let all: BTreeSet<Rdata> = active
        .iter()
        .filter(|c| c.state != State::Unknown || before.contains(&c.rdata))
        .map(|c| c.rdata.clone())
        .collect();
    match policy {
        AllDown::PublishAll => all,
        AllDown::Keep => {
            let kept: BTreeSet<Rdata> = all.intersection(before).cloned().collect();
            if kept.is_empty() { all } else { kept }
        }
    }
}

// ---------------------------------------------------------------------------
// An RFC 2136 model of the primary, fed the wire message
// ---------------------------------------------------------------------------

/// Why the model primary refused an UPDATE (read through `Debug` in failures).
#[allow(dead_code)]
#[derive(Debug)]
enum Refused {
    /// §3.2.5: a prerequisite failed (NXRRSET/YXRRSET).
    Prerequisite(String),
    /// §3.1, §3.4.1: something the model does not expect pigeon-dns to send.
    FormErr(String),
}

fn key_of(record: &Record) -> Result<RRsetKey, Refused> {
    let rtype = match record.record_type() {
        hickory_proto::rr::RecordType::A => RType::A,
        hickory_proto::rr::RecordType::AAAA => RType::Aaaa,
        hickory_proto::rr::RecordType::MX => RType::Mx,
        hickory_proto::rr::RecordType::SRV => RType::Srv,
        other => return Err(Refused::FormErr(format!("unexpected type {other}"))),
    };
    Ok(RRsetKey {
        name: name_key(&record.name),
        rtype,
    })
}

fn rdata_of(data: &RData) -> Result<Rdata, Refused> {
    Rdata::from_hickory(data).ok_or_else(|| Refused::FormErr(format!("unexpected rdata {data:?}")))
}

/// Applies one UPDATE message to `zone`, RFC 2136 §3: the zone section must
/// name the zone (§3.1); every prerequisite is checked first (§3.2), then the
/// updates are applied in order (§3.4.2). All or nothing.
fn rfc2136_apply(zone: &mut Zone, wire: &[u8]) -> Result<(), Refused> {
    let message = Message::from_vec(wire).map_err(|e| Refused::FormErr(e.to_string()))?;
    if message.metadata.op_code != OpCode::Update {
        return Err(Refused::FormErr("not an UPDATE".into()));
    }
    let zname: Vec<String> = message.queries.iter().map(|q| name_key(q.name())).collect();
    if zname != [ZONE.to_owned()] {
        return Err(Refused::FormErr(format!("zone section {zname:?}")));
    }
    // §3.2: prerequisites. Value-dependent ones (class = zone class, TTL 0)
    // are collected per RRset into a temporary set and compared whole,
    // ignoring TTLs (§3.2.3); class NONE with empty rdata: RRset does not
    // exist (§3.2.2, §2.4.3).
    let mut temp: BTreeMap<RRsetKey, BTreeSet<Rdata>> = BTreeMap::new();
    for record in &message.answers {
        let key = key_of(record)?;
        match record.dns_class {
            DNSClass::NONE => {
                if !matches!(record.data, RData::Update0(_)) {
                    return Err(Refused::FormErr("NONE prerequisite with rdata".into()));
                }
                if zone.get(&key).is_some_and(|s| !s.records.is_empty()) {
                    return Err(Refused::Prerequisite(format!("YXRRSET {key}")));
                }
            }
            DNSClass::IN => {
                if record.ttl != 0 {
                    return Err(Refused::FormErr(format!("prerequisite TTL {}", record.ttl)));
                }
                temp.entry(key).or_default().insert(rdata_of(&record.data)?);
            }
            other => return Err(Refused::FormErr(format!("prerequisite class {other:?}"))),
        }
    }
    for (key, wanted) in &temp {
        let have = zone.get(key).map(|s| s.records.clone()).unwrap_or_default();
        if &have != wanted {
            return Err(Refused::Prerequisite(format!(
                "NXRRSET {key}: have {have:?}, wanted {wanted:?}"
            )));
        }
    }
    // §3.4.1 prescan, then §3.4.2 in order on a copy (all or nothing).
    let mut next = zone.clone();
    for record in &message.authorities {
        let key = key_of(record)?;
        let rdata = rdata_of(&record.data)?;
        match record.dns_class {
            // §2.5.1 add to an RRset. An RRset has one TTL (RFC 2181 §5.2):
            // adding gives the whole set the TTL of the record added.
            DNSClass::IN => {
                let set = next.entry(key).or_default();
                set.ttl = record.ttl;
                set.records.insert(rdata);
            }
            // §2.5.4 delete an RR from an RRset: TTL 0, class NONE.
            DNSClass::NONE => {
                if record.ttl != 0 {
                    return Err(Refused::FormErr("delete with TTL".into()));
                }
                if let Some(set) = next.get_mut(&key) {
                    set.records.remove(&rdata);
                    if set.records.is_empty() {
                        next.remove(&key);
                    }
                }
            }
            other => {
                return Err(Refused::FormErr(format!(
                    "update class {other:?} (pigeon-dns deletes one RR at a time)"
                )));
            }
        }
    }
    *zone = next;
    Ok(())
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// The view the reconciler reads: every owned RRset, empty when absent.
fn read_view(case: &Case) -> View {
    let lookup = |pool: usize, node: usize, address: IpAddr| {
        case.health
            .get(&(pool, node, address))
            .copied()
            .unwrap_or(State::Unknown)
    };
    let keys: BTreeSet<RRsetKey> = desired(&case.config, &lookup, &View::new())
        .owned
        .keys()
        .chain(case.retired.keys())
        .cloned()
        .collect();
    keys.into_iter()
        .map(|k| {
            let set = case.zone.get(&k).cloned().unwrap_or_default();
            (k, set)
        })
        .collect()
}

/// One reconcile through the model: the zone after it, and the UPDATE sent
/// (as an nsupdate script, for failure messages; empty when none).
fn reconcile_through_model(case: &Case) -> Result<(Zone, String), TestCaseError> {
    let lookup = |pool: usize, node: usize, address: IpAddr| {
        case.health
            .get(&(pool, node, address))
            .copied()
            .unwrap_or(State::Unknown)
    };
    let view = read_view(case);
    let wanted = desired(&case.config, &lookup, &view);
    let plan = diff::plan(&wanted, &case.retired, &view, OWN_TTL);
    let mut zone = case.zone.clone();
    if plan.is_empty() {
        prop_assert!(
            plan.prerequisites.is_empty(),
            "an empty plan with prerequisites: {plan:?}"
        );
        return Ok((zone, String::new()));
    }
    let message = build_message(ZONE, &plan).map_err(TestCaseError::fail)?;
    let wire = message
        .to_vec()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    match rfc2136_apply(&mut zone, &wire) {
        Ok(()) => Ok((zone, nsupdate_script("127.0.0.1:53", ZONE, &plan))),
        Err(refused) => Err(TestCaseError::fail(format!(
            "the primary (RFC 2136 model) refuses the UPDATE computed from its own state: {refused:?}\nplan: {plan:#?}"
        ))),
    }
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let (after, _) = reconcile_through_model(case)?;
    let lookup = |pool: usize, node: usize, address: IpAddr| {
        case.health
            .get(&(pool, node, address))
            .copied()
            .unwrap_or(State::Unknown)
    };
    let empty = RRset::default();
    // Owned records: exactly what the README's rules ask for.
    let mut owned_keys: BTreeMap<RRsetKey, BTreeSet<Rdata>> = BTreeMap::new();
    for (pi, pool) in case.config.pools.iter().enumerate() {
        for rtype in rtypes(pool.kind) {
            let key = RRsetKey {
                name: name_key(&pool.fqdn),
                rtype,
            };
            let cands = candidates(&case.config, pi, rtype, &lookup);
            let owned: BTreeSet<Rdata> = cands.iter().map(|c| c.rdata.clone()).collect();
            let before: BTreeSet<Rdata> = case
                .zone
                .get(&key)
                .unwrap_or(&empty)
                .records
                .intersection(&owned)
                .cloned()
                .collect();
            let want = expected_owned(&cands, &before, pool.all_down);
            let got: BTreeSet<Rdata> = after
                .get(&key)
                .unwrap_or(&empty)
                .records
                .intersection(&owned)
                .cloned()
                .collect();
            prop_assert_eq!(
                &got,
                &want,
                "owned records of {} (before: {:?}; candidates: {:?}; policy {:?})",
                key,
                before,
                cands,
                pool.all_down
            );
            owned_keys.insert(key, owned);
        }
    }
    // Retired records are gone.
    for (key, gone) in &case.retired {
        let left: Vec<&Rdata> = after
            .get(key)
            .unwrap_or(&empty)
            .records
            .intersection(gone)
            .collect();
        prop_assert!(left.is_empty(), "retired records left at {key}: {left:?}");
    }
    // Foreign records: untouched, and their RRset's TTL too.
    let no_owned = BTreeSet::new();
    for (key, set) in &case.zone {
        let owned = owned_keys.get(key).unwrap_or(&no_owned);
        let gone = case.retired.get(key).unwrap_or(&no_owned);
        let foreign: BTreeSet<&Rdata> = set
            .records
            .iter()
            .filter(|r| !owned.contains(*r) && !gone.contains(*r))
            .collect();
        if foreign.is_empty() {
            continue;
        }
        let now = after.get(key);
        let missing: Vec<&&Rdata> = foreign
            .iter()
            .filter(|r| now.is_none_or(|s| !s.records.contains(**r)))
            .collect();
        prop_assert!(
            missing.is_empty(),
            "foreign records of {key} were deleted: {missing:?}"
        );
        let now = now.unwrap_or(&empty);
        prop_assert_eq!(
            now.ttl,
            set.ttl,
            "the TTL of {} (foreign records {:?}) changed from {} to {}",
            key,
            foreign,
            set.ttl,
            now.ttl
        );
    }
    // Names pigeon-dns alone fills get dns.ttl when it adds to them.
    for (key, owned) in &owned_keys {
        let before = case.zone.get(key).unwrap_or(&empty);
        let gone = case.retired.get(key).unwrap_or(&no_owned);
        let has_foreign = before
            .records
            .iter()
            .any(|r| !owned.contains(r) && !gone.contains(r));
        let Some(now) = after.get(key) else { continue };
        let added = now.records.difference(&before.records).next().is_some();
        if added && !has_foreign {
            prop_assert_eq!(
                now.ttl,
                OWN_TTL,
                "{} filled by pigeon-dns alone has TTL {}",
                key,
                now.ttl
            );
        }
    }
    // Nothing appeared at a name or type pigeon-dns does not own.
    for key in after.keys() {
        prop_assert!(
            case.zone.contains_key(key) || owned_keys.contains_key(key),
            "a record set appeared at {key}, which pigeon-dns does not own"
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Nothing written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Prerequisites hold against the state read; afterwards the owned
    /// records are as the rules say, foreign ones and their TTL untouched.
    #[test]
    fn one_update_leaves_exactly_the_desired_owned_records_and_every_foreign_one(raw in raw_case()) {
        let case = make_case(&raw);
        check_case(&case)?;
    }

    /// Health unchanged, a second reconcile from the state the first left
    /// changes nothing: the desired records are a fixed point, so DNS does
    /// not move while no target's state does.
    #[test]
    fn a_second_reconcile_with_the_same_health_changes_nothing(raw in raw_case()) {
        let case = make_case(&raw);
        let (after, first) = reconcile_through_model(&case)?;
        let second = Case { zone: after, retired: BTreeMap::new(), ..case };
        let (_, again) = reconcile_through_model(&second)?;
        prop_assert!(
            again.is_empty(),
            "with the same health, the second reconcile sends another UPDATE:\n{}\nafter the first:\n{}\nhealth (pool, node, address): {:?}\ndrained: {:?}",
            again,
            first,
            second.health,
            second.config.nodes.iter().filter(|n| n.drain).map(|n| &n.name).collect::<Vec<_>>()
        );
    }

    /// Rise/fall: a state changes only after `rise` successes (to up) or
    /// `fall` failures (to down) in a row, and always once they are reached.
    #[test]
    fn rise_and_fall_never_flip_on_fewer_consecutive_results(
        rise in 1u32..=5,
        fall in 1u32..=5,
        start in state(),
        results in prop::collection::vec(any::<bool>(), 0..60),
    ) {
        let mut health = Health::with_state(start);
        let mut streak: (bool, u32) = (false, 0);
        for (i, &ok) in results.iter().enumerate() {
            streak = if streak.1 > 0 && streak.0 == ok { (ok, streak.1 + 1) } else { (ok, 1) };
            let before = health.state();
            let transition = health.observe(ok, rise, fall);
            let need = if ok { rise } else { fall };
            let target = if ok { State::Up } else { State::Down };
            match transition {
                Some(t) => {
                    prop_assert_eq!(t.from, before);
                    prop_assert_eq!(t.to, target, "result {} moved the state against it", i);
                    prop_assert!(streak.1 >= need, "flipped to {:?} after {} of {} results in a row (result {})", t.to, streak.1, need, i);
                }
                None => {
                    prop_assert!(
                        !(streak.1 >= need && before != target),
                        "{} results in a row (need {}) left the state {:?} (result {})", streak.1, need, before, i
                    );
                }
            }
            prop_assert_eq!(health.state(), transition.map_or(before, |t| t.to));
            // In doubt while undecided, or when the last result disagrees.
            let doubt = match health.state() {
                State::Unknown => true,
                State::Up => !ok,
                State::Down => ok,
            };
            prop_assert_eq!(health.in_doubt(), doubt, "in_doubt after result {}", i);
        }
    }
}

/// The model itself: a value-dependent prerequisite compares the whole RRset
/// ignoring TTLs, "does not exist" means no record at all, an add gives the
/// set the TTL it carries, a delete removes one record.
#[test]
fn the_rfc2136_model_checks_prerequisites_and_applies_changes() {
    use pigeon_dns::dns::update::{Change, UpdatePlan};
    let key = RRsetKey {
        name: fqdn("imap"),
        rtype: RType::A,
    };
    let a = |last: u8| Rdata::A(Ipv4Addr::new(192, 0, 2, last));
    let set = |ttl: u32, records: &[u8]| RRset {
        ttl,
        records: records.iter().map(|&l| a(l)).collect(),
    };
    let wire = |expected: RRset, changes: Vec<Change>| {
        let plan = UpdatePlan {
            prerequisites: vec![(key.clone(), expected)],
            changes,
        };
        build_message(ZONE, &plan).unwrap().to_vec().unwrap()
    };
    let add_delete = vec![
        Change::Add {
            key: key.clone(),
            rdata: a(2),
            ttl: 300,
        },
        Change::Delete {
            key: key.clone(),
            rdata: a(1),
        },
    ];
    // Holds (TTL ignored): applied, the set takes the TTL added with.
    let mut zone: Zone = [(key.clone(), set(60, &[1, 3]))].into();
    rfc2136_apply(&mut zone, &wire(set(0, &[1, 3]), add_delete.clone())).unwrap();
    assert_eq!(zone[&key], set(300, &[2, 3]));
    // Stale (a record more, or less): refused, nothing applied.
    for stale in [&[1u8, 3, 4][..], &[1][..]] {
        let mut zone: Zone = [(key.clone(), set(60, stale))].into();
        let before = zone.clone();
        let refused = rfc2136_apply(&mut zone, &wire(set(0, &[1, 3]), add_delete.clone()));
        assert!(
            matches!(refused, Err(Refused::Prerequisite(_))),
            "{refused:?}"
        );
        assert_eq!(zone, before);
    }
    // "Does not exist" fails on any record; the last delete removes the set.
    let mut zone: Zone = [(key.clone(), set(60, &[1]))].into();
    let refused = rfc2136_apply(&mut zone, &wire(RRset::default(), vec![]));
    assert!(
        matches!(refused, Err(Refused::Prerequisite(_))),
        "{refused:?}"
    );
    let delete = vec![Change::Delete {
        key: key.clone(),
        rdata: a(1),
    }];
    rfc2136_apply(&mut zone, &wire(set(0, &[1]), delete)).unwrap();
    assert!(zone.is_empty());
}
