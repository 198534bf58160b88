//! Two instances, one writer: the lease in the zone, compare-and-swap by
//! RFC 2136 prerequisites, handover, and a standby that never writes.

mod common;

use std::time::{Duration, Instant};

use common::{ConfigBuilder, Daemon, Lab, PoolSpec, stop_until_unpublished, wait_until};

const LEASE: &str = "1500ms";
const LEASE_TIME: Duration = Duration::from_millis(1500);

fn ha_config(lab: &Lab, instance: &str, http: u8) -> ConfigBuilder {
    lab.config()
        .http(lab.http_addr(http))
        .ha(instance, LEASE)
        .pool(PoolSpec::a("imap", "imap").port(lab.cluster.ports.imap))
}

/// The lease gauge; -1 while the daemon does not answer yet.
fn held(daemon: &Daemon) -> f64 {
    match daemon.http_get("/metrics") {
        Ok((200, body)) => common::Metrics::parse(&body)
            .get("pigeon_dns_lease_held")
            .unwrap_or(-1.0),
        _ => -1.0,
    }
}

/// Waits until exactly one of the two holds the lease; returns its index.
fn writer_of(a: &Daemon, b: &Daemon) -> usize {
    wait_until("exactly one writer", Duration::from_secs(10), || {
        match (held(a), held(b)) {
            (1.0, 0.0) => Some(0),
            (0.0, 1.0) => Some(1),
            _ => None,
        }
    })
}

/// Waits until BIND answers every node's address at `imap`.
fn wait_every_node_published(lab: &Lab) {
    let ips = lab.cluster.ip_strings();
    lab.bind.wait_for(
        "imap",
        "A",
        |r| ips.iter().all(|ip| r.contains(ip)),
        Duration::from_secs(10),
    );
}

/// Starts `instance` alone (HTTP on the lab's first address) and waits
/// until it has published every node and holds the lease.
fn start_writer(lab: &Lab, instance: &str) -> Daemon {
    let daemon = lab.daemon(&ha_config(lab, instance, 0));
    wait_every_node_published(lab);
    wait_until(
        &format!("{instance} writes"),
        Duration::from_secs(5),
        || (held(&daemon) == 1.0).then_some(()),
    );
    daemon
}

/// Record changes BIND applied at the managed name (lease renewals excluded).
fn imap_changes(lab: &Lab) -> usize {
    lab.bind
        .log_lines("imap.example.com")
        .iter()
        .filter(|l| l.contains("adding an RR") || l.contains("deleting an RR"))
        .count()
}

#[test]
fn two_instances_converge_with_one_writer_and_no_oscillation() {
    let lab = Lab::start(2);
    let a = lab.daemon(&ha_config(&lab, "dns1", 0));
    let b = lab.daemon(&ha_config(&lab, "dns2", 1));
    wait_every_node_published(&lab);
    let writer = writer_of(&a, &b);
    let lease = lab.bind.query("_pigeon-dns-lease", "TXT");
    let name = ["dns1", "dns2"][writer];
    assert!(
        lease.len() == 1 && lease[0].contains(&format!("holder={name}")),
        "{lease:?}"
    );
    // Both are ready: the writer reconciled, the standby read the lease.
    a.wait_for_http_status("/readyz", 200, Duration::from_secs(5));
    b.wait_for_http_status("/readyz", 200, Duration::from_secs(5));
    // Several lease times later: still one writer, no record changed again.
    let changes = imap_changes(&lab);
    assert_eq!(changes, 2, "one add per node:\n{}", lab.bind.log_text());
    let until = Instant::now() + 3 * LEASE_TIME;
    while Instant::now() < until {
        assert_eq!(held(&a) + held(&b), 1.0, "one writer at all times");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        imap_changes(&lab),
        changes,
        "records oscillated:\n{}",
        lab.bind.log_text()
    );
    let standby = [&a, &b][1 - writer];
    assert!(
        !standby.logs().iter().any(|l| l.contains("UPDATE applied")),
        "the standby wrote"
    );
}

