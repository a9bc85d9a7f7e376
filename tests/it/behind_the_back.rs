//! Items deleted or left behind outside the service's transactions (DynamoDB's
//! TTL backstop, a hand edit) and deletions that fail: nothing is given up
//! on, no member is blocked, and the operator's check sets counters and
//! leases right (issue 19, item 2).

use std::collections::HashMap;

use apikeys_core::domain::{LeaseKind, Role};
use apikeys_service::sweep::Sweeper;
use apikeys_service::LEASE;
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use apikeys_tests::{endpoint, Harness, MemberFixture};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::Duration;

type Item = HashMap<String, AttributeValue>;

const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";
const DELETE_MEMBER: &str =
    "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }";

fn id_of(reply: &Value) -> String {
    reply["data"]["create_api_key"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no key: {reply}"))
        .to_string()
}

/// The items of key `id`: its listing item and its hash lookup.
async fn items_of(h: &Harness, id: &str) -> Vec<Item> {
    h.items()
        .await
        .into_iter()
        .filter(|item| item.get("key_id") == Some(&AttributeValue::S(id.to_string())))
        .collect()
}

/// Deletes items as DynamoDB's TTL would: no transaction, no counter.
async fn delete_behind_the_back(h: &Harness, items: &[Item]) {
    for item in items {
        h.client
            .delete_item()
            .table_name(&h.table)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .unwrap();
    }
}

fn is_hash(item: &Item) -> bool {
    item.get("sk") == Some(&AttributeValue::S("hash".into()))
}

async fn keys(h: &Harness, m: &MemberFixture, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(id_of(
            &h.create_key(&m.key, m.user_id, &format!("k{i}"), None)
                .await,
        ));
    }
    ids
}

