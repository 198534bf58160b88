//! DANE in a probe (RFC 7672): the served chain judged against the TLSA
//! RRset of the node's service, read from the zone's primary.
//!
//! A DANE target's handshake accepts any certificate (its signatures are
//! still checked) and keeps the chain; the judgement comes after it:
//! - usable TLSA records: they alone decide ([`crate::dane::verify`]); with
//!   DANE-EE no name or expiry check applies (RFC 7672 §3.1.1);
//! - none, or none readable: DANE is not in force, and `tls_verify` does
//!   what it does for any TLS check.
//!
//! `cert_min_days` applies either way. A mismatch fails the probe of a
//! `verify` pool (`dane_mismatch`); in a `manage` pool it is only told:
//! there the record of a new key is published at once, and the node is
//! kept out of the pool by the hold-out instead.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};

use super::ProbeResult;
use super::failure::Failure;
use crate::dane::{KeyDigest, Tlsa, Verdict, spki_sha256, verify};

/// What a probe needs to judge a node's chain by DANE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneSpec {
    /// `dane = "manage"`: a mismatch is told, not failed.
    pub manage: bool,
    /// `_<port>._tcp.<host>.`, a name key.
    pub owner: String,
    /// The TLSA base domain (the node's host, without the final dot): the
    /// name DANE-TA checks the certificate for (RFC 7672 §3.2).
    pub host: String,
}

/// The TLSA RRset as read for a probe: the records, or why none could be read.
pub type TlsaRead = Result<Vec<Tlsa>, String>;

/// The verdict, as metrics and `/status` tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaneVerdict {
    Match,
    Mismatch,
    /// No usable record: a sender uses TLS without authentication.
    NotInForce,
    /// The TLSA RRset could not be read.
    Unreadable,
}

/// What DANE said about one handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaneOutcome {
    pub verdict: DaneVerdict,
    /// The SHA-256 of the leaf's SubjectPublicKeyInfo: the key the node
    /// serves (`None`: no certificate, or one that does not parse).
    pub key: Option<KeyDigest>,
    /// One line: the record matched, what matched nothing, or why DANE is
    /// not in force.
    pub detail: String,
}

/// The judgement of a chain.
#[derive(Debug)]
pub(crate) struct Judged {
    pub(crate) outcome: DaneOutcome,
    /// A failure of the probe (a mismatch in a `verify` pool).
    pub(crate) failure: Option<Failure>,
    /// DANE did not decide: the usual certificate checks apply.
    pub(crate) pkix: bool,
}

