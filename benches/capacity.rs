//! Probe capacity: pigeon-dns (release build) probing 1,000, 5,000 and 10,000
//! IMAP targets once a second each, beside a bare tokio prober doing the
//! same connections in the same run, against one in-process IMAP responder
//! that answers on every target address (spread over 127.0.0.0/8) from
//! `0.0.0.0:PORT` (a few SO_REUSEPORT listeners, so that one backlog is not
//! the bottleneck; one listener per address would need more descriptors than
//! the 20,000 a process may have here: the watch connections need 10,000).
//!
//! Measured over steady-state windows after warm-up: CPU share of one core
//! (utime+stime from /proc/PID/stat), peak RSS (VmHWM), achieved probes/s
//! (`pigeon_dns_probes_total`), late probes (`pigeon_dns_probe_delay_seconds`
//! above 0.1 s). pigeon-dns runs with the watch on (the default) and off.
//!
//! The probers take turns: each round starts each of them in turn (the
//! order rotated from round to round), warms it up, measures one window and
//! stops it; a figure is the median of its windows (peak RSS: the highest),
//! so that the machine's other work weighs on every prober alike and the
//! CPU ratio to the bare prober holds still. The ratio is also given per
//! round (the windows next to each other).
//!
//! `cargo bench --bench capacity` (writes `bench/results.json`). Knobs:
//! `BENCH_SIZES=1000,10000`, `BENCH_ROUNDS=3` (windows per prober),
//! `BENCH_WINDOW_S=10`, `BENCH_RUNS=on,off,bare`, `BENCH_PERF=DIR` (records
//! `perf record -g` of each prober during each window into DIR; the CPU
//! figures of such a run include perf's overhead).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, HTTP_PORT, Metrics, NodeSpec, PoolSpec, Subnet, toml_str,
};
use support::imapd::Imapd;
use support::procfs::{self, CpuSample};
use support::results::Run;
use support::stats::round1;

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(500);
/// BIND refuses an RRset of more than 100 records (max-records-per-type).
const POOL_SIZE: usize = 100;
/// A probe that starts later than this is late.
const LATE: f64 = 0.1;
const BARE_ROLE: &str = "PIGEON_BENCH_ROLE";
/// SO_REUSEPORT listeners of the responder (each with a 4096 backlog).
const LISTENERS: usize = 8;

fn main() {
    if std::env::var(BARE_ROLE).is_ok_and(|r| r == "bare") {
        bare::main();
        return;
    }
    let smoke = support::smoke();
    let sizes: Vec<usize> = env_list("BENCH_SIZES")
        .map(|l| l.iter().filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| {
            if smoke {
                vec![300]
            } else {
                vec![1000, 5000, 10_000]
            }
        });
    let runs: Vec<String> = env_list("BENCH_RUNS").unwrap_or_else(|| {
        let runs: &[&str] = if smoke {
            &["on", "bare"]
        } else {
            &["on", "off", "bare"]
        };
        runs.iter().map(|s| (*s).to_owned()).collect()
    });
    let window = Duration::from_secs_f64(
        std::env::var("BENCH_WINDOW_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if smoke { 1.5 } else { 10.0 }),
    );
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 2 } else { 3 });
    let settle = if smoke {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let run = Run::start();
    let max = sizes.iter().copied().max().unwrap_or(0) as u64;
    let nofile = support::raise_nofile(4 * max + 10_000);
    let ticks = procfs::clock_ticks();
    let mut rows = Vec::new();
    for &n in &sizes {
        let ctx = Size::start(n);
        let mut windows: Vec<(usize, String, Value)> = Vec::new();
        for round in 0..rounds {
            // Each prober in turn, the order rotated so that none is always
            // first (after the machine rested) or last.
            let mut order = runs.clone();
            order.rotate_left(round % runs.len().max(1));
            for what in &order {
                let mut w = match what.as_str() {
                    "on" => ctx.pigeon(true, settle, window, ticks),
                    "off" => ctx.pigeon(false, settle, window, ticks),
                    "bare" => ctx.bare(settle, window, ticks),
                    other => panic!("unknown run {other:?} (on, off, bare)"),
                };
                w["round"] = round.into();
                println!("{w}");
                windows.push((round, what.clone(), w));
            }
        }
        rows.extend(aggregate(&runs, &windows));
    }
    let result = json!({
        "meta": run.finish(),
        "interval_ms": support::ms(INTERVAL),
        "timeout_ms": support::ms(TIMEOUT),
        "window_s": window.as_secs_f64(),
        "rounds": rounds,
        "settle_s": settle.as_secs_f64(),
        "nofile": nofile,
        "profiled": std::env::var_os("BENCH_PERF").is_some(),
        "rows": rows,
    });
    let path = support::results::save("capacity", result);
    println!("results: {}", path.display());
}

