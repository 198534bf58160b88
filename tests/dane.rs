//! DANE end to end (contract.md, "DANE (TLSA)"): BIND signs the dynamic
//! zone itself (`dnssec-policy default; inline-signing yes;`), dovecot
//! nodes serve submission with STARTTLS, each with its own key made here,
//! and pigeon-dns judges them by the TLSA records at
//! `_<port>._tcp.mailN.example.com` (`verify`) or keeps those records in
//! step with the keys the nodes serve (`manage`).
//!
//! The `manage` tests run a watcher that samples the MX and TLSA RRsets
//! every 50 ms for the whole test (UDP queries with the DO bit: every TLSA
//! RRset read must come signed) and check the contract's invariant on the
//! samples: every node in the MX serves a key whose TLSA record had been
//! published for at least twice the TTL. TTLs are 1 s (hold-out 2 s).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use data_encoding::HEXLOWER;
use hickory_proto::rr::RecordType;
use rcgen::{KeyPair, PublicKeyData};

use common::cluster::host_records;
use common::dig::query_dnssec_native;
use common::probe_table::{probe, row, sample};
use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, Dovecot, DovecotOpts, DovecotPorts, HTTP_PORT, Leaf,
    NodeSpec, PoolSpec, Subnet, TestCa, normalize_tlsa, toml_str, wait_until,
};
use pigeon_dns::config::{CheckKind, TlsOptions};
use pigeon_dns::probe::{DaneSpec, ProbeSpec, Prober};

const ZONE: &str = "example.com";
/// Anything that takes a few probe rounds and an UPDATE.
const CONVERGE: Duration = Duration::from_secs(15);
/// `dns.ttl` and the TTL of every TLSA record here: the hold-out is twice it.
const TTL: Duration = Duration::from_secs(1);
const HOLD: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// The lab

struct Node {
    name: String,
    host: String,
    ip: IpAddr,
    /// The certificate and key it serves (their files are what dovecot reads).
    leaf: Leaf,
    dovecot: Dovecot,
}

struct DaneLab {
    subnet: Subnet,
    bind: Bind,
    ca: TestCa,
    /// The submission port every node listens on (STARTTLS).
    port: u16,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// The SHA-256 of a leaf's SubjectPublicKeyInfo in lower-case hex (the data
/// of its `3 1 1` record), from the key rcgen made.
fn digest(leaf: &Leaf) -> String {
    let key = KeyPair::from_pem(&leaf.key_pem).expect("leaf key");
    let spki = key.subject_public_key_info();
    HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref())
}

