//! Watch connections: one idle session per up target, so that a server that
//! stops (and closes its sessions) is noticed at once rather than at the next
//! probe. The watch only reports how the connection ended; the probe that
//! the caller then runs decides the health.

use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;

use super::failure::{Failure, Progress, quote};
use super::lines::{LineConn, LineError};
use super::mail::{self, Dialect, Session};
use super::tls::TlsContext;
use super::{ProbeSpec, tcp};

/// How a watch connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// The server closed or reset the connection after a good greeting.
    /// `polite`: it said goodbye first (IMAP `* BYE`, SMTP `421`, POP3
    /// `-ERR`), as a server does on an idle timeout or an orderly shutdown.
    Closed { polite: bool, detail: String },
    /// No connection, or no good greeting, within the probe's timeout.
    Failed { detail: String },
}

/// A plain or TLS stream: the idle wait does not care which.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens the watch connection, then waits for its end. Cancel-safe: the
/// connection is owned by the future and closes when it is dropped.
pub(crate) async fn watch(spec: &ProbeSpec, tls: &TlsContext, open_gauge: &IntGauge) -> WatchEnd {
    let Some(mail) = mail::dialect(spec.check) else {
        return WatchEnd::Failed {
            detail: format!("no watch for {} checks", spec.check.as_str()),
        };
    };
    let mut progress = Progress::default();
    match timeout(spec.timeout, open(spec, tls, mail, &mut progress)).await {
        Ok(Ok(conn)) => {
            let _open = OpenWatch::new(open_gauge);
            idle(conn, mail).await
        }
        Ok(Err(failure)) => WatchEnd::Failed {
            detail: failure.detail,
        },
        Err(_elapsed) => WatchEnd::Failed {
            detail: progress.step.timeout_detail(spec.timeout),
        },
    }
}

/// Lines a server may send on an idle watch connection before it is ended
/// (an IMAP server may push a few untagged lines; a flood is not that).
const MAX_UNSOLICITED: usize = 16;

/// Counts an established watch connection while it lives (dropped with the
/// future, so a cancelled watch is uncounted too).
struct OpenWatch<'a>(&'a IntGauge);

impl<'a> OpenWatch<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenWatch<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Connects, starts TLS for implicit-TLS checks, and reads a good greeting.
async fn open(
    spec: &ProbeSpec,
    tls: &TlsContext,
    mail: &'static dyn Dialect,
    progress: &mut Progress,
) -> Result<LineConn<Box<dyn Stream>>, Failure> {
    let tcp = tcp::connect(spec.addr, progress).await?;
    let stream: Box<dyn Stream> = if spec.check.implicit_tls() {
        Box::new(tls.handshake(tcp, spec, progress).await?)
    } else {
        Box::new(tcp)
    };
    let mut session = Session::new(stream, mail);
    session.greeting(progress).await?;
    Ok(session.into_conn())
}

/// Waits, sending nothing, until the server ends the connection; remembers
/// the last line it sent to tell a goodbye from a plain close.
async fn idle(mut conn: LineConn<Box<dyn Stream>>, mail: &dyn Dialect) -> WatchEnd {
    let mut last = None;
    let mut unsolicited = 0usize;
    loop {
        match conn.read_line().await {
            Ok(line) => {
                // A server that talks on an idle connection it was sent
                // nothing on is broken or hostile: end the watch (the probe
                // that follows decides) rather than read it forever.
                unsolicited += 1;
                if unsolicited > MAX_UNSOLICITED && !mail.is_goodbye(&line) {
                    return WatchEnd::Closed {
                        polite: false,
                        detail: format!(
                            "the server kept talking on an idle connection: {}",
                            quote(&line)
                        ),
                    };
                }
                last = Some(line);
            }
            Err(LineError::Closed { partial }) => {
                return ended(mail, partial.or(last), "closed by the server");
            }
            Err(LineError::Io(error)) => {
                let how = match error.kind() {
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                        "reset by the server".to_owned()
                    }
                    _ => format!("failed: {error}"),
                };
                return ended(mail, last, &how);
            }
            Err(LineError::TooLong { start }) => {
                return WatchEnd::Closed {
                    polite: false,
                    detail: format!("the server sent an over-long line: {}", quote(&start)),
                };
            }
        }
    }
}

