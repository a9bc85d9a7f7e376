//! The DynamoDB client's HTTPS, for real: a TLS-terminating proxy in front of
//! the local DynamoDB, with a certificate from a test CA. Trusting that CA,
//! requests go through; trusting only the compiled-in roots, they are refused.

use std::collections::HashMap;
use std::sync::Arc;

use apikeys_platform::https::{https_client, https_client_trusting};
use apikeys_service::config::Config;
use apikeys_store::dynamodb_client_over;
use apikeys_tests::endpoint;
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A CA, and a server configuration for `localhost` with a certificate it signed.
fn test_ca() -> (rustls::RootCertStore, rustls::ServerConfig) {
    let (roots, server, _) = test_ca_with_pem();
    (roots, server)
}

/// [`test_ca`], with the CA certificate as PEM too.
fn test_ca_with_pem() -> (rustls::RootCertStore, rustls::ServerConfig, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let ca_pem = ca_cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server_cert.der().clone()], key)
    .unwrap();
    (roots, server, ca_pem)
}

/// A TLS-terminating proxy on 127.0.0.1 in front of the local DynamoDB. It
/// is a task of the test's runtime and ends with it.
async fn tls_proxy(server: rustls::ServerConfig) -> u16 {
    let upstream = endpoint().trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn client(port: u16, http: SharedHttpClient) -> aws_sdk_dynamodb::Client {
    let env = HashMap::from([
        ("TABLE_NAME".to_string(), "unused".to_string()),
        (
            "DYNAMODB_ENDPOINT".to_string(),
            format!("https://localhost:{port}"),
        ),
    ]);
    dynamodb_client_over(&Config::from_map(&env).unwrap().store, http).unwrap()
}

#[tokio::test]
async fn requests_go_over_tls_to_a_server_the_client_trusts() {
    let _turn = crate::ONE_AT_A_TIME.lock().await;
    let (roots, server) = test_ca();
    let port = tls_proxy(server).await;
    let client = client(port, https_client_trusting(roots));
    for _ in 0..3 {
        let out = client.list_tables().send().await;
        assert!(out.is_ok(), "{}", DisplayErrorContext(out.unwrap_err()));
    }
}

#[tokio::test]
async fn a_server_outside_the_compiled_in_roots_is_refused() {
    let _turn = crate::ONE_AT_A_TIME.lock().await;
    let (_, server) = test_ca();
    let port = tls_proxy(server).await;
    let http = { https_client().unwrap() };
    let err = client(port, http).list_tables().send().await.unwrap_err();
    let text = DisplayErrorContext(&err).to_string().to_lowercase();
    assert!(text.contains("certificate"), "{text}");
}

/// `AWS_CA_BUNDLE` (the AWS SDKs' variable) adds a private CA to the
/// compiled-in roots; a file without certificates is a configuration error
/// that names the variable. One test: the variable is the process's.
#[tokio::test]
async fn a_private_ca_named_by_aws_ca_bundle_is_trusted_and_a_bad_bundle_is_named() {
    let _turn = crate::ONE_AT_A_TIME.lock().await;
    let (_, server, ca_pem) = test_ca_with_pem();
    let port = tls_proxy(server).await;
    let dir = std::env::temp_dir().join(format!("apikeys-ca-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, ca_pem).unwrap();
    let (trusting, bad, missing) = {
        std::env::set_var("AWS_CA_BUNDLE", &bundle);
        let trusting = https_client();
        std::fs::write(&bundle, "not a certificate").unwrap();
        let bad = https_client().map(|_| ()).unwrap_err();
        std::env::set_var("AWS_CA_BUNDLE", dir.join("missing.pem"));
        let missing = https_client().map(|_| ()).unwrap_err();
        std::env::remove_var("AWS_CA_BUNDLE");
        (trusting, bad, missing)
    };
    std::fs::remove_dir_all(&dir).unwrap();

    let out = client(port, trusting.unwrap()).list_tables().send().await;
    assert!(out.is_ok(), "{}", DisplayErrorContext(out.unwrap_err()));
    for err in [bad, missing] {
        assert!(err.to_string().contains("AWS_CA_BUNDLE"), "{err}");
    }
}
