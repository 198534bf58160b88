//! The daemon and its primary (contract.md, "DNS behaviour"): it survives a
//! primary that goes away (logs why, retries with backoff capped at
//! resync_interval, `/readyz` 503 while failing for longer than that) and
//! converges when it returns; it repairs drift at every resync without
//! touching foreign records; it reports TSIG failures as such (BADSIG,
//! BADKEY, with the key name) and keeps running.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, FOREIGN_IMAP, Lab, PoolSpec, imap_a, ips, sorted};

/// Deadline for anything that takes a few probe rounds and one UPDATE.
const CONVERGE: Duration = Duration::from_secs(20);
/// Seconds of the day of a text log line's leading RFC 3339 timestamp.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// WARN/ERROR lines after `mark` that mention `needle`.
fn failure_lines(daemon: &Daemon, mark: usize, needle: &str) -> Vec<String> {
    daemon.logs()[mark..]
        .iter()
        .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains(needle))
        .cloned()
        .collect()
}

/// Start times of the attempts behind `lines`: lines less than 50 ms apart
/// belong to one attempt (e.g. "UPDATE failed" then "Reconcile failed").
fn attempts(lines: &[String]) -> Vec<f64> {
    let mut starts: Vec<f64> = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for t in lines.iter().filter_map(|l| log_time(l)) {
        if t - last > 0.05 {
            starts.push(t);
        }
        last = t;
    }
    starts
}

/// The daemon with pools `imap` and `pop` and a resync every second, once
/// both nodes are published.
fn start_imap_and_pop(lab: &Lab) -> Daemon {
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .dns("resync_interval", "\"1s\"")
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let daemon = lab.daemon(&cfg);
    let both = ["mail1", "mail2"];
    lab.bind
        .wait_for("pop", "A", |a| a == ips(lab, &both), CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(lab, &both), CONVERGE);
    daemon
}

#[test]
fn the_daemon_survives_a_primary_outage_and_converges_after() {
    let mut lab = Lab::start(2);
    let daemon = start_imap_and_pop(&lab);
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);

    // The primary goes away, and then a node fails.
    let server = lab.bind.server();
    let mark = daemon.log_mark();
    let stopped = Instant::now();
    lab.bind.stop();
    lab.node_mut("mail2").stop();

    daemon.wait_for_http_status("/readyz", 503, CONVERGE);
    let to_503 = stopped.elapsed();
    println!("/readyz turned 503 {to_503:?} after the primary stopped (resync_interval 1s)");
    assert!(
        to_503 >= Duration::from_secs(1),
        "/readyz turned 503 after {to_503:?}, before the primary had failed for resync_interval (1s)"
    );

    // It logs why and retries; let the outage last until the retries span 3 s.
    let lines = common::wait_until(
        "failures naming the primary, spanning 3 s",
        CONVERGE,
        || {
            let lines = failure_lines(&daemon, mark, &server);
            let times = attempts(&lines);
            let span = times.last().zip(times.first()).map(|(l, f)| l - f);
            span.is_some_and(|s| s >= 3.0).then_some(lines)
        },
    );
    assert!(!daemon.has_exited(), "the daemon exited during the outage");
    assert_eq!(daemon.http_get("/healthz").unwrap().0, 200);
    let times = attempts(&lines);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "{} attempts during the outage, gaps {:?}; first failure line: {}",
        times.len(),
        gaps.iter().map(|g| format!("{g:.2}s")).collect::<Vec<_>>(),
        lines[0]
    );
    // Backoff: not a hot loop, capped at resync_interval (1 s, plus scheduling slack).
    assert!(
        times.len() <= 12,
        "{} attempts within ~3 s: no backoff?\n{}",
        times.len(),
        lines.join("\n")
    );
    let max_gap = gaps.iter().cloned().fold(0.0, f64::max);
    assert!(
        max_gap <= 2.5,
        "a retry came {max_gap:.2}s after the previous one: the backoff is not capped at resync_interval (1s)\n{}",
        lines.join("\n")
    );
    assert!(
        gaps.last().is_some_and(|g| *g >= 0.5),
        "the retries do not back off: gaps {gaps:?}"
    );

    // The primary returns: the daemon converges (mail2 removed) within
    // about one resync_interval.
    lab.bind.start_again();
    let back = Instant::now();
    let one = ips(&lab, &["mail1"]);
    lab.bind.wait_for("pop", "A", |a| a == one, CONVERGE);
    lab.bind
        .wait_for("imap", "A", |a| a == imap_a(&lab, &["mail1"]), CONVERGE);
    let converged = back.elapsed();
    println!("converged {converged:?} after the primary returned");
    assert!(
        converged <= Duration::from_secs(4),
        "converged only {converged:?} after the primary returned (backoff cap: resync_interval 1s)"
    );
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    assert!(!daemon.has_exited());
}

