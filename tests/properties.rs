//! Property tests of the reconciler's pass (docs/records.md, "How records follow
//! health"; contract, "Names and records as real zones hold them").
//!
//! For any configuration, any health and any zone at the primary (owned and
//! foreign records with random TTLs, owner names stored in another case, a
//! wildcard, a CNAME at a pool's name, records of a previous configuration),
//! one pass of the real reconciler runs against a model of the primary that
//! answers as BIND 9.18 does, from the wire messages pigeon-dns sends:
//! queries answered with the case stored, from a wildcard where a name does
//! not exist (RFC 4592), with the CNAME at a CNAME node; UPDATEs applied by
//! RFC 2136 (prerequisites match names exactly, case-insensitively; an add
//! beside a CNAME is ignored). Then:
//! - the pass succeeds: its prerequisites hold against the zone it read;
//! - the owned records are exactly what the rules of docs/records.md ask for, computed
//!   here by an oracle of those rules; a pool whose name is a CNAME is left
//!   alone and reported;
//! - every foreign record is untouched (the wildcard too), and an RRset
//!   holding foreign records keeps its TTL;
//! - a second pass with the same health sends nothing.
//!
//! And rise/fall never flips on fewer than rise/fall consecutive results.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use pigeon_dns::config::{
    AllDown, CheckKind, Config, DaneMode, HttpConfig, Node, Pool, PoolKind, ProbeSettings,
    Secondaries, TlsOptions, ZoneConfig,
};
use pigeon_dns::core::health::{Health, State};
use pigeon_dns::core::records::{RRset, RRsetKey, RType, Rdata, name_key};
use pigeon_dns::dns::{DnsError, Exchange, Update, convert};
use pigeon_dns::metrics::Metrics;
use pigeon_dns::reconcile::{DnsPrimary, Mode, Writer, ZoneReconciler, ZoneSetup};
use pigeon_dns::status::Board;
use pigeon_dns::targets::{Layout, TargetId, pool_labels};

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

/// Ways real zones differ from a lab zone.
#[derive(Clone, Debug)]
struct RawQuirks {
    /// Per pool: its records stored with the owner name in upper case.
    upper: Vec<bool>,
    /// `*.example.com.` holds an A and an MX record.
    wildcard: bool,
    /// The owner name of this pool (unless the apex) is a CNAME instead.
    cname: Option<usize>,
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
    quirks: RawQuirks,
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
        (
            prop::collection::vec(prop::bool::weighted(0.3), MAX_POOLS),
            prop::bool::weighted(0.3),
            prop::option::weighted(0.15, 0..MAX_POOLS),
        ),
    )
        .prop_map(
            |(nodes, pools, health, present, sets, www_ttl, (upper, wildcard, cname))| RawCase {
                nodes,
                pools,
                health,
                present,
                sets,
                www_ttl,
                quirks: RawQuirks {
                    upper,
                    wildcard,
                    cname,
                },
            },
        )
}

/// A case made concrete: a validated-looking config, health, and the zone.
#[derive(Clone, Debug)]
struct Case {
    config: Config,
    health: BTreeMap<(usize, usize, IpAddr), State>,
    /// The primary's content.
    zone: Zone,
    /// Records owned under a previous configuration, per RRset.
    retired: BTreeMap<RRsetKey, BTreeSet<Rdata>>,
}

/// A zone as the model primary holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Zone {
    /// Non-empty RRsets by key, with the owner name as stored.
    sets: BTreeMap<RRsetKey, (String, RRset)>,
    /// CNAME nodes: name key -> target.
    cnames: BTreeMap<String, String>,
    /// The RRsets of `*.example.com.`.
    wildcard: BTreeMap<RType, RRset>,
}

impl Zone {
    fn get(&self, key: &RRsetKey) -> Option<&RRset> {
        self.sets.get(key).map(|(_, s)| s)
    }

