//! The daemon's life (contract.md, "Command line", "DNS behaviour",
//! "Systemd"): SIGTERM/SIGINT exit 0 quickly and change no record;
//! `--dry-run` logs the UPDATE and sends none; SIGHUP re-reads the config
//! and applies it (nodes and pools added or removed, drain), and keeps the
//! running config when the new one is invalid.

mod common;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::{
    ConfigBuilder, Daemon, FOREIGN_IMAP, Lab, PoolSpec, apex_mx, imap_a, ips, sorted,
    wait_standard_pools,
};

/// Deadline for anything that takes a few probe rounds and one UPDATE.
const CONVERGE: Duration = Duration::from_secs(20);
/// `[dns]`, `[http]` and the named nodes of the lab (no pools); `drained`
/// nodes get `drain = true`.
fn config_with(lab: &Lab, nodes: &[&str], drained: &[&str]) -> ConfigBuilder {
    let mut cfg = ConfigBuilder::for_bind(&lab.bind)
        .http(lab.http_addr(0))
        .dns("resync_interval", "\"1s\"");
    for n in nodes {
        let spec = lab.node(n).spec();
        cfg = cfg.node(if drained.contains(n) {
            spec.drain(true)
        } else {
            spec
        });
    }
    cfg
}

/// What BIND holds before the daemon stops.
struct Zone {
    records: Vec<String>,
    serial: u32,
}

impl Zone {
    fn of(lab: &Lab) -> Zone {
        Zone {
            records: lab.bind.zone_records(),
            serial: lab.bind.serial(),
        }
    }

    /// Asserts that the daemon exited 0 on `signal` and that the zone is
    /// as it was.
    #[track_caller]
    fn assert_stopped_cleanly(&self, lab: &Lab, daemon: &Daemon, status: ExitStatus, signal: &str) {
        assert_eq!(
            status.code(),
            Some(0),
            "exit status on {signal}; log tail:\n{}",
            daemon.log_tail(20)
        );
        assert_eq!(
            lab.bind.zone_records(),
            self.records,
            "stopping changed the zone"
        );
        assert_eq!(
            lab.bind.serial(),
            self.serial,
            "stopping changed the serial"
        );
    }
}

#[test]
fn sigterm_and_sigint_exit_0_within_2s_and_change_no_record() {
    let mut lab = Lab::start(2);
    let cfg = lab.standard_config();
    let path = lab.write_config(&cfg);
    let mut daemon = Daemon::spawn(&path, cfg.http_addr());
    wait_standard_pools(&lab, &["mail1", "mail2"], CONVERGE);
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    let zone = Zone::of(&lab);

    let started = Instant::now();
    let status = daemon.terminate_within(Duration::from_secs(2));
    let took = started.elapsed();
    println!("SIGTERM: exit {status} after {took:?}");
    zone.assert_stopped_cleanly(&lab, &daemon, status, "SIGTERM");

    // SIGINT too, with one node down (its records removed) when it stops.
    let mut daemon = Daemon::spawn(&path, cfg.http_addr());
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    lab.node_mut("mail2").stop();
    wait_standard_pools(&lab, &["mail1"], CONVERGE);
    let zone = Zone::of(&lab);
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(2));
    zone.assert_stopped_cleanly(&lab, &daemon, status, "SIGINT");
}

#[test]
fn dry_run_logs_the_update_and_sends_none() {
    let lab = Lab::start(2);
    let before = lab.bind.zone_records();
    let serial = lab.bind.serial();
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn_args(
        &[
            "run".as_ref(),
            "-c".as_ref(),
            path.as_os_str(),
            "--dry-run".as_ref(),
            "--log-level".as_ref(),
            "debug".as_ref(),
        ],
        cfg.http_addr(),
    );
    // The log shows the additions it would make for both nodes.
    let wanted: Vec<String> = ips(&lab, &["mail1", "mail2"]);
    let shown = common::wait_until(
        "a dry-run log showing pop A for both nodes",
        CONVERGE,
        || {
            let logs = daemon.logs();
            let from = logs.iter().position(|l| l.contains("Dry run"))?;
            let after = &logs[from..];
            wanted
                .iter()
                .all(|ip| {
                    after.iter().any(|l| {
                        l.contains("pop.example.com")
                            && l.contains(ip.as_str())
                            && l.contains("add")
                    })
                })
                .then(|| after.join("\n"))
        },
    );
    println!("dry run:\n{shown}");
    for n in ["mail1", "mail2"] {
        let ip = lab.node(n).ip().to_string();
        daemon.wait_for_metric(
            &format!("pigeon_dns_node_up{{pool=\"imap\",node=\"{n}\",address=\"{ip}\"}}"),
            |v| v == 1.0,
            CONVERGE,
        );
    }
    // A daemon that sends would have sent by now; BIND saw no UPDATE.
    assert_eq!(
        lab.bind.zone_records(),
        before,
        "--dry-run changed the zone"
    );
    assert_eq!(lab.bind.serial(), serial);
    assert!(
        lab.bind.update_log().is_empty(),
        "BIND logged updates: {:?}",
        lab.bind.update_log()
    );
    assert_eq!(
        daemon
            .metric_value("pigeon_dns_dns_updates_total{result=\"ok\"}")
            .unwrap_or(0.0),
        0.0,
        "--dry-run counted sent UPDATEs"
    );
    assert!(!daemon.has_exited());
}

