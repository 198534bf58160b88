//! One function per section of the page, each from plain data to HTML.
//!
//! The overview and the targets take the `/status` snapshot ([`Status`]);
//! the zones and secondaries, the published records and the transitions
//! take the view types below, made from the same snapshot (`views`).

use std::time::SystemTime;

use super::html::{Esc, html, latency, time_ago};
use crate::core::drain::ALL_POOLS;
use crate::status::{DrainStatus, Status, TargetStatus};

/// At most this many transitions are shown (the newest).
pub const TRANSITIONS_SHOWN: usize = 50;

/// One zone: its primary, the lease, its secondaries.
#[derive(Clone, Debug, Default)]
pub struct ZoneView {
    pub zone: String,
    /// The primary's `host:port`.
    pub primary: String,
    /// `up` (answers and accepts updates), `down` (failing), `unknown`.
    pub primary_state: String,
    /// Why the primary is not up (its last error).
    pub primary_detail: Option<String>,
    /// RFC 3339: the last pass that succeeded (on a standby: the last read
    /// of the lease).
    pub last_reconcile: Option<String>,
    /// The primary's SOA serial, once read.
    pub serial: Option<u32>,
    /// The instance that writes to this zone (`[ha]`: one lease per zone).
    pub lease_holder: Option<String>,
    pub secondaries: Vec<SecondaryView>,
}

/// One secondary of a zone, as its SOA check last saw it.
#[derive(Clone, Debug, Default)]
pub struct SecondaryView {
    /// `host:port`.
    pub address: String,
    /// Its SOA serial; `None` when it did not answer.
    pub serial: Option<u32>,
    /// Its serial is the primary's.
    pub in_sync: bool,
    /// Why it is not in sync (no answer, a refusal), when known.
    pub detail: Option<String>,
}

/// The records a pool publishes now.
#[derive(Clone, Debug, Default)]
pub struct PoolRecords {
    pub pool: String,
    /// The owner name, absolute (`imap.example.com.`).
    pub name: String,
    /// Presentation text, one record each (`A 192.0.2.11`,
    /// `MX 10 mail1.example.com.`).
    pub records: Vec<String>,
    /// The pool's `all_down` policy is in force: these records are not only
    /// those of healthy nodes.
    pub all_down: bool,
}

/// One decided change of a target's state.
#[derive(Clone, Debug, Default)]
pub struct TransitionView {
    /// RFC 3339.
    pub at: String,
    pub pool: String,
    pub node: String,
    pub address: String,
    pub from: String,
    pub to: String,
    /// The probe result that decided it (`connection refused`, ...).
    pub reason: String,
}

/// The CSS class of a state word. The words are the daemon's (`up`, `down`,
/// `unknown`, and `drained` for nodes in maintenance); one the page does
/// not know is shown as it is, without a colour.
pub fn state_class(word: &str) -> &'static str {
    match word {
        "up" => "up",
        "down" => "down",
        "unknown" => "unknown",
        "drained" => "drained",
        _ => "other",
    }
}

/// A state as a word in a coloured badge: the word carries the meaning, the
/// colour is for the glance.
fn state_badge(out: &mut String, word: &str) {
    html!(
        out,
        r#"<span class="state s-{}">{}</span>"#,
        state_class(word),
        Esc(word)
    );
}

/// How many targets are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub up: usize,
    pub down: usize,
    pub unknown: usize,
    pub drained: usize,
    pub other: usize,
}

