//! Failover: how long a node that goes away stays in DNS, for every way a
//! dovecot node goes away, with three systems in one run:
//! - pigeon-dns at its default settings, keeping five pools of the zone at
//!   a real BIND primary (`imap`, `pop`, `smtp` A, `@` MX, `_imap._tcp` SRV
//!   over the same three dovecot nodes), with a real BIND secondary fed by
//!   NOTIFY and IXFR;
//! - PowerDNS Authoritative with a LUA record, `ifportup` over the same
//!   three nodes, at its defaults (one setting aside: see [`pdns_record`]);
//! - the usual shell loop (`bench/baseline.sh`: a TCP connect to each node
//!   every second, `nsupdate` per change) against the same BIND.
//!
//! Ways a node goes away ([`Way`]): crash (every process SIGKILLed), the
//! master alone SIGKILLed, a graceful stop (SIGTERM to the master), a black
//! hole (the process group SIGSTOPped). Each is repeated `BENCH_REPS`
//! times (20; 2 with `BENCH_SMOKE=1`), rotating the nodes, after a random
//! phase in [0, the system's check period), while a thread asks the DNS
//! server (BIND, or PowerDNS) for `imap` A every 2 ms: the time is from the
//! signal to the first answer without the node's address.
//!
//! With pigeon-dns, also: the same crash seen at the secondary, for the
//! primary at BIND's default `notify-delay` (5 s; each crash then follows
//! at least 6 s without a change to the zone, as an isolated failure does)
//! and at `notify-delay 0`; the UPDATEs sent for one node's failure (its
//! log's "UPDATE applied." lines, and the zone serial); "refuse once" (an
//! in-process node resets exactly one probe connection: it must stay in
//! DNS) and "slow but alive" (an in-process node that greets after 300 ms
//! must never leave DNS).
//!
//! `cargo bench --bench failover` (writes `bench/results.json`). Knobs:
//! `BENCH_REPS=N`, `BENCH_SYSTEMS=pigeon-dns,powerdns-lua,shell-loop`,
//! `BENCH_WAYS=crash,master-only crash,graceful stop,black hole`,
//! `BENCH_PDNS_INTERVAL=S` (PowerDNS's `lua-health-checks-interval`;
//! smoke runs use 1 s instead of its default 5 s to stay short, and say so).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lab.rs"]
mod lab;
#[path = "support/pdns.rs"]
mod pdns;
#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;
use serde_json::{Value, json};

use common::process::Guarded;
use common::{Daemon, Lab, NodeSpec, PoolSpec, Secondary, toml_str};
use lab::{Settings, Way};
use pdns::Pdns;
use support::dns::{Dns, Poller, name};
use support::imapd::Imapd;
use support::results::Run;
use support::stats::{censored, round1, summary};
use support::{Rng, ms};

const POOL: &str = "imap";
/// The in-process node that refuses once, after the three dovecots.
const FAKE: &str = "mail4";
/// The in-process node that greets late but is alive.
const SLOW: &str = "mail5";
const SLOW_GREETING: Duration = Duration::from_millis(300);
const POLL_EVERY: Duration = Duration::from_millis(2);
/// BIND's default `notify-delay`.
const NOTIFY_DELAY_DEFAULT: Duration = Duration::from_secs(5);
/// PowerDNS's defaults: `lua-health-checks-interval` and ifportup's
/// `timeout` option, in seconds.
const PDNS_INTERVAL_DEFAULT: u64 = 5;
const PDNS_CHECK_TIMEOUT: u64 = 2;
/// The shell loop's period (`sleep 1` between rounds).
const SHELL_PERIOD: Duration = Duration::from_secs(1);

/// A system that takes dead nodes out of DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Pigeon,
    Pdns,
    Shell,
}

impl System {
    const ALL: [System; 3] = [System::Pigeon, System::Pdns, System::Shell];

    fn key(self) -> &'static str {
        match self {
            System::Pigeon => "pigeon-dns",
            System::Pdns => "powerdns-lua",
            System::Shell => "shell-loop",
        }
    }
}

