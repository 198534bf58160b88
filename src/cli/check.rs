//! `check`: reads the config and the key file (no DNS server needed) and
//! prints every problem, or the one-screen summary of what the daemon would
//! do with them, so that an operator can compare it with what they meant.
//! Plain aligned text (it ends up in terminals, tickets and CI logs); the
//! key's secret is never part of it.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::ExitCode;
use super::output::{errln, out, outln, print_diagnostics};
use super::table;
use crate::config::{
    self, AllDown, CheckKind, Config, Node, Pool, PoolKind, Secondaries, ZoneConfig,
};
use crate::diagnostic::Severity;
use crate::dns::key::TsigKey;

/// `check`: reads the files only; prints every error, or the summary.
pub fn check(path: &Path) -> ExitCode {
    match config::load_all(path) {
        Ok(full) => {
            print_diagnostics(&full.warnings);
            out!("{}", render_summary(&full.config, &full.keys));
            outln!("{}: OK", path.display());
            ExitCode::Ok
        }
        Err(errors) => {
            print_diagnostics(&errors);
            let count = errors
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            errln!(
                "{}: {count} error(s); configuration NOT valid",
                path.display()
            );
            ExitCode::Failure
        }
    }
}

/// The summary of a loaded config and its keys (one per zone).
fn render_summary(config: &Config, keys: &[TsigKey]) -> String {
    let mut out = String::new();
    let http = match config.http.listen {
        Some(addr) => addr.to_string(),
        None => "off".to_owned(),
    };
    let ha = match &config.ha {
        Some(ha) => {
            let lease = match config.zones.as_slice() {
                [one] => ha.lease_in(&one.zone).to_string(),
                _ => format!("{} in each zone", relative(&ha.lease)),
            };
            format!(
                "lease {lease} for {}, instance {}",
                duration(ha.lease_time),
                ha.instance
            )
        }
        None => "off (a single instance writes)".to_owned(),
    };
    let mut head: Vec<[String; 2]> = vec![["config".into(), config.source.display().to_string()]];
    if let ([dns], [key]) = (config.zones.as_slice(), keys) {
        head.extend([
            ["zone".into(), dns.zone.to_string()],
            ["primary".into(), dns.server.clone()],
            ["key".into(), key_text(dns, key)],
            ["dns".into(), timings(dns)],
            ["secondaries".into(), secondaries(&dns.secondaries)],
        ]);
    }
    head.extend([["http".into(), http], ["ha".into(), ha]]);
    out.push_str(&table::render(&head));
    if config.zones.len() > 1 {
        let _ = writeln!(out, "\nzones ({})", config.zones.len());
        let rows: Vec<Vec<String>> =
            std::iter::once(strings(["ZONE", "PRIMARY", "KEY", "DNS", "SECONDARIES"]))
                .chain(config.zones.iter().zip(keys).map(|(dns, key)| {
                    vec![
                        dns.zone.to_string(),
                        dns.server.clone(),
                        key_text(dns, key),
                        timings(dns),
                        secondaries(&dns.secondaries),
                    ]
                }))
                .collect();
        out.push_str(&indent(&table::render(&rows)));
    }
    let _ = writeln!(out, "\nnodes ({})", config.nodes.len());
    let nodes: Vec<Vec<String>> = std::iter::once(strings(["NAME", "ADDRESSES", "HOST", "STATE"]))
        .chain(config.nodes.iter().map(node_row))
        .collect();
    out.push_str(&indent(&table::render(&nodes)));
    let _ = writeln!(out, "\npools ({})", config.pools.len());
    let header = [
        "NAME", "OWNER", "TYPE", "CHECK", "PORT", "NODES", "ALL_DOWN", "INTERVAL", "TIMEOUT",
        "RISE", "FALL", "WATCH",
    ];
    let pools: Vec<Vec<String>> = std::iter::once(strings(header))
        .chain(config.pools.iter().map(|p| pool_row(p, config)))
        .collect();
    out.push_str(&indent(&table::render(&pools)));
    out
}

fn node_row(node: &Node) -> Vec<String> {
    let addresses: Vec<String> = node.addresses.iter().map(ToString::to_string).collect();
    let state = if node.drain { "drained" } else { "in service" };
    vec![
        node.name.clone(),
        addresses.join(", "),
        node.host.to_string(),
        state.to_owned(),
    ]
}

