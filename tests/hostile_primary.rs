//! Hostile and broken primaries (contract.md, "DNS behaviour"; docs/records.md, "The
//! primary fails").
//!
//! The harness's fake primary ([`common::FakePrimary`]: TCP, RFC 1035
//! §4.2.2 framing, messages parsed with hickory-proto) answers the daemon's
//! signed queries, or its UPDATEs, with one kind of bad reply: SERVFAIL,
//! REFUSED, NOTAUTH with and without a TSIG error (BADSIG, BADKEY, BADTIME
//! in an unsigned TSIG RR), FORMERR, a NOERROR whose signature does not
//! verify (another key, a corrupted MAC, none at all), silence, or a close.
//! For each, the daemon must name the failure by
//! its kind in the log, count it under the right `result` label, retry with
//! a backoff that grows (250 ms, doubling, capped at `resync_interval`), keep
//! running, and converge once the primary answers well. The fake verifies
//! that every request is TSIG-signed with the key, and listens on UDP on the
//! same port: the client uses TCP only, so nothing may arrive there.
//!
//! Last, a real BIND whose update-policy refuses one name: the other changes
//! still land and the refused record is named in the log.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::tsig::TsigError;

use common::bind::write_key_file;
use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, FakePrimary, FakeServer, NodeSpec, PoolSpec, Reply,
    Seen, Subnet, TsigKey, toml_str,
};

/// Deadline for what takes a few probe rounds and a few retries.
const DEADLINE: Duration = Duration::from_secs(15);
/// `dns.resync_interval` of these tests: the backoff cap.
const RESYNC: Duration = Duration::from_secs(1);
/// The first retry delay (docs/records.md: "250 ms, doubling, capped at resync_interval").
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Failures to see before judging the retries.
const FAILURES: usize = 4;

// ---------------------------------------------------------------------------
// The setup: one node that is up, the daemon, the fake
// ---------------------------------------------------------------------------

/// Which requests the fake answers badly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The reads of the owned names (queries), before any UPDATE.
    Query,
    /// The UPDATEs (the queries are answered well).
    Update,
}

struct Setup {
    _subnet: Subnet,
    _dir: tempfile::TempDir,
    _node: FakeServer,
    node_ip: IpAddr,
    primary: FakePrimary,
    daemon: Daemon,
}

impl Setup {
    fn start(stage: Stage, reply: Reply) -> Setup {
        let subnet = Subnet::new();
        let dir = tempfile::Builder::new()
            .prefix("pigeon-hostile-primary-")
            .tempdir()
            .expect("tempdir");
        let key = TsigKey::generate("pigeon-dns", "hmac-sha256");
        let key_file = write_key_file(&dir.path().join("pigeon-dns.key"), &[&key]);
        let (on_query, on_update) = match stage {
            Stage::Query => (reply, Reply::Good),
            Stage::Update => (Reply::Good, reply),
        };
        let primary = FakePrimary::start(subnet.ip(53), &key, on_query, on_update);
        // A node that is up for the `tcp` check: it accepts and closes.
        let node_ip = subnet.ip(11);
        let node = FakeServer::closing(SocketAddr::new(node_ip, 0));
        let http = SocketAddr::new(subnet.ip(2), common::HTTP_PORT);
        let cfg = ConfigBuilder::new(&primary.addr.to_string(), "example.com", &key_file)
            .dns(
                "resync_interval",
                &toml_str(&format!("{}ms", RESYNC.as_millis())),
            )
            .dns("timeout", &toml_str("400ms"))
            .http(http)
            .node(NodeSpec::new("mail1", &[node_ip]))
            .pool(PoolSpec::a("imap", "tcp").port(node.addr().port()));
        let path = cfg.write(&dir.path().join("pigeon-dns.toml"));
        let daemon = Daemon::spawn(&path, Some(http));
        Setup {
            _subnet: subnet,
            _dir: dir,
            _node: node,
            node_ip,
            primary,
            daemon,
        }
    }

    /// Requests of `stage` the fake has answered with `reply`.
    fn bad_answers(&self, stage: Stage, reply: &Reply) -> usize {
        self.primary
            .seen()
            .iter()
            .filter(|s| {
                (s.op == OpCode::Update) == (stage == Stage::Update) && s.reply == reply.name()
            })
            .count()
    }
}

/// A log line's `retry_in=` value.
fn retry_in(line: &str) -> Option<Duration> {
    let value = line.split("retry_in=").nth(1)?.split_whitespace().next()?;
    let value = value.trim_matches('"');
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic() || c == 'µ')?);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" | "us" => number / 1e6,
        "ns" => number / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// What a bad primary must produce.
