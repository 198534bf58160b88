//! One pass: read the owned names (when the view is stale), compute what
//! health asks for, diff it against the primary, set aside what cannot be
//! sent, and send the rest.
//!
//! What is set aside, and why, so that nothing holds back other changes:
//! - an owned name where a CNAME sits (nothing may sit beside a CNAME, and
//!   BIND ignores such an add while answering NOERROR): reported as an error;
//! - an MX whose in-zone target has no address record (BIND refuses the
//!   whole UPDATE that adds it): reported until the host has one;
//! - records beyond the primary's RRset size limit: reported;
//! - changes the primary refused alone: retried after their own backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::dane::align_marks;
use super::{Health, Primary, ReconcileError, ZoneReconciler, ZoneView};
use crate::core::desired::{Desired, desired};
use crate::core::diff::{self, RRsetChange};
use crate::core::records::{RRsetKey, RType, Rdata, View, in_zone};
use crate::dns::Update;

/// How many times a pass re-reads and retries after a failed prerequisite.
pub(super) const STALE_RETRIES: usize = 3;

/// An MX target that has no address record: BIND refuses the whole UPDATE that
/// adds such an MX (check-integrity), so it is left out and reported.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MissingAddress {
    pub owner: String,
    pub exchange: String,
}

impl fmt::Display for MissingAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MX target {} (at {}) has no A/AAAA record in the zone; BIND would refuse the whole UPDATE (check-integrity), so this MX is not added until the host has an address record",
            self.exchange, self.owner
        )
    }
}

/// A CNAME at an owned name: nothing may sit beside it (RFC 1034 §3.6.2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CnameConflict {
    pub name: String,
    pub target: String,
}

impl fmt::Display for CnameConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a CNAME (to {}): no other record may sit beside it, and BIND ignores such an add while answering NOERROR; this pool's records are not published until the CNAME is removed or the pool renamed",
            self.name, self.target
        )
    }
}

/// An RRset that would grow beyond what the primary takes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Oversize {
    pub key: RRsetKey,
    /// Records it would hold (foreign and owned).
    pub want: usize,
    pub limit: usize,
}

impl fmt::Display for Oversize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} would hold {} records; the primary takes at most {} per RRset (BIND's max-records-per-type), so {} of ours are not added",
            self.key,
            self.want,
            self.limit,
            self.want - self.limit
        )
    }
}

/// The changes to send, and what was set aside.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub changes: Vec<RRsetChange>,
    pub missing: Vec<MissingAddress>,
    pub cnames: Vec<CnameConflict>,
    pub oversize: Vec<Oversize>,
    /// Changes the primary refused alone, whose retry is not due yet.
    pub deferred: usize,
    /// `dane = "manage"`: why each node kept out of its pools is.
    pub held_out: Vec<String>,
}

/// How a pass ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Record changes the primary applied.
    pub applied: usize,
    /// Changes that could not be made (refused, deferred, beside a CNAME).
    pub blocked: usize,
    /// Owned RRsets the pass found as desired at the primary: with one of
    /// them, a refusal concerns some RRsets, not the primary as a whole.
    pub in_sync: usize,
    /// A standby: nothing was done.
    pub standby: bool,
}

impl<P: Primary> ZoneReconciler<P> {
    /// Reads every owned and retired name, one name at a time.
    async fn read_view(&mut self) -> Result<(), ReconcileError> {
        let dane = self.dane.reads();
        let mut names: BTreeMap<&str, BTreeSet<RType>> = BTreeMap::new();
        for key in self.shape.owned.keys().chain(self.retired.keys()) {
            names.entry(&key.name).or_default().insert(key.rtype);
        }
        for (owner, types) in &dane {
            names.entry(owner).or_default().extend(types);
        }
        let mut view = ZoneView::default();
        for (name, types) in names {
            let types: Vec<RType> = types.into_iter().collect();
            let read = self
                .primary
                .read_name(name, &types)
                .await
                .map_err(ReconcileError::Read)?;
            for (rtype, set) in read.sets {
                view.sets.insert(
                    RRsetKey {
                        name: name.to_string(),
                        rtype,
                    },
                    set,
                );
            }
            if let Some(target) = read.cname {
                view.cnames.insert(name.to_string(), target);
            }
        }
        self.view = Some(view);
        Ok(())
    }

