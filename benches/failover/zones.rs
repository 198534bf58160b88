//! A zone's outage: pigeon-dns at its default settings keeps the same
//! three pools (`imap` A, `@` MX, `_imap._tcp` SRV over the three
//! dovecots) in two zones of the BIND primary, and a node crashes (every
//! dovecot process SIGKILLed). The time is from the signal to the first
//! answer without the node's address in `imap` A of both zones, at the
//! primary and at the secondary, and the daemon's UPDATEs are counted per
//! zone. The same, with a third zone holding the same pools whose primary
//! is silent: a TCP and UDP listener on loopback that reads every request
//! and never answers (as a primary that hangs, or behind a firewall that
//! drops, would), so that every read and UPDATE of that zone waits for the
//! daemon's DNS timeout.
//!
//! The runs go without the third zone (the first half of the outages),
//! with it (all of them), then without it again (the second half): the
//! machine's drift weighs on both alike. Each daemon runs 3 s before its
//! first outage. The primary runs the documented
//! named.conf throughout (`notify-delay 0; notify-rate 1000;`, the
//! secondary `serial-query-rate 1000;`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{ConfigBuilder, Daemon, FakePrimary, PoolSpec, Reply, toml_str};
use crate::lab::{Settings, Way};
use crate::outages::{Held, Outages, Watch};
use crate::pigeon::notify_settings;
use crate::rows::zone_row;
use crate::support::dns::Poller;
use crate::support::stats::{median, p95, round1};
use crate::{Bench, POLL_EVERY, POOL, System, ZONE2};

/// The zone whose primary never answers.
const SILENT_ZONE: &str = "example.net";
/// How long a daemon runs before its first outage: longer than its DNS
/// timeout (2 s).
const SETTLE: Duration = Duration::from_secs(3);
/// Resamples for the interval of the difference of medians.
const BOOTSTRAP_ROUNDS: usize = 10_000;

impl Bench {
    pub fn zone_outage(&mut self) -> Value {
        println!("== pigeon-dns, crash, pools in two zones, a third zone silent or absent");
        let settings = Settings::DEFAULT;
        let zones = vec![self.lab.bind.zone().to_owned(), ZONE2.to_owned()];
        let names: Vec<String> = zones.iter().map(|z| format!("{POOL}.{z}")).collect();
        let pools: Vec<Held> = zones
            .iter()
            .flat_map(|z| {
                [
                    Held::new(z, POOL, "A"),
                    Held::new(z, "@", "MX"),
                    Held::new(z, "_imap._tcp", "SRV"),
                ]
            })
            .collect();
        self.lab.bind.set_notify_delay(Some(0));
        let silent = FakePrimary::start(
            IpAddr::from([127, 0, 0, 1]),
            self.lab.bind.key(),
            Reply::Silent,
            Reply::Silent,
        );
        let primary = Poller::start(self.lab.bind.addr(), &names, POLL_EVERY);
        let replica = Poller::start(self.replica_addr, &names, POLL_EVERY);
        let watch = Watch {
            poller: &primary,
            replica: Some(&replica),
            names: &names,
            pools: &pools,
            extra_ips: &[],
        };
        let half = self.reps / 2;
        let (first, _) = self.zone_run(&watch, None, half, 0);
        let (with, seen) = self.zone_run(&watch, Some(silent.addr), self.reps, 0);
        let (second, _) = self.zone_run(&watch, None, self.reps - half, half);
        let without = first.merge(second);
        let requests = silent.seen().len();
        let datagrams = silent.udp_datagrams();
        drop(silent);
        self.lab.bind.set_notify_delay(None);

        let without_row = zone_row("none", &without, &zones);
        let with_row = zone_row(&format!("{SILENT_ZONE}, its primary silent"), &with, &zones);
        let difference = self.difference(&without, &with);
        json!({
            "settings": settings.describe(),
            "probe": settings.to_json(),
            "dns": {"ttl": "60s", "timeout": "2s", "resync_interval": "60s", "secondaries": "ns (the default; the zones' NS names are the primary itself)"},
            "zones": zones,
            "silent_zone": SILENT_ZONE,
            "pools": "`imap` A, `@` MX 10 (smtp check on the submission port) and `_imap._tcp` SRV (imap check) over the three dovecots",
            "named_conf": notify_settings(Some(0)),
            "silent_primary": "a TCP and UDP listener on 127.0.0.1 that reads every request and never answers",
            "silent_primary_seen": {"tcp_requests": requests, "udp_datagrams": datagrams, "daemon_updates_failed": seen},
            "order": "without the third zone (first half), with it (all), without it (second half); each daemon runs 3 s before its first outage",
            "rows": [without_row, with_row],
            "difference": difference,
        })
    }