/// The DNS servers watched: the one the system keeps (BIND's primary, or
/// PowerDNS), and for pigeon-dns the BIND secondary.
struct Watch<'a> {
    poller: &'a Poller,
    replica: Option<&'a Poller>,
}

/// One outage: a node taken away and brought back.
#[derive(Clone, Debug, Default)]
struct Rep {
    node: String,
    /// Signal to the first answer without the node (None: not within the limit).
    gone_ms: Option<f64>,
    /// Bringing it back to the first answer with it.
    back_ms: Option<f64>,
    /// Signal to the secondary's first answer without it.
    replica_gone_ms: Option<f64>,
    /// "UPDATE applied." lines of the daemon for this failure.
    updates: Option<usize>,
    /// The longest of their round trips to the primary (`duration_ms`:
    /// from the connection to BIND's answer, its journal commit included).
    update_ms: Option<f64>,
    /// Serial increments at the primary for this failure.
    serial_delta: Option<u32>,
    /// How long the zone had not changed before the signal.
    quiet_ms: Option<f64>,
}

/// The outages of one way against one system.
struct Outages {
    reps: Vec<Rep>,
    planned: usize,
    limit: Duration,
    /// Stopped early: this many outages in a row never left DNS.
    gave_up: bool,
    /// How long the outages took, waits included.
    took: Duration,
}

struct Bench {
    lab: Lab,
    fake: Imapd,
    fake_ip: IpAddr,
    slow_ip: IpAddr,
    name: String,
    rng: Rng,
    reps: usize,
    smoke: bool,
    /// PowerDNS's `lua-health-checks-interval` in this run, in seconds.
    pdns_interval: u64,
    /// The BIND secondary.
    replica_addr: SocketAddr,
}

fn main() {
    let smoke = support::smoke();
    let run = Run::start();
    let reps = env("BENCH_REPS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 2 } else { 20 });
    let systems: Vec<System> = match env("BENCH_SYSTEMS") {
        Some(list) => list
            .split(',')
            .map(|k| {
                System::ALL
                    .into_iter()
                    .find(|s| s.key() == k.trim())
                    .unwrap_or_else(|| {
                        panic!("unknown system {k:?} (pigeon-dns, powerdns-lua, shell-loop)")
                    })
            })
            .collect(),
        None => System::ALL.to_vec(),
    };
    let ways: Vec<Way> = match env("BENCH_WAYS") {
        Some(list) => list
            .split(',')
            .map(|k| Way::from_key(k).unwrap_or_else(|| panic!("unknown way {k:?}")))
            .collect(),
        None => Way::ALL.to_vec(),
    };
    let pdns_interval: u64 = env("BENCH_PDNS_INTERVAL")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 1 } else { PDNS_INTERVAL_DEFAULT });

    let mut lab = Lab::start(3);
    let secondary = Secondary::start(&mut lab.bind);
    let fake_ip = lab.subnet.node_ip(3);
    let slow_ip = lab.subnet.node_ip(4);
    let port = lab.cluster.ports.imap;
    let fake =
        Imapd::start(&[SocketAddr::new(fake_ip, port)], 1).expect("start the in-process IMAP node");
    let _slow = Imapd::start_slow(&[SocketAddr::new(slow_ip, port)], 1, SLOW_GREETING)
        .expect("start the slow IMAP node");
    let name = format!("{POOL}.{}", lab.bind.zone());
    let primary = Poller::start(lab.bind.addr(), std::slice::from_ref(&name), POLL_EVERY);
    let replica = Poller::start(secondary.addr(), std::slice::from_ref(&name), POLL_EVERY);
    let mut bench = Bench {
        lab,
        fake,
        fake_ip,
        slow_ip,
        name,
        rng: Rng::new(),
        reps,
        smoke,
        pdns_interval,
        replica_addr: secondary.addr(),
    };

    let mut result = json!({
        "reps": reps,
        "ways": ways.iter().map(|w| json!({"key": w.key(), "describe": w.describe()})).collect::<Vec<_>>(),
        "rows": [],
    });
    let mut rows = Vec::new();
    for system in &systems {
        println!("== {}", system.key());
        match system {
            System::Pigeon => {
                let part = bench.pigeon(&ways, &primary, &replica);
                rows.extend(part.rows);
                result["pigeon"] = part.info;
                result["secondary"] = part.secondary.into();
                result["checks"] = part.checks;
            }
            System::Pdns => {
                let (part, info) = bench.pdns(&ways);
                rows.extend(part);
                result["pdns"] = info;
            }
            System::Shell => {
                let (part, info) = bench.shell(&ways, &primary);
                rows.extend(part);
                result["shell"] = info;
            }
        }
    }
    let (polls, errors, max_gap) = primary.health();
    result["poll"] = json!({
        "every_ms": ms(POLL_EVERY),
        "mean_period_ms": round1(ms(primary.mean_period())),
        "max_gap_ms": round1(ms(max_gap)),
        "polls": polls,
        "errors": errors,
    });
    result["rows"] = rows.into();
    result["meta"] = run.finish();
    print_rows(&result);
    let path = support::results::save("failover", result);
    println!("results: {}", path.display());
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// What the pigeon-dns part returns.
struct PigeonPart {
    rows: Vec<Value>,
    secondary: Vec<Value>,
    checks: Value,
    info: Value,
}