    /// Reads the owned names when needed and computes what to send.
    pub async fn plan(&mut self, now: Instant) -> Result<Plan, ReconcileError> {
        if self.view.is_none() {
            self.read_view().await?;
        }
        self.check_dnskey().await;
        let Some(view) = self.view.as_ref() else {
            return Err(ReconcileError::Stale);
        };
        let dane = self.dane.plan(now, &view.sets, self.setup.ttl);
        let inputs = Health {
            health: &self.health,
            drains: &self.drains.marks,
            dane: &self.dane,
        };
        let desired = desired(&self.shape.pools, &inputs, &view.sets);
        self.all_down = desired.pools.iter().map(|o| o.all_down).collect();
        for (pool, outcome) in self.shape.pools.iter().zip(&desired.pools) {
            self.metrics
                .pool_all_down
                .with_label_values(&[&pool.label])
                .set(if outcome.all_down { 1.0 } else { 0.0 });
            self.metrics
                .records_published
                .with_label_values(&[&pool.label])
                .set(outcome.published as f64);
        }
        let mut changes = diff::plan(
            &self.shape.owned,
            &desired,
            &self.retired,
            &view.sets,
            self.setup.ttl,
        );
        changes.extend(dane.changes);
        let mut plan = Plan::default();
        for note in &dane.notes {
            self.board
                .set_held_out(&note.pool, &note.node, note.held_out.as_deref());
            if note.changed {
                match &note.held_out {
                    Some(why) => info!(pool = %note.pool, node = %note.node, "{why}"),
                    None => info!(
                        pool = %note.pool, node = %note.node,
                        "DANE: every key the node serves has had its TLSA record for twice the TTL; it may be published."
                    ),
                }
            }
            if let Some(why) = &note.held_out
                && !plan.held_out.contains(why)
            {
                plan.held_out.push(why.clone());
            }
        }
        changes.retain(|c| match view.cnames.get(&c.key.name) {
            Some(target) => {
                let conflict = CnameConflict {
                    name: c.key.name.clone(),
                    target: target.clone(),
                };
                if !plan.cnames.contains(&conflict) {
                    plan.cnames.push(conflict);
                }
                false
            }
            None => true,
        });
        for change in &mut changes {
            let Some(r) = self.rejected.get(&change.key).filter(|r| r.retry_at > now) else {
                continue;
            };
            let before = change.len();
            change
                .deletes
                .retain(|d| !r.records.contains(&(false, d.clone())));
            change
                .adds
                .retain(|a| !r.records.contains(&(true, a.clone())));
            plan.deferred += before - change.len();
        }
        plan.oversize = limit(&mut changes, &view.sets, self.setup.max_records);
        align_marks(&mut changes, &view.sets, &self.dane.shape.owners());
        changes.retain(|c| !c.is_empty());
        plan.missing = self.drop_mx_without_address(&desired, &mut changes).await?;
        plan.changes = changes;
        Ok(plan)
    }

