//! SMTP (RFC 5321) on 25 and 587, STARTTLS (RFC 3207), and SMTP over
//! implicit TLS on 465 (RFC 8314): the grammar; the session is the mail
//! scaffold's.

use super::ProbeSpec;
use super::lines::starts_with_ci;
use super::mail::{Command, Dialect, Fits, Verdict};

/// The smtp, submission and smtps checks.
pub(crate) struct Smtp;

impl Dialect for Smtp {
    fn command(&self, command: Command, _tag: u32, spec: &ProbeSpec) -> Option<String> {
        Some(match command {
            Command::Hello => format!("EHLO {}", spec.ehlo_name),
            Command::StartTls => "STARTTLS".into(),
            Command::Goodbye => "QUIT".into(),
            Command::Keepalive => "NOOP".into(),
        })
    }

    /// A reply is `code-text` lines then `code text` (RFC 5321 §4.2.1).
    fn fits(&self, awaited: Option<Command>, _tag: u32, line: &str) -> Fits {
        let Some((code, last)) = parse_line(line) else {
            return Fits::Malformed;
        };
        if !last {
            return Fits::More;
        }
        Fits::Done(match (awaited, code) {
            (None, 220)
            | (Some(Command::Hello), 250)
            | (Some(Command::StartTls), 220)
            | (Some(Command::Keepalive), 250)
            | (Some(Command::Goodbye), _) => Verdict::Ok,
            (Some(Command::StartTls), _) | (_, 400..=599) => Verdict::Refused,
            _ => Verdict::Unexpected,
        })
    }

    fn name(&self, command: Command) -> &'static str {
        match command {
            Command::Hello => "EHLO",
            Command::StartTls => "STARTTLS",
            Command::Goodbye => "QUIT",
            Command::Keepalive => "NOOP",
        }
    }

    /// RFC 3207 §4: the EHLO reply lists the STARTTLS extension.
    fn offers_starttls(&self, hello: &[String]) -> bool {
        offers_starttls(hello)
    }

    /// RFC 3207 §4.2: the server forgets what it learned in clear text.
    fn hello_again(&self) -> bool {
        true
    }

    /// `421` is the code RFC 5321 §3.8 gives a server that closes the
    /// transmission channel.
    fn is_goodbye(&self, line: &str) -> bool {
        starts_with_ci(line, "421")
    }

    /// Exim ends a session after 10 commands that send no mail
    /// (`smtp_accept_max_nonmail`), Postfix counts NOOPs as junk after 100:
    /// a watch carries 8, then reconnects.
    fn keepalives_per_connection(&self) -> Option<u32> {
        Some(8)
    }
}

/// Whether an EHLO reply lists the STARTTLS extension (RFC 3207 §4).
fn offers_starttls(lines: &[String]) -> bool {
    lines.iter().skip(1).any(|line| {
        let keyword = line.get(4..).unwrap_or("").split_whitespace().next();
        keyword.is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
    })
}

