//! The validated, typed configuration. Everything here has been checked:
//! code downstream never re-validates and never sees a default it must fill.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

pub use super::dane::{DaneMode, NextKey, pool_tlsa_owner, pool_zone};

/// BIND's default `max-records-per-type`: an UPDATE that grows an RRset past
/// it is refused, so a pool that could need more is an error at load time,
/// and the reconciler adds no more than this to an RRset foreign records share.
pub const MAX_RECORDS_PER_TYPE: usize = 100;

/// A validated configuration, as loaded from one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// Every zone pigeon-dns updates, at least one: `[dns]` first when it
    /// names a zone, then the `[[zone]]` tables in file order.
    pub zones: Vec<ZoneConfig>,
    pub http: HttpConfig,
    /// `None` without an `[ha]` table: a single writer is assumed.
    pub ha: Option<HaConfig>,
    pub nodes: Vec<Node>,
    pub pools: Vec<Pool>,
}

impl Config {
    /// The first zone: where node hosts default to and drain marks live.
    pub fn first_zone(&self) -> &ZoneConfig {
        // Validation guarantees at least one zone.
        &self.zones[0]
    }

    /// The zone a pool's records are in.
    pub fn zone_of(&self, pool: &Pool) -> &ZoneConfig {
        &self.zones[pool.zone]
    }
}

/// One zone and its primary, with `[dns]`'s defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneConfig {
    /// `host:port` of the primary, as written (an IPv6 host is bracketed). Resolved
    /// when connecting, so `check` needs no resolver.
    pub server: String,
    /// The zone to update, fully qualified.
    pub zone: Name,
    pub key_file: PathBuf,
    /// Which key of the key file; `None` when the file must hold exactly one.
    pub key_name: Option<String>,
    /// TTL in seconds of records added at names pigeon-dns alone fills.
    pub ttl: u32,
    /// Per DNS request.
    pub timeout: Duration,
    /// Re-read the owned names and repair drift this often; also the backoff cap.
    pub resync_interval: Duration,
    /// The zone's other authoritative servers, whose serials are followed.
    pub secondaries: Secondaries,
}

/// Which servers besides the primary serve a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secondaries {
    /// The addresses of the zone's NS names, as the primary answers them,
    /// the primary's own address left out; asked on the primary's port.
    Ns,
    /// These `host:port` (empty: no check).
    Servers(Vec<String>),
}

/// Probe timing and hysteresis, after applying a pool's overrides to `[probe]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    pub interval: Duration,
    /// Always shorter than `interval`.
    pub timeout: Duration,
    /// Consecutive successes to become up (>= 1).
    pub rise: u32,
    /// Consecutive failures to become down (>= 1).
    pub fall: u32,
    /// Delay between probes while rise/fall has not decided.
    pub fast_interval: Duration,
    /// Keep an idle connection to each up target and re-probe when it closes.
    pub watch: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `None` when `listen = ""`: no HTTP server.
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    /// Owner of the lease TXT record relative to each zone (not fully
    /// qualified; empty for the apex): each zone holds its own lease.
    pub lease: Name,
    pub lease_time: Duration,
    pub instance: String,
}

impl HaConfig {
    /// The lease's owner name in `zone`.
    pub fn lease_in(&self, zone: &Name) -> Name {
        self.lease
            .clone()
            .append_domain(zone)
            .unwrap_or_else(|_| zone.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Unique, `[a-z0-9-]+`.
    pub name: String,
    /// At least one; no duplicates.
    pub addresses: Vec<IpAddr>,
    /// Target of MX and SRV records, fully qualified (default `<name>.<first zone>`).
    pub host: Name,
    /// Maintenance: never published, whatever its health.
    pub drain: bool,
    /// The keys it will serve next, whose TLSA records `dane = "manage"`
    /// publishes ahead of their use.
    pub tlsa_next: Vec<NextKey>,
}

/// What a pool publishes for each healthy node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// A and AAAA records of the nodes' addresses.
    Address,
    /// `MX preference host`.
    Mx { preference: u16 },
    /// `SRV priority weight port host`; the port is the pool's.
    Srv { priority: u16, weight: u16 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Tcp,
    Smtp,
    Submission,
    Smtps,
    Pop3,
    Pop3s,
    Imap,
    Imaps,
    Http,
    Https,
}

impl CheckKind {
    /// The name used in the config file and as the `check` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Smtp => "smtp",
            CheckKind::Submission => "submission",
            CheckKind::Smtps => "smtps",
            CheckKind::Pop3 => "pop3",
            CheckKind::Pop3s => "pop3s",
            CheckKind::Imap => "imap",
            CheckKind::Imaps => "imaps",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub const ALL: [CheckKind; 10] = [
        CheckKind::Tcp,
        CheckKind::Smtp,
        CheckKind::Submission,
        CheckKind::Smtps,
        CheckKind::Pop3,
        CheckKind::Pop3s,
        CheckKind::Imap,
        CheckKind::Imaps,
        CheckKind::Http,
        CheckKind::Https,
    ];

    /// The well-known port; `None` for `tcp`, which needs an explicit one.
    pub fn default_port(self) -> Option<u16> {
        match self {
            CheckKind::Tcp => None,
            CheckKind::Smtp => Some(25),
            CheckKind::Submission => Some(587),
            CheckKind::Smtps => Some(465),
            CheckKind::Pop3 => Some(110),
            CheckKind::Pop3s => Some(995),
            CheckKind::Imap => Some(143),
            CheckKind::Imaps => Some(993),
            CheckKind::Http => Some(80),
            CheckKind::Https => Some(443),
        }
    }

    /// Mail checks keep a watch connection by default; tcp and http do not.
    pub fn is_mail(self) -> bool {
        !matches!(self, CheckKind::Tcp | CheckKind::Http | CheckKind::Https)
    }

    /// Checks that start TLS before speaking.
    pub fn implicit_tls(self) -> bool {
        matches!(
            self,
            CheckKind::Smtps | CheckKind::Pop3s | CheckKind::Imaps | CheckKind::Https
        )
    }
}

/// What a pool publishes when none of its nodes is up (the core's type).
pub use crate::core::desired::AllDown;

/// TLS options of a pool (used by TLS checks and STARTTLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// Verify chain and name (default true).
    pub verify: bool,
    /// Name to verify; `None`: the pool's name for A pools, the node's host otherwise.
    pub name: Option<String>,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Fail a certificate that expires within this many days (0: off).
    pub cert_min_days: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// Index of its zone in [`Config::zones`].
    pub zone: usize,
    /// As written in the file (`imap`, `@`, `_imaps._tcp`), for labels and messages.
    pub name: String,
    /// The owner name of its records, fully qualified.
    pub fqdn: Name,
    pub kind: PoolKind,
    pub check: CheckKind,
    pub port: u16,
    /// Indexes into `Config::nodes`, in file order.
    pub nodes: Vec<usize>,
    pub all_down: AllDown,
    pub probe: ProbeSettings,
    /// STARTTLS on smtp/submission/pop3/imap.
    pub starttls: bool,
    /// HTTP path (default "/").
    pub path: String,
    /// HTTP: the body must contain this.
    pub expect_body: Option<String>,
    pub tls: TlsOptions,
    /// What the pool does with its nodes' TLSA records.
    pub dane: DaneMode,
}
