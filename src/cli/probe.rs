//! `probe`: runs every check once, concurrently, and prints a table (pool,
//! node, address, check, result, latency, detail).

use std::path::Path;
use std::sync::Arc;

use futures_util::future::join_all;

use super::ExitCode;
use super::output::print_diagnostics;
use super::table;
use crate::app::{host_name, install_crypto_provider, tlsa_cache};
use crate::config::{self, Config};
use crate::probe::{ProbeOutcome, Prober, TlsaCache};
use crate::targets::{Layout, Target};

/// `probe`: one check per target, a table; 0 when all passed.
pub async fn probe(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_diagnostics(&errors);
            return ExitCode::Failure;
        }
    };
    let tlsa = match dane_reads(path, &loaded.config) {
        Ok(tlsa) => tlsa,
        Err(code) => return code,
    };
    let layout = Layout::new(&loaded.config, &host_name());
    let outcomes = probe_all(&layout.targets, tlsa).await;
    print_probe_table(&layout.targets, &outcomes);
    if outcomes.iter().all(ProbeOutcome::is_ok) {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    }
}

/// With a DANE pool, the TLSA reads from the primary: they need the key
/// file too (read only then, so `probe` of other pools needs no key).
fn dane_reads(path: &Path, config: &Config) -> Result<Option<Arc<TlsaCache>>, ExitCode> {
    if !config.pools.iter().any(|p| p.dane.is_on()) {
        return Ok(None);
    }
    match config::load_all(path) {
        Ok(full) => Ok(tlsa_cache(&full.config, &full.keys, None)),
        Err(errors) => {
            print_diagnostics(&errors);
            Err(ExitCode::Failure)
        }
    }
}

/// Runs every target's check once, concurrently (`probe`, and `plan` where
/// one result decides), DANE targets judged by `tlsa`.
pub(super) async fn probe_all(
    targets: &[Target],
    tlsa: Option<Arc<TlsaCache>>,
) -> Vec<ProbeOutcome> {
    install_crypto_provider();
    let prober = Prober::with_tlsa(tlsa);
    join_all(targets.iter().map(|t| prober.probe(&t.spec))).await
}

fn print_probe_table(targets: &[Target], outcomes: &[ProbeOutcome]) {
    let mut rows = vec![[
        "POOL".to_string(),
        "NODE".into(),
        "ADDRESS".into(),
        "CHECK".into(),
        "RESULT".into(),
        "LATENCY".into(),
        "DETAIL".into(),
    ]];
    for (t, o) in targets.iter().zip(outcomes) {
        rows.push([
            t.id.pool.to_string(),
            t.id.node.to_string(),
            t.spec.addr.to_string(),
            t.spec.check.as_str().to_string(),
            o.result.as_str().to_string(),
            format!("{:.1}ms", o.latency.as_secs_f64() * 1000.0),
            format!("{}{}", o.detail, tls_note(o)),
        ]);
    }
    table::print(&rows);
}

/// The TLS version and the days the certificate has left, after a detail.
fn tls_note(outcome: &ProbeOutcome) -> String {
    let Some(tls) = &outcome.tls else {
        return String::new();
    };
    let days = tls
        .not_after
        .map(|t| match t.duration_since(std::time::SystemTime::now()) {
            Ok(left) => format!(", cert expires in {} days", left.as_secs() / 86_400),
            Err(_) => ", cert expired".to_string(),
        });
    format!(" [{}{}]", tls.version, days.unwrap_or_default())
}
