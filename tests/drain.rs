//! `pigeon-dns drain` and `undrain` end to end: real BIND, real dovecot,
//! the daemon. What BIND answers is the judge: a drained node's records
//! leave within a second of the command returning, whichever instance
//! writes, and come back after `undrain`; the mark survives a restart and a
//! writer's death; bad names and an unreachable or refusing primary change
//! nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Bind, BindOpts, CliOutput, ConfigBuilder, Daemon, Lab, NodeSpec, PoolSpec, apex_mx, imap_a,
    run_cli, wait_until,
};

/// The contract: a drain reaches the primary within 1 s of the command
/// returning. Measured from the return to the first `dig` that shows it
/// (each `dig` takes a few ms, polled every 50 ms).
const WITHIN: Duration = Duration::from_secs(1);
/// Anything that takes a few probe rounds and a pass.
const CONVERGE: Duration = Duration::from_secs(20);
const LEASE: &str = "1500ms";
const LEASE_TIME: Duration = Duration::from_millis(1500);

/// `pigeon-dns drain|undrain -c PATH ARGS...`.
fn cli(command: &str, path: &Path, args: &[&str]) -> CliOutput {
    let mut all = vec![command, "-c", path.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run_cli(&all)
}

/// Runs the command, asserts exit 0, and returns when it returned.
fn ok(command: &str, path: &Path, args: &[&str]) -> (Instant, CliOutput) {
    let out = cli(command, path, args);
    let returned = Instant::now();
    assert_eq!(
        out.code(),
        Some(0),
        "{command} {args:?}\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    (returned, out)
}

/// Waits until BIND answers `want` at `name`/`rtype`, at most `within` after
/// `since`; returns how long after `since` it did.
fn answers_within(
    lab: &Lab,
    name: &str,
    rtype: &str,
    want: &[String],
    since: Instant,
    within: Duration,
) -> Duration {
    let left = within.saturating_sub(since.elapsed());
    lab.bind.wait_for(name, rtype, |a| a == want, left);
    since.elapsed()
}

fn pools(lab: &Lab, cfg: ConfigBuilder) -> ConfigBuilder {
    let p = lab.cluster.ports;
    cfg.pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission))
}

/// One daemon with [`pools`], once BIND answers both nodes at `imap`:
/// its config file, the daemon, and that answer.
fn start(lab: &Lab) -> (PathBuf, Daemon, Vec<String>) {
    let cfg = pools(lab, lab.config());
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    let both = imap_a(lab, &["mail1", "mail2"]);
    lab.bind.wait_for("imap", "A", |a| a == both, CONVERGE);
    (path, daemon, both)
}

/// The drain marks at BIND.
fn marks(bind: &Bind) -> Vec<String> {
    bind.query("_pigeon-dns-drain", "TXT")
}

