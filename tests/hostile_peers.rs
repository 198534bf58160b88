//! Hostile and broken probe peers, end to end (docs/configuration.md, "Checks": "Every probe
//! finishes within its timeout whatever the peer does").
//!
//! Small fake servers here send an endless line without CRLF, megabytes of
//! lines, binary garbage, one byte per second, half a TLS handshake (the
//! ClientHello read and nothing sent, or a partial ServerHello), plain text
//! on a TLS port, an endless HTTP header or body. `pigeon-dns probe` must end
//! each probe within its timeout (plus a small margin) with a clear reason
//! and result label, and print no raw control character. The daemon must
//! keep its memory bounded while it probes peers that spew megabytes, over
//! and over, and a peer that greets and then hangs up must not make it
//! probe in a loop.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::bind::write_key_file;
use common::{ConfigBuilder, Daemon, NodeSpec, PoolSpec, Subnet, TsigKey, run_cli, toml_str};

/// The probe timeout of these tests.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How late a timed-out probe may end (scheduling on a loaded 2-core machine).
const MARGIN: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Hostile peers
// ---------------------------------------------------------------------------

/// What a hostile peer does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behavior {
    /// `x` forever, never a line feed.
    EndlessLine,
    /// Megabytes of well-formed SMTP continuation lines: `220-...` forever.
    EndlessMultiline,
    /// Binary garbage with control characters and a line end, then more.
    Garbage,
    /// `+OK slowly\r\n`, one byte per second.
    OneBytePerSecond,
    /// Reads the ClientHello and sends nothing.
    TlsSilent,
    /// Reads the ClientHello and sends the first bytes of a ServerHello.
    TlsPartialServerHello,
    /// Answers the ClientHello with a plain-text IMAP greeting.
    TlsPlainText,
    /// HTTP: a status line, then one header line that never ends.
    HttpEndlessHeader,
    /// HTTP 200 with a chunked body that never ends.
    HttpEndlessBody,
    /// `* OK` greeting, then megabytes of untagged lines forever.
    ImapGreetThenFlood,
    /// `* OK` greeting, then an immediate close.
    ImapGreetThenClose,
}

/// A hostile peer on `addr`, one thread per connection; stopped on drop.
struct Hostile {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Bytes written to clients so far.
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    fn start(addr: SocketAddr, behavior: Behavior) -> Hostile {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, sent, stop) = (accepted.clone(), sent.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let (sent, stop) = (sent.clone(), stop.clone());
                            // Detached: each ends on a write error or the stop flag.
                            thread::spawn(move || {
                                let _ = stream.set_nonblocking(false);
                                let mut peer = Conn {
                                    stream,
                                    sent: &sent,
                                    stop: &stop,
                                };
                                peer.run(behavior);
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(2))
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Hostile {
            addr,
            accepted,
            sent,
            stop,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn bytes_sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Conn<'a> {
    stream: TcpStream,
    sent: &'a AtomicUsize,
    stop: &'a AtomicBool,
}

impl Conn<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Writes `bytes`; false once the client is gone or the test stops.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if self.stopped() || self.stream.write_all(bytes).is_err() {
            return false;
        }
        self.sent.fetch_add(bytes.len(), Ordering::Relaxed);
        true
    }

    /// Sends `bytes` again and again until the client goes.
    fn flood(&mut self, bytes: &[u8]) {
        while self.send(bytes) {}
    }

    /// Holds the connection, reading and discarding, until the client closes.
    fn hold(&mut self) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 4096];
        while !self.stopped() {
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
    }

    /// Reads one TLS record (the ClientHello); false if none came.
    fn read_client_hello(&mut self) -> bool {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut header = [0u8; 5];
        if self.stream.read_exact(&mut header).is_err() || header[0] != 0x16 {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).is_ok() && body.first() == Some(&0x01)
    }

    /// Reads an HTTP request head (up to the blank line).
    fn read_request(&mut self) {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            match self.stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
    }

