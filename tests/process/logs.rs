//! Logs at the most verbose level hold no key, hash, email, credential or
//! request body: a whole scenario runs with `trace` and its output is searched.

use apikeys_core::domain::Role;
use apikeys_core::token::TokenHash;
use apikeys_tests::{Captured, Harness, Route};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use tracing_subscriber::filter::LevelFilter;

const ACCESS_KEY_ID: &str = "AKIALOGSCANTEST00001";
const SECRET_ACCESS_KEY: &str = "logscan/secret/access/key/0000000000000";

#[tokio::test]
async fn a_whole_scenario_at_trace_level_logs_no_secret() {
    let _turn = crate::ONE_AT_A_TIME.lock().await;
    // Before any client exists: the credentials the SDK signs with.
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
    let captured = Captured::default();
    tracing::subscriber::set_global_default(apikeys_platform::logging::subscriber(
        LevelFilter::TRACE,
        captured.clone(),
    ))
    .expect("the only subscriber of this test binary");

    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let body_marker = "body-marker-name-7f3a";
    let made = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, body_marker, None)
        .await;
    let new_key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.data(
        &new_key,
        "query { auth_info { user_id } user_view_same_tenant { email } }",
        None,
    )
    .await;
    let id = made["data"]["create_api_key"]["id"].clone();
    h.data(
        &h.tenant.admin_key,
        "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
        Some(json!({"input": {"key_id": id}})),
    )
    .await;
    // Refused, malformed and failing requests log too, each with why.
    h.gql(&new_key, "query { hello }", None).await;
    h.gql("apk_not-a-key", "query { hello }", None).await;
    let disabled = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "to disable", None)
        .await;
    h.data(
        &h.tenant.admin_key,
        "mutation($input: disable_api_key_input!) { disable_api_key(input: $input) { success } }",
        Some(json!({"input": {"key_id": disabled["data"]["create_api_key"]["id"]}})),
    )
    .await;
    let disabled_key = disabled["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.gql(&disabled_key, "query { hello }", None).await;
    h.send(
        Route::RestGraphql,
        b"{not json",
        &[("Authorization", &format!("Bearer {}", bob.key))],
    )
    .await;
    h.gql(&bob.key, &format!("{{ nope_{body_marker} }}"), None)
        .await;
    // A malformed hash item: the storage error is logged, its key is not.
    let broken = apikeys_core::token::NewKey::generate("apk");
    let broken_hash = broken.hash();
    h.client
        .put_item()
        .table_name(&h.table)
        .item(
            "pk",
            AttributeValue::S(format!("hash#{}", broken_hash.as_str())),
        )
        .item("sk", AttributeValue::S("hash".into()))
        .item("tenant_id", AttributeValue::S("not-a-uuid".into()))
        .send()
        .await
        .unwrap();
    let reply = h.gql(broken.expose_secret(), "query { hello }", None).await;
    assert_eq!(
        reply["errors"][0]["extensions"]["code"],
        "INTERNAL_SERVER_ERROR"
    );

    let logs = captured.text();
    assert!(
        logs.contains("\"request\""),
        "the scenario logged nothing: {logs}"
    );
    for reason in ["unknown_or_revoked", "malformed", "disabled"] {
        assert!(
            logs.contains(&format!("\"reason\":\"{reason}\"")),
            "no refusal logged as {reason}: {logs}"
        );
    }
    assert!(
        logs.contains("storage error"),
        "the storage error was not logged"
    );
    let secrets = [
        ("admin key", h.tenant.admin_key.clone()),
        ("member key", bob.key.clone()),
        ("created key", new_key.clone()),
        ("disabled key", disabled_key.clone()),
        ("broken key", broken.expose_secret().to_string()),
        (
            "admin key hash",
            TokenHash::of(&h.tenant.admin_key).as_str().to_string(),
        ),
        (
            "created key hash",
            TokenHash::of(&new_key).as_str().to_string(),
        ),
        ("broken key hash", broken_hash.as_str().to_string()),
        ("email", "admin@example.com".to_string()),
        ("access key id", ACCESS_KEY_ID.to_string()),
        ("secret access key", SECRET_ACCESS_KEY.to_string()),
        ("request body", body_marker.to_string()),
    ];
    for (what, secret) in secrets {
        assert!(!logs.contains(&secret), "the logs hold the {what}");
    }
}
