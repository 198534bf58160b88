//! Watch connections: one idle session per up target, so that a server that
//! stops (and closes its sessions) is noticed at once rather than at the next
//! probe. The watch sends a keepalive that changes nothing (IMAP `NOOP`,
//! POP3 `CAPA`, SMTP `NOOP`) every so often, so that a frozen node (stopped,
//! or cut off by a black hole), which closes nothing and answers nothing, is
//! noticed too. The watch only reports how it ended; the caller decides what
//! that means for health (a goodbye announcing a shutdown, or a keepalive
//! left unanswered, counts as one failed observation; the probe that
//! follows decides the rest).

use std::time::Duration;

use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until, timeout};

use super::failure::{Failure, Progress, quote};
use super::lines::LineError;
use super::mail::{self, Command, Dialect, Fits, Goodbye, Session, Verdict, goodbye_kind};
use super::tls::TlsContext;
use super::{ProbeSpec, tcp};

/// How a watch connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    /// The server closed or reset the connection after a good greeting;
    /// `goodbye` is what it announced first, if it said goodbye (IMAP
    /// `* BYE`, SMTP `421`, POP3 `-ERR`).
    Closed {
        goodbye: Option<Goodbye>,
        detail: String,
    },
    /// A keepalive got no complete answer within its deadline.
    Unanswered { detail: String },
    /// No connection, or no good greeting, within the probe's timeout.
    Failed { detail: String },
}

/// The keepalives of a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// This long after the last answer (or the greeting), the next one.
    pub every: Duration,
}

/// The shortest wait for a keepalive's answer: loopback answers in well
/// under a millisecond, a loaded node within tens (24 ms seen with 15
/// watches at once); longer deadlines come from the answers seen.
const KEEPALIVE_FLOOR: Duration = Duration::from_millis(250);

/// How many recent answer times set the deadline.
const RECENT: usize = 16;

/// The slowest of the recent round trips, and a deadline made from them.
#[derive(Clone, Debug, Default)]
pub struct Recent {
    times: Vec<Duration>,
}

impl Recent {
    pub fn push(&mut self, time: Duration) {
        if self.times.len() == RECENT {
            self.times.remove(0);
        }
        self.times.push(time);
    }

    pub fn slowest(&self) -> Option<Duration> {
        self.times.iter().max().copied()
    }

    /// Four times the slowest recent time, at least `floor`, at most `cap`.
    pub fn deadline(&self, floor: Duration, cap: Duration) -> Duration {
        (self.slowest().unwrap_or_default() * 4).max(floor).min(cap)
    }
}

