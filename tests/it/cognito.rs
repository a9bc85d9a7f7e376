//! Sign-in with tokens the local AWS emulator's Cognito issues: a user pool
//! and a public app client made through its API, people with verified and
//! unverified emails, their ID tokens (issuer: the real Cognito URL; keys:
//! from the emulator's discovery document and JWKS) exchanged for sessions
//! through the real handler; Cognito's access token refused as what it is.

use apikeys_tests::endpoint;
use apikeys_tests::idp::CognitoPool;
use apikeys_tests::{prefect_body, Harness, Route};
use serde_json::{json, Value};

async fn log_in(h: &Harness, id_token: &str) -> Value {
    let body = prefect_body(
        "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token tenant_id } }",
        Some(json!({"t": id_token})),
    );
    h.send(Route::RestGraphql, &body, &[]).await.json
}

#[tokio::test]
async fn the_emulators_cognito_tokens_sign_in_and_its_access_tokens_do_not() {
    let pool = CognitoPool::create(&endpoint(), "http://127.0.0.1:4000/").await;
    let h = Harness::with_env(&[
        ("OIDC_ISSUER", &pool.issuer()),
        ("OIDC_CLIENT_ID", &pool.client_id),
        ("OIDC_DISCOVERY_URL", &pool.discovery_url()),
    ])
    .await;
    let ada = pool
        .add_person("ada@example.com", true, "Demo-pass-1")
        .await;
    pool.add_person("eve@example.com", false, "Demo-pass-2")
        .await;
    // Ada is invited; she signs in (a session in no tenant) and accepts.
    let invitation = h
        .service()
        .operator_invite("acme", "ada@example.com", apikeys_core::domain::Role::User)
        .await
        .unwrap();
    let tokens = pool
        .password_sign_in("ada@example.com", "Demo-pass-1")
        .await;
    let id_token = tokens["IdToken"].as_str().unwrap();
    let session = log_in(&h, id_token).await;
    let access = session["data"]["log_in"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{session}"))
        .to_string();
    let auth = format!("Session {access}");
    let accept = prefect_body(
        &format!("mutation {{ accept_membership_invitation(input: {{invitation_id: \"{}\"}}) {{ tenant_id }} }}", invitation.id),
        None,
    );
    let accepted = h
        .send(Route::RestGraphql, &accept, &[("Authorization", &auth)])
        .await;
    assert_eq!(
        accepted.json["data"]["accept_membership_invitation"]["tenant_id"],
        json!(h.tenant.id),
        "{}",
        accepted.body
    );
    // Signed in again: straight into acme, as the person Cognito says (sub).
    let again = log_in(&h, id_token).await;
    assert_eq!(
        again["data"]["log_in"]["tenant_id"],
        json!(h.tenant.id),
        "{again}"
    );
    let user = h
        .service()
        .store()
        .identity_user(&pool.issuer(), &ada)
        .await
        .unwrap();
    assert!(user.is_some());
    // Cognito's access token (client_id, no aud, token_use access).
    let refused = log_in(&h, tokens["AccessToken"].as_str().unwrap()).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        json!("UNAUTHENTICATED"),
        "{refused}"
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["reason"],
        json!("id_token_wrong_audience")
    );
    // An unverified email matches no invitation.
    h.service()
        .operator_invite("acme", "eve@example.com", apikeys_core::domain::Role::User)
        .await
        .unwrap();
    let eve = pool
        .password_sign_in("eve@example.com", "Demo-pass-2")
        .await;
    let refused = log_in(&h, eve["IdToken"].as_str().unwrap()).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["reason"],
        json!("not_a_member"),
        "{refused}"
    );
}