    fn run(&mut self, behavior: Behavior) {
        match behavior {
            Behavior::EndlessLine => self.flood(&[b'x'; 16 * 1024]),
            Behavior::EndlessMultiline => {
                let line = format!("220-{}\r\n", "flood ".repeat(60));
                self.flood(line.repeat(64).as_bytes());
            }
            Behavior::Garbage => {
                let mut junk: Vec<u8> =
                    b"\x1b[2J\x1b]0;owned\x07\x1b[31m\0\xff\xfe\x08\x08\xc2\x9b31m".to_vec();
                // A fixed pseudo-random tail without line feeds, then CRLF.
                let mut x: u32 = 0x1234_5678;
                for _ in 0..300 {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let b = (x >> 16) as u8;
                    junk.push(if b == b'\n' { 0 } else { b });
                }
                junk.extend_from_slice(b"\r\n");
                if self.send(&junk) {
                    self.flood(&junk);
                }
            }
            Behavior::OneBytePerSecond => {
                for &b in b"+OK slowly\r\n".iter().cycle() {
                    if !self.send(&[b]) {
                        return;
                    }
                    // One second, in steps, so that a stop is seen quickly.
                    for _ in 0..20 {
                        if self.stopped() {
                            return;
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            Behavior::TlsSilent => {
                if self.read_client_hello() {
                    self.hold();
                }
            }
            Behavior::TlsPartialServerHello => {
                if self.read_client_hello() {
                    // Record header announcing 122 bytes, ServerHello header
                    // announcing 118, version, and 10 of the 32 random bytes.
                    let mut partial = vec![
                        0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03,
                    ];
                    partial.extend_from_slice(&[0x42; 10]);
                    if self.send(&partial) {
                        self.hold();
                    }
                }
            }
            Behavior::TlsPlainText => {
                if self.read_client_hello() && self.send(b"* OK plain IMAP on the TLS port\r\n") {
                    self.hold();
                }
            }
            Behavior::HttpEndlessHeader => {
                self.read_request();
                if self.send(b"HTTP/1.1 200 OK\r\nX-Flood: ") {
                    self.flood(&[b'a'; 16 * 1024]);
                }
            }
            Behavior::HttpEndlessBody => {
                self.read_request();
                if self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n") {
                    let mut chunk = b"4000\r\n".to_vec();
                    chunk.extend_from_slice(&[b'z'; 0x4000]);
                    chunk.extend_from_slice(b"\r\n");
                    self.flood(&chunk);
                }
            }
            Behavior::ImapGreetThenFlood => {
                if self.send(b"* OK greeting, then a flood\r\n") {
                    let line = format!("* {}\r\n", "FLOOD ".repeat(100));
                    self.flood(line.repeat(32).as_bytes());
                }
            }
            Behavior::ImapGreetThenClose => {
                let _ = self.send(b"* OK hello and goodbye\r\n");
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

/// One hostile pool: its name, check, peer, and what `probe` must report.
struct Case {
    pool: &'static str,
    check: &'static str,
    behavior: Behavior,
    result: &'static str,
    /// The detail must contain each.
    detail: &'static [&'static str],
    /// Pool settings as raw TOML.
    extra: &'static [(&'static str, &'static str)],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            pool: "endless-line",
            check: "smtp",
            behavior: Behavior::EndlessLine,
            result: "bad_greeting",
            detail: &["greeting line longer than 4096 bytes", "xxxx"],
            extra: &[],
        },
        Case {
            pool: "megabytes",
            check: "smtp",
            behavior: Behavior::EndlessMultiline,
            result: "bad_greeting",
            detail: &["greeting longer than 64 lines"],
            extra: &[],
        },
        Case {
            pool: "garbage",
            check: "pop3",
            behavior: Behavior::Garbage,
            result: "bad_greeting",
            detail: &["unexpected greeting", "\\u{1b}"],
            extra: &[],
        },
        Case {
            pool: "slow",
            check: "imap",
            behavior: Behavior::OneBytePerSecond,
            result: "timeout",
            detail: &["no greeting within 1s"],
            extra: &[],
        },
        Case {
            pool: "tls-silent",
            check: "imaps",
            behavior: Behavior::TlsSilent,
            result: "timeout",
            detail: &["TLS handshake not finished within 1s"],
            extra: &[],
        },
        Case {
            pool: "tls-partial",
            check: "imaps",
            behavior: Behavior::TlsPartialServerHello,
            result: "timeout",
            detail: &["TLS handshake not finished within 1s"],
            extra: &[],
        },
        Case {
            pool: "tls-plain",
            check: "imaps",
            behavior: Behavior::TlsPlainText,
            result: "tls_error",
            detail: &["handshake failed"],
            extra: &[],
        },
        Case {
            pool: "http-header",
            check: "http",
            behavior: Behavior::HttpEndlessHeader,
            result: "bad_greeting",
            detail: &["HTTP"],
            extra: &[],
        },
        Case {
            pool: "http-body",
            check: "http",
            behavior: Behavior::HttpEndlessBody,
            result: "http_status",
            detail: &["body does not contain \"ready\"", "65536 bytes read"],
            extra: &[("expect_body", "ready")],
        },
        Case {
            pool: "greet-flood",
            check: "imap",
            behavior: Behavior::ImapGreetThenFlood,
            result: "ok",
            detail: &["* OK greeting, then a flood"],
            extra: &[],
        },
    ]
}

/// A node on its own subnet address, a key file, the hostile peers and a
/// config with one pool per peer.
struct Lab {
    subnet: Subnet,
    dir: tempfile::TempDir,
    node_ip: IpAddr,
    peers: Vec<Hostile>,
}

impl Lab {
    fn new() -> Lab {
        let subnet = Subnet::new();
        let dir = tempfile::Builder::new()
            .prefix("pigeon-hostile-peers-")
            .tempdir()
            .expect("tempdir");
        let node_ip = subnet.ip(21);
        Lab {
            subnet,
            dir,
            node_ip,
            peers: Vec::new(),
        }
    }

    /// Starts one peer per case and returns the config with one pool each.
    fn config(&mut self, cases: &[Case]) -> ConfigBuilder {
        let key = TsigKey::generate("pigeon-dns", "hmac-sha256");
        let key_file = write_key_file(&self.dir.path().join("pigeon-dns.key"), &[&key]);
        // No primary: DNS is not what these tests look at.
        let mut cfg = ConfigBuilder::new("127.0.0.1:9", "example.com", &key_file)
            .probe("interval", &toml_str("2s"))
            .probe("timeout", &toml_str(&format!("{}ms", TIMEOUT.as_millis())))
            .node(NodeSpec::new("evil", &[self.node_ip]));
        for case in cases {
            let peer = Hostile::start(SocketAddr::new(self.node_ip, 0), case.behavior);
            let mut pool = PoolSpec::a(case.pool, case.check).port(peer.addr.port());
            for (k, v) in case.extra {
                pool = pool.set_str(k, v);
            }
            cfg = cfg.pool(pool);
            self.peers.push(peer);
        }
        cfg
    }

    fn write(&self, cfg: &ConfigBuilder) -> PathBuf {
        cfg.write(&self.dir.path().join("pigeon-dns.toml"))
    }

    /// Starts one peer behaving as `behavior` for the imap pool `pool`, and
    /// the daemon probing it every `interval` (timeout 500 ms, /metrics
    /// on); returns once the daemon has judged the peer up (so it watches
    /// it).
    fn daemon_on_a_watched_peer(
        &mut self,
        pool: &'static str,
        behavior: Behavior,
        interval: &str,
    ) -> Daemon {
        let case = Case {
            pool,
            check: "imap",
            behavior,
            result: "ok",
            detail: &[],
            extra: &[],
        };
        let http = SocketAddr::new(self.subnet.ip(2), common::HTTP_PORT);
        let cfg = self
            .config(std::slice::from_ref(&case))
            .probe("interval", &toml_str(interval))
            .probe("timeout", &toml_str("500ms"))
            .http(http);
        let path = self.write(&cfg);
        let daemon = Daemon::spawn(&path, Some(http));
        let address = self.node_ip.to_string();
        let up =
            format!("pigeon_dns_node_up{{pool=\"{pool}\",node=\"evil\",address=\"{address}\"}}");
        daemon.wait_for_metric(&up, |v| v == 1.0, Duration::from_secs(10));
        daemon
    }
}

/// `[pool, node, address, check, result, latency, detail]` of `pool`'s row.
fn row(table: &str, pool: &str) -> Option<(String, Duration, String)> {
    table.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 6 || words[0] != pool {
            return None;
        }
        let ms: f64 = words[5].strip_suffix("ms")?.parse().ok()?;
        Some((
            words[4].to_owned(),
            Duration::from_secs_f64(ms / 1000.0),
            words[6..].join(" "),
        ))
    })
}

// ---------------------------------------------------------------------------
// `pigeon-dns probe`
// ---------------------------------------------------------------------------

#[test]
fn probe_ends_every_hostile_check_within_its_timeout_with_a_reason() {
    let mut lab = Lab::new();
    let cases = cases();
    let cfg = lab.config(&cases);
    let path = lab.write(&cfg);
    let started = Instant::now();
    let out = run_cli(&["probe".as_ref(), "-c".as_ref(), path.as_os_str()]);
    let elapsed = started.elapsed();
    println!("probe took {elapsed:?}:\n{}{}", out.stdout, out.stderr);
    let mut problems = Vec::new();
    // Every probe runs at once, each bounded by its timeout: the command too
    // (plus the process start and loading the system CA certificates).
    if elapsed > TIMEOUT + Duration::from_secs(2) {
        problems.push(format!(
            "the probe command took {elapsed:?} (timeout {TIMEOUT:?})"
        ));
    }
    if out.code() != Some(1) {
        problems.push(format!(
            "exit status {:?}, want 1 (checks failed)",
            out.code()
        ));
    }
    for case in &cases {
        let Some((result, latency, detail)) = row(&out.stdout, case.pool) else {
            problems.push(format!("no row for {}", case.pool));
            continue;
        };
        if result != case.result {
            problems.push(format!(
                "{} ({:?}): result {result}, want {} ({detail})",
                case.pool, case.behavior, case.result
            ));
        }
        for needle in case.detail {
            if !detail.contains(needle) {
                problems.push(format!(
                    "{} ({:?}): detail {detail:?} lacks {needle:?}",
                    case.pool, case.behavior
                ));
            }
        }
        if latency > TIMEOUT + MARGIN {
            problems.push(format!(
                "{}: latency {latency:?} beyond the timeout {TIMEOUT:?}",
                case.pool
            ));
        }
        if detail.chars().count() > 300 {
            problems.push(format!(
                "{}: a {}-character detail",
                case.pool,
                detail.chars().count()
            ));
        }
    }
    // A peer's bytes never reach the terminal raw (escape sequences, NUL, BEL...).
    let raw: Vec<(usize, char)> = out
        .stdout
        .char_indices()
        .filter(|(_, c)| c.is_control() && *c != '\n')
        .collect();
    if !raw.is_empty() {
        problems.push(format!(
            "raw control characters in the output: {:?}",
            &raw[..raw.len().min(10)]
        ));
    }
    assert!(
        problems.is_empty(),
        "- {}\noutput:\n{}",
        problems.join("\n- "),
        out.stdout
    );
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// VmRSS of `pid`, from /proc.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) of `pid` in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is [0]; utime and stime are the 14th
    // and 15th fields of the line, [11] and [12] here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The daemon probes peers that spew megabytes every 200 ms: its resident
/// memory stays bounded, each peer is probed again and again, and the
/// probes end as they should.
#[test]
fn the_daemon_memory_stays_bounded_while_peers_spew_megabytes() {
    const LIMIT: u64 = 64 * 1024 * 1024;
    const RUN: Duration = Duration::from_secs(6);
    let mut lab = Lab::new();
    let spewers: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            matches!(
                c.behavior,
                Behavior::EndlessLine
                    | Behavior::EndlessMultiline
                    | Behavior::Garbage
                    | Behavior::HttpEndlessHeader
                    | Behavior::HttpEndlessBody
                    | Behavior::ImapGreetThenFlood
            )
        })
        .collect();
    let http = SocketAddr::new(lab.subnet.ip(2), common::HTTP_PORT);
    let cfg = lab
        .config(&spewers)
        .probe("interval", &toml_str("200ms"))
        .probe("timeout", &toml_str("150ms"))
        .http(http);
    let path = lab.write(&cfg);
    let daemon = Daemon::spawn(&path, Some(http));
    let pid = daemon.pid();
    daemon.wait_for_http_status("/healthz", 200, Duration::from_secs(10));
    let started = Instant::now();
    let ticks_before = cpu_ticks(pid).unwrap_or(0);
    let sent_before: usize = lab.peers.iter().map(Hostile::bytes_sent).sum();
    let mut peak = 0u64;
    let mut samples = Vec::new();
    // The slowest result each pool reported in /status, with its detail.
    let mut slowest: std::collections::BTreeMap<String, (f64, String)> = Default::default();
    while started.elapsed() < RUN {
        if let Ok((200, body)) = daemon.http_get("/status") {
            let status: pigeon_dns::status::Status =
                serde_json::from_str(&body).expect("/status is JSON");
            for t in status.targets {
                if let Some(last) = t.last {
                    let entry = slowest.entry(t.pool).or_default();
                    if last.latency_ms >= entry.0 {
                        *entry = (last.latency_ms, last.detail);
                    }
                }
            }
        }
        let rss = rss_bytes(pid).expect("the daemon's VmRSS");
        peak = peak.max(rss);
        samples.push(rss / 1024 / 1024);
        assert!(
            rss < LIMIT,
            "VmRSS {} MB after {:?} (limit {} MB); samples (MB): {samples:?}",
            rss / 1024 / 1024,
            started.elapsed(),
            LIMIT / 1024 / 1024
        );
        assert!(
            !daemon.has_exited(),
            "the daemon exited:\n{}",
            daemon.log_tail(30)
        );
        thread::sleep(Duration::from_millis(100));
    }
    let sent: usize = lab.peers.iter().map(Hostile::bytes_sent).sum::<usize>() - sent_before;
    let cpu = Duration::from_millis((cpu_ticks(pid).unwrap_or(0) - ticks_before) * 10);
    let metrics = daemon.metrics();
    let mut lines = Vec::new();
    for (case, peer) in spewers.iter().zip(&lab.peers) {
        let probes = metrics.sum("pigeon_dns_probes_total", &[("pool", case.pool)]);
        let expected = metrics.sum(
            "pigeon_dns_probes_total",
            &[("pool", case.pool), ("result", case.result)],
        );
        lines.push(format!(
            "{}: {probes} probes, {expected} {}, {} connections",
            case.pool,
            case.result,
            peer.connections()
        ));
        assert!(
            probes >= 10.0,
            "{} was probed {probes} times in {RUN:?} at a 200 ms interval",
            case.pool
        );
        // After the first probe, every one reports the peer's fault (the
        // flood's greeting passes; a 150 ms timeout may cut a slow run short).
        assert!(
            expected >= probes * 0.8,
            "{}: {expected} of {probes} probes gave {}; {:?}",
            case.pool,
            case.result,
            metrics
                .matching("pigeon_dns_probes_total", &[("pool", case.pool)])
                .collect::<Vec<_>>()
        );
    }
    // Each probe ended within its timeout (150 ms), with a short reason.
    for case in &spewers {
        let (ms, detail) = slowest.get(case.pool).cloned().unwrap_or_default();
        assert!(
            ms <= (Duration::from_millis(150) + MARGIN).as_secs_f64() * 1000.0,
            "{}: a probe took {ms} ms (timeout 150 ms): {detail}",
            case.pool
        );
        assert!(
            detail.chars().count() <= 300,
            "{}: a {}-character detail",
            case.pool,
            detail.len()
        );
        lines.push(format!("{}: slowest {ms} ms ({detail})", case.pool));
    }
    println!(
        "peak VmRSS {} MB over {RUN:?} while peers sent {} MB; daemon CPU {cpu:?}; samples (MB): {samples:?}\n{}",
        peak / 1024 / 1024,
        sent / 1024 / 1024,
        lines.join("\n")
    );
    assert!(
        sent > 8 * 1024 * 1024,
        "the peers sent only {} bytes: not the megabytes this test is about",
        sent
    );
}

/// A peer that greets and hangs up at once (a broken server, a load
/// balancer in front of a dead one) passes each probe, so its target is up
/// and watched; the watch ends at once and calls for a probe. The daemon
/// must not turn that into a loop: probes stay near one per interval.
#[test]
fn a_peer_that_greets_and_hangs_up_does_not_make_a_probe_storm() {
    const RUN: Duration = Duration::from_secs(3);
    let mut lab = Lab::new();
    let daemon = lab.daemon_on_a_watched_peer("greet-close", Behavior::ImapGreetThenClose, "1s");
    let before = lab.peers[0].connections();
    let started = Instant::now();
    let ticks_before = cpu_ticks(daemon.pid()).unwrap_or(0);
    while started.elapsed() < RUN {
        assert!(
            !daemon.has_exited(),
            "the daemon exited:\n{}",
            daemon.log_tail(30)
        );
        thread::sleep(Duration::from_millis(50));
    }
    let connections = lab.peers[0].connections() - before;
    let cpu = Duration::from_millis((cpu_ticks(daemon.pid()).unwrap_or(0) - ticks_before) * 10);
    let probes = daemon
        .metrics()
        .sum("pigeon_dns_probes_total", &[("pool", "greet-close")]);
    println!(
        "{connections} connections and {probes} probes in total; daemon CPU {cpu:?} over {RUN:?}"
    );
    // One probe and one watch per interval, plus the re-probe a close calls
    // for: a handful per second, not hundreds.
    let allowed = 10 * RUN.as_secs() as usize;
    assert!(
        connections <= allowed,
        "{connections} connections in {RUN:?} to a peer that greets and hangs up (interval 1s): \
         each watch close triggers a probe at once, which passes and reopens the watch, with no pause; \
         {probes} probes in total, daemon CPU {cpu:?}"
    );
}

/// A peer that greets, so its target is up and watched, and then floods the
/// idle watch connection with lines: the watch must not read megabytes
/// forever at full speed (an idle connection that talks is not idle).
#[test]
fn a_peer_flooding_the_watch_connection_does_not_hold_a_core() {
    const RUN: Duration = Duration::from_secs(3);
    let mut lab = Lab::new();
    let daemon = lab.daemon_on_a_watched_peer("watch-flood", Behavior::ImapGreetThenFlood, "2s");
    let started = Instant::now();
    let ticks_before = cpu_ticks(daemon.pid()).unwrap_or(0);
    let sent_before = lab.peers[0].bytes_sent();
    let mut peak = 0;
    while started.elapsed() < RUN {
        assert!(
            !daemon.has_exited(),
            "the daemon exited:\n{}",
            daemon.log_tail(30)
        );
        peak = peak.max(rss_bytes(daemon.pid()).unwrap_or(0));
        thread::sleep(Duration::from_millis(50));
    }
    let cpu = Duration::from_millis((cpu_ticks(daemon.pid()).unwrap_or(0) - ticks_before) * 10);
    let sent = lab.peers[0].bytes_sent() - sent_before;
    let watches = daemon.metric_value("pigeon_dns_watch_connections");
    println!(
        "the peer sent {} MB in {RUN:?}; daemon CPU {cpu:?}, peak VmRSS {} MB, watch connections {watches:?}",
        sent / 1024 / 1024,
        peak / 1024 / 1024
    );
    assert!(peak < 64 * 1024 * 1024, "VmRSS {} MB", peak / 1024 / 1024);
    assert!(
        cpu < RUN / 3,
        "the daemon used {cpu:?} of CPU in {RUN:?} reading {} MB that a peer pushed down an idle watch connection",
        sent / 1024 / 1024
    );
}
