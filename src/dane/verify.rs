//! `dane = "verify"`: the served chain judged against the TLSA RRset the way
//! an SMTP client does (RFC 7672 §3.1), so the probe fails where a DANE
//! sender would refuse to deliver.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, Der, ServerName, TrustAnchor, UnixTime};
use x509_parser::asn1_rs::{FromDer, Header, Length};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::record::{Tlsa, association, spki_der, spki_sha256};

/// Records listed in a mismatch detail before the list is cut short.
const LISTED_RECORDS: usize = 3;

/// What the TLSA RRset says about a served chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A usable record matched (the first one that did, DANE-EE before DANE-TA).
    Match { record: Tlsa },
    /// Usable records exist and none matched: a DANE sender would not deliver.
    Mismatch {
        /// SHA-256 of the leaf's SubjectPublicKeyInfo in lower-case hex (the
        /// data of the `3 1 1` record that would match), or a word saying
        /// why there is none.
        served: String,
        /// Why nothing matched: the usable records, or why a DANE-TA record
        /// found in the chain did not authenticate it.
        reason: String,
    },
    /// No usable record: DANE is not in force for that host, and a sender
    /// uses TLS without authentication (RFC 7672 §2.2).
    NotInForce,
}

impl Verdict {
    /// The text the probe prints, naming the TLSA owner
    /// (`_25._tcp.mail1.example.com`).
    pub fn detail(&self, owner: &str) -> String {
        let owner = owner.strip_suffix('.').unwrap_or(owner);
        match self {
            Verdict::Match { record } => format!("DANE: matched {} at {owner}", record.short()),
            Verdict::Mismatch { served, reason } => format!(
                "dane_mismatch: served key sha256 {served} matches no TLSA record at {owner} ({reason})"
            ),
            Verdict::NotInForce => {
                format!("DANE: not in force (no usable TLSA record at {owner})")
            }
        }
    }
}