fn pool_row(pool: &Pool, config: &Config) -> Vec<String> {
    let kind = match pool.kind {
        PoolKind::Address => "A/AAAA".to_owned(),
        PoolKind::Mx { preference } => format!("MX {preference}"),
        PoolKind::Srv { priority, weight } => format!("SRV {priority} {weight}"),
    };
    let mut check = pool.check.as_str().to_owned();
    if pool.starttls {
        check.push_str("+starttls");
    }
    if pool.dane.is_on() {
        check.push_str("+dane=");
        check.push_str(pool.dane.as_str());
    }
    if matches!(pool.check, CheckKind::Http | CheckKind::Https) {
        check.push(' ');
        check.push_str(&pool.path);
    }
    let nodes: Vec<&str> = pool
        .nodes
        .iter()
        .filter_map(|&i| config.nodes.get(i).map(|n| n.name.as_str()))
        .collect();
    let all_down = match pool.all_down {
        AllDown::PublishAll => "publish-all",
        AllDown::Keep => "keep",
    };
    let probe = &pool.probe;
    vec![
        pool.name.clone(),
        pool.fqdn.to_string(),
        kind,
        check,
        pool.port.to_string(),
        nodes.join(","),
        all_down.to_owned(),
        duration(probe.interval),
        duration(probe.timeout),
        probe.rise.to_string(),
        probe.fall.to_string(),
        if probe.watch { "yes" } else { "no" }.to_owned(),
    ]
}

/// A zone's key as the summary shows it: never the secret.
fn key_text(dns: &ZoneConfig, key: &TsigKey) -> String {
    format!(
        "{} ({}) from {}",
        key.name,
        key.algorithm_name(),
        dns.key_file.display()
    )
}

fn timings(dns: &ZoneConfig) -> String {
    format!(
        "ttl {}s, timeout {}, resync every {}",
        dns.ttl,
        duration(dns.timeout),
        duration(dns.resync_interval)
    )
}

fn secondaries(secondaries: &Secondaries) -> String {
    match secondaries {
        Secondaries::Ns => "the zone's NS names (the primary left out)".to_owned(),
        Secondaries::Servers(servers) if servers.is_empty() => "none (not followed)".to_owned(),
        Secondaries::Servers(servers) => servers.join(", "),
    }
}

/// A relative name as written in the config (`@` for the apex).
fn relative(name: &hickory_proto::rr::Name) -> String {
    if name.is_root() || name.num_labels() == 0 {
        "@".to_owned()
    } else {
        name.to_ascii()
    }
}

fn duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

fn strings<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|s| (*s).to_owned()).collect()
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

    use super::*;

    /// The example of the contract, verbatim.
    const CONTRACT_EXAMPLE: &str = include_str!("../../config/contract-example.toml");

    const SECRET: &[u8] = b"a secret that must stay secret!!";

    fn summary() -> String {
        let path = Path::new("/etc/pigeon-dns/pigeon-dns.toml");
        let loaded = config::load_str(path, CONTRACT_EXAMPLE);
        let config = loaded.expect("the contract example loads").config;
        let name = Name::from_ascii("pigeon-dns").expect("name");
        let key = TsigKey::new(name, TsigAlgorithm::HmacSha256, SECRET.to_vec()).expect("key");
        render_summary(&config, &[key])
    }

    #[test]
    fn names_everything_check_promises() {
        let text = summary();
        for expected in [
            "zone         example.com.",
            "primary      127.0.0.1:53",
            "key          pigeon-dns. (hmac-sha256) from /etc/pigeon-dns/pigeon-dns.key",
            "secondaries  the zone's NS names (the primary left out)",
            "ttl 60s, timeout 2s, resync every 1m",
            "http         127.0.0.1:9854",
            "lease _pigeon-dns-lease.example.com. for 10s",
            "nodes (2)",
            "mail1  192.0.2.11, 2001:db8::11  mail1.example.com.",
            "pools (6)",
            "_imaps._tcp.example.com.",
            "SRV 0 1",
            "MX 10",
            "http /",
        ] {
            assert!(text.contains(expected), "`{expected}` not in:\n{text}");
        }
    }

    #[test]
    fn is_plain_aligned_text_without_the_secret() {
        let text = summary();
        assert!(!text.contains('\u{1b}'), "no colour codes");
        assert!(!text.contains("secret"));
        assert!(text.lines().all(|line| line == line.trim_end()));
        assert!(text.lines().count() < 40, "one screen:\n{text}");
        let pools: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("pools"))
            .skip(1)
            .collect();
        let column = |line: &str| {
            line.find("OWNER")
                .or_else(|| line.find("imap.example.com."))
        };
        let header = column(pools[0]);
        assert!(header.is_some());
        assert_eq!(column(pools[1]), header, "{text}");
    }
}
