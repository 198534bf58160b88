//! A real PowerDNS Authoritative Server (`pdns_server`, Debian packages
//! `pdns-server` and `pdns-backend-bind`) serving one zone from a zone file
//! through its bind backend, with LUA records on: the health-checking DNS
//! server the failover bench compares pigeon-dns with. Loopback only, files
//! in a tempdir, killed on drop, like the harness's `Bind`.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::net;
use crate::common::process::{self, Guarded};
use crate::support::dns::{Dns, name};

/// How long pdns_server may take to answer after spawn (it takes ~0.1 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `pdns_server` with its own config directory, serving `zone`.
pub struct Pdns {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    zone: String,
    conf: Vec<String>,
    process: Option<Guarded>,
}

impl Pdns {
    /// Serves `zone` (SOA, NS, then `records`: zone file lines relative to
    /// the zone) on a free port of 127.0.0.1 with every setting at its
    /// default except those a test server needs (where it listens, no
    /// daemon, no guardian, its control socket in the tempdir, no security
    /// status query to the outside, an unprivileged user) and `extra`
    /// (`key=value` lines, e.g. `lua-health-checks-interval=1`).
    pub fn start(zone: &str, records: &[String], extra: &[String]) -> Pdns {
        let bin = process::tool("pdns_server");
        let zone = zone.trim_end_matches('.').to_owned();
        let dir = tempfile::Builder::new()
            .prefix("pigeon-pdns-")
            .tempdir()
            .expect("tempdir");
        // pdns_server drops to the pdns user after start: it must read its
        // files there (tempdirs are 0700).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let path = dir.path().display().to_string();
        let mut text = format!(
            "$ORIGIN {zone}.\n$TTL 3600\n\
             @ 3600 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n\
             @ 3600 IN NS ns.{zone}.\n\
             ns 3600 IN A 127.0.0.1\n"
        );
        for line in records {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(dir.path().join(format!("{zone}.zone")), text).expect("write zone");
        std::fs::write(
            dir.path().join("named.conf"),
            format!("zone \"{zone}\" {{\n  type master;\n  file \"{path}/{zone}.zone\";\n}};\n"),
        )
        .expect("write named.conf");
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut pdns = Pdns {
            dir,
            addr: SocketAddr::new(ip, net::free_port(ip)),
            zone,
            conf: Vec::new(),
            process: None,
        };
        // A port taken between the check and pdns_server's bind makes it
        // exit: another one is tried.
        let mut last = String::new();
        for _ in 0..4 {
            pdns.write_conf(extra);
            match pdns.spawn(&bin) {
                Ok(()) => return pdns,
                Err(e) => {
                    last = e;
                    pdns.addr.set_port(net::free_port(ip));
                }
            }
        }
        panic!("pdns_server did not start: {last}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The settings it runs with, as written to pdns.conf (paths and the
    /// port shown as they are).
    pub fn conf(&self) -> &[String] {
        &self.conf
    }

    /// `PowerDNS Authoritative Server 4.7.3`, from `pdns_server --version`.
    pub fn version() -> String {
        let out = Command::new(process::tool("pdns_server"))
            .arg("--version")
            .output()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text
            })
            .unwrap_or_default();
        out.lines()
            .find_map(|l| {
                l.find("PowerDNS Authoritative")
                    .map(|i| l[i..].trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into())
    }

    fn write_conf(&mut self, extra: &[String]) {
        let dir = self.dir.path().display().to_string();
        let mut conf: Vec<String> = vec![
            "launch=bind".into(),
            format!("bind-config={dir}/named.conf"),
            "enable-lua-records=yes".into(),
            "local-address=127.0.0.1".into(),
            format!("local-port={}", self.addr.port()),
            format!("socket-dir={dir}"),
            "guardian=no".into(),
            "daemon=no".into(),
            "write-pid=no".into(),
            // Otherwise it asks a resolver about its own security status at
            // start: this bench talks to loopback only.
            "security-poll-suffix=".into(),
        ];
        if has_user("pdns") {
            conf.push("setuid=pdns".into());
            conf.push("setgid=pdns".into());
        }
        conf.extend(extra.iter().cloned());
        let mut text = String::from("# Written by the pigeon-dns benches.\n");
        for line in &conf {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(self.dir.path().join("pdns.conf"), text).expect("write pdns.conf");
        self.conf = conf;
    }

    fn spawn(&mut self, bin: &Path) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("pdns.log")).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config-dir={}", self.dir.path().display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let process =
            Guarded::spawn(cmd, false).map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        self.process = Some(process);
        let deadline = Instant::now() + START_TIMEOUT;
        let zone = name(&self.zone);
        loop {
            if self.process.as_ref().is_none_or(Guarded::has_exited) {
                self.process = None;
                return Err(format!(
                    "pdns_server exited at start (the bind backend comes with \
                     apt-get install pdns-backend-bind); its log:\n{}",
                    self.log_text()
                ));
            }
            if Dns::new(self.addr).serial(&zone).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "pdns_server at {} did not serve {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.addr,
                    self.zone,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What pdns_server wrote to stdout and stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pdns.log")).unwrap_or_default()
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("KILL", Duration::from_secs(5));
        }
    }
}

fn has_user(user: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|t| t.lines().any(|l| l.split(':').next() == Some(user)))
}
