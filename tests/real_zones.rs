//! Zones as operators keep them (contract.md, "Names and records as real
//! zones hold them"), against a real BIND: owner names stored in another
//! case, a wildcard, a CNAME at a pool's name, an RRset at BIND's size limit,
//! a pool the update-policy refuses. In each, every other pool keeps
//! following health, nothing loops, and what cannot be done is reported.

mod common;

use std::time::{Duration, Instant};

use common::{BindOpts, Lab, PoolSpec, ips, run_cli, sorted};

/// Deadline for what takes a few probe rounds and an UPDATE.
const CONVERGE: Duration = Duration::from_secs(20);

fn counted(daemon: &common::Daemon, result: &str) -> f64 {
    daemon
        .metric_value(&format!(
            "pigeon_dns_dns_updates_total{{result=\"{result}\"}}"
        ))
        .unwrap_or(0.0)
}

/// BIND answers `IMAP` for `imap` and `Mail1` for `mail1`: the pool, the MX
/// target's address check and a foreign re-cased change all work as if the
/// zone were written in lower case.
#[test]
fn owner_names_stored_in_another_case_are_updated_like_any_other() {
    let opts = BindOpts::default()
        .no_foreign_records()
        .record("IMAP 300 IN A 198.51.100.7")
        // Created first, so BIND keeps this case for the node's host name.
        .record("Mail1 3600 IN TXT \"host\"");
    let mut lab = Lab::start_with(2, opts);
    assert_eq!(
        lab.bind.query_names("imap", "A"),
        ["IMAP.example.com."],
        "the harness zone must store the name in upper case"
    );
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission));
    let mut daemon = lab.daemon(&cfg);
    let mut want = ips(&lab, &["mail1", "mail2"]);
    want.push("198.51.100.7".into());
    let want = sorted(want);
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);
    lab.bind.wait_for(
        "@",
        "MX",
        |mx| mx.len() == 2 && mx.iter().any(|m| m.starts_with("10 mail1.")),
        CONVERGE,
    );
    // Another writer adds to the RRset in yet another case; then a node
    // fails: the change still goes out (after one re-read).
    lab.bind
        .nsupdate("update add ImAp.example.com. 300 IN A 198.51.100.8\n");
    lab.node_mut("mail2").stop();
    let mut want = ips(&lab, &["mail1"]);
    want.extend(["198.51.100.7".into(), "198.51.100.8".into()]);
    let want = sorted(want);
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);
    // At most the one UPDATE that found the RRset changed by the other
    // writer (NXRRSET, then a re-read): no retry loop.
    assert!(counted(&daemon, "error") <= 1.0, "{}", daemon.log_tail(20));
    assert_eq!(counted(&daemon, "refused"), 0.0, "{}", daemon.log_tail(20));
    assert!(
        !daemon
            .logs()
            .iter()
            .any(|l| l.contains("has no A/AAAA record")),
        "Mail1 was taken for a host without address"
    );
    assert!(daemon.terminate().success());
}

/// `*.example.com. A` answers for a pool name that does not exist yet; that
/// answer is no record there, and the pool is published beside the wildcard.
#[test]
fn a_wildcard_is_no_record_at_a_pool_name() {
    let opts = BindOpts::default()
        .no_foreign_records()
        .record("* 300 IN A 192.0.2.99");
    let mut lab = Lab::start_with(2, opts);
    assert_eq!(
        lab.bind.query("imap", "A"),
        ["192.0.2.99"],
        "the wildcard answers"
    );
    let cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(lab.cluster.ports.imap));
    let mut daemon = lab.daemon(&cfg);
    let both = ips(&lab, &["mail1", "mail2"]);
    lab.bind.wait_for("imap", "A", |a| a == both, CONVERGE);
    lab.node_mut("mail1").stop();
    let one = ips(&lab, &["mail2"]);
    lab.bind.wait_for("imap", "A", |a| a == one, CONVERGE);
    assert_eq!(
        lab.bind.query("anything", "A"),
        ["192.0.2.99"],
        "the wildcard itself is foreign"
    );
    assert_eq!(counted(&daemon, "error"), 0.0, "{}", daemon.log_tail(20));
    assert!(daemon.terminate().success());
}

