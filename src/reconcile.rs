//! The reconciler: keeps the primary's owned records equal to what health
//! asks for. It acts on each transition at once, re-reads the owned names and
//! repairs drift every `resync_interval`, and retries with capped backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::desired::{Desired, View, desired};
use crate::diff;
use crate::dns::records::{RRset, RRsetKey, RType, Rdata};
use crate::dns::update::{Change, UpdatePlan, build_message, nsupdate_script};
use crate::dns::{DnsClient, DnsError};
use crate::health::State;
use crate::lease::{self, Action, Lease};
use crate::metrics::Metrics;
use crate::state::{Board, Event, Reload, TargetId};

/// The first retry delay after a failure; doubled up to `resync_interval`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// After a lone transition, the reconciler waits this long for another...
const COALESCE_QUIET: Duration = Duration::from_millis(3);
/// ...and once a second one came (a burst: a rack, a switch, a restart of
/// the responder), for this long after each...
const COALESCE_BURST_QUIET: Duration = Duration::from_millis(10);
/// ...but no transition waits longer than this for the ones after it.
const COALESCE_MAX: Duration = Duration::from_millis(25);
/// How many times a reconcile re-reads and retries after a failed prerequisite.
const STALE_RETRIES: usize = 3;

/// Why a reconcile did not leave the primary as desired.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An UPDATE failed.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// Reading the owned names (or an MX target's addresses) failed, so no
    /// UPDATE could be made.
    #[error("cannot read the zone: {0}")]
    Read(DnsError),
    #[error("the zone changed under us {STALE_RETRIES} times in a row (prerequisites failed)")]
    Stale,
    #[error("cannot build the UPDATE: {0}")]
    Build(String),
}

/// Reads the owned RRsets from the primary, one type at a time over TCP.
pub async fn read_view<'a>(
    client: &DnsClient,
    keys: impl IntoIterator<Item = &'a RRsetKey>,
) -> Result<View, ReconcileError> {
    let mut view = View::new();
    for key in keys {
        let name = crate::dns::records::parse_name(&key.name).map_err(ReconcileError::Build)?;
        let records = client
            .query(&name, key.rtype.to_hickory())
            .await
            .map_err(ReconcileError::Read)?;
        view.insert(key.clone(), RRset::from_records(&records));
    }
    Ok(view)
}

/// An MX target that has no address record: BIND refuses the whole UPDATE that
/// adds such an MX (check-integrity), so it is left out and reported.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingAddress {
    pub owner: String,
    pub exchange: String,
}

impl std::fmt::Display for MissingAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MX target {} (at {}) has no A/AAAA record in the zone; BIND would refuse the whole UPDATE (check-integrity), so this MX is not added until the host has an address record",
            self.exchange, self.owner
        )
    }
}

/// Drops MX additions whose in-zone target has no address record at the primary
/// nor among the records being published; returns the ones dropped.
pub async fn drop_mx_without_address(
    client: &DnsClient,
    zone: &str,
    desired: &Desired,
    plan: &mut UpdatePlan,
) -> Result<Vec<MissingAddress>, ReconcileError> {
    let mut checked: HashMap<String, bool> = HashMap::new();
    let mut missing = Vec::new();
    for change in &plan.changes {
        let Change::Add {
            key,
            rdata: Rdata::Mx { exchange, .. },
            ..
        } = change
        else {
            continue;
        };
        if !in_zone(exchange, zone) {
            continue;
        }
        let has = match checked.get(exchange) {
            Some(has) => *has,
            None => {
                let has = published_address(desired, exchange) || {
                    let name =
                        crate::dns::records::parse_name(exchange).map_err(ReconcileError::Build)?;
                    let name = &name;
                    let has = |rtype: RType| async move {
                        client
                            .query(name, rtype.to_hickory())
                            .await
                            .map(|r| !r.is_empty())
                            .map_err(ReconcileError::Read)
                    };
                    has(RType::A).await? || has(RType::Aaaa).await?
                };
                checked.insert(exchange.clone(), has);
                has
            }
        };
        if !has {
            missing.push(MissingAddress {
                owner: key.name.clone(),
                exchange: exchange.clone(),
            });
        }
    }
    plan.retain(|c| {
        !matches!(c, Change::Add { rdata: Rdata::Mx { exchange, .. }, .. }
            if missing.iter().any(|m| &m.exchange == exchange))
    });
    Ok(missing)
}

fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn published_address(desired: &Desired, host: &str) -> bool {
    [RType::A, RType::Aaaa].into_iter().any(|rtype| {
        desired
            .wanted
            .get(&RRsetKey {
                name: host.to_string(),
                rtype,
            })
            .is_some_and(|s| !s.is_empty())
    })
}

/// The labels of the pools: the name as written, made unique with the type
/// when two pools share a name (an A and an MX pool at `@`).
pub fn pool_labels(config: &Config) -> Vec<String> {
    config
        .pools
        .iter()
        .map(|pool| {
            let shared = config.pools.iter().filter(|p| p.name == pool.name).count() > 1;
            if shared {
                let t = match pool.kind {
                    crate::config::PoolKind::Address => "a",
                    crate::config::PoolKind::Mx { .. } => "mx",
                    crate::config::PoolKind::Srv { .. } => "srv",
                };
                format!("{}/{t}", pool.name)
            } else {
                pool.name.clone()
            }
        })
        .collect()
}

/// The reconciler's state, owned by its task.
pub struct Reconciler {
    config: Arc<Config>,
    pool_labels: Vec<String>,
    zone: String,
    client: DnsClient,
    metrics: Metrics,
    board: Arc<Board>,
    dry_run: bool,
    /// The configuration generation whose target events count.
    generation: u64,
    health: HashMap<TargetId, State>,
    /// Targets whose first probe has finished (readiness).
    probed: HashSet<TargetId>,
    targets: usize,
    /// What the primary holds, as last read and updated by our own UPDATEs;
    /// `None` forces a re-read.
    view: Option<View>,
    /// Records owned under a previous configuration, to delete.
    retired: BTreeMap<RRsetKey, BTreeSet<Rdata>>,
    /// Changes the primary refused on their own; skipped until the next resync.
    rejected: HashSet<(RRsetKey, Rdata)>,
    /// Reported MX targets without address (logged when the set changes).
    missing: Vec<MissingAddress>,
    /// The last plan logged in dry-run mode (to log each plan once).
    last_dry_run: Option<UpdatePlan>,
    /// With `[ha]`: the lease that decides which instance writes.
    lease: Option<Lease>,
}

impl Reconciler {
    pub fn new(
        config: Arc<Config>,
        client: DnsClient,
        metrics: Metrics,
        board: Arc<Board>,
        dry_run: bool,
        targets: usize,
    ) -> Self {
        Self {
            pool_labels: pool_labels(&config),
            zone: crate::dns::records::name_key(&config.dns.zone),
            config,
            client,
            metrics,
            board,
            dry_run,
            generation: 0,
            health: HashMap::new(),
            probed: HashSet::new(),
            targets,
            view: None,
            retired: BTreeMap::new(),
            rejected: HashSet::new(),
            missing: Vec::new(),
            last_dry_run: None,
            lease: None,
        }
        .with_lease()
    }

    /// Sets up the lease from `[ha]` (none without it: this instance writes).
    fn with_lease(mut self) -> Self {
        self.lease = self
            .config
            .ha
            .as_ref()
            .map(|ha| Lease::new(ha.instance.clone(), ha.lease_time));
        self.publish_lease();
        self
    }

    /// For one-shot `plan --apply`: write without taking the lease (the
    /// caller checked that no other instance holds a valid one).
    pub fn without_lease(mut self) -> Self {
        self.lease = None;
        self
    }

