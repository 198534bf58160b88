//! Reconcile cost: 100 nodes change state at once. How many UPDATE messages
//! reach BIND (the zone serial grows by one per UPDATE that changed it), and
//! how long from the last transition (when the daemon decided it) to BIND's
//! answer reflecting all of them. Then the same 100 changes applied with
//! `nsupdate`, one process per change (as scripts do) and one batched
//! process.
//!
//! Set-up: a real `named`; 102 nodes on one loopback subnet served by an
//! in-process IMAP responder; pools `imap-a` and `imap-b`, each 50 nodes
//! that flap together plus one that stays up (so that no pool ever falls
//! under its all_down policy; BIND caps an RRset at 100 records). The
//! daemon runs with the default probe settings. 20 repetitions per
//! direction (1 with `BENCH_SMOKE=1`).
//!
//! `cargo bench --bench reconcile` (writes `bench/results.json`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lab.rs"]
mod lab;
#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, HTTP_PORT, NodeSpec, PoolSpec, Subnet, toml_str,
};
use lab::Settings;
use support::dns::{Dns, Poller};
use support::imapd::Imapd;
use support::results::{Run, parse_utc};
use support::stats::{round1, summary};

const FLAPPING: usize = 100;
const POOLS: [&str; 2] = ["imap-a", "imap-b"];

