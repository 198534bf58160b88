//! The rows of the results file (one per way and system, one per notify
//! setting at the secondary, one per run of the zone outage part), the
//! line printed after each outage, and the summary printed at the end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::lab::{Settings, Way};
use crate::outages::{Outages, Rep};
use crate::pigeon::notify_settings;
use crate::support::ms;
use crate::support::stats::{censored, summary};
use crate::{NOTIFY_DELAY_DEFAULT, System};

/// The goal of issue #13 for a crash at default settings, at every
/// authoritative server.
pub const EVERY_SERVER_GOAL_MS: f64 = 300.0;

fn show(v: Option<f64>) -> String {
    v.map_or_else(
        || "never (within the limit)".into(),
        |x| format!("{x:.1} ms"),
    )
}

/// The line printed after each outage.
pub fn describe_rep(system: System, way: Way, rep: &Rep, names: &[String]) -> String {
    let by_name = if names.len() > 1 {
        let each: Vec<String> = names
            .iter()
            .zip(&rep.gone_by_name)
            .map(|(n, t)| format!("{n} {}", t.map_or("-".into(), |t| format!("{t:.1}"))))
            .collect();
        format!(" ({})", each.join(", "))
    } else {
        String::new()
    };
    let per_zone = if rep.updates_by_zone.len() > 1 {
        let each: Vec<String> = rep.updates_by_zone.iter().map(|u| u.to_string()).collect();
        format!(", per zone {}", each.join("+"))
    } else {
        String::new()
    };
    format!(
        "{} {} {}: gone after {}{by_name}, back {} after the {}{}{}",
        system.key(),
        way.key(),
        rep.node,
        show(rep.gone_ms),
        show(rep.back_ms),
        way.back_word(),
        rep.replica_gone_ms
            .map(|s| format!("; gone at the secondary after {s:.1} ms"))
            .unwrap_or_default(),
        rep.updates
            .map(|u| format!(
                "; {u} UPDATE(s){per_zone} (longest {} ms), serial +{}",
                rep.update_ms.unwrap_or(f64::NAN),
                rep.serial_delta.map_or("?".into(), |d| d.to_string())
            ))
            .unwrap_or_default(),
    )
}

fn gone_times(o: &Outages) -> Vec<f64> {
    o.reps.iter().filter_map(|r| r.gone_ms).collect()
}

pub fn row(system: System, way: Way, o: &Outages, settings: Option<Settings>) -> Value {
    let gone = gone_times(o);
    let misses = o.reps.len() - gone.len();
    let back: Vec<f64> = o.reps.iter().filter_map(|r| r.back_ms).collect();
    let g = censored(&gone, misses, ms(o.limit));
    let mut r = json!({
        "system": system.key(),
        "way": way.key(),
        "n_planned": o.planned,
        "gave_up": o.gave_up,
        "took_s": crate::support::stats::round1(o.took.as_secs_f64()),
        "gone": g,
        "back": summary(&back),
        "back_word": way.back_word(),
        "updates": o.reps.iter().filter_map(|r| r.updates).collect::<Vec<_>>(),
        "update_ms": summary(&o.reps.iter().filter_map(|r| r.update_ms).collect::<Vec<_>>()),
        "reps": o.reps.iter().map(|r| json!({
            "node": r.node,
            "gone_ms": r.gone_ms.map(crate::support::stats::round1),
            "back_ms": r.back_ms.map(crate::support::stats::round1),
        })).collect::<Vec<_>>(),
    });
    if let Some(s) = settings {
        r["settings"] = s.describe().into();
        r["probe"] = s.to_json();
        r["bound_ms"] = ms(s.bound(way)).into();
        // The goals of issue #6 for the default settings.
        let (goal, met) = match way {
            Way::Crash => {
                let (m, p) = (g["median"].as_f64(), g["p95"].as_f64());
                (
                    "median <= 300 ms, p95 <= 500 ms",
                    m.zip(p).is_some_and(|(m, p)| m <= 300.0 && p <= 500.0),
                )
            }
            Way::BlackHole => {
                let limit = ms(s.interval + s.timeout * s.fall) + 100.0;
                (
                    "p95 <= interval + fall*timeout + 100 ms = 4100 ms",
                    g["p95"].as_f64().is_some_and(|p| p <= limit),
                )
            }
            _ => ("", true),
        };
        if !goal.is_empty() {
            r["goal"] = goal.into();
            r["met"] = judged(met);
        }
    }
    r
}

