//! A small web server for the http and https checks: HTTP/1.1 on std
//! threads, one per connection, and with a rustls `ServerConfig` (e.g.
//! [`Leaf::server_config`](super::certs::Leaf::server_config)) https. Its
//! routes answer 200, 302, 500, slowly, or with a body the checks look
//! into; it records the path and Host of every request it reads. Stopped
//! on drop (a slow answer still pending is cut short).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long `/slow` and `/slow-body` make the client wait: beyond any probe
/// timeout the tests set (they use 500 ms).
pub const SLOW: Duration = Duration::from_secs(3);

/// The page of the `/ok...` routes.
pub const PAGE: &str = "<html><body>webmail ready</body></html>\n";

/// What the server saw of one request.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    /// The Host header, if any.
    pub host: Option<String>,
}

/// An HTTP/1.1 server (https with `tls`) on its own threads, one per
/// connection, stopped on drop. Routes:
/// - `/ok...`: 200 with [`PAGE`] (it holds "webmail ready");
/// - `/redirect`: 302 to `/login`;
/// - `/error`: 500;
/// - `/slow`: 200 after [`SLOW`];
/// - `/slow-body`: the headers at once, the body after [`SLOW`];
/// - anything else: 404.
pub struct WebServer {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Listens on `addr` (e.g. a node's address and a free port); https
    /// when `tls` is given.
    pub fn start(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> WebServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || {
                let mut workers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (seen, stop, tls) = (seen.clone(), stop.clone(), tls.clone());
                    workers.push(thread::spawn(move || {
                        connection(stream, tls, &seen, &stop);
                    }));
                }
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        WebServer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The Host headers of the requests for `path`.
    pub fn hosts(&self, path: &str) -> Vec<Option<String>> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|r| r.path == path)
            .map(|r| r.host.clone())
            .collect()
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection: the TLS handshake first with `tls`, then one
/// request.
fn connection(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    seen: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    match tls {
        None => exchange(stream, seen, stop),
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            // The handshake happens on the first read; a client that
            // rejects the certificate ends it there.
            let mut tls = rustls::StreamOwned::new(conn, stream);
            exchange(&mut tls, seen, stop);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
}

/// Sleeps `d`, in steps, unless the server stops.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads one request's head, records it, and answers by its path.
fn exchange(mut stream: impl Read + Write, seen: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned());
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Request {
            path: path.clone(),
            host,
        });
    let respond = |stream: &mut dyn Write, status: &str, extra: &str, body: &str| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
        let _ = stream.flush();
    };
    match path.as_str() {
        p if p.starts_with("/ok") => respond(&mut stream, "200 OK", "", PAGE),
        "/redirect" => respond(&mut stream, "302 Found", "Location: /login\r\n", ""),
        "/error" => respond(&mut stream, "500 Internal Server Error", "", "oops\n"),
        "/slow" => {
            nap(SLOW, stop);
            respond(&mut stream, "200 OK", "", PAGE);
        }
        "/slow-body" => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                PAGE.len()
            );
            let _ = stream.flush();
            nap(SLOW, stop);
            let _ = stream.write_all(PAGE.as_bytes());
            let _ = stream.flush();
        }
        _ => respond(&mut stream, "404 Not Found", "", "no\n"),
    }
}
