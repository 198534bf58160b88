//! Several zones and their secondaries, end to end: one BIND primary
//! serving example.com and example.org, Knot DNS the primary of
//! example.net (its own key), and a BIND secondary of both BIND zones fed
//! by NOTIFY and IXFR. The secondary listens on `[::1]` at the primary's
//! port, and example.com's NS records name it: example.com finds it by its
//! NS names (the default), example.org lists it.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::{
    BindOpts, ConfigBuilder, Knot, KnotOpts, Lab, PoolSpec, Secondary, ZoneOpts,
    cluster::host_records, run_cli, sorted, toml_str,
};

const CONVERGE: Duration = Duration::from_secs(20);
/// A node stopped gracefully leaves every pool of every zone within this
/// (the watch sees the BYE at once; this bounds a slow CI machine).
const FAILOVER: Duration = Duration::from_secs(4);

/// Everything the scenarios share.
struct World {
    lab: Lab,
    knot: Knot,
    secondary: Secondary,
    cfg: ConfigBuilder,
}

impl World {
    fn start() -> World {
        let ns2 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut lab = Lab::start_with(
            2,
            BindOpts::default()
                .notify_delay(0)
                .record("@ 3600 IN NS ns2.example.com.")
                .record(&format!("ns2 3600 IN AAAA {ns2}"))
                .also_zone(ZoneOpts::new("example.org").no_foreign_records()),
        );
        let port = lab.bind.addr().port();
        let zones = ["example.com", "example.org"];
        let secondary = Secondary::start_on(&mut lab.bind, &zones, ns2, Some(port));
        let mut knot_opts = KnotOpts::default();
        for line in host_records(&lab.subnet, 2) {
            knot_opts = knot_opts.record(&line);
        }
        let knot = Knot::start(knot_opts);
        let p = lab.cluster.ports;
        let cfg = lab
            .config()
            .zone(
                "example.org",
                &lab.bind.server(),
                &lab.bind.key_file(),
                &[(
                    "secondaries",
                    &format!("[{}]", toml_str(&secondary.addr().to_string())),
                )],
            )
            .zone(
                "example.net",
                &knot.server(),
                &knot.key_file(),
                &[("secondaries", "[]")],
            );
        let mut cfg = cfg;
        for (zone, spec) in [
            ("example.com", PoolSpec::a("imap", "imap").port(p.imap)),
            (
                "example.com",
                PoolSpec::mx("@", "smtp", 10).port(p.submission),
            ),
            (
                "example.org",
                PoolSpec::mx("@", "smtp", 10).port(p.submission),
            ),
            (
                "example.org",
                PoolSpec::srv("_imap._tcp", "imap").port(p.imap),
            ),
            ("example.net", PoolSpec::a("imap", "imap").port(p.imap)),
            (
                "example.net",
                PoolSpec::mx("@", "smtp", 10).port(p.submission),
            ),
        ] {
            cfg = cfg.pool(spec.set_str("zone", zone));
        }
        World {
            lab,
            knot,
            secondary,
            cfg,
        }
    }

    fn ip(&self, node: &str) -> String {
        self.lab.node(node).ip().to_string()
    }

    /// What each pool of each zone holds at its primary, as one sorted list
    /// of `zone name type rdata` lines (foreign records left out).
    fn published(&self) -> Vec<String> {
        self.published_in(true)
    }

    fn published_in(&self, with_knot: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let bind = &self.lab.bind;
        for (zone, name, rtype) in [
            ("example.com", "imap", "A"),
            ("example.com", "@", "MX"),
            ("example.org", "@", "MX"),
            ("example.org", "_imap._tcp", "SRV"),
        ] {
            for rdata in bind.query_in(zone, name, rtype) {
                lines.push(format!("{zone} {name} {rtype} {rdata}"));
            }
        }
        for (name, rtype) in [("imap", "A"), ("@", "MX")]
            .into_iter()
            .filter(|_| with_knot)
        {
            for rdata in self.knot.query(name, rtype) {
                lines.push(format!("example.net {name} {rtype} {rdata}"));
            }
        }
        sorted(lines.into_iter().filter(|l| !is_foreign(l)))
    }

    /// What the pools of the two BIND zones hold at their primary.
    fn published_at_bind(&self) -> Vec<String> {
        self.published_in(false)
    }

