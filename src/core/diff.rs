//! Pure: the minimal change from what the primary holds to what is desired,
//! touching only owned records, as one [`RRsetChange`] per RRset.
//!
//! An RRset's change is the unit of every UPDATE: its prerequisite (the RRset
//! exactly as the view holds it) is made by the sender from the view when it
//! builds the message, so that parts sent one after another stay consistent,
//! and an RRset the primary refuses can be set aside alone.

use std::collections::{BTreeMap, BTreeSet};

use super::desired::{Desired, Owned};
use super::records::{RRset, RRsetKey, Rdata, View};

/// The changes of one RRset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RRsetChange {
    pub key: RRsetKey,
    pub deletes: Vec<Rdata>,
    pub adds: Vec<Rdata>,
    /// The TTL of the additions: the RRset's own where foreign records share
    /// it (adding with another TTL would change theirs), `dns.ttl` otherwise.
    pub ttl: u32,
}

impl RRsetChange {
    pub fn len(&self) -> usize {
        self.deletes.len() + self.adds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same changes one record at a time, in order (deletions first).
    pub fn per_record(&self) -> Vec<RRsetChange> {
        let one = |deletes: Vec<Rdata>, adds: Vec<Rdata>| RRsetChange {
            key: self.key.clone(),
            deletes,
            adds,
            ttl: self.ttl,
        };
        self.deletes
            .iter()
            .map(|r| one(vec![r.clone()], Vec::new()))
            .chain(self.adds.iter().map(|r| one(Vec::new(), vec![r.clone()])))
            .collect()
    }

    /// Log text: `delete imap.example.com. A 192.0.2.12; add ...`.
    pub fn describe(&self) -> Vec<String> {
        let key = &self.key;
        self.deletes
            .iter()
            .map(|r| format!("delete {} {} {r}", key.name, key.rtype))
            .chain(
                self.adds
                    .iter()
                    .map(|r| format!("add {} {} {} {r}", key.name, self.ttl, key.rtype)),
            )
            .collect()
    }
}

/// Records owned under a previous configuration (a removed node or pool): deleted.
pub type Retired = BTreeMap<RRsetKey, BTreeSet<Rdata>>;

/// Records owned before a reload and not after: to delete.
pub fn retired(before: &Owned, after: &Owned) -> Retired {
    let mut out = Retired::new();
    for (key, records) in before {
        let kept = after.get(key);
        let gone: BTreeSet<Rdata> = records
            .iter()
            .filter(|r| kept.is_none_or(|k| !k.contains(*r)))
            .cloned()
            .collect();
        if !gone.is_empty() {
            out.insert(key.clone(), gone);
        }
    }
    out
}

/// The changes that make `current` hold `desired`. `ttl` applies to RRsets
/// pigeon-dns alone fills.
pub fn plan(
    owned: &Owned,
    desired: &Desired,
    retired: &Retired,
    current: &View,
    ttl: u32,
) -> Vec<RRsetChange> {
    let empty_set = BTreeSet::new();
    let empty_rrset = RRset::default();
    let keys: BTreeSet<&RRsetKey> = owned.keys().chain(retired.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let owned = owned.get(key).unwrap_or(&empty_set);
        let wanted = desired.wanted.get(key).unwrap_or(&empty_set);
        let gone = retired.get(key).unwrap_or(&empty_set);
        let present = current.get(key).unwrap_or(&empty_rrset);
        let deletes: Vec<Rdata> = present
            .records
            .iter()
            .filter(|r| (owned.contains(*r) || gone.contains(*r)) && !wanted.contains(*r))
            .cloned()
            .collect();
        let adds: Vec<Rdata> = wanted.difference(&present.records).cloned().collect();
        if deletes.is_empty() && adds.is_empty() {
            continue;
        }
        let has_foreign = present
            .records
            .iter()
            .any(|r| !owned.contains(r) && !gone.contains(r));
        out.push(RRsetChange {
            key: key.clone(),
            deletes,
            adds,
            ttl: if has_foreign { present.ttl } else { ttl },
        });
    }
    out
}

/// What the primary holds after `change` is applied (RFC 2136 §3.4.2
/// semantics for add and delete-by-rdata). Keeps the cached view current.
pub fn apply(current: &mut View, change: &RRsetChange) {
    let set = current.entry(change.key.clone()).or_default();
    for r in &change.deletes {
        set.records.remove(r);
    }
    if !change.adds.is_empty() {
        // Adding a record gives the whole RRset its TTL.
        set.ttl = change.ttl;
        set.records.extend(change.adds.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::records::RType;

    fn a(s: &str) -> Rdata {
        Rdata::A(s.parse().unwrap())
    }

    fn key() -> RRsetKey {
        RRsetKey::new("imap.example.com.", RType::A)
    }

    fn sets(owned: &[&str], wanted: &[&str]) -> (Owned, Desired) {
        let mut o = Owned::new();
        o.insert(key(), owned.iter().map(|s| a(s)).collect());
        let mut d = Desired::default();
        d.wanted
            .insert(key(), wanted.iter().map(|s| a(s)).collect());
        (o, d)
    }

    fn view(ttl: u32, records: &[&str]) -> View {
        let mut v = View::new();
        v.insert(
            key(),
            RRset {
                ttl,
                records: records.iter().map(|s| a(s)).collect(),
            },
        );
        v
    }

    #[test]
    fn foreign_records_are_never_deleted_and_keep_their_ttl() {
        let (o, d) = sets(&["192.0.2.11", "192.0.2.12"], &["192.0.2.12"]);
        let current = view(300, &["198.51.100.7", "192.0.2.11"]);
        let p = plan(&o, &d, &Retired::new(), &current, 60);
        assert_eq!(
            p,
            vec![RRsetChange {
                key: key(),
                deletes: vec![a("192.0.2.11")],
                adds: vec![a("192.0.2.12")],
                ttl: 300,
            }]
        );
        let mut after = current.clone();
        apply(&mut after, &p[0]);
        assert_eq!(after, view(300, &["198.51.100.7", "192.0.2.12"]));
    }

    #[test]
    fn names_it_alone_fills_get_the_configured_ttl() {
        let (o, d) = sets(&["192.0.2.11"], &["192.0.2.11"]);
        let p = plan(&o, &d, &Retired::new(), &View::new(), 60);
        assert_eq!(p[0].ttl, 60);
        assert_eq!(p[0].adds, vec![a("192.0.2.11")]);
    }

    #[test]
    fn nothing_to_do_is_an_empty_plan() {
        let (o, d) = sets(&["192.0.2.11"], &["192.0.2.11"]);
        let p = plan(&o, &d, &Retired::new(), &view(60, &["192.0.2.11"]), 60);
        assert!(p.is_empty());
    }

    #[test]
    fn retired_records_are_deleted() {
        let (o, d) = sets(&["192.0.2.11"], &["192.0.2.11"]);
        let mut retired = Retired::new();
        retired.insert(key(), BTreeSet::from([a("192.0.2.99")]));
        let p = plan(
            &o,
            &d,
            &retired,
            &view(60, &["192.0.2.11", "192.0.2.99"]),
            60,
        );
        assert_eq!(p[0].deletes, vec![a("192.0.2.99")]);
        assert!(p[0].adds.is_empty());
    }

    #[test]
    fn per_record_keeps_the_order_and_the_ttl() {
        let change = RRsetChange {
            key: key(),
            deletes: vec![a("192.0.2.1")],
            adds: vec![a("192.0.2.2"), a("192.0.2.3")],
            ttl: 300,
        };
        let parts = change.per_record();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].deletes, vec![a("192.0.2.1")]);
        assert!(parts.iter().all(|p| p.ttl == 300 && p.len() == 1));
        assert_eq!(
            change.describe(),
            [
                "delete imap.example.com. A 192.0.2.1",
                "add imap.example.com. 300 A 192.0.2.2",
                "add imap.example.com. 300 A 192.0.2.3"
            ]
        );
    }
}
