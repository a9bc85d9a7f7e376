//! Faults between the function and DynamoDB: a proxy that resets, stalls,
//! throttles, conflicts and answers 5xx, under a mixed workload. Whatever
//! happens, every answer comes within the deadline, no write is reported
//! done that did not apply, no transient fault is reported as a domain answer
//! ("not found", "forbidden", `success: false`, "Unauthenticated"), and the
//! table's invariants hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apikeys_core::audit::AuditAction;
use apikeys_core::domain::Role;
use apikeys_graphql::App;
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use apikeys_tests::metrics::RequestCounter;
use apikeys_tests::{endpoint, event, prefect_body, Harness, Route};
use aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::CaptureSmithyConnection;
use serde_json::{json, Value};
use uuid::Uuid;

/// Small limits, so that a stall costs about a second. An attempt may take
/// 800 ms: the local DynamoDB, busy with the tests running beside these,
/// answers a request delayed by 150 ms well within it.
const LIMITS: &[(&str, &str)] = &[
    ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "800"),
    ("DYNAMODB_OPERATION_TIMEOUT_MS", "2000"),
    ("REQUEST_TIMEOUT_MS", "4000"),
];
const REQUEST_TIMEOUT: Duration = Duration::from_millis(4000);

const CREATE: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }";
const REVOKE: &str =
    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";
const CREATE_SA: &str = "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }";
const DELETE_SA: &str = "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success } }";
const ROTATE: &str =
    "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id key } }";
const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";

/// One answer, as a client sees it.
#[derive(Debug)]
struct Seen {
    status: u16,
    json: Value,
    elapsed: Duration,
}

