//! Hostile requests: every attack form of the hardening review, driven
//! through the real handler, with the DynamoDB requests each one causes
//! counted by the SDK interceptor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use apikeys_core::domain::Role;
use apikeys_tests::{error_code, prefect_body, unauthenticated, Harness, MemberFixture, Route};
use serde_json::{json, Value};
use uuid::Uuid;

const CREATE_SA: &str = "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }";
const DELETE_SA: &str = "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success } }";
const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";
const DELETE_MEMBER: &str =
    "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }";
const REVOKE: &str =
    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";

/// `{...F<n> ... ...F0}` with F0 holding `leaf` and F<i> spreading F<i-1> twice.
fn doubling(top: usize, on: &str, leaf: &str) -> String {
    let spreads: String = (0..=top).rev().map(|i| format!("...F{i} ")).collect();
    let mut doc = format!("{{ {spreads}}}\nfragment F0 on {on} {{ {leaf} }}\n");
    for i in 1..=top {
        doc.push_str(&format!(
            "fragment F{i} on {on} {{ ...F{0} ...F{0} }}\n",
            i - 1
        ));
    }
    doc
}

/// One request with `key`; the reply and the DynamoDB requests it caused.
/// Prints both with the wall time (`--nocapture`), for the record.
/// The answer to one request and the DynamoDB requests it made, at steady
/// state: the key's use is recorded first (once per interval; its write is
/// not what these tests measure, `tests/lifecycle.rs` counts it).
async fn measured(h: &Harness, key: &str, query: &str, vars: Option<Value>) -> (Value, u64) {
    h.gql(key, "{ hello }", None).await;
    h.counter.reset();
    let started = Instant::now();
    let reply = h.gql(key, query, vars).await;
    let requests = h.counter.total();
    eprintln!(
        "{} bytes -> {} in {:?}, {requests} DynamoDB requests",
        query.len(),
        reply["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("ok"),
        started.elapsed()
    );
    (reply, requests)
}

/// Like `Harness::gql`, without asserting the status: under races a
/// transient answer (HTTP 503) is a correct one.
async fn answer(h: &Harness, key: &str, query: &str, vars: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let reply = h
        .send(
            Route::RestGraphql,
            &prefect_body(query, vars),
            &[("Authorization", &auth)],
        )
        .await;
    (reply.status, reply.json)
}

async fn churn_once(h: &Harness, key: &str, owner: Uuid, name: &str) {
    let create = "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id } }";
    let vars = json!({"input": {"name": name, "user_id": owner.to_string()}});
    let (_, made) = answer(h, key, create, Some(vars)).await;
    match made["data"]["create_api_key"]["id"].as_str() {
        Some(id) => {
            answer(h, key, REVOKE, Some(json!({"input": {"key_id": id}}))).await;
        }
        None => tokio::task::yield_now().await,
    }
}

/// Tasks creating and revoking a member's keys until stopped (each at most
/// `rounds` times).
struct Churn {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Churn {
    fn start(h: &Arc<Harness>, member: &MemberFixture, tasks: usize, rounds: u32) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|i| {
                let (h, key, stop) = (Arc::clone(h), member.key.clone(), Arc::clone(&stop));
                let owner = member.user_id;
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        churn_once(&h, &key, owner, &format!("churn{i}")).await;
                    }
                })
            })
            .collect();
        Churn { stop, tasks }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("churn task");
        }
    }
}

fn uuid_of(value: &Value) -> Uuid {
    serde_json::from_value(value.clone()).unwrap_or_else(|_| panic!("not a uuid: {value}"))
}

#[tokio::test]
async fn a_datetime_past_year_9999_in_utc_is_bad_input_not_a_crash() {
    let h = Harness::new().await;
    let reader = h.add_member("acme", "reader", Role::ReadOnlyUser).await;
    let query = "mutation($e: DateTime) { create_api_key(input: {user_id: \"00000000-0000-0000-0000-000000000000\", name: \"x\", expires_at: $e}) { id } }";
    for value in [
        "9999-12-31T23:59:59-00:01",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
    ] {
        let reply = h.gql(&reader.key, query, Some(json!({"e": value}))).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{value}: {reply}");
    }
    // The instance is alive and answers the next request.
    h.data(&reader.key, "query { hello }", None).await;
}

