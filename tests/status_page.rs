//! The status page at `GET /`, end to end: real BIND, real dovecot, the
//! daemon, and a headless Chromium reading the page as an operator would.
//! The page shows every pool × node × address with its state in words, the
//! records published, the transitions and a drained node in words; it
//! follows a node going down within 2 s without a reload; a hostile
//! greeting shows as text, never as markup, in the page and in the live
//! fragment; without JavaScript the page still shows everything; and a
//! screenshot of it goes to `target/status-page.png`, and with
//! `UPDATE_SCREENSHOT=1` to `docs/status-page.png` for the documentation.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{Behavior, Browser, Daemon, FakeServer, Lab, NodeSpec, Page, PoolSpec, wait_until};
use pigeon_dns::status::Status;
use serde_json::json;

/// Deadline for anything that takes a few probe rounds and one UPDATE.
const CONVERGE: Duration = Duration::from_secs(20);
/// A change must show this soon, without a reload (the page refreshes its
/// fragment every second).
const LIVE: Duration = Duration::from_secs(2);
/// What the page must show as text: an IMAP refusal carrying markup.
const HOSTILE_GREETING: &str =
    "* BYE <img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";

/// JavaScript: the rows of `node`'s targets.
fn rows_of(node: &str) -> String {
    format!("[...document.querySelectorAll('tr[data-node=\"{node}\"]')]")
}

/// JavaScript: `node` has `n` rows, each in `state` by its data and by the
/// word in its state cell.
fn node_in_state(node: &str, n: usize, state: &str) -> String {
    format!(
        "(rows => rows.length === {n} && rows.every(r => r.dataset.state === '{state}' \
         && r.querySelector('.state').innerText === '{state}'))({})",
        rows_of(node)
    )
}

/// Marks the live fragment's first element; it is gone once the page has
/// swapped in a new fragment.
fn mark_fragment(page: &Page) {
    page.eval("document.querySelector('#live > section').dataset.stale = '1'");
}

fn wait_fragment_swapped(page: &Page) {
    page.wait_for(
        "a new fragment to be swapped in",
        "document.querySelector('#live') !== null && document.querySelector('[data-stale]') === null",
        LIVE,
    );
}

/// A GET with its headers (lower-case names): `(status, headers, body)`.
fn get(addr: SocketAddr, path: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn the_page_shows_the_cluster_and_follows_a_node_going_down_without_a_reload() {
    let mut lab = Lab::start(2);
    let p = lab.cluster.ports;
    let cfg = lab
        .config()
        .ha("dns1", "10s")
        .pool(PoolSpec::a("imap", "imap").port(p.imap))
        .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
        .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission));
    let path = lab.write_config(&cfg);
    let daemon = Daemon::spawn(&path, cfg.http_addr());
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    let url = format!("http://{}/", lab.http_addr(0));

    let browser = Browser::start();
    let page = browser.new_page();
    page.set_viewport(1200, 800);
    page.goto(&url);
    for node in ["mail1", "mail2"] {
        page.wait_for(
            &format!("{node}'s three targets up"),
            &node_in_state(node, 3, "up"),
            CONVERGE,
        );
    }
    let text = page.text();
    println!("page text:\n{text}");
    let mail1 = lab.node("mail1").ip().to_string();
    let mail2 = lab.node("mail2").ip().to_string();
    for expected in [
        "pigeon-dns",
        "Readiness\nready",
        "Dry run\nno: updates are sent",
        "Lease\nheld by this instance (dns1)",
        "Last error\nnone",
        "Targets\n6 up",
        "imap imap check",
        "pop pop3 check",
        "@ smtp check",
        "mail1",
        "mail2",
        &mail1,
        &mail2,
        "* OK",
    ] {
        assert!(text.contains(expected), "{expected:?} not on the page");
    }
    assert!(!text.contains("not ready"), "shown not ready");
    assert_eq!(page.eval_string("document.title"), "pigeon-dns: 6 up");
    assert_eq!(
        page.eval_string("document.getElementById('conn').textContent"),
        "live"
    );

    // Live: the fragment is swapped in, and the page itself stays (a value
    // on `window` survives only without a reload).
    page.eval("window.pigeonMarker = 'not reloaded'");
    mark_fragment(&page);
    wait_fragment_swapped(&page);

    lab.node_mut("mail2").stop();
    let took = page.wait_for(
        "mail2's targets shown down",
        &node_in_state("mail2", 3, "down"),
        LIVE,
    );
    println!("mail2 shown down {took:?} after its dovecot stopped");
    assert_eq!(
        page.eval("window.pigeonMarker"),
        json!("not reloaded"),
        "the page was reloaded"
    );
    assert!(page.eval_bool(&node_in_state("mail1", 3, "up")));
    let text = page.text();
    assert!(
        text.contains("connection refused"),
        "no reason shown:\n{text}"
    );
    assert!(text.contains("Targets\n3 up, 3 down"), "{text}");
    page.wait_for(
        "the tab title to follow",
        "document.title === 'pigeon-dns: 3 up, 3 down'",
        LIVE,
    );

    // What the primary holds now, per pool: mail1 only.
    let zone = lab.bind.zone().to_string();
    for (pool, record) in [
        ("imap", format!("A {mail1}")),
        ("@", format!("MX 10 mail1.{zone}.")),
    ] {
        page.wait_for(
            &format!("{pool} published as {record} alone"),
            &format!(
                "(row => row !== null && row.innerText.includes('{record}') \
                 && !row.innerText.includes('{mail2}') && !row.innerText.includes('mail2.'))\
                 (document.querySelector('section.records tr[data-pool=\"{pool}\"]'))"
            ),
            LIVE,
        );
    }
    // The transitions: mail2 went down, with the reason.
    let transitions = page.eval_string("document.querySelector('section.transitions').innerText");
    assert!(
        transitions.lines().any(|l| l.contains("mail2")
            && l.contains(&mail2)
            && l.contains("up\tdown")
            && l.contains("connection refused")),
        "{transitions}"
    );
    let zones = page.eval_string("document.querySelector('section.zones').innerText");
    assert!(
        zones.contains(&zone) && zones.contains(&lab.bind.server()) && zones.contains("dns1"),
        "{zones}"
    );

    // Drained at run time: shown in words and colour, its health beside.
    let out = common::run_cli(&[
        "drain",
        "-c",
        path.to_str().unwrap(),
        "mail2",
        "--reason",
        "new <b>disk</b>",
    ]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let took = page.wait_for(
        "mail2's targets shown drained",
        &node_in_state("mail2", 3, "drained"),
        LIVE,
    );
    println!("mail2 shown drained {took:?} after the command returned");
    let text = page.text();
    for expected in [
        "runtime drain; health: down",
        "Drained\ndrained mail2 in every pool (runtime, by ",
        "new <b>disk</b>",
        "Targets\n3 up, 3 drained",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the page:\n{text}"
        );
    }
    assert_eq!(page.eval("document.querySelectorAll('b').length"), json!(0));

    // Into target/ unless asked to refresh the documentation's picture
    // (`UPDATE_SCREENSHOT=1`): a test run leaves the work tree as it was.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let png_path = if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        root.join("docs/status-page.png")
    } else {
        root.join("target/status-page.png")
    };
    page.screenshot(&png_path);
    let png = std::fs::read(&png_path).expect("read the screenshot");
    assert_eq!(png_size(&png), (1200, 800));
    assert!(
        (10_000..400_000).contains(&png.len()),
        "screenshot of {} bytes",
        png.len()
    );

    // Without JavaScript: the same content, as a snapshot.
    let still = browser.new_page();
    still.disable_javascript();
    still.goto(&url);
    assert!(
        still
            .eval_string("document.getElementById('conn').textContent")
            .contains("without JavaScript"),
        "the page's script ran"
    );
    assert!(still.eval_bool(&node_in_state("mail1", 3, "up")));
    assert!(still.eval_bool(&node_in_state("mail2", 3, "drained")));
    let text = still.text();
    let mail1_a = format!("A {mail1}");
    for expected in [
        "Readiness\nready",
        "Lease\nheld by this instance (dns1)",
        "Targets\n3 up, 3 drained",
        "imap imap check",
        "@ smtp check",
        "connection refused",
        "Published records",
        &mail1_a,
        "Last 50 transitions",
        &mail1,
        &mail2,
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not on the page without JavaScript:\n{text}"
        );
    }
}

