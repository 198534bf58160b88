//! The [`Prober`]: what every probe shares, and the one place where a
//! dialogue's result, its timeout and its progress become a [`ProbeOutcome`].

use std::sync::Arc;

use std::time::Duration;

use tokio::time::{Instant, timeout};

use super::failure::{Failure, Progress};
use super::http::HttpClients;
use super::tls::{self, TlsContext};
use super::tlsa_cache::TlsaCache;
use super::watch::{self, WatchEnd};
use super::{ProbeOutcome, ProbeResult, ProbeSpec, TlsInfo, mail, tcp};
use crate::config::CheckKind;

/// Runs probes. Cheap to clone: clones share the trust roots, the TLS client
/// configs and the HTTP clients, which are built once rather than per probe.
#[derive(Clone, Debug)]
pub struct Prober {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tls: TlsContext,
    http: HttpClients,
    /// The TLSA RRsets DANE targets are judged by (`None`: no DANE pool).
    tlsa: Option<Arc<TlsaCache>>,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

impl Prober {
    /// Loads the system CA certificates (blocking file reads, once).
    /// Build a new prober on reload: CA files are read once per prober.
    pub fn new() -> Self {
        Self::with_tlsa(None)
    }

    /// A prober that judges DANE targets by the TLSA RRsets of `tlsa`.
    pub fn with_tlsa(tlsa: Option<Arc<TlsaCache>>) -> Self {
        Prober {
            shared: Arc::new(Shared {
                tls: TlsContext::new(),
                http: HttpClients::default(),
                tlsa,
            }),
        }
    }

    /// Whether DANE targets are judged (a TLSA cache is set).
    pub fn judges_dane(&self) -> bool {
        self.shared.tlsa.is_some()
    }

    /// The TLSA cache DANE targets are judged by.
    pub fn tlsa(&self) -> Option<Arc<TlsaCache>> {
        self.shared.tlsa.clone()
    }

    /// Runs one check. Never fails and always ends within `spec.timeout`,
    /// whatever the peer does: a failure is an outcome with a reason. The
    /// verdict is reached before the goodbye; a peer slow to answer the
    /// goodbye delays the return (up to the timeout), not the verdict nor
    /// the latency.
    pub async fn probe(&self, spec: &ProbeSpec) -> ProbeOutcome {
        self.probe_within(spec, None).await
    }

    /// [`Prober::probe`], with the greeting due within `greeting_within`
    /// of the start (shorter than the timeout: a target in doubt need not
    /// wait a whole timeout for a node that usually greets at once).
    pub async fn probe_within(
        &self,
        spec: &ProbeSpec,
        greeting_within: Option<Duration>,
    ) -> ProbeOutcome {
        let mut progress = Progress::default();
        // Before the clock starts: a slow primary is no fault of the node.
        if let (Some(dane), Some(tlsa)) = (&spec.dane, &self.shared.tlsa) {
            progress.tlsa = Some(tlsa.get(&dane.owner).await);
        }
        let start = Instant::now();
        progress.greeting_by = greeting_within.map(|d| start + d);
        // `timeout` rather than `timeout_at(start + ...)`: it saturates
        // instead of panicking on an absurdly long timeout.
        let ended = timeout(spec.timeout, self.dialogue(spec, &mut progress)).await;
        let (outcome, at) = match (progress.verdict.take(), ended) {
            // Reached before the goodbye: whatever the goodbye did is moot.
            (Some(verdict), _) => (verdict.outcome, verdict.at),
            (None, Ok(Err(failure))) => (Err(failure), Instant::now()),
            (None, Err(_elapsed)) => {
                let detail = progress.step.timeout_detail(spec.timeout);
                (
                    Err(Failure::new(ProbeResult::Timeout, detail)),
                    Instant::now(),
                )
            }
            (None, Ok(Ok(()))) => {
                let failure =
                    Failure::new(ProbeResult::Error, "the dialogue ended without a verdict");
                (Err(failure), Instant::now())
            }
        };
        let (result, mut detail) = match outcome {
            Ok(seen) => (ProbeResult::Ok, with_tls(seen, progress.tls.as_ref())),
            Err(failure) => (failure.result, failure.detail),
        };
        if let Some(dane) = progress
            .dane
            .as_ref()
            .filter(|_| result != ProbeResult::DaneMismatch)
        {
            detail = format!("{detail}; {}", dane.detail);
        }
        ProbeOutcome {
            result,
            detail,
            latency: at.saturating_duration_since(start),
            tls: progress.tls,
            greeted_in: progress.greeted.map(|g| g.saturating_duration_since(start)),
            dane: progress.dane,
        }
    }

    /// Keeps one idle connection open after the greeting until the server
    /// closes or resets it (see [`WatchEnd`]). Sends nothing after the
    /// greeting; dropping the future closes the connection. Mail checks only.
    /// `open` counts established watch connections (the gauge
    /// `pigeon_dns_watch_connections`).
    pub async fn watch(
        &self,
        spec: &ProbeSpec,
        open: &prometheus::IntGauge,
        keepalive: Option<watch::Keepalive>,
    ) -> WatchEnd {
        watch::watch(spec, &self.shared.tls, open, keepalive).await
    }

