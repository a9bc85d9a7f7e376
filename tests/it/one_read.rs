//! Authentication in one strongly consistent GetItem: the key's hash item
//! carries the owner's role and what `auth_info`, `hello`, `tenant` and
//! `user` answer, kept equal to the membership by every write that changes
//! it (`Harness::assert_consistent` compares every copy with its source).

use apikeys_core::audit::AuditAction;
use std::sync::Arc;

use apikeys_core::domain::{AccountType, ApiKey, Role};
use apikeys_core::token::NewKey;
use apikeys_store::StoredKey;
use apikeys_tests::{prefect_body, unauthenticated, Harness, Route};
use serde_json::json;
use uuid::Uuid;

const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";

async fn requests_of(h: &Harness, key: &str, query: &str) -> (serde_json::Value, u64) {
    // At steady state: the key's use is recorded once per interval (the
    // first use here), a write this file does not count (lifecycle.rs does).
    h.gql(key, "{ hello }", None).await;
    h.counter.reset();
    let data = h.data(key, query, None).await;
    (data, h.counter.total())
}

#[tokio::test]
async fn the_prefect_clients_login_and_status_calls_cost_one_consistent_read_each() {
    let h = Harness::new().await;
    for query in [
        "query { auth_info { tenant_id user_id role account_type api_key_id } }",
        "query { hello }",
        "query { tenant { id slug name created } }",
        "query { tenant(where: {slug: { _eq: \"acme\" } }) { id } }",
        "query { user { id username email account_type memberships { id tenant_id tenant { slug } role_detail { name } } } }",
        "query { auth_info { tenant_id } tenant(order_by: {slug: asc}) { id slug name } hello }",
    ] {
        let (data, requests) = requests_of(&h, &h.tenant.admin_key, query).await;
        assert!(!data.is_null(), "{query}");
        assert_eq!(requests, 1, "{query}: {:?}", h.counter.snapshot());
        assert_eq!(h.counter.snapshot().get("GetItem"), Some(&1), "{query}");
    }
    let (data, _) = requests_of(
        &h,
        &h.tenant.admin_key,
        "query { tenant { id slug name } user { username email } }",
    )
    .await;
    assert_eq!(
        data,
        json!({"tenant": [{"id": h.tenant.id.to_string(), "slug": "acme", "name": "acme Inc"}],
               "user": [{"username": "alice", "email": "admin@example.com"}]})
    );
}

