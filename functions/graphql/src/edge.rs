//! What every route shares at the HTTP edge: JSON answers no browser may
//! render or cache, request errors and content negotiation, the headers a
//! request is read by (the credential, the tenant), where it came from,
//! and when its answer is due.

use std::time::{Duration, Instant, SystemTime};

use apikeys_core::token::{bearer_token, TokenHash};
use apikeys_service::Error;
use apikeys_service::Refusal;
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

use crate::app::App;

/// Largest request body accepted; any real GraphQL request is far smaller.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every answer is JSON that no browser may render, frame or sniff as a page.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    // An answer may hold a new secret, and every one is the caller's own:
    // no cache (browser, proxy, CDN) may keep it.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

pub(crate) fn error_body(message: &str, code: &str) -> Value {
    json!({"errors": [{"message": message, "extensions": {"code": code}}], "data": null})
}

/// A request that is not a GraphQL request at all: HTTP 400.
pub(crate) fn bad_request(message: &str) -> Response<Body> {
    request_error(StatusCode::BAD_REQUEST, &error_body(message, "BAD_REQUEST"))
}

/// Marks an answer to a request that was not executed at all (the body,
/// the document's syntax, its validation, its variables, its cost): a
/// client that accepts `application/graphql-response+json` gets it as HTTP
/// 400 with no `data` entry (see [`negotiated`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestError;

pub(crate) fn request_error(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = json_response(status, body);
    response.extensions_mut().insert(RequestError);
    response
}

/// Whether a request's `Content-Type` says JSON (`application/json`, any
/// `+json` type) or curl's default for `-d`.
pub(crate) fn json_body(content_type: Option<&str>) -> bool {
    let media = content_type
        .and_then(|t| t.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json"
        || (media.starts_with("application/")
            && media.ends_with("+json")
            && media.len() > "application/+json".len())
        || media == "application/x-www-form-urlencoded"
}

/// The GraphQL-over-HTTP media type a client asks for first in `Accept`.
pub(crate) const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Whether the client prefers `application/graphql-response+json`: its
/// quality in `Accept` (every `Accept` line) is above zero and at least
/// that of `application/json` or a wildcard. The Prefect client asks for
/// `application/json` and keeps today's answers.
pub(crate) fn wants_graphql_response(request: &Request) -> bool {
    let (mut graphql, mut json) = (0.0f32, 0.0f32);
    let lines = request.headers().get_all(header::ACCEPT);
    for part in lines
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == GRAPHQL_RESPONSE {
            graphql = graphql.max(quality);
        } else if ["application/json", "*/*", "application/*"].contains(&media.as_str()) {
            json = json.max(quality);
        }
    }
    graphql > 0.0 && graphql >= json
}

/// An answer in the media type the client asked for: for
/// `application/graphql-response+json`, that content type, and a request
/// that was not executed is HTTP 400 without `data`.
pub(crate) fn negotiated(mut response: Response<Body>, graphql_response: bool) -> Response<Body> {
    if !graphql_response {
        return response;
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(GRAPHQL_RESPONSE),
    );
    if response.extensions().get::<RequestError>().is_none() {
        return response;
    }
    // A request error answered 200 for application/json is 400 here; 413
    // and 415 keep their status. Either way there is no `data`.
    let mut body: Value = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    if let Some(object) = body.as_object_mut() {
        object.remove("data");
    }
    *response.body_mut() = Body::Text(body.to_string());
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// UNAUTHENTICATED at HTTP 200 (what the Prefect client turns into its
/// login message), with the reason in `extensions.reason`.
pub(crate) fn unauthenticated(reason: Refusal) -> Response<Body> {
    let message = reason.advice().map_or_else(
        || "Unauthenticated".to_string(),
        |advice| format!("Unauthenticated: {advice}"),
    );
    json_response(
        StatusCode::OK,
        &json!({"errors": [{"message": message, "extensions": {
            "code": "UNAUTHENTICATED", "reason": reason.code()}}], "data": null}),
    )
}

/// A service error as one GraphQL error object, extensions and all (the
/// same mapping as a resolver's).
pub(crate) fn field_error_json(err: &Error) -> Value {
    let error = crate::schema::field_error(err.clone());
    json!({"message": error.message(), "extensions": juniper_value(error.extensions())})
}

/// A juniper value (an error's extensions) as JSON.
pub(crate) fn juniper_value(value: &juniper::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub(crate) fn header_str<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The key presented; none when `Authorization` is sent more than once
/// (which line a gateway or an authorizer in front reads is not ours to
/// guess: such a request authenticates as nobody).
pub(crate) fn bearer(request: &Request) -> Option<&str> {
    bearer_token(authorization(request)?)
}

/// A person's session presented as `Authorization: Session <token>` (the
/// scheme in any case): never as a bearer, which is what API-key clients
/// (the Prefect CLI among them) send.
pub(crate) fn session_token(request: &Request) -> Option<&str> {
    let (scheme, token) = authorization(request)?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("session").then(|| token.trim())
}

/// What a request authenticates with.
pub(crate) enum Credential<'a> {
    /// An API key, checked and hashed.
    Key(TokenHash),
    /// A session's access token (checked by the service).
    Session(&'a str),
}

/// The `Authorization` header; none when it is sent more than once (which
/// line counts cannot be told).
pub(crate) fn authorization(request: &Request) -> Option<&str> {
    let mut lines = request.headers().get_all(header::AUTHORIZATION).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The request path without the API Gateway stage.
pub(crate) fn route_path(request: &Request) -> &str {
    match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    }
}

/// Time kept back from the function's deadline to send the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// When the answer must be ready: the Lambda invocation's deadline, or the
/// configured request time (the dev server, tests), less [`ANSWER_MARGIN`].
pub(crate) fn deadline_of(app: &App, request: &Request) -> Instant {
    let now = Instant::now();
    let left = request
        .lambda_context_ref()
        .filter(|context| context.deadline != 0)
        .map(|context| {
            context
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
        .unwrap_or(app.service.config().request_timeout);
    now.checked_add(left.saturating_sub(ANSWER_MARGIN))
        .unwrap_or(now)
}

/// The caller's address as API Gateway saw it (the REST API's
/// `identity.sourceIp`, the HTTP API's `http.sourceIp`), never a header the
/// client sets (`X-Forwarded-For` is not read). A `/32`-style suffix (as
/// `sam local generate-event` writes) is dropped. `None` elsewhere (the
/// dev server).
pub(crate) fn source_ip(request: &Request) -> Option<std::net::IpAddr> {
    use lambda_http::request::RequestContext;
    let text = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.clone(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    apikeys_core::domain::parse_source_ip(&text)
}

/// A 503 tells the client when to try again.
pub(crate) fn with_retry_after(mut response: Response<Body>) -> Response<Body> {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}
