//! The operator's files: the systemd unit, the Prometheus alerts and the
//! metrics exposition, the Grafana dashboard. Each test fails (never skips)
//! when the tool it needs is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::process::tool;
use common::{Lab, pigeon_dns_bin};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn systemd_unit_verifies_clean() {
    // verify checks that ExecStart exists: point it at the built binary.
    let unit = std::fs::read_to_string(repo("deploy/pigeon-dns.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pigeon-dns.service");
    let bin = pigeon_dns_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/bin/pigeon-dns", bin.to_str().unwrap()),
    )
    .unwrap();
    let (ok, text) = run(Command::new(tool("systemd-analyze"))
        .args(["verify", "--man=no"])
        .arg(&path));
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(
        text.trim().is_empty(),
        "systemd-analyze verify is not clean:\n{text}"
    );
}

#[test]
fn systemd_unit_has_the_contracted_settings() {
    let unit = std::fs::read_to_string(repo("deploy/pigeon-dns.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=64",
        "LimitNOFILE=65536",
        "User=pigeon-dns",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "WatchdogSec=",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
}

#[test]
fn systemd_unit_exposure_is_two_or_lower() {
    let (_, text) = run(Command::new(tool("systemd-analyze"))
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(repo("deploy/pigeon-dns.service")));
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for pigeon-dns.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    println!("systemd-analyze security: overall exposure {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{text}");
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let promtool = tool("promtool");
    let (ok, text) = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/alerts.yml")));
    assert!(ok, "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 9 rules found"), "{text}");
    let (ok, text) = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(repo("deploy/prometheus/alerts_test.yml")));
    assert!(ok, "promtool test rules:\n{text}");
}

/// The metric families the contract lists, all exposed from the start, and
/// promtool finds no problem in the exposition.
#[test]
fn metrics_pass_promtool_and_every_family_is_exposed() {
    let lab = Lab::start(2);
    let daemon = lab.daemon(&lab.standard_config());
    daemon.wait_for_http_status("/readyz", 200, Duration::from_secs(20));
    let (status, body) = daemon.http_get("/metrics").unwrap();
    assert_eq!(status, 200);
    for family in [
        "pigeon_dns_node_up",
        "pigeon_dns_probes_total",
        "pigeon_dns_probe_duration_seconds",
        "pigeon_dns_transitions_total",
        "pigeon_dns_pool_all_down",
        "pigeon_dns_lease_held",
        "pigeon_dns_dns_updates_total",
        "pigeon_dns_dns_update_duration_seconds",
        "pigeon_dns_records_published",
        "pigeon_dns_last_reconcile_success_timestamp_seconds",
        "pigeon_dns_build_info",
    ] {
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }
    let problems = common::Metrics::parse(&body).promtool_problems();
    assert!(problems.is_empty(), "promtool check metrics:\n{problems}");
}

/// Every metric the dashboard queries is one the daemon exposes.
#[test]
fn grafana_dashboard_queries_existing_metrics() {
    let text = std::fs::read_to_string(repo("deploy/grafana/pigeon-dns.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let known = [
        "pigeon_dns_node_up",
        "pigeon_dns_probes_total",
        "pigeon_dns_probe_duration_seconds_bucket",
        "pigeon_dns_transitions_total",
        "pigeon_dns_pool_all_down",
        "pigeon_dns_cert_expiry_seconds",
        "pigeon_dns_lease_held",
        "pigeon_dns_dns_updates_total",
        "pigeon_dns_dns_update_duration_seconds_bucket",
        "pigeon_dns_records_published",
        "pigeon_dns_last_reconcile_success_timestamp_seconds",
        "pigeon_dns_build_info",
        "pigeon_dns_secondary_behind_seconds",
        "pigeon_dns_secondary_up",
        "pigeon_dns_propagation_seconds_bucket",
    ];
    let mut used = 0;
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("pigeon_dns_") {
                    assert!(
                        known.contains(&word),
                        "dashboard queries unknown metric {word}"
                    );
                    used += 1;
                }
            }
        }
    }
    assert!(used >= 10);
}
