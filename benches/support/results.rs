//! The results file (`bench/results.json`): one object per part, each with
//! the figures and where they were measured (commit, machine, date, load).
//!
//! Smoke runs write to `target/bench-smoke/results.json` so that CI never
//! touches the committed figures; `BENCH_RESULTS=PATH` overrides both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The repository root (where `Cargo.toml` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where this run's results go (and where `report` reads them).
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_RESULTS") {
        return PathBuf::from(p);
    }
    if super::smoke() {
        // target/<profile>/deps/<bench>-<hash> -> target/bench-smoke
        let target = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
            .unwrap_or_else(|| repo().join("target"));
        return target.join("bench-smoke").join("results.json");
    }
    repo().join("bench").join("results.json")
}

/// The whole results file (an empty object when absent or unreadable).
pub fn load(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// Replaces the part `name` of the results file with `value`, keeping the others.
pub fn save(name: &str, value: Value) -> PathBuf {
    let path = path();
    let mut all = load(&path);
    if let Some(map) = all.as_object_mut() {
        map.insert(name.to_owned(), value);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let text = serde_json::to_string_pretty(&all).expect("results serialize");
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Where and when a part ran. Call [`Run::start`] first, [`Run::finish`] last.
pub struct Run {
    started: Instant,
    date: String,
    load_before: String,
}

impl Run {
    pub fn start() -> Run {
        Run {
            started: Instant::now(),
            date: utc_now(),
            load_before: loadavg(),
        }
    }

    /// The `meta` object: commit, machine, date, machine load, duration, mode.
    pub fn finish(&self) -> Value {
        let (commit, dirty) = git_commit();
        json!({
            "commit": commit,
            "dirty": dirty,
            "date": self.date,
            "duration_s": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "smoke": super::smoke(),
            "machine": {
                "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "cpu": cpu_model(),
                "kernel": kernel(),
                "mem_gib": mem_gib(),
            },
            "loadavg_before": self.load_before,
            "loadavg_after": loadavg(),
            "tools": tools(),
        })
    }
}

/// `git rev-parse HEAD`, and whether the code measured or measuring (the
/// daemon's sources, the benches, the harness) differed from it.
pub fn git_commit() -> (String, bool) {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = run(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Only what is measured or measures counts (not results or docs).
    let dirty = run(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "benches",
        "tests/common",
        "bench/baseline.sh",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .is_some_and(|s| !s.is_empty());
    (commit, dirty)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn mem_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let kb: f64 = t
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        })
        .unwrap_or(0.0)
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg shows them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Versions of the programs measured against.
fn tools() -> Value {
    let first_line = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let mut map = Map::new();
    map.insert(
        "named".into(),
        first_line("/usr/sbin/named", &["-v"]).into(),
    );
    map.insert(
        "dovecot".into(),
        first_line("/usr/sbin/dovecot", &["--version"]).into(),
    );
    map.insert("rustc".into(), first_line("rustc", &["--version"]).into());
    Value::Object(map)
}

/// Now, as `2025-01-31T12:34:56Z`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time as tracing writes it
/// (`2025-01-31T12:34:56.123456Z`).
pub fn parse_utc(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    let days = days_from_civil(y, m, day);
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Seconds since the epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
