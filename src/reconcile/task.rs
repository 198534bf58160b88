//! The reconciler's loop: it acts on each transition at once (after a few
//! milliseconds to take the ones that come with it), re-reads the owned
//! names and repairs drift every `resync_interval`, retries with capped
//! backoff when the primary fails, renews the lease, and applies reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::drains::{Gate, next_drains};
use super::pass::Outcome;
use super::{FIRST_BACKOFF, LeaseSetup, Primary, ReconcileError, Shape, ZoneReconciler, ZoneSetup};
use crate::core::diff::retired;
use crate::core::health::State;
use crate::events::Event;
use crate::targets::TargetId;

/// After a lone transition, the reconciler waits this long for another...
pub const COALESCE_QUIET: Duration = Duration::from_millis(3);
/// ...and once a second one came (a burst: a rack, a switch, a restart of
/// the responder), for this long after each...
pub const COALESCE_BURST_QUIET: Duration = Duration::from_millis(10);
/// ...but no transition waits longer than this for the ones after it,
/// unless the node it takes down is falling in other pools of the zone:
/// then it waits for them as long as they say they need, at most
/// [`SIBLINGS_MAX`], so that a node leaves every pool in one UPDATE.
pub const COALESCE_MAX: Duration = Duration::from_millis(25);
/// The longest a node's removal waits for its other pools to decide.
pub const SIBLINGS_MAX: Duration = Duration::from_millis(500);

/// A message to a zone's reconciler.
pub enum Input<P> {
    /// From a target task.
    Event(Event),
    /// A new configuration (SIGHUP). Sent before the new generation's target
    /// tasks start, so that none of their events can come first.
    Reload(Box<ZoneReload<P>>),
    /// The zone left the configuration: delete what it owned, release its
    /// lease, and stop.
    Retire,
}

/// A reloaded configuration, as one zone sees it.
pub struct ZoneReload<P> {
    pub generation: u64,
    pub setup: ZoneSetup,
    pub shape: Arc<Shape>,
    /// For the (possibly changed) server and key.
    pub primary: P,
    pub ha: Option<LeaseSetup>,
    /// Decided states of the targets kept across the reload.
    pub health: HashMap<TargetId, State>,
    pub targets: usize,
    /// A new secondaries' watcher to tell of changes (the zone's settings
    /// changed); `None` keeps the one it has.
    pub changed: Option<mpsc::UnboundedSender<Instant>>,
    /// `dane = "manage"`: what the zone manages now.
    pub tlsa: Arc<super::TlsaShape>,
    /// The probes' TLSA cache (rebuilt with the reloaded key and server).
    pub tlsa_cache: Option<Arc<crate::probe::TlsaCache>>,
    /// How far ahead of a send a mark is stamped (the request timeout).
    pub stamp_ahead: Duration,
}

/// A zone removed by a reload gets this long to delete what it owned.
const RETIRE_WITHIN: Duration = Duration::from_secs(30);

