//! `POST /` and `POST /graphql`: a GraphQL request read, prepared (parsed,
//! measured, validated) before its credential is looked at, verified,
//! executed within its deadline, and answered in the Prefect-compatible
//! envelope (or as GraphQL-over-HTTP asks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use apikeys_core::token::{is_legacy_token, LEGACY_TOKEN_MESSAGE};
use apikeys_service::Error;
use apikeys_service::{Api, Authenticated, Refusal, Verdict};
use juniper::parser::{parse_document_source, ParseError};
use juniper::{
    EmptySubscription, GraphQLError, InputValue, OperationType, ValidatedOperation, Variables,
};
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use crate::app::App;
use crate::cost::{self, TooComplex};
use crate::edge::{
    bad_request, bearer, deadline_of, error_body, field_error_json, header_str, json_body,
    json_response, negotiated, request_error, session_token, source_ip, unauthenticated,
    wants_graphql_response, with_retry_after, Credential, MAX_BODY_BYTES,
};
use crate::schema::{
    error_code_and_message, Caller, Context, Mutation, Query, RATE_LIMITED, SERVICE_UNAVAILABLE,
};

/// The parts of a GraphQL-over-HTTP request body.
pub(crate) struct GraphQlRequest {
    query: String,
    operation_name: Option<String>,
    variables: Variables,
}

/// Parses the body; `Err` is the message of a 400 answer.
pub(crate) fn parse_body(bytes: &[u8]) -> Result<GraphQlRequest, &'static str> {
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

/// Errors shown in one response at most; the rest are counted in one more.
pub const MAX_ERRORS: usize = 10;

/// The operation a request runs, measured: what the answer's status depends on.
pub(crate) struct Measured {
    kind: OperationType,
    root_fields: u64,
    /// Only sign-in fields (or introspection): runs without a credential.
    public_only: bool,
    /// A sign-in field is asked for: the verifier is needed.
    signs_in: bool,
}

/// A request's operation, parsed, validated (its variables too) and
/// measured: everything that can be said of it without a credential.
pub(crate) struct Prepared<'a> {
    operation: ValidatedOperation<'a, Query, Mutation, EmptySubscription<Context>>,
    measured: Measured,
}

/// An answer to a request that was not executed: its message and code.
pub(crate) fn not_executed(message: &str, code: &str) -> Response<Body> {
    request_error(StatusCode::OK, &error_body(message, code))
}

/// Parses, measures and validates the document and its variables before
/// anything reads DynamoDB or looks at the credential: a syntax error, a
/// document over the cost bound, one that does not validate, or variables
/// of the wrong type are answered here, with no database request (and the
/// same answer whether the database is up or not).
pub(crate) fn prepare<'a>(
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

pub(crate) async fn graphql(app: &App, request: &Request) -> Response<Body> {
    negotiated(answer(app, request).await, wants_graphql_response(request))
}

pub(crate) async fn answer(app: &App, request: &Request) -> Response<Body> {
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

/// Time kept back from a request's deadline when long work (a key policy
/// written onto every key) stops to answer: a page of keys in flight and
/// the answer's reads fit in it.
pub const LONG_WORK_MARGIN: Duration = Duration::from_millis(1500);

/// Authenticates and executes: everything that reads or writes DynamoDB.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
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
                Ok(Authenticated::Member(principal)) => Ok(app.service.admit(*principal, &at)),
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
pub(crate) fn signing_in(
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
pub(crate) async fn execute(
    prepared: &Prepared<'_>,
    parsed: &GraphQlRequest,
    context: &Context,
) -> Response<Body> {
    let result = prepared.operation.execute(&parsed.variables, context).await;
    answered(result, Some(&prepared.measured))
}

/// A sign-in operation, for nobody: within the request's deadline (a slow
/// identity provider is a retryable answer).
pub(crate) async fn sign_in(
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
pub(crate) fn answered(
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
pub(crate) fn bounded(mut errors: Vec<Value>) -> Vec<Value> {
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
