//! The page's view types from the `/status` snapshot: the zones with their
//! primary's state, the records published per pool, the transitions. Kept
//! apart from the renderers so that the page shows exactly what `/status`
//! says, and the renderers stay plain functions of their views.

use std::time::SystemTime;

use super::{PageData, PoolRecords, SecondaryView, TransitionView, ZoneView};
use crate::status::{Status, ZoneStatus};

/// What the sections beyond `/status`'s own take, made once per request.
#[derive(Clone, Debug, Default)]
pub struct Views {
    pub zones: Vec<ZoneView>,
    /// `None` until a zone's records were read (never on a standby).
    pub records: Option<Vec<PoolRecords>>,
    pub transitions: Vec<TransitionView>,
}

impl Views {
    pub fn of(status: &Status) -> Self {
        let read: Vec<&ZoneStatus> = status
            .zones
            .iter()
            .filter(|z| z.published.is_some())
            .collect();
        let records = (!read.is_empty()).then(|| {
            read.iter()
                .flat_map(|z| z.published.iter().flatten())
                .map(|p| PoolRecords {
                    pool: p.pool.clone(),
                    name: p.name.clone(),
                    records: p.records.clone(),
                    all_down: p.all_down,
                })
                .collect()
        });
        Views {
            zones: status.zones.iter().map(zone).collect(),
            records,
            transitions: status
                .transitions
                .iter()
                .map(|t| TransitionView {
                    at: t.at.clone(),
                    pool: t.pool.clone(),
                    node: t.node.clone(),
                    address: t.address.clone(),
                    from: t.from.clone(),
                    to: t.to.clone(),
                    reason: if t.detail.is_empty() {
                        t.result.clone()
                    } else {
                        format!("{}: {}", t.result, t.detail)
                    },
                })
                .collect(),
        }
    }

    /// Every section, from `status` and these views.
    pub fn data<'a>(&'a self, status: &'a Status, now: SystemTime) -> PageData<'a> {
        PageData {
            zones: Some(&self.zones),
            records: self.records.as_deref(),
            transitions: Some(&self.transitions),
            ..PageData::new(status, now)
        }
    }
}

/// A zone's primary is `up` once a pass (or, on a standby, a read of the
/// lease) succeeded and no error came since, `down` with its last error.
fn zone(z: &ZoneStatus) -> ZoneView {
    let (state, detail) = match (&z.last_error, &z.last_reconcile) {
        (Some(error), _) => ("down", Some(error.clone())),
        (None, Some(_)) => ("up", None),
        (None, None) => ("unknown", None),
    };
    ZoneView {
        zone: z.zone.clone(),
        primary: z.primary.clone(),
        primary_state: state.into(),
        primary_detail: detail,
        last_reconcile: z.last_reconcile.clone(),
        serial: z.serial,
        lease_holder: z.lease.holder.clone(),
        secondaries: z
            .secondaries
            .iter()
            .map(|s| SecondaryView {
                address: s.server.clone(),
                serial: s.serial,
                in_sync: s.in_sync,
                detail: if !s.up {
                    Some("no answer".into())
                } else if !s.in_sync {
                    Some(format!("behind for {:.0} s", s.behind_seconds))
                } else {
                    None
                },
            })
            .collect(),
    }
}
