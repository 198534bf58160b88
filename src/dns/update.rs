//! Builds one RFC 2136 UPDATE from a list of record changes, with a
//! prerequisite per touched RRset so that a stale view cannot undo another
//! writer's change; renders the same update as an `nsupdate` script.

use std::fmt::Write as _;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Record, RecordType};

use super::records::{RRset, RRsetKey, Rdata, parse_name};

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

    pub fn rdata(&self) -> &Rdata {
        match self {
            Change::Add { rdata, .. } | Change::Delete { rdata, .. } => rdata,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Add { key, rdata, ttl } => {
                write!(f, "add {} {ttl} {} {rdata}", key.name, key.rtype)
            }
            Change::Delete { key, rdata } => write!(f, "delete {} {} {rdata}", key.name, key.rtype),
        }
    }
}

/// One UPDATE: the changes and, for each RRset they touch, the RRset we expect
/// the primary to hold now (empty: it must not exist).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdatePlan {
    pub prerequisites: Vec<(RRsetKey, RRset)>,
    pub changes: Vec<Change>,
}

impl UpdatePlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Keeps the changes `keep` accepts, and the prerequisites of the RRsets
    /// they still touch.
    pub fn retain(&mut self, mut keep: impl FnMut(&Change) -> bool) {
        self.changes.retain(|c| keep(c));
        let changes = &self.changes;
        self.prerequisites
            .retain(|(key, _)| changes.iter().any(|c| c.key() == key));
    }

    /// Splits into per-RRset plans (each with its own prerequisite), in order.
    pub fn split_by_rrset(&self) -> Vec<UpdatePlan> {
        self.prerequisites
            .iter()
            .map(|(key, expected)| UpdatePlan {
                prerequisites: vec![(key.clone(), expected.clone())],
                changes: self
                    .changes
                    .iter()
                    .filter(|c| c.key() == key)
                    .cloned()
                    .collect(),
            })
            .collect()
    }
}

/// Builds the wire message for `zone` (absolute name).
///
/// RFC 2136 §2.4.2, RRset exists (value dependent): "a requestor adds to the
/// section an entire RRset whose preexistence is required. NAME and TYPE are
/// that of the RRset being denoted. CLASS is that of the zone. TTL must be
/// specified as zero (0)". §2.4.3, RRset does not exist: "a single RR whose NAME
/// and TYPE are equal to that of the RRset whose nonexistence is required. The
/// RDLENGTH of this record is zero (0) ... CLASS must be specified as NONE".
///
/// §2.5.1, add to an RRset: "NAME, TYPE, TTL, RDLENGTH and RDATA are those being
/// added, and CLASS is the same as the zone class". §2.5.4, delete an RR from an
/// RRset: "The NAME, TYPE, RDLENGTH and RDATA must match the RR being deleted.
/// TTL must be specified as zero (0) ... CLASS must be specified as NONE".
pub fn build_message(zone: &str, plan: &UpdatePlan) -> Result<Message, String> {
    let mut message = Message::new(0, MessageType::Query, OpCode::Update);
    let mut zone_query = Query::query(parse_name(zone)?, RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_query(zone_query);
    for (key, expected) in &plan.prerequisites {
        let name = parse_name(&key.name)?;
        if expected.records.is_empty() {
            let mut record = Record::update0(name, 0, key.rtype.to_hickory());
            record.dns_class = DNSClass::NONE;
            message.add_answer(record);
        } else {
            for rdata in &expected.records {
                message.add_answer(Record::from_rdata(name.clone(), 0, rdata.to_hickory()?));
            }
        }
    }
    for change in &plan.changes {
        let name = parse_name(&change.key().name)?;
        let rdata = change.rdata().to_hickory()?;
        let record = match change {
            Change::Add { ttl, .. } => Record::from_rdata(name, *ttl, rdata),
            Change::Delete { .. } => {
                let mut record = Record::from_rdata(name, 0, rdata);
                record.dns_class = DNSClass::NONE;
                record
            }
        };
        message.add_authority(record);
    }
    Ok(message)
}

/// The same update as an nsupdate script (pipe it to `nsupdate -k KEYFILE`).
pub fn nsupdate_script(server: &str, zone: &str, plan: &UpdatePlan) -> String {
    let mut out = String::new();
    let (host, port) = split_server(server);
    let _ = writeln!(out, "server {host} {port}");
    let _ = writeln!(out, "zone {zone}");
    for (key, expected) in &plan.prerequisites {
        if expected.records.is_empty() {
            let _ = writeln!(out, "prereq nxrrset {} IN {}", key.name, key.rtype);
        }
        for rdata in &expected.records {
            let _ = writeln!(out, "prereq yxrrset {} IN {} {rdata}", key.name, key.rtype);
        }
    }
    for change in &plan.changes {
        let _ = match change {
            Change::Add { key, rdata, ttl } => {
                writeln!(
                    out,
                    "update add {} {ttl} IN {} {rdata}",
                    key.name, key.rtype
                )
            }
            Change::Delete { key, rdata } => {
                writeln!(out, "update delete {} IN {} {rdata}", key.name, key.rtype)
            }
        };
    }
    out.push_str("send\n");
    out
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
    use crate::dns::records::RType;

    fn key(name: &str, rtype: RType) -> RRsetKey {
        RRsetKey {
            name: name.into(),
            rtype,
        }
    }

    fn plan() -> UpdatePlan {
        let imap = key("imap.example.com.", RType::A);
        let mut current = RRset {
            ttl: 300,
            ..Default::default()
        };
        current
            .records
            .insert(Rdata::A("198.51.100.7".parse().unwrap()));
        current
            .records
            .insert(Rdata::A("192.0.2.11".parse().unwrap()));
        UpdatePlan {
            prerequisites: vec![
                (imap.clone(), current),
                (key("imap.example.com.", RType::Aaaa), RRset::default()),
            ],
            changes: vec![
                Change::Delete {
                    key: imap.clone(),
                    rdata: Rdata::A("192.0.2.11".parse().unwrap()),
                },
                Change::Add {
                    key: key("imap.example.com.", RType::Aaaa),
                    rdata: Rdata::Aaaa("2001:db8::12".parse().unwrap()),
                    ttl: 60,
                },
            ],
        }
    }

    #[test]
    fn message_has_rfc2136_sections() {
        let message = build_message("example.com.", &plan()).unwrap();
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
        // It serialises.
        message.to_vec().unwrap();
    }

    #[test]
    fn nsupdate_script_is_pipeable() {
        let script = nsupdate_script("127.0.0.1:5353", "example.com.", &plan());
        assert_eq!(
            script,
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
}