struct Expect {
    /// Each must appear in the failure's log lines.
    kinds: &'static [&'static str],
    /// The `result` label of `pigeon_dns_dns_updates_total`.
    label: &'static str,
}

const FAILURE_LABELS: [&str; 4] = ["refused", "tsig_error", "timeout", "error"];

/// Runs the daemon against a fake that answers `stage` with `reply` and
/// checks everything `expect` and docs/records.md ask for; then lets the fake
/// answer well and checks that the daemon converges. Every problem found is
/// reported at once.
fn bad_primary(stage: Stage, reply: Reply, expect: Expect) {
    let started = Instant::now();
    let mut setup = Setup::start(stage, reply.clone());
    let mut problems: Vec<String> = Vec::new();

    // Let it fail a few times.
    let deadline = Instant::now() + DEADLINE;
    while setup.bad_answers(stage, &reply) < FAILURES
        && Instant::now() < deadline
        && !setup.daemon.has_exited()
    {
        thread::sleep(Duration::from_millis(20));
    }
    let bad = setup.bad_answers(stage, &reply);
    if bad < FAILURES {
        problems.push(format!(
            "only {bad} {stage:?} requests answered {reply:?} within {DEADLINE:?}: the daemon does not retry"
        ));
    }
    // It keeps running and serving.
    if setup.daemon.has_exited() {
        problems.push("the daemon exited".into());
    } else if setup.daemon.http_get("/healthz").map(|r| r.0).ok() != Some(200) {
        problems.push("/healthz does not answer 200".into());
    }

    // Let the log reader catch up with the failures seen (the last request
    // may still be waiting for its answer).
    let log_deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < log_deadline
        && setup
            .daemon
            .logs()
            .iter()
            .filter(|l| l.contains("retry_in="))
            .count()
            < FAILURES - 1
    {
        thread::sleep(Duration::from_millis(20));
    }

    // The log: WARN lines that name the failure by its kind.
    let logs = setup.daemon.logs();
    let failures: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| l.contains("reconcile"))
        .collect();
    let sample = failures.first().map(|s| s.as_str()).unwrap_or("(none)");
    for kind in expect.kinds {
        if !failures.iter().any(|l| l.contains(kind)) {
            problems.push(format!(
                "no warning names the failure as {kind:?}; {} warnings, e.g.: {sample}",
                failures.len()
            ));
        }
    }

    // Retries with a growing backoff: 250 ms, doubling, capped at resync_interval.
    let delays: Vec<Duration> = failures.iter().filter_map(|l| retry_in(l)).collect();
    let mut want = Vec::new();
    let mut next = FIRST_BACKOFF;
    for _ in 0..delays.len() {
        want.push(next);
        next = (next * 2).min(RESYNC);
    }
    if delays.len() < 3 {
        problems.push(format!(
            "{} \"retry_in\" warnings after {bad} failed requests (want at least 3, growing); e.g.: {sample}",
            delays.len()
        ));
    } else if delays != want {
        problems.push(format!(
            "retry_in went {delays:?}; docs/records.md says {want:?}"
        ));
    }

    // Counted under the right label, and under no other failure label.
    let metrics_deadline = Instant::now() + Duration::from_secs(3);
    let sample_of = |label: &str| format!("pigeon_dns_dns_updates_total{{result=\"{label}\"}}");
    let mut counts = BTreeMap::new();
    loop {
        if let Ok((200, body)) = setup.daemon.http_get("/metrics") {
            let m = common::Metrics::parse(&body);
            counts = FAILURE_LABELS
                .iter()
                .map(|l| (*l, m.get(&sample_of(l)).unwrap_or(0.0)))
                .collect();
        }
        if counts.get(expect.label).is_some_and(|v| *v >= 1.0) || Instant::now() >= metrics_deadline
        {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if counts.get(expect.label).is_none_or(|v| *v < 1.0) {
        problems.push(format!(
            "{} is not counted; failure counts: {counts:?}",
            sample_of(expect.label)
        ));
    }
    let others: Vec<_> = counts
        .iter()
        .filter(|(l, v)| **l != expect.label && **v > 0.0)
        .collect();
    if !others.is_empty() {
        problems.push(format!(
            "counted under other labels too: {others:?} (want only {:?})",
            expect.label
        ));
    }

    // Not ready while the primary fails for longer than resync_interval.
    let readyz = poll_status(&setup.daemon, "/readyz", 503, Duration::from_secs(3));
    if readyz != Some(503) {
        problems.push(format!(
            "/readyz answers {readyz:?} while every {stage:?} has failed for more than resync_interval"
        ));
    }

    // Every request was signed with the key, and nothing came over UDP.
    let unsigned: Vec<Seen> = setup
        .primary
        .seen()
        .into_iter()
        .filter(|s| s.signed.is_err())
        .collect();
    if !unsigned.is_empty() {
        problems.push(format!("requests not signed with the key: {unsigned:?}"));
    }
    if setup
        .primary
        .seen()
        .iter()
        .any(|s| s.qtype == Some(RecordType::ANY))
    {
        problems.push("an ANY query was sent (the contract: one type at a time)".into());
    }

    // The primary recovers: the daemon converges.
    setup.primary.set(Reply::Good, Reply::Good);
    let recovered = Instant::now();
    let want_a = vec![setup.node_ip.to_string()];
    let mut converged = false;
    while recovered.elapsed() < DEADLINE {
        if setup.primary.records("imap.example.com.", RecordType::A) == want_a {
            converged = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if converged {
        println!(
            "converged {:?} after the primary recovered",
            recovered.elapsed()
        );
        let readyz = poll_status(&setup.daemon, "/readyz", 200, Duration::from_secs(5));
        if readyz != Some(200) {
            problems.push(format!(
                "/readyz answers {readyz:?} after the daemon converged"
            ));
        }
    } else {
        problems.push(format!(
            "the daemon did not converge within {DEADLINE:?} after the primary recovered; the fake holds {:?}",
            setup.primary.records("imap.example.com.", RecordType::A)
        ));
    }
    if setup.primary.udp_datagrams() > 0 {
        problems.push(format!(
            "{} UDP datagrams reached the primary's port: the client must use TCP only",
            setup.primary.udp_datagrams()
        ));
    }
    if setup.daemon.has_exited() {
        problems.push("the daemon exited".into());
    }
    let status = setup.daemon.terminate();
    println!(
        "{stage:?} answered {reply:?}: {bad} bad answers, retry_in {delays:?}, counts {counts:?}, {:?}; e.g. {sample}",
        started.elapsed()
    );
    if !status.success() {
        problems.push(format!("exit status {status} on SIGTERM"));
    }
    assert!(
        problems.is_empty(),
        "{stage:?} answered {reply:?}:\n- {}\nlog tail:\n{}",
        problems.join("\n- "),
        setup.daemon.log_tail(25)
    );
}

/// Polls GET `path` until it answers `want` or `timeout` passes; the last status.
fn poll_status(daemon: &Daemon, path: &str, want: u16, timeout: Duration) -> Option<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = daemon.http_get(path).ok().map(|r| r.0);
        if got == Some(want) || Instant::now() >= deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// UPDATEs answered badly
// ---------------------------------------------------------------------------

#[test]
fn update_answered_servfail() {
    bad_primary(
        Stage::Update,
        Reply::Rcode(ResponseCode::ServFail),
        Expect {
            kinds: &["SERVFAIL"],
            label: "error",
        },
    );
}

#[test]
fn update_answered_servfail_signed() {
    bad_primary(
        Stage::Update,
        Reply::SignedRcode(ResponseCode::ServFail),
        Expect {
            kinds: &["SERVFAIL"],
            label: "error",
        },
    );
}

#[test]
fn update_answered_refused() {
    bad_primary(
        Stage::Update,
        Reply::Rcode(ResponseCode::Refused),
        Expect {
            kinds: &["REFUSED", "imap.example.com."],
            label: "refused",
        },
    );
}

#[test]
fn update_answered_notauth_without_tsig() {
    bad_primary(
        Stage::Update,
        Reply::Rcode(ResponseCode::NotAuth),
        Expect {
            kinds: &["NOTAUTH"],
            label: "error",
        },
    );
}

#[test]
fn update_answered_notauth_badsig() {
    bad_primary(
        Stage::Update,
        Reply::TsigError(TsigError::BadSig),
        Expect {
            kinds: &["BADSIG", "pigeon-dns"],
            label: "tsig_error",
        },
    );
}

#[test]
fn update_answered_notauth_badkey() {
    bad_primary(
        Stage::Update,
        Reply::TsigError(TsigError::BadKey),
        Expect {
            kinds: &["BADKEY", "pigeon-dns"],
            label: "tsig_error",
        },
    );
}

#[test]
fn update_answered_notauth_badtime() {
    bad_primary(
        Stage::Update,
        Reply::TsigError(TsigError::BadTime),
        Expect {
            // The one figure an operator needs: the primary's clock, ours, the
            // skew (the fake's clock is `common::fake_primary::CLOCK_AHEAD` ahead).
            kinds: &[
                "BADTIME",
                "pigeon-dns",
                "the primary's clock reads",
                "(-3600 s)",
            ],
            label: "tsig_error",
        },
    );
}

#[test]
fn update_answered_formerr() {
    bad_primary(
        Stage::Update,
        Reply::Rcode(ResponseCode::FormErr),
        Expect {
            kinds: &["FORMERR"],
            label: "error",
        },
    );
}

#[test]
fn update_noerror_signed_with_another_key_is_not_trusted() {
    bad_primary(
        Stage::Update,
        Reply::OtherKey,
        Expect {
            kinds: &["not trusted", "pigeon-dns"],
            label: "tsig_error",
        },
    );
}

#[test]
fn update_noerror_with_a_corrupted_mac_is_not_trusted() {
    bad_primary(
        Stage::Update,
        Reply::CorruptMac,
        Expect {
            kinds: &["not trusted"],
            label: "tsig_error",
        },
    );
}

#[test]
fn update_noerror_without_tsig_is_not_trusted() {
    bad_primary(
        Stage::Update,
        Reply::Unsigned,
        Expect {
            kinds: &["not trusted"],
            label: "tsig_error",
        },
    );
}

#[test]
fn update_never_answered() {
    bad_primary(
        Stage::Update,
        Reply::Silent,
        Expect {
            kinds: &["no answer", "within"],
            label: "timeout",
        },
    );
}

#[test]
fn update_connection_closed_without_answer() {
    bad_primary(
        Stage::Update,
        Reply::Close,
        Expect {
            kinds: &["connection to", "failed"],
            label: "error",
        },
    );
}

// ---------------------------------------------------------------------------
// Reads of the owned names answered badly
// ---------------------------------------------------------------------------

#[test]
fn query_answered_servfail() {
    bad_primary(
        Stage::Query,
        Reply::Rcode(ResponseCode::ServFail),
        Expect {
            kinds: &["SERVFAIL"],
            label: "error",
        },
    );
}

#[test]
fn query_answered_notauth_badsig() {
    bad_primary(
        Stage::Query,
        Reply::TsigError(TsigError::BadSig),
        Expect {
            kinds: &["BADSIG", "pigeon-dns"],
            label: "tsig_error",
        },
    );
}

#[test]
fn query_noerror_signed_with_another_key_is_not_trusted() {
    bad_primary(
        Stage::Query,
        Reply::OtherKey,
        Expect {
            kinds: &["not trusted"],
            label: "tsig_error",
        },
    );
}

#[test]
fn query_never_answered() {
    bad_primary(
        Stage::Query,
        Reply::Silent,
        Expect {
            kinds: &["no answer", "within"],
            label: "timeout",
        },
    );
}

// ---------------------------------------------------------------------------
// What every request looks like
// ---------------------------------------------------------------------------

/// Every request is TSIG-signed with the key, goes over TCP (nothing reaches
/// a UDP socket on the primary's port: a truncated UDP answer can never
/// arise), asks for one type at a time, and carries an unpredictable message
/// ID (RFC 5452 §9.2, which the client cites for its queries), UPDATEs too.
#[test]
fn every_request_is_signed_over_tcp_with_unpredictable_ids() {
    // SERVFAIL on UPDATEs: the daemon keeps sending them.
    let mut setup = Setup::start(Stage::Update, Reply::Rcode(ResponseCode::ServFail));
    let deadline = Instant::now() + DEADLINE;
    let updates = |setup: &Setup| {
        setup
            .primary
            .seen()
            .iter()
            .filter(|s| s.op == OpCode::Update)
            .count()
    };
    while updates(&setup) < 5 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let seen = setup.primary.seen();
    assert!(
        updates(&setup) >= 5,
        "only {} UPDATEs within {DEADLINE:?}",
        updates(&setup)
    );
    let unsigned: Vec<&Seen> = seen.iter().filter(|s| s.signed.is_err()).collect();
    assert!(
        unsigned.is_empty(),
        "requests not signed with the key: {unsigned:?}"
    );
    let types: std::collections::BTreeSet<String> = seen
        .iter()
        .filter(|s| s.op == OpCode::Query)
        .filter_map(|s| s.qtype)
        .map(|t| t.to_string())
        .collect();
    assert!(
        !seen.iter().any(|s| s.qtype == Some(RecordType::ANY)),
        "an ANY query was sent; types: {types:?}"
    );
    assert_eq!(
        setup.primary.udp_datagrams(),
        0,
        "UDP datagrams reached the primary's port"
    );
    let query_ids: std::collections::BTreeSet<u16> = seen
        .iter()
        .filter(|s| s.op == OpCode::Query)
        .map(|s| s.id)
        .collect();
    let update_ids: Vec<u16> = seen
        .iter()
        .filter(|s| s.op == OpCode::Update)
        .map(|s| s.id)
        .collect();
    println!(
        "{} requests, all signed, none over UDP; query types {types:?}; {} distinct query IDs; UPDATE IDs {update_ids:?}",
        seen.len(),
        query_ids.len()
    );
    assert!(
        query_ids.len() >= 2,
        "queries all carried the IDs {query_ids:?}"
    );
    let distinct: std::collections::BTreeSet<u16> = update_ids.iter().copied().collect();
    assert!(
        distinct.len() >= 2,
        "{} UPDATEs all carried the message ID {distinct:?}: predictable, unlike the queries' random IDs",
        update_ids.len()
    );
    assert!(setup.daemon.terminate().success());
}

// ---------------------------------------------------------------------------
// A real BIND that refuses one name
// ---------------------------------------------------------------------------

/// BIND's update-policy lets the key change `imap` and `pop` but not `smtp`:
/// BIND refuses any UPDATE that touches `smtp` whole. The daemon splits it,
/// so the `imap` and `pop` records land, names the refused `smtp` records in
/// its log, counts `refused`, keeps running, and changes nothing else.
#[test]
fn a_primary_refusing_one_name_holds_back_nothing_else() {
    let subnet = Subnet::new();
    let bind = Bind::start(BindOpts::default().update_policy(
        "grant pigeon-dns name imap.example.com. ANY; grant pigeon-dns name pop.example.com. ANY;",
    ));
    let before = bind.zone_records();
    let ips = [subnet.ip(11), subnet.ip(12)];
    // Both nodes listen on one port, as a cluster does.
    let port = common::net::common_free_port(&ips);
    let _nodes: Vec<FakeServer> = ips
        .iter()
        .map(|ip| FakeServer::closing(SocketAddr::new(*ip, port)))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let http = SocketAddr::new(subnet.ip(2), common::HTTP_PORT);
    let cfg = ConfigBuilder::for_bind(&bind)
        .http(http)
        .node(NodeSpec::new("mail1", &[ips[0]]))
        .node(NodeSpec::new("mail2", &[ips[1]]))
        .pool(PoolSpec::a("imap", "tcp").port(port))
        .pool(PoolSpec::a("pop", "tcp").port(port))
        .pool(PoolSpec::a("smtp", "tcp").port(port));
    let path: PathBuf = cfg.write(&dir.path().join("pigeon-dns.toml"));
    let mut daemon = Daemon::spawn(&path, Some(http));

    let mut both: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    both.sort();
    let mut imap = both.clone();
    imap.push("198.51.100.7".into());
    imap.sort();
    bind.wait_for("pop", "A", |a| a == both, DEADLINE);
    bind.wait_for("imap", "A", |a| a == imap, DEADLINE);
    for ip in &ips {
        let needle = format!("smtp.example.com. 60 A {ip}");
        common::wait_until(
            &format!("a warning that names {needle} as refused"),
            DEADLINE,
            || {
                daemon
                    .logs()
                    .into_iter()
                    .find(|l| l.contains(" WARN ") && l.contains(&needle) && l.contains("refused"))
            },
        );
    }
    assert!(
        bind.query("smtp", "A").is_empty(),
        "smtp was published against the policy"
    );
    daemon.wait_for_metric(
        "pigeon_dns_dns_updates_total{result=\"refused\"}",
        |v| v >= 1.0,
        DEADLINE,
    );
    daemon.wait_for_metric(
        "pigeon_dns_dns_updates_total{result=\"ok\"}",
        |v| v >= 1.0,
        DEADLINE,
    );
    // Only the granted changes: the zone is what it was plus imap and pop.
    let mut want = before.clone();
    for ip in &ips {
        want.push(format!("imap.example.com. 300 A {ip}"));
        want.push(format!("pop.example.com. 60 A {ip}"));
    }
    want.sort();
    assert_eq!(
        bind.zone_records(),
        want,
        "BIND holds other changes than the granted ones"
    );
    // It goes on (a resync retries the refused records), and keeps running.
    let mark = daemon.log_mark();
    daemon.wait_for_log_since(mark, "smtp.example.com.", DEADLINE);
    assert!(!daemon.has_exited());
    assert!(daemon.terminate().success());
}