    fn insert(&mut self, key: RRsetKey, owner: String, set: RRset) {
        self.sets.insert(key, (owner, set));
    }
}

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
        other => unreachable!("no pool publishes {other}"),
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
            tlsa_next: Vec::new(),
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
            zone: 0,
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
            dane: DaneMode::Off,
        });
    }
    let config = Config {
        source: PathBuf::from("properties.toml"),
        zones: vec![ZoneConfig {
            server: "127.0.0.1:53".into(),
            zone: Name::from_ascii(ZONE).unwrap(),
            key_file: PathBuf::from("k"),
            key_name: None,
            ttl: OWN_TTL,
            timeout: Duration::from_secs(2),
            resync_interval: Duration::from_secs(60),
            secondaries: Secondaries::Ns,
        }],
        http: HttpConfig { listen: None },
        ha: None,
        nodes,
        pools,
    };

    let mut health = BTreeMap::new();
    let mut zone = Zone::default();
    let mut retired: BTreeMap<RRsetKey, BTreeSet<Rdata>> = BTreeMap::new();
    for (pi, pool) in config.pools.iter().enumerate() {
        for &ni in &pool.nodes {
            for (ai, &address) in config.nodes[ni].addresses.iter().enumerate() {
                let t = target_index(pi, ni, ai);
                health.insert((pi, ni, address), raw.health[t]);
            }
        }
        let owner = name_key(&pool.fqdn.to_ascii());
        let stored = if raw.quirks.upper[pi] {
            owner.to_ascii_uppercase()
        } else {
            owner.clone()
        };
        for (slot, rtype) in rtypes(pool.kind).into_iter().enumerate() {
            let key = RRsetKey {
                name: owner.clone(),
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
                    stored.clone(),
                    RRset {
                        ttl: raw_set.ttl,
                        records,
                    },
                );
            }
        }
    }
    // The nodes' hosts have addresses (an MX to an in-zone host without one
    // is held back: BIND would refuse the whole UPDATE).
    for i in 0..config.nodes.len() {
        let host = host_of(i);
        zone.insert(
            RRsetKey::new(&host, RType::A),
            host.clone(),
            RRset {
                ttl: 3600,
                records: [other_rdata(RType::A, 2)].into(),
            },
        );
    }
    // A foreign-only RRset at a name no pool uses.
    zone.insert(
        RRsetKey {
            name: fqdn("www"),
            rtype: RType::A,
        },
        fqdn("www"),
        RRset {
            ttl: raw.www_ttl,
            records: [other_rdata(RType::A, 0)].into(),
        },
    );
    if raw.quirks.wildcard {
        for rtype in [RType::A, RType::Mx] {
            zone.wildcard.insert(
                rtype,
                RRset {
                    ttl: 3600,
                    records: [other_rdata(rtype, 3)].into(),
                },
            );
        }
    }
    // A CNAME at a pool's name: nothing else may sit beside it.
    if let Some(pi) = raw.quirks.cname.filter(|&pi| pi < config.pools.len()) {
        let owner = name_key(&config.pools[pi].fqdn.to_ascii());
        if owner != ZONE {
            zone.sets.retain(|k, _| k.name != owner);
            retired.retain(|k, _| k.name != owner);
            zone.cnames.insert(owner, "elsewhere.example.net.".into());
        }
    }
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
// The oracle: the rules of docs/records.md, written from them
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
                    exchange: name_key(&node.host.to_ascii()),
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
                    target: name_key(&node.host.to_ascii()),
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

/// The owned records an RRset must hold afterwards, from docs/records.md:
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
// A model of the primary, as BIND 9.18 answers, fed the wire messages
// ---------------------------------------------------------------------------

