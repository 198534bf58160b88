//! `tlsa_next = ["next.pem", ...]`: the keys a node will serve next, whose
//! `3 1 1` records `manage` pre-publishes. Each file is a PEM certificate
//! (its SubjectPublicKeyInfo is taken; the first one of a chain file, the
//! leaf) or a PEM public key (`BEGIN PUBLIC KEY`: the SubjectPublicKeyInfo
//! itself, RFC 7468 §13). Never a private key: the daemon has no business
//! with it, and a file holding one is refused before anything in it is
//! decoded.

use std::path::Path;

use rustls_pki_types::pem::{PemObject, SectionKind};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::DaneError;
use super::record::{KeyDigest, spki_sha256};

/// Reads a `tlsa_next` file and returns the SHA-256 of the key it names.
/// The only file I/O of the module; errors name the file.
pub fn load_next(path: &Path) -> Result<KeyDigest, DaneError> {
    let pem = std::fs::read(path).map_err(|source| DaneError::NextUnreadable {
        path: path.to_owned(),
        source,
    })?;
    next_key_from_pem(path, &pem)
}

/// The SHA-256 of the key a `tlsa_next` file's content names; `path` only
/// names the file in errors.
pub fn next_key_from_pem(path: &Path, pem: &[u8]) -> Result<KeyDigest, DaneError> {
    if holds_private_key(pem) {
        return Err(DaneError::NextPrivateKey {
            path: path.to_owned(),
        });
    }
    let invalid = |reason: String| DaneError::NextInvalid {
        path: path.to_owned(),
        reason,
    };
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| invalid(format!("not valid PEM ({e})")))?;
        match kind {
            SectionKind::Certificate => {
                return spki_sha256(&der).map_err(|e| invalid(e.to_string()));
            }
            SectionKind::PublicKey => {
                return match SubjectPublicKeyInfo::from_der(&der) {
                    Ok(([], _)) => Ok(KeyDigest::of_spki(&der)),
                    _ => Err(invalid(
                        "its PUBLIC KEY is not a DER SubjectPublicKeyInfo".to_owned(),
                    )),
                };
            }
            _ => continue,
        }
    }
    Err(DaneError::NextNoKey {
        path: path.to_owned(),
    })
}

/// Whether any PEM label names a private key (`PRIVATE KEY`, `RSA PRIVATE
/// KEY`, `EC PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, `OPENSSH PRIVATE KEY`...),
/// judged on the labels alone.
fn holds_private_key(pem: &[u8]) -> bool {
    pem.split(|b| *b == b'\n' || *b == b'\r').any(|line| {
        line.trim_ascii_start().starts_with(b"-----BEGIN ")
            && line
                .windows(b"PRIVATE KEY".len())
                .any(|w| w == b"PRIVATE KEY")
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rcgen::KeyPair;

    use super::*;
    use crate::dane::testpki::{Pki, self_signed, spki_of};

    fn path() -> PathBuf {
        PathBuf::from("/etc/pigeon-dns/next.pem")
    }

    #[test]
    fn a_certificate_gives_its_key() {
        let (cert, key) = self_signed("mx.example.com");
        let digest = next_key_from_pem(&path(), cert.pem().as_bytes()).unwrap();
        assert_eq!(digest, KeyDigest::of_spki(&spki_of(&key)));
        assert_eq!(digest, spki_sha256(cert.der()).unwrap());
    }

    #[test]
    fn a_chain_file_gives_its_leaf() {
        let pki = Pki::new();
        let leaf = pki.leaf(&["mx.example.com"], (2024, 2030));
        let pem: String = pki
            .full_chain(leaf.clone())
            .iter()
            .map(|c| {
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    data_encoding::BASE64.encode(c.as_ref())
                )
            })
            .collect();
        let digest = next_key_from_pem(&path(), format!("# comment\n{pem}").as_bytes()).unwrap();
        assert_eq!(digest, spki_sha256(&leaf).unwrap());
    }

    #[test]
    fn a_public_key_gives_itself() {
        let key = KeyPair::generate().unwrap();
        let digest = next_key_from_pem(&path(), key.public_key_pem().as_bytes()).unwrap();
        assert_eq!(digest, KeyDigest::of_spki(&spki_of(&key)));
    }

    #[test]
    fn a_private_key_is_refused_with_what_to_give_instead() {
        let key = KeyPair::generate().unwrap();
        let (cert, _) = self_signed("mx.example.com");
        let combined = format!("{}{}", cert.pem(), key.serialize_pem());
        let labels = [
            key.serialize_pem(),
            combined,
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_owned(),
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n".to_owned(),
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .to_owned(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\r\n"
                .to_owned(),
        ];
        for pem in labels {
            let error =
                next_key_from_pem(Path::new("/etc/ssl/next.key"), pem.as_bytes()).unwrap_err();
            assert!(
                matches!(error, DaneError::NextPrivateKey { .. }),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                "tlsa_next /etc/ssl/next.key: holds a private key, which pigeon-dns does not \
                 read; give the certificate or the public key instead (openssl pkey -in \
                 /etc/ssl/next.key -pubout -out /etc/ssl/next.pub)"
            );
        }
        // A file already named .pub gets a distinct suggestion.
        let error = next_key_from_pem(Path::new("k.pub"), key.serialize_pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("-out k.pub.pub)"), "{error}");
    }

    #[test]
    fn a_file_without_a_key_is_an_error_naming_it() {
        let error = next_key_from_pem(&path(), b"hello\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "tlsa_next /etc/pigeon-dns/next.pem: no PEM certificate (BEGIN CERTIFICATE) or \
             public key (BEGIN PUBLIC KEY) in it"
        );
        let csr_only = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        assert!(matches!(
            next_key_from_pem(&path(), csr_only.as_bytes()),
            Err(DaneError::NextNoKey { .. })
        ));
    }

    #[test]
    fn damaged_content_is_an_error_naming_the_file() {
        let not_spki = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            data_encoding::BASE64.encode(b"not a key")
        );
        let error = next_key_from_pem(&path(), not_spki.as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "tlsa_next /etc/pigeon-dns/next.pem: its PUBLIC KEY is not a DER SubjectPublicKeyInfo"
        );
        let not_cert = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            data_encoding::BASE64.encode(b"not a certificate")
        );
        let error = next_key_from_pem(&path(), not_cert.as_bytes()).unwrap_err();
        assert!(matches!(error, DaneError::NextInvalid { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("tlsa_next /etc/pigeon-dns/next.pem: certificate does not parse"),
            "{error}"
        );
        let unterminated = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        let error = next_key_from_pem(&path(), unterminated.as_bytes()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("tlsa_next /etc/pigeon-dns/next.pem: not valid PEM"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let error = load_next(Path::new("/nonexistent/next.pem")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("tlsa_next /nonexistent/next.pem: cannot read it: "),
            "{error}"
        );
    }

    #[test]
    fn a_file_is_read_from_disk() {
        let (cert, _) = self_signed("mx.example.com");
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, cert.pem().as_bytes()).unwrap();
        assert_eq!(
            load_next(file.path()).unwrap(),
            spki_sha256(cert.der()).unwrap()
        );
    }
}
