//! The families in the prometheus registry, and the handles of all of them.

use std::sync::Arc;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::targets::Layout;

use super::{DrainFamily, TargetFamilies};

pub const NODE_UP: &str = "pigeon_dns_node_up";
pub const PROBES_TOTAL: &str = "pigeon_dns_probes_total";
pub const PROBE_DURATION: &str = "pigeon_dns_probe_duration_seconds";
pub const TRANSITIONS_TOTAL: &str = "pigeon_dns_transitions_total";
pub const POOL_ALL_DOWN: &str = "pigeon_dns_pool_all_down";
/// 1 while the node is drained in the pool, 0 otherwise; one series per
/// pool × node × source (`config`: `drain = true`; `runtime`: a drain mark).
pub const NODE_DRAINED: &str = "pigeon_dns_node_drained";
pub const CERT_EXPIRY: &str = "pigeon_dns_cert_expiry_seconds";
pub const LEASE_HELD: &str = "pigeon_dns_lease_held";
pub const DNS_UPDATES_TOTAL: &str = "pigeon_dns_dns_updates_total";
pub const DNS_UPDATE_DURATION: &str = "pigeon_dns_dns_update_duration_seconds";
pub const RECORDS_PUBLISHED: &str = "pigeon_dns_records_published";
pub const LAST_RECONCILE_SUCCESS: &str = "pigeon_dns_last_reconcile_success_timestamp_seconds";
pub const BUILD_INFO: &str = "pigeon_dns_build_info";
/// Not in the contract: tasks alive in the runtime (sampled at each scrape).
pub const RUNTIME_TASKS: &str = "pigeon_dns_runtime_alive_tasks";
/// Not in the contract: established watch connections.
pub const WATCH_CONNECTIONS: &str = "pigeon_dns_watch_connections";
/// Not in the contract: how late probes start against their schedule.
pub const PROBE_DELAY: &str = "pigeon_dns_probe_delay_seconds";
/// Not in the contract: lease takes, renewals and releases by result.
pub const LEASE_OPERATIONS_TOTAL: &str = "pigeon_dns_lease_operations_total";
pub const ZONE_SERIAL: &str = "pigeon_dns_zone_serial";
pub const SECONDARY_BEHIND: &str = "pigeon_dns_secondary_behind_seconds";
pub const SECONDARY_UP: &str = "pigeon_dns_secondary_up";
pub const PROPAGATION: &str = "pigeon_dns_propagation_seconds";
pub const DANE_MATCH: &str = "pigeon_dns_dane_match";
pub const TLSA_RECORDS: &str = "pigeon_dns_tlsa_records";

/// The `op` and `result` labels of `pigeon_dns_lease_operations_total`.
pub const LEASE_OPS: [&str; 3] = ["take", "renew", "release"];
pub const LEASE_RESULTS: [&str; 3] = ["ok", "lost", "error"];

/// The `source` labels of `pigeon_dns_node_drained`.
pub const DRAIN_SOURCES: [&str; 2] = ["config", "runtime"];

/// The `result` labels of `pigeon_dns_dns_updates_total`.
pub const UPDATE_RESULTS: [&str; 5] = ["ok", "refused", "tsig_error", "timeout", "error"];

/// Every metric handle. Cheap to clone (handles are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `node_up`, `probes_total`, `transitions_total`, `cert_expiry_seconds`.
    pub targets: Arc<TargetFamilies>,
    pub probe_duration: HistogramVec,
    pub pool_all_down: GaugeVec,
    /// `node_drained{pool, node, source}`, beside the registry too.
    pub drains: Arc<DrainFamily>,
    pub lease_held: GaugeVec,
    pub lease_operations_total: IntCounterVec,
    pub dns_updates_total: IntCounterVec,
    pub dns_update_duration: HistogramVec,
    pub records_published: GaugeVec,
    pub last_reconcile_success: GaugeVec,
    pub zone_serial: GaugeVec,
    pub secondary_behind: GaugeVec,
    pub secondary_up: GaugeVec,
    pub propagation: HistogramVec,
    /// TLSA records at each owner a DANE pool reads, as last read.
    pub tlsa_records: GaugeVec,
    pub build_info: GaugeVec,
    pub probe_delay: Histogram,
    pub watch_connections: IntGauge,
    pub runtime_tasks: IntGauge,
}

