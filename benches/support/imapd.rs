//! An in-process IMAP responder on many addresses: greets `* OK`, answers
//! `LOGOUT` as dovecot does, holds idle (watch) connections, and can be
//! taken down and up as a whole (every listener closed: connections refused,
//! and every connection closed) or told to reset exactly one connection.
//! [`Imapd::start_slow`] greets only after a delay: a node that is slow but
//! alive.
//!
//! It runs on its own tokio runtime so the blocking benches can drive it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 LOGIN-REFERRALS] bench ready.\r\n";

/// Counters, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted (reset ones included).
    pub accepted: AtomicU64,
    /// LOGOUTs answered.
    pub logouts: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections reset on purpose ([`Imapd::refuse_next`]).
    pub reset: AtomicU64,
    /// Milliseconds since start of the last accept.
    pub last_accept_ms: AtomicU64,
    /// Listeners open now.
    pub listening: AtomicU64,
}

/// The responder. Dropping it stops everything.
pub struct Imapd {
    rt: tokio::runtime::Runtime,
    addrs: Vec<SocketAddr>,
    token: Mutex<Option<CancellationToken>>,
    refuse_next: Arc<AtomicBool>,
    /// How long each session waits before its greeting.
    greet_after: Duration,
    pub stats: Arc<Stats>,
    born: Instant,
}

impl Imapd {
    /// Listens on every one of `addrs` (a fixed port each; an address given
    /// several times gets several listeners) with `workers` runtime threads.
    pub fn start(addrs: &[SocketAddr], workers: usize) -> io::Result<Imapd> {
        Imapd::start_slow(addrs, workers, Duration::ZERO)
    }

    /// As [`Imapd::start`], but every session greets `greet_after` after
    /// the connection was accepted.
    pub fn start_slow(
        addrs: &[SocketAddr],
        workers: usize,
        greet_after: Duration,
    ) -> io::Result<Imapd> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("imapd")
            .enable_all()
            .build()?;
        let imapd = Imapd {
            rt,
            addrs: addrs.to_vec(),
            token: Mutex::new(None),
            refuse_next: Arc::new(AtomicBool::new(false)),
            greet_after,
            stats: Arc::new(Stats::default()),
            born: Instant::now(),
        };
        imapd.up()?;
        Ok(imapd)
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Binds every listener again (after [`Imapd::down`]).
    pub fn up(&self) -> io::Result<()> {
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Ok(());
        }
        let token = CancellationToken::new();
        let listeners = self.rt.block_on(async {
            self.addrs
                .iter()
                .map(|addr| listen(*addr))
                .collect::<io::Result<Vec<_>>>()
        })?;
        self.stats
            .listening
            .fetch_add(listeners.len() as u64, Ordering::SeqCst);
        for listener in listeners {
            let ctx = Ctx {
                token: token.clone(),
                refuse_next: self.refuse_next.clone(),
                greet_after: self.greet_after,
                stats: self.stats.clone(),
                born: self.born,
            };
            self.rt.spawn(accept_loop(listener, ctx));
        }
        *slot = Some(token);
        Ok(())
    }

    /// Closes every listener (new connections are refused) and every open
    /// connection (the peers see a close), at once.
    pub fn down(&self) {
        if let Some(token) = self.token.lock().unwrap_or_else(|e| e.into_inner()).take() {
            token.cancel();
        }
        // The accept loops drop their listeners when they see the token;
        // wait until they have, so that "down" means refused.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.stats.listening.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "listeners still open after down()"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The next connection accepted is reset (RST) instead of greeted: to a
    /// probe, "connection refused or reset".
    pub fn refuse_next(&self) {
        self.refuse_next.store(true, Ordering::SeqCst);
    }

    /// Whether a [`Imapd::refuse_next`] is still pending.
    pub fn refusal_pending(&self) -> bool {
        self.refuse_next.load(Ordering::SeqCst)
    }

    /// How long ago the last connection was accepted.
    pub fn since_last_accept(&self) -> Duration {
        let last = self.stats.last_accept_ms.load(Ordering::SeqCst);
        self.born
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

impl Drop for Imapd {
    fn drop(&mut self) {
        if let Some(token) = self.token.lock().unwrap_or_else(|e| e.into_inner()).take() {
            token.cancel();
        }
    }
}

#[derive(Clone)]
struct Ctx {
    token: CancellationToken,
    refuse_next: Arc<AtomicBool>,
    greet_after: Duration,
    stats: Arc<Stats>,
    born: Instant,
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // Several listeners may share one address (the kernel spreads the
    // connections over them): one backlog alone overflows under bursts.
    socket.set_reuseport(true)?;
    socket
        .bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
    // The kernel caps it at net.core.somaxconn.
    socket.listen(4096)
}

async fn accept_loop(listener: TcpListener, ctx: Ctx) {
    loop {
        tokio::select! {
            () = ctx.token.cancelled() => {
                drop(listener);
                ctx.stats.listening.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
                ctx.stats
                    .last_accept_ms
                    .store(ctx.born.elapsed().as_millis() as u64, Ordering::SeqCst);
                if ctx.refuse_next.swap(false, Ordering::SeqCst) {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    ctx.stats.reset.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                tokio::spawn(serve(stream, ctx.clone()));
            }
        }
    }
}

/// One session: greeting, then commands until LOGOUT or the peer's close.
/// A watch connection sends nothing and stays here until either side closes.
async fn serve(mut stream: TcpStream, ctx: Ctx) {
    ctx.stats.open.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let token = ctx.token.clone();
    tokio::select! {
        () = token.cancelled() => {}
        () = session(&mut stream, &ctx.stats, ctx.greet_after) => {}
    }
    ctx.stats.open.fetch_sub(1, Ordering::Relaxed);
}

async fn session(stream: &mut TcpStream, stats: &Stats, greet_after: Duration) {
    if !greet_after.is_zero() {
        tokio::time::sleep(greet_after).await;
    }
    if stream.write_all(GREETING).await.is_err() {
        return;
    }
    // Small on purpose: thousands of idle sessions each hold one.
    let mut buf = [0u8; 256];
    let mut len = 0;
    loop {
        let n = match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        while let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..end]).trim_end().to_owned();
            buf.copy_within(end + 1..len, 0);
            len -= end + 1;
            let (tag, command) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            if command.eq_ignore_ascii_case("LOGOUT") {
                let reply = format!("* BYE Logging out\r\n{tag} OK Logout completed.\r\n");
                let _ = stream.write_all(reply.as_bytes()).await;
                stats.logouts.fetch_add(1, Ordering::Relaxed);
                let _ = stream.shutdown().await;
                return;
            }
            let reply = format!("{tag} BAD Error in IMAP command.\r\n");
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        if len == buf.len() {
            return; // an over-long line: not a prober we know
        }
    }
}
