//! TLS for implicit-TLS checks, STARTTLS and https: client configs, the
//! handshake, what a session tells about its certificate, and failure reasons
//! an operator can act on ("certificate not valid for NAME", not "InvalidData").

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion,
    RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::dane;
use super::failure::{Failure, Progress, Step};
use super::{ProbeResult, ProbeSpec, TlsInfo};
use crate::config::TlsOptions;

const DAY: u64 = 86_400;

/// The client configs that differ only by trust: one per (verify, ca_file).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct TlsKey {
    verify: bool,
    ca_file: Option<PathBuf>,
}

impl TlsKey {
    pub(crate) fn of(opts: &TlsOptions) -> Self {
        TlsKey {
            verify: opts.verify,
            // Without verification the CA file would change nothing.
            ca_file: if opts.verify {
                opts.ca_file.clone()
            } else {
                None
            },
        }
    }
}

/// Trust roots and client configs, built once and shared by every probe.
///
/// A CA file is read the first time a probe needs it; a failed read is not
/// cached, so fixing the file fixes the next probe. A changed file is seen by
/// a new `TlsContext` (the prober is rebuilt on reload).
#[derive(Debug)]
pub(crate) struct TlsContext {
    provider: Arc<CryptoProvider>,
    system_roots: RootCertStore,
    configs: Mutex<HashMap<TlsKey, Arc<ClientConfig>>>,
}

impl TlsContext {
    /// Loads the system roots (an empty store when none load: a CA file may
    /// still make verification possible).
    pub(crate) fn new() -> Self {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "Could not load some system CA certificates.");
        }
        let mut system_roots = RootCertStore::empty();
        let (added, ignored) = system_roots.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "Loaded system CA certificates.");
        Self::with_roots(system_roots)
    }

    /// A context trusting exactly `system_roots` (plus each check's CA file).
    pub(crate) fn with_roots(system_roots: RootCertStore) -> Self {
        TlsContext {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            system_roots,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// The client config for these options, built on first use.
    pub(crate) fn config(&self, opts: &TlsOptions) -> Result<Arc<ClientConfig>, Failure> {
        let key = TlsKey::of(opts);
        if let Some(config) = self.cached(&key) {
            return Ok(config);
        }
        let config = Arc::new(self.build(&key)?);
        let mut configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(configs.entry(key).or_insert(config).clone())
    }

    fn cached(&self, key: &TlsKey) -> Option<Arc<ClientConfig>> {
        let configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        configs.get(key).cloned()
    }

    fn build(&self, key: &TlsKey) -> Result<ClientConfig, Failure> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::new(ProbeResult::Error, format!("TLS setup failed: {e}")))?;
        let mut config = if key.verify {
            builder
                .with_webpki_verifier(self.verifier(key.ca_file.as_deref())?)
                .with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(self.provider.clone())))
                .with_no_client_auth()
        };
        // A resumed session skips certificate verification: a certificate
        // replaced or expired on the server would go unnoticed for as long
        // as the ticket lives. Every probe does a full handshake.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    fn verifier(&self, ca_file: Option<&Path>) -> Result<Arc<WebPkiServerVerifier>, Failure> {
        let mut roots = self.system_roots.clone();
        if let Some(path) = ca_file {
            add_ca_file(&mut roots, path)?;
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| {
                Failure::new(
                    ProbeResult::Error,
                    format!("cannot verify certificates ({e}): no system CA certificates and no tls_ca_file"),
                )
            })
    }

    /// Starts TLS on `stream` for `spec.tls_name` and checks the certificate's
    /// remaining lifetime. The session's facts go to `progress` even when the
    /// lifetime is too short: that failure is deferred to the end of the
    /// dialogue so the server still gets its goodbye.
    pub(crate) async fn handshake<S>(
        &self,
        stream: S,
        spec: &ProbeSpec,
        progress: &mut Progress,
    ) -> Result<Box<TlsStream<S>>, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        progress.at(Step::TlsHandshake);
        // A DANE target's chain is judged after the handshake, by the TLSA
        // RRset or, where DANE is not in force, as usual.
        let config = match &spec.dane {
            Some(_) => self.config(&TlsOptions {
                verify: false,
                ..spec.tls.clone()
            })?,
            None => self.config(&spec.tls)?,
        };
        let name = server_name(&spec.tls_name)?;
        // Boxed, handshake and stream: a rustls connection is several KiB,
        // and held inline it would size the future of every mail probe
        // (TLS or not) and so every idle target task (benches/capacity.rs).
        let connect = Box::pin(TlsConnector::from(config).connect(name, stream));
        let stream = match connect.await.map(Box::new) {
            Ok(stream) => stream,
            Err(e) => {
                // An expired certificate still tells its expiry: keep it for
                // pigeon_dns_cert_expiry_seconds (it goes negative).
                if let Some(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                    not_after,
                    ..
                })) = rustls_error(&e)
                {
                    progress.tls = Some(TlsInfo {
                        version: "-".to_owned(),
                        not_after: Some(unix_time(*not_after)),
                    });
                }
                return Err(handshake_failure(&e, &spec.tls_name));
            }
        };
        let conn = stream.get_ref().1;
        if let Some(dane) = &spec.dane {
            let chain = conn.peer_certificates().unwrap_or_default();
            let judged = dane::judge(dane, progress.tlsa.as_ref(), chain, UnixTime::now());
            if let Some(failure) = judged.failure {
                progress.defer(failure);
            } else if judged.pkix
                && spec.tls.verify
                && let Err(failure) = self.verify_chain(chain, spec)
            {
                progress.defer(failure);
            }
            progress.dane = Some(judged.outcome);
        }
        let info = session_info(conn);
        if let Err(failure) = check_lifetime(&spec.tls, &info, SystemTime::now()) {
            progress.defer(failure);
        }
        progress.tls = Some(info);
        Ok(stream)
    }

    /// The certificate checks of a TLS check (trust, name, dates) on a
    /// chain taken by a handshake that accepted any (a DANE target where
    /// DANE is not in force).
    fn verify_chain(&self, chain: &[CertificateDer<'_>], spec: &ProbeSpec) -> Result<(), Failure> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(Failure::new(
                ProbeResult::TlsError,
                "the server sent no certificate",
            ));
        };
        let name = server_name(&spec.tls_name)?;
        self.verifier(spec.tls.ca_file.as_deref())?
            .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| classify_for(&e, Some(&spec.tls_name)))
    }
}

