//! The small pieces every section is written with: escaping, times and ages.
//!
//! Everything that is not a literal of this module's code goes through
//! [`Esc`]: peer text (greetings, HTTP bodies, reasons), config strings and
//! the daemon's own messages alike, so that no section has to decide what is
//! safe.

use std::fmt;
use std::time::{Duration, SystemTime};

/// Appends `format!`-style text to a `String` (writing to a `String` cannot
/// fail, so the `fmt::Result` is dropped here once, not at every call).
macro_rules! html {
    ($out:expr, $($arg:tt)*) => {{
        let _ = ::std::fmt::Write::write_fmt($out, format_args!($($arg)*));
    }};
}
pub(super) use html;

/// Text escaped for HTML element content and quoted attribute values.
///
/// The five characters that can end a text node or an attribute value are
/// replaced; everything else (control characters included, which the probes
/// already quote) is left as is.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `d` in the two largest units that matter at a glance: `42s`, `3m 4s`,
/// `2h 5m`, `3d 4h`.
pub fn duration_words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// `<time>` for an RFC 3339 timestamp of the status: how long ago, with the
/// timestamp itself in `datetime` and in the tooltip. A timestamp that does
/// not parse is shown as it is (escaped).
pub fn time_ago(out: &mut String, now: SystemTime, rfc3339: &str) {
    match humantime::parse_rfc3339(rfc3339) {
        Ok(then) => {
            // A clock step backwards must not print a negative age.
            let age = now.duration_since(then).unwrap_or_default();
            html!(
                out,
                r#"<time datetime="{t}" title="{t}">{} ago</time>"#,
                duration_words(age),
                t = Esc(rfc3339)
            );
        }
        Err(_) => html!(out, "{}", Esc(rfc3339)),
    }
}

/// A latency for a table cell: one decimal below 100 ms, none above.
pub fn latency(ms: f64) -> String {
    if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}
