//! Each member's changes per minute are limited, so nobody can flood the
//! audit log (issue 19, item 6): a refused change is written nowhere and is
//! told apart, with when to try again.

use std::sync::Arc;

use apikeys_core::domain::Role;
use apikeys_tests::{prefect_body, Harness, Route};
use serde_json::{json, Value};

const CREATE: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id } }";

async fn create(
    h: &Harness,
    key: &str,
    user: uuid::Uuid,
    name: &str,
) -> (u16, Option<String>, Value) {
    let auth = format!("Bearer {key}");
    let reply = h
        .send(
            Route::RestGraphql,
            &prefect_body(
                CREATE,
                Some(json!({"input": {"name": name, "user_id": user}})),
            ),
            &[("Authorization", &auth)],
        )
        .await;
    let after = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (reply.status, after, reply.json)
}

/// The audit records and the table's items, to prove nothing was written.
async fn audit_count(h: &Harness) -> usize {
    h.service()
        .audit_log_of("acme", 100, None)
        .await
        .expect("the log")
        .len()
}

#[tokio::test]
async fn a_member_over_its_changes_per_minute_is_refused_with_429_and_nothing_written() {
    let h = Harness::with_env(&[("CHANGES_PER_MINUTE", "5")]).await;
    // The minute starts 20 s in: the next one opens in 40 s.
    let minute = h.now().unix_timestamp().div_euclid(60) * 60;
    h.clock
        .set(time::OffsetDateTime::from_unix_timestamp(minute + 20).unwrap());
    let bob = h.add_member("acme", "bob", Role::ReadOnlyUser).await;
    for i in 0..5 {
        let (status, _, reply) = create(&h, &bob.key, bob.user_id, &format!("k{i}")).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    let (records, before) = (audit_count(&h).await, h.items().await);
    let (status, after, reply) = create(&h, &bob.key, bob.user_id, "sixth").await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(after.as_deref(), Some("40"));
    assert_eq!(reply["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(reply["errors"][0]["extensions"]["retry_after"], 40);
    let message = reply["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("5 key and account changes a minute"),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(h.items().await, before, "a refused change wrote something");
    assert_eq!(audit_count(&h).await, records);
    // Another member is not limited by bob.
    let (status, _, reply) = create(&h, &h.tenant.admin_key, h.tenant.admin_id, "alice's").await;
    assert_eq!(status, 200, "{reply}");
    // The next minute, bob may change things again.
    h.clock
        .set(time::OffsetDateTime::from_unix_timestamp(minute + 60).unwrap());
    let (status, _, reply) = create(&h, &bob.key, bob.user_id, "later").await;
    assert_eq!((status, reply.get("errors")), (200, None), "{reply}");
    h.assert_consistent().await;
}

#[tokio::test]
async fn aliases_and_parallel_requests_cannot_pass_the_limit() {
    let h = Arc::new(Harness::with_env(&[("CHANGES_PER_MINUTE", "3")]).await);
    let carol = h.add_member("acme", "carol", Role::User).await;
    let base = audit_count(&h).await;
    // Five changes in one request (service accounts: a key must be alone
    // in its request): three land, the fourth is refused (and juniper runs
    // no mutation after a failed non-null one).
    let five: String = (0..5)
        .map(|i| format!("m{i}: create_service_account(input: {{name: \"bot{i}\"}}) {{ id }} "))
        .collect();
    let reply = h
        .gql(&h.tenant.admin_key, &format!("mutation {{ {five} }}"), None)
        .await;
    let errors = reply["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{reply}");
    assert_eq!(errors[0]["extensions"]["code"], "RATE_LIMITED", "{reply}");
    assert_eq!(errors[0]["path"][0], "m3", "{reply}");
    // Twenty at once from another member: exactly three land.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (h, key, user) = (Arc::clone(&h), carol.key.clone(), carol.user_id);
            tokio::spawn(async move { create(&h, &key, user, &format!("p{i}")).await })
        })
        .collect();
    let mut landed = 0;
    for task in tasks {
        let (status, _, reply) = task.await.unwrap();
        match status {
            200 if reply.get("errors").is_none() => landed += 1,
            429 => assert_eq!(reply["errors"][0]["extensions"]["code"], "RATE_LIMITED"),
            _ => panic!("{status}: {reply}"),
        }
    }
    assert_eq!(landed, 3);
    // alice's key, and carol's first key and three more.
    assert_eq!(h.assert_consistent().await, 1 + 4);
    assert_eq!(audit_count(&h).await, base + 3 + 3);
}

#[tokio::test]
async fn revocation_is_never_counted_so_a_thief_cannot_lock_out_its_owner() {
    let h = Harness::with_env(&[("CHANGES_PER_MINUTE", "3")]).await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    // The thief, with bob's leaked key, spends bob's changes this minute.
    let mut made = Vec::new();
    for i in 0..3 {
        let (_, _, reply) = create(&h, &bob.key, bob.user_id, &format!("t{i}")).await;
        made.push(
            reply["data"]["create_api_key"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (status, _, _) = create(&h, &bob.key, bob.user_id, "more").await;
    assert_eq!(status, 429);
    // Bob still revokes every one of them, and the leaked key itself.
    let revoke =
        "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";
    let leaked = h.data(&bob.key, "{ auth_info { api_key_id } }", None).await;
    made.push(
        leaked["auth_info"]["api_key_id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    for id in made {
        let reply = h
            .gql(&bob.key, revoke, Some(json!({"input": {"key_id": id}})))
            .await;
        assert_eq!(
            reply["data"]["delete_api_key"]["success"],
            json!(true),
            "{reply}"
        );
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_creation_refused_by_the_limit_made_no_room_either() {
    use apikeys_core::audit::AuditAction;
    use apikeys_core::domain::AccountType;
    let h = Harness::with_env(&[("CHANGES_PER_MINUTE", "3")]).await;
    // At the start of a minute; the refusal comes in the next one.
    let minute = h.now().unix_timestamp().div_euclid(60) * 60;
    let t0 = time::OffsetDateTime::from_unix_timestamp(minute).unwrap();
    h.clock.set(t0);
    let (bot, _) = h.add_service_account("bot").await;
    // The account holds 40 keys (the operator's writes: not counted), 39
    // of them expiring in 10 s.
    for i in 0..39 {
        let expires = Some(t0 + time::Duration::seconds(10));
        let key = h.stored_key(&format!("old{i}"), bot, AccountType::Service, expires);
        let written = h
            .service()
            .store()
            .insert_key(&key, None, &h.audit(AuditAction::KeyCreated, key.key.id))
            .await
            .unwrap();
        assert_eq!(written, apikeys_store::KeyInsert::Written);
    }
    h.clock.set(t0 + time::Duration::seconds(80));
    // Alice spends her changes this minute.
    for i in 0..3 {
        let reply = h
            .gql(
                &h.tenant.admin_key,
                "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
                Some(json!({"input": {"name": format!("spent{i}")}})),
            )
            .await;
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    h.gql(&h.tenant.admin_key, "{ hello }", None).await;
    let (records, before) = (audit_count(&h).await, h.items().await);
    // A key for the full account: room would be made from its expired keys,
    // but the change is refused, and so is the room.
    let (status, _, reply) = create(&h, &h.tenant.admin_key, bot, "new").await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(h.items().await, before, "a refused creation made room");
    assert_eq!(audit_count(&h).await, records);
}

#[tokio::test]
async fn the_operators_issue_key_at_the_limit_makes_room_from_expired_keys_like_the_api() {
    let h = Harness::new().await;
    h.add_member("acme", "bob", Role::User).await;
    let t0 = h.now();
    // Bob holds his fixture key and 39 keys that expire in 10 s.
    for i in 0..39 {
        let request = apikeys_service::KeyRequest {
            name: &format!("short {i}"),
            expires_at: Some(t0 + time::Duration::seconds(10)),
            role_ceiling: None,
            allowed_networks: Vec::new(),
            scopes: Vec::new(),
        };
        h.service().issue_key("acme", "bob", request).await.unwrap();
    }
    let full = apikeys_service::KeyRequest {
        name: "one too many",
        expires_at: None,
        role_ceiling: None,
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    let refused = h
        .service()
        .issue_key("acme", "bob", full)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("at most 40"), "{refused}");
    // Expired, not yet swept: they make room, as they would for the API.
    h.clock.set(t0 + time::Duration::seconds(11));
    let request = apikeys_service::KeyRequest {
        name: "in their place",
        expires_at: None,
        role_ceiling: None,
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    h.service().issue_key("acme", "bob", request).await.unwrap();
    // Alice's, Bob's first and the new one, and the 9 expired keys past the
    // 30 one transaction removes (the sweeper takes those).
    assert_eq!(h.assert_consistent().await, 3 + 9);
}
