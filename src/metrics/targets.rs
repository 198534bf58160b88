//! The per-target families (`node_up`, `probes_total`, `transitions_total`,
//! `cert_expiry_seconds`, `dane_match`), kept beside the prometheus registry rather than in
//! it: at 10,000 targets the registry's labelled children (about 1.5 KiB
//! each, with a copy of the family's description and labels) and the copy
//! `gather` makes of them at every scrape were most of the daemon's memory.
//! Here a target is a few atomics under its rendered label set, written
//! straight into the text format when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::core::health::State;
use crate::probe::ProbeResult;

use super::{CERT_EXPIRY, DANE_MATCH, NODE_UP, PROBES_TOTAL, TRANSITIONS_TOTAL};

/// `dane_match` while DANE is not in force (or not known yet): no sample.
const DANE_ABSENT: u8 = 2;

/// The transitions' `to` labels, in [`TargetSeries::transitions`] order.
const TO: [&str; 2] = ["up", "down"];

/// One target's series. Cheap to update from its task: atomics only.
#[derive(Debug)]
pub struct TargetSeries {
    up: AtomicBool,
    /// `probes_total`, in [`ProbeResult::ALL`] order.
    probes: [AtomicU64; ProbeResult::ALL.len()],
    transitions: [AtomicU64; TO.len()],
    /// Seconds as `f64` bits; NaN while no certificate was seen.
    cert_expiry: AtomicU64,
    /// 1 match, 0 mismatch, [`DANE_ABSENT`] while DANE is not in force.
    dane_match: AtomicU8,
}

impl Default for TargetSeries {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(false),
            probes: Default::default(),
            transitions: Default::default(),
            cert_expiry: AtomicU64::new(f64::NAN.to_bits()),
            dane_match: AtomicU8::new(DANE_ABSENT),
        }
    }
}

impl TargetSeries {
    pub fn probed(&self, result: ProbeResult) {
        let index = ProbeResult::ALL.iter().position(|r| *r == result);
        self.probes[index.unwrap_or(0)].fetch_add(1, Ordering::Relaxed);
    }

    /// A decided transition: `node_up` and `transitions_total{to}`.
    pub fn transition(&self, to: State) {
        let up = to == State::Up;
        self.up.store(up, Ordering::Relaxed);
        self.transitions[usize::from(!up)].fetch_add(1, Ordering::Relaxed);
    }

    /// `None` drops the sample: a stale value would hide a certificate that
    /// can no longer be seen.
    pub fn set_cert_expiry(&self, seconds: Option<f64>) {
        let value = seconds.filter(|s| s.is_finite()).unwrap_or(f64::NAN);
        self.cert_expiry.store(value.to_bits(), Ordering::Relaxed);
    }

    /// The DANE verdict of the last handshake: `None` drops the sample
    /// (DANE not in force).
    pub fn set_dane_match(&self, matched: Option<bool>) {
        let value = matched.map_or(DANE_ABSENT, u8::from);
        self.dane_match.store(value, Ordering::Relaxed);
    }

    fn dane_match(&self) -> Option<u8> {
        Some(self.dane_match.load(Ordering::Relaxed)).filter(|v| *v != DANE_ABSENT)
    }