/// A plain or TLS stream: the idle wait does not care which.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens the watch connection, then waits for its end, reopening it when
/// it carried as many keepalives as the protocol takes. Cancel-safe: the
/// connection is owned by the future and closes when it is dropped.
pub(crate) async fn watch(
    spec: &ProbeSpec,
    tls: &TlsContext,
    open_gauge: &IntGauge,
    keepalive: Option<Keepalive>,
) -> WatchEnd {
    let Some(dialect) = mail::dialect(spec.check) else {
        return WatchEnd::Failed {
            detail: format!("no watch for {} checks", spec.check.as_str()),
        };
    };
    loop {
        let mut progress = Progress::default();
        // Boxed, so that the handshake's state machine is allocated only
        // while it runs rather than for the watch's whole idle life.
        let opening = Box::pin(open(spec, tls, dialect, &mut progress));
        let session = match timeout(spec.timeout, opening).await {
            Ok(Ok(session)) => session,
            Ok(Err(failure)) => {
                return WatchEnd::Failed {
                    detail: failure.detail,
                };
            }
            Err(_elapsed) => {
                return WatchEnd::Failed {
                    detail: progress.step.timeout_detail(spec.timeout),
                };
            }
        };
        let _open = OpenWatch::new(open_gauge);
        match idle(session, dialect, spec, keepalive).await {
            Idle::Ended(end) => return end,
            Idle::Full(session) => {
                // Polite, like a client done with its session.
                Box::pin(session.goodbye(spec, &mut Progress::default())).await;
            }
        }
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
    dialect: &'static dyn Dialect,
    progress: &mut Progress,
) -> Result<Session<Box<dyn Stream>>, Failure> {
    let tcp = tcp::connect(spec.addr, progress).await?;
    let stream: Box<dyn Stream> = if spec.check.implicit_tls() {
        Box::new(tls.handshake(tcp, spec, progress).await?)
    } else {
        Box::new(tcp)
    };
    let mut session = Session::new(stream, dialect);
    session.greeting(progress).await?;
    Ok(session)
}

/// How an idle session ended.
enum Idle {
    Ended(WatchEnd),
    /// It carried as many keepalives as the protocol takes.
    Full(Session<Box<dyn Stream>>),
}

/// Waits until the server ends the connection, sending the keepalives;
/// remembers the last line the server sent to tell a goodbye from a plain
/// close.
async fn idle(
    mut session: Session<Box<dyn Stream>>,
    dialect: &'static dyn Dialect,
    spec: &ProbeSpec,
    keepalive: Option<Keepalive>,
) -> Idle {
    let mut last = None;
    let mut unsolicited = 0usize;
    let mut answers = Recent::default();
    let mut sent = 0u32;
    let mut keepalive = keepalive;
    // When the keepalive awaited was sent, and by when it must be answered.
    let mut awaiting: Option<(Instant, Instant)> = None;
    let mut next = keepalive.map(|k| Instant::now() + k.every);
    loop {
        let wake = awaiting.map(|(_, by)| by).or(next);
        let tick = async {
            match wake {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = session.read_line() => {
                let line = match read {
                    Ok(line) => line,
                    Err(LineError::Closed { partial }) => {
                        return Idle::Ended(ended(dialect, partial.or(last), "closed by the server"));
                    }
                    Err(LineError::Io(error)) => {
                        let how = match error.kind() {
                            std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted => "reset by the server".to_owned(),
                            _ => format!("failed: {error}"),
                        };
                        return Idle::Ended(ended(dialect, last, &how));
                    }
                    Err(LineError::TooLong { start }) => {
                        return Idle::Ended(WatchEnd::Closed {
                            goodbye: None,
                            detail: format!("the server sent an over-long line: {}", quote(&start)),
                        });
                    }
                };
                if dialect.is_goodbye(&line) {
                    // The close comes next.
                    last = Some(line);
                    continue;
                }
                if let Some((sent_at, _)) = awaiting {
                    match session.fits(Command::Keepalive, &line) {
                        Fits::More => continue,
                        Fits::Done(Verdict::Ok) => {
                            answers.push(sent_at.elapsed());
                            session.replied();
                            awaiting = None;
                            next = keepalive.map(|k| Instant::now() + k.every);
                            continue;
                        }
                        // The server does not take the keepalive: idle without it.
                        Fits::Done(_) | Fits::Malformed => {
                            session.replied();
                            awaiting = None;
                            keepalive = None;
                            next = None;
                            continue;
                        }
                    }
                }
                // A server that talks on an idle connection it was sent
                // nothing on is broken or hostile: end the watch (the probe
                // that follows decides) rather than read it forever.
                unsolicited += 1;
                if unsolicited > MAX_UNSOLICITED {
                    return Idle::Ended(WatchEnd::Closed {
                        goodbye: None,
                        detail: format!(
                            "the server kept talking on an idle connection: {}",
                            quote(&line)
                        ),
                    });
                }
                last = Some(line);
            }
            () = tick => {
                if let Some((sent_at, by)) = awaiting {
                    let waited = humantime::format_duration(by.saturating_duration_since(sent_at));
                    return Idle::Ended(WatchEnd::Unanswered {
                        detail: format!(
                            "no answer to the watch's {} within {waited}",
                            dialect.name(Command::Keepalive)
                        ),
                    });
                }
                if dialect.keepalives_per_connection().is_some_and(|max| sent >= max) {
                    return Idle::Full(session);
                }
                match session.send(Command::Keepalive, spec).await {
                    Ok(true) => {
                        sent += 1;
                        let now = Instant::now();
                        awaiting = Some((now, now + answers.deadline(KEEPALIVE_FLOOR, spec.timeout)));
                        next = None;
                    }
                    Ok(false) => next = None,
                    Err(_) => {
                        return Idle::Ended(ended(dialect, last, "reset by the server"));
                    }
                }
            }
        }
    }
}

/// The end of a watch whose last line from the server was `last`.
fn ended(dialect: &dyn Dialect, last: Option<String>, how: &str) -> WatchEnd {
    match last {
        Some(line) if dialect.is_goodbye(&line) => WatchEnd::Closed {
            goodbye: Some(goodbye_kind(&line)),
            detail: format!("connection {how} after {}", quote(&line)),
        },
        Some(line) => WatchEnd::Closed {
            goodbye: None,
            detail: format!("connection {how} after unexpected {}", quote(&line)),
        },
        None => WatchEnd::Closed {
            goodbye: None,
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

    /// `end` is a close after a goodbye (of this kind, if `kind` is given).
    #[track_caller]
    fn assert_goodbye(end: &WatchEnd, kind: Option<Goodbye>) {
        let ok = match end {
            WatchEnd::Closed {
                goodbye: Some(seen),
                ..
            } => kind.is_none_or(|k| *seen == k),
            _ => false,
        };
        assert!(ok, "{end:?}");
    }

    async fn watch(check: CheckKind, addr: std::net::SocketAddr) -> WatchEnd {
        Prober::new()
            .watch(&spec(check, addr), &gauge(), None)
            .await
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
                goodbye: Some(Goodbye::Idle),
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
        assert_goodbye(&end, None);
        let end = server(
            CheckKind::Pop3,
            "+OK ready\r\n",
            "-ERR Disconnected for inactivity.\r\n",
        )
        .await;
        assert_goodbye(&end, None);
    }

    #[tokio::test]
    async fn a_bare_close_is_not_polite() {
        let end = server(CheckKind::Imap, "* OK ready\r\n", "").await;
        assert_eq!(
            end,
            WatchEnd::Closed {
                goodbye: None,
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
                goodbye: None,
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
        let watched = tokio::time::timeout(
            Duration::from_millis(200),
            prober.watch(&spec, &gauge(), None),
        )
        .await;
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
        let end = Prober::new().watch(&spec, &gauge(), None).await;
        assert_goodbye(&end, None);
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

    fn every(ms: u64) -> Option<Keepalive> {
        Some(Keepalive {
            every: Duration::from_millis(ms),
        })
    }

    #[tokio::test]
    async fn answered_keepalives_keep_the_watch_open() {
        let (addr, server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("* OK ready\r\n").await;
            // Answers until the watch is dropped.
            while let Some(line) = peer.recv().await {
                let tag = line.split(' ').next().unwrap_or("").to_owned();
                peer.send(&format!("{tag} OK NOOP completed.\r\n")).await;
            }
            peer.seen
        })
        .await;
        let prober = Prober::new();
        let spec = spec(CheckKind::Imap, addr);
        let watched = tokio::time::timeout(
            Duration::from_millis(400),
            prober.watch(&spec, &gauge(), every(50)),
        )
        .await;
        assert!(watched.is_err(), "the watch ended: {watched:?}");
        let seen = server.await.unwrap();
        assert!(seen.len() >= 3, "{seen:?}");
        assert_eq!(seen[..3], ["a1 NOOP", "a2 NOOP", "a3 NOOP"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_keepalive_left_unanswered_ends_the_watch() {
        let (addr, _server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("220 mx\r\n").await;
            // Frozen: reads, never answers.
            while peer.recv().await.is_some() {}
        })
        .await;
        let started = tokio::time::Instant::now();
        let end = Prober::new()
            .watch(&spec(CheckKind::Submission, addr), &gauge(), every(1000))
            .await;
        assert_eq!(
            end,
            WatchEnd::Unanswered {
                detail: "no answer to the watch's NOOP within 250ms".to_owned()
            }
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1250) && took < Duration::from_millis(1300),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn pop3_keeps_alive_with_capa() {
        let (addr, server) = serve(|stream| async move {
            let mut peer = Peer::new(stream);
            peer.send("+OK ready\r\n").await;
            while peer.recv().await.is_some() {
                peer.send("+OK\r\nTOP\r\nUIDL\r\n.\r\n").await;
            }
            peer.seen
        })
        .await;
        let prober = Prober::new();
        let spec = spec(CheckKind::Pop3, addr);
        let watched = tokio::time::timeout(
            Duration::from_millis(300),
            prober.watch(&spec, &gauge(), every(50)),
        )
        .await;
        assert!(watched.is_err(), "the watch ended: {watched:?}");
        let seen = server.await.unwrap();
        assert!(
            seen.len() >= 2 && seen.iter().all(|l| l == "CAPA"),
            "{seen:?}"
        );
    }

    /// Exim ends a session after 10 commands that send no mail: an SMTP
    /// watch says goodbye after 8 keepalives and opens another connection.
    #[tokio::test]
    async fn an_smtp_watch_opens_another_connection_after_eight_keepalives() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sessions = seen.clone();
        let _server = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    let mut peer = Peer::new(stream);
                    peer.send("220 mx\r\n").await;
                    while let Some(line) = peer.recv().await {
                        let reply = if line == "QUIT" {
                            "221 2.0.0 Bye\r\n"
                        } else {
                            "250 2.0.0 OK\r\n"
                        };
                        peer.send(reply).await;
                    }
                    sessions.lock().unwrap().push(peer.seen);
                });
            }
        });
        let prober = Prober::new();
        let spec = spec(CheckKind::Submission, addr);
        let watched = tokio::time::timeout(
            Duration::from_millis(600),
            prober.watch(&spec, &gauge(), every(20)),
        )
        .await;
        assert!(watched.is_err(), "the watch ended: {watched:?}");
        let mut want = vec!["NOOP"; 8];
        want.push("QUIT");
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "never reconnected");
        for session in &seen {
            assert_eq!(session, &want);
        }
    }

    #[tokio::test]
    async fn a_goodbye_announcing_a_shutdown_is_told_from_an_idle_timeout() {
        let end = server(CheckKind::Imap, "* OK ready\r\n", "* BYE Shutting down\r\n").await;
        assert_goodbye(&end, Some(Goodbye::Shutdown));
        let end = server(
            CheckKind::Submission,
            "220 mx\r\n",
            "421 4.3.2 mail1 Shutting down\r\n",
        )
        .await;
        assert_goodbye(&end, Some(Goodbye::Shutdown));
    }
}
