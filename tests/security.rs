//! Security (docs/operations.md, "Logs": "No secret appears in any log, metric, `--help`
//! or `check` output"; contract.md, `check`: "never the secret"; the key
//! file's permissions; HTTP on loopback by default).
//!
//! The TSIG secret is looked for everywhere an operator might paste from:
//! the daemon's log at debug level in text and JSON (UPDATEs, a TSIG failure,
//! reloads good and bad), `/metrics`, `/status`, `status`, `--help` of every
//! subcommand, `check` of valid and broken key files, `plan`, and panic
//! messages. It is looked for as written (base64, and any 16 characters of
//! it), decoded as hex (and any 8 bytes of it), as lossy text, and as the
//! decimal list `Debug` prints for a `Vec<u8>`.

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bind::write_key_file;
use common::{
    Bind, BindOpts, ConfigBuilder, Daemon, FakeServer, NodeSpec, PoolSpec, Subnet, TsigKey,
    pigeon_dns_bin, run_cli, toml_str,
};

const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Looking for a secret
// ---------------------------------------------------------------------------

/// Every form of `key`'s secret that must never appear.
struct Secret {
    key_name: String,
    needles: Vec<(String, String)>,
}

impl Secret {
    fn of(key: &TsigKey) -> Secret {
        let bytes = data_encoding::BASE64
            .decode(key.secret.as_bytes())
            .expect("a base64 secret");
        assert!(bytes.len() >= 16, "a real key");
        let mut needles = vec![("base64".to_owned(), key.secret.clone())];
        let b64 = key.secret.trim_end_matches('=');
        for i in 0..=b64.len().saturating_sub(16) {
            needles.push((
                format!("base64[{i}..{}]", i + 16),
                b64[i..i + 16].to_owned(),
            ));
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for i in (0..=hex.len() - 16).step_by(2) {
            needles.push((format!("hex[{i}..{}]", i + 16), hex[i..i + 16].to_owned()));
            needles.push((
                format!("HEX[{i}..{}]", i + 16),
                hex[i..i + 16].to_uppercase(),
            ));
        }
        needles.push((
            "lossy text".to_owned(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
        let decimal: Vec<String> = bytes.iter().map(u8::to_string).collect();
        for i in 0..=decimal.len() - 6 {
            needles.push((
                format!("Debug bytes [{i}..{}]", i + 6),
                decimal[i..i + 6].join(", "),
            ));
        }
        Secret {
            key_name: key.name.clone(),
            needles,
        }
    }

    /// Where `text` holds the secret: `what`, the form found and the line.
    fn find(&self, what: &str, text: &str) -> Option<String> {
        let (form, needle) = self
            .needles
            .iter()
            .find(|(_, n)| text.contains(n.as_str()))?;
        let at = text.find(needle.as_str()).unwrap_or(0);
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        Some(format!(
            "{what} shows the secret of key {:?} ({form}: {needle:?}) in:\n{}",
            self.key_name,
            &text[start..end]
        ))
    }

    /// Panics, naming `what` and the form found, when `text` holds the secret.
    fn assert_absent(&self, what: &str, text: &str) {
        if let Some(leak) = self.find(what, text) {
            panic!("{leak}");
        }
    }

    fn assert_absent_all(secrets: &[&Secret], what: &str, text: &str) {
        for s in secrets {
            s.assert_absent(what, text);
        }
    }
}

fn cli(args: &[&OsStr]) -> common::CliOutput {
    run_cli(args)
}

fn both(out: &common::CliOutput) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// The daemon: logs at debug, text and JSON; /metrics, /status, `status`
// ---------------------------------------------------------------------------

/// A BIND, one node that is up for a `tcp` check, and a daemon at debug
/// level in `format`: it publishes, then is reloaded with a key BIND does not
/// accept (BADSIG), with a broken key file, and with a world-readable one,
/// and stopped. The secrets of both keys never show.
fn daemon_never_shows_the_secret(format: &str) {
    let subnet = Subnet::new();
    let bind = Bind::start(BindOpts::default());
    let secret = Secret::of(bind.key());
    let node_ip = subnet.ip(11);
    let node = FakeServer::closing(SocketAddr::new(node_ip, 0));
    let dir = tempfile::tempdir().expect("tempdir");
    let http = SocketAddr::new(subnet.ip(2), common::HTTP_PORT);
    let cfg = ConfigBuilder::for_bind(&bind)
        .dns("resync_interval", &toml_str("1s"))
        .http(http)
        .node(NodeSpec::new("mail1", &[node_ip]))
        .pool(PoolSpec::a("imap", "tcp").port(node.addr().port()));
    let path = cfg.write(&dir.path().join("pigeon-dns.toml"));
    let args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "-c".as_ref(),
        path.as_os_str(),
        "--log-level".as_ref(),
        "debug".as_ref(),
        "--log-format".as_ref(),
        format.as_ref(),
    ];
    let mut daemon = Daemon::spawn_args(&args, Some(http));
    let ip = node_ip.to_string();
    bind.wait_for("imap", "A", |a| a.contains(&ip), DEADLINE);
    daemon.wait_for_http_status("/readyz", 200, DEADLINE);

    let (status, metrics) = daemon.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    secret.assert_absent("/metrics", &metrics);
    let (status, body) = daemon.http_get("/status").expect("GET /status");
    assert_eq!(status, 200);
    secret.assert_absent("/status", &body);
    let out = cli(&["status".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code(), Some(0), "status: {}", both(&out));
    secret.assert_absent("pigeon-dns status", &both(&out));

    // Reload with a key of the same name and another secret: BADSIG.
    let (wrong_key, wrong_file) = bind.wrong_secret_key();
    let wrong = Secret::of(&wrong_key);
    cfg.clone()
        .dns("key_file", &toml_str(&wrong_file.display().to_string()))
        .write(&path);
    let mark = daemon.log_mark();
    daemon.signal("HUP");
    daemon.wait_for_log_since(mark, "BADSIG", DEADLINE);
    let (_, metrics) = daemon.http_get("/metrics").expect("GET /metrics");
    Secret::assert_absent_all(&[&secret, &wrong], "/metrics after BADSIG", &metrics);

    // Reload with a broken key file whose secret line lacks its end.
    let broken = dir.path().join("broken.key");
    std::fs::write(
        &broken,
        format!(
            "key \"pigeon-dns\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\n}};\n",
            bind.key().secret
        ),
    )
    .expect("write the broken key");
    chmod(&broken, 0o600);
    cfg.clone()
        .dns("key_file", &toml_str(&broken.display().to_string()))
        .write(&path);
    let mark = daemon.log_mark();
    daemon.signal("HUP");
    daemon.wait_for_log_since(mark, "keeping the running one", DEADLINE);

    // Reload with the good key, readable by everyone: warned about, used.
    let open = write_key_file(&dir.path().join("open.key"), &[bind.key()]);
    chmod(&open, 0o644);
    cfg.clone()
        .dns("key_file", &toml_str(&open.display().to_string()))
        .write(&path);
    let mark = daemon.log_mark();
    daemon.signal("HUP");
    let warning = daemon.wait_for_log_since(mark, "readable by other users", DEADLINE);
    assert!(
        warning.contains("WARN") || warning.contains("warn"),
        "{warning}"
    );
    daemon.wait_for_log_since(mark, "Configuration reloaded", DEADLINE);

    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}");
    let log = daemon.logs().join("\n");
    let stdout = daemon.stdout_lines().join("\n");
    assert!(
        log.lines().count() > 20 && log.contains("DEBUG") && log.contains("BADSIG"),
        "a debug log of {} lines: is it at debug level?\n{log}",
        log.lines().count()
    );
    if format == "json" {
        let not_json: Vec<&str> = log
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
            .take(3)
            .collect();
        assert!(
            not_json.is_empty(),
            "log lines that are not JSON: {not_json:?}"
        );
    }
    println!(
        "{format}: {} log lines, no secret in them, /metrics, /status or status",
        log.lines().count()
    );
    Secret::assert_absent_all(&[&secret, &wrong], &format!("the {format} log"), &log);
    Secret::assert_absent_all(&[&secret, &wrong], "the daemon's stdout", &stdout);
}

#[test]
fn the_debug_log_in_text_never_shows_the_secret() {
    daemon_never_shows_the_secret("text");
}

#[test]
fn the_debug_log_in_json_never_shows_the_secret() {
    daemon_never_shows_the_secret("json");
}

// ---------------------------------------------------------------------------
// One-shot commands
// ---------------------------------------------------------------------------

/// A key file, a config naming it, and a primary nobody answers at.
struct Files {
    dir: tempfile::TempDir,
    key: TsigKey,
    secret: Secret,
}

impl Files {
    fn new() -> Files {
        let key = TsigKey::generate("pigeon-dns", "hmac-sha256");
        Files {
            dir: tempfile::tempdir().expect("tempdir"),
            secret: Secret::of(&key),
            key,
        }
    }

    fn key_file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write the key file");
        chmod(&path, mode);
        path
    }

    fn good_key_file(&self) -> PathBuf {
        write_key_file(&self.dir.path().join("pigeon-dns.key"), &[&self.key])
    }

    fn config(&self, name: &str, key_file: &Path) -> PathBuf {
        ConfigBuilder::new("127.0.0.1:9", "example.com", key_file)
            .no_http()
            .node(NodeSpec::new("mail1", &["192.0.2.11".parse().expect("ip")]))
            .pool(PoolSpec::a("imap", "imap"))
            .write(&self.dir.path().join(name))
    }
}

/// The finder itself finds each form, so a leak fails these tests.
#[test]
fn the_secret_finder_finds_every_form_of_the_secret() {
    let key = TsigKey::generate("pigeon-dns", "hmac-sha256");
    let secret = Secret::of(&key);
    let bytes = data_encoding::BASE64
        .decode(key.secret.as_bytes())
        .expect("base64");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let forms = [
        format!("secret \"{}\";", key.secret),
        format!("...{}...", &key.secret[10..30]),
        format!("mac={}", &hex[20..40]),
        format!("MAC={}", hex[4..24].to_uppercase()),
        format!("{bytes:?}"),
        format!("key: {:?}", &bytes[3..12]),
        String::from_utf8_lossy(&bytes).into_owned(),
    ];
    for text in &forms {
        assert!(
            secret.find("a test", text).is_some(),
            "not found in {text:?}"
        );
    }
    assert!(
        secret
            .find("a test", "key pigeon-dns. (hmac-sha256)")
            .is_none()
    );
}

#[test]
fn help_of_every_subcommand_never_shows_the_secret() {
    let files = Files::new();
    let config = files.config("pigeon-dns.toml", &files.good_key_file());
    let mut seen = 0;
    for sub in [
        None,
        Some("run"),
        Some("check"),
        Some("probe"),
        Some("plan"),
        Some("status"),
    ] {
        for flag in ["--help", "-h"] {
            let mut cmd = Command::new(pigeon_dns_bin());
            cmd.args(sub)
                .arg(flag)
                .arg("-c")
                .arg(&config)
                // Shown as `[env: PIGEON_DNS_CONFIG=...]` by the help.
                .env("PIGEON_DNS_CONFIG", &config)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null());
            let out = cmd.output().expect("run pigeon-dns --help");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "{sub:?} {flag}: {}\n{text}",
                out.status
            );
            assert!(
                text.contains("Usage"),
                "{sub:?} {flag} printed no help:\n{text}"
            );
            files
                .secret
                .assert_absent(&format!("pigeon-dns {} {flag}", sub.unwrap_or("")), &text);
            seen += 1;
        }
    }
    let out = cli(&["help".as_ref()]);
    files.secret.assert_absent("pigeon-dns help", &both(&out));
    let out = cli(&["--version".as_ref()]);
    files
        .secret
        .assert_absent("pigeon-dns --version", &both(&out));
    println!("{seen} help texts without the secret");
}

