//! Key lifecycle beyond Prefect (issue 14): rotation with a grace period,
//! last use recorded once per interval, the audit log written in each
//! change's own transaction, and the old token forms refused clearly.
//! Through the real handler, on a real DynamoDB API, with the harness's
//! injectable clock.

use std::collections::HashSet;

use apikeys_core::domain::Role;
use apikeys_core::token::TokenHash;
use apikeys_tests::{error_code, Harness};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const ROTATE: &str = "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id key token expires_at old_key_expires_at } }";
const REVOKE: &str =
    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";
const KEYS: &str = "{ auth_api_key { id name user_id expires_at last_used rotated_from replaced_by created_by_key_id created_by { username } } }";
const AUDIT: &str = "query($limit: Int, $before: String) { audit_log(limit: $limit, before: $before) { id cursor at action actor_user_id actor_key_id actor_name target_type target_id target_name detail } }";
const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn parse(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn works(reply: &Value) -> bool {
    reply.get("errors").is_none() && !reply["data"]["auth_info"]["user_id"].is_null()
}

async fn authenticates(h: &Harness, key: &str) -> bool {
    works(&h.gql(key, "{ auth_info { user_id } }", None).await)
}

async fn key_id_of(h: &Harness, key: &str) -> Uuid {
    let data = h.data(key, "{ auth_info { api_key_id } }", None).await;
    serde_json::from_value(data["auth_info"]["api_key_id"].clone()).unwrap()
}

async fn rotate(h: &Harness, key: &str, key_id: Uuid, grace: Option<i64>) -> Value {
    let mut input = json!({"key_id": key_id});
    if let Some(grace) = grace {
        input["grace_period_seconds"] = json!(grace);
    }
    h.gql(key, ROTATE, Some(json!({ "input": input }))).await
}

fn listed(keys: &Value, id: Uuid) -> Option<Value> {
    keys["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == json!(id.to_string()))
        .cloned()
}

async fn audit(h: &Harness, key: &str) -> Vec<Value> {
    let data = h.data(key, AUDIT, Some(json!({"limit": 100}))).await;
    data["audit_log"].as_array().unwrap().clone()
}

/// Every audit item of the table, raw.
async fn audit_items(h: &Harness) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    h.items()
        .await
        .into_iter()
        .filter(|item| matches!(item.get("pk"), Some(AttributeValue::S(pk)) if pk.starts_with("audit#")))
        .collect()
}

/// `count` more keys for `owner`, made through the API.
async fn fill(h: &Harness, key: &str, owner: Uuid, count: usize) {
    for i in 0..count {
        let made = h.create_key(key, owner, &format!("filler {i}"), None).await;
        assert!(made.get("errors").is_none(), "{made}");
    }
}

// ---- old token forms ------------------------------------------------------

#[tokio::test]
async fn an_old_jwt_token_is_told_it_is_no_longer_accepted_without_a_read() {
    let h = Harness::new().await;
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInRlbmFudF9pZCI6IngifQ.c2lnbmF0dXJl";
    h.counter.reset();
    let reply = h.gql(jwt, "{ auth_info { tenant_id } }", None).await;
    assert_eq!(error_code(&reply), "UNAUTHENTICATED", "{reply}");
    let message = reply["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("no longer accepted") && message.contains("API key"),
        "{message}"
    );
    assert_eq!(
        h.counter.total(),
        0,
        "a token of the old form costs no read"
    );
    // A key of the right form that is unknown keeps the plain answer.
    let unknown = h.gql("apk_not-a-key-at-all", "{ hello }", None).await;
    assert_eq!(unknown["errors"][0]["message"], "Unauthenticated");
}

// ---- rotation -------------------------------------------------------------

#[tokio::test]
async fn both_keys_work_inside_the_grace_and_the_old_one_fails_at_its_end() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let old_id = key_id_of(&h, &bob.key).await;
    let t0 = h.now();
    let reply = rotate(&h, &bob.key, old_id, Some(3600)).await;
    let rotated = &reply["data"]["rotate_api_key"];
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(rotated["token"], rotated["key"]);
    assert!(
        rotated["expires_at"].is_null(),
        "the old key never expired: nor does the new"
    );
    assert_eq!(
        parse(&rotated["old_key_expires_at"]),
        t0 + Duration::hours(1)
    );
    assert!(authenticates(&h, &bob.key).await && authenticates(&h, &new_key).await);

    // The listing says which replaced which; the new key records the key that made it.
    let keys = h.data(&new_key, KEYS, None).await;
    let new_id: Uuid = serde_json::from_value(rotated["id"].clone()).unwrap();
    let old = listed(&keys, old_id).expect("the old key is listed during its grace");
    let new = listed(&keys, new_id).unwrap();
    assert_eq!(old["replaced_by"], json!(new_id.to_string()));
    assert_eq!(parse(&old["expires_at"]), t0 + Duration::hours(1));
    assert_eq!(new["rotated_from"], json!(old_id.to_string()));
    assert_eq!(new["created_by_key_id"], json!(old_id.to_string()));
    assert_eq!(new["name"], old["name"]);

    h.clock.set(t0 + Duration::seconds(3599));
    assert!(
        authenticates(&h, &bob.key).await,
        "a second before the grace ends"
    );
    h.clock.set(t0 + Duration::seconds(3600));
    let reply = h.gql(&bob.key, "{ auth_info { user_id } }", None).await;
    assert_eq!(
        error_code(&reply),
        "UNAUTHENTICATED",
        "at the grace's end, like an expired key"
    );
    assert!(authenticates(&h, &new_key).await);
    h.assert_consistent().await;
}

