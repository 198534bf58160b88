//! The JSON of `/status` (what `status` and the status page read): plain
//! serializable copies of the board, strings where the board is typed.

use serde::{Deserialize, Serialize};

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
    /// Its health after rise/fall (`up`, `down`, `unknown`): a drained
    /// node is still probed.
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
    /// Why it is never published, when drained: `config` (`drain = true`)
    /// or `runtime` (a drain mark); the config's is named when both are.
    #[serde(default)]
    pub drain: Option<String>,
}

/// A drain, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    pub node: String,
    /// A pool's label, or `*`: every pool of the node.
    pub pool: String,
    /// `config` (`drain = true`) or `runtime` (`pigeon-dns drain`).
    pub source: String,
    /// Who drained it, when (RFC 3339) and why (runtime drains).
    pub by: Option<String>,
    pub at: Option<String>,
    pub reason: Option<String>,
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

/// The records a pool publishes, as this instance last read or wrote them
/// at the primary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedStatus {
    pub pool: String,
    /// The owner name, absolute.
    pub name: String,
    /// Type and data, one record each (`A 192.0.2.11`, `MX 10 mail1.example.com.`).
    pub records: Vec<String>,
    /// The pool's all_down policy is in force.
    pub all_down: bool,
}

/// One decided change of a target's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionStatus {
    /// RFC 3339.
    pub at: String,
    pub pool: String,
    pub node: String,
    pub address: String,
    pub from: String,
    pub to: String,
    /// The result of the probe that decided it (`ok`, `refused`, ...).
    pub result: String,
    /// Its detail (a greeting, `connection refused`, ...), as the peer sent it.
    pub detail: String,
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
    /// Per pool, the records at the primary now, as this instance last read
    /// or wrote them; `None` until it has (a standby reads none).
    #[serde(default)]
    pub published: Option<Vec<PublishedStatus>>,
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
    /// Every drain: the config's, then the marks in the zone.
    #[serde(default)]
    pub drains: Vec<DrainStatus>,
    pub targets: Vec<TargetStatus>,
    /// The last [`TRANSITIONS_KEPT`] transitions, newest first.
    #[serde(default)]
    pub transitions: Vec<TransitionStatus>,
}