    /// Drops MX additions whose in-zone target has no address record at the
    /// primary nor among the records being published; returns them.
    async fn drop_mx_without_address(
        &self,
        desired: &Desired,
        changes: &mut Vec<RRsetChange>,
    ) -> Result<Vec<MissingAddress>, ReconcileError> {
        let mut checked: BTreeMap<String, bool> = BTreeMap::new();
        let mut missing = Vec::new();
        for change in changes.iter() {
            for rdata in &change.adds {
                let Rdata::Mx { exchange, .. } = rdata else {
                    continue;
                };
                if !in_zone(exchange, &self.setup.zone) {
                    continue;
                }
                let has = match checked.get(exchange) {
                    Some(has) => *has,
                    None => {
                        let has = published_address(desired, exchange)
                            || self.has_address(exchange).await?;
                        checked.insert(exchange.clone(), has);
                        has
                    }
                };
                if !has {
                    missing.push(MissingAddress {
                        owner: change.key.name.clone(),
                        exchange: exchange.clone(),
                    });
                }
            }
        }
        for change in changes.iter_mut() {
            change.adds.retain(|r| {
                !matches!(r, Rdata::Mx { exchange, .. }
                    if missing.iter().any(|m| &m.exchange == exchange))
            });
        }
        changes.retain(|c| !c.is_empty());
        Ok(missing)
    }

    /// DANE needs a signed zone: once per reconciler, a zone with DANE
    /// pools and no DNSKEY at its primary is warned about (a failed check
    /// is tried again at the next pass).
    async fn check_dnskey(&mut self) {
        if !self.dane.shape.dane || self.dane.dnskey_checked {
            return;
        }
        match self.primary.has_dnskey().await {
            Ok(signed) => {
                self.dane.dnskey_checked = true;
                if !signed {
                    warn!(
                        zone = %self.setup.zone,
                        "The zone has no DNSKEY at its primary: it is not signed, so DANE-validating senders ignore its TLSA records. Sign it (BIND: dnssec-policy default; inline-signing yes;)."
                    );
                }
            }
            Err(error) => {
                debug!(%error, "Cannot ask the primary for the zone's DNSKEY; asking again at the next pass.")
            }
        }
    }

    async fn has_address(&self, host: &str) -> Result<bool, ReconcileError> {
        let read = self
            .primary
            .read_name(host, &[RType::A, RType::Aaaa])
            .await
            .map_err(ReconcileError::Read)?;
        Ok(read.sets.values().any(|s| !s.is_empty()))
    }

    /// The UPDATE that `plan` would send as one message (what `plan` prints).
    pub fn update_of(&self, plan: &Plan) -> Result<Update, ReconcileError> {
        let mut update = Update::new(&self.setup.zone);
        if let Some((key, set)) = self.writer.fence()? {
            update.require(key, set);
        }
        let empty = View::new();
        let view = self.view.as_ref().map_or(&empty, |v| &v.sets);
        for change in &plan.changes {
            update.rrset_change(change, view);
        }
        Ok(update)
    }

    /// Logs what was set aside, each problem when it appears or changes.
    fn report(&mut self, plan: &Plan) {
        if plan.missing != self.reported.missing {
            for m in &plan.missing {
                warn!(owner = %m.owner, exchange = %m.exchange, "{m}");
            }
            self.reported.missing = plan.missing.clone();
        }
        if plan.cnames != self.reported.cnames {
            for c in &plan.cnames {
                error!(name = %c.name, target = %c.target, "{c}");
            }
            self.reported.cnames = plan.cnames.clone();
        }
        if plan.oversize != self.reported.oversize {
            for o in &plan.oversize {
                warn!(rrset = %o.key, "{o}");
            }
            self.reported.oversize = plan.oversize.clone();
        }
    }

