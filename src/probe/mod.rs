//! Probes: one connection that speaks a node's protocol and returns an outcome.
//! A failed probe is a value ([`ProbeOutcome`] with a non-`Ok` result), never an `Err`.
//!
//! One file per part: `tcp` connects, `lines` reads bounded CRLF lines,
//! `mail` is the one scaffold of the mail protocols (connect, TLS, STARTTLS,
//! goodbye) whose grammars are `smtp`, `pop3` and `imap`; `http` speaks HTTP,
//! `tls` starts and judges TLS, `dane` judges the served chain by the TLSA
//! RRset that `tlsa_cache` keeps; `prober` runs a dialogue under its
//! timeout and turns it into an outcome; `watch` keeps idle connections for
//! fast failure detection.

mod dane;
mod failure;
mod http;
mod imap;
mod lines;
mod mail;
mod pop3;
mod prober;
mod smtp;
mod tcp;
mod tls;
mod tlsa_cache;
mod watch;

#[cfg(test)]
mod testkit;

pub use dane::{DaneOutcome, DaneSpec, DaneVerdict, TLSA_CACHE, TlsaRead};
pub use mail::Goodbye;
pub use prober::Prober;
pub(crate) use tls::{format_time, rejection_reason};
pub use tlsa_cache::{ReadFuture, TlsaCache, TlsaReader};
pub use watch::{Keepalive, Recent, WatchEnd};

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::config::{CheckKind, TlsOptions};

/// Everything one probe needs, derived once from the config per (pool, node, address).
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub check: CheckKind,
    pub addr: SocketAddr,
    /// The whole probe (connect, TLS, dialogue, goodbye) ends within this.
    pub timeout: Duration,
    /// STARTTLS (smtp/submission: STARTTLS, pop3: STLS, imap: STARTTLS).
    pub starttls: bool,
    /// Name the certificate must be valid for, also sent as SNI.
    pub tls_name: String,
    pub tls: TlsOptions,
    /// HTTP Host header (the pool's name).
    pub http_host: String,
    pub path: String,
    pub expect_body: Option<String>,
    /// Argument of EHLO.
    pub ehlo_name: String,
    /// `dane = "verify"` or `"manage"`: the TLSA owner and host to judge by.
    pub dane: Option<DaneSpec>,
}

/// The metric label of an outcome (`pigeon_dns_probes_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    Ok,
    Timeout,
    /// TCP connection refused or reset.
    Refused,
    /// A refusal or unexpected reply (421, -ERR, * BYE, garbage, early close).
    BadGreeting,
    TlsError,
    CertExpiring,
    HttpStatus,
    /// DANE is in force and the served chain matches no usable TLSA record.
    DaneMismatch,
    Error,
}

impl ProbeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Refused => "refused",
            ProbeResult::BadGreeting => "bad_greeting",
            ProbeResult::TlsError => "tls_error",
            ProbeResult::CertExpiring => "cert_expiring",
            ProbeResult::HttpStatus => "http_status",
            ProbeResult::DaneMismatch => "dane_mismatch",
            ProbeResult::Error => "error",
        }
    }

    pub const ALL: [ProbeResult; 9] = [
        ProbeResult::Ok,
        ProbeResult::Timeout,
        ProbeResult::Refused,
        ProbeResult::BadGreeting,
        ProbeResult::TlsError,
        ProbeResult::CertExpiring,
        ProbeResult::HttpStatus,
        ProbeResult::DaneMismatch,
        ProbeResult::Error,
    ];
}

/// What a TLS check learned about the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. "TLSv1.3".
    pub version: String,
    /// The leaf certificate's notAfter.
    pub not_after: Option<SystemTime>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub result: ProbeResult,
    /// Human-readable: on success what was seen (e.g. "220 mail1 ESMTP"), on
    /// failure why (e.g. "greeting refused: 421 too busy").
    pub detail: String,
    pub latency: Duration,
    pub tls: Option<TlsInfo>,
    /// How long the greeting took to come (mail checks that got one).
    pub greeted_in: Option<Duration>,
    /// DANE targets whose handshake completed: the verdict and the key served.
    pub dane: Option<DaneOutcome>,
}

impl ProbeOutcome {
    pub fn is_ok(&self) -> bool {
        self.result == ProbeResult::Ok
    }
}

/// Entry points for the fuzz targets and their corpus replay test.
#[doc(hidden)]
pub mod fuzzing;
