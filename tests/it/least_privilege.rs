//! A key's role ceiling (it acts with the lower of its ceiling and its
//! owner's role, at every request) and disabling a key (it fails like a
//! revoked one until enabled), through the real handler.

use apikeys_core::domain::Role;
use apikeys_tests::{error_code, unauthenticated, Harness, Route};
use serde_json::{json, Value};
use uuid::Uuid;

const CREATE: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }";
const WHO: &str = "{ auth_info { role permissions } }";
const LIST: &str = "{ auth_api_key { id name role_ceiling { id name } disabled } }";
const DISABLE: &str =
    "mutation($input: disable_api_key_input!) { disable_api_key(input: $input) { success } }";
const ENABLE: &str =
    "mutation($input: enable_api_key_input!) { enable_api_key(input: $input) { success } }";
const ROTATE: &str =
    "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id key } }";

/// A key of `owner` made with `key`, with the ceiling `role` (if any):
/// (its id, its secret).
async fn key_with(
    h: &Harness,
    key: &str,
    owner: Uuid,
    name: &str,
    role: Option<Role>,
) -> (String, String) {
    let input = json!({"user_id": owner, "name": name, "role_id": role.map(|r| r.id())});
    let data = h.data(key, CREATE, Some(json!({ "input": input }))).await;
    let made = &data["create_api_key"];
    (
        made["id"].as_str().unwrap().to_string(),
        made["key"].as_str().unwrap().to_string(),
    )
}

async fn admin_key_id(h: &Harness) -> String {
    let who = h
        .data(&h.tenant.admin_key, "{ auth_info { api_key_id } }", None)
        .await;
    who["auth_info"]["api_key_id"].as_str().unwrap().to_string()
}

async fn ceiling_of(h: &Harness, key: &str, id: &str) -> Value {
    let listed = h.data(key, LIST, None).await;
    listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == json!(id))
        .map(|k| k["role_ceiling"]["name"].clone())
        .unwrap()
}

#[tokio::test]
async fn a_read_only_key_of_an_admin_reads_and_changes_nothing() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let (_, ro) = key_with(
        &h,
        &h.tenant.admin_key,
        admin,
        "dashboard",
        Some(Role::ReadOnlyUser),
    )
    .await;
    let who = h.data(&ro, WHO, None).await;
    assert_eq!(who["auth_info"]["role"], json!("READ_ONLY_USER"));
    assert_eq!(who["auth_info"]["permissions"], json!(["read:tenant"]));
    // Reads work.
    h.data(
        &ro,
        "{ tenant { id } user { id } auth_api_key { id } user_view_same_tenant { id } }",
        None,
    )
    .await;
    let before = h.items().await;
    // Nothing changes: not even its owner's own keys.
    let create = json!({"input": {"user_id": admin, "name": "more"}});
    assert_eq!(
        error_code(&h.gql(&ro, CREATE, Some(create)).await),
        "FORBIDDEN"
    );
    let full_id = admin_key_id(&h).await;
    let revoke = json!({"input": {"key_id": full_id}});
    let reply = h
        .gql(
            &ro,
            "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
            Some(revoke),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let sa = json!({"input": {"name": "bot"}});
    let reply = h
        .gql(&ro, "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }", Some(sa))
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let reply = h.gql(&ro, "{ audit_log { id } }", None).await;
    assert!(reply.get("errors").is_some(), "{reply}");
    assert_eq!(h.items().await, before);
}

