//! Health to DNS, end to end (contract.md, "DNS behaviour"): real dovecot
//! nodes are probed, and what BIND answers follows their health: every pool
//! converges to exactly the healthy nodes' records, foreign records keep
//! their data and TTL, a failure reaches BIND as soon as fall decides it, a
//! node that comes back returns after rise, and a pool whose nodes are all
//! down is never left without records.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Lab, PoolSpec, apex_mx, imap_a, ips, sorted, wait_standard_pools};

/// Deadline for anything that takes a few probe rounds and one UPDATE
/// (well under a second on an idle machine): generous for a loaded 2-core CI.
const CONVERGE: Duration = Duration::from_secs(20);

const POOLS: [&str; 5] = ["imap", "pop", "smtp", "@", "_imap._tcp"];

/// The zone lines (as `Bind::zone_records` prints them) that the standard
/// pools add for `nodes`: TTL 300 at `imap` (the foreign record's), 3600 at
/// the apex (the foreign MX's), dns.ttl = 60 where pigeon-dns alone fills a name.
fn standard_zone_lines(lab: &Lab, nodes: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    let port = lab.cluster.ports.imap;
    for n in nodes {
        let node = lab.node(n);
        let ip = node.ip();
        lines.push(format!("imap.example.com. 300 A {ip}"));
        lines.push(format!("pop.example.com. 60 A {ip}"));
        lines.push(format!("smtp.example.com. 60 A {ip}"));
        lines.push(format!("example.com. 3600 MX 10 {}.", node.host));
        lines.push(format!(
            "_imap._tcp.example.com. 60 SRV 0 1 {port} {}.",
            node.host
        ));
    }
    lines
}

fn up_sample(pool: &str, node: &str, address: &str) -> String {
    format!("pigeon_dns_node_up{{pool=\"{pool}\",node=\"{node}\",address=\"{address}\"}}")
}

fn transitions_sample(pool: &str, node: &str, address: &str, to: &str) -> String {
    format!(
        "pigeon_dns_transitions_total{{pool=\"{pool}\",node=\"{node}\",address=\"{address}\",to=\"{to}\"}}"
    )
}

