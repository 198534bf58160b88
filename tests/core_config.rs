//! `pigeon-dns check` and `run` against bad configs and bad key files
//! (contract.md, "Command line" and "Configuration"): every error is located
//! by file and line, a valid config passes without showing the secret, and
//! `run` refuses an invalid config with exit status 64.
//!
//! The configs are written by hand, line by line, so that the expected line
//! numbers can be read off the text. `check` reads files only: no BIND is
//! started (the configs point at 127.0.0.1:53, where nothing answers).

mod common;

use std::path::{Path, PathBuf};

use common::{CliOutput, TsigKey, run_cli};

/// A tempdir holding a fresh hmac-sha256 key file and the configs of one test.
struct Files {
    dir: tempfile::TempDir,
    key: TsigKey,
    key_file: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::Builder::new()
            .prefix("pigeon-core-config-")
            .tempdir()
            .expect("tempdir");
        let key = TsigKey::generate("pigeon-dns", "hmac-sha256");
        let key_file = common::bind::write_key_file(&dir.path().join("pigeon-dns.key"), &[&key]);
        Files { dir, key, key_file }
    }

    /// Writes `text` to `name` in the tempdir (mode 0600 for key files).
    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// The `[dns]` section (lines 1-5, line 5 blank) pointing at `key_file`.
    fn dns(&self, key_file: &Path) -> String {
        format!(
            "[dns]\n\
             server = \"127.0.0.1:53\"\n\
             zone = \"example.com\"\n\
             key_file = {}\n\
             \n",
            common::toml_str(&key_file.display().to_string())
        )
    }
}

fn check(path: &Path) -> CliOutput {
    run_cli(&["check".as_ref(), "-c".as_ref(), path.as_os_str()])
}