/// Broken key files, and whether `check` must reject them: `(what, text,
/// must_reject)`. An unquoted secret, or one split over lines (whitespace
/// inside base64), BIND takes too: either way for those.
fn broken_key_files(key: &TsigKey) -> Vec<(&'static str, String, bool)> {
    let s = &key.secret;
    let (head, tail) = s.split_at(s.len() / 2);
    let open = "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n";
    vec![
        (
            "secret line without its closing quote and semicolon",
            format!("{open}\tsecret \"{s}\n}};\n"),
            true,
        ),
        (
            "secret without quotes",
            format!("{open}\tsecret {s};\n}};\n"),
            false,
        ),
        (
            "secret with a character that is not base64",
            format!("{open}\tsecret \"{s}!\";\n}};\n"),
            true,
        ),
        (
            "secret split over two lines",
            format!("{open}\tsecret \"{head}\n{tail}\";\n}};\n"),
            false,
        ),
        (
            "secret and algorithm values swapped",
            format!("key \"pigeon-dns\" {{\n\talgorithm \"{s}\";\n\tsecret hmac-sha256;\n}};\n"),
            true,
        ),
        (
            "the secret in an unknown clause",
            format!("{open}\tsecrets \"{s}\";\n}};\n"),
            true,
        ),
        (
            "an unsupported algorithm",
            format!("key \"pigeon-dns\" {{\n\talgorithm hmac-md5;\n\tsecret \"{s}\";\n}};\n"),
            true,
        ),
        (
            "no closing brace",
            format!("{open}\tsecret \"{s}\";\n"),
            true,
        ),
        (
            "two keys and no key_name",
            format!(
                "{}{}",
                key.to_conf(),
                key.to_conf().replace("\"pigeon-dns\"", "\"other\"")
            ),
            true,
        ),
        ("the secret alone", format!("{s}\n"), true),
    ]
}

