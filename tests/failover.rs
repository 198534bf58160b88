//! Fast failover without giving up hysteresis: fast re-probe while in doubt
//! and watch connections that trigger a probe when the peer goes away.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, Lab, NodeSpec, PoolSpec, stop_until_unpublished, toml_str};

/// A small IMAP node: greets, answers LOGOUT. It can refuse the next
/// `refuse_next` connections (close at once), and close idle connections
/// politely (`* BYE ... inactivity`) after `idle`.
struct ImapNode {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refuse_next: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    idle_closes: Arc<AtomicUsize>,
}

impl ImapNode {
    fn start(ip: IpAddr, idle: Option<Duration>) -> ImapNode {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let node = ImapNode {
            addr: listener.local_addr().unwrap(),
            stop: Arc::default(),
            refuse_next: Arc::default(),
            accepted: Arc::default(),
            idle_closes: Arc::default(),
        };
        let (stop, refuse, accepted, idle_closes) = (
            node.stop.clone(),
            node.refuse_next.clone(),
            node.accepted.clone(),
            node.idle_closes.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                if refuse
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    drop(stream);
                    continue;
                }
                let idle_closes = idle_closes.clone();
                std::thread::spawn(move || serve(stream, idle, &idle_closes));
            }
        });
        node
    }
}

/// One IMAP session: greets, answers NOOP (the watch's keepalive) and
/// LOGOUT; closes politely after `idle` from the connection, as dovecot's
/// pre-login idle timeout does (keepalives do not postpone it).
fn serve(mut stream: TcpStream, idle: Option<Duration>, idle_closes: &AtomicUsize) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.write_all(b"* OK test node ready\r\n");
    let deadline = Instant::now() + idle.unwrap_or(Duration::from_secs(30));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = stream.write_all(b"* BYE Disconnected for inactivity.\r\n");
            idle_closes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _ = stream.set_read_timeout(Some(left));
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => {
                let mut words = line.split_whitespace();
                let tag = words.next().unwrap_or("a1").to_string();
                if words.next().is_some_and(|c| c.eq_ignore_ascii_case("NOOP")) {
                    let _ = stream.write_all(format!("{tag} OK NOOP completed.\r\n").as_bytes());
                    continue;
                }
                let _ = stream
                    .write_all(format!("* BYE logging out\r\n{tag} OK LOGOUT done\r\n").as_bytes());
                return;
            }
            Ok(_) => return,
            Err(_) => continue,
        }
    }
}

impl Drop for ImapNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn a_records(lab: &Lab) -> Vec<String> {
    lab.bind.query("imap", "A")
}

/// The daemon with pool `imap` on `node` alone, named `name` and probed
/// every `interval`, once BIND answers its address.
fn start_on(lab: &Lab, node: &ImapNode, name: &str, interval: &str) -> Daemon {
    let ip = node.addr.ip();
    let cfg = lab
        .config()
        .probe("interval", &toml_str(interval))
        .node(NodeSpec::new(name, &[ip]))
        .pool(
            PoolSpec::a("imap", "imap")
                .port(node.addr.port())
                .nodes(&[name]),
        );
    let daemon = lab.daemon(&cfg);
    let address = ip.to_string();
    lab.bind.wait_for(
        "imap",
        "A",
        |r| r.contains(&address),
        Duration::from_secs(10),
    );
    daemon
}

#[test]
fn one_refused_connection_never_takes_a_node_out() {
    let lab = Lab::start(1);
    let ip = lab.subnet.ip(31);
    let node = ImapNode::start(ip, None);
    let daemon = start_on(&lab, &node, "solo", "300ms");
    let address = ip.to_string();
    let refused = format!(
        "pigeon_dns_probes_total{{pool=\"imap\",node=\"solo\",address=\"{ip}\",result=\"bad_greeting\"}}"
    );
    node.refuse_next.store(1, Ordering::Relaxed);
    daemon.wait_for_metric(&refused, |v| v >= 1.0, Duration::from_secs(5));
    // The failure happened; for the next second BIND must keep answering it.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            a_records(&lab).contains(&address),
            "a single failure removed the node"
        );
    }
    let down = format!(
        "pigeon_dns_transitions_total{{pool=\"imap\",node=\"solo\",address=\"{ip}\",to=\"down\"}}"
    );
    assert_eq!(
        daemon.metric_value(&down),
        Some(0.0),
        "a down transition was counted"
    );
    let up = format!("pigeon_dns_node_up{{pool=\"imap\",node=\"solo\",address=\"{ip}\"}}");
    assert_eq!(daemon.metric_value(&up), Some(1.0));
}

#[test]
fn a_crash_is_removed_in_under_a_second_even_with_a_30s_interval() {
    let mut lab = Lab::start(2);
    let cfg = lab
        .config()
        .probe("interval", "\"30s\"")
        .probe("timeout", "\"1s\"")
        .probe("fast_interval", "\"100ms\"")
        .pool(PoolSpec::a("imap", "imap").port(lab.cluster.ports.imap));
    let daemon = lab.daemon(&cfg);
    let victim = lab.node("mail2").ip().to_string();
    lab.bind.wait_for(
        "imap",
        "A",
        |r| r.contains(&victim),
        Duration::from_secs(10),
    );
    // Both nodes up and their watch connections established.
    daemon.wait_for_metric(
        "pigeon_dns_watch_connections",
        |v| v == 2.0,
        Duration::from_secs(5),
    );
    let killed = Instant::now();
    stop_until_unpublished(&mut lab, "mail2", Duration::from_secs(5));
    let took = killed.elapsed();
    println!("crash to BIND without the address: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} with a 30s interval"
    );
    assert!(
        daemon
            .logs()
            .iter()
            .any(|l| l.contains("Watch connection lost"))
    );
}