#[test]
fn killing_the_writer_hands_over_within_the_lease_time() {
    let mut lab = Lab::start(2);
    let mut a = start_writer(&lab, "dns1");
    let b = lab.daemon(&ha_config(&lab, "dns2", 1));
    b.wait_for_http_status("/readyz", 200, Duration::from_secs(10));
    assert_eq!(held(&b), 0.0);

    let killed = Instant::now();
    a.kill();
    wait_until("dns2 takes the lease", 3 * LEASE_TIME, || {
        (held(&b) == 1.0).then_some(())
    });
    let took = killed.elapsed();
    println!("handover after SIGKILL: {took:?} (lease_time {LEASE_TIME:?})");
    // Within the lease time, plus one look (a third of it) and scrape slack.
    assert!(
        took <= LEASE_TIME + LEASE_TIME / 3 + Duration::from_millis(500),
        "{took:?}"
    );

    // The new writer acts on health.
    stop_until_unpublished(&mut lab, "mail2", Duration::from_secs(5));
}

#[test]
fn a_stopped_writer_releases_the_lease_and_the_standby_takes_it_at_once() {
    let lab = Lab::start(1);
    let mut a = lab.daemon(&ha_config(&lab, "dns1", 0));
    wait_until("dns1 writes", Duration::from_secs(10), || {
        (held(&a) == 1.0).then_some(())
    });
    let b = lab.daemon(&ha_config(&lab, "dns2", 1));
    b.wait_for_http_status("/readyz", 200, Duration::from_secs(10));
    let stopped = Instant::now();
    assert!(a.terminate().success());
    assert!(a.logs().iter().any(|l| l.contains("Lease released.")));
    wait_until("dns2 takes the lease", 2 * LEASE_TIME, || {
        (held(&b) == 1.0).then_some(())
    });
    let took = stopped.elapsed();
    println!("handover after SIGTERM: {took:?}");
    assert!(took < LEASE_TIME, "{took:?}");
}