impl DaneLab {
    /// A signed zone with an A record per node host, a CA, and `n` dovecot
    /// nodes serving submission with STARTTLS, each its own leaf.
    fn start(n: usize, signed: bool) -> DaneLab {
        let subnet = Subnet::new();
        let mut opts = BindOpts::default();
        if signed {
            opts = opts.dnssec();
        }
        for line in host_records(&subnet, n) {
            opts = opts.record(&line);
        }
        let bind = Bind::start(opts);
        if signed {
            bind.wait_signed(ZONE, CONVERGE);
        }
        let ca = TestCa::new("pigeon-dns DANE test CA");
        let ips: Vec<IpAddr> = (0..n).map(|i| subnet.node_ip(i)).collect();
        let ports = DovecotPorts::free_on(&ips);
        let nodes = ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| {
                let host = format!("mail{}.{ZONE}", i + 1);
                let leaf = ca.leaf(&[&host]);
                let opts = DovecotOpts::new(ip, ports)
                    .hostname(&host)
                    .tls(leaf.tls_files());
                Node {
                    name: format!("mail{}", i + 1),
                    host,
                    ip,
                    leaf,
                    dovecot: Dovecot::start_with(opts),
                }
            })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("pigeon-dane-")
            .tempdir()
            .expect("tempdir");
        DaneLab {
            subnet,
            bind,
            ca,
            port: ports.submission,
            nodes,
            dir,
        }
    }

    fn node(&self, n: usize) -> &Node {
        &self.nodes[n - 1]
    }

    /// `_<port>._tcp.mailN.example.com.`
    fn owner(&self, n: usize) -> String {
        format!("_{}._tcp.{}.", self.port, self.node(n).host)
    }

    fn http(&self) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(2), HTTP_PORT)
    }

    /// Every node, and the MX pool `@` on submission with STARTTLS and
    /// `dane = mode`; TTLs of 1 s; probes every 500 ms (a STARTTLS
    /// handshake on a loaded 2-core machine needs more than 150 ms).
    fn config(&self, mode: &str) -> ConfigBuilder {
        let mut cfg = ConfigBuilder::for_bind(&self.bind)
            .dns("ttl", &toml_str("1s"))
            .http(self.http())
            .probe("interval", &toml_str("500ms"))
            .probe("timeout", &toml_str("400ms"));
        for node in &self.nodes {
            cfg = cfg.node(NodeSpec::new(&node.name, &[node.ip]).host(&node.host));
        }
        cfg.pool(
            PoolSpec::mx("@", "submission", 10)
                .port(self.port)
                .set("starttls", "true")
                .set_str("dane", mode)
                .set_str("tls_ca_file", &self.ca.ca_file().display().to_string()),
        )
    }

    fn write_config(&self, cfg: &ConfigBuilder) -> PathBuf {
        cfg.write(&self.dir.path().join("pigeon-dns.toml"))
    }

    /// `update add` (or `delete`) of TLSA records at mail n's owner.
    fn tlsa(&self, verb: &str, n: usize, records: &[String]) {
        let script: Vec<String> = records
            .iter()
            .map(|r| match verb {
                "add" => format!("update add {} {} TLSA {r}", self.owner(n), TTL.as_secs()),
                _ => format!("update delete {} TLSA {r}", self.owner(n)),
            })
            .collect();
        self.bind.nsupdate(&script.join("\n"));
    }

    /// The nodes' MX hosts at the primary, sorted (the zone's foreign
    /// backup MX left out).
    fn mx(&self) -> Vec<String> {
        let mut hosts: Vec<String> = node_hosts(&self.bind.query("@", "MX")).collect();
        hosts.sort();
        hosts
    }

    /// The MX hosts of nodes `ns`.
    fn hosts(&self, ns: &[usize]) -> Vec<String> {
        let mut hosts: Vec<String> = ns
            .iter()
            .map(|&n| format!("{}.", self.node(n).host))
            .collect();
        hosts.sort();
        hosts
    }

    /// Serves `leaf` on node `n` from now on: its files are overwritten and
    /// dovecot reloaded; returns once a handshake shows the new key.
    fn swap(&mut self, n: usize, leaf: Leaf) {
        let want = digest(&leaf);
        let (addr, host, owner) = (
            SocketAddr::new(self.node(n).ip, self.port),
            self.node(n).host.clone(),
            self.owner(n),
        );
        let node = &mut self.nodes[n - 1];
        leaf.write_to(&node.leaf.files);
        node.leaf = Leaf {
            files: node.leaf.files.clone(),
            ..leaf
        };
        node.dovecot.reload();
        wait_until("dovecot to serve the new key", CONVERGE, || {
            (served_key(addr, &host, &owner).as_deref() == Some(&want)).then_some(())
        });
    }
}

/// The key a node serves over STARTTLS, as a probe sees it: the library's
/// own prober (its handshake keeps the chain for DANE targets).
fn served_key(addr: SocketAddr, host: &str, owner: &str) -> Option<String> {
    let spec = ProbeSpec {
        check: CheckKind::Submission,
        addr,
        timeout: Duration::from_secs(2),
        starttls: true,
        tls_name: host.to_owned(),
        tls: TlsOptions {
            verify: false,
            name: None,
            ca_file: None,
            cert_min_days: 0,
        },
        http_host: host.to_owned(),
        path: "/".to_owned(),
        expect_body: None,
        ehlo_name: "test.example".to_owned(),
        dane: Some(DaneSpec {
            manage: true,
            owner: owner.to_owned(),
            host: host.to_owned(),
        }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(Prober::new().probe(&spec));
    outcome.dane.and_then(|d| d.key).map(|k| k.to_string())
}

/// The exchanges of MX rdata in the zone (the foreign backup MX is not).
fn node_hosts(records: &[String]) -> impl Iterator<Item = String> + '_ {
    records
        .iter()
        .filter_map(|r| r.split_whitespace().nth(1))
        .filter(|host| host.ends_with(&format!(".{ZONE}.")))
        .map(str::to_owned)
}

fn record_of(digest: &str) -> String {
    format!("3 1 1 {digest}")
}

fn labels<'a>(node: &'a str, address: &'a str) -> [(&'a str, &'a str); 3] {
    [("pool", "@"), ("node", node), ("address", address)]
}

// ---------------------------------------------------------------------------
// The watcher

