//! A TSIG-signing DNS client over TCP for queries and RFC 2136 updates.
//!
//! Messages are built, signed and verified with hickory-proto; the transport is a
//! plain tokio `TcpStream` with RFC 1035 §4.2.2 length framing. We do not use
//! `hickory_net::client::Client` here because (a) its multiplexer signs only
//! UPDATE/NOTIFY/XFR (`TSigner::should_sign_message`) while our reads of the owned
//! names must be signed too, and (b) its verifier turns an unsigned error reply
//! (BIND's BADSIG/BADKEY answers carry an empty MAC) into an opaque "truncated
//! HMACs" error, losing the rcode and TSIG error field we must report.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest DNS message over TCP (the 2-byte length prefix).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// Why a DNS exchange failed. Each variant maps to one metric label ([`DnsError::label`]).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no answer from {server} within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
    #[error("cannot reach {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to {server} failed: {source}")]
    Io {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// The server rejected our signature: BADSIG, BADKEY or BADTIME (RFC 8945 §5.2).
    #[error("TSIG authentication failed for key {key}: {kind} (rcode {rcode}); {hint}")]
    Tsig {
        key: String,
        kind: String,
        rcode: String,
        /// What to check: the key, or (BADTIME) both clocks with the server's.
        hint: String,
    },
    /// A reply whose signature does not verify: it is not trusted.
    #[error(
        "reply from {server} not trusted: TSIG signature of key {key} does not verify ({reason})"
    )]
    Unverified {
        server: String,
        key: String,
        reason: String,
    },
    /// A well-formed, authentic (or unsigned error) reply with a failure rcode.
    #[error("{server} answered {}", rcode_name(*rcode))]
    Rcode { server: String, rcode: ResponseCode },
    #[error("bad reply from {server}: {reason}")]
    Malformed { server: String, reason: String },
    #[error("cannot build the request: {0}")]
    Build(String),
}

impl DnsError {
    /// The `result` label of `pigeon_dns_dns_updates_total`.
    pub fn label(&self) -> &'static str {
        match self {
            DnsError::Timeout { .. } => "timeout",
            DnsError::Tsig { .. } | DnsError::Unverified { .. } => "tsig_error",
            DnsError::Rcode { rcode, .. } if *rcode == ResponseCode::Refused => "refused",
            _ => "error",
        }
    }

    /// The rcode of the reply, when there was one.
    pub fn rcode(&self) -> Option<ResponseCode> {
        match self {
            DnsError::Rcode { rcode, .. } => Some(*rcode),
            _ => None,
        }
    }

    /// Answers that refuse what one UPDATE asked (a policy, a size limit, a
    /// name outside the zone, a record the server cannot take): the changes
    /// are split so that the others land, and the refused ones set aside.
    /// Any other failure (no answer, TSIG, NOTAUTH) concerns the whole primary.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self.rcode(),
            Some(
                ResponseCode::Refused
                    | ResponseCode::ServFail
                    | ResponseCode::NotZone
                    | ResponseCode::FormErr
            )
        )
    }

    /// RFC 2136 §2.4 prerequisite failures: our view of the zone is stale.
    pub fn is_prerequisite_failure(&self) -> bool {
        matches!(
            self.rcode(),
            Some(
                ResponseCode::YXDomain
                    | ResponseCode::YXRRSet
                    | ResponseCode::NXRRSet
                    | ResponseCode::NXDomain
            )
        )
    }
}

/// A signed request/reply exchange with one server: the DNS client, or in
/// tests a model of a server.
pub trait Exchange: Send + Sync {
    /// `host:port`, for messages and nsupdate scripts.
    fn server(&self) -> &str;
    /// Signs `message`, sends it and returns the verified NOERROR reply.
    fn exchange(&self, message: Message) -> impl Future<Output = Result<Message, DnsError>> + Send;
}

impl Exchange for DnsClient {
    fn server(&self) -> &str {
        &self.server
    }

    async fn exchange(&self, message: Message) -> Result<Message, DnsError> {
        DnsClient::exchange(self, message).await
    }
}

/// Talks to the primary. Cheap to clone.
#[derive(Clone)]
pub struct DnsClient {
    server: String,
    signer: TSigner,
    timeout: Duration,
}

