//! What the daemon believes now, shared with `/status`, `/readyz` and the
//! status page: per target its state and last result, readiness and the
//! lease holder. Typed; strings are made only when serializing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::CheckKind;
use crate::core::health::State;
use crate::probe::{ProbeOutcome, ProbeResult};
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
}

impl Entry {
    pub fn new(check: CheckKind, port: u16, since: SystemTime) -> Self {
        Self {
            check,
            port,
            state: State::Unknown,
            since,
            last: None,
        }
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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The instance that writes (ours without `[ha]`).
    pub holder: Option<String>,
    pub held: bool,
}

/// The JSON of `/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub ready: bool,
    pub dry_run: bool,
    pub lease: LeaseStatus,
    pub last_reconcile: Option<String>,
    pub last_error: Option<String>,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Default)]
struct Inner {
    targets: HashMap<TargetId, Entry>,
    /// The targets in configuration order (for `/status` and `status`).
    order: Vec<TargetId>,
    ready: bool,
    dry_run: bool,
    lease: LeaseStatus,
    last_reconcile: Option<SystemTime>,
    last_error: Option<String>,
    /// Since when the primary has been failing (for `/readyz`).
    failing_since: Option<tokio::time::Instant>,
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
        t.state = state;
        if changed {
            t.since = now;
        }
    }

    pub fn set_lease(&self, lease: LeaseStatus) {
        self.lock().lease = lease;
    }

    /// After a pass: success marks the time; a failure starts the clock of
    /// `/readyz`'s "failing for longer than resync_interval".
    pub fn reconciled(&self, result: Result<(), String>, first_round_done: bool) {
        let mut inner = self.lock();
        match result {
            Ok(()) => {
                inner.last_reconcile = Some(SystemTime::now());
                inner.last_error = None;
                inner.failing_since = None;
                if first_round_done {
                    inner.ready = true;
                }
            }
            Err(error) => {
                inner.last_error = Some(error);
                inner
                    .failing_since
                    .get_or_insert_with(tokio::time::Instant::now);
            }
        }
    }

    /// `/readyz`: ready once the first round and a pass succeeded, and not
    /// while the primary has been failing for longer than `grace`.
    pub fn is_ready(&self, grace: Duration) -> bool {
        let inner = self.lock();
        inner.ready
            && inner
                .failing_since
                .is_none_or(|since| since.elapsed() <= grace)
    }

    pub fn status(&self, grace: Duration) -> Status {
        let ready = self.is_ready(grace);
        let inner = self.lock();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready,
            dry_run: inner.dry_run,
            lease: inner.lease.clone(),
            last_reconcile: inner.last_reconcile.map(rfc3339),
            last_error: inner.last_error.clone(),
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
                })
                .collect(),
        }
    }
}
