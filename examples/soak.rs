//! Soak: a real BIND, two dovecot nodes, pigeon-dns; one node flaps (killed and
//! started again) every 2 s. Samples the daemon's RSS, open descriptors and
//! alive tasks from its /metrics, and its log volume, and checks they stay flat.
//!
//! ```text
//! cargo build --release --bins && cargo run --release --example soak            # 30 minutes
//! cargo run --example soak -- --seconds 20                                       # smoke (CI)
//! ```
//!
//! Writes `soak/results.json` (full runs only) and prints a summary. Exits 1
//! when a check fails (full runs only; the smoke run checks that it runs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{Daemon, Lab};

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_mb: f64,
    fds: f64,
    tasks: f64,
    log_lines: usize,
    /// Transition lines ("Target is up." / "Target is down.") so far.
    transition_lines: usize,
}

fn sample(daemon: &Daemon, started: Instant) -> Option<Sample> {
    let (status, body) = daemon.http_get("/metrics").ok()?;
    if status != 200 {
        return None;
    }
    let m = common::Metrics::parse(&body);
    Some(Sample {
        at_s: started.elapsed().as_secs_f64(),
        rss_mb: m.get("process_resident_memory_bytes")? / 1e6,
        fds: m.get("process_open_fds")?,
        tasks: m.get("pigeon_dns_runtime_alive_tasks")?,
        log_lines: daemon.logs().len(),
        transition_lines: daemon
            .logs()
            .iter()
            .filter(|l| l.contains("Target is up.") || l.contains("Target is down."))
            .count(),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(30 * 60);
    let smoke = seconds < 600;
    let flap_every = Duration::from_secs(2);
    let sample_every = Duration::from_secs(if smoke { 2 } else { 15 });

    let mut lab = Lab::start(2);
    // Info level, as in production: the log volume is part of the check.
    let cfg = lab.standard_config();
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn_args(
        &["run".as_ref(), "-c".as_ref(), path.as_os_str()],
        cfg.http_addr(),
    );
    daemon.wait_for_http_status("/readyz", 200, Duration::from_secs(30));
    println!("soak: {seconds} s, mail2 flapping every {flap_every:?}");

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_flap = Instant::now() + flap_every;
    let mut next_sample = Instant::now();
    let mut down = false;
    let mut flaps = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        if now >= next_flap {
            if down {
                lab.node_mut("mail2").start_again();
            } else {
                lab.node_mut("mail2").stop();
            }
            down = !down;
            flaps += 1;
            next_flap = now + flap_every;
        }
        if now >= next_sample {
            if let Some(s) = sample(&daemon, started) {
                println!(
                    "{:7.0}s rss {:6.1} MB  fds {:4}  tasks {:4}  log lines {}",
                    s.at_s, s.rss_mb, s.fds, s.tasks, s.log_lines
                );
                samples.push(s);
            }
            next_sample = now + sample_every;
        }
        std::thread::sleep(
            next_flap
                .min(next_sample)
                .saturating_duration_since(Instant::now()),
        );
    }
    // End with the node up, then let the daemon settle to compare levels.
    if down {
        lab.node_mut("mail2").start_again();
    }
    let ips = lab.cluster.ip_strings();
    lab.bind.wait_for(
        "imap",
        "A",
        |r| ips.iter().all(|ip| r.contains(ip)),
        Duration::from_secs(20),
    );
    let settled = sample(&daemon, started);
    let updates = daemon
        .metrics()
        .get("pigeon_dns_dns_updates_total{result=\"ok\"}")
        .unwrap_or(0.0);
    println!("flaps: {flaps}; UPDATEs applied: {updates}");

    let Some(first) = samples.first().copied() else {
        eprintln!("no samples");
        return ExitCode::FAILURE;
    };
    let Some(settled) = settled else {
        eprintln!("no final sample");
        return ExitCode::FAILURE;
    };
    if smoke {
        println!("smoke run: ok ({} samples)", samples.len());
        return ExitCode::SUCCESS;
    }
    // RSS from minute 5 to the end; descriptors and tasks back to their level.
    let at5 = samples
        .iter()
        .find(|s| s.at_s >= 300.0)
        .copied()
        .unwrap_or(first);
    let last = *samples.last().unwrap_or(&first);
    let rss_growth = (last.rss_mb - at5.rss_mb) / at5.rss_mb * 100.0;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let log_per_min = (last.log_lines - first.log_lines) as f64 / minutes;
    let transitions_per_min = (last.transition_lines - first.transition_lines) as f64 / minutes;
    // The flapping node is in all 5 pools of the standard config.
    let flapping_targets = 5.0;
    let max_fds = samples.iter().map(|s| s.fds).fold(0.0, f64::max);
    let max_tasks = samples.iter().map(|s| s.tasks).fold(0.0, f64::max);
    let checks = [
        ("RSS grows < 5% from minute 5", rss_growth < 5.0),
        (
            "descriptors back to their level",
            settled.fds <= first.fds + 2.0,
        ),
        (
            "tasks back to their level",
            settled.tasks <= first.tasks + 2.0,
        ),
        // At most 10 transition lines per target and minute (then one warning
        // and one summary line); one line per UPDATE comes on top, by design.
        (
            "transition lines within the rate limit",
            transitions_per_min <= flapping_targets * 10.0,
        ),
    ];
    let summary = serde_json::json!({
        "commit": git_commit(),
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "seconds": seconds,
        "flaps": flaps,
        "updates_ok": updates,
        "rss_mb": { "first": first.rss_mb, "minute5": at5.rss_mb, "last": last.rss_mb, "growth_pct": rss_growth },
        "fds": { "first": first.fds, "max": max_fds, "settled": settled.fds },
        "tasks": { "first": first.tasks, "max": max_tasks, "settled": settled.tasks },
        "log_lines_per_minute": log_per_min,
        "transition_lines_per_minute": transitions_per_min,
        "checks": checks.iter().map(|(k, v)| serde_json::json!({"check": k, "ok": v})).collect::<Vec<_>>(),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("soak/results.json");
    let _ = std::fs::write(
        &out,
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    if checks.iter().all(|(_, ok)| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
