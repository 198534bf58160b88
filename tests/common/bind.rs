//! A real BIND primary (`named`) in a tempdir, for one test: one zone or
//! several, optionally signed by named itself, optionally announcing its
//! changes to [`Secondary`](super::secondary::Secondary) servers.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::dig::{self, Dig, SignedAnswer};
pub use super::dig::{DigRecord, parse_answer};
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

/// One zone of a BIND primary besides the main one ([`BindOpts::also_zone`]).
/// The main zone is described by [`BindOpts`]' own fields.
#[derive(Clone, Debug)]
pub struct ZoneOpts {
    /// Without the final dot, e.g. `example.org`.
    pub name: String,
    /// Include [`FOREIGN_RECORDS`] (default true).
    pub foreign_records: bool,
    /// More zone file lines, relative to the zone (`mail1 3600 IN A 127.1.2.11`).
    pub records: Vec<String>,
    /// The body of `update-policy { ... }`; default: [`BindOpts::update_policy`]
    /// (every known key may change anything in the zone).
    pub update_policy: Option<String>,
    /// Signed by named itself: `dnssec-policy default; inline-signing yes;`.
    pub dnssec: bool,
    /// Raw lines added inside `zone { }`.
    pub options: String,
}

impl ZoneOpts {
    pub fn new(name: &str) -> ZoneOpts {
        ZoneOpts {
            name: name.trim_end_matches('.').to_owned(),
            foreign_records: true,
            records: Vec::new(),
            update_policy: None,
            dnssec: false,
            options: String::new(),
        }
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
    pub fn update_policy(mut self, policy: &str) -> Self {
        self.update_policy = Some(policy.to_owned());
        self
    }
    /// `dnssec-policy default; inline-signing yes;`: named makes the keys
    /// (one ECDSA P-256 CSK, in `key-directory`) and signs the zone and
    /// every UPDATE itself.
    pub fn dnssec(mut self) -> Self {
        self.dnssec = true;
        self
    }
    /// Raw lines inside `zone { }`, e.g. `"max-journal-size 1m;"`.
    pub fn options(mut self, lines: &str) -> Self {
        self.options.push_str(lines);
        self.options.push('\n');
        self
    }
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
    /// The main zone: the one [`Bind::zone`], [`Bind::query`] and the other
    /// zone-less helpers work on.
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
    /// Include [`FOREIGN_RECORDS`] in the main zone (default true).
    pub foreign_records: bool,
    /// More zone file lines of the main zone, e.g. `mail1 3600 IN A 127.1.2.11`.
    pub records: Vec<String>,
    /// Raw lines added inside `options { }`.
    pub extra_options: String,
    /// Sign the main zone (see [`ZoneOpts::dnssec`]).
    pub dnssec: bool,
    /// Raw lines inside the main zone's `zone { }`.
    pub zone_options: String,
    /// The zones served besides the main one, each with its own records and
    /// the same keys.
    pub more_zones: Vec<ZoneOpts>,
    /// `notify-delay` in seconds: how long named waits between two rounds of
    /// NOTIFY for a zone. A change made at least that long after the last
    /// round (or after the zone's load, or a reload) is announced at once;
    /// one made sooner waits for the delay to pass. `None`: BIND's
    /// default, 5 s.
    pub notify_delay: Option<u32>,
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
            dnssec: false,
            zone_options: String::new(),
            more_zones: Vec::new(),
            notify_delay: None,
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
    /// Sign the main zone: `dnssec-policy default; inline-signing yes;`.
    pub fn dnssec(mut self) -> Self {
        self.dnssec = true;
        self
    }
    /// Raw lines inside the main zone's `zone { }`.
    pub fn zone_options(mut self, lines: &str) -> Self {
        self.zone_options.push_str(lines);
        self.zone_options.push('\n');
        self
    }
    /// Serve another zone too, e.g.
    /// `.also_zone(ZoneOpts::new("example.org").record("mail1 3600 IN A 192.0.2.11"))`.
    pub fn also_zone(mut self, zone: ZoneOpts) -> Self {
        self.more_zones.push(zone);
        self
    }
    /// `notify-delay SECONDS;` (0: every change is announced at once, and
    /// with `notify-rate 1000;`, NOTIFYs of several zones go together).
    pub fn notify_delay(mut self, seconds: u32) -> Self {
        self.notify_delay = Some(seconds);
        self
    }

    /// Every zone, the main one first, as [`ZoneOpts`].
    pub fn all_zones(&self) -> Vec<ZoneOpts> {
        let main = ZoneOpts {
            name: self.zone.clone(),
            foreign_records: self.foreign_records,
            records: self.records.clone(),
            update_policy: None,
            dnssec: self.dnssec,
            options: self.zone_options.clone(),
        };
        std::iter::once(main)
            .chain(self.more_zones.iter().cloned())
            .collect()
    }
}

/// The name of the key primaries and secondaries sign NOTIFY and zone
/// transfers with (a key of its own, as in a real deployment: the update
/// key stays with pigeon-dns).
pub const TRANSFER_KEY: &str = "transfer";

/// A secondary the primary announces changes to (`also-notify`).
#[derive(Clone, Debug)]
struct NotifyTarget {
    addr: SocketAddr,
    zones: Vec<String>,
}

/// `named` serving one or more primary zones that accept TSIG-signed
/// updates. Killed on drop; its files live in a tempdir.
pub struct Bind {
    dir: tempfile::TempDir,
    opts: BindOpts,
    addr: SocketAddr,
    key: TsigKey,
    key_file: PathBuf,
    extra_keys: Vec<TsigKey>,
    transfer_key: TsigKey,
    notify_targets: Vec<NotifyTarget>,
    process: Option<Guarded>,
}

impl Bind {
    /// Generates the keys, writes named.conf and the zones, starts `named`
    /// and waits until it answers every zone's SOA over TCP (for a signed
    /// zone: also its DNSKEY).
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
        let transfer_key = TsigKey::generate(TRANSFER_KEY, "hmac-sha256");
        let mut names: Vec<&str> = std::iter::once(opts.zone.as_str())
            .chain(opts.more_zones.iter().map(|z| z.name.as_str()))
            .collect();
        names.sort_unstable();
        let zone_count = names.len();
        names.dedup();
        assert_eq!(names.len(), zone_count, "a zone is named twice: {names:?}");
        std::fs::create_dir(dir.path().join("keys")).expect("mkdir keys");
        let mut bind = Bind {
            dir,
            opts,
            addr: SocketAddr::new(ip, port),
            key,
            key_file,
            extra_keys,
            transfer_key,
            notify_targets: Vec::new(),
            process: None,
        };
        assert!(named.is_file());
        bind.write_zones();
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
    /// The main zone's name without the final dot, e.g. `example.com`.
    pub fn zone(&self) -> &str {
        &self.opts.zone
    }
    /// Every zone served, the main one first.
    pub fn zones(&self) -> Vec<String> {
        self.opts.all_zones().into_iter().map(|z| z.name).collect()
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
    /// The key NOTIFY and zone transfers to secondaries are signed with
    /// ([`TRANSFER_KEY`]).
    pub fn transfer_key(&self) -> &TsigKey {
        &self.transfer_key
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
        self.wrong_secret_key().1
    }
    /// [`Bind::wrong_secret_key_file`] and the key it holds (e.g. to look
    /// for its secret where it must not be).
    pub fn wrong_secret_key(&self) -> (TsigKey, PathBuf) {
        let wrong = self.key.with_wrong_secret();
        let file = write_key_file(&self.dir.path().join("wrong-secret.key"), &[&wrong]);
        (wrong, file)
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
    /// The tempdir (named.conf, the zones, their journals, named.log; the
    /// DNSSEC keys under `keys/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("named.log")
    }

    /// named's log (categories default, general, security, update,
    /// update-security, notify, xfer-out and dnssec at info, with time,
    /// category and severity).
    pub fn log_text(&self) -> String {
        process::log_text(&self.log_path())
    }
    /// The log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        process::log_lines(&self.log_path(), needle)
    }
    /// One line per record added or deleted by an UPDATE (`adding an RR`,
    /// `deleting an RR`, `deleting rrset`), and per UPDATE that failed
    /// (`update failed`, `update unsuccessful`): the `update` category.
    pub fn update_log(&self) -> Vec<String> {
        self.log_lines("updating zone")
    }
    /// How many UPDATE messages BIND logged: runs of `updating zone` lines
    /// from one client (`@0x.. ip#port`: a connection, or a UDP source
    /// port). Not by timestamp: the lines of one message can be
    /// milliseconds apart on a loaded machine. A good estimate (two UPDATEs
    /// in a row over one TCP connection count once); for an exact count of
    /// the UPDATEs that changed the zone, use [`Bind::serial`] differences.
    pub fn update_messages_logged(&self) -> usize {
        let mut keys: Vec<String> = self
            .update_log()
            .iter()
            .filter_map(|l| {
                // "DD-Mon-YYYY HH:MM:SS.mmm update: info: client @0x.. ip#port/key k: updating zone ..."
                let (head, _) = l.split_once(": updating zone")?;
                Some(head.split_once("client ")?.1.to_owned())
            })
            .collect();
        keys.dedup();
        keys.len()
    }
    /// The outgoing transfers of `zone` the log shows (xfer-out), e.g.
    /// `... transfer of 'example.com/IN': IXFR started: TSIG transfer (serial 2 -> 3)`.
    pub fn xfer_out_log(&self, zone: &str) -> Vec<String> {
        self.log_lines(&format!("transfer of '{zone}/IN'"))
    }

