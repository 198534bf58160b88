//! A fake DNS primary for the tests of what the daemon does when its
//! primary misbehaves: over TCP (RFC 1035 §4.2.2 framing: a two-byte length
//! before each message), messages parsed and built with hickory-proto, every
//! request's TSIG verified with the daemon's key and every good answer
//! signed with it. What it answers is programmable per kind of request
//! ([`Reply`]: SERVFAIL, REFUSED, NOTAUTH with a TSIG error, an answer signed
//! with another key or with a corrupted MAC, none at all, silence, a close),
//! and switchable while the daemon runs ([`FakePrimary::set`]). Good
//! UPDATEs are applied (enough of RFC 2136 §3.4.2 for the daemon's adds and
//! deletes) and queries are answered from what was applied, so a daemon
//! converges against it once it answers well.
//!
//! It also listens on UDP on the same port and counts what arrives there
//! ([`FakePrimary::udp_datagrams`]): the daemon's client uses TCP only.
//! Its threads stop, and its sockets close, on drop.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType, TSigResponseContext, TSigner};

use super::bind::TsigKey;

/// How the fake answers one kind of request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// NOERROR, signed with the key; an UPDATE is applied, a query answered
    /// from what was applied.
    Good,
    /// An error reply without TSIG (as PowerDNS's plain REFUSED).
    Rcode(ResponseCode),
    /// An error reply signed with the key.
    SignedRcode(ResponseCode),
    /// NOTAUTH with an unsigned TSIG RR carrying this error (RFC 8945 §5.3.2,
    /// as BIND answers a bad signature or an unknown key).
    TsigError(TsigError),
    /// NOERROR signed with another secret under the same key name.
    OtherKey,
    /// NOERROR signed with the key, then one bit of the MAC flipped.
    CorruptMac,
    /// NOERROR without any TSIG.
    Unsigned,
    /// Reads the request and never answers (the connection stays open).
    Silent,
    /// Reads the request and closes the connection without answering.
    Close,
}

impl Reply {
    /// Its variant, as [`Seen::reply`] records it.
    pub fn name(&self) -> String {
        format!("{self:?}")
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub op: OpCode,
    /// Its TSIG verified with the daemon's key (`Err`: why not).
    pub signed: Result<(), String>,
    /// Query type, for queries.
    pub qtype: Option<RecordType>,
    /// How it was answered: [`Reply::name`].
    pub reply: String,
    /// The message ID.
    pub id: u16,
}

#[derive(Default)]
struct Shared {
    on_query: Option<Reply>,
    on_update: Option<Reply>,
    /// Records applied by good UPDATEs: (lower-case name, type) -> records.
    zone: BTreeMap<(String, RecordType), Vec<Record>>,
    seen: Vec<Seen>,
    udp_datagrams: usize,
}

/// A fake primary on `addr` (TCP), with a UDP socket on the same port;
/// one thread per connection. Stopped on drop.
pub struct FakePrimary {
    /// Where it listens (TCP and UDP), as `dns.server` wants it.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakePrimary {
    /// Listens on a free port of `ip`, verifying and signing with `key`;
    /// queries get `on_query`, UPDATEs `on_update`.
    pub fn start(ip: IpAddr, key: &TsigKey, on_query: Reply, on_update: Reply) -> FakePrimary {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind the fake primary");
        let addr = listener.local_addr().expect("local addr");
        let udp = UdpSocket::bind(addr).expect("bind UDP on the fake primary's port");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("udp timeout");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Mutex::new(Shared {
            on_query: Some(on_query),
            on_update: Some(on_update),
            ..Shared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Keys::new(key);
        let tcp = {
            let (shared, stop) = (shared.clone(), stop.clone());
            thread::spawn(move || accept_loop(&listener, &keys, &shared, &stop))
        };
        let udp = {
            let (shared, stop) = (shared.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    if udp.recv_from(&mut buf).is_ok() {
                        lock(&shared).udp_datagrams += 1;
                    }
                }
            })
        };
        FakePrimary {
            addr,
            shared,
            stop,
            threads: vec![tcp, udp],
        }
    }

    /// From now on, queries get `on_query` and UPDATEs `on_update`.
    pub fn set(&self, on_query: Reply, on_update: Reply) {
        let mut shared = lock(&self.shared);
        shared.on_query = Some(on_query);
        shared.on_update = Some(on_update);
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared).seen.clone()
    }

    /// Datagrams that reached the UDP socket on its port (should be none).
    pub fn udp_datagrams(&self) -> usize {
        lock(&self.shared).udp_datagrams
    }

