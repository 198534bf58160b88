//! The key hickory signs with: name, algorithm and the secret inside a
//! [`TSigner`] built once. No `Debug` or message of it shows the secret.

use std::fmt;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};

/// Allowed clock difference, in seconds, between us and the primary
/// (RFC 8945 §5.2.3 recommends 300).
const FUDGE: u16 = 300;

/// Why a key cannot sign.
pub(super) const ALGORITHM_HINT: &str = "hickory signs hmac-sha256/384/512 only; generate a new key with `tsig-keygen -a hmac-sha256 NAME`";

/// Why a TSIG key could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("algorithm `{0}` is not supported: {ALGORITHM_HINT}")]
    UnsupportedAlgorithm(String),
}

/// A TSIG key that hickory can sign with.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name, fully qualified; the primary knows the key by it.
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    /// Owns the secret; built once so that [`TsigKey::signer`] cannot fail.
    signer: TSigner,
}

impl TsigKey {
    /// A key from its parts; fails for an algorithm hickory cannot sign with.
    pub fn new(name: Name, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<Self, KeyError> {
        let mut name = name;
        name.set_fqdn(true);
        let signer = TSigner::new(secret, algorithm.clone(), name.clone(), FUDGE)
            .map_err(|_| KeyError::UnsupportedAlgorithm(algorithm_label(&algorithm).to_owned()))?;
        Ok(Self {
            name,
            algorithm,
            signer,
        })
    }

    /// The signer for requests (fudge 300 s).
    pub fn signer(&self) -> TSigner {
        self.signer.clone()
    }

    /// The algorithm as BIND writes it, e.g. "hmac-sha256".
    pub fn algorithm_name(&self) -> &'static str {
        algorithm_label(&self.algorithm)
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm_name())
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn algorithm_label(algorithm: &TsigAlgorithm) -> &'static str {
    match algorithm {
        TsigAlgorithm::HmacMd5 => "hmac-md5",
        TsigAlgorithm::Gss => "gss-tsig",
        TsigAlgorithm::HmacSha1 => "hmac-sha1",
        TsigAlgorithm::HmacSha224 => "hmac-sha224",
        TsigAlgorithm::HmacSha256 => "hmac-sha256",
        TsigAlgorithm::HmacSha256_128 => "hmac-sha256-128",
        TsigAlgorithm::HmacSha384 => "hmac-sha384",
        TsigAlgorithm::HmacSha384_192 => "hmac-sha384-192",
        TsigAlgorithm::HmacSha512 => "hmac-sha512",
        TsigAlgorithm::HmacSha512_256 => "hmac-sha512-256",
        _ => "unknown",
    }
}

/// The algorithms hickory signs with, by the name BIND writes (any case).
pub(super) fn parse_algorithm(written: &str) -> Option<TsigAlgorithm> {
    match written.to_ascii_lowercase().as_str() {
        "hmac-sha256" => Some(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Some(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Some(TsigAlgorithm::HmacSha512),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use data_encoding::BASE64;

    use super::*;
    use crate::dns::key::test_support::{SECRET, TSIG_KEYGEN, key, name};

    #[test]
    fn reads_tsig_keygen_output() {
        let key = key(TSIG_KEYGEN, None);
        assert_eq!(key.name, name("pigeon-dns."));
        assert!(key.name.is_fqdn());
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.algorithm_name(), "hmac-sha256");
        let signer = key.signer();
        assert_eq!(
            signer.key(),
            BASE64.decode(SECRET.as_bytes()).expect("base64")
        );
        assert_eq!(signer.fudge(), 300);
        assert_eq!(signer.algorithm(), &TsigAlgorithm::HmacSha256);
        assert_eq!(signer.signer_name(), &name("pigeon-dns."));
        // key_name may be written with or without the final dot, in any case.
        assert_eq!(
            self::key(TSIG_KEYGEN, Some("Pigeon-DNS.")).name,
            name("pigeon-dns.")
        );
    }
}