#[test]
fn drift_is_repaired_at_resync_and_foreign_additions_stay() {
    let mut lab = Lab::start(2);
    let daemon = start_imap_and_pop(&lab);
    let both = ["mail1", "mail2"];

    // By hand: a foreign record at a managed name, and two managed records deleted.
    let ip1 = lab.node("mail1").ip().to_string();
    lab.bind
        .nsupdate("update add imap.example.com. 300 A 203.0.113.9");
    let deleted = Instant::now();
    lab.bind.nsupdate(&format!(
        "update delete pop.example.com. A {ip1}\nupdate delete imap.example.com. A {ip1}"
    ));
    lab.bind
        .wait_for("pop", "A", |a| a == ips(&lab, &both), CONVERGE);
    let want = sorted(
        imap_a(&lab, &both)
            .into_iter()
            .chain(["203.0.113.9".into()]),
    );
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);
    let repaired = deleted.elapsed();
    println!("hand-deleted records restored after {repaired:?} (resync_interval 1s)");
    assert!(
        repaired <= Duration::from_secs(4),
        "drift repaired only after {repaired:?} (resync_interval 1s)"
    );
    for (ttl, rdata) in lab.bind.query_with_ttl("imap", "A") {
        assert_eq!(ttl, 300, "imap A {rdata} has TTL {ttl}");
    }

    // A managed record of a down node added by hand is removed again.
    lab.node_mut("mail2").stop();
    let one = ips(&lab, &["mail1"]);
    lab.bind.wait_for("pop", "A", |a| a == one, CONVERGE);
    let ip2 = lab.node("mail2").ip().to_string();
    lab.bind
        .nsupdate(&format!("update add pop.example.com. 60 A {ip2}"));
    lab.bind.wait_for("pop", "A", |a| a == one, CONVERGE);

    // After more resyncs, the foreign record is still there, as it was.
    daemon.wait_reconciles(1.5, CONVERGE);
    assert_eq!(
        lab.bind.query_with_ttl("imap", "A"),
        sorted([
            ip1.clone(),
            FOREIGN_IMAP.to_owned(),
            "203.0.113.9".to_owned()
        ])
        .into_iter()
        .map(|r| (300, r))
        .collect::<Vec<_>>()
    );
    assert!(!daemon.has_exited());
}

/// Starts the daemon with `key_file` against a healthy one-node lab and
/// waits for a TSIG failure logged with `rcode` and `key`; checks the
/// metric, that it keeps running and retrying, and that BIND is untouched.
fn tsig_failure_is_reported(
    key_file_of: impl Fn(&Lab) -> std::path::PathBuf,
    rcode: &str,
    key: &str,
) {
    let lab = Lab::start(1);
    let before = lab.bind.zone_records();
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .dns("resync_interval", "\"1s\"")
        .dns(
            "key_file",
            &common::toml_str(&key_file_of(&lab).display().to_string()),
        )
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let mut daemon = lab.daemon(&cfg);
    let ip1 = lab.node("mail1").ip().to_string();
    daemon.wait_for_metric(
        &format!("pigeon_dns_node_up{{pool=\"pop\",node=\"mail1\",address=\"{ip1}\"}}"),
        |v| v == 1.0,
        CONVERGE,
    );
    let line = daemon.wait_for_log(rcode, CONVERGE);
    assert!(
        line.contains(key),
        "the {rcode} line does not name the key {key:?}: {line}"
    );
    assert!(
        line.contains(" WARN ") || line.contains(" ERROR "),
        "a TSIG failure is logged as a warning or error: {line}"
    );
    // It keeps running and retrying.
    let mark = daemon.log_mark();
    daemon.wait_for_log_since(mark, rcode, CONVERGE);
    assert!(!daemon.has_exited(), "the daemon exited on a TSIG failure");
    assert_eq!(daemon.http_get("/healthz").unwrap().0, 200);
    assert_eq!(
        daemon.http_get("/readyz").unwrap().0,
        503,
        "ready although no reconcile ever succeeded"
    );
    assert_eq!(lab.bind.zone_records(), before, "BIND changed");
    assert_eq!(lab.bind.serial(), 1, "BIND's serial moved");
    // Last, so that the checks above run whatever this says: a TSIG failure
    // is counted as such, whichever signed exchange met it (with a wrong key
    // the reads of the owned names fail first, so no UPDATE is ever sent).
    let sample = "pigeon_dns_dns_updates_total{result=\"tsig_error\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = daemon.metric_value(sample);
        if value.is_some_and(|v| v >= 1.0) {
            break;
        }
        if Instant::now() >= deadline {
            let failures = failure_lines(&daemon, 0, rcode);
            panic!(
                "{sample} = {value:?} after {} logged {rcode} failures, e.g.:\n{}\n\
                 a TSIG failure with the primary is not counted as tsig_error: an alert on it \
                 never fires for a wrong or unknown key",
                failures.len(),
                failures.first().map(String::as_str).unwrap_or("-")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!daemon.has_exited());
}

#[test]
fn a_wrong_tsig_secret_is_reported_as_badsig_and_the_daemon_keeps_running() {
    tsig_failure_is_reported(
        |lab| lab.bind.wrong_secret_key_file(),
        "BADSIG",
        "pigeon-dns",
    );
}

#[test]
fn an_unknown_tsig_key_is_reported_as_badkey_and_the_daemon_keeps_running() {
    tsig_failure_is_reported(
        |lab| lab.bind.unknown_key_file("stranger", "hmac-sha256"),
        "BADKEY",
        "stranger",
    );
}
