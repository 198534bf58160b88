//! Addresses and ports for tests that run in parallel, and small TCP helpers.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The host part of the subnet address that reserves it (see [`Subnet`]).
const LOCK_HOST: u8 = 254;
/// The UDP port bound at `LOCK_HOST` to reserve a subnet (discard; root only,
/// which the harness needs anyway for dovecot).
const LOCK_PORT: u16 = 9;

static SUBNETS_TAKEN: AtomicU64 = AtomicU64::new(0);

/// A loopback /24, `127.A.B.0/24`, for one test: its nodes can all listen on
/// the same port at distinct addresses (`.11`, `.12`, ...), as in a cluster
/// where every node listens on 143. Linux routes all of 127.0.0.0/8 to `lo`,
/// so these addresses need no configuration.
///
/// `A` is never 0, so `127.0.0.x` (and the demo's fixed `127.0.10.x`) stay
/// free. The subnet is reserved, across threads and processes, by a UDP
/// socket bound at `.254:9` for as long as the `Subnet` lives.
///
/// Conventional hosts: `.2`/`.3` pigeon-dns HTTP listeners, `.11`.. the
/// mail nodes, `.21`.. fakes. (Not BIND: named only listens on addresses
/// configured on an interface, and `lo` has only 127.0.0.1 of these.)
pub struct Subnet {
    a: u8,
    b: u8,
    _lock: Option<UdpSocket>,
}

impl Subnet {
    /// A random, currently unused subnet.
    pub fn new() -> Subnet {
        for attempt in 0..200u64 {
            let counter = SUBNETS_TAKEN.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let seed = RandomState::new().hash_one((std::process::id(), counter, attempt, nanos));
            let a = (seed % 254) as u8 + 1;
            let b = (seed >> 8) as u8;
            let lock_addr = SocketAddr::new(Ipv4Addr::new(127, a, b, LOCK_HOST).into(), LOCK_PORT);
            match UdpSocket::bind(lock_addr) {
                Ok(sock) => {
                    return Subnet {
                        a,
                        b,
                        _lock: Some(sock),
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                // Not root, or some other oddity: take it unreserved.
                Err(_) => return Subnet { a, b, _lock: None },
            }
        }
        panic!("no free 127.A.B.0/24 subnet found in 200 attempts");
    }

    /// `127.A.B.host`.
    pub fn ip(&self, host: u8) -> IpAddr {
        Ipv4Addr::new(127, self.a, self.b, host).into()
    }

    /// The address of the `i`-th mail node (0-based): `127.A.B.(11 + i)`.
    pub fn node_ip(&self, i: usize) -> IpAddr {
        self.ip(11 + u8::try_from(i).expect("fewer than 200 nodes"))
    }

    /// `127.A.B.0/24`
    pub fn cidr(&self) -> String {
        format!("127.{}.{}.0/24", self.a, self.b)
    }
}

impl Default for Subnet {
    fn default() -> Self {
        Subnet::new()
    }
}

/// A port that is free for both TCP and UDP on `ip` right now.
pub fn free_port(ip: IpAddr) -> u16 {
    common_free_port(&[ip])
}

/// A port free for TCP and UDP on every one of `ips` right now (the kernel
/// picks one on the first; the others are checked). On a private subnet
/// nothing else takes it afterwards; on 127.0.0.1 there is a small race.
pub fn common_free_port(ips: &[IpAddr]) -> u16 {
    let first = *ips.first().expect("at least one address");
    for _ in 0..100 {
        let probe = TcpListener::bind(SocketAddr::new(first, 0)).expect("bind a free port");
        let port = probe.local_addr().expect("local addr").port();
        drop(probe);
        let all_free = ips.iter().all(|ip| {
            let addr = SocketAddr::new(*ip, port);
            TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
        });
        if all_free {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `timeout`;
/// then panics with `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to `addr` and reads the first line the server sends (without
/// the line end). Each step is bounded by `timeout`.
pub fn read_greeting(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before a greeting",
        ));
    }
    Ok(line.trim_end().to_owned())
}

/// Waits until `addr` greets with a line starting with `prefix`; returns
/// the greeting.
pub fn wait_for_greeting(addr: SocketAddr, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match read_greeting(addr, Duration::from_secs(1)) {
            Ok(line) if line.starts_with(prefix) => return line,
            Ok(line) => format!("greeting {line:?}"),
            Err(e) => format!("error {e}"),
        };
        if Instant::now() >= deadline {
            panic!("{addr} did not greet with {prefix:?} within {timeout:?}; last: {last}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True when a TCP connection to `addr` is refused (nothing listens).
pub fn is_refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// Waits until connections to `addr` are refused.
pub fn wait_refused(addr: SocketAddr, timeout: Duration) {
    wait_until(&format!("{addr} to refuse connections"), timeout, || {
        is_refused(addr).then_some(())
    });
}
