//! How a dialogue reports where it is, what it achieved and why it failed.
//!
//! The whole probe runs under one `tokio::time::timeout`. When it fires, the
//! dialogue future is dropped mid-await, so whatever it knew must already be
//! outside it: [`Progress`] is borrowed by the dialogue and read afterwards.
//! That gives a timeout its step ("no greeting within 1s") without a timer
//! per step, and keeps a verdict reached before a slow goodbye.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::time::Instant;

use super::dane::{DaneOutcome, TlsaRead};
use super::tls;
use super::{ProbeResult, TlsInfo};

/// Longest excerpt of a peer's line quoted in a detail, in characters.
const QUOTE_MAX: usize = 100;

/// The step a dialogue is waiting on, named in timeout and early-close details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Step {
    #[default]
    Connect,
    TlsHandshake,
    Greeting,
    /// The reply to this command.
    Reply(&'static str),
    HttpResponse,
    HttpBody,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Connect => f.write_str("TCP connection"),
            Step::TlsHandshake => f.write_str("TLS handshake"),
            Step::Greeting => f.write_str("greeting"),
            Step::Reply(command) => write!(f, "reply to {command}"),
            Step::HttpResponse => f.write_str("HTTP response"),
            Step::HttpBody => f.write_str("HTTP body"),
        }
    }
}

impl Step {
    /// The detail of a probe that ran out of time at this step.
    pub(crate) fn timeout_detail(self, timeout: Duration) -> String {
        let within = humantime::format_duration(timeout);
        match self {
            Step::TlsHandshake => format!("TLS handshake not finished within {within}"),
            Step::HttpBody => format!("HTTP body not received within {within}"),
            step => format!("no {step} within {within}"),
        }
    }
}

/// Why a probe failed: the metric label and a human reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) result: ProbeResult,
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(result: ProbeResult, detail: impl Into<String>) -> Self {
        Failure {
            result,
            detail: detail.into(),
        }
    }

    /// A reply that is not the one the protocol calls for (garbage included).
    pub(crate) fn unexpected(step: Step, line: &str) -> Self {
        Failure::new(
            ProbeResult::BadGreeting,
            format!("unexpected {step}: {}", quote(line)),
        )
    }

    /// A well-formed refusal (`421`, `-ERR`, `* BYE`, a `5xx` to EHLO).
    pub(crate) fn refused(what: &str, line: &str) -> Self {
        Failure::new(
            ProbeResult::BadGreeting,
            format!("{what} refused: {}", quote(line)),
        )
    }

    /// The peer closed the connection while `step` was awaited.
    pub(crate) fn closed(step: Step, partial: Option<&str>) -> Self {
        let detail = match partial {
            Some(text) => format!(
                "connection closed in the middle of the {step}: {}",
                quote(text)
            ),
            None => format!("connection closed before the {step}"),
        };
        Failure::new(ProbeResult::BadGreeting, detail)
    }

    /// An I/O error while `step` was awaited, classified by kind.
    pub(crate) fn io(step: Step, error: &io::Error) -> Self {
        if let Some(tls_error) = tls::rustls_error(error) {
            return tls::classify(tls_error);
        }
        match error.kind() {
            io::ErrorKind::ConnectionRefused => {
                Failure::new(ProbeResult::Refused, "connection refused")
            }
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::new(
                ProbeResult::Refused,
                format!("connection reset while waiting for the {step}"),
            ),
            io::ErrorKind::UnexpectedEof => Failure::closed(step, None),
            _ => Failure::new(ProbeResult::Error, format!("{step} failed: {error}")),
        }
    }
}

/// How a dialogue ended, and when its checked part did.
#[derive(Clone, Debug)]
pub(crate) struct Verdict {
    /// On success, what was seen (the greeting, the status line).
    pub(crate) outcome: Result<String, Failure>,
    pub(crate) at: Instant,
}

/// What a dialogue has reached so far; it outlives the dialogue future.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The step being awaited now.
    pub(crate) step: Step,
    /// Filled once a TLS handshake completed (also for later failures).
    pub(crate) tls: Option<TlsInfo>,
    /// A failure found mid-dialogue that must not cut it short (a certificate
    /// about to expire): the dialogue goes on to its goodbye, then fails.
    deferred: Option<Failure>,
    /// Set when every checked reply came: the goodbye that follows is best effort.
    pub(crate) verdict: Option<Verdict>,
    /// A greeting must come by then (a target in doubt waits less than the
    /// whole timeout for a node that usually greets at once).
    pub(crate) greeting_by: Option<Instant>,
    /// When the greeting came.
    pub(crate) greeted: Option<Instant>,
    /// DANE targets: the TLSA RRset read before the probe started.
    pub(crate) tlsa: Option<TlsaRead>,
    /// DANE targets: what the handshake's chain was judged.
    pub(crate) dane: Option<DaneOutcome>,
}

impl Progress {
    /// Notes the step about to be awaited.
    pub(crate) fn at(&mut self, step: Step) {
        self.step = step;
    }

    /// Keeps a failure to report once the dialogue has passed.
    pub(crate) fn defer(&mut self, failure: Failure) {
        self.deferred.get_or_insert(failure);
    }

    /// Records a failure before a goodbye, so a goodbye that hangs until the
    /// timeout does not turn it into a `timeout`.
    pub(crate) fn fail(&mut self, failure: Failure) {
        self.verdict = Some(Verdict {
            outcome: Err(failure),
            at: Instant::now(),
        });
    }

    /// Records the verdict before the goodbye, which may then fail or hang
    /// harmlessly: success, unless a failure was deferred.
    pub(crate) fn pass(&mut self, detail: impl Into<String>) {
        let outcome = match self.deferred.take() {
            Some(failure) => Err(failure),
            None => Ok(detail.into()),
        };
        self.verdict = Some(Verdict {
            outcome,
            at: Instant::now(),
        });
    }
}

/// A peer's text made safe for a log line or a table cell: truncated, quoted,
/// control characters escaped (Rust's `Debug` quoting does the escaping).
pub(crate) fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(QUOTE_MAX).collect();
    format!("{head:?}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("220 ok"), "\"220 ok\"");
        assert_eq!(quote("a\u{0}b\tc"), "\"a\\0b\\tc\"");
        let long = "x".repeat(500);
        let quoted = quote(&long);
        assert!(quoted.ends_with('…'));
        assert_eq!(quoted.chars().count(), QUOTE_MAX + 3);
    }

    #[test]
    fn timeout_details_name_the_step() {
        let second = Duration::from_secs(1);
        assert_eq!(
            Step::Greeting.timeout_detail(second),
            "no greeting within 1s"
        );
        assert_eq!(
            Step::Reply("EHLO").timeout_detail(Duration::from_millis(500)),
            "no reply to EHLO within 500ms"
        );
        assert_eq!(
            Step::TlsHandshake.timeout_detail(second),
            "TLS handshake not finished within 1s"
        );
    }

    #[test]
    fn io_errors_are_classified() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            Failure::io(Step::Greeting, &reset).result,
            ProbeResult::Refused
        );
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        let failure = Failure::io(Step::Greeting, &eof);
        assert_eq!(failure.result, ProbeResult::BadGreeting);
        assert_eq!(failure.detail, "connection closed before the greeting");
    }
}
