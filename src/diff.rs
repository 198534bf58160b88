//! Pure: the minimal change from what the primary holds to what is desired,
//! touching only owned records.

use std::collections::{BTreeMap, BTreeSet};

use crate::desired::{Desired, View};
use crate::dns::records::{RRset, RRsetKey, Rdata};
use crate::dns::update::{Change, UpdatePlan};

/// Computes one UPDATE. `ttl` applies to RRsets pigeon-dns alone fills; where
/// foreign records share the RRset, additions take that set's TTL so theirs
/// stays as it was. `retired` are records owned under a previous configuration
/// (a removed node or pool): they are deleted.
pub fn plan(
    desired: &Desired,
    retired: &BTreeMap<RRsetKey, BTreeSet<Rdata>>,
    current: &View,
    ttl: u32,
) -> UpdatePlan {
    let empty_set = BTreeSet::new();
    let empty_rrset = RRset::default();
    let keys: BTreeSet<&RRsetKey> = desired.owned.keys().chain(retired.keys()).collect();
    let mut plan = UpdatePlan::default();
    for key in keys {
        let owned = desired.owned.get(key).unwrap_or(&empty_set);
        let wanted = desired.wanted.get(key).unwrap_or(&empty_set);
        let gone = retired.get(key).unwrap_or(&empty_set);
        let present = current.get(key).unwrap_or(&empty_rrset);
        let deletes: Vec<&Rdata> = present
            .records
            .iter()
            .filter(|r| (owned.contains(*r) || gone.contains(*r)) && !wanted.contains(*r))
            .collect();
        let adds: Vec<&Rdata> = wanted.difference(&present.records).collect();
        if deletes.is_empty() && adds.is_empty() {
            continue;
        }
        let has_foreign = present
            .records
            .iter()
            .any(|r| !owned.contains(r) && !gone.contains(r));
        let add_ttl = if has_foreign { present.ttl } else { ttl };
        plan.prerequisites.push((key.clone(), present.clone()));
        plan.changes
            .extend(deletes.into_iter().map(|r| Change::Delete {
                key: key.clone(),
                rdata: r.clone(),
            }));
        plan.changes.extend(adds.into_iter().map(|r| Change::Add {
            key: key.clone(),
            rdata: r.clone(),
            ttl: add_ttl,
        }));
    }
    plan
}

/// What the primary holds after `plan` is applied (RFC 2136 §3.4.2 semantics
/// for add and delete-by-rdata). Used to keep the cached view current.
pub fn apply(current: &mut View, plan: &UpdatePlan) {
    for change in &plan.changes {
        let set = current.entry(change.key().clone()).or_default();
        match change {
            Change::Add { rdata, ttl, .. } => {
                // Adding a record gives the whole RRset its TTL.
                set.ttl = *ttl;
                set.records.insert(rdata.clone());
            }
            Change::Delete { rdata, .. } => {
                set.records.remove(rdata);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::RType;

    fn a(s: &str) -> Rdata {
        Rdata::A(s.parse().unwrap())
    }

    fn key() -> RRsetKey {
        RRsetKey {
            name: "imap.example.com.".into(),
            rtype: RType::A,
        }
    }

    fn desired(owned: &[&str], wanted: &[&str]) -> Desired {
        let mut d = Desired::default();
        d.owned.insert(key(), owned.iter().map(|s| a(s)).collect());
        d.wanted
            .insert(key(), wanted.iter().map(|s| a(s)).collect());
        d
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
        let d = desired(&["192.0.2.11", "192.0.2.12"], &["192.0.2.12"]);
        let current = view(300, &["198.51.100.7", "192.0.2.11"]);
        let p = plan(&d, &BTreeMap::new(), &current, 60);
        assert_eq!(
            p.changes,
            vec![
                Change::Delete {
                    key: key(),
                    rdata: a("192.0.2.11")
                },
                Change::Add {
                    key: key(),
                    rdata: a("192.0.2.12"),
                    ttl: 300
                },
            ]
        );
        assert_eq!(p.prerequisites, vec![(key(), current[&key()].clone())]);
        let mut after = current.clone();
        apply(&mut after, &p);
        assert_eq!(after, view(300, &["198.51.100.7", "192.0.2.12"]));
    }

    #[test]
    fn names_it_alone_fills_get_the_configured_ttl() {
        let d = desired(&["192.0.2.11"], &["192.0.2.11"]);
        let p = plan(&d, &BTreeMap::new(), &View::new(), 60);
        assert_eq!(p.prerequisites, vec![(key(), RRset::default())]);
        assert!(matches!(p.changes[0], Change::Add { ttl: 60, .. }));
    }

    #[test]
    fn nothing_to_do_is_an_empty_plan() {
        let d = desired(&["192.0.2.11"], &["192.0.2.11"]);
        let p = plan(&d, &BTreeMap::new(), &view(60, &["192.0.2.11"]), 60);
        assert!(p.is_empty());
        assert!(p.prerequisites.is_empty());
    }

    #[test]
    fn retired_records_are_deleted() {
        let d = desired(&["192.0.2.11"], &["192.0.2.11"]);
        let mut retired = BTreeMap::new();
        retired.insert(key(), BTreeSet::from([a("192.0.2.99")]));
        let p = plan(&d, &retired, &view(60, &["192.0.2.11", "192.0.2.99"]), 60);
        assert_eq!(
            p.changes,
            vec![Change::Delete {
                key: key(),
                rdata: a("192.0.2.99")
            }]
        );
    }
}
