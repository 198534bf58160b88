//! A bounded CRLF line reader and writer over any byte stream (TCP or TLS).
//!
//! Mail servers are the peers we distrust most here: one that floods a line
//! without CRLF, or megabytes of them, must cost us at most [`MAX_LINE`]
//! bytes of memory. Time is bounded by the probe's timeout, not here.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, timeout};

use super::failure::{Failure, Step};

/// Longest line accepted, CRLF included. RFC 5321 caps a reply line at 512
/// octets; IMAP capability greetings run longer, but not by this much.
pub(crate) const MAX_LINE: usize = 4096;

/// Room made in the buffer for one read: a greeting or reply line fits,
/// and an idle connection holds no more than this.
const READ_CHUNK: usize = 256;

/// Most lines accepted in one multi-line reply (an EHLO reply has ~10).
pub(crate) const MAX_LINES: usize = 64;

/// How long a closing connection is drained for the peer's own close
/// (TLS close_notify, FIN): reading it avoids our kernel answering with a RST.
const DRAIN_TIME: Duration = Duration::from_millis(100);

/// Most bytes drained at close.
const DRAIN_MAX: usize = 16 * 1024;

/// Why no line could be read.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The peer closed; `partial` holds an unterminated line it sent first.
    Closed {
        partial: Option<String>,
    },
    /// More than [`MAX_LINE`] bytes without a line feed; `start` is the line's beginning.
    TooLong {
        start: String,
    },
    Io(io::Error),
}

impl LineError {
    /// The failure of a probe that awaited `step` and got this.
    pub(crate) fn into_failure(self, step: Step) -> Failure {
        match self {
            LineError::Closed { partial } => Failure::closed(step, partial.as_deref()),
            LineError::TooLong { start } => Failure::new(
                super::ProbeResult::BadGreeting,
                format!(
                    "{step} line longer than {MAX_LINE} bytes: {}",
                    super::failure::quote(&start)
                ),
            ),
            LineError::Io(error) => Failure::io(step, &error),
        }
    }
}

/// A line-oriented connection: reads are buffered and bounded, writes flushed.
#[derive(Debug)]
pub(crate) struct LineConn<S> {
    stream: S,
    /// Bytes read but not yet returned as a line.
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineConn<S> {
    pub(crate) fn new(stream: S) -> Self {
        LineConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next line, without its CRLF (a bare LF is tolerated), decoded lossily.
    pub(crate) async fn read_line(&mut self) -> Result<String, LineError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                return self.take_line(end);
            }
            if self.buf.len() >= MAX_LINE {
                return Err(LineError::TooLong {
                    start: decode(excerpt(&self.buf)),
                });
            }
            self.fill().await?;
        }
    }

    /// Reads a line and maps any error to the failure of `step`.
    pub(crate) async fn expect_line(&mut self, step: Step) -> Result<String, Failure> {
        self.read_line().await.map_err(|e| e.into_failure(step))
    }

    /// Sends one command line, CRLF appended, and flushes it.
    pub(crate) async fn send(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await
    }

    /// Sends a command, mapping a write error to the failure of its reply step.
    pub(crate) async fn command(&mut self, line: &str, step: Step) -> Result<(), Failure> {
        self.send(line).await.map_err(|e| Failure::io(step, &e))
    }

    /// The stream, to start TLS on it. Refused when the peer sent more than
    /// the reply that began TLS: such bytes were sent in clear text and
    /// would be mistaken for protected ones (the STARTTLS command injection
    /// of CVE-2011-0411, seen from the client side).
    pub(crate) fn into_inner(self) -> Result<S, Failure> {
        if self.buf.is_empty() {
            return Ok(self.stream);
        }
        Err(Failure::new(
            super::ProbeResult::TlsError,
            format!(
                "{} unexpected bytes after the reply to STARTTLS, before TLS",
                self.buf.len()
            ),
        ))
    }

    /// Closes after QUIT or LOGOUT, letting the server close first, as the
    /// protocols have it: the side that closes first keeps the connection in
    /// TIME_WAIT for a minute, which a server expects to carry, and a prober
    /// making thousands of connections a second had better not (the
    /// kernel's time-wait table, 131,072 entries here, is full after 13 s at
    /// 10,000 probes/s). Waits [`DRAIN_TIME`] for the server's close, then
    /// closes itself (TLS close_notify, then FIN). Errors do not matter here.
    pub(crate) async fn close(mut self) {
        if timeout(DRAIN_TIME, drain(&mut self.stream)).await.is_err() {
            let _ = timeout(DRAIN_TIME, self.stream.shutdown()).await;
        }
    }

    /// Reads more bytes into the buffer: straight into its spare room, grown
    /// [`READ_CHUNK`] at a time (so it stays under [`MAX_LINE`] plus a
    /// chunk), rather than through a stack array that would sit in the
    /// future of every idle watch connection.
    async fn fill(&mut self) -> Result<(), LineError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve_exact(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(self.closed()),
            Ok(_) => Ok(()),
            // tokio-rustls reports a TCP close without close_notify so: to a
            // health check that is a close like any other.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.closed()),
            Err(e) => Err(LineError::Io(e)),
        }
    }

    fn closed(&mut self) -> LineError {
        let partial = (!self.buf.is_empty()).then(|| decode(&self.buf));
        self.buf.clear();
        LineError::Closed { partial }
    }

    /// Removes the line ending at index `end` (its LF) from the buffer.
    fn take_line(&mut self, end: usize) -> Result<String, LineError> {
        if end + 1 > MAX_LINE {
            return Err(LineError::TooLong {
                start: decode(excerpt(&self.buf)),
            });
        }
        let line: Vec<u8> = self.buf.drain(..=end).collect();
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        Ok(decode(text))
    }
}