#[test]
fn check_never_shows_the_secret_of_valid_or_broken_key_files() {
    let files = Files::new();
    // Valid.
    let config = files.config("valid.toml", &files.good_key_file());
    let out = cli(&["check".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(
        out.code(),
        Some(0),
        "check of a valid config:\n{}",
        both(&out)
    );
    assert!(
        out.stdout.contains("pigeon-dns"),
        "the summary names the key:\n{}",
        out.stdout
    );
    files.secret.assert_absent("check (valid)", &both(&out));
    // Broken, each one alone.
    let mut leaks = Vec::new();
    for (i, (what, text, must_reject)) in broken_key_files(&files.key).into_iter().enumerate() {
        let key_file = files.key_file(&format!("broken-{i}.key"), &text, 0o600);
        let config = files.config(&format!("broken-{i}.toml"), &key_file);
        let out = cli(&["check".as_ref(), "-c".as_ref(), config.as_os_str()]);
        let output = both(&out);
        if must_reject {
            assert_eq!(
                out.code(),
                Some(1),
                "check accepted a key file with {what}:\n{output}"
            );
            assert!(
                output.contains(&key_file.display().to_string()),
                "the error does not name the key file ({what}):\n{output}"
            );
        }
        match files.secret.find(&format!("check ({what})"), &output) {
            None => println!(
                "{what}: rejected without the secret:\n{}",
                out.stderr.trim_end()
            ),
            Some(leak) => leaks.push(leak),
        }
        // `plan` reads the key file the same way.
        let out = cli(&["plan".as_ref(), "-c".as_ref(), config.as_os_str()]);
        assert_eq!(
            out.code(),
            Some(1),
            "plan with a key file with {what} (and no primary):\n{}",
            both(&out)
        );
        leaks.extend(files.secret.find(&format!("plan ({what})"), &both(&out)));
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
}

#[test]
fn plan_never_shows_the_secret() {
    let subnet = Subnet::new();
    let bind = Bind::start(BindOpts::default());
    let secret = Secret::of(bind.key());
    let node_ip = subnet.ip(11);
    let node = FakeServer::closing(SocketAddr::new(node_ip, 0));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::for_bind(&bind)
        .no_http()
        .node(NodeSpec::new("mail1", &[node_ip]))
        .pool(PoolSpec::a("imap", "tcp").port(node.addr().port()))
        .write(&dir.path().join("pigeon-dns.toml"));
    let args = |more: &[&'static str]| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> =
            vec!["plan".into(), "-c".into(), config.clone().into_os_string()];
        a.extend(more.iter().map(std::ffi::OsString::from));
        a
    };
    let out = run_cli(&args(&["--log-level", "debug"]));
    assert_eq!(
        out.code(),
        Some(2),
        "plan with a change pending:\n{}",
        both(&out)
    );
    assert!(
        out.stdout.contains("update add imap.example.com."),
        "{}",
        out.stdout
    );
    secret.assert_absent("plan", &both(&out));
    let out = run_cli(&args(&[
        "--apply",
        "--log-level",
        "debug",
        "--log-format",
        "json",
    ]));
    assert_eq!(out.code(), Some(0), "plan --apply:\n{}", both(&out));
    secret.assert_absent("plan --apply", &both(&out));
    // With a key BIND rejects: the TSIG failure is reported without it.
    let (wrong_key, wrong_file) = bind.wrong_secret_key();
    let wrong = Secret::of(&wrong_key);
    let config_wrong = ConfigBuilder::for_bind(&bind)
        .dns("key_file", &toml_str(&wrong_file.display().to_string()))
        .no_http()
        .node(NodeSpec::new("mail1", &[node_ip]))
        .pool(PoolSpec::a("imap", "tcp").port(node.addr().port()))
        .write(&dir.path().join("wrong.toml"));
    let out = cli(&[
        "plan".as_ref(),
        "-c".as_ref(),
        config_wrong.as_os_str(),
        "--log-level".as_ref(),
        "debug".as_ref(),
    ]);
    assert_eq!(
        out.code(),
        Some(1),
        "plan with a wrong key:\n{}",
        both(&out)
    );
    assert!(out.stderr.contains("BADSIG"), "{}", out.stderr);
    Secret::assert_absent_all(&[&secret, &wrong], "plan with a wrong key", &both(&out));
}

/// What a panic would print: the `Debug` of everything that holds the key
/// (an `unwrap` or `expect` on it), and the binary's real panics (`print!`
/// to a closed pipe, as in `pigeon-dns plan | head -1`).
#[test]
fn panic_messages_never_show_the_secret() {
    let files = Files::new();
    let config = files.config("pigeon-dns.toml", &files.good_key_file());
    let full = pigeon_dns::config::load_all(&config).expect("a valid config");
    files
        .secret
        .assert_absent("Debug of config::Full", &format!("{full:?} {full:#?}"));
    files.secret.assert_absent(
        "Debug of the key",
        &format!("{:?} {:#?}", full.key(0), full.key(0)),
    );
    let client = pigeon_dns::app::primary(full.config.first_zone(), full.key(0));
    files.secret.assert_absent(
        "Debug of the DNS client",
        &format!("{client:?} {client:#?}"),
    );
    let errors: Vec<String> = broken_key_files(&files.key)
        .into_iter()
        .enumerate()
        .filter_map(|(i, (_, text, _))| {
            let key_file = files.key_file(&format!("p-{i}.key"), &text, 0o600);
            let config = files.config(&format!("p-{i}.toml"), &key_file);
            pigeon_dns::config::load_all(&config)
                .err()
                .map(|e| format!("{e:?} {e:#?}"))
        })
        .collect();
    files
        .secret
        .assert_absent("Debug of the load errors", &errors.join("\n"));

    // The binary, writing to a pipe that is already closed.
    for sub in ["check", "plan"] {
        let mut child = Command::new(pigeon_dns_bin())
            .args([sub, "-c"])
            .arg(&config)
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pigeon-dns");
        drop(child.stdout.take());
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "{sub} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("read stderr");
        println!(
            "{sub} writing to a closed pipe: {status}; {:?}",
            stderr
                .lines()
                .skip_while(|l| !l.contains("panicked"))
                .nth(1)
        );
        files
            .secret
            .assert_absent(&format!("{sub} writing to a closed pipe"), &stderr);
    }
}

// ---------------------------------------------------------------------------
// The key file's permissions
// ---------------------------------------------------------------------------

#[test]
fn a_world_readable_key_file_is_warned_about_and_never_refused() {
    let files = Files::new();
    let key_file = files.good_key_file();
    let config = files.config("pigeon-dns.toml", &key_file);
    let warning = "readable by other users";
    // 0600 and 0640 (the packaged owner root, group pigeon-dns): no warning.
    for mode in [0o600, 0o640] {
        chmod(&key_file, mode);
        let out = cli(&["check".as_ref(), "-c".as_ref(), config.as_os_str()]);
        assert_eq!(out.code(), Some(0), "{}", both(&out));
        assert!(
            !both(&out).contains(warning),
            "mode {mode:o} warned about:\n{}",
            both(&out)
        );
    }
    // 0644: a warning that names the file, and the config is valid.
    chmod(&key_file, 0o644);
    let out = cli(&["check".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(
        out.code(),
        Some(0),
        "a world-readable key file is refused:\n{}",
        both(&out)
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(warning))
        .unwrap_or_else(|| {
            panic!(
                "no warning about a world-readable key file:\n{}",
                both(&out)
            )
        });
    assert!(line.starts_with("warning"), "{line}");
    assert!(line.contains(&key_file.display().to_string()), "{line}");
    files
        .secret
        .assert_absent("check (world-readable)", &both(&out));

    // `run`: warned at start, runs (no primary answers; that is not the point).
    let subnet = Subnet::new();
    let http = SocketAddr::new(subnet.ip(2), common::HTTP_PORT);
    let config = ConfigBuilder::new("127.0.0.1:9", "example.com", &key_file)
        .http(http)
        .node(NodeSpec::new("mail1", &[subnet.ip(11)]))
        .pool(PoolSpec::a("imap", "imap"))
        .write(&files.dir.path().join("run.toml"));
    let mut daemon = Daemon::spawn(&config, Some(http));
    let line = daemon.wait_for_log(warning, DEADLINE);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&key_file.display().to_string()), "{line}");
    daemon.wait_for_log("pigeon-dns started.", DEADLINE);
    daemon.wait_for_http_status("/healthz", 200, DEADLINE);
    // And at a reload.
    let mark = daemon.log_mark();
    daemon.signal("HUP");
    daemon.wait_for_log_since(mark, warning, DEADLINE);
    daemon.wait_for_log_since(mark, "Configuration reloaded", DEADLINE);
    assert!(!daemon.has_exited());
    assert!(daemon.terminate().success());
    files
        .secret
        .assert_absent("the log", &daemon.logs().join("\n"));
}

// ---------------------------------------------------------------------------
// HTTP on loopback by default
// ---------------------------------------------------------------------------

#[test]
fn http_listens_on_loopback_by_default() {
    let files = Files::new();
    // A config without [http].
    let config = ConfigBuilder::new("127.0.0.1:9", "example.com", &files.good_key_file())
        .node(NodeSpec::new("mail1", &["192.0.2.11".parse().expect("ip")]))
        .pool(PoolSpec::a("imap", "imap"))
        .write(&files.dir.path().join("default.toml"));
    assert!(
        !std::fs::read_to_string(&config)
            .expect("read")
            .contains("[http]")
    );
    let loaded = pigeon_dns::config::load(&config).expect("a valid config");
    let listen = loaded.config.http.listen.expect("HTTP on by default");
    assert_eq!(
        listen,
        "127.0.0.1:9854".parse::<SocketAddr>().expect("addr")
    );
    assert!(listen.ip().is_loopback());
    let out = cli(&["check".as_ref(), "-c".as_ref(), config.as_os_str()]);
    assert_eq!(out.code(), Some(0), "{}", both(&out));
    let http_line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("http"))
        .unwrap_or_else(|| panic!("no http line in the summary:\n{}", out.stdout));
    assert_eq!(
        http_line.split_whitespace().collect::<Vec<_>>(),
        ["http", "127.0.0.1:9854"],
        "{http_line}"
    );
    // The shipped example config too.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pigeon-dns.toml");
    let text = std::fs::read_to_string(&example).expect("read config/pigeon-dns.toml");
    let value: toml::Value = toml::from_str(&text).expect("the example parses");
    if let Some(listen) = value
        .get("http")
        .and_then(|h| h.get("listen"))
        .and_then(|l| l.as_str())
    {
        let addr: SocketAddr = listen.parse().expect("a socket address");
        assert!(
            addr.ip().is_loopback(),
            "the example config listens on {addr}"
        );
    }
}
