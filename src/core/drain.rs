//! Drains at run time: marks kept in the zone itself, as TXT records at
//! `_pigeon-dns-drain.<first zone>`, one per mark:
//! `node=<node> pool=<pool or *> by=<who> at=<unix time> reason=<text>`.
//! In the zone, a mark survives restarts and every instance, writer or
//! standby, sees it; it is added and removed by prerequisite-guarded
//! UPDATEs like everything pigeon-dns shares (the primary serializes them).
//!
//! Pure: parsing, formatting, which marks drain what, and what a `drain`
//! or `undrain` changes in the RRset ([`Edit`]).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::records::Rdata;

/// The owner label of the drain marks, below the first zone.
pub const DRAIN_LABEL: &str = "_pigeon-dns-drain";

/// The pool of a mark that drains a node in every pool.
pub const ALL_POOLS: &str = "*";

/// One drain mark.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrainMark {
    pub node: String,
    /// A pool's label, or [`ALL_POOLS`].
    pub pool: String,
    /// Who drained it (`user@host`).
    pub by: String,
    /// Unix seconds.
    pub at: u64,
    pub reason: String,
}

impl DrainMark {
    /// The TXT text. The reason comes last and may hold spaces.
    pub fn text(&self) -> String {
        format!(
            "node={} pool={} by={} at={} reason={}",
            self.node, self.pool, self.by, self.at, self.reason
        )
    }

    pub fn rdata(&self) -> Rdata {
        Rdata::txt(&self.text())
    }

    /// A mark from its text; `None` for other TXT records.
    pub fn parse(text: &str) -> Option<Self> {
        let (head, reason) = match text.split_once(" reason=") {
            Some((head, reason)) => (head, reason.to_string()),
            None => (text.strip_suffix(" reason=").unwrap_or(text), String::new()),
        };
        let mut node = None;
        let mut pool = None;
        let mut by = None;
        let mut at = None;
        for field in head.split_whitespace() {
            match field.split_once('=')? {
                ("node", v) => node = Some(v.to_string()),
                ("pool", v) => pool = Some(v.to_string()),
                ("by", v) => by = Some(v.to_string()),
                ("at", v) => at = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            node: node?,
            pool: pool?,
            by: by.unwrap_or_default(),
            at: at.unwrap_or(0),
            reason,
        })
    }

    /// When it was made.
    pub fn made(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.at)
    }

    /// Whether this mark drains `node` in `pool`.
    pub fn drains(&self, pool: &str, node: &str) -> bool {
        self.node == node && (self.pool == ALL_POOLS || self.pool == pool)
    }
}

/// The drain marks the zone holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drains {
    pub marks: BTreeSet<DrainMark>,
}

impl Drains {
    /// The marks among a TXT RRset (other TXT records are ignored).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Rdata>) -> Self {
        Self {
            marks: records
                .into_iter()
                .filter_map(|r| r.txt_text().as_deref().and_then(DrainMark::parse))
                .collect(),
        }
    }

    /// The mark that drains `node` in `pool`, if any.
    pub fn mark(&self, pool: &str, node: &str) -> Option<&DrainMark> {
        self.marks.iter().find(|m| m.drains(pool, node))
    }

    pub fn drained(&self, pool: &str, node: &str) -> bool {
        self.mark(pool, node).is_some()
    }

    /// Marks added and removed from `before` to `self`.
    pub fn changes<'a>(&'a self, before: &'a Drains) -> (Vec<&'a DrainMark>, Vec<&'a DrainMark>) {
        (
            self.marks.difference(&before.marks).collect(),
            before.marks.difference(&self.marks).collect(),
        )
    }
}

/// What a `drain` or `undrain` does to the TXT RRset at the drain name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Delete these records (exactly as held) and add this one.
    Change {
        delete: Vec<Rdata>,
        add: Option<Rdata>,
    },
    /// `drain`: a mark already drains the node there; nothing changes.
    AlreadyDrained(DrainMark),
    /// `undrain`: no mark drains the node (in that pool); nothing changes.
    NotDrained,
    /// `undrain --pool`: the node is drained in every pool by this mark, which
    /// one pool cannot lift; nothing changes.
    EveryPool(DrainMark),
}

/// The marks among `held`, each with its record as held (to delete it exactly).
fn marks_of(held: &BTreeSet<Rdata>) -> Vec<(Rdata, DrainMark)> {
    held.iter()
        .filter_map(|r| {
            let mark = r.txt_text().as_deref().and_then(DrainMark::parse)?;
            Some((r.clone(), mark))
        })
        .collect()
}

/// Drains `mark.node` in `mark.pool`, given the RRset `held` at the drain
/// name. A mark already draining it there wins (its who, when and why
/// stay); a node-wide mark replaces the node's per-pool marks.
pub fn drain(held: &BTreeSet<Rdata>, mark: &DrainMark) -> Edit {
    let marks = marks_of(held);
    if let Some((_, m)) = marks.iter().find(|(_, m)| m.drains(&mark.pool, &mark.node)) {
        return Edit::AlreadyDrained(m.clone());
    }
    let delete = marks
        .into_iter()
        .filter(|(_, m)| mark.pool == ALL_POOLS && m.node == mark.node)
        .map(|(r, _)| r)
        .collect();
    Edit::Change {
        delete,
        add: Some(mark.rdata()),
    }
}

