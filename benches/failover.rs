//! Failover latency, measured from BIND's answers: a real `named`, three
//! real dovecot nodes and one in-process IMAP node on loopback, pigeon-dns
//! (release build) keeping the `imap` A RRset.
//!
//! Scenarios, each repeated (20 times; 2 with `BENCH_SMOKE=1`):
//! - kill: dovecot SIGKILLed (connections refused at once), from the signal
//!   to the first answer without the node; then restart: from starting
//!   dovecot again to the first answer with it;
//! - black hole: dovecot's process group SIGSTOPped (the kernel still
//!   accepts connections, nothing answers, nothing closes: a frozen node),
//!   then resume (SIGCONT);
//! - refuse once: the in-process node resets exactly one probe connection;
//!   BIND must never stop answering it.
//!
//! Settings: (i) interval 250ms, fall 2 and (ii) the defaults, each with the
//! watch on and (kill only) off. BIND is polled over UDP every 2 ms.
//!
//! `cargo bench --bench failover` (writes `bench/results.json`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lab.rs"]
mod lab;
#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Daemon, Lab, NodeSpec, PoolSpec, toml_str};
use lab::Settings;
use support::dns::Poller;
use support::imapd::Imapd;
use support::results::Run;
use support::stats::{median, p95, round1, summary};
use support::{Rng, ms};

const POOL: &str = "imap";
/// The in-process node (refuse-once), after the three dovecots.
const FAKE: &str = "mail4";
const POLL_EVERY: Duration = Duration::from_millis(2);

struct Bench {
    lab: Lab,
    fake: Imapd,
    fake_ip: IpAddr,
    poller: Poller,
    name: String,
    rng: Rng,
    reps: usize,
    smoke: bool,
}

fn main() {
    let smoke = support::smoke();
    let run = Run::start();
    let lab = Lab::start(3);
    let fake_ip = lab.subnet.node_ip(3);
    let fake = Imapd::start(&[SocketAddr::new(fake_ip, lab.cluster.ports.imap)], 1)
        .expect("start the in-process IMAP node");
    let name = format!("{POOL}.{}", lab.bind.zone());
    let poller = Poller::start(lab.bind.addr(), std::slice::from_ref(&name), POLL_EVERY);
    let mut bench = Bench {
        lab,
        fake,
        fake_ip,
        poller,
        name,
        rng: Rng::new(),
        reps: if smoke { 2 } else { 20 },
        smoke,
    };

    let fast = Settings {
        interval: Duration::from_millis(250),
        timeout: Duration::from_millis(200),
        ..Settings::DEFAULT
    };
    let mut rows = Vec::new();
    for (key, settings) in [("i", fast), ("ii", Settings::DEFAULT)] {
        rows.extend(bench.settings(key, settings));
        // For comparison only: what the watch buys (skipped in smoke runs).
        if !smoke {
            let off = Settings {
                watch: false,
                ..settings
            };
            rows.extend(bench.watch_off(key, off));
        }
    }
    let (polls, errors, max_gap) = bench.poller.health();
    let result = json!({
        "meta": run.finish(),
        "poll": {
            "every_ms": ms(POLL_EVERY),
            "mean_period_ms": round1(ms(bench.poller.mean_period())),
            "max_gap_ms": round1(ms(max_gap)),
            "polls": polls,
            "errors": errors,
        },
        "rows": rows,
    });
    print_rows(&result["rows"]);
    let path = support::results::save("failover", result);
    println!("results: {}", path.display());
}

impl Bench {
    fn config(&self, settings: Settings) -> common::ConfigBuilder {
        let p = self.lab.cluster.ports;
        let cfg = self
            .lab
            .config()
            .node(NodeSpec::new(FAKE, &[self.fake_ip]))
            // The daemon's own defaults, not the harness's fast test ones.
            .dns("resync_interval", &toml_str("60s"))
            .dns("timeout", &toml_str("2s"))
            .pool(PoolSpec::a(POOL, "imap").port(p.imap));
        settings.apply(cfg)
    }

    fn daemon(&self, settings: Settings) -> Daemon {
        let cfg = self.config(settings);
        let path = self.lab.write_config(&cfg);
        let daemon = Daemon::spawn_logging(&path, "info", cfg.http_addr());
        self.wait_all_up(Duration::from_secs(30));
        daemon
    }

    fn ips(&self) -> Vec<IpAddr> {
        let mut ips = self.lab.cluster.ips();
        ips.push(self.fake_ip);
        ips
    }

    fn wait_all_up(&self, timeout: Duration) {
        for ip in self.ips() {
            assert!(
                self.poller.wait_state(&self.name, ip, true, timeout),
                "{ip} not published within {timeout:?}: {:?}",
                self.poller.current(&self.name)
            );
        }
    }