#[test]
fn sighup_publishes_an_added_node_and_pool() {
    let lab = Lab::start(3);
    let before = lab.bind.zone_records();
    let p = lab.cluster.ports;
    let first = config_with(&lab, &["mail1", "mail2"], &[])
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let path = lab.write_config(&first);
    let mut daemon = Daemon::spawn(&path, first.http_addr());
    let two = ["mail1", "mail2"];
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &two), CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &two), CONVERGE);
    assert!(lab.bind.query("smtp", "A").is_empty());

    config_with(&lab, &["mail1", "mail2", "mail3"], &[])
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
        .pool(PoolSpec::a("smtp", "submission").port(p.submission))
        .write(&path);
    let mark = daemon.log_mark();
    daemon.signal("HUP");
    let three = ["mail1", "mail2", "mail3"];
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &three), CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &three), CONVERGE);
    lab.bind
        .wait_for("smtp", "A", |a| a == ips(&lab, &three), CONVERGE);
    let mut want = before.clone();
    for n in three {
        let ip = lab.node(n).ip();
        want.push(format!("imap.example.com. 300 A {ip}"));
        want.push(format!("pop.example.com. 60 A {ip}"));
        want.push(format!("smtp.example.com. 60 A {ip}"));
    }
    assert_eq!(lab.bind.zone_records(), sorted(want));
    daemon.wait_for_log_since(mark, "SIGHUP", Duration::from_secs(1));
    assert!(!daemon.has_exited());
}

#[test]
fn sighup_removing_a_node_or_a_pool_deletes_its_records() {
    let lab = Lab::start(3);
    let before = lab.bind.zone_records();
    let p = lab.cluster.ports;
    let three = ["mail1", "mail2", "mail3"];
    let first = config_with(&lab, &three, &[])
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission));
    let path = lab.write_config(&first);
    let daemon = Daemon::spawn(&path, first.http_addr());
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &three), CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &three), CONVERGE);
    lab.bind
        .wait_for("@", "MX", |a| a == apex_mx(&lab, &three), CONVERGE);

    // mail3 leaves the config (it stays healthy), and so does the pop pool.
    config_with(&lab, &["mail1", "mail2"], &[])
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission))
        .write(&path);
    daemon.signal("HUP");
    let two = ["mail1", "mail2"];
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &two), CONVERGE);
    lab.bind
        .wait_for("@", "MX", |a| a == apex_mx(&lab, &two), CONVERGE);
    lab.bind.wait_for("pop", "A", |a| a.is_empty(), CONVERGE);
    let mut want = before.clone();
    for n in two {
        want.push(format!("imap.example.com. 300 A {}", lab.node(n).ip()));
        want.push(format!("example.com. 3600 MX 10 {}.", lab.node(n).host));
    }
    assert_eq!(lab.bind.zone_records(), sorted(want));
    assert!(lab.node("mail3").dovecot.is_running());
    assert!(!daemon.has_exited());
}

#[test]
fn an_invalid_config_on_sighup_is_logged_and_the_running_one_kept() {
    let mut lab = Lab::start(2);
    let p = lab.cluster.ports;
    let two = ["mail1", "mail2"];
    let pools = |cfg: ConfigBuilder| {
        cfg.pool(PoolSpec::a("imap", "imap").port(p.imap))
            .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
    };
    let first = pools(config_with(&lab, &two, &[]));
    let path = lab.write_config(&first);
    let mut daemon = Daemon::spawn(&path, first.http_addr());
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &two), CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &two), CONVERGE);
    let records = lab.bind.zone_records();
    let serial = lab.bind.serial();

    // Invalid (an unknown key); were it applied, mail2 would be removed.
    pools(config_with(&lab, &["mail1"], &[]))
        .probe("intervall", "\"1s\"")
        .write(&path);
    let mark = daemon.log_mark();
    daemon.signal("HUP");
    let line = daemon.wait_for_log_since(mark, "intervall", CONVERGE);
    println!("{line}");
    assert!(
        line.contains(" ERROR ") || line.contains(" WARN "),
        "the invalid config is not logged as an error: {line}"
    );
    assert!(
        line.contains(&path.display().to_string()),
        "the error does not name the file: {line}"
    );
    daemon.wait_reconciles(1.5, CONVERGE);
    assert!(
        !daemon.has_exited(),
        "an invalid config on SIGHUP stopped the daemon"
    );
    assert_eq!(
        lab.bind.zone_records(),
        records,
        "the invalid config changed the zone"
    );
    assert_eq!(lab.bind.serial(), serial);

    // mail2 is still managed under the running config.
    lab.node_mut("mail2").stop();
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &["mail1"]), CONVERGE);

    // A valid config afterwards is applied: the pop pool goes.
    config_with(&lab, &two, &[])
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .write(&path);
    daemon.signal("HUP");
    lab.bind.wait_for("pop", "A", |a| a.is_empty(), CONVERGE);
    assert_eq!(lab.bind.query("imap", "A"), imap_a(&lab, &["mail1"]));
}

