//! HTTP edge: routing, body and variables parsing, authentication, the
//! Prefect-compatible response envelope.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use apikeys_core::clock::SystemClock;
use apikeys_core::domain::{AccountType, Role, Tenant};
use apikeys_core::principal::Principal;
use apikeys_core::token::{bearer_token, is_legacy_token, NewKey, TokenHash, LEGACY_TOKEN_MESSAGE};
use apikeys_service::config::{Config, ConfigError};
use apikeys_service::ApiKeys;
use apikeys_service::Error;
use apikeys_service::{verify, Api, Authenticated, Refusal, Verdict};
use juniper::parser::{parse_document_source, ParseError};
use juniper::{
    EmptySubscription, GraphQLError, InputValue, OperationType, ValidatedOperation, Variables,
};
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

use crate::console;
use crate::cost::{self, TooComplex};
use crate::schema::{
    error_code_and_message, schema, Caller, Context, Mutation, Query, Schema, RATE_LIMITED,
    SERVICE_UNAVAILABLE,
};

/// Largest request body accepted; any real GraphQL request is far smaller.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the GraphQL function reads of the environment beyond the
/// service's settings: introspection, and its own entrances (sign-in with
/// an identity provider, secret scanning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Allow schema introspection (`ENABLE_INTROSPECTION`, default false;
    /// `ENABLE_GRAPHIQL`, its former name, is still read).
    pub introspection: bool,
    /// The identity provider people sign in with; unset: keys only.
    pub oidc: Option<apikeys_idp::oidc::OidcSettings>,
    pub scanning: apikeys_idp::github::ScanningSettings,
}

impl Settings {
    pub fn from_env(env: &apikeys_platform::Env) -> Result<Self, ConfigError> {
        Ok(Self {
            introspection: env.switch("ENABLE_INTROSPECTION", false)?
                || env.switch("ENABLE_GRAPHIQL", false)?,
            oidc: apikeys_idp::oidc::OidcSettings::from_env(env)?,
            scanning: apikeys_idp::github::ScanningSettings::from_env(env),
        })
    }
}

/// Everything built once per cold start and shared by every request.
pub struct App {
    service: Arc<ApiKeys>,
    settings: Settings,
    schema: Schema,
    /// GitHub's secret scanning keys: their client built, and the keys
    /// fetched, when a report first needs them (never at cold start).
    github_keys: std::sync::OnceLock<Option<apikeys_idp::github::GithubKeys>>,
    /// The identity provider's ID-token verifier: built, and its keys
    /// fetched, when a sign-in first needs them (never at cold start).
    verifier: std::sync::OnceLock<Option<Arc<apikeys_idp::oidc::IdTokenVerifier>>>,
}