/// Asserts that `check` passed `what` (exit 0) without printing `secret`,
/// and that its summary names each of `summary`.
#[track_caller]
fn assert_passes(out: &CliOutput, what: &str, secret: &str, summary: &[&str]) {
    assert_eq!(
        out.code(),
        Some(0),
        "{what} failed check\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains(secret), "check printed the secret:\n{all}");
    for word in summary {
        assert!(all.contains(word), "the summary lacks {word:?}:\n{all}");
    }
}

/// One node and one pool, valid; appended after `[dns]` and a `[probe]`.
const NODE_AND_POOL: &str = "\
[[node]]
name = \"mail1\"
addresses = [\"192.0.2.11\"]

[[pool]]
name = \"imap\"
check = \"imap\"
";

/// The secret of the hmac-md5 key of one row: not to be printed either.
const MD5_SECRET: &str = "pS5g1Klq0AOT3VHj742HXw==";

/// One error `check` must report: where, and in which words.
struct At {
    /// 1-based line, in the key file for a [`Bad`] with a key, else in the config.
    line: u32,
    /// What that line holds (trimmed): the line number is read off the text.
    reads: &'static str,
    /// Each must be on the error's line of stderr.
    words: &'static [&'static str],
}

/// One bad config (or key file) for `check`.
struct Bad {
    /// What is wrong with it; names the row in the report.
    what: &'static str,
    /// The config after the `[dns]` section (lines 1-5).
    body: String,
    /// A key file of this text instead of the good one; the errors are in it.
    key: Option<String>,
    /// A secret that must not be printed (besides the good key's).
    secret: Option<&'static str>,
    /// Every one must be reported, together.
    errors: Vec<At>,
}

/// What is wrong with `check`'s answer to `bad` (nothing: empty).
fn problems(f: &Files, i: usize, bad: &Bad) -> Vec<String> {
    let key_file = match &bad.key {
        Some(text) => f.write(&format!("bad-{i}.key"), text),
        None => f.key_file.clone(),
    };
    let text = format!("{}{}", f.dns(&key_file), bad.body);
    let config = f.write(&format!("bad-{i}.toml"), &text);
    let (file, file_text) = match &bad.key {
        Some(key) => (&key_file, key.as_str()),
        None => (&config, text.as_str()),
    };
    let out = check(&config);
    let mut problems = Vec::new();
    if out.code() != Some(1) {
        problems.push(format!("exit {:?}, want 1", out.code()));
    }
    for at in &bad.errors {
        let line = file_text.lines().nth(at.line as usize - 1).map(str::trim);
        if line != Some(at.reads) {
            problems.push(format!(
                "the test is off: line {} reads {line:?}, not {:?}",
                at.line, at.reads
            ));
        }
        let location = format!("{}:{}:", file.display(), at.line);
        let located: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains(&location))
            .collect();
        if located.is_empty() {
            problems.push(format!("no error located at {location}"));
        } else if !located
            .iter()
            .any(|l| at.words.iter().all(|w| l.contains(w)))
        {
            problems.push(format!(
                "the error at {location} does not mention {:?}: {located:?}",
                at.words
            ));
        }
    }
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in [Some(f.key.secret.as_str()), bad.secret]
        .into_iter()
        .flatten()
    {
        if all.contains(secret) {
            problems.push(format!("the secret {secret:?} was printed"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("output:\n{}{}", out.stdout, out.stderr));
    }
    problems
}

/// Every bad config is refused by `check` (exit 1) with each of its errors
/// located at `file:line` in words that name what is wrong, all at once,
/// and without printing a secret. Every failing row is reported.
#[test]
fn check_locates_every_error_of_a_bad_config() {
    let f = Files::new();
    let md5_key =
        format!("key \"pigeon-dns\" {{\n\talgorithm hmac-md5;\n\tsecret \"{MD5_SECRET}\";\n}};\n");
    let bad_secret_key =
        "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n\tsecret \"not base64!!\";\n};\n";
    let bad_clause_key = format!(
        "key \"pigeon-dns\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n\tbogus yes;\n}};\n",
        f.key.secret
    );
    let at = |line, reads, words| At { line, reads, words };
    let bad = |what, body: String, errors| Bad {
        what,
        body,
        key: None,
        secret: None,
        errors,
    };
    let rows = vec![
        bad(
            "an unknown key (a misspelt interval)",
            format!("[probe]\nintervall = \"2s\"\n\n{NODE_AND_POOL}"),
            vec![at(7, "intervall = \"2s\"", &["intervall"])],
        ),
        bad(
            "a probe timeout equal to the interval (not shorter)",
            format!("[probe]\ninterval = \"1s\"\ntimeout = \"1s\"\n\n{NODE_AND_POOL}"),
            vec![at(8, "timeout = \"1s\"", &["timeout"])],
        ),
        bad(
            "a pool's own timeout not shorter than its own interval",
            format!(
                "[probe]\ninterval = \"2s\"\n\n{NODE_AND_POOL}interval = \"500ms\"\ntimeout = \"800ms\"\n"
            ),
            vec![at(17, "timeout = \"800ms\"", &["timeout"])],
        ),
        bad(
            "a pool naming an unknown node",
            "[[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\n\
             [[pool]]\nname = \"imap\"\ncheck = \"imap\"\nnodes = [\"mail1\", \"mail9\"]\n"
                .into(),
            vec![at(13, "nodes = [\"mail1\", \"mail9\"]", &["mail9"])],
        ),
        bad(
            "a duplicate node",
            "[[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\n\
             [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.12\"]\n\n\
             [[pool]]\nname = \"imap\"\ncheck = \"imap\"\n"
                .into(),
            vec![at(11, "name = \"mail1\"", &["mail1"])],
        ),
        bad(
            "three errors: a timeout, a duplicate node, an unknown node",
            "[probe]\n\
             interval = \"1s\"\n\
             timeout = \"2s\"\n\
             \n\
             [[node]]\n\
             name = \"mail1\"\n\
             addresses = [\"192.0.2.11\"]\n\
             \n\
             [[node]]\n\
             name = \"mail1\"\n\
             addresses = [\"192.0.2.12\"]\n\
             \n\
             [[pool]]\n\
             name = \"imap\"\n\
             check = \"imap\"\n\
             nodes = [\"mail7\"]\n"
                .into(),
            vec![
                at(8, "timeout = \"2s\"", &["timeout"]),
                at(15, "name = \"mail1\"", &["mail1"]),
                at(21, "nodes = [\"mail7\"]", &["mail7"]),
            ],
        ),
        // Names pigeon-dns writes (a pool, the lease) must be in its zone:
        // the primary would answer every UPDATE that touches one with NOTZONE.
        bad(
            "a pool and a lease outside the zone",
            "[ha]\n\
             lease = \"_lease.example.net.\"\n\
             \n\
             [[node]]\n\
             name = \"mail1\"\n\
             addresses = [\"192.0.2.11\"]\n\
             \n\
             [[pool]]\n\
             name = \"imap.other.org.\"\n\
             check = \"imap\"\n"
                .into(),
            vec![
                at(
                    7,
                    "lease = \"_lease.example.net.\"",
                    &["ha.lease", "outside the zone example.com."],
                ),
                at(
                    14,
                    "name = \"imap.other.org.\"",
                    &["pool[0].name", "outside the zone example.com.", "NOTZONE"],
                ),
            ],
        ),
        Bad {
            what: "an hmac-md5 key, with the tsig-keygen hint",
            body: NODE_AND_POOL.into(),
            key: Some(md5_key),
            secret: Some(MD5_SECRET),
            errors: vec![at(2, "algorithm hmac-md5;", &["hmac-md5", "tsig-keygen"])],
        },
        Bad {
            what: "a key file whose secret is not base64",
            body: NODE_AND_POOL.into(),
            key: Some(bad_secret_key.into()),
            secret: None,
            errors: vec![at(3, "secret \"not base64!!\";", &["secret"])],
        },
        Bad {
            what: "a key file with an unknown clause",
            body: NODE_AND_POOL.into(),
            key: Some(bad_clause_key),
            secret: None,
            errors: vec![at(4, "bogus yes;", &["bogus"])],
        },
    ];
    let failed: Vec<String> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, bad)| {
            let problems = problems(&f, i, bad);
            (!problems.is_empty()).then(|| format!("{}:\n- {}", bad.what, problems.join("\n- ")))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} bad configs are not reported as they should be:\n\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n\n")
    );
}

