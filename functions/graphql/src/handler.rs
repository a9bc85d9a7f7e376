//! HTTP edge: routing, body and variables parsing, authentication, the
//! Prefect-compatible response envelope.

use std::sync::Arc;
use std::time::Instant;

use apikeys_shared::clock::{Clock, SystemClock};
use apikeys_shared::config::{Config, ConfigError};
use apikeys_shared::store::Store;
use apikeys_shared::{ApiKeys, Error};
use juniper::{InputValue, Variables};
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

use crate::schema::{schema, Context, Schema};

/// Largest request body accepted; any real GraphQL request is far smaller.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything built once per cold start and shared by every request.
pub struct App {
    service: Arc<ApiKeys>,
    schema: Schema,
    graphiql: bool,
}

impl App {
    pub fn new(service: ApiKeys) -> Self {
        let graphiql = service.config().graphiql;
        Self {
            service: Arc::new(service),
            schema: schema(graphiql),
            graphiql,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        Self::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let store = Store::from_config(&config)?;
        Ok(Self::new(ApiKeys::new(store, clock, config)))
    }

    pub fn service(&self) -> &ApiKeys {
        &self.service
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_body(message: &str, code: &str) -> Value {
    json!({"errors": [{"message": message, "extensions": {"code": code}}], "data": null})
}

/// A request that is not a GraphQL request at all: HTTP 400.
fn bad_request(message: &str) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, &error_body(message, "BAD_REQUEST"))
}

fn unauthenticated() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &error_body("Unauthenticated", "UNAUTHENTICATED"),
    )
}

/// The parts of a GraphQL-over-HTTP request body.
struct GraphQlRequest {
    query: String,
    operation_name: Option<String>,
    variables: Variables,
}

/// Parses the body; `Err` is the message of a 400 answer.
fn parse_body(bytes: &[u8]) -> Result<GraphQlRequest, &'static str> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| "request body is not valid JSON")?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err("batched requests are not supported: send one query per request")
        }
        _ => return Err("request body must be a JSON object with a \"query\" string"),
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) => query,
        _ => return Err("request body must be a JSON object with a \"query\" string"),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err("\"operationName\" must be a string"),
    };
    // The Prefect client sends `json.dumps(variables)`: a string, "null" when empty.
    let variables = match object.remove("variables") {
        Some(Value::String(text)) => {
            serde_json::from_str(&text).map_err(|_| "\"variables\" is a string but not JSON")?
        }
        Some(other) => other,
        None => Value::Null,
    };
    let variables = match variables {
        Value::Null => Variables::new(),
        Value::Object(map) => map
            .into_iter()
            .map(|(name, value)| {
                serde_json::from_value::<InputValue>(value)
                    .map(|v| (name, v))
                    .map_err(|_| "\"variables\" holds a value that is not valid GraphQL input")
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("\"variables\" must be an object, null, or a JSON string of one"),
    };
    Ok(GraphQlRequest {
        query,
        operation_name,
        variables,
    })
}

fn header_str<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

fn bearer(request: &Request) -> Option<&str> {
    let value = header_str(request, "authorization")?.trim();
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The request path without the API Gateway stage.
fn route_path(request: &Request) -> &str {
    match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    }
}

/// Handles one HTTP request. Never fails: every error becomes a response.
pub async fn handle(app: &App, request: Request) -> Response<Body> {
    let started = Instant::now();
    let path = route_path(&request).trim_end_matches('/').to_string();
    let response = match (request.method(), path.as_str()) {
        (&Method::POST, "" | "/graphql") => graphql(app, &request).await,
        (&Method::GET, "/graphql") if app.graphiql => {
            let mut response = Response::new(Body::Text(juniper::http::graphiql::graphiql_source(
                "/graphql", None,
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        (_, "" | "/graphql") => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &error_body("use POST with a JSON GraphQL request", "METHOD_NOT_ALLOWED"),
        ),
        _ => json_response(StatusCode::NOT_FOUND, &error_body("not found", "NOT_FOUND")),
    };
    tracing::info!(
        method = %request.method(),
        path = %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn graphql(app: &App, request: &Request) -> Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &error_body("request body is larger than 64 KiB", "BAD_REQUEST"),
        );
    }
    let parsed = match parse_body(body) {
        Ok(parsed) => parsed,
        Err(message) => return bad_request(message),
    };
    let principal = match app
        .service
        .authenticate(bearer(request), header_str(request, "x-prefect-tenant-id"))
        .await
    {
        Ok(principal) => principal,
        Err(Error::Unauthenticated) => return unauthenticated(),
        Err(other) => {
            let err = crate::schema::field_error(other);
            let body = json!({"errors": [{"message": err.message(),
                "extensions": {"code": "INTERNAL_SERVER_ERROR"}}], "data": null});
            return json_response(StatusCode::OK, &body);
        }
    };
    let context = Context {
        service: Arc::clone(&app.service),
        principal,
    };
    let result = juniper::execute(
        &parsed.query,
        parsed.operation_name.as_deref(),
        &app.schema,
        &parsed.variables,
        &context,
    )
    .await;
    let body = match result {
        Ok((data, errors)) if errors.is_empty() => json!({ "data": data }),
        Ok((data, errors)) => json!({ "data": data, "errors": errors }),
        Err(err) => {
            let message = err.to_string();
            json!({"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}],
                   "data": null})
        }
    };
    json_response(StatusCode::OK, &body)
}