impl App {
    pub fn new(service: ApiKeys, settings: Settings) -> Self {
        Self {
            service: Arc::new(service),
            schema: schema(settings.introspection),
            settings,
            github_keys: std::sync::OnceLock::new(),
            verifier: std::sync::OnceLock::new(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let env = apikeys_platform::Env::from_process();
        let config = Config::from_env()?;
        let service = ApiKeys::from_config(config, Arc::new(SystemClock))?;
        Ok(Self::new(service, Settings::from_env(&env)?))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn service(&self) -> &ApiKeys {
        &self.service
    }

    /// The ID-token verifier, when an identity provider is configured
    /// (with a client id from the API Gateway stage variable the
    /// configuration names, read from the first request that needs it).
    fn verifier(&self, request: &Request) -> Option<Arc<apikeys_idp::oidc::IdTokenVerifier>> {
        if let Some(built) = self.verifier.get() {
            return built.clone();
        }
        let mut settings = self.settings.oidc.clone()?;
        if let Some(name) = &settings.client_stage_variable {
            let from_stage = request
                .stage_variables_ref()
                .and_then(|variables| variables.first(name))
                .filter(|c| !c.is_empty() && c.len() <= 256);
            let Some(client) = from_stage else {
                // Not remembered: a request of the stage that has it may come.
                tracing::error!(
                    variable = %name,
                    "the stage variable that holds the client id is missing: no sign-in"
                );
                return None;
            };
            settings.client_id = client.to_string();
        }
        let built = match apikeys_idp::oidc::IdTokenVerifier::new(settings) {
            Ok(verifier) => Some(Arc::new(verifier)),
            Err(e) => {
                tracing::error!(error = %e, "identity provider not usable: sign-in off");
                None
            }
        };
        self.verifier.get_or_init(|| built).clone()
    }

    /// What init does beyond building, unless configured not to: one request
    /// through the whole edge with a well-formed key nobody holds (the event,
    /// parsing, the cost check, the hash lookup, which opens the DynamoDB
    /// connection, TCP and TLS, and the answer), then one GraphQL execution,
    /// so the first real request runs on warm code and a warm connection.
    /// Costs one strongly consistent GetItem of an item that does not exist
    /// per cold start; bounded by two seconds, never fatal.
    pub async fn warm_up(&self) {
        if !self.service.config().warm_connection {
            return;
        }
        // An API Gateway event, parsed the way the runtime parses the real
        // ones, so that code is warm too.
        let key = NewKey::generate(&self.service.config().user_key_prefix);
        let event = WARM_UP_EVENT.replace("KEY", key.expose_secret());
        if let Ok(request) = lambda_http::request::from_str(&event) {
            let answered =
                tokio::time::timeout(Duration::from_secs(2), handle(self, request)).await;
            if answered.is_err() {
                tracing::warn!("the warm-up request took over two seconds");
            }
        }
        let context = Context::new(
            Arc::clone(&self.service),
            Caller::Member(Box::new(warm_up_principal())),
            None,
        );
        let _ = juniper::execute(
            "{ hello auth_info { role permissions } }",
            None,
            &self.schema,
            &Variables::new(),
            &context,
        )
        .await;
    }
}

/// A REST API event for the warm-up request; `KEY` is replaced by a key.
const WARM_UP_EVENT: &str = include_str!("warm_up_event.json");

/// A caller that exists nowhere, for executing a query that reads nothing.
fn warm_up_principal() -> Principal {
    let nil = uuid::Uuid::nil();
    Principal {
        user_id: nil,
        tenant_id: nil,
        api_key_id: nil,
        username: String::new(),
        account_type: AccountType::User,
        role: Role::ReadOnlyUser,
        membership_id: nil,
        email: None,
        tenant: Tenant {
            id: nil,
            name: String::new(),
            slug: String::new(),
            created: time::OffsetDateTime::UNIX_EPOCH,
        },
        key_last_used: None,
        key_replaced: false,
        key_ceiling: None,
        key_networks: Vec::new(),
        key_scopes: Vec::new(),
        key_created: None,
        key_expires_at: None,
        policy: apikeys_core::policy::KeyPolicy::default(),
        session: None,
    }
}

/// Every answer is JSON that no browser may render, frame or sniff as a page.
fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
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

fn error_body(message: &str, code: &str) -> Value {
    json!({"errors": [{"message": message, "extensions": {"code": code}}], "data": null})
}

/// A request that is not a GraphQL request at all: HTTP 400.
fn bad_request(message: &str) -> Response<Body> {
    request_error(StatusCode::BAD_REQUEST, &error_body(message, "BAD_REQUEST"))
}

/// Marks an answer to a request that was not executed at all (the body,
/// the document's syntax, its validation, its variables, its cost): a
/// client that accepts `application/graphql-response+json` gets it as HTTP
/// 400 with no `data` entry (see [`negotiated`]).
#[derive(Clone, Copy, Debug)]
struct RequestError;

fn request_error(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = json_response(status, body);
    response.extensions_mut().insert(RequestError);
    response
}

/// Whether a request's `Content-Type` says JSON (`application/json`, any
/// `+json` type) or curl's default for `-d`.
fn json_body(content_type: Option<&str>) -> bool {
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
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Whether the client prefers `application/graphql-response+json`: its
/// quality in `Accept` (every `Accept` line) is above zero and at least
/// that of `application/json` or a wildcard. The Prefect client asks for
/// `application/json` and keeps today's answers.
fn wants_graphql_response(request: &Request) -> bool {
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
fn negotiated(mut response: Response<Body>, graphql_response: bool) -> Response<Body> {
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
fn unauthenticated(reason: Refusal) -> Response<Body> {
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
fn field_error_json(err: &Error) -> Value {
    let error = crate::schema::field_error(err.clone());
    json!({"message": error.message(), "extensions": juniper_value(error.extensions())})
}

/// A juniper value (an error's extensions) as JSON.
fn juniper_value(value: &juniper::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
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

/// The key presented; none when `Authorization` is sent more than once
/// (which line a gateway or an authorizer in front reads is not ours to
/// guess: such a request authenticates as nobody).
fn bearer(request: &Request) -> Option<&str> {
    bearer_token(authorization(request)?)
}

/// A person's session presented as `Authorization: Session <token>` (the
/// scheme in any case): never as a bearer, which is what API-key clients
/// (the Prefect CLI among them) send.
fn session_token(request: &Request) -> Option<&str> {
    let (scheme, token) = authorization(request)?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("session").then(|| token.trim())
}

/// What a request authenticates with.
enum Credential<'a> {
    /// An API key, checked and hashed.
    Key(TokenHash),
    /// A session's access token (checked by the service).
    Session(&'a str),
}

/// The `Authorization` header; none when it is sent more than once (which
/// line counts cannot be told).
fn authorization(request: &Request) -> Option<&str> {
    let mut lines = request.headers().get_all(header::AUTHORIZATION).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    first.to_str().ok()
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
        (&Method::POST, "/secret-scanning/github") => github_report(app, &request).await,
        (&Method::GET, "/secret-scanning/gitlab/v1/revocable_token_types") => {
            gitlab_types(app, &request)
        }
        (&Method::POST, "/secret-scanning/gitlab/v1/revoke_tokens") => {
            gitlab_revoke(app, &request).await
        }
        (&Method::GET | &Method::HEAD, "") => console::page(
            app.settings
                .oidc
                .as_ref()
                .and_then(|o| o.token_url.as_deref()),
        ),
        (&Method::GET | &Method::HEAD, asset) if asset.starts_with("/console/") => {
            console::asset(asset.trim_start_matches("/console/")).unwrap_or_else(|| {
                json_response(StatusCode::NOT_FOUND, &error_body("not found", "NOT_FOUND"))
            })
        }
        (_, "" | "/graphql") => {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body("use POST with a JSON GraphQL request", "METHOD_NOT_ALLOWED"),
            );
            let allow = if path.is_empty() {
                "GET, HEAD, POST"
            } else {
                "POST"
            };
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            response
        }
        _ => json_response(StatusCode::NOT_FOUND, &error_body("not found", "NOT_FOUND")),
    };
    tracing::info!(
        method = %request.method(),
        path = %path,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// HTTP 413 for a leak report over 1 MiB, refused before anything else.
fn report_too_large(body: &[u8]) -> Option<Response<Body>> {
    (body.len() > apikeys_core::reports::MAX_REPORT_BYTES).then(|| {
        json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"message": "a report is at most 1 MiB"}),
        )
    })
}

/// `POST /secret-scanning/github`: a report of GitHub's secret scanning
/// partner program. The signature is checked before anything else (an
/// unsigned, badly signed or oversized report costs no database request);
/// the answer is GitHub's feedback array (token hashes, never tokens).
async fn github_report(app: &App, request: &Request) -> Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if let Some(refused) = report_too_large(body) {
        return refused;
    }
    let keys = app.github_keys.get_or_init(|| {
        apikeys_idp::github::GithubKeys::new(app.settings.scanning.github_keys_url.clone())
            .map_err(|e| tracing::error!(error = %e, "secret scanning reports will be refused"))
            .ok()
    });
    let Some(keys) = keys else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "secret scanning is not available"}),
        );
    };
    let verified = keys
        .verify(
            header_str(request, "github-public-key-identifier"),
            header_str(request, "github-public-key-signature"),
            body,
        )
        .await;
    match verified {
        Ok(Ok(())) => {}
        Ok(Err(bad)) => {
            // Anyone can send these: info, not a warning per forged request.
            tracing::info!(why = bad.message(), "secret scanning report refused");
            return json_response(StatusCode::UNAUTHORIZED, &json!({"message": bad.message()}));
        }
        Err(e) => {
            tracing::warn!(error = %e, "GitHub's secret scanning keys could not be fetched");
            return with_retry_after(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"message": "the signing keys could not be fetched: send the report again later"}),
            ));
        }
    }
    let matches = match apikeys_core::reports::parse_report(body) {
        Ok(matches) => matches,
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({"message": message}))
        }
    };
    let deadline = deadline_of(app, request);
    let work = app.service.report_leaks("GitHub secret scanning", &matches);
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(Ok(outcome)) => {
            let feedback: Vec<Value> = outcome
                .feedback
                .iter()
                .map(|f| json!({"token_hash": f.token_hash, "token_type": f.token_type, "label": f.label}))
                .collect();
            json_response(StatusCode::OK, &Value::Array(feedback))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a secret scanning report stopped part way");
            with_retry_after(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"message": "the report was not fully handled: send it again (what was done is not done twice)"}),
            ))
        }
        Err(_) => with_retry_after(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "the report was not fully handled in time: send it again (what was done is not done twice)"}),
        )),
    }
}

