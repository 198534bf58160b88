//! Fake TCP servers for nodes that misbehave, each on its own thread,
//! stopped on drop.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Which protocol a fake pretends to speak (for its refusal or greeting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    /// SMTP and submission.
    Smtp,
}

impl Protocol {
    /// The refusal a busy or broken server sends before closing.
    pub fn refusal(self) -> &'static str {
        match self {
            Protocol::Imap => "* BYE go away\r\n",
            Protocol::Pop3 => "-ERR no\r\n",
            Protocol::Smtp => "421 busy\r\n",
        }
    }

    /// A normal greeting.
    pub fn greeting(self) -> &'static str {
        match self {
            Protocol::Imap => "* OK fake ready\r\n",
            Protocol::Pop3 => "+OK fake ready\r\n",
            Protocol::Smtp => "220 fake.example.com ESMTP fake\r\n",
        }
    }
}

/// What a fake does with each connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Accepts and never writes; holds the connection open until dropped.
    Silent,
    /// Sends the protocol's refusal (`* BYE`, `-ERR`, `421`), then closes.
    Refusing(Protocol),
    /// Accepts and closes at once.
    Closing,
    /// Greets normally, then never answers (EHLO, LOGOUT hang).
    GreetThenSilent(Protocol),
    /// Sends these bytes, then closes.
    Send(String),
}

/// A fake server on `addr`. Dropping it closes the listener and every
/// connection it holds.
pub struct FakeServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Listens on `addr` (port 0: any free port) with `behavior`.
    pub fn start(addr: SocketAddr, behavior: Behavior) -> FakeServer {
        let listener = TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("fake server cannot bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let accepted = accepted.clone();
            let stop = stop.clone();
            thread::spawn(move || serve(listener, behavior, &accepted, &stop))
        };
        FakeServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn silent(addr: SocketAddr) -> FakeServer {
        FakeServer::start(addr, Behavior::Silent)
    }
    pub fn refusing(addr: SocketAddr, protocol: Protocol) -> FakeServer {
        FakeServer::start(addr, Behavior::Refusing(protocol))
    }
    pub fn closing(addr: SocketAddr) -> FakeServer {
        FakeServer::start(addr, Behavior::Closing)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// How many connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, behavior: Behavior, accepted: &AtomicUsize, stop: &AtomicBool) {
    // Connections held open (Silent, GreetThenSilent) until the fake stops.
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nonblocking(false);
                match &behavior {
                    Behavior::Silent => held.push(stream),
                    Behavior::Closing => drop(stream),
                    Behavior::Refusing(p) => send_and_close(stream, p.refusal()),
                    Behavior::Send(bytes) => send_and_close(stream, bytes),
                    Behavior::GreetThenSilent(p) => {
                        let _ = stream.write_all(p.greeting().as_bytes());
                        held.push(stream);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn send_and_close(mut stream: TcpStream, bytes: &str) {
    let _ = stream.write_all(bytes.as_bytes());
    let _ = stream.flush();
    // A FIN after the line, not a reset: the client reads the refusal.
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
