//! Lifecycle events from the table's change stream: each kind of change
//! the service makes, read back as the stream would give it (the items of
//! a real local DynamoDB put into a `sam local generate-event dynamodb
//! update` event), becomes exactly its events, and none holds a secret or
//! a hash.

use std::collections::HashMap;

use apikeys_core::domain::Role;
use apikeys_tests::Harness;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

const STREAM_EVENT: &str = include_str!("../events/dynamodb-stream.json");

/// An attribute value as DynamoDB JSON.
fn dynamodb_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(dynamodb_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": image(m) }),
        other => panic!("unexpected attribute {other:?}"),
    }
}

fn image(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), dynamodb_json(v)))
            .collect(),
    )
}

/// The stream batch of every item the table holds now, as INSERTs (the
/// fixture's first record, its keys and image replaced), plus the
/// fixture's own MODIFY and REMOVE records of a foreign item.
async fn stream_of_everything(h: &Harness) -> Value {
    let mut event: Value = serde_json::from_str(STREAM_EVENT).unwrap();
    let template = event["Records"][0].clone();
    let mut records: Vec<Value> = event["Records"].as_array().unwrap()[1..].to_vec();
    for (i, item) in h.items().await.iter().enumerate() {
        let mut record = template.clone();
        record["eventID"] = json!(format!("e{i}"));
        record["dynamodb"]["Keys"] =
            json!({"pk": dynamodb_json(&item["pk"]), "sk": dynamodb_json(&item["sk"])});
        record["dynamodb"]["NewImage"] = image(item);
        records.push(record);
    }
    event["Records"] = Value::Array(records);
    event
}

#[tokio::test]
async fn every_kind_of_change_becomes_its_events_without_secrets() {
    let h = Harness::new().await;
    let admin = &h.tenant.admin_key;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let (sa, sa_key) = h.add_service_account("ci").await;
    let made = h.create_key(admin, h.tenant.admin_id, "laptop", None).await;
    let laptop_id = made["data"]["create_api_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let laptop = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.data(
        admin,
        "mutation($id: UUID!) { rotate_api_key(input: {key_id: $id}) { id } }",
        Some(json!({"id": laptop_id})),
    )
    .await;
    h.data(
        admin,
        "mutation($id: UUID!) { delete_service_account(input: {user_id: $id}) { success } }",
        Some(json!({"id": sa})),
    )
    .await;
    let membership = h
        .data(
            admin,
            "{ user_view_same_tenant { username memberships { id } } }",
            None,
        )
        .await;
    let bob_membership = membership["user_view_same_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .unwrap()["memberships"][0]["id"]
        .clone();
    h.data(admin, "mutation($id: UUID!, $role: UUID!) { set_membership_role(input: {membership_id: $id, role_id: $role}) { id } }",
        Some(json!({"id": bob_membership, "role": Role::ReadOnlyUser.id()}))).await;
    let event = stream_of_everything(&h).await;
    let entries = apikeys_events::entries("apikeys-test-bus", &event).unwrap();
    let mut kinds: Vec<String> = entries
        .iter()
        .map(|e| e.detail_type().unwrap().to_string())
        .collect();
    kinds.sort();
    // The tenant, its first key; bob and his key; the service account and
    // its key; the laptop key, its rotation; the removal; the role change.
    let mut expected = vec![
        "Tenant Created",
        "API Key Created",
        "Member Added",
        "API Key Created",
        "Service Account Created",
        "API Key Created",
        "API Key Created",
        "API Key Rotated",
        "Service Account Removed",
        "Role Changed",
    ];
    expected.sort();
    assert_eq!(kinds, expected, "exactly one event per change");
    let secrets: Vec<String> = [
        admin.as_str(),
        bob.key.as_str(),
        sa_key.as_str(),
        laptop.as_str(),
    ]
    .iter()
    .flat_map(|k| {
        [
            k.to_string(),
            apikeys_core::token::TokenHash::of(k).as_str().to_string(),
        ]
    })
    .collect();
    let mut ids = std::collections::HashSet::new();
    for e in &entries {
        assert_eq!(e.source(), Some("apikeys"));
        assert_eq!(e.event_bus_name(), Some("apikeys-test-bus"));
        let detail: Value = serde_json::from_str(e.detail().unwrap()).unwrap();
        assert_eq!(detail["tenant_id"], json!(h.tenant.id.to_string()));
        assert_eq!(detail["version"], json!(1));
        assert!(
            ids.insert(detail["event_id"].as_str().unwrap().to_string()),
            "a stable, unique event id"
        );
        for secret in &secrets {
            assert!(
                !e.detail().unwrap().contains(secret.as_str()),
                "a secret or hash in {detail}"
            );
        }
        if detail["action"] == "ROLE_CHANGED" {
            assert_eq!(detail["target"]["name"], json!("bob"));
            assert_eq!(detail["actor"]["name"], json!("alice"));
            assert!(
                detail["detail"]
                    .as_str()
                    .unwrap()
                    .contains("READ_ONLY_USER"),
                "{detail}"
            );
        }
    }
    // The same batch again (a retry) gives the same event ids: a consumer
    // drops the duplicates.
    let again = apikeys_events::entries("apikeys-test-bus", &event).unwrap();
    assert_eq!(
        again
            .iter()
            .map(|e| e.detail().unwrap().to_string())
            .collect::<Vec<_>>(),
        entries
            .iter()
            .map(|e| e.detail().unwrap().to_string())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_record_that_cannot_be_read_fails_the_batch_naming_it() {
    let mut event: Value = serde_json::from_str(STREAM_EVENT).unwrap();
    event["Records"][0]["dynamodb"]["NewImage"] =
        json!({"pk": {"S": "audit#not-a-uuid"}, "sk": {"S": "x"}});
    let err = apikeys_events::entries("b", &event).unwrap_err();
    assert!(
        err.contains(event["Records"][0]["eventID"].as_str().unwrap()),
        "{err}"
    );
    // Other items, and other kinds of change, are no events at all.
    let fixture: Value = serde_json::from_str(STREAM_EVENT).unwrap();
    assert!(apikeys_events::entries("b", &fixture).unwrap().is_empty());
    assert!(apikeys_events::entries("b", &json!({})).unwrap().is_empty());
}