#[test]
fn a_polite_idle_close_leaves_the_node_up_and_counts_no_failure() {
    let lab = Lab::start(1);
    let ip = lab.subnet.ip(32);
    let node = ImapNode::start(ip, Some(Duration::from_millis(300)));
    let daemon = start_on(&lab, &node, "idle", "1s");
    let address = ip.to_string();
    common::wait_until("three polite idle closes", Duration::from_secs(10), || {
        (node.idle_closes.load(Ordering::Relaxed) >= 3).then_some(())
    });
    let metrics = daemon.metrics();
    let failures: f64 = metrics
        .matching("pigeon_dns_probes_total", &[("node", "idle")])
        .filter(|s| s.labels.iter().any(|(k, v)| k == "result" && v != "ok"))
        .map(|s| s.value)
        .sum();
    assert_eq!(failures, 0.0, "a polite close counted as a failure");
    assert_eq!(
        metrics.get(&format!(
            "pigeon_dns_node_up{{pool=\"imap\",node=\"idle\",address=\"{ip}\"}}"
        )),
        Some(1.0)
    );
    assert!(a_records(&lab).contains(&address));
    assert!(daemon.logs().iter().any(|l| l.contains("closed politely")));
}

/// Three dovecot nodes at the daemon's default probe settings (interval 2s,
/// timeout 1s, rise 2, fall 2, fast re-probe 100 ms, watch on), pools that
/// exercise the three mail dialects; `mail2` goes away by `how`; returns how
/// long until BIND stopped answering it in `imap`.
fn taken_away_at_defaults(how: impl FnOnce(&mut common::MailNode)) -> Duration {
    let mut lab = Lab::start(3);
    let p = lab.cluster.ports;
    let mut cfg = lab
        .config()
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
        .pool(PoolSpec::a("smtp", "submission").port(p.submission));
    cfg.probe.clear();
    let daemon = lab.daemon(&cfg);
    let victim = lab.node("mail2").ip().to_string();
    lab.bind.wait_for(
        "imap",
        "A",
        |r| r.len() == 4 && r.contains(&victim),
        Duration::from_secs(15),
    );
    daemon.wait_for_metric(
        "pigeon_dns_watch_connections",
        |v| v == 9.0,
        Duration::from_secs(10),
    );
    let started = Instant::now();
    how(lab.node_mut("mail2"));
    lab.bind.wait_for(
        "imap",
        "A",
        |r| !r.contains(&victim),
        Duration::from_secs(10),
    );
    let took = started.elapsed();
    for pool in ["pop", "smtp"] {
        lab.bind
            .wait_for(pool, "A", |r| !r.contains(&victim), Duration::from_secs(5));
    }
    took
}

/// SIGTERM to every dovecot process: the login processes say "Shutting
/// down" on the watch connections, which counts as a failed observation;
/// the probe that follows finds the node gone.
#[test]
fn a_graceful_stop_is_removed_at_once() {
    let took = taken_away_at_defaults(|node| node.dovecot.terminate_all());
    println!("graceful stop to BIND without the address: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// SIGKILL to dovecot's master alone: the login processes linger, keep the
/// watch connections open and answer their keepalives, but new connections
/// are refused; the next regular probe finds it.
#[test]
fn a_master_crash_with_lingering_children_is_removed_by_the_next_probe() {
    let took = taken_away_at_defaults(|node| node.dovecot.kill_master());
    println!("master crash to BIND without the address: {took:?}");
    // One interval, then one fast re-probe, and slack for a loaded machine.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

/// A frozen node (SIGSTOP: the kernel accepts, nothing answers): the watch's
/// keepalive goes unanswered, and the probe in doubt waits for the greeting
/// no longer than a fraction of the timeout.
#[test]
fn a_frozen_node_is_removed_by_the_watch_keepalive() {
    let took = taken_away_at_defaults(|node| node.dovecot.freeze());
    println!("freeze to BIND without the address: {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A node serving five pools (three A pools, the MX, an SRV) crashes: its
/// services' watches end together, their probes run together, and the
/// change goes out as one UPDATE.
#[test]
fn one_node_s_crash_goes_out_as_one_update() {
    let mut lab = Lab::start(3);
    let mut cfg = lab.standard_config();
    cfg.probe.clear();
    let daemon = lab.daemon(&cfg);
    let victim = lab.node("mail2").ip().to_string();
    let host = lab.node("mail2").host.clone();
    lab.bind.wait_for(
        "imap",
        "A",
        |r| r.len() == 4 && r.contains(&victim),
        Duration::from_secs(15),
    );
    lab.bind
        .wait_for("@", "MX", |r| r.len() == 4, Duration::from_secs(15));
    daemon.wait_for_metric(
        "pigeon_dns_watch_connections",
        |v| v == 15.0,
        Duration::from_secs(10),
    );
    let mark = daemon.log_mark();
    lab.node_mut("mail2").stop();
    lab.bind
        .wait_for("@", "MX", |r| r.len() == 3, Duration::from_secs(10));
    for pool in ["imap", "pop", "smtp"] {
        lab.bind
            .wait_for(pool, "A", |r| !r.contains(&victim), Duration::from_secs(10));
    }
    lab.bind.wait_for(
        "_imap._tcp",
        "SRV",
        |r| !r.iter().any(|s| s.ends_with(&format!("{host}."))),
        Duration::from_secs(10),
    );
    let updates: Vec<String> = daemon.logs()[mark..]
        .iter()
        .filter(|l| l.contains("UPDATE applied"))
        .cloned()
        .collect();
    assert_eq!(updates.len(), 1, "{updates:#?}");
}
