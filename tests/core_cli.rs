//! The one-shot commands against a real cluster and BIND (contract.md,
//! "Command line"), and the nodes they must single out: `probe` names silent
//! and refusing nodes (which the daemon keeps out of DNS), `plan` prints a
//! pipeable nsupdate script and warns about an MX target without an address
//! record (which the daemon skips while the other changes land), and
//! `status` asks the running daemon.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::probe_table::{sample, wait_counted};
use common::{
    CliOutput, ConfigBuilder, Daemon, FakeServer, Lab, NodeSpec, PoolSpec, Protocol, apex_mx,
    imap_a, ips, run_cli, sorted,
};

/// Deadline for anything that takes a few probe rounds and one UPDATE.
const CONVERGE: Duration = Duration::from_secs(20);
fn cli(command: &str, config: &std::path::Path, more: &[&str]) -> CliOutput {
    let mut args: Vec<&std::ffi::OsStr> = vec![command.as_ref(), "-c".as_ref(), config.as_os_str()];
    args.extend(more.iter().map(|s| std::ffi::OsStr::new(*s)));
    run_cli(&args)
}

/// The table row of `pool` and `node`, split on whitespace:
/// `[pool, node, address:port, check, result, latency, detail...]`.
fn row<'a>(table: &'a str, pool: &str, node: &str) -> Vec<&'a str> {
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 2 && w[0] == pool && w[1] == node)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "expected one row for {pool} {node} in:\n{table}"
    );
    rows.into_iter().next().unwrap_or_default()
}

/// Three fakes on `ip` at the cluster's ports (imap, pop3, submission).
fn fakes(
    lab: &Lab,
    ip: IpAddr,
    make: impl Fn(SocketAddr, Protocol) -> FakeServer,
) -> Vec<FakeServer> {
    let p = lab.cluster.ports;
    vec![
        make(SocketAddr::new(ip, p.imap), Protocol::Imap),
        make(SocketAddr::new(ip, p.pop3), Protocol::Pop3),
        make(SocketAddr::new(ip, p.submission), Protocol::Smtp),
    ]
}

fn four_pools(cfg: ConfigBuilder, lab: &Lab) -> ConfigBuilder {
    let p = lab.cluster.ports;
    cfg.pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
        .pool(PoolSpec::a("smtp", "submission").port(p.submission))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission))
}

#[test]
fn silent_and_refusing_nodes_are_excluded_and_probe_names_them() {
    let lab = Lab::start(1);
    let silent_ip = lab.subnet.ip(21);
    let refusing_ip = lab.subnet.ip(22);
    let _silent = fakes(&lab, silent_ip, |addr, _| FakeServer::silent(addr));
    let _refusing = fakes(&lab, refusing_ip, FakeServer::refusing);
    let cfg = four_pools(
        lab.config()
            .node(NodeSpec::new("silent", &[silent_ip]))
            .node(NodeSpec::new("refusing", &[refusing_ip])),
        &lab,
    );
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    let pools = ["imap", "pop", "smtp", "@"];

    // The failing nodes are probed, fail as they should, and are decided down.
    for pool in pools {
        for (node, ip, result) in [
            ("silent", silent_ip, "timeout"),
            ("refusing", refusing_ip, "bad_greeting"),
        ] {
            let ip = ip.to_string();
            wait_counted(&daemon, (pool, node, &ip), result, CONVERGE);
        }
    }
    // Only mail1 is published.
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &["mail1"]), CONVERGE);
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &["mail1"]), CONVERGE);
    lab.bind
        .wait_for("smtp", "A", |a| a == ips(&lab, &["mail1"]), CONVERGE);
    lab.bind
        .wait_for("@", "MX", |a| a == apex_mx(&lab, &["mail1"]), CONVERGE);
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    let m = daemon.metrics();
    for pool in pools {
        assert_eq!(
            m.get(&sample("pigeon_dns_pool_all_down", &[("pool", pool)])),
            Some(0.0)
        );
    }

    // `probe` runs every check once and names them.
    let out = cli("probe", &path, &[]);
    println!("probe:\n{}", out.stdout);
    assert_eq!(
        out.code(),
        Some(1),
        "probe with failing checks\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    for pool in pools {
        let ok = row(&out.stdout, pool, "mail1");
        assert_eq!(ok.get(4), Some(&"ok"), "{ok:?}");
        let silent = row(&out.stdout, pool, "silent");
        assert_eq!(silent.get(4), Some(&"timeout"), "{silent:?}");
        assert!(
            silent.len() > 6,
            "no reason for the silent node: {silent:?}"
        );
        let refusing = row(&out.stdout, pool, "refusing");
        assert_eq!(refusing.get(4), Some(&"bad_greeting"), "{refusing:?}");
        let refusal = match pool {
            "imap" => "BYE",
            "pop" => "-ERR",
            _ => "421",
        };
        assert!(
            refusing[6..].iter().any(|w| w.contains(refusal)),
            "the reason for {pool}/refusing does not quote {refusal:?}: {refusing:?}"
        );
        assert!(silent[2].starts_with(&silent_ip.to_string()), "{silent:?}");
    }

    // With only healthy nodes, probe passes.
    let healthy = lab.write_config(&four_pools(lab.config(), &lab));
    let out = cli("probe", &healthy, &[]);
    assert_eq!(
        out.code(),
        Some(0),
        "probe with every check passing\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    for pool in pools {
        assert_eq!(row(&out.stdout, pool, "mail1").get(4), Some(&"ok"));
    }
    assert!(!daemon.has_exited());
}