/// A goal's verdict: none in smoke runs.
fn judged(met: bool) -> Value {
    if crate::support::smoke() {
        Value::Null
    } else {
        met.into()
    }
}

/// How long the secondary may take: past it, "not gone there".
fn replica_limit_ms() -> f64 {
    ms(NOTIFY_DELAY_DEFAULT + Duration::from_secs(10))
}

/// The secondary table's row: one crash run of pigeon-dns with the
/// primary at `notify_delay` (None: BIND's default).
pub fn secondary_row(notify_delay: Option<u32>, o: &Outages) -> Value {
    let both: Vec<(f64, f64)> = o
        .reps
        .iter()
        .filter_map(|r| r.gone_ms.zip(r.replica_gone_ms))
        .collect();
    let primary = gone_times(o);
    let replica_missed = o.reps.len() - both.len();
    let replica: Vec<f64> = both.iter().map(|(_, s)| *s).collect();
    let lag: Vec<f64> = both.iter().map(|(p, s)| s - p).collect();
    let updates: Vec<usize> = o.reps.iter().filter_map(|r| r.updates).collect();
    let serials: Vec<u32> = o.reps.iter().filter_map(|r| r.serial_delta).collect();
    let quiet: Vec<f64> = o.reps.iter().filter_map(|r| r.quiet_ms).collect();
    let at_secondary = censored(&replica, replica_missed, replica_limit_ms());
    let mut row = json!({
        "notify_delay": match notify_delay {
            Some(s) => format!("notify-delay {s}"),
            None => "notify-delay default (5 s)".into(),
        },
        "notify_delay_s": notify_delay.map_or(5, |s| s),
        "named_conf": notify_settings(notify_delay),
        "n": o.reps.len(),
        "primary": summary(&primary),
        "secondary": at_secondary,
        "lag": summary(&lag),
        "updates": updates,
        "serial_deltas": serials,
        "update_ms": summary(&o.reps.iter().filter_map(|r| r.update_ms).collect::<Vec<_>>()),
        "one_update": updates.iter().filter(|&&u| u == 1).count(),
        "quiet_before": if quiet.is_empty() { Value::Null } else { summary(&quiet) },
    });
    // The goal is for the documented named.conf.
    if notify_delay == Some(0) {
        let median = row["secondary"]["median"].as_f64();
        row["goal"] = format!(
            "kill -> gone at every authoritative server: median <= {EVERY_SERVER_GOAL_MS} ms"
        )
        .into();
        row["met"] = judged(median.is_some_and(|m| m <= EVERY_SERVER_GOAL_MS));
    }
    row
}

