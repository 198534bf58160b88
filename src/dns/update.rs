//! Every RFC 2136 UPDATE pigeon-dns sends, built from one description
//! ([`Update`]): the records of a reconcile with their prerequisites and the
//! lease fence, a lease compare-and-swap, a prerequisite-only exact read, a
//! drain mark. Renders the same update as a wire message and as an
//! `nsupdate` script.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Record, RecordType};

use super::convert;
use crate::core::diff::RRsetChange;
use crate::core::lease::Swap;
use crate::core::records::{RRsetKey, RType, Rdata, View};

/// A condition the primary checks before it applies anything (RFC 2136 §2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prerequisite {
    /// The RRset is exactly `records` (§2.4.2, "RRset exists (value
    /// dependent)"), or, when `records` is empty, does not exist (§2.4.3).
    RRset {
        key: RRsetKey,
        records: BTreeSet<Rdata>,
    },
    /// The RRset exists, whatever it holds (§2.4.1, "RRset exists (value
    /// independent)"). Prerequisites match names exactly: no wildcard.
    Exists(RRsetKey),
}

/// Adds or deletes one record of an RRset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add {
        key: RRsetKey,
        rdata: Rdata,
        ttl: u32,
    },
    Delete {
        key: RRsetKey,
        rdata: Rdata,
    },
}

impl Change {
    pub fn key(&self) -> &RRsetKey {
        match self {
            Change::Add { key, .. } | Change::Delete { key, .. } => key,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Add { key, rdata, ttl } => {
                write!(f, "add {} {ttl} {} {rdata}", key.name, key.rtype)
            }
            Change::Delete { key, rdata } => write!(f, "delete {} {} {rdata}", key.name, key.rtype),
        }
    }
}

/// One UPDATE message for one zone (an UPDATE is atomic within its zone only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The zone (a name key).
    pub zone: String,
    pub prerequisites: Vec<Prerequisite>,
    pub changes: Vec<Change>,
}

impl Update {
    pub fn new(zone: &str) -> Self {
        Self {
            zone: zone.to_string(),
            ..Self::default()
        }
    }

    /// Requires the RRset to be exactly `records` (empty: not to exist).
    pub fn require(&mut self, key: RRsetKey, records: BTreeSet<Rdata>) -> &mut Self {
        self.prerequisites
            .push(Prerequisite::RRset { key, records });
        self
    }

    /// The changes of one RRset, with the prerequisite that the RRset is
    /// exactly what `view` holds: a stale view cannot undo another writer's
    /// change.
    pub fn rrset_change(&mut self, change: &RRsetChange, view: &View) -> &mut Self {
        self.guarded_change(change, Guard::of(view, &change.key))
    }

    /// The changes of one RRset under `guard`.
    pub fn guarded_change(&mut self, change: &RRsetChange, guard: Guard) -> &mut Self {
        match guard {
            Guard::Exactly(held) => {
                self.require(change.key.clone(), held);
            }
            Guard::Exists => self
                .prerequisites
                .push(Prerequisite::Exists(change.key.clone())),
        }
        for rdata in &change.deletes {
            self.changes.push(Change::Delete {
                key: change.key.clone(),
                rdata: rdata.clone(),
            });
        }
        for rdata in &change.adds {
            self.changes.push(Change::Add {
                key: change.key.clone(),
                rdata: rdata.clone(),
                ttl: change.ttl,
            });
        }
        self
    }

    /// A lease compare-and-swap at `name`: the TXT RRset exactly as
    /// expected, the old lease deleted, the new one added with TTL 0 so that
    /// nobody caches it.
    pub fn lease_swap(&mut self, name: &str, swap: &Swap) -> &mut Self {
        let add = swap.add.as_ref().map(|new| new.rdata());
        self.txt_swap(name, &swap.expected, &swap.delete, add)
    }

