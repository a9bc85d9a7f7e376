//! Tenant isolation: a key of tenant A can neither touch nor detect tenant B.

use apikeys_tests::{unauthenticated, Harness};
use serde_json::json;
use uuid::Uuid;

const REVOKE: &str =
    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";
const DELETE_SA: &str = "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success } }";
const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";
const DELETE_MEMBER: &str =
    "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }";
const CREATE_SA: &str = "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }";

async fn two_tenants() -> (Harness, apikeys_tests::TenantFixture) {
    let h = Harness::new().await;
    let b = h.add_tenant("globex", "gina").await;
    (h, b)
}

/// Two answers are identical: a foreign object looks like a random id.
fn same_answer(a: &serde_json::Value, b: &serde_json::Value) {
    assert_eq!(a, b, "a foreign object is told apart from a random id");
}

#[tokio::test]
async fn a_key_reads_and_lists_only_its_own_tenant() {
    let (h, b) = two_tenants().await;
    let a_key = &h.tenant.admin_key;
    let by_id = format!(
        "query {{ tenant(where: {{ id: {{ _eq: \"{}\" }} }}) {{ id }} }}",
        b.id
    );
    assert_eq!(h.data(a_key, &by_id, None).await, json!({"tenant": []}));
    let by_slug = "query($slug: String) { tenant(where: {slug: { _eq: $slug } }) { id } }";
    assert_eq!(
        h.data(a_key, by_slug, Some(json!({"slug": "globex"})))
            .await,
        json!({"tenant": []})
    );
    let all = h.data(a_key, "query { tenant { slug } }", None).await;
    assert_eq!(all, json!({"tenant": [{"slug": "acme"}]}));
    let users = h
        .data(a_key, "query { user_view_same_tenant { id } }", None)
        .await
        .to_string();
    assert!(!users.contains(&b.admin_id.to_string()));
    let keys = h
        .data(
            a_key,
            "query { auth_api_key { user_id default_tenant_id } }",
            None,
        )
        .await
        .to_string();
    assert!(!keys.contains(&b.id.to_string()) && !keys.contains(&b.admin_id.to_string()));
}

#[tokio::test]
async fn a_key_cannot_act_in_another_tenant_via_the_header() {
    let (h, b) = two_tenants().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let tenant = b.id.to_string();
    let reply = h
        .send(
            apikeys_tests::Route::RestGraphql,
            &apikeys_tests::prefect_body("query { auth_api_key { id } }", None),
            &[("Authorization", &auth), ("X-PREFECT-TENANT-ID", &tenant)],
        )
        .await;
    assert_eq!(reply.json, unauthenticated());
}

#[tokio::test]
async fn revoking_a_foreign_key_answers_exactly_like_a_random_id() {
    let (h, b) = two_tenants().await;
    let b_key_id = h
        .data(&b.admin_key, "query { auth_info { api_key_id } }", None)
        .await["auth_info"]["api_key_id"]
        .clone();
    let foreign = h
        .gql(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": b_key_id}})),
        )
        .await;
    let random = h
        .gql(
            &h.tenant.admin_key,
            REVOKE,
            Some(json!({"input": {"key_id": Uuid::new_v4()}})),
        )
        .await;
    same_answer(&foreign, &random);
    assert_eq!(
        foreign,
        json!({"data": {"delete_api_key": {"success": false}}})
    );
    h.data(&b.admin_key, "query { hello }", None).await;
}

#[tokio::test]
async fn creating_a_key_for_a_foreign_user_answers_like_a_random_id_and_writes_nothing() {
    let (h, b) = two_tenants().await;
    let before = h.items().await.len();
    let foreign = h
        .create_key(&h.tenant.admin_key, b.admin_id, "x", None)
        .await;
    let random = h
        .create_key(&h.tenant.admin_key, Uuid::new_v4(), "x", None)
        .await;
    same_answer(&foreign, &random);
    assert_eq!(foreign["errors"][0]["message"], json!("user not found"));
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn foreign_service_accounts_and_memberships_cannot_be_touched_or_detected() {
    let (h, b) = two_tenants().await;
    let sa = h
        .data(
            &b.admin_key,
            CREATE_SA,
            Some(json!({"input": {"name": "b-bot"}})),
        )
        .await;
    let sa_id = sa["create_service_account"]["id"].clone();
    let key = &h.tenant.admin_key;

    let foreign = h
        .gql(key, DELETE_SA, Some(json!({"input": {"user_id": sa_id}})))
        .await;
    let random = h
        .gql(
            key,
            DELETE_SA,
            Some(json!({"input": {"user_id": Uuid::new_v4()}})),
        )
        .await;
    same_answer(&foreign, &random);

    let foreign = h.gql(key, SET_ROLE, Some(json!({"input": {"membership_id": b.admin_membership_id, "role_id": apikeys_core::domain::Role::User.id()}}))).await;
    let random = h.gql(key, SET_ROLE, Some(json!({"input": {"membership_id": Uuid::new_v4(), "role_id": apikeys_core::domain::Role::User.id()}}))).await;
    same_answer(&foreign, &random);

    let foreign = h
        .gql(
            key,
            DELETE_MEMBER,
            Some(json!({"input": {"membership_id": b.admin_membership_id}})),
        )
        .await;
    let random = h
        .gql(
            key,
            DELETE_MEMBER,
            Some(json!({"input": {"membership_id": Uuid::new_v4()}})),
        )
        .await;
    same_answer(&foreign, &random);

    let sa_key = h
        .create_key(
            key,
            serde_json::from_value(sa_id.clone()).unwrap(),
            "steal",
            None,
        )
        .await;
    let random = h.create_key(key, Uuid::new_v4(), "steal", None).await;
    same_answer(&sa_key, &random);

    // Tenant B is untouched.
    let b_users = h.data(&b.admin_key, "query { user_view_same_tenant { id account_type memberships { role_detail { name } } } }", None).await;
    assert_eq!(
        b_users["user_view_same_tenant"].as_array().unwrap().len(),
        2,
        "{b_users}"
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn creating_a_service_account_in_another_tenant_is_refused() {
    let (h, b) = two_tenants().await;
    let before = h.items().await.len();
    let reply = h
        .gql(
            &h.tenant.admin_key,
            CREATE_SA,
            Some(json!({"input": {"name": "x", "tenant_id": b.id}})),
        )
        .await;
    let random = h
        .gql(
            &h.tenant.admin_key,
            CREATE_SA,
            Some(json!({"input": {"name": "x", "tenant_id": Uuid::new_v4()}})),
        )
        .await;
    same_answer(&reply, &random);
    assert!(reply.get("errors").is_some());
    assert_eq!(h.items().await.len(), before);
}
