//! The status page at `GET /`: what the daemon believes now, for an operator
//! to read at a glance.
//!
//! Rendered here, on the server, from the same snapshot as `/status`. The
//! page is complete without JavaScript (it then reloads itself every 10 s).
//! With it, a small inline script fetches `GET /?fragment=1` every second
//! and swaps it into `<main>`: the fragment is [`fragment`], the very HTML
//! the page was built with, so there is one renderer and nothing to keep in
//! step in JavaScript.
//!
//! Everything from outside this module's literals is escaped ([`Esc`]).
//! The page loads nothing else: [`content_security_policy`] allows only its
//! own inline style and script (by hash) and fetches to its own origin.

mod html;
mod sections;
#[cfg(test)]
mod tests;
mod views;

use std::sync::LazyLock;
use std::time::SystemTime;

pub use html::Esc;
pub use sections::{
    Counts, PoolRecords, SecondaryView, TRANSITIONS_SHOWN, TransitionView, ZoneView, shown_state,
    state_class,
};
pub use views::Views;

use crate::status::Status;
use html::html;

/// The page's whole style sheet, inline (no external assets, no web fonts).
const STYLE: &str = include_str!("page/style.css");
/// The live refresh, inline; kept apart so its hash can be computed.
const SCRIPT: &str = include_str!("page/live.js");
/// The query that asks for the fragment instead of the page.
pub const FRAGMENT_QUERY: &str = "fragment=1";
/// Without JavaScript, the page reloads itself this often.
const NOSCRIPT_REFRESH_SECS: u32 = 10;

/// What the page shows ([`Views::data`] fills every section from a
/// `/status` snapshot). A section that is `None` is left out (the published
/// records on a standby, which reads none); `Some` of an empty slice shows
/// the section with "none".
#[derive(Clone, Copy, Debug)]
pub struct PageData<'a> {
    pub status: &'a Status,
    /// The clock the ages (`3m 4s ago`) are counted from.
    pub now: SystemTime,
    pub zones: Option<&'a [ZoneView]>,
    pub records: Option<&'a [PoolRecords]>,
    /// Newest first.
    pub transitions: Option<&'a [TransitionView]>,
}

impl<'a> PageData<'a> {
    /// The overview and the targets alone.
    pub fn new(status: &'a Status, now: SystemTime) -> Self {
        PageData {
            status,
            now,
            zones: None,
            records: None,
            transitions: None,
        }
    }
}

/// Whether a request's query asks for the fragment.
pub fn wants_fragment(query: &str) -> bool {
    query.split('&').any(|part| part == FRAGMENT_QUERY)
}

/// The whole page: the document, its style and script, and the fragment.
pub fn page(data: &PageData<'_>) -> String {
    let mut out = String::with_capacity(STYLE.len() + SCRIPT.len() + fragment_size(data));
    html!(
        &mut out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"{NOSCRIPT_REFRESH_SECS}\"></noscript>\
         <style>{STYLE}</style></head>\n<body><header><h1>pigeon-dns</h1>\
         <span id=\"conn\" class=\"conn\">a snapshot: without JavaScript the page reloads every \
         {NOSCRIPT_REFRESH_SECS} s</span></header>\n<main id=\"live\">",
        Esc(&sections::title(data.status)),
    );
    fragment_into(&mut out, data);
    html!(
        &mut out,
        "</main>\n<script>{SCRIPT}</script></body></html>\n"
    );
    out
}

/// The live part of the page, alone: what the script swaps in.
pub fn fragment(data: &PageData<'_>) -> String {
    let mut out = String::with_capacity(fragment_size(data));
    fragment_into(&mut out, data);
    out
}

/// The sections in the order an operator reads them: is it working (the
/// overview, the zones), which targets are down, what is published, what
/// changed.
fn fragment_into(out: &mut String, data: &PageData<'_>) {
    sections::overview(out, data.status, data.now);
    if let Some(zones) = data.zones {
        sections::zones(out, zones, data.now);
    }
    sections::targets(out, &data.status.targets, data.now);
    if let Some(records) = data.records {
        sections::records(out, records);
    }
    if let Some(transitions) = data.transitions {
        sections::transitions(out, transitions, data.now);
    }
}

/// A guess that saves the string's regrowth on large configs (~600 bytes a
/// target row).
fn fragment_size(data: &PageData<'_>) -> usize {
    4096 + 640 * data.status.targets.len()
}

/// `Content-Security-Policy` for the page and its fragment: nothing loads
/// from anywhere (no images, fonts, frames, forms), the inline style and
/// script run only because their hashes are listed, and the script may only
/// fetch from the page's own origin.
pub fn content_security_policy() -> &'static str {
    static CSP: LazyLock<String> = LazyLock::new(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(SCRIPT),
            sha256_source(STYLE),
        )
    });
    CSP.as_str()
}

/// A CSP hash source (`sha256-<base64>`) for an inline element's text.
fn sha256_source(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!("sha256-{}", data_encoding::BASE64.encode(digest.as_ref()))
}