#[tokio::test]
async fn doubling_fragments_are_refused_before_any_read() {
    let h = Harness::new().await;
    let query = doubling(12, "Query", "a: user { id }");
    assert!(query.len() < 700, "{} bytes", query.len());
    let started = Instant::now();
    let (reply, requests) = measured(&h, &h.tenant.admin_key, &query, None).await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    assert_eq!(requests, 0);
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Query too complex"));
    eprintln!(
        "doubling fragments: {requests} requests, {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn per_member_fragments_are_refused_and_per_member_tenant_is_read_once() {
    let h = Harness::new().await;
    for i in 0..20 {
        h.add_member("acme", &format!("m{i}"), Role::User).await;
    }
    let attack = format!(
        "{{ user_view_same_tenant {{ memberships {{ ...F5 }} }} }}\nfragment F0 on membership {{ tenant {{ id }} }}\n{}",
        (1..=5)
            .map(|i| format!("fragment F{i} on membership {{ ...F{0} ...F{0} }}\n", i - 1))
            .collect::<String>()
    );
    let (reply, requests) = measured(&h, &h.tenant.admin_key, &attack, None).await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    assert_eq!(requests, 0);

    // The honest form of it: 21 members, each with its tenant.
    let query =
        "{ user_view_same_tenant { id memberships { tenant { id slug } role_detail { name } } } }";
    let (reply, requests) = measured(&h, &h.tenant.admin_key, query, None).await;
    let members = reply["data"]["user_view_same_tenant"].as_array().unwrap();
    assert_eq!(members.len(), 21);
    assert!(members
        .iter()
        .all(|m| m["memberships"][0]["tenant"]["slug"] == "acme"));
    // 1 GetItem to authenticate (the tenant comes with it), 1 Query of members.
    assert_eq!(requests, 2, "{:?}", h.counter.snapshot());
}

#[tokio::test]
async fn thousands_of_aliases_are_refused_and_twenty_cost_only_authentication() {
    let h = Harness::new().await;
    let aliases: String = (0..2400)
        .map(|i| format!("t{i}: tenant {{ id }} "))
        .collect();
    let query = format!("{{ {aliases} }}");
    assert!(query.len() < 64 * 1024);
    let (reply, requests) = measured(&h, &h.tenant.admin_key, &query, None).await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    assert_eq!(requests, 0);

    let aliases: String = (0..20).map(|i| format!("t{i}: tenant {{ id }} ")).collect();
    let (reply, requests) =
        measured(&h, &h.tenant.admin_key, &format!("{{ {aliases} }}"), None).await;
    assert_eq!(
        reply["data"]["t19"][0]["id"],
        json!(h.tenant.id.to_string())
    );
    assert_eq!(requests, 1, "{:?}", h.counter.snapshot());
}

#[tokio::test]
async fn every_read_of_a_query_is_made_once_however_often_it_is_asked_for() {
    let h = Harness::new().await;
    let query = "{ a: tenant { id } b: tenant { slug } me: user { id } u2: user { username }
        all: user_view_same_tenant { memberships { tenant { name } } }
        again: user_view_same_tenant { id }
        k1: auth_api_key { id } k2: auth_api_key(order_by: {name: desc}) { name }
        p1: key_policy { applied } p2: key_policy { scopes_required } ...P ...P }
        fragment P on Query { p3: key_policy { max_user_key_days } }";
    let (reply, requests) = measured(&h, &h.tenant.admin_key, query, None).await;
    assert!(reply.get("errors").is_none(), "{reply}");
    // 1 GetItem authenticates (and brings the caller and the tenant);
    // members 1 Query; keys: own + service (admin) 2 Queries; the key
    // policy 1 GetItem, however often it is asked.
    assert_eq!(requests, 5, "{:?}", h.counter.snapshot());
}

