//! A real Knot DNS primary (`knotd`) in a tempdir, for one test: a second
//! kind of primary that accepts TSIG-signed RFC 2136 updates, to check that
//! pigeon-dns does not depend on BIND's ways.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::bind::{TsigKey, write_key_file, zone_file};
use super::dig::{self, Dig};
use super::net;
use super::process::{self, Guarded};

/// How long knotd may take to answer after start (it takes ~0.1 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What [`Knot::start`] sets up.
#[derive(Clone, Debug)]
pub struct KnotOpts {
    /// Default: a free port on 127.0.0.1 (retried if it is taken meanwhile).
    pub port: Option<u16>,
    /// Default `example.net`.
    pub zone: String,
    pub key_name: String,
    /// Knot's name for it: `hmac-sha256`, `hmac-sha512`, ...
    pub key_algorithm: String,
    /// Include [`FOREIGN_RECORDS`](super::bind::FOREIGN_RECORDS) (default true).
    pub foreign_records: bool,
    /// More zone file lines, relative to the zone.
    pub records: Vec<String>,
    /// What the key may do (`acl.action`); default `[update, transfer]`.
    pub actions: Vec<String>,
}

impl Default for KnotOpts {
    fn default() -> Self {
        KnotOpts {
            port: None,
            zone: "example.net".into(),
            key_name: "pigeon-dns".into(),
            key_algorithm: "hmac-sha256".into(),
            foreign_records: true,
            records: Vec::new(),
            actions: vec!["update".into(), "transfer".into()],
        }
    }
}

impl KnotOpts {
    pub fn zone(mut self, zone: &str) -> Self {
        self.zone = zone.trim_end_matches('.').to_owned();
        self
    }
    pub fn key_algorithm(mut self, algorithm: &str) -> Self {
        self.key_algorithm = algorithm.to_owned();
        self
    }
    pub fn no_foreign_records(mut self) -> Self {
        self.foreign_records = false;
        self
    }
    /// A zone file line, e.g. `"mail1 3600 IN A 127.1.2.11"`.
    pub fn record(mut self, line: &str) -> Self {
        self.records.push(line.to_owned());
        self
    }
    /// e.g. `&["transfer"]`: the key may read the zone but not update it.
    pub fn actions(mut self, actions: &[&str]) -> Self {
        self.actions = actions.iter().map(|a| (*a).to_owned()).collect();
        self
    }
}

/// `knotd` serving one zone that accepts TSIG-signed updates (TCP and UDP)
/// from one key. Updates go to Knot's journal (`zonefile-sync: -1`: the
/// zone file stays as written), and a restart applies the journal to the
/// zone file again, so they survive [`Knot::stop`] and
/// [`Knot::start_again`]. Killed on drop.
pub struct Knot {
    dir: tempfile::TempDir,
    opts: KnotOpts,
    addr: SocketAddr,
    key: TsigKey,
    key_file: PathBuf,
    process: Option<Guarded>,
}

