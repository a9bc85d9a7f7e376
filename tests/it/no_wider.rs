//! No credential wider than its maker: every mutation of the schema, listed
//! by introspection, run with each kind of credential (an unlimited key and
//! a session as the baseline; a scoped, a network-limited, a capped, a
//! read-only, an expiring key, one in its rotation grace, a disabled one, a
//! service account's key, the session of a person in no tenant), each
//! answer checked against the table below, and every key that comes back
//! checked to be within the credential that made it. A mutation added to
//! the schema without a row here fails the test: it must be classified.
//! Also: every mutation a member can aim at themself (their membership,
//! their keys, their invitation, their session), with a key and with a
//! session, answers without a server error.

use apikeys_core::domain::Role;
use apikeys_service::PolicyChange;
use apikeys_tests::idp::{provider_with, Provider};
use apikeys_tests::{prefect_body, Reply, Route};
use serde_json::{json, Value};

/// The kinds of credential, in the order of a row's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The tenant admin's own unlimited key.
    AdminKey,
    /// The tenant admin signed in with the identity provider.
    AdminSession,
    /// An admin's key with the scopes `apikeys:write`.
    Scoped,
    /// An admin's key limited to 127.0.0.0/8 (where the requests come from).
    Networked,
    /// An admin's key with the role ceiling USER.
    Capped,
    /// An admin's key with the role ceiling READ_ONLY_USER.
    ReadOnly,
    /// An admin's key that expires in 30 days.
    Expiring,
    /// An admin's key replaced by a rotation, in its grace.
    Grace,
    /// An admin's key, disabled.
    Disabled,
    /// An (admin) service account's unlimited key.
    ServiceKey,
    /// The session of a person invited, in no tenant yet.
    NoTenant,
}

const KINDS: [Kind; 11] = [
    Kind::AdminKey,
    Kind::AdminSession,
    Kind::Scoped,
    Kind::Networked,
    Kind::Capped,
    Kind::ReadOnly,
    Kind::Expiring,
    Kind::Grace,
    Kind::Disabled,
    Kind::ServiceKey,
    Kind::NoTenant,
];

/// What a mutation must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Done.
    D,
    /// Done, and the key it yields is within its maker (checked).
    K,
    /// `success: false` (nothing of that name the caller may touch).
    N,
    /// FORBIDDEN: the role, the account type or the credential's kind.
    F,
    /// FORBIDDEN, `reason: wider_than_credential`.
    W,
    /// UNAUTHENTICATED.
    U,
    /// BAD_USER_INPUT (not found, or not so).
    B,
}
use Want::*;

/// Every mutation, by kind (columns in the order of [`KINDS`]:
/// admin key, admin session, scoped, networked, capped, read-only,
/// expiring, grace, disabled, service key, no tenant).
#[rustfmt::skip]
const TABLE: &[(&str, [Want; 11])] = &[
    //                                AK SE SC NW CA RO EX GR DI SV NT
    // A key for oneself: made within its maker's limits.
    ("create_api_key",               [K, K, K, K, K, F, K, F, U, K, F]),
    // The admin's unlimited key rotated: the new key keeps its limits, so
    // only a credential at least as wide (a ceiling is lowered, not refused).
    ("rotate_api_key",               [K, K, W, W, K, F, W, F, U, B, F]),
    ("delete_api_key",               [D, D, D, D, D, F, D, F, U, N, F]),
    ("disable_api_key",              [D, D, D, D, D, F, D, F, U, N, F]),
    // The admin's unlimited key, disabled, enabled again: power given back.
    ("enable_api_key",               [D, D, W, W, W, F, W, F, U, N, F]),
    // Loosening the tenant's policy (its networks dropped).
    ("set_key_policy",               [D, D, W, W, F, F, W, F, U, F, F]),
    // A service account holds no credential of its own: its keys are each
    // made (and bounded) by someone.
    ("create_service_account",       [D, D, D, D, F, F, D, F, U, D, F]),
    ("delete_service_account",       [D, D, D, D, F, F, D, F, U, D, F]),
    // A USER promoted to TENANT_ADMIN: the role reaches every credential of
    // the member, which carries none of the maker's limits.
    ("set_membership_role",          [D, D, W, W, F, F, W, F, U, F, F]),
    ("delete_membership",            [D, D, D, D, F, F, D, F, U, F, F]),
    // A new TENANT_ADMIN invited: the same.
    ("create_membership_invitation", [D, D, W, W, F, F, W, F, U, F, F]),
    ("delete_membership_invitation", [D, D, D, D, F, F, D, F, U, F, F]),
    // Only the invited person, signed in, accepts.
    ("accept_membership_invitation", [F, B, F, F, F, F, F, F, U, F, D]),
    // A person's session moves; a key belongs to one tenant. (The person
    // in no tenant is no member of this one.)
    ("switch_tenant",                [F, D, F, F, F, F, F, F, U, F, B]),
    ("log_out",                      [F, D, F, F, F, F, F, F, U, F, D]),
    // A session for whoever holds a valid ID token: nothing of the
    // credential presented is passed on.
    ("log_in",                       [D, D, D, D, D, D, D, D, U, D, D]),
    // A refresh needs the refresh token as the bearer: no credential
    // stands in for it.
    ("refresh_token",                [U, U, U, U, U, U, U, U, U, U, U]),
];

