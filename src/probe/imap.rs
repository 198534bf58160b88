//! IMAP (RFC 9051, RFC 3501) on 143, STARTTLS, and IMAP over implicit TLS
//! on 993 (RFC 8314).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::ProbeResult;
use super::ProbeSpec;
use super::failure::{Failure, Progress, Step, quote};
use super::lines::{LineConn, MAX_LINES, starts_with_ci};
use super::tcp;
use super::tls::TlsContext;

/// The imap and imaps checks.
pub(crate) async fn probe(
    spec: &ProbeSpec,
    tls: &TlsContext,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let stream = tcp::connect(spec.addr, progress).await?;
    if spec.check.implicit_tls() {
        let stream = tls.handshake(stream, spec, progress).await?;
        dialogue(LineConn::new(stream), progress).await
    } else if spec.starttls {
        starttls_dialogue(LineConn::new(stream), spec, tls, progress).await
    } else {
        dialogue(LineConn::new(stream), progress).await
    }
}

/// Greeting, LOGOUT.
pub(crate) async fn dialogue<S>(
    mut conn: LineConn<S>,
    progress: &mut Progress,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = greeting(&mut conn, progress).await?;
    progress.pass(quote(&greeting));
    logout(conn, "a1", progress).await;
    Ok(())
}

/// Greeting, STARTTLS, handshake, LOGOUT. A greeting that does not list
/// STARTTLS among its capabilities is not held against the server: many
/// greetings list none, and the command's answer is what counts.
async fn starttls_dialogue(
    mut conn: LineConn<TcpStream>,
    spec: &ProbeSpec,
    tls: &TlsContext,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let greeting = greeting(&mut conn, progress).await?;
    let step = Step::Reply("STARTTLS");
    progress.at(step);
    conn.command("a1 STARTTLS", step).await?;
    let status = tagged_reply(&mut conn, "a1", step).await?;
    match status_word(&status, "a1").as_deref() {
        Some("OK") => {}
        Some("NO" | "BAD") => {
            let failure = Failure::new(
                ProbeResult::TlsError,
                format!("STARTTLS refused: {}", quote(&status)),
            );
            progress.fail(failure.clone());
            logout(conn, "a2", progress).await;
            return Err(failure);
        }
        _ => return Err(Failure::unexpected(step, &status)),
    }
    let stream = tls.handshake(conn.into_inner()?, spec, progress).await?;
    progress.pass(quote(&greeting));
    logout(LineConn::new(stream), "a2", progress).await;
    Ok(())
}

/// Reads the greeting: `* OK` or `* PREAUTH` pass, `* BYE` is a refusal.
pub(crate) async fn greeting<S>(
    conn: &mut LineConn<S>,
    progress: &mut Progress,
) -> Result<String, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    progress.at(Step::Greeting);
    let line = conn.expect_line(Step::Greeting).await?;
    if starts_with_ci(&line, "* OK") || starts_with_ci(&line, "* PREAUTH") {
        Ok(line)
    } else if is_goodbye(&line) {
        Err(Failure::refused("greeting", &line))
    } else {
        Err(Failure::unexpected(Step::Greeting, &line))
    }
}

/// Whether a line sent before a close is a goodbye (RFC 9051 §7.1.5: BYE
/// announces the server is about to close, e.g. on an autologout).
pub(crate) fn is_goodbye(line: &str) -> bool {
    starts_with_ci(line, "* BYE")
}

/// Skips untagged lines up to the status line tagged `tag`, which it returns.
async fn tagged_reply<S>(conn: &mut LineConn<S>, tag: &str, step: Step) -> Result<String, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..MAX_LINES {
        let line = conn.expect_line(step).await?;
        if status_word(&line, tag).is_some() {
            return Ok(line);
        }
    }
    Err(Failure::new(
        ProbeResult::BadGreeting,
        format!("{step} longer than {MAX_LINES} lines"),
    ))
}

/// The status of a line tagged `tag` (`a1 OK ...` gives `OK`), uppercased.
fn status_word(line: &str, tag: &str) -> Option<String> {
    let mut words = line.split(' ');
    if words.next()? != tag {
        return None;
    }
    Some(words.next().unwrap_or("").to_ascii_uppercase())
}

/// LOGOUT, its `* BYE` and tagged `OK` read (best effort), then the
/// connection closed.
async fn logout<S>(mut conn: LineConn<S>, tag: &str, progress: &mut Progress)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let step = Step::Reply("LOGOUT");
    progress.at(step);
    if conn.send(&format!("{tag} LOGOUT")).await.is_ok() {
        let _ = tagged_reply(&mut conn, tag, step).await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::ServerConfig;

    use super::*;
    use crate::config::CheckKind;
    use crate::probe::testkit::{NAME, Peer, Pki, accept_tls, serve, spec};
    use crate::probe::{ProbeOutcome, ProbeResult, Prober};

    #[test]
    fn reads_tagged_status() {
        assert_eq!(status_word("a1 OK Begin TLS", "a1").as_deref(), Some("OK"));
        assert_eq!(status_word("a1 no way", "a1").as_deref(), Some("NO"));
        assert_eq!(status_word("* BYE", "a1"), None);
        assert_eq!(status_word("a10 OK", "a1"), None);
    }

    #[test]
    fn bye_is_a_goodbye() {
        assert!(is_goodbye("* BYE Disconnected for inactivity."));
        assert!(is_goodbye("* bye"));
        assert!(!is_goodbye("* OK"));
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
    async fn imaps_starts_with_tls() {
        let pki = Pki::new();
        let config = pki.valid();
        let (addr, server) = serve(move |stream| async move {
            let mut peer = Peer::new(accept_tls(config, stream).await);
            peer.send("* OK ready\r\n").await;
            logout(peer, "a1").await
        })
        .await;
        let mut spec = spec(CheckKind::Imaps, addr);
        spec.tls = pki.options(0);
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert!(
            outcome
                .detail
                .starts_with("\"* OK ready\" (TLSv1.3, certificate valid until")
        );
        assert_eq!(server.await.unwrap(), ["a1 LOGOUT"]);
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
