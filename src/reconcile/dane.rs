//! `dane = "manage"` in the reconciler of the zone holding the TLSA owners:
//! the `3 1 1` records of the keys the nodes serve (and of their
//! `tlsa_next`), each with its publication mark, and which nodes the
//! rollover keeps out of their pools. The decisions are the pure planner's
//! ([`crate::dane::TlsaManager`]); this file feeds it what the primary
//! holds and what the probes saw, and turns its plan into record changes.
//!
//! Only `3 1 1` records and `pigeon-dns tlsa=...` marks at the managed
//! owners are ever added or deleted; every other record there is foreign
//! and left alone. A record and its mark go out in the same UPDATE, each
//! RRset guarded by its prerequisite like every other change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::core::diff::RRsetChange;
use crate::core::health::State;
use crate::core::records::{RRset, RRsetKey, RType, Rdata, View};
use crate::dane::{
    KeyDigest, ManageInput, Publish, Published, ServiceDecision, ServiceKeys, Tlsa, TlsaManager,
    TlsaMark, TlsaPlan, TlsaRrset,
};
use crate::probe::TlsaCache;
use crate::targets::TargetId;

/// One node's service at one TLSA owner, in the `manage` pools of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedService {
    pub node: Arc<str>,
    /// `_<port>._tcp.<host>.`, a name key.
    pub owner: String,
    /// The labels of the `manage` pools that publish the node with this owner.
    pub pools: Vec<Arc<str>>,
    pub addresses: Vec<IpAddr>,
    /// The digests of the node's `tlsa_next`.
    pub next: Vec<KeyDigest>,
}

/// What a zone's reconciler manages of DANE (depends on the config alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsaShape {
    pub services: Vec<ManagedService>,
    /// A pool of the zone uses DANE (verify or manage): the zone must be
    /// signed, and is checked for a DNSKEY.
    pub dane: bool,
}

impl TlsaShape {
    /// The managed owners (name keys).
    pub fn owners(&self) -> BTreeSet<String> {
        self.services.iter().map(|s| s.owner.clone()).collect()
    }
}

/// Whether a node may be published in a pool, as health sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// A key it serves has a record too young (or none): treated as down,
    /// so the pool rules (never empty, `all_down`) still hold.
    Out,
    /// No key seen yet: neither added nor removed, like an undecided target.
    Unknown,
}

/// The wall clock the marks are written and read with, from an instant of
/// tokio's clock (tests anchor it, so that paused time moves it too).
pub type WallClock = Arc<dyn Fn(Instant) -> SystemTime + Send + Sync>;

/// The DANE state of one zone's reconciler.
pub(super) struct DaneState {
    pub(super) shape: Arc<TlsaShape>,
    manager: TlsaManager,
    /// The key each `manage` target served at its last handshake.
    served: HashMap<TargetId, KeyDigest>,
    /// `(pool label, node)` kept out of the pool, and why.
    pub(super) holds: HashMap<(String, String), Hold>,
    /// The last decisions, logged when they change.
    decisions: BTreeMap<(String, String), Hold>,
    /// When the plan changes by the clock alone: plan again then.
    pub(super) wake: Option<Instant>,
    /// The DNSKEY check ran (once per zone reconciler).
    pub(super) dnskey_checked: bool,
    /// The probes' TLSA reads, told of the owners changed.
    cache: Option<Arc<TlsaCache>>,
    /// How far ahead of the send a mark is stamped (the request timeout):
    /// never earlier than the record can be seen.
    stamp_ahead: Duration,
    wall: WallClock,
}

impl Default for DaneState {
    fn default() -> Self {
        Self {
            shape: Arc::default(),
            manager: TlsaManager::new(),
            served: HashMap::new(),
            holds: HashMap::new(),
            decisions: BTreeMap::new(),
            wake: None,
            dnskey_checked: false,
            cache: None,
            stamp_ahead: Duration::from_secs(2),
            wall: Arc::new(|_| SystemTime::now()),
        }
    }
}

/// What one plan decided, for the pass.
pub(super) struct DanePlan {
    pub(super) changes: Vec<RRsetChange>,
    /// Per `(pool, node)` of the managed services, why it is kept out now
    /// (`None`: it is not), and whether that changed since the last plan.
    pub(super) notes: Vec<Note>,
}