impl Knot {
    /// `let knot = Knot::start(KnotOpts::default());`: writes knot.conf,
    /// the zone and a BIND-format key file (for nsupdate, dig and
    /// pigeon-dns), starts knotd and waits until it answers the SOA.
    pub fn start(opts: KnotOpts) -> Knot {
        process::tool("knotd");
        process::tool("dig");
        process::tool("nsupdate");
        let ip = IpAddr::from([127, 0, 0, 1]);
        let auto_port = opts.port.is_none();
        let port = opts.port.unwrap_or_else(|| net::free_port(ip));
        let dir = tempfile::Builder::new()
            .prefix("pigeon-knot-")
            .tempdir()
            .expect("tempdir");
        let key = TsigKey::generate(&opts.key_name, &opts.key_algorithm);
        let key_file = write_key_file(&dir.path().join(format!("{}.key", key.name)), &[&key]);
        std::fs::create_dir(dir.path().join("db")).expect("mkdir db");
        let text = zone_file(&opts.zone, "127.0.0.1", opts.foreign_records, &opts.records);
        std::fs::write(dir.path().join(format!("{}.zone", opts.zone)), text).expect("write zone");
        let mut knot = Knot {
            dir,
            opts,
            addr: SocketAddr::new(ip, port),
            key,
            key_file,
            process: None,
        };
        for _ in 0..4 {
            knot.write_conf();
            match knot.try_spawn() {
                Ok(()) => return knot,
                Err((true, _)) if auto_port => knot.addr.set_port(net::free_port(ip)),
                Err((_, message)) => panic!("{message}"),
            }
        }
        knot.write_conf();
        if let Err((_, message)) = knot.try_spawn() {
            panic!("{message}");
        }
        knot
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `IP:PORT`, as `dns.server` wants it.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }
    /// Without the final dot, e.g. `example.net`.
    pub fn zone(&self) -> &str {
        &self.opts.zone
    }
    pub fn key(&self) -> &TsigKey {
        &self.key
    }
    /// The key in a BIND key file (`key "NAME" { algorithm ...; secret ...; };`).
    pub fn key_file(&self) -> PathBuf {
        self.key_file.clone()
    }
    /// The tempdir: knot.conf, the zone file, `db/` (journal, timers), knot.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("knot.log")
    }
    /// knotd's log at info, e.g. `[example.net.] DDNS, finished, serial 1 -> 2`.
    pub fn log_text(&self) -> String {
        process::log_text(&self.log_path())
    }
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        process::log_lines(&self.log_path(), needle)
    }

    /// `dig` at knotd, signed with the key.
    pub fn dig(&self) -> Dig {
        Dig::new(self.addr, Some(&self.key_file))
    }
    pub fn serial(&self) -> u32 {
        self.dig().serial(self.zone())
    }
    pub fn fqdn(&self, name: &str) -> String {
        dig::fqdn(self.zone(), name)
    }
    /// The rdata of `name`'s records of `rtype`, sorted, as dig prints them.
    pub fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.dig().query(self.zone(), name, rtype)
    }
    pub fn query_with_ttl(&self, name: &str, rtype: &str) -> Vec<(u32, String)> {
        self.dig().query_with_ttl(self.zone(), name, rtype)
    }
    /// Every record by AXFR (signed) except the SOA, sorted.
    pub fn zone_records(&self) -> Vec<String> {
        self.dig().zone_records(self.zone())
    }
    pub fn wait_for(
        &self,
        name: &str,
        rtype: &str,
        predicate: impl Fn(&[String]) -> bool,
        timeout: Duration,
    ) -> Vec<String> {
        self.dig()
            .wait_for(self.zone(), name, rtype, predicate, timeout)
    }
    /// `nsupdate -k KEY_FILE` with `script` (`server`, `zone`, `send` added
    /// as for [`Bind::nsupdate_with`](super::bind::Bind::nsupdate_with)).
    pub fn nsupdate_with(&self, key_file: &Path, script: &str) -> Output {
        dig::nsupdate(self.addr, key_file, self.zone(), script)
    }
    /// `nsupdate` with the key; panics unless it succeeds.
    pub fn nsupdate(&self, script: &str) {
        let out = self.nsupdate_with(&self.key_file, script);
        dig::assert_nsupdate_ok(&out, script);
    }

    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| !p.has_exited())
    }
    /// SIGTERM, and waits for knotd to exit.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("TERM", Duration::from_secs(10));
        }
    }
    /// Starts knotd again on the same port: the zone file, then the
    /// journal's changes on top.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "knotd is still running");
        if let Err((_, message)) = self.try_spawn() {
            panic!("{message}");
        }
    }

    /// Starts knotd and waits for the SOA; `Err((exited, why))`.
    fn try_spawn(&mut self) -> Result<(), (bool, String)> {
        let dir = self.dir.path();
        let stderr = std::fs::File::create(dir.join("knotd.stderr")).expect("stderr file");
        let mut cmd = Command::new(process::tool("knotd"));
        cmd.arg("-c")
            .arg(dir.join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        self.process = Some(Guarded::spawn(cmd, false).expect("spawn knotd"));
        let deadline = Instant::now() + START_TIMEOUT;
        let dig = self.dig();
        loop {
            if !self.is_running() {
                if let Some(mut p) = self.process.take() {
                    p.stop("KILL", Duration::ZERO);
                }
                return Err((
                    true,
                    format!(
                        "knotd exited at start.\nstderr:\n{}\nlog:\n{}",
                        std::fs::read_to_string(dir.join("knotd.stderr")).unwrap_or_default(),
                        self.log_text()
                    ),
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && dig.has_soa(self.zone())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err((
                    false,
                    format!(
                        "knotd did not answer the SOA of {} at {} within {START_TIMEOUT:?}.\nlog:\n{}",
                        self.zone(),
                        self.addr,
                        self.log_text()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn write_conf(&self) {
        let dir = self.dir.path().display().to_string();
        let zone = self.zone();
        let mut conf = format!(
            r#"# Written by the pigeon-dns test harness.
server:
    listen: {ip}@{port}
    rundir: "{dir}"
    pidfile: "{dir}/knot.pid"
    # One worker of each kind: tests run side by side on few cores.
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "{dir}/knot.log"
    any: info
database:
    storage: "{dir}/db"
control:
    listen: "{dir}/knot.sock"
key:
  - id: {key}
    algorithm: {algorithm}
    secret: {secret}
acl:
  - id: {key}
    key: {key}
    action: [{actions}]
template:
  - id: default
    storage: "{dir}"
    # Updates live in the journal only; at start Knot loads the zone file
    # and applies the journal's changes on top (journal-content: changes,
    # zonefile-load: whole, the defaults), so they survive a restart.
    zonefile-sync: -1
    journal-content: changes
"#,
            ip = self.addr.ip(),
            port = self.addr.port(),
            key = self.key.name,
            algorithm = self.key.algorithm,
            secret = self.key.secret,
            actions = self.opts.actions.join(", "),
        );
        let _ = write!(
            conf,
            "zone:\n  - domain: {zone}\n    file: \"{dir}/{zone}.zone\"\n    acl: {key}\n",
            key = self.key.name
        );
        std::fs::write(self.dir.path().join("knot.conf"), conf).expect("write knot.conf");
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("KILL", Duration::from_secs(5));
        }
    }
}
