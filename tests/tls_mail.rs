//! TLS mail checks end to end (contract.md, "Checks"): real dovecot serves
//! certificates this test issues from its own CA (`common::certs`), and
//! pigeon-dns must pass STARTTLS and implicit TLS with a trusted, valid
//! certificate, name every kind of TLS failure in `pigeon-dns probe` and
//! count it under its label in `pigeon_dns_probes_total`, drop a node whose
//! certificate expired from the SRV records it publishes (and bring it back
//! once renewed), keep `pigeon_dns_cert_expiry_seconds` true to the
//! certificate a node serves, and end every probe within its timeout, even
//! against a peer that stalls mid-handshake.
//!
//! Nodes are `mailN` with host `mailN.example.com` at `127.A.B.(10 + N)`, all
//! listening on the same six ports (imap, pop3, submission and their
//! implicit-TLS twins imaps, pop3s, submissions).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::host_records;
use common::net::{common_free_port, free_port};
use common::probe_table::{Row, probe, row, sample, wait_counted};
use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, Dovecot, DovecotOpts, DovecotPorts, FakeServer,
    HTTP_PORT, Leaf, NodeSpec, PoolSpec, Subnet, TestCa, toml_str, utc_text,
};

/// Deadline for anything that takes a few probe rounds and one UPDATE.
const CONVERGE: Duration = Duration::from_secs(20);
const DAY: u64 = 86_400;
const ZONE: &str = "example.com";

// ---------------------------------------------------------------------------
// The lab: BIND, a test CA and dovecot nodes serving its certificates.

/// One dovecot node with the certificate it serves (`None`: `ssl = no`).
struct TlsNode {
    name: String,
    host: String,
    ip: IpAddr,
    leaf: Option<Leaf>,
    dovecot: Dovecot,
}

struct TlsLab {
    subnet: Subnet,
    bind: Bind,
    ca: TestCa,
    ports: DovecotPorts,
    nodes: Vec<TlsNode>,
    dir: tempfile::TempDir,
}

/// `mailN.example.com` (1-based).
fn host(n: usize) -> String {
    format!("mail{n}.{ZONE}")
}

/// Six distinct ports free on every one of `ips`.
fn tls_ports(ips: &[IpAddr]) -> DovecotPorts {
    let mut taken = Vec::new();
    let mut next = || loop {
        let p = common_free_port(ips);
        if !taken.contains(&p) {
            taken.push(p);
            return p;
        }
    };
    DovecotPorts {
        imap: next(),
        pop3: next(),
        submission: next(),
        imaps: Some(next()),
        pop3s: Some(next()),
        submissions: Some(next()),
    }
}

impl TlsLab {
    /// BIND with an A record per node host, a CA, and one dovecot per leaf
    /// that `leaves` issues (given the CA; `None`: a node without TLS).
    fn start(leaves: impl FnOnce(&TestCa) -> Vec<Option<Leaf>>) -> TlsLab {
        let ca = TestCa::new("pigeon-dns tls test CA");
        let leaves = leaves(&ca);
        let subnet = Subnet::new();
        let mut opts = BindOpts::default();
        for line in host_records(&subnet, leaves.len()) {
            opts = opts.record(&line);
        }
        let bind = Bind::start(opts);
        let ips: Vec<IpAddr> = (0..leaves.len()).map(|i| subnet.node_ip(i)).collect();
        // A lab of fakes only still gets ports (nothing listens on them).
        let some_ip = [subnet.node_ip(0)];
        let ports = tls_ports(if ips.is_empty() { &some_ip } else { &ips });
        let nodes = leaves
            .into_iter()
            .enumerate()
            .map(|(i, leaf)| {
                let host = host(i + 1);
                let mut opts = DovecotOpts::new(ips[i], ports).hostname(&host);
                if let Some(leaf) = &leaf {
                    opts = opts.tls(leaf.tls_files());
                }
                TlsNode {
                    name: format!("mail{}", i + 1),
                    host,
                    ip: ips[i],
                    leaf,
                    dovecot: Dovecot::start_with(opts),
                }
            })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("pigeon-tls-")
            .tempdir()
            .expect("tempdir");
        TlsLab {
            subnet,
            bind,
            ca,
            ports,
            nodes,
            dir,
        }
    }

