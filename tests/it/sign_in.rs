//! People signing in with an identity provider, against the real handler
//! and a local DynamoDB: the provider is this test's own (RSA keys from
//! tests/data, an EC key generated here, a JWKS served on 127.0.0.1), its
//! issuer Cognito-shaped. Every hostile ID token is refused UNAUTHENTICATED
//! with zero DynamoDB requests; a provider whose keys cannot be fetched is a
//! retryable answer within the deadline, never a sign-in; sessions are one
//! read like keys, never keys, and end at once by log-out, removal and role
//! change.

use std::time::Instant;

use apikeys_core::domain::Role;
use apikeys_tests::idp::{
    b64, forged, provider, provider_with, sign_rsa, CLIENT, ISSUER, KID, RSA_A, RSA_B,
};
use apikeys_tests::Reply;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

fn reason(reply: &Reply) -> &str {
    reply.json["errors"][0]["extensions"]["reason"]
        .as_str()
        .unwrap_or("")
}

fn code(json: &Value) -> &str {
    json["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn hostile_id_tokens_are_refused_with_no_database_request() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let good = p.claims("alice-sub", "alice@example.com");
    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let now = p.h.now().unix_timestamp();
    // HS256 with the provider's public key as the secret (the classic
    // algorithm confusion), and `none`.
    let public_key = ring::rsa::KeyPair::from_der(RSA_A)
        .unwrap()
        .public()
        .as_ref()
        .to_vec();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(KID.into());
    let confused =
        jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&public_key)).unwrap();
    let none = forged(
        &json!({"alg": "none", "kid": KID, "typ": "JWT"}),
        &good,
        b"",
    );
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://login.example.net/other");
    let huge_claims = with(json!({"name": "x".repeat(40_000)}));
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", none, "id_token_algorithm"),
        (
            "HS256 keyed with the public key",
            confused,
            "id_token_algorithm",
        ),
        (
            "unknown kid",
            sign_rsa(RSA_A, "nobody", &good),
            "id_token_unknown_key",
        ),
        (
            "another provider's key under our kid",
            sign_rsa(RSA_B, KID, &good),
            "id_token_bad_signature",
        ),
        (
            "another issuer's token, its own key",
            sign_rsa(RSA_B, "theirs", &other_issuer),
            "id_token_wrong_issuer",
        ),
        (
            "expired (past the skew)",
            p.sign(&with(json!({"exp": now - 61, "iat": now - 3700}))),
            "id_token_expired",
        ),
        (
            "not yet valid",
            p.sign(&with(json!({"nbf": now + 120}))),
            "id_token_not_yet_valid",
        ),
        (
            "issued in the future",
            p.sign(&with(json!({"iat": now + 600, "exp": now + 4000}))),
            "id_token_not_yet_valid",
        ),
        (
            "wrong audience",
            p.sign(&with(json!({"aud": "another-client"}))),
            "id_token_wrong_audience",
        ),
        (
            "wrong issuer",
            p.sign(&with(json!({"iss": format!("{ISSUER}x")}))),
            "id_token_wrong_issuer",
        ),
        (
            "an access token (Cognito: client_id, no aud)",
            p.sign(&with(
                json!({"token_use": "access", "aud": null, "client_id": CLIENT}),
            )),
            "id_token_wrong_audience",
        ),
        (
            "an access token with our audience",
            p.sign(&with(json!({"token_use": "access"}))),
            "id_token_not_an_id_token",
        ),
        (
            "malformed base64",
            "eyJhbGciOiJSUzI1NiJ9.!!!.abc".to_string(),
            "id_token_malformed",
        ),
        (
            "not a JWT at all",
            "hello".to_string(),
            "id_token_malformed",
        ),
        ("a 40 KB token", p.sign(&huge_claims), "id_token_too_large"),
        (
            "a tampered payload",
            {
                let token = p.sign(&good);
                let parts: Vec<&str> = token.split('.').collect();
                let evil = with(json!({"sub": "mallory"}));
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(evil.to_string().as_bytes()),
                    parts[2]
                )
            },
            "id_token_bad_signature",
        ),
        (
            "no sub",
            p.sign(&with(json!({"sub": null}))),
            "id_token_malformed",
        ),
    ];
    for (what, token, expected) in &cases {
        p.h.counter.reset();
        let reply = p.log_in(token).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.body);
        assert_eq!(
            code(&reply.json),
            "UNAUTHENTICATED",
            "{what}: {}",
            reply.body
        );
        assert_eq!(reason(&reply), *expected, "{what}: {}", reply.body);
        assert!(reply.json["data"].is_null(), "{what}: {}", reply.body);
        assert_eq!(p.h.counter.total(), 0, "{what}: DynamoDB was asked");
        assert!(
            !reply.body.contains(token.as_str()) || token.len() < 8,
            "{what}"
        );
    }
    // A 1 MB token is refused by the body limit before anything (413).
    let big = "a".repeat(1024 * 1024);
    p.h.counter.reset();
    let reply = p.log_in(&big).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(p.h.counter.total(), 0);
    // The JWKS was fetched once for our kid and at most once more for the
    // unknown one (a minute apart at most: here, none).
    assert!(p.jwks.fetched() <= 2, "{} fetches", p.jwks.fetched());
    // The good token, and an ES256 one, do sign in.
    assert_eq!(code(&p.log_in(&p.sign(&good)).await.json), "");
    assert_eq!(code(&p.log_in(&p.sign_ec(&good)).await.json), "");
}