const CREATE_KEY: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }";
const LIST: &str =
    "{ auth_api_key { id name scopes allowed_networks expires_at role_ceiling { name } } }";

/// A tenant with the test identity provider, and the means to act in it.
struct World {
    p: Provider,
    admin_session_sub: &'static str,
}

impl World {
    async fn new() -> Self {
        let p = provider_with(&[("ENABLE_INTROSPECTION", "true")]).await;
        p.link("alice-sub", p.h.tenant.admin_id).await;
        World {
            p,
            admin_session_sub: "alice-sub",
        }
    }

    fn admin_key(&self) -> &str {
        &self.p.h.tenant.admin_key
    }

    /// A request with `auth` (`Bearer …` or `Session …`).
    async fn send(&self, auth: &str, query: &str, vars: Value) -> Reply {
        self.p
            .h
            .send(
                Route::RestGraphql,
                &prefect_body(query, Some(vars)),
                &[("Authorization", auth)],
            )
            .await
    }

    async fn admin(&self, query: &str, vars: Value) -> Value {
        let reply = self
            .send(&format!("Bearer {}", self.admin_key()), query, vars)
            .await;
        assert!(reply.json.get("errors").is_none(), "{}", reply.body);
        reply.json["data"].clone()
    }

    /// A key of the admin made with `limits`: its secret and id.
    async fn admin_key_with(&self, name: &str, limits: Value) -> (String, String) {
        let mut input = json!({"user_id": self.p.h.tenant.admin_id, "name": name});
        input
            .as_object_mut()
            .unwrap()
            .extend(limits.as_object().unwrap().clone());
        let made = self.admin(CREATE_KEY, json!({"input": input})).await;
        (
            made["create_api_key"]["key"].as_str().unwrap().to_string(),
            made["create_api_key"]["id"].as_str().unwrap().to_string(),
        )
    }

