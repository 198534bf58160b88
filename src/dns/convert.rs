//! The core's record model <-> hickory-proto types. The only place where
//! both meet.

use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, MX, SRV, TLSA, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::core::records::{RType, Rdata, name_key};

pub fn record_type(rtype: RType) -> RecordType {
    match rtype {
        RType::A => RecordType::A,
        RType::Aaaa => RecordType::AAAA,
        RType::Mx => RecordType::MX,
        RType::Srv => RecordType::SRV,
        RType::Txt => RecordType::TXT,
        RType::Tlsa => RecordType::TLSA,
        RType::Cname => RecordType::CNAME,
    }
}

/// A name key of the core as a hickory name.
pub fn name(s: &str) -> Result<Name, String> {
    Name::from_ascii(s).map_err(|e| format!("invalid name {s:?}: {e}"))
}

/// The canonical key of a hickory name (lower case, absolute).
pub fn key_of(name: &Name) -> String {
    name_key(&name.to_ascii())
}

/// Converts a record read from a server; `None` for types the core does not model.
pub fn rdata(data: &RData) -> Option<Rdata> {
    Some(match data {
        RData::A(a) => Rdata::A(a.0),
        RData::AAAA(a) => Rdata::Aaaa(a.0),
        RData::MX(mx) => Rdata::Mx {
            preference: mx.preference,
            exchange: key_of(&mx.exchange),
        },
        RData::SRV(srv) => Rdata::Srv {
            priority: srv.priority,
            weight: srv.weight,
            port: srv.port,
            target: key_of(&srv.target),
        },
        RData::TXT(txt) => Rdata::Txt(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
        RData::TLSA(tlsa) => Rdata::Tlsa {
            usage: tlsa.cert_usage.into(),
            selector: tlsa.selector.into(),
            matching: tlsa.matching.into(),
            data: tlsa.cert_data.clone(),
        },
        _ => return None,
    })
}

pub fn to_rdata(rdata: &Rdata) -> Result<RData, String> {
    Ok(match rdata {
        Rdata::A(a) => RData::A(A(*a)),
        Rdata::Aaaa(a) => RData::AAAA(AAAA(*a)),
        Rdata::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, name(exchange)?)),
        Rdata::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        Rdata::Txt(strings) => {
            RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
        }
        Rdata::Tlsa {
            usage,
            selector,
            matching,
            data,
        } => RData::TLSA(TLSA::new(
            CertUsage::from(*usage),
            Selector::from(*selector),
            Matching::from(*matching),
            data.clone(),
        )),
    })
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
            Rdata::Txt(vec![b"holder=a".to_vec(), vec![0xff, 0]]),
            Rdata::Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![1, 2, 3],
            },
        ];
        for r in all {
            assert_eq!(rdata(&to_rdata(&r).unwrap()), Some(r));
        }
    }

    #[test]
    fn names_are_keyed_case_insensitively() {
        let n = Name::from_ascii("Mail1.Example.COM").unwrap();
        assert_eq!(key_of(&n), "mail1.example.com.");
    }
}