    /// `dig` at this server, signed with the main key.
    pub fn dig(&self) -> Dig {
        Dig::new(self.addr, Some(&self.key_file))
    }

    /// The main zone's serial: it grows by one with every UPDATE that
    /// changed it (for a signed zone: the signed version's serial, which
    /// also grows when named re-signs).
    pub fn serial(&self) -> u32 {
        self.serial_of(self.zone())
    }
    /// The serial of any zone served.
    pub fn serial_of(&self, zone: &str) -> u32 {
        self.dig().serial(zone)
    }

    /// `name` (in the main zone) as an absolute name with the final dot: `@`
    /// is the apex, a name ending in a dot or in the zone is absolute, any
    /// other is relative.
    pub fn fqdn(&self, name: &str) -> String {
        dig::fqdn(self.zone(), name)
    }

    /// The rdata of `name`'s records of `rtype`, sorted, as dig prints them
    /// (e.g. `10 mail1.example.com.`, `"v=spf1 -all"`). Empty for NXDOMAIN
    /// or no data; panics on any other rcode. Over TCP, TSIG-signed.
    pub fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.query_in(self.zone(), name, rtype)
    }
    /// As [`Bind::query`], with each record's TTL.
    pub fn query_with_ttl(&self, name: &str, rtype: &str) -> Vec<(u32, String)> {
        self.query_with_ttl_in(self.zone(), name, rtype)
    }
    /// [`Bind::query`] in `zone` (names relative to it):
    /// `bind.query_in("example.org", "@", "MX")`.
    pub fn query_in(&self, zone: &str, name: &str, rtype: &str) -> Vec<String> {
        self.dig().query(zone, name, rtype)
    }
    pub fn query_with_ttl_in(&self, zone: &str, name: &str, rtype: &str) -> Vec<(u32, String)> {
        self.dig().query_with_ttl(zone, name, rtype)
    }
    /// The owner names of `name`'s records of `rtype` as BIND answers them
    /// (in the case the zone stores).
    pub fn query_names(&self, name: &str, rtype: &str) -> Vec<String> {
        self.dig().query_names(self.zone(), name, rtype)
    }