    /// The rdata (as text) of `name`'s records of `rtype` applied so far.
    pub fn records(&self, name: &str, rtype: RecordType) -> Vec<String> {
        let shared = lock(&self.shared);
        let mut out: Vec<String> = shared
            .zone
            .get(&(name.to_ascii_lowercase(), rtype))
            .map(|rs| rs.iter().map(|r| r.data.to_string()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for FakePrimary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemon's key, and another secret under the same name.
#[derive(Clone)]
struct Keys {
    good: TSigner,
    other: TSigner,
}

impl Keys {
    fn new(key: &TsigKey) -> Keys {
        let signer = |k: &TsigKey| {
            let secret = data_encoding::BASE64
                .decode(k.secret.as_bytes())
                .expect("base64 secret");
            TSigner::new(
                secret,
                TsigAlgorithm::HmacSha256,
                Name::from_ascii(&k.name).expect("key name"),
                300,
            )
            .expect("signer")
        };
        Keys {
            good: signer(key),
            other: signer(&key.with_wrong_secret()),
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    keys: &Keys,
    shared: &Arc<Mutex<Shared>>,
    stop: &Arc<AtomicBool>,
) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (keys, shared, stop) = (keys.clone(), shared.clone(), stop.clone());
                conns.push(thread::spawn(move || serve(stream, &keys, &shared, &stop)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// Serves one connection: length-prefixed messages until EOF or stop.
fn serve(mut stream: TcpStream, keys: &Keys, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut pending: Vec<u8> = Vec::new();
    let mut silent = false;
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            let request: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            if silent {
                continue;
            }
            match answer(&request, keys, shared) {
                Answer::Bytes(bytes) => {
                    let mut framed = u16::try_from(bytes.len())
                        .expect("short")
                        .to_be_bytes()
                        .to_vec();
                    framed.extend_from_slice(&bytes);
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                }
                Answer::Silent => silent = true,
                Answer::Close => return,
            }
        }
    }
}

enum Answer {
    Bytes(Vec<u8>),
    Silent,
    Close,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Answers one request as the current policy says, and records it.
fn answer(request: &[u8], keys: &Keys, shared: &Mutex<Shared>) -> Answer {
    let Ok(message) = Message::from_vec(request) else {
        return Answer::Close;
    };
    let signed = keys
        .good
        .verify_message_byte(request, None, true)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let op = message.metadata.op_code;
    let mut shared = lock(shared);
    let reply = if op == OpCode::Update {
        shared.on_update.clone()
    } else {
        shared.on_query.clone()
    }
    .unwrap_or(Reply::Good);
    shared.seen.push(Seen {
        op,
        signed: signed.clone(),
        qtype: message.queries.first().map(|q| q.query_type()),
        reply: reply.name(),
        id: message.metadata.id,
    });
    let request_mac = message
        .signature()
        .map(|s| s.data.mac.clone())
        .unwrap_or_default();
    let id = message.metadata.id;
    let mut response = Message::response(id, op);
    response.add_queries(message.queries.clone());
    let sign = |response: &mut Message, signer: &TSigner| {
        let unsigned = response.to_vec().expect("encode");
        let tsig = TSigResponseContext::new(id, now(), signer.clone(), request_mac.clone(), None)
            .sign(&unsigned)
            .expect("sign");
        response.set_signature(tsig);
    };
    match reply {
        Reply::Silent => return Answer::Silent,
        Reply::Close => return Answer::Close,
        Reply::Good => {
            if signed.is_err() {
                // As BIND: an unverifiable request gets NOTAUTH/BADSIG.
                response.metadata.response_code = ResponseCode::NotAuth;
                response.set_signature(Box::new(unsigned_tsig(keys, id, TsigError::BadSig)));
            } else {
                if op == OpCode::Update {
                    apply(&mut shared.zone, &message);
                } else if let Some(q) = message.queries.first() {
                    let key = (q.name().to_lowercase().to_ascii(), q.query_type());
                    response.add_answers(shared.zone.get(&key).cloned().unwrap_or_default());
                }
                sign(&mut response, &keys.good);
            }
        }
        Reply::Rcode(rcode) => response.metadata.response_code = rcode,
        Reply::SignedRcode(rcode) => {
            response.metadata.response_code = rcode;
            sign(&mut response, &keys.good);
        }
        Reply::TsigError(error) => {
            response.metadata.response_code = ResponseCode::NotAuth;
            response.set_signature(Box::new(unsigned_tsig(keys, id, error)));
        }
        Reply::OtherKey => sign(&mut response, &keys.other),
        Reply::CorruptMac => {
            sign(&mut response, &keys.good);
            if let Some(mut tsig) = response.take_signature() {
                tsig.data.mac[0] ^= 0x01;
                response.set_signature(tsig);
            }
        }
        Reply::Unsigned => {}
    }
    Answer::Bytes(response.to_vec().expect("encode the response"))
}

/// How far ahead the fake's clock is in its BADTIME answers (seconds).
pub const CLOCK_AHEAD: u64 = 3600;

/// An unsigned TSIG RR carrying `error` (empty MAC), as RFC 8945 §5.3.2 says;
/// for BADTIME with the server's time in Other Data (§5.2.3), as BIND sends it.
fn unsigned_tsig(keys: &Keys, id: u16, error: TsigError) -> Record<TSIG> {
    let other = if error == TsigError::BadTime {
        (now() + CLOCK_AHEAD).to_be_bytes()[2..].to_vec()
    } else {
        Vec::new()
    };
    make_tsig_record(
        keys.good.signer_name().clone(),
        TSIG::new(
            TsigAlgorithm::HmacSha256,
            now(),
            300,
            Vec::new(),
            id,
            Some(error),
            other,
        ),
    )
}

/// RFC 2136 §3.4.2, enough of it: class IN adds, class NONE deletes one RR.
fn apply(zone: &mut BTreeMap<(String, RecordType), Vec<Record>>, update: &Message) {
    for record in &update.authorities {
        let key = (record.name.to_lowercase().to_ascii(), record.record_type());
        let set = zone.entry(key).or_default();
        match record.dns_class {
            DNSClass::IN if !set.iter().any(|r| r.data == record.data) => set.push(record.clone()),
            DNSClass::NONE => set.retain(|r| r.data != record.data),
            _ => {}
        }
    }
}