#[tokio::test]
async fn a_user_ceiling_key_acts_as_a_user_and_makes_no_stronger_key() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let (id, user_key) = key_with(&h, &h.tenant.admin_key, admin, "ci", Some(Role::User)).await;
    assert_eq!(
        ceiling_of(&h, &h.tenant.admin_key, &id).await,
        json!("USER")
    );
    assert_eq!(
        h.data(&user_key, WHO, None).await["auth_info"]["role"],
        json!("USER")
    );
    // No admin action.
    let sa = json!({"input": {"name": "bot"}});
    let reply = h
        .gql(&user_key, "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }", Some(sa))
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    // Its keys: never more than it (asked for nothing, or for more).
    for asked in [None, Some(Role::TenantAdmin)] {
        let (made, secret) = key_with(&h, &user_key, admin, "child", asked).await;
        assert_eq!(
            ceiling_of(&h, &h.tenant.admin_key, &made).await,
            json!("USER"),
            "{asked:?}"
        );
        assert_eq!(
            h.data(&secret, WHO, None).await["auth_info"]["role"],
            json!("USER")
        );
    }
    // Asked for less: less.
    let (made, _) = key_with(&h, &user_key, admin, "reader", Some(Role::ReadOnlyUser)).await;
    assert_eq!(
        ceiling_of(&h, &h.tenant.admin_key, &made).await,
        json!("READ_ONLY_USER")
    );
    // Rotating its owner's full key gives no full key back.
    let full = admin_key_id(&h).await;
    let rotated = h
        .data(
            &user_key,
            ROTATE,
            Some(json!({"input": {"key_id": full, "grace_period_seconds": 60}})),
        )
        .await;
    let secret = rotated["rotate_api_key"]["key"].as_str().unwrap();
    assert_eq!(
        h.data(secret, WHO, None).await["auth_info"]["role"],
        json!("USER")
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn the_lower_of_ceiling_and_owner_role_decides_at_every_request() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::TenantAdmin).await;
    // A ceiling above the owner's role changes nothing...
    let carol = h.add_member("acme", "carol", Role::User).await;
    let (_, high) = key_with(
        &h,
        &carol.key,
        carol.user_id,
        "high",
        Some(Role::TenantAdmin),
    )
    .await;
    assert_eq!(
        h.data(&high, WHO, None).await["auth_info"]["role"],
        json!("USER")
    );
    // ...and an owner demoted below the ceiling acts with its new role.
    let (_, capped) = key_with(&h, &bob.key, bob.user_id, "capped", Some(Role::User)).await;
    assert_eq!(
        h.data(&capped, WHO, None).await["auth_info"]["role"],
        json!("USER")
    );
    let vars =
        json!({"input": {"membership_id": bob.membership_id, "role_id": Role::ReadOnlyUser.id()}});
    h.data(
        &h.tenant.admin_key,
        "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }",
        Some(vars),
    )
    .await;
    assert_eq!(
        h.data(&capped, WHO, None).await["auth_info"]["role"],
        json!("READ_ONLY_USER")
    );
    // Rotation keeps the ceiling.
    let id = h.data(&capped, "{ auth_info { api_key_id } }", None).await["auth_info"]["api_key_id"]
        .clone();
    let reply = h
        .gql(&bob.key, ROTATE, Some(json!({"input": {"key_id": id}})))
        .await;
    // Bob, read-only now, may still rotate his own keys; the new one keeps USER.
    let new_id = reply["data"]["rotate_api_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let new_secret = reply["data"]["rotate_api_key"]["key"].as_str().unwrap();
    assert_eq!(ceiling_of(&h, new_secret, &new_id).await, json!("USER"));
    h.assert_consistent().await;
}

#[tokio::test]
async fn an_unknown_role_id_is_refused() {
    let h = Harness::new().await;
    let input =
        json!({"input": {"user_id": h.tenant.admin_id, "name": "x", "role_id": Uuid::new_v4()}});
    let reply = h.gql(&h.tenant.admin_key, CREATE, Some(input)).await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
}

#[tokio::test]
async fn a_disabled_key_fails_like_a_revoked_one_until_enabled() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let (id, ci) = key_with(&h, &h.tenant.admin_key, admin, "ci", None).await;
    assert!(h.gql(&ci, "{ hello }", None).await.get("errors").is_none());
    let vars = json!({"input": {"key_id": id}});
    let done = h
        .data(&h.tenant.admin_key, DISABLE, Some(vars.clone()))
        .await;
    assert_eq!(done["disable_api_key"]["success"], json!(true));
    // At once, and with the same answer as a revoked key.
    assert_eq!(h.gql(&ci, "{ hello }", None).await, unauthenticated());
    let listed = h.data(&h.tenant.admin_key, LIST, None).await;
    assert!(listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == json!(id) && k["disabled"] == json!(true)));
    // Again: nothing changes, still a success, one record only.
    let again = h
        .data(&h.tenant.admin_key, DISABLE, Some(vars.clone()))
        .await;
    assert_eq!(again["disable_api_key"]["success"], json!(true));
    // A disabled key is not rotated.
    let reply = h
        .gql(
            &h.tenant.admin_key,
            ROTATE,
            Some(json!({"input": {"key_id": id}})),
        )
        .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    let enabled = h.data(&h.tenant.admin_key, ENABLE, Some(vars)).await;
    assert_eq!(enabled["enable_api_key"]["success"], json!(true));
    assert!(h.gql(&ci, "{ hello }", None).await.get("errors").is_none());
    let log = h
        .data(
            &h.tenant.admin_key,
            "{ audit_log { action target_id } }",
            None,
        )
        .await;
    let actions: Vec<&str> = log["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target_id"] == json!(id))
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["KEY_ENABLED", "KEY_DISABLED", "KEY_CREATED"]);
    h.assert_consistent().await;
}

