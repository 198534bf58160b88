//! pigeon-dns in one zone: every way at its default settings, the crash
//! seen at the secondary (BIND's default notify settings, then the
//! documented ones), and the two checks (refuse once, slow but alive).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Daemon, NodeSpec, PoolSpec, toml_str};
use crate::lab::{Settings, Way};
use crate::outages::{Held, Watch};
use crate::rows::{row, secondary_row};
use crate::support::dns::Poller;
use crate::support::ms;
use crate::support::stats::round1;
use crate::{Bench, FAKE, NOTIFY_DELAY_DEFAULT, POOL, SLOW, SLOW_GREETING, System};

/// What the primary's and the secondary's named.conf say about NOTIFY in
/// a secondary row: BIND's defaults, or the documented settings
/// (docs/zones.md). The harness's secondary always has the documented
/// `serial-query-rate 1000;`.
pub fn notify_settings(notify_delay: Option<u32>) -> &'static str {
    match notify_delay {
        Some(0) => {
            "primary: notify-delay 0, notify-rate 1000 (documented); secondary: serial-query-rate 1000 (documented)"
        }
        Some(_) => "primary: notify-delay as set, notify-rate 20 (default)",
        None => {
            "primary: notify-delay 5 s, notify-rate 20 (BIND's defaults); secondary: serial-query-rate 1000 (documented)"
        }
    }
}

/// What the pigeon-dns part returns.
pub struct PigeonPart {
    pub rows: Vec<Value>,
    pub secondary: Vec<Value>,
    pub checks: Value,
    pub info: Value,
}

impl Bench {
    /// Every pool of the single-zone config at the primary.
    fn pools(&self) -> Vec<Held> {
        let zone = self.lab.bind.zone();
        vec![
            Held::new(zone, POOL, "A"),
            Held::new(zone, "pop", "A"),
            Held::new(zone, "smtp", "A"),
            Held::new(zone, "@", "MX"),
            Held::new(zone, "_imap._tcp", "SRV"),
        ]
    }

    pub fn pigeon(&mut self, ways: &[Way], primary: &Poller, replica: &Poller) -> PigeonPart {
        let settings = Settings::DEFAULT;
        let cfg = self.config(settings);
        let path = self.lab.write_config(&cfg);
        let mut daemon = Daemon::spawn_logging(&path, "info", cfg.http_addr());
        let pools = self.pools();
        let names = [self.name.clone()];
        let extra_ips = [self.fake_ip, self.slow_ip];
        // The secondary is watched in crash runs only (each of its answers
        // waits for the notify-delay).
        let crash_watch = Watch {
            poller: primary,
            replica: Some(replica),
            names: &names,
            pools: &pools,
            extra_ips: &extra_ips,
        };
        let watch = Watch {
            replica: None,
            ..crash_watch
        };
        self.wait_ready(System::Pigeon, &crash_watch, Duration::from_secs(60));
        let slow_since = Instant::now();
        let mut rows = Vec::new();
        let mut secondary = Vec::new();
        // At the default notify-delay, a crash less than 5 s after the
        // primary's previous NOTIFY waits for the rest of those 5 s: each
        // crash is made an isolated failure (not in smoke runs: too long).
        let quiet = (!self.smoke).then_some(NOTIFY_DELAY_DEFAULT + Duration::from_secs(1));
        for &way in ways {
            let (watch, quiet) = if way == Way::Crash {
                (&crash_watch, quiet)
            } else {
                (&watch, None)
            };
            let o = self.outages(
                System::Pigeon,
                way,
                watch,
                Some(&daemon),
                quiet,
                self.reps,
                0,
            );
            rows.push(row(System::Pigeon, way, &o, Some(settings)));
            if way == Way::Crash {
                secondary.push(secondary_row(None, &o));
            }
        }
        if ways.contains(&Way::Crash) {
            println!("== pigeon-dns, crash, primary at notify-delay 0, notify-rate 1000");
            // The documented named.conf: the harness adds `notify-rate 1000;`.
            self.lab.bind.set_notify_delay(Some(0));
            let o = self.outages(
                System::Pigeon,
                Way::Crash,
                &crash_watch,
                Some(&daemon),
                None,
                self.reps,
                0,
            );
            secondary.push(secondary_row(Some(0), &o));
            self.lab.bind.set_notify_delay(None);
        }
        let refuse = self.refuse_once(settings, &daemon, primary);
        let slow = self.slow_alive(&daemon, primary, slow_since);
        daemon.terminate();
        let info = json!({
            "settings": settings.describe(),
            "probe": settings.to_json(),
            "dns": {"ttl": "60s", "timeout": "2s", "resync_interval": "60s"},
            "pools": ["imap A (mail1-5)", "pop A", "smtp A (submission)", "@ MX 10 (smtp check on the submission port)", "_imap._tcp SRV"],
            "secondary": "BIND secondary of the zone, NOTIFY signed with a transfer key, IXFR (request-ixfr yes, serial-query-rate 1000; max-ixfr-ratio unlimited at the primary)",
        });
        PigeonPart {
            rows,
            secondary,
            checks: json!({"refuse_once": refuse, "slow_alive": slow}),
            info,
        }
    }