    /// One daemon with the two zones of the primary, and with the silent
    /// zone when `silent` is its address; `reps` crashes from
    /// `mail{first + 1}` on. Also returns, with the silent zone, how many
    /// of its UPDATEs failed (the outage was real).
    fn zone_run(
        &mut self,
        watch: &Watch,
        silent: Option<SocketAddr>,
        reps: usize,
        first: usize,
    ) -> (Outages, Option<f64>) {
        let limit = self.limit(System::Pigeon, Way::Crash);
        if reps == 0 {
            let none = Outages {
                reps: Vec::new(),
                planned: 0,
                limit,
                gave_up: false,
                took: Duration::ZERO,
            };
            return (none, None);
        }
        println!(
            "  -- {}",
            if silent.is_some() {
                format!("with {SILENT_ZONE}, its primary silent")
            } else {
                format!("without {SILENT_ZONE}")
            }
        );
        let cfg = self.zone_config(silent);
        let path = self.lab.write_config(&cfg);
        let mut daemon = Daemon::spawn_logging(&path, "info", cfg.http_addr());
        self.wait_ready(System::Pigeon, watch, Duration::from_secs(60));
        // Past its start: the first reads and UPDATEs done, the silent
        // zone's first ones timed out (the outage in progress, not begun).
        std::thread::sleep(SETTLE);
        let o = self.outages(
            System::Pigeon,
            Way::Crash,
            watch,
            Some(&daemon),
            None,
            reps,
            first,
        );
        let failed = silent.map(|_| {
            let metrics = daemon.metrics();
            let all = metrics.sum("pigeon_dns_dns_updates_total", &[("zone", SILENT_ZONE)]);
            let ok = metrics.sum(
                "pigeon_dns_dns_updates_total",
                &[("zone", SILENT_ZONE), ("result", "ok")],
            );
            all - ok
        });
        daemon.terminate();
        (o, failed)
    }

    /// The same pools in each zone, over every dovecot; the silent zone's
    /// primary on its own address, with the same key.
    fn zone_config(&self, silent: Option<SocketAddr>) -> ConfigBuilder {
        let p = self.lab.cluster.ports;
        let bind = &self.lab.bind;
        let mut cfg = self
            .lab
            .config()
            // The daemon's own defaults, not the harness's fast test ones.
            .dns("resync_interval", &toml_str("60s"))
            .dns("timeout", &toml_str("2s"))
            .zone(ZONE2, &bind.server(), &bind.key_file(), &[]);
        let mut zones = vec![bind.zone().to_owned(), ZONE2.to_owned()];
        if let Some(addr) = silent {
            cfg = cfg.zone(SILENT_ZONE, &addr.to_string(), &bind.key_file(), &[]);
            zones.push(SILENT_ZONE.to_owned());
        }
        for zone in &zones {
            for spec in [
                PoolSpec::a(POOL, "imap").port(p.imap),
                PoolSpec::mx("@", "smtp", 10).port(p.submission),
                PoolSpec::srv("_imap._tcp", "imap").port(p.imap),
            ] {
                cfg = cfg.pool(spec.set_str("zone", zone));
            }
        }
        Settings::DEFAULT.apply(cfg)
    }

    /// With the silent zone minus without it: kill -> gone at the primary
    /// in both healthy zones (the outages that left DNS).
    fn difference(&mut self, without: &Outages, with: &Outages) -> Value {
        let times = |o: &Outages| -> Vec<f64> { o.reps.iter().filter_map(|r| r.gone_ms).collect() };
        let (a, b) = (times(without), times(with));
        let (lo, hi) = crate::support::stats::median_difference_interval(
            &a,
            &b,
            &mut self.rng,
            BOOTSTRAP_ROUNDS,
        );
        let finite = |x: f64| {
            if x.is_finite() {
                json!(round1(x))
            } else {
                Value::Null
            }
        };
        json!({
            "what": "kill -> gone at the primary in both healthy zones, with the silent zone minus without it",
            "median_ms": finite(median(&b) - median(&a)),
            "p95_ms": finite(p95(&b) - p95(&a)),
            "median_ci95_ms": [finite(lo), finite(hi)],
            "goal": "a zone's outage adds 0 ms to another zone's failover: the 95% bootstrap interval of the medians' difference reaches 0 or below",
            "met": if self.smoke || !lo.is_finite() { Value::Null } else { (lo <= 0.0).into() },
        })
    }
}
