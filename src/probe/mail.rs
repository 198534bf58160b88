//! One scaffold for the mail protocols: connect, implicit TLS or STARTTLS,
//! greeting, the commands before login, the polite goodbye, and the idle
//! watch connection. What differs between SMTP, POP3 and IMAP is their
//! grammar, given by a [`Dialect`]: the text of each command and how a line
//! read fits the reply awaited. Dialects are pure (no I/O), so the grammar is
//! tested line by line and the scaffold once.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::failure::{Failure, Progress, Step, quote};
use super::lines::{LineConn, MAX_LINES};
use super::tls::TlsContext;
use super::{ProbeResult, ProbeSpec, imap, pop3, smtp, tcp};
use crate::config::CheckKind;

/// A command a probe or a watch sends before login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// SMTP's EHLO (POP3 and IMAP have nothing to say before STARTTLS).
    Hello,
    StartTls,
    /// QUIT or LOGOUT.
    Goodbye,
    /// A command that changes nothing, sent on an idle watch connection:
    /// a frozen node (stopped, black-holed) answers nothing.
    Keepalive,
}

/// What a complete reply says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// What the protocol calls for (`220`, `+OK`, `* OK`, `a1 OK`).
    Ok,
    /// A well-formed refusal (`421`, `-ERR`, `* BYE`, `a1 NO`).
    Refused,
    /// Well formed, but not a reply this step can take.
    Unexpected,
}

/// How one line read fits the reply awaited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fits {
    /// The reply goes on (an SMTP `250-` line, an untagged IMAP line).
    More,
    /// The reply is complete.
    Done(Verdict),
    /// Not a line of this protocol at all: quoted as it is.
    Malformed,
}

/// The grammar of one mail protocol.
pub(crate) trait Dialect: Sync {
    /// The text of `command` (IMAP's carry `tag`); `None` when the protocol
    /// has no such step.
    fn command(&self, command: Command, tag: u32, spec: &ProbeSpec) -> Option<String>;

    /// How `line` fits the reply to `awaited` (`None`: the greeting).
    fn fits(&self, awaited: Option<Command>, tag: u32, line: &str) -> Fits;

    /// The name of a command in details ("EHLO", "STLS", "LOGOUT").
    fn name(&self, command: Command) -> &'static str;

    /// The line of a reply quoted in a detail: the first (SMTP's code line)
    /// unless the protocol says otherwise.
    fn quoted<'a>(&self, lines: &'a [String]) -> &'a str {
        lines.first().map_or("", String::as_str)
    }

    /// Whether the reply to Hello lists STARTTLS. Protocols without Hello
    /// learn it from STARTTLS's own answer.
    fn offers_starttls(&self, _hello: &[String]) -> bool {
        true
    }

    /// Whether Hello is sent again over TLS (SMTP: RFC 3207 §4.2, the server
    /// forgets what it learned in clear text).
    fn hello_again(&self) -> bool {
        false
    }

    /// Whether a line sent before a close is a goodbye: the server said why
    /// it closes (an idle timeout, a shutdown).
    fn is_goodbye(&self, line: &str) -> bool;

    /// How many keepalives one connection may carry before the watch says
    /// goodbye and opens another (`None`: no limit).
    fn keepalives_per_connection(&self) -> Option<u32> {
        None
    }
}

/// What a server's goodbye announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goodbye {
    /// An idle timeout (`* BYE Disconnected for inactivity.`, `421 4.4.2 ...
    /// Error: timeout exceeded`): nothing is wrong with the server.
    Idle,
    /// A shutdown (`* BYE Shutting down`, `421 4.3.2 ... Shutting down`,
    /// Exim's `Service not available`): the node is going away, or
    /// reloading (dovecot says the same to idle clients 6 s after a reload).
    Shutdown,
    /// Anything else (`* BYE Auth process broken`, `421 ... too many errors`).
    Other,
}

/// Classifies a goodbye line by its words: the idle timeout first, then
/// a shutdown. Seen in dovecot (measured), Postfix, Exim, Cyrus and Courier
/// (their sources): every text in the tests below is sorted right.
pub(crate) fn goodbye_kind(line: &str) -> Goodbye {
    let text = line.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if any(&[
        "inactiv",
        "idle",
        "timeout",
        "time out",
        "timed out",
        "autologout",
        "4.4.2",
    ]) {
        Goodbye::Idle
    } else if any(&[
        "shutting down",
        "shut down",
        "shutdown",
        "service not available",
        "server closing",
        "4.3.2",
        "going down",
        "restart",
    ]) {
        Goodbye::Shutdown
    } else {
        Goodbye::Other
    }
}