    /// Every record of the main zone by AXFR except the SOA, as sorted
    /// `name ttl type rdata` lines: to check that nothing else was touched.
    pub fn zone_records(&self) -> Vec<String> {
        self.zone_records_of(self.zone())
    }
    /// [`Bind::zone_records`] of any zone served.
    pub fn zone_records_of(&self, zone: &str) -> Vec<String> {
        self.dig().zone_records(zone)
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
        self.wait_for_in(self.zone(), name, rtype, predicate, timeout)
    }
    /// [`Bind::wait_for`] in `zone`.
    pub fn wait_for_in(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        predicate: impl Fn(&[String]) -> bool,
        timeout: Duration,
    ) -> Vec<String> {
        self.dig().wait_for(zone, name, rtype, predicate, timeout)
    }

    /// `dig +dnssec`: the records of `rtype` at `name` in `zone` and the
    /// RRSIGs that came with them.
    pub fn query_dnssec(&self, zone: &str, name: &str, rtype: &str) -> SignedAnswer {
        self.dig().query_dnssec(zone, name, rtype)
    }
    /// Waits until `zone` is signed: its DNSKEY RRset is served with an
    /// RRSIG, and so is its SOA. Returns how long that took from the call.
    pub fn wait_signed(&self, zone: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        net::wait_until(&format!("{zone} to be signed"), timeout, || {
            let dnskey = self.query_dnssec(zone, "@", "DNSKEY");
            let soa = self.query_dnssec(zone, "@", "SOA");
            (!dnskey.records.is_empty()
                && dnskey.is_signed_by("DNSKEY", zone)
                && soa.is_signed_by("SOA", zone))
            .then_some(())
        });
        start.elapsed()
    }
    /// Polls `dig +dnssec` every 5 ms until the answer for `name`/`rtype`
    /// in `zone` satisfies `predicate` and an RRSIG of the zone covers it;
    /// returns that answer and how long it took from the call.
    pub fn wait_signed_answer(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        predicate: impl Fn(&SignedAnswer) -> bool,
        timeout: Duration,
    ) -> (SignedAnswer, Duration) {
        let start = Instant::now();
        loop {
            let answer = self.query_dnssec(zone, name, rtype);
            if predicate(&answer) && answer.is_signed_by(rtype, zone) {
                return (answer, start.elapsed());
            }
            if start.elapsed() >= timeout {
                panic!(
                    "no signed answer for {} {rtype} within {timeout:?}; last: {answer:?}",
                    dig::fqdn(zone, name)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs `nsupdate -k KEY_FILE` over TCP with `script`. `server` and
    /// `zone` (the main zone) lines are added unless the script has them,
    /// and `send` unless it ends with one. Returns the output, whatever the
    /// outcome.
    pub fn nsupdate_with(&self, key_file: &Path, script: &str) -> Output {
        dig::nsupdate(self.addr, key_file, self.zone(), script)
    }
    /// [`Bind::nsupdate_with`] the main key; panics unless it succeeds.
    pub fn nsupdate(&self, script: &str) {
        self.nsupdate_in(self.zone(), script);
    }
    /// [`Bind::nsupdate`] for `zone` (the `zone` line the script gets
    /// unless it has one); panics unless it succeeds.
    pub fn nsupdate_in(&self, zone: &str, script: &str) {
        let out = dig::nsupdate(self.addr, &self.key_file, zone, script);
        dig::assert_nsupdate_ok(&out, script);
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

    /// Sets `notify-delay` and reloads named (SIGHUP, as `rndc reload`).
    pub fn set_notify_delay(&mut self, seconds: Option<u32>) {
        self.opts.notify_delay = seconds;
        self.reload();
    }

    /// Has `zones` announced to a secondary at `addr` by NOTIFY signed with
    /// the transfer key, lets the transfer key (and the update keys, for
    /// the tests' own AXFR) transfer them, and reloads named.
    /// [`Secondary::start`](super::secondary::Secondary::start) calls it.
    pub fn add_secondary(&mut self, addr: SocketAddr, zones: &[String]) {
        for zone in zones {
            assert!(
                self.zones().contains(zone),
                "{} does not serve {zone}",
                self.addr
            );
        }
        self.notify_targets.retain(|t| t.addr != addr);
        self.notify_targets.push(NotifyTarget {
            addr,
            zones: zones.to_vec(),
        });
        self.reload();
    }

    /// Rewrites named.conf and has the running named reload it (SIGHUP);
    /// waits until it reports the reload done. Panics if it refuses the
    /// new configuration.
    pub fn reload(&mut self) {
        self.write_conf();
        let Some(pid) = self.process.as_ref().map(Guarded::pid) else {
            return;
        };
        let done = |log: &str| log.matches("reloading zones succeeded").count();
        let before = done(&self.log_text());
        process::signal(pid, "HUP");
        net::wait_until("named to reload its configuration", START_TIMEOUT, || {
            let log = self.log_text();
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("reloading configuration failed"))
            {
                panic!("named refused its new configuration: {line}\n{log}");
            }
            (done(&log) > before).then_some(())
        });
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.message);
        }
    }

    fn try_spawn(&mut self) -> Result<(), StartError> {
        self.process = Some(spawn_named(self.dir.path()));
        // A signed zone answers once named has made its keys and signed it
        // (~30 ms): only then is it of use to a test.
        let dig = self.dig();
        let zones = self.opts.all_zones();
        wait_named_ready(&mut self.process, self.dir.path(), self.addr, || {
            zones.iter().all(|z| {
                dig.has_soa(&z.name)
                    && (!z.dnssec
                        || dig
                            .query_dnssec(&z.name, "@", "SOA")
                            .is_signed_by("SOA", &z.name))
            })
        })
    }

    fn write_conf(&self) {
        let dir = self.dir.path().display().to_string();
        let mut keys = self.key.to_conf();
        let mut policy = format!("grant {} zonesub ANY;", self.key.name);
        let mut transfer_acl = format!("key {}; key {};", self.transfer_key.name, self.key.name);
        for k in &self.extra_keys {
            keys.push_str(&k.to_conf());
            let _ = write!(policy, " grant {} zonesub ANY;", k.name);
            let _ = write!(transfer_acl, " key {};", k.name);
        }
        keys.push_str(&self.transfer_key.to_conf());
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
        let notify_delay = self
            .opts
            .notify_delay
            .map(|s| match s {
                // The documented settings: every change announced at once,
                // and NOTIFYs not paced in 500 ms ticks (notify-rate 20).
                0 => "notify-delay 0;\n  notify-rate 1000;".to_string(),
                s => format!("notify-delay {s};"),
            })
            .unwrap_or_default();
        let mut zones = String::new();
        for zone in self.opts.all_zones() {
            let name = &zone.name;
            let policy = zone.update_policy.as_deref().unwrap_or(&policy);
            let _ = write!(
                zones,
                "zone \"{name}\" {{\n  type primary;\n  file \"{dir}/{name}.zone\";\n  update-policy {{ {policy} }};\n"
            );
            if zone.dnssec {
                let _ = writeln!(
                    zones,
                    "  dnssec-policy default;\n  inline-signing yes;\n  key-directory \"{dir}/keys\";"
                );
            }
            let targets: Vec<&NotifyTarget> = self
                .notify_targets
                .iter()
                .filter(|t| t.zones.contains(name))
                .collect();
            if !targets.is_empty() {
                let also: String = targets
                    .iter()
                    .map(|t| {
                        format!(
                            "{} port {} key {}; ",
                            t.addr.ip(),
                            t.addr.port(),
                            self.transfer_key.name
                        )
                    })
                    .collect();
                // max-ixfr-ratio: BIND 9.18 sends a whole AXFR instead of an
                // IXFR whose changes outweigh the zone (default 100%), and a
                // test zone is so small that its first change does.
                let _ = writeln!(
                    zones,
                    "  notify explicit;\n  also-notify {{ {also}}};\n  allow-transfer {{ {transfer_acl} }};\n  max-ixfr-ratio unlimited;"
                );
            }
            zones.push_str(&zone.options);
            zones.push_str("};\n");
        }
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
  {notify_delay}
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
  category notify {{ harness; }};
  category xfer-out {{ harness; }};
  category dnssec {{ harness; }};
}};
{zones}"#,
            allow_query = self.opts.allow_query,
            extra = self.opts.extra_options,
        );
        std::fs::write(self.dir.path().join("named.conf"), conf).expect("write named.conf");
    }

    fn write_zones(&self) {
        let ns_ip = match self.addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(_) => "127.0.0.1".to_owned(),
        };
        for zone in self.opts.all_zones() {
            let text = zone_file(&zone.name, &ns_ip, zone.foreign_records, &zone.records);
            std::fs::write(self.dir.path().join(format!("{}.zone", zone.name)), text)
                .expect("write zone");
        }
    }
}