impl Seen {
    fn code(&self) -> &str {
        self.json["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
    }

    fn ok(&self) -> bool {
        self.status == 200 && self.json.get("errors").is_none()
    }

    /// A transient failure told as one: retryable (503), a write whose
    /// outcome is unknown, or a member held by a change that a fault cut
    /// short (its lease ends by itself).
    fn honest_failure(&self) -> bool {
        (self.status == 503 && self.code() == "SERVICE_UNAVAILABLE")
            || (self.status == 200 && self.code() == "OUTCOME_UNKNOWN")
            || (self.status == 200 && self.code() == "MEMBER_BUSY")
    }
}

async fn call(app: &App, key: &str, query: &str, vars: Option<Value>) -> Seen {
    let auth = format!("Bearer {key}");
    let started = Instant::now();
    let request = event(
        Route::RestGraphql,
        "POST",
        &prefect_body(query, vars),
        &[("Authorization", &auth)],
    );
    let response = apikeys_graphql::handle(app, request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let json = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    if status == 503 {
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
    Seen {
        status,
        json,
        elapsed,
    }
}

fn expect(seen: &Seen, what: &str, success: impl Fn(&Value) -> bool) {
    assert!(
        seen.elapsed < REQUEST_TIMEOUT,
        "{what}: answered after {:?}",
        seen.elapsed
    );
    assert!(
        (seen.ok() && success(&seen.json["data"])) || seen.honest_failure(),
        "{what}: a transient fault was answered as {} {}",
        seen.status,
        seen.json
    );
}

struct World {
    h: Harness,
    app: App,
    counter: RequestCounter,
    proxy: FaultProxy,
}

async fn world() -> World {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, 42)
        .await
        .expect("proxy");
    let (app, counter) = h.app_via(&proxy.endpoint(), LIMITS);
    World {
        h,
        app,
        counter,
        proxy,
    }
}

/// Does `key` authenticate, asked directly (no proxy)?
async fn works(h: &Harness, key: &str) -> bool {
    h.service().authenticate(Some(key), None).await.is_ok()
}

#[tokio::test]
async fn a_mixed_workload_at_a_30_percent_fault_rate_answers_truthfully_in_time() {
    let w = Arc::new(world().await);
    let bob = w.h.add_member("acme", "bob", Role::User).await;
    w.proxy.set_plan(Plan::Random {
        rate: 0.3,
        faults: Fault::ALL.to_vec(),
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let w = Arc::clone(&w);
            let bob = bob.clone();
            tokio::spawn(async move { workload(&w, worker, &bob).await })
        })
        .collect();
    let mut requests = 0;
    for worker in workers {
        requests += worker.await.expect("worker");
    }
    w.proxy.set_plan(Plan::Off);
    let counts = w.proxy.counts();
    eprintln!(
        "{requests} requests in {:?}; DynamoDB requests through the proxy: {counts:?}; sent by the SDK: {:?}",
        started.elapsed(),
        w.counter.snapshot()
    );
    for fault in Fault::ALL {
        if fault != Fault::TransactionConflict {
            assert!(
                counts.get(fault.name()).is_some_and(|n| *n > 0),
                "{fault:?} never injected"
            );
        }
    }
    // A lease whose release a fault prevented ends by itself.
    w.h.clock
        .set(w.h.now() + apikeys_service::LEASE + time::Duration::seconds(1));
    w.h.assert_consistent().await;
    // Every change has exactly one audit record, and no record is without
    // its change: the workers' keys alive now are those whose creation was
    // recorded less those whose revocation was (a rotation replaces a key
    // one for one, with one record).
    let mut records = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page =
            w.h.service()
                .audit_log_of("acme", 100, before.as_deref())
                .await
                .expect("the log");
        let Some((_, last)) = page.last() else {
            break;
        };
        before = Some(last.as_text());
        records.extend(page);
    }
    let workers_key = |name: &Option<String>| name.as_deref().is_some_and(|n| n.starts_with('w'));
    let count = |action: AuditAction| {
        records
            .iter()
            .filter(|(r, _)| r.action == action && workers_key(&r.target_name))
            .count()
    };
    let alive =
        w.h.service()
            .store()
            .keys_of_user(w.h.tenant.id, w.h.tenant.admin_id)
            .await
            .unwrap()
            .iter()
            .filter(|k| k.key.name.starts_with('w'))
            .count();
    assert_eq!(
        count(AuditAction::KeyCreated) - count(AuditAction::KeyRevoked),
        alive,
        "audit records and keys disagree: {} created, {} revoked, {} rotated, {alive} alive",
        count(AuditAction::KeyCreated),
        count(AuditAction::KeyRevoked),
        count(AuditAction::KeyRotated),
    );
    eprintln!(
        "audit: {} created, {} rotated, {} revoked, {alive} alive",
        count(AuditAction::KeyCreated),
        count(AuditAction::KeyRotated),
        count(AuditAction::KeyRevoked)
    );
}

/// One worker's share: every operation kind, checked against the truth.
async fn workload(w: &World, worker: usize, bob: &apikeys_tests::MemberFixture) -> usize {
    let (h, app) = (&w.h, &w.app);
    let admin = h.tenant.admin_key.clone();
    let mut requests = 0;
    for round in 0..12 {
        requests += 7;
        let seen = call(app, &admin, "query { auth_info { tenant_id } }", None).await;
        expect(&seen, "auth_info", |d| {
            d["auth_info"]["tenant_id"] == json!(h.tenant.id.to_string())
        });

        let name = format!("w{worker}-r{round}");
        let vars = json!({"input": {"name": name, "user_id": h.tenant.admin_id.to_string()}});
        let seen = call(app, &admin, CREATE, Some(vars)).await;
        expect(&seen, "create_api_key", |d| {
            d["create_api_key"]["key"].is_string()
        });
        if seen.ok() {
            let key = seen.json["data"]["create_api_key"]["key"]
                .as_str()
                .unwrap_or("");
            assert!(works(h, key).await, "a created key does not work");
            let mut id = seen.json["data"]["create_api_key"]["id"].clone();
            let mut key = key.to_string();
            // Rotated at once: the new key works, the old does not.
            let vars = json!({"input": {"key_id": id, "grace_period_seconds": 0}});
            let seen = call(app, &admin, ROTATE, Some(vars)).await;
            expect(&seen, "rotate_api_key", |d| {
                d["rotate_api_key"]["key"].is_string()
            });
            if seen.ok() {
                assert!(!works(h, &key).await, "a key rotated at once still works");
                key = seen.json["data"]["rotate_api_key"]["key"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                assert!(
                    works(h, &key).await,
                    "a rotated key's replacement does not work"
                );
                id = seen.json["data"]["rotate_api_key"]["id"].clone();
            }
            let key = key.as_str();
            // A rotation whose outcome is unknown may have replaced the key
            // (the old one gone, its id unknown to us): "not found" is then
            // the truth about the old id.
            let maybe_rotated = seen.code() == "OUTCOME_UNKNOWN";
            let seen = call(app, &admin, REVOKE, Some(json!({"input": {"key_id": id}}))).await;
            expect(&seen, "delete_api_key", |d| {
                d["delete_api_key"]["success"] == json!(true)
                    || (maybe_rotated && d["delete_api_key"]["success"] == json!(false))
            });
            if seen.ok() {
                assert!(!works(h, key).await, "a revoked key still works");
            }
        }

        let seen = call(
            app,
            &bob.key,
            "query { auth_api_key { id } tenant { slug } }",
            None,
        )
        .await;
        expect(&seen, "auth_api_key", |d| d["tenant"][0]["slug"] == "acme");

        let vars = json!({"input": {"name": format!("bot-{worker}-{round}")}});
        let seen = call(app, &admin, CREATE_SA, Some(vars)).await;
        expect(&seen, "create_service_account", |d| {
            d["create_service_account"]["id"].is_string()
        });
        if seen.ok() {
            let id: Uuid =
                serde_json::from_value(seen.json["data"]["create_service_account"]["id"].clone())
                    .unwrap();
            assert!(h
                .service()
                .store()
                .membership(h.tenant.id, id)
                .await
                .unwrap()
                .is_some());
            let seen = call(
                app,
                &admin,
                DELETE_SA,
                Some(json!({"input": {"user_id": id}})),
            )
            .await;
            expect(&seen, "delete_service_account", |d| {
                d["delete_service_account"]["success"] == json!(true)
            });
            if seen.ok() {
                assert!(h
                    .service()
                    .store()
                    .membership(h.tenant.id, id)
                    .await
                    .unwrap()
                    .is_none());
            }
        }

        let role = if round % 2 == 0 {
            Role::ReadOnlyUser
        } else {
            Role::User
        };
        let vars = json!({"input": {"membership_id": bob.membership_id, "role_id": role.id()}});
        let seen = call(app, &admin, SET_ROLE, Some(vars)).await;
        expect(&seen, "set_membership_role", |d| {
            d["set_membership_role"]["id"].is_string()
        });
    }
    requests
}

/// What a client sees when exactly one DynamoDB request of an operation
/// fails with each fault, and when every one does: printed as a table.
#[tokio::test]
async fn each_fault_type_once_is_retried_away_and_always_is_an_honest_error() {
    let w = world().await;
    let admin = w.h.tenant.admin_key.clone();
    let mut rows = Vec::new();
    for fault in Fault::ALL {
        for (label, count) in [("once", 1u64), ("always", 1_000)] {
            for (operation, target) in [
                ("auth_info", "GetItem"),
                ("create_api_key", "TransactWriteItems"),
            ] {
                if fault == Fault::TransactionConflict && target != "TransactWriteItems" {
                    continue;
                }
                w.proxy.set_plan(Plan::FailNext {
                    count,
                    fault,
                    operation: Some(target),
                });
                w.counter.reset();
                let seen = if operation == "auth_info" {
                    call(&w.app, &admin, "query { auth_info { tenant_id } }", None).await
                } else {
                    let vars =
                        json!({"input": {"name": "f", "user_id": w.h.tenant.admin_id.to_string()}});
                    call(&w.app, &admin, CREATE, Some(vars)).await
                };
                w.proxy.set_plan(Plan::Off);
                let sent = w.counter.total();
                rows.push(format!(
                    "| {} | {label} | {operation} | {} | {} | {sent} | {} |",
                    fault.name(),
                    seen.status,
                    if seen.ok() { "ok" } else { seen.code() },
                    seen.elapsed.as_millis()
                ));
                assert!(
                    seen.elapsed < REQUEST_TIMEOUT,
                    "{fault:?} {label}: {:?}",
                    seen.elapsed
                );
                let success = |d: &Value| {
                    d["auth_info"]["tenant_id"].is_string()
                        || d["create_api_key"]["key"].is_string()
                };
                expect(&seen, operation, success);
                let harmless = matches!(fault, Fault::Delay);
                let ambiguous_write = operation == "create_api_key"
                    && matches!(fault, Fault::ResetAfter | Fault::Truncated);
                if label == "once" && !ambiguous_write {
                    // One failure is absorbed by a retry.
                    assert!(seen.ok(), "{fault:?} once on {operation}: {seen:?}");
                }
                if label == "always" && !harmless {
                    assert!(!seen.ok(), "{fault:?} always on {operation}: {seen:?}");
                }
                if seen.ok() && operation == "create_api_key" {
                    let key = seen.json["data"]["create_api_key"]["key"].as_str().unwrap();
                    assert!(works(&w.h, key).await);
                    let id = seen.json["data"]["create_api_key"]["id"].clone();
                    w.h.data(&admin, REVOKE, Some(json!({"input": {"key_id": id}})))
                        .await;
                }
            }
        }
    }
    eprintln!("| fault | how often | operation | status | code | DynamoDB requests sent | ms |");
    eprintln!("|---|---|---|---|---|---|---|");
    for row in rows {
        eprintln!("{row}");
    }
    w.h.assert_consistent().await;
}

#[tokio::test]
async fn a_stalled_database_is_answered_before_the_deadline() {
    let w = world().await;
    w.proxy.set_plan(Plan::Random {
        rate: 1.0,
        faults: vec![Fault::Stall],
    });
    for (query, vars) in [
        ("query { auth_info { tenant_id } }", None),
        (
            CREATE,
            Some(json!({"input": {"name": "s", "user_id": w.h.tenant.admin_id.to_string()}})),
        ),
    ] {
        let seen = call(&w.app, &w.h.tenant.admin_key, query, vars).await;
        assert!(seen.elapsed < REQUEST_TIMEOUT, "{:?}", seen.elapsed);
        assert!(seen.honest_failure(), "{seen:?}");
    }
}

/// Records whether the SDK can find the connection each answer came on.
#[derive(Debug, Default, Clone)]
struct ConnectionSeen(Arc<std::sync::Mutex<Vec<bool>>>);

impl Intercept for ConnectionSeen {
    fn name(&self) -> &'static str {
        "ConnectionSeen"
    }

    fn read_after_deserialization(
        &self,
        _context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let found = cfg
            .load::<CaptureSmithyConnection>()
            .and_then(CaptureSmithyConnection::get)
            .is_some();
        self.0.lock().unwrap().push(found);
        Ok(())
    }
}

/// After a transient error the SDK marks the connection it came on as not
/// reusable, which needs the connector to tell it which connection that was:
/// without it every such error logged "unable to mark the connection for
/// closure" and the connection went back to the pool.
#[tokio::test]
async fn the_sdk_finds_the_connection_of_every_answer_to_mark_it() {
    let w = world().await;
    let seen = ConnectionSeen::default();
    let client = w.h.service().store().client();
    let client = aws_sdk_dynamodb::Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(seen.clone())
            .build(),
    );
    for _ in 0..3 {
        client.list_tables().send().await.expect("list tables");
    }
    let found = seen.0.lock().unwrap().clone();
    assert!(found.len() >= 3, "{found:?}");
    assert!(
        found.iter().all(|f| *f),
        "a connection was not found: {found:?}"
    );
}