    /// One pass; re-reads and retries when a prerequisite shows the view
    /// was stale (or the lease changed hands).
    pub async fn pass(&mut self, now: Instant) -> Result<Outcome, ReconcileError> {
        for _ in 0..STALE_RETRIES {
            if !self.writer.may_write(Instant::now()) {
                // A standby keeps its health warm and writes nothing.
                return Ok(Outcome {
                    standby: true,
                    ..Outcome::default()
                });
            }
            let plan = self.plan(now).await?;
            self.report(&plan);
            if !plan.cnames.is_empty() {
                // The change cannot be made: counted like an UPDATE that failed.
                self.series.update("error");
            }
            let blocked = plan.deferred + plan.cnames.len();
            // RRsets that may hold records of ours (an address pool's other
            // family with no address in it does not count).
            let in_sync = (self.shape.owned.values())
                .filter(|records| !records.is_empty())
                .count()
                .saturating_sub(plan.changes.len() + blocked);
            if plan.changes.is_empty() {
                self.forget_retired();
                return Ok(Outcome {
                    blocked,
                    in_sync,
                    ..Outcome::default()
                });
            }
            if self.writer.dry_run() {
                self.log_dry_run(&plan)?;
                return Ok(Outcome {
                    blocked,
                    in_sync,
                    ..Outcome::default()
                });
            }
            match self.send(plan.changes, now).await {
                Ok(sent) => {
                    self.forget_retired();
                    return Ok(Outcome {
                        applied: sent.applied,
                        blocked: blocked + sent.rejected,
                        in_sync,
                        standby: false,
                    });
                }
                Err(ReconcileError::Dns(e)) if e.is_prerequisite_failure() => {
                    info!(error = %e, "The zone changed since it was read; re-reading.");
                    self.view = None;
                    if self.writer.tick_interval().is_some() {
                        // Our lease may be what failed: look before retrying.
                        let now = Instant::now();
                        self.writer
                            .tick(&self.primary, &self.series, now)
                            .await
                            .map_err(ReconcileError::Read)?;
                        self.publish_lease(now);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ReconcileError::Stale)
    }

    fn log_dry_run(&mut self, plan: &Plan) -> Result<(), ReconcileError> {
        let update = self.update_of(plan)?;
        let script = update.script(self.primary.server());
        if self.last_dry_run.as_ref() != Some(&script) {
            info!(
                changes = %update.summary(),
                "Dry run: would send this UPDATE:\n{script}"
            );
            self.last_dry_run = Some(script);
        }
        Ok(())
    }

    /// Retired records that are gone from the primary need no more deleting;
    /// those still there (a refused deletion) stay retired.
    fn forget_retired(&mut self) {
        let Some(view) = &self.view else {
            return;
        };
        self.retired.retain(|key, records| {
            records.retain(|r| view.sets.get(key).is_some_and(|s| s.records.contains(r)));
            !records.is_empty()
        });
    }
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

/// Trims additions so that no RRset grows beyond `max` records (0: no limit).
fn limit(changes: &mut [RRsetChange], view: &View, max: usize) -> Vec<Oversize> {
    let mut out = Vec::new();
    if max == 0 {
        return out;
    }
    for change in changes.iter_mut() {
        let held = view.get(&change.key).map_or(0, |s| s.records.len());
        let kept = held - change.deletes.len().min(held);
        let want = kept + change.adds.len();
        if want > max {
            change.adds.truncate(max.saturating_sub(kept));
            out.push(Oversize {
                key: change.key.clone(),
                want,
                limit: max,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::records::RRset;

    #[test]
    fn limit_trims_additions_to_the_rrset_size_the_primary_takes() {
        let key = RRsetKey::new("imap.example.com.", RType::A);
        let a = |i: u8| Rdata::A(std::net::Ipv4Addr::new(192, 0, 2, i));
        let mut view = View::new();
        view.insert(
            key.clone(),
            RRset {
                ttl: 60,
                records: (1..=98).map(a).collect(),
            },
        );
        let mut changes = vec![RRsetChange {
            key: key.clone(),
            deletes: vec![a(1)],
            adds: (100..=104).map(a).collect(),
            ttl: 60,
        }];
        let over = limit(&mut changes, &view, 100);
        assert_eq!(changes[0].adds.len(), 3, "97 kept + 3 = 100");
        assert_eq!(
            over,
            vec![Oversize {
                key,
                want: 102,
                limit: 100
            }]
        );
        assert!(limit(&mut changes, &view, 0).is_empty());
    }
}