#[tokio::test]
async fn a_mutation_built_from_fragments_writes_nothing() {
    let h = Harness::new().await;
    let query = doubling(
        9,
        "Mutation",
        "create_service_account(input: {name: \"x\"}) { id }",
    );
    let before = h.items().await.len();
    let (reply, requests) = measured(
        &h,
        &h.tenant.admin_key,
        &query.replacen('{', "mutation {", 1),
        None,
    )
    .await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    assert_eq!(requests, 0);
    assert_eq!(h.items().await.len(), before);

    let five: String = (0..5)
        .map(|i| format!("m{i}: create_service_account(input: {{name: \"bot{i}\"}}) {{ id }} "))
        .collect();
    let data = h
        .data(&h.tenant.admin_key, &format!("mutation {{ {five} }}"), None)
        .await;
    assert_eq!(data.as_object().unwrap().len(), 5);
    let six = format!(
        "mutation {{ {five} m5: create_service_account(input: {{name: \"bot5\"}}) {{ id }} }}"
    );
    let (reply, requests) = measured(&h, &h.tenant.admin_key, &six, None).await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    assert_eq!(requests, 0);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_read_only_users_admin_mutations_cost_no_lookup() {
    let h = Harness::new().await;
    let reader = h.add_member("acme", "reader", Role::ReadOnlyUser).await;
    let five: String = (0..5)
        .map(|i| {
            format!(
                "d{i}: delete_membership(input: {{membership_id: \"{}\"}}) {{ success }} ",
                Uuid::new_v4()
            )
        })
        .collect();
    let (reply, requests) =
        measured(&h, &reader.key, &format!("mutation {{ {five} }}"), None).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    // Authentication's one read, nothing else.
    assert_eq!(requests, 1, "{:?}", h.counter.snapshot());
    for (query, vars) in [
        (
            SET_ROLE,
            json!({"input": {"membership_id": h.tenant.admin_membership_id, "role_id": Role::ReadOnlyUser.id()}}),
        ),
        (DELETE_SA, json!({"input": {"user_id": Uuid::new_v4()}})),
    ] {
        let (_, requests) = measured(&h, &reader.key, query, Some(vars)).await;
        assert_eq!(requests, 1, "{query}: {:?}", h.counter.snapshot());
    }
}

#[tokio::test]
async fn service_accounts_per_tenant_are_capped_and_a_deleted_one_frees_its_place() {
    let h = Harness::with_env(&[("MAX_SERVICE_ACCOUNTS", "3")]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let data = h
            .data(
                &h.tenant.admin_key,
                CREATE_SA,
                Some(json!({"input": {"name": format!("bot{i}")}})),
            )
            .await;
        ids.push(uuid_of(&data["create_service_account"]["id"]));
    }
    let before = h.items().await;
    let reply = h
        .gql(
            &h.tenant.admin_key,
            CREATE_SA,
            Some(json!({"input": {"name": "one too many"}})),
        )
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    let message = reply["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("at most 3 service accounts"), "{message}");
    assert_eq!(h.items().await.len(), before.len());
    h.data(
        &h.tenant.admin_key,
        DELETE_SA,
        Some(json!({"input": {"user_id": ids[0]}})),
    )
    .await;
    h.data(
        &h.tenant.admin_key,
        CREATE_SA,
        Some(json!({"input": {"name": "replacement"}})),
    )
    .await;
    h.assert_consistent().await;
}

#[tokio::test]
async fn concurrent_service_account_creation_never_passes_the_cap() {
    let h = Arc::new(Harness::with_env(&[("MAX_SERVICE_ACCOUNTS", "4")]).await);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let vars = json!({"input": {"name": format!("racer{i}")}});
                answer(&h, &h.tenant.admin_key, CREATE_SA, Some(vars))
                    .await
                    .1
            })
        })
        .collect();
    let mut made = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.get("errors").is_none() {
            made += 1;
        } else {
            let code = error_code(&reply).to_string();
            assert!(
                code == "BAD_USER_INPUT" || code == "SERVICE_UNAVAILABLE",
                "{reply}"
            );
        }
    }
    assert!(made <= 4, "{made} service accounts past a cap of 4");
    let members = h
        .data(
            &h.tenant.admin_key,
            "{ user_view_same_tenant { account_type } }",
            None,
        )
        .await;
    let services = members["user_view_same_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["account_type"] == "SERVICE")
        .count();
    assert_eq!(services, made);
}

