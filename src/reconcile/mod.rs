//! The reconciler of one zone: keeps the primary's owned records equal to
//! what health asks for. One task per zone, in parts:
//! - `task`: the loop (events, coalescing, backoff, resync, reload);
//! - `pass`: one pass (read the owned names, desired, diff, checks);
//! - `send`: the UPDATEs (sized, split on refusal, logged and counted once);
//! - `writer`: whether this instance writes (the lease) and the fence;
//! - `drains`: the drain marks at run time, read by one watcher per daemon;
//! - `primary`: the zone's primary behind a small trait, [`Primary`];
//! - `dane`: `dane = "manage"`, the TLSA records of the keys nodes serve and
//!   the nodes their rollover keeps out;
//! - `secondaries`: the zone's other servers, asked for their serial.

mod dane;
mod drains;
mod pass;
mod primary;
mod secondaries;
mod send;
mod task;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::desired::{Inputs, Owned, PoolShape, owned};
use crate::core::diff::Retired;
use crate::core::drain::Drains;
use crate::core::health::State;
use crate::core::records::{RRsetKey, Rdata, View};
use crate::dns::DnsError;
use crate::metrics::{Metrics, ZoneSeries};
use crate::status::{Board, PublishedStatus};
use crate::targets::TargetId;

pub use dane::{ManagedService, TlsaShape, WallClock};
pub use drains::{DRAIN_POLL, DrainRead, DrainSource, DrainWatcher, DrainsRx, FIRST_READ_WAIT};
pub use pass::{CnameConflict, MissingAddress, Outcome, Oversize, Plan};
pub use primary::{DnsPrimary, NameRead, Primary, read_txt};
pub use secondaries::{DnsSerials, Serials, Watcher};
pub use task::{Input, ZoneReload};
pub use writer::{LeaseSetup, Mode, Writer, read_lease};

/// The first retry delay after a failure; doubled up to `resync_interval`.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Why a pass did not leave the primary as desired.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An UPDATE failed.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// Reading the owned names (or an MX target's addresses, or the lease)
    /// failed, so no UPDATE could be made.
    #[error("cannot read the zone: {0}")]
    Read(DnsError),
    #[error(
        "the zone changed under us {} times in a row (prerequisites failed)",
        pass::STALE_RETRIES
    )]
    Stale,
    #[error("cannot build the UPDATE: {0}")]
    Build(String),
    /// The drain marks could not be read (before the first read: no pass
    /// may publish or remove without them). `label`: the metric's result.
    #[error("cannot read the drain marks: {message}")]
    Drains {
        message: String,
        label: &'static str,
    },
    /// With `[ha]`: this instance never wrote a lease, so it has no fence.
    #[error("not the writer: this instance holds no lease")]
    NotWriter,
}

/// What a zone is, from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSetup {
    /// The zone (a name key).
    pub zone: String,
    /// TTL of the records added at names pigeon-dns alone fills.
    pub ttl: u32,
    /// Re-read the owned names and repair drift this often; the backoff cap.
    pub resync_interval: Duration,
    /// Records one RRset may hold at the primary (BIND's
    /// `max-records-per-type`, default 100); 0: no limit.
    pub max_records: usize,
}

/// The pools of one zone and the records they own (depend on the config alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub pools: Vec<PoolShape>,
    pub owned: Owned,
}

impl Shape {
    pub fn new(pools: Vec<PoolShape>) -> Self {
        let owned = owned(&pools);
        Self { pools, owned }
    }
}

/// What the primary holds at the names read.
#[derive(Clone, Debug, Default)]
struct ZoneView {
    sets: View,
    /// Owned names where a CNAME sits (name key -> target).
    cnames: BTreeMap<String, String>,
}

/// Changes the primary refused on their own (a policy, a limit), set aside
/// with their own backoff so that they never hold back other changes.
#[derive(Clone, Debug)]
struct Rejection {
    /// (true: an addition, false: a deletion; the record).
    records: BTreeSet<(bool, Rdata)>,
    reason: String,
    backoff: Duration,
    retry_at: Instant,
}

/// Problems already logged, so each is logged when it appears or changes.
#[derive(Clone, Debug, Default)]
struct Reported {
    missing: Vec<MissingAddress>,
    cnames: Vec<CnameConflict>,
    oversize: Vec<Oversize>,
}

/// Health, DANE's hold-outs and drains as the core's [`Inputs`].
struct Health<'a> {
    health: &'a HashMap<TargetId, State>,
    /// Drain marks at run time (the config's drains are in the shape).
    drains: &'a Drains,
    dane: &'a dane::DaneState,
}

impl Inputs for Health<'_> {
    fn health(&self, pool: &str, node: &str, address: std::net::IpAddr) -> State {
        let state = self
            .health
            .get(&TargetId::new(pool, node, address))
            .copied()
            .unwrap_or(State::Unknown);
        self.dane.health(pool, node, state)
    }

    fn drained(&self, pool: &str, node: &str) -> bool {
        self.drains.drained(pool, node)
    }
}

