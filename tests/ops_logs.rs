//! Logs an operator reads: one line per transition and per UPDATE, JSON when
//! asked, and a flapping node cannot flood the journal.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Lab, NodeSpec, PoolSpec};

/// An IMAP server that greets for `phase` then closes connections at once for
/// `phase`, and so on: a flapping node.
struct Flapper {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Flapper {
    fn start(ip: std::net::IpAddr, phase: Duration) -> Flapper {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let healthy =
                            (started.elapsed().as_millis() / phase.as_millis()).is_multiple_of(2);
                        if healthy {
                            let _ = stream.write_all(b"* OK flapper ready\r\n");
                            let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                            let mut buf = [0u8; 256];
                            let _ = std::io::Read::read(&mut stream, &mut buf);
                            let _ = stream.write_all(b"* BYE\r\na1 OK LOGOUT done\r\n");
                        } else {
                            let _ = stream.write_all(b"* BYE not now\r\n");
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Flapper { stop, addr }
    }
}

impl Drop for Flapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_flapping_node_cannot_flood_the_log() {
    let lab = Lab::start(1);
    let flapper = Flapper::start(lab.subnet.ip(21), Duration::from_millis(250));
    let cfg = lab
        .config()
        .probe("interval", "\"100ms\"")
        .probe("timeout", "\"80ms\"")
        .probe("fast_interval", "\"20ms\"")
        .probe("rise", "1")
        .probe("fall", "1")
        .node(NodeSpec::new("flappy", &[lab.subnet.ip(21)]))
        .pool(
            PoolSpec::a("imap", "imap")
                .port(flapper.addr.port())
                .nodes(&["flappy"])
                .set("watch", "false"),
        );
    let daemon = lab.daemon(&cfg);
    let sample = format!(
        "pigeon_dns_transitions_total{{pool=\"imap\",node=\"flappy\",address=\"{}\",to=\"down\"}}",
        lab.subnet.ip(21)
    );
    // Wait for many more transitions than the burst allows.
    daemon.wait_for_metric(&sample, |v| v >= 15.0, Duration::from_secs(30));
    let lines = daemon.logs();
    let transitions = lines
        .iter()
        .filter(|l| l.contains("Target is up.") || l.contains("Target is down."))
        .count();
    let metrics = daemon.metrics();
    let counted = metrics.sum("pigeon_dns_transitions_total", &[("node", "flappy")]);
    println!("{counted} transitions counted, {transitions} logged one by one");
    assert!(counted >= 30.0, "transitions counted: {counted}");
    assert!(
        transitions <= 10,
        "{transitions} transition lines:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("Target is flapping"))
            .count(),
        1,
        "one flapping warning per window"
    );
}

#[test]
fn json_logs_carry_the_transition_and_update_fields() {
    let lab = Lab::start(1);
    let cfg = lab.standard_config();
    let path = lab.write_config(&cfg);
    let mut daemon = common::Daemon::spawn_args(
        &[
            "--log-format".as_ref(),
            "json".as_ref(),
            "run".as_ref(),
            "-c".as_ref(),
            path.as_os_str(),
        ],
        cfg.http_addr(),
    );
    daemon.wait_for_log("UPDATE applied.", Duration::from_secs(20));
    let lines = daemon.logs();
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let transition = parsed
        .iter()
        .find(|v| v["message"] == "Target is up.")
        .expect("a transition line");
    assert_eq!(transition["level"], "INFO");
    assert_eq!(transition["from"], "unknown");
    assert_eq!(transition["to"], "up");
    assert!(transition["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(transition["span"]["name"], "probe");
    assert_eq!(transition["span"]["node"], "mail1");
    let update = parsed
        .iter()
        .find(|v| v["message"] == "UPDATE applied.")
        .expect("an UPDATE line");
    assert_eq!(update["rcode"], "NOERROR");
    assert!(update["changes"].as_str().unwrap().contains("add "));
    assert!(update["duration_ms"].as_str().is_some());
    // Confirmations of a known state are debug: none at the default level.
    assert!(
        !daemon.logs().iter().any(|l| l.contains("\"DEBUG\"")),
        "no debug lines at the default level"
    );
}
