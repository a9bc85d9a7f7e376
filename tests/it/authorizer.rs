//! The API Gateway authorizer, driven with real authorizer events: REST
//! (`sam local generate-event apigateway request-authorizer`) and HTTP API
//! payload 2.0. Allow with the caller in the context; 401 (REST) or
//! `isAuthorized: false` for every bad key; 403 for a foreign tenant header;
//! a database failure is the gateway's 500, never a denial.

use apikeys_authorizer::routes::RouteMap;
use apikeys_authorizer::App;
use apikeys_core::domain::Role;
use apikeys_tests::authorizer::{bearer, decide};
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use apikeys_tests::{endpoint, mistyped, Harness};
use serde_json::json;
use time::Duration;

#[tokio::test]
async fn a_user_key_and_a_service_account_key_are_allowed_with_the_caller_in_the_context() {
    let h = Harness::new().await;
    let app = App::new(h.service_copy(), RouteMap::default());
    let sa = h
        .data(
            &h.tenant.admin_key,
            "mutation { create_service_account(input: {name: \"ci\"}) { id } }",
            None,
        )
        .await["create_service_account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let made = h
        .create_key(&h.tenant.admin_key, sa.parse().unwrap(), "ci", None)
        .await;
    let sa_key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_key_id = h
        .data(&h.tenant.admin_key, "{ auth_info { api_key_id } }", None)
        .await["auth_info"]["api_key_id"]
        .clone();
    for form in ["rest", "http"] {
        h.counter.reset();
        let (decision, answer) = decide(
            &app,
            form,
            &[("Authorization", &bearer(&h.tenant.admin_key))],
        )
        .await;
        assert_eq!(decision, "allow", "{form}");
        assert_eq!(h.counter.total(), 1, "{form}: one read per decision");
        assert_eq!(
            answer["context"],
            json!({"tenant_id": h.tenant.id.to_string(), "user_id": h.tenant.admin_id.to_string(),
                   "role": "TENANT_ADMIN", "member_role": "TENANT_ADMIN", "read_only_key": "false",
                   "account_type": "USER", "api_key_id": admin_key_id, "scopes": ""}),
            "{form}"
        );
        if form == "rest" {
            assert_eq!(answer["principalId"], json!(h.tenant.admin_id.to_string()));
            assert_eq!(
                answer["policyDocument"]["Statement"][0]["Resource"],
                "arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod/*"
            );
            assert_eq!(
                answer["policyDocument"]["Statement"][0]["Action"],
                "execute-api:Invoke"
            );
        }
        let tenant = h.tenant.id.to_string();
        let (decision, answer) = decide(
            &app,
            form,
            &[
                ("authorization", &bearer(&sa_key)),
                ("X-PREFECT-TENANT-ID", &tenant),
            ],
        )
        .await;
        assert_eq!(decision, "allow", "{form}");
        assert_eq!(answer["context"]["account_type"], "SERVICE");
        assert_eq!(answer["context"]["user_id"], json!(sa));
    }
}

#[tokio::test]
async fn every_bad_key_is_denied_as_unauthenticated_and_a_foreign_tenant_as_forbidden() {
    let h = Harness::new().await;
    let app = App::new(h.service_copy(), RouteMap::default());
    let bob = h.add_member("acme", "bob", Role::User).await;
    let carol = h.add_member("acme", "carol", Role::User).await;
    let revoked = h.create_key(&bob.key, bob.user_id, "revoked", None).await;
    let revoked_key = revoked["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.data(
        &bob.key,
        "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
        Some(json!({"input": {"key_id": revoked["data"]["create_api_key"]["id"]}})),
    )
    .await;
    let soon = (h.now() + Duration::seconds(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring = h
        .create_key(&bob.key, bob.user_id, "expiring", Some(&soon))
        .await;
    let expiring_key = expiring["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.data(
        &h.tenant.admin_key,
        "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }",
        Some(json!({"input": {"membership_id": carol.membership_id}})),
    )
    .await;
    h.clock.set(h.now() + Duration::seconds(5));
    let other = h.add_tenant("globex", "gina").await;
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("missing header", vec![]),
        (
            "not bearer",
            vec![("Authorization", format!("Basic {}", bob.key))],
        ),
        ("malformed", vec![("Authorization", bearer("apk_short"))]),
        (
            "wrong checksum",
            vec![("Authorization", bearer(&mistyped(&bob.key, 1)))],
        ),
        ("revoked", vec![("Authorization", bearer(&revoked_key))]),
        ("expired", vec![("Authorization", bearer(&expiring_key))]),
        ("removed owner", vec![("Authorization", bearer(&carol.key))]),
    ];
    for form in ["rest", "http"] {
        for (what, headers) in &cases {
            // A key that cannot be ours is refused without a read.
            let reads = match *what {
                "missing header" | "not bearer" | "malformed" | "wrong checksum" => 0,
                _ => 1,
            };
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.counter.reset();
            let (decision, _) = decide(&app, form, &headers).await;
            let expected = if form == "rest" { "401" } else { "403" };
            assert_eq!(decision, expected, "{form} {what}");
            assert_eq!(h.counter.total(), reads, "{form} {what}: reads");
        }
        let foreign = other.id.to_string();
        for tenant in [foreign.as_str(), "not-a-uuid"] {
            let (decision, answer) = decide(
                &app,
                form,
                &[
                    ("Authorization", &bearer(&bob.key)),
                    ("X-Prefect-Tenant-Id", tenant),
                ],
            )
            .await;
            assert_eq!(decision, "403", "{form} {tenant}");
            // Why, and nothing about the key or its owner.
            assert_eq!(
                answer["context"],
                json!({"reason": "wrong_tenant",
                       "message": "this API key belongs to another tenant than the one asked for"}),
                "{answer}"
            );
        }
    }
}

#[tokio::test]
async fn a_database_failure_is_the_gateways_500_never_a_denial() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(
        &endpoint(),
        Plan::Random {
            rate: 1.0,
            faults: vec![Fault::Unavailable],
        },
        1,
    )
    .await
    .unwrap();
    let (via_proxy, _) = h.app_via(
        &proxy.endpoint(),
        &[
            ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "300"),
            ("DYNAMODB_OPERATION_TIMEOUT_MS", "1000"),
        ],
    );
    let app = App::new(
        apikeys_service::ApiKeys::new(
            via_proxy.service().store().clone(),
            h.clock.clone(),
            via_proxy.service().config().clone(),
        ),
        RouteMap::default(),
    );
    for form in ["rest", "http"] {
        let (decision, _) = decide(
            &app,
            form,
            &[("Authorization", &bearer(&h.tenant.admin_key))],
        )
        .await;
        assert_eq!(decision, "500", "{form}");
    }
}