impl Metrics {
    /// Registers every family on `registry`.
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            targets: Arc::default(),
            probe_duration: HistogramVec::new(
                HistogramOpts::new(PROBE_DURATION, "Duration of probes, by check.").buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["check"],
            )?,
            pool_all_down: GaugeVec::new(
                Opts::new(
                    POOL_ALL_DOWN,
                    "1 while the pool's all_down policy is in force.",
                ),
                &["pool"],
            )?,
            drains: Arc::default(),
            lease_held: GaugeVec::new(
                Opts::new(LEASE_HELD, "1 while this instance writes the zone."),
                &["zone"],
            )?,
            lease_operations_total: IntCounterVec::new(
                Opts::new(
                    LEASE_OPERATIONS_TOTAL,
                    "Lease compare-and-swaps by operation and result (lost: another instance wrote first).",
                ),
                &["zone", "op", "result"],
            )?,
            dns_updates_total: IntCounterVec::new(
                Opts::new(
                    DNS_UPDATES_TOTAL,
                    "RFC 2136 UPDATEs to the zone's primary by outcome; a failed read of the owned names counts as a failed UPDATE.",
                ),
                &["zone", "result"],
            )?,
            dns_update_duration: HistogramVec::new(
                HistogramOpts::new(DNS_UPDATE_DURATION, "Round-trip time of UPDATEs.").buckets(
                    vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                ),
                &["zone"],
            )?,
            zone_serial: GaugeVec::new(
                Opts::new(
                    ZONE_SERIAL,
                    "The zone's SOA serial at its primary (server=\"primary\") and at each secondary.",
                ),
                &["zone", "server"],
            )?,
            secondary_behind: GaugeVec::new(
                Opts::new(
                    SECONDARY_BEHIND,
                    "How long the secondary has served an older serial than the primary (0: in sync).",
                ),
                &["zone", "server"],
            )?,
            secondary_up: GaugeVec::new(
                Opts::new(
                    SECONDARY_UP,
                    "1 when the secondary answered the last query.",
                ),
                &["zone", "server"],
            )?,
            propagation: HistogramVec::new(
                HistogramOpts::new(
                    PROPAGATION,
                    "From an UPDATE applied to every secondary serving that serial or a later one.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["zone"],
            )?,
            records_published: GaugeVec::new(
                Opts::new(
                    RECORDS_PUBLISHED,
                    "Records the pool wants published at the primary.",
                ),
                &["pool"],
            )?,
            last_reconcile_success: GaugeVec::new(
                Opts::new(
                    LAST_RECONCILE_SUCCESS,
                    "Unix time of the last reconcile that left the zone's primary as desired.",
                ),
                &["zone"],
            )?,
            tlsa_records: GaugeVec::new(
                Opts::new(
                    TLSA_RECORDS,
                    "TLSA records at the owner (_<port>._tcp.<host>) as last read from the zone's primary.",
                ),
                &["zone", "owner"],
            )?,
            build_info: GaugeVec::new(
                Opts::new(BUILD_INFO, "Always 1; the version as a label."),
                &["version"],
            )?,
            probe_delay: Histogram::with_opts(
                HistogramOpts::new(
                    PROBE_DELAY,
                    "How late scheduled probes started (a saturated process shows here).",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            )?,
            watch_connections: IntGauge::new(
                WATCH_CONNECTIONS,
                "Watch connections open (idle sessions to up targets).",
            )?,
            runtime_tasks: IntGauge::new(
                RUNTIME_TASKS,
                "Tasks alive in the async runtime, sampled when scraped.",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.probe_duration.clone()))?;
        m.registry.register(Box::new(m.pool_all_down.clone()))?;
        m.registry.register(Box::new(m.lease_held.clone()))?;
        m.registry
            .register(Box::new(m.lease_operations_total.clone()))?;
        m.registry.register(Box::new(m.dns_updates_total.clone()))?;
        m.registry
            .register(Box::new(m.dns_update_duration.clone()))?;
        m.registry.register(Box::new(m.records_published.clone()))?;
        m.registry
            .register(Box::new(m.last_reconcile_success.clone()))?;
        m.registry.register(Box::new(m.build_info.clone()))?;
        m.registry.register(Box::new(m.zone_serial.clone()))?;
        m.registry.register(Box::new(m.secondary_behind.clone()))?;
        m.registry.register(Box::new(m.secondary_up.clone()))?;
        m.registry.register(Box::new(m.propagation.clone()))?;
        m.registry.register(Box::new(m.tlsa_records.clone()))?;
        m.registry.register(Box::new(m.probe_delay.clone()))?;
        m.registry.register(Box::new(m.watch_connections.clone()))?;
        m.registry.register(Box::new(m.runtime_tasks.clone()))?;
        // process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total...
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        Ok(m)
    }

