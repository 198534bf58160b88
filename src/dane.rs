//! DANE for the MX (RFC 6698, RFC 7671, RFC 7672), pure: no sockets, no
//! clock reads, no global state. Time comes in as arguments.
//!
//! - `record`: the TLSA record (presentation form, usability for SMTP) and
//!   the association data of a certificate (selector × matching type).
//! - `next`: the keys a node announces in `tlsa_next` (certificate or public
//!   key PEM files; never a private key).
//! - `verify`: `dane = "verify"`, the served chain judged against the TLSA
//!   RRset as an SMTP client does (RFC 7672 §3.1).
//! - `manage`: `dane = "manage"`, the planner that keeps `3 1 1` records in
//!   step with the keys nodes serve and holds a node out of its pool until
//!   every cached TLSA RRset matches it; `mark`: the TXT beside each record
//!   that remembers when it was published.

mod manage;
mod mark;
mod next;
mod record;
mod verify;

#[cfg(test)]
mod testpki;

use std::path::PathBuf;

pub use manage::{
    LastServed, ManageInput, Publish, Published, ServiceDecision, ServiceKeys, TlsaManager,
    TlsaPlan, TlsaRrset, hold_out, plan,
};
pub use mark::{MARK_TAG, TlsaMark};
pub use next::{load_next, next_key_from_pem};
pub use record::{KeyDigest, Tlsa, association, select, spki_der, spki_sha256, tlsa_owner};
pub use verify::{Verdict, verify};

/// Everything that can go wrong here. Errors about a `tlsa_next` file name it.
#[derive(Debug, thiserror::Error)]
pub enum DaneError {
    /// A TLSA record in presentation form that does not parse.
    #[error("invalid TLSA record {text:?}: {reason}")]
    Presentation { text: String, reason: String },
    /// A certificate whose DER x509-parser rejects.
    #[error("certificate does not parse: {0}")]
    Certificate(String),
    #[error("unknown TLSA selector {0} (0: full certificate, 1: SubjectPublicKeyInfo)")]
    Selector(u8),
    #[error("unknown TLSA matching type {0} (0: exact, 1: SHA-256, 2: SHA-512)")]
    Matching(u8),
    #[error("tlsa_next {}: cannot read it: {source}", path.display())]
    NextUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// pigeon-dns reads no private key: the operator gives the certificate or
    /// the public key instead.
    #[error(
        "tlsa_next {}: holds a private key, which pigeon-dns does not read; give the \
         certificate or the public key instead (openssl pkey -in {} -pubout -out {})",
        path.display(), path.display(), public_path(path).display()
    )]
    NextPrivateKey { path: PathBuf },
    #[error(
        "tlsa_next {}: no PEM certificate (BEGIN CERTIFICATE) or public key (BEGIN PUBLIC KEY) in it",
        path.display()
    )]
    NextNoKey { path: PathBuf },
    #[error("tlsa_next {}: {reason}", path.display())]
    NextInvalid { path: PathBuf, reason: String },
}

/// Where the operator's `openssl pkey -pubout` should write: beside the
/// file, with the extension `.pub`.
fn public_path(path: &std::path::Path) -> PathBuf {
    let public = path.with_extension("pub");
    if public == path {
        let mut name = path.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    } else {
        public
    }
}