#[test]
fn a_hostile_greeting_shows_as_text_never_as_markup() {
    let lab = Lab::start(1);
    let p = lab.cluster.ports;
    let evil = lab.subnet.ip(21);
    let _fake = FakeServer::start(
        SocketAddr::new(evil, p.imap),
        Behavior::Send(format!("{HOSTILE_GREETING}\r\n")),
    );
    let cfg = lab
        .config()
        .node(NodeSpec::new("evil", &[evil]))
        .pool(PoolSpec::a("imap", "imap").port(p.imap));
    let daemon = lab.daemon(&cfg);
    daemon.wait_for_http_status("/readyz", 200, CONVERGE);
    let addr = lab.http_addr(0);

    // The reason as the daemon recorded it.
    let detail = wait_until("the hostile greeting in /status", CONVERGE, || {
        let (_, _, body) = get(addr, "/status");
        let status: Status = serde_json::from_str(&body).ok()?;
        let t = status.targets.iter().find(|t| t.node == "evil")?;
        let last = t.last.as_ref()?;
        (t.state == "down" && last.detail.contains("<img")).then(|| last.detail.clone())
    });
    println!("detail: {detail}");

    for path in ["/", "/?fragment=1"] {
        let (status, headers, body) = get(addr, path);
        assert_eq!(status, 200, "GET {path}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = &headers["content-security-policy"];
        assert!(
            csp.starts_with("default-src 'none';") && csp.contains("script-src 'sha256-"),
            "GET {path}: CSP {csp}"
        );
        assert!(!body.contains("<img"), "GET {path}: raw markup:\n{body}");
        assert!(body.contains("&lt;img src=x onerror="), "GET {path}");
    }

    let browser = Browser::start();
    for javascript in [true, false] {
        let page = browser.new_page();
        if !javascript {
            page.disable_javascript();
        }
        page.goto(&format!("http://{addr}/"));
        page.wait_for(
            "evil shown down",
            &node_in_state("evil", 1, "down"),
            CONVERGE,
        );
        if javascript {
            // The swapped-in fragment is as inert as the first one.
            mark_fragment(&page);
            wait_fragment_swapped(&page);
        }
        let text = page.text();
        assert!(
            text.contains(&detail),
            "the greeting is not shown as text (JavaScript {javascript}):\n{text}"
        );
        assert_eq!(
            page.eval("document.querySelectorAll('img').length"),
            json!(0)
        );
        assert_eq!(page.eval("document.scripts.length"), json!(1));
        assert_eq!(page.eval("window.pwned === undefined"), json!(true));
        assert!(page.eval_bool(&node_in_state("mail1", 1, "up")));
    }
}
