//! What the daemon believes now, shared with `/status`, `/readyz` and the
//! status page: per target its state and last result, readiness and the
//! lease holder, per zone the records published, the drains and the last
//! transitions. Typed; strings are made only when serializing.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::config::CheckKind;
use crate::core::drain::{ALL_POOLS, Drains};
use crate::core::health::State;
use crate::probe::{DaneVerdict, ProbeOutcome, ProbeResult};
use crate::targets::TargetId;

mod json;

pub use json::*;

/// The last probe of a target.
#[derive(Clone, Debug, PartialEq)]
pub struct Last {
    pub result: ProbeResult,
    pub detail: String,
    pub latency: Duration,
    pub at: SystemTime,
}

/// One target on the board.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub check: CheckKind,
    pub port: u16,
    pub state: State,
    /// When the current state began (the start time while unknown).
    pub since: SystemTime,
    pub last: Option<Last>,
    /// DANE targets: the verdict of the last handshake.
    pub dane: Option<DaneVerdict>,
    /// `dane = "manage"`: why the node is kept out of the pool, while it is.
    pub held_out: Option<String>,
}

impl Entry {
    pub fn new(check: CheckKind, port: u16, since: SystemTime) -> Self {
        Self {
            check,
            port,
            state: State::Unknown,
            since,
            last: None,
            dane: None,
            held_out: None,
        }
    }
}

/// A DANE verdict as `/status` words it.
pub fn dane_word(verdict: DaneVerdict) -> &'static str {
    match verdict {
        DaneVerdict::Match => "match",
        DaneVerdict::Mismatch => "mismatch",
        DaneVerdict::NotInForce => "not in force",
        DaneVerdict::Unreadable => "unreadable",
    }
}

/// How many transitions the board keeps (the status page shows them).
pub const TRANSITIONS_KEPT: usize = 50;

/// A transition on the board.
#[derive(Clone, Debug)]
struct TransitionEntry {
    at: SystemTime,
    id: TargetId,
    from: State,
    to: State,
    result: ProbeResult,
    detail: String,
}

/// A zone on the board.
#[derive(Clone, Debug, Default)]
struct ZoneEntry {
    primary: String,
    serial: Option<u32>,
    ready: bool,
    lease: LeaseStatus,
    last_reconcile: Option<SystemTime>,
    last_error: Option<String>,
    /// Since when its primary has been failing (for `/readyz`).
    failing_since: Option<tokio::time::Instant>,
    secondaries: Vec<SecondaryStatus>,
    published: Option<Vec<PublishedStatus>>,
}

#[derive(Debug, Default)]
struct Inner {
    targets: HashMap<TargetId, Entry>,
    /// The targets in configuration order (for `/status` and `status`).
    order: Vec<TargetId>,
    dry_run: bool,
    /// The zones in configuration order.
    zones: Vec<(String, ZoneEntry)>,
    /// Nodes with `drain = true`, in configuration order.
    config_drains: Vec<String>,
    /// The drain marks as last read.
    runtime_drains: Drains,
    /// The last transitions, oldest first.
    transitions: VecDeque<TransitionEntry>,
    /// The zones are those of the configuration (`set_zones`): news of
    /// another zone (one a reload removed, retiring) goes to `elsewhere`,
    /// which nothing reads, so it can never hold `/readyz`.
    zones_fixed: bool,
    elsewhere: ZoneEntry,
}

impl Inner {
    /// What drains a target, if anything: the config first.
    fn drain_source(&self, id: &TargetId) -> Option<&'static str> {
        if self.config_drains.iter().any(|n| **n == *id.node) {
            Some("config")
        } else if self.runtime_drains.drained(&id.pool, &id.node) {
            Some("runtime")
        } else {
            None
        }
    }

    fn drains(&self) -> Vec<DrainStatus> {
        let config = self.config_drains.iter().map(|node| DrainStatus {
            node: node.clone(),
            pool: ALL_POOLS.to_string(),
            source: "config".into(),
            by: None,
            at: None,
            reason: None,
        });
        let runtime = self.runtime_drains.marks.iter().map(|m| DrainStatus {
            node: m.node.clone(),
            pool: m.pool.clone(),
            source: "runtime".into(),
            by: Some(m.by.clone()),
            at: Some(rfc3339(m.made())),
            reason: Some(m.reason.clone()),
        });
        config.chain(runtime).collect()
    }

    fn zone(&mut self, zone: &str) -> &mut ZoneEntry {
        let at = match self.zones.iter().position(|(z, _)| z == zone) {
            Some(at) => at,
            None if self.zones_fixed => return &mut self.elsewhere,
            None => {
                self.zones.push((zone.to_string(), ZoneEntry::default()));
                self.zones.len() - 1
            }
        };
        &mut self.zones[at].1
    }
}