#[tokio::test]
async fn keys_deleted_behind_the_back_block_no_change_and_the_check_repairs_the_count() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let ids = keys(&h, &bob, 3).await;
    // One key gone whole (TTL), one half gone (its lookup only).
    delete_behind_the_back(&h, &items_of(&h, &ids[0]).await).await;
    let half: Vec<Item> = items_of(&h, &ids[1])
        .await
        .into_iter()
        .filter(is_hash)
        .collect();
    delete_behind_the_back(&h, &half).await;

    // A role change goes through (it used to fail on the count, 503).
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::ReadOnlyUser.id()}});
    let reply = h.gql(&h.tenant.admin_key, SET_ROLE, Some(vars)).await;
    assert!(reply.get("errors").is_none(), "{reply}");

    // The check, dry: it finds both, and changes nothing.
    let before = h.items().await;
    let found = h.service().check_tenant("acme", false).await.unwrap();
    let text: Vec<&str> = found.iter().map(|f| f.what.as_str()).collect();
    assert_eq!(found.len(), 2, "{text:?}");
    assert!(
        text.iter()
            .any(|t| t.contains(&ids[1]) && t.contains("hash lookup is gone")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("bob: key_count 4 but 2 key(s) there")),
        "{text:?}"
    );
    assert!(found.iter().all(|f| !f.repaired));
    assert_eq!(h.items().await, before, "a dry run wrote something");

    // Applied: everything consistent, and a second check finds nothing.
    let applied = h.service().check_tenant("acme", true).await.unwrap();
    assert!(applied.iter().all(|f| f.repaired), "{applied:?}");
    assert_eq!(
        h.assert_consistent().await,
        3,
        "alice's key, bob's first and his last one"
    );
    assert_eq!(
        h.service().check_tenant("acme", false).await.unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn a_member_whose_keys_were_deleted_behind_the_back_can_be_removed() {
    let h = Harness::new().await;
    let carol = h.add_member("acme", "carol", Role::User).await;
    let ids = keys(&h, &carol, 2).await;
    delete_behind_the_back(&h, &items_of(&h, &ids[0]).await).await;
    let vars = json!({"input": {"membership_id": carol.membership_id}});
    let reply = h.gql(&h.tenant.admin_key, DELETE_MEMBER, Some(vars)).await;
    assert_eq!(
        reply["data"]["delete_membership"]["success"],
        json!(true),
        "{reply}"
    );
    h.assert_consistent().await;
    assert!(items_of(&h, &ids[1]).await.is_empty());
}

#[tokio::test]
async fn an_owner_at_the_limit_after_keys_vanished_behind_the_back_can_create_again() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    keys(&h, &bob, 39).await;
    let reply = h.create_key(&bob.key, bob.user_id, "41st", None).await;
    assert_eq!(
        reply["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{reply}"
    );
    let listed = h.data(&bob.key, "{ auth_api_key { id } }", None).await;
    let victim = listed["auth_api_key"][39]["id"]
        .as_str()
        .unwrap()
        .to_string();
    delete_behind_the_back(&h, &items_of(&h, &victim).await).await;
    let reply = h
        .create_key(&bob.key, bob.user_id, "in its place", None)
        .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    assert_eq!(h.assert_consistent().await, 41);
}

#[tokio::test]
async fn the_check_removes_expired_leases_and_old_marks_and_leaves_a_holding_lease() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let carol = h.add_member("acme", "carol", Role::User).await;
    let dave = h.add_member("acme", "dave", Role::User).await;
    let t0 = h.now();
    let store = h.service().store();
    for (m, until) in [(&bob, t0 - Duration::seconds(1)), (&carol, t0 + LEASE)] {
        store
            .acquire_lease(
                h.tenant.id,
                m.user_id,
                LeaseKind::Removing,
                t0 - LEASE,
                until,
            )
            .await
            .unwrap();
    }
    // An earlier version's mark.
    let dave_item = h
        .items()
        .await
        .into_iter()
        .find(|i| {
            i.get("user_id") == Some(&AttributeValue::S(dave.user_id.to_string()))
                && i.contains_key("membership_id")
                && !i.contains_key("key_id")
        })
        .unwrap();
    h.client
        .update_item()
        .table_name(&h.table)
        .key("pk", dave_item["pk"].clone())
        .key("sk", dave_item["sk"].clone())
        .update_expression("SET changing = :t")
        .expression_attribute_values(":t", AttributeValue::N(t0.unix_timestamp().to_string()))
        .send()
        .await
        .unwrap();
    let found = h.service().check_tenant("acme", true).await.unwrap();
    let by = |name: &str| {
        found
            .iter()
            .find(|f| f.what.contains(&format!("member {name}:")))
            .unwrap_or_else(|| panic!("{name}: {found:?}"))
            .clone()
    };
    assert!(by("bob").repaired && by("bob").what.contains("expired"));
    assert!(!by("carol").repaired && by("carol").what.contains("in progress"));
    assert!(by("dave").repaired && by("dave").what.contains("earlier version"));
    // Carol's lease ends by itself.
    h.clock.set(t0 + LEASE + Duration::seconds(1));
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_key_the_sweeper_failed_to_delete_is_swept_once_the_database_is_back() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, 3)
        .await
        .expect("proxy");
    let (app, _) = h.app_via(&proxy.endpoint(), &[]);
    let sweeper = Sweeper::new(app.service().store().clone());
    let t0 = h.now();
    let at = (t0 + Duration::seconds(10)).format(&Rfc3339).unwrap();
    let id = id_of(
        &h.create_key(&h.tenant.admin_key, h.tenant.admin_id, "soon", Some(&at))
            .await,
    );
    // The first sweep: every deletion fails.
    proxy.set_plan(Plan::FailNext {
        count: 100,
        fault: Fault::Unavailable,
        operation: Some("TransactWriteItems"),
    });
    let first = sweeper.sweep(t0 + Duration::hours(2), None).await.unwrap();
    assert_eq!(
        (first.swept, first.failed, first.left_over),
        (0, 1, 1),
        "{first:?}"
    );
    proxy.set_plan(Plan::Off);
    // Hours later (the checkpoint long past the key's hour) the key is found.
    assert!(
        first.checkpoint > apikeys_store::expiry_bucket(t0),
        "{first:?}"
    );
    let later = sweeper.sweep(t0 + Duration::hours(3), None).await.unwrap();
    assert_eq!(
        (later.swept, later.retried, later.left_over),
        (1, 1, 0),
        "{later:?}"
    );
    assert!(items_of(&h, &id).await.is_empty());
    let again = sweeper.sweep(t0 + Duration::hours(3), None).await.unwrap();
    assert_eq!((again.swept, again.retried), (0, 0), "{again:?}");
    h.assert_consistent().await;
}