fn env_list(key: &str) -> Option<Vec<String>> {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// Target `i`'s address: spread over 127.0.0.0/8 (never 127.0.x.x, which
/// other programs use), 254 per /16 before moving on.
fn target_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        (1 + i % 254) as u8,
        (i / 254 % 256) as u8,
        77,
    ))
}

/// One size: the responder on every address and BIND with the records.
struct Size {
    n: usize,
    port: u16,
    imapd: Imapd,
    bind: Bind,
    subnet: Subnet,
    dir: tempfile::TempDir,
}

impl Size {
    fn start(n: usize) -> Size {
        let ips: Vec<IpAddr> = (0..n).map(target_ip).collect();
        // A fixed port below the ephemeral range, so no test that picks
        // free ports can be given it; the next one if it is taken anyway.
        let (port, imapd) = (24_143..24_200)
            .find_map(|port| {
                let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                Imapd::start(&[any; LISTENERS], 2).ok().map(|d| (port, d))
            })
            .expect("no free port for the IMAP responder");
        // The zone holds every record already: the daemon's first reconcile
        // has nothing to add (an UPDATE adding 10,000 records would not fit
        // one DNS message), and the window measures probing only.
        let mut opts = BindOpts::default().no_foreign_records();
        for (i, ip) in ips.iter().enumerate() {
            opts = opts.record(&format!("p{:03} 60 IN A {ip}", i / POOL_SIZE));
        }
        let bind = Bind::start(opts);
        Size {
            n,
            port,
            imapd,
            bind,
            subnet: Subnet::new(),
            dir: tempfile::Builder::new()
                .prefix("pigeon-bench-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn config(&self, watch: bool) -> (ConfigBuilder, SocketAddr) {
        let http = SocketAddr::new(self.subnet.ip(2), HTTP_PORT);
        let mut cfg = ConfigBuilder::for_bind(&self.bind)
            .http(http)
            .dns("resync_interval", &toml_str("60s"))
            .dns("timeout", &toml_str("2s"))
            .probe("interval", &toml_str("1s"))
            .probe("timeout", &toml_str("500ms"))
            .probe("rise", "2")
            .probe("fall", "2")
            .probe("fast_interval", &toml_str("100ms"))
            .probe("watch", &watch.to_string());
        for i in 0..self.n {
            cfg = cfg.node(NodeSpec::new(&format!("n{i:05}"), &[target_ip(i)]));
        }
        for p in 0..self.n.div_ceil(POOL_SIZE) {
            let members: Vec<String> = (p * POOL_SIZE..((p + 1) * POOL_SIZE).min(self.n))
                .map(|i| format!("n{i:05}"))
                .collect();
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            cfg = cfg.pool(
                PoolSpec::a(&format!("p{p:03}"), "imap")
                    .port(self.port)
                    .nodes(&members),
            );
        }
        (cfg, http)
    }

    fn pigeon(&self, watch: bool, settle: Duration, window: Duration, ticks: f64) -> Value {
        let (cfg, http) = self.config(watch);
        let path = cfg.write(&self.dir.path().join(format!("pigeon-dns-{watch}.toml")));
        let started = Instant::now();
        let mut daemon = Daemon::spawn_logging(&path, "info", Some(http));
        let pid = daemon.pid();
        // Warm-up: every target up (one "Target is up." line each).
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut up = 0;
        while Instant::now() < deadline {
            up = daemon.log_count("Target is up.");
            if up >= self.n || daemon.has_exited() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let all_up_s = started.elapsed().as_secs_f64();
        assert!(
            !daemon.has_exited(),
            "pigeon-dns exited during the warm-up; log tail:\n{}",
            daemon.log_tail(40)
        );
        std::thread::sleep(settle);
        // Before the first scrape: rendering /metrics allocates a copy of
        // every series (tens of MiB at 10,000 targets).
        let hwm_unscraped = procfs::vm_mib(pid, "VmHWM");
        let accepted0 = self.imapd.stats.accepted.load(Ordering::Relaxed);
        let m0 = (Instant::now(), daemon.metrics());
        let c0 = procfs::cpu(pid);
        let me0 = procfs::cpu(std::process::id());
        let perf = start_perf(
            pid,
            window,
            &format!(
                "pigeon-{}-{}",
                self.n,
                if watch { "watch" } else { "nowatch" }
            ),
        );
        std::thread::sleep(window);
        let c1 = procfs::cpu(pid);
        let me1 = procfs::cpu(std::process::id());
        let m1 = (Instant::now(), daemon.metrics());
        let accepted1 = self.imapd.stats.accepted.load(Ordering::Relaxed);
        if let Some(mut perf) = perf {
            let _ = perf.wait();
        }
        let hwm = procfs::vm_mib(pid, "VmHWM");
        let rss = procfs::vm_mib(pid, "VmRSS");
        let fds = procfs::open_fds(pid);
        daemon.terminate();
        // For profiling by hand (heap profilers, ...): the responder and BIND
        // stay up this long after the daemon stopped, with its config here.
        if let Some(pause) = std::env::var("BENCH_PAUSE_S")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            println!("paused {pause}s; config: {}", path.display());
            std::thread::sleep(Duration::from_secs(pause));
        }
        let secs = m1.0.duration_since(m0.0).as_secs_f64();
        let probes =
            sum(&m1.1, "pigeon_dns_probes_total", &[]) - sum(&m0.1, "pigeon_dns_probes_total", &[]);
        let ok = sum(&m1.1, "pigeon_dns_probes_total", &[("result", "ok")])
            - sum(&m0.1, "pigeon_dns_probes_total", &[("result", "ok")]);
        let delay_count = |m: &Metrics| sum(m, "pigeon_dns_probe_delay_seconds_count", &[]);
        let delay_le =
            |m: &Metrics, le: &str| sum(m, "pigeon_dns_probe_delay_seconds_bucket", &[("le", le)]);
        let scheduled = delay_count(&m1.1) - delay_count(&m0.1);
        let late = scheduled - (delay_le(&m1.1, "0.1") - delay_le(&m0.1, "0.1"));
        let late_10ms = scheduled - (delay_le(&m1.1, "0.01") - delay_le(&m0.1, "0.01"));
        let duration = |m: &Metrics, what: &str| {
            sum(m, &format!("pigeon_dns_probe_duration_seconds_{what}"), &[])
        };
        let mean_latency_ms = (duration(&m1.1, "sum") - duration(&m0.1, "sum"))
            / (duration(&m1.1, "count") - duration(&m0.1, "count"))
            * 1000.0;
        json!({
            "targets": self.n,
            "prober": if watch { "pigeon-dns (watch on)" } else { "pigeon-dns (watch off)" },
            "watch": watch,
            "all_up_after_s": round1(all_up_s),
            "targets_up": up,
            "cpu_core_share": round3(procfs::core_share(c0, c1, ticks)),
            "peak_rss_mib": round1(hwm),
            "peak_rss_before_scrape_mib": round1(hwm_unscraped),
            "rss_mib": round1(rss),
            "open_fds": fds,
            "probes_per_s": round1(probes / secs),
            "ok_per_s": round1(ok / secs),
            "failed_probes": probes - ok,
            "probe_starts": scheduled,
            "late_probes": late,
            "late_over_10ms": late_10ms,
            "mean_probe_ms": round1(mean_latency_ms),
            "server_conns_per_s": round1((accepted1 - accepted0) as f64 / secs),
            "bench_process_cpu_core_share": round3(procfs::core_share(me0, me1, ticks)),
        })
    }

    fn bare(&self, settle: Duration, window: Duration, ticks: f64) -> Value {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(BARE_ROLE, "bare")
            .env("BARE_TARGETS", self.n.to_string())
            .env("BARE_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the bare prober");
        let pid = child.id();
        let latest: Arc<Mutex<Option<bare::Counters>>> = Arc::default();
        {
            let latest = latest.clone();
            let stdout = child.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(c) = bare::Counters::parse(&line) {
                        *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
                    }
                }
            });
        }
        let read = || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(c) = latest.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                    return c;
                }
                assert!(Instant::now() < deadline, "the bare prober reports nothing");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        // Warm-up: one full interval (every target probed once), then settle.
        std::thread::sleep(INTERVAL + settle);
        let b0 = read();
        let c0: CpuSample = procfs::cpu(pid);
        let perf = start_perf(pid, window, &format!("bare-{}", self.n));
        std::thread::sleep(window);
        let c1 = procfs::cpu(pid);
        // Let one report line come after the window.
        std::thread::sleep(Duration::from_millis(300));
        let b1 = read();
        if let Some(mut perf) = perf {
            let _ = perf.wait();
        }
        let hwm = procfs::vm_mib(pid, "VmHWM");
        let rss = procfs::vm_mib(pid, "VmRSS");
        let _ = child.kill();
        let _ = child.wait();
        let secs = (b1.elapsed_ms - b0.elapsed_ms) / 1000.0;
        json!({
            "targets": self.n,
            "prober": "bare tokio prober",
            "cpu_core_share": round3(procfs::core_share(c0, c1, ticks)),
            "peak_rss_mib": round1(hwm),
            "rss_mib": round1(rss),
            "probes_per_s": round1((b1.probes - b0.probes) / secs),
            "ok_per_s": round1((b1.ok - b0.ok) / secs),
            "failed_probes": (b1.probes - b0.probes) - (b1.ok - b0.ok),
            "late_probes": b1.late - b0.late,
        })
    }
}

