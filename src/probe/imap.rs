//! IMAP (RFC 9051, RFC 3501) on 143, STARTTLS, and IMAP over implicit TLS
//! on 993 (RFC 8314): the grammar; the session is the mail scaffold's.
//!
//! A greeting that does not list STARTTLS among its capabilities is not held
//! against the server: many greetings list none, and the command's answer is
//! what counts.

use super::ProbeSpec;
use super::lines::starts_with_ci;
use super::mail::{Command, Dialect, Fits, Verdict};

/// The imap and imaps checks.
pub(crate) struct Imap;

impl Dialect for Imap {
    fn command(&self, command: Command, tag: u32, _spec: &ProbeSpec) -> Option<String> {
        match command {
            Command::Hello => None,
            Command::StartTls => Some(format!("a{tag} STARTTLS")),
            Command::Goodbye => Some(format!("a{tag} LOGOUT")),
            Command::Keepalive => Some(format!("a{tag} NOOP")),
        }
    }

    /// The greeting is one untagged line (`* OK`, `* PREAUTH`, or `* BYE`);
    /// a command's reply ends with the status line of its tag, untagged
    /// lines before it are skipped.
    fn fits(&self, awaited: Option<Command>, tag: u32, line: &str) -> Fits {
        if awaited.is_none() {
            return Fits::Done(
                if starts_with_ci(line, "* OK") || starts_with_ci(line, "* PREAUTH") {
                    Verdict::Ok
                } else if self.is_goodbye(line) {
                    Verdict::Refused
                } else {
                    Verdict::Unexpected
                },
            );
        }
        match status_word(line, &format!("a{tag}")).as_deref() {
            None => Fits::More,
            Some("OK") => Fits::Done(Verdict::Ok),
            Some("NO" | "BAD") => Fits::Done(Verdict::Refused),
            Some(_) => Fits::Done(Verdict::Unexpected),
        }
    }

    fn name(&self, command: Command) -> &'static str {
        match command {
            Command::Hello => "HELLO",
            Command::StartTls => "STARTTLS",
            Command::Goodbye => "LOGOUT",
            Command::Keepalive => "NOOP",
        }
    }

    /// The tagged status line says what happened.
    fn quoted<'a>(&self, lines: &'a [String]) -> &'a str {
        lines.last().map_or("", String::as_str)
    }

    /// RFC 9051 §7.1.5: BYE announces the server is about to close (an
    /// autologout, a shutdown).
    fn is_goodbye(&self, line: &str) -> bool {
        starts_with_ci(line, "* BYE")
    }
}

