//! What the benches share: the results file and the machine it ran on
//! ([`results`]), a fast DNS poller ([`dns`]), an in-process IMAP responder
//! ([`imapd`]), process accounting from /proc ([`procfs`]) and statistics
//! ([`stats`]).
//!
//! Each bench includes it with `#[path = "support/mod.rs"] mod support;`
//! next to the end-to-end harness (`tests/common`), so not every bench uses
//! every item.
#![allow(dead_code)]

pub mod dns;
pub mod imapd;
pub mod procfs;
pub mod results;
pub mod stats;

use std::time::Duration;

/// `BENCH_SMOKE=1` in the environment or `--smoke` on the command line: a
/// few iterations and no thresholds, for CI.
pub fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--smoke")
}

/// A small xorshift generator for random phases: benches need spread, not
/// cryptographic quality, and no extra dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()).rotate_left(32);
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[0, max)`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.next_u64() % nanos)
    }
}

impl Default for Rng {
    fn default() -> Self {
        Rng::new()
    }
}

/// Milliseconds as a float, for results.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Raises this process's open file limit (soft and hard) to at least
/// `want`: root may raise the hard limit; children (the daemon, the bare
/// prober) inherit it. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE.get().unwrap_or((1024, 1024));
    if soft >= want {
        return soft;
    }
    let hard_wanted = hard.max(want);
    if Resource::NOFILE.set(want, hard_wanted).is_err() {
        let _ = Resource::NOFILE.set(hard.min(want).max(soft), hard);
    }
    Resource::NOFILE.get().map(|(s, _)| s).unwrap_or(soft)
}