/// The code of a reply line, and whether it is the last line of its reply.
fn parse_line(line: &str) -> Option<(u16, bool)> {
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match line.as_bytes().get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return None,
    };
    Some((code.parse().ok()?, last))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::ServerConfig;
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::*;
    use crate::config::CheckKind;
    use crate::probe::ProbeResult;
    use crate::probe::testkit::{NAME, Peer, Pki, serve, spec};
    use crate::probe::{ProbeOutcome, Prober};

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_reply_lines() {
        assert_eq!(parse_line("220 ready"), Some((220, true)));
        assert_eq!(parse_line("250-PIPELINING"), Some((250, false)));
        assert_eq!(parse_line("250"), Some((250, true)));
        assert_eq!(parse_line("25O ok"), None);
        assert_eq!(parse_line("220+x"), None);
        assert_eq!(parse_line("hi"), None);
    }

    #[test]
    fn finds_starttls_among_extensions() {
        assert!(offers_starttls(&lines(&[
            "250-mx",
            "250-SIZE 1000",
            "250 starttls"
        ])));
        assert!(!offers_starttls(&lines(&["250-mx STARTTLS", "250 SIZE"])));
    }

    /// EHLO answered with a multi-line 250, then QUIT answered 221.
    async fn ehlo_and_quit<S: AsyncRead + AsyncWrite + Unpin>(peer: &mut Peer<S>, starttls: bool) {
        peer.expect("EHLO probe.test").await;
        let tls = if starttls { "250-STARTTLS\r\n" } else { "" };
        peer.send(&format!(
            "250-mx.test\r\n250-PIPELINING\r\n{tls}250 8BITMIME\r\n"
        ))
        .await;
        peer.expect("QUIT").await;
        peer.send("221 2.0.0 Bye\r\n").await;
        peer.shutdown().await;
    }

    /// A good server with a multi-line greeting; returns the lines it received.
    async fn good_server(stream: tokio::net::TcpStream) -> Vec<String> {
        let mut peer = Peer::new(stream);
        peer.send("220-mx.test ESMTP\r\n220 welcome\r\n").await;
        ehlo_and_quit(&mut peer, false).await;
        peer.seen
    }

    /// A server offering STARTTLS with `config`; returns the lines it
    /// received in clear text and over TLS.
    async fn starttls_server(
        stream: tokio::net::TcpStream,
        config: Arc<ServerConfig>,
    ) -> Vec<String> {
        let mut peer = Peer::new(stream);
        peer.send("220 mx.test ESMTP\r\n").await;
        peer.expect("EHLO probe.test").await;
        peer.send("250-mx.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            .await;
        peer.expect("STARTTLS").await;
        peer.send("220 2.0.0 Ready to start TLS\r\n").await;
        let (stream, mut seen) = peer.into_inner();
        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
            return seen;
        };
        let mut peer = Peer::new(stream);
        ehlo_and_quit(&mut peer, false).await;
        seen.append(&mut peer.seen);
        seen
    }

    async fn probe_starttls(
        config: Arc<ServerConfig>,
        tls: crate::config::TlsOptions,
    ) -> (ProbeOutcome, Vec<String>) {
        let (addr, server) = serve(move |stream| starttls_server(stream, config)).await;
        let mut spec = spec(CheckKind::Submission, addr);
        spec.starttls = true;
        spec.tls = tls;
        let outcome = Prober::new().probe(&spec).await;
        (outcome, server.await.unwrap())
    }

    #[tokio::test]
    async fn good_server_passes() {
        let (addr, server) = serve(good_server).await;
        let outcome = Prober::new().probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(outcome.detail, "\"220-mx.test ESMTP\"");
        assert!(outcome.tls.is_none());
        assert_eq!(server.await.unwrap(), ["EHLO probe.test", "QUIT"]);
    }

    #[tokio::test]
    async fn refused_greetings_fail() {
        for greeting in [
            "421 4.3.2 Service shutting down\r\n",
            "554-no\r\n554 go away\r\n",
        ] {
            let (addr, server) = serve(move |stream| async move {
                Peer::new(stream).send(greeting).await;
            })
            .await;
            let outcome = Prober::new().probe(&spec(CheckKind::Smtp, addr)).await;
            assert_eq!(outcome.result, ProbeResult::BadGreeting);
            let code = &greeting[..3];
            assert!(
                outcome
                    .detail
                    .starts_with(&format!("greeting refused: \"{code}")),
                "{}",
                outcome.detail
            );
            server.await.unwrap();
        }
    }

    #[tokio::test]
    async fn ehlo_refusal_fails() {
        let (addr, _server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("220 mx.test\r\n").await;
            peer.expect("EHLO").await;
            peer.send("550 5.7.1 not you\r\n").await;
            peer.recv().await;
        })
        .await;
        let outcome = Prober::new().probe(&spec(CheckKind::Smtp, addr)).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert_eq!(outcome.detail, "EHLO refused: \"550 5.7.1 not you\"");
    }

    #[tokio::test]
    async fn starttls_with_a_valid_certificate_passes() {
        let pki = Pki::new();
        let (outcome, seen) = probe_starttls(pki.valid(), pki.options(7)).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        let tls = outcome.tls.expect("TLS info");
        assert_eq!(tls.version, "TLSv1.3");
        assert!(tls.not_after.is_some());
        assert!(
            outcome.detail.contains("TLSv1.3, certificate valid until"),
            "{}",
            outcome.detail
        );
        assert_eq!(
            seen,
            ["EHLO probe.test", "STARTTLS", "EHLO probe.test", "QUIT"]
        );
    }

    #[tokio::test]
    async fn starttls_not_offered_fails_politely() {
        let (addr, server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("220 mx.test\r\n").await;
            ehlo_and_quit(&mut peer, false).await;
            peer.seen
        })
        .await;
        let mut spec = spec(CheckKind::Submission, addr);
        spec.starttls = true;
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert_eq!(outcome.detail, "STARTTLS not offered");
        assert_eq!(server.await.unwrap(), ["EHLO probe.test", "QUIT"]);
    }

    #[tokio::test]
    async fn starttls_certificate_for_another_name_fails() {
        let pki = Pki::new();
        let (outcome, _) = probe_starttls(pki.server("other.test", -1, 30), pki.options(0)).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert_eq!(
            outcome.detail,
            format!("certificate not valid for {NAME} (it names other.test)")
        );
    }

    #[tokio::test]
    async fn starttls_expired_certificate_fails() {
        let pki = Pki::new();
        let (outcome, _) = probe_starttls(pki.server(NAME, -30, -1), pki.options(0)).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert!(
            outcome.detail.starts_with("certificate expired on 20"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.ends_with(" UTC"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn starttls_untrusted_certificate_fails() {
        let pki = Pki::new();
        let mut options = pki.options(0);
        options.ca_file = None;
        let (outcome, _) = probe_starttls(pki.valid(), options).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert_eq!(outcome.detail, "certificate not trusted (unknown issuer)");
    }

    #[tokio::test]
    async fn starttls_certificate_expiring_soon_fails_after_a_full_dialogue() {
        let pki = Pki::new();
        let (outcome, seen) = probe_starttls(pki.server(NAME, -1, 3), pki.options(7)).await;
        assert_eq!(
            outcome.result,
            ProbeResult::CertExpiring,
            "{}",
            outcome.detail
        );
        assert!(
            outcome.detail.starts_with("certificate expires on 20"),
            "{}",
            outcome.detail
        );
        assert!(
            outcome.detail.contains("cert_min_days is 7"),
            "{}",
            outcome.detail
        );
        assert!(outcome.tls.is_some_and(|t| t.not_after.is_some()));
        assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
    }

    #[tokio::test]
    async fn without_verification_only_the_lifetime_counts() {
        let pki = Pki::new();
        let unverified = crate::config::TlsOptions {
            verify: false,
            name: None,
            ca_file: None,
            cert_min_days: 7,
        };
        let (outcome, _) =
            probe_starttls(pki.server("other.test", -1, 30), unverified.clone()).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        let (outcome, _) = probe_starttls(pki.server("other.test", -1, 3), unverified).await;
        assert_eq!(
            outcome.result,
            ProbeResult::CertExpiring,
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn data_sent_with_the_starttls_reply_is_refused() {
        let (addr, _server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("220 mx.test\r\n").await;
            peer.expect("EHLO").await;
            peer.send("250-mx.test\r\n250 STARTTLS\r\n").await;
            peer.expect("STARTTLS").await;
            peer.send("220 go ahead\r\n250 injected\r\n").await;
            peer.recv().await;
        })
        .await;
        let mut spec = spec(CheckKind::Submission, addr);
        spec.starttls = true;
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert!(
            outcome
                .detail
                .contains("unexpected bytes after the reply to STARTTLS")
        );
    }
}