impl Counts {
    pub fn of<'a>(states: impl IntoIterator<Item = &'a str>) -> Counts {
        let mut c = Counts::default();
        for s in states {
            match state_class(s) {
                "up" => c.up += 1,
                "down" => c.down += 1,
                "unknown" => c.unknown += 1,
                "drained" => c.drained += 1,
                _ => c.other += 1,
            }
        }
        c
    }

    /// `2 up, 1 down` (states with no target left out; `no targets`).
    pub fn words(&self) -> String {
        let parts: Vec<String> = [
            (self.up, "up"),
            (self.down, "down"),
            (self.unknown, "unknown"),
            (self.drained, "drained"),
            (self.other, "in another state"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, word)| format!("{n} {word}"))
        .collect();
        if parts.is_empty() {
            "no targets".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The state a target is shown in: `drained` while drained (whatever its
/// health, shown beside), else its health.
pub fn shown_state(t: &TargetStatus) -> &str {
    if t.drain.is_some() {
        "drained"
    } else {
        &t.state
    }
}

/// The browser tab's title: what needs attention first.
pub fn title(status: &Status) -> String {
    let counts = Counts::of(status.targets.iter().map(shown_state));
    let ready = if status.ready { "" } else { ", not ready" };
    format!("pigeon-dns: {}{ready}", counts.words())
}

/// Readiness, dry run, the lease, the last reconcile and error, the counts.
/// `data-title` carries the tab title, for the live refresh to update it.
pub fn overview(out: &mut String, status: &Status, now: SystemTime) {
    html!(
        out,
        r#"<section class="overview" data-title="{}"><dl>"#,
        Esc(&title(status))
    );

    out.push_str("<div><dt>Readiness</dt><dd>");
    if status.ready {
        out.push_str(r#"<span class="badge ok">ready</span>"#);
    } else {
        out.push_str(r#"<span class="badge bad">not ready</span>"#);
    }
    out.push_str("</dd></div>");

    out.push_str("<div><dt>Dry run</dt><dd>");
    if status.dry_run {
        out.push_str(r#"<span class="badge warn">dry run</span> updates are logged, none is sent"#);
    } else {
        out.push_str("no: updates are sent");
    }
    out.push_str("</dd></div>");

    out.push_str("<div><dt>Lease</dt><dd>");
    match (&status.lease.holder, status.lease.held) {
        (Some(h), true) => html!(out, "held by this instance ({})", Esc(h)),
        (Some(h), false) => html!(out, "held by {} (this instance stands by)", Esc(h)),
        (None, _) => out.push_str("none"),
    }
    out.push_str("</dd></div>");

    out.push_str("<div><dt>Last reconcile</dt><dd>");
    match &status.last_reconcile {
        Some(t) => time_ago(out, now, t),
        None => out.push_str("none yet"),
    }
    out.push_str("</dd></div>");

    out.push_str("<div><dt>Last error</dt><dd>");
    match &status.last_error {
        Some(e) => html!(out, r#"<span class="error">{}</span>"#, Esc(e)),
        None => out.push_str("none"),
    }
    out.push_str("</dd></div>");

    let counts = Counts::of(status.targets.iter().map(shown_state));
    html!(
        out,
        "<div><dt>Targets</dt><dd>{}</dd></div>",
        Esc(&counts.words())
    );
    drains(out, &status.drains);
    html!(
        out,
        r#"<div><dt>Updated</dt><dd><time datetime="{t}">{t}</time> (version {})</dd></div>"#,
        Esc(&status.version),
        t = Esc(&crate::status::rfc3339(now))
    );
    out.push_str("</dl></section>");
}

/// Every drain, with its source, who, when and why.
fn drains(out: &mut String, drains: &[DrainStatus]) {
    out.push_str("<div><dt>Drained</dt><dd>");
    if drains.is_empty() {
        out.push_str("none");
    }
    for d in drains {
        let pools = if d.pool == ALL_POOLS {
            "every pool".to_string()
        } else {
            format!("pool {}", d.pool)
        };
        html!(
            out,
            r#"<div class="drain" data-drain="{n}" data-source="{s}"><span class="state s-drained">drained</span> {n} in {} <span class="meta">({s}"#,
            Esc(&pools),
            n = Esc(&d.node),
            s = Esc(&d.source),
        );
        if let Some(by) = &d.by {
            html!(out, ", by {}", Esc(by));
        }
        if let Some(at) = &d.at {
            html!(out, " at {}", Esc(at));
        }
        out.push_str(")</span>");
        if let Some(reason) = d.reason.as_deref().filter(|r| !r.is_empty()) {
            html!(out, r#" <span class="detail">{}</span>"#, Esc(reason));
        }
        out.push_str("</div>");
    }
    out.push_str("</dd></div>");
}

/// One table, one body per pool (so columns line up across pools): each
/// node's addresses with state, since when, and the last probe (result,
/// latency, detail). Pools in config order.
pub fn targets(out: &mut String, targets: &[TargetStatus], now: SystemTime) {
    out.push_str(r#"<section class="targets"><h2>Targets</h2>"#);
    if targets.is_empty() {
        out.push_str(r#"<p class="empty">No targets: no pool is configured.</p></section>"#);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Node</th><th>Address</th><th>State</th><th>Since</th>\
         <th>Last result</th><th class=\"num\">Latency</th><th>Detail</th><th>Probed</th>\
         </tr></thead>",
    );
    // The board lists targets by pool, node and address, so a pool's
    // targets are adjacent.
    for pool in targets.chunk_by(|a, b| a.pool == b.pool) {
        pool_body(out, pool, now);
    }
    out.push_str("</table></section>");
}

fn pool_body(out: &mut String, targets: &[TargetStatus], now: SystemTime) {
    let Some(first) = targets.first() else {
        return;
    };
    let counts = Counts::of(targets.iter().map(shown_state));
    html!(
        out,
        r#"<tbody data-pool="{p}"><tr class="pool"><th colspan="8">{p} <span class="meta">{} check, port {}</span> <span class="counts">{}</span></th></tr>"#,
        Esc(&first.check),
        first.port,
        Esc(&counts.words()),
        p = Esc(&first.pool),
    );
    for t in targets {
        target_row(out, t, now);
    }
    out.push_str("</tbody>");
}

fn target_row(out: &mut String, t: &TargetStatus, now: SystemTime) {
    let shown = shown_state(t);
    html!(
        out,
        r#"<tr data-node="{n}" data-address="{a}" data-state="{s}" class="st-{}"><td>{n}</td><td>{a}</td><td>"#,
        state_class(shown),
        n = Esc(&t.node),
        a = Esc(&t.address),
        s = Esc(shown),
    );
    state_badge(out, shown);
    if let Some(source) = &t.drain {
        // Still probed: its health stays visible.
        html!(
            out,
            r#" <span class="meta" data-health="{h}">{} drain; health: {h}</span>"#,
            Esc(source),
            h = Esc(&t.state),
        );
    }
    out.push_str("</td><td>");
    time_ago(out, now, &t.since);
    out.push_str("</td>");
    match &t.last {
        Some(last) => {
            let class = if last.result == "ok" {
                "r-ok"
            } else {
                "r-fail"
            };
            html!(
                out,
                r#"<td><span class="{class}">{}</span></td><td class="num">{}</td><td class="detail">{}</td><td>"#,
                Esc(&last.result),
                latency(last.latency_ms),
                Esc(&match &t.held_out {
                    Some(why) => format!("{}; {why}", last.detail),
                    None => last.detail.clone(),
                }),
            );
            time_ago(out, now, &last.at);
            out.push_str("</td>");
        }
        None => out.push_str(r#"<td class="empty" colspan="4">not probed yet</td>"#),
    }
    out.push_str("</tr>");
}

/// Per zone: the primary's state and serial, the lease holder, and each
/// secondary's serial and whether it is in sync.
pub fn zones(out: &mut String, zones: &[ZoneView], now: SystemTime) {
    out.push_str(r#"<section class="zones"><h2>Zones</h2>"#);
    if zones.is_empty() {
        out.push_str(r#"<p class="empty">No zones.</p></section>"#);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Zone</th><th>Primary</th><th>State</th><th class=\"num\">Serial</th>\
         <th>Lease holder</th><th>Secondaries</th></tr></thead><tbody>",
    );
    for z in zones {
        html!(
            out,
            r#"<tr data-zone="{zone}" data-state="{s}"><td>{zone}</td><td>{}</td><td>"#,
            Esc(&z.primary),
            zone = Esc(&z.zone),
            s = Esc(&z.primary_state),
        );
        state_badge(out, &z.primary_state);
        if let Some(d) = &z.primary_detail {
            html!(out, r#" <span class="detail">{}</span>"#, Esc(d));
        }
        out.push_str(r#"<div class="meta">last reconcile "#);
        match &z.last_reconcile {
            Some(t) => time_ago(out, now, t),
            None => out.push_str("none yet"),
        }
        out.push_str("</div>");
        html!(
            out,
            r#"</td><td class="num">{}</td><td>{}</td><td>"#,
            serial(z.serial),
            Esc(z.lease_holder.as_deref().unwrap_or("none")),
        );
        if z.secondaries.is_empty() {
            out.push_str("none checked");
        } else {
            out.push_str(r#"<ul class="secondaries">"#);
            for s in &z.secondaries {
                secondary(out, s);
            }
            out.push_str("</ul>");
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>");
}

fn secondary(out: &mut String, s: &SecondaryView) {
    let (class, word) = if s.in_sync {
        ("ok", "in sync")
    } else {
        ("bad", "behind")
    };
    html!(
        out,
        r#"<li data-secondary="{a}" data-in-sync="{}">{a} serial {} <span class="badge {class}">{word}</span>"#,
        s.in_sync,
        serial(s.serial),
        a = Esc(&s.address),
    );
    if let Some(d) = &s.detail {
        html!(out, r#" <span class="detail">{}</span>"#, Esc(d));
    }
    out.push_str("</li>");
}

fn serial(serial: Option<u32>) -> String {
    serial.map_or_else(|| "none".into(), |s| s.to_string())
}

/// Per pool, the records it publishes now.
pub fn records(out: &mut String, pools: &[PoolRecords]) {
    out.push_str(r#"<section class="records"><h2>Published records</h2>"#);
    if pools.is_empty() {
        out.push_str(r#"<p class="empty">No pools.</p></section>"#);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Pool</th><th>Name</th><th>Records</th></tr></thead><tbody>",
    );
    for p in pools {
        html!(
            out,
            r#"<tr data-pool="{pool}"><td>{pool}</td><td>{}</td><td>"#,
            Esc(&p.name),
            pool = Esc(&p.pool),
        );
        if p.records.is_empty() {
            out.push_str(r#"<span class="empty">none</span>"#);
        }
        for r in &p.records {
            html!(out, r#"<div class="record">{}</div>"#, Esc(r));
        }
        if p.all_down {
            out.push_str(
                r#"<div><span class="badge warn">all down</span> the all_down policy is in force</div>"#,
            );
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></section>");
}

/// The newest transitions first (as given), at most [`TRANSITIONS_SHOWN`].
pub fn transitions(out: &mut String, transitions: &[TransitionView], now: SystemTime) {
    html!(
        out,
        r#"<section class="transitions"><h2>Last {TRANSITIONS_SHOWN} transitions</h2>"#
    );
    if transitions.is_empty() {
        out.push_str(r#"<p class="empty">No transitions yet.</p></section>"#);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>When</th><th>Pool</th><th>Node</th><th>Address</th>\
         <th>From</th><th>To</th><th>Reason</th></tr></thead><tbody>",
    );
    for t in transitions.iter().take(TRANSITIONS_SHOWN) {
        out.push_str("<tr><td>");
        time_ago(out, now, &t.at);
        html!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td><td>",
            Esc(&t.pool),
            Esc(&t.node),
            Esc(&t.address),
        );
        state_badge(out, &t.from);
        out.push_str("</td><td>");
        state_badge(out, &t.to);
        html!(
            out,
            r#"</td><td class="detail">{}</td></tr>"#,
            Esc(&t.reason)
        );
    }
    out.push_str("</tbody></table></section>");
}