/// The dialect of a mail check; `None` for tcp and http.
pub(crate) fn dialect(check: CheckKind) -> Option<&'static dyn Dialect> {
    match check {
        CheckKind::Smtp | CheckKind::Submission | CheckKind::Smtps => Some(&smtp::Smtp),
        CheckKind::Pop3 | CheckKind::Pop3s => Some(&pop3::Pop3),
        CheckKind::Imap | CheckKind::Imaps => Some(&imap::Imap),
        CheckKind::Tcp | CheckKind::Http | CheckKind::Https => None,
    }
}

/// A complete reply.
struct Reply {
    verdict: Verdict,
    lines: Vec<String>,
}

/// A line-oriented session in one dialect, numbering IMAP's tags.
pub(crate) struct Session<S> {
    conn: LineConn<S>,
    dialect: &'static dyn Dialect,
    /// The tag of the next command.
    tag: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(crate) fn new(stream: S, dialect: &'static dyn Dialect) -> Self {
        Self {
            conn: LineConn::new(stream),
            dialect,
            tag: 1,
        }
    }

    /// Reads one reply; `awaited` is `None` for the greeting.
    async fn reply(&mut self, awaited: Option<Command>, step: Step) -> Result<Reply, Failure> {
        let mut lines = Vec::new();
        loop {
            let line = self.conn.expect_line(step).await?;
            match self.dialect.fits(awaited, self.tag, &line) {
                Fits::Malformed => return Err(Failure::unexpected(step, &line)),
                Fits::Done(verdict) => {
                    lines.push(line);
                    return Ok(Reply { verdict, lines });
                }
                Fits::More => {
                    lines.push(line);
                    if lines.len() >= MAX_LINES {
                        return Err(Failure::new(
                            ProbeResult::BadGreeting,
                            format!("{step} longer than {MAX_LINES} lines"),
                        ));
                    }
                }
            }
        }
    }

    /// Reads the greeting; returns its first line when it admits us.
    pub(crate) async fn greeting(&mut self, progress: &mut Progress) -> Result<String, Failure> {
        progress.at(Step::Greeting);
        let reply = match progress.greeting_by {
            Some(by) => {
                let started = Instant::now();
                match timeout_at(by, self.reply(None, Step::Greeting)).await {
                    Ok(reply) => reply?,
                    Err(_) => {
                        let waited = by.saturating_duration_since(started);
                        return Err(Failure::new(
                            ProbeResult::Timeout,
                            Step::Greeting.timeout_detail(waited.max(Duration::from_millis(1))),
                        ));
                    }
                }
            }
            None => self.reply(None, Step::Greeting).await?,
        };
        progress.greeted = Some(Instant::now());
        let quoted = self.dialect.quoted(&reply.lines);
        match reply.verdict {
            Verdict::Ok => Ok(reply.lines.first().cloned().unwrap_or_default()),
            Verdict::Refused => Err(Failure::refused("greeting", quoted)),
            Verdict::Unexpected => Err(Failure::unexpected(Step::Greeting, quoted)),
        }
    }

    /// Sends `command` and reads its reply; `None` when the dialect has no
    /// such command.
    async fn ask(
        &mut self,
        command: Command,
        spec: &ProbeSpec,
        progress: &mut Progress,
    ) -> Result<Option<Reply>, Failure> {
        let Some(text) = self.dialect.command(command, self.tag, spec) else {
            return Ok(None);
        };
        let step = Step::Reply(self.dialect.name(command));
        progress.at(step);
        self.conn.command(&text, step).await?;
        let reply = self.reply(Some(command), step).await;
        self.tag += 1;
        reply.map(Some)
    }

    /// Hello (SMTP's EHLO); returns its lines (empty when there is none).
    async fn hello(
        &mut self,
        spec: &ProbeSpec,
        progress: &mut Progress,
    ) -> Result<Vec<String>, Failure> {
        let Some(reply) = self.ask(Command::Hello, spec, progress).await? else {
            return Ok(Vec::new());
        };
        let quoted = self.dialect.quoted(&reply.lines);
        let name = self.dialect.name(Command::Hello);
        match reply.verdict {
            Verdict::Ok => Ok(reply.lines),
            Verdict::Refused => Err(Failure::refused(name, quoted)),
            Verdict::Unexpected => Err(Failure::unexpected(Step::Reply(name), quoted)),
        }
    }

    /// The polite goodbye: QUIT or LOGOUT, its answer read (best effort),
    /// then the connection closed, the server closing first.
    pub(crate) async fn goodbye(mut self, spec: &ProbeSpec, progress: &mut Progress) {
        if let Some(text) = self.dialect.command(Command::Goodbye, self.tag, spec) {
            let step = Step::Reply(self.dialect.name(Command::Goodbye));
            progress.at(step);
            if self.conn.send(&text).await.is_ok() {
                let _ = self.reply(Some(Command::Goodbye), step).await;
            }
        }
        self.conn.close().await;
    }