/// Judges `chain` (leaf first, as served) against `records`, for `host` (the
/// MX host: the TLSA base domain, a reference identifier of RFC 7672 §3.2)
/// at `now`.
pub fn verify(
    chain: &[CertificateDer<'_>],
    records: &[Tlsa],
    host: &str,
    now: UnixTime,
) -> Verdict {
    let usable: Vec<&Tlsa> = records.iter().filter(|r| r.usable_for_smtp()).collect();
    if usable.is_empty() {
        return Verdict::NotInForce;
    }
    let Some(leaf) = chain.first() else {
        return Verdict::Mismatch {
            served: "none".to_owned(),
            reason: "the server sent no certificate".to_owned(),
        };
    };
    let served = match spki_sha256(leaf) {
        Ok(digest) => digest.to_string(),
        Err(e) => {
            return Verdict::Mismatch {
                served: "unreadable".to_owned(),
                reason: format!("leaf {e}"),
            };
        }
    };

    // RFC 7672 §3.1.1: "Authentication via certificate usage DANE-EE(3) TLSA
    // records involves simply checking that the server's leaf certificate
    // matches the TLSA record." Names and dates are not looked at: "The
    // server MUST be considered authenticated even if none of the names in
    // the certificate match the client's reference identity for the
    // server", and "the expiration date of the server certificate MUST be
    // ignored: the validity period of the TLSA record key binding is
    // determined by the validity interval of the TLSA record DNSSEC
    // signature."
    if let Some(record) = usable
        .iter()
        .find(|r| r.usage == Tlsa::DANE_EE && matches(leaf, r))
    {
        return Verdict::Match {
            record: (*record).clone(),
        };
    }

    // RFC 7672 §3.1.2, DANE-TA(2): the record names a trust anchor; the leaf
    // must chain to it and, unlike DANE-EE, name checks apply (RFC 7672
    // §3.2: "When name checks are applicable (certificate usage
    // DANE-TA(2))", the TLSA base domain is a reference identifier) and so
    // do validity periods, as in any path validation.
    let mut failures = Vec::new();
    for record in usable.iter().filter(|r| r.usage == Tlsa::DANE_TA) {
        let roots = trust_anchors(record, chain);
        if roots.is_empty() {
            continue;
        }
        match chains_to(roots, chain, host, now) {
            Ok(()) => {
                return Verdict::Match {
                    record: (*record).clone(),
                };
            }
            Err(why) => failures.push(format!("DANE-TA {} matched, but {why}", record.short())),
        }
    }
    let reason = if failures.is_empty() {
        usable_list(&usable)
    } else {
        failures.join("; ")
    };
    Verdict::Mismatch { served, reason }
}

/// Whether `record`'s data is the association data of `cert` for its form.
fn matches(cert: &[u8], record: &Tlsa) -> bool {
    association(cert, record.selector, record.matching).is_ok_and(|data| data == record.data)
}

/// "usable records: 3 1 1 ABCD…, 2 0 1 EF01… and 2 more".
fn usable_list(usable: &[&Tlsa]) -> String {
    let shown: Vec<String> = usable
        .iter()
        .take(LISTED_RECORDS)
        .map(|r| r.short())
        .collect();
    let more = usable.len().saturating_sub(LISTED_RECORDS);
    let noun = if usable.len() == 1 {
        "record"
    } else {
        "records"
    };
    if more > 0 {
        format!("usable {noun}: {} and {more} more", shown.join(", "))
    } else {
        format!("usable {noun}: {}", shown.join(", "))
    }
}

/// The trust anchors a DANE-TA record designates in the served chain.
///
/// RFC 7672 §3.1.2: "SMTP servers that rely on certificate usage DANE-TA(2)
/// TLSA records for TLS authentication MUST include the TA certificate as
/// part of the certificate chain presented in the TLS handshake server
/// certificate message even when it is a self-signed root certificate." So
/// the anchor is a certificate of the chain other than the leaf (the leaf
/// is DANE-EE's business). A `2 1 0` record holds the anchor's whole public
/// key (RFC 7671 §5.2 allows such a key to be absent from the chain): when
/// no served certificate matches it, the key itself is made an anchor under
/// the issuer names found in the chain, and the signatures decide.
fn trust_anchors(record: &Tlsa, chain: &[CertificateDer<'_>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let Some((leaf, rest)) = chain.split_first() else {
        return roots;
    };
    for cert in rest.iter().filter(|c| c.as_ref() != leaf.as_ref()) {
        if matches(cert, record) {
            // A certificate webpki cannot take as an anchor anchors nothing.
            let _ = roots.add(cert.clone().into_owned());
        }
    }
    if roots.is_empty() && (record.selector, record.matching) == (Tlsa::SPKI, Tlsa::FULL) {
        roots.roots.extend(bare_key_anchors(&record.data, chain));
    }
    roots
}

/// A `2 1 0` key as trust anchors, one per issuer name in the chain. None
/// when the data is not a SubjectPublicKeyInfo or is the leaf's own key.
fn bare_key_anchors(spki: &[u8], chain: &[CertificateDer<'_>]) -> Vec<TrustAnchor<'static>> {
    let is_spki = SubjectPublicKeyInfo::from_der(spki).is_ok_and(|(rest, _)| rest.is_empty());
    let leaf_key = chain.first().and_then(|leaf| spki_der(leaf).ok());
    let Some(key) = der_contents(spki).filter(|_| is_spki && leaf_key != Some(spki)) else {
        return Vec::new();
    };
    let mut issuers: Vec<Vec<u8>> = Vec::new();
    for cert in chain {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
            continue;
        };
        if let Some(name) = der_contents(parsed.tbs_certificate.issuer.as_raw())
            && !issuers.iter().any(|n| n.as_slice() == name)
        {
            issuers.push(name.to_vec());
        }
    }
    issuers
        .into_iter()
        .map(|subject| TrustAnchor {
            subject: Der::from(subject),
            subject_public_key_info: Der::from(key.to_vec()),
            name_constraints: None,
        })
        .collect()
}

/// The contents of a DER element (webpki's anchors hold the subject and the
/// key without their SEQUENCE header).
fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    let (rest, header) = Header::from_der(tlv).ok()?;
    match header.length() {
        Length::Definite(len) if len == rest.len() => Some(rest),
        _ => None,
    }
}

/// Path validation from the leaf to one of `roots`, for `host`, at `now`, by
/// rustls's webpki verifier: signatures, CA constraints, key usage, validity
/// periods and the name. The reason is worded like the probe's TLS failures.
fn chains_to(
    roots: RootCertStore,
    chain: &[CertificateDer<'_>],
    host: &str,
    now: UnixTime,
) -> Result<(), String> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err("the server sent no certificate".to_owned());
    };
    let plain_host = host.strip_suffix('.').unwrap_or(host);
    let name = ServerName::try_from(plain_host.to_owned())
        .map_err(|_| format!("{host:?} is not a host name a certificate can be checked for"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("the trust anchor is unusable ({e})"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(|e| crate::probe::rejection_reason(&e, plain_host))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dane::record::KeyDigest;
    use crate::dane::testpki::{Pki, expired_self_signed, now, self_signed, spki_of};

    const HOST: &str = "mx.example.com";
    const OWNER: &str = "_25._tcp.mx.example.com.";

    fn record(usage: u8, selector: u8, matching: u8, cert: &[u8]) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data: association(cert, selector, matching).unwrap(),
        }
    }

    fn served(chain: &[CertificateDer<'_>]) -> String {
        spki_sha256(&chain[0]).unwrap().to_string()
    }

    #[test]
    fn dane_ee_matches_the_leaf_in_every_form() {
        let (cert, _) = self_signed(HOST);
        let chain = vec![cert.der().clone()];
        for selector in [0, 1] {
            for matching in [0, 1, 2] {
                let tlsa = record(3, selector, matching, &chain[0]);
                assert_eq!(
                    verify(&chain, std::slice::from_ref(&tlsa), HOST, now()),
                    Verdict::Match { record: tlsa },
                    "3 {selector} {matching}"
                );
            }
        }
    }

    #[test]
    fn dane_ee_ignores_names_and_dates() {
        // RFC 7672 §3.1.1: neither the name nor the expiry is checked.
        let (cert, _) = self_signed("other.example.net");
        let chain = vec![cert.der().clone()];
        let tlsa = record(3, 1, 1, &chain[0]);
        assert!(matches!(
            verify(&chain, std::slice::from_ref(&tlsa), HOST, now()),
            Verdict::Match { .. }
        ));
        let expired = vec![expired_self_signed(HOST).der().clone()];
        let tlsa = record(3, 1, 1, &expired[0]);
        assert!(matches!(
            verify(&expired, &[tlsa], HOST, now()),
            Verdict::Match { .. }
        ));
        // Nor does the rest of the chain matter: junk after the leaf.
        let with_junk = vec![chain[0].clone(), CertificateDer::from(vec![0x30, 0x00])];
        assert!(matches!(
            verify(&with_junk, &[record(3, 0, 1, &chain[0])], HOST, now()),
            Verdict::Match { .. }
        ));
    }

    #[test]
    fn a_key_no_record_names_is_a_mismatch_naming_the_served_key() {
        let (cert, _) = self_signed(HOST);
        let (other, _) = self_signed(HOST);
        let chain = vec![cert.der().clone()];
        let published = record(3, 1, 1, other.der());
        let verdict = verify(&chain, std::slice::from_ref(&published), HOST, now());
        let Verdict::Mismatch {
            served: key,
            reason,
        } = &verdict
        else {
            panic!("{verdict:?}");
        };
        assert_eq!(*key, served(&chain));
        assert_eq!(*reason, format!("usable record: {}", published.short()));
        assert_eq!(
            verdict.detail(OWNER),
            format!(
                "dane_mismatch: served key sha256 {} matches no TLSA record at _25._tcp.mx.example.com (usable record: {})",
                served(&chain),
                published.short()
            )
        );
    }

    #[test]
    fn without_a_usable_record_dane_is_not_in_force() {
        let (cert, _) = self_signed(HOST);
        let chain = vec![cert.der().clone()];
        assert_eq!(verify(&chain, &[], HOST, now()), Verdict::NotInForce);
        // PKIX usages (RFC 7672 §3.1.3), unknown parameters, bad lengths:
        // none is usable, even those that would match.
        let unusable = vec![
            record(0, 1, 1, &chain[0]),
            record(1, 1, 1, &chain[0]),
            Tlsa {
                usage: 3,
                selector: 2,
                matching: 1,
                data: vec![0; 32],
            },
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 7,
                data: vec![0; 32],
            },
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![0; 20],
            },
        ];
        let verdict = verify(&chain, &unusable, HOST, now());
        assert_eq!(verdict, Verdict::NotInForce);
        assert_eq!(
            verdict.detail(OWNER),
            "DANE: not in force (no usable TLSA record at _25._tcp.mx.example.com)"
        );
    }

    #[test]
    fn one_usable_record_puts_dane_in_force_beside_unusable_ones() {
        let (cert, _) = self_signed(HOST);
        let (other, _) = self_signed(HOST);
        let chain = vec![cert.der().clone()];
        // A PKIX-EE record that would match does not count for SMTP.
        let records = vec![record(1, 1, 1, &chain[0]), record(3, 1, 1, other.der())];
        assert!(matches!(
            verify(&chain, &records, HOST, now()),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn the_matched_record_is_reported() {
        let (cert, _) = self_signed(HOST);
        let (other, _) = self_signed(HOST);
        let chain = vec![cert.der().clone()];
        let good = record(3, 1, 1, &chain[0]);
        let records = vec![record(3, 1, 1, other.der()), good.clone()];
        let verdict = verify(&chain, &records, HOST, now());
        assert_eq!(
            verdict,
            Verdict::Match {
                record: good.clone()
            }
        );
        assert_eq!(
            verdict.detail(OWNER),
            format!("DANE: matched {} at _25._tcp.mx.example.com", good.short())
        );
    }

    #[test]
    fn an_empty_chain_is_a_mismatch() {
        let (cert, _) = self_signed(HOST);
        let verdict = verify(&[], &[record(3, 1, 1, cert.der())], HOST, now());
        assert_eq!(
            verdict,
            Verdict::Mismatch {
                served: "none".to_owned(),
                reason: "the server sent no certificate".to_owned()
            }
        );
    }

    #[test]
    fn dane_ta_matches_the_root_or_the_intermediate() {
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        for (cert, selector, matching) in [
            (&chain[2], 0, 1),
            (&chain[2], 1, 1),
            (&chain[2], 0, 0),
            (&chain[2], 1, 2),
            (&chain[1], 0, 1),
            (&chain[1], 1, 1),
        ] {
            let tlsa = record(2, selector, matching, cert);
            assert_eq!(
                verify(&chain, std::slice::from_ref(&tlsa), HOST, now()),
                Verdict::Match { record: tlsa },
                "2 {selector} {matching}"
            );
        }
    }

    #[test]
    fn dane_ta_checks_the_name() {
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&["other.example.net"], (2024, 2030)));
        let tlsa = record(2, 0, 1, &chain[2]);
        let verdict = verify(&chain, std::slice::from_ref(&tlsa), HOST, now());
        let Verdict::Mismatch {
            served: key,
            reason,
        } = &verdict
        else {
            panic!("{verdict:?}");
        };
        assert_eq!(*key, served(&chain));
        assert_eq!(
            *reason,
            format!(
                "DANE-TA {} matched, but certificate not valid for mx.example.com (it names other.example.net)",
                tlsa.short()
            )
        );
        // A wildcard covers the host's first label.
        let wildcard = pki.full_chain(pki.leaf(&["*.example.com"], (2024, 2030)));
        let tlsa = record(2, 0, 1, &wildcard[2]);
        assert!(matches!(
            verify(&wildcard, &[tlsa], HOST, now()),
            Verdict::Match { .. }
        ));
        // The host may come as an absolute name.
        let absolute = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let tlsa_abs = record(2, 0, 1, &absolute[2]);
        assert!(matches!(
            verify(&absolute, &[tlsa_abs], "mx.example.com.", now()),
            Verdict::Match { .. }
        ));
    }

    #[test]
    fn dane_ta_checks_the_validity_period() {
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&[HOST], (2019, 2021)));
        let tlsa = record(2, 0, 1, &chain[2]);
        let Verdict::Mismatch { reason, .. } = verify(&chain, &[tlsa], HOST, now()) else {
            panic!("an expired leaf passed DANE-TA");
        };
        assert!(
            reason.contains("certificate expired on 2021-01-01 00:00:00 UTC"),
            "{reason}"
        );
        let early = pki.full_chain(pki.leaf(&[HOST], (2029, 2030)));
        let tlsa = record(2, 0, 1, &early[2]);
        let Verdict::Mismatch { reason, .. } = verify(&early, &[tlsa], HOST, now()) else {
            panic!("a leaf not valid yet passed DANE-TA");
        };
        assert!(reason.contains("not valid before 2029-01-01"), "{reason}");
    }

    #[test]
    fn dane_ta_never_takes_the_leaf_as_anchor() {
        let (cert, _) = self_signed(HOST);
        let chain = vec![cert.der().clone()];
        // A self-signed leaf named by a DANE-TA record: not an anchor.
        let verdict = verify(&chain, &[record(2, 0, 1, &chain[0])], HOST, now());
        assert!(matches!(verdict, Verdict::Mismatch { .. }), "{verdict:?}");
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let verdict = verify(&chain, &[record(2, 1, 1, &chain[0])], HOST, now());
        assert!(matches!(verdict, Verdict::Mismatch { .. }), "{verdict:?}");
        // Nor through a 2 1 0 record holding the leaf's own key.
        let verdict = verify(&chain, &[record(2, 1, 0, &chain[0])], HOST, now());
        assert!(matches!(verdict, Verdict::Mismatch { .. }), "{verdict:?}");
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain() {
        // RFC 7672 §3.1.2: the server must send the TA certificate.
        let pki = Pki::new();
        let full = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let short = full[..2].to_vec();
        let verdict = verify(&short, &[record(2, 0, 1, &full[2])], HOST, now());
        assert_eq!(
            verdict,
            Verdict::Mismatch {
                served: served(&short),
                reason: format!("usable record: {}", record(2, 0, 1, &full[2]).short()),
            }
        );
    }

    #[test]
    fn a_2_1_0_record_anchors_a_key_the_server_does_not_send() {
        let pki = Pki::new();
        let full = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let short = full[..2].to_vec();
        let tlsa = Tlsa {
            usage: 2,
            selector: 1,
            matching: 0,
            data: pki.root_spki(),
        };
        assert_eq!(
            verify(&short, std::slice::from_ref(&tlsa), HOST, now()),
            Verdict::Match {
                record: tlsa.clone()
            }
        );
        // Sent or not, the key anchors the chain.
        assert!(matches!(
            verify(&full, std::slice::from_ref(&tlsa), HOST, now()),
            Verdict::Match { .. }
        ));
        // A key that signed nothing in the chain anchors nothing.
        let (_, stranger) = self_signed("stranger.example");
        let other = Tlsa {
            data: spki_of(&stranger),
            ..tlsa.clone()
        };
        assert!(matches!(
            verify(&short, &[other], HOST, now()),
            Verdict::Mismatch { .. }
        ));
        // Data that is no public key anchors nothing either.
        let junk = Tlsa {
            data: vec![0x30, 0x03, 0x02, 0x01, 0x00],
            ..tlsa
        };
        assert!(matches!(
            verify(&short, &[junk], HOST, now()),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn dane_ee_is_tried_before_dane_ta() {
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let ta = record(2, 0, 1, &chain[2]);
        let ee = record(3, 1, 1, &chain[0]);
        assert_eq!(
            verify(&chain, &[ta, ee.clone()], HOST, now()),
            Verdict::Match { record: ee }
        );
    }

    #[test]
    fn a_ta_failure_does_not_hide_a_later_ta_match() {
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let other = Pki::new();
        let foreign = record(
            2,
            0,
            1,
            &other.full_chain(other.leaf(&[HOST], (2024, 2030)))[2],
        );
        let good = record(2, 1, 1, &chain[1]);
        assert_eq!(
            verify(&chain, &[foreign, good.clone()], HOST, now()),
            Verdict::Match { record: good }
        );
    }

    #[test]
    fn the_verdict_moves_with_the_clock() {
        let pki = Pki::new();
        let chain = pki.full_chain(pki.leaf(&[HOST], (2024, 2030)));
        let tlsa = record(2, 0, 1, &chain[2]);
        let later = UnixTime::since_unix_epoch(Duration::from_secs(1_950_000_000)); // 2031
        assert!(matches!(
            verify(&chain, std::slice::from_ref(&tlsa), HOST, now()),
            Verdict::Match { .. }
        ));
        assert!(matches!(
            verify(&chain, &[tlsa], HOST, later),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn long_record_lists_are_cut() {
        let records: Vec<Tlsa> = (0..5u8)
            .map(|i| Tlsa::dane_ee(KeyDigest([i; 32])))
            .collect();
        let refs: Vec<&Tlsa> = records.iter().collect();
        assert_eq!(
            usable_list(&refs),
            "usable records: 3 1 1 0000000000000000…, 3 1 1 0101010101010101…, 3 1 1 0202020202020202… and 2 more"
        );
    }
}
