//! A throwaway PKI for TLS tests: a test CA (a PEM file a pool names as
//! `tls_ca_file`) and leaves it signs, with chosen names and validity, written
//! as PEM files a [`Dovecot`](super::Dovecot) serves ([`TlsFiles`]) or turned
//! into a rustls server config for a server in the test itself.
//!
//! Times are whole seconds (X.509 has no finer resolution), so
//! [`utc_text`] of a leaf's `not_after` is exactly the date pigeon-dns reads
//! from the certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::dovecot::TlsFiles;

static LEAVES: AtomicUsize = AtomicUsize::new(0);

/// Now, in whole seconds (UTC).
pub fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds")
}

/// `2025-06-01 12:00:00 UTC`: how pigeon-dns writes a certificate date.
pub fn utc_text(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A test CA with its own tempdir holding `ca.pem` and the leaves it signs.
/// The directory is world-readable: dovecot's master (root) reads the
/// leaves, and nothing here is a real secret.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
}

impl TestCa {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = now_utc();
        params.not_before = now - Duration::days(30);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let dir = tempfile::Builder::new()
            .prefix("pigeon-pki-")
            .tempdir()
            .expect("tempdir");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod pki dir");
        }
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).expect("write ca.pem");
        TestCa {
            issuer,
            dir,
            ca_file,
        }
    }

    /// The CA certificate, PEM: what a pool's `tls_ca_file` names.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server leaf for `names` (subjectAltName DNS names; the first is
    /// also the CN) valid from `not_before` to `not_after`.
    pub fn leaf_between(
        &self,
        names: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let n = LEAVES.fetch_add(1, Ordering::Relaxed);
        let files = TlsFiles {
            cert: self.dir.path().join(format!("leaf-{n}.pem")),
            key: self.dir.path().join(format!("leaf-{n}.key")),
        };
        let leaf = Leaf {
            names,
            not_after,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            files,
        };
        leaf.write_to(&leaf.files);
        leaf
    }

    /// Valid since yesterday, for `days` more days.
    pub fn leaf_valid_for(&self, names: &[&str], days: i64) -> Leaf {
        let now = now_utc();
        self.leaf_between(names, now - Duration::days(1), now + Duration::days(days))
    }

    /// Valid since yesterday for a year.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_valid_for(names, 365)
    }

    /// Expired yesterday (it was valid for the month before).
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        let now = now_utc();
        self.leaf_between(names, now - Duration::days(31), now - Duration::days(1))
    }
}

/// A leaf certificate and its key, also written as PEM files.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub names: Vec<String>,
    pub not_after: OffsetDateTime,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    /// Where [`TestCa::leaf_between`] wrote it.
    pub files: TlsFiles,
}

impl Leaf {
    /// The PEM files, for [`DovecotOpts::tls`](super::DovecotOpts::tls).
    pub fn tls_files(&self) -> TlsFiles {
        self.files.clone()
    }

    /// Writes the certificate and key to `files` (e.g. over another leaf's
    /// files, to replace the certificate a server loads at its next start).
    pub fn write_to(&self, files: &TlsFiles) {
        std::fs::write(&files.cert, &self.cert_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", files.cert.display()));
        std::fs::write(&files.key, &self.key_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", files.key.display()));
    }

    /// A rustls server config presenting this leaf (ring provider; TLS 1.2
    /// and 1.3), for a TLS server in the test.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![self.cert_der.clone()], key)
        .expect("server config");
        Arc::new(config)
    }
}
