//! `plan`: probes once (one result decides, no rise/fall), reads the owned
//! names from each zone's primary through the reconciler's own pass (with
//! the drain marks read once: drained nodes are left out), and
//! prints the UPDATE it would send as an nsupdate script, one block per
//! zone; warnings go to stderr. `--apply` sends it with the reconciler's
//! writer, fenced by the lease as observed (never taking it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::ExitCode;
use super::output::{errln, out, print_diagnostics};
use super::probe::probe_all;
use crate::app::{drain_source, host_name, lease_setup, primary, tlsa_cache, zone_setup};
use crate::config;
use crate::core::drain::ALL_POOLS;
use crate::core::health::State;
use crate::core::lease::{Judgement, LeaseSet, Observer, leases};
use crate::metrics::Metrics;
use crate::reconcile::{LeaseSetup, Primary, Writer, ZoneReconciler, read_lease};
use crate::status::Board;
use crate::targets::Layout;

/// `plan`: probe once (one result decides), read the owned names, print the
/// UPDATE as an nsupdate script; `--apply` sends it, fenced by the lease as
/// observed (never taking it).
pub async fn plan(path: &Path, apply: bool) -> ExitCode {
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            print_diagnostics(&errors);
            return ExitCode::Failure;
        }
    };
    print_diagnostics(&full.warnings);
    let keys = full.keys;
    let config = full.config;
    let host = host_name();
    let layout = Layout::new(&config, &host);
    let tlsa = tlsa_cache(&config, &keys, None);
    let outcomes = probe_all(&layout.targets, tlsa).await;
    let metrics = match Metrics::new(prometheus::Registry::new()) {
        Ok(m) => m,
        Err(error) => {
            errln!("error: {error}");
            return ExitCode::Failure;
        }
    };
    let mut health = HashMap::new();
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
    // Drained nodes are never published, whoever sends the UPDATE.
    let source = drain_source(&config, &keys[0]);
    let drains = match source.read().await {
        Ok(drains) => drains,
        Err(error) => {
            errln!(
                "error: cannot read the drain marks at {}: {error}",
                source.name
            );
            return ExitCode::Failure;
        }
    };
    for mark in &drains.marks {
        errln!(
            "note: {} is drained in {} (by {}: {})",
            mark.node,
            if mark.pool == ALL_POOLS {
                "every pool"
            } else {
                &mark.pool
            },
            mark.by,
            mark.reason
        );
    }
    let mut code = ExitCode::Ok;
    for zone in &layout.zones {
        let primary = primary(&config.zones[zone.index], &keys[zone.index]);
        let lease = lease_setup(&config, zone);
        let observed = match &lease {
            None => None,
            Some(lease) => match observe_lease(&primary, lease, apply).await {
                Ok(set) => Some((lease.name.as_str(), set)),
                Err(message) => {
                    errln!("error: {message}");
                    return ExitCode::Failure;
                }
            },
        };
        let mut reconciler = ZoneReconciler::new(
            zone_setup(&config, zone),
            zone.shape.clone(),
            primary,
            Writer::one_shot(observed, &host),
            metrics.clone(),
            Arc::new(Board::default()),
            health.clone(),
            zone.targets,
        )
        .with_drains(drains.clone())
        .managing(zone.tlsa.clone(), None, config.zones[zone.index].timeout);
        for (t, o) in layout.targets.iter().zip(&outcomes) {
            if let Some(key) = o.dane.as_ref().and_then(|d| d.key) {
                reconciler.served_key(t.id.clone(), key);
            }
        }
        code = worst(code, plan_zone(&mut reconciler, apply).await);
    }
    if code == ExitCode::ChangesPending && apply {
        return ExitCode::Failure;
    }
    code
}

/// One zone's part of `plan`: its script on stdout, its problems on stderr.
async fn plan_zone<P: Primary>(reconciler: &mut ZoneReconciler<P>, apply: bool) -> ExitCode {
    let now = tokio::time::Instant::now();
    let plan = match reconciler.plan(now).await {
        Ok(p) => p,
        Err(error) => {
            errln!("error: {error}");
            return ExitCode::Failure;
        }
    };
    for m in &plan.missing {
        errln!("warning: {m}");
    }
    for o in &plan.oversize {
        errln!("warning: {o}");
    }
    for why in &plan.held_out {
        errln!("warning: {why}");
    }
    for c in &plan.cnames {
        errln!("error: {c}");
    }
    let blocked = if plan.cnames.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Failure
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
            return ExitCode::Failure;
        }
    }
    if !apply {
        return worst(blocked, ExitCode::ChangesPending);
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
            ExitCode::Failure
        }
        Err(error) => {
            errln!("error: {error}");
            ExitCode::Failure
        }
    }
}

/// Reads the lease of a zone for `plan`. With `--apply`, watches it (never
/// by the clock) until it is free, or has not changed for a lease time
/// (expired), and refuses while a live writer renews it.
async fn observe_lease<P: Primary>(
    primary: &P,
    lease: &LeaseSetup,
    apply: bool,
) -> Result<LeaseSet, String> {
    let read = || async {
        read_lease(primary, &lease.name)
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

/// The status of `plan` over its zones: an error anywhere is an error (1),
/// then changes pending anywhere (2), then nothing to do (0).
fn worst(a: ExitCode, b: ExitCode) -> ExitCode {
    let rank = |c: ExitCode| match c {
        ExitCode::Failure | ExitCode::InvalidConfig => 2,
        ExitCode::ChangesPending => 1,
        ExitCode::Ok => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_in_one_zone_outweighs_changes_pending_in_another() {
        assert_eq!(
            worst(ExitCode::ChangesPending, ExitCode::Failure),
            ExitCode::Failure
        );
        assert_eq!(
            worst(ExitCode::Failure, ExitCode::ChangesPending),
            ExitCode::Failure
        );
        assert_eq!(
            worst(ExitCode::Ok, ExitCode::ChangesPending),
            ExitCode::ChangesPending
        );
        assert_eq!(worst(ExitCode::Ok, ExitCode::Ok), ExitCode::Ok);
    }
}