    /// A random phase in [0, interval): the kill must not be in step with
    /// the daemon's probe schedule. (None in smoke runs, to keep them short.)
    fn random_phase(&mut self, settings: Settings) {
        if !self.smoke {
            std::thread::sleep(self.rng.duration(settings.interval));
        }
    }

    fn settings(&mut self, key: &str, settings: Settings) -> Vec<Value> {
        let mut daemon = self.daemon(settings);
        println!("== ({key}) {}", settings.describe());
        let (kill, restart) = self.kill(settings);
        let (hole, resume) = self.black_hole(settings);
        let refuse = self.refuse_once(settings, &daemon);
        daemon.terminate();
        let mut rows = vec![
            row(key, settings, "kill", &kill, settings.kill_bound()),
            row(key, settings, "restart", &restart, settings.restart_bound()),
            row(
                key,
                settings,
                "black hole",
                &hole,
                settings.black_hole_bound(),
            ),
            row(key, settings, "resume", &resume, settings.restart_bound()),
            refuse,
        ];
        for r in &mut rows {
            judge(r, key, self.smoke);
        }
        rows
    }

    fn watch_off(&mut self, key: &str, settings: Settings) -> Vec<Value> {
        let mut daemon = self.daemon(settings);
        println!("== ({key}) {}", settings.describe());
        let (kill, _) = self.kill(settings);
        daemon.terminate();
        let mut r = row(key, settings, "kill", &kill, settings.kill_bound());
        judge(&mut r, key, self.smoke);
        vec![r]
    }

    /// Kill (dovecot SIGKILL) and restart, `reps` times, rotating nodes.
    fn kill(&mut self, settings: Settings) -> (Vec<f64>, Vec<f64>) {
        self.outages(
            settings,
            ("kill", "restart"),
            |lab, node| lab.node_mut(node).stop(),
            |lab, node| lab.node_mut(node).start_again(),
        )
    }

    /// Freeze (SIGSTOP the dovecot group) and resume, `reps` times.
    fn black_hole(&mut self, settings: Settings) -> (Vec<f64>, Vec<f64>) {
        let group = |lab: &Lab, node: &str| lab::dovecot_group(lab.node(node).dovecot.dir());
        self.outages(
            settings,
            ("freeze", "resume"),
            |lab, node| common::process::signal_group(group(lab, node), "STOP"),
            |lab, node| common::process::signal_group(group(lab, node), "CONT"),
        )
    }

    /// Takes a node out with `down` and brings it back with `up`, `reps`
    /// times, rotating nodes; returns the times until BIND stopped and
    /// started answering its address. A node still published at the limit
    /// is brought back before the bench fails.
    fn outages(
        &mut self,
        settings: Settings,
        (gone_word, back_word): (&str, &str),
        down: impl Fn(&mut Lab, &str),
        up: impl Fn(&mut Lab, &str),
    ) -> (Vec<f64>, Vec<f64>) {
        let (mut downs, mut ups) = (Vec::new(), Vec::new());
        let limit = settings.black_hole_bound() + Duration::from_secs(10);
        for rep in 0..self.reps {
            let node = format!("mail{}", 1 + rep % 3);
            let ip = self.lab.node(&node).ip();
            self.wait_all_up(limit);
            self.random_phase(settings);
            let t0 = Instant::now();
            down(&mut self.lab, &node);
            let gone = self.poller.wait_change(&self.name, ip, false, t0, limit);
            let Some(gone) = gone else {
                up(&mut self.lab, &node);
                panic!("{node} still published {limit:?} after the {gone_word}");
            };
            downs.push(ms(gone.at - t0));
            self.random_phase(settings);
            let t1 = Instant::now();
            up(&mut self.lab, &node);
            let back = self
                .poller
                .wait_change(&self.name, ip, true, t1, limit)
                .unwrap_or_else(|| panic!("{node} not back {limit:?} after the {back_word}"));
            ups.push(ms(back.at - t1));
            println!(
                "  {gone_word} {node}: gone after {:.1} ms, back {:.1} ms after the {back_word}",
                ms(gone.at - t0),
                ms(back.at - t1)
            );
        }
        (downs, ups)
    }