    fn node(&self, name: &str) -> &TlsNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn node_mut(&mut self, name: &str) -> &mut TlsNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn ip(&self, name: &str) -> String {
        self.node(name).ip.to_string()
    }

    /// `[dns]` for this BIND, `[http]` on the subnet, every node; probes
    /// every 500 ms with a 400 ms timeout (a TLS handshake with dovecot on a
    /// loaded 2-core machine needs more than the harness's 150 ms).
    fn config(&self) -> ConfigBuilder {
        let mut cfg = ConfigBuilder::for_bind(&self.bind)
            .http(SocketAddr::new(self.subnet.ip(2), HTTP_PORT))
            .probe("interval", &toml_str("500ms"))
            .probe("timeout", &toml_str("400ms"));
        for node in &self.nodes {
            cfg = cfg.node(NodeSpec::new(&node.name, &[node.ip]).host(&node.host));
        }
        cfg
    }

    fn ca_file(&self) -> String {
        toml_str(&self.ca.ca_file().display().to_string())
    }

    fn write_config(&self, cfg: &ConfigBuilder) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        cfg.write(&self.dir.path().join(format!("pigeon-dns-{n}.toml")))
    }

    /// Serves `leaf` on `node` from now on: its files are overwritten and
    /// dovecot restarted (it reads certificates at start).
    fn replace_certificate(&mut self, node: &str, leaf: &Leaf) {
        let node = self.node_mut(node);
        let files = node.leaf.as_ref().expect("the node serves TLS").tls_files();
        node.dovecot.stop();
        leaf.write_to(&files);
        node.dovecot.start_again();
    }
}

// ---------------------------------------------------------------------------
// `pigeon-dns probe` output and metrics.

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The days left until `leaf` expires, as a probe between `before` and
/// `after` may count them: at least the whole days left at `after`, at most
/// the days (rounded up) left at `before`.
fn days_left(leaf: &Leaf, before: SystemTime, after: SystemTime) -> std::ops::RangeInclusive<u64> {
    let secs = u64::try_from(leaf.not_after.unix_timestamp()).unwrap_or(0);
    let not_after = UNIX_EPOCH + Duration::from_secs(secs);
    let left = |t: SystemTime| not_after.duration_since(t).unwrap_or_default();
    let floor = left(after).as_secs() / DAY;
    let ceil = left(before).as_secs().div_ceil(DAY);
    floor..=ceil
}

/// Asserts a passing TLS row: `ok`, the protocol version, the certificate's
/// end date and the days it has left.
fn assert_tls_ok(row: &Row, leaf: &Leaf, days: &std::ops::RangeInclusive<u64>) {
    assert_eq!(row.result, "ok", "{row:?}");
    assert!(
        row.detail.contains("TLSv1.3") || row.detail.contains("TLSv1.2"),
        "no TLS version in {row:?}"
    );
    let until = format!("certificate valid until {}", utc_text(leaf.not_after));
    assert!(row.detail.contains(&until), "no {until:?} in {row:?}");
    let shown: Option<u64> = row
        .detail
        .split_once("cert expires in ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    assert!(
        shown.is_some_and(|d| days.contains(&d)),
        "days to expiry: expected {days:?}, got {shown:?} in {row:?}"
    );
}

/// dovecot logged `n` TLS sessions ended by the client's goodbye (LOGOUT,
/// QUIT) and no error: a probe leaves no trace an operator would chase.
fn assert_polite_goodbyes(dovecot: &Dovecot, n: usize) {
    let wait = Instant::now() + Duration::from_secs(5);
    let polite = |log: &str| {
        log.lines()
            .filter(|l| l.contains(", TLS,") && l.contains("Aborted login by logging out"))
            .count()
    };
    while polite(&dovecot.log_text()) < n && Instant::now() < wait {
        thread::sleep(Duration::from_millis(20));
    }
    let log = dovecot.log_text();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Error") || l.contains("SSL") || l.contains("failed"))
        .collect();
    assert!(bad.is_empty(), "dovecot logged errors:\n{}", bad.join("\n"));
    assert!(
        polite(&log) >= n,
        "expected {n} TLS sessions ended by LOGOUT/QUIT in dovecot's log:\n{log}"
    );
}

