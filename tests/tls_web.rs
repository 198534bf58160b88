//! The http and https checks end to end (contract.md, "Checks"): the
//! harness's web server ([`common::WebServer`]; rustls with a certificate
//! from the test CA for https) answers 200, 302, 500, slowly, or with a body that
//! does or does not hold `expect_body`. pigeon-dns must pass 2xx and 3xx,
//! fail 5xx as `http_status`, time out on a slow answer, send the pool's
//! name as Host, and for https verify the certificate against `tls_name`
//! (the pool's name) with `tls_ca_file`; `pigeon-dns probe` names each
//! outcome and the daemon counts it under its label.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::net::free_port;
use common::probe_table::{probe, row, sample, wait_counted};
use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, HTTP_PORT, NodeSpec, PoolSpec, Subnet, TestCa,
    WebServer, toml_str, utc_text,
};

const CONVERGE: Duration = Duration::from_secs(20);
const DAY: u64 = 86_400;

/// One pool of the test and what must come of it.
struct Case {
    pool: &'static str,
    https: bool,
    path: &'static str,
    /// More `key = raw value` lines.
    set: Vec<(&'static str, String)>,
    result: &'static str,
    /// Every one of these must be in the probe's detail.
    detail: Vec<String>,
    /// Whether the server sees the request (not when TLS fails first).
    reaches_server: bool,
}

#[test]
fn http_and_https_checks_judge_status_body_time_host_and_certificate() {
    let subnet = Subnet::new();
    let bind = Bind::start(BindOpts::default());
    let ca = TestCa::new("pigeon-dns web test CA");
    // The https pools verify their own names.
    let leaf = ca.leaf(&[
        "secure.example.com",
        "secure-body.example.com",
        "secure-noverify.example.com",
        "secure-expiring.example.com",
    ]);
    let ip: IpAddr = subnet.node_ip(0);
    let http = WebServer::start(SocketAddr::new(ip, free_port(ip)), None);
    let https = WebServer::start(
        SocketAddr::new(ip, free_port(ip)),
        Some(leaf.server_config()),
    );
    let ca_file = toml_str(&ca.ca_file().display().to_string());
    let s = |v: &str| v.to_owned();
    let cases = vec![
        Case {
            pool: "webmail",
            https: false,
            path: "/ok/webmail",
            set: vec![],
            result: "ok",
            detail: vec![s("HTTP 200 OK")],
            reaches_server: true,
        },
        Case {
            pool: "redirect",
            https: false,
            path: "/redirect",
            set: vec![],
            result: "ok",
            detail: vec![s("HTTP 302 Found"), s("/login")],
            reaches_server: true,
        },
        Case {
            pool: "broken",
            https: false,
            path: "/error",
            set: vec![],
            result: "http_status",
            detail: vec![s("HTTP 500 Internal Server Error")],
            reaches_server: true,
        },
        Case {
            pool: "slow",
            https: false,
            path: "/slow",
            set: vec![],
            result: "timeout",
            detail: vec![s("no HTTP response within 500ms")],
            reaches_server: true,
        },
        Case {
            pool: "slow-body",
            https: false,
            path: "/slow-body",
            set: vec![],
            result: "timeout",
            detail: vec![s("HTTP body not received within 500ms")],
            reaches_server: true,
        },
        Case {
            pool: "body",
            https: false,
            path: "/ok/body",
            set: vec![("expect_body", toml_str("webmail ready"))],
            result: "ok",
            detail: vec![s("HTTP 200 OK")],
            reaches_server: true,
        },
        Case {
            pool: "body-miss",
            https: false,
            path: "/ok/body-miss",
            set: vec![("expect_body", toml_str("sign in"))],
            result: "http_status",
            detail: vec![s("body does not contain \"sign in\"")],
            reaches_server: true,
        },
        Case {
            pool: "secure",
            https: true,
            path: "/ok/secure",
            set: vec![("tls_ca_file", ca_file.clone())],
            result: "ok",
            detail: vec![
                s("HTTP 200 OK"),
                format!("certificate valid until {}", utc_text(leaf.not_after)),
            ],
            reaches_server: true,
        },
        Case {
            pool: "secure-body",
            https: true,
            path: "/ok/secure-body",
            set: vec![
                ("tls_ca_file", ca_file.clone()),
                ("expect_body", toml_str("sign in")),
            ],
            result: "http_status",
            detail: vec![s("body does not contain \"sign in\"")],
            reaches_server: true,
        },
        Case {
            pool: "secure-noca",
            https: true,
            path: "/ok/secure-noca",
            set: vec![],
            result: "tls_error",
            detail: vec![s("not trusted")],
            reaches_server: false,
        },
        Case {
            pool: "secure-wrongname",
            https: true,
            path: "/ok/secure-wrongname",
            set: vec![("tls_ca_file", ca_file.clone())],
            result: "tls_error",
            detail: vec![s("not valid for secure-wrongname.example.com")],
            reaches_server: false,
        },
        Case {
            pool: "secure-noverify",
            https: true,
            path: "/ok/secure-noverify",
            set: vec![("tls_verify", s("false"))],
            result: "ok",
            detail: vec![s("HTTP 200 OK")],
            reaches_server: true,
        },
        Case {
            pool: "secure-expiring",
            https: true,
            path: "/ok/secure-expiring",
            set: vec![
                ("tls_ca_file", ca_file.clone()),
                ("cert_min_days", s("400")),
            ],
            result: "cert_expiring",
            detail: vec![
                format!("expires on {}", utc_text(leaf.not_after)),
                s("cert_min_days is 400"),
            ],
            reaches_server: true,
        },
    ];
    let mut cfg = ConfigBuilder::for_bind(&bind)
        .http(SocketAddr::new(subnet.ip(2), HTTP_PORT))
        .probe("interval", &toml_str("600ms"))
        .probe("timeout", &toml_str("500ms"))
        .node(NodeSpec::new("web1", &[ip]));
    for case in &cases {
        let (check, port) = if case.https {
            ("https", https.addr.port())
        } else {
            ("http", http.addr.port())
        };
        let mut pool = PoolSpec::a(case.pool, check)
            .port(port)
            .set("path", &toml_str(case.path));
        for (k, v) in &case.set {
            pool = pool.set(k, v);
        }
        cfg = cfg.pool(pool);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = cfg.write(&dir.path().join("pigeon-dns.toml"));

    // `probe` names each outcome.
    let before = SystemTime::now();
    let out = probe(&path);
    let after = SystemTime::now();
    assert_eq!(out.code(), Some(1), "probe with failing checks");
    let mut wrong = Vec::new();
    for case in &cases {
        let r = row(&out, case.pool, "web1");
        let check = if case.https { "https" } else { "http" };
        let missing: Vec<&String> = case
            .detail
            .iter()
            .filter(|d| !r.detail.contains(d.as_str()))
            .collect();
        if r.result != case.result || r.check != check || !missing.is_empty() {
            wrong.push(format!(
                "{}: expected {check} {} with {:?}, got {} {} {:?}",
                case.pool, case.result, case.detail, r.check, r.result, r.detail
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong probe rows:\n{}", wrong.join("\n"));

    // https shows the protocol version and the days left, like mail checks.
    let r = row(&out, "secure", "web1");
    let not_after = UNIX_EPOCH + Duration::from_secs(leaf.not_after.unix_timestamp() as u64);
    let days_after = not_after
        .duration_since(after)
        .unwrap_or_default()
        .as_secs()
        / DAY;
    let days_before = not_after
        .duration_since(before)
        .unwrap_or_default()
        .as_secs()
        .div_ceil(DAY);
    assert!(
        r.detail.contains("TLSv1.3") || r.detail.contains("TLSv1.2"),
        "no TLS version in {r:?}"
    );
    assert!(
        (days_after..=days_before).any(|d| r.detail.contains(&format!("cert expires in {d} days"))),
        "expected {days_after}..={days_before} days to expiry in {r:?}"
    );

    // The server saw the pool's name as Host, once per probe.
    for case in &cases {
        let server = if case.https { &https } else { &http };
        let hosts = server.hosts(case.path);
        if case.reaches_server {
            let want = format!("{}.example.com", case.pool);
            assert_eq!(
                hosts,
                vec![Some(want)],
                "{}: Host headers seen for {}",
                case.pool,
                case.path
            );
        } else {
            assert!(
                hosts.is_empty(),
                "{}: a request went through a failed handshake: {hosts:?}",
                case.pool
            );
        }
    }
    assert!(
        http.requests()
            .iter()
            .chain(https.requests().iter())
            .all(|r| r.path != "/login"),
        "a redirect was followed"
    );

    // The daemon counts each outcome under its label.
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    let ip = ip.to_string();
    for case in &cases {
        wait_counted(&daemon, (case.pool, "web1", &ip), case.result, CONVERGE);
    }
    let labels = [
        ("pool", "secure"),
        ("node", "web1"),
        ("address", ip.as_str()),
    ];
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs_f64();
    let value = daemon.wait_for_metric(
        &sample("pigeon_dns_cert_expiry_seconds", &labels),
        |v| v > 0.0,
        CONVERGE,
    );
    assert!(
        (value - left).abs() < 120.0,
        "cert_expiry_seconds {value}, expected about {left}"
    );
}
