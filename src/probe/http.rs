//! The http and https checks, over reqwest.
//!
//! A check must reach one address, yet the server must see the pool's name:
//! in the Host header (virtual hosts) and, for https, in SNI and the
//! certificate check. So the URL names `tls_name` and the client resolves
//! that name to the probed address (`ClientBuilder::resolve`). Resolution is
//! per client, so https clients are cached per (trust, name, address); plain
//! http needs no name in the URL and shares one client. Host is always set
//! explicitly, so it is `http_host` whatever the URL says.

use std::collections::HashMap;
use std::error::Error as _;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use reqwest::header::{CONNECTION, HOST, HeaderValue, LOCATION};
use reqwest::{Client, Response};

use super::failure::{Failure, Progress, Step, quote};
use super::tls::{self, TlsContext, TlsKey};
use super::{ProbeResult, ProbeSpec, TlsInfo};
use crate::config::{CheckKind, TlsOptions};

/// Most body bytes read, to find `expect_body` and to end the exchange cleanly.
const BODY_MAX: usize = 64 * 1024;

/// Which client serves a check.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum ClientKey {
    Plain,
    Tls {
        trust: TlsKey,
        name: String,
        addr: SocketAddr,
    },
}

/// reqwest clients, built on first use and shared by every probe.
#[derive(Debug, Default)]
pub(crate) struct HttpClients {
    clients: Mutex<HashMap<ClientKey, Client>>,
}

impl HttpClients {
    /// The http and https checks: GET `path`; a 2xx or 3xx passes (redirects
    /// are reported, not followed), and the body must hold `expect_body`.
    pub(crate) async fn probe(
        &self,
        spec: &ProbeSpec,
        tls: &TlsContext,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let https = spec.check == CheckKind::Https;
        let client = self.client(spec, https, tls)?;
        let host = HeaderValue::from_str(&spec.http_host).map_err(|_| {
            Failure::new(
                ProbeResult::Error,
                format!("invalid HTTP host {}", quote(&spec.http_host)),
            )
        })?;
        progress.at(Step::HttpResponse);
        let mut response = client
            .get(url(spec, https))
            .header(HOST, host)
            .header(CONNECTION, "close")
            .send()
            .await
            .map_err(|e| request_failure(&e, spec))?;
        if https {
            record_tls(&response, spec, progress);
        }
        let status = status_line(&response);
        progress.at(Step::HttpBody);
        let body = read_body(&mut response)
            .await
            .map_err(|e| request_failure(&e, spec))?;
        let code = response.status();
        if !(code.is_success() || code.is_redirection()) {
            return Err(Failure::new(ProbeResult::HttpStatus, status));
        }
        if let Some(expected) = &spec.expect_body
            && !String::from_utf8_lossy(&body).contains(expected.as_str())
        {
            return Err(Failure::new(
                ProbeResult::HttpStatus,
                format!(
                    "body does not contain {} ({status}, {} bytes read)",
                    quote(expected),
                    body.len()
                ),
            ));
        }
        progress.pass(status);
        Ok(())
    }

