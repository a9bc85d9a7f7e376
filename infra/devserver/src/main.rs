//! Local HTTP server for development: serves the GraphQL Lambda's own handler
//! (lambda_http Request/Response) on 127.0.0.1, without Docker.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use apikeys_graphql::{handle, App};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use tokio::net::TcpListener;

/// API Gateway's own payload limit: larger bodies never reach the Lambda.
const GATEWAY_LIMIT: usize = 10 * 1024 * 1024;

async fn serve(
    app: Arc<App>,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, GATEWAY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(
                br#"{"message":"Request Too Long"}"#,
            )));
            *response.status_mut() = hyper::StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
    };
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.to_vec())
    };
    // The caller's address, where API Gateway would put it (an HTTP API's
    // `requestContext.http.sourceIp`): what network-limited keys are
    // checked against.
    let mut context =
        lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
    context.http.source_ip = Some(peer.ip().to_string());
    let request = lambda_http::RequestExt::with_request_context(
        lambda_http::Request::from_parts(parts, body),
        lambda_http::request::RequestContext::ApiGatewayV2(context),
    );
    let response = handle(&app, request).await;
    let (parts, body) = response.into_parts();
    hyper::Response::from_parts(parts, Full::new(Bytes::from(body.to_vec())))
}

#[tokio::main]
async fn main() -> Result<()> {
    apikeys_platform::logging::init();
    let addr: SocketAddr = std::env::var("LISTEN_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:4000".into())
        .parse()
        .context("LISTEN_ADDR must be host:port")?;
    let app = Arc::new(App::from_env()?);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "apikeys GraphQL endpoint on http://{}/graphql",
        listener.local_addr()?
    );
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let app = Arc::clone(&app);
                async move { Ok::<_, Infallible>(serve(app, peer, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