/// Lifts the drain of `node`: every mark of it without `pool`, the mark of
/// exactly that pool with it (`*` names the node-wide mark).
pub fn undrain(held: &BTreeSet<Rdata>, node: &str, pool: Option<&str>) -> Edit {
    let marks: Vec<(Rdata, DrainMark)> = marks_of(held)
        .into_iter()
        .filter(|(_, m)| m.node == node)
        .collect();
    let delete: Vec<Rdata> = marks
        .iter()
        .filter(|(_, m)| pool.is_none_or(|p| m.pool == p))
        .map(|(r, _)| r.clone())
        .collect();
    if !delete.is_empty() {
        return Edit::Change { delete, add: None };
    }
    match marks.into_iter().find(|(_, m)| m.pool == ALL_POOLS) {
        Some((_, everywhere)) => Edit::EveryPool(everywhere),
        None => Edit::NotDrained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(node: &str, pool: &str) -> DrainMark {
        DrainMark {
            node: node.into(),
            pool: pool.into(),
            by: "alice@dns1".into(),
            at: 1_800_000_000,
            reason: "kernel update, back at 14:00".into(),
        }
    }

    #[test]
    fn marks_round_trip_with_a_reason_of_many_words() {
        let m = mark("mail1", ALL_POOLS);
        assert_eq!(
            m.text(),
            "node=mail1 pool=* by=alice@dns1 at=1800000000 reason=kernel update, back at 14:00"
        );
        assert_eq!(DrainMark::parse(&m.text()), Some(m.clone()));
        let bare = DrainMark {
            reason: String::new(),
            ..m
        };
        assert_eq!(DrainMark::parse(&bare.text()), Some(bare));
        assert_eq!(DrainMark::parse("v=spf1 -all"), None);
    }

    #[test]
    fn a_node_wide_mark_drains_every_pool_and_a_pool_mark_one() {
        let drains = Drains::from_records(&[
            mark("mail1", ALL_POOLS).rdata(),
            mark("mail2", "imap").rdata(),
            Rdata::txt("v=spf1 -all"),
        ]);
        assert!(drains.drained("imap", "mail1") && drains.drained("@/mx", "mail1"));
        assert!(drains.drained("imap", "mail2"));
        assert!(!drains.drained("pop", "mail2"));
        assert!(!drains.drained("imap", "mail3"));
        let before = Drains::from_records(&[mark("mail2", "imap").rdata()]);
        let (added, removed) = drains.changes(&before);
        assert_eq!(added, vec![&mark("mail1", ALL_POOLS)]);
        assert!(removed.is_empty());
    }

    fn held(marks: &[DrainMark]) -> BTreeSet<Rdata> {
        let mut held: BTreeSet<Rdata> = marks.iter().map(DrainMark::rdata).collect();
        held.insert(Rdata::txt("v=spf1 -all"));
        held
    }

    #[test]
    fn drain_adds_a_mark_unless_one_already_drains_the_node_there() {
        let imap = mark("mail1", "imap");
        assert_eq!(
            drain(&held(&[]), &imap),
            Edit::Change {
                delete: vec![],
                add: Some(imap.rdata())
            }
        );
        let everywhere = mark("mail1", ALL_POOLS);
        for already in [&imap, &everywhere] {
            assert_eq!(
                drain(&held(std::slice::from_ref(&everywhere)), already),
                Edit::AlreadyDrained(everywhere.clone())
            );
        }
        // Another node, another pool: added beside.
        let pop = mark("mail1", "pop");
        assert!(
            matches!(drain(&held(std::slice::from_ref(&imap)), &pop), Edit::Change { delete, .. } if delete.is_empty())
        );
        // Node-wide: the node's pool marks go, other nodes' stay.
        let other = mark("mail2", "imap");
        assert_eq!(
            drain(&held(&[imap.clone(), pop.clone(), other]), &everywhere),
            Edit::Change {
                delete: held(&[imap, pop])
                    .into_iter()
                    .filter(|r| r.txt_text().is_some_and(|t| t.starts_with("node=")))
                    .collect(),
                add: Some(everywhere.rdata())
            }
        );
    }

    #[test]
    fn undrain_lifts_the_node_or_one_pool_and_says_when_it_cannot() {
        let imap = mark("mail1", "imap");
        let pop = mark("mail1", "pop");
        let other = mark("mail2", "imap");
        let zone = held(&[imap.clone(), pop.clone(), other.clone()]);
        let Edit::Change { delete, add: None } = undrain(&zone, "mail1", None) else {
            panic!("no change");
        };
        let mut delete = delete;
        delete.sort();
        let mut want = vec![imap.rdata(), pop.rdata()];
        want.sort();
        assert_eq!(delete, want);
        assert_eq!(
            undrain(&zone, "mail1", Some("pop")),
            Edit::Change {
                delete: vec![pop.rdata()],
                add: None
            }
        );
        assert_eq!(undrain(&zone, "mail3", None), Edit::NotDrained);
        assert_eq!(undrain(&zone, "mail2", Some("pop")), Edit::NotDrained);
        let everywhere = mark("mail2", ALL_POOLS);
        let zone = held(std::slice::from_ref(&everywhere));
        assert_eq!(
            undrain(&zone, "mail2", Some("imap")),
            Edit::EveryPool(everywhere.clone())
        );
        assert_eq!(
            undrain(&zone, "mail2", Some(ALL_POOLS)),
            Edit::Change {
                delete: vec![everywhere.rdata()],
                add: None
            }
        );
    }
}
