//! What the config tests share: the contract's example, a valid start to
//! build on, and helpers that load a text and find its diagnostics.

use std::path::PathBuf;

use hickory_proto::rr::Name;
use tempfile::TempDir;

use super::{Config, Diagnostic, Loaded, Severity, load};

/// The example of the contract (/work/shared/contract.md), verbatim.
pub(super) const CONTRACT_EXAMPLE: &str = r##"[dns]
server = "127.0.0.1:53"        # the primary that accepts RFC 2136 updates (host:port; IPv6 as "[::1]:53")
zone = "example.com"           # the zone to update
key_file = "/etc/pigeon-dns/pigeon-dns.key"  # a BIND key file, as tsig-keygen writes it
key_name = "pigeon-dns"        # optional: which key of the file; required only when it holds several
ttl = "60s"                    # TTL of the records it adds (default 60s)
timeout = "2s"                 # per DNS request (default 2s)
resync_interval = "60s"        # re-read the owned names and repair drift (default 60s)

[probe]                        # defaults for every pool; a pool may override each one
interval = "2s"                # default 2s
timeout = "1s"                 # default 1s; must be shorter than interval
rise = 2                       # consecutive successes to become up (default 2)
fall = 2                       # consecutive failures to become down (default 2)
fast_interval = "100ms"        # while a target's state is in doubt (unknown, a failure while up, a
                               # success while down), the next probe starts this long after the last
                               # one ended, until rise/fall decides (default 100ms)
watch = true                   # keep one idle connection to each up target; when the peer closes or
                               # resets it, probe again at once (default true for mail checks). Watch
                               # adds to the periodic probes, it never replaces them, and a close is
                               # not itself a failure: the probe it triggers decides.

[http]
listen = "127.0.0.1:9854"      # /metrics, /healthz, /readyz, /status (default 127.0.0.1:9854; "" turns it off)

[ha]                           # optional: several instances, exactly one writes at a time
lease = "_pigeon-dns-lease"    # a TXT record in the zone holding the writer's identity and expiry,
                               # taken and renewed by RFC 2136 prerequisites (compare-and-swap)
lease_time = "10s"             # default 10s; renewed every third of it
# instance = "dns1"            # identity (default: hostname and process id); unique per instance
# Without [ha] there is no lease: one instance is assumed. The writer releases the
# lease when it stops; a standby probes too and takes over once the lease expires.

[[node]]
name = "mail1"                              # unique, [a-z0-9-]
addresses = ["192.0.2.11", "2001:db8::11"]  # A and AAAA records are published from these
host = "mail1.example.com"                  # optional; the target of MX and SRV records (default: <name>.<zone>)
# drain = true                              # maintenance: the node's records are removed whatever its health

[[node]]
name = "mail2"
addresses = ["192.0.2.12"]

# A pool publishes, under one name, the records of its healthy nodes.
[[pool]]
name = "imap"                  # imap.example.com
check = "imap"                 # see the checks below
# port = 143                   # default: the check's well-known port
# nodes = ["mail1", "mail2"]   # default: every node
# type = "A"                   # "A" (A and AAAA, the default), "MX" or "SRV"
# all_down = "publish-all"     # when no node is up: "publish-all" (default) or "keep"
# interval, timeout, rise, fall, fast_interval, watch: per-pool overrides of [probe]

[[pool]]
name = "pop"
check = "pop3"

[[pool]]
name = "smtp"
check = "submission"           # port 587

[[pool]]
name = "webmail"
check = "http"
path = "/"                     # http/https: expects a 2xx or 3xx status

[[pool]]
name = "@"                     # the zone apex: example.com MX 10 <node host>
type = "MX"
preference = 10
check = "smtp"                 # port 25

[[pool]]
name = "_imaps._tcp"           # RFC 6186: _imaps._tcp.example.com SRV 0 1 993 <node host>
type = "SRV"
check = "imaps"
# priority = 0, weight = 1; the SRV port is the pool's port
"##;

/// A valid start: `[dns]` on lines 1-4, two nodes on lines 5-10.
pub(super) const BASE: &str = r#"[dns]
server = "127.0.0.1:53"
zone = "example.com"
key_file = "pigeon-dns.key"
[[node]]
name = "mail1"
addresses = ["192.0.2.11", "2001:db8::11"]
[[node]]
name = "mail2"
addresses = ["192.0.2.12"]
"#;

/// A pool to make BASE complete, on lines 11-13.
pub(super) const IMAP_POOL: &str = "[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n";

pub(super) fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

pub(super) fn load_text(text: &str) -> (TempDir, Result<Loaded, Vec<Diagnostic>>) {
    let dir = TempDir::new().expect("tempdir");
    let path = write(&dir, "pigeon-dns.toml", text);
    let loaded = load(&path);
    (dir, loaded)
}

pub(super) fn loaded(text: &str) -> Loaded {
    match load_text(text).1 {
        Ok(loaded) => loaded,
        Err(diagnostics) => panic!("expected a valid config, got:\n{}", render(&diagnostics)),
    }
}

pub(super) fn config(text: &str) -> Config {
    loaded(text).config
}

pub(super) fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match load_text(text).1 {
        Ok(_) => panic!("expected errors, the config loaded"),
        Err(diagnostics) => diagnostics,
    }
}

pub(super) fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// The one diagnostic about `field`, checked for its line and severity.
pub(super) fn find<'d>(
    diagnostics: &'d [Diagnostic],
    field: &str,
    severity: Severity,
) -> &'d Diagnostic {
    let found: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.field == field && d.severity == severity)
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one {severity:?} about `{field}`, got:\n{}",
            render(diagnostics)
        ),
    }
}

/// Asserts that loading `text` fails with an error at `line` about `field`
/// whose message contains `needle`.
pub(super) fn assert_error(text: &str, line: Option<usize>, field: &str, needle: &str) {
    let diagnostics = diagnostics(text);
    let found = find(&diagnostics, field, Severity::Error);
    assert_eq!(found.line, line, "line of {found}");
    assert!(found.message.contains(needle), "`{needle}` not in: {found}");
}

pub(super) fn assert_pool_error(extra: &str, line: usize, field: &str, needle: &str) {
    assert_error(&format!("{BASE}{extra}"), Some(line), field, needle);
}

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("test name")
}
