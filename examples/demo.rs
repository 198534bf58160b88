//! A narrated demo: BIND, three dovecot nodes and pigeon-dns on loopback.
//!
//! ```text
//! cargo build --bins && cargo run --example demo
//! ```
//!
//! It starts `named` (127.0.0.1:10053, zone example.com) and dovecot on
//! mail1..mail3 (127.0.10.11-13, IMAP 10143, POP3 10110, submission 10587),
//! writes a pigeon-dns config, runs `pigeon-dns run`, then stops mail2's
//! dovecot and starts it again while printing what BIND answers. Needs root
//! and the Debian packages bind9, bind9-dnsutils and dovecot-imapd,
//! dovecot-pop3d, dovecot-submissiond. Only loopback is used.
//!
//! Between steps it pauses `DEMO_PAUSE_SECS` seconds (default 3; 0: none)
//! so that you can look from another terminal. Ctrl-C stops everything it
//! started.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, Dovecot, DovecotOpts, DovecotPorts, NodeSpec, PoolSpec,
};

const BIND_PORT: u16 = 10053;
const PORTS: DovecotPorts = DovecotPorts {
    imap: 10143,
    pop3: 10110,
    submission: 10587,
    imaps: None,
    pop3s: None,
    submissions: None,
};
const NODES: [(&str, [u8; 4]); 3] = [
    ("mail1", [127, 0, 10, 11]),
    ("mail2", [127, 0, 10, 12]),
    ("mail3", [127, 0, 10, 13]),
];
const HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 10, 2)), 9854);
/// How long each step may take before the demo gives up.
const STEP: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let started = Instant::now();
    let say = |text: &str| println!("[{:5.1}s] {text}", started.elapsed().as_secs_f64());
    let pause_for = Duration::from_secs(
        std::env::var("DEMO_PAUSE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let pause = || {
        if !pause_for.is_zero() {
            say(&format!("(pausing {pause_for:?}: have a look)"));
            thread::sleep(pause_for);
        }
    };

    // Fail early and clearly when the daemon is not built.
    let bin = common::pigeon_dns_bin();
    stop_everything_on_ctrl_c();

    say("starting BIND (named) as the primary for example.com ...");
    let mut opts = BindOpts::default()
        .on(IpAddr::from([127, 0, 0, 1]))
        .port(BIND_PORT);
    for (name, ip) in NODES {
        opts = opts.record(&format!("{name} 3600 IN A {}", Ipv4Addr::from(ip)));
    }
    let bind = Bind::start(opts);
    say(&format!(
        "BIND answers at {}; its log: {}",
        bind.addr(),
        bind.log_path().display()
    ));

    say("starting dovecot on mail1..mail3 (IMAP, POP3, submission) ...");
    let mut nodes: Vec<(&str, Dovecot)> = NODES
        .iter()
        .map(|(name, ip)| {
            let opts =
                DovecotOpts::new(IpAddr::from(*ip), PORTS).hostname(&format!("{name}.example.com"));
            (*name, Dovecot::start_with(opts))
        })
        .collect();
    for (name, node) in &nodes {
        say(&format!(
            "  {name} at {} greets on IMAP, POP3 and submission",
            node.ip()
        ));
    }

    let dir = tempfile::Builder::new()
        .prefix("pigeon-demo-")
        .tempdir()
        .expect("tempdir");
    let mut cfg = ConfigBuilder::for_bind(&bind)
        .http(HTTP)
        .probe("interval", "\"500ms\"")
        .probe("timeout", "\"400ms\"")
        .probe("fast_interval", "\"100ms\"");
    for (name, ip) in NODES {
        cfg =
            cfg.node(NodeSpec::new(name, &[IpAddr::from(ip)]).host(&format!("{name}.example.com")));
    }
    let cfg = cfg
        .pool(PoolSpec::a("imap", "imap").port(PORTS.imap))
        .pool(PoolSpec::a("pop", "pop3").port(PORTS.pop3))
        .pool(PoolSpec::a("smtp", "submission").port(PORTS.submission))
        .pool(PoolSpec::mx("@", "smtp", 10).port(PORTS.submission))
        .pool(PoolSpec::srv("_imap._tcp", "imap").port(PORTS.imap));
    let config = cfg.write(&dir.path().join("pigeon-dns.toml"));
    say(&format!("wrote {}:", config.display()));
    for line in cfg.to_toml().lines().filter(|l| !l.is_empty()) {
        println!("          | {line}");
    }

    say(&format!(
        "starting {} run -c {} --log-level debug",
        bin.display(),
        config.display()
    ));
    let mut daemon = Daemon::spawn(&config, Some(HTTP));
    println!();
    println!("  What to watch, in another terminal:");
    println!("    dig +short -p {BIND_PORT} @127.0.0.1 imap.example.com A");
    println!("    dig +short -p {BIND_PORT} @127.0.0.1 example.com MX");
    println!(
        "    curl -s http://{HTTP}/metrics | grep -E 'pigeon_dns_(node_up|transitions_total|dns_updates_total)'"
    );
    println!("    grep 'updating zone' {}", bind.log_path().display());
    println!(
        "  Foreign records (imap A 198.51.100.7 TTL 300, MX 50 backup-mx.example.net.) must stay untouched."
    );
    println!();

    let all: Vec<String> = NODES
        .iter()
        .map(|(_, ip)| Ipv4Addr::from(*ip).to_string())
        .collect();
    let mail2_ip = all[1].clone();
    let mut last = None;

    say("waiting for pigeon-dns to publish every node (rise = 2 probes) ...");
    if !watch(&bind, &mut daemon, &mut last, &say, |s| {
        all.iter().all(|ip| s.has_address(ip)) && s.has_mx_to("mail2.example.com")
    }) {
        return give_up(&daemon);
    }
    pause();

    say("stopping mail2's dovecot (killed, like a crash): its connections are refused now");
    nodes[1].1.stop();
    say("waiting for pigeon-dns to withdraw mail2 (fall = 2 failed probes) ...");
    if !watch(&bind, &mut daemon, &mut last, &say, |s| {
        !s.has_address(&mail2_ip) && !s.has_mx_to("mail2.example.com")
    }) {
        return give_up(&daemon);
    }
    if let Ok((200, body)) = daemon.http_get("/metrics") {
        for line in body
            .lines()
            .filter(|l| l.starts_with("pigeon_dns_node_up") && l.contains("mail2"))
        {
            say(&format!("  metric: {line}"));
        }
    }
    pause();

    say("starting mail2's dovecot again ...");
    nodes[1].1.start_again();
    if !watch(&bind, &mut daemon, &mut last, &say, |s| {
        s.has_address(&mail2_ip) && s.has_mx_to("mail2.example.com")
    }) {
        return give_up(&daemon);
    }
    pause();

    say("stopping pigeon-dns with SIGTERM (it changes no record on the way out) ...");
    let status = daemon.terminate();
    say(&format!("pigeon-dns exited: {status}"));
    say(&format!(
        "BIND logged {} record changes; zone serial is now {}",
        bind.update_log().len(),
        bind.serial()
    ));
    drop(nodes);
    drop(bind);
    say("stopped BIND and dovecot; done.");
    ExitCode::SUCCESS
}

