//! `pigeon_dns_node_drained{pool,node,source}`, kept beside the registry
//! like the per-target families: two of the registry's labelled children
//! per pool member (about 1.5 KiB each, copied again by every scrape's
//! `gather`) weighed 30 MiB at 10,000 targets. Here a member is two atomics
//! under its rendered label set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::targets::{header, labels};
use super::{DRAIN_SOURCES, NODE_DRAINED};

/// Every pool member's drain series, by `pool="…",node="…"`.
#[derive(Debug, Default)]
pub struct DrainFamily {
    members: RwLock<BTreeMap<Box<str>, [AtomicBool; DRAIN_SOURCES.len()]>>,
}

impl DrainFamily {
    /// Sets one source's sample, creating the member's series (both sources
    /// at 0) when new. An unknown source is ignored.
    pub fn set(&self, pool: &str, node: &str, source: &str, drained: bool) {
        let Some(index) = DRAIN_SOURCES.iter().position(|s| *s == source) else {
            return;
        };
        let key = member(pool, node);
        if let Some(series) = self.read().get(key.as_str()) {
            series[index].store(drained, Ordering::Relaxed);
            return;
        }
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        members.entry(key.into_boxed_str()).or_default()[index].store(drained, Ordering::Relaxed);
    }

    /// One source's sample, if the member has series.
    pub fn get(&self, pool: &str, node: &str, source: &str) -> Option<bool> {
        let index = DRAIN_SOURCES.iter().position(|s| *s == source)?;
        let members = self.read();
        let series = members.get(member(pool, node).as_str())?;
        Some(series[index].load(Ordering::Relaxed))
    }

    /// Removes a member's series (a reload took the node out of the pool).
    pub fn remove(&self, pool: &str, node: &str) {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        members.remove(member(pool, node).as_str());
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<Box<str>, [AtomicBool; DRAIN_SOURCES.len()]>> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the family in the text exposition format, with its HELP and
    /// TYPE even while it has no sample.
    pub fn render(&self, out: &mut String) {
        let members = self.read();
        out.reserve(256 + members.len() * 2 * 96);
        header(
            out,
            NODE_DRAINED,
            "gauge",
            "1 while the node is drained in the pool (never published), by source: config (drain = true) or runtime (pigeon-dns drain).",
        );
        for (labels, series) in members.iter() {
            for (source, drained) in DRAIN_SOURCES.iter().zip(series) {
                let value = u8::from(drained.load(Ordering::Relaxed));
                let _ = writeln!(
                    out,
                    "{NODE_DRAINED}{{{labels},source=\"{source}\"}} {value}"
                );
            }
        }
    }
}

fn member(pool: &str, node: &str) -> String {
    labels(&[("pool", pool), ("node", node)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sources_render_from_zero_and_follow_each_set() {
        let family = DrainFamily::default();
        let mut out = String::new();
        family.render(&mut out);
        assert!(
            out.contains(&format!("# TYPE {NODE_DRAINED} gauge")),
            "{out}"
        );
        assert!(!out.contains('{'), "{out}");

        family.set("imap", "mail\"1", "runtime", true);
        family.set("imap", "mail\"1", "nonsense", true);
        let mut out = String::new();
        family.render(&mut out);
        let labels = r#"pool="imap",node="mail\"1""#;
        assert!(
            out.contains(&format!("{NODE_DRAINED}{{{labels},source=\"config\"}} 0\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{NODE_DRAINED}{{{labels},source=\"runtime\"}} 1\n"
            )),
            "{out}"
        );
        assert_eq!(family.get("imap", "mail\"1", "runtime"), Some(true));
        assert_eq!(family.get("imap", "mail\"1", "config"), Some(false));

        family.remove("imap", "mail\"1");
        assert_eq!(family.get("imap", "mail\"1", "runtime"), None);
    }
}