#[tokio::test]
async fn the_new_key_inherits_the_expiry_and_the_grace_never_outlives_it() {
    let h = Harness::new().await;
    let t0 = h.now();
    let expires = t0 + Duration::minutes(10);
    let made = h
        .create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            "short",
            Some(&rfc3339(expires)),
        )
        .await;
    let key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let id: Uuid = serde_json::from_value(made["data"]["create_api_key"]["id"].clone()).unwrap();
    let reply = rotate(&h, &h.tenant.admin_key, id, Some(7 * 24 * 3600)).await;
    let rotated = &reply["data"]["rotate_api_key"];
    assert_eq!(
        parse(&rotated["expires_at"]),
        expires,
        "inherited, never extended"
    );
    assert_eq!(
        parse(&rotated["old_key_expires_at"]),
        expires,
        "the grace stops at the old expiry"
    );
    let new_key = rotated["key"].as_str().unwrap().to_string();
    h.clock.set(expires);
    assert!(!authenticates(&h, &key).await && !authenticates(&h, &new_key).await);
}

#[tokio::test]
async fn a_rotation_without_grace_stops_the_old_key_at_once_and_keeps_the_count() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let old_id = key_id_of(&h, &bob.key).await;
    let reply = rotate(&h, &bob.key, old_id, None).await;
    let rotated = &reply["data"]["rotate_api_key"];
    assert_eq!(parse(&rotated["old_key_expires_at"]), h.now());
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert!(!authenticates(&h, &bob.key).await);
    assert!(authenticates(&h, &new_key).await);
    let keys = h.data(&new_key, KEYS, None).await;
    assert_eq!(keys["auth_api_key"].as_array().unwrap().len(), 1);
    assert_eq!(
        h.assert_consistent().await,
        2,
        "alice's, bob's new one, and nothing of the old"
    );
}