/// Is the request GitLab's, by its pre-shared token? (`None`: the GitLab
/// entrance is not configured, answered like a bad token.)
fn gitlab_allowed(app: &App, request: &Request) -> bool {
    app.settings
        .scanning
        .gitlab_token_sha256
        .as_deref()
        .is_some_and(|hash| {
            // Sent twice: refused, as `authorization` answers none.
            apikeys_core::reports::gitlab_token_matches(authorization(request), hash)
        })
}

fn gitlab_unauthorized() -> Response<Body> {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"message": "the Authorization header must hold the token revocation API's pre-shared token"}),
    )
}

/// `GET /secret-scanning/gitlab/v1/revocable_token_types`: GitLab's token
/// revocation API, the types it may send.
fn gitlab_types(app: &App, request: &Request) -> Response<Body> {
    if !gitlab_allowed(app, request) {
        return gitlab_unauthorized();
    }
    json_response(
        StatusCode::OK,
        &json!({"types": apikeys_core::reports::GITLAB_TOKEN_TYPES}),
    )
}

/// `POST /secret-scanning/gitlab/v1/revoke_tokens`: GitLab's token
/// revocation API, the same handling as a GitHub report (204 once every
/// token is handled; a failure part way is 429, which GitLab retries).
async fn gitlab_revoke(app: &App, request: &Request) -> Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if let Some(refused) = report_too_large(body) {
        return refused;
    }
    if !gitlab_allowed(app, request) {
        tracing::info!("token revocation request refused: wrong or missing token");
        return gitlab_unauthorized();
    }
    let matches = match apikeys_core::reports::parse_gitlab_request(body) {
        Ok((matches, 0)) => matches,
        Ok((matches, left_out)) => {
            tracing::info!(
                left_out,
                "token revocation entries of other types or without a token left out"
            );
            matches
        }
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({"message": message}))
        }
    };
    let deadline = deadline_of(app, request);
    let work = app
        .service
        .report_leaks("GitLab secret detection", &matches);
    let retry_later = |message: &str| {
        let mut response =
            json_response(StatusCode::TOO_MANY_REQUESTS, &json!({"message": message}));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        response
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(Ok(_)) => {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a token revocation request stopped part way");
            retry_later("the request was not fully handled: send it again (what was done is not done twice)")
        }
        Err(_) => retry_later("the request was not fully handled in time: send it again"),
    }
}

