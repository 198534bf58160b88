//! Drains at run time: marks kept in the zone itself, as TXT records at
//! `_pigeon-dns-drain.<first zone>`, one per mark:
//! `node=<node> pool=<pool or *> by=<who> at=<unix time> reason=<text>`.
//! In the zone, a mark survives restarts and every instance, writer or
//! standby, sees it; it is added and removed by prerequisite-guarded
//! UPDATEs like everything pigeon-dns shares (the primary serializes them).
//!
//! Pure: parsing, formatting, and which marks drain what.

use std::collections::BTreeSet;

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
}
