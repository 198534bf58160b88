//! The record model of the pure core: owner names as lower-case absolute
//! strings and rdata as plain values, so that sets of records compare, sort
//! and hash exactly. No DNS library types: the conversions live in
//! `dns::convert`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The record types pigeon-dns reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RType {
    A,
    Aaaa,
    Mx,
    Srv,
    /// The lease, drain marks and TLSA publication marks.
    Txt,
    Tlsa,
    /// Read only: a CNAME at an owned name is a conflict to report (no
    /// other data may sit beside it, RFC 1034 §3.6.2).
    Cname,
}

impl RType {
    pub fn as_str(self) -> &'static str {
        match self {
            RType::A => "A",
            RType::Aaaa => "AAAA",
            RType::Mx => "MX",
            RType::Srv => "SRV",
            RType::Txt => "TXT",
            RType::Tlsa => "TLSA",
            RType::Cname => "CNAME",
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
    /// The character-strings of a TXT record, as bytes (foreign TXT records
    /// need not be UTF-8, and prerequisites must repeat them exactly).
    Txt(Vec<Vec<u8>>),
    Tlsa {
        usage: u8,
        selector: u8,
        matching: u8,
        data: Vec<u8>,
    },
}

impl Rdata {
    pub fn rtype(&self) -> RType {
        match self {
            Rdata::A(_) => RType::A,
            Rdata::Aaaa(_) => RType::Aaaa,
            Rdata::Mx { .. } => RType::Mx,
            Rdata::Srv { .. } => RType::Srv,
            Rdata::Txt(_) => RType::Txt,
            Rdata::Tlsa { .. } => RType::Tlsa,
        }
    }

    pub fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Rdata::A(v4),
            IpAddr::V6(v6) => Rdata::Aaaa(v6),
        }
    }

    /// A TXT record of one character-string (at most 255 bytes: longer text
    /// is cut into several strings, as RFC 1035 §3.3 requires).
    pub fn txt(text: &str) -> Self {
        Rdata::Txt(text.as_bytes().chunks(255).map(<[u8]>::to_vec).collect())
    }

    /// A TXT record's strings joined, lossily decoded (for marks we wrote).
    pub fn txt_text(&self) -> Option<String> {
        match self {
            Rdata::Txt(strings) => {
                Some(strings.iter().map(|s| String::from_utf8_lossy(s)).collect())
            }
            _ => None,
        }
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
            Rdata::Txt(strings) => {
                for (i, s) in strings.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write_character_string(f, s)?;
                }
                Ok(())
            }
            Rdata::Tlsa {
                usage,
                selector,
                matching,
                data,
            } => write!(f, "{usage} {selector} {matching} {}", hex_upper(data)),
        }
    }
}

/// A `<character-string>` in master-file syntax (RFC 1035 §5.1): quoted,
/// `"` and `\` escaped, other bytes outside printable ASCII as `\DDD`.
fn write_character_string(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &b in bytes {
        match b {
            b'"' | b'\\' => write!(f, "\\{}", b as char)?,
            0x20..=0x7e => write!(f, "{}", b as char)?,
            _ => write!(f, "\\{b:03}")?,
        }
    }
    f.write_str("\"")
}

/// Upper-case hexadecimal, as dig prints TLSA data.
pub fn hex_upper(data: &[u8]) -> String {
    data_encoding::HEXUPPER.encode(data)
}

/// Identifies an RRset: owner name (lower case, absolute) and type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RRsetKey {
    pub name: String,
    pub rtype: RType,
}

impl RRsetKey {
    pub fn new(name: &str, rtype: RType) -> Self {
        Self {
            name: name_key(name),
            rtype,
        }
    }
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
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What the primary holds at the RRsets read (absent key: empty RRset).
pub type View = BTreeMap<RRsetKey, RRset>;

/// The canonical key of a name: lower case, absolute, with the final dot.
/// Owner names compare case-insensitively everywhere (RFC 4343): BIND
/// answers with the case it stored (`IMAP` for a query of `imap`).
pub fn name_key(name: &str) -> String {
    let mut s = name.to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// Whether `name` is `zone` or below it (both canonical keys).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && (zone == "." || name.as_bytes()[name.len() - zone.len() - 1] == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_lower_case_and_absolute() {
        assert_eq!(name_key("Mail1.Example.COM"), "mail1.example.com.");
        assert_eq!(name_key("imap.example.com."), "imap.example.com.");
        assert_eq!(
            RRsetKey::new("IMAP.example.com.", RType::A),
            RRsetKey::new("imap.EXAMPLE.com", RType::A)
        );
    }

    #[test]
    fn in_zone_is_label_wise() {
        assert!(in_zone("example.com.", "example.com."));
        assert!(in_zone("imap.example.com.", "example.com."));
        assert!(!in_zone("notexample.com.", "example.com."));
        assert!(!in_zone("example.org.", "example.com."));
    }

    #[test]
    fn txt_and_tlsa_print_in_master_file_syntax() {
        assert_eq!(
            Rdata::Txt(vec![b"a \"q\" \\".to_vec(), vec![0, 200]]).to_string(),
            r#""a \"q\" \\" "\000\200""#
        );
        let long = "x".repeat(300);
        let Rdata::Txt(strings) = Rdata::txt(&long) else {
            unreachable!()
        };
        assert_eq!(strings.iter().map(Vec::len).collect::<Vec<_>>(), [255, 45]);
        assert_eq!(Rdata::txt(&long).txt_text().as_deref(), Some(long.as_str()));
        let tlsa = Rdata::Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab, 0x01],
        };
        assert_eq!(tlsa.to_string(), "3 1 1 AB01");
    }
}
