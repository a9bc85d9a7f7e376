//! The API Gateway Lambda authorizer: any API of the platform accepts these
//! keys. REQUEST authorizers of REST APIs get an IAM policy with
//! `principalId` and a `context`; HTTP APIs (payload 2.0) get the simple
//! `isAuthorized` answer with the same `context`. Verification is the
//! GraphQL endpoint's (`ApiKeys::verify_key`, on another `Api`): one consistent read, expiry to the
//! second, nothing cached.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

use std::sync::Arc;
use std::time::Duration;

use apikeys_core::clock::{Clock, SystemClock};
use apikeys_core::principal::Principal;
use apikeys_core::token::{bearer_token, NewKey};
use apikeys_service::config::{Config, ConfigError};
use apikeys_service::ApiKeys;
use apikeys_service::{Api, Refusal, Verdict};
use serde_json::{json, Map, Value};

pub mod routes;
use routes::{request_of, RouteMap};

/// What a REST API authorizer returns to have API Gateway answer 401: an
/// error with exactly this message. Any other error is the gateway's 500.
pub const UNAUTHORIZED: &str = "Unauthorized";

pub struct App {
    service: ApiKeys,
    routes: RouteMap,
}

impl App {
    pub fn new(service: ApiKeys, routes: RouteMap) -> Self {
        Self { service, routes }
    }

    /// The function as deployed: its configuration and route map
    /// (`ROUTE_SCOPES`) from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let routes = std::env::var("ROUTE_SCOPES").ok();
        Self::with_clock(
            Config::from_env()?,
            Arc::new(SystemClock),
            routes.as_deref(),
        )
    }

    pub fn with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
        routes: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let routes = RouteMap::parse(routes).map_err(ConfigError::new)?;
        Ok(Self::new(ApiKeys::from_config(config, clock)?, routes))
    }

    pub fn service(&self) -> &ApiKeys {
        &self.service
    }

    /// Opens the DynamoDB connection during init, as the GraphQL function
    /// does: one decision on a well-formed key nobody holds (one consistent
    /// GetItem of a missing item), bounded by two seconds, never fatal.
    pub async fn warm_up(&self) {
        if !self.service.config().warm_connection {
            return;
        }
        let key = NewKey::generate(&self.service.config().user_key_prefix);
        let hash = key.hash();
        let decision = self
            .service
            .verify_key(Some(&hash), self.service.use_at(None, None, Api::Other));
        if tokio::time::timeout(Duration::from_secs(2), decision)
            .await
            .is_err()
        {
            tracing::warn!("the warm-up decision took over two seconds");
        }
    }
}

/// The event's header, case-insensitively, from `headers` or (REST APIs)
/// `multiValueHeaders`.
fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    let find = |field: &str| -> Option<&'a Value> {
        event
            .get(field)?
            .as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    };
    match find("headers") {
        Some(Value::String(value)) => Some(value),
        _ => match find("multiValueHeaders") {
            Some(Value::Array(values)) => values.first()?.as_str(),
            _ => None,
        },
    }
}

/// What the backend reads in `requestContext.authorizer` (REST) or
/// `requestContext.authorizer.lambda` (HTTP API): strings only, as API
/// Gateway passes them on.
fn context(p: &Principal) -> Value {
    json!({
        "tenant_id": p.tenant_id.to_string(),
        "user_id": p.user_id.to_string(),
        // What the key may do: its owner's role, at most the key's ceiling.
        "role": p.effective_role().name(),
        "member_role": p.role.name(),
        // Read-only by its ceiling or its rotation grace; what a scoped
        // key may do on other APIs is its scopes.
        "read_only_key": if p.key_read_only() { "true" } else { "false" },
        "account_type": p.account_type.name(),
        "api_key_id": p.api_key_id.to_string(),
        // Space-separated (context values are strings); empty: not
        // limited by scopes.
        "scopes": p.key_scopes.join(" "),
    })
}

/// The context of a refusal, for the operator's logs and a gateway
/// response template (`$context.authorizer.reason`, `.needed_scope`,
/// `.message`): never anything about the key.
fn refusal_context(reason: &str, message: &str, needed_scope: Option<&str>) -> Value {
    let mut context = json!({"reason": reason, "message": message});
    if let (Some(scope), Some(object)) = (needed_scope, context.as_object_mut()) {
        object.insert("needed_scope".into(), Value::String(scope.to_string()));
    }
    context
}

fn policy(principal_id: &str, effect: &str, resource: Value, context: Value) -> Value {
    json!({
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    })
}

/// The caller's address as API Gateway saw it (REST:
/// `requestContext.identity.sourceIp`; HTTP APIs:
/// `requestContext.http.sourceIp`), never a header the client sets. A
/// `/32`-style suffix (as `sam local generate-event` writes) is dropped.
pub fn source_ip(event: &Value) -> Option<std::net::IpAddr> {
    let context = event.get("requestContext")?;
    let text = context
        .pointer("/identity/sourceIp")
        .or_else(|| context.pointer("/http/sourceIp"))?
        .as_str()?;
    apikeys_core::domain::parse_source_ip(text)
}