impl std::fmt::Debug for DnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsClient")
            .field("server", &self.server)
            .field("key", &self.key_name())
            .finish()
    }
}

impl DnsClient {
    pub fn new(server: String, signer: TSigner, timeout: Duration) -> Self {
        Self {
            server,
            signer,
            timeout,
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn key_name(&self) -> String {
        self.signer.signer_name().to_string()
    }

    /// A signed query for one type at one name; the whole reply (NXDOMAIN
    /// is an error whose rcode tells it).
    pub async fn query(&self, name: &Name, rtype: RecordType) -> Result<Message, DnsError> {
        let mut message = Message::new(0, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(name.clone(), rtype));
        self.exchange(message).await
    }

    /// Sends a message signed and checks the reply: `Ok` only for a NOERROR
    /// reply whose signature verifies.
    pub async fn exchange(&self, mut message: Message) -> Result<Message, DnsError> {
        let timeout = self.timeout;
        // RFC 5452 §9.2: unpredictable ids, for updates as for queries.
        message.metadata.id = rand_id();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| DnsError::Build(e.to_string()))?;
        let bytes = message
            .to_vec()
            .map_err(|e| DnsError::Build(e.to_string()))?;
        // hickory truncates a message that does not fit (and sets TC): a
        // request must never leave that way, least of all an UPDATE.
        if bytes.get(2).is_some_and(|flags| flags & 0x02 != 0) {
            return Err(DnsError::Build(
                "the message does not fit in 65,535 bytes".into(),
            ));
        }
        let reply = tokio::time::timeout(timeout, self.round_trip(&bytes, message.metadata.id))
            .await
            .map_err(|_| DnsError::Timeout {
                server: self.server.clone(),
                timeout,
            })??;
        let parsed = Message::from_vec(&reply).map_err(|e| DnsError::Malformed {
            server: self.server.clone(),
            reason: e.to_string(),
        })?;
        let rcode = parsed.metadata.response_code;
        // RFC 8945 §5.3.2: the server reports BADSIG/BADKEY/BADTIME in the TSIG
        // error field (with rcode NOTAUTH); such replies are often unsigned.
        if let Some(tsig) = parsed.signature()
            && let Some(error) = tsig.data.error.as_ref()
        {
            return Err(DnsError::Tsig {
                key: self.key_name(),
                kind: tsig_error_name(error),
                rcode: rcode_name(rcode),
                hint: tsig_hint(error, &tsig.data.other, now),
            });
        }
        if rcode != ResponseCode::NoError {
            // An error reply: reported by its rcode whether or not it is signed.
            return Err(DnsError::Rcode {
                server: self.server.clone(),
                rcode,
            });
        }
        // A success must be authentic: never trust an unverified NOERROR.
        let Some(verifier) = verifier.as_mut() else {
            return Err(DnsError::Build("no TSIG verifier".into()));
        };
        verifier.verify(&reply).map_err(|e| DnsError::Unverified {
            server: self.server.clone(),
            key: self.key_name(),
            reason: e.to_string(),
        })?;
        Ok(parsed)
    }

    async fn round_trip(&self, request: &[u8], id: u16) -> Result<Vec<u8>, DnsError> {
        let addr = self.resolve().await?;
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| DnsError::Connect {
                server: self.server.clone(),
                source,
            })?;
        let io_err = |source| DnsError::Io {
            server: self.server.clone(),
            source,
        };
        let len = u16::try_from(request.len())
            .map_err(|_| DnsError::Build("message larger than 65535 bytes".into()))?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.map_err(io_err)?;
        // Skip any reply that is not ours (a server may answer out of order).
        loop {
            let len = stream.read_u16().await.map_err(io_err)? as usize;
            let mut reply = vec![0u8; len.min(MAX_MESSAGE)];
            stream.read_exact(&mut reply).await.map_err(io_err)?;
            if reply.len() >= 2 && u16::from_be_bytes([reply[0], reply[1]]) == id {
                return Ok(reply);
            }
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, DnsError> {
        if let Ok(addr) = self.server.parse() {
            return Ok(addr);
        }
        let mut addrs = tokio::net::lookup_host(&self.server)
            .await
            .map_err(|source| DnsError::Connect {
                server: self.server.clone(),
                source,
            })?;
        addrs.next().ok_or_else(|| DnsError::Connect {
            server: self.server.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })
    }
}

/// The serial of the SOA of `zone` in a reply's answer.
pub fn serial_of(reply: &Message, zone: &str) -> Option<u32> {
    reply.answers.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::SOA(soa)
            if crate::dns::convert::key_of(&r.name) == crate::core::records::name_key(zone) =>
        {
            Some(soa.serial)
        }
        _ => None,
    })
}