#[tokio::test]
async fn an_expired_key_whose_owner_vanished_is_swept_alone() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let t0 = h.now();
    let at = (t0 + Duration::seconds(10)).format(&Rfc3339).unwrap();
    let id = id_of(&h.create_key(&bob.key, bob.user_id, "soon", Some(&at)).await);
    let member: Vec<Item> = h
        .items()
        .await
        .into_iter()
        .filter(|i| i.get("sk") == Some(&AttributeValue::S(format!("member#{}", bob.user_id))))
        .collect();
    assert_eq!(member.len(), 1);
    delete_behind_the_back(&h, &member).await;
    let report = Sweeper::new(h.service().store().clone())
        .sweep(t0 + Duration::seconds(20), None)
        .await
        .unwrap();
    assert_eq!((report.swept, report.failed), (1, 0), "{report:?}");
    assert!(items_of(&h, &id).await.is_empty());
}

#[tokio::test]
async fn odd_lease_data_blocks_nothing_breaks_no_listing_and_is_repaired() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let member = h
        .items()
        .await
        .into_iter()
        .find(|i| i.get("sk") == Some(&AttributeValue::S(format!("member#{}", bob.user_id))))
        .unwrap();
    // A hand edit: a token with neither kind nor end.
    h.client
        .update_item()
        .table_name(&h.table)
        .key("pk", member["pk"].clone())
        .key("sk", member["sk"].clone())
        .update_expression("SET lease_token = :t, lease_kind = :k")
        .expression_attribute_values(":t", AttributeValue::S("not-a-uuid".into()))
        .expression_attribute_values(":k", AttributeValue::S("unheard-of".into()))
        .send()
        .await
        .unwrap();
    let data = h
        .data(
            &h.tenant.admin_key,
            "{ user_view_same_tenant { id } }",
            None,
        )
        .await;
    assert_eq!(data["user_view_same_tenant"].as_array().unwrap().len(), 2);
    let found = h.service().check_tenant("acme", false).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].what.contains("expired"), "{found:?}");
    // It blocks nothing, and the next growth takes it away.
    let reply = h.create_key(&bob.key, bob.user_id, "still", None).await;
    assert!(reply.get("errors").is_none(), "{reply}");
    assert_eq!(
        h.service().check_tenant("acme", false).await.unwrap(),
        vec![]
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn the_operator_issuing_a_key_to_a_held_member_is_told_so() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let t0 = h.now();
    h.service()
        .store()
        .acquire_lease(
            h.tenant.id,
            bob.user_id,
            LeaseKind::ChangingRole,
            t0,
            t0 + LEASE,
        )
        .await
        .unwrap();
    let request = apikeys_service::KeyRequest {
        name: "first",
        expires_at: None,
        role_ceiling: None,
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    let err = h
        .service()
        .issue_key("acme", "bob", request)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            err,
            apikeys_service::error::Error::Busy(LeaseKind::ChangingRole, _)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_key_rotated_by_an_earlier_version_is_marked_by_the_check_and_changes_nothing() {
    let h = Harness::new().await;
    let made = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "old", None)
        .await;
    let (old_id, old) = (
        id_of(&made),
        made["data"]["create_api_key"]["key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let rotate = "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id } }";
    let vars = json!({"input": {"key_id": old_id, "grace_period_seconds": 3600}});
    let reply = h.gql(&h.tenant.admin_key, rotate, Some(vars)).await;
    assert!(reply.get("errors").is_none(), "{reply}");
    // What an earlier version wrote: the mark on the listing item only.
    let lookup: Vec<Item> = items_of(&h, &old_id)
        .await
        .into_iter()
        .filter(is_hash)
        .collect();
    h.client
        .update_item()
        .table_name(&h.table)
        .key("pk", lookup[0]["pk"].clone())
        .key("sk", lookup[0]["sk"].clone())
        .update_expression("REMOVE replaced_by")
        .send()
        .await
        .unwrap();
    let sa = "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }";
    let before = h.service().check_tenant("acme", false).await.unwrap();
    assert!(
        before
            .iter()
            .any(|f| f.what.contains("rotated, but its lookup")),
        "{before:?}"
    );
    h.service().check_tenant("acme", true).await.unwrap();
    let reply = h
        .gql(&old, sa, Some(json!({"input": {"name": "backdoor"}})))
        .await;
    assert_eq!(
        reply["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{reply}"
    );
    assert_eq!(
        h.service().check_tenant("acme", false).await.unwrap(),
        vec![]
    );
}