/// Adds the certificates of a PEM file to `roots`.
fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), Failure> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Failure::new(
            ProbeResult::Error,
            format!("cannot read tls_ca_file {}: {e}", path.display()),
        )
    };
    let pem = std::fs::read(path).map_err(|e| unreadable(&e))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| unreadable(&e))?;
        roots.add(cert).map_err(|e| unreadable(&e))?;
        count += 1;
    }
    if count == 0 {
        return Err(unreadable(&"no PEM certificate in it"));
    }
    Ok(())
}

/// The name sent as SNI and verified, from `tls_name`.
fn server_name(name: &str) -> Result<ServerName<'static>, Failure> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        Failure::new(
            ProbeResult::Error,
            format!("invalid TLS name {}", super::failure::quote(name)),
        )
    })
}

/// What the probe reports about a session: its version and the leaf's notAfter.
pub(crate) fn session_info(conn: &ClientConnection) -> TlsInfo {
    let leaf = conn.peer_certificates().and_then(|chain| chain.first());
    TlsInfo {
        version: version_name(conn.protocol_version()),
        not_after: leaf.and_then(|der| not_after(der)),
    }
}

/// "TLSv1.3", as operators and OpenSSL write it.
pub(crate) fn version_name(version: Option<ProtocolVersion>) -> String {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    }
}

/// The notAfter of a DER certificate; `None` when it does not parse.
pub(crate) fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// `cert_min_days`: fails a certificate that expires too soon. Checked even
/// without verification, where it is the only check the certificate gets.
pub(crate) fn check_lifetime(
    opts: &TlsOptions,
    info: &TlsInfo,
    now: SystemTime,
) -> Result<(), Failure> {
    if opts.cert_min_days == 0 {
        return Ok(());
    }
    let Some(not_after) = info.not_after else {
        return Err(Failure::new(
            ProbeResult::TlsError,
            "certificate expiry date unreadable",
        ));
    };
    let min = Duration::from_secs(u64::from(opts.cert_min_days) * DAY);
    match not_after.duration_since(now) {
        Err(_) => Err(Failure::new(
            ProbeResult::TlsError,
            format!("certificate expired on {}", format_time(not_after)),
        )),
        Ok(left) if left < min => Err(Failure::new(
            ProbeResult::CertExpiring,
            format!(
                "certificate expires on {} (in {} days; cert_min_days is {})",
                format_time(not_after),
                left.as_secs() / DAY,
                opts.cert_min_days
            ),
        )),
        Ok(_) => Ok(()),
    }
}

