//! Key lifecycle: create, list, revoke, expiry, and input that must write nothing.

use apikeys_core::domain::Role;
use apikeys_tests::{error_code, unauthenticated, Harness};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::Duration;

const LIST: &str = "query { auth_api_key { id name user_id default_tenant_id created expires_at key_hint created_by { id username } } }";
const REVOKE: &str =
    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";
const CREATE: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key token } }";

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

#[tokio::test]
async fn created_key_is_returned_once_as_key_and_token_and_works() {
    let h = Harness::new().await;
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "ci", None)
        .await;
    let created = &reply["data"]["create_api_key"];
    let secret = created["key"].as_str().unwrap();
    assert_eq!(created["token"], created["key"]);
    assert!(secret.starts_with("apk_"));
    let data = h
        .data(secret, "query { auth_info { api_key_id user_id } }", None)
        .await;
    assert_eq!(data["auth_info"]["api_key_id"], created["id"]);
    assert_eq!(
        data["auth_info"]["user_id"],
        json!(h.tenant.admin_id.to_string())
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn the_secret_is_never_stored_nor_listed() {
    let h = Harness::new().await;
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "ci", None)
        .await;
    let secret = reply["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = h.data(&h.tenant.admin_key, LIST, None).await.to_string();
    assert!(!listing.contains(&secret));
    assert!(!listing.contains(&secret[4..]));
    let stored = format!("{:?}", h.items().await);
    assert!(!stored.contains(&secret[4..]), "the secret is in the table");
    assert!(
        !stored.contains(&h.tenant.admin_key[4..]),
        "the first key is in the table"
    );
}

#[tokio::test]
async fn listing_shows_metadata_with_never_or_the_expiry() {
    let h = Harness::new().await;
    let expires = h.now() + Duration::days(30);
    h.create_key(
        &h.tenant.admin_key,
        h.tenant.admin_id,
        "expiring",
        Some(&rfc3339(expires)),
    )
    .await;
    let keys = h.data(&h.tenant.admin_key, LIST, None).await["auth_api_key"].clone();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let named = |name: &str| {
        keys.iter()
            .find(|k| k["name"] == json!(name))
            .unwrap()
            .clone()
    };
    assert_eq!(named("first key")["expires_at"], Value::Null);
    let shown = named("expiring")["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(shown.ends_with("+00:00"));
    assert_eq!(
        time::OffsetDateTime::parse(&shown, &Rfc3339).unwrap(),
        expires
    );
    for key in keys {
        assert_eq!(key["user_id"], json!(h.tenant.admin_id.to_string()));
        assert_eq!(key["default_tenant_id"], json!(h.tenant.id.to_string()));
        assert_eq!(
            key["created_by"]["id"],
            json!(h.tenant.admin_id.to_string())
        );
        assert!(key["key_hint"].as_str().unwrap().starts_with("apk_"));
    }
}

#[tokio::test]
async fn expires_at_in_any_offset_is_normalised_to_utc() {
    let h = Harness::new().await;
    let reply = h
        .create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            "tz",
            Some("2099-01-02T03:04:05+02:00"),
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    let keys = h.data(&h.tenant.admin_key, LIST, None).await;
    let tz = keys["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == json!("tz"))
        .unwrap()
        .clone();
    assert_eq!(tz["expires_at"], json!("2099-01-02T01:04:05+00:00"));
}

#[tokio::test]
async fn revoked_key_fails_on_next_request() {
    let h = Harness::new().await;
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "doomed", None)
        .await;
    let secret = reply["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let id = reply["data"]["create_api_key"]["id"].clone();
    h.data(&secret, "query { hello }", None).await;
    let revoked = h
        .data(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": id}})),
        )
        .await;
    assert_eq!(revoked, json!({"delete_api_key": {"success": true}}));
    assert_eq!(
        h.gql(&secret, "query { hello }", None).await,
        unauthenticated()
    );
    assert_eq!(h.assert_consistent().await, 1);
}

#[tokio::test]
async fn a_key_can_revoke_itself_and_then_fails() {
    let h = Harness::new().await;
    let data = h
        .data(
            &h.tenant.admin_key,
            "query { auth_info { api_key_id } }",
            None,
        )
        .await;
    let id = data["auth_info"]["api_key_id"].clone();
    let revoked = h
        .data(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": id}})),
        )
        .await;
    assert_eq!(revoked["delete_api_key"]["success"], json!(true));
    assert_eq!(
        h.gql(&h.tenant.admin_key, "query { hello }", None).await,
        unauthenticated()
    );
}

#[tokio::test]
async fn revoking_an_unknown_key_is_success_false_not_an_error() {
    let h = Harness::new().await;
    let data = h
        .data(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": uuid::Uuid::new_v4()}})),
        )
        .await;
    assert_eq!(data, json!({"delete_api_key": {"success": false}}));
}

#[tokio::test]
async fn expired_key_fails_at_the_second_of_expiry() {
    let h = Harness::new().await;
    let expires = h.now() + Duration::seconds(60);
    let reply = h
        .create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            "short",
            Some(&rfc3339(expires)),
        )
        .await;
    let secret = reply["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.clock.set(expires - Duration::seconds(1));
    h.data(&secret, "query { hello }", None).await;
    h.clock.set(expires);
    assert_eq!(
        h.gql(&secret, "query { hello }", None).await,
        unauthenticated()
    );
    h.clock.set(expires + Duration::days(1));
    assert_eq!(
        h.gql(&secret, "query { hello }", None).await,
        unauthenticated()
    );
}

#[tokio::test]
async fn expired_keys_are_not_listed() {
    let h = Harness::new().await;
    let expires = h.now() + Duration::seconds(10);
    h.create_key(
        &h.tenant.admin_key,
        h.tenant.admin_id,
        "short",
        Some(&rfc3339(expires)),
    )
    .await;
    assert_eq!(
        h.data(&h.tenant.admin_key, LIST, None).await["auth_api_key"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    h.clock.set(expires);
    let keys = h.data(&h.tenant.admin_key, LIST, None).await;
    assert_eq!(keys["auth_api_key"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn expires_at_in_the_past_or_now_is_bad_user_input_and_writes_nothing() {
    let h = Harness::new().await;
    let before = h.items().await.len();
    for at in [h.now() - Duration::seconds(1), h.now()] {
        let reply = h
            .create_key(
                &h.tenant.admin_key,
                h.tenant.admin_id,
                "late",
                Some(&rfc3339(at)),
            )
            .await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
        assert!(reply["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expires_at"));
    }
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn malformed_create_input_is_a_clear_error_and_writes_nothing() {
    let h = Harness::new().await;
    let before = h.items().await.len();
    let admin = h.tenant.admin_id.to_string();
    let cases = [
        json!({"input": {"name": "x".repeat(256), "user_id": admin}}),
        json!({"input": {"name": "", "user_id": admin}}),
        json!({"input": {"name": "tab\there", "user_id": admin}}),
        json!({"input": {"name": "nul\u{0}", "user_id": admin}}),
        json!({"input": {"name": "ok", "user_id": "not-a-uuid"}}),
        json!({"input": {"name": "ok", "user_id": admin, "expires_at": "tomorrow"}}),
        json!({"input": {"name": 42, "user_id": admin}}),
        json!({"input": {"name": "ok", "user_id": admin, "surprise": true}}),
        json!({"input": {"name": "ok"}}),
        json!({"input": {"name": "ok", "user_id": admin, "default_tenant_id": uuid::Uuid::new_v4()}}),
        json!({}),
    ];
    for variables in cases {
        let reply = h
            .gql(&h.tenant.admin_key, CREATE, Some(variables.clone()))
            .await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{variables}: {reply}");
        let message = reply["errors"][0]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.contains("apk_"),
            "{message}"
        );
        assert_eq!(reply["data"], Value::Null);
    }
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn names_of_exactly_255_characters_are_accepted() {
    let h = Harness::new().await;
    let reply = h
        .create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            &"é".repeat(255),
            None,
        )
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
}

#[tokio::test]
async fn default_tenant_id_of_the_request_tenant_is_accepted() {
    let h = Harness::new().await;
    let vars = json!({"input": {"name": "ok", "user_id": h.tenant.admin_id, "default_tenant_id": h.tenant.id}});
    let data = h.data(&h.tenant.admin_key, CREATE, Some(vars)).await;
    assert!(data["create_api_key"]["key"].as_str().is_some());
}

#[tokio::test]
async fn nobody_creates_a_key_for_another_user() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let before = h.items().await.len();
    let reply = h
        .create_key(&h.tenant.admin_key, bob.user_id, "for bob", None)
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    assert_eq!(reply["errors"][0]["message"], json!("user not found"));
    let reply = h
        .create_key(&bob.key, h.tenant.admin_id, "for alice", None)
        .await;
    assert_eq!(reply["errors"][0]["message"], json!("user not found"));
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn every_role_may_create_and_revoke_its_own_keys() {
    let h = Harness::new().await;
    for (name, role) in [("u", Role::User), ("r", Role::ReadOnlyUser)] {
        let member = h.add_member("acme", name, role).await;
        let reply = h
            .create_key(&member.key, member.user_id, "mine", None)
            .await;
        let id = reply["data"]["create_api_key"]["id"].clone();
        assert!(id.is_string(), "{reply}");
        let data = h
            .data(&member.key, REVOKE, Some(json!({"input": {"key_id": id}})))
            .await;
        assert_eq!(data["delete_api_key"]["success"], json!(true));
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_user_lists_only_their_own_keys() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let keys = h.data(&bob.key, LIST, None).await;
    let keys = keys["auth_api_key"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["user_id"], json!(bob.user_id.to_string()));
}

#[tokio::test]
async fn a_user_cannot_revoke_another_users_key() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let alice_key = h
        .data(
            &h.tenant.admin_key,
            "query { auth_info { api_key_id } }",
            None,
        )
        .await;
    let id = alice_key["auth_info"]["api_key_id"].clone();
    let data = h
        .data(&bob.key, REVOKE, Some(json!({"input": {"key_id": id}})))
        .await;
    assert_eq!(data["delete_api_key"]["success"], json!(false));
    // Nor may an admin revoke another user's key.
    let bob_id = h
        .data(&bob.key, "query { auth_info { api_key_id } }", None)
        .await["auth_info"]["api_key_id"]
        .clone();
    let data = h
        .data(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": bob_id}})),
        )
        .await;
    assert_eq!(data["delete_api_key"]["success"], json!(false));
    h.data(&h.tenant.admin_key, "query { hello }", None).await;
    h.data(&bob.key, "query { hello }", None).await;
}

#[tokio::test]
async fn order_by_sorts_the_listing() {
    let h = Harness::new().await;
    for name in ["b", "c", "a"] {
        h.create_key(&h.tenant.admin_key, h.tenant.admin_id, name, None)
            .await;
    }
    let data = h
        .data(
            &h.tenant.admin_key,
            "query { auth_api_key(order_by: [{name: desc}]) { name } }",
            None,
        )
        .await;
    let names: Vec<&str> = data["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["first key", "c", "b", "a"]);
}

#[tokio::test]
async fn an_owner_holds_at_most_forty_keys_and_the_forty_first_writes_nothing() {
    let h = Harness::new().await;
    for i in 1..40 {
        let reply = h
            .create_key(
                &h.tenant.admin_key,
                h.tenant.admin_id,
                &format!("k{i}"),
                None,
            )
            .await;
        assert!(reply.get("errors").is_none(), "{i}: {reply}");
    }
    let before = h.items().await.len();
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "one too many", None)
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("at most 40"));
    assert_eq!(h.items().await.len(), before);
    assert_eq!(h.assert_consistent().await, 40);
}
