//! The systems pigeon-dns is compared with: PowerDNS Authoritative with a
//! LUA `ifportup` record, and the usual shell loop (`bench/baseline.sh`).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::process::Guarded;
use crate::lab::Way;
use crate::outages::Watch;
use crate::pdns::Pdns;
use crate::rows::row;
use crate::support::dns::Poller;
use crate::{Bench, POLL_EVERY, POOL, System};

/// PowerDNS's defaults: `lua-health-checks-interval` and ifportup's
/// `timeout` option, in seconds.
pub const PDNS_INTERVAL_DEFAULT: u64 = 5;
pub const PDNS_CHECK_TIMEOUT: u64 = 2;

pub const SHELL_SETTINGS: &str =
    "bash /dev/tcp connect to each node every 1 s (timeout 1 s), nsupdate per change";

impl Bench {
    pub fn pdns(&mut self, ways: &[Way]) -> (Vec<Value>, Value) {
        let interval = self.pdns_interval;
        let record = pdns_record(self.lab.cluster.ports.imap, &self.lab.cluster.ips());
        let extra: Vec<String> = if interval == PDNS_INTERVAL_DEFAULT {
            Vec::new()
        } else {
            vec![format!("lua-health-checks-interval={interval}")]
        };
        let server = Pdns::start(self.lab.bind.zone(), std::slice::from_ref(&record), &extra);
        let poller = Poller::start(server.addr(), std::slice::from_ref(&self.name), POLL_EVERY);
        let names = [self.name.clone()];
        let watch = Watch {
            poller: &poller,
            replica: None,
            names: &names,
            pools: &[],
            extra_ips: &[],
        };
        let period = Duration::from_secs(interval);
        // The first query starts the checks; until the first round is done
        // every address counts as down (one is answered at random).
        self.wait_ready(System::Pdns, &watch, period * 3 + Duration::from_secs(20));
        let mut rows = Vec::new();
        for &way in ways {
            let o = self.outages(System::Pdns, way, &watch, None, None, self.reps, 0);
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

    pub fn shell(&mut self, ways: &[Way], primary: &Poller) -> (Vec<Value>, Value) {
        let bind = &self.lab.bind;
        let script = crate::support::results::repo()
            .join("bench")
            .join("baseline.sh");
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
        let names = [self.name.clone()];
        let watch = Watch {
            poller: primary,
            replica: None,
            names: &names,
            pools: &[],
            extra_ips: &[],
        };
        self.wait_ready(System::Shell, &watch, Duration::from_secs(20));
        let mut rows = Vec::new();
        for &way in ways {
            let o = self.outages(System::Shell, way, &watch, None, None, self.reps, 0);
            let mut r = row(System::Shell, way, &o, None);
            r["settings"] = SHELL_SETTINGS.into();
            rows.push(r);
        }
        (
            rows,
            json!({"script": "bench/baseline.sh", "settings": SHELL_SETTINGS}),
        )
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
pub fn pdns_record(port: u16, ips: &[IpAddr]) -> String {
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
