//! POP3 (RFC 1939) on 110, STLS (RFC 2595 §4), and POP3 over implicit TLS
//! on 995 (RFC 8314).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::ProbeResult;
use super::ProbeSpec;
use super::failure::{Failure, Progress, Step, quote};
use super::lines::{LineConn, starts_with_ci};
use super::tcp;
use super::tls::TlsContext;

/// The pop3 and pop3s checks.
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
        stls_dialogue(LineConn::new(stream), spec, tls, progress).await
    } else {
        dialogue(LineConn::new(stream), progress).await
    }
}

/// Greeting, QUIT.
pub(crate) async fn dialogue<S>(
    mut conn: LineConn<S>,
    progress: &mut Progress,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = greeting(&mut conn, progress).await?;
    progress.pass(quote(&greeting));
    quit(conn, progress).await;
    Ok(())
}

/// Greeting, STLS, handshake, QUIT.
async fn stls_dialogue(
    mut conn: LineConn<TcpStream>,
    spec: &ProbeSpec,
    tls: &TlsContext,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let greeting = greeting(&mut conn, progress).await?;
    let step = Step::Reply("STLS");
    progress.at(step);
    conn.command("STLS", step).await?;
    let reply = conn.expect_line(step).await?;
    if starts_with_ci(&reply, "-ERR") {
        let failure = Failure::new(
            ProbeResult::TlsError,
            format!("STLS refused: {}", quote(&reply)),
        );
        progress.fail(failure.clone());
        quit(conn, progress).await;
        return Err(failure);
    }
    if !starts_with_ci(&reply, "+OK") {
        return Err(Failure::unexpected(step, &reply));
    }
    let stream = tls.handshake(conn.into_inner()?, spec, progress).await?;
    progress.pass(quote(&greeting));
    quit(LineConn::new(stream), progress).await;
    Ok(())
}

/// Reads the greeting: `+OK` passes, `-ERR` is a refusal. Returns it.
pub(crate) async fn greeting<S>(
    conn: &mut LineConn<S>,
    progress: &mut Progress,
) -> Result<String, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    progress.at(Step::Greeting);
    let line = conn.expect_line(Step::Greeting).await?;
    if starts_with_ci(&line, "+OK") {
        Ok(line)
    } else if starts_with_ci(&line, "-ERR") {
        Err(Failure::refused("greeting", &line))
    } else {
        Err(Failure::unexpected(Step::Greeting, &line))
    }
}

/// Whether a line sent before a close is a goodbye (Dovecot's
/// `-ERR Disconnected for inactivity.`, the autologout of RFC 1939 §3).
pub(crate) fn is_goodbye(line: &str) -> bool {
    starts_with_ci(line, "-ERR")
}

/// QUIT, its `+OK` read (best effort), then the connection closed.
async fn quit<S>(mut conn: LineConn<S>, progress: &mut Progress)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    progress.at(Step::Reply("QUIT"));
    if conn.send("QUIT").await.is_ok() {
        let _ = conn.read_line().await;
    }
    conn.close().await;
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpStream;

    use super::*;
    use crate::config::CheckKind;
    use crate::probe::testkit::{Peer, Pki, accept_tls, serve, spec};
    use crate::probe::{ProbeResult, Prober};

    /// Answers QUIT with +OK and closes; returns the lines received.
    async fn quit<S: AsyncRead + AsyncWrite + Unpin>(mut peer: Peer<S>) -> Vec<String> {
        peer.expect("QUIT").await;
        peer.send("+OK Logging out.\r\n").await;
        peer.shutdown().await;
        peer.seen
    }

    #[tokio::test]
    async fn ok_greeting_passes() {
        let (addr, server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("+OK Dovecot ready.\r\n").await;
            quit(peer).await
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

    #[tokio::test]
    async fn pop3s_starts_with_tls() {
        let pki = Pki::new();
        let config = pki.valid();
        let (addr, server) = serve(move |stream| async move {
            let mut peer = Peer::new(accept_tls(config, stream).await);
            peer.send("+OK ready\r\n").await;
            quit(peer).await
        })
        .await;
        let mut spec = spec(CheckKind::Pop3s, addr);
        spec.tls = pki.options(0);
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(server.await.unwrap(), ["QUIT"]);
    }
}