/// The value of `key=` in a text log line (up to the next space, or the
/// whole quoted string).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line
        .match_indices(&format!("{key}="))
        .find(|(i, _)| *i == 0 || matches!(line.as_bytes()[i - 1], b' ' | b'{'))
        .map(|(i, m)| i + m.len())?;
    let rest = &line[start..];
    let end = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map(|e| e + 2).unwrap_or(rest.len())
    } else {
        rest.find([' ', '}']).unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

/// The health transition lines (`Target is down.` / `Target is up.`) after
/// `mark` for `node`.
fn transitions(daemon: &Daemon, mark: usize, message: &str, node: &str) -> Vec<String> {
    daemon.logs()[mark..]
        .iter()
        .filter(|l| l.contains(message) && field(l, "node") == Some(node))
        .cloned()
        .collect()
}

#[test]
fn all_healthy_nodes_fill_every_pool_and_foreign_records_stay() {
    let lab = Lab::start(3);
    let before = lab.bind.zone_records();
    let cfg = lab.standard_config().dns("resync_interval", "\"1s\"");
    let daemon = lab.daemon(&cfg);
    let nodes = ["mail1", "mail2", "mail3"];

    wait_standard_pools(&lab, &nodes, CONVERGE);

    // TTLs: the foreign set's at shared names, dns.ttl where it alone fills.
    for (name, rtype, ttl) in [
        ("imap", "A", 300),
        ("pop", "A", 60),
        ("smtp", "A", 60),
        ("@", "MX", 3600),
        ("_imap._tcp", "SRV", 60),
    ] {
        for (got, rdata) in lab.bind.query_with_ttl(name, rtype) {
            assert_eq!(
                got, ttl,
                "{name} {rtype} {rdata}: TTL {got}, expected {ttl}"
            );
        }
    }
    // A-only nodes: no AAAA appears.
    for name in ["imap", "pop", "smtp"] {
        assert!(
            lab.bind.query(name, "AAAA").is_empty(),
            "{name} AAAA appeared"
        );
    }
    // Nothing else in the zone was touched.
    let want = sorted(
        before
            .iter()
            .cloned()
            .chain(standard_zone_lines(&lab, &nodes)),
    );
    assert_eq!(
        lab.bind.zone_records(),
        want,
        "the zone holds more or less than expected"
    );

    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    assert_eq!(daemon.http_get("/healthz").unwrap().0, 200);
    let m = daemon.metrics();
    for pool in POOLS {
        for n in nodes {
            let ip = lab.node(n).ip().to_string();
            assert_eq!(
                m.get(&up_sample(pool, n, &ip)),
                Some(1.0),
                "node_up for {pool}/{n}:\n{}",
                m.text
            );
        }
        assert_eq!(
            m.get(&format!("pigeon_dns_records_published{{pool=\"{pool}\"}}")),
            Some(3.0),
            "records_published for {pool}"
        );
        assert_eq!(
            m.get(&format!("pigeon_dns_pool_all_down{{pool=\"{pool}\"}}")),
            Some(0.0),
            "pool_all_down for {pool}"
        );
    }
    let ok = m
        .get("pigeon_dns_dns_updates_total{result=\"ok\"}")
        .unwrap_or(0.0);
    assert!(ok >= 1.0, "dns_updates_total{{result=\"ok\"}} = {ok}");
    assert_eq!(m.get("pigeon_dns_lease_held"), Some(1.0));

    // Converged: a resync (every 1 s) finds nothing to change and sends nothing.
    let serial = lab.bind.serial();
    daemon.wait_reconciles(1.5, CONVERGE);
    assert_eq!(
        lab.bind.serial(),
        serial,
        "a resync of a converged zone changed it"
    );
    assert_eq!(
        daemon.metric_value("pigeon_dns_dns_updates_total{result=\"ok\"}"),
        Some(ok),
        "a resync of a converged zone sent an UPDATE"
    );
}

#[test]
fn a_failure_reaches_bind_within_fall_probes_without_a_resync() {
    let mut lab = Lab::start(2);
    let p = lab.cluster.ports;
    // No resync in the test's lifetime and no watch connection: only the
    // periodic probes (200 ms) and fall (2) can remove the records.
    let cfg = lab
        .config()
        .dns("resync_interval", "\"1h\"")
        .probe("watch", "false")
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let daemon = lab.daemon(&cfg);
    let both = ips(&lab, &["mail1", "mail2"]);
    lab.bind.wait_for("pop", "A", |a| a == both, CONVERGE);
    lab.bind.wait_for(
        "imap",
        "A",
        |a| a == imap_a(&lab, &["mail1", "mail2"]),
        CONVERGE,
    );

    let gone = lab.node("mail2").ip().to_string();
    let started = Instant::now();
    lab.node_mut("mail2").stop();
    let limit = Duration::from_secs(2);
    let elapsed = loop {
        let imap = lab.bind.query("imap", "A");
        let pop = lab.bind.query("pop", "A");
        if !imap.contains(&gone) && !pop.contains(&gone) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < CONVERGE,
            "mail2 still published after {CONVERGE:?}: imap {imap:?}, pop {pop:?}\nlog:\n{}",
            daemon.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "mail2's records left BIND {elapsed:?} after its dovecot stopped (interval 200ms, fall 2)"
    );
    assert!(
        elapsed <= limit,
        "a failure took {elapsed:?} to reach BIND (interval 200ms x fall 2 + margin = {limit:?}); \
         resync is 1h, so it must be event-driven\nlog:\n{}",
        daemon.log_tail(40)
    );
    assert_eq!(lab.bind.query("pop", "A"), ips(&lab, &["mail1"]));
    assert_eq!(lab.bind.query("imap", "A"), imap_a(&lab, &["mail1"]));
}

#[test]
fn a_stopped_node_leaves_every_pool_and_returns_after_rise() {
    let mut lab = Lab::start(3);
    let before = lab.bind.zone_records();
    let cfg = lab.standard_config();
    let mut daemon = lab.daemon(&cfg);
    wait_standard_pools(&lab, &["mail1", "mail2", "mail3"], CONVERGE);
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    let ip2 = lab.node("mail2").ip().to_string();
    let m = daemon.metrics();
    for pool in POOLS {
        assert_eq!(
            m.get(&transitions_sample(pool, "mail2", &ip2, "down")),
            Some(0.0),
            "{pool}: a down transition before any failure"
        );
    }

    let mark = daemon.log_mark();
    lab.node_mut("mail2").stop();
    wait_standard_pools(&lab, &["mail1", "mail3"], CONVERGE);
    // The rest of the zone is as it was.
    let want = sorted(
        before
            .iter()
            .cloned()
            .chain(standard_zone_lines(&lab, &["mail1", "mail3"])),
    );
    assert_eq!(lab.bind.zone_records(), want);

    // One transition line per target, each with from, to and a reason.
    for pool in POOLS {
        daemon.wait_for_metric(
            &transitions_sample(pool, "mail2", &ip2, "down"),
            |v| v == 1.0,
            CONVERGE,
        );
        daemon.wait_for_metric(&up_sample(pool, "mail2", &ip2), |v| v == 0.0, CONVERGE);
    }
    let down = transitions(&daemon, mark, "Target is down.", "mail2");
    for line in one_per_pool(&down, "'Target is down.' line for mail2") {
        assert!(
            line.contains(" INFO "),
            "a transition is logged at info: {line}"
        );
        assert_eq!(field(line, "from"), Some("up"), "{line}");
        assert_eq!(field(line, "to"), Some("down"), "{line}");
        assert_eq!(field(line, "address"), Some(ip2.as_str()), "{line}");
        let reason = field(line, "reason").unwrap_or_default();
        assert!(!reason.trim_matches('"').is_empty(), "no reason in {line}");
    }
    assert_eq!(down.len(), POOLS.len(), "{down:#?}");
    for other in ["mail1", "mail3"] {
        let lines = transitions(&daemon, mark, "Target is down.", other);
        assert!(lines.is_empty(), "{other} went down too: {lines:#?}");
    }

    // Back after rise.
    let mark = daemon.log_mark();
    lab.node_mut("mail2").start_again();
    wait_standard_pools(&lab, &["mail1", "mail2", "mail3"], CONVERGE);
    assert_eq!(lab.bind.zone_records(), {
        let mut all = before.clone();
        all.extend(standard_zone_lines(&lab, &["mail1", "mail2", "mail3"]));
        sorted(all)
    });
    daemon.wait_for_log_since(mark, "Target is up.", CONVERGE);
    let up = transitions(&daemon, mark, "Target is up.", "mail2");
    for (pool, line) in POOLS
        .into_iter()
        .zip(one_per_pool(&up, "'Target is up.' line"))
    {
        assert_eq!(field(line, "from"), Some("down"), "{line}");
        assert_eq!(field(line, "to"), Some("up"), "{line}");
        daemon.wait_for_metric(&up_sample(pool, "mail2", &ip2), |v| v == 1.0, CONVERGE);
        assert_eq!(
            daemon.metric_value(&transitions_sample(pool, "mail2", &ip2, "down")),
            Some(1.0)
        );
    }
    assert!(!daemon.has_exited());
}

/// The one line of each of [`POOLS`] among `lines` (its `pool=` field), in
/// that order; asserts there is exactly one, naming it `what`.
fn one_per_pool<'a>(lines: &'a [String], what: &str) -> Vec<&'a String> {
    POOLS
        .iter()
        .map(|pool| {
            let of_pool: Vec<&String> = lines
                .iter()
                .filter(|l| field(l, "pool") == Some(pool))
                .collect();
            assert_eq!(
                of_pool.len(),
                1,
                "{pool}: expected one {what}, got {of_pool:#?}"
            );
            of_pool[0]
        })
        .collect()
}