#[tokio::test]
async fn a_foreign_or_unknown_key_is_not_found_alike_and_nothing_is_written() {
    let h = Harness::new().await;
    let globex = h.add_tenant("globex", "gina").await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let (_, sa_key) = h.add_service_account("ci").await;
    let gina_key_id = key_id_of(&h, &globex.admin_key).await;
    let alice_key_id = key_id_of(&h, &h.tenant.admin_key).await;
    let sa_key_id = key_id_of(&h, &sa_key).await;
    let before = h.items().await;
    let mut answers = HashSet::new();
    for (caller, key_id) in [
        (&h.tenant.admin_key, gina_key_id),    // another tenant's
        (&h.tenant.admin_key, Uuid::new_v4()), // nobody's
        (&bob.key, alice_key_id),              // another person's
        (&bob.key, sa_key_id),                 // a service account's, bob no admin
    ] {
        let reply = rotate(&h, caller, key_id, Some(60)).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
        answers.insert(reply["errors"][0]["message"].to_string());
    }
    assert_eq!(answers.len(), 1, "the same answer for all: {answers:?}");
    // Our own writes aside (each caller's first use recorded), nothing changed.
    let changed: Vec<_> = h
        .items()
        .await
        .into_iter()
        .filter(|item| !before.contains(item))
        .filter(|item| !item.contains_key("last_used"))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    assert!(authenticates(&h, &globex.admin_key).await);
}

