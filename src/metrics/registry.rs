//! The families in the prometheus registry, and the handles of all of them.

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use crate::targets::Layout;

use super::TargetFamilies;

pub const NODE_UP: &str = "pigeon_dns_node_up";
pub const PROBES_TOTAL: &str = "pigeon_dns_probes_total";
pub const PROBE_DURATION: &str = "pigeon_dns_probe_duration_seconds";
pub const TRANSITIONS_TOTAL: &str = "pigeon_dns_transitions_total";
pub const POOL_ALL_DOWN: &str = "pigeon_dns_pool_all_down";
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

/// The `op` and `result` labels of `pigeon_dns_lease_operations_total`.
pub const LEASE_OPS: [&str; 3] = ["take", "renew", "release"];
pub const LEASE_RESULTS: [&str; 3] = ["ok", "lost", "error"];

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
    pub lease_held: Gauge,
    pub lease_operations_total: IntCounterVec,
    pub dns_updates_total: IntCounterVec,
    pub dns_update_duration: Histogram,
    pub records_published: GaugeVec,
    pub last_reconcile_success: Gauge,
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
            lease_held: Gauge::new(LEASE_HELD, "1 while this instance is the writer.")?,
            lease_operations_total: IntCounterVec::new(
                Opts::new(
                    LEASE_OPERATIONS_TOTAL,
                    "Lease compare-and-swaps by operation and result (lost: another instance wrote first).",
                ),
                &["op", "result"],
            )?,
            dns_updates_total: IntCounterVec::new(
                Opts::new(
                    DNS_UPDATES_TOTAL,
                    "RFC 2136 UPDATEs to the primary by outcome; a failed read of the owned names counts as a failed UPDATE.",
                ),
                &["result"],
            )?,
            dns_update_duration: Histogram::with_opts(
                HistogramOpts::new(DNS_UPDATE_DURATION, "Round-trip time of UPDATEs.").buckets(
                    vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                ),
            )?,
            records_published: GaugeVec::new(
                Opts::new(
                    RECORDS_PUBLISHED,
                    "Records the pool wants published at the primary.",
                ),
                &["pool"],
            )?,
            last_reconcile_success: Gauge::new(
                LAST_RECONCILE_SUCCESS,
                "Unix time of the last reconcile that left the primary as desired.",
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
        for result in UPDATE_RESULTS {
            m.dns_updates_total.with_label_values(&[result]);
        }
        Ok(m)
    }

    /// Creates the labelled series of a configuration at zero: the
    /// per-pool ones (Vec families without children are not exposed),
    /// every target's, and with `[ha]` the lease operations.
    pub fn init_layout(&self, layout: &Layout, ha: bool) {
        for pool in layout.zones.iter().flat_map(|z| z.shape.pools.iter()) {
            self.pool_all_down
                .with_label_values(&[&pool.label])
                .set(0.0);
            self.records_published.with_label_values(&[&pool.label]);
        }
        for target in &layout.targets {
            self.probe_duration
                .with_label_values(&[target.spec.check.as_str()]);
            let id = &target.id;
            self.targets
                .get(&id.pool, &id.node, &id.address.to_string());
        }
        if ha {
            for op in LEASE_OPS {
                for result in LEASE_RESULTS {
                    self.lease_operations_total.with_label_values(&[op, result]);
                }
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
        self.targets.render(&mut text);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unlabelled_family_is_exposed_from_the_start() {
        let m = Metrics::new(Registry::new()).unwrap();
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
        assert!(text.contains("pigeon_dns_dns_updates_total{result=\"tsig_error\"} 0"));
    }
}
