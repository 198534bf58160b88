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
use super::{Primary, ReconcileError, ZoneReconciler};
use crate::core::drain::{DRAIN_LABEL, Drains};
use crate::dns::DnsError;
use crate::status::{Board, rfc3339};

/// How often the watcher reads the marks.
pub const DRAIN_POLL: Duration = Duration::from_millis(500);

/// How long a reconciler's first pass waits for the first read of the
/// marks; then it goes on with the config's drains alone (and says so).
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(5);

/// What the watcher tells the reconcilers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainRead {
    /// The marks as last read; `None` until a read succeeded.
    pub marks: Option<Drains>,
    /// Why the last read failed, with its metric label (`None` once a read
    /// succeeds): until the first read, a reconciler reports it as its own
    /// failure, so a failing primary shows as it would without drains.
    pub failure: Option<(String, &'static str)>,
}

/// The marks as the reconcilers receive them.
pub type DrainsRx = watch::Receiver<DrainRead>;

/// Whether a reconciler's pass may run, as far as the drains go.
pub(super) enum Gate {
    Open,
    /// Not before the first read (or [`FIRST_READ_WAIT`]).
    Wait,
    /// The first read failed: a failed pass, retried like one.
    Failing(ReconcileError),
}

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
    out: watch::Sender<DrainRead>,
    board: Arc<Board>,
    /// The last read failed (logged once until a read succeeds).
    failing: bool,
}

impl<P: Primary + Clone> DrainWatcher<P> {
    /// The watcher, and the receiver to subscribe the reconcilers from.
    pub fn new(source: watch::Receiver<DrainSource<P>>, board: Arc<Board>) -> (Self, DrainsRx) {
        let (out, rx) = watch::channel(DrainRead::default());
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
        let failure = Some((format!("{name}: {error}"), error.label()));
        self.out.send_if_modified(|read| {
            let changed = read.failure != failure;
            read.failure.clone_from(&failure);
            changed
        });
    }

    /// Logs what changed, then tells the board and the reconcilers.
    fn take(&mut self, drains: Drains) {
        if std::mem::take(&mut self.failing) {
            info!("The drain marks are readable again.");
        }
        let before = self.out.borrow().marks.clone();
        if before.as_ref() == Some(&drains) {
            self.out
                .send_if_modified(|read| read.failure.take().is_some());
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
        self.out.send_replace(DrainRead {
            marks: Some(drains),
            failure: None,
        });
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
    /// Why the last read failed, and its metric label.
    pub failure: Option<(String, &'static str)>,
}

impl<P: Primary> ZoneReconciler<P> {
    /// The daemon's reconciler: drains from the watcher. Its first pass
    /// waits for the watcher's first read (at most [`FIRST_READ_WAIT`]).
    pub fn watching_drains(mut self, mut rx: DrainsRx) -> Self {
        let read = rx.borrow_and_update().clone();
        if read.marks.is_none() {
            self.drains.waiting_until = Some(Instant::now() + FIRST_READ_WAIT);
        }
        self.take_read(read);
        self.drains.rx = Some(rx);
        self
    }

    /// Takes what the watcher read; true when a pass is due for it.
    pub(super) fn take_read(&mut self, read: DrainRead) -> bool {
        self.drains.failure = read.failure;
        match read.marks {
            Some(marks) => self.take_drains(marks),
            None => false,
        }
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

    /// Whether a pass may run now: not before the first read of the marks
    /// (a failed read is a failed pass), until [`FIRST_READ_WAIT`] is past;
    /// then without them, logged once.
    pub(super) fn drains_gate(&mut self, now: Instant) -> Gate {
        let Some(until) = self.drains.waiting_until else {
            return Gate::Open;
        };
        if now >= until {
            warn!(
                waited = ?FIRST_READ_WAIT,
                "The drain marks could not be read yet; reconciling with the config's drains only until they are."
            );
            self.drains.waiting_until = None;
            return Gate::Open;
        }
        match &self.drains.failure {
            Some((message, label)) => Gate::Failing(ReconcileError::Drains {
                message: message.clone(),
                label,
            }),
            None => Gate::Wait,
        }
    }

    /// Until when the first pass waits for the marks, while no read failed
    /// (a failure is reported, and retried, on the backoff's schedule).
    pub(super) fn drains_wait(&self) -> Option<Instant> {
        self.drains
            .waiting_until
            .filter(|_| self.drains.failure.is_none())
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

/// The next read on `rx`: `None` once the watcher is gone; never without one.
pub(super) async fn next_drains(rx: &mut Option<DrainsRx>) -> Option<DrainRead> {
    let Some(rx) = rx.as_mut() else {
        return std::future::pending().await;
    };
    rx.changed().await.ok()?;
    Some(rx.borrow_and_update().clone())
}