/// What BIND answers for the names the demo watches.
#[derive(Clone, PartialEq, Eq)]
struct Snapshot {
    /// `(ttl, address)`
    imap: Vec<(u32, String)>,
    mx: Vec<String>,
}

impl Snapshot {
    fn has_address(&self, ip: &str) -> bool {
        self.imap.iter().any(|(_, a)| a == ip)
    }
    fn has_mx_to(&self, host: &str) -> bool {
        self.mx.iter().any(|m| m.ends_with(&format!(" {host}.")))
    }
}

/// Polls BIND every 100 ms, printing each change, until `done` holds (true)
/// or the daemon exits or [`STEP`] passes (false).
fn watch(
    bind: &Bind,
    daemon: &mut Daemon,
    last: &mut Option<Snapshot>,
    say: &dyn Fn(&str),
    done: impl Fn(&Snapshot) -> bool,
) -> bool {
    let deadline = Instant::now() + STEP;
    loop {
        let now = Snapshot {
            imap: bind.query_with_ttl("imap", "A"),
            mx: bind.query("@", "MX"),
        };
        if last.as_ref() != Some(&now) {
            let imap: Vec<String> = now
                .imap
                .iter()
                .map(|(ttl, ip)| format!("{ip} (TTL {ttl})"))
                .collect();
            say(&format!("  imap.example.com A : {}", imap.join(", ")));
            say(&format!("  example.com MX     : {}", now.mx.join(", ")));
            *last = Some(now.clone());
        }
        if done(&now) {
            return true;
        }
        if daemon.has_exited() || Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn give_up(daemon: &Daemon) -> ExitCode {
    println!();
    if daemon.has_exited() {
        println!("pigeon-dns exited early.");
    } else {
        println!("BIND did not reach the expected records within {STEP:?}.");
    }
    println!("pigeon-dns's log tail:");
    println!("{}", daemon.log_tail(40));
    ExitCode::FAILURE
}

/// `Drop` does not run when Ctrl-C kills the process: stop named, dovecot
/// and pigeon-dns from a signal-watching thread instead.
fn stop_everything_on_ctrl_c() {
    thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("\ninterrupted: stopping everything the demo started");
            common::kill_all_started();
            std::process::exit(130);
        }
    });
}
