//! Sending a pass's changes: as few UPDATEs as fit in a DNS message, each
//! fenced with the lease; when the primary refuses one, its changes are
//! retried in smaller UPDATEs (per RRset, then per record) so that every
//! acceptable change lands, and the ones refused alone are set aside with a
//! backoff of their own. Every UPDATE is logged and counted here, once.

use std::collections::{BTreeMap, VecDeque};

use tokio::time::Instant;
use tracing::{info, warn};

use super::{FIRST_BACKOFF, Primary, ReconcileError, Rejection, ZoneReconciler};
use crate::core::diff::{self, RRsetChange};
use crate::core::lease::LeaseSet;
use crate::core::records::{RRsetKey, View};
use crate::dns::update::{Guard, name_len, record_len};
use crate::dns::{DnsError, Update};

/// What a DNS message over TCP may hold (its 2-byte length), less room for
/// the TSIG record that signing appends.
const MAX_UPDATE_BYTES: usize = u16::MAX as usize - 1024;

/// A unit of the send queue: an RRset's changes, and whether they may share
/// an UPDATE with others (not once the primary refused them together).
struct Unit {
    change: RRsetChange,
    alone: bool,
}

/// What [`ZoneReconciler::send`] achieved.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sent {
    /// Record changes applied.
    pub applied: usize,
    /// Record changes refused alone (set aside).
    pub rejected: usize,
}

type Fence = Option<(RRsetKey, LeaseSet)>;

