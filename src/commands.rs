//! The one-shot commands: `check`, `probe`, `plan`, `status`. Each returns the
//! process exit code; the daemon (`run`) lives in [`crate::app`].

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;

use crate::app::{host_name, install_crypto_provider, lease_setup, primary, zone_setup};
use crate::config::{self, Diagnostic, Severity};
use crate::core::health::State;
use crate::core::lease::{Judgement, Observer, leases};
use crate::metrics::Metrics;
use crate::probe::{ProbeOutcome, Prober};
use crate::reconcile::{Primary, Writer, ZoneReconciler};
use crate::status::{Board, Status};
use crate::targets::{Layout, Target};

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
            t.id.pool.to_string(),
            t.id.node.to_string(),
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
    let layout = Layout::new(&loaded.config, &host_name());
    let outcomes = probe_all(&layout.targets).await;
    print_probe_table(&layout.targets, &outcomes);
    if outcomes.iter().all(ProbeOutcome::is_ok) {
        EXIT_OK
    } else {
        EXIT_FAIL
    }
}

/// `plan`: probe once (one result decides), read the owned names, print the
/// UPDATE as an nsupdate script; `--apply` sends it, fenced by the lease as
/// observed (never taking it).
pub async fn plan(path: &Path, apply: bool) -> i32 {
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            print_diagnostics(&errors);
            return EXIT_FAIL;
        }
    };
    print_diagnostics(&full.warnings);
    let config = full.config;
    let host = host_name();
    let layout = Layout::new(&config, &host);
    let outcomes = probe_all(&layout.targets).await;
    let metrics = match Metrics::new(prometheus::Registry::new()) {
        Ok(m) => m,
        Err(error) => {
            errln!("error: {error}");
            return EXIT_FAIL;
        }
    };
    let mut health = std::collections::HashMap::new();
    for (t, o) in layout.targets.iter().zip(&outcomes) {
        if !o.is_ok() {
            errln!(
                "warning: {} {} {}: {} ({})",
                t.id.pool,
                t.id.node,
                t.spec.addr,
                o.result.as_str(),
                o.detail
            );
        }
        let state = if o.is_ok() { State::Up } else { State::Down };
        health.insert(t.id.clone(), state);
    }
    let mut code = EXIT_OK;
    for zone in &layout.zones {
        let primary = primary(&config, &full.key, &zone.name);
        let lease = lease_setup(&config, &zone.name);
        let observed = match &lease {
            None => None,
            Some(lease) => match observe_lease(&primary, lease, apply).await {
                Ok(set) => Some((lease.name.as_str(), set)),
                Err(message) => {
                    errln!("error: {message}");
                    return EXIT_FAIL;
                }
            },
        };
        let mut reconciler = ZoneReconciler::new(
            zone_setup(&config, zone),
            zone.shape.clone(),
            primary,
            Writer::one_shot(observed, &host),
            metrics.clone(),
            std::sync::Arc::new(Board::default()),
            health.clone(),
            zone.targets,
        );
        code = code.max(plan_zone(&mut reconciler, apply).await);
    }
    if code == EXIT_PENDING && apply {
        return EXIT_FAIL;
    }
    code
}

/// One zone's part of `plan`: its script on stdout, its problems on stderr.
async fn plan_zone<P: Primary>(reconciler: &mut ZoneReconciler<P>, apply: bool) -> i32 {
    let now = tokio::time::Instant::now();
    let plan = match reconciler.plan(now).await {
        Ok(p) => p,
        Err(error) => {
            errln!("error: {error}");
            return EXIT_FAIL;
        }
    };
    for m in &plan.missing {
        errln!("warning: {m}");
    }
    for o in &plan.oversize {
        errln!("warning: {o}");
    }
    for c in &plan.cnames {
        errln!("error: {c}");
    }
    let blocked = if plan.cnames.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAIL
    };
    if plan.changes.is_empty() {
        errln!(
            "{}: nothing to change: the primary holds what health asks for.",
            reconciler.zone()
        );
        return blocked;
    }
    match reconciler.update_of(&plan) {
        Ok(update) => out!("{}", update.script(reconciler.primary().server())),
        Err(error) => {
            errln!("error: {error}");
            return EXIT_FAIL;
        }
    }
    if !apply {
        return blocked.max(EXIT_PENDING);
    }
    match reconciler.pass(now).await {
        Ok(outcome) if outcome.blocked == 0 => {
            errln!("{}: applied.", reconciler.zone());
            blocked
        }
        Ok(outcome) => {
            errln!(
                "error: {}: {} change(s) refused by the primary (see the log above)",
                reconciler.zone(),
                outcome.blocked
            );
            EXIT_FAIL
        }
        Err(error) => {
            errln!("error: {error}");
            EXIT_FAIL
        }
    }
}

/// Reads the lease of a zone for `plan`. With `--apply`, watches it (never
/// by the clock) until it is free, or has not changed for a lease time
/// (expired), and refuses while a live writer renews it.
async fn observe_lease<P: Primary>(
    primary: &P,
    lease: &crate::reconcile::LeaseSetup,
    apply: bool,
) -> Result<crate::core::lease::LeaseSet, String> {
    let read = || async {
        crate::reconcile::read_lease(primary, &lease.name)
            .await
            .map_err(|e| format!("cannot read the lease {}: {e}", lease.name))
    };
    let first = read().await?;
    if !apply {
        if let Some((_, l)) = leases(&first).first() {
            errln!("warning: instance {} holds the lease and writes", l.holder);
        }
        return Ok(first);
    }
    let mut observer = Observer::new(lease.lease_time);
    let mut seen = first;
    let mut told = false;
    loop {
        match observer.observe(&seen, tokio::time::Instant::now()) {
            Judgement::Free | Judgement::Expired => return Ok(seen),
            Judgement::Live { holder } => {
                return Err(format!(
                    "instance {holder} holds a live lease on {}: refusing to write beside it",
                    lease.name
                ));
            }
            Judgement::Watching => {
                if let Some((_, l)) = leases(&seen).first().filter(|_| !told) {
                    told = true;
                    errln!(
                        "Lease held by {}: watching it for up to {:?} to tell a live writer from a stale lease...",
                        l.holder,
                        lease.lease_time
                    );
                }
                tokio::time::sleep(lease.lease_time / 6).await;
                seen = read().await?;
            }
        }
    }
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