/// One run of the zone outage part: `zones` are the healthy zones, in the
/// order of the watched names and of [`Rep::updates_by_zone`].
pub fn zone_row(third_zone: &str, o: &Outages, zones: &[String]) -> Value {
    let gone = gone_times(o);
    let limit = ms(o.limit);
    let by_zone: serde_json::Map<String, Value> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let times: Vec<f64> = o
                .reps
                .iter()
                .filter_map(|r| r.gone_by_name.get(i).copied().flatten())
                .collect();
            let misses = o.reps.len() - times.len();
            (z.clone(), censored(&times, misses, limit))
        })
        .collect();
    let replica: Vec<f64> = o.reps.iter().filter_map(|r| r.replica_gone_ms).collect();
    // Every authoritative server: the later of the primary and the secondary.
    let every: Vec<f64> = o
        .reps
        .iter()
        .filter_map(|r| Some(r.gone_ms?.max(r.replica_gone_ms?)))
        .collect();
    let counted: Vec<&Rep> = o.reps.iter().filter(|r| r.updates.is_some()).collect();
    let per_zone: serde_json::Map<String, Value> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let counts: Vec<usize> = counted
                .iter()
                .map(|r| r.updates_by_zone.get(i).copied().unwrap_or(0))
                .collect();
            (z.clone(), counts.into())
        })
        .collect();
    let serials: serde_json::Map<String, Value> = zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let deltas: Vec<Option<u32>> = counted
                .iter()
                .map(|r| r.serial_by_zone.get(i).copied().flatten())
                .collect();
            (z.clone(), json!(deltas))
        })
        .collect();
    let one_per_zone = counted
        .iter()
        .filter(|r| {
            r.updates_by_zone.len() == zones.len() && r.updates_by_zone.iter().all(|&u| u == 1)
        })
        .count();
    let every = censored(&every, o.reps.len() - every.len(), replica_limit_ms());
    json!({
        "third_zone": third_zone,
        "n": o.reps.len(),
        "n_planned": o.planned,
        "gave_up": o.gave_up,
        "took_s": crate::support::stats::round1(o.took.as_secs_f64()),
        "gone": censored(&gone, o.reps.len() - gone.len(), limit),
        "gone_by_zone": by_zone,
        "secondary": censored(&replica, o.reps.len() - replica.len(), replica_limit_ms()),
        "every_server": every,
        "back": summary(&o.reps.iter().filter_map(|r| r.back_ms).collect::<Vec<_>>()),
        "updates_by_zone": per_zone,
        "serial_deltas_by_zone": serials,
        "update_ms": summary(&o.reps.iter().filter_map(|r| r.update_ms).collect::<Vec<_>>()),
        "one_update_per_zone": one_per_zone,
        "counted": counted.len(),
        "goal": format!("at every server: median <= {EVERY_SERVER_GOAL_MS} ms; one UPDATE per zone in at least 19 of 20 runs"),
        "met": judged(
            every["median"].as_f64().is_some_and(|m| m <= EVERY_SERVER_GOAL_MS)
                && one_per_zone * 20 >= counted.len() * 19
                && !counted.is_empty()
        ),
        "reps": o.reps.iter().map(|r| json!({
            "node": r.node,
            "gone_ms": r.gone_ms.map(crate::support::stats::round1),
            "gone_by_zone_ms": r.gone_by_name.iter().map(|t| t.map(crate::support::stats::round1)).collect::<Vec<_>>(),
            "secondary_ms": r.replica_gone_ms.map(crate::support::stats::round1),
            "updates_by_zone": r.updates_by_zone,
        })).collect::<Vec<_>>(),
    })
}

/// The summary printed at the end of the run.
pub fn print(result: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    for r in result["rows"].as_array().into_iter().flatten() {
        let g = &r["gone"];
        println!(
            "{:<13} {:<18} n={:<3} median={:>7} p95={:>7} max={:>7} never={} back median={}",
            r["system"].as_str().unwrap_or(""),
            r["way"].as_str().unwrap_or(""),
            g["n"],
            g["median"],
            g["p95"],
            g["max"],
            g["misses"],
            r["back"]["median"],
        );
    }
    for s in result["secondary"].as_array().into_iter().flatten() {
        println!(
            "secondary, {}: n={} primary median={} secondary median={} p95={} one UPDATE in {} of {} (updates {}, serial +{})",
            s["named_conf"].as_str().unwrap_or(""),
            s["n"],
            s["primary"]["median"],
            s["secondary"]["median"],
            s["secondary"]["p95"],
            s["one_update"],
            s["n"],
            s["updates"],
            s["serial_deltas"],
        );
    }
    let z = &result["zone_outage"];
    for r in z["rows"].as_array().into_iter().flatten() {
        println!(
            "zone outage, third zone {}: n={} gone at the primary (both zones) median={} p95={}; at every server median={} p95={}; one UPDATE per zone in {} of {} (per zone {})",
            r["third_zone"].as_str().unwrap_or(""),
            r["n"],
            r["gone"]["median"],
            r["gone"]["p95"],
            r["every_server"]["median"],
            r["every_server"]["p95"],
            r["one_update_per_zone"],
            r["counted"],
            r["updates_by_zone"],
        );
    }
    let d = &z["difference"];
    if d.is_object() {
        println!(
            "zone outage, silent minus without: median {:+.1} ms, p95 {:+.1} ms (95% interval of the medians' difference {:+.1} .. {:+.1} ms)",
            f(&d["median_ms"]),
            f(&d["p95_ms"]),
            f(&d["median_ci95_ms"][0]),
            f(&d["median_ci95_ms"][1]),
        );
    }
}