#[tokio::test]
async fn odd_graces_and_a_second_rotation_of_the_same_key_are_refused() {
    let h = Harness::new().await;
    let id = key_id_of(&h, &h.tenant.admin_key).await;
    for grace in [
        -1,
        7 * 24 * 3600 + 1,
        i64::from(i32::MAX),
        i64::from(i32::MIN),
    ] {
        let reply = rotate(&h, &h.tenant.admin_key, id, Some(grace)).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{grace}: {reply}");
    }
    // Not an Int at all: the schema refuses it.
    let reply = h
        .gql(
            &h.tenant.admin_key,
            ROTATE,
            Some(json!({"input": {"key_id": id, "grace_period_seconds": 1e12}})),
        )
        .await;
    assert!(reply.get("errors").is_some(), "{reply}");
    assert_eq!(h.assert_consistent().await, 1);
    let first = rotate(&h, &h.tenant.admin_key, id, Some(60)).await;
    assert!(first.get("errors").is_none(), "{first}");
    // The rotated key itself may no longer rotate anything (issue 19.4);
    // asked with the key that replaced it, a second rotation is refused.
    let by_old = rotate(&h, &h.tenant.admin_key, id, Some(60)).await;
    assert_eq!(error_code(&by_old), "FORBIDDEN", "{by_old}");
    let new = first["data"]["rotate_api_key"]["key"].as_str().unwrap();
    let again = rotate(&h, new, id, Some(60)).await;
    assert_eq!(error_code(&again), "BAD_USER_INPUT");
    assert!(again["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("already rotated"));
    assert_eq!(h.assert_consistent().await, 2);
}

#[tokio::test]
async fn concurrent_rotations_of_one_key_make_exactly_one_new_key() {
    let h = Harness::new().await;
    let id = key_id_of(&h, &h.tenant.admin_key).await;
    let replies =
        futures::future::join_all((0..8).map(|_| rotate(&h, &h.tenant.admin_key, id, Some(300))))
            .await;
    let made = replies.iter().filter(|r| r.get("errors").is_none()).count();
    assert_eq!(made, 1, "{replies:?}");
    for reply in replies.iter().filter(|r| r.get("errors").is_some()) {
        let code = error_code(reply);
        assert!(
            code == "BAD_USER_INPUT" || code == "SERVICE_UNAVAILABLE",
            "{reply}"
        );
    }
    assert_eq!(h.assert_consistent().await, 2);
}

#[tokio::test]
async fn an_admin_rotates_a_service_account_key_and_the_sweeper_removes_the_old_one() {
    let h = Harness::new().await;
    let (sa, sa_key) = h.add_service_account("deployer").await;
    let sa_key_id = key_id_of(&h, &sa_key).await;
    let t0 = h.now();
    let reply = rotate(&h, &h.tenant.admin_key, sa_key_id, Some(120)).await;
    let new_key = reply["data"]["rotate_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(new_key.starts_with("apks_"));
    let keys = h.data(&h.tenant.admin_key, KEYS, None).await;
    let new_id: Uuid =
        serde_json::from_value(reply["data"]["rotate_api_key"]["id"].clone()).unwrap();
    let new = listed(&keys, new_id).unwrap();
    assert_eq!(new["user_id"], json!(sa.to_string()));
    assert_eq!(new["created_by"]["username"], "alice");
    assert_eq!(
        new["created_by_key_id"],
        json!(key_id_of(&h, &h.tenant.admin_key).await.to_string())
    );
    // After the grace, the sweeper takes the old key away (and says so in the log).
    h.clock.set(t0 + Duration::seconds(121));
    let report = apikeys_service::sweep::Sweeper::new(h.service().store().clone())
        .sweep(h.now(), None)
        .await
        .unwrap();
    assert_eq!(report.swept, 1, "{report:?}");
    assert_eq!(
        h.assert_consistent().await,
        2,
        "alice's and the service account's new one"
    );
    let log = audit(&h, &h.tenant.admin_key).await;
    assert_eq!(log[0]["action"], "KEY_EXPIRED");
    assert_eq!(log[0]["target_id"], json!(sa_key_id.to_string()));
    assert_eq!(log[0]["actor_name"], "sweeper");
    assert!(log[0]["actor_user_id"].is_null() && log[0]["actor_key_id"].is_null());
    assert_eq!(log[1]["action"], "KEY_ROTATED");
}

#[tokio::test]
async fn at_the_key_limit_a_grace_needs_room_and_no_grace_does_not() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    fill(&h, &bob.key, bob.user_id, 39).await;
    assert_eq!(h.assert_consistent().await, 41);
    let id = key_id_of(&h, &bob.key).await;
    let reply = rotate(&h, &bob.key, id, Some(60)).await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("at most 40 keys"));
    let reply = rotate(&h, &bob.key, id, Some(0)).await;
    assert!(reply.get("errors").is_none(), "{reply}");
    assert_eq!(h.assert_consistent().await, 41);
}

#[tokio::test]
async fn the_operator_rotates_a_key_recorded_as_the_operator() {
    let h = Harness::new().await;
    let id = key_id_of(&h, &h.tenant.admin_key).await;
    let rotated = h
        .service()
        .rotate_key_as_operator("acme", id, Some(30))
        .await
        .unwrap();
    assert_eq!(rotated.key.rotated_from, Some(id));
    assert_eq!(rotated.key.created_by_key_id, None);
    let log = audit(&h, rotated.secret.expose_secret()).await;
    assert_eq!(log[0]["action"], "KEY_ROTATED");
    assert_eq!(log[0]["actor_name"], "operator");
    assert!(h
        .service()
        .rotate_key_as_operator("acme", Uuid::new_v4(), None)
        .await
        .is_err());
}

// ---- last used ------------------------------------------------------------

#[tokio::test]
async fn last_use_moves_once_per_interval_under_a_burst_never_per_request() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let t0 = h.now();
    h.counter.reset();
    for _ in 0..20 {
        h.gql(&bob.key, "{ hello }", None).await;
    }
    let counts = h.counter.snapshot();
    assert_eq!(
        counts.get("TransactWriteItems"),
        Some(&1),
        "one write for 20 requests: {counts:?}"
    );
    assert_eq!(counts.get("GetItem"), Some(&20));
    let keys = h.data(&bob.key, KEYS, None).await;
    assert_eq!(parse(&keys["auth_api_key"][0]["last_used"]), t0);

    // Within the interval (5 minutes): no write, the value stays.
    h.clock.set(t0 + Duration::seconds(299));
    h.counter.reset();
    for _ in 0..10 {
        h.gql(&bob.key, "{ hello }", None).await;
    }
    assert_eq!(h.counter.snapshot().get("TransactWriteItems"), None);
    // Past it: one write, and the value moves.
    h.clock.set(t0 + Duration::seconds(301));
    h.counter.reset();
    for _ in 0..10 {
        h.gql(&bob.key, "{ hello }", None).await;
    }
    assert_eq!(h.counter.snapshot().get("TransactWriteItems"), Some(&1));
    let keys = h.data(&bob.key, KEYS, None).await;
    assert_eq!(
        parse(&keys["auth_api_key"][0]["last_used"]),
        t0 + Duration::seconds(301)
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_concurrent_burst_records_one_use_and_a_revoked_key_none() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    h.counter.reset();
    let replies =
        futures::future::join_all((0..50).map(|_| h.gql(&bob.key, "{ hello }", None))).await;
    assert!(replies.iter().all(|r| r["data"]["hello"].is_string()));
    // Concurrent requests all read "never used"; the instance lets one of
    // them try (issue 19.9), and the condition would let only one land.
    let counts = h.counter.snapshot();
    assert_eq!(
        counts.get("TransactWriteItems"),
        Some(&1),
        "one attempt for 50 first uses: {counts:?}"
    );
    let hash = format!("hash#{}", TokenHash::of(&bob.key).as_str());
    let item = h
        .items()
        .await
        .into_iter()
        .find(|i| i.get("pk") == Some(&AttributeValue::S(hash.clone())))
        .unwrap();
    assert_eq!(
        item.get("last_used"),
        Some(&AttributeValue::N(h.now().unix_timestamp().to_string()))
    );
    // A key revoked: its use is never recorded (and nothing is re-created).
    let id = key_id_of(&h, &bob.key).await;
    h.data(&bob.key, REVOKE, Some(json!({"input": {"key_id": id}})))
        .await;
    h.clock.set(h.now() + Duration::hours(1));
    assert!(!authenticates(&h, &bob.key).await);
    assert!(h
        .items()
        .await
        .iter()
        .all(|i| i.get("pk") != Some(&AttributeValue::S(hash.clone()))));
    h.assert_consistent().await;
}

#[tokio::test]
async fn the_authorizer_records_use_too() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let authorizer = apikeys_authorizer::App::new(h.service_copy(), Default::default());
    let event = json!({
        "type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:api/prod/GET/whoami",
        "headers": {"Authorization": format!("Bearer {}", bob.key)},
    });
    h.counter.reset();
    for _ in 0..5 {
        apikeys_authorizer::handle(&authorizer, event.clone())
            .await
            .unwrap();
    }
    assert_eq!(h.counter.snapshot().get("TransactWriteItems"), Some(&1));
    let keys = h.data(&bob.key, KEYS, None).await;
    assert_eq!(parse(&keys["auth_api_key"][0]["last_used"]), h.now());
}

