//! The TLSA RRsets DANE probes judge by: read from the primary of the zone
//! holding each owner, signed like every other read, kept a moment in the
//! probes' [`TlsaCache`], and counted in `pigeon_dns_tlsa_records`.

use std::sync::Arc;

use super::{AppPrimary, primary};
use crate::config::Config;
use crate::core::records::{RType, in_zone, name_key};
use crate::dane::Tlsa;
use crate::dns::key::TsigKey;
use crate::metrics::{Metrics, zone_label};
use crate::probe::{ReadFuture, TLSA_CACHE, TlsaCache, TlsaReader};
use crate::reconcile::Primary;

/// Reads TLSA RRsets from the zones' primaries.
struct DnsTlsaReader {
    /// Each zone (a name key) with its primary, the longest names first so
    /// that an owner is read from the innermost zone holding it.
    zones: Vec<(String, AppPrimary)>,
    metrics: Option<Metrics>,
}

impl TlsaReader for DnsTlsaReader {
    fn read<'a>(&'a self, owner: &'a str) -> ReadFuture<'a> {
        Box::pin(async move {
            let Some((zone, primary)) = self.zones.iter().find(|(z, _)| in_zone(owner, z)) else {
                return Err(format!("no zone pigeon-dns updates holds {owner}"));
            };
            let read = primary
                .read_name(owner, &[RType::Tlsa])
                .await
                .map_err(|e| e.to_string())?;
            let records: Vec<Tlsa> = read
                .sets
                .get(&RType::Tlsa)
                .map(|set| set.records.iter().filter_map(Tlsa::of_rdata).collect())
                .unwrap_or_default();
            if let Some(metrics) = &self.metrics {
                metrics
                    .tlsa_records
                    .with_label_values(&[&zone_label(zone), &zone_label(owner)])
                    .set(records.len() as f64);
            }
            Ok(records)
        })
    }
}

/// The probes' TLSA cache of a configuration; `None` when no pool uses
/// DANE. `keys`: each zone's, by index in `Config::zones`.
pub fn tlsa_cache(
    config: &Config,
    keys: &[TsigKey],
    metrics: Option<&Metrics>,
) -> Option<Arc<TlsaCache>> {
    if !config.pools.iter().any(|p| p.dane.is_on()) {
        return None;
    }
    // Every zone, the longest names first, so that an owner is read from
    // the innermost zone that holds it.
    let mut zones: Vec<(String, AppPrimary)> = config
        .zones
        .iter()
        .zip(keys)
        .map(|(zone, key)| (name_key(&zone.zone.to_ascii()), primary(zone, key)))
        .collect();
    zones.sort_by_key(|(z, _)| std::cmp::Reverse(z.len()));
    let reader = DnsTlsaReader {
        zones,
        metrics: metrics.cloned(),
    };
    Some(Arc::new(TlsaCache::new(reader, TLSA_CACHE)))
}