#[test]
fn drain_on_sighup_removes_the_node_even_when_all_are_down() {
    let mut lab = Lab::start(2);
    let p = lab.cluster.ports;
    let two = ["mail1", "mail2"];
    let pools = |cfg: ConfigBuilder| {
        cfg.pool(PoolSpec::a("imap", "imap").port(p.imap))
            .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission))
    };
    let first = pools(config_with(&lab, &two, &[]));
    let path = lab.write_config(&first);
    let daemon = Daemon::spawn(&path, first.http_addr());
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &two), CONVERGE);
    lab.bind
        .wait_for("@", "MX", |a| a == apex_mx(&lab, &two), CONVERGE);

    // Every node down: publish-all keeps both.
    lab.node_mut("mail1").stop();
    lab.node_mut("mail2").stop();
    for pool in ["imap", "@"] {
        daemon.wait_for_metric(
            &format!("pigeon_dns_pool_all_down{{pool=\"{pool}\"}}"),
            |v| v == 1.0,
            CONVERGE,
        );
    }
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &two), CONVERGE);
    lab.bind
        .wait_for("@", "MX", |a| a == apex_mx(&lab, &two), CONVERGE);

    // Drain mail2: its records go although all nodes are down.
    pools(config_with(&lab, &two, &["mail2"])).write(&path);
    daemon.signal("HUP");
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &["mail1"]), CONVERGE);
    lab.bind
        .wait_for("@", "MX", |a| a == apex_mx(&lab, &["mail1"]), CONVERGE);

    // Healthy again, a drained node stays out.
    lab.node_mut("mail2").start_again();
    lab.node_mut("mail1").start_again();
    let ip1 = lab.node("mail1").ip().to_string();
    daemon.wait_for_metric(
        &format!("pigeon_dns_node_up{{pool=\"imap\",node=\"mail1\",address=\"{ip1}\"}}"),
        |v| v == 1.0,
        CONVERGE,
    );
    daemon.wait_reconciles(1.5, CONVERGE);
    assert_eq!(lab.bind.query("imap", "A"), imap_a(&lab, &["mail1"]));
    assert_eq!(lab.bind.query("@", "MX"), apex_mx(&lab, &["mail1"]));
    assert!(!daemon.has_exited());
}

/// A reload that moves the pools to another zone deletes what they owned in
/// the old zone and fills the new one; one that moves to another server
/// writes there. No UPDATE fails on the way (the old zone's names are never
/// sent to the new zone, where the primary would answer NOTZONE).
#[test]
fn sighup_changing_the_zone_or_the_server_moves_the_records() {
    let mut lab = Lab::start_with(
        2,
        common::BindOpts::default().also_zone(common::ZoneOpts::new("example.org")),
    );
    let imap = PoolSpec::a("imap", "imap").port(lab.cluster.ports.imap);
    let cfg = lab.config().pool(imap.clone());
    let path = lab.write_config(&cfg);
    let mut daemon = Daemon::spawn(&path, cfg.http_addr());
    let want = imap_a(&lab, &["mail1", "mail2"]);
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);

    let org = lab
        .config()
        .dns("zone", &common::toml_str("example.org"))
        .pool(imap.clone());
    org.write(&path);
    daemon.signal("HUP");
    lab.bind
        .wait_for_in("example.org", "imap", "A", |a| a == want, CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == [FOREIGN_IMAP.to_owned()], CONVERGE);

    // Another server for the same zone.
    let other = common::Bind::start(common::BindOpts::default().zone("example.org"));
    let moved = ConfigBuilder::for_bind(&other)
        .http(lab.http_addr(0))
        .node(lab.node("mail1").spec())
        .node(lab.node("mail2").spec())
        .pool(imap);
    moved.write(&path);
    daemon.signal("HUP");
    other.wait_for("imap", "A", |a| a == want, CONVERGE);
    lab.node_mut("mail2").stop();
    let one = imap_a(&lab, &["mail1"]);
    other.wait_for("imap", "A", |a| a == one, CONVERGE);
    let failed: f64 = ["refused", "error", "timeout", "tsig_error"]
        .iter()
        .map(|r| {
            daemon
                .metric_value(&format!("pigeon_dns_dns_updates_total{{result=\"{r}\"}}"))
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(failed, 0.0, "{}", daemon.log_tail(30));
    assert!(!daemon.logs().iter().any(|l| l.contains("NOTZONE")));
    assert!(daemon.terminate().success());
}
