//! Tenant administration: service accounts and their keys, roles, members.

use apikeys_core::domain::Role;
use apikeys_tests::{error_code, unauthenticated, Harness};
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
const LIST: &str = "query { auth_api_key { id user_id } }";

async fn service_account(h: &Harness, key: &str, name: &str) -> Uuid {
    let data = h
        .data(key, CREATE_SA, Some(json!({"input": {"name": name}})))
        .await;
    serde_json::from_value(data["create_service_account"]["id"].clone()).unwrap()
}

fn secret(reply: &Value) -> String {
    reply["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key: {reply}"))
        .to_string()
}

#[tokio::test]
async fn admin_creates_a_service_account_whose_key_is_an_admin_key() {
    let h = Harness::new().await;
    let sa = service_account(&h, &h.tenant.admin_key, "ci-bot").await;
    let sa_key = secret(&h.create_key(&h.tenant.admin_key, sa, "deploys", None).await);
    assert!(
        sa_key.starts_with("apks_"),
        "service-account keys have their own prefix"
    );
    let info = h
        .data(
            &sa_key,
            "query { auth_info { user_id account_type role tenant_id } }",
            None,
        )
        .await;
    assert_eq!(
        info["auth_info"],
        json!({"user_id": sa.to_string(), "account_type": "SERVICE", "role": "TENANT_ADMIN", "tenant_id": h.tenant.id.to_string()})
    );
    let users = h.data(&h.tenant.admin_key, "query { user_view_same_tenant { id username account_type memberships { tenant_id role_detail { id name } } } }", None).await;
    let bot = users["user_view_same_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == json!(sa.to_string()))
        .cloned()
        .unwrap();
    assert_eq!(bot["username"], json!("ci-bot"));
    assert_eq!(bot["account_type"], json!("SERVICE"));
    assert_eq!(
        bot["memberships"][0]["role_detail"],
        json!({"id": Role::TenantAdmin.id().to_string(), "name": "TENANT_ADMIN"})
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn admin_sees_service_account_keys_and_a_plain_user_does_not() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let sa = service_account(&h, &h.tenant.admin_key, "bot").await;
    h.create_key(&h.tenant.admin_key, sa, "bot key", None).await;
    let admin_view = h.data(&h.tenant.admin_key, LIST, None).await.to_string();
    assert!(admin_view.contains(&sa.to_string()));
    let bob_view = h.data(&bob.key, LIST, None).await.to_string();
    assert!(!bob_view.contains(&sa.to_string()));
    assert!(!bob_view.contains(&h.tenant.admin_id.to_string()));
}

#[tokio::test]
async fn a_plain_user_cannot_manage_service_accounts_or_their_keys() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let sa = service_account(&h, &h.tenant.admin_key, "bot").await;
    let sa_key_id = h.create_key(&h.tenant.admin_key, sa, "k", None).await["data"]
        ["create_api_key"]["id"]
        .clone();
    let before = h.items().await.len();

    let reply = h
        .gql(
            &bob.key,
            CREATE_SA,
            Some(json!({"input": {"name": "mine"}})),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN");
    let reply = h.create_key(&bob.key, sa, "k", None).await;
    assert_eq!(reply["errors"][0]["message"], json!("user not found"));
    let reply = h
        .data(
            &bob.key,
            REVOKE,
            Some(json!({"input": {"key_id": sa_key_id}})),
        )
        .await;
    assert_eq!(reply["delete_api_key"]["success"], json!(false));
    // Refused as delete_membership refuses it (it used to answer
    // success: false, as for an unknown account).
    let reply = h
        .gql(&bob.key, DELETE_SA, Some(json!({"input": {"user_id": sa}})))
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN");
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn admin_revokes_a_service_account_key_and_it_fails_next_request() {
    let h = Harness::new().await;
    let sa = service_account(&h, &h.tenant.admin_key, "bot").await;
    let reply = h.create_key(&h.tenant.admin_key, sa, "k", None).await;
    let (id, key) = (
        reply["data"]["create_api_key"]["id"].clone(),
        secret(&reply),
    );
    h.data(&key, "query { hello }", None).await;
    let data = h
        .data(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": id}})),
        )
        .await;
    assert_eq!(data["delete_api_key"]["success"], json!(true));
    assert_eq!(
        h.gql(&key, "query { hello }", None).await,
        unauthenticated()
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn deleting_a_service_account_revokes_all_its_keys_at_once() {
    let h = Harness::new().await;
    let sa = service_account(&h, &h.tenant.admin_key, "bot").await;
    let keys: Vec<String> = sa_keys(&h, sa, 3).await;
    for key in &keys {
        h.data(key, "query { hello }", None).await;
    }
    let data = h
        .data(
            &h.tenant.admin_key,
            DELETE_SA,
            Some(json!({"input": {"user_id": sa}})),
        )
        .await;
    assert_eq!(data["delete_service_account"]["success"], json!(true));
    for key in &keys {
        assert_eq!(h.gql(key, "query { hello }", None).await, unauthenticated());
    }
    assert_eq!(h.assert_consistent().await, 1, "only alice's key is left");
    let again = h
        .data(
            &h.tenant.admin_key,
            DELETE_SA,
            Some(json!({"input": {"user_id": sa}})),
        )
        .await;
    assert_eq!(again["delete_service_account"]["success"], json!(false));
}

async fn sa_keys(h: &Harness, sa: Uuid, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        keys.push(secret(
            &h.create_key(&h.tenant.admin_key, sa, &format!("k{i}"), None)
                .await,
        ));
    }
    keys
}

#[tokio::test]
async fn a_service_account_may_create_service_accounts_and_their_keys() {
    let h = Harness::new().await;
    let sa = service_account(&h, &h.tenant.admin_key, "root-bot").await;
    let sa_key = secret(&h.create_key(&h.tenant.admin_key, sa, "k", None).await);
    let child = service_account(&h, &sa_key, "child-bot").await;
    let child_key = secret(&h.create_key(&sa_key, child, "k", None).await);
    h.data(&child_key, "query { hello }", None).await;
    // ...but not keys for a user.
    let reply = h.create_key(&sa_key, h.tenant.admin_id, "k", None).await;
    assert_eq!(reply["errors"][0]["message"], json!("user not found"));
}

#[tokio::test]
async fn a_service_account_created_with_the_user_role_is_not_an_admin() {
    let h = Harness::new().await;
    let vars = json!({"input": {"name": "limited", "role_id": Role::User.id()}});
    let sa: Uuid = serde_json::from_value(
        h.data(&h.tenant.admin_key, CREATE_SA, Some(vars)).await["create_service_account"]["id"]
            .clone(),
    )
    .unwrap();
    let sa_key = secret(&h.create_key(&h.tenant.admin_key, sa, "k", None).await);
    let info = h.data(&sa_key, "query { auth_info { role } }", None).await;
    assert_eq!(info["auth_info"]["role"], json!("USER"));
    let reply = h
        .gql(&sa_key, CREATE_SA, Some(json!({"input": {"name": "x"}})))
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN");
    // It lists its own keys only.
    let keys = h.data(&sa_key, LIST, None).await;
    assert_eq!(keys["auth_api_key"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_service_account_input_is_rejected_and_writes_nothing() {
    let h = Harness::new().await;
    let before = h.items().await.len();
    for vars in [
        json!({"input": {"name": ""}}),
        json!({"input": {"name": "a\nb"}}),
        json!({"input": {"name": "x".repeat(300)}}),
        json!({"input": {"name": "ok", "role_id": Uuid::new_v4()}}),
        json!({"input": {"name": "ok", "role_id": "nope"}}),
    ] {
        let reply = h
            .gql(&h.tenant.admin_key, CREATE_SA, Some(vars.clone()))
            .await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{vars}: {reply}");
    }
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn a_role_change_applies_on_the_next_request() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    assert_eq!(
        h.data(&bob.key, "query { auth_info { role } }", None).await["auth_info"]["role"],
        json!("USER")
    );
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::TenantAdmin.id()}});
    let data = h.data(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
    assert_eq!(
        data["set_membership_role"]["id"],
        json!(bob.membership_id.to_string())
    );
    assert_eq!(
        h.data(&bob.key, "query { auth_info { role } }", None).await["auth_info"]["role"],
        json!("TENANT_ADMIN")
    );
    service_account(&h, &bob.key, "bob-bot").await;
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::ReadOnlyUser.id()}});
    h.data(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
    let reply = h
        .gql(
            &bob.key,
            CREATE_SA,
            Some(json!({"input": {"name": "again"}})),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN");
}

#[tokio::test]
async fn the_last_admin_user_cannot_be_demoted_or_removed() {
    let h = Harness::new().await;
    let demote = json!({"input": {"membership_id": h.tenant.admin_membership_id, "role_id": Role::User.id()}});
    let reply = h
        .gql(&h.tenant.admin_key, SET_ROLE, Some(demote.clone()))
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("last admin"));
    let remove = json!({"input": {"membership_id": h.tenant.admin_membership_id}});
    let reply = h
        .gql(&h.tenant.admin_key, DELETE_MEMBER, Some(remove))
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    // A service account admin does not count as the tenant's admin user.
    service_account(&h, &h.tenant.admin_key, "bot").await;
    let reply = h
        .gql(&h.tenant.admin_key, SET_ROLE, Some(demote.clone()))
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT");
    // With a second admin user, the first may step down.
    let bob = h.add_member("acme", "bob", Role::TenantAdmin).await;
    h.data(&h.tenant.admin_key, SET_ROLE, Some(demote)).await;
    assert_eq!(
        h.data(&h.tenant.admin_key, "query { auth_info { role } }", None)
            .await["auth_info"]["role"],
        json!("USER")
    );
    let back = json!({"input": {"membership_id": bob.membership_id, "role_id": Role::User.id()}});
    let reply = h.gql(&bob.key, SET_ROLE, Some(back)).await;
    assert_eq!(
        error_code(&reply),
        "BAD_USER_INPUT",
        "bob is now the last admin"
    );
}

#[tokio::test]
async fn a_removed_member_s_keys_fail_on_the_next_request_and_are_gone() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let extra = secret(&h.create_key(&bob.key, bob.user_id, "second", None).await);
    let data = h
        .data(
            &h.tenant.admin_key,
            DELETE_MEMBER,
            Some(json!({"input": {"membership_id": bob.membership_id}})),
        )
        .await;
    assert_eq!(data["delete_membership"]["success"], json!(true));
    assert_eq!(
        h.gql(&bob.key, "query { hello }", None).await,
        unauthenticated()
    );
    assert_eq!(
        h.gql(&extra, "query { hello }", None).await,
        unauthenticated()
    );
    assert_eq!(h.assert_consistent().await, 1);
    let users = h
        .data(
            &h.tenant.admin_key,
            "query { user_view_same_tenant { id } }",
            None,
        )
        .await
        .to_string();
    assert!(!users.contains(&bob.user_id.to_string()));
}

#[tokio::test]
async fn only_admins_change_roles_or_remove_members() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let carol = h.add_member("acme", "carol", Role::ReadOnlyUser).await;
    let vars =
        json!({"input": {"membership_id": carol.membership_id, "role_id": Role::TenantAdmin.id()}});
    assert_eq!(
        error_code(&h.gql(&bob.key, SET_ROLE, Some(vars)).await),
        "FORBIDDEN"
    );
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::TenantAdmin.id()}});
    assert_eq!(
        error_code(&h.gql(&bob.key, SET_ROLE, Some(vars)).await),
        "FORBIDDEN"
    );
    let vars = json!({"input": {"membership_id": carol.membership_id}});
    assert_eq!(
        error_code(&h.gql(&bob.key, DELETE_MEMBER, Some(vars)).await),
        "FORBIDDEN"
    );
    h.data(&carol.key, "query { hello }", None).await;
}