#[tokio::test]
async fn nobody_disables_a_key_they_could_not_revoke() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let full = admin_key_id(&h).await;
    let vars = json!({"input": {"key_id": full}});
    let reply = h.data(&bob.key, DISABLE, Some(vars)).await;
    assert_eq!(reply["disable_api_key"]["success"], json!(false));
    let unknown = json!({"input": {"key_id": Uuid::new_v4()}});
    let reply = h.data(&h.tenant.admin_key, DISABLE, Some(unknown)).await;
    assert_eq!(reply["disable_api_key"]["success"], json!(false));
    assert!(h
        .gql(&h.tenant.admin_key, "{ hello }", None)
        .await
        .get("errors")
        .is_none());
}

#[tokio::test]
async fn a_key_disabled_while_requests_race_it_fails_on_every_request_after() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let (id, ci) = key_with(&h, &h.tenant.admin_key, admin, "ci", None).await;
    let vars = json!({"input": {"key_id": id}});
    let uses = (0..8).map(|_| h.gql(&ci, "{ hello }", None));
    let (done, _) = tokio::join!(
        h.data(&h.tenant.admin_key, DISABLE, Some(vars)),
        futures::future::join_all(uses)
    );
    assert_eq!(done["disable_api_key"]["success"], json!(true));
    for _ in 0..3 {
        assert_eq!(h.gql(&ci, "{ hello }", None).await, unauthenticated());
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn the_operator_issues_a_read_only_key() {
    let h = Harness::new().await;
    h.add_member("acme", "bob", Role::TenantAdmin).await;
    let request = apikeys_service::KeyRequest {
        name: "dashboard",
        expires_at: None,
        role_ceiling: Some(Role::ReadOnlyUser),
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    let (key, secret) = h.service().issue_key("acme", "bob", request).await.unwrap();
    assert_eq!(key.role_ceiling, Some(Role::ReadOnlyUser));
    let who = h.data(secret.expose_secret(), WHO, None).await;
    assert_eq!(who["auth_info"]["role"], json!("READ_ONLY_USER"));
}

#[tokio::test]
async fn a_capped_key_does_not_enable_a_stronger_key() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let (strong, _) = key_with(&h, &h.tenant.admin_key, admin, "strong", None).await;
    let (_, capped) = key_with(&h, &h.tenant.admin_key, admin, "capped", Some(Role::User)).await;
    let vars = json!({"input": {"key_id": strong}});
    h.data(&h.tenant.admin_key, DISABLE, Some(vars.clone()))
        .await;
    // Disabling takes power away: a capped key may; enabling gives it back: not.
    let reply = h.gql(&capped, ENABLE, Some(vars.clone())).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let listed = h.data(&h.tenant.admin_key, LIST, None).await;
    assert!(listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == json!(strong) && k["disabled"] == json!(true)));
    // An equal or weaker key it may enable.
    let (weak, _) = key_with(
        &h,
        &h.tenant.admin_key,
        admin,
        "weak",
        Some(Role::ReadOnlyUser),
    )
    .await;
    let weak_vars = json!({"input": {"key_id": weak}});
    h.data(&capped, DISABLE, Some(weak_vars.clone())).await;
    assert_eq!(
        h.data(&capped, ENABLE, Some(weak_vars)).await["enable_api_key"]["success"],
        json!(true)
    );
}