#[tokio::test]
async fn an_unverified_email_matches_nothing_and_domains_are_enforced() {
    let p = provider_with(&[("OIDC_EMAIL_DOMAINS", "example.com, @corp.example")]).await;
    let mut claims = p.claims("stranger", "eve@example.com");
    claims["email_verified"] = json!(false);
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(
        reason(&reply),
        "id_token_email_not_allowed",
        "{}",
        reply.body
    );
    claims["email_verified"] = json!("true");
    claims["email"] = json!("eve@evil.example");
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(
        reason(&reply),
        "id_token_email_not_allowed",
        "{}",
        reply.body
    );
    // Verified, allowed, and nobody here: told to ask for an invitation.
    claims["email"] = json!("Eve@Corp.Example");
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(reason(&reply), "not_a_member", "{}", reply.body);
    let message = reply.json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("invite eve@corp.example"), "{message}");
    // Without domains, an unverified email is never named nor matched.
    let p = provider().await;
    let mut claims = p.claims("stranger", "eve@example.com");
    claims["email_verified"] = json!(false);
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(reason(&reply), "not_a_member");
    assert!(!reply.body.contains("eve@example.com"), "{}", reply.body);
}

#[tokio::test]
async fn a_provider_out_of_reach_is_a_retryable_answer_within_the_deadline() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let token = p.sign(&p.claims("alice-sub", "alice@example.com"));
    p.jwks.set_down(true);
    p.h.counter.reset();
    let reply = p.log_in(&token).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(code(&reply.json), "SERVICE_UNAVAILABLE");
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(p.h.counter.total(), 0);
    // Slow: the fetch is given up after 3 s, well within the request's 10.
    p.jwks.set_down(false);
    p.jwks.set_delay_ms(8_000);
    // After the 5 s pause that follows a failure (of the service's clock).
    p.h.clock.set(p.h.now() + time::Duration::seconds(6));
    let started = Instant::now();
    let reply = p.log_in(&token).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(9));
    // Back: signed in.
    p.jwks.set_delay_ms(0);
    p.h.clock.set(p.h.now() + time::Duration::seconds(6));
    let reply = p.log_in(&token).await;
    assert!(
        reply.json["data"]["log_in"]["access_token"].is_string(),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_session_is_one_read_never_a_key_and_ends_when_it_should() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let (access, refresh) = p.session("alice-sub").await;
    assert!(access.starts_with("apses_") && refresh.starts_with("apref_"));
    // One consistent read authenticates it, like a key.
    p.h.counter.reset();
    let me = p
        .as_session(
            &access,
            "{ auth_info { user_id tenant_id role api_key_id } }",
        )
        .await;
    assert_eq!(p.h.counter.total(), 1, "{me}");
    assert_eq!(
        me["data"]["auth_info"]["user_id"],
        json!(p.h.tenant.admin_id)
    );
    assert_eq!(me["data"]["auth_info"]["role"], json!("TENANT_ADMIN"));
    // A person signed in makes a key in User > API Keys.
    let made = p
        .as_session(
            &access,
            &format!(
                "mutation {{ create_api_key(input: {{name: \"laptop\", user_id: \"{}\"}}) {{ key }} }}",
                p.h.tenant.admin_id
            ),
        )
        .await;
    let key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_string();
    assert!(p
        .h
        .gql(&key, "{ hello }", None)
        .await
        .get("errors")
        .is_none());
    // Never a key: not listed, not a bearer, not counted.
    let listed = p.h.data(&key, "{ auth_api_key { id name } }", None).await;
    let names: Vec<&str> = listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let as_bearer = p.h.gql(&access, "{ hello }", None).await;
    assert_eq!(
        as_bearer["errors"][0]["extensions"]["reason"],
        json!("session_not_key")
    );
    assert!(as_bearer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not an API key"));
    // Refreshed: both tokens anew, the old ones stop at once.
    let refreshed = p
        .public(
            "mutation($a: String!) { refresh_token(input: {access_token: $a}) { access_token refresh_token expires_at } }",
            json!({"a": access}),
            Some(&refresh),
        )
        .await;
    let new_access = refreshed.json["data"]["refresh_token"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", refreshed.body))
        .to_string();
    let old = p.as_session(&access, "{ hello }").await;
    assert_eq!(
        old["errors"][0]["extensions"]["reason"],
        json!("session_ended")
    );
    let again = p
        .public(
            "mutation($a: String!) { refresh_token(input: {access_token: $a}) { access_token } }",
            json!({"a": access}),
            Some(&refresh),
        )
        .await;
    assert_eq!(code(&again.json), "UNAUTHENTICATED", "{}", again.body);
    // Expiry to the second with the clock: an hour later, told to sign in again.
    let t0 = p.h.now();
    p.h.clock.set(t0 + Duration::hours(1));
    let late = p.as_session(&new_access, "{ hello }").await;
    assert_eq!(
        late["errors"][0]["extensions"]["reason"],
        json!("session_expired")
    );
    assert!(late["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("sign in again"));
    p.h.clock
        .set(t0 + Duration::hours(1) - Duration::seconds(1));
    assert!(p
        .as_session(&new_access, "{ hello }")
        .await
        .get("errors")
        .is_none());
    // Log-out ends it on the next request.
    let out = p
        .as_session(&new_access, "mutation { log_out { success } }")
        .await;
    assert_eq!(out["data"]["log_out"]["success"], json!(true));
    let after = p.as_session(&new_access, "{ hello }").await;
    assert_eq!(
        after["errors"][0]["extensions"]["reason"],
        json!("session_ended")
    );
    // Keys cannot log out or switch.
    let by_key =
        p.h.gql(&key, "mutation { log_out { success } }", None)
            .await;
    assert_eq!(code(&by_key), "FORBIDDEN", "{by_key}");
}

#[tokio::test]
async fn removal_and_role_change_end_a_members_sessions_at_once() {
    let p = provider().await;
    let bob = p.h.add_member("acme", "bob", Role::User).await;
    let carol = p.h.add_member("acme", "carol", Role::User).await;
    p.link("bob-sub", bob.user_id).await;
    p.link("carol-sub", carol.user_id).await;
    let (bob_session, _) = p.session("bob-sub").await;
    let (carol_session, _) = p.session("carol-sub").await;
    let me = p.as_session(&bob_session, "{ auth_info { role } }").await;
    assert_eq!(me["data"]["auth_info"]["role"], json!("USER"));
    let admin = &p.h.tenant.admin_key;
    let made_admin = p
        .h
        .gql(
            admin,
            "mutation($m: UUID!, $r: UUID!) { set_membership_role(input: {membership_id: $m, role_id: $r}) { id } }",
            Some(json!({"m": bob.membership_id, "r": Role::TenantAdmin.id()})),
        )
        .await;
    assert!(made_admin.get("errors").is_none(), "{made_admin}");
    let after = p.as_session(&bob_session, "{ auth_info { role } }").await;
    assert_eq!(
        after["errors"][0]["extensions"]["reason"],
        json!("session_ended"),
        "{after}"
    );
    // Signing in again carries the new role.
    let (bob_session, _) = p.session("bob-sub").await;
    let me = p.as_session(&bob_session, "{ auth_info { role } }").await;
    assert_eq!(me["data"]["auth_info"]["role"], json!("TENANT_ADMIN"));
    // Removal.
    let removed =
        p.h.gql(
            admin,
            "mutation($m: UUID!) { delete_membership(input: {membership_id: $m}) { success } }",
            Some(json!({"m": carol.membership_id})),
        )
        .await;
    assert!(removed.get("errors").is_none(), "{removed}");
    let gone = p.as_session(&carol_session, "{ hello }").await;
    assert_eq!(
        gone["errors"][0]["extensions"]["reason"],
        json!("session_ended")
    );
    // And she can no longer sign in to that tenant.
    let reply = p
        .log_in(&p.sign(&p.claims("carol-sub", "carol@example.com")))
        .await;
    assert_eq!(reason(&reply), "not_a_member", "{}", reply.body);
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn switch_tenant_only_into_the_persons_own_tenants() {
    let p = provider().await;
    let beta = p.h.add_tenant("beta", "bea").await;
    // Alice joins beta too.
    p.h.service()
        .add_member(
            "beta",
            apikeys_service::operator::NewUser {
                username: "alice",
                email: None,
            },
            Role::User,
        )
        .await
        .unwrap();
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let (access, _) = p.session("alice-sub").await;
    let switch = |tenant: Uuid| {
        format!(
            "mutation {{ switch_tenant(input: {{tenant_id: \"{tenant}\"}}) {{ access_token tenant_id }} }}"
        )
    };
    // A foreign tenant (beta's only member is bea... and alice) vs one
    // that does not exist: a tenant not hers looks unknown.
    let gamma = p.h.add_tenant("gamma", "gus").await;
    let foreign = p.as_session(&access, &switch(gamma.id)).await;
    let unknown = p.as_session(&access, &switch(Uuid::new_v4())).await;
    assert_eq!(
        foreign["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    assert_eq!(code(&foreign), "BAD_USER_INPUT");
    assert!(p
        .as_session(&access, "{ hello }")
        .await
        .get("errors")
        .is_none());
    let moved = p.as_session(&access, &switch(beta.id)).await;
    let beta_access = moved["data"]["switch_tenant"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{moved}"))
        .to_string();
    let me = p
        .as_session(&beta_access, "{ auth_info { tenant_id role } }")
        .await;
    assert_eq!(me["data"]["auth_info"]["tenant_id"], json!(beta.id));
    assert_eq!(me["data"]["auth_info"]["role"], json!("USER"));
    // The old session stopped.
    let old = p.as_session(&access, "{ hello }").await;
    assert_eq!(
        old["errors"][0]["extensions"]["reason"],
        json!("session_ended")
    );
    // log_in straight into beta, and not into gamma.
    let reply = p
        .public(
            "mutation($t: String!, $x: UUID) { log_in(input: {id_token: $t, tenant_id: $x}) { tenant_id } }",
            json!({"t": p.sign(&p.claims("alice-sub", "a@example.com")), "x": gamma.id}),
            None,
        )
        .await;
    assert_eq!(code(&reply.json), "BAD_USER_INPUT", "{}", reply.body);
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn racing_refreshes_and_sign_ins_stay_bounded() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let (access, refresh) = p.session("alice-sub").await;
    let query =
        "mutation($a: String!) { refresh_token(input: {access_token: $a}) { access_token } }";
    let vars = json!({"a": access});
    let replies =
        futures::future::join_all((0..6).map(|_| p.public(query, vars.clone(), Some(&refresh))))
            .await;
    let won = replies
        .iter()
        .filter(|r| r.json["data"]["refresh_token"]["access_token"].is_string())
        .count();
    assert_eq!(
        won,
        1,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    for r in &replies {
        let c = code(&r.json);
        assert!(
            c.is_empty() || c == "UNAUTHENTICATED" || c == "SERVICE_UNAVAILABLE",
            "{}",
            r.body
        );
    }
    // Twelve sign-ins at once: at most five sessions live, the others
    // ended or refused honestly (retryable, or the identity's sign-in limit).
    let token = p.sign(&p.claims("alice-sub", "alice@example.com"));
    let replies = futures::future::join_all((0..12).map(|_| p.log_in(&token))).await;
    let sessions: Vec<String> = replies
        .iter()
        .filter_map(|r| {
            r.json["data"]["log_in"]["access_token"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(!sessions.is_empty());
    for r in &replies {
        let c = code(&r.json);
        assert!(
            ["", "SERVICE_UNAVAILABLE", "RATE_LIMITED"].contains(&c),
            "{}",
            r.body
        );
    }
    let mut live = 0;
    for s in &sessions {
        if p.as_session(s, "{ hello }").await.get("errors").is_none() {
            live += 1;
        }
    }
    assert!((1..=5).contains(&live), "{live} live sessions");
}

#[tokio::test]
async fn the_client_id_can_come_from_the_stage_variable_the_template_sets() {
    let p = provider_with(&[("OIDC_CLIENT_ID", "stage:oidcClientId")]).await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let token = p.sign(&p.claims("alice-sub", "alice@example.com"));
    let body = apikeys_tests::prefect_body(
        "mutation($t: String!) { log_in(input: {id_token: $t}) { tenant_id } }",
        Some(json!({"t": token})),
    );
    let send = |variables: &'static [(&'static str, &'static str)]| {
        let request =
            apikeys_tests::staged_event(apikeys_tests::Route::RestGraphql, &body, &[], variables);
        apikeys_graphql::handle(&p.h.app, request)
    };
    let signed_in = send(&[("oidcClientId", CLIENT)]).await;
    let json: Value = serde_json::from_slice(signed_in.body()).unwrap();
    assert_eq!(
        json["data"]["log_in"]["tenant_id"],
        json!(p.h.tenant.id),
        "{json}"
    );
    // The client id is the stage's, for the instance's life: a token for
    // another client stays refused.
    let mut other = p.claims("alice-sub", "alice@example.com");
    other["aud"] = json!("another-client");
    let reply = p.log_in(&p.sign(&other)).await;
    assert_eq!(reason(&reply), "id_token_wrong_audience", "{}", reply.body);
}

#[tokio::test]
async fn without_its_stage_variable_sign_in_is_off_and_says_so() {
    let p = provider_with(&[("OIDC_CLIENT_ID", "stage:oidcClientId")]).await;
    let settings = p
        .public(
            "{ sign_in_settings { enabled client_id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        settings.json["data"]["sign_in_settings"],
        json!({"enabled": false, "client_id": null}),
        "{}",
        settings.body
    );
    p.h.counter.reset();
    let reply = p.log_in(&p.sign(&p.claims("x", "x@example.com"))).await;
    assert_eq!(code(&reply.json), "BAD_USER_INPUT", "{}", reply.body);
    assert_eq!(p.h.counter.total(), 0);
    // A request of the stage that has it turns sign-in on (nothing was
    // remembered from the requests without).
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let body = apikeys_tests::prefect_body(
        "mutation($t: String!) { log_in(input: {id_token: $t}) { tenant_id } }",
        Some(json!({"t": p.sign(&p.claims("alice-sub", "alice@example.com"))})),
    );
    let request = apikeys_tests::staged_event(
        apikeys_tests::Route::RestGraphql,
        &body,
        &[],
        &[("oidcClientId", CLIENT)],
    );
    let answer = apikeys_graphql::handle(&p.h.app, request).await;
    let json: Value = serde_json::from_slice(answer.body()).unwrap();
    assert_eq!(
        json["data"]["log_in"]["tenant_id"],
        json!(p.h.tenant.id),
        "{json}"
    );
}

#[tokio::test]
async fn the_tenants_networks_bind_sessions_too_even_ones_made_before() {
    use apikeys_core::policy::LeakAction;
    use apikeys_service::{Authenticated, PolicyChange};
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let (before, _) = p.session("alice-sub").await;
    p.h.service()
        .set_key_policy_as_operator(
            "acme",
            &PolicyChange {
                max_user_key_days: None,
                max_service_key_days: None,
                scopes_required: false,
                allowed_networks: vec!["127.0.0.0/8".into()],
                leak_action: LeakAction::Revoke,
            },
        )
        .await
        .unwrap();
    let (after, _) = p.session("alice-sub").await;
    for access in [&before, &after] {
        let auth = format!("Session {access}");
        let body = apikeys_tests::prefect_body("{ auth_info { role } }", None);
        let outside =
            p.h.send_from(
                apikeys_tests::Route::RestGraphql,
                &body,
                &[("Authorization", &auth)],
                "203.0.113.9",
            )
            .await;
        assert_eq!(
            outside.json["errors"][0]["extensions"]["reason"],
            json!("policy_network"),
            "{}",
            outside.body
        );
        let inside =
            p.h.send_from(
                apikeys_tests::Route::RestGraphql,
                &body,
                &[("Authorization", &auth)],
                "127.0.0.1",
            )
            .await;
        assert!(inside.json.get("errors").is_none(), "{}", inside.body);
        // Only the networks: a session is no key the lifetime rules judge.
        let authenticated =
            p.h.service()
                .authenticate_session(access, None)
                .await
                .unwrap();
        let Authenticated::Member(principal) = authenticated else {
            panic!("a member's session")
        };
        let at = p.h.service().use_at(
            None,
            "127.0.0.1".parse().ok(),
            apikeys_service::Api::ThisOne,
        );
        assert!(matches!(
            apikeys_service::verify::admit(*principal, &at),
            apikeys_service::Verdict::Allow(_)
        ));
    }
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn a_log_out_that_raced_a_refresh_still_ends_the_session() {
    use apikeys_service::Authenticated;
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let (access, refresh) = p.session("alice-sub").await;
    // The log-out authenticated first; the refresh commits before its write.
    let Authenticated::Member(principal) =
        p.h.service()
            .authenticate_session(&access, None)
            .await
            .unwrap()
    else {
        panic!("a member's session")
    };
    let renewed =
        p.h.service()
            .refresh_session(&access, Some(&refresh))
            .await
            .unwrap();
    let ended =
        p.h.service()
            .log_out(
                principal.session.as_ref(),
                Some((principal.tenant_id, principal.user_id)),
            )
            .await
            .unwrap();
    assert!(ended);
    let after = p.as_session(&renewed.access_token, "{ hello }").await;
    assert_eq!(
        after["errors"][0]["extensions"]["reason"],
        json!("session_ended"),
        "{after}"
    );
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn a_failing_discovery_document_is_fetched_once_for_many_sign_ins() {
    let discovery = apikeys_tests::documents::document_server(
        "/.well-known/openid-configuration",
        &json!({}),
        true,
    )
    .await;
    let h = apikeys_tests::Harness::with_env(&[
        ("OIDC_ISSUER", ISSUER),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_DISCOVERY_URL", discovery.url.as_str()),
    ])
    .await;
    let token = sign_rsa(
        RSA_A,
        KID,
        &json!({"iss": ISSUER, "aud": CLIENT, "sub": "x", "iat": 1, "exp": 2}),
    );
    let body = apikeys_tests::prefect_body(
        "mutation($t: String!) { log_in(input: {id_token: $t}) { tenant_id } }",
        Some(json!({"t": token})),
    );
    let replies = futures::future::join_all(
        (0..5).map(|_| h.send(apikeys_tests::Route::RestGraphql, &body, &[])),
    )
    .await;
    for r in &replies {
        assert_eq!(r.status, 503, "{}", r.body);
    }
    assert_eq!(discovery.fetched(), 1);
}

#[tokio::test]
async fn aliases_of_my_tenants_read_once() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let (access, _) = p.session("alice-sub").await;
    p.h.counter.reset();
    p.as_session(&access, "{ my_tenants { id } }").await;
    let once = p.h.counter.total();
    p.h.counter.reset();
    let many = (0..10)
        .map(|i| format!("t{i}: my_tenants {{ id }} i{i}: membership_invitation {{ id }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let answer = p.as_session(&access, &format!("{{ {many} }}")).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    // One authentication, the tenants once, the invitations once (two
    // queries: the tenant's, and those to the verified email).
    assert!(
        p.h.counter.total() <= once + 2,
        "{} requests, {once} for one",
        p.h.counter.total()
    );
}

/// A signed token with any header fields (jsonwebtoken's `Header` has no
/// `crit`): the signing input made here, signed with the provider's key.
fn signed_with_header(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_rsa_der(RSA_A),
        Algorithm::RS256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

#[tokio::test]
async fn tokens_with_a_crit_header_an_access_tokens_type_or_another_party_are_refused() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let good = p.claims("alice-sub", "alice@example.com");
    let header = |extra: Value| {
        let mut h = json!({"alg": "RS256", "kid": KID});
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        h
    };
    let with = |patch: Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        c
    };
    let cases = [
        // RFC 7515: an extension the recipient does not understand.
        (
            header(json!({"crit": ["exp"], "exp": 1})),
            good.clone(),
            "id_token_critical_header",
        ),
        (
            header(json!({"crit": []})),
            good.clone(),
            "id_token_critical_header",
        ),
        (
            header(json!({"crit": null})),
            good.clone(),
            "id_token_critical_header",
        ),
        // A JWT access token (RFC 9068) whose `aud` is our client id.
        (
            header(json!({"typ": "at+jwt"})),
            good.clone(),
            "id_token_not_an_id_token",
        ),
        (
            header(json!({"typ": "application/at+jwt"})),
            good.clone(),
            "id_token_not_an_id_token",
        ),
        // Issued to several audiences, for another party.
        (
            header(json!({})),
            with(json!({"aud": ["other-client", CLIENT], "azp": "other-client"})),
            "id_token_wrong_authorized_party",
        ),
        (
            header(json!({})),
            with(json!({"aud": ["other-client", CLIENT]})),
            "id_token_wrong_authorized_party",
        ),
        (
            header(json!({})),
            with(json!({"azp": "other-client"})),
            "id_token_wrong_authorized_party",
        ),
    ];
    for (head, claims, why) in cases {
        p.h.counter.reset();
        let reply = p.log_in(&signed_with_header(&head, &claims)).await;
        assert_eq!(reason(&reply), why, "{head} {claims}: {}", reply.body);
        assert_eq!(
            p.h.counter.total(),
            0,
            "{why}: a refused token reads nothing"
        );
    }
    // What an ID token says of itself is still welcome.
    for (head, claims) in [
        (header(json!({"typ": "JWT"})), good.clone()),
        (
            header(json!({})),
            with(json!({"aud": ["other-client", CLIENT], "azp": CLIENT})),
        ),
        (header(json!({})), with(json!({"azp": CLIENT}))),
    ] {
        let reply = p.log_in(&signed_with_header(&head, &claims)).await;
        assert!(
            reply.json["data"]["log_in"]["access_token"].is_string(),
            "{head} {claims}: {}",
            reply.body
        );
    }
}

/// Auth0's issuers end with a slash: the token's `iss` says it so, and is
/// compared with the issuer exactly as configured.
#[tokio::test]
async fn an_issuer_that_ends_with_a_slash_signs_people_in() {
    let issuer = "https://tenant.auth0.example/";
    let p = provider_with(&[("OIDC_ISSUER", issuer)]).await;
    let user = p.h.tenant.admin_id;
    let linked =
        p.h.service()
            .store()
            .link_identity(issuer, "auth0|alice", user)
            .await
            .unwrap();
    assert!(linked);
    let mut claims = p.claims("auth0|alice", "alice@example.com");
    claims["iss"] = json!(issuer);
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(
        reply.json["data"]["log_in"]["tenant_id"],
        json!(p.h.tenant.id),
        "{}",
        reply.body
    );
    // Without the slash it is another issuer.
    claims["iss"] = json!(issuer.trim_end_matches('/'));
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(reason(&reply), "id_token_wrong_issuer", "{}", reply.body);
}

/// Only an email of the plain form counts: never the text after its last
/// `@`.
#[tokio::test]
async fn an_allowed_domain_is_matched_on_the_whole_email() {
    let p = provider_with(&[("OIDC_EMAIL_DOMAINS", "example.com")]).await;
    for (i, email) in [
        "x@evil.com@example.com",
        "x@evil.com\n@example.com",
        "x@evil.com\r\n@example.com",
        "x@evil.com (comment) @example.com",
    ]
    .into_iter()
    .enumerate()
    {
        let reply = p.log_in(&p.sign(&p.claims(&format!("s{i}"), email))).await;
        assert_eq!(
            reason(&reply),
            "id_token_email_not_allowed",
            "{email:?}: {}",
            reply.body
        );
    }
    // The plain address of the domain is let through (to "not a member").
    let reply = p.log_in(&p.sign(&p.claims("s9", "ann@example.com"))).await;
    assert_eq!(reason(&reply), "not_a_member", "{}", reply.body);
}

/// The discovery document must speak for the configured issuer and send
/// us to https (or this machine) for keys; otherwise nobody signs in, and
/// it is said as the provider being unusable (503), never as a refusal.
#[tokio::test]
async fn a_discovery_document_of_another_issuer_or_a_plain_http_key_set_is_not_used() {
    use apikeys_tests::documents::document_server;
    let keys = provider().await.jwks;
    for (document, works) in [
        (json!({"issuer": ISSUER, "jwks_uri": keys.url}), true),
        (
            json!({"issuer": "https://evil.example", "jwks_uri": keys.url}),
            false,
        ),
        (
            json!({"issuer": ISSUER, "jwks_uri": "http://keys.example/jwks.json"}),
            false,
        ),
        (json!({"issuer": ISSUER}), false),
    ] {
        let discovery =
            document_server("/.well-known/openid-configuration", &document, false).await;
        let p = provider_with(&[
            ("OIDC_JWKS_URL", ""),
            ("OIDC_DISCOVERY_URL", discovery.url.as_str()),
        ])
        .await;
        p.link("alice-sub", p.h.tenant.admin_id).await;
        let reply = p
            .log_in(&p.sign(&p.claims("alice-sub", "alice@example.com")))
            .await;
        if works {
            assert!(
                reply.json["data"]["log_in"]["access_token"].is_string(),
                "{document}: {}",
                reply.body
            );
        } else {
            assert_eq!(reply.status, 503, "{document}: {}", reply.body);
            assert_eq!(code(&reply.json), "SERVICE_UNAVAILABLE", "{}", reply.body);
        }
    }
}

/// A stranger's valid ID token replayed 100 times costs a few reads, not
/// 200: sign-ins are bounded per identity and per instance.
#[tokio::test]
async fn sign_ins_are_bounded_per_identity_and_per_instance() {
    let p = provider().await;
    let token = p.sign(&p.claims("stranger-sub", "stranger@example.com"));
    p.h.counter.reset();
    let mut answers = std::collections::BTreeMap::new();
    let mut last = None;
    for _ in 0..100 {
        let reply = p.log_in(&token).await;
        *answers
            .entry(reason(&reply).to_string() + code(&reply.json))
            .or_insert(0) += 1;
        last = Some(reply);
    }
    let reads = p.h.counter.total();
    eprintln!("100 sign-ins of one stranger: {answers:?}, {reads} DynamoDB requests");
    // Five were looked up (each an identity read and an invitations query).
    assert_eq!(
        answers.get("not_a_memberUNAUTHENTICATED"),
        Some(&5),
        "{answers:?}"
    );
    assert_eq!(answers.get("RATE_LIMITED"), Some(&95), "{answers:?}");
    assert!(reads <= 10, "{reads} requests");
    let last = last.unwrap();
    assert_eq!(last.status, 429, "{}", last.body);
    assert_eq!(last.headers.get("retry-after").unwrap(), "12");
    // Twelve seconds on, one more.
    p.h.clock.set(p.h.now() + Duration::seconds(12));
    assert_eq!(reason(&p.log_in(&token).await), "not_a_member");
    // The instance: twenty at once, whoever asks.
    p.h.clock.set(p.h.now() + Duration::seconds(60));
    let mut limited = 0;
    for i in 0..30 {
        let reply = p
            .log_in(&p.sign(&p.claims(&format!("many-{i}"), "m@example.com")))
            .await;
        if code(&reply.json) == "RATE_LIMITED" {
            limited += 1;
        }
    }
    assert_eq!(
        limited, 10,
        "twenty of thirty different people at one instant"
    );
}

/// Signing in once more than five times ends the session issued first,
/// however close together (the clock stands still here).
#[tokio::test]
async fn a_sixth_sign_in_ends_the_first_session_however_close_in_time() {
    let p = provider().await;
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let mut sessions = Vec::new();
    for round in 0..6 {
        // Past the identity's sign-in bound, the same instant otherwise.
        if round == 5 {
            p.h.clock.set(p.h.now() + Duration::seconds(12));
        }
        sessions.push(p.session("alice-sub").await.0);
    }
    let mut live = Vec::new();
    for s in &sessions {
        live.push(p.as_session(s, "{ hello }").await.get("errors").is_none());
    }
    assert_eq!(live, [false, true, true, true, true, true]);
}

/// One schema: a standard introspection describes sign-in too, with a
/// credential and (where introspection is on) without one.
#[tokio::test]
async fn introspection_shows_the_sign_in_api() {
    let p = provider_with(&[("ENABLE_INTROSPECTION", "true")]).await;
    let query = "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }";
    let names = |json: &Value| -> Vec<String> {
        ["queryType", "mutationType"]
            .iter()
            .flat_map(|t| {
                json["data"]["__schema"][t]["fields"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let with_key = p.h.gql(&p.h.tenant.admin_key, query, None).await;
    let without = p.public(query, json!({}), None).await.json;
    for json in [&with_key, &without] {
        let names = names(json);
        for field in [
            "log_in",
            "refresh_token",
            "sign_in_settings",
            "create_api_key",
            "auth_info",
        ] {
            assert!(names.iter().any(|n| n == field), "{field}: {json}");
        }
    }
    // Without a credential, what needs one still does.
    let reply = p.public("{ auth_info { user_id } }", json!({}), None).await;
    assert_eq!(code(&reply.json), "UNAUTHENTICATED", "{}", reply.body);
}