/// A CNAME at a pool's name: BIND would ignore the adds and answer NOERROR.
/// pigeon-dns sends none, says why (log, metric, `plan`), and every other
/// pool goes on.
#[test]
fn a_cname_at_a_pool_name_is_an_error_never_an_update_applied() {
    let opts = BindOpts::default().record("webmail 300 IN CNAME elsewhere.example.net.");
    let lab = Lab::start_with(2, opts);
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("webmail", "imap").port(p.imap));
    let path = lab.write_config(&cfg);
    let mut daemon = common::Daemon::spawn(&path, cfg.http_addr());
    let mut want = ips(&lab, &["mail1", "mail2"]);
    want.push("198.51.100.7".into());
    let want = sorted(want);
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);
    daemon.wait_for_log(" ERROR ", CONVERGE);
    daemon.wait_for_metric(
        "pigeon_dns_dns_updates_total{result=\"error\"}",
        |v| v >= 1.0,
        CONVERGE,
    );
    let logs = daemon.logs();
    assert!(
        logs.iter().any(|l| l.contains(" ERROR ")
            && l.contains("webmail.example.com.")
            && l.contains("CNAME")),
        "no error names the CNAME:\n{}",
        daemon.log_tail(20)
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("UPDATE applied") && l.contains("webmail")),
        "an UPDATE for the CNAME's name was reported as applied"
    );
    assert_eq!(
        lab.bind.query("webmail", "CNAME"),
        ["elsewhere.example.net."]
    );
    // plan: the error on stderr, exit 1; the other pools are in order.
    let out = run_cli(&["plan", "-c", path.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("error: webmail.example.com. is a CNAME"),
        "{}",
        out.stderr
    );
    assert!(daemon.terminate().success());
}

/// 98 foreign records at `imap`: BIND (max-records-per-type 100) refuses to
/// grow the RRset past 100. The pool takes what fits and says so; `pop`,
/// in the same UPDATE otherwise, is not held back; nothing loops.
#[test]
fn an_rrset_at_the_primary_s_size_limit_takes_what_fits_and_holds_back_nothing() {
    let mut opts = BindOpts::default().no_foreign_records();
    for i in 1..=98 {
        opts = opts.record(&format!("imap 300 IN A 198.51.100.{i}"));
    }
    let lab = Lab::start_with(3, opts);
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let mut daemon = lab.daemon(&cfg);
    let all = ips(&lab, &["mail1", "mail2", "mail3"]);
    lab.bind.wait_for("pop", "A", |a| a == all, CONVERGE);
    lab.bind.wait_for("imap", "A", |a| a.len() == 100, CONVERGE);
    daemon.wait_for_log("would hold 101 records", CONVERGE);
    let failed = counted(&daemon, "error") + counted(&daemon, "refused");
    // Two resyncs later (resync_interval 2s): no retry loop.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        counted(&daemon, "error") + counted(&daemon, "refused"),
        failed,
        "failed UPDATEs keep coming:\n{}",
        daemon.log_tail(20)
    );
    assert!(daemon.terminate().success());
}

/// The update-policy grants `imap` only. `pop`'s refused change is retried
/// on its own backoff; a failover in `imap` meanwhile goes out at once.
#[test]
fn a_permanently_refused_pool_delays_no_failover() {
    let opts = BindOpts::default().update_policy("grant pigeon-dns name imap.example.com. ANY;");
    let mut lab = Lab::start_with(3, opts);
    let p = lab.cluster.ports;
    // A resync every 6 s: pop's retries back off to 4 s between two.
    let cfg = lab
        .config()
        .dns("resync_interval", &common::toml_str("6s"))
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3));
    let mut daemon = lab.daemon(&cfg);
    let mut want = ips(&lab, &["mail1", "mail2", "mail3"]);
    want.push("198.51.100.7".into());
    let want = sorted(want);
    lab.bind.wait_for("imap", "A", |a| a == want, CONVERGE);
    daemon.wait_for_log("retry_in=4s", CONVERGE);
    let killed = Instant::now();
    lab.node_mut("mail2").stop();
    let mut want = ips(&lab, &["mail1", "mail3"]);
    want.push("198.51.100.7".into());
    let want = sorted(want);
    lab.bind
        .wait_for("imap", "A", |a| a == want, Duration::from_secs(3));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "the failover waited {took:?} for the refused pool's retry"
    );
    assert!(
        lab.bind.query("pop", "A").is_empty(),
        "pop was published against the policy"
    );
    assert!(daemon.terminate().success());
}