#[tokio::test]
async fn a_role_change_reaches_every_key_of_the_member_at_once() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let mut keys = vec![bob.key.clone()];
    for i in 0..5 {
        let made = h
            .create_key(&bob.key, bob.user_id, &format!("k{i}"), None)
            .await;
        keys.push(
            made["data"]["create_api_key"]["key"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for role in [Role::ReadOnlyUser, Role::TenantAdmin, Role::User] {
        let vars = json!({"input": {"membership_id": bob.membership_id, "role_id": role.id()}});
        h.data(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
        for key in &keys {
            let (data, requests) = requests_of(&h, key, "{ auth_info { role } }").await;
            assert_eq!(data["auth_info"]["role"], role.name());
            assert_eq!(requests, 1);
        }
        h.assert_consistent().await;
    }
}

#[tokio::test]
async fn role_changes_racing_key_creation_never_leave_a_key_with_an_old_role() {
    let h = Arc::new(Harness::new().await);
    let bob = h.add_member("acme", "bob", Role::User).await;
    let creators: Vec<_> = (0..4)
        .map(|i| {
            let (h, key, owner) = (Arc::clone(&h), bob.key.clone(), bob.user_id);
            tokio::spawn(async move {
                let mut made = Vec::new();
                for round in 0..6 {
                    let reply = h
                        .create_key(&key, owner, &format!("c{i}-{round}"), None)
                        .await;
                    if let Some(k) = reply["data"]["create_api_key"]["key"].as_str() {
                        made.push(k.to_string());
                    }
                }
                made
            })
        })
        .collect();
    let admin = Arc::clone(&h);
    let membership = bob.membership_id;
    let changer = tokio::spawn(async move {
        for round in 0..12 {
            let role = [Role::ReadOnlyUser, Role::User, Role::TenantAdmin][round % 3];
            let vars = json!({"input": {"membership_id": membership, "role_id": role.id()}});
            // A retryable answer (503) under contention is a correct one.
            let auth = format!("Bearer {}", admin.tenant.admin_key);
            let body = prefect_body(SET_ROLE, Some(vars));
            let reply = admin
                .send(Route::RestGraphql, &body, &[("Authorization", &auth)])
                .await;
            assert!(
                matches!(reply.status, 200 | 503),
                "{} {}",
                reply.status,
                reply.body
            );
        }
    });
    let mut keys = vec![bob.key.clone()];
    for creator in creators {
        keys.extend(creator.await.unwrap());
    }
    changer.await.unwrap();
    h.assert_consistent().await;
    let truth = h
        .service()
        .store()
        .membership(h.tenant.id, bob.user_id)
        .await
        .unwrap()
        .unwrap();
    for key in &keys {
        let data = h.data(key, "{ auth_info { role } }", None).await;
        assert_eq!(
            data["auth_info"]["role"],
            truth.role.name(),
            "a key kept an old role"
        );
    }
    assert!(keys.len() > 1, "no key was created at all");
}

/// A key as the previous version wrote it: no copy on its hash item.
async fn old_style_key(h: &Harness, owner: Uuid) -> String {
    let secret = NewKey::generate("apk");
    let stored = StoredKey {
        key: ApiKey {
            id: Uuid::new_v4(),
            name: "old".into(),
            tenant_id: h.tenant.id,
            owner_id: owner,
            owner_type: AccountType::User,
            created: h.now(),
            created_by: owner,
            created_by_name: None,
            expires_at: None,
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
    };
    let written = h
        .service()
        .store()
        .insert_key(
            &stored,
            None,
            &h.audit(AuditAction::KeyCreated, stored.key.id),
        )
        .await
        .unwrap();
    assert_eq!(written, apikeys_store::KeyInsert::Written);
    secret.expose_secret().to_string()
}

#[tokio::test]
async fn a_key_written_before_the_copies_works_and_gets_its_copy_on_first_use() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let old = old_style_key(&h, bob.user_id).await;
    // First use: the hash item, the membership, the tenant; then the copy,
    // and (alongside) the recording of the key's first use.
    h.counter.reset();
    let data = h
        .data(&old, "{ auth_info { role } tenant { slug } }", None)
        .await;
    assert_eq!(data["auth_info"]["role"], "USER");
    assert_eq!(data["tenant"][0]["slug"], "acme");
    let counts = h.counter.snapshot();
    assert_eq!(counts.get("GetItem"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("TransactWriteItems"), Some(&2), "{counts:?}");
    // From then on: one read.
    let (_, requests) = requests_of(&h, &old, "{ auth_info { role } }").await;
    assert_eq!(requests, 1);
    h.assert_consistent().await;
    // And it follows role changes and revocation like any key.
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::ReadOnlyUser.id()}});
    h.data(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
    let data = h.data(&old, "{ auth_info { role } }", None).await;
    assert_eq!(data["auth_info"]["role"], "READ_ONLY_USER");
    h.assert_consistent().await;
}

#[tokio::test]
async fn an_old_key_whose_owner_changes_role_before_its_first_use_gets_the_new_role() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let old = old_style_key(&h, bob.user_id).await;
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::TenantAdmin.id()}});
    h.data(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
    let data = h.data(&old, "{ auth_info { role } }", None).await;
    assert_eq!(data["auth_info"]["role"], "TENANT_ADMIN");
    h.assert_consistent().await;
    // Removing the owner removes old and new keys alike.
    h.data(
        &h.tenant.admin_key,
        "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }",
        Some(json!({"input": {"membership_id": bob.membership_id}})),
    )
    .await;
    assert_eq!(h.gql(&old, "{ hello }", None).await, unauthenticated());
    assert_eq!(h.gql(&bob.key, "{ hello }", None).await, unauthenticated());
}
