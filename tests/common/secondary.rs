//! A real BIND secondary (`type secondary;`) of zones of a [`Bind`]
//! primary, fed by NOTIFY and IXFR, in a tempdir, for one test.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::bind::{self, Bind, StartError, TsigKey};
use super::dig::{self, Dig, Propagation};
use super::net;
use super::process::{self, Guarded};

/// `named` holding copies of zones of one primary: on its own free port of
/// 127.0.0.1 (named listens only on addresses configured on an interface),
/// asking the primary for IXFR (signed with the primary's
/// [`transfer key`](Bind::transfer_key)) when a signed NOTIFY says a zone
/// changed. Its copies are text files beside a journal, so a restart keeps
/// them. Killed on drop.
pub struct Secondary {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    primary: SocketAddr,
    zones: Vec<String>,
    key: TsigKey,
    process: Option<Guarded>,
}

impl Secondary {
    /// A secondary of every zone of `primary`:
    /// `let sec = Secondary::start(&mut bind);`. Returns once the secondary
    /// serves every zone (the first transfer, an AXFR, is done) and the
    /// primary, reconfigured, has reloaded to notify it. The reload restarts
    /// the primary's `notify-delay` window: at the default (5 s), a change
    /// in the next 5 s reaches the secondary only when they have passed.
    pub fn start(primary: &mut Bind) -> Secondary {
        let zones = primary.zones();
        Secondary::start_for(primary, &zones)
    }

    /// A secondary of some zones of `primary`:
    /// `Secondary::start_for(&mut bind, &["example.org"])`.
    pub fn start_for<S: AsRef<str>>(primary: &mut Bind, zones: &[S]) -> Secondary {
        Secondary::start_on(primary, zones, IpAddr::from([127, 0, 0, 1]), None)
    }