#[test]
fn a_standby_that_sees_every_node_down_never_writes() {
    let lab = Lab::start(2);
    let _writer = start_writer(&lab, "dns1");
    // The standby's probes cannot reach the nodes (a closed port).
    let closed = common::net::free_port(lab.cluster.nodes[0].ip());
    let cfg = lab
        .config()
        .http(lab.http_addr(1))
        .ha("dns2", LEASE)
        .pool(PoolSpec::a("imap", "imap").port(closed));
    let b = lab.daemon(&cfg);
    b.wait_for_http_status("/healthz", 200, Duration::from_secs(10));
    wait_until(
        "the standby decided its nodes are down",
        Duration::from_secs(10),
        || {
            (b.metrics()
                .sum("pigeon_dns_transitions_total", &[("to", "down")])
                >= 2.0)
                .then_some(())
        },
    );
    let serial = lab.bind.serial();
    let ips = lab.cluster.ip_strings();
    let until = Instant::now() + 2 * LEASE_TIME;
    while Instant::now() < until {
        let answer = lab.bind.query("imap", "A");
        assert!(
            ips.iter().all(|ip| answer.contains(ip)),
            "the standby removed records: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(held(&b), 0.0);
    assert!(
        !b.logs().iter().any(|l| l.contains("UPDATE")),
        "the standby sent an UPDATE"
    );
    // Only lease renewals changed the zone meanwhile.
    assert!(lab.bind.serial() > serial, "the writer renews");
}

#[test]
fn a_standby_cut_off_from_the_primary_never_writes_and_is_not_ready() {
    let lab = Lab::start(1);
    let _a = lab.daemon(&ha_config(&lab, "dns1", 0));
    lab.bind
        .wait_for("imap", "A", |r| !r.is_empty(), Duration::from_secs(10));
    // A primary address where nothing answers.
    let silent = common::FakeServer::silent(std::net::SocketAddr::new(lab.subnet.ip(40), 0));
    let cfg = ha_config(&lab, "dns2", 1)
        .dns("server", &common::toml_str(&silent.addr().to_string()))
        .dns("timeout", "\"300ms\"");
    let mut b = lab.daemon(&cfg);
    b.wait_for_log("Cannot read or renew the lease", Duration::from_secs(10));
    assert_eq!(held(&b), 0.0);
    let (status, _) = b.http_get("/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(!b.logs().iter().any(|l| l.contains("UPDATE")));
}

/// `[ha]` added by SIGHUP: the daemon takes the lease and keeps writing
/// (the lease timer follows the configuration, not only the start).
#[test]
fn ha_added_by_a_reload_takes_the_lease_and_keeps_writing() {
    let mut lab = Lab::start(2);
    let plain = lab
        .config()
        .http(lab.http_addr(0))
        .pool(PoolSpec::a("imap", "imap").port(lab.cluster.ports.imap));
    let path = lab.write_config(&plain);
    let daemon = Daemon::spawn(&path, plain.http_addr());
    wait_every_node_published(&lab);
    assert!(lab.bind.query("_pigeon-dns-lease", "TXT").is_empty());

    ha_config(&lab, "dns1", 0).write(&path);
    daemon.signal("HUP");
    lab.bind.wait_for(
        "_pigeon-dns-lease",
        "TXT",
        |r| r.len() == 1 && r[0].contains("holder=dns1"),
        Duration::from_secs(10),
    );
    wait_until("the lease held", Duration::from_secs(5), || {
        (held(&daemon) == 1.0).then_some(())
    });
    // Still the writer, lease times later: records follow health.
    std::thread::sleep(2 * LEASE_TIME);
    stop_until_unpublished(&mut lab, "mail2", Duration::from_secs(10));
    assert_eq!(held(&daemon), 1.0);
}

/// The instances' lease records at `name` (other TXT records left out).
fn leases_at(lab: &Lab, name: &str) -> Vec<String> {
    lab.bind
        .query(name, "TXT")
        .into_iter()
        .filter(|t| t.contains("holder="))
        .collect()
}

/// `lease = "@"` beside the zone's SPF record: the compare-and-swap covers
/// the whole TXT RRset, so one instance takes the lease and writes, and the
/// SPF record stays.
#[test]
fn a_lease_at_the_apex_beside_an_spf_record_elects_one_writer() {
    let lab = Lab::start(2);
    let cfg = |instance: &str, http: u8| {
        ha_config(&lab, instance, http).ha_set("lease", &common::toml_str("@"))
    };
    let a = lab.daemon(&cfg("dns1", 0));
    let b = lab.daemon(&cfg("dns2", 1));
    wait_every_node_published(&lab);
    let writer = writer_of(&a, &b);
    let txt = lab.bind.query("@", "TXT");
    assert!(txt.contains(&"\"v=spf1 -all\"".to_string()), "{txt:?}");
    assert_eq!(leases_at(&lab, "@").len(), 1, "{txt:?}");
    let w = [&a, &b][writer];
    assert!(
        w.logs().iter().any(|l| l.contains("share the lease name")),
        "the shared name is not pointed out"
    );
    // Still one writer lease times later; the renewals go through.
    let until = Instant::now() + 3 * LEASE_TIME;
    while Instant::now() < until {
        assert_eq!(held(&a) + held(&b), 1.0, "one writer at all times");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        w.metrics().sum(
            "pigeon_dns_lease_operations_total",
            &[("op", "renew"), ("result", "ok")]
        ) >= 2.0
    );
}

/// Two instances configured with the same `instance`: a lease record names
/// the process too (a token), so they never both believe they hold it.
#[test]
fn two_instances_with_one_identity_never_both_write() {
    let lab = Lab::start(2);
    let a = start_writer(&lab, "dns1");
    let mut b = lab.daemon(&ha_config(&lab, "dns1", 1));
    b.wait_for_log("under this instance's identity", Duration::from_secs(10));
    let until = Instant::now() + 3 * LEASE_TIME;
    while Instant::now() < until {
        assert_eq!((held(&a), held(&b)), (1.0, 0.0), "the twin took over");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b.logs().iter().any(|l| l.contains("UPDATE applied")));
}

/// A reload that renames the lease moves it (the old record released), one
/// that changes lease_time applies it, one that removes `[ha]` releases it;
/// the daemon keeps writing throughout.
#[test]
fn reloads_move_retime_and_release_the_lease() {
    let mut lab = Lab::start(2);
    let cfg = ha_config(&lab, "dns1", 0);
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    wait_every_node_published(&lab);
    lab.bind.wait_for(
        "_pigeon-dns-lease",
        "TXT",
        |r| r.len() == 1,
        Duration::from_secs(5),
    );

    cfg.clone()
        .ha_set("lease", &common::toml_str("_writer"))
        .ha_set("lease_time", &common::toml_str("20s"))
        .write(&path);
    daemon.signal("HUP");
    lab.bind
        .wait_for("_writer", "TXT", |r| r.len() == 1, Duration::from_secs(5));
    lab.bind.wait_for(
        "_pigeon-dns-lease",
        "TXT",
        |r| r.is_empty(),
        Duration::from_secs(5),
    );
    // The new lease time: the record says it expires 20 s after it was written.
    let text = lab.bind.query("_writer", "TXT").remove(0);
    let expires: u64 = text
        .split_whitespace()
        .find_map(|f| f.trim_matches('"').strip_prefix("expires="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no expiry in {text}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expires > now + 10, "lease_time not applied: {text}");

    ha_config(&lab, "dns1", 0).write(&path);
    let without_ha = lab
        .config()
        .http(lab.http_addr(0))
        .pool(PoolSpec::a("imap", "imap").port(lab.cluster.ports.imap));
    without_ha.write(&path);
    daemon.signal("HUP");
    lab.bind
        .wait_for("_writer", "TXT", |r| r.is_empty(), Duration::from_secs(5));
    assert!(lab.bind.query("_pigeon-dns-lease", "TXT").is_empty());
    stop_until_unpublished(&mut lab, "mail2", Duration::from_secs(10));
}

/// A dry run never takes the lease: a writer started beside it takes the
/// free lease at once and writes.
#[test]
fn a_dry_run_never_takes_the_lease() {
    let lab = Lab::start(2);
    let cfg = ha_config(&lab, "dry", 0);
    let path = lab.write_config(&cfg);
    let dry = Daemon::spawn_args(
        &["run", "-c", path.to_str().unwrap(), "--dry-run"],
        cfg.http_addr(),
    );
    dry.wait_for_http_status("/readyz", 200, Duration::from_secs(10));
    let until = Instant::now() + 2 * LEASE_TIME;
    while Instant::now() < until {
        assert!(
            lab.bind.query("_pigeon-dns-lease", "TXT").is_empty(),
            "the dry run wrote a lease"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(held(&dry), 0.0);
    let writer = lab.daemon(&ha_config(&lab, "dns1", 1));
    wait_until("the writer takes the lease", LEASE_TIME, || {
        (held(&writer) == 1.0).then_some(())
    });
    wait_every_node_published(&lab);
    assert!(!dry.logs().iter().any(|l| l.contains("UPDATE applied")));
}

/// `plan --apply` never takes the lease: beside a live writer it refuses;
/// once the writer is gone (its lease unchanged for a lease time) it applies,
/// fenced by the lease as it saw it, and leaves that lease in place.
#[test]
fn plan_apply_refuses_beside_a_live_writer_and_never_takes_the_lease() {
    let mut lab = Lab::start(2);
    let cfg = ha_config(&lab, "dns1", 0);
    let mut writer = lab.daemon(&cfg);
    wait_every_node_published(&lab);
    let path = lab.write_config(&ha_config(&lab, "ops", 1));
    let started = Instant::now();
    let out = common::run_cli(&["plan", "-c", path.to_str().unwrap(), "--apply"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("holds a live lease"), "{}", out.stderr);
    assert!(
        started.elapsed() < 2 * LEASE_TIME,
        "{:?}",
        started.elapsed()
    );

    writer.kill();
    let lease = leases_at(&lab, "_pigeon-dns-lease");
    lab.node_mut("mail2").stop();
    let out = common::run_cli(&["plan", "-c", path.to_str().unwrap(), "--apply"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let remaining = lab.node("mail1").ip().to_string();
    let answer = lab.bind.query("imap", "A");
    assert!(
        answer.contains(&remaining) && !answer.contains(&lab.node("mail2").ip().to_string()),
        "{answer:?}"
    );
    assert_eq!(
        leases_at(&lab, "_pigeon-dns-lease"),
        lease,
        "plan changed the lease"
    );
}