/// Starts a lab whose mail1 serves a certificate for `names`, probes the
/// `pools` made of the lab's ports (each with its port set, verifying with
/// the lab's CA; with STARTTLS when `starttls`), and asserts that the probe
/// passes and that each pool's row names its check, mail1's address at its
/// port, and TLS with the certificate's end and days left; and that dovecot
/// saw six sessions end politely. The probe's output, for more checks.
fn assert_tls_pools_pass(
    names: &[&str],
    starttls: bool,
    pools: impl FnOnce(DovecotPorts) -> Vec<PoolSpec>,
) -> common::CliOutput {
    let lab = TlsLab::start(|ca| vec![Some(ca.leaf(names))]);
    let ca = lab.ca_file();
    let pools = pools(lab.ports);
    let mut cfg = lab.config();
    for pool in &pools {
        let pool = pool.clone().set("tls_ca_file", &ca);
        cfg = cfg.pool(if starttls {
            pool.set("starttls", "true")
        } else {
            pool
        });
    }
    let path = lab.write_config(&cfg);
    let leaf = lab.node("mail1").leaf.clone().expect("leaf");

    let before = SystemTime::now();
    let out = probe(&path);
    let days = days_left(&leaf, before, SystemTime::now());
    assert_eq!(out.code(), Some(0), "probe failed:\n{}", out.stdout);
    let ip = lab.node("mail1").ip;
    for pool in &pools {
        let r = row(&out, &pool.name, "mail1");
        assert_eq!(r.check, pool.check, "{r:?}");
        let addr = SocketAddr::new(ip, pool.port.expect("a port"));
        assert_eq!(r.address, addr.to_string(), "{r:?}");
        assert_tls_ok(&r, &leaf, &days);
    }
    assert_polite_goodbyes(&lab.node("mail1").dovecot, 6);
    out
}

// ---------------------------------------------------------------------------
// 1. STARTTLS

#[test]
fn starttls_on_imap_pop3_and_submission_passes_and_probe_shows_version_and_expiry() {
    // The A pools verify their own name, the SRV and MX pools the node's host.
    let names = [
        "mail1.example.com",
        "imap.example.com",
        "pop.example.com",
        "smtp.example.com",
    ];
    let out = assert_tls_pools_pass(&names, true, |p| {
        vec![
            PoolSpec::a("imap", "imap").port(p.imap),
            PoolSpec::a("pop", "pop3").port(p.pop3),
            PoolSpec::a("smtp", "submission").port(p.submission),
            PoolSpec::srv("_imap._tcp", "imap").port(p.imap),
            PoolSpec::srv("_pop3._tcp", "pop3").port(p.pop3),
            PoolSpec::mx("@", "smtp", 10).port(p.submission),
        ]
    });
    // The greeting seen in clear text is quoted too.
    assert!(row(&out, "imap", "mail1").detail.contains("* OK"));
    assert!(row(&out, "pop", "mail1").detail.contains("+OK"));
    assert!(row(&out, "smtp", "mail1").detail.contains("220"));
}

// ---------------------------------------------------------------------------
// 2. Implicit TLS

#[test]
fn implicit_tls_on_imaps_pop3s_and_smtps_passes() {
    let names = [
        "mail1.example.com",
        "imaps.example.com",
        "pop3s.example.com",
        "smtps.example.com",
    ];
    assert_tls_pools_pass(&names, false, |p| {
        let (imaps, pop3s, submissions) = (
            p.imaps.expect("imaps"),
            p.pop3s.expect("pop3s"),
            p.submissions.expect("submissions"),
        );
        vec![
            PoolSpec::a("imaps", "imaps").port(imaps),
            PoolSpec::a("pop3s", "pop3s").port(pop3s),
            PoolSpec::a("smtps", "smtps").port(submissions),
            PoolSpec::srv("_imaps._tcp", "imaps").port(imaps),
            PoolSpec::srv("_pop3s._tcp", "pop3s").port(pop3s),
            PoolSpec::srv("_submissions._tcp", "smtps").port(submissions),
        ]
    });
}

// ---------------------------------------------------------------------------
// 3. Failure kinds

/// One failing (or, without verification, passing) pool of the failure test.
struct Case {
    pool: &'static str,
    node: &'static str,
    result: &'static str,
    /// Every one of these must be in the probe's detail.
    detail: Vec<String>,
}