/// Errors shown in one response at most; the rest are counted in one more.
pub const MAX_ERRORS: usize = 10;

/// The operation a request runs, measured: what the answer's status depends on.
struct Measured {
    kind: OperationType,
    root_fields: u64,
    /// Only sign-in fields (or introspection): runs without a credential.
    public_only: bool,
    /// A sign-in field is asked for: the verifier is needed.
    signs_in: bool,
}

/// A request's operation, parsed, validated (its variables too) and
/// measured: everything that can be said of it without a credential.
struct Prepared<'a> {
    operation: ValidatedOperation<'a, Query, Mutation, EmptySubscription<Context>>,
    measured: Measured,
}

/// An answer to a request that was not executed: its message and code.
fn not_executed(message: &str, code: &str) -> Response<Body> {
    request_error(StatusCode::OK, &error_body(message, code))
}

/// Parses, measures and validates the document and its variables before
/// anything reads DynamoDB or looks at the credential: a syntax error, a
/// document over the cost bound, one that does not validate, or variables
/// of the wrong type are answered here, with no database request (and the
/// same answer whether the database is up or not).
fn prepare<'a>(
    app: &'a App,
    parsed: &'a GraphQlRequest,
) -> Result<Prepared<'a>, Box<Response<Body>>> {
    let document = match parse_document_source(&parsed.query, &app.schema.schema) {
        Ok(document) => document,
        Err(err) => {
            return Err(Box::new(match err.item {
                ParseError::DepthLimitExceeded(_)
                | ParseError::TokenLimitExceeded(_)
                | ParseError::FieldLimitExceeded(_) => not_executed(
                    &format!("Query too complex: {}", err.item),
                    "QUERY_TOO_COMPLEX",
                ),
                _ => not_executed(&GraphQLError::ParseError(err).to_string(), "BAD_USER_INPUT"),
            }));
        }
    };
    let measured = match cost::measure(&document, parsed.operation_name.as_deref()) {
        Some((kind, cost)) => {
            if let Err(TooComplex(message)) = cost::check(kind, cost, cost::LIMITS) {
                return Err(Box::new(not_executed(&message, "QUERY_TOO_COMPLEX")));
            }
            Some(Measured {
                kind,
                root_fields: cost.root_fields,
                public_only: cost.public_only || cost.introspection_only,
                signs_in: cost.signs_in,
            })
        }
        // No single operation to run: validation says which way.
        None => None,
    };
    let operation =
        ValidatedOperation::new(&parsed.query, parsed.operation_name.as_deref(), &app.schema)
            .map_err(|e| Box::new(answered(Err(e), None)))?;
    let Some(measured) = measured else {
        return Err(Box::new(not_executed(
            "no operation to run",
            "BAD_USER_INPUT",
        )));
    };
    if let Some(chosen) = cost::chosen(&document, parsed.operation_name.as_deref()) {
        let errors = juniper::validation::validate_input_values(
            &parsed.variables,
            chosen,
            &app.schema.schema,
        );
        if !errors.is_empty() {
            return Err(Box::new(answered(
                Err(GraphQLError::ValidationError(errors)),
                None,
            )));
        }
    }
    Ok(Prepared {
        operation,
        measured,
    })
}

