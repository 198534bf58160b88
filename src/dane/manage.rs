//! `dane = "manage"`: the pure core of key rollover without a failed
//! delivery.
//!
//! pigeon-dns owns the `3 1 1` records (DANE-EE, SPKI, SHA-256) at each
//! node's TLSA owner `_<port>._tcp.<host>`; every other record there is
//! foreign and never touched. The invariant kept at every moment:
//!
//! > every node published in the pool serves a key that the TLSA RRset
//! > published at least twice its TTL earlier matches.
//!
//! A sender may hold the TLSA RRset in its cache for up to a TTL after it
//! was fetched, and resolvers in a chain may add another: after twice the
//! TTL, no cached RRset predates a record. Hence the rules, after RFC 7671
//! §8.1 (publish the record of the new key beside the old one, and deploy
//! the new key only once every cached RRset holds that record):
//! - a key served or listed in `tlsa_next` that has no record gets one;
//! - a node is published only when every key it serves (on any address)
//!   has had its record for twice the TTL: until then it is held out, and
//!   the plan says when it becomes eligible;
//! - a record no node has served for twice the TTL and that no `tlsa_next`
//!   lists is removed; a record a node serves now is never removed.
//!
//! [`plan`] is a function of plain values; [`TlsaManager`] adds the one
//! thing kept in memory, when each record was last served.
//!
//! # In a reconcile loop
//! 1. Read each managed owner's TLSA RRset and its marks ([`TlsaMark`],
//!    TXT at the same owner) and build a [`TlsaRrset`]: `since` from the
//!    mark ([`TlsaMark::since`]), `None` for a `3 1 1` record without one.
//! 2. Build a [`ServiceKeys`] per node and TLSA owner from the probes (the
//!    leaf's SPKI digest per address, from the last successful handshake)
//!    and the node's `tlsa_next` digests.
//! 3. `manager.plan(now, &input)`; a node whose decision for the pool's
//!    owner is not [`Publish::Yes`] is left out of that pool's records.
//! 4. One UPDATE per zone adds each [`TlsaPlan::add`] record with its mark
//!    ([`TlsaMark::stamped`] with the send time plus the request timeout)
//!    and deletes each [`TlsaPlan::remove`] record with its mark, with the
//!    RRset as read for prerequisite.
//! 5. Plan again at [`TlsaPlan::wake`] at the latest.
//!
//! [`TlsaMark`]: super::TlsaMark
//! [`TlsaMark::since`]: super::TlsaMark::since
//! [`TlsaMark::stamped`]: super::TlsaMark::stamped

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::record::{KeyDigest, Tlsa};

/// How long a record must have been published before a node serving its
/// key may be published: twice the TTL of its RRset.
pub fn hold_out(ttl: u32) -> Duration {
    Duration::from_secs(2 * u64::from(ttl))
}

/// A record at a managed owner, as the primary holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub tlsa: Tlsa,
    /// When it was published, from its mark. `None` for a record without a
    /// mark: it was there before pigeon-dns managed the owner, long ago.
    /// Only `3 1 1` records are looked at.
    pub since: Option<Instant>,
}

/// The TLSA RRset at one managed owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsaRrset {
    /// The RRset's TTL; `None` while the owner has no TLSA record.
    pub ttl: Option<u32>,
    /// Every record, foreign ones included (they are left alone).
    pub records: Vec<Published>,
}

/// What one node serves at one TLSA owner (one per node and owner: a node
/// has one owner per port with `dane = "manage"`, and several nodes may
/// share an owner when they share a host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceKeys {
    pub node: String,
    pub owner: String,
    /// Per address, the SHA-256 of the SubjectPublicKeyInfo it served at
    /// the last successful handshake; `None` before any.
    pub served: Vec<(IpAddr, Option<KeyDigest>)>,
    /// The node's `tlsa_next` keys: published ahead of their use.
    pub next: Vec<KeyDigest>,
}

/// Everything the planner looks at, besides the clock and the memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManageInput {
    /// `dns.ttl`, the TTL of records added to an RRset pigeon-dns alone
    /// fills. The hold-out uses the larger of it and the RRset's TTL, so a
    /// changed `dns.ttl` or foreign records' TTL never shorten it.
    pub ttl: u32,
    /// Per managed owner, the RRset the primary holds now. Owners compare
    /// case-insensitively. `3 1 1` records at an owner listed here that no
    /// service needs are removed in time: list the owners of configured
    /// nodes only.
    pub rrsets: BTreeMap<String, TlsaRrset>,
    pub services: Vec<ServiceKeys>,
}