/// Polls BIND until `done` holds, asserting at every look that `pop` A and
/// the apex MX still hold at least one node record.
fn never_empty_until(lab: &Lab, daemon: &Daemon, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    let mut looks = 0;
    loop {
        let pop = lab.bind.query("pop", "A");
        let mx = lab.bind.query("@", "MX");
        looks += 1;
        assert!(
            !pop.is_empty(),
            "pop was left without records (look {looks})"
        );
        assert!(
            mx.iter().any(|r| r.starts_with("10 ")),
            "the apex was left without a node MX (look {looks}): {mx:?}"
        );
        if done() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {CONVERGE:?}; pop {pop:?}, mx {mx:?}\nlog:\n{}",
            daemon.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn metric_is(daemon: &Daemon, sample: &str, value: f64) -> bool {
    daemon
        .http_get("/metrics")
        .ok()
        .and_then(|(_, body)| common::Metrics::parse(&body).get(sample))
        == Some(value)
}

/// The daemon with pools `imap`, `pop` and `@` MX under `all_down =
/// policy` and a resync every second, once they hold both nodes.
fn start_all_down_pools(lab: &Lab, policy: &str) -> Daemon {
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .dns("resync_interval", "\"1s\"")
        .pool(PoolSpec::a("imap", "imap").port(p.imap).all_down(policy))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3).all_down(policy))
        .pool(
            PoolSpec::mx("@", "smtp", 10)
                .port(p.submission)
                .all_down(policy),
        );
    let daemon = lab.daemon(&cfg);
    wait_all_down_pools(lab, &["mail1", "mail2"]);
    daemon
}