impl<P: Primary> ZoneReconciler<P> {
    /// Runs until `shutdown` (an UPDATE in flight is finished first), or
    /// until a retired zone has deleted its records.
    pub async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<Input<P>>,
        shutdown: CancellationToken,
    ) {
        let mut next_resync = Instant::now() + self.setup.resync_interval;
        // When the next pass is due (`None`: nothing to do).
        let mut due: Option<Instant> = Some(Instant::now());
        let mut backoff = FIRST_BACKOFF;
        let mut next_lease = Instant::now();
        // The inbox closes when the daemon drops the zone (after sending
        // Retire) or stops: a retiring zone finishes its work first.
        let mut open = true;
        let mut drains = self.drains.rx.take();
        loop {
            if !open && self.retire_by.is_none() {
                return;
            }
            // Read again each time: a reload may change them, or add [ha].
            let resync = self.setup.resync_interval;
            next_resync = next_resync.min(Instant::now() + resync);
            let lease_tick = self.writer.tick_interval();
            if let Some(tick) = lease_tick {
                next_lease = next_lease.min(Instant::now() + tick);
            }
            let mut wake = next_resync;
            let gate = self.drains_wait().filter(|_| due.is_some());
            for at in [
                due.map(|d| gate.map_or(d, |g| d.max(g))),
                lease_tick.map(|_| next_lease),
                self.next_retry(),
                self.dane.wake,
            ]
            .into_iter()
            .flatten()
            {
                wake = wake.min(at);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.writer.release(&self.primary, &self.series).await;
                    self.publish_lease(Instant::now());
                    return;
                }
                input = inbox.recv(), if open => {
                    let Some(input) = input else {
                        open = false;
                        continue;
                    };
                    if !self.take(input).await {
                        // Nothing to act on (a target may fall).
                        continue;
                    }
                    open = self.coalesce(&mut inbox).await;
                    // Act at once unless a backoff is running.
                    if due.is_none_or(|d| d <= Instant::now()) {
                        due = Some(Instant::now());
                    }
                }
                read = next_drains(&mut drains) => match read {
                    Some(read) => {
                        // Act at once unless a backoff is running.
                        if self.take_read(read) && due.is_none_or(|d| d <= Instant::now()) {
                            due = Some(Instant::now());
                        }
                    }
                    // The watcher stopped (shutdown): the last marks stand.
                    None => drains = None,
                },
                () = sleep_until(wake) => {}
            }
            if let Some(tick) = lease_tick.filter(|_| Instant::now() >= next_lease) {
                next_lease = Instant::now() + tick;
                if self.lease_tick().await {
                    due = Some(Instant::now());
                }
            }
            let now = Instant::now();
            if now >= next_resync {
                debug!("Resync: re-reading the owned names.");
                self.view = None;
                next_resync = now + resync;
                // A running backoff (itself capped at resync_interval) stands.
                if due.is_none_or(|d| d <= now) {
                    due = Some(now);
                }
            }
            if due.is_none() && self.next_retry().is_some_and(|r| r <= now) {
                due = Some(now);
            }
            // DANE: a hold-out ends or a record is due for removal. Taken,
            // so that a pass that does not plan (a standby) cannot spin.
            if self.dane.wake.is_some_and(|w| w <= now) {
                self.dane.wake = None;
                if due.is_none_or(|d| d > now) {
                    due = Some(now);
                }
            }
            if due.is_none_or(|d| d > now) {
                continue;
            }
            let result = match self.drains_gate(now) {
                Gate::Open => self.pass(now).await,
                // Not before the drain marks are known (or given up on).
                Gate::Wait => continue,
                Gate::Failing(error) => Err(error),
            };
            match result {
                Ok(outcome) => {
                    due = None;
                    backoff = FIRST_BACKOFF;
                    self.after_pass(outcome);
                }
                Err(error) => {
                    // A failed read is an UPDATE that could not be made: count it
                    // by its kind, so a TSIG failure shows even before any UPDATE.
                    match &error {
                        ReconcileError::Read(e) => self.series.update(e.label()),
                        ReconcileError::Drains { label, .. } => self.series.update(label),
                        _ => {}
                    }
                    warn!(%error, retry_in = ?backoff, "Reconcile failed; will retry.");
                    self.board
                        .reconciled(&self.setup.zone, Err(error.to_string()), false);
                    self.view = None;
                    due = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(resync);
                }
            }
            if let Some(deadline) = self.retire_by
                && (self.retired.is_empty() || Instant::now() >= deadline)
            {
                self.writer.release(&self.primary, &self.series).await;
                return;
            }
        }
    }

    /// The earliest retry of changes the primary refused.
    fn next_retry(&self) -> Option<Instant> {
        self.rejected.values().map(|r| r.retry_at).min()
    }

    /// Reads the lease and takes, renews or leaves it; true when this
    /// instance has just become the writer (a pass is due).
    async fn lease_tick(&mut self) -> bool {
        let now = Instant::now();
        let result = self.writer.tick(&self.primary, &self.series, now).await;
        self.publish_lease(now);
        match result {
            Ok(tick) => {
                if tick.took {
                    // Whatever the previous writer left, read it afresh.
                    self.view = None;
                }
                if !self.writer.may_write(now) {
                    // A standby is ready once it has read the lease.
                    let ready = self.first_round_done() && self.writer.has_read();
                    self.board.reconciled(&self.setup.zone, Ok(()), ready);
                }
                tick.took
            }
            Err(error) => {
                warn!(%error, "Cannot read or renew the lease; will retry.");
                self.board
                    .reconciled(&self.setup.zone, Err(error.to_string()), false);
                false
            }
        }
    }

    /// Readiness, `/status` and the success gauge after a pass.
    fn after_pass(&mut self, outcome: Outcome) {
        if outcome.standby {
            return;
        }
        self.publish_records();
        if outcome.applied > 0
            && let Some(changed) = &self.changed
        {
            let _ = changed.send(Instant::now());
        }
        let ready = self.first_round_done();
        if outcome.applied == 0 && outcome.blocked > 0 && outcome.in_sync == 0 {
            // Nothing of ours is right and nothing could be changed: the
            // primary refuses what we send. A pool refused on its own while
            // the others are as desired is told by its log line and the
            // refused UPDATEs' metric, not by `/readyz` going up and down.
            let reason = self
                .rejected
                .values()
                .next()
                .map(|r| r.reason.clone())
                .or_else(|| self.reported.cnames.first().map(ToString::to_string))
                .unwrap_or_else(|| "changes refused".into());
            self.board.reconciled(&self.setup.zone, Err(reason), false);
            return;
        }
        self.board.reconciled(&self.setup.zone, Ok(()), ready);
        if outcome.blocked == 0 && !self.writer.dry_run() {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.series.succeeded_at(now);
        }
    }

    /// Applies one input; false when it asks for no pass.
    async fn take(&mut self, input: Input<P>) -> bool {
        match input {
            Input::Event(event) => return self.apply_event(event),
            Input::Reload(reload) => self.reload(*reload).await,
            Input::Retire => {
                // Its TLSA records stay, like the ones of a pool whose
                // `manage` a reload turns off: what a sender may have cached.
                self.dane.configure(Arc::default(), None, Duration::ZERO);
                let before = std::mem::take(&mut self.shape);
                self.retire(retired(&before.owned, &self.shape.owned));
                self.view = None;
                self.retire_by = Some(Instant::now() + RETIRE_WITHIN);
            }
        }
        true
    }

    fn apply_event(&mut self, event: Event) -> bool {
        match event {
            Event::Transition {
                generation,
                target,
                state,
            } if generation == self.generation => {
                self.falling.remove(&target);
                if state == State::Down {
                    self.going_down.insert(target.address);
                }
                self.probed.insert(target.clone());
                self.health.insert(target, state);
                true
            }
            Event::FirstResult { generation, target } if generation == self.generation => {
                self.probed.insert(target);
                true
            }
            Event::Falling {
                generation,
                target,
                within,
            } if generation == self.generation => {
                match within {
                    Some(within) => self.falling.insert(target, Instant::now() + within),
                    None => self.falling.remove(&target),
                };
                false
            }
            Event::ServedKey {
                generation,
                target,
                key,
            } if generation == self.generation => {
                // A key without a record yet: the next pass publishes it.
                self.dane.served(target, key);
                true
            }
            Event::Transition { .. }
            | Event::FirstResult { .. }
            | Event::Falling { .. }
            | Event::ServedKey { .. } => false,
        }
    }

    /// By when the other pools of the nodes going down decide, while some
    /// of them are falling (`None`: none is).
    fn siblings_decide_by(&self) -> Option<Instant> {
        self.falling
            .iter()
            .filter(|(t, _)| self.going_down.contains(&t.address))
            .map(|(_, by)| *by)
            .max()
    }

    /// Takes a new configuration: records owned before and not now are
    /// retired (deleted by the next pass); kept targets keep their state.
    async fn reload(&mut self, reload: ZoneReload<P>) {
        self.retire(retired(&self.shape.owned, &reload.shape.owned));
        self.shape = reload.shape;
        self.publish_drains();
        self.setup = reload.setup;
        self.primary = reload.primary;
        self.generation = reload.generation;
        self.probed = reload.health.keys().cloned().collect();
        self.health = reload.health;
        self.targets = reload.targets;
        self.falling.clear();
        if let Some(changed) = reload.changed {
            self.changed = Some(changed);
        }
        self.dane
            .configure(reload.tlsa, reload.tlsa_cache, reload.stamp_ahead);
        self.writer
            .reconfigure(reload.ha, &self.primary, &self.series)
            .await;
        self.publish_lease(Instant::now());
        self.view = None;
        self.rejected.clear();
        self.reported = Default::default();
    }

    /// Takes the transitions that follow the first one closely, so that many
    /// targets changing state together (a switch, a rack) go out as one
    /// UPDATE: a lone transition waits [`COALESCE_QUIET`] for another; once
    /// more came, inputs are taken while they keep arriving less than
    /// [`COALESCE_BURST_QUIET`] apart, at most [`COALESCE_MAX`] in all.
    /// Returns false when the channel closed.
    async fn coalesce(&mut self, inbox: &mut mpsc::UnboundedReceiver<Input<P>>) -> bool {
        let start = Instant::now();
        let until = start + COALESCE_MAX;
        let mut more = false;
        let open = loop {
            while let Ok(input) = inbox.try_recv() {
                // A retire or reload in a burst is applied like any input.
                more |= self.take(input).await;
            }
            let wait = if more {
                COALESCE_BURST_QUIET
            } else {
                COALESCE_QUIET
            };
            let mut quiet = (Instant::now() + wait).min(until);
            if let Some(by) = self.siblings_decide_by() {
                quiet = quiet.max(by.min(start + SIBLINGS_MAX));
            }
            if quiet <= Instant::now() {
                break true;
            }
            match tokio::time::timeout_at(quiet, inbox.recv()).await {
                Ok(Some(input)) => more |= self.take(input).await,
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        if self.siblings_decide_by().is_some() {
            debug!("Some pools of a node going down did not decide in time; sending what did.");
        }
        self.going_down.clear();
        open
    }
}
