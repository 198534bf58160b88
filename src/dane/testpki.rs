//! Test certificates with fixed validity dates, so the DANE tests judge them
//! at a fixed `NOW` and never depend on the clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, date_time_ymd,
};
use rustls_pki_types::{CertificateDer, UnixTime};

/// The instant the tests judge at: 2025-06-01 00:00:00 UTC.
pub(crate) fn now() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(1_748_736_000))
}

/// The DER of a key's SubjectPublicKeyInfo, as rcgen encodes it.
pub(crate) fn spki_of(key: &KeyPair) -> Vec<u8> {
    key.subject_public_key_info()
}

fn params(names: &[&str], ca: bool, years: (i32, i32)) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params.not_before = date_time_ymd(years.0, 1, 1);
    params.not_after = date_time_ymd(years.1, 1, 1);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    }
    params
}

/// A self-signed leaf for `name`, valid 2024 to 2030.
pub(crate) fn self_signed(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = params(&[name], false, (2024, 2030));
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

/// A self-signed leaf for `name` that expired at the start of 2021.
pub(crate) fn expired_self_signed(name: &str) -> Certificate {
    let key = KeyPair::generate().unwrap();
    params(&[name], false, (2019, 2021))
        .self_signed(&key)
        .unwrap()
}

/// A root CA, an intermediate CA it signed, and leaves the intermediate signs.
pub(crate) struct Pki {
    pub(crate) root: CertifiedIssuer<'static, KeyPair>,
    pub(crate) intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut root_params = params(&[], true, (2020, 2040));
        root_params
            .distinguished_name
            .push(DnType::CommonName, "pigeon-dns test root");
        let root = CertifiedIssuer::self_signed(root_params, KeyPair::generate().unwrap()).unwrap();
        let mut inter_params = params(&[], true, (2020, 2035));
        inter_params
            .distinguished_name
            .push(DnType::CommonName, "pigeon-dns test intermediate");
        let intermediate =
            CertifiedIssuer::signed_by(inter_params, KeyPair::generate().unwrap(), &root).unwrap();
        Pki { root, intermediate }
    }

    /// A leaf for `names` signed by the intermediate, valid over `years`.
    pub(crate) fn leaf(&self, names: &[&str], years: (i32, i32)) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = params(names, false, years);
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params
            .signed_by(&key, &self.intermediate)
            .unwrap()
            .der()
            .clone()
    }

    /// The chain a well-configured server sends: leaf, intermediate, root.
    pub(crate) fn full_chain(&self, leaf: CertificateDer<'static>) -> Vec<CertificateDer<'static>> {
        vec![
            leaf,
            self.intermediate.der().clone(),
            self.root.der().clone(),
        ]
    }

    /// The root's SubjectPublicKeyInfo DER.
    pub(crate) fn root_spki(&self) -> Vec<u8> {
        spki_of(self.root.key())
    }
}