fn main() {
    let smoke = support::smoke();
    let reps = if smoke { 1 } else { 20 };
    let run = Run::start();
    let subnet = Subnet::new();
    let bind = Bind::start(BindOpts::default());
    let ips: Vec<IpAddr> = (0..FLAPPING + 2).map(|i| subnet.node_ip(i)).collect();
    let port = common::net::common_free_port(&ips);
    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let flapping = Imapd::start(&addrs[..FLAPPING], 1).expect("start the flapping nodes");
    let _stable = Imapd::start(&addrs[FLAPPING..], 1).expect("start the stable nodes");

    let names: Vec<String> = POOLS
        .iter()
        .map(|p| format!("{p}.{}", bind.zone()))
        .collect();
    let poller = Poller::start(bind.addr(), &names, Duration::from_millis(2));
    // Node i (0-based) is in pool i / 50; the stable nodes close each pool.
    let pool_of = |i: usize| {
        if i < FLAPPING {
            i / (FLAPPING / 2)
        } else {
            i - FLAPPING
        }
    };
    let node_name = |i: usize| {
        if i < FLAPPING {
            format!("n{:03}", i + 1)
        } else {
            format!("stable{}", i - FLAPPING + 1)
        }
    };

    let dir = tempfile::Builder::new()
        .prefix("pigeon-bench-")
        .tempdir()
        .expect("tempdir");
    let http = SocketAddr::new(subnet.ip(2), HTTP_PORT);
    let mut cfg = ConfigBuilder::for_bind(&bind)
        .http(http)
        .dns("resync_interval", &toml_str("60s"))
        .dns("timeout", &toml_str("2s"));
    cfg = Settings::DEFAULT.apply(cfg);
    for (i, ip) in ips.iter().enumerate() {
        cfg = cfg.node(NodeSpec::new(&node_name(i), &[*ip]));
    }
    for (p, pool) in POOLS.iter().enumerate() {
        let members: Vec<String> = (0..ips.len())
            .filter(|i| pool_of(*i) == p)
            .map(node_name)
            .collect();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        cfg = cfg.pool(PoolSpec::a(pool, "imap").port(port).nodes(&members));
    }
    let path = cfg.write(&dir.path().join("pigeon-dns.toml"));
    let mut daemon = Daemon::spawn_logging(&path, "info", Some(http));
    let limit = Duration::from_secs(30);
    let in_pool = |i: usize| (names[pool_of(i)].clone(), ips[i]);
    let wait_all = |present: bool, which: std::ops::Range<usize>| {
        for i in which {
            let (name, ip) = in_pool(i);
            assert!(
                poller.wait_state(&name, ip, present, limit),
                "{ip} in {name}: not {present} within {limit:?}"
            );
        }
    };
    wait_all(true, 0..ips.len());
    // The watch connections must outlive the daemon's minimum (see below).
    std::thread::sleep(Duration::from_millis(1500));
    let mut dns = Dns::new(bind.addr());
    let zone = support::dns::name(bind.zone());

    let mut down = Vec::new();
    let mut up = Vec::new();
    for rep in 0..reps {
        for present in [false, true] {
            let serial0 = dns.serial(&zone).expect("SOA");
            let updates0 = updates_ok(&daemon);
            let t0 = Instant::now();
            let t0_wall = unix(SystemTime::now());
            if present {
                flapping.up().expect("rebind the flapping nodes");
            } else {
                flapping.down();
            }
            // The moment BIND reflected the last of the 100 changes.
            let mut last = t0;
            let mut last_wall = t0_wall;
            for i in 0..FLAPPING {
                let (name, ip) = in_pool(i);
                let change = poller
                    .wait_change(&name, ip, present, t0, limit)
                    .unwrap_or_else(|| panic!("{ip} in {name} not {present} within {limit:?}"));
                if change.at > last {
                    last = change.at;
                    last_wall = unix(change.wall);
                }
            }
            // Let any straggling UPDATE land before counting; after an up,
            // let the new watch connections outlive the daemon's 1 s
            // minimum (a shorter-lived watch is reopened only after a
            // backoff, and the next "down" would then be seen late).
            std::thread::sleep(Duration::from_millis(if present { 1500 } else { 500 }));
            let serial1 = dns.serial(&zone).expect("SOA");
            let updates1 = updates_ok(&daemon);
            // When each transition was decided: `since` in /status (the log
            // lines would do, but a flapping target's are rate-limited).
            let times = transition_times(http, if present { "up" } else { "down" });
            assert_eq!(times.len(), FLAPPING, "transitions seen: {times:?}");
            let first_t = times.iter().copied().fold(f64::INFINITY, f64::min);
            let last_t = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sample = json!({
                "updates_serial": serial1.wrapping_sub(serial0),
                "updates_metric": updates1 - updates0,
                "transition_spread_ms": round1((last_t - first_t) * 1000.0),
                "last_transition_to_dns_ms": round1((last_wall - last_t) * 1000.0),
                "event_to_dns_ms": round1(support::ms(last - t0)),
            });
            println!(
                "  rep {rep} {}: {sample}",
                if present { "up  " } else { "down" }
            );
            if present { &mut up } else { &mut down }.push(sample);
        }
    }
    daemon.terminate();

    // The same 100 changes with nsupdate (the daemon is stopped: nothing else writes).
    let ns_reps = if smoke { 1 } else { 10 };
    let key = bind.key_file();
    let server = bind.addr();
    let flap: Vec<(String, IpAddr)> = (0..FLAPPING).map(in_pool).collect();
    let mut per_change = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..ns_reps {
        for one_per_change in [true, false] {
            for present in [false, true] {
                let serial0 = dns.serial(&zone).expect("SOA");
                let t0 = Instant::now();
                let lines: Vec<String> = flap
                    .iter()
                    .map(|(name, ip)| {
                        if present {
                            format!("update add {name}. 60 A {ip}")
                        } else {
                            format!("update delete {name}. A {ip}")
                        }
                    })
                    .collect();
                // Smoke runs restore the records in one process, not 100.
                let restore_only = smoke && one_per_change && present;
                if one_per_change && !restore_only {
                    for line in &lines {
                        nsupdate(&key, server, bind.zone(), std::slice::from_ref(line));
                    }
                } else {
                    nsupdate(&key, server, bind.zone(), &lines);
                }
                let mut last = t0;
                for (name, ip) in &flap {
                    let c = poller
                        .wait_change(name, *ip, present, t0, limit)
                        .unwrap_or_else(|| panic!("nsupdate: {ip} in {name} not {present}"));
                    last = last.max(c.at);
                }
                let serial1 = dns.serial(&zone).expect("SOA");
                let sample = json!({
                    "direction": if present { "add" } else { "delete" },
                    "updates_serial": serial1.wrapping_sub(serial0),
                    "start_to_dns_ms": round1(support::ms(last - t0)),
                });
                println!(
                    "  nsupdate {}: {sample}",
                    if one_per_change { "x100" } else { "batch" }
                );
                if !restore_only {
                    if one_per_change {
                        &mut per_change
                    } else {
                        &mut batched
                    }
                    .push(sample);
                }
            }
        }
    }

    let result = json!({
        "meta": run.finish(),
        "changes": FLAPPING,
        "settings": Settings::DEFAULT.describe(),
        "pigeon": {
            "down": aggregate(&down),
            "up": aggregate(&up),
        },
        "nsupdate_per_change": aggregate(&per_change),
        "nsupdate_batched": aggregate(&batched),
        "samples": { "down": down, "up": up, "nsupdate_per_change": per_change, "nsupdate_batched": batched },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&result["pigeon"]).unwrap_or_default()
    );
    let path = support::results::save("reconcile", result);
    println!("results: {}", path.display());
}

