//! Test harness: a fresh table (from template.yaml) on the local DynamoDB, the
//! real GraphQL handler, and real API Gateway events as `sam local
//! generate-event` makes them (tests/events/).

pub mod authorizer;
pub mod documents;
pub mod faults;
pub mod idp;
pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::metrics::RequestCounter;
use apikeys_core::clock::ManualClock;
use apikeys_core::domain::{AccountType, ApiKey, Role};
use apikeys_core::token::NewKey;
use apikeys_graphql::App;
use apikeys_service::config::Config;
use apikeys_service::operator::NewUser;
use apikeys_service::sweep::{SweepReport, Sweeper};
use apikeys_service::ApiKeys;
use apikeys_service::KeyRequest;
use apikeys_store::{dynamodb_client, key_items, Store, StoredKey};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use base64::Engine;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const TEMPLATE: &str = include_str!("../../template.yaml");
pub const REST_GRAPHQL_EVENT: &str = include_str!("../events/rest-post-graphql.json");
pub const REST_ROOT_EVENT: &str = include_str!("../events/rest-post-root.json");
pub const HTTP_API_EVENT: &str = include_str!("../events/http-api-post-graphql.json");
pub const SCHEDULED_EVENT: &str = include_str!("../events/scheduled-event.json");
/// `sam local generate-event apigateway request-authorizer --stage prod
/// --method POST --resource graphql`.
pub const REST_AUTHORIZER_EVENT: &str = include_str!("../events/rest-request-authorizer.json");
/// An HTTP API (payload 2.0) authorizer event: `sam local generate-event
/// apigateway http-api-proxy` with the fields API Gateway adds for a Lambda
/// authorizer (`version`, `type`, `routeArn`, `identitySource`); sam offers no
/// such event of its own.
pub const HTTP_API_AUTHORIZER_EVENT: &str = include_str!("../events/http-api-authorizer.json");

/// The local DynamoDB endpoint, set by infra/test.
pub fn endpoint() -> String {
    std::env::var("DYNAMODB_ENDPOINT").unwrap_or_else(|_| {
        panic!("DYNAMODB_ENDPOINT is not set: run the suite with `bash infra/test`")
    })
}

/// Which real API Gateway event shape carries the request.
#[derive(Clone, Copy, Debug)]
pub enum Route {
    /// REST API (v1, `sam local start-api`), POST /graphql.
    RestGraphql,
    /// REST API (v1), POST / (the URL the Prefect client posts to).
    RestRoot,
    /// HTTP API (v2, `cargo lambda watch`), POST /graphql.
    HttpApi,
}