/// Shared between the tasks and the HTTP server. Locks are held only to copy.
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Inner>,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the status page down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_dry_run(&self, dry_run: bool) {
        self.lock().dry_run = dry_run;
    }

    /// Every target's entry (to carry state across a reload).
    pub fn targets(&self) -> HashMap<TargetId, Entry> {
        self.lock().targets.clone()
    }

    /// The targets of a configuration, in its order.
    pub fn replace_targets(&self, targets: Vec<(TargetId, Entry)>) {
        let mut inner = self.lock();
        inner.order = targets.iter().map(|(id, _)| id.clone()).collect();
        inner.targets = targets.into_iter().collect();
    }

    /// Called after every probe: a few copies under the lock, no formatting.
    pub fn record_probe(&self, id: &TargetId, outcome: &ProbeOutcome, state: State, changed: bool) {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let Some(t) = inner.targets.get_mut(id) else {
            return;
        };
        match &mut t.last {
            Some(last) => {
                last.result = outcome.result;
                if last.detail != outcome.detail {
                    last.detail.clear();
                    last.detail.push_str(&outcome.detail);
                }
                last.latency = outcome.latency;
                last.at = now;
            }
            None => {
                t.last = Some(Last {
                    result: outcome.result,
                    detail: outcome.detail.clone(),
                    latency: outcome.latency,
                    at: now,
                });
            }
        }
        if let Some(dane) = &outcome.dane {
            t.dane = Some(dane.verdict);
        }
        let from = std::mem::replace(&mut t.state, state);
        if changed {
            t.since = now;
            if inner.transitions.len() >= TRANSITIONS_KEPT {
                inner.transitions.pop_front();
            }
            inner.transitions.push_back(TransitionEntry {
                at: now,
                id: id.clone(),
                from,
                to: state,
                result: outcome.result,
                detail: outcome.detail.clone(),
            });
        }
    }

    /// `dane = "manage"`: whether (and why) `node` is kept out of `pool`.
    pub fn set_held_out(&self, pool: &str, node: &str, why: Option<&str>) {
        let mut inner = self.lock();
        for (id, t) in inner.targets.iter_mut() {
            if &*id.pool == pool && &*id.node == node && t.held_out.as_deref() != why {
                t.held_out = why.map(str::to_owned);
            }
        }
    }

    /// The zones of a configuration, in its order, with their primaries;
    /// what is known of zones kept is kept.
    pub fn set_zones(&self, zones: &[(String, String)]) {
        let mut inner = self.lock();
        inner.zones_fixed = true;
        let mut old = std::mem::take(&mut inner.zones);
        inner.zones = zones
            .iter()
            .map(|(zone, primary)| {
                let mut entry = old
                    .iter()
                    .position(|(z, _)| z == zone)
                    .map(|at| old.swap_remove(at).1)
                    .unwrap_or_default();
                entry.primary = primary.clone();
                (zone.clone(), entry)
            })
            .collect();
    }

    pub fn set_lease(&self, zone: &str, lease: LeaseStatus) {
        self.lock().zone(zone).lease = lease;
    }

    /// After a pass in `zone`: success marks the time; a failure starts the
    /// clock of `/readyz`'s "failing for longer than resync_interval".
    pub fn reconciled(&self, zone: &str, result: Result<(), String>, first_round_done: bool) {
        let mut inner = self.lock();
        let entry = inner.zone(zone);
        match result {
            Ok(()) => {
                entry.last_reconcile = Some(SystemTime::now());
                entry.last_error = None;
                entry.failing_since = None;
                if first_round_done {
                    entry.ready = true;
                }
            }
            Err(error) => {
                entry.last_error = Some(error);
                entry
                    .failing_since
                    .get_or_insert_with(tokio::time::Instant::now);
            }
        }
    }

    /// The records a zone's pools publish at its primary now.
    pub fn set_published(&self, zone: &str, published: Vec<PublishedStatus>) {
        self.lock().zone(zone).published = Some(published);
    }

    /// The nodes the configuration drains (`drain = true`).
    pub fn set_config_drains(&self, nodes: Vec<String>) {
        self.lock().config_drains = nodes;
    }

    /// The drain marks, as last read from the zone.
    pub fn set_runtime_drains(&self, drains: Drains) {
        self.lock().runtime_drains = drains;
    }

    /// The serials of a zone's primary and secondaries, as last asked.
    pub fn set_serials(&self, zone: &str, serial: Option<u32>, secondaries: Vec<SecondaryStatus>) {
        let mut inner = self.lock();
        let entry = inner.zone(zone);
        entry.serial = serial;
        entry.secondaries = secondaries;
    }

    /// `/readyz`: ready once the first round and a pass succeeded in every
    /// zone, and not while a zone's primary has been failing for longer
    /// than `grace`. Secondaries do not count.
    pub fn is_ready(&self, grace: Duration) -> bool {
        let inner = self.lock();
        !inner.zones.is_empty()
            && inner.zones.iter().all(|(_, z)| {
                z.ready && z.failing_since.is_none_or(|since| since.elapsed() <= grace)
            })
    }

    pub fn status(&self, grace: Duration) -> Status {
        let ready = self.is_ready(grace);
        let inner = self.lock();
        let zones: Vec<ZoneStatus> = inner
            .zones
            .iter()
            .map(|(zone, z)| ZoneStatus {
                zone: zone.trim_end_matches('.').to_string(),
                primary: z.primary.clone(),
                serial: z.serial,
                lease: z.lease.clone(),
                last_reconcile: z.last_reconcile.map(rfc3339),
                last_error: z.last_error.clone(),
                secondaries: z.secondaries.clone(),
                published: z.published.clone(),
            })
            .collect();
        let first = zones.first().cloned().unwrap_or_default();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready,
            dry_run: inner.dry_run,
            lease: first.lease,
            last_reconcile: first.last_reconcile,
            last_error: zones.iter().find_map(|z| z.last_error.clone()),
            zones,
            drains: inner.drains(),
            targets: inner
                .order
                .iter()
                .filter_map(|id| inner.targets.get(id).map(|t| (id, t)))
                .map(|(id, t)| TargetStatus {
                    drain: inner.drain_source(id).map(str::to_string),
                    pool: id.pool.to_string(),
                    node: id.node.to_string(),
                    address: id.address.to_string(),
                    check: t.check.as_str().to_string(),
                    port: t.port,
                    state: t.state.as_str().to_string(),
                    since: rfc3339(t.since),
                    last: t.last.as_ref().map(|l| LastResult {
                        result: l.result.as_str().to_string(),
                        detail: l.detail.clone(),
                        latency_ms: l.latency.as_secs_f64() * 1000.0,
                        at: rfc3339(l.at),
                    }),
                    dane: t.dane.map(|v| dane_word(v).to_owned()),
                    held_out: t.held_out.clone(),
                })
                .collect(),
            transitions: inner
                .transitions
                .iter()
                .rev()
                .map(|t| TransitionStatus {
                    at: rfc3339(t.at),
                    pool: t.id.pool.to_string(),
                    node: t.id.node.to_string(),
                    address: t.id.address.to_string(),
                    from: t.from.as_str().to_string(),
                    to: t.to.as_str().to_string(),
                    result: t.result.as_str().to_string(),
                    detail: t.detail.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::drain::DrainMark;

    #[test]
    fn a_zone_a_reload_removed_never_holds_readiness() {
        let board = Board::default();
        board.set_zones(&[
            ("example.com.".into(), "127.0.0.1:53".into()),
            ("example.org.".into(), "127.0.0.1:53".into()),
        ]);
        board.reconciled("example.com.", Ok(()), true);
        board.reconciled("example.org.", Ok(()), true);
        let grace = Duration::from_secs(60);
        assert!(board.is_ready(grace));
        // example.org leaves the configuration; its reconciler, retiring,
        // still reports a failing pass.
        board.set_zones(&[("example.com.".into(), "127.0.0.1:53".into())]);
        board.reconciled("example.org.", Err("refused".into()), false);
        board.set_lease("example.org.", LeaseStatus::default());
        assert!(board.is_ready(grace));
        let zones: Vec<String> = board
            .status(grace)
            .zones
            .into_iter()
            .map(|z| z.zone)
            .collect();
        assert_eq!(zones, ["example.com"]);
    }

    fn outcome(ok: bool) -> ProbeOutcome {
        let (result, detail) = if ok {
            (ProbeResult::Ok, "* OK")
        } else {
            (ProbeResult::Refused, "connection refused")
        };
        ProbeOutcome {
            result,
            detail: detail.into(),
            latency: Duration::from_millis(2),
            tls: None,
            greeted_in: None,
            dane: None,
        }
    }

    #[test]
    fn the_board_keeps_the_last_transitions_newest_first() {
        let board = Board::default();
        let id = TargetId::new("imap", "mail1", "192.0.2.11".parse().unwrap());
        board.replace_targets(vec![(
            id.clone(),
            Entry::new(CheckKind::Imap, 143, SystemTime::now()),
        )]);
        board.record_probe(&id, &outcome(true), State::Up, true);
        board.record_probe(&id, &outcome(true), State::Up, false);
        for i in 0..TRANSITIONS_KEPT {
            let up = i % 2 == 1;
            let state = if up { State::Up } else { State::Down };
            board.record_probe(&id, &outcome(up), state, true);
        }
        let status = board.status(Duration::from_secs(1));
        assert_eq!(status.transitions.len(), TRANSITIONS_KEPT);
        let newest = &status.transitions[0];
        assert_eq!((newest.from.as_str(), newest.to.as_str()), ("down", "up"));
        let oldest = status.transitions.last().unwrap();
        assert_eq!((oldest.from.as_str(), oldest.to.as_str()), ("up", "down"));
        assert_eq!(oldest.result, "refused");
        assert_eq!(oldest.detail, "connection refused");
    }

    #[test]
    fn a_target_shows_what_drains_it_config_first() {
        let board = Board::default();
        let ids: Vec<TargetId> = ["mail1", "mail2", "mail3"]
            .iter()
            .map(|n| TargetId::new("imap", n, "192.0.2.11".parse().unwrap()))
            .collect();
        board.replace_targets(
            ids.iter()
                .map(|id| {
                    (
                        id.clone(),
                        Entry::new(CheckKind::Imap, 143, SystemTime::now()),
                    )
                })
                .collect(),
        );
        board.set_config_drains(vec!["mail1".into()]);
        let mark = |node: &str, pool: &str| DrainMark {
            node: node.into(),
            pool: pool.into(),
            by: "alice@dns1".into(),
            at: 0,
            reason: "upgrade".into(),
        };
        board.set_runtime_drains(Drains {
            marks: [
                mark("mail1", "*"),
                mark("mail2", "imap"),
                mark("mail3", "pop"),
            ]
            .into(),
        });
        let status = board.status(Duration::from_secs(1));
        let drains: Vec<Option<&str>> = status.targets.iter().map(|t| t.drain.as_deref()).collect();
        assert_eq!(drains, [Some("config"), Some("runtime"), None]);
        let sources: Vec<(&str, &str, &str)> = status
            .drains
            .iter()
            .map(|d| (d.node.as_str(), d.pool.as_str(), d.source.as_str()))
            .collect();
        assert_eq!(
            sources,
            [
                ("mail1", "*", "config"),
                ("mail1", "*", "runtime"),
                ("mail2", "imap", "runtime"),
                ("mail3", "pop", "runtime")
            ]
        );
        assert_eq!(
            status.drains[1].at.as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
    }
}