    /// The DNS-side series of one zone.
    pub fn zone(&self, zone: &str) -> ZoneSeries {
        ZoneSeries {
            zone: zone_label(zone),
            metrics: self.clone(),
        }
    }

    /// Creates the labelled series of a configuration at zero: the
    /// per-zone and per-pool ones (Vec families without children are not
    /// exposed), every target's, and with `[ha]` the lease operations.
    pub fn init_layout(&self, layout: &Layout, ha: bool) {
        for zone in &layout.zones {
            let z = zone_label(&zone.name);
            for result in UPDATE_RESULTS {
                self.dns_updates_total.with_label_values(&[&z, result]);
            }
            self.dns_update_duration.with_label_values(&[&z]);
            self.last_reconcile_success.with_label_values(&[&z]);
            self.lease_held.with_label_values(&[&z]);
            self.propagation.with_label_values(&[&z]);
            if ha {
                for op in LEASE_OPS {
                    for result in LEASE_RESULTS {
                        self.lease_operations_total
                            .with_label_values(&[&z, op, result]);
                    }
                }
            }
        }
        for pool in layout.zones.iter().flat_map(|z| z.shape.pools.iter()) {
            self.pool_all_down
                .with_label_values(&[&pool.label])
                .set(0.0);
            self.records_published.with_label_values(&[&pool.label]);
            for member in &pool.members {
                // Both sources created at 0; the reconciler sets runtime
                // from the marks.
                self.node_drained(&pool.label, &member.node, "config", member.drain);
            }
        }
        for target in &layout.targets {
            self.probe_duration
                .with_label_values(&[target.spec.check.as_str()]);
            if let (Some(dane), Some(zone)) = (&target.spec.dane, layout.zones.get(target.zone)) {
                self.tlsa_records
                    .with_label_values(&[&zone_label(&zone.name), &zone_label(&dane.owner)]);
            }
            let id = &target.id;
            self.targets
                .get(&id.pool, &id.node, &id.address.to_string());
        }
    }

    /// Removes the series of a zone that a reload took away.
    pub fn forget_zone(&self, zone: &str) {
        let z = zone_label(zone);
        for result in UPDATE_RESULTS {
            let _ = self.dns_updates_total.remove_label_values(&[&z, result]);
        }
        let _ = self.dns_update_duration.remove_label_values(&[&z]);
        let _ = self.last_reconcile_success.remove_label_values(&[&z]);
        let _ = self.lease_held.remove_label_values(&[&z]);
        let _ = self.propagation.remove_label_values(&[&z]);
        for op in LEASE_OPS {
            for result in LEASE_RESULTS {
                let _ = self
                    .lease_operations_total
                    .remove_label_values(&[&z, op, result]);
            }
        }
    }

    /// Removes the series of a target that a reload took away.
    pub fn forget_target(&self, pool: &str, node: &str, address: &str) {
        self.targets.remove(pool, node, address);
    }

    /// Removes the series of a pool that a reload took away.
    pub fn forget_pool(&self, pool: &str) {
        let _ = self.pool_all_down.remove_label_values(&[pool]);
        let _ = self.records_published.remove_label_values(&[pool]);
    }

    /// Removes the drain series of a node a reload took out of a pool.
    pub fn forget_member(&self, pool: &str, node: &str) {
        self.drains.remove(pool, node);
    }

