//! A real BIND primary (`named`) in a tempdir, for one test.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::net;
use super::process::{self, Guarded};

/// Records that every test zone holds and pigeon-dns does not own:
/// `(name relative to the zone, ttl, type, rdata as dig prints it)`. Some sit
/// at names the tests manage (`imap` A with TTL 300, the apex MX), so a test
/// can check they survive and keep their TTL.
pub const FOREIGN_RECORDS: &[(&str, u32, &str, &str)] = &[
    ("imap", 300, "A", "198.51.100.7"),
    ("@", 3600, "MX", "50 backup-mx.example.net."),
    ("www", 3600, "A", "198.51.100.80"),
    ("@", 3600, "TXT", "\"v=spf1 -all\""),
];

/// How long `named` may take to answer after start (it takes ~0.1 s).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A TSIG key, as `tsig-keygen` makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    /// `hmac-sha256`, `hmac-sha512`, ...
    pub algorithm: String,
    /// Base64.
    pub secret: String,
}

impl TsigKey {
    /// A fresh random key from `tsig-keygen -a ALGORITHM NAME`.
    pub fn generate(name: &str, algorithm: &str) -> TsigKey {
        let mut cmd = Command::new(process::tool("tsig-keygen"));
        cmd.args(["-a", algorithm, name]);
        let out = process::run_with_timeout(cmd, None, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tsig-keygen -a {algorithm} {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let secret = text
            .split_once("secret \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(secret, _)| secret.to_owned())
            .unwrap_or_else(|| panic!("no secret in tsig-keygen output: {text}"));
        TsigKey {
            name: name.to_owned(),
            algorithm: algorithm.to_owned(),
            secret,
        }
    }

    /// The same name and algorithm with another random secret: signatures
    /// made with it fail with BADSIG.
    pub fn with_wrong_secret(&self) -> TsigKey {
        TsigKey::generate(&self.name, &self.algorithm)
    }

    /// The `key "NAME" { ... };` statement, as in a BIND key file.
    pub fn to_conf(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name, self.algorithm, self.secret
        )
    }
}

/// Writes `keys` into one BIND key file at `path`, mode 0600 as a secret
/// should be (pigeon-dns warns about a key file others can read).
pub fn write_key_file(path: &Path, keys: &[&TsigKey]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let text: String = keys.iter().map(|k| k.to_conf()).collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path.to_owned()
}

/// What [`Bind::start`] sets up. Build it with the chained methods.
#[derive(Clone, Debug)]
pub struct BindOpts {
    /// Listening address; default 127.0.0.1. named listens only on addresses
    /// configured on an interface: `lo` has 127.0.0.1 but not the rest of
    /// 127.0.0.0/8, so a test [`Subnet`](super::net::Subnet) address fails.
    pub ip: Option<IpAddr>,
    /// Default: a free port on `ip` (retried if it is taken meanwhile).
    pub port: Option<u16>,
    pub zone: String,
    pub key_name: String,
    pub key_algorithm: String,
    /// More keys named in named.conf: `(name, algorithm)`.
    pub extra_keys: Vec<(String, String)>,
    /// The body of `update-policy { ... }`. Default: every known key may
    /// change anything in the zone (`grant KEY zonesub ANY;` per key).
    pub update_policy: Option<String>,
    /// The body of `allow-query { ... }` (default `any;`).
    pub allow_query: String,
    /// Include [`FOREIGN_RECORDS`] in the zone (default true).
    pub foreign_records: bool,
    /// More zone file lines, e.g. `mail1 3600 IN A 127.1.2.11`.
    pub records: Vec<String>,
    /// Raw lines added inside `options { }`.
    pub extra_options: String,
}

impl Default for BindOpts {
    fn default() -> Self {
        BindOpts {
            ip: None,
            port: None,
            zone: "example.com".into(),
            key_name: "pigeon-dns".into(),
            key_algorithm: "hmac-sha256".into(),
            extra_keys: Vec::new(),
            update_policy: None,
            allow_query: "any;".into(),
            foreign_records: true,
            records: Vec::new(),
            extra_options: String::new(),
        }
    }
}

impl BindOpts {
    /// Listen on `ip` (e.g. `subnet.ip(1)`).
    pub fn on(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn zone(mut self, zone: &str) -> Self {
        self.zone = zone.trim_end_matches('.').to_owned();
        self
    }
    pub fn key_algorithm(mut self, algorithm: &str) -> Self {
        self.key_algorithm = algorithm.to_owned();
        self
    }
    pub fn extra_key(mut self, name: &str, algorithm: &str) -> Self {
        self.extra_keys
            .push((name.to_owned(), algorithm.to_owned()));
        self
    }
    /// e.g. `"grant pigeon-dns name imap.example.com. A;"`
    pub fn update_policy(mut self, policy: &str) -> Self {
        self.update_policy = Some(policy.to_owned());
        self
    }
    /// e.g. `"key pigeon-dns;"`
    pub fn allow_query(mut self, acl: &str) -> Self {
        self.allow_query = acl.to_owned();
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
    pub fn extra_options(mut self, lines: &str) -> Self {
        self.extra_options.push_str(lines);
        self.extra_options.push('\n');
        self
    }
}

/// `named` serving one primary zone that accepts TSIG-signed updates.
/// Killed on drop; its files live in a tempdir.
pub struct Bind {
    dir: tempfile::TempDir,
    opts: BindOpts,
    addr: SocketAddr,
    key: TsigKey,
    key_file: PathBuf,
    extra_keys: Vec<TsigKey>,
    process: Option<Guarded>,
}

impl Bind {
    /// Generates the keys, writes named.conf and the zone, starts `named` and
    /// waits until it answers the zone's SOA over TCP.
    pub fn start(mut opts: BindOpts) -> Bind {
        let named = process::tool("named");
        process::tool("dig");
        process::tool("nsupdate");
        let ip = *opts.ip.get_or_insert(IpAddr::from([127, 0, 0, 1]));
        let auto_port = opts.port.is_none();
        let port = opts.port.unwrap_or_else(|| net::free_port(ip));
        let dir = tempfile::Builder::new()
            .prefix("pigeon-bind-")
            .tempdir()
            .expect("tempdir");
        let key = TsigKey::generate(&opts.key_name, &opts.key_algorithm);
        let key_file = write_key_file(&dir.path().join(format!("{}.key", key.name)), &[&key]);
        let extra_keys: Vec<TsigKey> = opts
            .extra_keys
            .iter()
            .map(|(name, alg)| {
                let k = TsigKey::generate(name, alg);
                write_key_file(&dir.path().join(format!("{name}.key")), &[&k]);
                k
            })
            .collect();
        let mut bind = Bind {
            dir,
            opts,
            addr: SocketAddr::new(ip, port),
            key,
            key_file,
            extra_keys,
            process: None,
        };
        assert!(named.is_file());
        bind.write_zone();
        // A free port on 127.0.0.1 can be taken by another test before named
        // binds it; named then exits ("unable to listen on any configured
        // interfaces"), and another port is tried.
        for _ in 0..4 {
            bind.write_conf();
            match bind.try_spawn() {
                Ok(()) => return bind,
                Err(e) if auto_port && e.exited => {
                    bind.addr.set_port(net::free_port(ip));
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        bind.write_conf();
        bind.spawn();
        bind
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `IP:PORT`, `[IP]:PORT` for IPv6, as `dns.server` wants it.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }
    /// The zone name without the final dot, e.g. `example.com`.
    pub fn zone(&self) -> &str {
        &self.opts.zone
    }
    pub fn key(&self) -> &TsigKey {
        &self.key
    }
    pub fn key_name(&self) -> &str {
        &self.key.name
    }
    /// A key file holding only the main key (`tsig-keygen` format).
    pub fn key_file(&self) -> PathBuf {
        self.key_file.clone()
    }
    /// One of [`BindOpts::extra_key`]'s keys.
    pub fn extra_key(&self, name: &str) -> &TsigKey {
        self.extra_keys
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no extra key {name}"))
    }
    /// The key file of an extra key.
    pub fn extra_key_file(&self, name: &str) -> PathBuf {
        self.extra_key(name);
        self.dir.path().join(format!("{name}.key"))
    }
    /// A key file with the main key's name and algorithm but another secret:
    /// BIND answers its updates with BADSIG.
    pub fn wrong_secret_key_file(&self) -> PathBuf {
        let wrong = self.key.with_wrong_secret();
        write_key_file(&self.dir.path().join("wrong-secret.key"), &[&wrong])
    }
    /// A key file with a key named `name` that BIND does not know: BADKEY.
    pub fn unknown_key_file(&self, name: &str, algorithm: &str) -> PathBuf {
        let key = TsigKey::generate(name, algorithm);
        write_key_file(
            &self.dir.path().join(format!("unknown-{name}.key")),
            &[&key],
        )
    }
    /// Writes `keys` into one key file in the tempdir (e.g. to test `key_name`).
    pub fn write_key_file(&self, file_name: &str, keys: &[&TsigKey]) -> PathBuf {
        write_key_file(&self.dir.path().join(file_name), keys)
    }
    /// The tempdir (named.conf, the zone, its journal, named.log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("named.log")
    }

    /// named's log (categories default, general, security, update and
    /// update-security at info, with time, category and severity).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    /// The log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
    /// One line per record added or deleted by an UPDATE (`adding an RR`,
    /// `deleting an RR`, `deleting rrset`), and per UPDATE that failed
    /// (`update failed`, `update unsuccessful`): the `update` category.
    pub fn update_log(&self) -> Vec<String> {
        self.log_lines("updating zone")
    }
    /// How many UPDATE messages BIND logged: `updating zone` lines grouped
    /// by (timestamp, client). A good estimate; for an exact count of the
    /// UPDATEs that changed the zone, use [`Bind::serial`] differences.
    pub fn update_messages_logged(&self) -> usize {
        let mut keys: Vec<String> = self
            .update_log()
            .iter()
            .filter_map(|l| {
                let (head, _) = l.split_once(": updating zone")?;
                // "DD-Mon-YYYY HH:MM:SS.mmm update: info: client @0x.. ip#port/key k"
                let mut words = head.split_whitespace();
                let time = format!("{} {}", words.next()?, words.next()?);
                let client = head.split_once("client ")?.1;
                Some(format!("{time} {client}"))
            })
            .collect();
        keys.dedup();
        keys.len()
    }

    /// The zone's serial: it grows by one with every UPDATE that changed it.
    pub fn serial(&self) -> u32 {
        let soa = self.query("@", "SOA");
        let first = soa
            .first()
            .unwrap_or_else(|| panic!("no SOA for {}", self.zone()));
        first
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad SOA {first}"))
    }

    /// `name` as an absolute name with the final dot: `@` is the apex, a name
    /// ending in a dot or in the zone is absolute, any other is relative.
    pub fn fqdn(&self, name: &str) -> String {
        let zone = self.zone();
        if name.is_empty() || name == "@" {
            format!("{zone}.")
        } else if name.ends_with('.') {
            name.to_owned()
        } else if name == zone || name.ends_with(&format!(".{zone}")) {
            format!("{name}.")
        } else {
            format!("{name}.{zone}.")
        }
    }

    /// The rdata of `name`'s records of `rtype`, sorted, as dig prints them
    /// (e.g. `10 mail1.example.com.`, `"v=spf1 -all"`). Empty for NXDOMAIN
    /// or no data; panics on any other rcode. Over TCP, TSIG-signed.
    pub fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.query_with_ttl(name, rtype)
            .into_iter()
            .map(|(_, rdata)| rdata)
            .collect()
    }

    /// As [`Bind::query`], with each record's TTL.
    pub fn query_with_ttl(&self, name: &str, rtype: &str) -> Vec<(u32, String)> {
        let mut records: Vec<(u32, String)> = self
            .answer(name, rtype)
            .into_iter()
            .map(|r| (r.ttl, r.rdata))
            .collect();
        records.sort();
        records
    }

    /// The owner names of `name`'s records of `rtype` as BIND answers them
    /// (in the case the zone stores), sorted, without repeats.
    pub fn query_names(&self, name: &str, rtype: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .answer(name, rtype)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The answer records of `rtype` at `name`.
    fn answer(&self, name: &str, rtype: &str) -> Vec<DigRecord> {
        let fqdn = self.fqdn(name);
        let out = self.dig(&[&fqdn, rtype]);
        let text = String::from_utf8_lossy(&out.stdout);
        let status = text
            .lines()
            .find_map(|l| l.split_once("status: "))
            .and_then(|(_, rest)| rest.split(',').next())
            .unwrap_or("no answer");
        assert!(
            status == "NOERROR" || status == "NXDOMAIN",
            "dig {fqdn} {rtype} at {}: {status}\n{text}{}",
            self.addr,
            String::from_utf8_lossy(&out.stderr)
        );
        parse_answer(&text)
            .into_iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .collect()
    }

    /// Every record of the zone by AXFR except the SOA, as sorted
    /// `name ttl type rdata` lines: to check that nothing else was touched.
    pub fn zone_records(&self) -> Vec<String> {
        let zone = format!("{}.", self.zone());
        let out = self.dig(&[&zone, "AXFR"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<String> = parse_answer(&text)
            .into_iter()
            .filter(|r| r.rtype != "SOA")
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.rtype, r.rdata))
            .collect();
        lines.sort();
        lines.dedup();
        assert!(!lines.is_empty(), "AXFR of {zone} failed:\n{text}");
        lines
    }

    fn dig(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(process::tool("dig"));
        cmd.args([
            "+tcp",
            "+noall",
            "+answer",
            "+comments",
            "+time=2",
            "+tries=1",
        ])
        .arg("-k")
        .arg(&self.key_file)
        .args(["-p", &self.addr.port().to_string()])
        .arg(format!("@{}", self.addr.ip()))
        .args(args);
        process::run_with_timeout(cmd, None, Duration::from_secs(15))
    }

    /// Polls [`Bind::query`] every 50 ms until `predicate` holds on the
    /// answer, and returns it; panics with the last answer after `timeout`.
    pub fn wait_for(
        &self,
        name: &str,
        rtype: &str,
        predicate: impl Fn(&[String]) -> bool,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.query(name, rtype);
            if predicate(&answer) {
                return answer;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} {rtype} did not reach the expected state within {timeout:?}; last answer: {answer:?}",
                    self.fqdn(name)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `nsupdate -k KEY_FILE` over TCP with `script`. `server` and
    /// `zone` lines are added unless the script has them, and `send` unless
    /// it ends with one. Returns the output, whatever the outcome.
    pub fn nsupdate_with(&self, key_file: &Path, script: &str) -> Output {
        let mut full = String::new();
        if !script
            .lines()
            .any(|l| l.trim_start().starts_with("server "))
        {
            let _ = writeln!(full, "server {} {}", self.addr.ip(), self.addr.port());
        }
        if !script.lines().any(|l| l.trim_start().starts_with("zone ")) {
            let _ = writeln!(full, "zone {}", self.zone());
        }
        full.push_str(script.trim_end());
        full.push('\n');
        let last = script.lines().rev().find(|l| !l.trim().is_empty());
        if last.map(str::trim) != Some("send") {
            full.push_str("send\n");
        }
        let mut cmd = Command::new(process::tool("nsupdate"));
        cmd.args(["-v", "-t", "5"]).arg("-k").arg(key_file);
        process::run_with_timeout(cmd, Some(&full), Duration::from_secs(20))
    }

    /// [`Bind::nsupdate_with`] the main key; panics unless it succeeds.
    pub fn nsupdate(&self, script: &str) {
        let out = self.nsupdate_with(&self.key_file, script);
        assert!(
            out.status.success(),
            "nsupdate failed ({}): {}{}\nscript:\n{script}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether named is running (not stopped, not crashed).
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| !p.has_exited())
    }

    /// Stops named with SIGTERM and waits for it (it exits in ~0.1 s): the
    /// primary goes away; its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("TERM", Duration::from_secs(10));
        }
    }

    /// Starts named again on the same address with the same zone state
    /// (dynamic updates survive in the zone's journal).
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "named is still running");
        self.spawn();
    }

    /// Replaces the update policy and restarts named with it.
    pub fn set_update_policy(&mut self, policy: &str) {
        self.opts.update_policy = Some(policy.to_owned());
        self.write_conf();
        let was_running = self.process.is_some();
        self.stop();
        if was_running {
            self.spawn();
        }
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.message);
        }
    }

    fn try_spawn(&mut self) -> Result<(), StartError> {
        let stderr =
            std::fs::File::create(self.dir.path().join("named.stderr")).expect("stderr file");
        let mut cmd = Command::new(process::tool("named"));
        // -f: foreground, but logging as named.conf says (-g would force it
        // all to stderr). -n 1: one worker thread. Running as root, named
        // keeps root (no -u): it only touches the tempdir.
        cmd.args(["-f", "-n", "1", "-c"])
            .arg(self.dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let process = Guarded::spawn(cmd, false).expect("spawn named");
        self.process = Some(process);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("not listening");
        loop {
            if !self.is_running() {
                if let Some(mut p) = self.process.take() {
                    p.stop("KILL", Duration::ZERO);
                }
                return Err(StartError {
                    exited: true,
                    message: format!(
                        "named exited at start (it can only listen on an address configured on an \
                         interface: 127.0.0.1, not 127.A.B.C).\nstderr:\n{}\nlog:\n{}",
                        std::fs::read_to_string(self.dir.path().join("named.stderr"))
                            .unwrap_or_default(),
                        self.log_text()
                    ),
                });
            }
            let listening =
                TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok();
            if listening {
                let out = self.dig(&[&format!("{}.", self.zone()), "SOA"]);
                let text = String::from_utf8_lossy(&out.stdout);
                if parse_answer(&text).iter().any(|r| r.rtype == "SOA") {
                    return Ok(());
                }
                last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
            }
            if Instant::now() >= deadline {
                return Err(StartError {
                    exited: false,
                    message: format!(
                        "named did not answer the SOA of {} at {} within {START_TIMEOUT:?}.\nlast dig:\n{last}\nlog:\n{}",
                        self.zone(),
                        self.addr,
                        self.log_text()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn write_conf(&self) {
        let dir = self.dir.path().display().to_string();
        let zone = self.zone();
        let mut keys = self.key.to_conf();
        let mut policy = format!("grant {} zonesub ANY;", self.key.name);
        for k in &self.extra_keys {
            keys.push_str(&k.to_conf());
            let _ = write!(policy, " grant {} zonesub ANY;", k.name);
        }
        std::fs::write(self.dir.path().join("keys.conf"), keys).expect("write keys.conf");
        let policy = self.opts.update_policy.clone().unwrap_or(policy);
        let ip = self.addr.ip();
        let port = self.addr.port();
        let listen = match ip {
            IpAddr::V4(_) => {
                format!("listen-on port {port} {{ {ip}; }};\n  listen-on-v6 {{ none; }};")
            }
            IpAddr::V6(_) => {
                format!("listen-on {{ none; }};\n  listen-on-v6 port {port} {{ {ip}; }};")
            }
        };
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
  notify no;
  allow-query {{ {allow_query} }};
  allow-transfer {{ any; }};
  {extra}
}};
// No rndc channel: concurrent servers would all want 127.0.0.1:953.
controls {{ }};
logging {{
  channel harness {{
    file "{dir}/named.log";
    severity info;
    print-time yes;
    print-category yes;
    print-severity yes;
  }};
  category default {{ harness; }};
  category general {{ harness; }};
  category security {{ harness; }};
  category update {{ harness; }};
  category update-security {{ harness; }};
}};
zone "{zone}" {{
  type primary;
  file "{dir}/{zone}.zone";
  update-policy {{ {policy} }};
}};
"#,
            allow_query = self.opts.allow_query,
            extra = self.opts.extra_options,
        );
        std::fs::write(self.dir.path().join("named.conf"), conf).expect("write named.conf");
    }

    fn write_zone(&self) {
        let zone = self.zone();
        let ns_ip = match self.addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(_) => "127.0.0.1".to_owned(),
        };
        let mut text = format!(
            "$ORIGIN {zone}.\n$TTL 3600\n\
             @ 3600 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n\
             @ 3600 IN NS ns.{zone}.\n\
             ns 3600 IN A {ns_ip}\n"
        );
        if self.opts.foreign_records {
            for (name, ttl, rtype, rdata) in FOREIGN_RECORDS {
                let _ = writeln!(text, "{name} {ttl} IN {rtype} {rdata}");
            }
        }
        for line in &self.opts.records {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(self.dir.path().join(format!("{zone}.zone")), text).expect("write zone");
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        // SIGKILL: a test that is over needs no clean shutdown.
        if let Some(mut p) = self.process.take() {
            p.stop("KILL", Duration::from_secs(5));
        }
    }
}

/// Why named did not come up.
struct StartError {
    /// It exited (e.g. its port was taken), as opposed to never answering.
    exited: bool,
    message: String,
}

/// One record of dig's answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigRecord {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub rdata: String,
}

/// Parses `+noall +answer` output: `name ttl class type rdata...` lines.
pub fn parse_answer(text: &str) -> Vec<DigRecord> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .filter_map(|line| {
            let mut rest = line;
            let mut fields = Vec::with_capacity(4);
            for _ in 0..4 {
                rest = rest.trim_start();
                let end = rest.find(char::is_whitespace)?;
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            Some(DigRecord {
                name: fields[0].to_owned(),
                ttl: fields[1].parse().ok()?,
                rtype: fields[3].to_owned(),
                rdata: rest.trim().to_owned(),
            })
        })
        .collect()
}
