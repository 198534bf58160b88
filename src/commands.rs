//! The one-shot commands: `check`, `probe`, `plan`, `status`. Each returns the
//! process exit code; the daemon (`run`) lives in [`crate::app`].

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;

use crate::app::{dns_client, ehlo_name, install_crypto_provider};
use crate::config::{self, Diagnostic, Severity};
use crate::dns::update::nsupdate_script;
use crate::health::State;
use crate::metrics::Metrics;
use crate::probe::{ProbeOutcome, Prober};
use crate::reconcile::{Reconciler, pool_labels};
use crate::state::{Board, Status};
use crate::target::{Target, targets};

// Output that ignores a closed pipe (`pigeon-dns check | head -1`) instead
// of panicking as print! does.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_PENDING: i32 = 2;

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diagnostics {
        let _ = writeln!(err, "{d}");
    }
}

/// `check`: reads the files only; prints every error, or the summary.
pub fn check(path: &Path) -> i32 {
    match config::load_all(path) {
        Ok(full) => {
            print_diagnostics(&full.warnings);
            out!("{}", config::render_summary(&full.config, &full.key));
            outln!("{}: OK", path.display());
            EXIT_OK
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
            EXIT_FAIL
        }
    }
}

/// Runs every target's check once, concurrently.
async fn probe_all(targets: &[Target]) -> Vec<ProbeOutcome> {
    install_crypto_provider();
    let prober = Prober::new();
    join_all(targets.iter().map(|t| prober.probe(&t.spec))).await
}

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
            t.pool.clone(),
            t.node.clone(),
            t.spec.addr.to_string(),
            t.spec.check.as_str().to_string(),
            o.result.as_str().to_string(),
            format!("{:.1}ms", o.latency.as_secs_f64() * 1000.0),
            format!("{}{}", o.detail, tls_note(o)),
        ]);
    }
    print_table(&rows);
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// `probe`: one check per target, a table; 0 when all passed.
pub async fn probe(path: &Path) -> i32 {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_diagnostics(&errors);
            return EXIT_FAIL;
        }
    };
    let labels = pool_labels(&loaded.config);
    let targets = targets(&loaded.config, &labels, &ehlo_name());
    let outcomes = probe_all(&targets).await;
    print_probe_table(&targets, &outcomes);
    if outcomes.iter().all(ProbeOutcome::is_ok) {
        EXIT_OK
    } else {
        EXIT_FAIL
    }
}

/// `plan`: probe once (one result decides), read the owned names, print the
/// UPDATE as an nsupdate script; `--apply` sends it.
pub async fn plan(path: &Path, apply: bool) -> i32 {
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            print_diagnostics(&errors);
            return EXIT_FAIL;
        }
    };
    print_diagnostics(&full.warnings);
    let config = std::sync::Arc::new(full.config);
    let labels = pool_labels(&config);
    let targets = targets(&config, &labels, &ehlo_name());
    let outcomes = probe_all(&targets).await;
    let metrics = match Metrics::new(prometheus::Registry::new()) {
        Ok(m) => m,
        Err(error) => {
            errln!("error: {error}");
            return EXIT_FAIL;
        }
    };
    let client = dns_client(&config, &full.key);
    let server = client.server().to_string();
    if let Some(ha) = &config.ha {
        match other_lease_holder(&client, ha).await {
            Ok(Some(holder)) if apply => {
                errln!(
                    "error: instance {holder} holds a valid lease on {}: refusing to write beside it",
                    ha.lease
                );
                return EXIT_FAIL;
            }
            Ok(Some(holder)) => errln!("warning: instance {holder} holds the lease and writes"),
            Ok(None) => {}
            Err(error) => {
                errln!("error: cannot read the lease: {error}");
                return EXIT_FAIL;
            }
        }
    }
    let mut reconciler = Reconciler::new(
        config.clone(),
        client,
        metrics,
        std::sync::Arc::new(Board::default()),
        false,
        targets.len(),
    )
    .without_lease();
    for (t, o) in targets.iter().zip(&outcomes) {
        if !o.is_ok() {
            errln!(
                "warning: {} {} {}: {} ({})",
                t.pool,
                t.node,
                t.spec.addr,
                o.result.as_str(),
                o.detail
            );
        }
        reconciler.set_health(t.id, if o.is_ok() { State::Up } else { State::Down });
    }
    let (plan, missing) = match reconciler.plan().await {
        Ok(p) => p,
        Err(error) => {
            errln!("error: {error}");
            return EXIT_FAIL;
        }
    };
    for m in &missing {
        errln!("warning: {m}");
    }
    if plan.is_empty() {
        errln!("Nothing to change: the primary holds what health asks for.");
        return EXIT_OK;
    }
    out!("{}", nsupdate_script(&server, reconciler.zone(), &plan));
    if !apply {
        return EXIT_PENDING;
    }
    match reconciler.reconcile().await {
        Ok(()) => {
            errln!("Applied.");
            EXIT_OK
        }
        Err(error) => {
            errln!("error: {error}");
            EXIT_FAIL
        }
    }
}

/// The holder of a lease that is valid by the wall clock, unless it is us.
async fn other_lease_holder(
    client: &crate::dns::DnsClient,
    ha: &crate::config::HaConfig,
) -> Result<Option<String>, crate::dns::DnsError> {
    let records = client
        .query(&ha.lease, hickory_proto::rr::RecordType::TXT)
        .await?;
    Ok(records
        .iter()
        .filter_map(|r| crate::lease::txt_text(&r.data))
        .filter_map(|t| crate::lease::LeaseRecord::parse(&t))
        .find(|r| r.holder != ha.instance && r.valid_at(std::time::SystemTime::now()))
        .map(|r| r.holder))
}

/// `status`: asks the running daemon's `/status`.
pub async fn status(path: &Path) -> i32 {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_diagnostics(&errors);
            return EXIT_FAIL;
        }
    };
    let Some(addr) = loaded.config.http.listen else {
        errln!("error: the HTTP server is off (http.listen = \"\"): no status to ask for");
        return EXIT_FAIL;
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
            return EXIT_FAIL;
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
                return EXIT_FAIL;
            }
        },
        Err(error) => {
            errln!("error: no daemon answers at {url}: {error}");
            return EXIT_FAIL;
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
    print_table(&rows);
    EXIT_OK
}