/// Per owner (lower case) and key, until when a node was last known to
/// serve the key there.
pub type LastServed = BTreeMap<(String, KeyDigest), Instant>;

/// Whether a node may be published in the pools of an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Every key it serves has had its record for twice the TTL.
    Yes,
    /// Some key it serves has no record yet, or a younger one: publishing
    /// the node now could send a sender with a cached RRset to a key that
    /// RRset does not match.
    HoldOut {
        /// When the last of those records will be old enough (assuming the
        /// records this plan adds are published now).
        until: Instant,
        /// The keys whose records are too young (or missing).
        waiting: Vec<KeyDigest>,
    },
    /// No key seen yet (no successful handshake on any address): nothing to
    /// judge by, so not published.
    Unknown,
}

/// The decision for one [`ServiceKeys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDecision {
    pub node: String,
    /// Lower case.
    pub owner: String,
    pub publish: Publish,
}

impl ServiceDecision {
    /// A line for the status page and logs.
    pub fn detail(&self, now: Instant) -> String {
        let owner = self.owner.strip_suffix('.').unwrap_or(&self.owner);
        match &self.publish {
            Publish::Yes => format!(
                "DANE: every key {} serves has had its TLSA record at {owner} for twice the TTL",
                self.node
            ),
            Publish::HoldOut { until, waiting } => {
                let keys: Vec<String> = waiting.iter().map(KeyDigest::short).collect();
                format!(
                    "DANE: {} held out for {}s more: the TLSA record of key {} at {owner} is not \
                     yet published for twice the TTL",
                    self.node,
                    until.saturating_duration_since(now).as_secs_f64().ceil(),
                    keys.join(", ")
                )
            }
            Publish::Unknown => format!(
                "DANE: {} not published until a TLS handshake shows the key it serves at {owner}",
                self.node
            ),
        }
    }
}

/// What to change now, and what may be published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsaPlan {
    /// Records to add, with a mark: `(owner, record)`, sorted.
    pub add: Vec<(String, Tlsa)>,
    /// Records to delete, with their mark: `(owner, record)`, sorted.
    pub remove: Vec<(String, Tlsa)>,
    /// One per [`ManageInput::services`] entry, in the same order.
    pub services: Vec<ServiceDecision>,
    /// The earliest instant a decision changes by the clock alone (a node
    /// becomes eligible, a record is due for removal): plan again then.
    pub wake: Option<Instant>,
}

impl TlsaPlan {
    /// The decision for `node` at `owner`; `None` if the input had none.
    pub fn publish(&self, node: &str, owner: &str) -> Option<&Publish> {
        self.services
            .iter()
            .find(|d| d.node == node && d.owner.eq_ignore_ascii_case(owner))
            .map(|d| &d.publish)
    }

    /// Whether the zone needs an UPDATE.
    pub fn changes(&self) -> bool {
        !self.add.is_empty() || !self.remove.is_empty()
    }
}

/// One owner as the planner sees it.
#[derive(Default)]
struct Owner {
    hold: Duration,
    /// The managed (`3 1 1`) records present, with their publication.
    present: BTreeMap<KeyDigest, Option<Instant>>,
    served: BTreeSet<KeyDigest>,
    next: BTreeSet<KeyDigest>,
}

impl Owner {
    /// When a node serving `key` may be published. `None`: already.
    fn eligible_at(&self, key: &KeyDigest, now: Instant) -> Option<Instant> {
        let at = match self.present.get(key) {
            // Unmarked: there before pigeon-dns, long ago.
            Some(None) => return None,
            Some(Some(since)) => *since + self.hold,
            // Added by this plan: published now.
            None => now + self.hold,
        };
        (at > now).then_some(at)
    }
}