#[test]
fn tls_failures_are_named_by_probe_and_counted_by_the_daemon() {
    // mail1 valid; mail2 names another host; mail3 expired yesterday;
    // mail4 expires in 3 days; mail5 has no TLS at all (ssl = no).
    let lab = TlsLab::start(|ca| {
        let now = common::now_utc();
        vec![
            Some(ca.leaf(&[&host(1)])),
            Some(ca.leaf(&["wrong.example.org"])),
            Some(ca.expired_leaf(&[&host(3)])),
            Some(ca.leaf_between(
                &[&host(4)],
                now - time::Duration::days(1),
                now + time::Duration::days(3),
            )),
            None,
        ]
    });
    let p = lab.ports;
    let imaps = p.imaps.expect("imaps");
    let ca = lab.ca_file();
    let expired_on = utc_text(lab.node("mail3").leaf.as_ref().expect("leaf").not_after);
    let expiring_on = utc_text(lab.node("mail4").leaf.as_ref().expect("leaf").not_after);
    // SRV pools verify the node's host, so tls_name is only set where it
    // must differ from it.
    let srv = |name: &str, check: &str, port: u16, node: &str| {
        PoolSpec::srv(name, check).port(port).nodes(&[node])
    };
    let cfg = lab
        .config()
        // No tls_ca_file: the test CA is not among the system roots.
        .pool(srv("_untrusted._tcp", "imaps", imaps, "mail1"))
        .pool(srv("_wrongname._tcp", "imaps", imaps, "mail2").set("tls_ca_file", &ca))
        .pool(srv("_expired._tcp", "imaps", imaps, "mail3").set("tls_ca_file", &ca))
        .pool(
            srv("_expired-stls._tcp", "pop3", p.pop3, "mail3")
                .set("starttls", "true")
                .set("tls_ca_file", &ca),
        )
        .pool(
            srv("_expiring._tcp", "imaps", imaps, "mail4")
                .set("tls_ca_file", &ca)
                .set("cert_min_days", "7"),
        )
        .pool(
            srv("_expiring-noverify._tcp", "imaps", imaps, "mail4")
                .set("tls_verify", "false")
                .set("cert_min_days", "7"),
        )
        .pool(
            srv("_expiring-ok._tcp", "imaps", imaps, "mail4")
                .set("tls_ca_file", &ca)
                .set("cert_min_days", "2"),
        )
        // An A pool verifies its own name, an MX pool the node's host.
        .pool(
            PoolSpec::a("imap", "imaps")
                .port(imaps)
                .nodes(&["mail1"])
                .set("tls_ca_file", &ca),
        )
        .pool(
            PoolSpec::mx("@", "smtps", 10)
                .port(p.submissions.expect("submissions"))
                .nodes(&["mail1"])
                .set("tls_ca_file", &ca),
        )
        // tls_name overrides the default (the host): the certificate's own
        // name passes.
        .pool(
            srv("_rightname._tcp", "imaps", imaps, "mail2")
                .set("tls_ca_file", &ca)
                .set("tls_name", &toml_str("wrong.example.org")),
        )
        .pool(srv("_noverify-untrusted._tcp", "imaps", imaps, "mail1").set("tls_verify", "false"))
        .pool(srv("_noverify-wrongname._tcp", "imaps", imaps, "mail2").set("tls_verify", "false"))
        .pool(
            srv("_nostarttls-imap._tcp", "imap", p.imap, "mail5")
                .set("starttls", "true")
                .set("tls_ca_file", &ca),
        )
        .pool(
            srv("_nostarttls-pop._tcp", "pop3", p.pop3, "mail5")
                .set("starttls", "true")
                .set("tls_ca_file", &ca),
        )
        .pool(
            srv("_nostarttls-smtp._tcp", "submission", p.submission, "mail5")
                .set("starttls", "true")
                .set("tls_ca_file", &ca),
        );
    let s = |v: &str| v.to_owned();
    let cases = [
        Case {
            pool: "_untrusted._tcp",
            node: "mail1",
            result: "tls_error",
            detail: vec![s("not trusted")],
        },
        Case {
            pool: "_wrongname._tcp",
            node: "mail2",
            result: "tls_error",
            detail: vec![s("not valid for mail2.example.com"), s("wrong.example.org")],
        },
        Case {
            pool: "_expired._tcp",
            node: "mail3",
            result: "tls_error",
            detail: vec![format!("expired on {expired_on}")],
        },
        Case {
            pool: "_expired-stls._tcp",
            node: "mail3",
            result: "tls_error",
            detail: vec![format!("expired on {expired_on}")],
        },
        Case {
            pool: "_expiring._tcp",
            node: "mail4",
            result: "cert_expiring",
            detail: vec![format!("expires on {expiring_on}"), s("cert_min_days is 7")],
        },
        Case {
            pool: "_expiring-noverify._tcp",
            node: "mail4",
            result: "cert_expiring",
            detail: vec![format!("expires on {expiring_on}")],
        },
        Case {
            pool: "_expiring-ok._tcp",
            node: "mail4",
            result: "ok",
            detail: vec![format!("certificate valid until {expiring_on}")],
        },
        Case {
            pool: "imap",
            node: "mail1",
            result: "tls_error",
            detail: vec![s(
                "not valid for imap.example.com (it names mail1.example.com)",
            )],
        },
        Case {
            pool: "@",
            node: "mail1",
            result: "ok",
            detail: vec![s("220 mail1.example.com")],
        },
        Case {
            pool: "_rightname._tcp",
            node: "mail2",
            result: "ok",
            detail: vec![],
        },
        Case {
            pool: "_noverify-untrusted._tcp",
            node: "mail1",
            result: "ok",
            detail: vec![],
        },
        Case {
            pool: "_noverify-wrongname._tcp",
            node: "mail2",
            result: "ok",
            detail: vec![],
        },
        Case {
            pool: "_nostarttls-imap._tcp",
            node: "mail5",
            result: "tls_error",
            detail: vec![s("STARTTLS refused")],
        },
        Case {
            pool: "_nostarttls-pop._tcp",
            node: "mail5",
            result: "tls_error",
            detail: vec![s("STLS refused")],
        },
        Case {
            pool: "_nostarttls-smtp._tcp",
            node: "mail5",
            result: "tls_error",
            detail: vec![s("STARTTLS not offered")],
        },
    ];
    // A wide timeout: any count under another label must be the daemon's
    // doing, not a slow handshake on a loaded machine.
    let cfg = cfg
        .probe("interval", &toml_str("1s"))
        .probe("timeout", &toml_str("900ms"));
    let path = lab.write_config(&cfg);

    // `probe` names each failure.
    let before = SystemTime::now();
    let out = probe(&path);
    let days = days_left(
        lab.node("mail4").leaf.as_ref().expect("leaf"),
        before,
        SystemTime::now(),
    );
    assert_eq!(out.code(), Some(1), "probe with failing checks");
    let mut wrong = Vec::new();
    for case in &cases {
        let r = row(&out, case.pool, case.node);
        let missing: Vec<&String> = case
            .detail
            .iter()
            .filter(|d| !r.detail.contains(d.as_str()))
            .collect();
        if r.result != case.result || !missing.is_empty() {
            wrong.push(format!(
                "{} {}: expected {} with {:?}, got {} {:?}",
                case.pool, case.node, case.result, case.detail, r.result, r.detail
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong probe rows:\n{}", wrong.join("\n"));
    let r = row(&out, "_expiring._tcp", "mail4");
    assert!(
        days.clone()
            .any(|d| r.detail.contains(&format!("(in {d} days;"))),
        "expected {days:?} days left in {r:?}"
    );

    // The daemon counts each under its label, and decides the node's state.
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    for case in &cases {
        let ip = lab.ip(case.node);
        let target = (case.pool, case.node, ip.as_str());
        wait_counted(&daemon, target, case.result, CONVERGE);
    }
    // Nothing was counted under another label (a failing check is not
    // sometimes a timeout, an ok check never fails).
    let m = daemon.metrics();
    for case in &cases {
        let ip = lab.ip(case.node);
        let labels = [
            ("pool", case.pool),
            ("node", case.node),
            ("address", ip.as_str()),
        ];
        let others: Vec<String> = m
            .matching("pigeon_dns_probes_total", &labels)
            .filter(|s| {
                s.value > 0.0 && s.labels.get("result").map(String::as_str) != Some(case.result)
            })
            .map(|s| format!("{:?}={}", s.labels.get("result"), s.value))
            .collect();
        assert!(
            others.is_empty(),
            "{} {}: other results counted: {others:?}",
            case.pool,
            case.node
        );
    }
}

// ---------------------------------------------------------------------------
// 4. Records follow the certificate

#[test]
fn srv_drops_a_node_whose_certificate_expired_and_takes_it_back_once_renewed() {
    let lab_leaves = |ca: &TestCa| (1..=3).map(|n| Some(ca.leaf(&[&host(n)]))).collect();
    let mut lab = TlsLab::start(lab_leaves);
    let imaps = lab.ports.imaps.expect("imaps");
    let cfg = lab.config().pool(
        PoolSpec::srv("_imaps._tcp", "imaps")
            .port(imaps)
            .set("tls_ca_file", &lab.ca_file()),
    );
    let path = lab.write_config(&cfg);
    let srv = |nodes: &[usize]| -> Vec<String> {
        nodes
            .iter()
            .map(|n| format!("0 1 {imaps} {}.", host(*n)))
            .collect()
    };
    let mut daemon = Daemon::spawn(&path, cfg.http_addr());
    let all = srv(&[1, 2, 3]);
    lab.bind
        .wait_for("_imaps._tcp", "SRV", |a| a == all, CONVERGE);

    // Healthy nodes expose their certificate's lifetime: about a year.
    for node in ["mail1", "mail2", "mail3"] {
        let leaf = lab.node(node).leaf.clone().expect("leaf");
        let ip = lab.ip(node);
        let not_after = leaf.not_after.unix_timestamp() as f64;
        let now = unix_secs(SystemTime::now());
        let value = daemon.wait_for_metric(
            &sample(
                "pigeon_dns_cert_expiry_seconds",
                &[("pool", "_imaps._tcp"), ("node", node), ("address", &ip)],
            ),
            |v| v > 0.0,
            CONVERGE,
        );
        assert!(
            (value - (not_after - now)).abs() < 120.0,
            "{node}: cert_expiry_seconds {value}, expected about {} (364 days and some)",
            not_after - now
        );
    }

    // mail3 now serves an expired certificate: it leaves the SRV set, the
    // others stay, and the transition names the reason.
    let mark = daemon.log_mark();
    let expired = lab.ca.expired_leaf(&[&host(3)]);
    lab.replace_certificate("mail3", &expired);
    let two = srv(&[1, 2]);
    lab.bind
        .wait_for("_imaps._tcp", "SRV", |a| a == two, CONVERGE);
    let line = daemon.wait_for_log_since(mark, "certificate expired on", CONVERGE);
    assert!(
        line.contains(&utc_text(expired.not_after)),
        "the transition does not give the date: {line}"
    );
    let ip3 = lab.ip("mail3");
    let labels3 = [
        ("pool", "_imaps._tcp"),
        ("node", "mail3"),
        ("address", ip3.as_str()),
    ];
    daemon.wait_for_metric(
        &sample("pigeon_dns_node_up", &labels3),
        |v| v == 0.0,
        CONVERGE,
    );
    let mut tls_error = labels3.to_vec();
    tls_error.push(("result", "tls_error"));
    daemon.wait_for_metric(
        &sample("pigeon_dns_probes_total", &tls_error),
        |v| v >= 2.0,
        CONVERGE,
    );
    for node in ["mail1", "mail2"] {
        let ip = lab.ip(node);
        let labels = [("pool", "_imaps._tcp"), ("node", node), ("address", &ip)];
        assert_eq!(
            daemon.metric_value(&sample("pigeon_dns_node_up", &labels)),
            Some(1.0),
            "{node} is healthy"
        );
    }
    assert_eq!(lab.bind.query("_imaps._tcp", "SRV"), two);

    // A renewed certificate brings it back.
    let renewed = lab.ca.leaf(&[&host(3)]);
    lab.replace_certificate("mail3", &renewed);
    lab.bind
        .wait_for("_imaps._tcp", "SRV", |a| a == all, CONVERGE);
    daemon.wait_for_metric(
        &sample("pigeon_dns_node_up", &labels3),
        |v| v == 1.0,
        CONVERGE,
    );
    daemon.terminate();
}

#[test]
fn cert_expiry_seconds_follows_the_certificate_served_even_once_expired() {
    let mut lab = TlsLab::start(|ca| vec![Some(ca.leaf(&[&host(1)]))]);
    let imaps = lab.ports.imaps.expect("imaps");
    let cfg = lab.config().pool(
        PoolSpec::srv("_imaps._tcp", "imaps")
            .port(imaps)
            .set("tls_ca_file", &lab.ca_file()),
    );
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    let ip = lab.ip("mail1");
    let labels = [
        ("pool", "_imaps._tcp"),
        ("node", "mail1"),
        ("address", ip.as_str()),
    ];
    let expiry = sample("pigeon_dns_cert_expiry_seconds", &labels);
    let day = DAY as f64;
    daemon.wait_for_metric(&expiry, |v| v > 364.0 * day, CONVERGE);

    // A certificate with 3 days left replaces it: the gauge follows.
    let now = common::now_utc();
    let soon = lab.ca.leaf_between(
        &[&host(1)],
        now - time::Duration::days(1),
        now + time::Duration::days(3),
    );
    lab.replace_certificate("mail1", &soon);
    daemon.wait_for_metric(&expiry, |v| v > 2.9 * day && v <= 3.0 * day, CONVERGE);

    // Then one that expired yesterday: the check fails, and the gauge must
    // not go on claiming days left (an alert on it would stay silent).
    let expired = lab.ca.expired_leaf(&[&host(1)]);
    lab.replace_certificate("mail1", &expired);
    daemon.wait_for_metric(
        &sample("pigeon_dns_node_up", &labels),
        |v| v == 0.0,
        CONVERGE,
    );
    let mut tls_error = labels.to_vec();
    tls_error.push(("result", "tls_error"));
    let failures = sample("pigeon_dns_probes_total", &tls_error);
    daemon.wait_for_metric(&failures, |v| v >= 2.0, CONVERGE);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = daemon.metric_value(&expiry);
        if value.is_none_or(|v| v <= 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{expiry} is still {value:?} ({:.2} days) after {} failed probes of a \
             certificate that expired on {}: it should be negative or gone",
            value.unwrap_or_default() / day,
            daemon.metric_value(&failures).unwrap_or_default(),
            utc_text(expired.not_after)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// 6. Peers that stall mid-handshake

/// A mail server that greets, accepts STARTTLS, then never answers the
/// ClientHello: the connection is held open until the server is dropped.
struct StallAfterStarttls {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StallAfterStarttls {
    /// `script`: the greeting, then for each command the client sends (by
    /// prefix) the reply; after the reply to the last one, silence.
    fn start(
        addr: SocketAddr,
        greeting: &'static str,
        script: Vec<(&'static str, &'static str)>,
    ) -> Self {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let script = script.clone();
                    let stop = stop.clone();
                    held.push(thread::spawn(move || {
                        serve_until_tls(stream, greeting, &script, &stop);
                    }));
                }
                for t in held {
                    let _ = t.join();
                }
            })
        };
        StallAfterStarttls {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_until_tls(stream: TcpStream, greeting: &str, script: &[(&str, &str)], stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut writer = stream.try_clone().expect("clone stream");
    let _ = writer.write_all(greeting.as_bytes());
    let mut reader = BufReader::new(stream);
    let mut step = 0;
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        if step >= script.len() {
            // The client's ClientHello goes unanswered.
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                let (prefix, reply) = script[step];
                if line.to_ascii_uppercase().starts_with(prefix) {
                    let _ = writer.write_all(reply.as_bytes());
                    step += 1;
                } else {
                    let _ = writer.write_all(b"500 unexpected\r\n");
                }
                line.clear();
            }
            _ => {}
        }
    }
}

impl Drop for StallAfterStarttls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn every_probe_ends_within_its_timeout_against_peers_stalling_mid_handshake() {
    let lab = TlsLab::start(|_| Vec::new());
    let ip = lab.subnet.ip(21);
    // Accepts and never answers: the ClientHello of every implicit-TLS
    // check (and https) hangs.
    let silent = FakeServer::silent(SocketAddr::new(ip, free_port(ip)));
    let port = silent.addr().port();
    let imap = StallAfterStarttls::start(
        SocketAddr::new(ip, free_port(ip)),
        "* OK [CAPABILITY IMAP4rev1 STARTTLS] stalling\r\n",
        vec![("A1 STARTTLS", "a1 OK Begin TLS negotiation now\r\n")],
    );
    let pop3 = StallAfterStarttls::start(
        SocketAddr::new(ip, free_port(ip)),
        "+OK stalling\r\n",
        vec![("STLS", "+OK Begin TLS negotiation\r\n")],
    );
    let smtp = StallAfterStarttls::start(
        SocketAddr::new(ip, free_port(ip)),
        "220 stall.example.com ESMTP\r\n",
        vec![
            ("EHLO", "250-stall.example.com\r\n250 STARTTLS\r\n"),
            ("STARTTLS", "220 2.0.0 Ready to start TLS\r\n"),
        ],
    );
    let timeout = Duration::from_millis(700);
    let ca = lab.ca_file();
    let pool = |name: &str, check: &str, port: u16| {
        PoolSpec::a(name, check)
            .port(port)
            .nodes(&["stall"])
            .set("timeout", &toml_str("700ms"))
            .set("interval", &toml_str("1s"))
            .set("tls_ca_file", &ca)
    };
    let cfg = lab
        .config()
        .node(NodeSpec::new("stall", &[ip]))
        .pool(pool("imaps", "imaps", port))
        .pool(pool("pop3s", "pop3s", port))
        .pool(pool("smtps", "smtps", port))
        .pool(pool("https", "https", port))
        .pool(pool("imap", "imap", imap.addr.port()).set("starttls", "true"))
        .pool(pool("pop", "pop3", pop3.addr.port()).set("starttls", "true"))
        .pool(pool("smtp", "submission", smtp.addr.port()).set("starttls", "true"));
    let path = lab.write_config(&cfg);

    let start = Instant::now();
    let out = probe(&path);
    let took = start.elapsed();
    println!("probe took {took:?}");
    assert_eq!(out.code(), Some(1), "probe against stalling peers");
    for pool in ["imaps", "pop3s", "smtps", "imap", "pop", "smtp"] {
        let r = row(&out, pool, "stall");
        assert_eq!(r.result, "timeout", "{r:?}");
        assert!(
            r.detail.contains("TLS handshake not finished within 700ms"),
            "the timeout does not name the handshake: {r:?}"
        );
    }
    let r = row(&out, "https", "stall");
    assert_eq!(r.result, "timeout", "{r:?}");
    assert!(r.detail.contains("700ms"), "{r:?}");
    // The probes run at once, each bounded by its timeout: the command ends
    // within one timeout plus the process's own start (config, CA roots).
    let margin = Duration::from_millis(1500);
    assert!(
        took < timeout + margin,
        "probe took {took:?}, more than {timeout:?} + {margin:?}"
    );
    assert!(
        silent.connections() >= 4,
        "the implicit-TLS probes connected"
    );

    // The daemon does not pile up stuck probes: each target keeps being
    // probed, and each probe is a timeout.
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    let ip = ip.to_string();
    for pool in ["imaps", "pop3s", "smtps", "https", "imap", "pop", "smtp"] {
        daemon.wait_for_metric(
            &sample(
                "pigeon_dns_probes_total",
                &[
                    ("pool", pool),
                    ("node", "stall"),
                    ("address", &ip),
                    ("result", "timeout"),
                ],
            ),
            |v| v >= 3.0,
            CONVERGE,
        );
    }
    // No probe took much longer than its 700 ms timeout: every one is in
    // the duration histogram's bucket up to 2.5 s (the margin is for a
    // loaded machine; a probe left hanging would be in none).
    let m = daemon.metrics();
    for check in [
        "imaps",
        "pop3s",
        "smtps",
        "https",
        "imap",
        "pop3",
        "submission",
    ] {
        let count = m.sum(
            "pigeon_dns_probe_duration_seconds_count",
            &[("check", check)],
        );
        let in_time = m
            .matching(
                "pigeon_dns_probe_duration_seconds_bucket",
                &[("check", check)],
            )
            .filter(|s| s.labels.get("le").and_then(|le| le.parse::<f64>().ok()) == Some(2.5))
            .map(|s| s.value)
            .sum::<f64>();
        assert!(count >= 3.0, "{check}: {count} probes");
        assert!(
            in_time == count,
            "{check}: {count} probes, only {in_time} within 2.5s\n{}",
            m.text
        );
    }
}