    /// A session of `sub` (linked, or invited): its access token.
    async fn session_of(&self, sub: &str, email: &str) -> String {
        let reply = self
            .p
            .log_in(&self.p.sign(&self.p.claims(sub, email)))
            .await;
        reply.json["data"]["log_in"]["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", reply.body))
            .to_string()
    }

    /// The pending invitation to `email`, made by the admin if there is none.
    async fn invitation_for(&self, email: &str) -> String {
        let pending = self
            .p
            .h
            .service()
            .store()
            .invitations_to(email)
            .await
            .unwrap();
        match pending.first() {
            Some(invitation) => invitation.id.to_string(),
            None => self.invite(email, "USER").await,
        }
    }

    async fn invite(&self, email: &str, role: &str) -> String {
        let made = self
            .admin(
                "mutation($i: create_membership_invitation_input!) { create_membership_invitation(input: $i) { id } }",
                json!({"i": {"tenant_id": self.p.h.tenant.id, "email": email, "role": role}}),
            )
            .await;
        made["create_membership_invitation"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The `Authorization` header of a credential of `kind`, with what the
    /// checks of a key it makes need: the expiry of an expiring one.
    async fn credential(&self, kind: Kind, tag: &str) -> (String, Option<String>) {
        let h = &self.p.h;
        let bearer = |k: String| format!("Bearer {k}");
        match kind {
            Kind::AdminKey => (bearer(self.admin_key().to_string()), None),
            Kind::AdminSession => {
                let access = self
                    .session_of(self.admin_session_sub, "alice@example.com")
                    .await;
                // Sign-ins of one identity are rate limited: step past it.
                h.clock.set(h.now() + time::Duration::seconds(13));
                (format!("Session {access}"), None)
            }
            Kind::Scoped => {
                let limits = json!({"scopes": ["apikeys:write"]});
                (bearer(self.admin_key_with(tag, limits).await.0), None)
            }
            Kind::Networked => {
                let limits = json!({"allowed_networks": ["127.0.0.0/8"]});
                (bearer(self.admin_key_with(tag, limits).await.0), None)
            }
            Kind::Capped => {
                let limits = json!({"role_id": Role::User.id()});
                (bearer(self.admin_key_with(tag, limits).await.0), None)
            }
            Kind::ReadOnly => {
                let limits = json!({"role_id": Role::ReadOnlyUser.id()});
                (bearer(self.admin_key_with(tag, limits).await.0), None)
            }
            Kind::Expiring => {
                let ends = (h.now() + time::Duration::days(30))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                let limits = json!({"expires_at": ends});
                let key = self.admin_key_with(tag, limits).await.0;
                let listed = self.admin(LIST, json!({})).await;
                let ends = listed["auth_api_key"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|k| k["name"] == tag)
                    .unwrap()["expires_at"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (bearer(key), Some(ends))
            }
            Kind::Grace => {
                let (key, id) = self.admin_key_with(tag, json!({})).await;
                self.admin(
                    "mutation($i: rotate_api_key_input!) { rotate_api_key(input: $i) { id } }",
                    json!({"i": {"key_id": id, "grace_period_seconds": 3600}}),
                )
                .await;
                (bearer(key), None)
            }
            Kind::Disabled => {
                let (key, id) = self.admin_key_with(tag, json!({})).await;
                self.admin(
                    "mutation($i: disable_api_key_input!) { disable_api_key(input: $i) { success } }",
                    json!({"i": {"key_id": id}}),
                )
                .await;
                (bearer(key), None)
            }
            Kind::ServiceKey => (bearer(h.add_service_account(tag).await.1), None),
            Kind::NoTenant => {
                let email = format!("{tag}@example.com");
                self.invitation_for(&email).await;
                let sub = format!("{tag}-sub");
                (
                    format!("Session {}", self.session_of(&sub, &email).await),
                    None,
                )
            }
        }
    }

    /// The user id a credential of `kind` acts as (for a key it makes for
    /// itself); a person in no tenant has none: the admin's is used.
    async fn own_user_id(&self, auth: &str) -> Value {
        let reply = self
            .send(auth, "{ auth_info { user_id } }", json!({}))
            .await;
        match reply.json["data"]["auth_info"]["user_id"].clone() {
            Value::Null => json!(self.p.h.tenant.admin_id),
            id => id,
        }
    }
}

/// What a reply says, as a [`Want`] (with `K` read as `D`).
fn observed(mutation: &str, reply: &Reply) -> Want {
    let error = &reply.json["errors"][0];
    if error.is_null() {
        let success = &reply.json["data"][mutation]["success"];
        return if success == &json!(false) { N } else { D };
    }
    match (
        error["extensions"]["code"].as_str().unwrap_or(""),
        error["extensions"]["reason"].as_str(),
    ) {
        ("FORBIDDEN", Some("wider_than_credential")) => W,
        ("FORBIDDEN", _) => F,
        ("UNAUTHENTICATED", _) => U,
        ("BAD_USER_INPUT", _) => B,
        (other, _) => panic!(
            "{mutation}: an answer of no row's kind ({other}): {}",
            reply.body
        ),
    }
}

/// Sets up what `mutation` acts on for this cell, and the request.
async fn probe(w: &World, mutation: &str, auth: &str, tag: &str) -> (String, Value) {
    let h = &w.p.h;
    let spare = format!("spare-{tag}");
    let admin_spare = || w.admin_key_with(&spare, json!({}));
    let input = |fields: Value| json!({"input": fields});
    let simple = |name: &str, input_type: &str, selection: &str| {
        format!("mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}")
    };
    match mutation {
        "create_api_key" => (
            CREATE_KEY.to_string(),
            input(json!({"user_id": w.own_user_id(auth).await, "name": format!("made-{tag}")})),
        ),
        "rotate_api_key" => {
            let (_, id) = admin_spare().await;
            (
                simple("rotate_api_key", "rotate_api_key_input", "id key"),
                input(json!({"key_id": id, "grace_period_seconds": 60})),
            )
        }
        "delete_api_key" | "disable_api_key" => {
            let (_, id) = admin_spare().await;
            let input_type = format!("{mutation}_input");
            (
                simple(mutation, &input_type, "success"),
                input(json!({"key_id": id})),
            )
        }
        "enable_api_key" => {
            let (_, id) = admin_spare().await;
            w.admin(
                "mutation($i: disable_api_key_input!) { disable_api_key(input: $i) { success } }",
                json!({"i": {"key_id": id}}),
            )
            .await;
            (
                simple("enable_api_key", "enable_api_key_input", "success"),
                input(json!({"key_id": id})),
            )
        }
        "set_key_policy" => {
            // The policy in force allows this place only; the change drops it.
            h.service()
                .set_key_policy_as_operator(
                    "acme",
                    &PolicyChange {
                        allowed_networks: vec!["127.0.0.0/8".into()],
                        ..PolicyChange::default()
                    },
                )
                .await
                .unwrap();
            (
                simple("set_key_policy", "set_key_policy_input", "scopes_required"),
                input(json!({})),
            )
        }
        "create_service_account" => (
            simple(
                "create_service_account",
                "create_service_account_input",
                "id",
            ),
            input(json!({"name": format!("made-{tag}")})),
        ),
        "delete_service_account" => {
            let (victim, _) = h.add_service_account(&format!("victim-{tag}")).await;
            (
                simple(
                    "delete_service_account",
                    "delete_service_account_input",
                    "success",
                ),
                input(json!({"user_id": victim})),
            )
        }
        "set_membership_role" => {
            let bob = h
                .add_member("acme", &format!("bob-{tag}"), Role::User)
                .await;
            (
                simple("set_membership_role", "set_membership_role_input", "id"),
                input(
                    json!({"membership_id": bob.membership_id, "role_id": Role::TenantAdmin.id()}),
                ),
            )
        }
        "delete_membership" => {
            let bob = h
                .add_member("acme", &format!("bob-{tag}"), Role::User)
                .await;
            (
                simple("delete_membership", "delete_membership_input", "success"),
                input(json!({"membership_id": bob.membership_id})),
            )
        }
        "create_membership_invitation" => (
            simple(
                "create_membership_invitation",
                "create_membership_invitation_input",
                "id",
            ),
            input(
                json!({"tenant_id": h.tenant.id, "email": format!("new-{tag}@example.com"),
                         "role": "TENANT_ADMIN"}),
            ),
        ),
        "delete_membership_invitation" => {
            let id = w.invite(&format!("gone-{tag}@example.com"), "USER").await;
            (
                simple(
                    "delete_membership_invitation",
                    "membership_invitation_id_input",
                    "success",
                ),
                input(json!({"invitation_id": id})),
            )
        }
        "accept_membership_invitation" => {
            // The invitation that lets the person in no tenant sign in.
            let id = w
                .invitation_for("no-tenant-accept_membership_invitation@example.com")
                .await;
            (
                simple(
                    "accept_membership_invitation",
                    "membership_invitation_id_input",
                    "id tenant_id",
                ),
                input(json!({"invitation_id": id})),
            )
        }
        "switch_tenant" => (
            simple("switch_tenant", "switch_tenant_input", "tenant_id"),
            input(json!({"tenant_id": h.tenant.id})),
        ),
        "log_out" => ("mutation { log_out { success } }".to_string(), json!({})),
        "log_in" => {
            // An identity of the admin's of its own (sign-ins are limited
            // per identity).
            let sub = format!("alice-{tag}");
            w.p.link(&sub, h.tenant.admin_id).await;
            let token = w.p.sign(&w.p.claims(&sub, "alice@example.com"));
            (
                simple("log_in", "log_in_input", "tenant_id"),
                input(json!({"id_token": token})),
            )
        }
        "refresh_token" => {
            let sub = format!("alice-{tag}");
            w.p.link(&sub, h.tenant.admin_id).await;
            let access = w.session_of(&sub, "alice@example.com").await;
            (
                simple("refresh_token", "refresh_token_input", "access_token"),
                input(json!({"access_token": access})),
            )
        }
        other => panic!("no probe for {other}"),
    }
}

/// The limits of the key a mutation answered with, as the admin lists it.
async fn limits_of(w: &World, id: &str) -> Value {
    let listed = w.admin(LIST, json!({})).await;
    listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("key {id} not listed: {listed}"))
}

/// A key made, or rotated into, by a credential of `kind`: within it.
async fn assert_within(w: &World, kind: Kind, ends: Option<&str>, mutation: &str, reply: &Reply) {
    let id = reply.json["data"][mutation]["id"].as_str().unwrap();
    let made = limits_of(w, id).await;
    let (scopes, networks, ceiling, expires) = (
        &made["scopes"],
        &made["allowed_networks"],
        &made["role_ceiling"]["name"],
        &made["expires_at"],
    );
    match kind {
        Kind::Scoped => assert_eq!(scopes, &json!(["apikeys:write"]), "{made}"),
        Kind::Networked => assert_eq!(networks, &json!(["127.0.0.0/8"]), "{made}"),
        Kind::Capped => assert_eq!(ceiling, &json!("USER"), "{made}"),
        Kind::Expiring => assert_eq!(expires.as_str(), ends, "{made}"),
        // The unlimited makers: as asked (nothing).
        _ => {
            assert_eq!(scopes, &json!([]), "{made}");
            assert_eq!(networks, &json!([]), "{made}");
            assert!(ceiling.is_null() && expires.is_null(), "{made}");
        }
    }
}

async fn schema_mutations(w: &World) -> Vec<String> {
    let schema = w
        .admin(
            "{ __schema { mutationType { fields { name } } } }",
            json!({}),
        )
        .await;
    schema["__schema"]["mutationType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

/// One row: a fresh tenant, each kind's credential, each its own target.
async fn run_row(mutation: &'static str, wants: [Want; 11]) -> Vec<String> {
    let w = World::new().await;
    let mut failures = Vec::new();
    for (kind, want) in KINDS.into_iter().zip(wants) {
        let tag = if kind == Kind::NoTenant {
            format!("no-tenant-{mutation}")
        } else {
            format!("{kind:?}-{mutation}").to_lowercase()
        };
        let (auth, ends) = w.credential(kind, &tag).await;
        let (query, vars) = probe(&w, mutation, &auth, &tag).await;
        let reply = w.send(&auth, &query, vars).await;
        assert_ne!(reply.status, 500, "{mutation} {kind:?}: {}", reply.body);
        let seen = observed(mutation, &reply);
        let expected = if want == K { D } else { want };
        if seen != expected {
            failures.push(format!(
                "{mutation} with {kind:?}: wanted {want:?}, answered {}",
                reply.body
            ));
            continue;
        }
        if want == K {
            assert_within(&w, kind, ends.as_deref(), mutation, &reply).await;
        }
    }
    w.p.h.assert_consistent().await;
    failures
}

#[tokio::test]
async fn every_mutation_is_classified_and_no_credential_yields_one_wider_than_itself() {
    // The schema's mutations, as a GraphQL tool sees them: each has a row,
    // and each row is one of them.
    let w = World::new().await;
    let listed = schema_mutations(&w).await;
    let classified: Vec<&str> = TABLE.iter().map(|(name, _)| *name).collect();
    for name in &listed {
        assert!(
            classified.contains(&name.as_str()),
            "mutation {name} has no row in this test's table: classify it for every kind of credential"
        );
    }
    for name in &classified {
        assert!(
            listed.iter().any(|l| l == name),
            "{name} is no mutation of the schema"
        );
    }
    drop(w);
    // Rows in parallel, each in its own tenant.
    let rows = TABLE
        .iter()
        .map(|(mutation, wants)| run_row(mutation, *wants));
    let failures: Vec<String> = futures::future::join_all(rows)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The escalation the review found, step by step: an admin's scoped key
/// invites a new admin; refused, however the request is written.
#[tokio::test]
async fn a_limited_key_invites_no_one_through_aliases_or_fragments() {
    let w = World::new().await;
    let (scoped, _) = w
        .admin_key_with("scoped", json!({"scopes": ["apikeys:write"]}))
        .await;
    let auth = format!("Bearer {scoped}");
    let tenant = w.p.h.tenant.id;
    let documents = [
        format!("mutation {{ a: create_membership_invitation(input: {{tenant_id: \"{tenant}\", email: \"x@example.com\", role: \"TENANT_ADMIN\"}}) {{ id }} }}"),
        format!("mutation {{ ...f }} fragment f on Mutation {{ create_membership_invitation(input: {{tenant_id: \"{tenant}\", email: \"y@example.com\", role: \"READ_ONLY_USER\"}}) {{ id }} }}"),
        format!("mutation {{ a: create_membership_invitation(input: {{tenant_id: \"{tenant}\", email: \"z@example.com\", role: \"USER\"}}) {{ id }} b: create_membership_invitation(input: {{tenant_id: \"{tenant}\", email: \"z2@example.com\", role: \"USER\"}}) {{ id }} }}"),
    ];
    for document in documents {
        let reply = w.send(&auth, &document, json!({})).await;
        let errors = reply.json["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{document}: no error: {}", reply.body));
        assert!(!errors.is_empty(), "{}", reply.body);
        for error in errors {
            assert_eq!(
                error["extensions"]["reason"], "wider_than_credential",
                "{}",
                reply.body
            );
        }
    }
    let pending = w
        .admin("{ membership_invitation { email } }", json!({}))
        .await;
    assert_eq!(pending["membership_invitation"], json!([]), "{pending}");
    // Tightening the policy is no widening: a limited key may.
    let tighten = w
        .send(
            &auth,
            "mutation { set_key_policy(input: {leak_action: REVOKE, allowed_networks: [\"127.0.0.0/8\"]}) { allowed_networks } }",
            json!({}),
        )
        .await;
    assert!(tighten.json.get("errors").is_none(), "{}", tighten.body);
}

/// Every mutation a member can aim at themself, with a key and with a
/// session: no server error (two operations on one item were answered 500).
#[tokio::test]
async fn every_mutation_on_oneself_answers_without_a_server_error() {
    let w = World::new().await;
    let h = &w.p.h;
    let mut seen = Vec::new();
    for (round, with_session) in [(0, false), (1, true)] {
        for mutation in [
            "create_api_key",
            "rotate_api_key",
            "disable_api_key",
            "enable_api_key",
            "delete_api_key",
            "set_key_policy",
            "create_membership_invitation",
            "accept_membership_invitation",
            "delete_membership_invitation",
            "switch_tenant",
            "set_membership_role",
            "delete_membership",
            "log_out",
        ] {
            // A fresh admin for each, so that one leaving changes nothing
            // for the next; another admin stays, so none is the last.
            let name = format!("self-{round}-{mutation}");
            let me = h.add_member("acme", &name, Role::TenantAdmin).await;
            let sub = format!("{name}-sub");
            w.p.link(&sub, me.user_id).await;
            let email = format!("{name}@example.com");
            let auth = if with_session {
                format!("Session {}", w.session_of(&sub, &email).await)
            } else {
                format!("Bearer {}", me.key)
            };
            let bearer = format!("Bearer {}", me.key);
            let my_key_id = w
                .send(&bearer, "{ auth_info { api_key_id } }", json!({}))
                .await
                .json["data"]["auth_info"]["api_key_id"]
                .clone();
            let simple = |input_type: &str, selection: &str| {
                format!("mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ {selection} }} }}")
            };
            let (query, vars) = match mutation {
                "create_api_key" => (
                    CREATE_KEY.to_string(),
                    json!({"input": {"user_id": me.user_id, "name": "mine"}}),
                ),
                "rotate_api_key" => (
                    simple("rotate_api_key_input", "id"),
                    json!({"input": {"key_id": my_key_id, "grace_period_seconds": 0}}),
                ),
                "disable_api_key" | "delete_api_key" => (
                    simple(&format!("{mutation}_input"), "success"),
                    json!({"input": {"key_id": my_key_id}}),
                ),
                "enable_api_key" => (
                    simple("enable_api_key_input", "success"),
                    json!({"input": {"key_id": my_key_id}}),
                ),
                // A rule that binds no key of the test (each has its own
                // test): leaked keys reported, not revoked.
                "set_key_policy" => (
                    simple("set_key_policy_input", "scopes_required"),
                    json!({"input": {"leak_action": "NOTIFY"}}),
                ),
                "create_membership_invitation"
                | "accept_membership_invitation"
                | "delete_membership_invitation" => {
                    // Invited at their own address, by themself.
                    let invited = w
                        .send(
                            &bearer,
                            "mutation($i: create_membership_invitation_input!) { create_membership_invitation(input: $i) { id } }",
                            json!({"i": {"tenant_id": h.tenant.id, "email": email, "role": "USER"}}),
                        )
                        .await;
                    let id = invited.json["data"]["create_membership_invitation"]["id"].clone();
                    if mutation == "create_membership_invitation" {
                        // Once more: already invited.
                        (
                            simple("create_membership_invitation_input", "id"),
                            json!({"input": {"tenant_id": h.tenant.id, "email": email, "role": "USER"}}),
                        )
                    } else if mutation == "delete_membership_invitation" {
                        (
                            simple("membership_invitation_id_input", "success"),
                            json!({"input": {"invitation_id": id}}),
                        )
                    } else {
                        (
                            simple("membership_invitation_id_input", "id"),
                            json!({"input": {"invitation_id": id}}),
                        )
                    }
                }
                "switch_tenant" => (
                    simple("switch_tenant_input", "tenant_id"),
                    json!({"input": {"tenant_id": h.tenant.id}}),
                ),
                "set_membership_role" => (
                    simple("set_membership_role_input", "id"),
                    json!({"input": {"membership_id": me.membership_id, "role_id": Role::User.id()}}),
                ),
                "delete_membership" => (
                    simple("delete_membership_input", "success"),
                    json!({"input": {"membership_id": me.membership_id}}),
                ),
                "log_out" => ("mutation { log_out { success } }".to_string(), json!({})),
                other => panic!("{other}"),
            };
            let reply = w.send(&auth, &query, vars).await;
            let code = reply.json["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(
                reply.status != 500 && code != "INTERNAL_SERVER_ERROR",
                "{mutation} on oneself ({}): {}",
                if with_session { "session" } else { "key" },
                reply.body
            );
            seen.push((mutation, with_session, code));
            // The step past the sign-in limit of one identity.
            h.clock.set(h.now() + time::Duration::seconds(13));
        }
    }
    // A service account removing itself with its own key (every key of it
    // deleted in the transaction that checks the acting key).
    let (bot, bot_key) = h.add_service_account("self-bot").await;
    let reply = w
        .send(
            &format!("Bearer {bot_key}"),
            "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success } }",
            json!({"input": {"user_id": bot}}),
        )
        .await;
    assert_eq!(
        reply.json["data"]["delete_service_account"]["success"], true,
        "{}",
        reply.body
    );
    // What the review found answered 500 now does what was asked, or says
    // plainly why not.
    let code_of = |mutation: &str, session: bool| {
        seen.iter()
            .find(|(m, s, _)| *m == mutation && *s == session)
            .map(|(_, _, c)| c.as_str())
            .unwrap()
    };
    for session in [false, true] {
        assert_eq!(
            code_of("set_membership_role", session),
            "",
            "demoting oneself"
        );
        assert_eq!(code_of("delete_membership", session), "", "leaving");
        assert_eq!(
            code_of("set_key_policy", session),
            "",
            "a session sets the policy"
        );
    }
    assert_eq!(
        code_of("accept_membership_invitation", true),
        "BAD_USER_INPUT"
    );
    assert_eq!(code_of("accept_membership_invitation", false), "FORBIDDEN");
    h.assert_consistent().await;
}

/// A session is no key: an admin signed in sets the two main rules (the
/// lock-out check judged the session as a key made in 1970 with no scopes).
#[tokio::test]
async fn an_admin_signed_in_sets_scopes_required_and_a_lifetime_limit() {
    let w = World::new().await;
    // With her unscoped key that never expires, refused: it would lock
    // that very key out.
    for rules in ["{scopes_required: true}", "{max_user_key_days: 90}"] {
        let reply = w
            .send(
                &format!("Bearer {}", w.admin_key()),
                &format!("mutation {{ set_key_policy(input: {rules}) {{ scopes_required }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(
            reply.json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{}",
            reply.body
        );
    }
    let session = format!(
        "Session {}",
        w.session_of("alice-sub", "alice@example.com").await
    );
    for rules in [
        json!({"scopes_required": true}),
        json!({"scopes_required": true, "max_user_key_days": 90}),
    ] {
        let reply = w
            .send(
                &session,
                "mutation($input: set_key_policy_input!) { set_key_policy(input: $input) { scopes_required max_user_key_days } }",
                json!({"input": rules}),
            )
            .await;
        assert!(
            reply.json.get("errors").is_none(),
            "{rules}: {}",
            reply.body
        );
    }
    // The session goes on working; the key is refused by the new rules.
    let still = w
        .send(&session, "{ key_policy { max_user_key_days } }", json!({}))
        .await;
    assert_eq!(
        still.json["data"]["key_policy"]["max_user_key_days"], 90,
        "{}",
        still.body
    );
}