#[test]
fn an_mx_target_without_address_is_reported_and_the_other_changes_land() {
    let lab = Lab::start(3);
    let p = lab.cluster.ports;
    let ip3 = lab.node("mail3").ip();
    // mail3 is healthy, but its host has no address record in the zone.
    let cfg = ConfigBuilder::for_bind(&lab.bind)
        .http(lab.http_addr(0))
        .node(lab.node("mail1").spec())
        .node(lab.node("mail2").spec())
        .node(NodeSpec::new("mail3", &[ip3]).host("nohost.example.com."))
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission));
    let path = lab.write_config(&cfg);
    let before = lab.bind.zone_records();

    let out = cli("plan", &path, &[]);
    assert_eq!(
        out.code(),
        Some(2),
        "plan with changes pending\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let adds: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("update add"))
        .collect();
    for n in ["mail1", "mail2", "mail3"] {
        let ip = lab.node(n).ip().to_string();
        assert!(
            adds.iter()
                .any(|l| l.contains("imap.example.com.") && l.contains(&ip)),
            "plan does not add imap A {ip}:\n{}",
            out.stdout
        );
    }
    for host in ["mail1.example.com.", "mail2.example.com."] {
        assert!(
            adds.iter().any(|l| l.contains(" MX ") && l.contains(host)),
            "plan does not add MX {host}:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("nohost"),
        "plan's script adds the MX BIND would refuse:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("nohost.example.com"),
        "plan does not name the MX target without address on stderr:\n{}",
        out.stderr
    );
    assert_eq!(
        lab.bind.zone_records(),
        before,
        "plan without --apply changed BIND"
    );

    // The daemon: every other change lands, and the log names the host.
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    lab.bind.wait_for(
        "imap",
        "A",
        |a| a == imap_a(&lab, &["mail1", "mail2", "mail3"]),
        CONVERGE,
    );
    lab.bind.wait_for(
        "@",
        "MX",
        |a| a == apex_mx(&lab, &["mail1", "mail2"]),
        CONVERGE,
    );
    // Named at warning level (debug lines may mention it too: the queries).
    let warned = common::wait_until("a warning naming nohost.example.com", CONVERGE, || {
        daemon.logs().into_iter().find(|l| {
            (l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains("nohost.example.com")
        })
    });
    println!("{warned}");
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    let mut want = before.clone();
    for n in ["mail1", "mail2", "mail3"] {
        want.push(format!("imap.example.com. 300 A {}", lab.node(n).ip()));
    }
    want.push("example.com. 3600 MX 10 mail1.example.com.".into());
    want.push("example.com. 3600 MX 10 mail2.example.com.".into());
    assert_eq!(lab.bind.zone_records(), sorted(want));
    assert!(!daemon.has_exited());
}

#[test]
fn plan_prints_an_nsupdate_script_and_apply_sends_it() {
    let mut lab = Lab::start(2);
    let cfg = lab.standard_config();
    let path = lab.write_config(&cfg);
    let before = lab.bind.zone_records();

    let out = cli("plan", &path, &[]);
    assert_eq!(out.code(), Some(2), "{}\n{}", out.stdout, out.stderr);
    let script = out.stdout.clone();
    let server = format!("server {} {}", lab.bind.addr().ip(), lab.bind.addr().port());
    assert!(
        script.lines().any(|l| l.trim() == server),
        "no `{server}` line:\n{script}"
    );
    assert!(
        script.lines().any(|l| l.starts_with("zone example.com")),
        "{script}"
    );
    assert_eq!(
        script.lines().last().map(str::trim),
        Some("send"),
        "{script}"
    );
    assert_eq!(lab.bind.zone_records(), before);

    // Piped to nsupdate -k, it makes the zone as the daemon would.
    lab.bind.nsupdate(&script);
    let both = ["mail1", "mail2"];
    assert_eq!(lab.bind.query_with_ttl("imap", "A"), {
        imap_a(&lab, &both)
            .into_iter()
            .map(|r| (300, r))
            .collect::<Vec<_>>()
    });
    assert_eq!(lab.bind.query("pop", "A"), ips(&lab, &both));
    assert_eq!(lab.bind.query("smtp", "A"), ips(&lab, &both));
    assert_eq!(
        lab.bind.query("@", "MX"),
        apex_mx(&lab, &["mail1", "mail2"])
    );
    assert_eq!(lab.bind.query("_imap._tcp", "SRV").len(), 2);
    let out = cli("plan", &path, &[]);
    assert_eq!(
        out.code(),
        Some(0),
        "plan after its script was applied\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );

    // --apply sends it.
    lab.node_mut("mail2").stop();
    let out = cli("plan", &path, &["--apply"]);
    assert_eq!(
        out.code(),
        Some(0),
        "plan --apply\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(lab.bind.query("pop", "A"), ips(&lab, &["mail1"]));
    assert_eq!(lab.bind.query("imap", "A"), imap_a(&lab, &["mail1"]));
    assert_eq!(lab.bind.query("@", "MX"), apex_mx(&lab, &["mail1"]));
    assert_eq!(lab.bind.query("_imap._tcp", "SRV").len(), 1);
    let out = cli("plan", &path, &[]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn status_shows_each_target_and_fails_without_a_daemon() {
    let mut lab = Lab::start(2);
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission));
    let path = lab.write_config(&cfg);

    let out = cli("status", &path, &[]);
    assert_eq!(
        out.code(),
        Some(1),
        "status without a daemon\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );

    let mut daemon = Daemon::spawn(&path, cfg.http_addr());
    lab.bind.wait_for(
        "imap",
        "A",
        |a| a == imap_a(&lab, &["mail1", "mail2"]),
        CONVERGE,
    );
    lab.node_mut("mail2").stop();
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &["mail1"]), CONVERGE);
    let ip2 = lab.node("mail2").ip().to_string();
    for pool in ["imap", "@"] {
        daemon.wait_for_metric(
            &sample(
                "pigeon_dns_node_up",
                &[("pool", pool), ("node", "mail2"), ("address", ip2.as_str())],
            ),
            |v| v == 0.0,
            CONVERGE,
        );
    }

    let out = cli("status", &path, &[]);
    assert_eq!(
        out.code(),
        Some(0),
        "status with a daemon\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    for pool in ["imap", "@"] {
        let up = row(&out.stdout, pool, "mail1");
        assert!(
            up.contains(&"up") && !up.contains(&"down"),
            "{pool}/mail1: {up:?}"
        );
        let down = row(&out.stdout, pool, "mail2");
        assert!(
            down.contains(&"down") && !down.contains(&"up"),
            "{pool}/mail2: {down:?}"
        );
        assert!(
            down[2].starts_with(&ip2),
            "{pool}/mail2 row lacks its address: {down:?}"
        );
    }

    assert_eq!(daemon.terminate().code(), Some(0));
    let out = cli("status", &path, &[]);
    assert_eq!(
        out.code(),
        Some(1),
        "status after the daemon stopped\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}