impl<P: Primary> ZoneReconciler<P> {
    /// Sends `changes`; returns an error only for failures of the whole
    /// primary (no answer, TSIG, NOTAUTH) or a failed prerequisite (stale view).
    pub(super) async fn send(
        &mut self,
        changes: Vec<RRsetChange>,
        now: Instant,
    ) -> Result<Sent, ReconcileError> {
        let fence = self.writer.fence()?;
        // Refusals whose retry is due: they are in `changes` again; refused
        // again, their backoff grows, otherwise they are forgotten.
        let retrying: BTreeMap<RRsetKey, Rejection> = {
            let due: Vec<RRsetKey> = self
                .rejected
                .iter()
                .filter(|(_, r)| r.retry_at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            due.into_iter()
                .filter_map(|k| self.rejected.remove(&k).map(|r| (k, r)))
                .collect()
        };
        let mut queue: VecDeque<Unit> = changes
            .into_iter()
            .map(|change| Unit {
                change,
                alone: false,
            })
            .collect();
        let mut sent = Sent::default();
        let mut refused: BTreeMap<RRsetKey, (Vec<RRsetChange>, String)> = BTreeMap::new();
        while !queue.is_empty() {
            let batch = self.next_batch(&mut queue, &fence)?;
            match self.send_one(&batch, &fence).await {
                Ok(()) => {
                    let view = &mut self.view.get_or_insert_with(Default::default).sets;
                    for change in &batch {
                        diff::apply(view, change);
                        sent.applied += change.len();
                        self.dane.changed(&change.key);
                    }
                }
                Err(e) if e.is_rejection() && batch.len() > 1 => {
                    info!(
                        parts = batch.len(),
                        "UPDATE refused; retrying its changes one RRset at a time."
                    );
                    for change in batch.into_iter().rev() {
                        queue.push_front(Unit {
                            change,
                            alone: true,
                        });
                    }
                }
                Err(e) if e.is_rejection() && batch[0].len() > 1 => {
                    // One RRset: one record at a time, each part's
                    // prerequisite made from the view as the parts land.
                    for change in batch[0].per_record().into_iter().rev() {
                        queue.push_front(Unit {
                            change,
                            alone: true,
                        });
                    }
                }
                Err(e) if e.is_rejection() => {
                    for change in batch {
                        let entry = refused
                            .entry(change.key.clone())
                            .or_insert_with(|| (Vec::new(), e.to_string()));
                        entry.0.push(change);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let resync = self.setup.resync_interval;
        for (key, (changes, reason)) in refused {
            let backoff = retrying
                .get(&key)
                .map_or(FIRST_BACKOFF, |r| (r.backoff * 2).min(resync));
            let records = changes
                .iter()
                .flat_map(|c| {
                    c.deletes
                        .iter()
                        .map(|r| (false, r.clone()))
                        .chain(c.adds.iter().map(|r| (true, r.clone())))
                })
                .collect::<std::collections::BTreeSet<_>>();
            let described: Vec<String> = changes.iter().flat_map(|c| c.describe()).collect();
            warn!(
                records = %described.join("; "),
                reason = %reason,
                retry_in = ?backoff,
                "The primary refused these changes; they are retried later and hold back no other change."
            );
            sent.rejected += records.len();
            self.rejected.insert(
                key,
                Rejection {
                    records,
                    reason,
                    backoff,
                    retry_at: now + backoff,
                },
            );
        }
        Ok(sent)
    }

    /// The next UPDATE's changes: whole RRsets from the front of the queue
    /// while they fit in a message, sized against the view as it is now (an
    /// RRset's prerequisite repeats what it holds); an RRset too large for
    /// one message is cut into parts that fit, sent one after another.
    fn next_batch(
        &self,
        queue: &mut VecDeque<Unit>,
        fence: &Fence,
    ) -> Result<Vec<RRsetChange>, ReconcileError> {
        let empty = View::new();
        let view = self.view.as_ref().map_or(&empty, |v| &v.sets);
        // Header, the zone's question, the fence.
        let base = 12
            + name_len(&self.setup.zone)
            + 4
            + fence
                .as_ref()
                .map_or(0, |(key, set)| Guard::Exactly(set.clone()).len(key));
        let size = |change: &RRsetChange| {
            Guard::of(view, &change.key).len(&change.key)
                + change
                    .deletes
                    .iter()
                    .chain(&change.adds)
                    .map(|r| record_len(&change.key.name, r))
                    .sum::<usize>()
        };
        let mut batch = Vec::new();
        let mut used = base;
        while let Some(unit) = queue.pop_front() {
            let bytes = size(&unit.change);
            if base + bytes > MAX_UPDATE_BYTES && batch.is_empty() {
                // Cut it: as many of its records as fit, the rest queued.
                let mut part = RRsetChange {
                    deletes: Vec::new(),
                    adds: Vec::new(),
                    ..unit.change.clone()
                };
                let mut rest = part.clone();
                let mut room = MAX_UPDATE_BYTES - base - size(&part);
                for (delete, rdata) in unit
                    .change
                    .deletes
                    .iter()
                    .map(|r| (true, r))
                    .chain(unit.change.adds.iter().map(|r| (false, r)))
                {
                    let len = record_len(&part.key.name, rdata);
                    let target = if len <= room && rest.is_empty() {
                        room -= len;
                        &mut part
                    } else {
                        &mut rest
                    };
                    if delete {
                        target.deletes.push(rdata.clone());
                    } else {
                        target.adds.push(rdata.clone());
                    }
                }
                if part.is_empty() {
                    return Err(ReconcileError::Build(format!(
                        "a record of {} does not fit in one DNS message",
                        part.key
                    )));
                }
                queue.push_front(Unit {
                    change: rest,
                    alone: unit.alone,
                });
                return Ok(vec![part]);
            }
            let shares =
                !unit.alone && batch.iter().all(|c: &RRsetChange| c.key != unit.change.key);
            if !batch.is_empty() && (!shares || used + bytes > MAX_UPDATE_BYTES) {
                queue.push_front(unit);
                break;
            }
            used += bytes;
            let alone = unit.alone;
            batch.push(unit.change);
            if alone {
                break;
            }
        }
        Ok(batch)
    }

    fn update_for(&self, changes: &[RRsetChange], fence: &Fence, view: &View) -> Update {
        let mut update = Update::new(&self.setup.zone);
        if let Some((key, set)) = fence {
            // Fencing: the UPDATE applies only while the primary holds our lease.
            update.require(key.clone(), set.clone());
        }
        for change in changes {
            update.rrset_change(change, view);
        }
        update
    }

    /// One UPDATE message: sent, timed, counted and logged.
    async fn send_one(&mut self, batch: &[RRsetChange], fence: &Fence) -> Result<(), DnsError> {
        let empty = View::new();
        let view = self.view.as_ref().map_or(&empty, |v| &v.sets);
        let update = self.update_for(batch, fence, view);
        let started = Instant::now();
        let result = self.primary.update(&update).await;
        let elapsed = started.elapsed();
        self.series.update_took(elapsed.as_secs_f64());
        let label = match &result {
            Ok(()) => "ok",
            Err(e) => e.label(),
        };
        self.series.update(label);
        let changes = update.summary();
        let duration_ms = format!("{:.1}", elapsed.as_secs_f64() * 1000.0);
        match &result {
            Ok(()) => info!(%changes, rcode = "NOERROR", %duration_ms, "UPDATE applied."),
            Err(error) => {
                let rcode = error
                    .rcode()
                    .map(crate::dns::client::rcode_name)
                    .unwrap_or_else(|| "-".into());
                warn!(%changes, %rcode, %duration_ms, %error, "UPDATE failed.");
            }
        }
        result
    }
}
