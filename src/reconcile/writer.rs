//! Whether this instance writes, and the fence of what it writes.
//!
//! Without `[ha]` the one instance writes. With `[ha]`, a lease in the zone
//! decides ([`crate::core::lease`]): the daemon takes, renews and releases
//! it; every UPDATE of records carries the lease it last wrote as a
//! prerequisite, whatever the local clock says. A dry run and the one-shot
//! commands never take, renew or release a lease: a dry run only reads who
//! holds it; `plan --apply` is fenced by the lease exactly as it observed it.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::Primary;
use super::primary::read_txt;
use crate::core::lease::{self, Action, Lease, LeaseSet, Notice, Swap};
use crate::core::records::{RRsetKey, RType};
use crate::dns::{DnsError, Update};
use crate::metrics::ZoneSeries;

/// `[ha]` as the writer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSetup {
    /// The zone the lease lives in (a name key): a prerequisite cannot name
    /// another zone.
    pub zone: String,
    /// Owner name of the lease TXT record (a name key).
    pub name: String,
    pub lease_time: Duration,
    pub instance: String,
}

/// How this instance writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The daemon: writes while it holds the lease (always without `[ha]`).
    Write,
    /// `run --dry-run`: computes and logs, sends no UPDATE, takes no lease.
    DryRun,
    /// `plan --apply`: writes once, fenced by the lease as observed.
    OneShot,
}

#[derive(Debug)]
struct Held {
    setup: LeaseSetup,
    lease: Lease,
    /// Notices logged, so each is logged once until it goes away.
    notices: Vec<Notice>,
}

/// Whether this instance writes, and how.
#[derive(Debug)]
pub struct Writer {
    mode: Mode,
    /// With `[ha]` (Write and DryRun).
    lease: Option<Held>,
    /// With `[ha]` and OneShot: the lease RRset as observed.
    observed: Option<(RRsetKey, LeaseSet)>,
    /// DryRun with `[ha]`: the holder as last read.
    seen_holder: Option<String>,
    /// This host's name: the writer shown without `[ha]`.
    host: String,
    /// Drawn per process: what makes a lease record ours.
    token: String,
}

