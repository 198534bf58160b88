//! The TLSA record (RFC 6698 §2) and the association data of a certificate.

use std::fmt;
use std::str::FromStr;

use data_encoding::{HEXLOWER, HEXUPPER, HEXUPPER_PERMISSIVE};
use ring::digest::{SHA256, SHA512, digest};

use super::DaneError;
use crate::core::records::Rdata;

/// Bytes of association data shown in a detail before it is cut short.
const SHORT_BYTES: usize = 8;

/// The SHA-256 of a SubjectPublicKeyInfo: the data of a `3 1 1` record,
/// the kind pigeon-dns publishes. Displayed in lower-case hex, as
/// `openssl dgst -sha256` and `sha256sum` print it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// The digest of a SubjectPublicKeyInfo's DER.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, spki_der).as_ref());
        KeyDigest(out)
    }

    /// `Some` when `data` is exactly 32 bytes long.
    pub fn from_slice(data: &[u8]) -> Option<Self> {
        data.try_into().ok().map(KeyDigest)
    }

    /// The first bytes in hex, for details where the whole digest would
    /// crowd the line (`abcdef0123456789…`).
    pub fn short(&self) -> String {
        format!("{}…", HEXLOWER.encode(&self.0[..SHORT_BYTES]))
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({})", self.short())
    }
}

/// One TLSA record's data (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tlsa {
    /// Certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0: the full certificate, 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: exact content, 1: SHA-256, 2: SHA-512.
    pub matching: u8,
    /// The certificate association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    // RFC 6698 §7.2 (usages), §7.3 (selectors), §7.4 (matching types), with
    // the RFC 7218 names.
    pub const PKIX_TA: u8 = 0;
    pub const PKIX_EE: u8 = 1;
    pub const DANE_TA: u8 = 2;
    pub const DANE_EE: u8 = 3;
    pub const CERT: u8 = 0;
    pub const SPKI: u8 = 1;
    pub const FULL: u8 = 0;
    pub const SHA2_256: u8 = 1;
    pub const SHA2_512: u8 = 2;

    /// `3 1 1 <digest>`: DANE-EE, SubjectPublicKeyInfo, SHA-256. RFC 7672
    /// §3.1.1: "TLSA records published for SMTP servers SHOULD, in most
    /// cases, be "DANE-EE(3) SPKI(1) SHA2-256(1)" records."
    pub fn dane_ee(digest: KeyDigest) -> Self {
        Tlsa {
            usage: Self::DANE_EE,
            selector: Self::SPKI,
            matching: Self::SHA2_256,
            data: digest.0.to_vec(),
        }
    }

    /// The key of a well-formed `3 1 1` record: the only form `manage` owns.
    pub fn managed_digest(&self) -> Option<KeyDigest> {
        if (self.usage, self.selector, self.matching) == (Self::DANE_EE, Self::SPKI, Self::SHA2_256)
        {
            KeyDigest::from_slice(&self.data)
        } else {
            None
        }
    }

    /// Whether an SMTP client uses this record to authenticate the server.
    ///
    /// RFC 7672 §3.1.3: "SMTP client treatment of TLSA RRs with certificate
    /// usages PKIX-TA(0) or PKIX-EE(1) is undefined. As with any other
    /// unsupported certificate usage, SMTP clients MAY treat such records as
    /// "unusable"." Unknown selectors and matching types are unusable too
    /// (RFC 7671 §4.1), and so is a digest of the wrong length for its
    /// matching type, or empty data: no certificate can ever match them.
    pub fn usable_for_smtp(&self) -> bool {
        let usage = matches!(self.usage, Self::DANE_TA | Self::DANE_EE);
        let selector = matches!(self.selector, Self::CERT | Self::SPKI);
        let data = match self.matching {
            Self::FULL => !self.data.is_empty(),
            Self::SHA2_256 => self.data.len() == 32,
            Self::SHA2_512 => self.data.len() == 64,
            _ => false,
        };
        usage && selector && data
    }

    /// The record of the core's model (what reads and UPDATEs carry).
    pub fn rdata(&self) -> Rdata {
        Rdata::Tlsa {
            usage: self.usage,
            selector: self.selector,
            matching: self.matching,
            data: self.data.clone(),
        }
    }

    /// A TLSA record of the core's model; `None` for another type.
    pub fn of_rdata(rdata: &Rdata) -> Option<Self> {
        match rdata {
            Rdata::Tlsa {
                usage,
                selector,
                matching,
                data,
            } => Some(Tlsa {
                usage: *usage,
                selector: *selector,
                matching: *matching,
                data: data.clone(),
            }),
            _ => None,
        }
    }

    /// The record with its data cut to a few bytes (`3 1 1 ABCDEF0123456789…`),
    /// for details and logs.
    pub fn short(&self) -> String {
        let data = if self.data.len() > SHORT_BYTES {
            format!("{}…", HEXUPPER.encode(&self.data[..SHORT_BYTES]))
        } else {
            HEXUPPER.encode(&self.data)
        };
        format!("{} {} {} {data}", self.usage, self.selector, self.matching)
    }
}