/// Judges `chain` (leaf first) by `read`, the TLSA RRset of the service.
pub(crate) fn judge(
    spec: &DaneSpec,
    read: Option<&TlsaRead>,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Judged {
    let key = chain.first().and_then(|leaf| spki_sha256(leaf).ok());
    let owner = spec.owner.strip_suffix('.').unwrap_or(&spec.owner);
    let records = match read {
        Some(Ok(records)) => records,
        other => {
            let why = match other {
                Some(Err(error)) => format!("unreadable ({error})"),
                _ => "not read".to_owned(),
            };
            return Judged {
                outcome: DaneOutcome {
                    verdict: DaneVerdict::Unreadable,
                    key,
                    detail: format!("DANE: TLSA RRset at {owner} {why}"),
                },
                failure: None,
                pkix: true,
            };
        }
    };
    let verdict = verify(chain, records, &spec.host, now);
    let detail = verdict.detail(&spec.owner);
    let (kind, failure, pkix) = match verdict {
        Verdict::Match { .. } => (DaneVerdict::Match, None, false),
        Verdict::NotInForce => (DaneVerdict::NotInForce, None, true),
        Verdict::Mismatch { .. } if spec.manage => (DaneVerdict::Mismatch, None, false),
        Verdict::Mismatch { .. } => (
            DaneVerdict::Mismatch,
            Some(Failure::new(ProbeResult::DaneMismatch, detail.clone())),
            false,
        ),
    };
    Judged {
        outcome: DaneOutcome {
            verdict: kind,
            key,
            detail,
        },
        failure,
        pkix,
    }
}

/// How long a TLSA RRset read for the probes is used before it is read
/// again (unless `manage` changed it meanwhile: then at once). Short, so
/// that a record an operator fixes counts within seconds; long enough that
/// the probes of a node's addresses and pools share one read.
pub const TLSA_CACHE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;
    use crate::dane::KeyDigest;

    fn leaf() -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        CertificateParams::new(vec!["mail1.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .clone()
    }

    fn spec(manage: bool) -> DaneSpec {
        DaneSpec {
            manage,
            owner: "_25._tcp.mail1.example.com.".to_owned(),
            host: "mail1.example.com".to_owned(),
        }
    }

    #[test]
    fn a_match_decides_alone_and_a_mismatch_fails_verify_only() {
        let cert = leaf();
        let digest = spki_sha256(&cert).unwrap();
        let chain = [cert];
        let good: TlsaRead = Ok(vec![Tlsa::dane_ee(digest)]);
        let judged = judge(&spec(false), Some(&good), &chain, UnixTime::now());
        assert_eq!(judged.outcome.verdict, DaneVerdict::Match);
        assert_eq!(judged.outcome.key, Some(digest));
        assert!(!judged.pkix && judged.failure.is_none());

        let other: TlsaRead = Ok(vec![Tlsa::dane_ee(KeyDigest([7; 32]))]);
        let judged = judge(&spec(false), Some(&other), &chain, UnixTime::now());
        assert_eq!(judged.outcome.verdict, DaneVerdict::Mismatch);
        let failure = judged.failure.unwrap();
        assert_eq!(failure.result, ProbeResult::DaneMismatch);
        assert!(
            failure.detail.starts_with(&format!(
                "dane_mismatch: served key sha256 {digest} matches no TLSA record at \
                 _25._tcp.mail1.example.com"
            )),
            "{}",
            failure.detail
        );
        let judged = judge(&spec(true), Some(&other), &chain, UnixTime::now());
        assert_eq!(judged.outcome.verdict, DaneVerdict::Mismatch);
        assert!(judged.failure.is_none() && !judged.pkix);
    }

    #[test]
    fn without_usable_records_the_usual_checks_apply() {
        let chain = [leaf()];
        // RFC 7672 §3.1.3: PKIX-TA and PKIX-EE are unusable for SMTP.
        let pkix_only: TlsaRead = Ok(vec![
            Tlsa {
                usage: 0,
                ..Tlsa::dane_ee(KeyDigest([1; 32]))
            },
            Tlsa {
                usage: 1,
                ..Tlsa::dane_ee(KeyDigest([2; 32]))
            },
        ]);
        for read in [Ok(Vec::new()), pkix_only] {
            let judged = judge(&spec(false), Some(&read), &chain, UnixTime::now());
            assert_eq!(judged.outcome.verdict, DaneVerdict::NotInForce);
            assert_eq!(
                judged.outcome.detail,
                "DANE: not in force (no usable TLSA record at _25._tcp.mail1.example.com)"
            );
            assert!(judged.pkix && judged.failure.is_none());
        }
        let unreadable: TlsaRead = Err("timed out".to_owned());
        let judged = judge(&spec(false), Some(&unreadable), &chain, UnixTime::now());
        assert_eq!(judged.outcome.verdict, DaneVerdict::Unreadable);
        assert_eq!(
            judged.outcome.detail,
            "DANE: TLSA RRset at _25._tcp.mail1.example.com unreadable (timed out)"
        );
        assert!(judged.pkix && judged.failure.is_none());
    }

    /// Probes through a real handshake, with the TLSA RRset a fake reads.
    mod probes {
        use std::sync::Arc;

        use super::*;
        use crate::config::CheckKind;
        use crate::probe::testkit::{NAME, Peer, Pki, accept_tls, serve, spec};
        use crate::probe::{ProbeOutcome, Prober, ReadFuture, TlsaCache, TlsaReader};

        struct Fixed(TlsaRead);

        impl TlsaReader for Fixed {
            fn read<'a>(&'a self, _owner: &'a str) -> ReadFuture<'a> {
                Box::pin(async move { self.0.clone() })
            }
        }

        /// An imaps probe of a server presenting a leaf of the test CA,
        /// judged by `records` (`trusted`: the spec names the CA file).
        async fn probe(
            records: Vec<Tlsa>,
            manage: bool,
            trusted: bool,
        ) -> (ProbeOutcome, KeyDigest, Vec<String>) {
            let pki = Pki::new();
            let (config, leaf) = pki.server_and_leaf(NAME, -1, 365);
            let digest = spki_sha256(&leaf).unwrap();
            let records: Vec<Tlsa> = records
                .into_iter()
                .map(|r| {
                    if r.data.is_empty() {
                        Tlsa::dane_ee(digest)
                    } else {
                        r
                    }
                })
                .collect();
            let (addr, server) = serve(move |stream| async move {
                Peer::new(accept_tls(config, stream).await)
                    .script("* OK ready\r\n", &[("a1 LOGOUT", "a1 OK bye\r\n")])
                    .await
            })
            .await;
            let mut spec = spec(CheckKind::Imaps, addr);
            if trusted {
                spec.tls = pki.options(0);
            }
            spec.dane = Some(DaneSpec {
                manage,
                owner: "_993._tcp.mail.test.".to_owned(),
                host: NAME.to_owned(),
            });
            let cache = TlsaCache::new(Fixed(Ok(records)), TLSA_CACHE);
            let outcome = Prober::with_tlsa(Some(Arc::new(cache))).probe(&spec).await;
            (outcome, digest, server.await.unwrap())
        }

        /// The served key's own record: filled in by [`probe`].
        fn own() -> Tlsa {
            Tlsa {
                data: Vec::new(),
                ..Tlsa::dane_ee(KeyDigest([0; 32]))
            }
        }

        fn other() -> Tlsa {
            Tlsa::dane_ee(KeyDigest([0xab; 32]))
        }

        #[tokio::test]
        async fn a_matching_dane_ee_record_needs_no_trusted_ca() {
            let (outcome, digest, _) = probe(vec![own(), other()], false, false).await;
            assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
            assert!(
                outcome.detail.ends_with(&format!(
                    "; DANE: matched {} at _993._tcp.mail.test",
                    Tlsa::dane_ee(digest).short()
                )),
                "{}",
                outcome.detail
            );
            let dane = outcome.dane.unwrap();
            assert_eq!((dane.verdict, dane.key), (DaneVerdict::Match, Some(digest)));
        }

        #[tokio::test]
        async fn a_mismatch_fails_after_a_polite_goodbye() {
            let (outcome, digest, seen) = probe(vec![other()], false, true).await;
            assert_eq!(outcome.result, ProbeResult::DaneMismatch);
            assert_eq!(
                outcome.detail,
                format!(
                    "dane_mismatch: served key sha256 {digest} matches no TLSA record at \
                     _993._tcp.mail.test (usable record: {})",
                    other().short()
                )
            );
            assert_eq!(seen, ["a1 LOGOUT"]);
            // With manage, it is told and the hold-out does the rest.
            let (outcome, _, _) = probe(vec![other()], true, true).await;
            assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
            assert_eq!(outcome.dane.unwrap().verdict, DaneVerdict::Mismatch);
        }

        #[tokio::test]
        async fn not_in_force_the_certificate_is_checked_as_usual() {
            let (outcome, _, _) = probe(Vec::new(), false, true).await;
            assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
            assert!(
                outcome.detail.ends_with(
                    "; DANE: not in force (no usable TLSA record at _993._tcp.mail.test)"
                ),
                "{}",
                outcome.detail
            );
            let (outcome, _, seen) = probe(Vec::new(), false, false).await;
            assert_eq!(outcome.result, ProbeResult::TlsError);
            assert_eq!(
                outcome.detail,
                "certificate not trusted (unknown issuer); DANE: not in force (no usable TLSA \
                 record at _993._tcp.mail.test)"
            );
            assert_eq!(seen, ["a1 LOGOUT"], "the session still ends politely");
        }
    }
}
