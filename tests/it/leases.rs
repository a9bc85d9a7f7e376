//! A removal or a role change holds its member by a lease: every exit path
//! gives it back, and one its holder never gave back frees itself (issue 19,
//! item 1: parallel identical role changes used to freeze a member for good).

use std::sync::Arc;

use apikeys_core::domain::{LeaseKind, Role};
use apikeys_service::LEASE;
use apikeys_store::Acquired;
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use apikeys_tests::{endpoint, prefect_body, Harness, MemberFixture, Route};
use serde_json::{json, Value};
use time::Duration;

const SET_ROLE: &str =
    "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }";
const DELETE_MEMBER: &str =
    "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }";
const CREATE: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id } }";
const REVOKE: &str =
    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";

async fn answer(h: &Harness, key: &str, query: &str, vars: Value) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let reply = h
        .send(
            Route::RestGraphql,
            &prefect_body(query, Some(vars)),
            &[("Authorization", &auth)],
        )
        .await;
    (reply.status, reply.json)
}

fn code(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

fn set_role(m: &MemberFixture, role: Role) -> Value {
    json!({"input": {"membership_id": m.membership_id, "role_id": role.id()}})
}

/// The member can still grow and shrink its key set: nothing holds it.
async fn churns_freely(h: &Harness, m: &MemberFixture) {
    let (_, made) = answer(
        h,
        &m.key,
        CREATE,
        json!({"input": {"name": "after", "user_id": m.user_id}}),
    )
    .await;
    let id = made["data"]["create_api_key"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the member cannot create a key: {made}"))
        .to_string();
    let (_, revoked) = answer(h, &m.key, REVOKE, json!({"input": {"key_id": id}})).await;
    assert_eq!(
        revoked["data"]["delete_api_key"]["success"],
        json!(true),
        "{revoked}"
    );
}

#[tokio::test]
async fn identical_role_changes_sent_at_once_all_succeed_and_leave_no_lease() {
    let h = Arc::new(Harness::new().await);
    let bob = h.add_member("acme", "bob", Role::User).await;
    for round in 0..40 {
        let role = [Role::ReadOnlyUser, Role::User][round % 2];
        let callers = 2 + round % 5;
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (h, vars) = (Arc::clone(&h), set_role(&bob, role));
                tokio::spawn(async move { answer(&h, &h.tenant.admin_key, SET_ROLE, vars).await })
            })
            .collect();
        for task in tasks {
            let (status, reply) = task.await.expect("caller");
            assert_eq!(status, 200, "round {round}: {reply}");
            assert!(reply.get("errors").is_none(), "round {round}: {reply}");
        }
        h.assert_consistent().await;
    }
    churns_freely(&h, &bob).await;
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_member_demoting_itself_five_times_at_once_is_left_free() {
    let h = Arc::new(Harness::new().await);
    let carol = h.add_member("acme", "carol", Role::TenantAdmin).await;
    for round in 0..15 {
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (h, key, vars) = (
                    Arc::clone(&h),
                    carol.key.clone(),
                    set_role(&carol, Role::User),
                );
                tokio::spawn(async move { answer(&h, &key, SET_ROLE, vars).await })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            let (status, reply) = task.await.expect("caller");
            assert_eq!(status, 200, "round {round}: {reply}");
            match code(&reply) {
                "" => done += 1,
                // The later ones find it no longer an admin.
                "FORBIDDEN" | "UNAUTHENTICATED" => {}
                other => panic!("round {round}: {other}: {reply}"),
            }
        }
        assert!(done >= 1, "round {round}: nobody demoted it");
        h.assert_consistent().await;
        churns_freely(&h, &carol).await;
        // Alice makes it an admin again for the next round.
        let (_, reply) = answer(
            &h,
            &h.tenant.admin_key,
            SET_ROLE,
            set_role(&carol, Role::TenantAdmin),
        )
        .await;
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn different_changes_and_a_removal_at_once_end_consistent() {
    let h = Arc::new(Harness::new().await);
    let mut removed = 0;
    for round in 0..12 {
        let m = h.add_member("acme", &format!("m{round}"), Role::User).await;
        for i in 0..3 {
            h.create_key(&m.key, m.user_id, &format!("k{i}"), None)
                .await;
        }
        let requests = [
            (SET_ROLE, set_role(&m, Role::ReadOnlyUser)),
            (SET_ROLE, set_role(&m, Role::TenantAdmin)),
            (
                DELETE_MEMBER,
                json!({"input": {"membership_id": m.membership_id}}),
            ),
            (SET_ROLE, set_role(&m, Role::User)),
        ];
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(query, vars)| {
                let h = Arc::clone(&h);
                tokio::spawn(async move { answer(&h, &h.tenant.admin_key, query, vars).await })
            })
            .collect();
        for task in tasks {
            let (status, reply) = task.await.expect("caller");
            assert_eq!(status, 200, "round {round}: {reply}");
            if reply["data"]["delete_membership"]["success"] == json!(true) {
                removed += 1;
            }
            // A change that found the member gone or held says so.
            assert!(
                matches!(code(&reply), "" | "BAD_USER_INPUT" | "MEMBER_BUSY"),
                "round {round}: {reply}"
            );
        }
        h.assert_consistent().await;
    }
    assert!(removed > 0, "no removal ever won");
}

#[tokio::test]
async fn a_lease_whose_holder_died_blocks_growth_only_and_frees_itself() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let t0 = h.now();
    let expiring = h
        .create_key(
            &bob.key,
            bob.user_id,
            "soon",
            Some(
                &(t0 + Duration::seconds(5))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            ),
        )
        .await;
    let expiring_id = expiring["data"]["create_api_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = h.create_key(&bob.key, bob.user_id, "kept", None).await;
    let kept_id = kept["data"]["create_api_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A role change took the lease and died before anything else.
    let taken = h
        .service()
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
    assert!(matches!(taken, Acquired::Held(_)), "{taken:?}");
    // Growth is refused, saying what is true.
    let (status, reply) = answer(
        &h,
        &bob.key,
        CREATE,
        json!({"input": {"name": "blocked", "user_id": bob.user_id}}),
    )
    .await;
    assert_eq!((status, code(&reply)), (200, "MEMBER_BUSY"), "{reply}");
    let message = reply["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("nothing was changed"), "{message}");
    let (_, reply) = answer(
        &h,
        &h.tenant.admin_key,
        SET_ROLE,
        set_role(&bob, Role::ReadOnlyUser),
    )
    .await;
    assert_eq!(code(&reply), "MEMBER_BUSY", "{reply}");
    // Revocation is never blocked.
    let (_, reply) = answer(&h, &bob.key, REVOKE, json!({"input": {"key_id": kept_id}})).await;
    assert_eq!(
        reply["data"]["delete_api_key"]["success"],
        json!(true),
        "{reply}"
    );
    // Nor is the sweeper.
    h.clock.set(t0 + Duration::seconds(10));
    let report = apikeys_service::sweep::Sweeper::new(h.service().store().clone())
        .sweep(h.now(), None)
        .await
        .unwrap();
    assert_eq!(report.swept, 1, "{report:?}");
    assert!(h.items().await.iter().all(|item| item.get("key_id")
        != Some(&aws_sdk_dynamodb::types::AttributeValue::S(
            expiring_id.clone()
        ))));
    // Past its end the member is free: the change goes through and takes the
    // dead lease away.
    h.clock.set(t0 + LEASE + Duration::seconds(1));
    let (_, reply) = answer(
        &h,
        &h.tenant.admin_key,
        SET_ROLE,
        set_role(&bob, Role::ReadOnlyUser),
    )
    .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    churns_freely(&h, &bob).await;
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_database_failing_between_the_lease_and_the_commit_leaves_no_lease() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, 7)
        .await
        .expect("proxy");
    let (app, _) = h.app_via(&proxy.endpoint(), &[]);
    let bob = h.add_member("acme", "bob", Role::User).await;
    h.create_key(&bob.key, bob.user_id, "one", None).await;
    for (query, vars) in [
        (SET_ROLE, set_role(&bob, Role::ReadOnlyUser)),
        (
            DELETE_MEMBER,
            json!({"input": {"membership_id": bob.membership_id}}),
        ),
    ] {
        // Every transaction fails: the lease was taken (an UpdateItem), the
        // change's transaction is refused by the database.
        proxy.set_plan(Plan::FailNext {
            count: 50,
            fault: Fault::Unavailable,
            operation: Some("TransactWriteItems"),
        });
        let auth = format!("Bearer {}", h.tenant.admin_key);
        let request = apikeys_tests::event(
            Route::RestGraphql,
            "POST",
            &prefect_body(query, Some(vars)),
            &[("Authorization", &auth)],
        );
        let response = apikeys_graphql::handle(&app, request).await;
        let reply: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(response.status().as_u16(), 503, "{reply}");
        assert_eq!(code(&reply), "SERVICE_UNAVAILABLE", "{reply}");
        proxy.set_plan(Plan::Off);
        h.assert_consistent().await;
        churns_freely(&h, &bob).await;
    }
}