impl Bench {
    // ---- pigeon-dns ----

    fn pigeon(&mut self, ways: &[Way], primary: &Poller, replica: &Poller) -> PigeonPart {
        let settings = Settings::DEFAULT;
        let cfg = self.config(settings);
        let path = self.lab.write_config(&cfg);
        let mut daemon = Daemon::spawn_logging(&path, "info", cfg.http_addr());
        // The secondary is watched in crash runs only (each of its answers
        // waits for the notify-delay).
        let crash_watch = Watch {
            poller: primary,
            replica: Some(replica),
        };
        let watch = Watch {
            poller: primary,
            replica: None,
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
            let o = self.outages(System::Pigeon, way, watch, Some(&daemon), quiet);
            rows.push(row(System::Pigeon, way, &o, Some(settings)));
            if way == Way::Crash {
                secondary.push(secondary_row(None, &o));
            }
        }
        if ways.contains(&Way::Crash) {
            println!("== pigeon-dns, crash, primary at notify-delay 0");
            self.lab.bind.set_notify_delay(Some(0));
            let o = self.outages(
                System::Pigeon,
                Way::Crash,
                &crash_watch,
                Some(&daemon),
                None,
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
            "secondary": "BIND secondary of the zone, NOTIFY signed with a transfer key, IXFR (request-ixfr yes; max-ixfr-ratio unlimited at the primary)",
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
    fn config(&self, settings: Settings) -> common::ConfigBuilder {
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

    /// Whether every pool at the primary holds `node` (`present`) or
    /// none does (`!present`): dig over TCP, BIND's own answers.
    fn pools_hold(&self, node: &str, present: bool) -> bool {
        let n = self.lab.node(node);
        let (ip, host) = (n.ip().to_string(), format!("{}.", n.host));
        let a = |pool: &str| self.lab.bind.query(pool, "A").contains(&ip);
        let target = |pool: &str, rtype: &str| {
            self.lab
                .bind
                .query(pool, rtype)
                .iter()
                .any(|r| r.split_whitespace().last() == Some(host.as_str()))
        };
        let held = [
            a(POOL),
            a("pop"),
            a("smtp"),
            target("@", "MX"),
            target("_imap._tcp", "SRV"),
        ];
        held.iter().all(|&h| h == present)
    }

    // ---- PowerDNS ----

    fn pdns(&mut self, ways: &[Way]) -> (Vec<Value>, Value) {
        let interval = self.pdns_interval;
        let record = pdns_record(self.lab.cluster.ports.imap, &self.lab.cluster.ips());
        let extra: Vec<String> = if interval == PDNS_INTERVAL_DEFAULT {
            Vec::new()
        } else {
            vec![format!("lua-health-checks-interval={interval}")]
        };
        let server = Pdns::start(self.lab.bind.zone(), std::slice::from_ref(&record), &extra);
        let poller = Poller::start(server.addr(), std::slice::from_ref(&self.name), POLL_EVERY);
        let watch = Watch {
            poller: &poller,
            replica: None,
        };
        let period = Duration::from_secs(interval);
        // The first query starts the checks; until the first round is done
        // every address counts as down (one is answered at random).
        self.wait_ready(System::Pdns, &watch, period * 3 + Duration::from_secs(20));
        let mut rows = Vec::new();
        for &way in ways {
            let o = self.outages(System::Pdns, way, &watch, None, None);
            let mut r = row(System::Pdns, way, &o, None);
            r["settings"] = pdns_settings(interval).into();
            rows.push(r);
        }
        let info = json!({
            "version": Pdns::version(),
            "conf": server.conf(),
            "record": record,
            "health_checks_interval_s": interval,
            "health_checks_interval_default_s": PDNS_INTERVAL_DEFAULT,
            "check_timeout_s": PDNS_CHECK_TIMEOUT,
            "settings": pdns_settings(interval),
        });
        (rows, info)
    }

    // ---- the shell loop ----

    fn shell(&mut self, ways: &[Way], primary: &Poller) -> (Vec<Value>, Value) {
        let bind = &self.lab.bind;
        let script = support::results::repo().join("bench").join("baseline.sh");
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script)
            .arg(bind.addr().ip().to_string())
            .arg(bind.addr().port().to_string())
            .arg(bind.zone())
            .arg(format!("{}.", self.name))
            .arg(bind.key_file())
            .arg(self.lab.cluster.ports.imap.to_string())
            .args(self.lab.cluster.ips().iter().map(ToString::to_string))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        let _script = Guarded::spawn(cmd, true).expect("start bench/baseline.sh");
        let watch = Watch {
            poller: primary,
            replica: None,
        };
        self.wait_ready(System::Shell, &watch, Duration::from_secs(20));
        let mut rows = Vec::new();
        for &way in ways {
            let o = self.outages(System::Shell, way, &watch, None, None);
            let mut r = row(System::Shell, way, &o, None);
            r["settings"] = SHELL_SETTINGS.into();
            rows.push(r);
        }
        (
            rows,
            json!({"script": "bench/baseline.sh", "settings": SHELL_SETTINGS}),
        )
    }

    // ---- outages ----

    /// The time between two checks of a node by `system`: the random phase
    /// before each event is drawn from [0, this).
    fn period(&self, system: System) -> Duration {
        match system {
            System::Pigeon => Settings::DEFAULT.interval,
            System::Pdns => Duration::from_secs(self.pdns_interval),
            System::Shell => SHELL_PERIOD,
        }
    }

    /// How long a node may take to leave DNS before the outage counts as
    /// "never": well past every bound of the system.
    fn limit(&self, system: System, way: Way) -> Duration {
        match system {
            System::Pigeon => Settings::DEFAULT.bound(way) + Duration::from_secs(10),
            _ if self.smoke => Duration::from_secs(3),
            _ => Duration::from_secs(20),
        }
    }

    /// A random phase in [0, period): the event must not be in step with
    /// the system's checks. (None in smoke runs, to keep them short.)
    fn random_phase(&mut self, period: Duration) {
        if !self.smoke {
            std::thread::sleep(self.rng.duration(period));
        }
    }

    /// Takes nodes away `way` and back, `reps` times, rotating over the
    /// three dovecots. Stops early after three outages in a row (one in
    /// smoke runs) that never left DNS within the limit.
    fn outages(
        &mut self,
        system: System,
        way: Way,
        watch: &Watch,
        daemon: Option<&Daemon>,
        quiet: Option<Duration>,
    ) -> Outages {
        let limit = self.limit(system, way);
        let give_up_after = if self.smoke { 1 } else { 3 };
        let period = self.period(system);
        let mut out = Outages {
            reps: Vec::new(),
            planned: self.reps,
            limit,
            gave_up: false,
            took: Duration::ZERO,
        };
        let started = Instant::now();
        let mut missed_in_a_row = 0;
        let zone = name(self.lab.bind.zone());
        let mut dns = Dns::new(self.lab.bind.addr());
        for i in 0..self.reps {
            let node = format!("mail{}", 1 + i % 3);
            let ip = self.lab.node(&node).ip();
            self.wait_ready(system, watch, Duration::from_secs(60));
            let quiet_ms = quiet.map(|q| ms(self.wait_quiet(&zone, q)));
            self.random_phase(period);
            let mark = daemon.map(Daemon::log_mark);
            let serial0 = dns.serial(&zone).ok();
            let t0 = Instant::now();
            way.down(self.lab.node_mut(&node));
            let gone = watch.poller.wait_change(&self.name, ip, false, t0, limit);
            let mut rep = Rep {
                node: node.clone(),
                gone_ms: gone.as_ref().map(|c| ms(c.at - t0)),
                quiet_ms,
                ..Rep::default()
            };
            if gone.is_some() {
                missed_in_a_row = 0;
                if let Some(replica) = watch.replica {
                    let within = NOTIFY_DELAY_DEFAULT + Duration::from_secs(10);
                    rep.replica_gone_ms = replica
                        .wait_change(&self.name, ip, false, t0, within)
                        .map(|c| ms(c.at - t0));
                }
                if let (Some(daemon), Some(mark)) = (daemon, mark) {
                    // Every pool has dropped the node: all of its UPDATEs are in.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while !self.pools_hold(&node, false) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let applied: Vec<String> = daemon.logs()[mark..]
                        .iter()
                        .filter(|l| l.contains("UPDATE applied."))
                        .cloned()
                        .collect();
                    rep.updates = Some(applied.len());
                    rep.update_ms = applied
                        .iter()
                        .filter_map(|l| field(l, "duration_ms")?.parse::<f64>().ok())
                        .reduce(f64::max);
                    rep.serial_delta = match (serial0, dns.serial(&zone).ok()) {
                        (Some(a), Some(b)) => Some(b.wrapping_sub(a)),
                        _ => None,
                    };
                }
            } else {
                missed_in_a_row += 1;
            }
            self.random_phase(period);
            let t1 = Instant::now();
            way.up(self.lab.node_mut(&node));
            if gone.is_some() {
                let back_limit = limit + Duration::from_secs(10);
                rep.back_ms = watch
                    .poller
                    .wait_change(&self.name, ip, true, t1, back_limit)
                    .map(|c| ms(c.at - t1));
            }
            println!(
                "  {} {} {node}: gone after {}, back {} after the {}{}{}",
                system.key(),
                way.key(),
                show(rep.gone_ms),
                show(rep.back_ms),
                way.back_word(),
                rep.replica_gone_ms
                    .map(|s| format!("; gone at the secondary after {s:.1} ms"))
                    .unwrap_or_default(),
                rep.updates
                    .map(|u| format!(
                        "; {u} UPDATE(s) (longest {} ms), serial +{}",
                        rep.update_ms.unwrap_or(f64::NAN),
                        rep.serial_delta.map_or("?".into(), |d| d.to_string())
                    ))
                    .unwrap_or_default(),
            );
            out.reps.push(rep);
            if missed_in_a_row >= give_up_after {
                println!(
                    "  {} {}: never left DNS within {limit:?} {missed_in_a_row} times in a row; not repeated",
                    system.key(),
                    way.key()
                );
                out.gave_up = true;
                break;
            }
        }
        out.took = started.elapsed();
        println!(
            "  ({} {}: {:.1} s)",
            system.key(),
            way.key(),
            out.took.as_secs_f64()
        );
        out
    }

    /// Waits until the system publishes every node: for pigeon-dns every
    /// pool at the primary and `imap` at the secondary.
    fn wait_ready(&self, system: System, watch: &Watch, timeout: Duration) {
        let mut ips = self.lab.cluster.ips();
        if system == System::Pigeon {
            ips.extend([self.fake_ip, self.slow_ip]);
        }
        let deadline = Instant::now() + timeout;
        // Every address in one answer: PowerDNS answers one address at
        // random while it counts them all down (before its first checks).
        let holds_all = |poller: &Poller| {
            let current = poller.current(&self.name);
            ips.iter().all(|ip| current.contains(ip))
        };
        while !holds_all(watch.poller) || watch.replica.is_some_and(|r| !holds_all(r)) {
            assert!(
                Instant::now() < deadline,
                "{}: not every node published within {timeout:?}: {:?} (secondary: {:?})",
                system.key(),
                watch.poller.current(&self.name),
                watch.replica.map(|r| r.current(&self.name))
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if system == System::Pigeon {
            for node in ["mail1", "mail2", "mail3"] {
                while !self.pools_hold(node, true) {
                    assert!(
                        Instant::now() < deadline,
                        "{node} not back in every pool within {timeout:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Waits until the secondary has held the primary's serial for
    /// `quiet`, counted from the call at the earliest: the primary's last
    /// NOTIFY (which the secondary's transfer follows at once) is that long
    /// ago, and so is its last reload (before the call), so its
    /// notify-delay window is closed. Returns how long that has been.
    fn wait_quiet(&self, zone: &Name, quiet: Duration) -> Duration {
        let mut primary = Dns::new(self.lab.bind.addr());
        let mut replica = Dns::new(self.replica_addr);
        let deadline = Instant::now() + quiet + Duration::from_secs(60);
        let mut since = Instant::now();
        let mut last = replica.serial(zone).ok();
        loop {
            let now = Instant::now();
            let serials = (primary.serial(zone).ok(), replica.serial(zone).ok());
            if serials.0.is_none() || serials.0 != serials.1 || serials.1 != last {
                last = serials.1;
                since = now;
            }
            if now.duration_since(since) >= quiet {
                return now.duration_since(since);
            }
            assert!(
                now < deadline,
                "the zone never stayed unchanged for {quiet:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // ---- checks ----

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

/// The LUA record: `ifportup` over the nodes, all of the available ones in
/// the answer. ifportup's default selector (`random`) answers one address
/// picked at random among the available ones; `selector='all'` answers
/// every available one, as a round-robin A RRset does (and as pigeon-dns
/// publishes), so that "the dead address has left the answer" means the
/// same thing for both. Its other options stay at their defaults (check
/// timeout 2 s; when none is up, `backupSelector` picks one address at
/// random). TTL 60 s, as pigeon-dns publishes.
fn pdns_record(port: u16, ips: &[IpAddr]) -> String {
    let list: Vec<String> = ips.iter().map(|ip| format!("'{ip}'")).collect();
    format!(
        "{POOL} 60 IN LUA A \"ifportup({port}, {{{}}}, {{selector='all'}})\"",
        list.join(", ")
    )
}

fn pdns_settings(interval: u64) -> String {
    let what = if interval == PDNS_INTERVAL_DEFAULT {
        format!("lua-health-checks-interval {interval} s (default)")
    } else {
        format!(
            "lua-health-checks-interval {interval} s (NOT the default {PDNS_INTERVAL_DEFAULT} s)"
        )
    };
    format!(
        "{what}, ifportup TCP connect, timeout {PDNS_CHECK_TIMEOUT} s (default), selector 'all'"
    )
}

const SHELL_SETTINGS: &str =
    "bash /dev/tcp connect to each node every 1 s (timeout 1 s), nsupdate per change";

/// The value of `key=value` in a text log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_matches('"'))
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(
        || "never (within the limit)".into(),
        |x| format!("{x:.1} ms"),
    )
}

fn row(system: System, way: Way, o: &Outages, settings: Option<Settings>) -> Value {
    let gone: Vec<f64> = o.reps.iter().filter_map(|r| r.gone_ms).collect();
    let misses = o.reps.len() - gone.len();
    let back: Vec<f64> = o.reps.iter().filter_map(|r| r.back_ms).collect();
    let g = censored(&gone, misses, ms(o.limit));
    let mut r = json!({
        "system": system.key(),
        "way": way.key(),
        "n_planned": o.planned,
        "gave_up": o.gave_up,
        "took_s": round1(o.took.as_secs_f64()),
        "gone": g,
        "back": summary(&back),
        "back_word": way.back_word(),
        "updates": o.reps.iter().filter_map(|r| r.updates).collect::<Vec<_>>(),
        "update_ms": summary(&o.reps.iter().filter_map(|r| r.update_ms).collect::<Vec<_>>()),
        "reps": o.reps.iter().map(|r| json!({
            "node": r.node,
            "gone_ms": r.gone_ms.map(round1),
            "back_ms": r.back_ms.map(round1),
        })).collect::<Vec<_>>(),
    });
    if let Some(s) = settings {
        r["settings"] = s.describe().into();
        r["probe"] = s.to_json();
        r["bound_ms"] = ms(s.bound(way)).into();
        // The goals of issue #6 for the default settings.
        let (goal, met) = match way {
            Way::Crash => {
                let (m, p) = (g["median"].as_f64(), g["p95"].as_f64());
                (
                    "median <= 300 ms, p95 <= 500 ms",
                    m.zip(p).is_some_and(|(m, p)| m <= 300.0 && p <= 500.0),
                )
            }
            Way::BlackHole => {
                let limit = ms(s.interval + s.timeout * s.fall) + 100.0;
                (
                    "p95 <= interval + fall*timeout + 100 ms = 4100 ms",
                    g["p95"].as_f64().is_some_and(|p| p <= limit),
                )
            }
            _ => ("", true),
        };
        if !goal.is_empty() {
            r["goal"] = goal.into();
            r["met"] = if support::smoke() {
                Value::Null
            } else {
                met.into()
            };
        }
    }
    r
}

/// The secondary table's row: one crash run of pigeon-dns with the
/// primary at `notify_delay` (None: BIND's default).
fn secondary_row(notify_delay: Option<u32>, o: &Outages) -> Value {
    let both: Vec<(f64, f64)> = o
        .reps
        .iter()
        .filter_map(|r| r.gone_ms.zip(r.replica_gone_ms))
        .collect();
    let primary: Vec<f64> = o.reps.iter().filter_map(|r| r.gone_ms).collect();
    let replica_missed = o.reps.len() - both.len();
    let replica: Vec<f64> = both.iter().map(|(_, s)| *s).collect();
    let lag: Vec<f64> = both.iter().map(|(p, s)| s - p).collect();
    let updates: Vec<usize> = o.reps.iter().filter_map(|r| r.updates).collect();
    let serials: Vec<u32> = o.reps.iter().filter_map(|r| r.serial_delta).collect();
    let quiet: Vec<f64> = o.reps.iter().filter_map(|r| r.quiet_ms).collect();
    json!({
        "notify_delay": match notify_delay {
            Some(s) => format!("notify-delay {s}"),
            None => "notify-delay default (5 s)".into(),
        },
        "notify_delay_s": notify_delay.map_or(5, |s| s),
        "n": o.reps.len(),
        "primary": summary(&primary),
        "secondary": censored(&replica, replica_missed, ms(NOTIFY_DELAY_DEFAULT + Duration::from_secs(10))),
        "lag": summary(&lag),
        "updates": updates,
        "serial_deltas": serials,
        "update_ms": summary(&o.reps.iter().filter_map(|r| r.update_ms).collect::<Vec<_>>()),
        "one_update": updates.iter().filter(|&&u| u == 1).count(),
        "quiet_before": if quiet.is_empty() { Value::Null } else { summary(&quiet) },
    })
}

fn print_rows(result: &Value) {
    for r in result["rows"].as_array().into_iter().flatten() {
        let g = &r["gone"];
        println!(
            "{:<13} {:<18} n={:<3} median={:>7} p95={:>7} max={:>7} never={} back median={}",
            r["system"].as_str().unwrap_or(""),
            r["way"].as_str().unwrap_or(""),
            g["n"],
            g["median"],
            g["p95"],
            g["max"],
            g["misses"],
            r["back"]["median"],
        );
    }
    for s in result["secondary"].as_array().into_iter().flatten() {
        println!(
            "secondary, {}: n={} primary median={} secondary median={} p95={} one UPDATE in {} of {} (updates {}, serial +{})",
            s["notify_delay"].as_str().unwrap_or(""),
            s["n"],
            s["primary"]["median"],
            s["secondary"]["median"],
            s["secondary"]["p95"],
            s["one_update"],
            s["n"],
            s["updates"],
            s["serial_deltas"],
        );
    }
}
