//! Invitations end to end against the real handler and a local DynamoDB:
//! an admin invites by email, the invited person signs in with the test
//! identity provider (a session in no tenant), sees and accepts the
//! invitation, switches into the tenant and makes a key. The wrong person,
//! an unverified email, expiry, withdrawal, double and racing accepts, the
//! limits, and callers who may not invite.

use apikeys_core::domain::Role;
use apikeys_service::{INVITATIONS_PER_HOUR, MAX_PENDING_INVITATIONS};
use apikeys_tests::idp::{provider, Provider};
use apikeys_tests::{prefect_body, Route};
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

fn code(json: &Value) -> &str {
    json["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

const INVITE: &str = "mutation($i: create_membership_invitation_input!) { create_membership_invitation(input: $i) { id } }";

async fn invite(p: &Provider, key: &str, email: &str, role: &str) -> Value {
    invite_to(p, key, p.h.tenant.id, email, role).await
}

async fn invite_to(p: &Provider, key: &str, tenant: Uuid, email: &str, role: &str) -> Value {
    p.h.gql(
        key,
        INVITE,
        Some(json!({"i": {"tenant_id": tenant, "email": email, "role": role}})),
    )
    .await
}

async fn invited(p: &Provider, key: &str, email: &str, role: &str) -> Uuid {
    invited_to(p, key, p.h.tenant.id, email, role).await
}

async fn invited_to(p: &Provider, key: &str, tenant: Uuid, email: &str, role: &str) -> Uuid {
    let made = invite_to(p, key, tenant, email, role).await;
    serde_json::from_value(made["data"]["create_membership_invitation"]["id"].clone())
        .unwrap_or_else(|_| panic!("{made}"))
}

/// A person's session (their sub, their verified email): the access token
/// and the tenant it is in.
async fn signed_in(p: &Provider, sub: &str, email: &str) -> (Value, String) {
    let reply = p.log_in(&p.sign(&p.claims(sub, email))).await;
    let tokens = reply.json["data"]["log_in"].clone();
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (reply.json, access)
}

async fn accept(p: &Provider, access: &str, id: Uuid) -> Value {
    p.as_session(
        access,
        &format!("mutation {{ accept_membership_invitation(input: {{invitation_id: \"{id}\"}}) {{ id tenant_id }} }}"),
    )
    .await
}

#[tokio::test]
async fn an_invited_person_signs_in_accepts_switches_and_makes_a_key() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let id = invited(&p, &admin, "  Dave@Example.COM ", "USER").await;
    // The admin sees it pending.
    let listed = p
        .h
        .data(&admin, "{ membership_invitation { id email role role_detail { name } tenant { id name slug } invited_by } }", None)
        .await;
    assert_eq!(
        listed["membership_invitation"][0]["email"],
        json!("dave@example.com")
    );
    assert_eq!(
        listed["membership_invitation"][0]["tenant"]["slug"],
        json!("acme")
    );
    // Dave, new here: a session in no tenant.
    let (reply, access) = signed_in(&p, "dave-sub", "dave@example.com").await;
    assert_eq!(reply["data"]["log_in"]["tenant_id"], Value::Null, "{reply}");
    let mine = p
        .as_session(
            &access,
            "{ membership_invitation { id email tenant { slug } } my_tenants { id } }",
        )
        .await;
    assert_eq!(
        mine["data"]["membership_invitation"][0]["id"],
        json!(id),
        "{mine}"
    );
    assert_eq!(mine["data"]["my_tenants"], json!([]));
    // Nothing else is open to a person in no tenant, and they are told why.
    let other = p.as_session(&access, "{ auth_info { user_id } }").await;
    assert_eq!(code(&other), "FORBIDDEN", "{other}");
    assert!(
        other["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no tenant yet"),
        "{other}"
    );
    let accepted = accept(&p, &access, id).await;
    assert_eq!(
        accepted["data"]["accept_membership_invitation"]["tenant_id"],
        json!(p.h.tenant.id),
        "{accepted}"
    );
    // Twice: gone.
    let again = accept(&p, &access, id).await;
    assert_eq!(code(&again), "BAD_USER_INPUT", "{again}");
    let moved = p
        .as_session(
            &access,
            &format!("mutation {{ switch_tenant(input: {{tenant_id: \"{}\"}}) {{ access_token tenant_id }} }}", p.h.tenant.id),
        )
        .await;
    let member_access = moved["data"]["switch_tenant"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{moved}"))
        .to_string();
    let me = p
        .as_session(
            &member_access,
            "{ auth_info { user_id role } my_tenants { slug role } }",
        )
        .await;
    assert_eq!(me["data"]["auth_info"]["role"], json!("USER"), "{me}");
    assert_eq!(
        me["data"]["my_tenants"],
        json!([{"slug": "acme", "role": "USER"}])
    );
    let user_id = me["data"]["auth_info"]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let made = p
        .as_session(
            &member_access,
            &format!("mutation {{ create_api_key(input: {{name: \"ci\", user_id: \"{user_id}\"}}) {{ key }} }}"),
        )
        .await;
    let key = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"));
    assert!(p
        .h
        .gql(key, "{ hello }", None)
        .await
        .get("errors")
        .is_none());
    // Next time, Dave signs straight into acme.
    let (reply, _) = signed_in(&p, "dave-sub", "dave@example.com").await;
    assert_eq!(reply["data"]["log_in"]["tenant_id"], json!(p.h.tenant.id));
    // Recorded.
    let log =
        p.h.data(
            &admin,
            "{ audit_log { action actor_name target_name } }",
            None,
        )
        .await;
    let actions: Vec<&str> = log["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"INVITATION_CREATED") && actions.contains(&"INVITATION_ACCEPTED"),
        "{actions:?}"
    );
    assert!(p
        .h
        .data(&admin, "{ membership_invitation { id } }", None)
        .await["membership_invitation"]
        .as_array()
        .unwrap()
        .is_empty());
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn only_the_verified_invited_email_may_accept() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let for_dave = invited(&p, &admin, "dave@example.com", "TENANT_ADMIN").await;
    // Eve has an invitation of her own (so a session), not Dave's.
    invited(&p, &admin, "eve@example.com", "USER").await;
    let (_, eve) = signed_in(&p, "eve-sub", "eve@example.com").await;
    let stolen = accept(&p, &eve, for_dave).await;
    assert_eq!(code(&stolen), "BAD_USER_INPUT", "{stolen}");
    assert!(stolen["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("invitation not found"));
    let unknown = accept(&p, &eve, Uuid::new_v4()).await;
    assert_eq!(
        stolen["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    // Dave's address, unverified: no session at all.
    let mut claims = p.claims("mallory-sub", "dave@example.com");
    claims["email_verified"] = json!(false);
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(
        reply.json["errors"][0]["extensions"]["reason"],
        json!("not_a_member")
    );
    // Another issuer's token with Dave's address: refused as such.
    let mut claims = p.claims("dave-sub", "dave@example.com");
    claims["iss"] = json!("https://accounts.example.org");
    let reply = p.log_in(&p.sign(&claims)).await;
    assert_eq!(
        reply.json["errors"][0]["extensions"]["reason"],
        json!("id_token_wrong_issuer")
    );
    // A key cannot accept.
    let by_key = p
        .h
        .gql(&admin, &format!("mutation {{ accept_membership_invitation(input: {{invitation_id: \"{for_dave}\"}}) {{ id }} }}"), None)
        .await;
    assert_eq!(code(&by_key), "FORBIDDEN", "{by_key}");
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn expired_and_withdrawn_invitations_cannot_be_accepted() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let expiring = invited(&p, &admin, "dave@example.com", "USER").await;
    let withdrawn = invited(&p, &admin, "erin@example.com", "USER").await;
    let (_, erin) = signed_in(&p, "erin-sub", "erin@example.com").await;
    let gone = p
        .h
        .gql(&admin, &format!("mutation {{ delete_membership_invitation(input: {{invitation_id: \"{withdrawn}\"}}) {{ success }} }}"), None)
        .await;
    assert_eq!(
        gone["data"]["delete_membership_invitation"]["success"],
        json!(true),
        "{gone}"
    );
    // Her only invitation withdrawn, her session in no tenant ended with it.
    let late = accept(&p, &erin, withdrawn).await;
    assert_eq!(code(&late), "UNAUTHENTICATED", "{late}");
    assert_eq!(late["errors"][0]["extensions"]["reason"], "session_ended");
    // Withdrawn twice: not found.
    let twice = p
        .h
        .gql(&admin, &format!("mutation {{ delete_membership_invitation(input: {{invitation_id: \"{withdrawn}\"}}) {{ success }} }}"), None)
        .await;
    assert_eq!(code(&twice), "BAD_USER_INPUT", "{twice}");
    let (_, dave) = signed_in(&p, "dave-sub", "dave@example.com").await;
    let t0 = p.h.now();
    p.h.clock.set(t0 + Duration::days(7));
    // The session outlived nothing here: a new one, after expiry.
    let (reply, _) = signed_in(&p, "dave-sub", "dave@example.com").await;
    assert_eq!(
        reply["errors"][0]["extensions"]["reason"],
        json!("not_a_member"),
        "{reply}"
    );
    let _ = dave;
    // An expired invitation is replaced by a new one to the same email.
    let again = invited(&p, &admin, "dave@example.com", "READ_ONLY_USER").await;
    assert_ne!(again, expiring);
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn racing_accepts_and_withdrawals_make_one_membership_or_none() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let id = invited(&p, &admin, "dave@example.com", "USER").await;
    let (_, dave) = signed_in(&p, "dave-sub", "dave@example.com").await;
    let accepts = futures::future::join_all((0..6).map(|_| accept(&p, &dave, id))).await;
    let won = accepts
        .iter()
        .filter(|a| a["data"]["accept_membership_invitation"]["id"].is_string())
        .count();
    assert_eq!(won, 1, "{accepts:?}");
    for a in &accepts {
        let c = code(a);
        assert!(
            c.is_empty() || c == "BAD_USER_INPUT" || c == "SERVICE_UNAVAILABLE",
            "{a}"
        );
    }
    // Accept against withdraw, at once: never both.
    let id = invited(&p, &admin, "fay@example.com", "USER").await;
    let (_, fay) = signed_in(&p, "fay-sub", "fay@example.com").await;
    let withdraw = format!("mutation {{ delete_membership_invitation(input: {{invitation_id: \"{id}\"}}) {{ success }} }}");
    let (accepted, withdrawn) =
        tokio::join!(accept(&p, &fay, id), p.h.gql(&admin, &withdraw, None));
    let a = accepted["data"]["accept_membership_invitation"]["id"].is_string();
    let w = withdrawn["data"]["delete_membership_invitation"]["success"] == json!(true);
    assert!(a ^ w, "{accepted} {withdrawn}");
    let members =
        p.h.data(
            &admin,
            "{ tenant { id } user_view_same_tenant { username } }",
            None,
        )
        .await;
    let names: Vec<&str> = members["user_view_same_tenant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"dave@example.com"));
    assert_eq!(names.contains(&"fay@example.com"), a, "{names:?}");
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn who_may_invite_and_how_many() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let (_, robot) = p.h.add_service_account("robot").await;
    let bob = p.h.add_member("acme", "bob", Role::User).await;
    let rita = p.h.add_member("acme", "rita", Role::ReadOnlyUser).await;
    for (who, key) in [
        ("service account", &robot),
        ("user", &bob.key),
        ("read-only", &rita.key),
    ] {
        let refused = invite(&p, key, "x@example.com", "USER").await;
        assert_eq!(code(&refused), "FORBIDDEN", "{who}: {refused}");
    }
    // Another tenant's id looks unknown.
    let beta = p.h.add_tenant("beta", "bea").await;
    let foreign = invite_to(&p, &admin, beta.id, "x@example.com", "USER").await;
    assert_eq!(code(&foreign), "BAD_USER_INPUT", "{foreign}");
    // Hostile emails and roles: refused, nothing written.
    let long = format!("{}@example.com", "a".repeat(300));
    for bad in [
        "",
        "a",
        "a@b",
        "a@@b.c",
        "a@b..c",
        "ä@example.com",
        "a b@example.com",
        "a@example.com\r\nBcc: x@y.z",
        long.as_str(),
        "@example.com",
        "a@.example.com",
    ] {
        let refused = invite(&p, &admin, bad, "USER").await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{bad:?}: {refused}");
    }
    assert_eq!(
        code(&invite(&p, &admin, "x@example.com", "ROOT").await),
        "BAD_USER_INPUT"
    );
    // One pending per email.
    invited(&p, &admin, "x@example.com", "USER").await;
    let twice = invite(&p, &admin, "X@example.com", "USER").await;
    assert!(
        twice["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("pending invitation"),
        "{twice}"
    );
    // An admin's hourly limit (one used above).
    for i in 1..INVITATIONS_PER_HOUR {
        invited(&p, &admin, &format!("p{i}@example.com"), "USER").await;
    }
    let auth = format!("Bearer {admin}");
    let body = prefect_body(
        INVITE,
        Some(
            json!({"i": {"tenant_id": p.h.tenant.id, "email": "late@example.com", "role": "USER"}}),
        ),
    );
    let limited =
        p.h.send(Route::RestGraphql, &body, &[("Authorization", &auth)])
            .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(code(&limited.json), "RATE_LIMITED");
    assert!(limited.headers.contains_key("retry-after"));
    // The tenant's pending limit (the operator has no hourly limit).
    let service = p.h.service();
    for i in 0..(MAX_PENDING_INVITATIONS - INVITATIONS_PER_HOUR as usize) {
        service
            .operator_invite("acme", &format!("o{i}@example.com"), Role::User)
            .await
            .unwrap();
    }
    let full = service
        .operator_invite("acme", "one-more@example.com", Role::User)
        .await;
    assert!(full
        .unwrap_err()
        .to_string()
        .contains("pending invitations"));
    let listed =
        p.h.data(&admin, "{ membership_invitation { id } }", None)
            .await;
    assert_eq!(
        listed["membership_invitation"].as_array().unwrap().len(),
        MAX_PENDING_INVITATIONS
    );
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn a_look_alike_email_matches_no_invitation() {
    let p = provider().await;
    invited(
        &p,
        &p.h.tenant.admin_key.clone(),
        "kim@example.com",
        "TENANT_ADMIN",
    )
    .await;
    // The Kelvin sign, which Unicode lowercases to an ASCII k.
    let (reply, _) = signed_in(&p, "mallory-sub", "\u{212A}im@example.com").await;
    assert_eq!(
        reply["errors"][0]["extensions"]["reason"],
        json!("not_a_member"),
        "{reply}"
    );
    for bad in ["a@-x.com", "a@x-.com", "a@x.-com"] {
        assert_eq!(
            code(&invite(&p, &p.h.tenant.admin_key, bad, "USER").await),
            "BAD_USER_INPUT",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_admin_no_longer_an_admin_can_neither_withdraw_nor_leave_invitations_standing() {
    let p = provider().await;
    let dora = p.h.add_member("acme", "dora", Role::TenantAdmin).await;
    let id = invited(&p, &dora.key, "guest@example.com", "TENANT_ADMIN").await;
    let spare = invited(&p, &dora.key, "spare@example.com", "USER").await;
    let dora_before =
        p.h.service()
            .authenticate(Some(&dora.key), None)
            .await
            .unwrap();
    let admin = p.h.tenant.admin_key.clone();
    let demoted = p
        .h
        .gql(
            &admin,
            "mutation($m: UUID!, $r: UUID!) { set_membership_role(input: {membership_id: $m, role_id: $r}) { id } }",
            Some(json!({"m": dora.membership_id, "r": Role::User.id()})),
        )
        .await;
    assert!(demoted.get("errors").is_none(), "{demoted}");
    // Her request authenticated as an admin; the change is refused in words.
    let withdrawn = p.h.service().withdraw_invitation(&dora_before, spare).await;
    assert!(
        matches!(withdrawn, Err(apikeys_service::Error::Forbidden(_))),
        "{withdrawn:?}"
    );
    // Her invitation no longer stands.
    let (_, guest) = signed_in(&p, "guest-sub", "guest@example.com").await;
    let refused = accept(&p, &guest, id).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    assert!(refused["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("no longer an admin"));
    p.h.assert_consistent().await;
}

#[tokio::test]
async fn a_session_in_no_tenant_ends_when_its_last_invitation_is_withdrawn() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let id = invited(&p, &admin, "dave@example.com", "USER").await;
    let reply = p
        .log_in(&p.sign(&p.claims("dave-sub", "dave@example.com")))
        .await;
    let tokens = reply.json["data"]["log_in"].clone();
    let (access, refresh) = (
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
    );
    let query = "mutation($a: String!) { refresh_token(input: {access_token: $a}) { access_token refresh_token } }";
    // While the invitation waits, a refresh works.
    let renewed = p.public(query, json!({"a": access}), Some(&refresh)).await;
    let tokens = renewed.json["data"]["refresh_token"].clone();
    let (access, refresh) = (
        tokens["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", renewed.body))
            .to_string(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
    );
    let withdraw = format!("mutation {{ delete_membership_invitation(input: {{invitation_id: \"{id}\"}}) {{ success }} }}");
    assert!(p
        .h
        .gql(&admin, &withdraw, None)
        .await
        .get("errors")
        .is_none());
    // The last invitation to the email withdrawn: the session ended with it
    // (refreshing it, and using it, say so).
    let refused = p.public(query, json!({"a": access}), Some(&refresh)).await;
    assert_eq!(
        refused.json["errors"][0]["extensions"]["reason"],
        json!("session_ended"),
        "{}",
        refused.body
    );
    let used = p
        .as_session(&access, "{ membership_invitation { id } }")
        .await;
    assert_eq!(
        used["errors"][0]["extensions"]["reason"], "session_ended",
        "{used}"
    );
}

/// The session that accepted goes on: it lists its new tenant and is
/// refreshed (no second sign-in), then switches into it.
#[tokio::test]
async fn the_session_that_accepts_sees_its_tenant_and_refreshes() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let id = invited(&p, &admin, "gail@example.com", "USER").await;
    let reply = p
        .log_in(&p.sign(&p.claims("gail-sub", "gail@example.com")))
        .await;
    let tokens = reply.json["data"]["log_in"].clone();
    let (access, refresh) = (
        tokens["access_token"].as_str().unwrap().to_string(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
    );
    let accepted = accept(&p, &access, id).await;
    assert!(accepted.get("errors").is_none(), "{accepted}");
    let mine = p.as_session(&access, "{ my_tenants { id role } }").await;
    assert_eq!(
        mine["data"]["my_tenants"],
        json!([{"id": p.h.tenant.id, "role": "USER"}]),
        "{mine}"
    );
    let query = "mutation($a: String!) { refresh_token(input: {access_token: $a}) { access_token tenant_id } }";
    let renewed = p.public(query, json!({"a": access}), Some(&refresh)).await;
    let access = renewed.json["data"]["refresh_token"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", renewed.body))
        .to_string();
    let moved = p
        .as_session(
            &access,
            &format!(
                "mutation {{ switch_tenant(input: {{tenant_id: \"{}\"}}) {{ tenant_id }} }}",
                p.h.tenant.id
            ),
        )
        .await;
    assert_eq!(
        moved["data"]["switch_tenant"]["tenant_id"],
        json!(p.h.tenant.id),
        "{moved}"
    );
    p.h.assert_consistent().await;
}

/// A person in no tenant holds at most five sessions, like a member: the
/// sixth sign-in ends the first.
#[tokio::test]
async fn a_person_in_no_tenant_holds_at_most_five_sessions() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    invited(&p, &admin, "hal@example.com", "USER").await;
    let token = p.sign(&p.claims("hal-sub", "hal@example.com"));
    let mut sessions = Vec::new();
    for round in 0..30 {
        // Past the sign-in bound of one identity (five, then one each 12 s).
        p.h.clock.set(p.h.now() + Duration::seconds(12));
        let reply = p.log_in(&token).await;
        let access = reply.json["data"]["log_in"]["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{round}: {}", reply.body));
        sessions.push(access.to_string());
    }
    let mut live = Vec::new();
    for s in &sessions {
        let reply = p.as_session(s, "{ membership_invitation { id } }").await;
        live.push(reply.get("errors").is_none());
    }
    let expected: Vec<bool> = (0..30).map(|i| i >= 25).collect();
    assert_eq!(live, expected);
}

const WITHDRAW: &str = "mutation($i: membership_invitation_id_input!) { delete_membership_invitation(input: $i) { success } }";
const MINE: &str = "{ membership_invitation { id } my_tenants { id } }";

async fn withdraw(p: &Provider, key: &str, id: Uuid) -> Value {
    p.h.gql(key, WITHDRAW, Some(json!({"i": {"invitation_id": id}})))
        .await
}

/// Two tenants withdrawing at once the last two invitations to one email:
/// the person's session in no tenant ends (each withdrawal saw the other's
/// invitation still waiting, and neither ended it). Withdrawals of one
/// email are serialised by its sessions item.
#[tokio::test]
async fn two_withdrawals_at_once_of_the_last_invitations_end_the_session() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let beta = p.h.add_tenant("beta", "bob").await;
    for round in 0..6 {
        let email = format!("eve{round}@example.com");
        let a = invited(&p, &admin, &email, "USER").await;
        let b = invited_to(&p, &beta.admin_key, beta.id, &email, "USER").await;
        let (_, access) = signed_in(&p, &format!("eve-{round}"), &email).await;
        let (ra, rb) = tokio::join!(withdraw(&p, &admin, a), withdraw(&p, &beta.admin_key, b));
        assert!(
            ra.get("errors").is_none() && rb.get("errors").is_none(),
            "{ra} {rb}"
        );
        let after = p.as_session(&access, MINE).await;
        assert_eq!(
            after["errors"][0]["extensions"]["reason"], "session_ended",
            "round {round}: {after}"
        );
    }
}

/// A sign-in that read the invitation before its withdrawal and writes its
/// session after it: refused (`not_a_member`), never a session in no
/// tenant with nothing to accept. Every request of the signing-in instance
/// is slowed so the withdrawal lands between its reads and its write.
#[tokio::test]
async fn a_sign_in_racing_the_withdrawal_of_the_last_invitation_gets_no_session() {
    use apikeys_tests::faults::{Fault, FaultProxy, Plan};
    use apikeys_tests::idp::{CLIENT, ISSUER};
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let proxy = FaultProxy::start(&apikeys_tests::endpoint(), Plan::Off, 7)
        .await
        .unwrap();
    let (slow, _) = p.h.app_via(
        &proxy.endpoint(),
        &[
            ("OIDC_ISSUER", ISSUER),
            ("OIDC_CLIENT_ID", CLIENT),
            ("OIDC_JWKS_URL", p.jwks.url.as_str()),
        ],
    );
    for earlier_session in [false, true] {
        let email = format!("gus-{earlier_session}@example.com");
        let sub = format!("gus-{earlier_session}");
        let id = invited(&p, &admin, &email, "USER").await;
        if earlier_session {
            signed_in(&p, &sub, &email).await;
        }
        proxy.set_plan(Plan::Random {
            rate: 1.0,
            faults: vec![Fault::Delay],
        });
        let body = prefect_body(
            "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token } }",
            Some(json!({"t": p.sign(&p.claims(&sub, &email))})),
        );
        let log_in = async {
            let response = apikeys_graphql::handle(
                &slow,
                apikeys_tests::event(Route::RestGraphql, "POST", &body, &[]),
            )
            .await;
            serde_json::from_slice::<Value>(response.body()).unwrap()
        };
        let withdrawal = async {
            tokio::time::sleep(std::time::Duration::from_millis(330)).await;
            withdraw(&p, &admin, id).await
        };
        let (signed, withdrawn) = tokio::join!(log_in, withdrawal);
        proxy.set_plan(Plan::Off);
        assert!(withdrawn.get("errors").is_none(), "{withdrawn}");
        match signed["data"]["log_in"]["access_token"].as_str() {
            // Signed in before the withdrawal: ended with it.
            Some(access) => {
                let after = p.as_session(access, MINE).await;
                assert_eq!(
                    after["errors"][0]["extensions"]["reason"], "session_ended",
                    "{after}"
                );
            }
            None => assert_eq!(
                signed["errors"][0]["extensions"]["reason"], "not_a_member",
                "{signed}"
            ),
        }
    }
}

/// The session that accepted one invitation is a member's now: another
/// tenant withdrawing its (the last) invitation to the same email does not
/// end it. A second session of the person in no tenant, refreshed, moves
/// into the tenant joined (as a sign-in would), never "not a member".
#[tokio::test]
async fn a_session_that_accepted_outlives_other_withdrawals_and_others_refresh_into_the_tenant() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    let beta = p.h.add_tenant("beta", "bob").await;
    let email = "fay@example.com";
    let a = invited(&p, &admin, email, "USER").await;
    let b = invited_to(&p, &beta.admin_key, beta.id, email, "USER").await;
    let (_, first) = signed_in(&p, "fay-sub", email).await;
    let second =
        p.log_in(&p.sign(&p.claims("fay-sub", email))).await.json["data"]["log_in"].clone();
    let accepted = accept(&p, &first, a).await;
    assert!(accepted.get("errors").is_none(), "{accepted}");
    let withdrawn = withdraw(&p, &beta.admin_key, b).await;
    assert!(withdrawn.get("errors").is_none(), "{withdrawn}");
    let mine = p.as_session(&first, MINE).await;
    assert_eq!(
        mine["data"]["my_tenants"],
        json!([{"id": p.h.tenant.id}]),
        "{mine}"
    );
    // The second session, in no tenant and unlisted by nothing but its
    // email, was ended with the last invitation: sign in again, and the
    // person is a member now, so the session is in the tenant.
    let refreshed = p
        .public(
            "mutation($a: String!) { refresh_token(input: {access_token: $a}) { tenant_id } }",
            json!({"a": second["access_token"]}),
            second["refresh_token"].as_str(),
        )
        .await;
    assert_eq!(
        refreshed.json["errors"][0]["extensions"]["reason"], "session_ended",
        "{}",
        refreshed.body
    );
    let (again, _) = signed_in(&p, "fay-sub", email).await;
    assert_eq!(
        again["data"]["log_in"]["tenant_id"],
        json!(p.h.tenant.id),
        "{again}"
    );
    // Two sessions in no tenant, one accepts, no withdrawal: the other's
    // refresh moves it into the tenant joined.
    let email = "lea@example.com";
    let a = invited(&p, &admin, email, "USER").await;
    let (_, one) = signed_in(&p, "lea-sub", email).await;
    let other = p.log_in(&p.sign(&p.claims("lea-sub", email))).await.json["data"]["log_in"].clone();
    assert!(accept(&p, &one, a).await.get("errors").is_none());
    let refreshed = p
        .public(
            "mutation($a: String!) { refresh_token(input: {access_token: $a}) { tenant_id } }",
            json!({"a": other["access_token"]}),
            other["refresh_token"].as_str(),
        )
        .await;
    assert_eq!(
        refreshed.json["data"]["refresh_token"]["tenant_id"],
        json!(p.h.tenant.id),
        "{}",
        refreshed.body
    );
    p.h.assert_consistent().await;
}

/// A person never joins under the name of a service account of the tenant.
#[tokio::test]
async fn a_person_does_not_join_under_a_service_accounts_name() {
    let p = provider().await;
    let admin = p.h.tenant.admin_key.clone();
    p.h.add_service_account("ops@example.com").await;
    let id = invited(&p, &admin, "OPS@example.com", "USER").await;
    let (_, access) = signed_in(&p, "ops-sub", "ops@example.com").await;
    let reply = accept(&p, &access, id).await;
    assert_eq!(code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(
        reply["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("service account named 'ops@example.com'"),
        "{reply}"
    );
}