/// A `(pool, node)`'s decision, as `/status` and the log tell it.
pub(super) struct Note {
    pub(super) pool: String,
    pub(super) node: String,
    pub(super) held_out: Option<String>,
    pub(super) changed: bool,
}

impl DaneState {
    pub(super) fn configure(
        &mut self,
        shape: Arc<TlsaShape>,
        cache: Option<Arc<TlsaCache>>,
        stamp_ahead: Duration,
    ) {
        self.shape = shape;
        self.cache = cache;
        self.stamp_ahead = stamp_ahead;
        let owners = self.shape.owners();
        self.served.retain(|id, _| {
            self.shape
                .services
                .iter()
                .any(|s| s.node == id.node && s.pools.contains(&id.pool))
        });
        self.holds.clear();
        self.decisions.retain(|(_, node), _| {
            self.shape
                .services
                .iter()
                .any(|s| &*s.node == node.as_str())
        });
        if owners.is_empty() {
            self.wake = None;
        }
    }

    pub(super) fn set_wall_clock(&mut self, wall: WallClock) {
        self.wall = wall;
    }

    /// A handshake of a `manage` target showed the key it serves.
    pub(super) fn served(&mut self, target: TargetId, key: KeyDigest) {
        self.served.insert(target, key);
    }

    /// An UPDATE changed `key`: a TLSA RRset the probes must read again.
    pub(super) fn changed(&self, key: &RRsetKey) {
        if let (RType::Tlsa, Some(cache)) = (key.rtype, &self.cache) {
            cache.invalidate(&key.name);
        }
    }

    /// The names to read besides the pools': each managed owner's TLSA and
    /// TXT (the marks) RRsets.
    pub(super) fn reads(&self) -> Vec<(String, [RType; 2])> {
        self.shape
            .owners()
            .into_iter()
            .map(|o| (o, [RType::Tlsa, RType::Txt]))
            .collect()
    }