    /// A compare-and-swap of the TXT RRset at `name` (a lease, drain
    /// marks): the RRset exactly as `expected` (empty: absent), `delete`
    /// removed, `add` added with TTL 0 so that nobody caches it.
    pub fn txt_swap(
        &mut self,
        name: &str,
        expected: &BTreeSet<Rdata>,
        delete: &[Rdata],
        add: Option<Rdata>,
    ) -> &mut Self {
        let key = RRsetKey::new(name, RType::Txt);
        self.require(key.clone(), expected.clone());
        for rdata in delete {
            self.changes.push(Change::Delete {
                key: key.clone(),
                rdata: rdata.clone(),
            });
        }
        if let Some(rdata) = add {
            self.changes.push(Change::Add { key, rdata, ttl: 0 });
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// "delete imap.example.com. A 192.0.2.12; add ..." for log lines.
    pub fn summary(&self) -> String {
        self.changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The wire message.
    ///
    /// RFC 2136 §2.4.1, RRset exists (value independent): "a single RR whose
    /// NAME and TYPE are equal to that of the zone RRset whose existence is
    /// required. RDLENGTH is zero and RDATA is therefore empty. CLASS must be
    /// specified as ANY". §2.4.2, RRset exists (value dependent): "a requestor
    /// adds to the section an entire RRset whose preexistence is required.
    /// NAME and TYPE are that of the RRset being denoted. CLASS is that of
    /// the zone. TTL must be specified as zero (0)". §2.4.3, RRset does not
    /// exist: "a single RR whose NAME and TYPE are equal to that of the RRset
    /// whose nonexistence is required. The RDLENGTH of this record is zero
    /// (0) ... CLASS must be specified as NONE".
    ///
    /// §2.5.1, add to an RRset: "NAME, TYPE, TTL, RDLENGTH and RDATA are
    /// those being added, and CLASS is the same as the zone class". §2.5.4,
    /// delete an RR from an RRset: "The NAME, TYPE, RDLENGTH and RDATA must
    /// match the RR being deleted. TTL must be specified as zero (0) ...
    /// CLASS must be specified as NONE".
    pub fn to_message(&self) -> Result<Message, String> {
        let mut message = Message::new(0, MessageType::Query, OpCode::Update);
        let mut zone_query = Query::query(convert::name(&self.zone)?, RecordType::SOA);
        zone_query.set_query_class(DNSClass::IN);
        message.add_query(zone_query);
        for prerequisite in &self.prerequisites {
            match prerequisite {
                Prerequisite::RRset { key, records } if records.is_empty() => {
                    let mut record = Record::update0(
                        convert::name(&key.name)?,
                        0,
                        convert::record_type(key.rtype),
                    );
                    record.dns_class = DNSClass::NONE;
                    message.add_answer(record);
                }
                Prerequisite::RRset { key, records } => {
                    let name = convert::name(&key.name)?;
                    for rdata in records {
                        message.add_answer(Record::from_rdata(
                            name.clone(),
                            0,
                            convert::to_rdata(rdata)?,
                        ));
                    }
                }
                Prerequisite::Exists(key) => {
                    let mut record = Record::update0(
                        convert::name(&key.name)?,
                        0,
                        convert::record_type(key.rtype),
                    );
                    record.dns_class = DNSClass::ANY;
                    message.add_answer(record);
                }
            }
        }
        for change in &self.changes {
            let name = convert::name(&change.key().name)?;
            let record = match change {
                Change::Add { rdata, ttl, .. } => {
                    Record::from_rdata(name, *ttl, convert::to_rdata(rdata)?)
                }
                Change::Delete { rdata, .. } => {
                    let mut record = Record::from_rdata(name, 0, convert::to_rdata(rdata)?);
                    record.dns_class = DNSClass::NONE;
                    record
                }
            };
            message.add_authority(record);
        }
        Ok(message)
    }

    /// The same update as an nsupdate script (pipe it to `nsupdate -k KEYFILE`).
    pub fn script(&self, server: &str) -> String {
        let mut out = String::new();
        let (host, port) = split_server(server);
        let _ = writeln!(out, "server {host} {port}");
        let _ = writeln!(out, "zone {}", self.zone);
        for prerequisite in &self.prerequisites {
            match prerequisite {
                Prerequisite::RRset { key, records } if records.is_empty() => {
                    let _ = writeln!(out, "prereq nxrrset {} IN {}", key.name, key.rtype);
                }
                Prerequisite::RRset { key, records } => {
                    for rdata in records {
                        let _ =
                            writeln!(out, "prereq yxrrset {} IN {} {rdata}", key.name, key.rtype);
                    }
                }
                Prerequisite::Exists(key) => {
                    let _ = writeln!(out, "prereq yxrrset {} IN {}", key.name, key.rtype);
                }
            }
        }
        for change in &self.changes {
            let _ = match change {
                Change::Add { key, rdata, ttl } => writeln!(
                    out,
                    "update add {} {ttl} IN {} {rdata}",
                    key.name, key.rtype
                ),
                Change::Delete { key, rdata } => {
                    writeln!(out, "update delete {} IN {} {rdata}", key.name, key.rtype)
                }
            };
        }
        out.push_str("send\n");
        out
    }
}

/// The prerequisite an RRset's changes carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The RRset exactly as held (empty: it must not exist).
    Exactly(BTreeSet<Rdata>),
    /// The RRset exists, whatever it holds: for an RRset so large that
    /// repeating it would not fit in a message (only where the primary's
    /// RRset limit was raised far above BIND's default of 100).
    Exists,
}

/// Above this size an RRset is guarded by its existence alone.
const MAX_EXACT_GUARD: usize = 16 * 1024;

impl Guard {
    pub fn of(view: &View, key: &RRsetKey) -> Self {
        let held = view.get(key).map(|s| s.records.clone()).unwrap_or_default();
        let bytes: usize = held.iter().map(|r| record_len(&key.name, r)).sum();
        if bytes > MAX_EXACT_GUARD {
            Guard::Exists
        } else {
            Guard::Exactly(held)
        }
    }

    /// Bytes it takes in a message (an upper bound: no name compression).
    pub fn len(&self, key: &RRsetKey) -> usize {
        match self {
            Guard::Exactly(held) if !held.is_empty() => {
                held.iter().map(|r| record_len(&key.name, r)).sum()
            }
            _ => name_len(&key.name) + 10,
        }
    }
}

/// Bytes of a name in wire format, uncompressed (RFC 1035 §3.1).
pub fn name_len(name: &str) -> usize {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return 1;
    }
    trimmed.split('.').map(|l| l.len() + 1).sum::<usize>() + 1
}

/// Bytes of a resource record in wire format, uncompressed: owner, type,
/// class, TTL, length (RFC 1035 §4.1.3), then the data.
pub fn record_len(owner: &str, rdata: &Rdata) -> usize {
    let data = match rdata {
        Rdata::A(_) => 4,
        Rdata::Aaaa(_) => 16,
        Rdata::Mx { exchange, .. } => 2 + name_len(exchange),
        Rdata::Srv { target, .. } => 6 + name_len(target),
        Rdata::Txt(strings) => strings.iter().map(|s| s.len() + 1).sum(),
        Rdata::Tlsa { data, .. } => 3 + data.len(),
    };
    name_len(owner) + 10 + data
}

/// `host:port` or `[v6]:port` into nsupdate's `server HOST PORT` parts.
fn split_server(server: &str) -> (String, String) {
    if let Ok(addr) = server.parse::<std::net::SocketAddr>() {
        return (addr.ip().to_string(), addr.port().to_string());
    }
    match server.rsplit_once(':') {
        Some((host, port)) => (host.trim_matches(['[', ']']).to_string(), port.to_string()),
        None => (server.to_string(), "53".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::records::RRset;

    fn key(name: &str, rtype: RType) -> RRsetKey {
        RRsetKey::new(name, rtype)
    }

    fn update() -> Update {
        let imap = key("imap.example.com.", RType::A);
        let mut view = View::new();
        view.insert(
            imap.clone(),
            RRset {
                ttl: 300,
                records: [
                    Rdata::A("198.51.100.7".parse().unwrap()),
                    Rdata::A("192.0.2.11".parse().unwrap()),
                ]
                .into(),
            },
        );
        let mut u = Update::new("example.com.");
        u.rrset_change(
            &RRsetChange {
                key: imap,
                deletes: vec![Rdata::A("192.0.2.11".parse().unwrap())],
                adds: vec![],
                ttl: 300,
            },
            &view,
        );
        u.rrset_change(
            &RRsetChange {
                key: key("imap.example.com.", RType::Aaaa),
                deletes: vec![],
                adds: vec![Rdata::Aaaa("2001:db8::12".parse().unwrap())],
                ttl: 60,
            },
            &view,
        );
        u
    }

    #[test]
    fn message_has_rfc2136_sections() {
        let message = update().to_message().unwrap();
        assert_eq!(message.metadata.op_code, OpCode::Update);
        assert_eq!(message.queries.len(), 1);
        assert_eq!(message.queries[0].query_type(), RecordType::SOA);
        // Value-dependent prerequisite: the whole RRset, class IN, TTL 0.
        assert_eq!(message.answers.len(), 3);
        assert!(
            message.answers[..2]
                .iter()
                .all(|r| r.ttl == 0 && r.dns_class == DNSClass::IN)
        );
        // RRset does not exist: class NONE, empty rdata.
        assert_eq!(message.answers[2].dns_class, DNSClass::NONE);
        // Delete one RR: class NONE, TTL 0; add: class IN with its TTL.
        assert_eq!(message.authorities[0].dns_class, DNSClass::NONE);
        assert_eq!(message.authorities[0].ttl, 0);
        assert_eq!(message.authorities[1].dns_class, DNSClass::IN);
        assert_eq!(message.authorities[1].ttl, 60);
        message.to_vec().unwrap();
    }

    #[test]
    fn an_exists_prerequisite_has_class_any_and_no_rdata() {
        let mut u = Update::new("example.com.");
        u.prerequisites
            .push(Prerequisite::Exists(key("imap.example.com.", RType::A)));
        let message = u.to_message().unwrap();
        assert_eq!(message.answers[0].dns_class, DNSClass::ANY);
        assert!(message.authorities.is_empty());
        assert_eq!(
            u.script("127.0.0.1:53"),
            "server 127.0.0.1 53\nzone example.com.\nprereq yxrrset imap.example.com. IN A\nsend\n"
        );
    }

    #[test]
    fn script_is_pipeable() {
        assert_eq!(
            update().script("127.0.0.1:5353"),
            "server 127.0.0.1 5353\n\
             zone example.com.\n\
             prereq yxrrset imap.example.com. IN A 192.0.2.11\n\
             prereq yxrrset imap.example.com. IN A 198.51.100.7\n\
             prereq nxrrset imap.example.com. IN AAAA\n\
             update delete imap.example.com. IN A 192.0.2.11\n\
             update add imap.example.com. 60 IN AAAA 2001:db8::12\n\
             send\n"
        );
        assert_eq!(split_server("[::1]:53"), ("::1".into(), "53".into()));
    }

    #[test]
    fn a_lease_swap_keeps_foreign_txt_in_its_prerequisite() {
        use crate::core::lease::LeaseRecord;
        let spf = Rdata::txt("v=spf1 -all");
        let old = LeaseRecord::parse("holder=a token=t expires=1 seq=1").unwrap();
        let new = LeaseRecord::parse("holder=a token=t expires=2 seq=2").unwrap();
        let swap = Swap {
            expected: [spf.clone(), old.rdata()].into(),
            delete: vec![old.rdata()],
            add: Some(new.clone()),
        };
        let mut u = Update::new("example.com.");
        u.lease_swap("Example.COM.", &swap);
        let message = u.to_message().unwrap();
        assert_eq!(message.answers.len(), 2);
        assert_eq!(message.authorities.len(), 2);
        assert_eq!(message.authorities[1].ttl, 0);
        assert_eq!(
            u.changes[1],
            Change::Add {
                key: key("example.com.", RType::Txt),
                rdata: new.rdata(),
                ttl: 0
            }
        );
    }
}
