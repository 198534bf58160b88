//! What the daemon believes now, shared with `/status`, `/readyz` and the
//! status page: per target its state and last result, readiness and the
//! lease holder. Typed; strings are made only when serializing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::CheckKind;
use crate::core::health::State;
use crate::probe::{DaneVerdict, ProbeOutcome, ProbeResult};
use crate::targets::TargetId;

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LastResult {
    pub result: String,
    pub detail: String,
    pub latency_ms: f64,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetStatus {
    pub pool: String,
    pub node: String,
    pub address: String,
    pub check: String,
    pub port: u16,
    pub state: String,
    /// RFC 3339; when the current state began (start time while unknown).
    pub since: String,
    pub last: Option<LastResult>,
    /// DANE targets: the verdict of the last handshake (`match`,
    /// `mismatch`, `not in force`, `unreadable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dane: Option<String>,
    /// `dane = "manage"`: why the node is kept out of the pool, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The instance that writes (ours without `[ha]`).
    pub holder: Option<String>,
    pub held: bool,
}

/// A secondary of a zone, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecondaryStatus {
    /// `host:port` as asked.
    pub server: String,
    /// The serial it served last; `None` until it answered.
    pub serial: Option<u32>,
    /// It answered the last query.
    pub up: bool,
    /// It serves the primary's serial (or a later one).
    pub in_sync: bool,
    /// How long it has served an older serial than the primary.
    pub behind_seconds: f64,
}

/// A zone, as `/status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ZoneStatus {
    pub zone: String,
    /// The primary, `host:port`.
    pub primary: String,
    /// The primary's serial as last read.
    #[serde(default)]
    pub serial: Option<u32>,
    pub lease: LeaseStatus,
    pub last_reconcile: Option<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub secondaries: Vec<SecondaryStatus>,
}

/// The JSON of `/status`. The top-level lease, last reconcile and last
/// error are those of the first zone (the only one of a one-zone config).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub ready: bool,
    pub dry_run: bool,
    pub lease: LeaseStatus,
    pub last_reconcile: Option<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub zones: Vec<ZoneStatus>,
    pub targets: Vec<TargetStatus>,
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
}

#[derive(Debug, Default)]
struct Inner {
    targets: HashMap<TargetId, Entry>,
    /// The targets in configuration order (for `/status` and `status`).
    order: Vec<TargetId>,
    dry_run: bool,
    /// The zones in configuration order.
    zones: Vec<(String, ZoneEntry)>,
}

impl Inner {
    fn zone(&mut self, zone: &str) -> &mut ZoneEntry {
        let at = match self.zones.iter().position(|(z, _)| z == zone) {
            Some(at) => at,
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
        t.state = state;
        if changed {
            t.since = now;
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
            targets: inner
                .order
                .iter()
                .filter_map(|id| inner.targets.get(id).map(|t| (id, t)))
                .map(|(id, t)| TargetStatus {
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
        }
    }
}