#[tokio::test]
async fn removal_wins_against_a_member_churning_its_own_keys() {
    let h = Arc::new(Harness::new().await);
    let churner = h.add_member("acme", "churner", Role::ReadOnlyUser).await;
    let churn = Churn::start(&h, &churner, 12, 400);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut outcomes = Vec::new();
    let removal = h
        .gql(
            &h.tenant.admin_key,
            DELETE_MEMBER,
            Some(json!({"input": {"membership_id": churner.membership_id}})),
        )
        .await;
    outcomes.push(removal.clone());
    churn.stop().await;
    assert_eq!(
        removal["data"]["delete_membership"]["success"],
        json!(true),
        "{outcomes:?}"
    );
    assert_eq!(
        h.gql(&churner.key, "query { hello }", None).await,
        unauthenticated()
    );
    h.assert_consistent().await;
    let left = h.items().await.iter().filter(|item| {
        matches!(item.get("owner_id"), Some(aws_sdk_dynamodb::types::AttributeValue::S(o)) if *o == churner.user_id.to_string())
    }).count();
    assert_eq!(left, 0, "keys of the removed member remain");
}

#[tokio::test]
async fn twenty_removals_under_churn_all_succeed() {
    // The review's form: 20 attempts, each against 12 churning tasks.
    let h = Arc::new(Harness::new().await);
    let mut removed = 0;
    for round in 0..20 {
        let m = h
            .add_member("acme", &format!("c{round}"), Role::ReadOnlyUser)
            .await;
        let churn = Churn::start(&h, &m, 12, u32::MAX);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let reply = h
            .gql(
                &h.tenant.admin_key,
                DELETE_MEMBER,
                Some(json!({"input": {"membership_id": m.membership_id}})),
            )
            .await;
        churn.stop().await;
        if reply["data"]["delete_membership"]["success"] == json!(true) {
            removed += 1;
        } else {
            panic!("round {round}: {reply}");
        }
    }
    assert_eq!(removed, 20);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_service_account_cannot_change_or_remove_people() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let carol = h.add_member("acme", "carol", Role::TenantAdmin).await;
    let (_, sa_key) = h.add_service_account("ci").await;
    // Its use recorded (once per interval): then nothing may change.
    h.gql(&sa_key, "{ hello }", None).await;
    let before = h.items().await;
    for (query, vars) in [
        (
            SET_ROLE,
            json!({"input": {"membership_id": bob.membership_id, "role_id": Role::TenantAdmin.id()}}),
        ),
        (
            SET_ROLE,
            json!({"input": {"membership_id": carol.membership_id, "role_id": Role::User.id()}}),
        ),
        (
            DELETE_MEMBER,
            json!({"input": {"membership_id": bob.membership_id}}),
        ),
        (
            DELETE_MEMBER,
            json!({"input": {"membership_id": h.tenant.admin_membership_id}}),
        ),
    ] {
        let reply = h.gql(&sa_key, query, Some(vars.clone())).await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{vars}: {reply}");
    }
    assert_eq!(h.items().await, before, "a service account changed people");
    // It keeps its power over service accounts.
    let other = uuid_of(
        &h.data(
            &sa_key,
            CREATE_SA,
            Some(json!({"input": {"name": "other"}})),
        )
        .await["create_service_account"]["id"],
    );
    let members = h
        .data(
            &sa_key,
            "{ user_view_same_tenant { id memberships { id } } }",
            None,
        )
        .await;
    let other_membership = members["user_view_same_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!(other.to_string()))
        .map(|m| m["memberships"][0]["id"].clone())
        .unwrap();
    let vars = json!({"input": {"membership_id": other_membership, "role_id": Role::User.id()}});
    h.data(&sa_key, SET_ROLE, Some(vars)).await;
    let vars = json!({"input": {"membership_id": other_membership}});
    let data = h.data(&sa_key, DELETE_MEMBER, Some(vars)).await;
    assert_eq!(data["delete_membership"]["success"], json!(true));
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_service_account_removing_itself_answers_alike_on_both_paths() {
    for path in ["delete_service_account", "delete_membership"] {
        let h = Harness::new().await;
        let (sa, sa_key) = h.add_service_account("ci").await;
        let me = h
            .data(&sa_key, "{ user { memberships { id } } }", None)
            .await;
        let reply = if path == "delete_service_account" {
            h.data(&sa_key, DELETE_SA, Some(json!({"input": {"user_id": sa}})))
                .await["delete_service_account"]["success"]
                .clone()
        } else {
            let id = me["user"][0]["memberships"][0]["id"].clone();
            h.data(
                &sa_key,
                DELETE_MEMBER,
                Some(json!({"input": {"membership_id": id}})),
            )
            .await["delete_membership"]["success"]
                .clone()
        };
        assert_eq!(reply, json!(true), "{path}");
        assert_eq!(
            h.gql(&sa_key, "query { hello }", None).await,
            unauthenticated(),
            "{path}"
        );
        h.assert_consistent().await;
    }
}

#[tokio::test]
async fn admin_writes_recheck_the_callers_role_in_their_transaction() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::TenantAdmin).await;
    let carol = h.add_member("acme", "carol", Role::User).await;
    let service = h.service();
    let bob_then = service.authenticate(Some(&bob.key), None).await.unwrap();
    let sa = service
        .create_service_account(&bob_then, "bot", None, None)
        .await
        .unwrap();
    let admin = service
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    let (sa_key, _) = service
        .create_api_key(
            &admin,
            sa,
            apikeys_service::KeyRequest {
                name: "k",
                expires_at: None,
                role_ceiling: None,
                allowed_networks: Vec::new(),
                scopes: Vec::new(),
            },
            None,
        )
        .await
        .unwrap();
    // Bob is demoted after his request authenticated as an admin.
    service
        .set_membership_role(&admin, bob.membership_id, Role::User.id())
        .await
        .unwrap();
    let before = h.items().await;
    let role = service
        .set_membership_role(&bob_then, carol.membership_id, Role::TenantAdmin.id())
        .await;
    assert!(
        matches!(role, Err(apikeys_service::Error::Forbidden(_))),
        "{role:?}"
    );
    let removed = service
        .delete_membership(&bob_then, carol.membership_id)
        .await;
    assert!(
        matches!(removed, Err(apikeys_service::Error::Forbidden(_))),
        "{removed:?}"
    );
    assert!(!service.revoke_api_key(&bob_then, sa_key.id).await.unwrap());
    assert_eq!(h.items().await, before, "a demoted admin's write landed");
}