#[tokio::test]
async fn user_query_returns_the_caller_with_their_membership() {
    let h = Harness::new().await;
    let data = h.data(&h.tenant.admin_key, "query { user { id username email account_type memberships { id tenant_id tenant { slug } role_detail { name } } } }", None).await;
    assert_eq!(
        data["user"],
        json!([{"id": h.tenant.admin_id.to_string(), "username": "alice", "email": "admin@example.com", "account_type": "USER",
                "memberships": [{"id": h.tenant.admin_membership_id.to_string(), "tenant_id": h.tenant.id.to_string(),
                                 "tenant": {"slug": "acme"}, "role_detail": {"name": "TENANT_ADMIN"}}]}])
    );
}

#[tokio::test]
async fn a_service_account_cannot_take_a_persons_name_nor_a_person_an_accounts() {
    let h = Harness::new().await;
    let query = "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }";
    for name in [
        "alice",
        "Alice",
        " alice",
        "alice\u{a0}",
        "ａｌｉｃｅ",
        "alice\u{3000}",
    ] {
        let reply = h
            .gql(
                &h.tenant.admin_key,
                query,
                Some(json!({"input": {"name": name}})),
            )
            .await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
        assert!(reply["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("username of a member"));
    }
    let (bot, bot_key) = h.add_service_account("deploy").await;
    let person = apikeys_service::operator::NewUser {
        username: "deploy",
        email: None,
    };
    let err = h
        .service()
        .add_member("acme", person, Role::User)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("service account"), "{err}");
    // What the service account does is marked as a service account's.
    let made = h.create_key(&bot_key, bot, "by the bot", None).await;
    assert!(made.get("errors").is_none(), "{made}");
    let log = h
        .data(
            &h.tenant.admin_key,
            "{ audit_log(limit: 10) { action actor_name actor_type } }",
            None,
        )
        .await;
    let entries = log["audit_log"].as_array().unwrap();
    assert_eq!(entries[0]["actor_name"], "deploy");
    assert_eq!(entries[0]["actor_type"], "SERVICE");
    assert!(entries
        .iter()
        .any(|e| e["actor_name"] == "alice" && e["actor_type"] == "USER"));
}

#[tokio::test]
async fn a_key_in_its_rotation_grace_is_told_it_may_change_nothing() {
    let h = Harness::new().await;
    let p = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    let before = h
        .data(&h.tenant.admin_key, "{ auth_info { permissions } }", None)
        .await;
    assert!(before["auth_info"]["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("create:api_key")));
    h.service()
        .rotate_api_key(&p, p.api_key_id, Some(3600))
        .await
        .unwrap();
    // The old key still authenticates during its grace; it may only read.
    let after = h
        .data(&h.tenant.admin_key, "{ auth_info { permissions } }", None)
        .await;
    assert_eq!(
        after["auth_info"]["permissions"],
        json!(["read:tenant", "read:audit_log"])
    );
}

#[tokio::test]
async fn an_admin_demoted_meanwhile_cannot_remove_itself() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::TenantAdmin).await;
    // Bob's request authenticated as an admin...
    let stale = h
        .service()
        .authenticate(Some(&bob.key), None)
        .await
        .unwrap();
    // ...and another admin demotes him before it runs.
    let admin = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    h.service()
        .set_membership_role(&admin, bob.membership_id, Role::User.id())
        .await
        .unwrap();
    let err = h
        .service()
        .delete_membership(&stale, bob.membership_id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, apikeys_service::Error::Forbidden(_)),
        "{err:?}"
    );
    h.assert_consistent().await;
    assert!(h.service().authenticate(Some(&bob.key), None).await.is_ok());
}
