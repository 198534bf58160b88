//! CPU time and memory of a process, from /proc.

use std::time::Instant;

/// Clock ticks per second of `utime`/`stime` (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// One reading of a process's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    pub at: Instant,
    /// utime + stime, in ticks.
    pub ticks: u64,
}

/// utime + stime of `pid` now (fields 14 and 15 of /proc/PID/stat).
pub fn cpu(pid: u32) -> CpuSample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name is in parentheses and may hold spaces: count after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    CpuSample {
        at: Instant::now(),
        ticks: utime + stime,
    }
}

/// The share of one core used between two samples (1.0 = one core busy).
pub fn core_share(a: CpuSample, b: CpuSample, ticks_per_s: f64) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    (b.ticks.saturating_sub(a.ticks)) as f64 / ticks_per_s / secs
}

/// A `Vm*` field of /proc/PID/status in MiB (e.g. `VmHWM`, `VmRSS`).
pub fn vm_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            let kb: f64 = t
                .lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(kb / 1024.0)
        })
        .unwrap_or(f64::NAN)
}

/// Number of open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