/// The reconciler of one zone.
pub struct ZoneReconciler<P> {
    setup: ZoneSetup,
    shape: Arc<Shape>,
    primary: P,
    writer: Writer,
    metrics: Metrics,
    /// The zone's DNS-side series.
    series: ZoneSeries,
    board: Arc<Board>,
    /// The configuration generation whose target events count.
    generation: u64,
    health: HashMap<TargetId, State>,
    /// Targets whose first probe has finished (readiness).
    probed: HashSet<TargetId>,
    /// Targets of this zone's pools.
    targets: usize,
    /// What the primary holds, as last read and updated by our own UPDATEs;
    /// `None` forces a re-read.
    view: Option<ZoneView>,
    /// Records owned under a previous configuration, to delete.
    retired: Retired,
    rejected: BTreeMap<RRsetKey, Rejection>,
    reported: Reported,
    /// The last UPDATE logged in dry-run mode (to log each once).
    last_dry_run: Option<String>,
    /// A zone removed by a reload: until when it tries to delete its records.
    retire_by: Option<Instant>,
    /// Told the instant of every pass that changed the zone (the secondaries' watcher).
    changed: Option<tokio::sync::mpsc::UnboundedSender<Instant>>,
    /// Up targets that saw a failure, with by when they decide if their
    /// failures go on: a node's removal waits for its other pools.
    falling: HashMap<TargetId, Instant>,
    /// Addresses that went down in the transitions being coalesced.
    going_down: HashSet<std::net::IpAddr>,
    /// Drain marks at run time.
    drains: drains::DrainInputs,
    /// Per pool, whether its all_down policy was in force at the last plan.
    all_down: Vec<bool>,
    /// `dane = "manage"`: the TLSA records and the rollover's hold-outs.
    dane: dane::DaneState,
}

impl<P: Primary> ZoneReconciler<P> {
    /// `health`: the decided states to start from (empty at start; kept
    /// across a reload; one probe each for `plan`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        setup: ZoneSetup,
        shape: Arc<Shape>,
        primary: P,
        writer: Writer,
        metrics: Metrics,
        board: Arc<Board>,
        health: HashMap<TargetId, State>,
        targets: usize,
    ) -> Self {
        let series = metrics.zone(&setup.zone);
        let zone = Self {
            series,
            setup,
            shape,
            primary,
            writer,
            metrics,
            board,
            generation: 0,
            probed: health.keys().cloned().collect(),
            health,
            targets,
            view: None,
            retired: Retired::new(),
            rejected: BTreeMap::new(),
            reported: Reported::default(),
            last_dry_run: None,
            retire_by: None,
            changed: None,
            falling: HashMap::new(),
            going_down: HashSet::new(),
            drains: Default::default(),
            all_down: Vec::new(),
            dane: dane::DaneState::default(),
        };
        zone.publish_lease(Instant::now());
        zone
    }

    /// Tells `changed` the instant of every pass that changed the zone.
    pub fn telling(mut self, changed: tokio::sync::mpsc::UnboundedSender<Instant>) -> Self {
        self.changed = Some(changed);
        self
    }

    /// `dane = "manage"`: the owners and services this zone manages, the
    /// probes' TLSA cache to tell of changes, and how far ahead of a send
    /// a mark is stamped (the request timeout).
    pub fn managing(
        mut self,
        tlsa: Arc<TlsaShape>,
        cache: Option<Arc<crate::probe::TlsaCache>>,
        stamp_ahead: Duration,
    ) -> Self {
        self.dane.configure(tlsa, cache, stamp_ahead);
        self
    }

    /// The wall clock of the publication marks (tests anchor it to paused time).
    pub fn with_wall_clock(mut self, wall: WallClock) -> Self {
        self.dane.set_wall_clock(wall);
        self
    }

    /// A handshake of a `manage` target showed `key` (`plan` feeds its
    /// probes' keys here; the daemon's come as events).
    pub fn served_key(&mut self, target: TargetId, key: crate::dane::KeyDigest) {
        self.dane.served(target, key);
    }

    /// For a zone a reload adds: the configuration generation whose target
    /// events count.
    pub fn at_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub fn zone(&self) -> &str {
        &self.setup.zone
    }

    pub fn primary(&self) -> &P {
        &self.primary
    }

    fn first_round_done(&self) -> bool {
        self.probed.len() >= self.targets
    }

    /// The lease gauge and `/status`.
    fn publish_lease(&self, now: Instant) {
        let (held, holder) = self.writer.status(now);
        self.series.lease_held(held);
        self.board.set_lease(
            &self.setup.zone,
            crate::status::LeaseStatus { holder, held },
        );
    }

    /// The records each pool publishes at the primary now, as last read and
    /// written, for `/status` and the status page: the owned ones only.
    fn publish_records(&self) {
        let Some(view) = &self.view else {
            return;
        };
        let published = self
            .shape
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| {
                let mut records = Vec::new();
                for &rtype in pool.rtypes() {
                    let key = RRsetKey {
                        name: pool.owner.clone(),
                        rtype,
                    };
                    let (Some(set), Some(owned)) =
                        (view.sets.get(&key), self.shape.owned.get(&key))
                    else {
                        continue;
                    };
                    records.extend(
                        set.records
                            .iter()
                            .filter(|r| owned.contains(r))
                            .map(|r| format!("{rtype} {r}")),
                    );
                }
                PublishedStatus {
                    pool: pool.label.to_string(),
                    name: pool.owner.clone(),
                    records,
                    all_down: self.all_down.get(i).copied().unwrap_or(false),
                }
            })
            .collect();
        self.board.set_published(&self.setup.zone, published);
    }

    /// Records to delete at the next pass: owned under a previous
    /// configuration (a reload computes them with [`crate::core::diff::retired`]).
    pub fn retire(&mut self, retired: Retired) {
        for (key, records) in retired {
            self.retired.entry(key).or_default().extend(records);
        }
    }
}
