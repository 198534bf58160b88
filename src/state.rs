//! What the daemon believes now, shared with `/status` and `/readyz`: per
//! target state and last result, readiness and the lease holder.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::health::State;
use crate::probe::ProbeOutcome;

/// Identifies a target: a pool, a node of it, one of the node's addresses
/// (indexes into the running `Config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId {
    pub pool: usize,
    pub node: usize,
    pub address: IpAddr,
}

/// A message to the reconciler. Target events carry the generation of the
/// configuration their task was started for: after a reload, events of the
/// old tasks still in the channel are ignored.
#[derive(Clone, Debug)]
pub enum Event {
    /// Rise or fall decided a new state.
    Transition {
        generation: u64,
        target: TargetId,
        state: State,
    },
    /// The target's first probe finished (for readiness).
    FirstResult { generation: u64, target: TargetId },
    /// A new configuration was loaded (SIGHUP).
    Reload(Box<Reload>),
}

/// A reloaded configuration and the states its targets start from.
#[derive(Clone, Debug)]
pub struct Reload {
    pub generation: u64,
    pub config: std::sync::Arc<crate::config::Config>,
    /// Decided states of targets kept across the reload (new ids).
    pub health: std::collections::HashMap<TargetId, State>,
    pub targets: usize,
    /// A client for the (possibly changed) server and key.
    pub client: crate::dns::DnsClient,
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The instance that writes (ours without `[ha]`).
    pub holder: Option<String>,
    pub held: bool,
}

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
    targets: BTreeMap<TargetId, TargetStatus>,
    ready: bool,
    dry_run: bool,
    lease: LeaseStatus,
    last_reconcile: Option<String>,
    last_error: Option<String>,
    /// Since when the primary has been failing (for `/readyz`).
    failing_since: Option<tokio::time::Instant>,
}

/// Shared between the tasks and the HTTP server. Locks are held only to copy.
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Inner>,
}

/// Replaces `text` by `value`, keeping its allocation.
fn set(text: &mut String, value: &str) {
    if text != value {
        text.clear();
        text.push_str(value);
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    let mut text = String::new();
    set_rfc3339(&mut text, t);
    text
}

/// [`rfc3339`] into `text`, keeping its allocation.
fn set_rfc3339(text: &mut String, t: SystemTime) {
    use std::fmt::Write as _;
    text.clear();
    let _ = write!(text, "{}", humantime::format_rfc3339_millis(t));
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the status page down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_dry_run(&self, dry_run: bool) {
        self.lock().dry_run = dry_run;
    }

    pub fn add_target(&self, id: TargetId, status: TargetStatus) {
        self.lock().targets.insert(id, status);
    }

    /// Every target's status (for carrying state across a reload).
    pub fn targets(&self) -> BTreeMap<TargetId, TargetStatus> {
        self.lock().targets.clone()
    }

    pub fn replace_targets(&self, targets: BTreeMap<TargetId, TargetStatus>) {
        self.lock().targets = targets;
    }

    /// Called after every probe: updates the strings in place, so that
    /// thousands of probes a second do not each allocate a status anew.
    pub fn record_probe(&self, id: &TargetId, outcome: &ProbeOutcome, state: State, changed: bool) {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let Some(t) = inner.targets.get_mut(id) else {
            return;
        };
        let last = t.last.get_or_insert_with(|| LastResult {
            result: String::new(),
            detail: String::new(),
            latency_ms: 0.0,
            at: String::new(),
        });
        set(&mut last.result, outcome.result.as_str());
        set(&mut last.detail, &outcome.detail);
        last.latency_ms = outcome.latency.as_secs_f64() * 1000.0;
        set_rfc3339(&mut last.at, now);
        set(&mut t.state, state.as_str());
        if changed {
            set_rfc3339(&mut t.since, now);
        }
    }

    pub fn set_lease(&self, lease: LeaseStatus) {
        self.lock().lease = lease;
    }

    /// After a reconcile: success marks the time; a failure starts the clock of
    /// `/readyz`'s "failing for longer than resync_interval".
    pub fn reconciled(&self, result: Result<(), String>, first_round_done: bool) {
        let mut inner = self.lock();
        match result {
            Ok(()) => {
                inner.last_reconcile = Some(rfc3339(SystemTime::now()));
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

    /// `/readyz`: ready once the first round and a reconcile succeeded, and not
    /// while the primary has been failing for longer than `grace`.
    pub fn is_ready(&self, grace: std::time::Duration) -> bool {
        let inner = self.lock();
        inner.ready
            && inner
                .failing_since
                .is_none_or(|since| since.elapsed() <= grace)
    }

    pub fn status(&self, grace: std::time::Duration) -> Status {
        let ready = self.is_ready(grace);
        let inner = self.lock();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready,
            dry_run: inner.dry_run,
            lease: inner.lease.clone(),
            last_reconcile: inner.last_reconcile.clone(),
            last_error: inner.last_error.clone(),
            targets: inner.targets.values().cloned().collect(),
        }
    }
}
