//! The pigeon-dns binary under test: the daemon, its HTTP endpoints and
//! metrics, and one-shot commands.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{self, Guarded};

/// How long a one-shot command may run before the test fails.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The pigeon-dns binary: Cargo's `CARGO_BIN_EXE_pigeon-dns` in integration
/// tests; elsewhere (examples) `target/<profile>/pigeon-dns` found from the
/// running executable (`target/<profile>/examples/demo`).
pub fn pigeon_dns_bin() -> PathBuf {
    // Another build under test, e.g. to see a new test fail on an older one.
    if let Some(path) = std::env::var_os("PIGEON_DNS_BIN") {
        return PathBuf::from(path);
    }
    if let Some(path) = option_env!("CARGO_BIN_EXE_pigeon-dns") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("pigeon-dns"))
        .expect("target dir");
    assert!(
        candidate.is_file(),
        "{} not found: build it first with `cargo build --bins`",
        candidate.display()
    );
    candidate
}

/// A base command for the binary: no `RUST_LOG` or `PIGEON_DNS_CONFIG` from
/// the test's environment, so only the arguments decide.
fn base_command(args: &[&OsStr]) -> Command {
    let mut cmd = Command::new(pigeon_dns_bin());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("PIGEON_DNS_CONFIG")
        .env("NO_COLOR", "1");
    cmd
}