/// Waits until the pools of [`start_all_down_pools`] hold exactly `nodes`.
fn wait_all_down_pools(lab: &Lab, nodes: &[&str]) {
    let want = ips(lab, nodes);
    lab.bind.wait_for("pop", "A", |a| a == want, CONVERGE);
    let want = apex_mx(lab, nodes);
    lab.bind.wait_for("@", "MX", |a| a == want, CONVERGE);
    let want = imap_a(lab, nodes);
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);
}

/// Waits until every pool of [`start_all_down_pools`] reports all its
/// nodes down, never seeing `pop` or `@` without records meanwhile.
fn wait_all_down(lab: &Lab, daemon: &Daemon) {
    never_empty_until(lab, daemon, "all_down for every pool", || {
        ["imap", "pop", "@"].iter().all(|p| {
            metric_is(
                daemon,
                &format!("pigeon_dns_pool_all_down{{pool=\"{p}\"}}"),
                1.0,
            )
        })
    });
}

#[test]
fn publish_all_publishes_every_node_when_all_are_down() {
    let mut lab = Lab::start(2);
    let daemon = start_all_down_pools(&lab, "publish-all");
    let both = ["mail1", "mail2"];
    let want = ips(&lab, &both);
    daemon.wait_for_metric(
        "pigeon_dns_pool_all_down{pool=\"pop\"}",
        |v| v == 0.0,
        CONVERGE,
    );

    lab.node_mut("mail1").stop();
    lab.node_mut("mail2").stop();
    wait_all_down(&lab, &daemon);
    // Every node is down and every node is published.
    let m = daemon.metrics();
    for pool in ["imap", "pop", "@"] {
        for n in both {
            let ip = lab.node(n).ip().to_string();
            assert_eq!(m.get(&up_sample(pool, n, &ip)), Some(0.0), "{pool}/{n}");
        }
    }
    never_empty_until(&lab, &daemon, "publish-all to restore both nodes", || {
        lab.bind.query("pop", "A") == want && lab.bind.query("@", "MX") == apex_mx(&lab, &both)
    });
    assert_eq!(lab.bind.query("imap", "A"), imap_a(&lab, &both));
    assert_eq!(
        lab.bind
            .query_with_ttl("imap", "A")
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![300, 300, 300]
    );

    // One node back: the policy is lifted and only it is published.
    lab.node_mut("mail1").start_again();
    wait_all_down_pools(&lab, &["mail1"]);
    daemon.wait_for_metric(
        "pigeon_dns_pool_all_down{pool=\"pop\"}",
        |v| v == 0.0,
        CONVERGE,
    );
}

#[test]
fn keep_leaves_the_last_records_when_all_are_down() {
    let mut lab = Lab::start(2);
    let daemon = start_all_down_pools(&lab, "keep");
    let both = ["mail1", "mail2"];
    let want = ips(&lab, &both);

    // mail1 fails while mail2 is up: it is removed as usual.
    lab.node_mut("mail1").stop();
    wait_all_down_pools(&lab, &["mail2"]);
    let only2 = ips(&lab, &["mail2"]);

    // mail2 fails too: keep leaves mail2's records where they are.
    lab.node_mut("mail2").stop();
    wait_all_down(&lab, &daemon);
    let ip2 = lab.node("mail2").ip().to_string();
    daemon.wait_for_metric(&up_sample("pop", "mail2", &ip2), |v| v == 0.0, CONVERGE);
    // Two resyncs (1 s) later the records are still mail2's alone.
    daemon.wait_reconciles(1.5, CONVERGE);
    assert_eq!(lab.bind.query("pop", "A"), only2, "keep changed pop");
    assert_eq!(
        lab.bind.query("@", "MX"),
        apex_mx(&lab, &["mail2"]),
        "keep changed the MX"
    );
    assert_eq!(
        lab.bind.query("imap", "A"),
        imap_a(&lab, &["mail2"]),
        "keep changed imap"
    );

    // Where none is left (deleted by hand), keep publishes them all.
    lab.bind
        .nsupdate(&format!("update delete pop.example.com. A {ip2}"));
    lab.bind.wait_for("pop", "A", |a| a == want, CONVERGE);
    assert_eq!(lab.bind.query("@", "MX"), apex_mx(&lab, &["mail2"]));
}