/// Per numeric field of the samples: its summary.
fn aggregate(samples: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    let Some(first) = samples.first().and_then(Value::as_object) else {
        return Value::Null;
    };
    for (key, value) in first {
        if !value.is_number() {
            continue;
        }
        let xs: Vec<f64> = samples.iter().filter_map(|s| s[key].as_f64()).collect();
        out.insert(key.clone(), summary(&xs));
    }
    Value::Object(out)
}

/// `since` of every flapping target (`n…` nodes) in state `state`, as
/// seconds since the epoch, from the daemon's /status.
fn transition_times(http: SocketAddr, state: &str) -> Vec<f64> {
    let (code, body) = common::http_get(http, "/status").expect("GET /status");
    assert_eq!(code, 200, "GET /status: {body}");
    let status: Value = serde_json::from_str(&body).expect("/status is JSON");
    status["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["node"].as_str().is_some_and(|n| n.starts_with('n')) && t["state"] == state)
        .filter_map(|t| t["since"].as_str().and_then(parse_utc))
        .collect()
}

fn updates_ok(daemon: &Daemon) -> f64 {
    daemon
        .metric_value("pigeon_dns_dns_updates_total{result=\"ok\"}")
        .unwrap_or(0.0)
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One `nsupdate -k KEY` process (UDP, or TCP when too large, as scripts
/// run it) sending `lines` as one UPDATE; run again (as a script's retry
/// would) when it fails, up to three times: in one run of a few thousand
/// nsupdate reported "timed out". Adding an existing record or deleting an
/// absent one changes nothing, so running it again is safe.
fn nsupdate(key: &Path, server: SocketAddr, zone: &str, lines: &[String]) {
    let mut tries = 0;
    loop {
        tries += 1;
        match nsupdate_once(key, server, zone, lines) {
            Ok(()) => return,
            Err(error) if tries < 3 => eprintln!("nsupdate failed ({error}); again"),
            Err(error) => panic!("nsupdate failed {tries} times: {error}"),
        }
    }
}

fn nsupdate_once(
    key: &Path,
    server: SocketAddr,
    zone: &str,
    lines: &[String],
) -> Result<(), String> {
    let mut script = format!("server {} {}\nzone {zone}\n", server.ip(), server.port());
    for line in lines {
        script.push_str(line);
        script.push('\n');
    }
    script.push_str("send\n");
    let mut child = Command::new("nsupdate")
        .arg("-k")
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nsupdate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the nsupdate script");
    let out = child.wait_with_output().expect("wait for nsupdate");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
