//! `status`: asks the running daemon (its HTTP `/status`) what it believes
//! now and prints it: readiness, the lease holder, then one row per target
//! with its state, whether and why it is drained, since when and its last
//! result; every drain (config or runtime) is listed above the table.

use std::path::Path;
use std::time::Duration;

use super::ExitCode;
use super::output::{errln, outln, print_diagnostics};
use super::table;
use crate::app::install_crypto_provider;
use crate::config;
use crate::core::drain::ALL_POOLS;
use crate::status::{DrainStatus, Status};

/// `status`: asks the running daemon's `/status`.
pub async fn status(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_diagnostics(&errors);
            return ExitCode::Failure;
        }
    };
    let Some(addr) = loaded.config.http.listen else {
        errln!("error: the HTTP server is off (http.listen = \"\"): no status to ask for");
        return ExitCode::Failure;
    };
    install_crypto_provider();
    let url = format!("http://{addr}/status");
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(error) => {
            errln!("error: {error}");
            return ExitCode::Failure;
        }
    };
    let status: Status = match client.get(&url).send().await {
        Ok(r) => match r
            .bytes()
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Status>(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(error) => {
                errln!("error: bad answer from {url}: {error}");
                return ExitCode::Failure;
            }
        },
        Err(error) => {
            errln!("error: no daemon answers at {url}: {error}");
            return ExitCode::Failure;
        }
    };
    outln!(
        "pigeon-dns {}: {}{}; lease: {}",
        status.version,
        if status.ready { "ready" } else { "not ready" },
        if status.dry_run { " (dry run)" } else { "" },
        match (&status.lease.holder, status.lease.held) {
            (Some(h), true) => format!("held by this instance ({h})"),
            (Some(h), false) => format!("held by {h}"),
            (None, _) => "none".into(),
        }
    );
    if let Some(t) = &status.last_reconcile {
        outln!("last successful reconcile: {t}");
    }
    if let Some(e) = &status.last_error {
        outln!("last error: {e}");
    }
    for d in &status.drains {
        outln!("drained: {}", drain_line(d));
    }
    print_zones(&status);
    let mut rows = vec![[
        "POOL".to_string(),
        "NODE".into(),
        "ADDRESS".into(),
        "CHECK".into(),
        "STATE".into(),
        "DRAINED".into(),
        "SINCE".into(),
        "LAST RESULT".into(),
    ]];
    for t in &status.targets {
        let last = t
            .last
            .as_ref()
            .map(|l| format!("{} {:.1}ms {}", l.result, l.latency_ms, l.detail))
            .unwrap_or_else(|| "-".into());
        let last = match &t.held_out {
            Some(why) => format!("{last}; {why}"),
            None => last,
        };
        rows.push([
            t.pool.clone(),
            t.node.clone(),
            format!("{}:{}", t.address, t.port),
            t.check.clone(),
            t.state.clone(),
            t.drain.clone().unwrap_or_else(|| "-".into()),
            t.since.clone(),
            last,
        ]);
    }
    table::print(&rows);
    ExitCode::Ok
}

/// One row per zone and server (the primary first): its serial and
/// whether it serves the primary's; the lease holder and last error per
/// zone when there are several.
fn print_zones(status: &Status) {
    if status.zones.len() < 2 && status.zones.iter().all(|z| z.secondaries.is_empty()) {
        return;
    }
    let serial = |s: Option<u32>| s.map_or_else(|| "-".to_string(), |s| s.to_string());
    let mut rows = vec![[
        "ZONE".to_string(),
        "SERVER".into(),
        "SERIAL".into(),
        "STATE".into(),
    ]];
    for zone in &status.zones {
        let state = match (&zone.last_error, &zone.lease.holder) {
            (Some(e), _) => format!("primary failing: {e}"),
            (None, Some(h)) if zone.lease.held => format!("primary; lease held here ({h})"),
            (None, Some(h)) => format!("primary; lease held by {h}"),
            (None, None) => "primary".into(),
        };
        rows.push([
            zone.zone.clone(),
            zone.primary.clone(),
            serial(zone.serial),
            state,
        ]);
        for s in &zone.secondaries {
            let state = match (s.up, s.in_sync) {
                (false, _) => format!("not answering (behind {:.0}s)", s.behind_seconds),
                (true, true) => "in sync".to_string(),
                (true, false) => format!("behind for {:.0}s", s.behind_seconds),
            };
            rows.push([String::new(), s.server.clone(), serial(s.serial), state]);
        }
    }
    table::print(&rows);
    outln!("");
}

/// `mail1 in every pool (runtime: by alice@dns1 at 2025-03-01T12:00:00Z: kernel update)`.
fn drain_line(d: &DrainStatus) -> String {
    let pools = if d.pool == ALL_POOLS {
        "in every pool".to_string()
    } else {
        format!("in pool {}", d.pool)
    };
    let mut line = format!("{} {pools} ({}", d.node, d.source);
    if let Some(by) = &d.by {
        line.push_str(&format!(": by {by}"));
    }
    if let Some(at) = &d.at {
        line.push_str(&format!(" at {at}"));
    }
    match d.reason.as_deref() {
        Some(reason) if !reason.is_empty() => line.push_str(&format!(": {reason}")),
        _ => {}
    }
    line.push(')');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_reads_as_a_sentence_with_its_source() {
        let runtime = DrainStatus {
            node: "mail1".into(),
            pool: ALL_POOLS.into(),
            source: "runtime".into(),
            by: Some("alice@dns1".into()),
            at: Some("2025-03-01T12:00:00Z".into()),
            reason: Some("kernel update".into()),
        };
        assert_eq!(
            drain_line(&runtime),
            "mail1 in every pool (runtime: by alice@dns1 at 2025-03-01T12:00:00Z: kernel update)"
        );
        let config = DrainStatus {
            node: "mail3".into(),
            pool: "imap".into(),
            source: "config".into(),
            by: None,
            at: None,
            reason: None,
        };
        assert_eq!(drain_line(&config), "mail3 in pool imap (config)");
    }
}