/// One look at the primary.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    /// MX hosts.
    mx: BTreeSet<String>,
    /// Per owner, the `3 1 1` digests of its TLSA RRset.
    keys: BTreeMap<String, BTreeSet<String>>,
}

/// Samples the MX and the owners' TLSA RRsets every 50 ms until dropped.
struct Watcher {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(server: SocketAddr, owners: Vec<String>) -> Watcher {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let next = Instant::now() + Duration::from_millis(50);
                    let sample = look(server, &owners);
                    samples.lock().unwrap().push(sample);
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        };
        Watcher {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    fn last(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().cloned()
    }

    /// Waits until the last sample satisfies `done`; returns it.
    fn wait(&self, what: &str, done: impl Fn(&Sample) -> bool) -> Sample {
        wait_until(what, CONVERGE, || self.last().filter(|s| done(s)))
    }

    fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("watcher thread");
        }
        self.samples()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One sample; every TLSA RRset read must come with its RRSIG.
fn look(server: SocketAddr, owners: &[String]) -> Sample {
    let timeout = Duration::from_secs(1);
    let answer = query_dnssec_native(server, ZONE, "@", RecordType::MX, timeout).expect("MX query");
    let mx = node_hosts(&answer.records).collect();
    let mut keys = BTreeMap::new();
    for owner in owners {
        let answer = query_dnssec_native(server, ZONE, owner, RecordType::TLSA, timeout)
            .expect("TLSA query");
        assert!(
            answer.records.is_empty() || answer.covered.contains(&RecordType::TLSA),
            "the TLSA RRset at {owner} came unsigned: {answer:?}"
        );
        let digests = answer
            .records
            .iter()
            .filter_map(|r| normalize_tlsa(r).strip_prefix("3 1 1 ").map(str::to_owned))
            .collect();
        keys.insert(owner.clone(), digests);
    }
    Sample {
        at: Instant::now(),
        mx,
        keys,
    }
}

/// What a node serves over time: from each instant on, the keys a sender
/// may get (two while a reload is under way).
#[derive(Default)]
struct Serving {
    changes: BTreeMap<String, Vec<(Instant, Vec<String>)>>,
}

impl Serving {
    fn set(&mut self, host: &str, at: Instant, keys: &[&str]) {
        self.changes
            .entry(format!("{host}."))
            .or_default()
            .push((at, keys.iter().map(|k| (*k).to_owned()).collect()));
    }