/// A request that authenticated just before its key was disabled, revoked
/// or rotated writes nothing once that was answered.
#[tokio::test]
async fn a_change_in_flight_when_its_key_stops_writes_nothing() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let request = |name| apikeys_service::KeyRequest {
        name,
        expires_at: None,
        role_ceiling: None,
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    for stop in ["disable", "revoke", "rotate"] {
        let (id, key) = key_with(&h, &h.tenant.admin_key, admin, stop, None).await;
        let in_flight = h.service().authenticate(Some(&key), None).await.unwrap();
        let vars = json!({"input": {"key_id": id}});
        match stop {
            "disable" => {
                h.data(&h.tenant.admin_key, DISABLE, Some(vars)).await;
            }
            "revoke" => {
                h.data(
                    &h.tenant.admin_key,
                    "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
                    Some(vars),
                )
                .await;
            }
            _ => {
                let vars = json!({"input": {"key_id": id, "grace_period_seconds": 3600}});
                h.data(&h.tenant.admin_key, ROTATE, Some(vars)).await;
            }
        }
        let before = h.items().await;
        let err = h
            .service()
            .create_api_key(&in_flight, admin, request("late"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                apikeys_service::Error::Unauthenticated(apikeys_core::refusal::Refusal::KeyStopped)
            ),
            "{stop}: {err:?}"
        );
        assert_eq!(h.items().await, before, "{stop}: something was written");
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn concurrent_disables_and_enables_never_answer_not_found() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let (id, _) = key_with(&h, &h.tenant.admin_key, admin, "flip", None).await;
    let vars = json!({"input": {"key_id": id}});
    let calls = (0..12).map(|i| {
        let vars = vars.clone();
        let h = &h;
        async move {
            let (query, field) = if i % 2 == 0 {
                (DISABLE, "disable_api_key")
            } else {
                (ENABLE, "enable_api_key")
            };
            // A request that lost every race is the retryable HTTP 503.
            let auth = format!("Bearer {}", h.tenant.admin_key);
            let reply = h
                .send(
                    Route::RestGraphql,
                    &apikeys_tests::prefect_body(query, Some(vars)),
                    &[("Authorization", &auth)],
                )
                .await;
            assert!([200, 503].contains(&reply.status), "{}", reply.body);
            let reply = reply.json;
            (
                reply["data"][field]["success"].clone(),
                error_code(&reply).to_string(),
            )
        }
    });
    // Done, or (having lost every race) the honest retryable answer; never
    // "not found" for a key that is there.
    for (success, code) in futures::future::join_all(calls).await {
        assert!(
            success == json!(true) || code == "SERVICE_UNAVAILABLE",
            "{success} {code}"
        );
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn an_expired_key_is_not_disabled_or_enabled() {
    let h = Harness::new().await;
    let soon = (h.now() + time::Duration::seconds(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let input =
        json!({"input": {"user_id": h.tenant.admin_id, "name": "brief", "expires_at": soon}});
    let made = h.data(&h.tenant.admin_key, CREATE, Some(input)).await;
    let id = made["create_api_key"]["id"].clone();
    h.clock.set(h.now() + time::Duration::seconds(11));
    let vars = json!({"input": {"key_id": id}});
    let reply = h.data(&h.tenant.admin_key, DISABLE, Some(vars)).await;
    assert_eq!(reply["disable_api_key"]["success"], json!(false));
}

#[tokio::test]
async fn the_operator_does_not_rotate_a_disabled_key() {
    let h = Harness::new().await;
    let (id, _) = key_with(&h, &h.tenant.admin_key, h.tenant.admin_id, "off", None).await;
    h.data(
        &h.tenant.admin_key,
        DISABLE,
        Some(json!({"input": {"key_id": id}})),
    )
    .await;
    let err = h
        .service()
        .rotate_key_as_operator("acme", id.parse().unwrap(), Some(60))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("disabled"), "{err}");
}

/// A key limited to networks, through real API Gateway events: the address
/// API Gateway saw decides, never a header the client sets.
#[tokio::test]
async fn a_network_limited_key_works_from_its_networks_only() {
    let h = Harness::new().await;
    let input = json!({"input": {"user_id": h.tenant.admin_id, "name": "office",
                                 "allowed_networks": ["203.0.113.0/24", "2001:db8::/32"]}});
    let made = h.data(&h.tenant.admin_key, CREATE, Some(input)).await;
    let office = made["create_api_key"]["key"].as_str().unwrap().to_string();
    let auth = format!("Bearer {office}");
    let body = apikeys_tests::prefect_body("{ auth_info { user_id } }", None);
    let from = |route, source: &'static str, extra: Option<(&'static str, &'static str)>| {
        let auth = auth.clone();
        let body = body.clone();
        let h = &h;
        async move {
            let mut headers = vec![("Authorization", auth.as_str())];
            headers.extend(extra);
            h.send_from(route, &body, &headers, source).await.json
        }
    };
    let ok = from(Route::RestGraphql, "203.0.113.7", None).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    let ok = from(Route::HttpApi, "2001:db8::5/128", None).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    // Elsewhere: FORBIDDEN, naming the place, never the key.
    let refused = from(Route::RestGraphql, "198.51.100.1", None).await;
    assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("198.51.100.1") && !message.contains(&office),
        "{message}"
    );
    // A forwarded-for header naming an allowed address changes nothing.
    let spoofed = from(
        Route::RestGraphql,
        "198.51.100.1",
        Some(("X-Forwarded-For", "203.0.113.7")),
    )
    .await;
    assert_eq!(error_code(&spoofed), "FORBIDDEN", "{spoofed}");
    // An address API Gateway could not give (garbage) is no allowed place.
    let unknown = from(Route::RestGraphql, "not-an-address", None).await;
    assert_eq!(error_code(&unknown), "FORBIDDEN", "{unknown}");
    // The listing shows the networks.
    let listed = h
        .data(
            &h.tenant.admin_key,
            "{ auth_api_key { name allowed_networks } }",
            None,
        )
        .await;
    assert!(listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "office"
            && k["allowed_networks"] == json!(["203.0.113.0/24", "2001:db8::/32"])));
}

#[tokio::test]
async fn a_network_limited_key_makes_no_key_usable_elsewhere() {
    let h = Harness::new().await;
    let input = json!({"input": {"user_id": h.tenant.admin_id, "name": "office",
                                 "allowed_networks": ["127.0.0.0/8"]}});
    let made = h.data(&h.tenant.admin_key, CREATE, Some(input)).await;
    let office = made["create_api_key"]["key"].as_str().unwrap().to_string();
    // From its network (the fixture's 127.0.0.1): a key it makes inherits
    // its networks, and one asked for elsewhere is refused.
    let child = h
        .gql(
            &office,
            CREATE,
            Some(json!({"input": {"user_id": h.tenant.admin_id, "name": "child"}})),
        )
        .await;
    assert!(child.get("errors").is_none(), "{child}");
    let wider = json!({"input": {"user_id": h.tenant.admin_id, "name": "wider", "allowed_networks": ["0.0.0.0/0"]}});
    let reply = h.gql(&office, CREATE, Some(wider)).await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    let listed = h
        .data(
            &h.tenant.admin_key,
            "{ auth_api_key { name allowed_networks } }",
            None,
        )
        .await;
    assert!(listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "child" && k["allowed_networks"] == json!(["127.0.0.0/8"])));
    // Odd input is refused with a clear error, and nothing written.
    for odd in [
        json!(["10.0.0.0/33"]),
        json!(["garbage"]),
        json!((0..17)
            .map(|i| format!("10.{i}.0.0/16"))
            .collect::<Vec<_>>()),
    ] {
        let input = json!({"input": {"user_id": h.tenant.admin_id, "name": "odd", "allowed_networks": odd}});
        let reply = h.gql(&h.tenant.admin_key, CREATE, Some(input)).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    }
    h.assert_consistent().await;
}

