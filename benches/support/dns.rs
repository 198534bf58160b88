//! A minimal DNS client over UDP (hickory-proto only builds and parses the
//! messages), and a [`Poller`] that asks BIND for a few A RRsets every couple
//! of milliseconds and timestamps every change: the benches' clock for "the
//! moment BIND stops (or starts) answering an address". `dig` takes ~10 ms
//! per query, too coarse for this.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// A UDP socket connected to the server; one query at a time.
pub struct Dns {
    sock: UdpSocket,
    id: u16,
}

impl Dns {
    pub fn new(server: SocketAddr) -> Dns {
        let local: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0".parse().expect("addr")
        } else {
            "[::1]:0".parse().expect("addr")
        };
        let sock = UdpSocket::bind(local).expect("bind a UDP socket");
        sock.connect(server).expect("connect the UDP socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Dns {
            sock,
            id: (std::process::id() as u16).wrapping_mul(7919),
        }
    }

    /// The answer records of `name`/`rtype` (unsigned query, no recursion).
    pub fn query(&mut self, name: &Name, rtype: RecordType) -> io::Result<Vec<RData>> {
        self.id = self.id.wrapping_add(1);
        let mut message = Message::new(self.id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(name.clone(), rtype));
        // EDNS(0) with a 4 KiB payload: a pool of 100 A records does not fit
        // the plain 512 bytes of UDP.
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        message.set_edns(edns);
        let bytes = message.to_vec().map_err(io::Error::other)?;
        self.sock.send(&bytes)?;
        let mut buf = [0u8; 8192];
        loop {
            let n = self.sock.recv(&mut buf)?;
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if reply.metadata.id != self.id {
                continue; // a late answer to an earlier query
            }
            if reply.metadata.truncation {
                return Err(io::Error::other(
                    "truncated answer (too many records for UDP)",
                ));
            }
            return match reply.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => Ok(reply
                    .answers
                    .into_iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data)
                    .collect()),
                rcode => Err(io::Error::other(format!("rcode {rcode}"))),
            };
        }
    }

    /// The addresses of `name`'s A RRset.
    pub fn a(&mut self, name: &Name) -> io::Result<BTreeSet<IpAddr>> {
        Ok(self
            .query(name, RecordType::A)?
            .into_iter()
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect())
    }

    /// The zone's SOA serial.
    pub fn serial(&mut self, zone: &Name) -> io::Result<u32> {
        self.query(zone, RecordType::SOA)?
            .into_iter()
            .find_map(|r| match r {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("no SOA"))
    }
}

/// `name` as an absolute DNS name (`imap.example.com` -> `imap.example.com.`).
pub fn name(text: &str) -> Name {
    let mut name = Name::from_ascii(text).unwrap_or_else(|e| panic!("bad name {text}: {e}"));
    name.set_fqdn(true);
    name
}

/// A change BIND's answers showed: `addr` appeared in or left `name`'s A RRset.
#[derive(Clone, Debug)]
pub struct Change {
    pub name: String,
    pub addr: IpAddr,
    pub present: bool,
    /// When the poll that saw it got its answer.
    pub at: Instant,
    pub wall: SystemTime,
    /// When the previous poll of the name got its answer: the change happened
    /// in `(prev, at]`.
    pub prev: Instant,
}

#[derive(Default)]
struct Seen {
    current: BTreeMap<String, BTreeSet<IpAddr>>,
    changes: Vec<Change>,
    polls: u64,
    errors: u64,
    last_error: Option<String>,
    /// Longest time between two answers for one name.
    max_gap: Duration,
}

/// Polls A RRsets on a thread until dropped.
pub struct Poller {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    started: Instant,
    names: usize,
}

impl Poller {
    /// Queries each of `names` (absolute or not: a final dot is added) every
    /// `every`, one after the other.
    pub fn start(server: SocketAddr, names: &[String], every: Duration) -> Poller {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let names: Vec<(String, Name)> = names.iter().map(|n| (n.clone(), name(n))).collect();
        let count = names.len();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || poll(server, &names, every, &seen, &stop))
        };
        let poller = Poller {
            seen,
            stop,
            thread: Some(thread),
            started: Instant::now(),
            names: count,
        };
        // Wait for the first answer of every name.
        let deadline = Instant::now() + Duration::from_secs(10);
        while poller.lock().current.len() < poller.names {
            assert!(
                Instant::now() < deadline,
                "BIND at {server} does not answer: {:?}",
                poller.lock().last_error
            );
            thread::sleep(Duration::from_millis(5));
        }
        poller
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses BIND answered last for `name`.
    pub fn current(&self, name: &str) -> BTreeSet<IpAddr> {
        self.lock().current.get(name).cloned().unwrap_or_default()
    }

    /// Whether `addr` is in `name`'s last answer.
    pub fn present(&self, name: &str, addr: IpAddr) -> bool {
        self.current(name).contains(&addr)
    }

    /// Waits until `addr`'s presence in `name` is `present`; false on timeout.
    pub fn wait_state(&self, name: &str, addr: IpAddr, present: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.present(name, addr) == present {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// The first change of `addr` in `name` to `present` seen after `after`,
    /// waiting for it at most `timeout` (from now).
    pub fn wait_change(
        &self,
        name: &str,
        addr: IpAddr,
        present: bool,
        after: Instant,
        timeout: Duration,
    ) -> Option<Change> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self
                .changes_since(after)
                .into_iter()
                .find(|c| c.name == name && c.addr == addr && c.present == present)
            {
                return Some(c);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Every change seen after `after`.
    pub fn changes_since(&self, after: Instant) -> Vec<Change> {
        self.lock()
            .changes
            .iter()
            .filter(|c| c.at > after)
            .cloned()
            .collect()
    }

    /// Polls so far, failed polls, the longest gap between answers.
    pub fn health(&self) -> (u64, u64, Duration) {
        let seen = self.lock();
        (seen.polls, seen.errors, seen.max_gap)
    }

    /// Mean time between two polls of one name so far.
    pub fn mean_period(&self) -> Duration {
        let polls = self.lock().polls.max(1);
        self.started
            .elapsed()
            .mul_f64(self.names as f64 / polls as f64)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll(
    server: SocketAddr,
    names: &[(String, Name)],
    every: Duration,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
) {
    let mut dns = Dns::new(server);
    let mut last: Vec<Option<Instant>> = vec![None; names.len()];
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        for (i, (text, name)) in names.iter().enumerate() {
            let answer = dns.a(name);
            let at = Instant::now();
            let wall = SystemTime::now();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.polls += 1;
            let addrs = match answer {
                Ok(addrs) => addrs,
                Err(e) => {
                    seen.errors += 1;
                    seen.last_error = Some(e.to_string());
                    continue;
                }
            };
            let prev = last[i].replace(at).unwrap_or(at);
            let gap = at.duration_since(prev);
            if gap > seen.max_gap {
                seen.max_gap = gap;
            }
            let before = seen.current.get(text).cloned();
            if let Some(before) = &before {
                for addr in before.symmetric_difference(&addrs) {
                    let change = Change {
                        name: text.clone(),
                        addr: *addr,
                        present: addrs.contains(addr),
                        at,
                        wall,
                        prev,
                    };
                    seen.changes.push(change);
                }
            }
            seen.current.insert(text.clone(), addrs);
        }
        next += every;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