/// The end of a watch whose last line from the server was `last`.
fn ended(mail: &dyn Dialect, last: Option<String>, how: &str) -> WatchEnd {
    match last {
        Some(line) if mail.is_goodbye(&line) => WatchEnd::Closed {
            polite: true,
            detail: format!("connection {how} after {}", quote(&line)),
        },
        Some(line) => WatchEnd::Closed {
            polite: false,
            detail: format!("connection {how} after unexpected {}", quote(&line)),
        },
        None => WatchEnd::Closed {
            polite: false,
            detail: format!("connection {how} without a goodbye"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    use super::*;
    use crate::config::CheckKind;
    use crate::probe::Prober;
    use crate::probe::testkit::{Peer, Pki, accept_tls, closed_port, serve, spec};

    fn gauge() -> prometheus::IntGauge {
        prometheus::IntGauge::new("watch_connections", "open").unwrap()
    }

    async fn watch(check: CheckKind, addr: std::net::SocketAddr) -> WatchEnd {
        Prober::new().watch(&spec(check, addr), &gauge()).await
    }

    /// Greets, idles a moment, then says `goodbye` (if any) and closes.
    async fn server(check: CheckKind, greeting: &'static str, goodbye: &'static str) -> WatchEnd {
        let (addr, server) = serve(move |stream| async move {
            let mut peer = Peer::new(stream);
            peer.send(greeting).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            peer.send(goodbye).await;
            peer.shutdown().await;
            // Whatever the watch sent: it must be nothing.
            peer.recv().await
        })
        .await;
        let end = watch(check, addr).await;
        assert_eq!(server.await.unwrap(), None, "the watch sent something");
        end
    }

    #[tokio::test]
    async fn bye_then_close_is_polite() {
        let end = server(
            CheckKind::Imap,
            "* OK ready\r\n",
            "* BYE Disconnected for inactivity.\r\n",
        )
        .await;
        assert_eq!(
            end,
            WatchEnd::Closed {
                polite: true,
                detail:
                    "connection closed by the server after \"* BYE Disconnected for inactivity.\""
                        .to_owned()
            }
        );
    }

    #[tokio::test]
    async fn smtp_421_and_pop3_err_are_polite() {
        let end = server(
            CheckKind::Smtp,
            "220 mx\r\n",
            "421 4.4.2 mx Error: timeout exceeded\r\n",
        )
        .await;
        assert!(
            matches!(end, WatchEnd::Closed { polite: true, .. }),
            "{end:?}"
        );
        let end = server(
            CheckKind::Pop3,
            "+OK ready\r\n",
            "-ERR Disconnected for inactivity.\r\n",
        )
        .await;
        assert!(
            matches!(end, WatchEnd::Closed { polite: true, .. }),
            "{end:?}"
        );
    }

    #[tokio::test]
    async fn a_bare_close_is_not_polite() {
        let end = server(CheckKind::Imap, "* OK ready\r\n", "").await;
        assert_eq!(
            end,
            WatchEnd::Closed {
                polite: false,
                detail: "connection closed by the server without a goodbye".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn a_reset_is_not_polite() {
        let (addr, _server) = serve(|stream: TcpStream| async move {
            let mut peer = Peer::new(stream);
            peer.send("* OK ready\r\n").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (stream, _) = peer.into_inner();
            stream.set_zero_linger().unwrap();
        })
        .await;
        let end = watch(CheckKind::Imap, addr).await;
        assert_eq!(
            end,
            WatchEnd::Closed {
                polite: false,
                detail: "connection reset by the server without a goodbye".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn a_refused_greeting_or_connection_fails() {
        let (addr, _server) = serve(|stream| async move {
            Peer::new(stream).send("* BYE too busy\r\n").await;
        })
        .await;
        let end = watch(CheckKind::Imap, addr).await;
        assert_eq!(
            end,
            WatchEnd::Failed {
                detail: "greeting refused: \"* BYE too busy\"".to_owned()
            }
        );
        let end = watch(CheckKind::Imap, closed_port().await).await;
        assert_eq!(
            end,
            WatchEnd::Failed {
                detail: "connection refused".to_owned()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_fails_within_the_timeout() {
        let (addr, _server) = serve(|stream| async move {
            std::future::pending::<()>().await;
            drop(stream);
        })
        .await;
        let end = watch(CheckKind::Pop3, addr).await;
        assert_eq!(
            end,
            WatchEnd::Failed {
                detail: "no greeting within 5s".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn dropping_the_watch_closes_the_connection() {
        let (addr, server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("220 mx\r\n").await;
            let (mut stream, _) = peer.into_inner();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            rest
        })
        .await;
        let prober = Prober::new();
        let spec = spec(CheckKind::Submission, addr);
        let watched =
            tokio::time::timeout(Duration::from_millis(200), prober.watch(&spec, &gauge())).await;
        assert!(watched.is_err(), "the watch ended by itself: {watched:?}");
        assert!(server.await.unwrap().is_empty(), "the watch sent something");
    }

    #[tokio::test]
    async fn imaps_watch_greets_over_tls() {
        let pki = Pki::new();
        let config = pki.valid();
        let (addr, _server) = serve(move |stream| async move {
            let mut peer = Peer::new(accept_tls(config, stream).await);
            peer.send("* OK ready\r\n").await;
            peer.send("* BYE Server shutting down.\r\n").await;
            peer.shutdown().await;
        })
        .await;
        let mut spec = spec(CheckKind::Imaps, addr);
        spec.tls = pki.options(0);
        let end = Prober::new().watch(&spec, &gauge()).await;
        assert!(
            matches!(end, WatchEnd::Closed { polite: true, .. }),
            "{end:?}"
        );
    }

    #[tokio::test]
    async fn only_mail_checks_are_watched() {
        let end = watch(CheckKind::Http, closed_port().await).await;
        assert_eq!(
            end,
            WatchEnd::Failed {
                detail: "no watch for http checks".to_owned()
            }
        );
    }
}