#[test]
fn check_names_a_missing_key_file() {
    let f = Files::new();
    let missing = f.dir.path().join("missing.key");
    let path = f.write(
        "missing-key.toml",
        &format!("{}{NODE_AND_POOL}", f.dns(&missing)),
    );
    let out = check(&path);
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "the missing key file is not named:\n{}",
        out.stderr
    );
}

#[test]
fn a_valid_config_passes_check_and_never_shows_the_secret() {
    let f = Files::new();
    let text = format!(
        "{}[probe]\ninterval = \"2s\"\ntimeout = \"1s\"\n\n{NODE_AND_POOL}\n\
         [[node]]\nname = \"mail2\"\naddresses = [\"192.0.2.12\", \"2001:db8::12\"]\n\n\
         [[pool]]\nname = \"@\"\ntype = \"MX\"\npreference = 10\ncheck = \"smtp\"\n",
        f.dns(&f.key_file)
    );
    let path = f.write("valid.toml", &text);
    // Global options are accepted before or after the subcommand.
    let after = check(&path);
    let before = run_cli(&["-c".as_ref(), path.as_os_str(), "check".as_ref()]);
    let summary = [
        "pigeon-dns",
        "hmac-sha256",
        "mail1",
        "mail2",
        "imap",
        "example.com",
    ];
    for out in [&after, &before] {
        assert_passes(out, "a valid config", &f.key.secret, &summary);
    }
}

#[test]
fn run_with_an_invalid_config_exits_64() {
    let f = Files::new();
    let text = format!(
        "{}[probe]\nintervall = \"2s\"\n\n{NODE_AND_POOL}",
        f.dns(&f.key_file)
    );
    let path = f.write("invalid-run.toml", &text);
    let out = run_cli(&["run".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(
        out.code(),
        Some(64),
        "run with an invalid config\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("{}:7", path.display())) && out.stderr.contains("intervall"),
        "run does not say what is wrong:\n{}",
        out.stderr
    );

    // A config that does not exist at all.
    let missing = f.dir.path().join("nope.toml");
    let out = run_cli(&["run".as_ref(), "-c".as_ref(), missing.as_os_str()]);
    assert_eq!(out.code(), Some(64), "{}", out.stderr);
}

/// The example configuration of contract.md ("Configuration (TOML)"),
/// verbatim; `key_file` is replaced by a generated key.
const CONTRACT_EXAMPLE: &str = include_str!("../config/contract-example.toml");

/// Replaces the `key_file = ...` line of `config` with `key_file`.
fn with_key_file(config: &str, key_file: &Path) -> String {
    let mut replaced = 0;
    let text: Vec<String> = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("key_file") {
                replaced += 1;
                format!(
                    "key_file = {}",
                    common::toml_str(&key_file.display().to_string())
                )
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "expected one key_file line");
    text.join("\n") + "\n"
}

#[test]
fn the_contract_example_config_passes_check() {
    let f = Files::new();
    let path = f.write(
        "contract-example.toml",
        &with_key_file(CONTRACT_EXAMPLE, &f.key_file),
    );
    let pools = ["imap", "pop", "smtp", "webmail", "_imaps._tcp"];
    assert_passes(
        &check(&path),
        "the contract's example config",
        &f.key.secret,
        &pools,
    );
}

#[test]
fn the_shipped_config_passes_check_with_a_generated_key() {
    let f = Files::new();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pigeon-dns.toml");
    let text = std::fs::read_to_string(&shipped)
        .unwrap_or_else(|e| panic!("read {}: {e}", shipped.display()));
    let path = f.write("shipped.toml", &with_key_file(&text, &f.key_file));
    assert_passes(&check(&path), "config/pigeon-dns.toml", &f.key.secret, &[]);
}