    /// A secondary of some zones of `primary` listening on `ip`, at `port`
    /// when given (the primary's port on another address: as NS records
    /// find it), else at a free one.
    pub fn start_on<S: AsRef<str>>(
        primary: &mut Bind,
        zones: &[S],
        ip: IpAddr,
        port: Option<u16>,
    ) -> Secondary {
        process::tool("named");
        process::tool("dig");
        let zones: Vec<String> = zones
            .iter()
            .map(|z| z.as_ref().trim_end_matches('.').to_owned())
            .collect();
        assert!(!zones.is_empty(), "a secondary of no zone");
        let dir = tempfile::Builder::new()
            .prefix("pigeon-secondary-")
            .tempdir()
            .expect("tempdir");
        let mut secondary = Secondary {
            dir,
            addr: SocketAddr::new(ip, port.unwrap_or_else(|| net::free_port(ip))),
            primary: primary.addr(),
            zones,
            key: primary.transfer_key().clone(),
            process: None,
        };
        // As for the primary: a port taken meanwhile makes named exit, and
        // another one is tried.
        let mut last = String::new();
        for _ in 0..4 {
            secondary.write_conf();
            match secondary.try_spawn() {
                Ok(()) => {
                    primary.add_secondary(secondary.addr, &secondary.zones);
                    return secondary;
                }
                Err(e) if e.exited && port.is_none() => {
                    last = e.message;
                    secondary.addr.set_port(net::free_port(ip));
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        panic!("the secondary did not start: {last}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `IP:PORT`, as a `secondaries = [...]` entry wants it.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }
    /// The zones it holds.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }
    /// The tempdir: named.conf, the zone copies (`<zone>.db`) and their
    /// journals, the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `dig` at this server, unsigned (as anyone asks a secondary).
    pub fn dig(&self) -> Dig {
        Dig::new(self.addr, None)
    }
    /// The serial of the copy of `zone` it serves.
    pub fn serial(&self, zone: &str) -> u32 {
        self.dig().serial(zone)
    }
    /// The rdata of `name`'s records of `rtype` in `zone`, sorted.
    pub fn query(&self, zone: &str, name: &str, rtype: &str) -> Vec<String> {
        self.dig().query(zone, name, rtype)
    }
    pub fn query_with_ttl(&self, zone: &str, name: &str, rtype: &str) -> Vec<(u32, String)> {
        self.dig().query_with_ttl(zone, name, rtype)
    }
    /// Polls [`Secondary::query`] until `predicate` holds.
    pub fn wait_for(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        predicate: impl Fn(&[String]) -> bool,
        timeout: Duration,
    ) -> Vec<String> {
        self.dig().wait_for(zone, name, rtype, predicate, timeout)
    }
    /// Polls its SOA every 2 ms until it serves `zone` at `serial` or later;
    /// returns how long that took from the call.
    pub fn wait_serial(&self, zone: &str, serial: u32, timeout: Duration) -> Duration {
        dig::wait_serial(self.addr, zone, serial, timeout)
    }

    /// Runs `change` (at `primary`) and times it to here: see
    /// [`dig::propagation`].
    /// `sec.propagation(&bind, "example.com", 2, || bind.nsupdate("..."))`.
    pub fn propagation(
        &self,
        primary: &Bind,
        zone: &str,
        serial: u32,
        change: impl FnOnce() + Send,
    ) -> Propagation {
        dig::propagation(
            primary.addr(),
            self.addr,
            zone,
            serial,
            Duration::from_secs(30),
            change,
        )
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("named.log")
    }
    /// named's log at info: default, general, notify and xfer-in, e.g.
    /// `received notify for zone 'example.com'`, `Transfer completed: 1
    /// messages, 5 records, ... (serial 3)`.
    pub fn log_text(&self) -> String {
        process::log_text(&self.log_path())
    }
    /// The log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        process::log_lines(&self.log_path(), needle)
    }
    /// The xfer-in category down to debug 3 (`xfer-in.log`): BIND says only
    /// there whether a transfer came incremental (`got incremental
    /// response`) or whole (`got nonincremental response`).
    pub fn xfer_log_text(&self) -> String {
        process::log_text(&self.dir.path().join("xfer-in.log"))
    }
    /// The kind of each transfer of `zone` so far, in order: `"IXFR"` or
    /// `"AXFR"` (a primary may answer an IXFR request with the whole zone).
    pub fn transfer_kinds(&self, zone: &str) -> Vec<&'static str> {
        let needle = format!("transfer of '{zone}/IN'");
        self.xfer_log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| {
                if l.contains("got incremental response") {
                    Some("IXFR")
                } else if l.contains("got nonincremental response") {
                    Some("AXFR")
                } else {
                    None
                }
            })
            .collect()
    }

    /// Whether named is running.
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| !p.has_exited())
    }
    /// Stops named with SIGTERM and waits for it: the port refuses
    /// connections, the files stay.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("TERM", Duration::from_secs(10));
        }
    }
    /// Starts named again on the same port with its copies. Returns once
    /// it serves every zone, maybe behind: BIND does not ask the primary at
    /// start; a secondary that loaded its copy from disk waits for the next
    /// NOTIFY, or for a refresh timer of 1/4 to all of the SOA retry
    /// (clamped to min-retry-time, 500 s). Use [`Secondary::refresh`] to
    /// have it catch up now.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "the secondary is still running");
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.message);
        }
    }

    /// Has it check `zone` at the primary now and catch up (by IXFR) if
    /// behind: a NOTIFY from the primary's address, as `rndc refresh`
    /// would (there is no rndc channel). Panics unless it accepts it.
    pub fn refresh(&self, zone: &str) {
        let rcode = dig::send_notify(self.addr, zone, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("NOTIFY {zone} to {}: {e}", self.addr));
        assert_eq!(
            rcode,
            hickory_proto::op::ResponseCode::NoError,
            "the secondary refused a NOTIFY for {zone}"
        );
    }

    fn try_spawn(&mut self) -> Result<(), StartError> {
        self.process = Some(bind::spawn_named(self.dir.path()));
        let dig = self.dig();
        let zones = self.zones.clone();
        bind::wait_named_ready(&mut self.process, self.dir.path(), self.addr, || {
            zones.iter().all(|z| dig.has_soa(z))
        })
    }

    fn write_conf(&self) {
        let dir = self.dir.path().display().to_string();
        let ip = self.addr.ip();
        let port = self.addr.port();
        let listen = if ip.is_ipv4() {
            format!("listen-on port {port} {{ {ip}; }};\n  listen-on-v6 {{ none; }};")
        } else {
            format!("listen-on {{ none; }};\n  listen-on-v6 port {port} {{ {ip}; }};")
        };
        let key = &self.key.name;
        let primary_ip = self.primary.ip();
        let primary = format!(
            "{} port {} key {key};",
            self.primary.ip(),
            self.primary.port()
        );
        let zones: String = self
            .zones
            .iter()
            .map(|zone| {
                format!(
                    r#"zone "{zone}" {{
  type secondary;
  file "{dir}/{zone}.db";
  masterfile-format text;
  primaries {{ {primary} }};
  // The primary, on 127.0.0.1, sends NOTIFYs to an IPv6 secondary from
  // ::1; so do the tests' own.
  allow-notify {{ {primary_ip}; ::1; key {key}; }};
  request-ixfr yes;
}};
"#
                )
            })
            .collect();
        std::fs::write(self.dir.path().join("keys.conf"), self.key.to_conf())
            .expect("write keys.conf");
        let conf = format!(
            r#"// Written by the pigeon-dns test harness.
include "{dir}/keys.conf";
options {{
  directory "{dir}";
  {listen}
  pid-file none;
  session-keyfile none;
  managed-keys-directory "{dir}";
  recursion no;
  dnssec-validation no;
  // It announces nothing itself (its zones' NS names point at port 53).
  notify no;
  allow-query {{ any; }};
  allow-transfer {{ none; }};
  // As documented: at the default (20), the SOA queries after NOTIFYs of
  // several zones go out in 500 ms ticks.
  serial-query-rate 1000;
}};
controls {{ }};
logging {{
  channel harness {{
    file "{dir}/named.log";
    severity info;
    print-time yes;
    print-category yes;
    print-severity yes;
  }};
  channel xfer_detail {{
    file "{dir}/xfer-in.log";
    severity debug 3;
    print-time yes;
    print-category yes;
    print-severity yes;
  }};
  category default {{ harness; }};
  category general {{ harness; }};
  category notify {{ harness; }};
  category xfer-in {{ harness; xfer_detail; }};
}};
{zones}"#
        );
        std::fs::write(self.dir.path().join("named.conf"), conf).expect("write named.conf");
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("KILL", Duration::from_secs(5));
        }
    }
}
