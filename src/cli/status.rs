//! `status`: asks the running daemon (its HTTP `/status`) what it believes
//! now and prints it: readiness, the lease holder, then one row per target
//! with its state, since when and its last result.

use std::path::Path;
use std::time::Duration;

use super::ExitCode;
use super::output::{errln, outln, print_diagnostics};
use super::table;
use crate::app::install_crypto_provider;
use crate::config;
use crate::status::Status;

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
    let mut rows = vec![[
        "POOL".to_string(),
        "NODE".into(),
        "ADDRESS".into(),
        "CHECK".into(),
        "STATE".into(),
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
            t.since.clone(),
            last,
        ]);
    }
    table::print(&rows);
    ExitCode::Ok
}