    /// The client for this check, built once.
    fn client(&self, spec: &ProbeSpec, https: bool, tls: &TlsContext) -> Result<Client, Failure> {
        let key = if https {
            ClientKey::Tls {
                trust: TlsKey::of(&spec.tls),
                name: spec.tls_name.to_ascii_lowercase(),
                addr: spec.addr,
            }
        } else {
            ClientKey::Plain
        };
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = build_client(&key, spec, tls)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// A client that never pools, proxies nor follows: each probe is one fresh
/// connection to the probed address, as a user's first request would be.
fn build_client(key: &ClientKey, spec: &ProbeSpec, tls: &TlsContext) -> Result<Client, Failure> {
    // Plain http never starts TLS (no redirect is followed), but reqwest
    // wants a TLS config: give it one that trusts nothing in particular.
    let options = match key {
        ClientKey::Plain => TlsOptions {
            verify: false,
            name: None,
            ca_file: None,
            cert_min_days: 0,
        },
        ClientKey::Tls { .. } => spec.tls.clone(),
    };
    let config = tls.config(&options)?;
    let mut builder = Client::builder()
        .tls_backend_preconfigured((*config).clone())
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent(concat!("pigeon-dns/", env!("CARGO_PKG_VERSION")));
    if let ClientKey::Tls { name, addr, .. } = key {
        builder = builder.resolve(name, *addr);
    }
    builder.build().map_err(|e| {
        Failure::new(
            ProbeResult::Error,
            format!("cannot build the HTTP client: {}", error_chain(&e)),
        )
    })
}

/// The URL: the address itself for http, `tls_name` (resolved to the
/// address by the client) for https. A `tls_name` that is an IP address
/// cannot be resolved to another one, so then the address is used.
fn url(spec: &ProbeSpec, https: bool) -> String {
    let slash = if spec.path.starts_with('/') { "" } else { "/" };
    let port = spec.addr.port();
    let name_is_ip = spec.tls_name.parse::<std::net::IpAddr>().is_ok();
    if https && !name_is_ip {
        format!("https://{}:{port}{slash}{}", spec.tls_name, spec.path)
    } else {
        let scheme = if https { "https" } else { "http" };
        format!("{scheme}://{}{slash}{}", spec.addr, spec.path)
    }
}

/// "HTTP 302 Found -> /login": the status, and where a redirect points.
fn status_line(response: &Response) -> String {
    let status = format!("HTTP {}", response.status());
    match response.headers().get(LOCATION).map(|l| l.to_str()) {
        Some(Ok(location)) if response.status().is_redirection() => {
            format!("{status} -> {}", quote(location))
        }
        _ => status,
    }
}

/// Reads at most [`BODY_MAX`] bytes of the body.
async fn read_body(response: &mut Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < BODY_MAX {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = BODY_MAX - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

/// What the session told about TLS, and the certificate's lifetime check
/// (deferred like for mail checks, though here nothing follows).
fn record_tls(response: &Response, spec: &ProbeSpec, progress: &mut Progress) {
    let Some(session) = response.extensions().get::<reqwest::tls::TlsInfo>() else {
        return;
    };
    let version = session.version().map(|v| match v {
        reqwest::tls::Version::TLS_1_3 => "TLSv1.3".to_owned(),
        reqwest::tls::Version::TLS_1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    });
    let info = TlsInfo {
        version: version.unwrap_or_else(|| "unknown".to_owned()),
        not_after: session.peer_certificate().and_then(tls::not_after),
    };
    if let Err(failure) = tls::check_lifetime(&spec.tls, &info, SystemTime::now()) {
        progress.defer(failure);
    }
    progress.tls = Some(info);
}

/// Classifies a failed request from its cause: TLS, refused or reset
/// connection, or else a connection or protocol error.
fn request_failure(error: &reqwest::Error, spec: &ProbeSpec) -> Failure {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(failure) = classify_cause(current, spec, error.is_connect()) {
            return failure;
        }
        cause = next_cause(current);
    }
    let chain = error_chain(error);
    if error.is_connect() {
        Failure::new(ProbeResult::Error, format!("connection failed: {chain}"))
    } else {
        Failure::new(
            ProbeResult::BadGreeting,
            format!("no valid HTTP response: {chain}"),
        )
    }
}

/// The error below `error`. An `io::Error`'s `source()` skips the error it
/// wraps (it returns that error's source), which is where tokio-rustls puts
/// the rustls error: descend into it instead.
fn next_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match error.downcast_ref::<io::Error>() {
        Some(io_error) => io_error
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => error.source(),
    }
}

/// `connecting`: the request failed before a connection was established,
/// where an end of stream can only be the server hanging up on the handshake.
fn classify_cause(
    cause: &(dyn std::error::Error + 'static),
    spec: &ProbeSpec,
    connecting: bool,
) -> Option<Failure> {
    if let Some(tls_error) = cause.downcast_ref::<rustls::Error>() {
        return Some(tls::classify_for(tls_error, Some(&spec.tls_name)));
    }
    let io_error = cause.downcast_ref::<io::Error>()?;
    if io_error.get_ref().is_some() {
        // Its kind describes a wrapper; the wrapped error is looked at next.
        return None;
    }
    match io_error.kind() {
        io::ErrorKind::ConnectionRefused => {
            Some(Failure::new(ProbeResult::Refused, "connection refused"))
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Some(Failure::new(
            ProbeResult::Refused,
            "connection reset while waiting for the HTTP response",
        )),
        io::ErrorKind::UnexpectedEof if connecting => Some(Failure::new(
            ProbeResult::TlsError,
            "handshake failed: connection closed by the server",
        )),
        _ => None,
    }
}

/// "error sending request for url (...): client error (Connect): ...": each
/// cause once (wrappers often repeat their source's message).
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(current) = cause {
        let text = current.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        cause = next_cause(current);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::probe::testkit::{NAME, Pki, accept_tls, closed_port, serve, spec};
    use crate::probe::{ProbeOutcome, Prober};

    /// What the tiny server received.
    #[derive(Debug, Default)]
    struct Request {
        line: String,
        host: Option<String>,
        /// The SNI of an https request.
        sni: Option<String>,
    }

    /// Reads a request head, sends `response`, closes.
    async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, response: &str) -> Request {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.lines();
        let line = lines.next().unwrap_or("").to_owned();
        let host = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| value.trim().to_owned());
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        Request {
            line,
            host,
            sni: None,
        }
    }

    fn response(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    async fn probe_http(
        spec_for: impl FnOnce(SocketAddr) -> ProbeSpec,
        response: String,
    ) -> (ProbeOutcome, Request) {
        let (addr, server) =
            serve(move |stream| async move { respond(stream, &response).await }).await;
        let outcome = Prober::new().probe(&spec_for(addr)).await;
        (outcome, server.await.unwrap())
    }

    fn http(addr: SocketAddr) -> ProbeSpec {
        spec(CheckKind::Http, addr)
    }

    #[tokio::test]
    async fn ok_status_passes_and_host_is_the_pools_name() {
        let (outcome, request) = probe_http(
            |addr| ProbeSpec {
                path: "/login".to_owned(),
                ..http(addr)
            },
            response("200 OK", "", "hello"),
        )
        .await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(outcome.detail, "HTTP 200 OK");
        assert!(outcome.tls.is_none());
        assert_eq!(request.line, "GET /login HTTP/1.1");
        assert_eq!(request.host.as_deref(), Some("webmail.test"));
    }

    #[tokio::test]
    async fn redirect_passes_unfollowed() {
        let (outcome, _) =
            probe_http(http, response("302 Found", "Location: /SOGo/\r\n", "")).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(outcome.detail, "HTTP 302 Found -> \"/SOGo/\"");
    }

    #[tokio::test]
    async fn server_error_fails() {
        let (outcome, _) =
            probe_http(http, response("500 Internal Server Error", "", "oops")).await;
        assert_eq!(outcome.result, ProbeResult::HttpStatus);
        assert_eq!(outcome.detail, "HTTP 500 Internal Server Error");
    }

    #[tokio::test]
    async fn expected_body_is_searched() {
        let with_body = |addr| ProbeSpec {
            expect_body: Some("Roundcube".to_owned()),
            ..http(addr)
        };
        let page = "<title>Roundcube Webmail</title>";
        let (outcome, _) = probe_http(with_body, response("200 OK", "", page)).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        let (outcome, _) = probe_http(with_body, response("200 OK", "", "It works!")).await;
        assert_eq!(outcome.result, ProbeResult::HttpStatus);
        assert_eq!(
            outcome.detail,
            "body does not contain \"Roundcube\" (HTTP 200 OK, 9 bytes read)"
        );
    }

    #[tokio::test]
    async fn garbage_is_not_a_response() {
        let (outcome, _) = probe_http(http, "SSH-2.0-OpenSSH_9.6\r\n".to_owned()).await;
        assert_eq!(outcome.result, ProbeResult::BadGreeting);
        assert!(
            outcome.detail.starts_with("no valid HTTP response: "),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn refused_connection() {
        let outcome = Prober::new().probe(&http(closed_port().await)).await;
        assert_eq!(outcome.result, ProbeResult::Refused, "{}", outcome.detail);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_server_times_out() {
        let (addr, _server) = serve(|stream: TcpStream| async move {
            std::future::pending::<()>().await;
            drop(stream);
        })
        .await;
        let outcome = Prober::new().probe(&http(addr)).await;
        assert_eq!(outcome.result, ProbeResult::Timeout);
        assert_eq!(outcome.detail, "no HTTP response within 5s");
    }

    async fn probe_https(config: Arc<rustls::ServerConfig>, pki: &Pki) -> (ProbeOutcome, Request) {
        let (addr, server) = serve(move |stream| async move {
            let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
                return Request::default();
            };
            let sni = stream.get_ref().1.server_name().map(str::to_owned);
            let request = respond(stream, &response("200 OK", "", "hi")).await;
            Request { sni, ..request }
        })
        .await;
        let mut spec = spec(CheckKind::Https, addr);
        spec.tls = pki.options(0);
        let outcome = Prober::new().probe(&spec).await;
        (outcome, server.await.unwrap())
    }

    #[tokio::test]
    async fn https_sends_the_tls_name_and_the_host() {
        let pki = Pki::new();
        let (outcome, request) = probe_https(pki.valid(), &pki).await;
        assert_eq!(outcome.result, ProbeResult::Ok, "{}", outcome.detail);
        assert_eq!(request.sni.as_deref(), Some(NAME));
        assert_eq!(request.host.as_deref(), Some("webmail.test"));
        let tls = outcome.tls.expect("TLS info");
        assert_eq!(tls.version, "TLSv1.3");
        assert!(tls.not_after.is_some());
    }

    #[tokio::test]
    async fn https_certificate_for_another_name_fails() {
        let pki = Pki::new();
        let (outcome, _) = probe_https(pki.server("other.test", -1, 30), &pki).await;
        assert_eq!(outcome.result, ProbeResult::TlsError, "{}", outcome.detail);
        assert_eq!(
            outcome.detail,
            format!("certificate not valid for {NAME} (it names other.test)")
        );
    }

    #[tokio::test]
    async fn https_expiring_certificate_fails() {
        let pki = Pki::new();
        let config = pki.server(NAME, -1, 3);
        let (addr, _server) = serve(move |stream| async move {
            respond(
                accept_tls(config, stream).await,
                &response("200 OK", "", ""),
            )
            .await
        })
        .await;
        let mut spec = spec(CheckKind::Https, addr);
        spec.tls = pki.options(7);
        let outcome = Prober::new().probe(&spec).await;
        assert_eq!(
            outcome.result,
            ProbeResult::CertExpiring,
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.starts_with("certificate expires on"));
    }
}
