//! The API Gateway Lambda authorizer: any API of the platform accepts these
//! keys. REQUEST authorizers of REST APIs get an IAM policy with
//! `principalId` and a `context`; HTTP APIs (payload 2.0) get the simple
//! `isAuthorized` answer with the same `context`. Authentication is the
//! GraphQL endpoint's (`ApiKeys::gate`): one consistent read, expiry to the
//! second, nothing cached.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

use std::sync::Arc;
use std::time::Duration;

use apikeys_shared::clock::{Clock, SystemClock};
use apikeys_shared::config::{Config, ConfigError};
use apikeys_shared::domain::Principal;
use apikeys_shared::service::Gate;
use apikeys_shared::token::{bearer_token, NewKey};
use apikeys_shared::ApiKeys;
use serde_json::{json, Map, Value};

/// What a REST API authorizer returns to have API Gateway answer 401: an
/// error with exactly this message. Any other error is the gateway's 500.
pub const UNAUTHORIZED: &str = "Unauthorized";

pub struct App {
    service: ApiKeys,
}

impl App {
    pub fn new(service: ApiKeys) -> Self {
        Self { service }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::with_clock(Config::from_env()?, Arc::new(SystemClock))
    }

    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        Ok(Self::new(ApiKeys::from_config(config, clock)?))
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
        let decision = self.service.gate(Some(&hash), None, None);
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
        "read_only_key": if p.key_may_write() { "false" } else { "true" },
        "account_type": p.account_type.name(),
        "api_key_id": p.api_key_id.to_string(),
    })
}

/// The policy's resource: every method and path of the API stage the
/// request came to (`arn:...:api-id/stage/*`), so that an answer cached by
/// the gateway (when the cache TTL is raised) serves the caller's other
/// routes too, not only the one first asked for.
fn stage_resource(method_arn: &str) -> String {
    let mut parts = method_arn.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(api), Some(stage)) => format!("{api}/{stage}/*"),
        _ => method_arn.to_string(),
    }
}

fn policy(principal_id: &str, effect: &str, resource: &str, context: Value) -> Value {
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
    apikeys_shared::domain::parse_source_ip(text)
}

/// Decides one authorizer event. `Err` is the gateway's 401 (REST, with
/// [`UNAUTHORIZED`]) or 500 (a storage failure: the client may retry; never
/// reported as a denial).
pub async fn handle(app: &App, event: Value) -> Result<Value, lambda_runtime::Error> {
    let bearer = header(&event, "authorization").and_then(bearer_token);
    let tenant = header(&event, "x-prefect-tenant-id");
    // The key is checked and hashed once, for the decision and the use.
    let hash = app.service.presented_hash(bearer);
    let gate = match app
        .service
        .gate(hash.as_ref(), tenant, source_ip(&event))
        .await
    {
        Ok(gate) => gate,
        Err(e) => {
            tracing::error!(error = %e, "authorizer could not decide");
            return Err("authorizer could not reach its database".into());
        }
    };
    // An allowed key's use is recorded at most once per interval: then the
    // answer waits for that one write (there is no other work to overlap
    // it with, and a frozen instance would lose a write left running).
    if let (Gate::Allow(p), Some(hash)) = (&gate, &hash) {
        if let Some(key_use) = app.service.key_use(hash, p) {
            app.service.record_key_use(key_use).await;
        }
    }
    let http_api = event.get("version").and_then(Value::as_str) == Some("2.0");
    // Why, for the operator, whatever the answer's form (a REST 401 leaves
    // before any answer is built).
    let reason = match &gate {
        Gate::Allow(_) => "allowed",
        Gate::Unauthenticated(refusal) => refusal.code(),
        Gate::WrongTenant => "wrong_tenant",
        Gate::NetworkNotAllowed => "network_not_allowed",
    };
    let allowed = matches!(gate, Gate::Allow(_));
    tracing::info!(allowed, http_api, reason, "authorizer decision");
    let answer = if http_api {
        // HTTP APIs: `isAuthorized: false` is the gateway's 403; its 401 is
        // for a request without the identity source header, decided before
        // this function runs.
        match gate {
            Gate::Allow(p) => json!({"isAuthorized": true, "context": context(&p)}),
            Gate::Unauthenticated(_) | Gate::WrongTenant | Gate::NetworkNotAllowed => {
                json!({"isAuthorized": false, "context": Map::new()})
            }
        }
    } else {
        let method_arn = event
            .get("methodArn")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match gate {
            Gate::Allow(p) => policy(
                &p.user_id.to_string(),
                "Allow",
                &stage_resource(method_arn),
                context(&p),
            ),
            Gate::WrongTenant | Gate::NetworkNotAllowed => {
                policy("forbidden", "Deny", method_arn, json!({}))
            }
            Gate::Unauthenticated(_) => return Err(UNAUTHORIZED.into()),
        }
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_covers_the_whole_stage() {
        assert_eq!(
            stage_resource("arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/GET/request"),
            "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/*"
        );
        assert_eq!(stage_resource("odd"), "odd");
    }

    #[test]
    fn headers_are_found_in_any_case_and_in_multi_value_form() {
        let event = json!({"headers": {"AUTHORIZATION": "Bearer a"}, "multiValueHeaders": {"X-Prefect-Tenant-Id": ["t"]}});
        assert_eq!(header(&event, "authorization"), Some("Bearer a"));
        assert_eq!(header(&event, "x-prefect-tenant-id"), Some("t"));
        assert_eq!(header(&json!({}), "authorization"), None);
        assert_eq!(header(&json!({"headers": null}), "authorization"), None);
    }
}