    /// Records `failure` (a goodbye that hangs must not turn it into a
    /// timeout), says goodbye, and returns it.
    async fn give_up(self, failure: Failure, spec: &ProbeSpec, progress: &mut Progress) -> Failure {
        progress.fail(failure.clone());
        self.goodbye(spec, progress).await;
        failure
    }

    /// Greeting, Hello, goodbye: the probe of a plain or implicit-TLS session.
    pub(crate) async fn dialogue(
        mut self,
        spec: &ProbeSpec,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let greeting = self.greeting(progress).await?;
        self.hello(spec, progress).await?;
        progress.pass(quote(&greeting));
        self.goodbye(spec, progress).await;
        Ok(())
    }

    /// The next line, whatever it is (the idle watch reads so).
    pub(crate) async fn read_line(&mut self) -> Result<String, super::lines::LineError> {
        self.conn.read_line().await
    }

    /// Sends `command` without reading its reply; false when the dialect
    /// has no such command.
    pub(crate) async fn send(
        &mut self,
        command: Command,
        spec: &ProbeSpec,
    ) -> std::io::Result<bool> {
        match self.dialect.command(command, self.tag, spec) {
            Some(text) => self.conn.send(&text).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// How `line` fits the reply to `command` sent last (with the current tag).
    pub(crate) fn fits(&self, command: Command, line: &str) -> Fits {
        self.dialect.fits(Some(command), self.tag, line)
    }

    /// The reply to the command sent last is complete: the next one gets a new tag.
    pub(crate) fn replied(&mut self) {
        self.tag += 1;
    }
}

impl Session<TcpStream> {
    /// Greeting, Hello, STARTTLS, the TLS handshake, Hello again where the
    /// protocol asks for it, goodbye.
    async fn starttls_dialogue(
        mut self,
        spec: &ProbeSpec,
        tls: &TlsContext,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let greeting = self.greeting(progress).await?;
        let hello = self.hello(spec, progress).await?;
        if !self.dialect.offers_starttls(&hello) {
            let failure = Failure::new(ProbeResult::TlsError, "STARTTLS not offered");
            return Err(self.give_up(failure, spec, progress).await);
        }
        let name = self.dialect.name(Command::StartTls);
        let Some(reply) = self.ask(Command::StartTls, spec, progress).await? else {
            return Err(Failure::new(
                ProbeResult::Error,
                "no STARTTLS in this protocol",
            ));
        };
        let quoted = quote(self.dialect.quoted(&reply.lines));
        match reply.verdict {
            Verdict::Ok => {}
            Verdict::Refused => {
                let failure =
                    Failure::new(ProbeResult::TlsError, format!("{name} refused: {quoted}"));
                return Err(self.give_up(failure, spec, progress).await);
            }
            Verdict::Unexpected => {
                let line = self.dialect.quoted(&reply.lines).to_string();
                return Err(Failure::unexpected(Step::Reply(name), &line));
            }
        }
        let (dialect, tag) = (self.dialect, self.tag);
        let stream = tls
            .handshake(self.conn.into_inner()?, spec, progress)
            .await?;
        let mut session = Session {
            conn: LineConn::new(stream),
            dialect,
            tag,
        };
        if dialect.hello_again() {
            session.hello(spec, progress).await?;
        }
        progress.pass(quote(&greeting));
        session.goodbye(spec, progress).await;
        Ok(())
    }
}

/// A mail check: plain, implicit TLS, or STARTTLS.
pub(crate) async fn probe(
    dialect: &'static dyn Dialect,
    spec: &ProbeSpec,
    tls: &TlsContext,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let stream = tcp::connect(spec.addr, progress).await?;
    if spec.check.implicit_tls() {
        let stream = tls.handshake(stream, spec, progress).await?;
        Session::new(stream, dialect).dialogue(spec, progress).await
    } else if spec.starttls {
        Session::new(stream, dialect)
            .starttls_dialogue(spec, tls, progress)
            .await
    } else {
        Session::new(stream, dialect).dialogue(spec, progress).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Prober;
    use crate::probe::testkit::{Peer, Pki, accept_tls, serve, spec};

    /// Implicit TLS (RFC 8314): the handshake first, then the protocol, in
    /// every dialect; the probe's detail names the TLS version and expiry.
    #[tokio::test]
    async fn implicit_tls_starts_with_the_handshake_in_every_dialect() {
        /// (check, greeting, the exchanges that follow).
        type Case = (
            CheckKind,
            &'static str,
            &'static [(&'static str, &'static str)],
        );
        let cases: [Case; 3] = [
            (
                CheckKind::Smtps,
                "220 mx.test ESMTP\r\n",
                &[
                    ("EHLO probe.test", "250-mx.test\r\n250 8BITMIME\r\n"),
                    ("QUIT", "221 2.0.0 Bye\r\n"),
                ],
            ),
            (
                CheckKind::Pop3s,
                "+OK ready\r\n",
                &[("QUIT", "+OK Logging out.\r\n")],
            ),
            (
                CheckKind::Imaps,
                "* OK ready\r\n",
                &[(
                    "a1 LOGOUT",
                    "* BYE Logging out\r\na1 OK Logout completed.\r\n",
                )],
            ),
        ];
        for (check, greeting, script) in cases {
            let pki = Pki::new();
            let config = pki.valid();
            let (addr, server) = serve(move |stream| async move {
                Peer::new(accept_tls(config, stream).await)
                    .script(greeting, script)
                    .await
            })
            .await;
            let mut spec = spec(check, addr);
            spec.tls = pki.options(0);
            let outcome = Prober::new().probe(&spec).await;
            assert_eq!(
                outcome.result,
                ProbeResult::Ok,
                "{check:?}: {}",
                outcome.detail
            );
            assert!(outcome.tls.is_some());
            let first = greeting.trim_end();
            assert!(
                outcome
                    .detail
                    .starts_with(&format!("\"{first}\" (TLSv1.3, certificate valid until")),
                "{check:?}: {}",
                outcome.detail
            );
            let commands: Vec<&str> = script.iter().map(|(c, _)| *c).collect();
            assert_eq!(server.await.unwrap(), commands, "{check:?}");
        }
    }

    /// Every dialect's greeting, refusal and goodbye, line by line.
    #[test]
    fn the_dialects_read_their_greetings() {
        let cases: [(&dyn Dialect, &str, Fits); 9] = [
            (&smtp::Smtp, "220 mx ESMTP", Fits::Done(Verdict::Ok)),
            (&smtp::Smtp, "220-mx", Fits::More),
            (
                &smtp::Smtp,
                "421 4.3.2 Shutting down",
                Fits::Done(Verdict::Refused),
            ),
            (&smtp::Smtp, "hello", Fits::Malformed),
            (&pop3::Pop3, "+OK ready", Fits::Done(Verdict::Ok)),
            (&pop3::Pop3, "-ERR busy", Fits::Done(Verdict::Refused)),
            (&imap::Imap, "* PREAUTH hi", Fits::Done(Verdict::Ok)),
            (&imap::Imap, "* BYE busy", Fits::Done(Verdict::Refused)),
            (&imap::Imap, "a1 OK", Fits::Done(Verdict::Unexpected)),
        ];
        for (dialect, line, want) in cases {
            assert_eq!(dialect.fits(None, 1, line), want, "{line}");
        }
    }

    #[test]
    fn goodbyes_tell_an_idle_timeout_from_a_shutdown() {
        let idle = [
            "* BYE Disconnected for inactivity.",
            "-ERR Disconnected for inactivity.",
            "421 4.4.2 mail1 Disconnected for inactivity.",
            "421 4.4.2 mx.example.com Error: timeout exceeded",
            "421 mx.example.com: SMTP command timeout - closing connection",
            "* BYE idle for too long",
            "* BYE Autologout; idle for too long",
        ];
        let shutdown = [
            "* BYE Shutting down",
            "-ERR Shutting down",
            "421 4.3.2 mail1 Shutting down",
            "* BYE Server shutting down.",
            "-ERR [SYS/TEMP] Server shutting down.",
            "421 mx.example.com: Service not available - closing connection",
            "* BYE IMAP4rev1 server shut down by signal.",
        ];
        let other = [
            "* BYE Auth process broken",
            "* BYE Too many invalid IMAP commands.",
            "421 4.7.0 mx.example.com Error: too many errors",
            "421 4.3.0 mx.example.com Server local data error",
        ];
        for line in idle {
            assert_eq!(goodbye_kind(line), Goodbye::Idle, "{line}");
        }
        for line in shutdown {
            assert_eq!(goodbye_kind(line), Goodbye::Shutdown, "{line}");
        }
        for line in other {
            assert_eq!(goodbye_kind(line), Goodbye::Other, "{line}");
        }
    }

    #[test]
    fn the_goodbyes_are_recognised() {
        assert!(smtp::Smtp.is_goodbye("421 4.4.2 mx Error: timeout exceeded"));
        assert!(pop3::Pop3.is_goodbye("-ERR Disconnected for inactivity."));
        assert!(imap::Imap.is_goodbye("* BYE Server shutting down."));
        assert!(!imap::Imap.is_goodbye("* OK still here"));
    }
}