    fn cert_expiry(&self) -> Option<f64> {
        Some(f64::from_bits(self.cert_expiry.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
    }
}

/// Every target's series, by its label set as written in the exposition
/// (`pool="…",node="…",address="…"`), so that they render sorted.
#[derive(Debug, Default)]
pub struct TargetFamilies {
    targets: RwLock<BTreeMap<Box<str>, Arc<TargetSeries>>>,
}

impl TargetFamilies {
    /// The series of a target, created at zero when new (at start and at a
    /// reload). A target that a reload keeps keeps its counters.
    pub fn get(&self, pool: &str, node: &str, address: &str) -> Arc<TargetSeries> {
        let key = label_set(pool, node, address);
        let mut targets = self.targets.write().unwrap_or_else(|p| p.into_inner());
        targets.entry(key.into_boxed_str()).or_default().clone()
    }

    /// The series of a target if it has one. A target task looks its series
    /// up rather than creating it: a task of an older configuration, polled
    /// for the first time after a reload removed its target, must not bring
    /// the series back.
    pub fn find(&self, pool: &str, node: &str, address: &str) -> Option<Arc<TargetSeries>> {
        self.read()
            .get(label_set(pool, node, address).as_str())
            .cloned()
    }

    pub fn remove(&self, pool: &str, node: &str, address: &str) {
        let key = label_set(pool, node, address);
        let mut targets = self.targets.write().unwrap_or_else(|p| p.into_inner());
        targets.remove(key.as_str());
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Box<str>, Arc<TargetSeries>>> {
        self.targets.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the five families in the text exposition format, each with
    /// its HELP and TYPE even while it has no sample.
    /// Every counter is shown from zero (`increase()` and `rate()` miss the
    /// first count of a series that appears with it).
    pub fn render(&self, out: &mut String) {
        let targets = self.read();
        // About 1.2 KiB per target: reserved once rather than doubled into.
        out.reserve(1024 + targets.len() * 1280);
        header(
            out,
            NODE_UP,
            "gauge",
            "Target state after rise/fall: 1 up, 0 down or not yet decided.",
        );
        for (labels, s) in targets.iter() {
            let up = u8::from(s.up.load(Ordering::Relaxed));
            let _ = writeln!(out, "{NODE_UP}{{{labels}}} {up}");
        }
        header(out, PROBES_TOTAL, "counter", "Probes run, by outcome.");
        for (labels, s) in targets.iter() {
            for (result, count) in ProbeResult::ALL.iter().zip(&s.probes) {
                let count = count.load(Ordering::Relaxed);
                let result = result.as_str();
                let _ = writeln!(
                    out,
                    "{PROBES_TOTAL}{{{labels},result=\"{result}\"}} {count}"
                );
            }
        }
        header(
            out,
            TRANSITIONS_TOTAL,
            "counter",
            "Health transitions decided by rise/fall.",
        );
        for (labels, s) in targets.iter() {
            for (to, count) in TO.iter().zip(&s.transitions) {
                let count = count.load(Ordering::Relaxed);
                let _ = writeln!(out, "{TRANSITIONS_TOTAL}{{{labels},to=\"{to}\"}} {count}");
            }
        }
        header(
            out,
            CERT_EXPIRY,
            "gauge",
            "Seconds until the target's TLS certificate expires.",
        );
        for (labels, s) in targets.iter() {
            if let Some(seconds) = s.cert_expiry() {
                let _ = writeln!(out, "{CERT_EXPIRY}{{{labels}}} {seconds}");
            }
        }
        header(
            out,
            DANE_MATCH,
            "gauge",
            "DANE verdict of the target's last handshake: 1 the served chain matches the TLSA RRset, 0 it does not; absent while DANE is not in force.",
        );
        for (labels, s) in targets.iter() {
            if let Some(matched) = s.dane_match() {
                let _ = writeln!(out, "{DANE_MATCH}{{{labels}}} {matched}");
            }
        }
    }
}

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `pool="…",node="…",address="…"`, values escaped as the text format wants.
fn label_set(pool: &str, node: &str, address: &str) -> String {
    labels(&[("pool", pool), ("node", node), ("address", address)])
}

/// `name="value",…`, values escaped as the text format wants.
pub(super) fn labels(pairs: &[(&str, &str)]) -> String {
    let size: usize = pairs.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut out = String::with_capacity(size);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_help_and_type_before_any_target() {
        let mut out = String::new();
        TargetFamilies::default().render(&mut out);
        for name in [
            NODE_UP,
            PROBES_TOTAL,
            TRANSITIONS_TOTAL,
            CERT_EXPIRY,
            DANE_MATCH,
        ] {
            assert!(out.contains(&format!("# HELP {name} ")), "{out}");
            assert!(out.contains(&format!("# TYPE {name} ")), "{out}");
        }
        assert!(!out.contains('{'), "{out}");
    }

    #[test]
    fn every_series_is_shown_from_zero() {
        let families = TargetFamilies::default();
        let series = families.get("imap", "mail1", "127.0.0.1");
        let mut out = String::new();
        families.render(&mut out);
        let labels = r#"pool="imap",node="mail1",address="127.0.0.1""#;
        assert!(out.contains(&format!("{NODE_UP}{{{labels}}} 0\n")), "{out}");
        for result in ProbeResult::ALL {
            let result = result.as_str();
            assert!(out.contains(&format!(
                "{PROBES_TOTAL}{{{labels},result=\"{result}\"}} 0\n"
            )));
        }
        for to in TO {
            assert!(out.contains(&format!("{TRANSITIONS_TOTAL}{{{labels},to=\"{to}\"}} 0\n")));
        }
        assert!(!out.contains(&format!("{CERT_EXPIRY}{{")), "{out}");
        assert!(!out.contains(&format!("{DANE_MATCH}{{")), "{out}");

        series.probed(ProbeResult::Ok);
        series.probed(ProbeResult::Refused);
        series.probed(ProbeResult::Refused);
        series.transition(State::Up);
        series.set_cert_expiry(Some(86_400.5));
        series.set_dane_match(Some(false));
        let mut out = String::new();
        families.render(&mut out);
        assert!(out.contains(&format!("{NODE_UP}{{{labels}}} 1\n")), "{out}");
        assert!(out.contains(&format!("{PROBES_TOTAL}{{{labels},result=\"ok\"}} 1\n")));
        assert!(out.contains(&format!(
            "{PROBES_TOTAL}{{{labels},result=\"refused\"}} 2\n"
        )));
        assert!(out.contains(&format!("{TRANSITIONS_TOTAL}{{{labels},to=\"up\"}} 1\n")));
        assert!(out.contains(&format!("{CERT_EXPIRY}{{{labels}}} 86400.5\n")));
        assert!(
            out.contains(&format!("{DANE_MATCH}{{{labels}}} 0\n")),
            "{out}"
        );

        series.transition(State::Down);
        series.set_cert_expiry(None);
        series.set_dane_match(None);
        let mut out = String::new();
        families.render(&mut out);
        assert!(!out.contains(&format!("{DANE_MATCH}{{")), "{out}");
        assert!(out.contains(&format!("{NODE_UP}{{{labels}}} 0\n")), "{out}");
        assert!(out.contains(&format!("{TRANSITIONS_TOTAL}{{{labels},to=\"down\"}} 1\n")));
        assert!(!out.contains(&format!("{CERT_EXPIRY}{{")), "{out}");
    }

    #[test]
    fn a_kept_target_keeps_its_counters_and_a_removed_one_goes() {
        let families = TargetFamilies::default();
        assert!(families.find("p", "n", "::1").is_none());
        families.get("p", "n", "::1").probed(ProbeResult::Ok);
        families.get("p", "n", "::1").probed(ProbeResult::Ok);
        let mut out = String::new();
        families.render(&mut out);
        assert!(out.contains(r#"result="ok"} 2"#), "{out}");
        assert!(families.find("p", "n", "::1").is_some());
        families.remove("p", "n", "::1");
        assert!(families.find("p", "n", "::1").is_none());
        let mut out = String::new();
        families.render(&mut out);
        assert!(!out.contains('{'), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_set("a\"b", "c\\d", "e\nf"),
            r#"pool="a\"b",node="c\\d",address="e\nf""#
        );
    }
}