#[tokio::test]
async fn thousands_of_validation_errors_answer_a_few() {
    let h = Harness::new().await;
    let directives: String = (0..7000).map(|_| "@x ").collect();
    let query = format!("{{ hello {directives} }}");
    let reply = h
        .send(
            Route::RestGraphql,
            &prefect_body(&query, None),
            &[("Authorization", &format!("Bearer {}", h.tenant.admin_key))],
        )
        .await;
    let errors = reply.json["errors"].as_array().unwrap();
    assert!(errors.len() <= 11, "{} errors", errors.len());
    assert!(reply.body.len() < 4096, "{} bytes", reply.body.len());
}

#[tokio::test]
async fn emails_are_seen_by_human_admins_and_their_owner_only() {
    let h = Harness::new().await;
    let reader = h.add_member("acme", "reader", Role::ReadOnlyUser).await;
    let (_, sa_key) = h.add_service_account("ci").await;
    let query = "{ user_view_same_tenant { username email } user { username email } }";
    let email_of = |data: &Value, who: &str| {
        data["user_view_same_tenant"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == who)
            .map(|u| u["email"].clone())
            .unwrap()
    };
    let admin_view = h.data(&h.tenant.admin_key, query, None).await;
    assert_eq!(email_of(&admin_view, "alice"), json!("admin@example.com"));
    assert_eq!(admin_view["user"][0]["email"], json!("admin@example.com"));
    for key in [&reader.key, &sa_key] {
        let view = h.data(key, query, None).await;
        assert_eq!(email_of(&view, "alice"), Value::Null, "{view}");
        assert!(!view.to_string().contains("admin@example.com"));
    }
}

