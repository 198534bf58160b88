//! Failover: how long a node that goes away stays in DNS, for every way a
//! dovecot node goes away, with three systems in one run:
//! - pigeon-dns at its default settings, keeping five pools of the zone at
//!   a real BIND primary (`imap`, `pop`, `smtp` A, `@` MX, `_imap._tcp` SRV
//!   over the same three dovecot nodes), with a real BIND secondary fed by
//!   NOTIFY and IXFR;
//! - PowerDNS Authoritative with a LUA record, `ifportup` over the same
//!   three nodes, at its defaults (one setting aside: see
//!   [`others::pdns_record`]);
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
//! With pigeon-dns, also (crash runs only, see [`pigeon`]):
//! - the same crash seen at the secondary, for the primary at BIND's
//!   defaults (`notify-delay` 5 s, `notify-rate` 20; each crash then
//!   follows at least 6 s without a change to the zone, as an isolated
//!   failure does) and at the documented `notify-delay 0; notify-rate
//!   1000;` (the secondary at the documented `serial-query-rate 1000;`
//!   throughout); the UPDATEs sent for one node's failure (its log's
//!   "UPDATE applied." lines, and the zone serial); "refuse once" (an
//!   in-process node resets exactly one probe connection: it must stay in
//!   DNS) and "slow but alive" (an in-process node that greets after
//!   300 ms must never leave DNS);
//! - a zone's outage ([`zones`]): the pools spread over two zones of the
//!   BIND primary (`imap` A, `@` MX, `_imap._tcp` SRV in each), crash ->
//!   gone in both, at the primary and at the secondary, with a third zone
//!   whose primary accepts and never answers (TCP and UDP) versus without
//!   that zone; and the UPDATEs per zone for each failure.
//!
//! `cargo bench --bench failover` (writes `bench/results.json`). Knobs:
//! `BENCH_REPS=N`, `BENCH_SYSTEMS=pigeon-dns,powerdns-lua,shell-loop`,
//! `BENCH_WAYS=crash,master-only crash,graceful stop,black hole`,
//! `BENCH_PDNS_INTERVAL=S` (PowerDNS's `lua-health-checks-interval`;
//! smoke runs use 1 s instead of its default 5 s to stay short, and say so),
//! `BENCH_ZONE_OUTAGE=0` (skips the zone outage part).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lab.rs"]
mod lab;
#[path = "support/pdns.rs"]
mod pdns;
#[path = "support/mod.rs"]
mod support;

/// PowerDNS and the shell loop.
#[path = "failover/others.rs"]
mod others;
/// Taking nodes away and back, and waiting for the DNS servers.
#[path = "failover/outages.rs"]
mod outages;
/// pigeon-dns in one zone: the ways, the secondary, the checks.
#[path = "failover/pigeon.rs"]
mod pigeon;
/// The rows of the results file, and the summary printed at the end.
#[path = "failover/rows.rs"]
mod rows;
/// pigeon-dns over several zones, one of them out.
#[path = "failover/zones.rs"]
mod zones;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use common::{BindOpts, Lab, Secondary, ZoneOpts};
use lab::Way;
use support::dns::Poller;
use support::imapd::Imapd;
use support::results::Run;
use support::stats::round1;
use support::{Rng, ms};

const POOL: &str = "imap";
/// The second zone of the BIND primary, for the zone outage part.
const ZONE2: &str = "example.org";
/// The in-process node that refuses once, after the three dovecots.
const FAKE: &str = "mail4";
/// The in-process node that greets late but is alive.
const SLOW: &str = "mail5";
const SLOW_GREETING: Duration = Duration::from_millis(300);
const POLL_EVERY: Duration = Duration::from_millis(2);
/// BIND's default `notify-delay`.
const NOTIFY_DELAY_DEFAULT: Duration = Duration::from_secs(5);

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

struct Bench {
    lab: Lab,
    fake: Imapd,
    fake_ip: IpAddr,
    slow_ip: IpAddr,
    /// `imap.<zone>`: the name every single-zone measurement watches.
    name: String,
    rng: Rng,
    reps: usize,
    smoke: bool,
    /// PowerDNS's `lua-health-checks-interval` in this run, in seconds.
    pdns_interval: u64,
    /// The BIND secondary (of both zones of the primary).
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
        .unwrap_or(if smoke {
            1
        } else {
            others::PDNS_INTERVAL_DEFAULT
        });
    let zone_outage = env("BENCH_ZONE_OUTAGE").is_none_or(|v| v != "0");

    // The primary serves a second zone for the zone outage part; the
    // single-zone measurements leave it alone.
    let mut lab = Lab::start_with(
        3,
        BindOpts::default().also_zone(ZoneOpts::new(ZONE2).no_foreign_records()),
    );
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
                if zone_outage && ways.contains(&Way::Crash) {
                    result["zone_outage"] = bench.zone_outage();
                }
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
    rows::print(&result);
    let path = support::results::save("failover", result);
    println!("results: {}", path.display());
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}