/// The outcome of a one-shot command (`check`, `probe`, `plan`, `status`).
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `pigeon-dns ARGS...` to completion (at most a minute).
pub fn run_cli<S: AsRef<OsStr>>(args: &[S]) -> CliOutput {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let out = process::run_with_timeout(base_command(&args), None, CLI_TIMEOUT);
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Lines a child wrote, shared with the thread that reads them.
type Lines = Arc<Mutex<Vec<String>>>;

/// `pigeon-dns run` in the background. Its stderr (the log) and stdout are
/// collected line by line; set `HARNESS_ECHO=1` to also see them live.
/// Killed on drop.
pub struct Daemon {
    process: Guarded,
    stderr: Lines,
    stdout: Lines,
    http: Option<SocketAddr>,
}

impl Daemon {
    /// `pigeon-dns run -c CONFIG --log-level debug`; `http` is the config's
    /// `[http] listen`, for [`Daemon::metrics`].
    pub fn spawn(config: &Path, http: Option<SocketAddr>) -> Daemon {
        Daemon::spawn_logging(config, "debug", http)
    }

    /// `pigeon-dns run -c CONFIG --log-level LEVEL` (the benches run at
    /// `info`, as in production, so that logging does not weigh on them).
    pub fn spawn_logging(config: &Path, level: &str, http: Option<SocketAddr>) -> Daemon {
        let args: [&OsStr; 5] = [
            "run".as_ref(),
            "-c".as_ref(),
            config.as_os_str(),
            "--log-level".as_ref(),
            level.as_ref(),
        ];
        Daemon::spawn_args(&args, http)
    }

    /// `pigeon-dns ARGS...` (e.g. with `--dry-run` or `--log-format json`).
    pub fn spawn_args<S: AsRef<OsStr>>(args: &[S], http: Option<SocketAddr>) -> Daemon {
        let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
        let mut cmd = base_command(&args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = Guarded::spawn(cmd, false)
            .unwrap_or_else(|e| panic!("spawn {}: {e}", pigeon_dns_bin().display()));
        let pid = process.pid();
        let stderr = collect(process.take_stderr(), format!("pigeon-dns {pid} stderr"));
        let stdout = collect(process.take_stdout(), format!("pigeon-dns {pid} stdout"));
        Daemon {
            process,
            stderr,
            stdout,
            http,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// A position in the log, for [`Daemon::wait_for_log_since`].
    pub fn log_mark(&self) -> usize {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.logs().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for a log line containing `needle` and returns it; panics with
    /// the log's tail on timeout or when the daemon exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_since(0, needle, timeout)
    }

    /// As [`Daemon::wait_for_log`], among lines after `mark`.
    pub fn wait_for_log_since(&mut self, mark: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = {
                let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
                lines
                    .iter()
                    .skip(mark)
                    .find(|l| l.contains(needle))
                    .cloned()
            };
            if let Some(line) = found {
                return line;
            }
            let exited = self.process.has_exited();
            if exited || Instant::now() >= deadline {
                // Let the reader thread catch the last lines.
                thread::sleep(Duration::from_millis(50));
                let why = if exited {
                    "the daemon exited"
                } else {
                    "timed out"
                };
                panic!(
                    "{why} waiting for a log line with {needle:?} ({timeout:?}); log tail:\n{}",
                    self.log_tail(60)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` stderr lines, one string.
    pub fn log_tail(&self, n: usize) -> String {
        let logs = self.logs();
        logs[logs.len().saturating_sub(n)..].join("\n")
    }

    /// GET `path` on the daemon's HTTP listener: `(status, body)`.
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let addr = self
            .http
            .expect("the daemon was spawned without an HTTP address");
        http_get(addr, path)
    }

    /// GET /metrics, parsed; panics unless it answers 200.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self
            .http_get("/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics: {e}; log tail:\n{}", self.log_tail(30)));
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        Metrics::parse(&body)
    }

    /// The value of one sample, e.g.
    /// `pigeon_dns_node_up{pool="imap",node="mail1",address="127.1.2.11"}`
    /// (labels in any order, all of them).
    pub fn metric_value(&self, sample: &str) -> Option<f64> {
        self.metrics().get(sample)
    }

    /// Polls /metrics until `sample` exists and satisfies `predicate`.
    pub fn wait_for_metric(
        &self,
        sample: &str,
        predicate: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.http_get("/metrics").ok().and_then(|(status, body)| {
                (status == 200)
                    .then(|| Metrics::parse(&body).get(sample))
                    .flatten()
            });
            match value {
                Some(v) if predicate(v) => return v,
                _ if Instant::now() >= deadline => panic!(
                    "{sample} did not reach the expected value within {timeout:?}; last: {value:?}; log tail:\n{}",
                    self.log_tail(30)
                ),
                _ => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until the last successful reconcile is at least `secs` later
    /// than the one seen now (its timestamp moves on with every resync):
    /// with `secs` above `resync_interval`, a whole resync ran in between.
    pub fn wait_reconciles(&self, secs: f64, timeout: Duration) {
        let name = "pigeon_dns_last_reconcile_success_timestamp_seconds";
        let last = self.wait_for_metric(name, |v| v > 0.0, timeout);
        self.wait_for_metric(name, |v| v >= last + secs, timeout);
    }

    /// Waits until GET `path` answers `status` (e.g. /readyz 200).
    pub fn wait_for_http_status(&self, path: &str, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.http_get(path).map(|(s, _)| s);
            if matches!(got, Ok(s) if s == status) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("GET {path} did not answer {status} within {timeout:?}; last: {got:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal by name (`HUP`, `INT`, ...).
    pub fn signal(&self, signal: &str) {
        process::signal(self.pid(), signal);
    }

    /// SIGTERM, then waits (at most 10 s) and returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(Duration::from_secs(10))
    }

    /// SIGTERM, then waits at most `grace`; panics if it had to be killed.
    pub fn terminate_within(&mut self, grace: Duration) -> ExitStatus {
        if self.process.has_exited() {
            return self.process.stop("KILL", Duration::ZERO);
        }
        process::signal(self.pid(), "TERM");
        match self.process.wait_exit(grace) {
            Some(status) => status,
            None => {
                self.process.stop("KILL", Duration::from_secs(5));
                panic!(
                    "pigeon-dns did not exit within {grace:?} of SIGTERM; log tail:\n{}",
                    self.log_tail(30)
                );
            }
        }
    }

    /// Waits for the daemon to exit by itself (e.g. exit 64 on a bad config).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.process.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "pigeon-dns still runs after {timeout:?}; log tail:\n{}",
                self.log_tail(30)
            ),
        }
    }

    /// Kills it at once (a crash: no lease released, nothing cleaned up).
    pub fn kill(&mut self) -> ExitStatus {
        self.process.stop("KILL", Duration::from_secs(5))
    }

    pub fn has_exited(&self) -> bool {
        self.process.has_exited()
    }
}

/// Reads `pipe` line by line into a shared buffer on a thread.
fn collect(pipe: Option<impl Read + Send + 'static>, label: String) -> Lines {
    let lines: Lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(pipe) = pipe {
        let sink = lines.clone();
        let echo = std::env::var_os("HARNESS_ECHO").is_some();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[{label}] {line}");
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }
    lines
}

/// A plain HTTP/1.0 GET (no client crate needed): `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of headers in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed /metrics page.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    /// `# TYPE name type` lines: family name -> type.
    pub types: BTreeMap<String, String>,
    pub text: String,
}

impl Metrics {
    /// What `promtool check metrics` says of the exposition: empty when it
    /// finds no problem (panics when it fails otherwise).
    pub fn promtool_problems(&self) -> String {
        let mut child = Command::new(process::tool("promtool"))
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn promtool");
        child
            .stdin
            .take()
            .expect("promtool stdin")
            .write_all(self.text.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            text.trim().to_owned()
        } else if text.trim().is_empty() {
            format!("promtool exited with {}", out.status)
        } else {
            text
        }
    }

    pub fn parse(text: &str) -> Metrics {
        let mut metrics = Metrics {
            text: text.to_owned(),
            ..Metrics::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    metrics.types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#')
                && !line.trim().is_empty()
                && let Some((name, labels, rest)) = parse_selector(line)
                && let Some(value) = rest.split_whitespace().next().and_then(parse_value)
            {
                metrics.samples.push(Sample {
                    name,
                    labels,
                    value,
                });
            }
        }
        metrics
    }

    /// The value of the samples with this name whose labels include these,
    /// summed (`None` when there is none), e.g. `pigeon_dns_lease_held` or
    /// `pigeon_dns_dns_updates_total{result="ok"}`: the zone label the
    /// DNS-side series carry adds up over zones (one, in most tests).
    pub fn get(&self, sample: &str) -> Option<f64> {
        let (name, labels, _) = parse_selector(sample)?;
        let mut found = self
            .samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .peekable();
        found.peek()?;
        Some(found.map(|s| s.value).sum())
    }

    /// The sum over the samples named `name` whose labels include `labels`
    /// (e.g. every `result` of `pigeon_dns_probes_total` for one node).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Whether the family has a `# TYPE` line.
    pub fn has_family(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        s => s.parse().ok(),
    }
}

/// `name{k="v",...} rest` -> (name, labels, rest). Label values may hold
/// escaped quotes, backslashes and newlines.
fn parse_selector(line: &str) -> Option<(String, BTreeMap<String, String>, &str)> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // Skip separators, find the key.
            while matches!(chars.peek(), Some((_, c)) if *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &inner[start + 1..];
                break;
            }
            let mut key = String::from(c);
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.insert(key.trim().to_owned(), value);
        }
    }
    Some((name, labels, rest))
}