/// A zone file: SOA (serial 1), NS `ns.<zone>` with its A record, then
/// [`FOREIGN_RECORDS`] if asked, then `records`.
pub fn zone_file(zone: &str, ns_ip: &str, foreign_records: bool, records: &[String]) -> String {
    let mut text = format!(
        "$ORIGIN {zone}.\n$TTL 3600\n\
         @ 3600 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n\
         @ 3600 IN NS ns.{zone}.\n\
         ns 3600 IN A {ns_ip}\n"
    );
    if foreign_records {
        for (name, ttl, rtype, rdata) in FOREIGN_RECORDS {
            let _ = writeln!(text, "{name} {ttl} IN {rtype} {rdata}");
        }
    }
    for line in records {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Starts `named -f` on `dir/named.conf`, its stderr to `dir/named.stderr`.
pub(super) fn spawn_named(dir: &Path) -> Guarded {
    let stderr = std::fs::File::create(dir.join("named.stderr")).expect("stderr file");
    let mut cmd = Command::new(process::tool("named"));
    // -f: foreground, but logging as named.conf says (-g would force it
    // all to stderr). -n 1: one worker thread. Running as root, named
    // keeps root (no -u): it only touches the tempdir.
    cmd.args(["-f", "-n", "1", "-c"])
        .arg(dir.join("named.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Guarded::spawn(cmd, false).expect("spawn named")
}

/// Waits until the named in `process` (files in `dir`) listens on `addr`
/// and `ready` holds; on failure takes the process away and says why.
pub(super) fn wait_named_ready(
    process: &mut Option<Guarded>,
    dir: &Path,
    addr: SocketAddr,
    mut ready: impl FnMut() -> bool,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let log = || std::fs::read_to_string(dir.join("named.log")).unwrap_or_default();
    loop {
        if process.as_ref().is_none_or(|p| p.has_exited()) {
            if let Some(mut p) = process.take() {
                p.stop("KILL", Duration::ZERO);
            }
            return Err(StartError {
                exited: true,
                message: format!(
                    "named exited at start (it can only listen on an address configured on an \
                     interface: 127.0.0.1, not 127.A.B.C).\nstderr:\n{}\nlog:\n{}",
                    std::fs::read_to_string(dir.join("named.stderr")).unwrap_or_default(),
                    log()
                ),
            });
        }
        let listening = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        if listening && ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError {
                exited: false,
                message: format!(
                    "named at {addr} did not serve its zones within {START_TIMEOUT:?}.\nlog:\n{}",
                    log()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
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
pub(super) struct StartError {
    /// It exited (e.g. its port was taken), as opposed to never answering.
    pub exited: bool,
    pub message: String,
}