/// Init opens the DynamoDB connection, so the first request reuses it; with
/// `WARM_CONNECTION=false` init sends nothing.
#[tokio::test]
async fn init_opens_the_connection_the_first_request_uses() {
    let w = world().await;
    w.app.warm_up().await;
    assert_eq!(w.proxy.connections(), 1);
    assert_eq!(w.counter.snapshot().get("GetItem"), Some(&1));
    let seen = call(
        &w.app,
        &w.h.tenant.admin_key,
        "query { auth_info { role } }",
        None,
    )
    .await;
    assert!(seen.ok(), "{seen:?}");
    assert_eq!(
        w.proxy.connections(),
        1,
        "the first request opened another connection"
    );

    let mut limits = LIMITS.to_vec();
    limits.push(("WARM_CONNECTION", "false"));
    let (cold, counter) = w.h.app_via(&w.proxy.endpoint(), &limits);
    cold.warm_up().await;
    assert_eq!(counter.total(), 0);
}

/// The recording of a key's use is the one write a read makes: when it fails
/// or stalls, the answer is still the right one, within the recording's
/// bound, and nothing half-written stays; the next request records it.
#[tokio::test]
async fn a_failing_or_stalled_last_use_write_costs_only_itself() {
    let w = world().await;
    let bob = w.h.add_member("acme", "bob", Role::User).await;
    let last_used = || async {
        w.h.service()
            .authenticate(Some(&bob.key), None)
            .await
            .unwrap()
            .key_last_used
    };
    for fault in [Fault::Stall, Fault::InternalError, Fault::ResetBefore] {
        w.proxy.set_plan(Plan::FailNext {
            count: 1000,
            fault,
            operation: Some("TransactWriteItems"),
        });
        let seen = call(&w.app, &bob.key, "query { auth_info { role } }", None).await;
        assert!(seen.ok(), "{fault:?}: {} {}", seen.status, seen.json);
        assert_eq!(seen.json["data"]["auth_info"]["role"], "USER");
        assert!(
            seen.elapsed < apikeys_service::KEY_USE_WAIT + Duration::from_millis(500),
            "{fault:?}: the answer waited {:?} for a best-effort write",
            seen.elapsed
        );
        assert_eq!(
            last_used().await,
            None,
            "{fault:?}: a failed recording left a value"
        );
    }
    w.proxy.set_plan(Plan::Off);
    let seen = call(&w.app, &bob.key, "query { auth_info { role } }", None).await;
    assert!(seen.ok());
    assert_eq!(last_used().await, Some(w.h.now()));
    w.h.assert_consistent().await;
}

