//! The Debian package: built with cargo-deb, installed with dpkg, and the
//! installed example configuration passes `pigeon-dns check`. This test
//! installs into the machine it runs on (CI runs as root on a throwaway
//! machine) and purges the package at the end.

mod common;

use std::path::Path;
use std::process::Command;

use common::process::tool;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Purges the package even when an assertion fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "pigeon-dns"])
            .output();
    }
}

#[test]
fn deb_installs_the_binary_unit_user_and_a_valid_example() {
    tool("cargo-deb");
    let dpkg = tool("dpkg");
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("pigeon-dns.deb");
    // The dev profile reuses the test build; `cargo deb` (release) packages
    // the same assets.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["deb", "--profile", "dev", "--no-strip", "-o"])
        .arg(&deb));
    let contents = run(Command::new(tool("dpkg-deb")).arg("-c").arg(&deb));
    let listing = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/pigeon-dns",
        "./usr/lib/systemd/system/pigeon-dns.service",
        "./etc/pigeon-dns/pigeon-dns.toml",
        "./usr/share/pigeon-dns/prometheus/alerts.yml",
        "./usr/share/pigeon-dns/grafana/pigeon-dns.json",
    ] {
        assert!(
            listing.contains(path),
            "{path} not in the package:\n{listing}"
        );
    }

    let _installed = Installed;
    run(Command::new(&dpkg).arg("-i").arg(&deb));
    let user = run(Command::new("getent").args(["passwd", "pigeon-dns"]));
    assert!(String::from_utf8_lossy(&user.stdout).starts_with("pigeon-dns:"));
    assert!(
        Path::new("/etc/pigeon-dns/pigeon-dns.key").is_file(),
        "postinst made no key"
    );
    let check = Command::new("/usr/bin/pigeon-dns")
        .args(["check", "-c", "/etc/pigeon-dns/pigeon-dns.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "check on the installed example failed:\n{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(stdout.contains("pigeon-dns. (hmac-sha256)"), "{stdout}");
    // The secret never shows.
    let key = std::fs::read_to_string("/etc/pigeon-dns/pigeon-dns.key").unwrap();
    let secret = key.split('"').nth(3).expect("secret in key file");
    assert!(!stdout.contains(secret) && !String::from_utf8_lossy(&check.stderr).contains(secret));
}
