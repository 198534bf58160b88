//! The renderer: escaping, states in words, sections present or empty, and
//! the page being the fragment plus a fixed shell.

use std::time::{Duration, SystemTime};

use super::html::{duration_words, time_ago};
use super::*;
use crate::status::{
    DrainStatus, LastResult, LeaseStatus, PublishedStatus, SecondaryStatus, Status, TargetStatus,
    TransitionStatus, ZoneStatus,
};

const HOSTILE: &str = "* BYE <img src=x onerror=alert(1)>";

fn now() -> SystemTime {
    humantime::parse_rfc3339("2025-03-01T12:00:00Z").unwrap()
}

fn target(pool: &str, node: &str, state: &str) -> TargetStatus {
    TargetStatus {
        pool: pool.into(),
        node: node.into(),
        address: "192.0.2.11".into(),
        check: "imap".into(),
        port: 143,
        state: state.into(),
        since: "2025-03-01T11:56:56.000Z".into(),
        last: Some(LastResult {
            result: "ok".into(),
            detail: "* OK ready".into(),
            latency_ms: 1.25,
            at: "2025-03-01T11:59:59.500Z".into(),
        }),
        drain: None,
        dane: None,
        held_out: None,
    }
}

fn status(targets: Vec<TargetStatus>) -> Status {
    Status {
        version: "0.1.0".into(),
        ready: true,
        dry_run: false,
        lease: LeaseStatus {
            holder: Some("dns1".into()),
            held: true,
        },
        last_reconcile: Some("2025-03-01T11:59:58.000Z".into()),
        last_error: None,
        zones: Vec::new(),
        drains: Vec::new(),
        targets,
        transitions: Vec::new(),
    }
}

fn render(status: &Status) -> String {
    page(&PageData::new(status, now()))
}

