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

/// Asserts `check` failed with exit 1 and that stderr has an error located at
/// `file:line` whose line also contains every one of `words`.
#[track_caller]
fn assert_error_at(out: &CliOutput, file: &Path, line: u32, words: &[&str]) {
    assert_eq!(
        out.code(),
        Some(1),
        "check must exit 1 on an invalid config\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let location = format!("{}:{line}:", file.display());
    let located: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(&location))
        .collect();
    assert!(
        !located.is_empty(),
        "no error located at {location}\nstderr:\n{}",
        out.stderr
    );
    assert!(
        located.iter().any(|l| words.iter().all(|w| l.contains(w))),
        "the error at {location} does not mention {words:?}: {located:?}\nstderr:\n{}",
        out.stderr
    );
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

#[test]
fn check_locates_an_unknown_key_at_its_line() {
    let f = Files::new();
    // Line 7: the misspelt `intervall`.
    let text = format!(
        "{}[probe]\nintervall = \"2s\"\n\n{NODE_AND_POOL}",
        f.dns(&f.key_file)
    );
    assert_eq!(text.lines().nth(6), Some("intervall = \"2s\""));
    let path = f.write("unknown-key.toml", &text);
    let out = check(&path);
    assert_error_at(&out, &path, 7, &["intervall"]);
}

#[test]
fn check_rejects_a_probe_timeout_not_shorter_than_interval() {
    let f = Files::new();
    // Line 8: timeout = interval (equal is not shorter).
    let text = format!(
        "{}[probe]\ninterval = \"1s\"\ntimeout = \"1s\"\n\n{NODE_AND_POOL}",
        f.dns(&f.key_file)
    );
    assert_eq!(text.lines().nth(7), Some("timeout = \"1s\""));
    let path = f.write("timeout.toml", &text);
    let out = check(&path);
    assert_error_at(&out, &path, 8, &["timeout"]);

    // A pool's own override is checked too (line 17 here).
    let text = format!(
        "{}[probe]\ninterval = \"2s\"\n\n{NODE_AND_POOL}interval = \"500ms\"\ntimeout = \"800ms\"\n",
        f.dns(&f.key_file)
    );
    assert_eq!(text.lines().nth(16), Some("timeout = \"800ms\""));
    let path = f.write("pool-timeout.toml", &text);
    let out = check(&path);
    assert_error_at(&out, &path, 17, &["timeout"]);
}

#[test]
fn check_rejects_a_pool_naming_an_unknown_node() {
    let f = Files::new();
    // Line 13: nodes = [..., "mail9"].
    let text = format!(
        "{}[[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\n\
         [[pool]]\nname = \"imap\"\ncheck = \"imap\"\nnodes = [\"mail1\", \"mail9\"]\n",
        f.dns(&f.key_file)
    );
    assert_eq!(text.lines().nth(12), Some("nodes = [\"mail1\", \"mail9\"]"));
    let path = f.write("unknown-node.toml", &text);
    let out = check(&path);
    assert_error_at(&out, &path, 13, &["mail9"]);
}

#[test]
fn check_rejects_a_duplicate_node() {
    let f = Files::new();
    // Line 11: the second `name = "mail1"`.
    let text = format!(
        "{}[[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\n\
         [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.12\"]\n\n\
         [[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
        f.dns(&f.key_file)
    );
    assert_eq!(text.lines().nth(10), Some("name = \"mail1\""));
    let path = f.write("duplicate-node.toml", &text);
    let out = check(&path);
    assert_error_at(&out, &path, 11, &["mail1"]);
}

#[test]
fn check_lists_every_error_at_once() {
    let f = Files::new();
    let text = format!(
        "{}[probe]\n\
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
         nodes = [\"mail7\"]\n",
        f.dns(&f.key_file)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[7], "timeout = \"2s\"");
    assert_eq!(lines[14], "name = \"mail1\"");
    assert_eq!(lines[20], "nodes = [\"mail7\"]");
    let path = f.write("many-errors.toml", &text);
    let out = check(&path);
    assert_error_at(&out, &path, 8, &["timeout"]);
    assert_error_at(&out, &path, 15, &["mail1"]);
    assert_error_at(&out, &path, 21, &["mail7"]);
}

#[test]
fn check_rejects_an_hmac_md5_key_with_the_tsig_keygen_hint() {
    let f = Files::new();
    let md5 = f.write(
        "md5.key",
        "key \"pigeon-dns\" {\n\talgorithm hmac-md5;\n\tsecret \"pS5g1Klq0AOT3VHj742HXw==\";\n};\n",
    );
    let path = f.write("md5.toml", &format!("{}{NODE_AND_POOL}", f.dns(&md5)));
    let out = check(&path);
    // Line 2 of the key file: the algorithm.
    assert_error_at(&out, &md5, 2, &["hmac-md5", "tsig-keygen"]);
    assert!(
        !out.stderr.contains("pS5g1Klq0AOT3VHj742HXw==")
            && !out.stdout.contains("pS5g1Klq0AOT3VHj742HXw=="),
        "the secret was printed:\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn check_locates_errors_inside_the_key_file() {
    let f = Files::new();
    // Line 3: a secret that is not base64.
    let bad_secret = f.write(
        "bad-secret.key",
        "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n\tsecret \"not base64!!\";\n};\n",
    );
    let path = f.write(
        "bad-secret.toml",
        &format!("{}{NODE_AND_POOL}", f.dns(&bad_secret)),
    );
    let out = check(&path);
    assert_error_at(&out, &bad_secret, 3, &["secret"]);

    // Line 4: an unknown clause.
    let bad_clause = f.write(
        "bad-clause.key",
        &format!(
            "key \"pigeon-dns\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n\tbogus yes;\n}};\n",
            f.key.secret
        ),
    );
    let path = f.write(
        "bad-clause.toml",
        &format!("{}{NODE_AND_POOL}", f.dns(&bad_clause)),
    );
    let out = check(&path);
    assert_error_at(&out, &bad_clause, 4, &["bogus"]);
    assert!(
        !out.stderr.contains(&f.key.secret),
        "the secret was printed:\n{}",
        out.stderr
    );

    // A key file that does not exist: named, exit 1.
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
    for out in [&after, &before] {
        assert_eq!(
            out.code(),
            Some(0),
            "a valid config failed check\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !all.contains(&f.key.secret),
            "check printed the secret:\n{all}"
        );
        for word in [
            "pigeon-dns",
            "hmac-sha256",
            "mail1",
            "mail2",
            "imap",
            "example.com",
        ] {
            assert!(all.contains(word), "the summary lacks {word:?}:\n{all}");
        }
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
    let out = check(&path);
    assert_eq!(
        out.code(),
        Some(0),
        "the contract's example config failed check\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !all.contains(&f.key.secret),
        "check printed the secret:\n{all}"
    );
    for pool in ["imap", "pop", "smtp", "webmail", "_imaps._tcp"] {
        assert!(all.contains(pool), "the summary lacks pool {pool}:\n{all}");
    }
}

#[test]
fn the_shipped_config_passes_check_with_a_generated_key() {
    let f = Files::new();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pigeon-dns.toml");
    let text = std::fs::read_to_string(&shipped)
        .unwrap_or_else(|e| panic!("read {}: {e}", shipped.display()));
    let path = f.write("shipped.toml", &with_key_file(&text, &f.key_file));
    let out = check(&path);
    assert_eq!(
        out.code(),
        Some(0),
        "config/pigeon-dns.toml failed check\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains(&f.key.secret),
        "check printed the secret"
    );
}

/// Names pigeon-dns writes (a pool, the lease) must be in its zone: the
/// primary would answer every UPDATE that touches one with NOTZONE.
#[test]
fn check_rejects_a_pool_or_a_lease_outside_the_zone() {
    let files = Files::new();
    let text = format!(
        "{}\
         [ha]\n\
         lease = \"_lease.example.net.\"\n\
         \n\
         [[node]]\n\
         name = \"mail1\"\n\
         addresses = [\"192.0.2.11\"]\n\
         \n\
         [[pool]]\n\
         name = \"imap.other.org.\"\n\
         check = \"imap\"\n",
        files.dns(&files.key_file)
    );
    let path = files.write("outside.toml", &text);
    let out = check(&path);
    assert_error_at(
        &out,
        &path,
        7,
        &["ha.lease", "outside the zone example.com."],
    );
    assert_error_at(
        &out,
        &path,
        14,
        &["pool[0].name", "outside the zone example.com.", "NOTZONE"],
    );
}