#[test]
fn drain_and_undrain_with_one_instance() {
    let lab = Lab::start(2);
    let (path, mut daemon, both) = start(&lab);
    lab.bind.wait_for(
        "@",
        "MX",
        |a| a == apex_mx(&lab, &["mail1", "mail2"]),
        CONVERGE,
    );

    // Drained in every pool: out of imap and the MX.
    let (returned, out) = ok("drain", &path, &["mail2", "--reason", "kernel update"]);
    assert!(
        out.stdout.contains("mail2 drained in every pool"),
        "{}",
        out.stdout
    );
    let took = answers_within(
        &lab,
        "imap",
        "A",
        &imap_a(&lab, &["mail1"]),
        returned,
        WITHIN,
    );
    answers_within(
        &lab,
        "@",
        "MX",
        &apex_mx(&lab, &["mail1"]),
        returned,
        WITHIN,
    );
    println!("drain -> mail2 gone at BIND: {took:?}");
    let mark = marks(&lab.bind);
    assert!(
        mark.len() == 1
            && mark[0].contains("node=mail2 pool=* by=")
            && mark[0].contains("reason=kernel update"),
        "{mark:?}"
    );

    // Logged once, with who and why; shown with its source; still probed.
    let line = daemon.wait_for_log("Node drained.", CONVERGE);
    assert!(
        line.contains("mail2") && line.contains("kernel update"),
        "{line}"
    );
    let drained = |pool: &str, source: &str| {
        format!("pigeon_dns_node_drained{{pool=\"{pool}\",node=\"mail2\",source=\"{source}\"}}")
    };
    daemon.wait_for_metric(&drained("imap", "runtime"), |v| v == 1.0, CONVERGE);
    assert_eq!(daemon.metric_value(&drained("imap", "config")), Some(0.0));
    let ip2 = lab.node("mail2").ip().to_string();
    let up = format!("pigeon_dns_node_up{{pool=\"imap\",node=\"mail2\",address=\"{ip2}\"}}");
    assert_eq!(
        daemon.metric_value(&up),
        Some(1.0),
        "its health stays visible"
    );
    let probes = |d: &Daemon| {
        d.metrics().sum(
            "pigeon_dns_probes_total",
            &[("pool", "imap"), ("node", "mail2")],
        )
    };
    let before = probes(&daemon);
    wait_until("mail2 probed while drained", CONVERGE, || {
        (probes(&daemon) > before).then_some(())
    });
    let status = run_cli(&["status", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains("drained: mail2 in every pool (runtime: by "),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(": kernel update)"),
        "{}",
        status.stdout
    );
    let (_, json) = daemon.http_get("/status").expect("GET /status");
    let json: pigeon_dns::status::Status = serde_json::from_str(&json).expect("JSON");
    assert!(
        json.targets
            .iter()
            .all(|t| { (t.node == "mail2") == (t.drain.as_deref() == Some("runtime")) })
    );

    // Drained again: nothing changes.
    let (_, out) = ok("drain", &path, &["mail2", "--pool", "imap"]);
    assert!(out.stdout.contains("already drained"), "{}", out.stdout);
    assert_eq!(marks(&lab.bind), mark);

    // Undrained: back in both.
    let (returned, _) = ok("undrain", &path, &["mail2"]);
    let took = answers_within(&lab, "imap", "A", &both, returned, WITHIN);
    answers_within(
        &lab,
        "@",
        "MX",
        &apex_mx(&lab, &["mail1", "mail2"]),
        returned,
        WITHIN,
    );
    println!("undrain -> mail2 back at BIND: {took:?}");
    assert!(marks(&lab.bind).is_empty());
    daemon.wait_for_log("Node undrained", CONVERGE);
    daemon.wait_for_metric(&drained("imap", "runtime"), |v| v == 0.0, CONVERGE);

    // Not drained: said so, exit 0.
    let (_, out) = ok("undrain", &path, &["mail2"]);
    assert!(
        out.stdout.contains("mail2 is not drained"),
        "{}",
        out.stdout
    );

    // One pool only: out of imap, still in the MX.
    let (returned, _) = ok("drain", &path, &["mail1", "--pool", "imap"]);
    answers_within(
        &lab,
        "imap",
        "A",
        &imap_a(&lab, &["mail2"]),
        returned,
        WITHIN,
    );
    assert_eq!(
        lab.bind.query("@", "MX"),
        apex_mx(&lab, &["mail1", "mail2"]),
        "a pool drain left the MX"
    );
    let (returned, _) = ok("undrain", &path, &["mail1", "--pool", "imap"]);
    answers_within(&lab, "imap", "A", &both, returned, WITHIN);
    assert_eq!(daemon.log_count("Node drained."), 2, "one line per drain");
    assert_eq!(daemon.terminate().code(), Some(0));
}

#[test]
fn the_mark_survives_a_restart_of_the_daemon() {
    let lab = Lab::start(2);
    let (path, mut daemon, both) = start(&lab);
    let (returned, _) = ok("drain", &path, &["mail2", "--reason", "disk swap"]);
    let one = imap_a(&lab, &["mail1"]);
    answers_within(&lab, "imap", "A", &one, returned, WITHIN);
    assert_eq!(daemon.terminate().code(), Some(0));

    // A new daemon: from its start until it is ready and a while after,
    // mail2 never comes back.
    let daemon = Daemon::spawn(&path, Some(lab.http_addr(0)));
    let ip2 = lab.node("mail2").ip().to_string();
    let until = Instant::now() + CONVERGE;
    loop {
        let answer = lab.bind.query("imap", "A");
        assert!(
            !answer.contains(&ip2),
            "mail2 published after a restart: {answer:?}"
        );
        if matches!(daemon.http_get("/readyz"), Ok((200, _))) {
            break;
        }
        assert!(
            Instant::now() < until,
            "not ready:\n{}",
            daemon.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.wait_reconciles(2.5, CONVERGE);
    assert_eq!(lab.bind.query("imap", "A"), one);
    assert!(
        daemon
            .logs()
            .iter()
            .any(|l| l.contains("Node drained (a mark in the zone).") && l.contains("disk swap")),
        "{}",
        daemon.log_tail(40)
    );
    let (returned, _) = ok("undrain", &path, &["mail2"]);
    answers_within(&lab, "imap", "A", &both, returned, WITHIN);
}

/// Two `[ha]` instances; the writer dies between drain and undrain.
#[test]
fn a_standby_that_takes_over_honours_the_mark() {
    let lab = Lab::start(2);
    let ha = |instance: &str, http: u8| {
        pools(
            &lab,
            lab.config().http(lab.http_addr(http)).ha(instance, LEASE),
        )
    };
    let cfg_a = ha("dns1", 0);
    let path = lab.write_config(&cfg_a);
    let mut a = Daemon::spawn(&path, cfg_a.http_addr());
    let both = imap_a(&lab, &["mail1", "mail2"]);
    lab.bind.wait_for("imap", "A", |r| r == both, CONVERGE);
    let held = |d: &Daemon| d.metric_value("pigeon_dns_lease_held");
    wait_until("dns1 writes", CONVERGE, || {
        (held(&a) == Some(1.0)).then_some(())
    });
    let b = lab.daemon(&ha("dns2", 1));
    b.wait_for_http_status("/readyz", 200, CONVERGE);

    // Drained through the writer.
    let (returned, _) = ok("drain", &path, &["mail2", "--reason", "replace PSU"]);
    let one = imap_a(&lab, &["mail1"]);
    let took = answers_within(&lab, "imap", "A", &one, returned, WITHIN);
    println!("drain with [ha] -> gone at BIND: {took:?}");
    // The standby sees the mark too.
    b.wait_for_metric(
        "pigeon_dns_node_drained{pool=\"imap\",node=\"mail2\",source=\"runtime\"}",
        |v| v == 1.0,
        CONVERGE,
    );

    // The writer dies; the standby takes over and keeps mail2 out.
    a.kill();
    wait_until("dns2 takes the lease", 4 * LEASE_TIME, || {
        (held(&b) == Some(1.0)).then_some(())
    });
    let ip2 = lab.node("mail2").ip().to_string();
    let until = Instant::now() + 2 * LEASE_TIME;
    while Instant::now() < until {
        let answer = lab.bind.query("imap", "A");
        assert!(
            !answer.contains(&ip2),
            "the new writer published mail2: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.bind.query("imap", "A"), one);

    // Undrained through the new writer.
    let (returned, _) = ok("undrain", &path, &["mail2"]);
    let took = answers_within(&lab, "imap", "A", &both, returned, WITHIN);
    println!("undrain after the takeover -> back at BIND: {took:?}");
}

#[test]
fn bad_names_change_nothing_and_exit_1() {
    let lab = Lab::start(2);
    // `spare` is in no pool: the pools list their nodes.
    let p = lab.cluster.ports;
    let members = ["mail1", "mail2"];
    let cfg = lab
        .config()
        .node(NodeSpec::new("spare", &[lab.subnet.ip(30)]))
        .pool(PoolSpec::a("imap", "imap").port(p.imap).nodes(&members))
        .pool(
            PoolSpec::mx("@", "smtp", 10)
                .port(p.submission)
                .nodes(&members),
        );
    let path = lab.write_config(&cfg);
    let serial = lab.bind.serial();
    for (args, says) in [
        (
            &["drain", "mail9"][..],
            "unknown node \"mail9\"; the config's nodes: mail1, mail2, spare",
        ),
        (&["undrain", "mail9"][..], "unknown node \"mail9\""),
        (
            &["drain", "mail1", "--pool", "pop"][..],
            "unknown pool \"pop\"; the config's pools: imap, @",
        ),
        (
            &["undrain", "mail1", "--pool", "pop"][..],
            "unknown pool \"pop\"",
        ),
        (
            &["drain", "spare", "--pool", "imap"][..],
            "node spare is not in pool imap",
        ),
        (
            &["drain", "mail1", "--reason", "two\nlines"][..],
            "control character",
        ),
    ] {
        let out = cli(args[0], &path, &args[1..]);
        assert_eq!(out.code(), Some(1), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    assert!(marks(&lab.bind).is_empty());
    assert_eq!(lab.bind.serial(), serial, "the zone changed");

    // Undrain --pool of a node drained everywhere: refused, nothing changes.
    ok("drain", &path, &["mail1"]);
    let mark = marks(&lab.bind);
    let serial = lab.bind.serial();
    let out = cli("undrain", &path, &["mail1", "--pool", "imap"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("drained in every pool"),
        "{}",
        out.stderr
    );
    assert_eq!((marks(&lab.bind), lab.bind.serial()), (mark, serial));
}

#[test]
fn an_unreachable_or_refusing_primary_changes_nothing_and_exits_1() {
    let mut bind = Bind::start(BindOpts::default());
    let node = NodeSpec::new("mail1", &["192.0.2.11".parse().unwrap()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ConfigBuilder::for_bind(&bind)
        .no_http()
        .node(node)
        .pool(PoolSpec::a("imap", "tcp").port(143));

    // Nothing listens there.
    let closed = common::net::free_port("127.0.0.1".parse().unwrap());
    let unreachable = cfg
        .clone()
        .dns("server", &common::toml_str(&format!("127.0.0.1:{closed}")));
    let path = unreachable.write(&dir.path().join("unreachable.toml"));
    for command in ["drain", "undrain"] {
        let started = Instant::now();
        let out = cli(command, &path, &["mail1"]);
        assert_eq!(out.code(), Some(1), "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("cannot read the drain marks"),
            "{command}: {}",
            out.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    // BIND refuses the marks (its update-policy grants imap only).
    let serial = bind.serial();
    bind.set_update_policy(&format!(
        "grant {} name imap.{}. A AAAA;",
        bind.key_name(),
        bind.zone()
    ));
    let path = cfg.write(&dir.path().join("refused.toml"));
    let out = cli("drain", &path, &["mail1", "--reason", "upgrade"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("did not apply") && out.stderr.contains("REFUSED"),
        "{}",
        out.stderr
    );
    assert!(marks(&bind).is_empty());
    assert_eq!(bind.serial(), serial);
}