async fn graphql(app: &App, request: &Request) -> Response<Body> {
    negotiated(answer(app, request).await, wants_graphql_response(request))
}

async fn answer(app: &App, request: &Request) -> Response<Body> {
    // A POST that does not say it sends JSON is no GraphQL request: HTTP
    // 415. `curl -d`'s form type is read as JSON too (people paste such
    // commands), nothing else is.
    // Stated twice, what the body is cannot be told.
    let stated = request
        .headers()
        .get_all(header::CONTENT_TYPE)
        .iter()
        .count();
    if stated > 1 || !json_body(header_str(request, "content-type")) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &error_body(
                "send the GraphQL request as JSON with Content-Type: application/json",
                "BAD_REQUEST",
            ),
        );
    }
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &error_body("request body is larger than 64 KiB", "BAD_REQUEST"),
        );
    }
    let parsed = match parse_body(body) {
        Ok(parsed) => parsed,
        Err(message) => return bad_request(message),
    };
    let prepared = match prepare(app, &parsed) {
        Ok(prepared) => prepared,
        Err(refused) => return *refused,
    };
    // A key of the wrong shape or checksum is refused before anything else.
    // Checked and hashed once: authentication and the recording of the
    // key's use both work from this hash.
    let bearer = bearer(request);
    let credential = match session_token(request) {
        Some(session) => Some(Credential::Session(session)),
        None => app.service.presented_hash(bearer).map(Credential::Key),
    };
    let deadline = deadline_of(app, request);
    let Some(credential) = credential else {
        // No credential: the sign-in operations run without one.
        if prepared.measured.public_only {
            return sign_in(app, request, bearer, &parsed, prepared, deadline).await;
        }
        // A console session sent the way API keys are: said so.
        if bearer.is_some_and(|b| app.service.is_session_token(b)) {
            return unauthenticated(Refusal::SessionNotKey);
        }
        tracing::info!(reason = Refusal::Malformed.code(), "authentication refused");
        // Prefect's old tokens are told why (still UNAUTHENTICATED at HTTP
        // 200, which the Prefect client turns into its login message).
        if bearer.is_some_and(is_legacy_token) {
            return json_response(
                StatusCode::OK,
                &error_body(LEGACY_TOKEN_MESSAGE, "UNAUTHENTICATED"),
            );
        }
        return unauthenticated(Refusal::Malformed);
    };
    let tenant_header = header_str(request, "x-prefect-tenant-id");
    let writes = prepared.measured.kind == OperationType::Mutation;
    let source = source_ip(request);
    let run = run(
        app,
        request,
        &credential,
        tenant_header,
        source,
        &parsed,
        &prepared,
        deadline,
    );
    match tokio::time::timeout_at(deadline.into(), run).await {
        Ok(response) => response,
        // Out of time: the work in flight is dropped. A query changed nothing;
        // a mutation may have been applied or not.
        Err(_) if writes => {
            tracing::warn!("request stopped at its deadline");
            let (code, message) = error_code_and_message(&Error::Deadline {
                unknown_outcome: true,
            });
            json_response(StatusCode::OK, &error_body(&message, code))
        }
        Err(_) => {
            tracing::warn!("request stopped at its deadline");
            let (code, message) = error_code_and_message(&Error::Deadline {
                unknown_outcome: false,
            });
            with_retry_after(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &error_body(&message, code),
            ))
        }
    }
}