/// Builds a lambda_http request from a sam-generated event with our method,
/// body and headers.
pub fn event(
    route: Route,
    method: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> lambda_http::Request {
    event_from(route, method, body, headers, None)
}

/// [`event`], from the address `source` as API Gateway saw it (the
/// fixture's when `None`: 127.0.0.1 on REST, 192.168.0.1/32 on HTTP APIs).
pub fn event_from(
    route: Route,
    method: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    source: Option<&str>,
) -> lambda_http::Request {
    let event = event_json(route, method, body, headers, source);
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

/// [`event`] on a stage with these stage variables.
pub fn staged_event(
    route: Route,
    body: &[u8],
    headers: &[(&str, &str)],
    variables: &[(&str, &str)],
) -> lambda_http::Request {
    let mut event = event_json(route, "POST", body, headers, None);
    let variables: serde_json::Map<String, Value> = variables
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    event["stageVariables"] = Value::Object(variables);
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

/// The JSON of [`event_from`].
fn event_json(
    route: Route,
    method: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    source: Option<&str>,
) -> Value {
    let fixture = match route {
        Route::RestGraphql => REST_GRAPHQL_EVENT,
        Route::RestRoot => REST_ROOT_EVENT,
        Route::HttpApi => HTTP_API_EVENT,
    };
    let mut event: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    event["body"] = json!(encoded);
    event["isBase64Encoded"] = json!(true);
    let mut single = serde_json::Map::new();
    let mut multi = serde_json::Map::new();
    single.insert("Content-Type".into(), json!("application/json"));
    multi.insert("Content-Type".into(), json!(["application/json"]));
    for (name, value) in headers {
        // An empty value removes the header (a request without it).
        if value.is_empty() {
            single.retain(|k, _| !k.eq_ignore_ascii_case(name));
            multi.retain(|k, _| !k.eq_ignore_ascii_case(name));
            continue;
        }
        single.insert(name.to_string(), json!(value));
        multi.insert(name.to_string(), json!([value]));
    }
    match route {
        Route::RestGraphql | Route::RestRoot => {
            event["httpMethod"] = json!(method);
            event["requestContext"]["httpMethod"] = json!(method);
            event["headers"] = Value::Object(single);
            event["multiValueHeaders"] = Value::Object(multi);
        }
        Route::HttpApi => {
            event["requestContext"]["http"]["method"] = json!(method);
            event["headers"] = Value::Object(single);
            event["cookies"] = json!([]);
        }
    }
    if let Some(source) = source {
        match route {
            Route::RestGraphql | Route::RestRoot => {
                event["requestContext"]["identity"]["sourceIp"] = json!(source);
            }
            Route::HttpApi => event["requestContext"]["http"]["sourceIp"] = json!(source),
        }
    }
    event
}

/// An HTTP answer of the handler.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: String,
    pub json: Value,
}

/// A tenant made by the operator, with its first admin.
#[derive(Clone, Debug)]
pub struct TenantFixture {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub admin_id: Uuid,
    pub admin_membership_id: Uuid,
    pub admin_key: String,
}

/// A member made by the operator, with a key.
#[derive(Clone, Debug)]
pub struct MemberFixture {
    pub user_id: Uuid,
    pub membership_id: Uuid,
    pub key: String,
}

pub struct Harness {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub counter: RequestCounter,
    pub client: Client,
    pub table: String,
    pub tenant: TenantFixture,
}

/// Prefect-style request body: `variables` as a JSON-encoded string.
pub fn prefect_body(query: &str, variables: Option<Value>) -> Vec<u8> {
    let variables = variables.map_or("null".to_string(), |v| v.to_string());
    json!({"query": query, "variables": variables})
        .to_string()
        .into_bytes()
}

impl Harness {
    /// A fresh table and a tenant `acme` whose admin is `alice`.
    pub async fn new() -> Self {
        Self::with_env(&[]).await
    }

    /// Like [`Harness::new`], with more configuration variables.
    pub async fn with_env(extra: &[(&str, &str)]) -> Self {
        let table = format!("test-{}", Uuid::new_v4());
        // No change limit unless a test sets one (tests/limits.rs does):
        // the clock stands still, so every change would fall in one minute.
        let mut env = HashMap::from([
            ("TABLE_NAME".to_string(), table.clone()),
            ("DYNAMODB_ENDPOINT".to_string(), endpoint()),
            ("CHANGES_PER_MINUTE".to_string(), "0".to_string()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_map(&env).expect("test config");
        let base = dynamodb_client(&config.store)
            .expect("AWS_REGION and credentials are set by infra/test");
        let spec = apikeys_admin::tables::table_spec(TEMPLATE, apikeys_admin::tables::KEYS_TABLE)
            .expect("template table");
        apikeys_admin::tables::create_table(&base, &table, &spec)
            .await
            .expect("create table");
        let counter = RequestCounter::default();
        let client = counter.instrument(&base);
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        ));
        let store = Store::new(client.clone(), table.clone())
            .with_change_limit(config.store.changes_per_minute);
        let service = ApiKeys::new(store, clock.clone(), config);
        let settings = apikeys_graphql::Settings::from_env(&apikeys_platform::Env::from_map(&env))
            .expect("test settings");
        let app = App::new(service, settings);
        let mut harness = Self {
            app,
            clock,
            counter,
            client: base,
            table,
            tenant: TenantFixture {
                id: Uuid::nil(),
                slug: String::new(),
                name: String::new(),
                admin_id: Uuid::nil(),
                admin_membership_id: Uuid::nil(),
                admin_key: String::new(),
            },
        };
        harness.tenant = harness.add_tenant("acme", "alice").await;
        harness
    }

    pub fn service(&self) -> &ApiKeys {
        self.app.service()
    }

    /// The service as another function of the same deployment builds it
    /// (the authorizer): same table, clock, configuration and counted client.
    pub fn service_copy(&self) -> ApiKeys {
        ApiKeys::new(
            self.service().store().clone(),
            self.clock.clone(),
            self.service().config().clone(),
        )
    }

    /// Another instance of the function on the same table, reaching DynamoDB
    /// at `endpoint` (e.g. through the fault proxy), with more settings.
    /// Its requests are counted by the returned counter.
    pub fn app_via(&self, endpoint: &str, extra: &[(&str, &str)]) -> (App, RequestCounter) {
        let mut env = HashMap::from([
            ("TABLE_NAME".to_string(), self.table.clone()),
            ("DYNAMODB_ENDPOINT".to_string(), endpoint.to_string()),
            ("CHANGES_PER_MINUTE".to_string(), "0".to_string()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_map(&env).expect("test config");
        let counter = RequestCounter::default();
        let client = counter.instrument(&dynamodb_client(&config.store).expect("client"));
        let store = Store::new(client, self.table.clone())
            .with_change_limit(config.store.changes_per_minute);
        let service = ApiKeys::new(store, self.clock.clone(), config);
        let settings = apikeys_graphql::Settings::from_env(&apikeys_platform::Env::from_map(&env))
            .expect("test settings");
        (App::new(service, settings), counter)
    }

    pub fn now(&self) -> OffsetDateTime {
        self.service().now()
    }

    /// An audit record of `action` about `target` in `acme`, by the
    /// operator: what a store write made by a test carries.
    pub fn audit(
        &self,
        action: apikeys_core::audit::AuditAction,
        target: Uuid,
    ) -> apikeys_core::audit::AuditRecord {
        use apikeys_core::audit::{AuditActor, AuditEvent, TargetType};
        let event = AuditEvent::new(
            action,
            AuditActor::operator(),
            TargetType::ApiKey,
            target,
            None,
        );
        self.service().audit(self.tenant.id, event)
    }

    pub async fn add_tenant(&self, slug: &str, admin: &str) -> TenantFixture {
        let name = format!("{slug} Inc");
        let user = NewUser {
            username: admin,
            email: Some("admin@example.com"),
        };
        let made = self
            .service()
            .create_tenant(&name, slug, user, "first key")
            .await
            .expect("create tenant");
        TenantFixture {
            id: made.tenant.id,
            slug: slug.to_string(),
            name,
            admin_id: made.admin.user_id,
            admin_membership_id: made.admin.id,
            admin_key: made.secret.expose_secret().to_string(),
        }
    }

    /// Adds `username` to the tenant `slug` with `role` and issues a key.
    pub async fn add_member(&self, slug: &str, username: &str, role: Role) -> MemberFixture {
        let user = NewUser {
            username,
            email: None,
        };
        let member = self
            .service()
            .add_member(slug, user, role)
            .await
            .expect("add member");
        let request = KeyRequest {
            name: "issued",
            expires_at: None,
            role_ceiling: None,
            allowed_networks: Vec::new(),
            scopes: Vec::new(),
        };
        let (_, secret) = self
            .service()
            .issue_key(slug, username, request)
            .await
            .expect("issue key");
        MemberFixture {
            user_id: member.user_id,
            membership_id: member.id,
            key: secret.expose_secret().to_string(),
        }
    }

    /// Sends one request through the real handler as a REST API event.
    pub async fn send(&self, route: Route, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        self.send_method(route, "POST", body, headers).await
    }

    /// A POST from the address `source`, as API Gateway saw it.
    pub async fn send_from(
        &self,
        route: Route,
        body: &[u8],
        headers: &[(&str, &str)],
        source: &str,
    ) -> Reply {
        let request = event_from(route, "POST", body, headers, Some(source));
        let response = apikeys_graphql::handle(&self.app, request).await;
        Reply::of(&response)
    }

    pub async fn send_method(
        &self,
        route: Route,
        method: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Reply {
        let response =
            apikeys_graphql::handle(&self.app, event(route, method, body, headers)).await;
        Reply::of(&response)
    }

    /// A Prefect-client-style call with `key`: asserts HTTP 200, returns the JSON.
    pub async fn gql(&self, key: &str, query: &str, variables: Option<Value>) -> Value {
        let auth = format!("Bearer {key}");
        let reply = self
            .send(
                Route::RestGraphql,
                &prefect_body(query, variables),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json
    }

    /// Like [`gql`], but asserts success (no `errors` key) and returns `data`.
    pub async fn data(&self, key: &str, query: &str, variables: Option<Value>) -> Value {
        let reply = self.gql(key, query, variables).await;
        assert!(reply.get("errors").is_none(), "unexpected errors: {reply}");
        reply["data"].clone()
    }

    /// A service account of `acme` created by its admin, with one key.
    pub async fn add_service_account(&self, name: &str) -> (Uuid, String) {
        let created = self
            .data(
                &self.tenant.admin_key,
                "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
                Some(json!({"input": {"name": name}})),
            )
            .await;
        let id: Uuid = serde_json::from_value(created["create_service_account"]["id"].clone())
            .expect("a service account id");
        let made = self
            .create_key(&self.tenant.admin_key, id, name, None)
            .await;
        let key = made["data"]["create_api_key"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key: {made}"))
            .to_string();
        (id, key)
    }

    pub async fn create_key(
        &self,
        key: &str,
        user_id: Uuid,
        name: &str,
        expires_at: Option<&str>,
    ) -> Value {
        self.gql(
            key,
            "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key token } }",
            Some(json!({"input": {"name": name, "user_id": user_id.to_string(), "expires_at": expires_at}})),
        )
        .await
    }

    /// Issues `count` keys in tenant `acme`, the i-th expiring `i + 1`
    /// seconds after `t0`, spread over new members `expiring-N` (39 each: the
    /// per-owner limit of 40 less the key a new member is issued). Returns
    /// their secrets.
    pub async fn add_expiring_keys(&self, count: usize, t0: OffsetDateTime) -> Vec<String> {
        let mut secrets = Vec::with_capacity(count);
        for i in 0..count {
            let user = format!("expiring-{}", i / 39);
            if i % 39 == 0 {
                self.add_member("acme", &user, Role::User).await;
            }
            let request = KeyRequest {
                name: "expiring",
                expires_at: Some(t0 + Duration::seconds(i as i64 + 1)),
                role_ceiling: None,
                allowed_networks: Vec::new(),
                scopes: Vec::new(),
            };
            let (_, secret) = self
                .service()
                .issue_key("acme", &user, request)
                .await
                .expect("issue key");
            secrets.push(secret.expose_secret().to_string());
        }
        secrets
    }

    /// A new key of `owner` in `acme`, made now (not written): what a test
    /// writes through the store itself.
    pub fn stored_key(
        &self,
        name: &str,
        owner: Uuid,
        owner_type: AccountType,
        expires_at: Option<OffsetDateTime>,
    ) -> StoredKey {
        let secret = NewKey::generate("apk");
        StoredKey {
            key: ApiKey {
                id: Uuid::new_v4(),
                name: name.to_string(),
                tenant_id: self.tenant.id,
                owner_id: owner,
                owner_type,
                created: self.now(),
                created_by: owner,
                created_by_name: None,
                expires_at,
                hint: secret.hint(),
                created_by_key_id: None,
                rotated_from: None,
                replaced_by: None,
                role_ceiling: None,
                disabled: false,
                allowed_networks: Vec::new(),
                scopes: Vec::new(),
                leaked: false,
                last_used: None,
            },
            hash: secret.hash(),
            copy: None,
        }
    }

    /// Writes `count` keys of `owner` straight into the table (25 items a
    /// request, bypassing the per-owner limit): half of them expiring within
    /// the next two days, half never. For measuring cost at scale.
    pub async fn seed_keys(&self, owner: Uuid, owner_type: AccountType, count: usize) -> Vec<Uuid> {
        let now = self.now();
        let mut requests = Vec::new();
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let expires = (i % 2 == 0).then(|| now + Duration::minutes(10 + (i as i64 % 2880)));
            let stored = self.stored_key(&format!("seeded {i}"), owner, owner_type, expires);
            ids.push(stored.key.id);
            let (listing, lookup) = key_items(&stored);
            for item in [listing, lookup] {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .expect("put request");
                requests.push(WriteRequest::builder().put_request(put).build());
            }
        }
        // 16 writers, each sending its share of 25-item batches in turn.
        let batches: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[_]>::to_vec).collect();
        let per_writer = batches.len().div_ceil(16).max(1);
        let tasks: Vec<_> = batches
            .chunks(per_writer)
            .map(|share| {
                let (client, table, share) =
                    (self.client.clone(), self.table.clone(), share.to_vec());
                tokio::spawn(async move {
                    for mut pending in share {
                        while !pending.is_empty() {
                            let out = client
                                .batch_write_item()
                                .request_items(&table, pending)
                                .send()
                                .await
                                .expect("batch write");
                            pending = out
                                .unprocessed_items
                                .and_then(|mut m| m.remove(&table))
                                .unwrap_or_default();
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("seeding task");
        }
        ids
    }

    /// Sets a member's `key_count` to `ids.len()` and, with `indexed`, its
    /// key index to `ids` (what the service's writes keep); without, the
    /// membership looks as an earlier version left it (no index, never
    /// verified): for keys written by [`Harness::seed_keys`].
    pub async fn count_keys(&self, tenant: Uuid, member: Uuid, ids: &[Uuid], indexed: bool) {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(tenant.to_string()))
            .key("sk", AttributeValue::S(format!("member#{member}")))
            .expression_attribute_values(":n", AttributeValue::N(ids.len().to_string()));
        let mut sets = vec!["key_count = :n".to_string()];
        if indexed {
            update = update.expression_attribute_values(":one", AttributeValue::N("1".into()));
            for (i, id) in ids.iter().enumerate() {
                sets.push(format!("#k{i} = :one"));
                update = update
                    .expression_attribute_names(format!("#k{i}"), format!("kid_{}", id.simple()));
            }
        }
        let unverified = if indexed { "" } else { " REMOVE kidx" };
        update
            .update_expression(format!("SET {}{unverified}", sets.join(", ")))
            .send()
            .await
            .expect("count keys");
    }

    /// Every item of the table (a Scan: test-only, to prove what was written).
    pub async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Checks the table's invariants: every key has both items, every key's
    /// owner is a member, no membership holds a lease (call it when no
    /// request is running), every member's `key_count` matches its keys, and
    /// what each hash item copies (role, member, tenant) agrees with them.
    /// Returns the number of keys.
    pub async fn assert_consistent(&self) -> usize {
        let items = self.items().await;
        let s = |item: &HashMap<String, AttributeValue>, k: &str| -> String {
            match item.get(k) {
                Some(AttributeValue::S(v)) => v.clone(),
                Some(AttributeValue::N(v)) => v.clone(),
                _ => String::new(),
            }
        };
        let mut listing = HashMap::new();
        let mut lookups = HashMap::new();
        let mut members = HashMap::new();
        // Sessions: their items, and the entries on their memberships.
        let mut sessions = BTreeMap::new();
        let mut listed_sessions = BTreeMap::new();
        for item in &items {
            let (pk, sk) = (s(item, "pk"), s(item, "sk"));
            if sk == "hash" && s(item, "kind") == "session" {
                // A person's session in no tenant is listed nowhere.
                if s(item, "tenant_id").is_empty() {
                    continue;
                }
                sessions.insert(
                    s(item, "session_id"),
                    (
                        s(item, "tenant_id"),
                        s(item, "user_id"),
                        pk.trim_start_matches("hash#").to_string(),
                    ),
                );
                continue;
            }
            if sk.starts_with("member#") {
                for (name, value) in item {
                    if let (Some(id), AttributeValue::S(entry)) =
                        (name.strip_prefix("sess_"), value)
                    {
                        let hash = entry.split(' ').next().unwrap_or_default().to_string();
                        listed_sessions
                            .insert(id.to_string(), (pk.clone(), s(item, "user_id"), hash));
                    }
                }
            }
            if sk.starts_with("ukey#") || sk.starts_with("skey#") {
                listing.insert(
                    s(item, "hash"),
                    (pk.clone(), s(item, "owner_id"), s(item, "key_id")),
                );
            } else if sk == "hash" {
                lookups.insert(
                    pk.trim_start_matches("hash#").to_string(),
                    (s(item, "tenant_id"), s(item, "owner_id"), s(item, "key_id")),
                );
            } else if sk.starts_with("member#") {
                members.insert((pk.clone(), s(item, "user_id")), s(item, "key_count"));
                // No lease outlives the request that took it (one whose
                // release a fault prevented ends by itself: call this past
                // its end), nor a mark of an earlier version.
                let now = self.now().unix_timestamp();
                let held = s(item, "lease_until")
                    .parse::<i64>()
                    .is_ok_and(|until| until >= now);
                assert!(
                    !held,
                    "member {} still holds a lease after every request ended",
                    s(item, "username")
                );
                for mark in ["removing", "changing"] {
                    assert!(
                        !item.contains_key(mark),
                        "member {} still has the mark {mark}",
                        s(item, "username")
                    );
                }
            }
        }
        assert_eq!(
            sessions, listed_sessions,
            "sessions and their memberships' listings differ"
        );
        assert_eq!(
            listing.len(),
            lookups.len(),
            "keys and hash lookups differ in number"
        );
        for (hash, (tenant, owner, key_id)) in &listing {
            assert_eq!(
                lookups.get(hash),
                Some(&(tenant.clone(), owner.clone(), key_id.clone())),
                "key {key_id} has no matching hash lookup"
            );
            assert!(
                members.contains_key(&(tenant.clone(), owner.clone())),
                "key {key_id} is an orphan: owner {owner} is not a member"
            );
        }
        // Every copy authentication reads agrees with its source of truth.
        let tenants: HashMap<String, (String, String)> = items
            .iter()
            .filter(|item| s(item, "sk") == "tenant")
            .map(|item| (s(item, "pk"), (s(item, "name"), s(item, "slug"))))
            .collect();
        let member_items: HashMap<(String, String), &HashMap<String, AttributeValue>> = items
            .iter()
            .filter(|item| s(item, "sk").starts_with("member#"))
            .map(|item| ((s(item, "pk"), s(item, "user_id")), item))
            .collect();
        for item in items
            .iter()
            .filter(|item| s(item, "sk") == "hash" && s(item, "copy_v") == "1")
        {
            // A person's session carries the same copy, of its user.
            let (key_id, owner) = match s(item, "kind").as_str() {
                "session" => (s(item, "session_id"), s(item, "user_id")),
                _ => (s(item, "key_id"), s(item, "owner_id")),
            };
            let member = member_items
                .get(&(s(item, "tenant_id"), owner))
                .unwrap_or_else(|| panic!("key or session {key_id}: no membership"));
            for (copied, source) in [
                ("member_role", "member_role"),
                ("membership_id", "membership_id"),
                ("username", "username"),
                ("email", "email"),
            ] {
                assert_eq!(
                    s(item, copied),
                    s(member, source),
                    "key {key_id}: the copied {copied} disagrees with the membership"
                );
            }
            let tenant = tenants
                .get(&s(item, "tenant_id"))
                .expect("the key's tenant");
            assert_eq!(
                (s(item, "tenant_name"), s(item, "tenant_slug")),
                tenant.clone(),
                "key {key_id}: the copied tenant disagrees with the tenant"
            );
        }
        for ((tenant, user), count) in &members {
            let held = listing
                .values()
                .filter(|(t, o, _)| t == tenant && o == user)
                .count();
            assert_eq!(count, &held.to_string(), "key_count of {user} is wrong");
        }
        // A service account's key index names exactly its keys.
        for ((tenant, user), member) in &member_items {
            if s(member, "account_type") != "service" {
                continue;
            }
            let indexed: std::collections::BTreeSet<String> = member
                .keys()
                .filter_map(|name| name.strip_prefix("kid_"))
                .map(|id| uuid::Uuid::parse_str(id).expect("kid_ uuid").to_string())
                .collect();
            let held: std::collections::BTreeSet<String> = listing
                .values()
                .filter(|(t, o, _)| t == tenant && o == user)
                .map(|(_, _, key_id)| key_id.clone())
                .collect();
            assert_eq!(
                indexed, held,
                "the key index of service account {user} is wrong"
            );
        }
        listing.len()
    }
}

/// The DynamoDB requests of one sweep that finds 50 expired keys among
/// `live` others (a fresh table; a first sweep sets the checkpoint, as the
/// schedule would have). Returns the report and the requests by operation.
pub async fn sweep_cost(live: usize) -> (SweepReport, BTreeMap<String, u64>) {
    let h = Harness::new().await;
    h.seed_keys(h.tenant.admin_id, AccountType::User, live)
        .await;
    let t0 = h.now();
    h.add_expiring_keys(50, t0).await;
    let sweeper = Sweeper::new(h.service().store().clone());
    sweeper.sweep(t0, None).await.expect("first sweep");
    h.counter.reset();
    let report = sweeper
        .sweep(t0 + Duration::minutes(1), None)
        .await
        .expect("sweep");
    (report, h.counter.snapshot())
}

/// `key` with the character `from_end` places from its end changed.
pub fn mistyped(key: &str, from_end: usize) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let at = bytes.len() - from_end;
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("keys are ASCII")
}

/// Everything a tracing subscriber wrote, for tests that read the logs.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Reply {
    /// A handler's answer, read.
    fn of(response: &lambda_http::Response<lambda_http::Body>) -> Self {
        let body = String::from_utf8(response.body().to_vec()).expect("utf-8 body");
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            body,
        }
    }
}

/// The UNAUTHENTICATED envelope the Prefect client expects (docs/API.md, "The
/// GraphQL API"), exactly, with any of the reasons a refusal may name.
pub fn unauthenticated() -> Unauthenticated {
    Unauthenticated(None)
}

/// The same envelope, with exactly this `extensions.reason`.
pub fn unauthenticated_because(reason: &'static str) -> Unauthenticated {
    Unauthenticated(Some(reason))
}

/// What [`unauthenticated`] compares equal to: the envelope, and a known
/// reason (the given one, when given).
#[derive(Clone, Debug)]
pub struct Unauthenticated(Option<&'static str>);

impl Unauthenticated {
    fn matches(&self, reply: &Value) -> bool {
        let reason = reply["errors"][0]["extensions"]["reason"]
            .as_str()
            .unwrap_or("");
        let known = apikeys_core::refusal::Refusal::ALL
            .iter()
            .any(|r| r.code() == reason);
        let wanted = self.0.is_none_or(|w| w == reason);
        let envelope = json!({"errors":[{"message":"Unauthenticated","extensions":{
            "code":"UNAUTHENTICATED","reason": reason}}],"data":null});
        known && wanted && *reply == envelope
    }
}

impl PartialEq<Unauthenticated> for Value {
    fn eq(&self, other: &Unauthenticated) -> bool {
        other.matches(self)
    }
}

impl PartialEq<Value> for Unauthenticated {
    fn eq(&self, other: &Value) -> bool {
        self.matches(other)
    }
}

/// The `extensions.code` of the first error.
pub fn error_code(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}