/// RFC 6698 §2.2: the presentation form, `3 1 1 0C72AC70...`, with the data
/// in upper-case hex in one piece, as `dig` prints it.
impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.matching,
            HEXUPPER.encode(&self.data)
        )
    }
}

/// Parses the presentation form. RFC 6698 §2.2: the three fields are 8-bit
/// unsigned integers, and "Whitespace is allowed within the string of
/// hexadecimal characters". The RFC 7218 mnemonics (`DANE-EE SPKI SHA2-256`)
/// are accepted too.
impl FromStr for Tlsa {
    type Err = DaneError;

    fn from_str(text: &str) -> Result<Self, DaneError> {
        let bad = |reason: &str| DaneError::Presentation {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut fields = text.split_whitespace();
        let mut field = |name: &str, names: &[(&str, u8)]| -> Result<u8, DaneError> {
            let value = fields
                .next()
                .ok_or_else(|| bad(&format!("no {name} field")))?;
            if let Some((_, number)) = names.iter().find(|(n, _)| n.eq_ignore_ascii_case(value)) {
                return Ok(*number);
            }
            value
                .parse::<u8>()
                .map_err(|_| bad(&format!("{name} {value:?} is not a number from 0 to 255")))
        };
        let usage = field(
            "certificate usage",
            &[
                ("PKIX-TA", 0),
                ("PKIX-EE", 1),
                ("DANE-TA", 2),
                ("DANE-EE", 3),
                ("PrivCert", 255),
            ],
        )?;
        let selector = field("selector", &[("Cert", 0), ("SPKI", 1), ("PrivSel", 255)])?;
        let matching = field(
            "matching type",
            &[
                ("Full", 0),
                ("SHA2-256", 1),
                ("SHA2-512", 2),
                ("PrivMatch", 255),
            ],
        )?;
        let hex: String = fields.collect();
        if hex.is_empty() {
            return Err(bad("no certificate association data"));
        }
        if hex.len() % 2 == 1 {
            return Err(bad(
                "the certificate association data has an odd number of hex digits",
            ));
        }
        let data = HEXUPPER_PERMISSIVE
            .decode(hex.as_bytes())
            .map_err(|_| bad("the certificate association data is not hexadecimal"))?;
        Ok(Tlsa {
            usage,
            selector,
            matching,
            data,
        })
    }
}

/// The TLSA owner of a service (RFC 6698 §3): `_<port>._tcp.<host>`, in
/// lower case like every owner name of the record model.
pub fn tlsa_owner(port: u16, host: &str) -> String {
    format!("_{port}._tcp.{}", host.to_ascii_lowercase())
}

/// The DER of a certificate's SubjectPublicKeyInfo (found by x509-parser).
pub fn spki_der(cert_der: &[u8]) -> Result<&[u8], DaneError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| DaneError::Certificate(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.raw)
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo: what a `3 1 1`
/// record of that certificate's key holds.
pub fn spki_sha256(cert_der: &[u8]) -> Result<KeyDigest, DaneError> {
    spki_der(cert_der).map(KeyDigest::of_spki)
}

/// The content a selector takes from a certificate. RFC 6698 §2.1.2:
/// "0 -- Full certificate: the Certificate binary structure as defined in
/// [RFC5280]", "1 -- SubjectPublicKeyInfo: DER-encoded binary structure as
/// defined in [RFC5280]".
pub fn select(cert_der: &[u8], selector: u8) -> Result<&[u8], DaneError> {
    match selector {
        Tlsa::CERT => {
            // Parsed even so: a DER that is no certificate selects nothing.
            spki_der(cert_der)?;
            Ok(cert_der)
        }
        Tlsa::SPKI => spki_der(cert_der),
        other => Err(DaneError::Selector(other)),
    }
}

/// The association data of a certificate for a selector and a matching type:
/// what a record of that form must hold to match it. RFC 6698 §2.1.3:
/// "0 -- Exact match on selected content", "1 -- SHA-256 hash of selected
/// content", "2 -- SHA-512 hash of selected content".
pub fn association(cert_der: &[u8], selector: u8, matching: u8) -> Result<Vec<u8>, DaneError> {
    let content = select(cert_der, selector)?;
    match matching {
        Tlsa::FULL => Ok(content.to_vec()),
        Tlsa::SHA2_256 => Ok(digest(&SHA256, content).as_ref().to_vec()),
        Tlsa::SHA2_512 => Ok(digest(&SHA512, content).as_ref().to_vec()),
        other => Err(DaneError::Matching(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dane::testpki::{self_signed, spki_of};

    #[test]
    fn displays_as_dig_prints() {
        let record = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0x0c, 0x72, 0xac, 0x70],
        };
        assert_eq!(record.to_string(), "3 1 1 0C72AC70");
        assert_eq!(record.short(), "3 1 1 0C72AC70");
        let long = Tlsa::dane_ee(KeyDigest([0xab; 32]));
        assert_eq!(long.short(), "3 1 1 ABABABABABABABAB…");
        assert_eq!(long.to_string(), format!("3 1 1 {}", "AB".repeat(32)));
    }

    #[test]
    fn parses_the_presentation_form() {
        let record: Tlsa = "3 1 1 0C72AC70".parse().unwrap();
        assert_eq!(record.data, vec![0x0c, 0x72, 0xac, 0x70]);
        // dig splits long data in groups; lower case is accepted.
        let split: Tlsa = "2 0 1 0c72ac70 B745AC19\t9988".parse().unwrap();
        assert_eq!((split.usage, split.selector, split.matching), (2, 0, 1));
        assert_eq!(
            split.data,
            HEXUPPER.decode(b"0C72AC70B745AC199988").unwrap()
        );
        let named: Tlsa = "DANE-EE SPKI SHA2-256 00FF".parse().unwrap();
        assert_eq!((named.usage, named.selector, named.matching), (3, 1, 1));
        let roundtrip = Tlsa::dane_ee(KeyDigest([7; 32]));
        assert_eq!(roundtrip.to_string().parse::<Tlsa>().unwrap(), roundtrip);
    }

    #[test]
    fn rejects_malformed_records_with_a_reason() {
        let reason = |text: &str| match text.parse::<Tlsa>() {
            Err(DaneError::Presentation { reason, .. }) => reason,
            other => panic!("{text:?}: {other:?}"),
        };
        assert_eq!(reason("3 1"), "no matching type field");
        assert_eq!(reason("3 1 1"), "no certificate association data");
        assert_eq!(
            reason("3 1 1 ABC"),
            "the certificate association data has an odd number of hex digits"
        );
        assert_eq!(
            reason("3 1 1 XY"),
            "the certificate association data is not hexadecimal"
        );
        assert_eq!(
            reason("256 1 1 AB"),
            "certificate usage \"256\" is not a number from 0 to 255"
        );
        assert_eq!(
            reason("3 x 1 AB"),
            "selector \"x\" is not a number from 0 to 255"
        );
        let message = "3 1".parse::<Tlsa>().unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid TLSA record \"3 1\": no matching type field"
        );
    }

    #[test]
    fn only_dane_usages_with_known_parameters_are_usable_for_smtp() {
        let record = |usage, selector, matching, len| Tlsa {
            usage,
            selector,
            matching,
            data: vec![1; len],
        };
        assert!(record(3, 1, 1, 32).usable_for_smtp());
        assert!(record(3, 0, 2, 64).usable_for_smtp());
        assert!(record(2, 0, 0, 500).usable_for_smtp());
        assert!(record(2, 1, 1, 32).usable_for_smtp());
        // RFC 7672 §3.1.3: PKIX usages are unusable for SMTP.
        assert!(!record(0, 0, 1, 32).usable_for_smtp());
        assert!(!record(1, 1, 1, 32).usable_for_smtp());
        assert!(!record(4, 1, 1, 32).usable_for_smtp());
        assert!(!record(3, 2, 1, 32).usable_for_smtp());
        assert!(!record(3, 1, 3, 32).usable_for_smtp());
        assert!(!record(3, 1, 255, 32).usable_for_smtp());
        // A digest of the wrong length, or no data, can match nothing.
        assert!(!record(3, 1, 1, 31).usable_for_smtp());
        assert!(!record(3, 1, 2, 32).usable_for_smtp());
        assert!(!record(3, 1, 0, 0).usable_for_smtp());
    }

    #[test]
    fn only_well_formed_3_1_1_records_are_managed() {
        let digest = KeyDigest([9; 32]);
        assert_eq!(Tlsa::dane_ee(digest).managed_digest(), Some(digest));
        let mut other = Tlsa::dane_ee(digest);
        other.selector = 0;
        assert_eq!(other.managed_digest(), None);
        let mut short = Tlsa::dane_ee(digest);
        short.data.pop();
        assert_eq!(short.managed_digest(), None);
    }

    #[test]
    fn association_data_follows_selector_and_matching_type() {
        let (cert, key) = self_signed("mx.example.com");
        let der = cert.der().as_ref();
        let spki = spki_of(&key);
        assert_eq!(spki_der(der).unwrap(), spki.as_slice());
        assert_eq!(spki_sha256(der).unwrap(), KeyDigest::of_spki(&spki));
        assert_eq!(association(der, 1, 0).unwrap(), spki);
        assert_eq!(association(der, 0, 0).unwrap(), der.to_vec());
        assert_eq!(
            association(der, 1, 1).unwrap(),
            digest(&SHA256, &spki).as_ref().to_vec()
        );
        assert_eq!(
            association(der, 0, 1).unwrap(),
            digest(&SHA256, der).as_ref().to_vec()
        );
        assert_eq!(
            association(der, 1, 2).unwrap(),
            digest(&SHA512, &spki).as_ref().to_vec()
        );
        assert_eq!(association(der, 0, 2).unwrap().len(), 64);
        assert!(matches!(
            association(der, 2, 1),
            Err(DaneError::Selector(2))
        ));
        assert!(matches!(
            association(der, 1, 3),
            Err(DaneError::Matching(3))
        ));
        assert!(matches!(
            spki_sha256(b"not a certificate"),
            Err(DaneError::Certificate(_))
        ));
        assert!(matches!(select(b"junk", 0), Err(DaneError::Certificate(_))));
    }

    #[test]
    fn converts_to_and_from_the_record_model() {
        let record = Tlsa::dane_ee(KeyDigest([3; 32]));
        assert_eq!(Tlsa::of_rdata(&record.rdata()), Some(record.clone()));
        assert_eq!(record.rdata().to_string(), record.to_string());
        assert_eq!(Tlsa::of_rdata(&Rdata::txt("x")), None);
    }

    #[test]
    fn digests_print_in_lower_case_hex() {
        let digest = KeyDigest([0xab; 32]);
        assert_eq!(digest.to_string(), "ab".repeat(32));
        assert_eq!(digest.short(), "abababababababab…");
        assert_eq!(KeyDigest::from_slice(&[1; 31]), None);
    }

    #[test]
    fn owner_names_are_lower_case() {
        assert_eq!(
            tlsa_owner(25, "Mail1.Example.COM."),
            "_25._tcp.mail1.example.com."
        );
    }
}
