//! The baseline: the usual script (`bench/baseline.sh`: a TCP connect to
//! each node every second, `nsupdate` delete on failure, add on success)
//! against the same set-up as the failover bench (real `named`, three real
//! dovecot nodes), and the same kill measurement: from SIGKILL to the
//! first BIND answer without the node. 20 repetitions (2 with
//! `BENCH_SMOKE=1`).
//!
//! `cargo bench --bench baseline` (writes `bench/results.json`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::Lab;
use support::dns::Poller;
use support::results::Run;
use support::stats::summary;
use support::{Rng, ms};

const POOL: &str = "imap";
/// The script's check period.
const PERIOD: Duration = Duration::from_secs(1);

fn main() {
    let smoke = support::smoke();
    let reps = if smoke { 2 } else { 20 };
    let run = Run::start();
    let lab = Lab::start(3);
    let name = format!("{POOL}.{}", lab.bind.zone());
    let poller = Poller::start(
        lab.bind.addr(),
        std::slice::from_ref(&name),
        Duration::from_millis(2),
    );
    let script = support::results::repo().join("bench").join("baseline.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(lab.bind.addr().ip().to_string())
        .arg(lab.bind.addr().port().to_string())
        .arg(lab.bind.zone())
        .arg(format!("{name}."))
        .arg(lab.bind.key_file())
        .arg(lab.cluster.ports.imap.to_string())
        .args(lab.cluster.ips().iter().map(ToString::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut lab = lab;
    let _script = common::process::Guarded::spawn(cmd, true).expect("start bench/baseline.sh");
    let mut rng = Rng::new();
    let limit = Duration::from_secs(20);
    let (mut down, mut up) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let node = format!("mail{}", 1 + rep % 3);
        for ip in lab.cluster.ips() {
            assert!(
                poller.wait_state(&name, ip, true, limit),
                "the script did not publish {ip}"
            );
        }
        let ip = lab.node(&node).ip();
        std::thread::sleep(rng.duration(PERIOD));
        let t0 = Instant::now();
        lab.node_mut(&node).stop();
        let gone = poller
            .wait_change(&name, ip, false, t0, limit)
            .expect("the script did not delete the killed node");
        down.push(ms(gone.at - t0));
        std::thread::sleep(rng.duration(PERIOD));
        let t1 = Instant::now();
        lab.node_mut(&node).start_again();
        let back = poller
            .wait_change(&name, ip, true, t1, limit)
            .expect("the script did not add the node back");
        up.push(ms(back.at - t1));
        println!(
            "  kill {node}: gone after {:.1} ms, back {:.1} ms after the restart",
            ms(gone.at - t0),
            ms(back.at - t1)
        );
    }
    let result = json!({
        "meta": run.finish(),
        "script": "bench/baseline.sh: bash /dev/tcp connect every 1 s (timeout 1 s) + nsupdate per change",
        "period_ms": ms(PERIOD),
        "kill": summary(&down),
        "restart": summary(&up),
    });
    println!(
        "baseline script: kill median {} ms, p95 {} ms; restart median {} ms",
        result["kill"]["median"], result["kill"]["p95"], result["restart"]["median"]
    );
    let path = support::results::save("baseline", result);
    println!("results: {}", path.display());
}