/// What a lease tick changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// This instance has just become the writer.
    pub took: bool,
    /// This instance has just stopped being the writer.
    pub lost: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Writer {
    /// The daemon's writer (`Write` or `DryRun`). `token` is drawn per
    /// process; `host` names this instance without `[ha]`.
    pub fn new(mode: Mode, ha: Option<LeaseSetup>, token: &str, host: &str) -> Self {
        Self {
            mode,
            lease: ha.map(|setup| Held {
                lease: Lease::new(setup.instance.clone(), token.to_string(), setup.lease_time),
                setup,
                notices: Vec::new(),
            }),
            observed: None,
            seen_holder: None,
            host: host.to_string(),
            token: token.to_string(),
        }
    }

    /// `plan --apply`: fenced by the lease RRset at `name` exactly as
    /// observed (`None` without `[ha]`).
    pub fn one_shot(observed: Option<(&str, LeaseSet)>, host: &str) -> Self {
        Self {
            mode: Mode::OneShot,
            lease: None,
            observed: observed.map(|(name, set)| (RRsetKey::new(name, RType::Txt), set)),
            seen_holder: None,
            host: host.to_string(),
            token: String::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    /// Whether a pass may start now. A dry run computes and logs whatever
    /// the lease; it never sends.
    pub fn may_write(&self, now: Instant) -> bool {
        match (self.mode, &self.lease) {
            (Mode::Write, Some(held)) => held.lease.held(now),
            _ => true,
        }
    }

    /// The prerequisite every UPDATE of records carries: the lease RRset as
    /// this instance last wrote it (or, one-shot, as observed). `Ok(None)`
    /// without `[ha]`.
    pub fn fence(&self) -> Result<Option<(RRsetKey, LeaseSet)>, super::ReconcileError> {
        match (self.mode, &self.lease) {
            (Mode::OneShot, _) => Ok(self.observed.clone()),
            // A dry run holds no lease and sends nothing: its script shows
            // the changes alone.
            (Mode::DryRun, _) | (_, None) => Ok(None),
            (_, Some(held)) => held
                .lease
                .fence()
                .map(|set| Some((RRsetKey::new(&held.setup.name, RType::Txt), set)))
                .ok_or(super::ReconcileError::NotWriter),
        }
    }

    /// How often the lease is read (and renewed): `None` without `[ha]`.
    pub fn tick_interval(&self) -> Option<Duration> {
        self.lease.as_ref().map(|h| h.lease.tick())
    }

    /// Whether a standby has read the lease at least once (its readiness).
    pub fn has_read(&self) -> bool {
        self.lease.as_ref().is_none_or(|h| h.lease.has_read())
    }

    /// For the gauge and `/status`: (this instance writes, the writer).
    pub fn status(&self, now: Instant) -> (bool, Option<String>) {
        match (&self.lease, self.mode) {
            (None, _) => (true, Some(self.host.clone())),
            (Some(_), Mode::DryRun) => (false, self.seen_holder.clone()),
            (Some(held), _) => (
                held.lease.held(now),
                held.lease.holder().map(str::to_string),
            ),
        }
    }

    /// Reads the lease and (not in a dry run) takes, renews or leaves it.
    pub async fn tick<P: Primary>(
        &mut self,
        primary: &P,
        metrics: &ZoneSeries,
        now: Instant,
    ) -> Result<Tick, DnsError> {
        let mode = self.mode;
        let Some(held) = self.lease.as_mut() else {
            return Ok(Tick::default());
        };
        let observed = read_lease(primary, &held.setup.name).await?;
        if mode == Mode::DryRun {
            self.seen_holder = lease::leases(&observed)
                .first()
                .map(|(_, l)| l.holder.clone());
            return Ok(Tick::default());
        }
        let was = held.lease.held(now);
        let (action, notices) = held.lease.decide(&observed, now, unix_now());
        log_notices(&held.setup, &mut held.notices, notices);
        let (op, swap) = match action {
            Action::Wait => {
                return Ok(Tick {
                    took: false,
                    lost: was && !held.lease.held(now),
                });
            }
            Action::Take(swap) => ("take", swap),
            Action::Renew(swap) => ("renew", swap),
        };
        let result = swap_lease(primary, &held.setup, &swap).await;
        count(metrics, op, &result);
        match result {
            Ok(()) => {
                if let Some(new) = &swap.add {
                    held.lease.swapped(new, now);
                }
            }
            // Another instance wrote first: it holds the lease.
            Err(e) if e.is_prerequisite_failure() => held.lease.lost(),
            Err(e) => return Err(e),
        }
        let is = held.lease.held(now);
        let setup = &held.setup;
        if is && !was {
            info!(instance = %setup.instance, lease = %setup.name, "Lease taken: this instance writes now.");
        } else if was && !is {
            warn!(instance = %setup.instance, holder = held.lease.holder().unwrap_or("-"), "Lease lost: this instance stops writing.");
        }
        Ok(Tick {
            took: is && !was,
            lost: was && !is,
        })
    }

    /// Releases a held lease (on shutdown, or when a reload removes `[ha]`
    /// or renames the lease): the only change stopping makes.
    pub async fn release<P: Primary>(&mut self, primary: &P, metrics: &ZoneSeries) {
        if self.mode != Mode::Write {
            return;
        }
        let Some(held) = self.lease.as_mut() else {
            return;
        };
        let Some(swap) = held.lease.release() else {
            return;
        };
        let result = swap_lease(primary, &held.setup, &swap).await;
        count(metrics, "release", &result);
        match result {
            Ok(()) => info!(instance = %held.setup.instance, "Lease released."),
            Err(error) => warn!(%error, "Cannot release the lease; it will expire."),
        }
        held.lease.released();
    }

    /// Applies a reloaded `[ha]`. A held lease is released first when
    /// `[ha]` goes away or the lease moves to another name; a new lease time
    /// applies at once.
    pub async fn reconfigure<P: Primary>(
        &mut self,
        ha: Option<LeaseSetup>,
        primary: &P,
        metrics: &ZoneSeries,
    ) {
        let same_name = matches!((&self.lease, &ha), (Some(held), Some(new))
            if held.setup.name == new.name && held.setup.instance == new.instance);
        if same_name {
            if let (Some(held), Some(new)) = (self.lease.as_mut(), ha) {
                held.lease.set_lease_time(new.lease_time);
                held.setup = new;
            }
            return;
        }
        self.release(primary, metrics).await;
        *self = Writer::new(self.mode, ha, &self.token, &self.host);
    }
}

/// Logs each notice once, until it goes away.
fn log_notices(setup: &LeaseSetup, logged: &mut Vec<Notice>, now: Vec<Notice>) {
    for notice in &now {
        if logged.contains(notice) {
            continue;
        }
        match notice {
            Notice::Twin { holder } => error!(
                instance = %setup.instance, lease = %setup.name,
                "Another instance holds the lease under this instance's identity ({holder}): give each instance its own [ha] instance; this one waits and never writes beside it."
            ),
            Notice::SharedName { records } => warn!(
                lease = %setup.name,
                "{records} other TXT record(s) share the lease name; they are kept, but any change to them fails one lease swap. A name of its own (the default _pigeon-dns-lease) is safer."
            ),
            Notice::Several { count } => warn!(
                lease = %setup.name,
                "{count} lease records at once; they are replaced once unchanged for a lease time."
            ),
        }
    }
    *logged = now;
}

/// The TXT RRset at the lease name.
pub async fn read_lease<P: Primary>(primary: &P, name: &str) -> Result<LeaseSet, DnsError> {
    read_txt(primary, name).await
}

async fn swap_lease<P: Primary>(
    primary: &P,
    setup: &LeaseSetup,
    swap: &Swap,
) -> Result<(), DnsError> {
    let mut update = Update::new(&setup.zone);
    update.lease_swap(&setup.name, swap);
    primary.update(&update).await
}

/// `pigeon_dns_lease_operations_total{op, result}`: ok, lost (another
/// instance wrote first) or error (no answer, refused...).
fn count(metrics: &ZoneSeries, op: &str, result: &Result<(), DnsError>) {
    let label = match result {
        Ok(()) => "ok",
        Err(e) if e.is_prerequisite_failure() => "lost",
        Err(_) => "error",
    };
    metrics.lease_op(op, label);
}