#[tokio::test]
async fn expired_keys_make_room_at_the_per_owner_limit() {
    let h = Harness::new().await;
    let t0 = h.now();
    // 39 more keys for alice (she holds one): 5 of them expire in 10 s.
    for i in 0..39 {
        let expires = (i < 5).then(|| {
            let at = t0 + time::Duration::seconds(10);
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        });
        let reply = h
            .create_key(
                &h.tenant.admin_key,
                h.tenant.admin_id,
                &format!("k{i}"),
                expires.as_deref(),
            )
            .await;
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "41st", None)
        .await;
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("revoke one first"));
    h.clock.set(t0 + time::Duration::seconds(11));
    // The listing hides the 5 expired keys; the 41st create now succeeds.
    let listed = h
        .data(&h.tenant.admin_key, "{ auth_api_key { id } }", None)
        .await;
    assert_eq!(listed["auth_api_key"].as_array().unwrap().len(), 35);
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "after expiry", None)
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    assert_eq!(h.assert_consistent().await, 36);
}

#[tokio::test]
async fn a_role_change_wins_against_a_member_churning_its_own_keys() {
    let h = Arc::new(Harness::new().await);
    let churner = h.add_member("acme", "churner", Role::TenantAdmin).await;
    let churn = Churn::start(&h, &churner, 12, u32::MAX);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut answers = Vec::new();
    for round in 0..10 {
        let role = if round % 2 == 0 {
            Role::User
        } else {
            Role::TenantAdmin
        };
        let vars = json!({"input": {"membership_id": churner.membership_id, "role_id": role.id()}});
        answers.push(answer(&h, &h.tenant.admin_key, SET_ROLE, Some(vars)).await);
    }
    churn.stop().await;
    for (round, (status, reply)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "round {round}: {reply}");
        assert!(reply.get("errors").is_none(), "round {round}: {reply}");
    }
    // The last change (round 9) made it an admin again; every key agrees.
    h.assert_consistent().await;
    let info = h.data(&churner.key, "{ auth_info { role } }", None).await;
    assert_eq!(info["auth_info"]["role"], "TENANT_ADMIN");
}

