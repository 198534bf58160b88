//! Drains at run time, as the reconcilers see them.
//!
//! The marks live in the first zone ([`crate::core::drain`]). One task per
//! daemon, the [`DrainWatcher`], reads them at that zone's primary every
//! [`DRAIN_POLL`] (a signed read over TCP, like the reconcilers' reads), logs
//! each drain and undrain once, puts them on the board, and hands them to
//! every zone's reconciler over a watch channel. A change of marks starts a
//! pass at once, so a drain reaches the primary within about
//! `DRAIN_POLL` + one UPDATE of the command returning, whichever instance
//! writes.
//!
//! Until the first read, a reconciler does not know which nodes are drained:
//! its first pass waits for that read (at most [`FIRST_READ_WAIT`]), so that
//! it never publishes a drained node for a moment after a start.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::primary::read_txt;
use super::{Primary, ZoneReconciler};
use crate::core::drain::{DRAIN_LABEL, Drains};
use crate::dns::DnsError;
use crate::status::{Board, rfc3339};

/// How often the watcher reads the marks.
pub const DRAIN_POLL: Duration = Duration::from_millis(500);

/// How long a reconciler's first pass waits for the first read of the
/// marks; then it goes on with the config's drains alone (and says so).
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(5);

/// The marks as the reconcilers receive them: `None` until the first read.
pub type DrainsRx = watch::Receiver<Option<Drains>>;

/// Where the drain marks live: the TXT RRset at `_pigeon-dns-drain.<zone>`
/// at the zone's primary.
#[derive(Clone, Debug)]
pub struct DrainSource<P> {
    /// The zone (a name key).
    pub zone: String,
    /// The owner name of the marks (a name key).
    pub name: String,
    pub primary: P,
}

impl<P: Primary> DrainSource<P> {
    /// The marks in `zone` (a name key), read at `primary`.
    pub fn new(zone: &str, primary: P) -> Self {
        Self {
            zone: zone.to_string(),
            name: format!("{DRAIN_LABEL}.{zone}"),
            primary,
        }
    }

    /// The marks the zone holds now.
    pub async fn read(&self) -> Result<Drains, DnsError> {
        let held = read_txt(&self.primary, &self.name).await?;
        Ok(Drains::from_records(&held))
    }
}

/// The daemon's one reader of the drain marks.
pub struct DrainWatcher<P> {
    /// Replaced by a reload (another first zone, server or key).
    source: watch::Receiver<DrainSource<P>>,
    out: watch::Sender<Option<Drains>>,
    board: Arc<Board>,
    /// The last read failed (logged once until a read succeeds).
    failing: bool,
}

impl<P: Primary + Clone> DrainWatcher<P> {
    /// The watcher, and the receiver to subscribe the reconcilers from.
    pub fn new(source: watch::Receiver<DrainSource<P>>, board: Arc<Board>) -> (Self, DrainsRx) {
        let (out, rx) = watch::channel(None);
        let watcher = Self {
            source,
            out,
            board,
            failing: false,
        };
        (watcher, rx)
    }

    /// Reads every [`DRAIN_POLL`] until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let started = Instant::now();
            let source = self.source.borrow_and_update().clone();
            let read = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                read = source.read() => read,
            };
            match read {
                Ok(drains) => self.take(drains),
                Err(error) => self.failed(&source.name, &error),
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = sleep_until(started + DRAIN_POLL) => {}
            }
        }
    }

    fn failed(&mut self, name: &str, error: &DnsError) {
        if self.failing {
            debug!(%error, name, "Cannot read the drain marks.");
        } else {
            warn!(%error, name, "Cannot read the drain marks; the last ones read stay in force.");
        }
        self.failing = true;
    }

    /// Logs what changed, then tells the board and the reconcilers.
    fn take(&mut self, drains: Drains) {
        if std::mem::take(&mut self.failing) {
            info!("The drain marks are readable again.");
        }
        let before = self.out.borrow().clone();
        if before.as_ref() == Some(&drains) {
            return;
        }
        let first = before.is_none();
        let before = before.unwrap_or_default();
        let (added, removed) = drains.changes(&before);
        for mark in added {
            if first {
                info!(node = %mark.node, pool = %mark.pool, by = %mark.by, at = %rfc3339(mark.made()), reason = ?mark.reason, "Node drained (a mark in the zone).");
            } else {
                info!(node = %mark.node, pool = %mark.pool, by = %mark.by, at = %rfc3339(mark.made()), reason = ?mark.reason, "Node drained.");
            }
        }
        for mark in removed {
            info!(node = %mark.node, pool = %mark.pool, drained_by = %mark.by, reason = ?mark.reason, "Node undrained: its drain mark was removed.");
        }
        self.board.set_runtime_drains(drains.clone());
        self.out.send_replace(Some(drains));
    }
}

/// A reconciler's view of the drains at run time.
#[derive(Debug, Default)]
pub(super) struct DrainInputs {
    pub marks: Drains,
    /// Where changes come from (the daemon); `None`: fixed marks (`plan`).
    pub rx: Option<DrainsRx>,
    /// Until the first read: no pass before this instant.
    pub waiting_until: Option<Instant>,
}

impl<P: Primary> ZoneReconciler<P> {
    /// The daemon's reconciler: drains from the watcher. Its first pass
    /// waits for the watcher's first read (at most [`FIRST_READ_WAIT`]).
    pub fn watching_drains(mut self, mut rx: DrainsRx) -> Self {
        let now = rx.borrow_and_update().clone();
        match now {
            Some(marks) => {
                self.take_drains(marks);
            }
            None => self.drains.waiting_until = Some(Instant::now() + FIRST_READ_WAIT),
        }
        self.drains.rx = Some(rx);
        self
    }

    /// `plan`: the marks as read once.
    pub fn with_drains(mut self, marks: Drains) -> Self {
        self.take_drains(marks);
        self
    }

    /// Takes the marks as last read; true when a pass is due for them.
    pub(super) fn take_drains(&mut self, marks: Drains) -> bool {
        let waited = self.drains.waiting_until.take().is_some();
        let changed = marks != self.drains.marks;
        self.drains.marks = marks;
        self.publish_drains();
        changed || waited
    }

    /// Whether the first pass must still wait for the marks: the instant it
    /// waits until. Once that is past, it goes on without them, logged once.
    pub(super) fn drains_gate(&mut self, now: Instant) -> Option<Instant> {
        let until = self.drains.waiting_until?;
        if now < until {
            return Some(until);
        }
        warn!(
            waited = ?FIRST_READ_WAIT,
            "The drain marks could not be read yet; reconciling with the config's drains only until they are."
        );
        self.drains.waiting_until = None;
        None
    }

    /// `pigeon_dns_node_drained{source="runtime"}` of this zone's pools.
    pub(super) fn publish_drains(&self) {
        for pool in &self.shape.pools {
            for member in &pool.members {
                let drained = self.drains.marks.drained(&pool.label, &member.node);
                self.metrics
                    .node_drained(&pool.label, &member.node, "runtime", drained);
            }
        }
    }
}

/// The next marks on `rx`: `None` once the watcher is gone; never without one.
pub(super) async fn next_drains(rx: &mut Option<DrainsRx>) -> Option<Option<Drains>> {
    let Some(rx) = rx.as_mut() else {
        return std::future::pending().await;
    };
    rx.changed().await.ok()?;
    Some(rx.borrow_and_update().clone())
}