/// The authorizer's event of `form` (sam-generated) with the key.
fn authorizer_event(form: &str, key: &str) -> Value {
    let fixture = if form == "rest" {
        apikeys_tests::REST_AUTHORIZER_EVENT
    } else {
        apikeys_tests::HTTP_API_AUTHORIZER_EVENT
    };
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    let auth = format!("Bearer {key}");
    event["headers"] = json!({ "Authorization": auth });
    if form == "rest" {
        event["multiValueHeaders"] = json!({ "Authorization": [auth] });
    }
    event
}

/// A key limited to networks is allowed from them only: the address is the
/// one API Gateway saw (`requestContext`), never a header.
#[tokio::test]
async fn a_network_limited_key_is_denied_elsewhere_with_a_403() {
    let h = Harness::new().await;
    let app = apikeys_authorizer::App::new(h.service_copy(), Default::default());
    let input = json!({"input": {"user_id": h.tenant.admin_id, "name": "office",
                                 "allowed_networks": ["198.51.100.0/24"]}});
    let made = h
        .data(
            &h.tenant.admin_key,
            "mutation($input: create_api_key_input!) { create_api_key(input: $input) { key } }",
            Some(input),
        )
        .await;
    let key = made["create_api_key"]["key"].as_str().unwrap().to_string();
    for form in ["rest", "http"] {
        let mut e = authorizer_event(form, &key);
        let (inside, outside) = if form == "rest" {
            ("/requestContext/identity/sourceIp", "203.0.113.1")
        } else {
            ("/requestContext/http/sourceIp", "203.0.113.1")
        };
        *e.pointer_mut(inside).unwrap() = json!(outside);
        let answer = apikeys_authorizer::handle(&app, e.clone()).await.unwrap();
        let denied = answer["isAuthorized"] == json!(false)
            || answer["policyDocument"]["Statement"][0]["Effect"] == json!("Deny");
        assert!(denied, "{form}: {answer}");
        // A forwarded-for header naming an allowed address changes nothing.
        e["headers"]["X-Forwarded-For"] = json!("198.51.100.7");
        let answer = apikeys_authorizer::handle(&app, e.clone()).await.unwrap();
        let denied = answer["isAuthorized"] == json!(false)
            || answer["policyDocument"]["Statement"][0]["Effect"] == json!("Deny");
        assert!(denied, "{form}: {answer}");
        *e.pointer_mut(inside).unwrap() = json!("198.51.100.7");
        let (decision, _) = match apikeys_authorizer::handle(&app, e).await.unwrap() {
            a if a["isAuthorized"] == json!(true)
                || a["policyDocument"]["Statement"][0]["Effect"] == json!("Allow") =>
            {
                ("allow", a)
            }
            a => ("deny", a),
        };
        assert_eq!(decision, "allow", "{form}");
    }
}