/// Why the model primary refused an UPDATE.
#[derive(Debug)]
enum Refused {
    /// RFC 2136 §3.2.5: a prerequisite failed.
    Prerequisite(ResponseCode, #[allow(dead_code)] String),
    /// §3.1, §3.4.1: something the model does not expect pigeon-dns to send.
    FormErr(String),
}

fn key_of(record: &Record) -> Result<RRsetKey, Refused> {
    let rtype = match record.record_type() {
        RecordType::A => RType::A,
        RecordType::AAAA => RType::Aaaa,
        RecordType::MX => RType::Mx,
        RecordType::SRV => RType::Srv,
        RecordType::CNAME => RType::Cname,
        other => return Err(Refused::FormErr(format!("unexpected type {other}"))),
    };
    Ok(RRsetKey::new(&record.name.to_ascii(), rtype))
}

fn rdata_of(data: &RData) -> Result<Rdata, Refused> {
    convert::rdata(data).ok_or_else(|| Refused::FormErr(format!("unexpected rdata {data:?}")))
}

/// Applies one UPDATE message to `zone`, RFC 2136 §3: the zone section must
/// name the zone (§3.1); every prerequisite is checked first (§3.2), names
/// compared case-insensitively and never through a wildcard; then the
/// updates are applied in order (§3.4.2), an add beside a CNAME ignored as
/// BIND does. All or nothing.
fn rfc2136_apply(zone: &mut Zone, wire: &[u8]) -> Result<(), Refused> {
    let message = Message::from_vec(wire).map_err(|e| Refused::FormErr(e.to_string()))?;
    if message.metadata.op_code != OpCode::Update {
        return Err(Refused::FormErr("not an UPDATE".into()));
    }
    let zname: Vec<String> = message
        .queries
        .iter()
        .map(|q| name_key(&q.name().to_ascii()))
        .collect();
    if zname != [ZONE.to_owned()] {
        return Err(Refused::FormErr(format!("zone section {zname:?}")));
    }
    let held = |zone: &Zone, key: &RRsetKey| -> BTreeSet<Rdata> {
        if key.rtype == RType::Cname {
            return BTreeSet::new();
        }
        zone.get(key).map(|s| s.records.clone()).unwrap_or_default()
    };
    // §3.2: value-dependent prerequisites (class IN, TTL 0) are collected per
    // RRset and compared whole (§3.2.3); class NONE: does not exist
    // (§2.4.3); class ANY: exists (§2.4.1).
    let mut temp: BTreeMap<RRsetKey, BTreeSet<Rdata>> = BTreeMap::new();
    for record in &message.answers {
        let key = key_of(record)?;
        match record.dns_class {
            DNSClass::NONE => {
                if !held(zone, &key).is_empty() {
                    return Err(Refused::Prerequisite(
                        ResponseCode::YXRRSet,
                        key.to_string(),
                    ));
                }
            }
            DNSClass::ANY => {
                let exists = if key.rtype == RType::Cname {
                    zone.cnames.contains_key(&key.name)
                } else {
                    !held(zone, &key).is_empty()
                };
                if !exists {
                    return Err(Refused::Prerequisite(
                        ResponseCode::NXRRSet,
                        key.to_string(),
                    ));
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
        let have = held(zone, key);
        if &have != wanted {
            return Err(Refused::Prerequisite(
                ResponseCode::NXRRSet,
                format!("{key}: have {have:?}, wanted {wanted:?}"),
            ));
        }
    }
    let mut next = zone.clone();
    for record in &message.authorities {
        let key = key_of(record)?;
        let rdata = rdata_of(&record.data)?;
        match record.dns_class {
            DNSClass::IN => {
                if next.cnames.contains_key(&key.name) {
                    // "attempt to add non-CNAME alongside CNAME ignored"
                    continue;
                }
                let owner = record.name.to_ascii();
                let entry = next
                    .sets
                    .entry(key)
                    .or_insert_with(|| (owner, RRset::default()));
                entry.1.ttl = record.ttl;
                entry.1.records.insert(rdata);
            }
            DNSClass::NONE => {
                if record.ttl != 0 {
                    return Err(Refused::FormErr("delete with TTL".into()));
                }
                if let Some((_, set)) = next.sets.get_mut(&key) {
                    set.records.remove(&rdata);
                    if set.records.is_empty() {
                        next.sets.remove(&key);
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

/// Whether a node exists: the apex, a CNAME, records at the name, or a name
/// below it (an empty non-terminal).
fn node_exists(zone: &Zone, name: &str) -> bool {
    name == ZONE
        || zone.cnames.contains_key(name)
        || zone
            .sets
            .keys()
            .map(|k| &k.name)
            .chain(zone.cnames.keys())
            .any(|n| n == name || n.ends_with(&format!(".{name}")))
}

/// The model primary.
struct Model {
    zone: Mutex<Zone>,
    /// Every UPDATE sent, as an nsupdate-like summary (for failure messages).
    updates: Mutex<Vec<String>>,
}

impl Model {
    fn new(zone: Zone) -> Self {
        Self {
            zone: Mutex::new(zone),
            updates: Mutex::new(Vec::new()),
        }
    }

    fn fail(rcode: ResponseCode) -> DnsError {
        DnsError::Rcode {
            server: "model".into(),
            rcode,
        }
    }

    /// The answer to a query, as BIND gives it.
    fn answer(&self, qname: &Name, qtype: RecordType) -> Result<Vec<Record>, DnsError> {
        let zone = self.zone.lock().unwrap();
        let name = name_key(&qname.to_ascii());
        let record = |owner: &str, ttl, data| {
            Record::from_rdata(Name::from_ascii(owner).unwrap(), ttl, data)
        };
        if node_exists(&zone, &name) {
            if let Some(target) = zone.cnames.get(&name) {
                let data = RData::CNAME(CNAME(Name::from_ascii(target).unwrap()));
                return Ok(vec![record(&name, 300, data)]);
            }
            let mut out = Vec::new();
            for ((owner, set), key) in zone.sets.iter().map(|(k, v)| (v, k)) {
                if key.name == name && convert::record_type(key.rtype) == qtype {
                    for r in &set.records {
                        out.push(record(owner, set.ttl, convert::to_rdata(r).unwrap()));
                    }
                }
            }
            return Ok(out);
        }
        // Not a node: the wildcard at the apex answers for any name below
        // it (every name here is below the apex), with the query's name.
        if zone.wildcard.is_empty() || !name.ends_with(&format!(".{ZONE}")) {
            return Err(Self::fail(ResponseCode::NXDomain));
        }
        Ok(zone
            .wildcard
            .iter()
            .filter(|(t, _)| convert::record_type(**t) == qtype)
            .flat_map(|(_, set)| {
                set.records.iter().map(|r| {
                    Record::from_rdata(qname.clone(), set.ttl, convert::to_rdata(r).unwrap())
                })
            })
            .collect())
    }
}

/// The model behind the client side's [`Exchange`].
struct Server(Arc<Model>);

impl Exchange for Server {
    fn server(&self) -> &str {
        "model:53"
    }

    async fn exchange(&self, message: Message) -> Result<Message, DnsError> {
        let mut reply = Message::new(
            message.metadata.id,
            MessageType::Response,
            message.metadata.op_code,
        );
        if message.metadata.op_code == OpCode::Update {
            let wire = message
                .to_vec()
                .map_err(|e| DnsError::Build(e.to_string()))?;
            let mut zone = self.0.zone.lock().unwrap();
            let result = rfc2136_apply(&mut zone, &wire);
            // Prerequisite-only UPDATEs (exact reads) change nothing: not listed.
            if !message.authorities.is_empty() {
                self.0.updates.lock().unwrap().push(format!(
                    "{:?} -> {result:?}",
                    message
                        .authorities
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                ));
            }
            return match result {
                Ok(()) => Ok(reply),
                Err(Refused::Prerequisite(rcode, _)) => Err(Model::fail(rcode)),
                Err(Refused::FormErr(why)) => Err(DnsError::Malformed {
                    server: "model".into(),
                    reason: why,
                }),
            };
        }
        let query = &message.queries[0];
        reply.answers = self.0.answer(query.name(), query.query_type())?;
        Ok(reply)
    }
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// One pass of the reconciler against the model: the zone after it, and the
/// UPDATEs sent.
fn reconcile_through_model(case: &Case) -> Result<(Zone, Vec<String>), TestCaseError> {
    let model = Arc::new(Model::new(case.zone.clone()));
    let layout = Layout::new(&case.config, "properties.test");
    let labels = pool_labels(&case.config);
    let mut health = HashMap::new();
    for (&(pi, ni, address), &state) in &case.health {
        if state != State::Unknown {
            let node = &case.config.nodes[ni].name;
            health.insert(TargetId::new(&labels[pi], node, address), state);
        }
    }
    let zone = &layout.zones[0];
    let mut reconciler = ZoneReconciler::new(
        ZoneSetup {
            zone: ZONE.into(),
            ttl: OWN_TTL,
            resync_interval: Duration::from_secs(60),
            max_records: 0,
        },
        zone.shape.clone(),
        DnsPrimary::new(Server(model.clone()), ZONE),
        Writer::new(Mode::Write, None, "token", "properties"),
        Metrics::new(prometheus::Registry::new()).unwrap(),
        Arc::new(Board::default()),
        health,
        zone.targets,
    );
    reconciler.retire(case.retired.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let outcome = runtime.block_on(reconciler.pass(tokio::time::Instant::now()));
    let updates = model.updates.lock().unwrap().clone();
    let outcome = outcome.map_err(|e| {
        TestCaseError::fail(format!(
            "the pass failed against the zone it read: {e}\nUPDATEs: {updates:#?}"
        ))
    })?;
    let cnames = case
        .config
        .pools
        .iter()
        .filter(|p| case.zone.cnames.contains_key(&name_key(&p.fqdn.to_ascii())))
        .count();
    prop_assert!(
        outcome.blocked <= cnames * 2,
        "changes blocked without a CNAME in the way: {outcome:?}"
    );
    let after = model.zone.lock().unwrap().clone();
    Ok((after, updates))
}

fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let (after, updates) = reconcile_through_model(case)?;
    let lookup = |pool: usize, node: usize, address: IpAddr| {
        case.health
            .get(&(pool, node, address))
            .copied()
            .unwrap_or(State::Unknown)
    };
    let empty = RRset::default();
    // Owned records: exactly what the rules of docs/records.md ask for; a pool whose
    // name is a CNAME is left alone.
    let mut owned_keys: BTreeMap<RRsetKey, BTreeSet<Rdata>> = BTreeMap::new();
    for (pi, pool) in case.config.pools.iter().enumerate() {
        let owner = name_key(&pool.fqdn.to_ascii());
        for rtype in rtypes(pool.kind) {
            let key = RRsetKey {
                name: owner.clone(),
                rtype,
            };
            let cands = candidates(&case.config, pi, rtype, &lookup);
            let owned: BTreeSet<Rdata> = cands.iter().map(|c| c.rdata.clone()).collect();
            owned_keys
                .entry(key.clone())
                .or_default()
                .extend(owned.clone());
            // The records of `key` in `zone` that the pool may own.
            let owned_in = |zone: &Zone| -> BTreeSet<Rdata> {
                zone.get(&key)
                    .unwrap_or(&empty)
                    .records
                    .intersection(&owned)
                    .cloned()
                    .collect()
            };
            let got = owned_in(&after);
            if case.zone.cnames.contains_key(&owner) {
                prop_assert!(got.is_empty(), "records added beside the CNAME at {owner}");
                continue;
            }
            let before = owned_in(&case.zone);
            let want = expected_owned(&cands, &before, pool.all_down);
            prop_assert_eq!(
                &got,
                &want,
                "owned records of {} (before: {:?}; candidates: {:?}; policy {:?})\nUPDATEs: {:#?}",
                key,
                before,
                cands,
                pool.all_down,
                updates
            );
        }
    }
    // Nothing was even sent for a name that is a CNAME.
    for name in case.zone.cnames.keys() {
        prop_assert!(
            !updates.iter().any(|u| u.contains(&format!("{name} "))),
            "an UPDATE touched the CNAME name {}: {:#?}",
            name,
            updates
        );
    }
    prop_assert_eq!(&after.cnames, &case.zone.cnames, "a CNAME changed");
    prop_assert_eq!(&after.wildcard, &case.zone.wildcard, "the wildcard changed");
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
    for (key, (_, set)) in &case.zone.sets {
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
    for key in after.sets.keys() {
        prop_assert!(
            case.zone.sets.contains_key(key) || owned_keys.contains_key(key),
            "a record set appeared at {key}, which pigeon-dns does not own"
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
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
    fn one_pass_leaves_exactly_the_desired_owned_records_and_every_foreign_one(raw in raw_case()) {
        let case = make_case(&raw);
        check_case(&case)?;
    }

    /// Health unchanged, a second pass from the state the first left
    /// changes nothing: the desired records are a fixed point, so DNS does
    /// not move while no target's state does.
    #[test]
    fn a_second_pass_with_the_same_health_changes_nothing(raw in raw_case()) {
        let case = make_case(&raw);
        let (after, first) = reconcile_through_model(&case)?;
        let second = Case { zone: after, retired: BTreeMap::new(), ..case };
        let (_, again) = reconcile_through_model(&second)?;
        prop_assert!(
            again.is_empty(),
            "with the same health, the second pass sends another UPDATE:\n{:#?}\nafter the first:\n{:#?}\nhealth (pool, node, address): {:?}",
            again,
            first,
            second.health,
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
/// (names case-insensitively, TTLs ignored), "does not exist" means no
/// record at all, "exists" never matches through a wildcard, an add gives the
/// set the TTL it carries and is ignored beside a CNAME, a delete removes
/// one record.
#[test]
fn the_rfc2136_model_checks_prerequisites_and_applies_changes() {
    let key = RRsetKey::new(&fqdn("imap"), RType::A);
    let a = |last: u8| Rdata::A(Ipv4Addr::new(192, 0, 2, last));
    let set = |ttl: u32, records: &[u8]| RRset {
        ttl,
        records: records.iter().map(|&l| a(l)).collect(),
    };
    let zone_with = |s: RRset| {
        let mut z = Zone::default();
        z.insert(key.clone(), "IMAP.example.com.".into(), s);
        z
    };
    let wire = |expected: &[u8], adds: &[u8], deletes: &[u8]| {
        let mut u = Update::new(ZONE);
        u.require(
            RRsetKey::new("Imap.Example.com.", RType::A),
            expected.iter().map(|&l| a(l)).collect(),
        );
        u.changes
            .extend(adds.iter().map(|&l| pigeon_dns::dns::Change::Add {
                key: key.clone(),
                rdata: a(l),
                ttl: 300,
            }));
        u.changes
            .extend(deletes.iter().map(|&l| pigeon_dns::dns::Change::Delete {
                key: key.clone(),
                rdata: a(l),
            }));
        u.to_message().unwrap().to_vec().unwrap()
    };
    // Holds (case and TTL ignored): applied, the set takes the TTL added with.
    let mut zone = zone_with(set(60, &[1, 3]));
    rfc2136_apply(&mut zone, &wire(&[1, 3], &[2], &[1])).unwrap();
    assert_eq!(zone.get(&key), Some(&set(300, &[2, 3])));
    // Stale (a record more, or less): refused, nothing applied.
    for stale in [&[1u8, 3, 4][..], &[1][..]] {
        let mut zone = zone_with(set(60, stale));
        let before = zone.clone();
        let refused = rfc2136_apply(&mut zone, &wire(&[1, 3], &[2], &[1]));
        assert!(
            matches!(refused, Err(Refused::Prerequisite(..))),
            "{refused:?}"
        );
        assert_eq!(zone, before);
    }
    // "Does not exist" fails on any record; the last delete removes the set.
    let mut zone = zone_with(set(60, &[1]));
    let refused = rfc2136_apply(&mut zone, &wire(&[], &[], &[]));
    assert!(
        matches!(refused, Err(Refused::Prerequisite(..))),
        "{refused:?}"
    );
    rfc2136_apply(&mut zone, &wire(&[1], &[], &[1])).unwrap();
    assert!(zone.sets.is_empty());
    // A wildcard answers queries but is no RRset to a prerequisite.
    let mut zone = Zone::default();
    zone.wildcard.insert(RType::A, set(60, &[9]));
    let model = Model::new(zone.clone());
    let answers = model
        .answer(
            &Name::from_ascii("imap.example.com.").unwrap(),
            RecordType::A,
        )
        .unwrap();
    assert_eq!(answers.len(), 1);
    let mut exists = Update::new(ZONE);
    exists
        .prerequisites
        .push(pigeon_dns::dns::Prerequisite::Exists(key.clone()));
    let refused = rfc2136_apply(&mut zone, &exists.to_message().unwrap().to_vec().unwrap());
    assert!(matches!(
        refused,
        Err(Refused::Prerequisite(ResponseCode::NXRRSet, _))
    ));
    // Beside a CNAME an add is ignored, as BIND does.
    let mut zone = Zone::default();
    zone.cnames
        .insert(key.name.clone(), "x.example.net.".into());
    rfc2136_apply(&mut zone, &wire(&[], &[1], &[])).unwrap();
    assert!(zone.sets.is_empty());
}