    /// The in-process node resets exactly one probe connection; BIND must
    /// keep answering its address throughout.
    fn refuse_once(&mut self, settings: Settings, daemon: &Daemon) -> Value {
        let refused_sample = format!(
            "pigeon_dns_probes_total{{pool=\"{POOL}\",node=\"{FAKE}\",address=\"{}\",result=\"refused\"}}",
            self.fake_ip
        );
        let limit = Duration::from_secs(30);
        let mut left = 0;
        let mut seen_by_probe = 0;
        for _ in 0..self.reps {
            self.wait_all_up(limit);
            let before = daemon.metric_value(&refused_sample).unwrap_or(0.0);
            // Only the watch connection open: the next connection is a probe.
            let deadline = Instant::now() + limit;
            while self
                .fake
                .stats
                .open
                .load(std::sync::atomic::Ordering::SeqCst)
                != 1
            {
                assert!(
                    Instant::now() < deadline,
                    "the watch connection never settled"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let t0 = Instant::now();
            self.fake.refuse_next();
            while self.fake.refusal_pending() {
                assert!(
                    Instant::now() < deadline,
                    "no connection came to be refused"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            // Long enough for the fast re-probe and the next periodic one.
            std::thread::sleep(settings.interval + settings.fast_interval * 3);
            let after = daemon.metric_value(&refused_sample).unwrap_or(0.0);
            let changes: Vec<_> = self
                .poller
                .changes_since(t0)
                .into_iter()
                .filter(|c| c.addr == self.fake_ip)
                .collect();
            if !changes.is_empty() {
                left += 1;
            }
            if after > before {
                seen_by_probe += 1;
            }
            println!(
                "  refuse once: probe saw it: {}, DNS changes: {}",
                after > before,
                changes.len()
            );
        }
        json!({
            "settings_key": "",
            "settings": settings.describe(),
            "probe": settings.to_json(),
            "scenario": "refuse once",
            "n": self.reps,
            "refusals_seen_by_a_probe": seen_by_probe,
            "times_left_dns": left,
            "goal": "never leaves DNS",
            "met": if self.smoke { Value::Null } else { (left == 0 && seen_by_probe > 0).into() },
        })
    }
}

fn row(key: &str, settings: Settings, scenario: &str, samples: &[f64], bound: Duration) -> Value {
    let s = summary(samples);
    json!({
        "settings_key": key,
        "settings": settings.describe(),
        "probe": settings.to_json(),
        "scenario": scenario,
        "n": s["n"],
        "median_ms": s["median"],
        "p95_ms": s["p95"],
        "max_ms": s["max"],
        "min_ms": s["min"],
        "bound_ms": ms(bound),
        "samples_ms": s["samples"],
    })
}

/// Sets `goal` and `met` of a row from the brief's goals for its settings.
fn judge(row: &mut Value, key: &str, smoke: bool) {
    let scenario = row["scenario"].as_str().unwrap_or("").to_owned();
    if scenario == "refuse once" {
        row["settings_key"] = key.into();
        return;
    }
    let samples: Vec<f64> = row["samples_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let (med, p) = (median(&samples), p95(&samples));
    let bound = row["bound_ms"].as_f64().unwrap_or(f64::NAN);
    let probe = &row["probe"];
    let f = |k: &str| probe[k].as_f64().unwrap_or(f64::NAN);
    let (goal, met) = match (key, scenario.as_str()) {
        ("i", _) => ("median <= bound + 50 ms".to_owned(), med <= bound + 50.0),
        ("ii", "kill") if probe["watch"] == true => (
            "median <= 300 ms, p95 <= 500 ms".to_owned(),
            med <= 300.0 && p <= 500.0,
        ),
        ("ii", "black hole") => {
            let limit = f("interval_ms") + f("fall") * f("timeout_ms") + 100.0;
            (
                format!("p95 <= interval + fall*timeout + 100 ms = {limit} ms"),
                p <= limit,
            )
        }
        ("ii", "restart" | "resume") => {
            let limit = f("interval_ms") + f("rise") * f("fast_interval_ms") + 100.0;
            (
                format!("median <= interval + rise*fast_interval + 100 ms = {limit} ms"),
                med <= limit,
            )
        }
        _ => ("(none: for comparison)".to_owned(), true),
    };
    row["goal"] = goal.into();
    row["met"] = if smoke || row["goal"] == "(none: for comparison)" {
        Value::Null
    } else {
        met.into()
    };
}

fn print_rows(rows: &Value) {
    for r in rows.as_array().into_iter().flatten() {
        println!(
            "({}) {:<11} {:<70} n={:<3} median={:>7} p95={:>7} bound={:>7} met={}",
            r["settings_key"].as_str().unwrap_or(""),
            r["scenario"].as_str().unwrap_or(""),
            r["settings"].as_str().unwrap_or(""),
            r["n"],
            r["median_ms"],
            r["p95_ms"],
            r["bound_ms"],
            r["met"],
        );
    }
}