    /// `node_drained{pool, node, source}`.
    pub fn node_drained(&self, pool: &str, node: &str, source: &str, drained: bool) {
        self.drains.set(pool, node, source, drained);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let tasks = handle.metrics().num_alive_tasks();
            self.runtime_tasks
                .set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "Cannot encode metrics.");
        }
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        self.drains.render(&mut text);
        self.targets.render(&mut text);
        text
    }
}

/// A zone as its `zone` label reads: without the final dot.
pub fn zone_label(zone: &str) -> String {
    zone.trim_end_matches('.').to_string()
}

/// The DNS-side series of one zone, by its label.
#[derive(Clone)]
pub struct ZoneSeries {
    zone: String,
    metrics: Metrics,
}

impl ZoneSeries {
    /// `dns_updates_total{zone, result}`.
    pub fn update(&self, result: &str) {
        self.metrics
            .dns_updates_total
            .with_label_values(&[&self.zone, result])
            .inc();
    }

    /// `dns_update_duration_seconds{zone}`.
    pub fn update_took(&self, seconds: f64) {
        self.metrics
            .dns_update_duration
            .with_label_values(&[&self.zone])
            .observe(seconds);
    }

    /// `last_reconcile_success_timestamp_seconds{zone}`.
    pub fn succeeded_at(&self, unix: f64) {
        self.metrics
            .last_reconcile_success
            .with_label_values(&[&self.zone])
            .set(unix);
    }

    /// `lease_held{zone}`.
    pub fn lease_held(&self, held: bool) {
        self.metrics
            .lease_held
            .with_label_values(&[&self.zone])
            .set(if held { 1.0 } else { 0.0 });
    }

    /// `lease_operations_total{zone, op, result}`.
    pub fn lease_op(&self, op: &str, result: &str) {
        self.metrics
            .lease_operations_total
            .with_label_values(&[&self.zone, op, result])
            .inc();
    }

    /// `zone_serial{zone, server}`, `secondary_up`, `secondary_behind_seconds`.
    pub fn serial(&self, server: &str, serial: Option<u32>) {
        let series = self
            .metrics
            .zone_serial
            .with_label_values(&[&self.zone, server]);
        match serial {
            Some(s) => series.set(f64::from(s)),
            None => {
                let _ = self
                    .metrics
                    .zone_serial
                    .remove_label_values(&[&self.zone, server]);
            }
        }
    }

    pub fn secondary(&self, server: &str, up: bool, behind: f64) {
        self.metrics
            .secondary_up
            .with_label_values(&[&self.zone, server])
            .set(if up { 1.0 } else { 0.0 });
        self.metrics
            .secondary_behind
            .with_label_values(&[&self.zone, server])
            .set(behind);
    }

    /// Removes the series of a secondary no longer among the zone's servers.
    pub fn forget_secondary(&self, server: &str) {
        let labels = [self.zone.as_str(), server];
        let _ = self.metrics.zone_serial.remove_label_values(&labels);
        let _ = self.metrics.secondary_up.remove_label_values(&labels);
        let _ = self.metrics.secondary_behind.remove_label_values(&labels);
    }

    /// `propagation_seconds{zone}`.
    pub fn propagated(&self, seconds: f64) {
        self.metrics
            .propagation
            .with_label_values(&[&self.zone])
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_family_is_exposed_from_the_start() {
        let m = Metrics::new(Registry::new()).unwrap();
        let layout = Layout {
            zones: vec![crate::targets::ZoneLayout {
                index: 0,
                name: "example.com.".into(),
                shape: Default::default(),
                targets: 0,
                tlsa: Default::default(),
            }],
            targets: Vec::new(),
        };
        m.init_layout(&layout, false);
        let text = m.render();
        for name in [
            LEASE_HELD,
            DNS_UPDATES_TOTAL,
            DNS_UPDATE_DURATION,
            LAST_RECONCILE_SUCCESS,
            BUILD_INFO,
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains(
            "pigeon_dns_dns_updates_total{result=\"tsig_error\",zone=\"example.com\"} 0"
        ));
    }
}
