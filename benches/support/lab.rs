//! Pieces the failover and reconcile benches share: the probe settings under
//! test, their theoretical bounds, and the ways a dovecot node goes away.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::MailNode;
use crate::common::process::{signal, signal_group};

/// The `[probe]` settings of one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub fast_interval: Duration,
    pub watch: bool,
}

impl Settings {
    /// The daemon's defaults (contract.md): 2s, 1s, rise 2, fall 2, 100ms, watch on.
    pub const DEFAULT: Settings = Settings {
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 2,
        fast_interval: Duration::from_millis(100),
        watch: true,
    };

    pub fn describe(&self) -> String {
        format!(
            "interval {}, timeout {}, rise {}, fall {}, fast_interval {}, watch {}",
            human(self.interval),
            human(self.timeout),
            self.rise,
            self.fall,
            human(self.fast_interval),
            if self.watch { "on" } else { "off" }
        )
    }

    pub fn to_json(self) -> Value {
        json!({
            "interval_ms": ms(self.interval),
            "timeout_ms": ms(self.timeout),
            "rise": self.rise,
            "fall": self.fall,
            "fast_interval_ms": ms(self.fast_interval),
            "watch": self.watch,
        })
    }

    /// `[probe]` lines for the harness's config builder.
    pub fn apply(&self, cfg: crate::common::ConfigBuilder) -> crate::common::ConfigBuilder {
        use crate::common::toml_str;
        cfg.probe("interval", &toml_str(&human(self.interval)))
            .probe("timeout", &toml_str(&human(self.timeout)))
            .probe("rise", &self.rise.to_string())
            .probe("fall", &self.fall.to_string())
            .probe("fast_interval", &toml_str(&human(self.fast_interval)))
            .probe("watch", &self.watch.to_string())
    }

    /// Worst case from a refused connection to the fall decision. With a
    /// watch the close is seen at once, but the probe it triggers waits
    /// until fast_interval after the previous probe ended (the daemon's
    /// pacing), then fall-1 fast re-probes follow; without a watch the next
    /// periodic probe may be an interval away.
    pub fn kill_bound(&self) -> Duration {
        let fast = self.fast_interval * (self.fall - 1);
        if self.watch {
            self.fast_interval + fast
        } else {
            self.interval + fast
        }
    }

    /// Worst case for a node that accepts and never answers: the next
    /// periodic probe, then `fall` probes that each wait the full timeout,
    /// fast_interval apart. (The watch cannot help: nothing closes.)
    pub fn black_hole_bound(&self) -> Duration {
        self.interval + self.timeout * self.fall + self.fast_interval * (self.fall - 1)
    }

    /// Worst case from a node answering again to the rise decision.
    pub fn restart_bound(&self) -> Duration {
        self.interval + self.fast_interval * (self.rise - 1)
    }

    /// Worst case from `way` to the fall decision (one UPDATE more to DNS).
    /// Only a crash closes the watch connection at once: after the master
    /// alone dies, its login processes keep the open connections and new
    /// ones are refused (the next periodic probe finds it); a stopping
    /// master leaves new connections unanswered for about a second before
    /// they are refused (a probe may wait its whole timeout).
    pub fn bound(&self, way: Way) -> Duration {
        match way {
            Way::Crash => self.kill_bound(),
            Way::MasterCrash => Settings {
                watch: false,
                ..*self
            }
            .kill_bound(),
            Way::Graceful | Way::BlackHole => self.black_hole_bound(),
        }
    }
}

/// A way one dovecot node goes away, and how it comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Every process of the node SIGKILLed (a crash, the OOM killer on the
    /// whole service): connections refused, open ones closed, at once.
    Crash,
    /// Only the dovecot master SIGKILLed; its login processes (imap-login,
    /// pop3-login, submission-login) and helpers linger.
    MasterCrash,
    /// SIGTERM to the master, as the unit's `doveadm stop` does on
    /// `systemctl stop`; once the master has exited, what is left of its
    /// process group is killed, as systemd does to the unit's cgroup.
    Graceful,
    /// The process group SIGSTOPped: the kernel still accepts connections,
    /// nothing answers, nothing closes (a frozen node).
    BlackHole,
}

impl Way {
    pub const ALL: [Way; 4] = [Way::Crash, Way::MasterCrash, Way::Graceful, Way::BlackHole];

    /// The name in results and tables.
    pub fn key(self) -> &'static str {
        match self {
            Way::Crash => "crash",
            Way::MasterCrash => "master-only crash",
            Way::Graceful => "graceful stop",
            Way::BlackHole => "black hole",
        }
    }

    pub fn from_key(key: &str) -> Option<Way> {
        Way::ALL.into_iter().find(|w| w.key() == key.trim())
    }

    /// What is done to the node, for the tables.
    pub fn describe(self) -> &'static str {
        match self {
            Way::Crash => "SIGKILL to every dovecot process",
            Way::MasterCrash => "SIGKILL to the dovecot master only; its login processes linger",
            Way::Graceful => "SIGTERM to the dovecot master (systemctl stop)",
            Way::BlackHole => "SIGSTOP to the dovecot process group",
        }
    }

    /// What brings the node back: `restart` or `resume`.
    pub fn back_word(self) -> &'static str {
        match self {
            Way::BlackHole => "resume",
            _ => "restart",
        }
    }

    /// Takes `node` away; returns once the signal is sent (a graceful stop:
    /// once the master has exited).
    pub fn down(self, node: &mut MailNode) {
        let master = || dovecot_group(node.dovecot.dir());
        match self {
            Way::Crash => node.stop(),
            Way::MasterCrash => signal(master(), "KILL"),
            Way::Graceful => node.dovecot.stop_graceful(),
            Way::BlackHole => signal_group(master(), "STOP"),
        }
    }

    /// Brings `node` back after [`Way::down`]; returns once it greets.
    pub fn up(self, node: &mut MailNode) {
        match self {
            Way::Crash | Way::Graceful => node.start_again(),
            Way::MasterCrash => {
                // Kills the lingering processes and reaps the master.
                node.stop();
                node.start_again();
            }
            Way::BlackHole => signal_group(dovecot_group(node.dovecot.dir()), "CONT"),
        }
    }
}

/// `250ms`, `2s`, as the config wants durations.
pub fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The process group of the dovecot whose config lives in `dir`: the
/// harness starts each dovecot as the leader of its own group, so this is
/// also the master's pid.
pub fn dovecot_group(dir: &Path) -> u32 {
    let conf = dir.join("dovecot.conf").display().to_string();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(&conf) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command: state, ppid, pgrp.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|p| p.parse().ok());
        if let Some(pgrp) = pgrp {
            return pgrp;
        }
    }
    panic!("no running dovecot with {conf}");
}
