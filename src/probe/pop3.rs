//! POP3 (RFC 1939) on 110, STLS (RFC 2595 §4), and POP3 over implicit TLS
//! on 995 (RFC 8314): the grammar; the session is the mail scaffold's.

use super::ProbeSpec;
use super::lines::starts_with_ci;
use super::mail::{Command, Dialect, Fits, Verdict};

/// The pop3 and pop3s checks.
pub(crate) struct Pop3;

impl Dialect for Pop3 {
    fn command(&self, command: Command, _tag: u32, _spec: &ProbeSpec) -> Option<String> {
        match command {
            Command::Hello => None,
            Command::StartTls => Some("STLS".into()),
            Command::Goodbye => Some("QUIT".into()),
            // NOOP is a transaction-state command (RFC 1939 §5): dovecot
            // answers it -ERR before login and drops a client after three
            // such errors. CAPA (RFC 2449) is answered in any state.
            Command::Keepalive => Some("CAPA".into()),
        }
    }

    /// One line, `+OK` or `-ERR`; CAPA's answer is `+OK`, the capabilities,
    /// and a line holding a single dot.
    fn fits(&self, awaited: Option<Command>, _tag: u32, line: &str) -> Fits {
        if awaited == Some(Command::Keepalive) {
            return if line == "." {
                Fits::Done(Verdict::Ok)
            } else if starts_with_ci(line, "-ERR") {
                Fits::Done(Verdict::Refused)
            } else {
                Fits::More
            };
        }
        Fits::Done(if starts_with_ci(line, "+OK") {
            Verdict::Ok
        } else if starts_with_ci(line, "-ERR") {
            Verdict::Refused
        } else {
            Verdict::Unexpected
        })
    }

    fn name(&self, command: Command) -> &'static str {
        match command {
            Command::Hello => "HELLO",
            Command::StartTls => "STLS",
            Command::Goodbye => "QUIT",
            Command::Keepalive => "CAPA",
        }
    }

    /// Dovecot's `-ERR Disconnected for inactivity.`, the autologout of
    /// RFC 1939 §3.
    fn is_goodbye(&self, line: &str) -> bool {
        starts_with_ci(line, "-ERR")
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpStream;

    use crate::config::CheckKind;
    use crate::probe::testkit::{Peer, Pki, accept_tls, serve, spec};
    use crate::probe::{ProbeResult, Prober};
    use tokio::io::{AsyncRead, AsyncWrite};

    /// Answers QUIT with +OK and closes; returns the lines received.
    async fn quit<S: AsyncRead + AsyncWrite + Unpin>(mut peer: Peer<S>) -> Vec<String> {
        peer.expect("QUIT").await;
        peer.send("+OK Logging out.\r\n").await;
        peer.shutdown().await;
        peer.seen
    }

    #[tokio::test]
    async fn ok_greeting_passes() {
        let (addr, server) = serve(|stream| {
            Peer::new(stream).script(
                "+OK Dovecot ready.\r\n",
                &[("QUIT", "+OK Logging out.\r\n")],
            )
        })
        .await;
        let outcome = Prober::new().probe(&spec(CheckKind::Pop3, addr)).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(outcome.detail, "\"+OK Dovecot ready.\"");
        assert_eq!(server.await.unwrap(), ["QUIT"]);
    }

    #[tokio::test]
    async fn err_greeting_fails() {
        let (addr, _server) = serve(|stream| async move {
            Peer::new(stream)
                .send("-ERR [SYS/TEMP] too many connections\r\n")
                .await;
        })
        .await;
        let outcome = Prober::new().probe(&spec(CheckKind::Pop3, addr)).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert_eq!(
            outcome.detail,
            "greeting refused: \"-ERR [SYS/TEMP] too many connections\""
        );
    }

    async fn stls_server(
        stream: TcpStream,
        pki_config: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Vec<String> {
        let mut peer = Peer::new(stream);
        peer.send("+OK ready\r\n").await;
        peer.expect("STLS").await;
        let Some(config) = pki_config else {
            peer.send("-ERR TLS not available\r\n").await;
            return quit(peer).await;
        };
        peer.send("+OK Begin TLS negotiation now.\r\n").await;
        let (stream, mut seen) = peer.into_inner();
        let stream = accept_tls(config, stream).await;
        seen.append(&mut quit(Peer::new(stream)).await);
        seen
    }

    #[tokio::test]
    async fn stls_passes_with_a_valid_certificate() {
        let pki = Pki::new();
        let config = pki.valid();
        let (addr, server) = serve(move |stream| stls_server(stream, Some(config))).await;
        let mut spec = spec(CheckKind::Pop3, addr);
        spec.starttls = true;
        spec.tls = pki.options(0);
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert!(outcome.tls.is_some());
        assert_eq!(server.await.unwrap(), ["STLS", "QUIT"]);
    }

    #[tokio::test]
    async fn stls_refusal_fails() {
        let (addr, server) = serve(|stream| stls_server(stream, None)).await;
        let mut spec = spec(CheckKind::Pop3, addr);
        spec.starttls = true;
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert_eq!(outcome.detail, "STLS refused: \"-ERR TLS not available\"");
        assert_eq!(server.await.unwrap(), ["STLS", "QUIT"]);
    }
}