/// One row per prober from its windows: the median of each figure, the
/// highest peak RSS, failures and late probes added up; every window's CPU
/// share; for pigeon-dns, its CPU share over the bare prober's of the same
/// round.
fn aggregate(runs: &[String], windows: &[(usize, String, Value)]) -> Vec<Value> {
    const MEDIAN: [&str; 6] = [
        "cpu_core_share",
        "probes_per_s",
        "ok_per_s",
        "mean_probe_ms",
        "all_up_after_s",
        "bench_process_cpu_core_share",
    ];
    const MAX: [&str; 4] = [
        "peak_rss_mib",
        "peak_rss_before_scrape_mib",
        "rss_mib",
        "open_fds",
    ];
    const SUM: [&str; 5] = [
        "failed_probes",
        "late_probes",
        "late_over_10ms",
        "probe_starts",
        "targets_up",
    ];
    let of = |what: &str| -> Vec<&(usize, String, Value)> {
        windows.iter().filter(|(_, w, _)| w == what).collect()
    };
    let cpu_in = |what: &str, round: usize| {
        windows
            .iter()
            .find(|(r, w, _)| *r == round && w == what)
            .and_then(|(_, _, v)| v["cpu_core_share"].as_f64())
    };
    let mut rows = Vec::new();
    for what in runs {
        let mine = of(what);
        let Some((_, _, first)) = mine.first() else {
            continue;
        };
        let mut row = first.clone();
        let values = |key: &str| -> Vec<f64> {
            mine.iter()
                .filter_map(|(_, _, v)| v[key].as_f64())
                .collect()
        };
        for key in MEDIAN {
            if row.get(key).is_some() {
                row[key] = round3(support::stats::median(&values(key))).into();
            }
        }
        for key in MAX {
            if row.get(key).is_some() {
                row[key] = values(key).into_iter().fold(f64::NAN, f64::max).into();
            }
        }
        for key in SUM {
            if row.get(key).is_some() {
                row[key] = values(key).iter().sum::<f64>().into();
            }
        }
        row.as_object_mut().map(|m| m.remove("round"));
        row["windows"] = mine.len().into();
        row["cpu_core_share_windows"] = values("cpu_core_share").into();
        if what != "bare" {
            let ratios: Vec<f64> = mine
                .iter()
                .filter_map(|(r, _, v)| Some(v["cpu_core_share"].as_f64()? / cpu_in("bare", *r)?))
                .map(round3)
                .collect();
            row["cpu_vs_bare_by_round"] = ratios.into();
        }
        rows.push(row);
    }
    rows
}

