//! The record model of the pure core: owner names as lower-case absolute strings
//! and rdata as plain values, so sets of records compare, sort and hash exactly.
//! Conversions to and from hickory types live here and nowhere else.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, MX, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The record types pigeon-dns manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RType {
    A,
    Aaaa,
    Mx,
    Srv,
}

impl RType {
    pub fn to_hickory(self) -> RecordType {
        match self {
            RType::A => RecordType::A,
            RType::Aaaa => RecordType::AAAA,
            RType::Mx => RecordType::MX,
            RType::Srv => RecordType::SRV,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RType::A => "A",
            RType::Aaaa => "AAAA",
            RType::Mx => "MX",
            RType::Srv => "SRV",
        }
    }
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record's data. Host names are absolute, lower case, with the final dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx {
        preference: u16,
        exchange: String,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

impl Rdata {
    pub fn rtype(&self) -> RType {
        match self {
            Rdata::A(_) => RType::A,
            Rdata::Aaaa(_) => RType::Aaaa,
            Rdata::Mx { .. } => RType::Mx,
            Rdata::Srv { .. } => RType::Srv,
        }
    }

    pub fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Rdata::A(v4),
            IpAddr::V6(v6) => Rdata::Aaaa(v6),
        }
    }

    /// Converts a record read from the primary; `None` for types we do not manage.
    pub fn from_hickory(data: &RData) -> Option<Self> {
        Some(match data {
            RData::A(a) => Rdata::A(a.0),
            RData::AAAA(a) => Rdata::Aaaa(a.0),
            RData::MX(mx) => Rdata::Mx {
                preference: mx.preference,
                exchange: name_key(&mx.exchange),
            },
            RData::SRV(srv) => Rdata::Srv {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: name_key(&srv.target),
            },
            _ => return None,
        })
    }

    pub fn to_hickory(&self) -> Result<RData, String> {
        Ok(match self {
            Rdata::A(a) => RData::A(A(*a)),
            Rdata::Aaaa(a) => RData::AAAA(AAAA(*a)),
            Rdata::Mx {
                preference,
                exchange,
            } => RData::MX(MX::new(*preference, parse_name(exchange)?)),
            Rdata::Srv {
                priority,
                weight,
                port,
                target,
            } => RData::SRV(SRV::new(*priority, *weight, *port, parse_name(target)?)),
        })
    }
}

/// Presentation format, as in a zone file or an nsupdate script.
impl fmt::Display for Rdata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rdata::A(a) => write!(f, "{a}"),
            Rdata::Aaaa(a) => write!(f, "{a}"),
            Rdata::Mx {
                preference,
                exchange,
            } => write!(f, "{preference} {exchange}"),
            Rdata::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{priority} {weight} {port} {target}"),
        }
    }
}

/// Identifies an RRset: owner name (lower case, absolute) and type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RRsetKey {
    pub name: String,
    pub rtype: RType,
}

impl fmt::Display for RRsetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.rtype)
    }
}

/// An RRset as the primary holds it (owned and foreign records alike).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RRset {
    pub ttl: u32,
    pub records: BTreeSet<Rdata>,
}

impl RRset {
    /// Builds the set from query answers (records of other types are ignored).
    pub fn from_records(records: &[Record]) -> Self {
        let mut set = RRset::default();
        for record in records {
            if let Some(rdata) = Rdata::from_hickory(&record.data) {
                set.ttl = record.ttl;
                set.records.insert(rdata);
            }
        }
        set
    }
}

/// The canonical key of a name: lower case, absolute, with the final dot.
pub fn name_key(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

pub fn parse_name(s: &str) -> Result<Name, String> {
    Name::from_ascii(s).map_err(|e| format!("invalid name {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdata_roundtrips_through_hickory() {
        let all = [
            Rdata::A("192.0.2.1".parse().unwrap()),
            Rdata::Aaaa("2001:db8::1".parse().unwrap()),
            Rdata::Mx {
                preference: 10,
                exchange: "mail1.example.com.".into(),
            },
            Rdata::Srv {
                priority: 0,
                weight: 1,
                port: 993,
                target: "mail1.example.com.".into(),
            },
        ];
        for rdata in all {
            let back = Rdata::from_hickory(&rdata.to_hickory().unwrap()).unwrap();
            assert_eq!(back, rdata);
        }
    }

    #[test]
    fn name_key_is_lower_case_and_absolute() {
        let name = Name::from_ascii("Mail1.Example.COM").unwrap();
        assert_eq!(name_key(&name), "mail1.example.com.");
    }
}