/// The rustls error inside an I/O error, as tokio-rustls wraps it (maybe
/// wrapped again in another I/O error by a layer above).
pub(crate) fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    let inner = error.get_ref()?;
    if let Some(io_error) = inner.downcast_ref::<io::Error>() {
        return rustls_error(io_error);
    }
    inner.downcast_ref::<rustls::Error>()
}

/// A handshake that did not complete: every cause is a `tls_error`, even a
/// reset, since the TCP connection itself was accepted.
fn handshake_failure(error: &io::Error, name: &str) -> Failure {
    if let Some(tls_error) = rustls_error(error) {
        return classify_for(tls_error, Some(name));
    }
    let reason = match error.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed by the server".to_owned(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            "connection reset by the server".to_owned()
        }
        _ => error.to_string(),
    };
    Failure::new(ProbeResult::TlsError, format!("handshake failed: {reason}"))
}

/// Classifies a rustls error seen outside a handshake (no expected name known).
pub(crate) fn classify(error: &rustls::Error) -> Failure {
    classify_for(error, None)
}

/// Why a chain was rejected for `name`, in the words of the probe's TLS
/// failures: for judges of a chain other than the handshake (DANE-TA).
pub(crate) fn rejection_reason(error: &rustls::Error, name: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert_error) => certificate_reason(cert_error, Some(name)),
        other => other.to_string(),
    }
}

/// Classifies a rustls error into one distinct, actionable reason.
pub(crate) fn classify_for(error: &rustls::Error, name: Option<&str>) -> Failure {
    let detail = match error {
        rustls::Error::InvalidCertificate(cert_error) => certificate_reason(cert_error, name),
        rustls::Error::AlertReceived(alert) => {
            format!("handshake failed: the server sent alert {alert:?}")
        }
        other => format!("handshake failed: {other}"),
    };
    Failure::new(ProbeResult::TlsError, detail)
}

fn certificate_reason(error: &CertificateError, name: Option<&str>) -> String {
    match error {
        CertificateError::UnknownIssuer => "certificate not trusted (unknown issuer)".to_owned(),
        CertificateError::BadSignature => "certificate not trusted (bad signature)".to_owned(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate not valid for {} (it names {})",
            expected.to_str(),
            presented_names(presented)
        ),
        CertificateError::NotValidForName => {
            format!(
                "certificate not valid for {}",
                name.unwrap_or("the expected name")
            )
        }
        CertificateError::ExpiredContext { not_after, .. } => {
            format!(
                "certificate expired on {}",
                format_time(unix_time(*not_after))
            )
        }
        CertificateError::Expired => "certificate expired".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate not valid before {}",
            format_time(unix_time(*not_before))
        ),
        CertificateError::NotValidYet => "certificate not valid yet".to_owned(),
        CertificateError::Revoked => "certificate revoked".to_owned(),
        other => format!("certificate rejected: {other:?}"),
    }
}

/// The names of a certificate, a few at most.
fn presented_names(names: &[String]) -> String {
    let plain: Vec<&str> = names.iter().map(|n| plain_name(n)).collect();
    match plain.as_slice() {
        [] => "no name".to_owned(),
        [a, b, c, _, ..] => format!("{a}, {b}, {c} and {} more", plain.len() - 3),
        names => names.join(", "),
    }
}

/// webpki presents names in `Debug` form (`DnsName("mx.example.com")`):
/// the operator wants the name alone.
fn plain_name(name: &str) -> &str {
    name.split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(name)
}

fn unix_time(time: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.as_secs())
}

/// "2025-06-01 12:00:00 UTC": the date an operator compares with `openssl x509`.
pub(crate) fn format_time(time: SystemTime) -> String {
    let Ok(since_epoch) = time.duration_since(UNIX_EPOCH) else {
        return "a date before 1970".to_owned();
    };
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / DAY);
    let of_day = secs % DAY;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `tls_verify = false`: any certificate is accepted, but the handshake
