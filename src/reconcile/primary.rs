//! What the reconciler needs of a zone's primary, behind a small trait so
//! that its timing (coalescing, backoff, resync, splitting, fencing) is
//! tested under paused time against a fake, while the end-to-end tests keep
//! the real `named`.
//!
//! [`DnsPrimary`] reads names *exactly* as the zone holds them, the way an
//! UPDATE's prerequisites see them (RFC 2136 §3.2: no wildcard expansion):
//! - owner names compare case-insensitively (BIND answers `IMAP` for `imap`);
//! - an answer synthesized from a wildcard (RFC 4592) is no record at the
//!   name: when a query finds records, a query for a child of the name tells
//!   a real node (NXDOMAIN: the name exists, so no wildcard above it can
//!   apply) from synthesis; in the rare ambiguous case (a wildcard below the
//!   name, or synthesis) an UPDATE with only an "RRset exists" prerequisite
//!   gives the exact answer and changes nothing;
//! - a CNAME at the name is reported (BIND silently ignores an add beside it).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::core::records::{RRset, RRsetKey, RType, Rdata, name_key};
use crate::dns::update::{Prerequisite, Update};
use crate::dns::{DnsError, Exchange, convert};

/// A name as the zone holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRead {
    /// The RRsets read, by type (absent or empty: none).
    pub sets: BTreeMap<RType, RRset>,
    /// The target of a CNAME at the name.
    pub cname: Option<String>,
}

/// A zone's primary, as the reconciler uses it.
pub trait Primary: Send + Sync {
    /// `host:port`, for messages and nsupdate scripts.
    fn server(&self) -> &str;

    /// Reads the RRsets of `types` at `name` exactly as the zone holds them.
    fn read_name(
        &self,
        name: &str,
        types: &[RType],
    ) -> impl Future<Output = Result<NameRead, DnsError>> + Send;

    /// Sends one UPDATE; `Ok` only when the primary applied it.
    fn update(&self, update: &Update) -> impl Future<Output = Result<(), DnsError>> + Send;

    /// The zone's SOA serial at the primary.
    fn soa_serial(&self) -> impl Future<Output = Result<u32, DnsError>> + Send;

    /// The addresses of the zone's NS names: the glue and in-zone address
    /// records as the primary holds them, other names through the system's
    /// resolver. None by default (a primary in a test has no secondaries).
    fn name_server_addresses(&self) -> impl Future<Output = Result<Vec<IpAddr>, DnsError>> + Send {
        async { Ok(Vec::new()) }
    }
    /// Whether the zone has a DNSKEY RRset at the primary (is signed).
    fn has_dnskey(&self) -> impl Future<Output = Result<bool, DnsError>> + Send {
        std::future::ready(Ok(true))
    }
}

/// The TXT RRset at `name` exactly as the zone holds it (empty when there
/// is none): the lease, the drain marks.
pub async fn read_txt<P: Primary>(primary: &P, name: &str) -> Result<BTreeSet<Rdata>, DnsError> {
    let read = primary.read_name(name, &[RType::Txt]).await?;
    Ok(read
        .sets
        .get(&RType::Txt)
        .map(|s| s.records.clone())
        .unwrap_or_default())
}

/// The label of the child name whose absence proves that a name exists.
const EXACT_PROBE_LABEL: &str = "_pigeon-dns-exact";

/// A [`Primary`] over DNS: signed queries over TCP, one type at a time.
#[derive(Clone, Debug)]
pub struct DnsPrimary<E> {
    exchange: E,
    /// The zone (a name key): exact reads ask it with prerequisite-only UPDATEs.
    zone: String,
}

impl<E: Exchange> DnsPrimary<E> {
    pub fn new(exchange: E, zone: &str) -> Self {
        Self {
            exchange,
            zone: name_key(zone),
        }
    }

    pub fn exchange(&self) -> &E {
        &self.exchange
    }