// ---- the audit log --------------------------------------------------------

#[tokio::test]
async fn each_change_writes_one_record_with_its_actor_newest_first() {
    let h = Harness::new().await;
    let alice_key_id = key_id_of(&h, &h.tenant.admin_key).await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let (sa, _) = h.add_service_account("ci").await;
    let made = h.create_key(&bob.key, bob.user_id, "laptop", None).await;
    let laptop: Uuid =
        serde_json::from_value(made["data"]["create_api_key"]["id"].clone()).unwrap();
    let bob_key_id = key_id_of(&h, &bob.key).await;
    h.data(&bob.key, REVOKE, Some(json!({"input": {"key_id": laptop}})))
        .await;
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::ReadOnlyUser.id()}});
    h.data(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
    h.data(
        &h.tenant.admin_key,
        "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success } }",
        Some(json!({"input": {"user_id": sa}})),
    )
    .await;
    h.data(
        &h.tenant.admin_key,
        "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }",
        Some(json!({"input": {"membership_id": bob.membership_id}})),
    )
    .await;

    let log = audit(&h, &h.tenant.admin_key).await;
    let summary: Vec<(String, String, String)> = log
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["actor_name"].as_str().unwrap().to_string(),
                r["target_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("MEMBER_REMOVED", "alice", "bob"),
        ("SERVICE_ACCOUNT_REMOVED", "alice", "ci"),
        ("ROLE_CHANGED", "alice", "bob"),
        ("KEY_REVOKED", "bob", "laptop"),
        ("KEY_CREATED", "bob", "laptop"),
        ("KEY_CREATED", "alice", "ci"),
        ("SERVICE_ACCOUNT_CREATED", "alice", "ci"),
        ("KEY_CREATED", "operator", "issued"),
        ("MEMBER_ADDED", "operator", "bob"),
        ("KEY_CREATED", "operator", "first key"),
        ("TENANT_CREATED", "operator", "acme Inc"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary, expected);
    let by_action = |action: &str| log.iter().find(|r| r["action"] == action).unwrap();
    let revoked = by_action("KEY_REVOKED");
    assert_eq!(revoked["actor_user_id"], json!(bob.user_id.to_string()));
    assert_eq!(revoked["actor_key_id"], json!(bob_key_id.to_string()));
    assert_eq!(revoked["target_type"], "API_KEY");
    assert_eq!(revoked["target_id"], json!(laptop.to_string()));
    assert_eq!(
        by_action("ROLE_CHANGED")["detail"],
        "USER -> READ_ONLY_USER"
    );
    assert_eq!(
        by_action("ROLE_CHANGED")["actor_key_id"],
        json!(alice_key_id.to_string())
    );
    assert!(by_action("MEMBER_REMOVED")["detail"]
        .as_str()
        .unwrap()
        .contains("1 API key(s)"));
    // The operator's CLI prints the same log.
    let cli = h.service().audit_log_of("acme", 100, None).await.unwrap();
    assert_eq!(cli.len(), log.len());
}

#[tokio::test]
async fn a_refused_or_failed_change_writes_no_record() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let before = audit_items(&h).await.len();
    // Refused: the last admin, a plain user's admin actions, an unknown key.
    let vars = json!({"input": {"membership_id": h.tenant.admin_membership_id, "role_id": Role::User.id()}});
    assert_eq!(
        error_code(&h.gql(&h.tenant.admin_key, SET_ROLE, Some(vars)).await),
        "BAD_USER_INPUT"
    );
    let reply = h
        .gql(
            &bob.key,
            "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
            Some(json!({"input": {"name": "nope"}})),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN");
    let reply = h
        .gql(
            &bob.key,
            REVOKE,
            Some(json!({"input": {"key_id": Uuid::new_v4()}})),
        )
        .await;
    assert_eq!(reply["data"]["delete_api_key"]["success"], false);
    let reply = h.create_key(&bob.key, bob.user_id, "", None).await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    let past = rfc3339(h.now() - Duration::seconds(1));
    let reply = h
        .create_key(&bob.key, bob.user_id, "late", Some(&past))
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    // Failed in the database: a key for an owner removed meanwhile (the
    // transaction's condition fails; its audit item goes with it).
    let removed = h.add_member("acme", "carol", Role::User).await;
    let count = audit_items(&h).await.len();
    let p = h
        .service()
        .authenticate(Some(&removed.key), None)
        .await
        .unwrap();
    h.data(
        &h.tenant.admin_key,
        "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }",
        Some(json!({"input": {"membership_id": removed.membership_id}})),
    )
    .await;
    let after_removal = audit_items(&h).await.len();
    assert_eq!(after_removal, count + 1);
    let err = h
        .service()
        .create_api_key(
            &p,
            p.user_id,
            apikeys_service::KeyRequest {
                name: "ghost",
                expires_at: None,
                role_ceiling: None,
                allowed_networks: Vec::new(),
                scopes: Vec::new(),
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, apikeys_service::Error::NotFound(_)), "{err}");
    assert_eq!(
        audit_items(&h).await.len(),
        after_removal,
        "no record without its change"
    );
    assert_eq!(
        before + 3,
        after_removal,
        "carol added, her key issued, carol removed: nothing else"
    );
}

#[tokio::test]
async fn the_log_is_the_callers_tenant_only_and_for_admins_only() {
    let h = Harness::new().await;
    let globex = h.add_tenant("globex", "gina").await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let acme = audit(&h, &h.tenant.admin_key).await;
    let gx = audit(&h, &globex.admin_key).await;
    assert!(acme.iter().all(|r| r["target_name"] != "globex Inc"));
    assert_eq!(
        gx.len(),
        2,
        "globex: its creation and its first key: {gx:?}"
    );
    // Another tenant's cursor only positions within the caller's own log.
    let cursor = acme.last().unwrap()["cursor"].as_str().unwrap().to_string();
    let page = h
        .data(&globex.admin_key, AUDIT, Some(json!({"before": cursor})))
        .await;
    for r in page["audit_log"].as_array().unwrap() {
        assert!(gx.contains(r), "{r}");
    }
    // Not an admin: refused, whatever the tenant header says.
    assert_eq!(error_code(&h.gql(&bob.key, AUDIT, None).await), "FORBIDDEN");
    let reader = h.add_member("acme", "rita", Role::ReadOnlyUser).await;
    assert_eq!(
        error_code(&h.gql(&reader.key, AUDIT, None).await),
        "FORBIDDEN"
    );
    // An admin service account may read it.
    let (_, sa_key) = h.add_service_account("auditor").await;
    assert!(!audit(&h, &sa_key).await.is_empty());
}

#[tokio::test]
async fn the_log_pages_by_cursor_and_refuses_odd_limits_and_cursors() {
    let h = Harness::new().await;
    for i in 0..5 {
        h.create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            &format!("k{i}"),
            None,
        )
        .await;
    }
    let all = audit(&h, &h.tenant.admin_key).await;
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let data = h
            .data(
                &h.tenant.admin_key,
                AUDIT,
                Some(json!({"limit": 2, "before": before})),
            )
            .await;
        let page = data["audit_log"].as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap()["cursor"].as_str().unwrap().to_string());
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages in order, nothing twice, nothing missed");
    let times: Vec<OffsetDateTime> = all.iter().map(|r| parse(&r["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    for limit in [0, -1, 101, i32::MAX] {
        let reply = h
            .gql(&h.tenant.admin_key, AUDIT, Some(json!({"limit": limit})))
            .await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{limit}");
    }
    for before in [
        "",
        "x",
        "1764115200000",
        "9999999999999#00000000-0000-0000-0000-000000000000",
        &"9".repeat(10_000),
    ] {
        let reply = h
            .gql(&h.tenant.admin_key, AUDIT, Some(json!({"before": before})))
            .await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{before:.40}");
    }
}

#[tokio::test]
async fn records_hold_no_secret_or_hash_and_expire_by_ttl() {
    let h = Harness::with_env(&[("AUDIT_RETENTION_DAYS", "30")]).await;
    let made = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "ci", None)
        .await;
    let key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let id: Uuid = serde_json::from_value(made["data"]["create_api_key"]["id"].clone()).unwrap();
    let rotated = rotate(&h, &key, id, Some(10)).await;
    let new_key = rotated["data"]["rotate_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let secrets = [&h.tenant.admin_key, &key, &new_key];
    for item in audit_items(&h).await {
        let text = format!("{item:?}");
        for secret in secrets {
            assert!(!text.contains(secret.as_str()), "a key in an audit item");
            assert!(
                !text.contains(TokenHash::of(secret).as_str()),
                "a hash in an audit item"
            );
            let body = secret.split_once('_').unwrap().1;
            assert!(!text.contains(body), "part of a key in an audit item");
        }
        let (Some(AttributeValue::N(at)), Some(AttributeValue::N(ttl))) =
            (item.get("at"), item.get("ttl"))
        else {
            panic!("no at/ttl: {item:?}");
        };
        let (at, ttl): (i64, i64) = (at.parse().unwrap(), ttl.parse().unwrap());
        assert_eq!(ttl - at, 30 * 24 * 3600, "kept the retention, then TTL");
    }
}

#[tokio::test]
async fn a_compromised_key_s_creations_are_found_in_the_log() {
    let h = Harness::new().await;
    let (sa, _) = h.add_service_account("ci").await;
    let stolen = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "stolen", None)
        .await;
    let stolen_key = stolen["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let stolen_id = key_id_of(&h, &stolen_key).await;
    for name in ["backdoor-1", "backdoor-2"] {
        h.create_key(&stolen_key, sa, name, None).await;
    }
    h.data(
        &h.tenant.admin_key,
        REVOKE,
        Some(json!({"input": {"key_id": stolen_id}})),
    )
    .await;
    // The keys it made keep working (they are keys of their own), but both
    // the listing and the log say where they came from.
    let keys = h.data(&h.tenant.admin_key, KEYS, None).await;
    let made_by_stolen: Vec<_> = keys["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["created_by_key_id"] == json!(stolen_id.to_string()))
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(made_by_stolen.len(), 2, "{keys}");
    let from_log: Vec<_> = audit(&h, &h.tenant.admin_key)
        .await
        .into_iter()
        .filter(|r| {
            r["action"] == "KEY_CREATED" && r["actor_key_id"] == json!(stolen_id.to_string())
        })
        .map(|r| r["target_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(from_log, ["backdoor-2", "backdoor-1"]);
}

#[tokio::test]
async fn removing_an_owner_with_forty_keys_fits_one_transaction_with_its_record() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    fill(&h, &bob.key, bob.user_id, 39).await;
    assert_eq!(h.assert_consistent().await, 41);
    h.counter.reset();
    let reply = h
        .data(
            &h.tenant.admin_key,
            "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }",
            Some(json!({"input": {"membership_id": bob.membership_id}})),
        )
        .await;
    assert_eq!(reply["delete_membership"]["success"], true);
    assert_eq!(h.assert_consistent().await, 1);
    let log = audit(&h, &h.tenant.admin_key).await;
    assert_eq!(log[0]["action"], "MEMBER_REMOVED");
    assert!(
        log[0]["detail"].as_str().unwrap().contains("40 API key(s)"),
        "{}",
        log[0]
    );
}

#[tokio::test]
async fn a_key_in_its_grace_authenticates_and_may_change_nothing() {
    let h = Harness::new().await;
    let made = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "leaked", None)
        .await;
    let (old_id, old) = (
        made["data"]["create_api_key"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        made["data"]["create_api_key"]["key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    // The owner rotates the leaked key with a grace (the console's choice).
    let rotated = h
        .data(
            &h.tenant.admin_key,
            ROTATE,
            Some(json!({"input": {"key_id": old_id, "grace_period_seconds": 3600}})),
        )
        .await;
    let new_id = rotated["rotate_api_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let new = rotated["rotate_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    // The old key still reads.
    let info = h.data(&old, "{ auth_info { role } }", None).await;
    assert_eq!(info["auth_info"]["role"], "TENANT_ADMIN");
    let before = h.items().await;
    let attempts = [
        (ROTATE, json!({"input": {"key_id": new_id, "grace_period_seconds": 0}})),
        (REVOKE, json!({"input": {"key_id": new_id}})),
        (
            "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id } }",
            json!({"input": {"name": "forever", "user_id": h.tenant.admin_id}}),
        ),
        (
            "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
            json!({"input": {"name": "backdoor"}}),
        ),
        (
            SET_ROLE,
            json!({"input": {"membership_id": h.tenant.admin_membership_id, "role_id": Role::User.id()}}),
        ),
    ];
    for (query, vars) in attempts {
        let reply = h.gql(&old, query, Some(vars)).await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{query}: {reply}");
        let message = reply["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("replaced by a rotation"), "{message}");
        assert!(!message.contains(&old), "a secret in a message");
    }
    assert_eq!(
        h.items().await,
        before,
        "a key in its grace changed something"
    );
    // The key that replaced it works, and may change things.
    let reply = h
        .gql(&new, REVOKE, Some(json!({"input": {"key_id": old_id}})))
        .await;
    assert_eq!(
        reply["data"]["delete_api_key"]["success"],
        json!(true),
        "{reply}"
    );
    h.assert_consistent().await;
}
