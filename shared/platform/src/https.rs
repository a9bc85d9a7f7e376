//! HTTPS for the DynamoDB client: hyper with rustls (ring), trusting Mozilla's
//! root certificates compiled into the binary (webpki-roots).
//!
//! The SDK's default client loads every root certificate of the system when
//! it is built (the bundle and each file of /etc/ssl/certs): measured, that was
//! more than half of a function's init. Here nothing is read or parsed from
//! disk; the trust anchors are static data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::connect::{capture_connection, HttpConnector as TcpConnector};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::settings::ConfigError;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

type Pool = Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>;

/// Connect and read timeouts: the settings a connector is built for.
type Timeouts = (Option<Duration>, Option<Duration>);

/// How long an idle connection is kept for reuse (as the SDK's own client).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The SDK HTTP client used by every apikeys binary: Mozilla's roots, and
/// also the certificates of the PEM file that `AWS_CA_BUNDLE` (the AWS SDKs'
/// own variable) names, for an endpoint behind a private CA. Only then is
/// anything read from disk.
pub fn https_client() -> Result<SharedHttpClient, ConfigError> {
    Ok(https_client_trusting(trust_anchors()?))
}

/// Mozilla's roots, and the certificates of the PEM file `AWS_CA_BUNDLE`
/// names (read only then): what every HTTPS client of apikeys trusts.
fn trust_anchors() -> Result<rustls::RootCertStore, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(bundle) = std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
        let bad = |why: String| {
            ConfigError::new(format!(
                "AWS_CA_BUNDLE ({}): {why}",
                std::path::Path::new(&bundle).display()
            ))
        };
        let certificates = CertificateDer::pem_file_iter(&bundle)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certificates.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// TLS 1.2 and 1.3 with ring, trusting `roots`.
#[allow(clippy::expect_used)] // a constant configuration, checked by every test
fn tls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        // A fixed configuration that ring always supports; no input reaches it.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The same client trusting `roots` instead (tests use their own CA).
pub fn https_client_trusting(roots: rustls::RootCertStore) -> SharedHttpClient {
    SharedHttpClient::new(RustlsClient {
        tls: Arc::new(tls_config(roots)),
        connectors: Mutex::default(),
    })
}

/// Hands the SDK one pooled connector per timeout setting.
#[derive(Debug)]
struct RustlsClient {
    tls: Arc<rustls::ClientConfig>,
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for RustlsClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key: Timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| {
                let mut tcp = TcpConnector::new();
                tcp.enforce_http(false);
                tcp.set_nodelay(true);
                tcp.set_connect_timeout(key.0);
                // http: only for a local DynamoDB endpoint override.
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*self.tls).clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(tcp);
                let pool = Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(IDLE_TIMEOUT)
                    .build(https);
                SharedHttpConnector::new(RustlsConnector {
                    pool,
                    read_timeout: key.1,
                })
            })
            .clone()
    }
}

#[derive(Debug)]
struct RustlsConnector {
    pool: Pool,
    read_timeout: Option<Duration>,
}

impl HttpConnector for RustlsConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        // Tell the SDK which connection carries this request, so that after a
        // transient error (a 5xx, a throttle, a broken answer) it can poison
        // the connection and the pool never hands it out again.
        if let Some(capture) = request
            .extensions()
            .get::<CaptureSmithyConnection>()
            .cloned()
        {
            let captured = Arc::new(capture_connection(&mut request));
            capture.set_connection_retriever(move || {
                let proxied = captured.connection_metadata().as_ref()?.is_proxied();
                let connection = Arc::clone(&captured);
                Some(
                    ConnectionMetadata::builder()
                        .proxied(proxied)
                        .poison_fn(move || {
                            if let Some(connected) = connection.connection_metadata().as_ref() {
                                connected.poison();
                            }
                        })
                        .build(),
                )
            });
        }
        let (pool, read_timeout) = (self.pool.clone(), self.read_timeout);
        HttpConnectorFuture::new(async move {
            let sent = pool.request(request);
            let answered = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
                    ConnectorError::timeout(format!("no response within {limit:?}").into())
                })?,
                None => sent.await,
            };
            // Connection failures and dropped connections: the SDK retries these.
            let response = answered.map_err(|e| ConnectorError::io(e.into()))?;
            let (parts, body) = response.into_parts();
            let response = hyper::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// A plain HTTPS GET client for small public documents (a key set): the
/// same trust anchors as the SDK's client (`http://` only for a local
/// stand-in), a time limit and a size limit on every answer.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: Client<
        hyper_rustls::HttpsConnector<TcpConnector>,
        http_body_util::Empty<hyper::body::Bytes>,
    >,
}

/// Is `url` one a trusted document may point at: `https://`, or `http://`
/// on this machine's loopback (local development, an emulator)?
pub fn is_https_or_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// Why a fetch gave no document.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Failed(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

impl Fetcher {
    pub fn new() -> Result<Self, ConfigError> {
        let tls = tls_config(trust_anchors()?);
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(2)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(https);
        Ok(Self { client })
    }

    /// GETs `url`: its body, at most `max_bytes`, within `limit`.
    pub async fn get(
        &self,
        url: &str,
        limit: Duration,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError> {
        use http_body_util::BodyExt;
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| FetchError::Failed(format!("bad URL: {e}")))?;
        let request = hyper::Request::get(uri)
            .header(hyper::header::USER_AGENT, "apikeys")
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::new())
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let limited = http_body_util::Limited::new(response.into_body(), max_bytes);
            let body = limited.collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max_bytes)
                } else {
                    FetchError::Failed(e.to_string())
                }
            })?;
            Ok(body.to_bytes().to_vec())
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| FetchError::TimedOut(limit))?
    }
}

#[cfg(test)]
mod tests {
    use super::is_https_or_loopback;

    #[test]
    fn documents_point_only_at_https_or_this_machine() {
        for good in [
            "https://idp.example/jwks",
            "http://127.0.0.1:4566/pool/.well-known/jwks.json",
            "http://localhost:8080/k",
            "http://[::1]:9/k",
        ] {
            assert!(is_https_or_loopback(good), "{good}");
        }
        for bad in [
            "http://idp.example/jwks",
            "http://10.0.0.1/k",
            "http://127.0.0.1.evil.example/k",
            "ftp://idp.example/k",
            "file:///etc/passwd",
            "//idp.example/k",
            "not a url",
            "",
        ] {
            assert!(!is_https_or_loopback(bad), "{bad}");
        }
    }
}