/// The pure planner: records to add and remove, and per service whether it
/// may be published, at `now`. A key missing from `last_served` counts as
/// served now (never removed on a guess); [`TlsaManager`] fills it.
pub fn plan(now: Instant, input: &ManageInput, last_served: &LastServed) -> TlsaPlan {
    let owners = owners(input);
    let mut out = TlsaPlan::default();
    let mut wake: Option<Instant> = None;
    let mut wake_at = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));

    for (name, owner) in &owners {
        for key in owner.served.union(&owner.next) {
            if !owner.present.contains_key(key) {
                out.add.push((name.clone(), Tlsa::dane_ee(*key)));
            }
        }
        for key in owner.present.keys() {
            // Never a record a node serves now, nor one announced as next.
            if owner.served.contains(key) || owner.next.contains(key) {
                continue;
            }
            let last = last_served
                .get(&(name.clone(), *key))
                .copied()
                .unwrap_or(now);
            let due = last + owner.hold;
            if due <= now {
                out.remove.push((name.clone(), Tlsa::dane_ee(*key)));
            } else {
                wake_at(due);
            }
        }
    }

    for service in &input.services {
        let name = service.owner.to_ascii_lowercase();
        let keys: BTreeSet<KeyDigest> = service.served.iter().filter_map(|(_, k)| *k).collect();
        let publish = match owners.get(&name) {
            Some(owner) if !keys.is_empty() => {
                let waiting: Vec<(KeyDigest, Instant)> = keys
                    .iter()
                    .filter_map(|k| owner.eligible_at(k, now).map(|at| (*k, at)))
                    .collect();
                match waiting.iter().map(|(_, at)| *at).max() {
                    None => Publish::Yes,
                    Some(until) => {
                        wake_at(until);
                        Publish::HoldOut {
                            until,
                            waiting: waiting.into_iter().map(|(k, _)| k).collect(),
                        }
                    }
                }
            }
            _ => Publish::Unknown,
        };
        out.services.push(ServiceDecision {
            node: service.node.clone(),
            owner: name,
            publish,
        });
    }
    out.wake = wake;
    out
}

/// The input gathered per owner (lower case).
fn owners(input: &ManageInput) -> BTreeMap<String, Owner> {
    let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
    let mut ttls: BTreeMap<String, u32> = BTreeMap::new();
    for (name, rrset) in &input.rrsets {
        let name = name.to_ascii_lowercase();
        let ttl = ttls.entry(name.clone()).or_insert(0);
        *ttl = (*ttl).max(rrset.ttl.unwrap_or(0));
        let owner = owners.entry(name).or_default();
        for record in &rrset.records {
            if let Some(key) = record.tlsa.managed_digest() {
                owner.present.insert(key, record.since);
            }
        }
    }
    for service in &input.services {
        let owner = owners
            .entry(service.owner.to_ascii_lowercase())
            .or_default();
        owner
            .served
            .extend(service.served.iter().filter_map(|(_, k)| *k));
        owner.next.extend(service.next.iter().copied());
    }
    for (name, owner) in &mut owners {
        let rrset_ttl = ttls.get(name).copied().unwrap_or(0);
        owner.hold = hold_out(rrset_ttl.max(input.ttl));
    }
    owners
}

/// The planner with its memory: until when each record was last served.
///
/// A record stops being served when a plan first sees no node serve it;
/// it is removed twice the TTL after that. After a restart the memory is
/// empty: every record present counts as served until the first plan, so
/// nothing is removed before twice the TTL has passed, time enough for the
/// probes to see again which keys the nodes serve.
#[derive(Debug, Default)]
pub struct TlsaManager {
    memory: BTreeMap<(String, KeyDigest), Seen>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    /// Served until at least then.
    until: Instant,
    /// Served at the last plan.
    serving: bool,
}

impl TlsaManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates the memory from `input` and plans.
    pub fn plan(&mut self, now: Instant, input: &ManageInput) -> TlsaPlan {
        self.observe(now, input);
        plan(now, input, &self.last_served())
    }

    /// Until when each record was last served, as remembered.
    pub fn last_served(&self) -> LastServed {
        self.memory
            .iter()
            .map(|(key, seen)| (key.clone(), seen.until))
            .collect()
    }

    fn observe(&mut self, now: Instant, input: &ManageInput) {
        let served: BTreeSet<(String, KeyDigest)> = input
            .services
            .iter()
            .flat_map(|s| {
                let owner = s.owner.to_ascii_lowercase();
                s.served
                    .iter()
                    .filter_map(move |(_, k)| k.map(|k| (owner.clone(), k)))
            })
            .collect();
        let present: BTreeSet<(String, KeyDigest)> = input
            .rrsets
            .iter()
            .flat_map(|(owner, rrset)| {
                let owner = owner.to_ascii_lowercase();
                rrset
                    .records
                    .iter()
                    .filter_map(move |r| r.tlsa.managed_digest().map(|k| (owner.clone(), k)))
            })
            .collect();
        // A record gone and no longer served needs no memory.
        self.memory
            .retain(|key, _| present.contains(key) || served.contains(key));
        for key in &served {
            self.memory.insert(
                key.clone(),
                Seen {
                    until: now,
                    serving: true,
                },
            );
        }
        for key in present.difference(&served) {
            let seen = self.memory.entry(key.clone()).or_insert(Seen {
                // First seen (at start, or just published): served until now
                // as far as anyone knows.
                until: now,
                serving: false,
            });
            if seen.serving {
                // It stopped between the last plan and this one: at the
                // latest now.
                *seen = Seen {
                    until: now,
                    serving: false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests;