/// Time kept back from the function's deadline to send the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// When the answer must be ready: the Lambda invocation's deadline, or the
/// configured request time (the dev server, tests), less [`ANSWER_MARGIN`].
fn deadline_of(app: &App, request: &Request) -> Instant {
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
fn source_ip(request: &Request) -> Option<std::net::IpAddr> {
    use lambda_http::request::RequestContext;
    let text = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.clone(),
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    apikeys_core::domain::parse_source_ip(&text)
}

/// Time kept back from a request's deadline when long work (a key policy
/// written onto every key) stops to answer: a page of keys in flight and
/// the answer's reads fit in it.
pub const LONG_WORK_MARGIN: Duration = Duration::from_millis(1500);

/// Authenticates and executes: everything that reads or writes DynamoDB.
#[allow(clippy::too_many_arguments)]
async fn run(
    app: &App,
    request: &Request,
    credential: &Credential<'_>,
    tenant_header: Option<&str>,
    source: Option<std::net::IpAddr>,
    parsed: &GraphQlRequest,
    prepared: &Prepared<'_>,
    deadline: Instant,
) -> Response<Body> {
    // One verification chain (apikeys_core::verify): a key's whole chain in
    // the service; a session loaded by the service, then the same checks of
    // where and how it is used.
    let at = app.service.use_at(tenant_header, source, Api::ThisOne);
    let verdict = match credential {
        Credential::Key(hash) => app.service.verify_key(Some(hash), at).await,
        Credential::Session(token) => {
            match app.service.authenticate_session(token, tenant_header).await {
                Ok(Authenticated::Member(principal)) => Ok(verify::admit(*principal, &at)),
                // A person in no tenant yet: the fields of invitations.
                Ok(Authenticated::Person(person)) => {
                    let context =
                        Context::new(Arc::clone(&app.service), Caller::Person(person), source)
                            .with_sign_in(signing_in(app, request, prepared), None);
                    return execute(prepared, parsed, &context).await;
                }
                Err(Error::Unauthenticated(reason)) => Ok(Verdict::Unauthenticated(reason)),
                Err(e) => Err(e),
            }
        }
    };
    let principal = match verdict {
        Ok(Verdict::Allow(principal)) => *principal,
        Ok(Verdict::Unauthenticated(reason)) => return unauthenticated(reason),
        Ok(Verdict::Forbidden(denial)) => {
            let error = field_error_json(&Error::Denied {
                reason: denial.reason,
                message: denial.message,
                needed_scope: denial.needed_scope,
            });
            return json_response(StatusCode::OK, &json!({"errors": [error], "data": null}));
        }
        Err(other) => {
            let (code, message) = error_code_and_message(&other);
            let status = if code == SERVICE_UNAVAILABLE {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            return with_retry_after(json_response(status, &error_body(&message, code)));
        }
    };
    // The key's use is recorded (once per interval) alongside the work, and
    // finished before the answer leaves: a frozen instance loses nothing.
    let key_use = match credential {
        Credential::Key(hash) => app.service.key_use(hash, &principal),
        Credential::Session(_) => None,
    };
    let until = deadline
        .checked_sub(LONG_WORK_MARGIN)
        .unwrap_or_else(Instant::now);
    let context = Context::new(
        Arc::clone(&app.service),
        Caller::Member(Box::new(principal)),
        source,
    )
    .with_sign_in(signing_in(app, request, prepared), None)
    .until(until);
    let record = async {
        if let Some(key_use) = key_use {
            app.service.record_key_use(key_use).await;
        }
    };
    let (response, ()) = tokio::join!(execute(prepared, parsed, &context), record);
    response
}

/// The verifier, when the operation asks for a sign-in field (built at the
/// first such request, never for the others).
fn signing_in(
    app: &App,
    request: &Request,
    prepared: &Prepared<'_>,
) -> Option<Arc<apikeys_idp::oidc::IdTokenVerifier>> {
    if prepared.measured.signs_in {
        app.verifier(request)
    } else {
        None
    }
}

/// Runs the prepared operation for the context's caller.
async fn execute(
    prepared: &Prepared<'_>,
    parsed: &GraphQlRequest,
    context: &Context,
) -> Response<Body> {
    let result = prepared.operation.execute(&parsed.variables, context).await;
    answered(result, Some(&prepared.measured))
}

/// A sign-in operation, for nobody: within the request's deadline (a slow
/// identity provider is a retryable answer).
async fn sign_in(
    app: &App,
    request: &Request,
    bearer: Option<&str>,
    parsed: &GraphQlRequest,
    prepared: Prepared<'_>,
    deadline: Instant,
) -> Response<Body> {
    let context = Context::new(Arc::clone(&app.service), Caller::Nobody, source_ip(request))
        .with_sign_in(app.verifier(request), bearer.map(str::to_string));
    let writes = prepared.measured.kind == OperationType::Mutation;
    let work = execute(&prepared, parsed, &context);
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(response) => response,
        // A sign-in or a refresh may have written its session (a refresh
        // replaces the tokens presented) and never shown it: not "nothing
        // happened". An unseen new session ends by itself.
        Err(_) if writes => {
            tracing::warn!("sign-in stopped at its deadline");
            let (code, message) = error_code_and_message(&Error::Deadline {
                unknown_outcome: true,
            });
            json_response(StatusCode::OK, &error_body(&message, code))
        }
        Err(_) => {
            tracing::warn!("sign-in settings stopped at their deadline");
            with_retry_after(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &error_body("the request took too long: try again", SERVICE_UNAVAILABLE),
            ))
        }
    }
}