#[test]
fn esc_replaces_the_five_markup_characters() {
    assert_eq!(
        Esc(HOSTILE).to_string(),
        "* BYE &lt;img src=x onerror=alert(1)&gt;"
    );
    assert_eq!(Esc(r#"a&b"c'd"#).to_string(), "a&amp;b&quot;c&#39;d");
    assert_eq!(Esc("é<ü>").to_string(), "é&lt;ü&gt;");
    assert_eq!(Esc("").to_string(), "");
    assert_eq!(Esc("plain text").to_string(), "plain text");
}

#[test]
fn peer_and_config_text_is_escaped_everywhere() {
    let mut t = target("<b>imap", "mail\"1", "down");
    t.address = "<i>addr".into();
    t.check = "<u>check".into();
    t.state = "<s>state".into();
    let last = t.last.as_mut().unwrap();
    last.detail = format!("greeting refused: {HOSTILE:?}");
    last.result = "<em>bad_greeting".into();
    let mut s = status(vec![t]);
    s.last_error = Some("<svg onload=alert(2)>".into());
    s.lease.holder = Some("<script>alert(3)</script>".into());
    s.version = "<q>".into();
    s.last_reconcile = Some("<not a time>".into());

    for html in [render(&s), fragment(&PageData::new(&s, now()))] {
        for raw in [
            "<img", "<svg", "<b>", "<i>", "<u>", "<s>", "<em>", "<q>", "<not", "mail\"1",
        ] {
            assert!(!html.contains(raw), "{raw} left unescaped in:\n{html}");
        }
        assert!(
            html.contains("greeting refused: &quot;* BYE &lt;img src=x onerror=alert(1)&gt;&quot;")
        );
        assert!(html.contains("&lt;svg onload=alert(2)&gt;"));
        assert!(html.contains("held by this instance (&lt;script&gt;alert(3)&lt;/script&gt;)"));
        assert!(html.contains(r#"data-node="mail&quot;1""#));
        assert!(html.contains("&lt;not a time&gt;"));
    }
    // The page's own script is the only one.
    assert_eq!(render(&s).matches("<script").count(), 1);
    assert_eq!(
        fragment(&PageData::new(&s, now()))
            .matches("<script")
            .count(),
        0
    );
}

#[test]
fn states_are_words_with_a_colour() {
    let s = status(vec![
        target("imap", "a", "up"),
        target("imap", "b", "down"),
        target("imap", "c", "unknown"),
        target("imap", "d", "drained"),
        target("imap", "e", "sideways"),
    ]);
    let html = render(&s);
    for (word, class) in [
        ("up", "up"),
        ("down", "down"),
        ("unknown", "unknown"),
        ("drained", "drained"),
        ("sideways", "other"),
    ] {
        assert!(
            html.contains(&format!(r#"<span class="state s-{class}">{word}</span>"#)),
            "no badge for {word}"
        );
        assert!(html.contains(&format!(r#"data-state="{word}" class="st-{class}""#)));
    }
    assert!(html.contains("1 up, 1 down, 1 unknown, 1 drained, 1 in another state"));
    assert_eq!(state_class("UP"), "other");
}

#[test]
fn a_row_has_since_result_latency_detail_and_probe_age() {
    let html = render(&status(vec![target("imap", "mail1", "up")]));
    assert!(html.contains(r#"<tbody data-pool="imap"><tr class="pool"><th colspan="8">imap <span class="meta">imap check, port 143</span> <span class="counts">1 up</span></th></tr><tr data-node="mail1""#));
    assert!(html.contains(r#"<td><span class="r-ok">ok</span></td><td class="num">1.2 ms</td><td class="detail">* OK ready</td>"#), "{html}");
    assert!(html.contains(r#"<time datetime="2025-03-01T11:56:56.000Z" title="2025-03-01T11:56:56.000Z">3m 4s ago</time>"#));
    assert!(html.contains(">0s ago</time>"), "probe age");

    let mut never = target("imap", "mail2", "unknown");
    never.last = None;
    let html = render(&status(vec![never]));
    assert!(html.contains(r#"<td class="empty" colspan="4">not probed yet</td>"#));
}

#[test]
fn a_node_held_out_by_dane_says_why_beside_its_last_result() {
    let mut held = target("@", "mail1", "up");
    held.held_out = Some("DANE: held out until 2025-03-01 12:02:00 UTC: <key>".into());
    let html = render(&status(vec![held]));
    assert!(
        html.contains(
            r#"<td class="detail">* OK ready; DANE: held out until 2025-03-01 12:02:00 UTC: &lt;key&gt;</td>"#
        ),
        "{html}"
    );
}

#[test]
fn targets_are_grouped_by_pool_in_order() {
    let html = render(&status(vec![
        target("imap", "mail1", "up"),
        target("imap", "mail2", "down"),
        target("pop", "mail1", "up"),
        target("@", "mail1", "unknown"),
    ]));
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("no {needle}"));
    assert_eq!(html.matches("<tbody").count(), 3);
    assert_eq!(html.matches("<thead>").count(), 1);
    assert!(at(r#"data-pool="imap""#) < at(r#"data-pool="pop""#));
    assert!(at(r#"data-pool="pop""#) < at(r#"data-pool="@""#));
    assert!(html.contains(r#"<span class="counts">1 up, 1 down</span>"#));
}

#[test]
fn overview_in_words() {
    let mut s = status(vec![target("imap", "mail1", "down")]);
    let html = render(&s);
    assert!(html.contains(r#"<span class="badge ok">ready</span>"#));
    assert!(html.contains("no: updates are sent"));
    assert!(html.contains("held by this instance (dns1)"));
    assert!(html.contains("<dt>Last error</dt><dd>none</dd>"));
    assert!(html.contains(">2s ago</time>"), "last reconcile");
    assert!(html.contains("<title>pigeon-dns: 1 down</title>"));
    assert!(html.contains(r#"data-title="pigeon-dns: 1 down""#));

    s.ready = false;
    s.dry_run = true;
    s.lease = LeaseStatus {
        holder: Some("dns2".into()),
        held: false,
    };
    s.last_reconcile = None;
    s.last_error = Some("UPDATE refused: REFUSED".into());
    let html = render(&s);
    assert!(html.contains(r#"<span class="badge bad">not ready</span>"#));
    assert!(
        html.contains(
            r#"<span class="badge warn">dry run</span> updates are logged, none is sent"#
        )
    );
    assert!(html.contains("held by dns2 (this instance stands by)"));
    assert!(html.contains("<dt>Last reconcile</dt><dd>none yet</dd>"));
    assert!(html.contains(r#"<span class="error">UPDATE refused: REFUSED</span>"#));
    assert!(html.contains("<title>pigeon-dns: 1 down, not ready</title>"));

    s.lease = LeaseStatus::default();
    assert!(render(&s).contains("<dt>Lease</dt><dd>none</dd>"));
}

#[test]
fn empty_sections() {
    let s = status(vec![]);
    let html = render(&s);
    assert!(html.contains("No targets: no pool is configured."));
    assert!(html.contains("<dt>Targets</dt><dd>no targets</dd>"));
    assert!(html.contains("<title>pigeon-dns: no targets</title>"));
    // Sections without data are left out...
    for heading in ["Zones", "Published records", "transitions</h2>"] {
        assert!(!html.contains(heading), "{heading} shown without data");
    }
    // ...and with an empty list they say so.
    let data = PageData {
        zones: Some(&[]),
        records: Some(&[]),
        transitions: Some(&[]),
        ..PageData::new(&s, now())
    };
    let html = fragment(&data);
    assert!(html.contains("<h2>Zones</h2><p class=\"empty\">No zones.</p>"));
    assert!(html.contains("<h2>Published records</h2><p class=\"empty\">No pools.</p>"));
    assert!(
        html.contains("<h2>Last 50 transitions</h2><p class=\"empty\">No transitions yet.</p>")
    );
}

#[test]
fn zones_records_and_transitions_render_their_data() {
    let s = status(vec![]);
    let zones = [ZoneView {
        zone: "example.com".into(),
        primary: "192.0.2.53:53".into(),
        primary_state: "down".into(),
        primary_detail: Some("<timeout>".into()),
        last_reconcile: Some("2025-03-01T11:59:30.000Z".into()),
        serial: Some(2025030101),
        lease_holder: Some("dns1".into()),
        secondaries: vec![
            SecondaryView {
                address: "192.0.2.54:53".into(),
                serial: Some(2025030101),
                in_sync: true,
                detail: None,
            },
            SecondaryView {
                address: "192.0.2.55:53".into(),
                serial: None,
                in_sync: false,
                detail: Some("no answer".into()),
            },
        ],
    }];
    let records = [PoolRecords {
        pool: "imap".into(),
        name: "imap.example.com.".into(),
        records: vec!["A 192.0.2.11".into(), "A <192.0.2.12>".into()],
        all_down: true,
    }];
    let transitions: Vec<TransitionView> = (0..60)
        .map(|i| TransitionView {
            at: "2025-03-01T11:59:00.000Z".into(),
            pool: "imap".into(),
            node: format!("mail{i}"),
            address: "192.0.2.11".into(),
            from: "up".into(),
            to: "down".into(),
            reason: "<connection refused>".into(),
        })
        .collect();
    let data = PageData {
        zones: Some(&zones),
        records: Some(&records),
        transitions: Some(&transitions),
        ..PageData::new(&s, now())
    };
    let html = fragment(&data);
    assert!(html.contains(r#"<tr data-zone="example.com" data-state="down"><td>example.com</td><td>192.0.2.53:53</td><td><span class="state s-down">down</span> <span class="detail">&lt;timeout&gt;</span><div class="meta">last reconcile <time datetime="2025-03-01T11:59:30.000Z" title="2025-03-01T11:59:30.000Z">30s ago</time></div></td><td class="num">2025030101</td><td>dns1</td>"#), "{html}");
    assert!(html.contains(r#"<li data-secondary="192.0.2.54:53" data-in-sync="true">192.0.2.54:53 serial 2025030101 <span class="badge ok">in sync</span></li>"#));
    assert!(html.contains(r#"<li data-secondary="192.0.2.55:53" data-in-sync="false">192.0.2.55:53 serial none <span class="badge bad">behind</span> <span class="detail">no answer</span></li>"#));
    assert!(html.contains(
        r#"<div class="record">A 192.0.2.11</div><div class="record">A &lt;192.0.2.12&gt;</div>"#
    ));
    assert!(html.contains("the all_down policy is in force"));
    assert_eq!(
        html.matches("&lt;connection refused&gt;").count(),
        TRANSITIONS_SHOWN
    );
    assert!(html.contains(">mail49<") && !html.contains(">mail50<"));
    assert!(html.contains(">1m 0s ago</time>"));
    // The order an operator reads: overview, zones, targets, records, transitions.
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("no {needle}"));
    assert!(at("class=\"overview\"") < at("class=\"zones\""));
    assert!(at("class=\"zones\"") < at("class=\"targets\""));
    assert!(at("class=\"targets\"") < at("class=\"records\""));
    assert!(at("class=\"records\"") < at("class=\"transitions\""));
}

#[test]
fn the_page_is_the_fragment_in_a_fixed_shell() {
    let s = status(vec![target("imap", "mail1", "up")]);
    let data = PageData::new(&s, now());
    let page = page(&data);
    let live = format!("<main id=\"live\">{}</main>", fragment(&data));
    assert!(page.contains(&live), "the page does not embed the fragment");
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains(&format!("<style>{STYLE}</style>")));
    assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
    assert!(page.contains(r#"<noscript><meta http-equiv="refresh" content="10"></noscript>"#));
    // Nothing is loaded from elsewhere.
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
    assert!(!SCRIPT.contains("</script") && !STYLE.contains("</style"));
    assert!(
        SCRIPT.contains(FRAGMENT_QUERY),
        "the script asks for another query"
    );
}

#[test]
fn csp_allows_only_the_inline_style_and_script_by_hash() {
    // SHA-256 of the empty string, base64: a known answer.
    assert_eq!(
        sha256_source(""),
        "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    let csp = content_security_policy();
    assert!(csp.starts_with("default-src 'none'; "));
    assert!(csp.contains(&format!("script-src '{}';", sha256_source(SCRIPT))));
    assert!(csp.contains(&format!("style-src '{}';", sha256_source(STYLE))));
    assert!(csp.contains("connect-src 'self';"));
    assert!(!csp.contains("unsafe"));
}

#[test]
fn fragment_query() {
    assert!(wants_fragment("fragment=1"));
    assert!(wants_fragment("x=2&fragment=1"));
    assert!(!wants_fragment("fragment=0"));
    assert!(!wants_fragment("xfragment=1"));
    assert!(!wants_fragment(""));
}

#[test]
fn ages_in_two_units() {
    assert_eq!(duration_words(Duration::ZERO), "0s");
    assert_eq!(duration_words(Duration::from_millis(59_999)), "59s");
    assert_eq!(duration_words(Duration::from_secs(61)), "1m 1s");
    assert_eq!(duration_words(Duration::from_secs(3600)), "1h 0m");
    assert_eq!(duration_words(Duration::from_secs(90_061)), "1d 1h");

    let mut out = String::new();
    time_ago(&mut out, now(), "2025-03-01T12:00:05Z");
    assert!(out.ends_with(">0s ago</time>"), "a future time: {out}");
    out.clear();
    time_ago(&mut out, now(), "yesterday <b>");
    assert_eq!(out, "yesterday &lt;b&gt;");
}

#[test]
fn a_drained_target_shows_drained_in_words_with_its_health_beside() {
    let mut t = target("imap", "mail1", "up");
    t.drain = Some("runtime".into());
    let mut s = status(vec![t, target("imap", "mail2", "up")]);
    s.drains = vec![DrainStatus {
        node: "mail1".into(),
        pool: "*".into(),
        source: "runtime".into(),
        by: Some("alice@dns1".into()),
        at: Some("2025-03-01T11:00:00Z".into()),
        reason: Some("<b>upgrade</b>".into()),
    }];
    let html = render(&s);
    assert!(html.contains(r#"<tr data-node="mail1" data-address="192.0.2.11" data-state="drained" class="st-drained"><td>mail1</td><td>192.0.2.11</td><td><span class="state s-drained">drained</span> <span class="meta" data-health="up">runtime drain; health: up</span>"#), "{html}");
    assert!(html.contains("<title>pigeon-dns: 1 up, 1 drained</title>"));
    assert!(html.contains(r#"<div class="drain" data-drain="mail1" data-source="runtime"><span class="state s-drained">drained</span> mail1 in every pool <span class="meta">(runtime, by alice@dns1 at 2025-03-01T11:00:00Z)</span> <span class="detail">&lt;b&gt;upgrade&lt;/b&gt;</span></div>"#), "{html}");
    assert!(render(&status(vec![])).contains("<dt>Drained</dt><dd>none</dd>"));
}

#[test]
fn the_views_come_from_the_status_snapshot() {
    let mut s = status(vec![]);
    s.zones = vec![ZoneStatus {
        zone: "example.com".into(),
        primary: "127.0.0.1:53".into(),
        serial: Some(7),
        lease: LeaseStatus {
            holder: Some("dns1".into()),
            held: true,
        },
        last_reconcile: Some("2025-03-01T11:59:58.000Z".into()),
        last_error: None,
        secondaries: vec![SecondaryStatus {
            server: "127.0.0.2:53".into(),
            serial: Some(6),
            up: true,
            in_sync: false,
            behind_seconds: 3.2,
        }],
        published: Some(vec![PublishedStatus {
            pool: "imap".into(),
            name: "imap.example.com.".into(),
            records: vec!["A 192.0.2.11".into()],
            all_down: false,
        }]),
    }];
    s.transitions = vec![TransitionStatus {
        at: "2025-03-01T11:59:00.000Z".into(),
        pool: "imap".into(),
        node: "mail2".into(),
        address: "192.0.2.12".into(),
        from: "up".into(),
        to: "down".into(),
        result: "refused".into(),
        detail: "connection refused".into(),
    }];
    let views = Views::of(&s);
    let html = fragment(&views.data(&s, now()));
    assert!(
        html.contains(r#"<tr data-zone="example.com" data-state="up">"#),
        "{html}"
    );
    assert!(html.contains("serial 6 <span class=\"badge bad\">behind</span> <span class=\"detail\">behind for 3 s</span>"));
    assert!(html.contains(r#"<tr data-pool="imap"><td>imap</td><td>imap.example.com.</td><td><div class="record">A 192.0.2.11</div>"#));
    assert!(html.contains("refused: connection refused"));
    // Before any zone was read (a standby): no records section.
    s.zones[0].published = None;
    let views = Views::of(&s);
    assert!(views.records.is_none());
    assert!(!fragment(&views.data(&s, now())).contains("Published records"));
}