#[tokio::test]
async fn a_network_limited_key_does_not_rotate_an_unlimited_one() {
    let h = Harness::new().await;
    let input = json!({"input": {"user_id": h.tenant.admin_id, "name": "office",
                                 "allowed_networks": ["127.0.0.0/8"]}});
    let made = h.data(&h.tenant.admin_key, CREATE, Some(input)).await;
    let office = made["create_api_key"]["key"].as_str().unwrap().to_string();
    let full = admin_key_id(&h).await;
    let reply = h
        .gql(
            &office,
            ROTATE,
            Some(json!({"input": {"key_id": full, "grace_period_seconds": 0}})),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(
        reply["errors"][0]["extensions"]["reason"],
        "wider_than_credential"
    );
    // The unlimited key still works.
    assert!(h
        .gql(&h.tenant.admin_key, "{ hello }", None)
        .await
        .get("errors")
        .is_none());
}

/// Disable racing revocation of the same key: whichever lands first, the
/// key ends revoked (both its items gone), nothing is left half-written,
/// and neither answer is "not found" for a key that was there.
#[tokio::test]
async fn disable_racing_revocation_leaves_the_key_revoked_and_whole() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    for round in 0..4 {
        let (id, secret) = key_with(
            &h,
            &h.tenant.admin_key,
            admin,
            &format!("race-{round}"),
            None,
        )
        .await;
        let vars = json!({"input": {"key_id": id}});
        let revoke =
            "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }";
        let (disabled, revoked) = tokio::join!(
            h.gql(&h.tenant.admin_key, DISABLE, Some(vars.clone())),
            h.gql(&h.tenant.admin_key, revoke, Some(vars.clone()))
        );
        assert_eq!(
            revoked["data"]["delete_api_key"]["success"],
            json!(true),
            "{revoked}"
        );
        // Disabled first, or found gone (false): never an error.
        assert!(
            disabled["data"]["disable_api_key"]["success"].is_boolean(),
            "{disabled}"
        );
        assert_eq!(h.gql(&secret, "{ hello }", None).await, unauthenticated());
        h.assert_consistent().await;
    }
}