/// The status of a line tagged `tag` (`a1 OK ...` gives `OK`), uppercased.
fn status_word(line: &str, tag: &str) -> Option<String> {
    let mut words = line.split(' ');
    if words.next()? != tag {
        return None;
    }
    Some(words.next().unwrap_or("").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::ServerConfig;

    use super::*;
    use crate::config::CheckKind;
    use crate::probe::testkit::{NAME, Peer, Pki, serve, spec};
    use crate::probe::{ProbeOutcome, ProbeResult, Prober};
    use tokio::io::{AsyncRead, AsyncWrite};

    #[test]
    fn reads_tagged_status() {
        assert_eq!(status_word("a1 OK Begin TLS", "a1").as_deref(), Some("OK"));
        assert_eq!(status_word("a1 no way", "a1").as_deref(), Some("NO"));
        assert_eq!(status_word("* BYE", "a1"), None);
        assert_eq!(status_word("a10 OK", "a1"), None);
    }

    #[test]
    fn bye_is_a_goodbye() {
        assert!(Imap.is_goodbye("* BYE Disconnected for inactivity."));
        assert!(Imap.is_goodbye("* bye"));
        assert!(!Imap.is_goodbye("* OK"));
    }

    /// Answers LOGOUT the way Dovecot does and closes.
    async fn logout<S: AsyncRead + AsyncWrite + Unpin>(
        mut peer: Peer<S>,
        tag: &str,
    ) -> Vec<String> {
        peer.expect(&format!("{tag} LOGOUT")).await;
        peer.send(&format!(
            "* BYE Logging out\r\n{tag} OK Logout completed.\r\n"
        ))
        .await;
        peer.shutdown().await;
        peer.seen
    }

    async fn probe_greeting(greeting: &'static str) -> (ProbeOutcome, Vec<String>) {
        let (addr, server) = serve(move |stream| async move {
            let mut peer = Peer::new(stream);
            peer.send(greeting).await;
            if greeting.starts_with("* BYE") {
                return Vec::new();
            }
            logout(peer, "a1").await
        })
        .await;
        let outcome = Prober::new().probe(&spec(CheckKind::Imap, addr)).await;
        (outcome, server.await.unwrap())
    }

    #[tokio::test]
    async fn ok_and_preauth_greetings_pass() {
        for greeting in [
            "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
            "* PREAUTH ready\r\n",
        ] {
            let (outcome, seen) = probe_greeting(greeting).await;
            assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
            assert_eq!(seen, ["a1 LOGOUT"]);
        }
    }

    #[tokio::test]
    async fn bye_greeting_fails() {
        let (outcome, _) = probe_greeting("* BYE Too many connections\r\n").await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert_eq!(
            outcome.detail,
            "greeting refused: \"* BYE Too many connections\""
        );
    }

    /// Answers STARTTLS with `reply`; starts TLS with `config` after an OK.
    async fn starttls_server(
        stream: tokio::net::TcpStream,
        reply: &'static str,
        config: Arc<ServerConfig>,
    ) -> Vec<String> {
        let mut peer = Peer::new(stream);
        peer.send("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
            .await;
        peer.expect("a1 STARTTLS").await;
        peer.send(reply).await;
        if !reply.starts_with("a1 OK") {
            return logout(peer, "a2").await;
        }
        let (stream, mut seen) = peer.into_inner();
        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
            return seen;
        };
        seen.append(&mut logout(Peer::new(stream), "a2").await);
        seen
    }

    async fn probe_starttls(
        reply: &'static str,
        config: Arc<ServerConfig>,
        pki: &Pki,
    ) -> (ProbeOutcome, Vec<String>) {
        let (addr, server) = serve(move |stream| starttls_server(stream, reply, config)).await;
        let mut spec = spec(CheckKind::Imap, addr);
        spec.starttls = true;
        spec.tls = pki.options(0);
        let outcome = Prober::new().probe(&spec).await;
        (outcome, server.await.unwrap())
    }

    #[tokio::test]
    async fn starttls_passes_with_a_valid_certificate() {
        let pki = Pki::new();
        let (outcome, seen) =
            probe_starttls("a1 OK Begin TLS negotiation now.\r\n", pki.valid(), &pki).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(outcome.tls.map(|t| t.version).as_deref(), Some("TLSv1.3"));
        assert_eq!(seen, ["a1 STARTTLS", "a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn starttls_refusal_fails() {
        let pki = Pki::new();
        for reply in ["a1 NO TLS unavailable\r\n", "a1 BAD unknown command\r\n"] {
            let (outcome, seen) = probe_starttls(reply, pki.valid(), &pki).await;
            assert_eq!(outcome.result, ProbeResult::TlsError);
            assert!(
                outcome.detail.starts_with("STARTTLS refused: \"a1 "),
                "{}",
                outcome.detail
            );
            assert_eq!(seen, ["a1 STARTTLS", "a2 LOGOUT"]);
        }
    }

    #[tokio::test]
    async fn starttls_certificate_for_another_name_fails() {
        let pki = Pki::new();
        let config = pki.server("other.test", -1, 30);
        let (outcome, _) = probe_starttls("a1 OK go\r\n", config, &pki).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert!(
            outcome
                .detail
                .starts_with(&format!("certificate not valid for {NAME}")),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn imaps_expired_certificate_fails() {
        let pki = Pki::new();
        let config = pki.server(NAME, -30, -1);
        let (addr, _server) = serve(move |stream| async move {
            let _ = tokio_rustls::TlsAcceptor::from(config).accept(stream).await;
        })
        .await;
        let mut spec = spec(CheckKind::Imaps, addr);
        spec.tls = pki.options(0);
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert!(
            outcome.detail.starts_with("certificate expired on"),
            "{}",
            outcome.detail
        );
    }
}