    fn at(&self, host: &str, t: Instant) -> Vec<String> {
        self.changes
            .get(host)
            .and_then(|c| c.iter().rev().find(|(from, _)| *from <= t))
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default()
    }
}

/// Every sample where a host in the MX may serve a key whose record had
/// not been at its owner for [`HOLD`] (`owner_of`: host → owner), outside
/// the instants `excused` allows.
fn violations(
    samples: &[Sample],
    serving: &Serving,
    owner_of: &dyn Fn(&str) -> String,
    excused: &dyn Fn(&str, Instant) -> bool,
) -> Vec<String> {
    // Per (owner, key): since when it has been there without a gap.
    let mut since: BTreeMap<(String, String), Instant> = BTreeMap::new();
    let mut out = Vec::new();
    for s in samples {
        since.retain(|(owner, key), _| s.keys.get(owner).is_some_and(|k| k.contains(key)));
        for (owner, keys) in &s.keys {
            for key in keys {
                since.entry((owner.clone(), key.clone())).or_insert(s.at);
            }
        }
        for host in &s.mx {
            if excused(host, s.at) {
                continue;
            }
            let owner = owner_of(host);
            for key in serving.at(host, s.at) {
                let aged = since
                    .get(&(owner.clone(), key.clone()))
                    .is_some_and(|t| s.at.duration_since(*t) >= HOLD);
                if !aged {
                    out.push(format!("{:?}: {host} in the MX serving {key}", s.at));
                }
            }
        }
    }
    out
}

/// The interval after `after` during which `host` was out of the MX.
fn held_out(samples: &[Sample], host: &str, after: Instant) -> Option<(Instant, Instant)> {
    let later: Vec<&Sample> = samples.iter().filter(|s| s.at >= after).collect();
    let left = later.iter().position(|s| !s.mx.contains(host))?;
    let back = later[left..].iter().find(|s| s.mx.contains(host))?;
    Some((later[left].at, back.at))
}

// ---------------------------------------------------------------------------
// verify

/// mail1's record matches its key; mail2's matches nothing; mail3 has no
/// TLSA record; mail4 has only PKIX-TA and PKIX-EE records, which SMTP
/// does not use (RFC 7672 §3.1.3). mail2 leaves the MX with the reason in
/// `probe` and the metric at 0, and returns once its record is fixed; the
/// others stay, mail3 and mail4 with "DANE not in force".
#[test]
fn verify_keeps_a_node_whose_key_matches_nothing_out_of_the_mx_until_fixed() {
    let lab = DaneLab::start(4, true);
    let (key1, key2) = (digest(&lab.node(1).leaf), digest(&lab.node(2).leaf));
    let wrong = digest(&lab.ca.leaf(&["elsewhere.example.com"]));
    lab.tlsa("add", 1, &[record_of(&key1)]);
    lab.tlsa("add", 2, &[record_of(&wrong)]);
    let pkix = [format!("0 0 1 {wrong}"), format!("1 1 1 {wrong}")];
    lab.tlsa("add", 4, &pkix);
    for n in [1, 2, 4] {
        let (answer, _) = lab.bind.wait_signed_answer(
            ZONE,
            &lab.owner(n),
            "TLSA",
            |a| !a.records.is_empty(),
            CONVERGE,
        );
        assert!(answer.is_signed_by("TLSA", ZONE), "{answer:?}");
    }
    let cfg = lab.config("verify");
    let path = lab.write_config(&cfg);

    let out = probe(&path);
    assert_eq!(out.code(), Some(1), "mail2 fails");
    let owner = |n: usize| lab.owner(n).trim_end_matches('.').to_owned();
    let r1 = row(&out, "@", "mail1");
    assert_eq!(r1.result, "ok");
    assert!(
        r1.detail.contains(&format!(
            "DANE: matched 3 1 1 {}",
            &key1[..16].to_uppercase()
        )),
        "{}",
        r1.detail
    );
    let r2 = row(&out, "@", "mail2");
    assert_eq!(r2.result, "dane_mismatch");
    assert!(
        r2.detail.starts_with(&format!(
            "dane_mismatch: served key sha256 {key2} matches no TLSA record at {}",
            owner(2)
        )),
        "{}",
        r2.detail
    );
    for n in [3, 4] {
        let r = row(&out, "@", &format!("mail{n}"));
        assert_eq!(r.result, "ok", "{}", r.detail);
        assert!(
            r.detail.contains(&format!(
                "; DANE: not in force (no usable TLSA record at {})",
                owner(n)
            )),
            "{}",
            r.detail
        );
    }

    let daemon = Daemon::spawn(&path, cfg.http_addr());
    let want = lab.hosts(&[1, 3, 4]);
    wait_until(
        &format!("the MX without mail2; log:\n{}", daemon.log_tail(40)),
        CONVERGE,
        || (lab.mx() == want).then_some(()),
    );
    let ip = |n: usize| lab.node(n).ip.to_string();
    let (ip1, ip2, ip3) = (ip(1), ip(2), ip(3));
    daemon.wait_for_metric(
        &sample("pigeon_dns_dane_match", &labels("mail2", &ip2)),
        |v| v == 0.0,
        CONVERGE,
    );
    let metrics = daemon.metrics();
    let problems = metrics.promtool_problems();
    assert!(problems.is_empty(), "promtool check metrics:\n{problems}");
    assert_eq!(
        metrics.get(&sample("pigeon_dns_dane_match", &labels("mail1", &ip1))),
        Some(1.0)
    );
    assert_eq!(
        metrics.get(&sample("pigeon_dns_dane_match", &labels("mail3", &ip3))),
        None,
        "absent while DANE is not in force"
    );
    let owner4 = owner(4);
    assert_eq!(
        metrics.get(&sample(
            "pigeon_dns_tlsa_records",
            &[("zone", ZONE), ("owner", &owner4)]
        )),
        Some(2.0)
    );
    let (_, status) = daemon.http_get("/status").expect("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let dane_of = |node: &str| {
        status["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["node"] == node))
            .map(|t| t["dane"].clone())
    };
    assert_eq!(dane_of("mail2"), Some("mismatch".into()));
    assert_eq!(dane_of("mail3"), Some("not in force".into()));

    // The operator fixes mail2's record: it returns.
    lab.tlsa("delete", 2, &[record_of(&wrong)]);
    lab.tlsa("add", 2, &[record_of(&key2)]);
    let all = lab.hosts(&[1, 2, 3, 4]);
    wait_until("mail2 back in the MX", CONVERGE, || {
        (lab.mx() == all).then_some(())
    });
    daemon.wait_for_metric(
        &sample("pigeon_dns_dane_match", &labels("mail2", &ip2)),
        |v| v == 1.0,
        CONVERGE,
    );
    assert!(
        daemon.log_count("has no DNSKEY") == 0,
        "the zone is signed: {}",
        daemon.log_tail(20)
    );
}

/// DANE needs a signed zone: an unsigned one is warned about, once.
#[test]
fn an_unsigned_zone_is_warned_about_once() {
    let lab = DaneLab::start(1, false);
    let cfg = lab.config("verify");
    let mut daemon = Daemon::spawn(&lab.write_config(&cfg), cfg.http_addr());
    daemon.wait_for_log("has no DNSKEY at its primary", CONVERGE);
    // A resync later (resync_interval is 2 s), still once.
    daemon.wait_reconciles(2.5, CONVERGE);
    assert_eq!(
        daemon.log_count("has no DNSKEY"),
        1,
        "{}",
        daemon.log_tail(20)
    );
}

// ---------------------------------------------------------------------------
// manage

/// The lab with 2 nodes whose current keys' records were published (by
/// hand, before pigeon-dns) at least twice the TTL ago, a watcher running
/// since before they were, and the daemon managing them; returns once both
/// nodes are in the MX.
fn managed(next: Option<(usize, &Leaf)>) -> (DaneLab, Watcher, Daemon) {
    let lab = DaneLab::start(2, true);
    let watcher = Watcher::start(lab.bind.addr(), vec![lab.owner(1), lab.owner(2)]);
    for n in 1..=2 {
        lab.tlsa("add", n, &[record_of(&digest(&lab.node(n).leaf))]);
    }
    let seeded = Instant::now();
    watcher.wait("the records aged twice the TTL", |s| {
        s.at >= seeded + HOLD && s.keys.values().all(|k| k.len() == 1)
    });
    let mut cfg = lab.config("manage");
    if let Some((n, leaf)) = next {
        let file = lab.dir.path().join("next.pem");
        std::fs::write(&file, &leaf.cert_pem).expect("write next.pem");
        let spec = NodeSpec::new(&lab.node(n).name, &[lab.node(n).ip])
            .host(&lab.node(n).host)
            .set("tlsa_next", &format!("[{}]", toml_str("next.pem")));
        cfg.nodes[n - 1] = spec;
    }
    let daemon = Daemon::spawn(&lab.write_config(&cfg), cfg.http_addr());
    let both: BTreeSet<String> = lab.hosts(&[1, 2]).into_iter().collect();
    watcher.wait("both nodes in the MX", |s| s.mx == both);
    (lab, watcher, daemon)
}

/// A key changed without warning: mail1 gets a new certificate and key and
/// dovecot is reloaded. pigeon-dns publishes the new record beside the old
/// one, keeps mail1 out of the MX until the record has been published for
/// twice the TTL, then returns it, and removes the old record. The
/// invariant holds at every sample but between the reload and the probe
/// that sees the new key (no DNS can know a key nobody announced: that is
/// what `tlsa_next` is for).
#[test]
fn manage_holds_a_node_with_a_new_key_out_until_its_record_is_old_enough() {
    let (mut lab, watcher, daemon) = managed(None);
    let old = digest(&lab.node(1).leaf);
    let renewed = lab.ca.leaf(&[&lab.node(1).host]);
    let new = digest(&renewed);
    let mut serving = Serving::default();
    let start = watcher.samples().first().map(|s| s.at).expect("a sample");
    for n in 1..=2 {
        serving.set(&lab.node(n).host, start, &[&digest(&lab.node(n).leaf)]);
    }
    let host1 = format!("{}.", lab.node(1).host);

    let reloading = Instant::now();
    serving.set(&lab.node(1).host, reloading, &[&old, &new]);
    lab.swap(1, renewed);
    serving.set(&lab.node(1).host, Instant::now(), &[&new]);

    // /status tells why and until when mail1 is out.
    let held_note = wait_until("/status to tell the hold-out", CONVERGE, || {
        let (_, body) = daemon.http_get("/status").ok()?;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        status["targets"]
            .as_array()?
            .iter()
            .find(|t| t["node"] == "mail1")?["held_out"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(
        held_note.starts_with("DANE: held out until "),
        "{held_note}"
    );
    let owner1 = lab.owner(1);
    watcher.wait("mail1 back with only the new record", |s| {
        s.mx.contains(&host1) && s.keys[&owner1] == BTreeSet::from([new.clone()])
    });
    let samples = watcher.stop();
    let (left, back) = held_out(&samples, &host1, reloading).expect("mail1 was held out");
    // Between the reload and mail1 leaving the MX, DNS knew nothing of the
    // new key: that is the exposure of a key changed without warning.
    let exposure = left.duration_since(reloading);
    let published = samples
        .iter()
        .find(|s| s.keys[&owner1].contains(&new))
        .map(|s| s.at)
        .expect("the new record published");
    let held = back.duration_since(left);
    let aged = back.duration_since(published);
    eprintln!(
        "unannounced swap: out of the MX {exposure:?} after the reload, held out {held:?}, \
         returned {aged:?} after the new record appeared; {} samples",
        samples.len()
    );
    assert!(exposure < Duration::from_secs(3), "{exposure:?}");
    assert!(held >= HOLD, "held out {held:?}");
    assert!(aged >= HOLD, "returned {aged:?} after its record");
    let owner_of = |host: &str| format!("_{}._tcp.{host}", lab.port);
    let excused = |host: &str, t: Instant| host == host1 && t >= reloading && t < left;
    let broken = violations(&samples, &serving, &owner_of, &excused);
    assert!(
        broken.is_empty(),
        "{} violations: {broken:#?}",
        broken.len()
    );
    // The old record went; the hold-out was told in /status meanwhile.
    assert!(!samples.last().unwrap().keys[&owner1].contains(&old));
    assert!(
        daemon.log_count("DANE: held out until") >= 1,
        "{}",
        daemon.log_tail(30)
    );
}

/// `tlsa_next` announces mail1's next key: pigeon-dns publishes it at
/// start, and when mail1 switches to it, mail1 never leaves the MX. The
/// invariant holds at every sample, the reload included.
#[test]
fn manage_switches_a_pre_published_key_without_leaving_the_mx() {
    let ca_for_next = TestCa::new("pigeon-dns next key CA");
    let next = ca_for_next.leaf(&["mail1.example.com"]);
    let (mut lab, watcher, daemon) = managed(Some((1, &next)));
    let old = digest(&lab.node(1).leaf);
    let new = digest(&next);
    let owner1 = lab.owner(1);
    watcher.wait("the next key published", |s| s.keys[&owner1].contains(&new));
    // Its mark tells when pigeon-dns counts it published from (a request
    // timeout after the UPDATE, rounded up to the second): the switch waits
    // for that, plus twice the TTL, as an operator waits for the hold-out.
    let mark = lab
        .bind
        .query(&owner1, "TXT")
        .into_iter()
        .find(|t| t.contains(&format!("tlsa={}", new.to_uppercase())))
        .expect("the next key's mark");
    let published: u64 = mark
        .trim_matches('"')
        .split_whitespace()
        .find_map(|w| w.strip_prefix("published="))
        .and_then(|s| s.parse().ok())
        .expect("published=");
    let usable = UNIX_EPOCH + Duration::from_secs(published) + HOLD;
    wait_until("the next key's record aged", CONVERGE, || {
        (SystemTime::now() >= usable + Duration::from_millis(200)).then_some(())
    });
    let mut serving = Serving::default();
    let start = watcher.samples().first().map(|s| s.at).expect("a sample");
    for n in 1..=2 {
        serving.set(&lab.node(n).host, start, &[&digest(&lab.node(n).leaf)]);
    }
    let reloading = Instant::now();
    serving.set(&lab.node(1).host, reloading, &[&old, &new]);
    lab.swap(1, next);
    serving.set(&lab.node(1).host, Instant::now(), &[&new]);
    watcher.wait("the old record removed", |s| {
        s.keys[&owner1] == BTreeSet::from([new.clone()])
    });
    let samples = watcher.stop();
    let host1 = format!("{}.", lab.node(1).host);
    assert!(
        samples
            .iter()
            .filter(|s| s.at >= reloading)
            .all(|s| s.mx.contains(&host1)),
        "mail1 left the MX"
    );
    let owner_of = |host: &str| format!("_{}._tcp.{host}", lab.port);
    let broken = violations(&samples, &serving, &owner_of, &|_, _| false);
    assert!(
        broken.is_empty(),
        "{} violations: {broken:#?}",
        broken.len()
    );
    assert_eq!(
        daemon.log_count("DANE: held out until"),
        0,
        "{}",
        daemon.log_tail(30)
    );
}