/// Asks `server` for the SOA serial of `zone`, unsigned, over UDP (TCP when
/// the answer is truncated): what any resolver sees at a secondary, which
/// need not know our key.
pub async fn soa_serial_unsigned(
    server: SocketAddr,
    zone: &str,
    timeout: Duration,
) -> Result<u32, DnsError> {
    let label = server.to_string();
    let name = crate::dns::convert::name(zone).map_err(DnsError::Build)?;
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name, RecordType::SOA));
    let id = message.metadata.id;
    let bytes = message
        .to_vec()
        .map_err(|e| DnsError::Build(e.to_string()))?;
    let exchange = async {
        let bind: SocketAddr = if server.is_ipv6() {
            "[::]:0".parse().unwrap_or(server)
        } else {
            "0.0.0.0:0".parse().unwrap_or(server)
        };
        let socket =
            tokio::net::UdpSocket::bind(bind)
                .await
                .map_err(|source| DnsError::Connect {
                    server: label.clone(),
                    source,
                })?;
        socket
            .connect(server)
            .await
            .map_err(|source| DnsError::Connect {
                server: label.clone(),
                source,
            })?;
        socket.send(&bytes).await.map_err(|source| DnsError::Io {
            server: label.clone(),
            source,
        })?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(|source| DnsError::Io {
                server: label.clone(),
                source,
            })?;
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                return Message::from_vec(&buf[..n]).map_err(|e| DnsError::Malformed {
                    server: label.clone(),
                    reason: e.to_string(),
                });
            }
        }
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DnsError::Timeout {
            server: label.clone(),
            timeout,
        })??;
    if reply.metadata.response_code != ResponseCode::NoError {
        return Err(DnsError::Rcode {
            server: label,
            rcode: reply.metadata.response_code,
        });
    }
    serial_of(&reply, zone).ok_or_else(|| DnsError::Malformed {
        server: label,
        reason: format!("no SOA for {zone} in the answer"),
    })
}

/// The mnemonic of an rcode as BIND and dig print it (RFC 1035, RFC 2136).
pub fn rcode_name(rcode: ResponseCode) -> String {
    let name = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        other => return format!("RCODE{}", u16::from(other)),
    };
    name.to_string()
}

/// What an operator should check. RFC 8945 §5.2.3: a BADTIME reply carries
/// the server's current time in its Other Data (48 bits, seconds).
fn tsig_hint(error: &TsigError, other: &[u8], our_time: u64) -> String {
    match (error, <[u8; 6]>::try_from(other)) {
        (TsigError::BadTime, Ok(bytes)) => {
            let mut wide = [0u8; 8];
            wide[2..].copy_from_slice(&bytes);
            let theirs = u64::from_be_bytes(wide);
            let skew = i128::from(our_time) - i128::from(theirs);
            let at = |secs: u64| {
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
            };
            format!(
                "the clocks differ: the primary's clock reads {} and ours {} ({skew:+} s); TSIG allows 300 s",
                at(theirs),
                at(our_time)
            )
        }
        (TsigError::BadTime, Err(_)) => {
            "the clocks of this host and the primary differ by more than 300 s".to_string()
        }
        _ => "check that the key name, algorithm and secret match the primary's".to_string(),
    }
}

fn tsig_error_name(error: &TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(code) => format!("TSIG error {code}"),
    }
}

/// A random message id (RFC 5452 §9.2 asks for unpredictable ids).
fn rand_id() -> u16 {
    let mut bytes = [0u8; 2];
    // ring's SystemRandom never fails on Linux; fall back to the clock just in case.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return nanos as u16;
    }
    u16::from_be_bytes(bytes)
}