/// A write DynamoDB applied and then answered 500 for has an unknown
/// outcome: it is never answered as "nothing changed, try again" (503),
/// after which a client's retry of a rotation with no grace found its own
/// rotation done and was told "API key not found" (the old key gone, the
/// new one never shown).
#[tokio::test]
async fn a_write_answered_500_after_it_applied_is_an_unknown_outcome_never_a_refusal() {
    let w = world().await;
    let admin = w.h.tenant.admin_key.clone();
    let made =
        w.h.create_key(&admin, w.h.tenant.admin_id, "ci", None)
            .await;
    let (id, old) = (
        made["data"]["create_api_key"]["id"].clone(),
        made["data"]["create_api_key"]["key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    // Every attempt applied (the first) or replayed, and answered 500.
    w.proxy.set_plan(Plan::FailNext {
        count: 10,
        fault: Fault::InternalErrorAfter,
        operation: Some("TransactWriteItems"),
    });
    let seen = call(
        &w.app,
        &admin,
        ROTATE,
        Some(json!({"input": {"key_id": id, "grace_period_seconds": 0}})),
    )
    .await;
    w.proxy.set_plan(Plan::Off);
    assert_eq!(
        (seen.status, seen.code()),
        (200, "OUTCOME_UNKNOWN"),
        "{}",
        seen.json
    );
    // It did apply: the old key stopped, as a rotation with no grace does.
    assert!(!works(&w.h, &old).await);
    // The same for a conditional UpdateItem (a lease taken, then a 500):
    // never "busy" for a member that its own attempt holds.
    let bob = w.h.add_member("acme", "bob", Role::User).await;
    w.proxy.set_plan(Plan::FailNext {
        count: 1,
        fault: Fault::InternalErrorAfter,
        operation: Some("UpdateItem"),
    });
    let seen = call(
        &w.app,
        &admin,
        SET_ROLE,
        Some(json!({"input": {"membership_id": bob.membership_id, "role_id": Role::ReadOnlyUser.id()}})),
    )
    .await;
    w.proxy.set_plan(Plan::Off);
    assert!(
        seen.ok() || ["OUTCOME_UNKNOWN", "SERVICE_UNAVAILABLE"].contains(&seen.code()),
        "{}",
        seen.json
    );
    w.h.clock
        .set(w.h.now() + apikeys_service::LEASE + time::Duration::seconds(1));
    w.h.assert_consistent().await;
}

/// Time is judged after the key's read: a key that expires while its hash
/// item is being read (a slow answer, retries) is refused as expired, not
/// admitted by the time the request began.
#[tokio::test]
async fn a_key_that_expires_while_it_is_read_is_refused_as_expired() {
    let w = world().await;
    let admin = w.h.tenant.admin_key.clone();
    let t0 = w.h.now();
    let expires = (t0 + time::Duration::seconds(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let made =
        w.h.create_key(&admin, w.h.tenant.admin_id, "short", Some(&expires))
            .await;
    let key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let query = "{ auth_info { api_key_id } }";
    assert!(call(&w.app, &key, query, None).await.ok());
    // The read is delayed 150 ms; 50 ms into it, the clock passes the expiry.
    w.proxy.set_plan(Plan::FailNext {
        count: 1,
        fault: Fault::Delay,
        operation: Some("GetItem"),
    });
    let clock = Arc::clone(&w.h.clock);
    let mover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.set(t0 + time::Duration::seconds(11));
    });
    let seen = call(&w.app, &key, query, None).await;
    mover.await.unwrap();
    w.proxy.set_plan(Plan::Off);
    assert_eq!(
        (
            seen.code(),
            seen.json["errors"][0]["extensions"]["reason"].as_str()
        ),
        ("UNAUTHENTICATED", Some("expired")),
        "{}",
        seen.json
    );
}