    /// The reply to one signed query; `None` for NXDOMAIN.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Option<Message>, DnsError> {
        let mut message = Message::new(0, MessageType::Query, OpCode::Query);
        let name = convert::name(name).map_err(DnsError::Build)?;
        message.add_query(Query::query(name, rtype));
        match self.exchange.exchange(message).await {
            Ok(reply) => Ok(Some(reply)),
            Err(DnsError::Rcode {
                rcode: ResponseCode::NXDomain,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether answers at `name` may be synthesized: false when its child
    /// does not exist (then `name` itself exists, or nothing answered).
    async fn may_be_synthesized(&self, name: &str) -> Result<bool, DnsError> {
        let child = format!("{EXACT_PROBE_LABEL}.{name}");
        if child.len() > 254 {
            return Ok(true);
        }
        Ok(self.query(&child, RecordType::TXT).await?.is_some())
    }

    /// Whether the zone really holds an RRset of `rtype` at `name`.
    async fn exists(&self, name: &str, rtype: RType) -> Result<bool, DnsError> {
        let mut update = Update::new(&self.zone);
        update
            .prerequisites
            .push(Prerequisite::Exists(RRsetKey::new(name, rtype)));
        match self.update(&update).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_prerequisite_failure() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<E: Exchange> Primary for DnsPrimary<E> {
    fn server(&self) -> &str {
        self.exchange.server()
    }

    async fn read_name(&self, name: &str, types: &[RType]) -> Result<NameRead, DnsError> {
        let name = name_key(name);
        let mut read = NameRead::default();
        for &rtype in types {
            let Some(reply) = self.query(&name, convert::record_type(rtype)).await? else {
                // NXDOMAIN: nothing at the name, and no wildcard covers it.
                return Ok(NameRead::default());
            };
            let mut set = RRset::default();
            for record in reply.answers.iter() {
                if convert::key_of(&record.name) != name {
                    continue;
                }
                match &record.data {
                    RData::CNAME(target) => read.cname = Some(convert::key_of(&target.0)),
                    data if record.record_type() == convert::record_type(rtype) => {
                        if let Some(rdata) = convert::rdata(data) {
                            set.ttl = record.ttl;
                            set.records.insert(rdata);
                        }
                    }
                    _ => {}
                }
            }
            read.sets.insert(rtype, set);
        }
        let found: BTreeSet<RType> = read
            .sets
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(t, _)| *t)
            .collect();
        if (found.is_empty() && read.cname.is_none()) || !self.may_be_synthesized(&name).await? {
            return Ok(read);
        }
        for rtype in found {
            if !self.exists(&name, rtype).await? {
                read.sets.insert(rtype, RRset::default());
            }
        }
        if read.cname.is_some() && !self.exists(&name, RType::Cname).await? {
            read.cname = None;
        }
        Ok(read)
    }

    async fn update(&self, update: &Update) -> Result<(), DnsError> {
        let message = update.to_message().map_err(DnsError::Build)?;
        self.exchange.exchange(message).await.map(|_| ())
    }

    async fn has_dnskey(&self) -> Result<bool, DnsError> {
        let reply = self.query(&self.zone, RecordType::DNSKEY).await?;
        Ok(reply.is_some_and(|r| {
            r.answers
                .iter()
                .any(|a| a.record_type() == RecordType::DNSKEY)
        }))
    }

    async fn soa_serial(&self) -> Result<u32, DnsError> {
        let reply = self
            .query(&self.zone, RecordType::SOA)
            .await?
            .ok_or_else(|| DnsError::Rcode {
                server: self.server().to_string(),
                rcode: ResponseCode::NXDomain,
            })?;
        crate::dns::client::serial_of(&reply, &self.zone).ok_or_else(|| DnsError::Malformed {
            server: self.server().to_string(),
            reason: format!("no SOA for {} in the answer", self.zone),
        })
    }

    async fn name_server_addresses(&self) -> Result<Vec<IpAddr>, DnsError> {
        let Some(reply) = self.query(&self.zone, RecordType::NS).await? else {
            return Ok(Vec::new());
        };
        let names: BTreeSet<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(convert::key_of(&ns.0)),
                _ => None,
            })
            .collect();
        let mut addresses = Vec::new();
        for name in names {
            let in_zone = name == self.zone || name.ends_with(&format!(".{}", self.zone));
            if !in_zone {
                // Outside the zone: as any resolver finds it.
                if let Ok(found) = tokio::net::lookup_host((name.trim_end_matches('.'), 53)).await {
                    addresses.extend(found.map(|a| a.ip()));
                }
                continue;
            }
            for rtype in [RecordType::A, RecordType::AAAA] {
                let Some(reply) = self.query(&name, rtype).await? else {
                    continue;
                };
                addresses.extend(reply.answers.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    //! Against a model server that answers as BIND 9.18 does (checked by
    //! hand with dig and nsupdate): owner names in the case stored, answers
    //! synthesized from a wildcard when the name does not exist (RFC 4592),
    //! a CNAME for any type at a CNAME node, and prerequisites that match
    //! names exactly.

    use std::sync::Mutex;

    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

    use super::*;

    /// (owner as stored, type, data).
    struct Model {
        zone: Vec<(&'static str, RData)>,
        updates: Mutex<usize>,
    }

    impl Model {
        fn new(zone: Vec<(&'static str, RData)>) -> Self {
            Self {
                zone,
                updates: Mutex::new(0),
            }
        }

        fn at(&self, name: &str) -> Vec<&(&'static str, RData)> {
            self.zone
                .iter()
                .filter(|(owner, _)| name_key(owner) == name_key(name))
                .collect()
        }

        /// Whether a node exists: records at it or below it (an empty
        /// non-terminal), not counting the wildcard's own label.
        fn exists(&self, name: &str) -> bool {
            let key = name_key(name);
            self.zone.iter().any(|(owner, _)| {
                let o = name_key(owner);
                o == key || o.ends_with(&format!(".{key}"))
            })
        }

        fn answer(&self, qname: &Name, qtype: RecordType) -> (ResponseCode, Vec<Record>) {
            let name = qname.to_ascii();
            let (source, owner_name): (Vec<&(&str, RData)>, Name) = if self.exists(&name) {
                let at = self.at(&name);
                let stored = at
                    .first()
                    .map_or(qname.clone(), |(o, _)| Name::from_ascii(o).unwrap());
                (at, stored)
            } else {
                // Closest encloser's wildcard.
                let mut parent = qname.base_name();
                loop {
                    let wildcard = format!("*.{}", parent.to_ascii());
                    if !self.at(&wildcard).is_empty() {
                        break (self.at(&wildcard), qname.clone());
                    }
                    if self.exists(&parent.to_ascii()) || parent.is_root() {
                        return (ResponseCode::NXDomain, Vec::new());
                    }
                    parent = parent.base_name();
                }
            };
            let records = source
                .into_iter()
                .filter(|(_, d)| d.record_type() == qtype || d.record_type() == RecordType::CNAME)
                .map(|(_, d)| Record::from_rdata(owner_name.clone(), 300, d.clone()))
                .collect();
            (ResponseCode::NoError, records)
        }
    }

    impl Exchange for Model {
        fn server(&self) -> &str {
            "model:53"
        }

        async fn exchange(&self, message: Message) -> Result<Message, DnsError> {
            let mut reply = Message::new(0, MessageType::Response, message.metadata.op_code);
            if message.metadata.op_code == OpCode::Update {
                *self.updates.lock().unwrap() += 1;
                // Only "RRset exists" prerequisites are sent by reads.
                for p in &message.answers {
                    assert_eq!(p.dns_class, DNSClass::ANY);
                    let at = self.at(&p.name.to_ascii());
                    if !at.iter().any(|(_, d)| d.record_type() == p.record_type()) {
                        return Err(DnsError::Rcode {
                            server: "model".into(),
                            rcode: ResponseCode::NXRRSet,
                        });
                    }
                }
                return Ok(reply);
            }
            let q = &message.queries[0];
            let (rcode, answers) = self.answer(q.name(), q.query_type());
            if rcode != ResponseCode::NoError {
                return Err(DnsError::Rcode {
                    server: "model".into(),
                    rcode,
                });
            }
            reply.answers = answers;
            Ok(reply)
        }
    }

    fn a(s: &str) -> RData {
        RData::A(A(s.parse().unwrap()))
    }

    fn read_at(model: Model, name: &str) -> (NameRead, usize) {
        let primary = DnsPrimary::new(model, "example.com.");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let read = runtime
            .block_on(primary.read_name(name, &[RType::A, RType::Aaaa]))
            .unwrap();
        let updates = *primary.exchange.updates.lock().unwrap();
        (read, updates)
    }

    fn addresses(read: &NameRead) -> Vec<String> {
        read.sets
            .get(&RType::A)
            .map(|s| s.records.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn owner_names_stored_in_another_case_are_read() {
        let model = Model::new(vec![("IMAP.example.com.", a("198.51.100.7"))]);
        let (read, _) = read_at(model, "imap.example.com.");
        assert_eq!(addresses(&read), ["198.51.100.7"]);
        assert_eq!(read.sets[&RType::A].ttl, 300);
    }

    #[test]
    fn an_answer_synthesized_from_a_wildcard_is_no_record_at_the_name() {
        let zone = || {
            vec![
                ("*.example.com.", a("192.0.2.99")),
                ("www.example.com.", a("198.51.100.80")),
            ]
        };
        let (read, updates) = read_at(Model::new(zone()), "imap.example.com.");
        assert!(addresses(&read).is_empty(), "{read:?}");
        assert_eq!(updates, 1, "one prerequisite-only check settled it");
        // A real name beside the wildcard is read as it is, with no UPDATE.
        let (read, updates) = read_at(Model::new(zone()), "www.example.com.");
        assert_eq!(addresses(&read), ["198.51.100.80"]);
        assert_eq!(updates, 0);
    }

    #[test]
    fn a_cname_at_the_name_is_reported_and_a_synthesized_one_is_not() {
        let target = || RData::CNAME(CNAME(Name::from_ascii("target.example.net.").unwrap()));
        let (read, _) = read_at(
            Model::new(vec![("imap.example.com.", target())]),
            "imap.example.com.",
        );
        assert_eq!(read.cname.as_deref(), Some("target.example.net."));
        let (read, _) = read_at(
            Model::new(vec![("*.example.com.", target())]),
            "imap.example.com.",
        );
        assert_eq!(read.cname, None);
    }

    #[test]
    fn nothing_at_all_costs_one_query_per_type_and_no_update() {
        let (read, updates) = read_at(
            Model::new(vec![("www.example.com.", a("198.51.100.80"))]),
            "imap.example.com.",
        );
        assert!(read.sets.values().all(RRset::is_empty));
        assert_eq!(updates, 0);
    }
}