    /// The same at the secondary, for its two zones.
    fn at_secondary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (zone, name, rtype) in [
            ("example.com", "imap", "A"),
            ("example.com", "@", "MX"),
            ("example.org", "@", "MX"),
            ("example.org", "_imap._tcp", "SRV"),
        ] {
            for rdata in self.secondary.query(zone, name, rtype) {
                lines.push(format!("{zone} {name} {rtype} {rdata}"));
            }
        }
        sorted(lines.into_iter().filter(|l| !is_foreign(l)))
    }

    /// What every pool of every zone holds when `nodes` are up.
    fn expected(&self, nodes: &[&str]) -> Vec<String> {
        let p = self.lab.cluster.ports;
        let mut lines = Vec::new();
        for node in nodes {
            let ip = self.ip(node);
            lines.push(format!("example.com imap A {ip}"));
            lines.push(format!("example.com @ MX 10 {node}.example.com."));
            lines.push(format!("example.org @ MX 10 {node}.example.com."));
            lines.push(format!(
                "example.org _imap._tcp SRV 0 1 {} {node}.example.com.",
                p.imap
            ));
            lines.push(format!("example.net imap A {ip}"));
            lines.push(format!("example.net @ MX 10 {node}.example.com."));
        }
        sorted(lines)
    }

    /// The example.com and example.org lines of [`World::expected`].
    fn expected_at_bind(&self, nodes: &[&str]) -> Vec<String> {
        self.expected(nodes)
            .into_iter()
            .filter(|l| !l.starts_with("example.net "))
            .collect()
    }

    /// Polls until `what` returns `want`; returns how long it took.
    fn wait(
        &self,
        what: impl Fn(&World) -> Vec<String>,
        want: &[String],
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let got = what(self);
            if got == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "after {within:?}:\n got  {got:#?}\n want {want:#?}\nsecondary's log:\n{}",
                self.secondary.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The harness zones' own records (the foreign imap A, backup MX, ...).
fn is_foreign(line: &str) -> bool {
    line.contains("198.51.100.") || line.contains("backup-mx")
}

fn serials(world: &World) -> [u32; 3] {
    [
        world.lab.bind.serial_of("example.com"),
        world.lab.bind.serial_of("example.org"),
        world.knot.serial(),
    ]
}

/// Every zone converges at its primary, and at the secondary; a node's
/// failure leaves every pool of every zone in one UPDATE per zone, and
/// reaches the secondary within the bound; the secondary's metrics and
/// `/status` say in sync; `plan` prints one block per zone.
#[test]
fn every_zone_converges_and_a_node_s_failure_leaves_every_pool_of_every_zone() {
    let mut world = World::start();
    let daemon = world.lab.daemon(&world.cfg);
    let both = world.expected(&["mail1", "mail2"]);
    world.wait(World::published, &both, CONVERGE);
    world.wait(
        World::at_secondary,
        &world.expected_at_bind(&["mail1", "mail2"]),
        CONVERGE,
    );
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);

    // The secondary is found by example.com's NS names (the primary's own
    // address left out) and listed for example.org; both in sync.
    let server = world.secondary.addr().to_string();
    for zone in ["example.com", "example.org"] {
        let up = format!("pigeon_dns_secondary_up{{zone=\"{zone}\",server=\"{server}\"}}");
        daemon.wait_for_metric(&up, |v| v == 1.0, CONVERGE);
        let behind =
            format!("pigeon_dns_secondary_behind_seconds{{zone=\"{zone}\",server=\"{server}\"}}");
        daemon.wait_for_metric(&behind, |v| v == 0.0, CONVERGE);
    }
    let metrics = daemon.metrics();
    assert_eq!(
        metrics.matching("pigeon_dns_secondary_up", &[]).count(),
        2,
        "example.net has none, and the primary is no secondary of its own:\n{}",
        metrics.text
    );
    let primary_serial = metrics
        .get("pigeon_dns_zone_serial{zone=\"example.org\",server=\"primary\"}")
        .unwrap_or_default();
    assert_eq!(
        primary_serial,
        f64::from(world.lab.bind.serial_of("example.org"))
    );
    let (code, status) = daemon.http_get("/status").expect("/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let zones: Vec<&str> = status["zones"]
        .as_array()
        .expect("zones")
        .iter()
        .filter_map(|z| z["zone"].as_str())
        .collect();
    assert_eq!(
        zones,
        ["example.com", "example.org", "example.net"],
        "{status:#}"
    );
    assert_eq!(
        status["zones"][0]["secondaries"][0]["in_sync"], true,
        "{status:#}"
    );

    let path = world.lab.write_config(&world.cfg);
    let out = run_cli(&["status".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for zone in ["example.com", "example.org"] {
        let primary = out
            .stdout
            .lines()
            .position(|l| l.starts_with(zone))
            .unwrap_or_else(|| panic!("{zone} not in:\n{}", out.stdout));
        let next = out.stdout.lines().nth(primary + 1).unwrap_or_default();
        assert!(
            next.contains(&server) && next.contains("in sync"),
            "{zone}'s secondary:\n{}",
            out.stdout
        );
    }

    // mail2 stops: every pool of every zone loses it, in one UPDATE per zone.
    let before = serials(&world);
    let updates = |m: &common::Metrics, zone: &str| {
        m.get(&format!(
            "pigeon_dns_dns_updates_total{{zone=\"{zone}\",result=\"ok\"}}"
        ))
        .unwrap_or_default()
    };
    let counted = daemon.metrics();
    world.lab.node_mut("mail2").stop();
    let one = world.expected(&["mail1"]);
    let took = world.wait(World::published, &one, FAILOVER);
    let at_secondary = world.wait(
        World::at_secondary,
        &world.expected_at_bind(&["mail1"]),
        FAILOVER,
    );
    eprintln!("gone at every primary after {took:?}, at the secondary after {at_secondary:?}");
    let after = serials(&world);
    assert_eq!(
        after,
        before.map(|s| s + 1),
        "one UPDATE per zone (serials of example.com, .org, .net before {before:?}):\n{}",
        daemon
            .logs()
            .iter()
            .filter(|l| l.contains("UPDATE") || l.contains("Transition"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let metrics = daemon.metrics();
    for zone in ["example.com", "example.org", "example.net"] {
        assert_eq!(
            updates(&metrics, zone) - updates(&counted, zone),
            1.0,
            "{zone}"
        );
    }
    // Propagation is measured for the zones with a secondary.
    daemon.wait_for_metric(
        "pigeon_dns_propagation_seconds_count{zone=\"example.org\"}",
        |v| v >= 2.0,
        CONVERGE,
    );
    let metrics = daemon.metrics();
    for zone in ["example.com", "example.org", "example.net"] {
        let sample = |what: &str| {
            metrics.get(&format!(
                "pigeon_dns_propagation_seconds_{what}{{zone=\"{zone}\"}}"
            ))
        };
        eprintln!(
            "{zone}: propagation count {:?}, sum {:?} s",
            sample("count"),
            sample("sum")
        );
    }
    assert_eq!(
        metrics.get("pigeon_dns_propagation_seconds_count{zone=\"example.net\"}"),
        Some(0.0),
        "no secondary, nothing propagates"
    );

    // plan: one block per zone, nothing to change anywhere.
    let out = run_cli(&["plan".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    for zone in ["example.com", "example.org", "example.net"] {
        assert!(
            out.stderr.contains(&format!("{zone}.: nothing to change")),
            "{}",
            out.stderr
        );
    }
    world.lab.node_mut("mail2").start_again();
    world.wait(World::published, &both, CONVERGE);
    let out = run_cli(&["check".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("zones (3)"), "{}", out.stdout);
}

/// Knot, the primary of example.net, stopped while a node fails: the BIND
/// zones fail over as fast as ever, example.net's UPDATEs time out, and it
/// converges once Knot is back.
#[test]
fn a_stopped_primary_delays_no_other_zone() {
    let mut world = World::start();
    let daemon = world.lab.daemon(&world.cfg);
    let both = world.expected(&["mail1", "mail2"]);
    world.wait(World::published, &both, CONVERGE);

    world.knot.stop();
    world.lab.node_mut("mail1").stop();
    let took = world.wait(
        World::published_at_bind,
        &world.expected_at_bind(&["mail2"]),
        FAILOVER,
    );
    eprintln!("example.com and example.org failed over in {took:?} with Knot down");
    common::wait_until("example.net's UPDATEs to fail", CONVERGE, || {
        let metrics = daemon.metrics();
        let failed = ["timeout", "error"].iter().map(|result| {
            metrics.sum(
                "pigeon_dns_dns_updates_total",
                &[("zone", "example.net"), ("result", result)],
            )
        });
        (failed.sum::<f64>() >= 1.0).then_some(())
    });
    // The other zones' series show nothing wrong.
    let metrics = daemon.metrics();
    for zone in ["example.com", "example.org"] {
        for result in ["timeout", "error", "refused"] {
            let sample =
                format!("pigeon_dns_dns_updates_total{{zone=\"{zone}\",result=\"{result}\"}}");
            assert_eq!(metrics.get(&sample), Some(0.0), "{sample}");
        }
    }

    world.knot.start_again();
    world.wait(World::published, &world.expected(&["mail2"]), CONVERGE);
    world.lab.node_mut("mail1").start_again();
    world.wait(World::published, &both, CONVERGE);
}

/// The secondary stopped: `secondary_up` 0 and `secondary_behind_seconds`
/// growing once the zone changes, one log line per zone naming it; started
/// again: in sync, and said so.
#[test]
fn a_stopped_secondary_is_down_and_behind_until_it_is_back() {
    let mut world = World::start();
    let mut daemon = world.lab.daemon(&world.cfg);
    let both = world.expected(&["mail1", "mail2"]);
    world.wait(World::published, &both, CONVERGE);
    let server = world.secondary.addr().to_string();
    let up = format!("pigeon_dns_secondary_up{{zone=\"example.org\",server=\"{server}\"}}");
    let behind =
        format!("pigeon_dns_secondary_behind_seconds{{zone=\"example.org\",server=\"{server}\"}}");
    daemon.wait_for_metric(&up, |v| v == 1.0, CONVERGE);

    world.secondary.stop();
    world.lab.node_mut("mail2").stop();
    world.wait(World::published, &world.expected(&["mail1"]), FAILOVER);
    daemon.wait_for_metric(&up, |v| v == 0.0, CONVERGE);
    let first = daemon.wait_for_metric(&behind, |v| v > 0.0, CONVERGE);
    daemon.wait_for_metric(&behind, |v| v > first + 1.0, CONVERGE);
    let silent = |zone: &str| {
        daemon
            .logs()
            .iter()
            .filter(|l| {
                l.contains("Secondary does not answer") && l.contains(zone) && l.contains(&server)
            })
            .count()
    };
    assert_eq!(silent("example.org"), 1, "{}", daemon.log_tail(40));
    assert_eq!(silent("example.com"), 1, "{}", daemon.log_tail(40));
    assert_eq!(
        daemon.metric_value("pigeon_dns_secondary_up{zone=\"example.com\"}"),
        Some(0.0)
    );
    // Readiness does not depend on secondaries.
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);

    world.secondary.start_again();
    // BIND asks the primary only on a NOTIFY or a timer: as `rndc refresh`.
    world.secondary.refresh("example.com");
    world.secondary.refresh("example.org");
    daemon.wait_for_metric(&up, |v| v == 1.0, CONVERGE);
    daemon.wait_for_metric(&behind, |v| v == 0.0, CONVERGE);
    daemon.wait_for_log("Secondary is in sync again", CONVERGE);
    world.wait(
        World::at_secondary,
        &world.expected_at_bind(&["mail1"]),
        CONVERGE,
    );
    let _ = daemon.terminate();
}

/// `check` names the file, line and field of each several-zones mistake.
#[test]
fn check_names_the_line_of_each_zone_mistake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.key");
    std::fs::write(
        &key,
        "key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=\";\n};\n",
    )
    .expect("key");
    let head = format!(
        "[dns]\nserver = \"127.0.0.1:53\"\nzone = \"example.com\"\nkey_file = {}\n\
         [[zone]]\nname = \"example.org\"\n\
         [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n",
        toml_str(&key.display().to_string())
    );
    for (pool, line, field, words) in [
        (
            "[[pool]]\nzone = \"example.org\"\nname = \"imap.example.com.\"\ncheck = \"imap\"\n",
            12,
            "pool[0].name",
            "outside the zone example.org.",
        ),
        (
            "[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
            11,
            "pool[0].name",
            "missing `zone`",
        ),
        (
            "[[zone]]\nname = \"example.net\"\nkey_file = \"\"\n[[pool]]\nname = \"imap.example.org.\"\ncheck = \"imap\"\n",
            12,
            "zone[1].key_file",
            "empty",
        ),
    ] {
        let path = dir.path().join("pigeon-dns.toml");
        std::fs::write(&path, format!("{head}{pool}")).expect("config");
        let out = run_cli(&["check".as_ref(), "-c".as_ref(), path.as_os_str()]);
        assert_eq!(out.code(), Some(1), "{}", out.stdout);
        let located = format!("{}:{line}: {field}:", path.display());
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(&located) && l.contains(words)),
            "`{located} ... {words}` not in:\n{}",
            out.stderr
        );
    }
    // A zone without a server anywhere: at its table's line.
    let path = dir.path().join("no-server.toml");
    let text = format!(
        "[dns]\nkey_file = {}\n[[zone]]\nname = \"example.org\"\n\
         [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\
         [[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
        toml_str(&key.display().to_string())
    );
    std::fs::write(&path, text).expect("config");
    let out = run_cli(&["check".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code(), Some(1));
    let located = format!("{}:3: zone[0].server:", path.display());
    assert!(out.stderr.contains(&located), "{}", out.stderr);
}