    /// What the planner sees: the RRsets as `view` holds them, the keys
    /// served and announced.
    fn input(&self, view: &View, ttl: u32, now: Instant) -> ManageInput {
        let wall_now = (self.wall)(now);
        let mut rrsets = BTreeMap::new();
        for owner in self.shape.owners() {
            let tlsa = view.get(&RRsetKey::new(&owner, RType::Tlsa));
            let marks = marks(view.get(&RRsetKey::new(&owner, RType::Txt)));
            let records = tlsa
                .map(|set| {
                    set.records
                        .iter()
                        .filter_map(Tlsa::of_rdata)
                        .map(|tlsa| Published {
                            since: tlsa
                                .managed_digest()
                                .and_then(|d| marks.get(&d))
                                .map(|m| m.since(now, wall_now)),
                            tlsa,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let ttl = tlsa.filter(|s| !s.is_empty()).map(|s| s.ttl);
            rrsets.insert(owner, TlsaRrset { ttl, records });
        }
        let services = self
            .shape
            .services
            .iter()
            .map(|s| ServiceKeys {
                node: s.node.to_string(),
                owner: s.owner.clone(),
                served: s
                    .pools
                    .iter()
                    .flat_map(|pool| {
                        s.addresses.iter().map(|&address| {
                            let id = TargetId {
                                pool: pool.clone(),
                                node: s.node.clone(),
                                address,
                            };
                            (address, self.served.get(&id).copied())
                        })
                    })
                    .collect(),
                next: s.next.clone(),
            })
            .collect();
        ManageInput {
            ttl,
            rrsets,
            services,
        }
    }

    /// Plans at `now` from `view`: the holds health will see, the changes
    /// to send (stamped `now` plus the request timeout), when to plan again.
    pub(super) fn plan(&mut self, now: Instant, view: &View, ttl: u32) -> DanePlan {
        let mut out = DanePlan {
            changes: Vec::new(),
            notes: Vec::new(),
        };
        if self.shape.services.is_empty() {
            self.wake = None;
            return out;
        }
        let input = self.input(view, ttl, now);
        let plan = self.manager.plan(now, &input);
        self.wake = plan.wake;
        self.holds.clear();
        let mut decisions = BTreeMap::new();
        for (service, decision) in self.shape.services.iter().zip(&plan.services) {
            let hold = match decision.publish {
                Publish::Yes => None,
                Publish::HoldOut { .. } => Some(Hold::Out),
                Publish::Unknown => Some(Hold::Unknown),
            };
            let held_out = hold.map(|_| self.note(decision, now));
            for pool in &service.pools {
                let key = (pool.to_string(), service.node.to_string());
                if let Some(hold) = hold {
                    self.holds.insert(key.clone(), hold);
                    decisions.insert(key.clone(), hold);
                }
                out.notes.push(Note {
                    changed: self.decisions.get(&key) != hold.as_ref(),
                    pool: key.0,
                    node: key.1,
                    held_out: held_out.clone(),
                });
            }
        }
        self.decisions = decisions;
        let stamp = (self.wall)(now) + self.stamp_ahead;
        out.changes = changes(&plan, view, &self.shape.owners(), ttl, stamp);
        out
    }

    /// Why a node is kept out, with the wall-clock time it returns (a
    /// countdown would be stale by the next look).
    fn note(&self, decision: &ServiceDecision, now: Instant) -> String {
        let owner = decision.owner.trim_end_matches('.');
        match &decision.publish {
            Publish::HoldOut { until, waiting } => {
                let keys: Vec<String> = waiting.iter().map(KeyDigest::short).collect();
                let at = (self.wall)(now) + until.saturating_duration_since(now);
                format!(
                    "DANE: held out until {}: the TLSA record of key {} at {owner} is not yet \
                     published for twice the TTL",
                    crate::probe::format_time(at),
                    keys.join(", ")
                )
            }
            _ => decision.detail(now),
        }
    }

    /// How health reads for `pool`'s `node`, given its decided `state`.
    pub(super) fn health(&self, pool: &str, node: &str, state: State) -> State {
        if self.holds.is_empty() || state != State::Up {
            return state;
        }
        match self.holds.get(&(pool.to_owned(), node.to_owned())) {
            Some(Hold::Out) => State::Down,
            Some(Hold::Unknown) => State::Unknown,
            None => state,
        }
    }
}

/// The marks in a TXT RRset, by digest: the latest of each (a later mark
/// only lengthens the hold-out).
fn marks(set: Option<&RRset>) -> BTreeMap<KeyDigest, TlsaMark> {
    let mut out: BTreeMap<KeyDigest, TlsaMark> = BTreeMap::new();
    for mark in set
        .into_iter()
        .flat_map(|s| s.records.iter())
        .filter_map(mark_of)
    {
        let entry = out.entry(mark.digest).or_insert(mark);
        if mark.published > entry.published {
            *entry = mark;
        }
    }
    out
}

fn mark_of(rdata: &Rdata) -> Option<TlsaMark> {
    rdata.txt_text().as_deref().and_then(TlsaMark::parse)
}

/// The TTL of additions to `set`: its own while it holds records (a TLSA
/// RRset's TTL is what caches hold it for: never changed under them),
/// `ttl` for an empty one.
fn ttl_of(set: Option<&RRset>, ttl: u32) -> u32 {
    set.filter(|s| !s.is_empty()).map_or(ttl, |s| s.ttl)
}

/// The record changes of `plan`: per owner, its TLSA additions and
/// deletions, and the marks that go with them (a mark for each record
/// added, stamped `stamp`; the marks of records deleted, of records added
/// again, and marks left without their record go).
pub(super) fn changes(
    plan: &TlsaPlan,
    view: &View,
    owners: &BTreeSet<String>,
    ttl: u32,
    stamp: SystemTime,
) -> Vec<RRsetChange> {
    let mut out = Vec::new();
    for owner in owners {
        let tlsa_key = RRsetKey::new(owner, RType::Tlsa);
        let txt_key = RRsetKey::new(owner, RType::Txt);
        let tlsa_set = view.get(&tlsa_key);
        let txt_set = view.get(&txt_key);
        let at = |list: &[(String, Tlsa)]| -> Vec<Tlsa> {
            list.iter()
                .filter(|(o, _)| o.eq_ignore_ascii_case(owner))
                .map(|(_, t)| t.clone())
                .collect()
        };
        let (adds, deletes) = (at(&plan.add), at(&plan.remove));
        let added: BTreeSet<KeyDigest> = adds.iter().filter_map(Tlsa::managed_digest).collect();
        let removed: BTreeSet<KeyDigest> =
            deletes.iter().filter_map(Tlsa::managed_digest).collect();
        let present: BTreeSet<KeyDigest> = tlsa_set
            .into_iter()
            .flat_map(|s| s.records.iter())
            .filter_map(Tlsa::of_rdata)
            .filter_map(|t| t.managed_digest())
            .collect();
        let mut mark_adds: Vec<Rdata> = added
            .iter()
            .map(|d| Rdata::txt(&TlsaMark::stamped(*d, stamp).text()))
            .collect();
        let mut mark_deletes: Vec<Rdata> = txt_set
            .into_iter()
            .flat_map(|s| s.records.iter())
            .filter(|r| {
                mark_of(r).is_some_and(|m| {
                    removed.contains(&m.digest)
                        || added.contains(&m.digest)
                        || !present.contains(&m.digest)
                })
            })
            .cloned()
            .collect();
        // A mark deleted and added again unchanged stays as it is.
        let same: Vec<Rdata> = mark_adds
            .iter()
            .filter(|r| mark_deletes.contains(r))
            .cloned()
            .collect();
        mark_adds.retain(|r| !same.contains(r));
        mark_deletes.retain(|r| !same.contains(r));
        if !adds.is_empty() || !deletes.is_empty() {
            out.push(RRsetChange {
                key: tlsa_key,
                deletes: deletes.iter().map(Tlsa::rdata).collect(),
                adds: adds.iter().map(Tlsa::rdata).collect(),
                ttl: ttl_of(tlsa_set, ttl),
            });
        }
        if !mark_adds.is_empty() || !mark_deletes.is_empty() {
            out.push(RRsetChange {
                key: txt_key,
                deletes: mark_deletes,
                adds: mark_adds,
                ttl: ttl_of(txt_set, ttl),
            });
        }
    }
    out
}

/// After changes were set aside (refused before, beyond a limit): a mark
/// goes out only with its record. A mark's addition or deletion whose
/// record's change is no longer sent is dropped; a mark left without its
/// record is still deleted.
pub(super) fn align_marks(changes: &mut [RRsetChange], view: &View, owners: &BTreeSet<String>) {
    let mut touched: BTreeSet<(String, KeyDigest)> = BTreeSet::new();
    for change in changes.iter().filter(|c| c.key.rtype == RType::Tlsa) {
        for rdata in change.adds.iter().chain(&change.deletes) {
            if let Some(d) = Tlsa::of_rdata(rdata).and_then(|t| t.managed_digest()) {
                touched.insert((change.key.name.clone(), d));
            }
        }
    }
    for change in changes
        .iter_mut()
        .filter(|c| c.key.rtype == RType::Txt && owners.contains(&c.key.name))
    {
        let name = change.key.name.clone();
        let present: BTreeSet<KeyDigest> = view
            .get(&RRsetKey::new(&name, RType::Tlsa))
            .into_iter()
            .flat_map(|s| s.records.iter())
            .filter_map(|r| Tlsa::of_rdata(r).and_then(|t| t.managed_digest()))
            .collect();
        let sent = |d: &KeyDigest| touched.contains(&(name.clone(), *d));
        change
            .adds
            .retain(|r| mark_of(r).is_none_or(|m| sent(&m.digest)));
        change
            .deletes
            .retain(|r| mark_of(r).is_none_or(|m| sent(&m.digest) || !present.contains(&m.digest)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const OWNER: &str = "_25._tcp.mail1.example.com.";

    fn digest(n: u8) -> KeyDigest {
        KeyDigest([n; 32])
    }

    fn view(tlsa: &[u8], marks: &[(u8, u64)]) -> View {
        let mut view = View::new();
        view.insert(
            RRsetKey::new(OWNER, RType::Tlsa),
            RRset {
                ttl: 300,
                records: tlsa
                    .iter()
                    .map(|n| Tlsa::dane_ee(digest(*n)).rdata())
                    .collect(),
            },
        );
        view.insert(
            RRsetKey::new(OWNER, RType::Txt),
            RRset {
                ttl: 300,
                records: marks
                    .iter()
                    .map(|(n, at)| {
                        Rdata::txt(
                            &TlsaMark {
                                digest: digest(*n),
                                published: *at,
                            }
                            .text(),
                        )
                    })
                    .chain([Rdata::txt("v=foreign")])
                    .collect(),
            },
        );
        view
    }

    fn owners() -> BTreeSet<String> {
        [OWNER.to_owned()].into()
    }

    fn plan(add: &[u8], remove: &[u8]) -> TlsaPlan {
        let at = |list: &[u8]| -> Vec<(String, Tlsa)> {
            list.iter()
                .map(|n| (OWNER.to_owned(), Tlsa::dane_ee(digest(*n))))
                .collect()
        };
        TlsaPlan {
            add: at(add),
            remove: at(remove),
            ..TlsaPlan::default()
        }
    }

    fn texts(change: &RRsetChange) -> (Vec<String>, Vec<String>) {
        let t = |l: &[Rdata]| l.iter().map(ToString::to_string).collect();
        (t(&change.deletes), t(&change.adds))
    }

    #[test]
    fn a_record_goes_with_its_mark_and_keeps_the_rrset_ttl() {
        let stamp = UNIX_EPOCH + Duration::from_millis(1_000_500);
        let view = view(&[1], &[(1, 10)]);
        let out = changes(&plan(&[2], &[1]), &view, &owners(), 60, stamp);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].key.rtype, RType::Tlsa);
        assert_eq!(out[0].ttl, 300, "the RRset's own TTL");
        assert_eq!(
            texts(&out[0]),
            (
                vec![Tlsa::dane_ee(digest(1)).to_string()],
                vec![Tlsa::dane_ee(digest(2)).to_string()]
            )
        );
        let (deleted, added) = texts(&out[1]);
        assert_eq!(
            deleted,
            [format!(
                "\"pigeon-dns tlsa={} published=10\"",
                "01".repeat(32)
            )]
        );
        assert_eq!(
            added,
            [format!(
                "\"pigeon-dns tlsa={} published=1001\"",
                "02".repeat(32)
            )],
            "rounded up to the second"
        );
    }

    #[test]
    fn marks_without_records_go_and_foreign_txt_stays() {
        // A mark of key 3 whose record is gone; key 1 is marked and kept.
        let view = view(&[1], &[(1, 10), (3, 20)]);
        let out = changes(&plan(&[], &[]), &view, &owners(), 60, UNIX_EPOCH);
        assert_eq!(out.len(), 1, "{out:?}");
        let (deleted, added) = texts(&out[0]);
        assert_eq!(
            deleted,
            [format!(
                "\"pigeon-dns tlsa={} published=20\"",
                "03".repeat(32)
            )]
        );
        assert!(added.is_empty());
        // An empty owner gets dns.ttl.
        let out = changes(&plan(&[4], &[]), &View::new(), &owners(), 60, UNIX_EPOCH);
        assert!(out.iter().all(|c| c.ttl == 60), "{out:?}");
    }

    #[test]
    fn a_mark_is_sent_only_with_its_record() {
        let view = view(&[1], &[(1, 10), (3, 20)]);
        let mut out = changes(&plan(&[2], &[1]), &view, &owners(), 60, UNIX_EPOCH);
        // The TLSA change was set aside (refused before).
        out.retain(|c| c.key.rtype != RType::Tlsa);
        align_marks(&mut out, &view, &owners());
        let (deleted, added) = texts(&out[0]);
        assert!(added.is_empty(), "{added:?}");
        assert_eq!(
            deleted,
            [format!(
                "\"pigeon-dns tlsa={} published=20\"",
                "03".repeat(32)
            )],
            "the orphan mark still goes; key 1's mark stays with its record"
        );
    }

    #[test]
    fn held_out_nodes_read_as_down_and_unknown_ones_as_undecided() {
        let mut state = DaneState::default();
        state.holds.insert(("mx".into(), "mail1".into()), Hold::Out);
        state
            .holds
            .insert(("mx".into(), "mail2".into()), Hold::Unknown);
        assert_eq!(state.health("mx", "mail1", State::Up), State::Down);
        assert_eq!(state.health("mx", "mail2", State::Up), State::Unknown);
        assert_eq!(state.health("mx", "mail2", State::Down), State::Down);
        assert_eq!(state.health("mx", "mail3", State::Up), State::Up);
        assert_eq!(state.health("a", "mail1", State::Up), State::Up);
    }
}