fn sum(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.sum(name, labels)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `perf record -g` of `pid` for `window`, when `BENCH_PERF=DIR` is set.
fn start_perf(pid: u32, window: Duration, label: &str) -> Option<std::process::Child> {
    let dir = std::env::var_os("BENCH_PERF")?;
    std::fs::create_dir_all(&dir).ok()?;
    let out = std::path::Path::new(&dir).join(format!("{label}.data"));
    Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "199",
            "--call-graph",
            "dwarf,16384",
        ])
        .args(["-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &format!("{}", window.as_secs_f64())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// The reference: the least a tokio prober can do per probe (connect, read
/// the greeting, LOGOUT and its reply, close), each target on its own
/// schedule spread evenly over the interval. Runs as a child process of the
/// bench (`PIGEON_BENCH_ROLE=bare`) so its CPU and memory are its own; it
/// reports its counters on stdout every 250 ms.
mod bare {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[derive(Clone, Debug, Default)]
    pub struct Counters {
        pub elapsed_ms: f64,
        pub probes: f64,
        pub ok: f64,
        pub late: f64,
    }

    impl Counters {
        /// `elapsed_ms probes ok late`
        pub fn parse(line: &str) -> Option<Counters> {
            let v: Vec<f64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (v.len() == 4).then(|| Counters {
                elapsed_ms: v[0],
                probes: v[1],
                ok: v[2],
                late: v[3],
            })
        }
    }

    #[derive(Default)]
    struct Shared {
        probes: AtomicU64,
        ok: AtomicU64,
        late: AtomicU64,
    }

    pub fn main() {
        let n: usize = std::env::var("BARE_TARGETS")
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("BARE_TARGETS");
        let port: u16 = std::env::var("BARE_PORT")
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("BARE_PORT");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let shared = Arc::new(Shared::default());
            let start = tokio::time::Instant::now();
            for i in 0..n {
                let addr = SocketAddr::new(target_ip(i), port);
                let shared = shared.clone();
                let first = start + INTERVAL.mul_f64(i as f64 / n as f64);
                tokio::spawn(async move {
                    let mut next = first;
                    loop {
                        tokio::time::sleep_until(next).await;
                        if next.elapsed().as_secs_f64() > LATE {
                            shared.late.fetch_add(1, Ordering::Relaxed);
                        }
                        let ok = matches!(
                            tokio::time::timeout(TIMEOUT, probe(addr)).await,
                            Ok(Ok(true))
                        );
                        shared.probes.fetch_add(1, Ordering::Relaxed);
                        if ok {
                            shared.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        next += INTERVAL;
                    }
                });
            }
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                println!(
                    "{:.1} {} {} {}",
                    start.elapsed().as_secs_f64() * 1000.0,
                    shared.probes.load(Ordering::Relaxed),
                    shared.ok.load(Ordering::Relaxed),
                    shared.late.load(Ordering::Relaxed)
                );
            }
        });
    }

    /// Greeting, `a1 LOGOUT`, its tagged reply, close.
    async fn probe(addr: SocketAddr) -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut buf = [0u8; 512];
        let mut len = 0;
        let greeting_ok = loop {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                return Ok(false);
            }
            len += n;
            if let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
                break buf[..end].starts_with(b"* OK");
            }
            if len == buf.len() {
                return Ok(false);
            }
        };
        stream.write_all(b"a1 LOGOUT\r\n").await?;
        let mut len = 0;
        loop {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(5).any(|w| w == b"a1 OK") || len == buf.len() {
                break;
            }
        }
        Ok(greeting_ok)
    }
}