/// Whether `line` starts with `prefix`, ASCII case ignored (IMAP keywords
/// are case-insensitive, and lenience costs nothing for the others).
pub(crate) fn starts_with_ci(line: &str, prefix: &str) -> bool {
    line.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The beginning of an over-long line, enough to recognise it in a detail.
fn excerpt(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(200)]
}

/// Lossy UTF-8: escaping of control characters happens when quoting.
fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads and discards until end of stream, an error or [`DRAIN_MAX`] bytes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut chunk = [0u8; 1024];
    let mut total = 0;
    while total < DRAIN_MAX {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, duplex};

    #[tokio::test]
    async fn reads_crlf_and_lf_lines() {
        let (client, mut server) = duplex(1024);
        server.write_all(b"220 one\r\n250 two\nrest").await.unwrap();
        drop(server);
        let mut conn = LineConn::new(client);
        assert_eq!(conn.read_line().await.unwrap(), "220 one");
        assert_eq!(conn.read_line().await.unwrap(), "250 two");
        match conn.read_line().await {
            Err(LineError::Closed { partial }) => assert_eq!(partial.as_deref(), Some("rest")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_line_without_end_is_cut_at_the_bound() {
        let (client, mut server) = duplex(64 * 1024);
        tokio::spawn(async move {
            let junk = vec![b'x'; 64 * 1024];
            let _ = server.write_all(&junk).await;
        });
        let mut conn = LineConn::new(client);
        assert!(matches!(
            conn.read_line().await,
            Err(LineError::TooLong { .. })
        ));
        assert!(conn.buf.len() < MAX_LINE + 1024);
    }

    #[tokio::test]
    async fn into_inner_refuses_buffered_bytes() {
        let (client, mut server) = duplex(1024);
        server.write_all(b"220 go\r\ninjected\r\n").await.unwrap();
        let mut conn = LineConn::new(client);
        assert_eq!(conn.read_line().await.unwrap(), "220 go");
        let failure = conn.into_inner().unwrap_err();
        assert_eq!(failure.result, super::super::ProbeResult::TlsError);
    }
}