/// The answer to an execution: the envelope, the status its errors call
/// for (503 when retrying helps, 429 for the change limit), and the bound
/// on a query's size.
fn answered(
    result: Result<
        (
            juniper::Value,
            Vec<juniper::ExecutionError<juniper::DefaultScalarValue>>,
        ),
        GraphQLError,
    >,
    measured: Option<&Measured>,
) -> Response<Body> {
    let (body, codes) = match result {
        Ok((data, errors)) if errors.is_empty() => (json!({ "data": data }), Vec::new()),
        Ok((data, errors)) => {
            let errors: Vec<Value> = errors.iter().map(|e| json!(e)).collect();
            let codes = errors
                .iter()
                .map(|e| {
                    e.pointer("/extensions/code")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            (json!({ "data": data, "errors": bounded(errors) }), codes)
        }
        Err(GraphQLError::ValidationError(rules)) => {
            let errors = rules
                .iter()
                .map(|rule| json!({"message": rule.to_string(), "extensions": {"code": "BAD_USER_INPUT"}}))
                .collect();
            let body = json!({"errors": bounded(errors), "data": null});
            return request_error(StatusCode::OK, &body);
        }
        Err(err) => {
            return request_error(
                StatusCode::OK,
                &error_body(&err.to_string(), "BAD_USER_INPUT"),
            )
        }
    };
    // Retrying helps, and repeats nothing, when every failure was transient
    // with nothing applied and at most one write was asked for: then answer
    // 503, which clients (the Prefect client among them) retry.
    let transient = codes.iter().any(|c| c == SERVICE_UNAVAILABLE);
    let only_transient = codes
        .iter()
        .all(|c| c == SERVICE_UNAVAILABLE || c.is_empty());
    let single_write =
        measured.is_none_or(|m| m.kind != OperationType::Mutation || m.root_fields <= 1);
    if transient && only_transient && single_write {
        return with_retry_after(json_response(StatusCode::SERVICE_UNAVAILABLE, &body));
    }
    // The request's only write, refused by the member's change limit: 429,
    // with when to try again.
    if single_write && !codes.is_empty() && codes.iter().all(|c| c == RATE_LIMITED) {
        let after = body
            .pointer("/errors/0/extensions/retry_after")
            .and_then(Value::as_i64)
            .unwrap_or(60);
        let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
        if let Ok(value) = header::HeaderValue::from_str(&after.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // A query's answer is bounded too (a mutation's is a few small objects,
    // and may hold a new secret that must not be lost).
    let query = measured.is_some_and(|m| m.kind == OperationType::Query);
    if query {
        let size = serde_json::to_vec(&body).map_or(usize::MAX, |b| b.len());
        if size > MAX_ANSWER_BYTES {
            let message = format!(
                "the answer would be {size} bytes, more than the limit of {MAX_ANSWER_BYTES}: \
                 ask for fewer fields or aliases"
            );
            return json_response(StatusCode::OK, &error_body(&message, "ANSWER_TOO_LARGE"));
        }
    }
    json_response(StatusCode::OK, &body)
}

/// The largest answer to a query: well above the largest listing (an
/// admin's view of 100 service accounts with 40 keys each is about 1.5
/// MB), below Lambda's 6 MB response limit.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Keeps the first [`MAX_ERRORS`] errors and says how many more there were.
fn bounded(mut errors: Vec<Value>) -> Vec<Value> {
    if errors.len() > MAX_ERRORS {
        let more = errors.len().saturating_sub(MAX_ERRORS);
        errors.truncate(MAX_ERRORS);
        errors.push(json!({
            "message": format!("{more} more errors not shown"),
            "extensions": {"code": "BAD_USER_INPUT"}
        }));
    }
    errors
}

/// A 503 tells the client when to try again.
fn with_retry_after(mut response: Response<Body>) -> Response<Body> {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}
