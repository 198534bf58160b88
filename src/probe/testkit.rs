//! Test helpers: fake servers on 127.0.0.1:0 and a throwaway PKI.
//! Panics are fine here: a fake server that panics fails its test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ProbeSpec;
use crate::config::{CheckKind, TlsOptions};

/// The name test certificates are issued for, and the specs' `tls_name`.
pub(crate) const NAME: &str = "mail.test";

/// A spec with a 5s timeout (generous for a loaded CI machine; tests of
/// timeouts run on paused time), verification on and no CA file.
pub(crate) fn spec(check: CheckKind, addr: SocketAddr) -> ProbeSpec {
    ProbeSpec {
        check,
        addr,
        timeout: Duration::from_secs(5),
        starttls: false,
        tls_name: NAME.to_owned(),
        tls: TlsOptions {
            verify: true,
            name: None,
            ca_file: None,
            cert_min_days: 0,
        },
        http_host: "webmail.test".to_owned(),
        path: "/".to_owned(),
        expect_body: None,
        ehlo_name: "probe.test".to_owned(),
        dane: None,
    }
}

/// Serves one connection with `handler`; the handle yields what it returns.
pub(crate) async fn serve<F, Fut, T>(handler: F) -> (SocketAddr, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        handler(stream).await
    });
    (addr, handle)
}

/// An address where nothing listens: bound once, then released.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A scripted server side: sends text, reads lines and keeps them.
pub(crate) struct Peer<S> {
    reader: BufReader<S>,
    /// Every line received, without its CRLF.
    pub(crate) seen: Vec<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    pub(crate) fn new(stream: S) -> Self {
        Peer {
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    /// Sends raw text (the caller writes the CRLFs).
    pub(crate) async fn send(&mut self, text: &str) {
        let stream = self.reader.get_mut();
        let _ = stream.write_all(text.as_bytes()).await;
        let _ = stream.flush().await;
    }

    /// The next line; `None` at end of stream.
    pub(crate) async fn recv(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                self.seen.push(line.clone());
                Some(line)
            }
        }
    }

    /// Reads a line that must start with `prefix`.
    pub(crate) async fn expect(&mut self, prefix: &str) {
        let line = self.recv().await;
        assert!(
            line.as_deref().is_some_and(|l| l.starts_with(prefix)),
            "expected {prefix:?}, got {line:?}"
        );
    }

    /// The stream, to start TLS on it (nothing may be buffered).
    pub(crate) fn into_inner(self) -> (S, Vec<String>) {
        assert!(
            self.reader.buffer().is_empty(),
            "client sent data before TLS"
        );
        (self.reader.into_inner(), self.seen)
    }

    /// Closes our side (TLS close_notify, then FIN).
    pub(crate) async fn shutdown(&mut self) {
        let _ = self.reader.get_mut().shutdown().await;
    }

    /// Plays a dialogue: the greeting, then for each exchange a line that
    /// must start with its prefix and the reply; then closes. Returns the
    /// lines received.
    pub(crate) async fn script(
        mut self,
        greeting: &str,
        exchanges: &[(&str, &str)],
    ) -> Vec<String> {
        self.send(greeting).await;
        for (prefix, reply) in exchanges {
            self.expect(prefix).await;
            self.send(reply).await;
        }
        self.shutdown().await;
        self.seen
    }
}

/// Completes the server side of a TLS handshake.
pub(crate) async fn accept_tls(
    config: Arc<ServerConfig>,
    stream: TcpStream,
) -> TlsStream<TcpStream> {
    TlsAcceptor::from(config).accept(stream).await.unwrap()
}

/// A test CA, written to a PEM file a spec can name as `tls_ca_file`.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: tempfile::NamedTempFile,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pigeon-dns test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        ca_file.write_all(ca.pem().as_bytes()).unwrap();
        Pki { ca, ca_file }
    }

    /// TLS options trusting this CA, checking `min_days` of lifetime.
    pub(crate) fn options(&self, min_days: u32) -> TlsOptions {
        TlsOptions {
            verify: true,
            name: None,
            ca_file: Some(self.ca_file.path().to_owned()),
            cert_min_days: min_days,
        }
    }

    /// A server config whose leaf names `name` and is valid from `from_days`
    /// to `until_days` (days relative to now).
    pub(crate) fn server(&self, name: &str, from_days: i64, until_days: i64) -> Arc<ServerConfig> {
        self.server_and_leaf(name, from_days, until_days).0
    }

    /// [`Pki::server`], and the leaf it presents.
    pub(crate) fn server_and_leaf(
        &self,
        name: &str,
        from_days: i64,
        until_days: i64,
    ) -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(until_days);
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.ca).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        (Arc::new(config), leaf.der().clone())
    }

    /// A leaf for [`NAME`], valid from yesterday for a year.
    pub(crate) fn valid(&self) -> Arc<ServerConfig> {
        self.server(NAME, -1, 365)
    }
}