/// Decides one authorizer event. `Err` is the gateway's 401 (REST, with
/// [`UNAUTHORIZED`]) or 500 (a storage failure: the client may retry; never
/// reported as a denial).
pub async fn handle(app: &App, event: Value) -> Result<Value, lambda_runtime::Error> {
    let bearer = header(&event, "authorization").and_then(bearer_token);
    let tenant = header(&event, "x-prefect-tenant-id");
    // The key is checked and hashed once, for the decision and the use.
    let hash = app.service.presented_hash(bearer);
    let at = app.service.use_at(tenant, source_ip(&event), Api::Other);
    let gate = match app.service.verify_key(hash.as_ref(), at).await {
        Ok(gate) => gate,
        Err(e) => {
            tracing::error!(error = %e, "authorizer could not decide");
            return Err("authorizer could not reach its database".into());
        }
    };
    // An allowed key's use is recorded at most once per interval: then the
    // answer waits for that one write (there is no other work to overlap
    // it with, and a frozen instance would lose a write left running).
    if let (Verdict::Allow(p), Some(hash)) = (&gate, &hash) {
        if let Some(key_use) = app.service.key_use(hash, p) {
            app.service.record_key_use(key_use).await;
        }
    }
    let http_api = event.get("version").and_then(Value::as_str) == Some("2.0");
    // The request as its ARN names it: REST `methodArn`, HTTP API `routeArn`.
    let arn = event
        .get(if http_api { "routeArn" } else { "methodArn" })
        .and_then(Value::as_str)
        .unwrap_or_default();
    let request = request_of(arn);
    // A scoped key: the route map decides (a request whose ARN cannot be
    // read is refused to it).
    let scope = match (&gate, &request) {
        (Verdict::Allow(p), Some(r)) => app.routes.decide(&p.key_scopes, r.method, r.path),
        (Verdict::Allow(p), None) if !p.key_scopes.is_empty() => Err(None),
        _ => Ok(()),
    };
    // Why, for the operator, whatever the answer's form (a REST 401 leaves
    // before any answer is built).
    let reason = match (&gate, &scope) {
        (Verdict::Allow(_), Ok(())) => "allowed",
        (Verdict::Allow(_), Err(_)) => Refusal::ScopeMissing.code(),
        (Verdict::Unauthenticated(refusal), _) => refusal.code(),
        (Verdict::Forbidden(denial), _) => denial.reason.code(),
    };
    let allowed = matches!((&gate, &scope), (Verdict::Allow(_), Ok(())));
    match &scope {
        Err(needed) if matches!(gate, Verdict::Allow(_)) => tracing::info!(
            allowed,
            http_api,
            reason,
            needed_scope = needed.as_deref().unwrap_or("none"),
            "authorizer decision"
        ),
        _ => tracing::info!(allowed, http_api, reason, "authorizer decision"),
    }
    let refusal = |needed: &Option<String>| {
        let message = match needed {
            Some(scope) => format!("this API key lacks the scope this route needs: {scope}"),
            None => "no scope of this API key grants this route".to_string(),
        };
        refusal_context(Refusal::ScopeMissing.code(), &message, needed.as_deref())
    };
    let answer = if http_api {
        // HTTP APIs: `isAuthorized: false` is the gateway's 403; its 401 is
        // for a request without the identity source header, decided before
        // this function runs.
        match (gate, scope) {
            (Verdict::Allow(p), Ok(())) => json!({"isAuthorized": true, "context": context(&p)}),
            (Verdict::Allow(_), Err(needed)) => {
                json!({"isAuthorized": false, "context": refusal(&needed)})
            }
            (Verdict::Forbidden(denial), _) => json!({"isAuthorized": false,
                "context": refusal_context(denial.reason.code(), &denial.message, None)}),
            (Verdict::Unauthenticated(_), _) => {
                json!({"isAuthorized": false, "context": Map::new()})
            }
        }
    } else {
        let stage = request.as_ref().map(|r| r.stage);
        match (gate, scope) {
            // Every route the key may take, so that an answer the gateway
            // caches (with a cache TTL) is right for the key's other routes.
            (Verdict::Allow(p), Ok(())) => policy(
                &p.user_id.to_string(),
                "Allow",
                match stage {
                    Some(stage) => allowed_resources(&app.routes, &p.key_scopes, stage),
                    // An ARN of no known form: that request alone.
                    None => json!(arn),
                },
                context(&p),
            ),
            (Verdict::Allow(p), Err(needed)) => {
                let resources = stage
                    .map(|stage| app.routes.resources(&p.key_scopes, stage))
                    .unwrap_or_default();
                if resources.is_empty() {
                    policy(&p.user_id.to_string(), "Deny", json!(arn), refusal(&needed))
                } else {
                    // The routes it may take, and an explicit refusal of this one.
                    let mut answer = policy(
                        &p.user_id.to_string(),
                        "Allow",
                        json!(resources),
                        refusal(&needed),
                    );
                    if let Some(statements) = answer
                        .pointer_mut("/policyDocument/Statement")
                        .and_then(Value::as_array_mut)
                    {
                        statements.push(json!({"Action": "execute-api:Invoke", "Effect": "Deny",
                            "Resource": arn}));
                    }
                    answer
                }
            }
            (Verdict::Forbidden(denial), _) => policy(
                "forbidden",
                "Deny",
                json!(arn),
                refusal_context(denial.reason.code(), &denial.message, None),
            ),
            (Verdict::Unauthenticated(_), _) => return Err(UNAUTHORIZED.into()),
        }
    };
    Ok(answer)
}

/// The resources of an Allow policy for a key with `scopes` on `stage`: the
/// whole stage without scopes, else the routes the map grants them.
fn allowed_resources(routes: &RouteMap, scopes: &[String], stage: &str) -> Value {
    let resources = routes.resources(scopes, stage);
    match resources.as_slice() {
        [one] => json!(one),
        _ => json!(resources),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_in_any_case_and_in_multi_value_form() {
        let event = json!({"headers": {"AUTHORIZATION": "Bearer a"}, "multiValueHeaders": {"X-Prefect-Tenant-Id": ["t"]}});
        assert_eq!(header(&event, "authorization"), Some("Bearer a"));
        assert_eq!(header(&event, "x-prefect-tenant-id"), Some("t"));
        assert_eq!(header(&json!({}), "authorization"), None);
        assert_eq!(header(&json!({"headers": null}), "authorization"), None);
    }
}