    async fn dialogue(&self, spec: &ProbeSpec, progress: &mut Progress) -> Result<(), Failure> {
        let tls = &self.shared.tls;
        if let Some(dialect) = mail::dialect(spec.check) {
            return mail::probe(dialect, spec, tls, progress).await;
        }
        match spec.check {
            CheckKind::Http | CheckKind::Https => self.shared.http.probe(spec, tls, progress).await,
            _ => tcp::probe(spec.addr, progress).await,
        }
    }
}

/// `"220 mx ESMTP" (TLSv1.3, certificate valid until 2026-01-01 00:00:00 UTC)`.
fn with_tls(seen: String, info: Option<&TlsInfo>) -> String {
    let Some(info) = info else {
        return seen;
    };
    match info.not_after {
        Some(not_after) => format!(
            "{seen} ({}, certificate valid until {})",
            info.version,
            tls::format_time(not_after)
        ),
        None => format!("{seen} ({})", info.version),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::probe::testkit::{Peer, closed_port, serve, spec};

    /// Allowed lateness of a timed-out probe (paused time: only scheduling).
    const MARGIN: Duration = Duration::from_millis(50);

    async fn probe(spec: &ProbeSpec) -> ProbeOutcome {
        Prober::new().probe(spec).await
    }

    /// The daemon spawns probes and watches on a multi-threaded runtime.
    #[test]
    fn futures_are_send_and_the_prober_is_shareable() {
        fn send<T: Send>(_: &T) {}
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Prober>();
        let prober = Prober::new();
        let spec = spec(CheckKind::Imap, "127.0.0.1:1".parse().unwrap());
        send(&prober.probe(&spec));
        send(&prober.watch(&spec, &prometheus::IntGauge::new("w", "w").unwrap(), None));
    }

    #[tokio::test]
    async fn tcp_passes_when_the_connection_opens() {
        let (addr, server) = serve(|mut stream| async move {
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            rest
        })
        .await;
        let outcome = probe(&spec(CheckKind::Tcp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert!(server.await.unwrap().is_empty(), "tcp sends nothing");
    }

    #[tokio::test]
    async fn refused_connection() {
        for check in [CheckKind::Tcp, CheckKind::Smtp, CheckKind::Imaps] {
            let outcome = probe(&spec(check, closed_port().await)).await;
            assert_eq!(outcome.result, ProbeResult::Refused, "{check:?}");
            assert_eq!(outcome.detail, "connection refused");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_server_times_out_at_the_greeting() {
        let (addr, _server) = serve(|stream| async move {
            std::future::pending::<()>().await;
            drop(stream);
        })
        .await;
        let start = Instant::now();
        let outcome = probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::Timeout);
        assert_eq!(outcome.detail, "no greeting within 5s");
        assert!(start.elapsed() <= Duration::from_secs(5) + MARGIN);
        assert_eq!(outcome.latency, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn one_byte_per_second_times_out() {
        let (addr, _server) = serve(|mut stream| async move {
            for byte in b"220 slowly\r\n".iter().cycle() {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .await;
        let mut spec = spec(CheckKind::Imap, addr);
        spec.timeout = Duration::from_millis(3500);
        let start = Instant::now();
        let outcome = probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::Timeout);
        assert_eq!(outcome.detail, "no greeting within 3s 500ms");
        assert!(start.elapsed() <= spec.timeout + MARGIN);
    }

    #[tokio::test]
    async fn close_before_greeting_is_a_bad_greeting() {
        let (addr, _server) = serve(|stream| async move { drop(stream) }).await;
        let outcome = probe(&spec(CheckKind::Pop3, addr)).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert_eq!(outcome.detail, "connection closed before the greeting");
    }

    #[tokio::test]
    async fn reset_before_greeting_is_refused() {
        let (addr, _server) = serve(|stream| async move {
            stream.set_zero_linger().unwrap();
            drop(stream);
        })
        .await;
        let outcome = probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::Refused, "{}", outcome.detail);
        assert!(outcome.detail.contains("reset"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn endless_line_is_cut_short() {
        let (addr, _server) = serve(|mut stream| async move {
            let junk = [b'x'; 1024];
            while stream.write_all(&junk).await.is_ok() {}
        })
        .await;
        let outcome = probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert!(
            outcome
                .detail
                .starts_with("greeting line longer than 4096 bytes: \"xxx"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.len() < 200, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn endless_multiline_reply_is_cut_short() {
        let (addr, _server) = serve(|mut stream| async move {
            while stream.write_all(b"220-still greeting\r\n").await.is_ok() {}
        })
        .await;
        let outcome = probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert_eq!(outcome.detail, "greeting longer than 64 lines");
    }

    #[tokio::test]
    async fn garbage_is_quoted_and_escaped() {
        let (addr, _server) = serve(|stream| async move {
            Peer::new(stream).send("\u{1b}[31mHELLO\0 \u{ff}\r\n").await;
        })
        .await;
        let outcome = probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert_eq!(
            outcome.detail,
            "unexpected greeting: \"\\u{1b}[31mHELLO\\0 \u{ff}\""
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_in_doubt_waits_less_for_the_greeting() {
        let (addr, _server) = serve(|stream| async move {
            std::future::pending::<()>().await;
            drop(stream);
        })
        .await;
        let outcome = Prober::new()
            .probe_within(
                &spec(CheckKind::Imap, addr),
                Some(Duration::from_millis(400)),
            )
            .await;
        assert_eq!(outcome.result, ProbeResult::Timeout);
        assert_eq!(outcome.detail, "no greeting within 400ms");
        assert_eq!(outcome.latency, Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_greeting_within_the_deadline_passes_and_is_timed() {
        let (addr, _server) = serve(|stream| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut peer = Peer::new(stream);
            peer.send("* OK slow\r\n").await;
            peer.expect("a1 LOGOUT").await;
            peer.send("a1 OK bye\r\n").await;
        })
        .await;
        let outcome = Prober::new()
            .probe_within(
                &spec(CheckKind::Imap, addr),
                Some(Duration::from_millis(400)),
            )
            .await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        let greeted = outcome.greeted_in.unwrap();
        assert!(greeted >= Duration::from_millis(300) && greeted < Duration::from_millis(310));
    }
}