    /// Whether this instance may write now.
    fn writer(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| l.held().is_some())
    }

    /// The lease gauge and `/status`.
    fn publish_lease(&self) {
        let (held, holder) = match &self.lease {
            None => (true, Some(crate::app::ehlo_name())),
            Some(lease) => (lease.held().is_some(), lease.holder()),
        };
        self.metrics.lease_held.set(if held { 1.0 } else { 0.0 });
        self.board
            .set_lease(crate::state::LeaseStatus { holder, held });
    }

    /// Reads the lease and takes, renews or leaves it. Returns whether this
    /// instance just became the writer.
    async fn lease_tick(&mut self) -> Result<bool, DnsError> {
        let Some(ha) = self.config.ha.clone() else {
            return Ok(false);
        };
        let was_writer = self.writer();
        let observed = self
            .client
            .query(&ha.lease, hickory_proto::rr::RecordType::TXT)
            .await?
            .iter()
            .find_map(|r| lease::txt_text(&r.data));
        let Some(state) = self.lease.as_mut() else {
            return Ok(false);
        };
        let action = state.decide(&observed, Instant::now());
        let result = match action {
            Action::Wait => Ok(()),
            Action::Swap { expected, new } => {
                let message = lease::swap_message(
                    &self.config.dns.zone,
                    &ha.lease,
                    expected.as_deref(),
                    Some(&new.text()),
                );
                match self.client.send(message).await {
                    Ok(_) => {
                        state.swapped(&new, Instant::now());
                        Ok(())
                    }
                    Err(e) if e.is_prerequisite_failure() => {
                        // Another instance wrote first: it holds the lease.
                        state.lost();
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let writer = self.writer();
        if writer != was_writer {
            if writer {
                info!(instance = %ha.instance, "Lease taken: this instance writes now.");
                // Whatever the previous writer left, read it afresh.
                self.view = None;
            } else {
                let holder = self.lease.as_ref().and_then(Lease::holder);
                warn!(instance = %ha.instance, holder = holder.as_deref().unwrap_or("-"), "Lease lost: this instance stops writing.");
            }
        }
        self.publish_lease();
        result.map(|()| writer && !was_writer)
    }

    /// Releases a held lease on shutdown (the only change stopping makes).
    async fn release_lease(&mut self) {
        let (Some(ha), Some(text)) = (
            self.config.ha.clone(),
            self.lease
                .as_ref()
                .and_then(|l| l.held())
                .map(str::to_string),
        ) else {
            return;
        };
        let message = lease::swap_message(&self.config.dns.zone, &ha.lease, Some(&text), None);
        match self.client.send(message).await {
            Ok(_) => info!(instance = %ha.instance, "Lease released."),
            Err(error) => warn!(%error, "Cannot release the lease; it will expire."),
        }
        if let Some(lease) = self.lease.as_mut() {
            lease.released();
        }
        self.publish_lease();
    }

    fn apply_event(&mut self, event: Event) {
        match event {
            Event::Transition {
                generation,
                target,
                state,
            } if generation == self.generation => {
                self.probed.insert(target);
                self.health.insert(target, state);
            }
            Event::FirstResult { generation, target } if generation == self.generation => {
                self.probed.insert(target);
            }
            Event::Transition { .. } | Event::FirstResult { .. } => {}
            Event::Reload(reload) => self.reload(*reload),
        }
    }

    /// Takes a new configuration: records owned before and not now are
    /// retired (deleted at the next reconcile); kept targets keep their state.
    fn reload(&mut self, reload: Reload) {
        let before = self.compute(&View::new()).owned;
        self.config = reload.config;
        self.pool_labels = pool_labels(&self.config);
        self.zone = crate::dns::records::name_key(&self.config.dns.zone);
        self.generation = reload.generation;
        self.health = reload.health;
        self.probed = self.health.keys().copied().collect();
        self.targets = reload.targets;
        self.client = reload.client;
        match (&self.config.ha, &self.lease) {
            (None, _) => self.lease = None,
            (Some(ha), Some(lease)) if lease.instance() == ha.instance => {}
            (Some(ha), _) => self.lease = Some(Lease::new(ha.instance.clone(), ha.lease_time)),
        }
        self.publish_lease();
        let after = self.compute(&View::new()).owned;
        for (key, records) in before {
            let kept = after.get(&key);
            let gone: BTreeSet<Rdata> = records
                .into_iter()
                .filter(|r| kept.is_none_or(|k| !k.contains(r)))
                .collect();
            if !gone.is_empty() {
                self.retired.entry(key).or_default().extend(gone);
            }
        }
        self.view = None;
        self.rejected.clear();
        self.missing.clear();
    }

    fn first_round_done(&self) -> bool {
        self.probed.len() >= self.targets
    }

    /// Runs until `shutdown`; an UPDATE in flight is finished first.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
    ) {
        let mut next_resync = Instant::now() + self.config.dns.resync_interval;
        let mut retry_at: Option<Instant> = Some(Instant::now());
        let mut backoff = FIRST_BACKOFF;
        let mut next_lease = Instant::now();
        loop {
            // Read again each time: a reload may change them, or add [ha].
            let resync = self.config.dns.resync_interval;
            next_resync = next_resync.min(Instant::now() + resync);
            let lease_tick = self.lease.as_ref().map(Lease::tick);
            next_lease = next_lease.min(Instant::now() + lease_tick.unwrap_or_default());
            let mut wake = retry_at.map_or(next_resync, |r| r.min(next_resync));
            if lease_tick.is_some() {
                wake = wake.min(next_lease);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.release_lease().await;
                    return;
                }
                event = events.recv() => {
                    let Some(event) = event else { return };
                    self.apply_event(event);
                    if !self.coalesce(&mut events).await {
                        return;
                    }
                    // Act at once unless a backoff is running.
                    if retry_at.is_none_or(|r| r <= Instant::now()) {
                        retry_at = Some(Instant::now());
                    }
                }
                () = sleep_until(wake) => {}
            }
            if let Some(tick) = lease_tick.filter(|_| Instant::now() >= next_lease) {
                next_lease = Instant::now() + tick;
                match self.lease_tick().await {
                    Ok(took) => {
                        if took {
                            retry_at = Some(Instant::now());
                        }
                        if !self.writer() {
                            let ready = self.lease.as_ref().is_some_and(Lease::has_read);
                            self.board
                                .reconciled(Ok(()), self.first_round_done() && ready);
                        }
                    }
                    Err(error) => {
                        warn!(%error, "Cannot read or renew the lease; will retry.");
                        self.board.reconciled(Err(error.to_string()), false);
                    }
                }
            }
            let now = Instant::now();
            if now >= next_resync {
                debug!("Resync: re-reading the owned names.");
                self.view = None;
                self.rejected.clear();
                next_resync = now + resync;
                retry_at = Some(now);
            }
            if retry_at.is_none_or(|r| r > now) {
                continue;
            }
            if !self.writer() {
                // A standby keeps its health warm and writes nothing; its
                // readiness follows the lease reads above.
                retry_at = None;
                continue;
            }
            match self.reconcile().await {
                Ok(()) => {
                    retry_at = None;
                    backoff = FIRST_BACKOFF;
                    self.board.reconciled(Ok(()), self.first_round_done());
                }
                Err(error) => {
                    // A failed read is an UPDATE that could not be made: count it
                    // by its kind, so a TSIG failure shows even before any UPDATE.
                    if let ReconcileError::Read(e) = &error {
                        self.metrics
                            .dns_updates_total
                            .with_label_values(&[e.label()])
                            .inc();
                    }
                    warn!(%error, retry_in = ?backoff, "Reconcile failed; will retry.");
                    self.board.reconciled(Err(error.to_string()), false);
                    self.view = None;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(resync);
                }
            }
        }
    }

    /// Takes the transitions that follow the first one closely, so that many
    /// targets changing state together (a switch, a rack) go out as one
    /// UPDATE: a lone transition waits [`COALESCE_QUIET`] for another; once
    /// more came, events are taken while they keep arriving less than
    /// [`COALESCE_BURST_QUIET`] apart, at most [`COALESCE_MAX`] in all.
    /// Returns false when the channel closed.
    async fn coalesce(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) -> bool {
        let until = Instant::now() + COALESCE_MAX;
        let mut more = false;
        loop {
            while let Ok(event) = events.try_recv() {
                self.apply_event(event);
                more = true;
            }
            let wait = if more {
                COALESCE_BURST_QUIET
            } else {
                COALESCE_QUIET
            };
            let quiet = (Instant::now() + wait).min(until);
            if quiet <= Instant::now() {
                return true;
            }
            match tokio::time::timeout_at(quiet, events.recv()).await {
                Ok(Some(event)) => {
                    self.apply_event(event);
                    more = true;
                }
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    /// One pass: read (when needed), compute, send; re-read and retry when a
    /// prerequisite shows the view was stale.
    pub async fn reconcile(&mut self) -> Result<(), ReconcileError> {
        for _ in 0..STALE_RETRIES {
            if !self.writer() {
                // A standby keeps its health warm and writes nothing.
                return Ok(());
            }
            match self.reconcile_once().await {
                Err(ReconcileError::Dns(e)) if e.is_prerequisite_failure() => {
                    info!(error = %e, "The zone changed since it was read; re-reading.");
                    self.view = None;
                    if self.lease.is_some() {
                        // Our lease may be what failed: look before retrying.
                        self.lease_tick().await.map_err(ReconcileError::Read)?;
                    }
                }
                other => return other,
            }
        }
        Err(ReconcileError::Stale)
    }

    fn compute(&self, view: &View) -> Desired {
        let health = &self.health;
        let lookup = |pool: usize, node: usize, address| {
            health
                .get(&TargetId {
                    pool,
                    node,
                    address,
                })
                .copied()
                .unwrap_or(State::Unknown)
        };
        desired(&self.config, &lookup, view)
    }

    /// Sets a target's state directly (the `plan` command: one probe decides).
    pub fn set_health(&mut self, target: TargetId, state: State) {
        self.health.insert(target, state);
        self.probed.insert(target);
    }

    /// Reads the owned names when needed and computes the UPDATE that would
    /// make the primary as desired, without the MX records BIND would refuse.
    pub async fn plan(&mut self) -> Result<(UpdatePlan, Vec<MissingAddress>), ReconcileError> {
        if self.view.is_none() {
            let probe_desired = self.compute(&View::new());
            let keys: BTreeSet<&RRsetKey> = probe_desired
                .owned
                .keys()
                .chain(self.retired.keys())
                .collect();
            self.view = Some(read_view(&self.client, keys).await?);
        }
        let view = self.view.clone().unwrap_or_default();
        let desired = self.compute(&view);
        for (outcome, label) in desired.pools.iter().zip(&self.pool_labels) {
            self.metrics
                .pool_all_down
                .with_label_values(&[label])
                .set(if outcome.all_down { 1.0 } else { 0.0 });
            self.metrics
                .records_published
                .with_label_values(&[label])
                .set(outcome.published as f64);
        }
        let mut plan = diff::plan(&desired, &self.retired, &view, self.config.dns.ttl);
        let rejected = &self.rejected;
        plan.retain(|c| !rejected.contains(&(c.key().clone(), c.rdata().clone())));
        let missing =
            drop_mx_without_address(&self.client, &self.zone, &desired, &mut plan).await?;
        Ok((plan, missing))
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    async fn reconcile_once(&mut self) -> Result<(), ReconcileError> {
        let (plan, missing) = self.plan().await?;
        if missing != self.missing {
            for m in &missing {
                warn!(owner = %m.owner, exchange = %m.exchange, "{m}");
            }
            self.missing = missing;
        }
        if plan.is_empty() {
            self.retired.clear();
            self.mark_success();
            return Ok(());
        }
        if self.dry_run {
            if self.last_dry_run.as_ref() != Some(&plan) {
                info!(
                    changes = %summarize(&plan),
                    "Dry run: would send this UPDATE:\n{}",
                    nsupdate_script(self.client.server(), &self.zone, &plan)
                );
                self.last_dry_run = Some(plan);
            }
            self.mark_success();
            return Ok(());
        }
        self.send(plan).await?;
        self.retired.clear();
        self.mark_success();
        Ok(())
    }

    fn mark_success(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.last_reconcile_success.set(now);
    }

    /// Sends `plan`; when the primary refuses it, retries the changes in smaller
    /// UPDATEs (per RRset, then per record) so every acceptable change lands,
    /// and remembers the records refused on their own.
    async fn send(&mut self, plan: UpdatePlan) -> Result<(), ReconcileError> {
        let mut queue = vec![plan];
        let mut applied = 0usize;
        let mut refused: Vec<Change> = Vec::new();
        while let Some(plan) = queue.pop() {
            match self.send_one(&plan).await {
                Ok(()) => applied += plan.changes.len(),
                Err(DnsError::Rcode { rcode, .. })
                    if rcode == hickory_proto::op::ResponseCode::Refused
                        && plan.changes.len() > 1 =>
                {
                    let parts = if plan.prerequisites.len() > 1 {
                        plan.split_by_rrset()
                    } else {
                        // One RRset: one record at a time; each part's prerequisite
                        // is recomputed from the view when it is sent.
                        plan.changes
                            .iter()
                            .map(|c| UpdatePlan {
                                prerequisites: plan.prerequisites.clone(),
                                changes: vec![c.clone()],
                            })
                            .collect()
                    };
                    info!(
                        parts = parts.len(),
                        "UPDATE refused; retrying its changes in smaller UPDATEs."
                    );
                    queue.extend(parts.into_iter().rev());
                }
                Err(DnsError::Rcode {
                    rcode: hickory_proto::op::ResponseCode::Refused,
                    ..
                }) => {
                    refused.extend(plan.changes);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        if applied == 0 {
            // The primary refuses everything: a failure of the primary (or of
            // its policy), retried with backoff rather than skipped.
            let records: Vec<String> = refused.iter().map(ToString::to_string).collect();
            warn!(records = %records.join("; "), "The primary refused every change.");
            return Err(DnsError::Rcode {
                server: self.client.server().to_string(),
                rcode: hickory_proto::op::ResponseCode::Refused,
            }
            .into());
        }
        // Some changes landed: the refused records alone are skipped.
        for change in refused {
            warn!(record = %change, "The primary refused this record; skipping it until the next resync.");
            self.rejected
                .insert((change.key().clone(), change.rdata().clone()));
        }
        Ok(())
    }

    /// One UPDATE message; refreshes its prerequisites from the view first so
    /// that parts sent one after another stay consistent.
    async fn send_one(&mut self, plan: &UpdatePlan) -> Result<(), DnsError> {
        let view = self.view.get_or_insert_with(View::new);
        let mut plan = plan.clone();
        for (key, expected) in &mut plan.prerequisites {
            *expected = view.get(key).cloned().unwrap_or_default();
        }
        let mut message = build_message(&self.zone, &plan).map_err(DnsError::Build)?;
        if let (Some(ha), Some(held)) = (&self.config.ha, self.lease.as_ref().and_then(Lease::held))
        {
            // Fencing: the UPDATE applies only while the primary holds our lease.
            message.add_answer(lease::prerequisite(&ha.lease, Some(held)));
        }
        let started = Instant::now();
        let result = self.client.send(message).await;
        let elapsed = started.elapsed();
        self.metrics
            .dns_update_duration
            .observe(elapsed.as_secs_f64());
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics
            .dns_updates_total
            .with_label_values(&[label])
            .inc();
        let changes = summarize(&plan);
        let duration_ms = format!("{:.1}", elapsed.as_secs_f64() * 1000.0);
        match &result {
            Ok(_) => {
                info!(%changes, rcode = "NOERROR", %duration_ms, "UPDATE applied.");
                diff::apply(view, &plan);
            }
            Err(error) => {
                let rcode = error
                    .rcode()
                    .map(crate::dns::client::rcode_name)
                    .unwrap_or_else(|| "-".into());
                warn!(%changes, %rcode, %duration_ms, %error, "UPDATE failed.");
            }
        }
        result.map(|_| ())
    }
}

/// "delete imap.example.com. A 192.0.2.12; add ..." for log lines.
pub fn summarize(plan: &UpdatePlan) -> String {
    plan.changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