    /// Every default pool over the same three dovecot nodes; the
    /// in-process nodes only in `imap`.
    fn config(&self, settings: Settings) -> crate::common::ConfigBuilder {
        let p = self.lab.cluster.ports;
        let dovecots: Vec<&str> = self
            .lab
            .cluster
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        let mut imap_nodes = dovecots.clone();
        imap_nodes.extend([FAKE, SLOW]);
        let cfg = self
            .lab
            .config()
            .node(NodeSpec::new(FAKE, &[self.fake_ip]))
            .node(NodeSpec::new(SLOW, &[self.slow_ip]))
            // The daemon's own defaults, not the harness's fast test ones.
            .dns("resync_interval", &toml_str("60s"))
            .dns("timeout", &toml_str("2s"))
            .pool(PoolSpec::a(POOL, "imap").port(p.imap).nodes(&imap_nodes))
            .pool(PoolSpec::a("pop", "pop3").port(p.pop3).nodes(&dovecots))
            .pool(
                PoolSpec::a("smtp", "submission")
                    .port(p.submission)
                    .nodes(&dovecots),
            )
            .pool(
                PoolSpec::mx("@", "smtp", 10)
                    .port(p.submission)
                    .nodes(&dovecots),
            )
            .pool(
                PoolSpec::srv("_imap._tcp", "imap")
                    .port(p.imap)
                    .nodes(&dovecots),
            );
        settings.apply(cfg)
    }

    /// The in-process node resets exactly one probe connection; BIND must
    /// keep answering its address throughout.
    fn refuse_once(&mut self, settings: Settings, daemon: &Daemon, primary: &Poller) -> Value {
        let refused_sample = format!(
            "pigeon_dns_probes_total{{pool=\"{POOL}\",node=\"{FAKE}\",address=\"{}\",result=\"refused\"}}",
            self.fake_ip
        );
        let limit = Duration::from_secs(30);
        let mut left = 0;
        let mut seen_by_probe = 0;
        for _ in 0..self.reps {
            assert!(primary.wait_state(&self.name, self.fake_ip, true, limit));
            let before = daemon.metric_value(&refused_sample).unwrap_or(0.0);
            // Only the watch connection open: the next connection is a probe.
            let deadline = Instant::now() + limit;
            while self
                .fake
                .stats
                .open
                .load(std::sync::atomic::Ordering::SeqCst)
                != 1
            {
                assert!(
                    Instant::now() < deadline,
                    "the watch connection never settled"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let t0 = Instant::now();
            self.fake.refuse_next();
            while self.fake.refusal_pending() {
                assert!(
                    Instant::now() < deadline,
                    "no connection came to be refused"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            // Long enough for the fast re-probe and the next periodic one.
            std::thread::sleep(settings.interval + settings.fast_interval * 3);
            let after = daemon.metric_value(&refused_sample).unwrap_or(0.0);
            let changes = primary
                .changes_since(t0)
                .into_iter()
                .filter(|c| c.addr == self.fake_ip)
                .count();
            if changes > 0 {
                left += 1;
            }
            if after > before {
                seen_by_probe += 1;
            }
            println!(
                "  refuse once: probe saw it: {}, DNS changes: {changes}",
                after > before
            );
        }
        json!({
            "settings": settings.describe(),
            "n": self.reps,
            "refusals_seen_by_a_probe": seen_by_probe,
            "times_left_dns": left,
            "goal": "never leaves DNS",
            "met": if self.smoke { Value::Null } else { (left == 0 && seen_by_probe > 0).into() },
        })
    }

    /// The slow node (greets after 300 ms, within the 1 s timeout) must
    /// never have left DNS since `since`: over the whole pigeon-dns part,
    /// at least 20 s (5 s in smoke runs).
    fn slow_alive(&self, daemon: &Daemon, primary: &Poller, since: Instant) -> Value {
        let at_least = Duration::from_secs(if self.smoke { 5 } else { 20 });
        let ip = self.slow_ip;
        let left = || {
            primary
                .changes_since(since)
                .into_iter()
                .filter(|c| c.addr == ip && !c.present)
                .count()
        };
        while since.elapsed() < at_least && left() == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let observed = since.elapsed();
        let left = left();
        let metrics = daemon.metrics();
        let labels = [("pool", POOL), ("node", SLOW)];
        let ok = metrics.sum(
            "pigeon_dns_probes_total",
            &[labels[0], labels[1], ("result", "ok")],
        );
        let all = metrics.sum("pigeon_dns_probes_total", &labels);
        println!(
            "  slow but alive: left DNS {left} times in {:.1} s ({ok} probes ok, {} failed)",
            observed.as_secs_f64(),
            all - ok
        );
        json!({
            "greeting_after_ms": ms(SLOW_GREETING),
            "settings": Settings::DEFAULT.describe(),
            "observed_s": round1(observed.as_secs_f64()),
            "times_left_dns": left,
            "probes_ok": ok,
            "probes_failed": all - ok,
            "goal": "never leaves DNS",
            "met": if self.smoke { Value::Null } else { (left == 0 && ok > 0.0).into() },
        })
    }
}