/// signatures are still checked, so the session is real TLS with whoever
/// holds the presented certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    use super::*;
    use crate::config::CheckKind;
    use crate::probe::testkit::{Pki, serve, spec};
    use crate::probe::{ProbeOutcome, Prober};

    /// An imaps probe of a peer that reads the ClientHello, sends `answer`,
    /// then stalls forever or closes.
    async fn probe_peer(answer: &'static [u8], stall: bool) -> ProbeOutcome {
        let pki = Pki::new();
        let (addr, _server) = serve(move |mut stream| async move {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream.write_all(answer).await;
            if stall {
                std::future::pending::<()>().await;
            }
        })
        .await;
        let mut spec = spec(CheckKind::Imaps, addr);
        spec.tls = pki.options(0);
        Prober::new().probe(&spec).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_handshake_times_out() {
        let start = Instant::now();
        let outcome = probe_peer(b"", true).await;
        assert_eq!(outcome.result, ProbeResult::Timeout);
        assert_eq!(outcome.detail, "TLS handshake not finished within 5s");
        assert!(start.elapsed() <= Duration::from_millis(5050));
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_server_hello_times_out() {
        // A handshake record header announcing 512 bytes, then 3 of them.
        let outcome = probe_peer(&[0x16, 0x03, 0x03, 0x02, 0x00, 0x02, 0x00, 0x01], true).await;
        assert_eq!(outcome.result, ProbeResult::Timeout);
        assert_eq!(outcome.detail, "TLS handshake not finished within 5s");
    }

    #[tokio::test]
    async fn a_close_mid_handshake_fails() {
        let outcome = probe_peer(b"", false).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert_eq!(
            outcome.detail,
            "handshake failed: connection closed by the server"
        );
    }

    #[tokio::test]
    async fn clear_text_on_a_tls_port_fails() {
        let outcome = probe_peer(b"* OK IMAP ready, in clear text\r\n", false).await;
        assert_eq!(outcome.result, ProbeResult::TlsError);
        assert!(
            outcome.detail.starts_with("handshake failed: "),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn a_missing_ca_file_is_an_error() {
        let (addr, _server) = serve(|stream| async move { drop(stream) }).await;
        let mut spec = spec(CheckKind::Imaps, addr);
        spec.tls.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(outcome.result, ProbeResult::Error);
        assert!(
            outcome
                .detail
                .starts_with("cannot read tls_ca_file /nonexistent/ca.pem"),
            "{}",
            outcome.detail
        );
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(format_time(leap), "2000-02-29 12:34:56 UTC");
        let later = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
        assert_eq!(format_time(later), "2100-01-01 00:00:00 UTC");
    }

    fn options(min_days: u32) -> TlsOptions {
        TlsOptions {
            verify: true,
            name: None,
            ca_file: None,
            cert_min_days: min_days,
        }
    }

    fn info(not_after: SystemTime) -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3".to_owned(),
            not_after: Some(not_after),
        }
    }

    #[test]
    fn lifetime_is_checked_against_cert_min_days() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let soon = info(now + Duration::from_secs(3 * DAY));
        assert!(check_lifetime(&options(0), &soon, now).is_ok());
        assert!(check_lifetime(&options(2), &soon, now).is_ok());
        let failure = check_lifetime(&options(7), &soon, now).unwrap_err();
        assert_eq!(failure.result, ProbeResult::CertExpiring);
        assert!(failure.detail.contains("2023-11-17"), "{}", failure.detail);
        assert!(failure.detail.contains("in 3 days"), "{}", failure.detail);
        let past = info(now - Duration::from_secs(DAY));
        let failure = check_lifetime(&options(7), &past, now).unwrap_err();
        assert_eq!(failure.result, ProbeResult::TlsError);
        assert!(failure.detail.starts_with("certificate expired on"));
    }

    #[test]
    fn presented_names_are_plain() {
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            presented_names(&names(&["DnsName(\"a.test\")", "b.test"])),
            "a.test, b.test"
        );
        assert_eq!(
            presented_names(&names(&["a", "b", "c", "d", "e"])),
            "a, b, c and 2 more"
        );
        assert_eq!(presented_names(&[]), "no name");
    }

    #[test]
    fn certificate_errors_have_distinct_reasons() {
        let untrusted = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            classify(&untrusted).detail,
            "certificate not trusted (unknown issuer)"
        );
        let wrong = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(
            classify_for(&wrong, Some("mail.test")).detail,
            "certificate not valid for mail.test"
        );
    }
}