#[tokio::test]
async fn set_key_policy_with_another_field_or_twice_is_refused_before_any_read() {
    let h = Harness::new().await;
    let set = "set_key_policy(input: {max_service_key_days: 30}) { applied }";
    for doc in [
        format!("mutation {{ a: {set} b: {set} }}"),
        format!(
            "mutation {{ {set} hello: create_service_account(input: {{name: \"x\"}}) {{ id }} }}"
        ),
        format!("mutation {{ ...F ...F }} fragment F on Mutation {{ {set} }}"),
    ] {
        let before = h.items().await.len();
        let (reply, requests) = measured(&h, &h.tenant.admin_key, &doc, None).await;
        assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{doc}: {reply}");
        assert!(
            reply["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("set_key_policy"),
            "{reply}"
        );
        assert_eq!(requests, 0, "{doc}");
        assert_eq!(h.items().await.len(), before, "{doc}");
    }
}

#[tokio::test]
async fn audit_log_asked_twice_through_aliases_or_fragments_is_refused_before_any_read() {
    let h = Harness::new().await;
    let aliases: String = (0..20)
        .map(|i| format!("a{i}: audit_log(limit: 100) {{ id detail }} "))
        .collect();
    let spreads: String = (0..20).map(|_| "...F ").collect();
    for attack in [
        format!("{{ {aliases} }}"),
        format!("{{ {spreads} }} fragment F on Query {{ audit_log(limit: 100) {{ id detail }} }}"),
    ] {
        let started = Instant::now();
        let (reply, requests) = measured(&h, &h.tenant.admin_key, &attack, None).await;
        assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
        assert!(
            reply["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("audit_log"),
            "{reply}"
        );
        assert_eq!(requests, 0);
        eprintln!(
            "audit_log x20 ({} bytes): {requests} requests, {:?}",
            attack.len(),
            started.elapsed()
        );
    }
    // Once is fine: authentication and one page.
    let (reply, requests) = measured(
        &h,
        &h.tenant.admin_key,
        "{ audit_log(limit: 100) { id } }",
        None,
    )
    .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    assert_eq!(requests, 2, "{:?}", h.counter.snapshot());
}

#[tokio::test]
async fn an_answer_over_the_size_bound_is_refused_with_a_clear_error() {
    let h = Harness::new().await;
    let (sa, _) = h.add_service_account("big").await;
    h.seed_keys(sa, apikeys_core::domain::AccountType::Service, 1000)
        .await;
    let aliases: String = (0..20)
        .map(|i| {
            format!(
                "k{i}: auth_api_key {{ id name created expires_at user_id default_tenant_id }} "
            )
        })
        .collect();
    let (reply, requests) =
        measured(&h, &h.tenant.admin_key, &format!("{{ {aliases} }}"), None).await;
    assert_eq!(
        error_code(&reply),
        "ANSWER_TOO_LARGE",
        "{}",
        &reply.to_string()[..200.min(reply.to_string().len())]
    );
    let message = reply["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("fewer fields or aliases"), "{message}");
    eprintln!("20 listings of 1,001 keys: {requests} requests, refused: {message}");
    // One listing is fine.
    let data = h
        .data(&h.tenant.admin_key, "{ auth_api_key { id } }", None)
        .await;
    assert!(data["auth_api_key"].as_array().unwrap().len() > 500);
}

#[tokio::test]
async fn names_with_direction_or_invisible_characters_are_refused_everywhere() {
    let h = Harness::new().await;
    // Its use recorded (once per interval): then nothing may change.
    h.gql(&h.tenant.admin_key, "{ hello }", None).await;
    let before = h.items().await;
    for name in [
        "deploy\u{202E}cod.exe",
        "ali\u{200B}ce",
        "\u{2066}ci\u{2069}",
        "bot\u{FEFF}",
    ] {
        let create = h
            .create_key(&h.tenant.admin_key, h.tenant.admin_id, name, None)
            .await;
        assert_eq!(error_code(&create), "BAD_USER_INPUT", "{create}");
        let account = h
            .gql(
                &h.tenant.admin_key,
                CREATE_SA,
                Some(json!({"input": {"name": name}})),
            )
            .await;
        assert_eq!(error_code(&account), "BAD_USER_INPUT", "{account}");
        assert!(account["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("text-direction"));
    }
    assert_eq!(h.items().await, before);
}

/// A document that does not validate (an unknown field, a variable of the
/// wrong type, a missing argument) is answered before the credential is
/// looked at: no DynamoDB request, and the same answer with the database
/// unreachable (where authenticating first answered 503).
#[tokio::test]
async fn a_document_that_does_not_validate_costs_no_read_even_with_the_database_down() {
    let h = Harness::new().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (down, counter) = h.app_via(
        &format!("http://127.0.0.1:{closed}"),
        &[
            ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "200"),
            ("DYNAMODB_OPERATION_TIMEOUT_MS", "500"),
        ],
    );
    let auth = format!("Bearer {}", h.tenant.admin_key);
    for (query, vars) in [
        ("{ no_such_field }", None),
        ("{ auth_info { no_such_field } }", None),
        ("mutation { delete_api_key(input: {}) { success } }", None),
        (
            "mutation($i: delete_api_key_input!) { delete_api_key(input: $i) { success } }",
            Some(json!({"i": {"key_id": "not a uuid"}})),
        ),
        (
            "query($n: Int) { auth_api_key { id } }",
            Some(json!({"n": "seven"})),
        ),
        ("query A { hello } query B { hello }", None),
    ] {
        for (app, counted) in [(&h.app, &h.counter), (&down, &counter)] {
            counted.reset();
            let request = apikeys_tests::event(
                Route::RestGraphql,
                "POST",
                &prefect_body(query, vars.clone()),
                &[("Authorization", &auth)],
            );
            let response = apikeys_graphql::handle(app, request).await;
            let reply: Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(response.status().as_u16(), 200, "{query}: {reply}");
            assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{query}: {reply}");
            assert_eq!(counted.total(), 0, "{query}: read before validating");
        }
    }
    // A document that validates, with the database down: retryable.
    let request = apikeys_tests::event(
        Route::RestGraphql,
        "POST",
        &prefect_body("{ auth_info { user_id } }", None),
        &[("Authorization", &auth)],
    );
    let response = apikeys_graphql::handle(&down, request).await;
    assert_eq!(response.status().as_u16(), 503);
}
