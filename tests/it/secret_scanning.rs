//! GitHub's secret scanning partner program against the real handler: the
//! report's signature checked with keys this test generates and serves
//! (as GitHub publishes its own), every refusal costing zero DynamoDB
//! requests; a batch of 1,000 matches of every kind; a leaked key revoked
//! on the spot, or (notify-only tenants) kept and recorded; replays change
//! nothing.

use apikeys_core::policy::LeakAction;
use apikeys_core::token::TokenHash;
use apikeys_idp::github::p256_pem;
use apikeys_service::PolicyChange;
use apikeys_tests::documents::{document_server, DocumentServer};
use apikeys_tests::{mistyped, Harness};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};

/// A signing key of the test's own "GitHub".
struct Signer {
    id: String,
    pair: EcdsaKeyPair,
}

impl Signer {
    fn new(id: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            id: id.into(),
            pair,
        }
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature = self.pair.sign(&SystemRandom::new(), body).unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }

    fn published(&self) -> Value {
        json!({"key_identifier": self.id, "key": p256_pem(self.pair.public_key().as_ref()), "is_current": true})
    }
}

struct World {
    h: Harness,
    github: Signer,
    server: DocumentServer,
}

async fn world() -> World {
    let github = Signer::new("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a");
    let other = Signer::new("f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d");
    let server = document_server(
        "/meta/public_keys/secret_scanning",
        &json!({"public_keys": [github.published(), other.published()]}),
        false,
    )
    .await;
    let h = Harness::with_env(&[("GITHUB_SCANNING_KEYS_URL", &server.url)]).await;
    World { h, github, server }
}

/// Posts a report as GitHub does: (status, JSON answer).
async fn report(
    h: &Harness,
    body: &[u8],
    id: Option<&str>,
    signature: Option<&str>,
) -> (u16, Value) {
    let headers = [
        ("Github-Public-Key-Identifier", id),
        ("Github-Public-Key-Signature", signature),
    ];
    send(h, "POST", "/secret-scanning/github", &headers, body).await
}

/// One request through the real handler: (status, JSON answer); headers
/// given as `None` are left out.
async fn send(
    h: &Harness,
    method: &str,
    uri: &str,
    headers: &[(&str, Option<&str>)],
    body: &[u8],
) -> (u16, Value) {
    let mut request = lambda_http::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    for (name, value) in headers {
        if let Some(value) = value {
            request = request.header(*name, *value);
        }
    }
    let request = request
        .body(lambda_http::Body::from(body.to_vec()))
        .unwrap();
    let response = apikeys_graphql::handle(&h.app, request).await;
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(response.body()).unwrap_or(Value::Null),
    )
}

fn matches(tokens: &[&str]) -> Vec<u8> {
    let list: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t, "type": "apikeys_user_key", "url": "https://github.com/octo/repo/blob/abc/.env", "source": "content"}))
        .collect();
    serde_json::to_vec(&list).unwrap()
}

async fn new_key(h: &Harness, name: &str) -> String {
    let made = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, name, None)
        .await;
    made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn works(h: &Harness, key: &str) -> bool {
    h.gql(key, "{ hello }", None).await.get("errors").is_none()
}

/// A refused report: why, its body, identifier and signature.
type Case = (&'static str, Vec<u8>, Option<String>, Option<String>);

#[tokio::test]
async fn every_bad_signature_is_refused_before_any_database_request() {
    let w = world().await;
    let h = &w.h;
    let key = new_key(h, "ci").await;
    let body = matches(&[&key]);
    let stranger = Signer::new("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a");
    let mut changed = body.clone();
    changed[10] ^= 1;
    let cases: Vec<Case> = vec![
        ("no headers", body.clone(), None, None),
        (
            "no signature",
            body.clone(),
            Some(w.github.id.clone()),
            None,
        ),
        (
            "signed by another key under GitHub's identifier",
            body.clone(),
            Some(w.github.id.clone()),
            Some(stranger.sign(&body)),
        ),
        (
            "an identifier nobody published",
            body.clone(),
            Some("0".repeat(64)),
            Some(w.github.sign(&body)),
        ),
        (
            "the body changed by one byte",
            changed.clone(),
            Some(w.github.id.clone()),
            Some(w.github.sign(&body)),
        ),
        (
            "the signature of another body",
            body.clone(),
            Some(w.github.id.clone()),
            Some(w.github.sign(b"[]")),
        ),
        (
            "DER garbage",
            body.clone(),
            Some(w.github.id.clone()),
            Some(base64::engine::general_purpose::STANDARD.encode(b"\x30\x02\x01\x01garbage")),
        ),
        (
            "not base64",
            body.clone(),
            Some(w.github.id.clone()),
            Some("!!!".into()),
        ),
        (
            "empty",
            body.clone(),
            Some(w.github.id.clone()),
            Some(String::new()),
        ),
        (
            "an identifier with odd characters",
            body.clone(),
            Some("../../etc".into()),
            Some(w.github.sign(&body)),
        ),
    ];
    for (why, body, id, signature) in cases {
        h.counter.reset();
        let (status, answer) = report(h, &body, id.as_deref(), signature.as_deref()).await;
        assert_eq!(status, 401, "{why}: {answer}");
        assert!(answer["message"].is_string(), "{why}");
        assert_eq!(h.counter.total(), 0, "{why}: {:?}", h.counter.snapshot());
    }
    // Oversized: refused before the signature is even checked.
    let huge = vec![b' '; 1024 * 1024 + 1];
    h.counter.reset();
    let (status, _) = report(h, &huge, Some(&w.github.id), Some(&w.github.sign(&huge))).await;
    assert_eq!((status, h.counter.total()), (413, 0));
    assert!(works(h, &key).await, "a refused report revoked nothing");
    // One fetch of the key set for all of these: an unknown identifier does
    // not fetch again within the minute.
    assert_eq!(w.server.fetched(), 1);
}

#[tokio::test]
async fn a_leaked_key_is_revoked_on_the_spot_and_a_replay_changes_nothing() {
    let w = world().await;
    let h = &w.h;
    let leaked = new_key(h, "leaked").await;
    let kept = new_key(h, "kept").await;
    let body = matches(&[&leaked]);
    let (status, answer) = report(h, &body, Some(&w.github.id), Some(&w.github.sign(&body))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!([{"token_hash": TokenHash::of(&leaked).as_str(), "token_type": "apikeys_user_key", "label": "true_positive"}])
    );
    assert!(!answer.to_string().contains(&leaked));
    assert!(!works(h, &leaked).await, "the leaked key still works");
    assert!(works(h, &kept).await);
    let log = h
        .data(
            &h.tenant.admin_key,
            "{ audit_log { action actor_name target_id detail } }",
            None,
        )
        .await;
    let leaks: Vec<&Value> = log["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "KEY_LEAKED")
        .collect();
    assert_eq!(leaks.len(), 1, "{log}");
    assert_eq!(leaks[0]["actor_name"], "GitHub secret scanning");
    let detail = leaks[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("https://github.com/octo/repo/blob/abc/.env") && detail.contains("revoked"),
        "{detail}"
    );
    assert!(
        !log.to_string().contains(&leaked)
            && !log.to_string().contains(TokenHash::of(&leaked).as_str())
    );
    // The same report again: nothing changes (the key is gone: no label).
    let items = h.items().await.len();
    let (status, answer) = report(h, &body, Some(&w.github.id), Some(&w.github.sign(&body))).await;
    assert_eq!((status, answer), (200, json!([])));
    assert_eq!(h.items().await.len(), items);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_notify_only_tenant_keeps_the_key_and_records_the_leak_once() {
    let w = world().await;
    let h = &w.h;
    let key = new_key(h, "ci").await;
    let change = PolicyChange {
        leak_action: LeakAction::Notify,
        ..PolicyChange::default()
    };
    h.service()
        .set_key_policy_as_operator("acme", &change)
        .await
        .unwrap();
    let body = matches(&[&key, &key]);
    for _ in 0..2 {
        let (status, answer) =
            report(h, &body, Some(&w.github.id), Some(&w.github.sign(&body))).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer.as_array().unwrap().len(), 2, "{answer}");
        assert!(answer
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["label"] == "true_positive"));
    }
    assert!(
        works(h, &key).await,
        "a notify-only tenant's key was revoked"
    );
    let listed = h
        .data(
            &h.tenant.admin_key,
            "{ auth_api_key { name leaked } }",
            None,
        )
        .await;
    assert!(
        listed["auth_api_key"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "ci" && k["leaked"] == json!(true)),
        "{listed}"
    );
    let log = h
        .data(&h.tenant.admin_key, "{ audit_log { action detail } }", None)
        .await;
    let leaks: Vec<&Value> = log["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "KEY_LEAKED")
        .collect();
    assert_eq!(
        leaks.len(),
        1,
        "recorded once however often reported: {log}"
    );
    assert!(leaks[0]["detail"]
        .as_str()
        .unwrap()
        .contains("kept working"));
    h.assert_consistent().await;
}

/// 1,000 matches of every kind in one report: our live keys (revoked), a
/// revoked one, an expired one, foreign prefixes and wrong checksums
/// (free), repeats. Requests: the batch reads and one transaction per live
/// key, nothing per foreign token.
#[tokio::test]
async fn a_thousand_matches_cost_batch_reads_and_one_transaction_per_live_key() {
    let w = world().await;
    let h = &w.h;
    let mut live = Vec::new();
    for i in 0..5 {
        live.push(new_key(h, &format!("live-{i}")).await);
    }
    let revoked = new_key(h, "revoked").await;
    h.data(
        &h.tenant.admin_key,
        "mutation($id: UUID!) { delete_api_key(input: {key_id: $id}) { success } }",
        Some(json!({"id": h.data(&revoked, "{ auth_info { api_key_id } }", None).await["auth_info"]["api_key_id"]})),
    )
    .await;
    let soon = (h.now() + time::Duration::seconds(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let made = h
        .create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            "expired",
            Some(&soon),
        )
        .await;
    let expired = made["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    h.clock.set(h.now() + time::Duration::seconds(10));
    let mut tokens: Vec<String> = Vec::new();
    for i in 0..1000 {
        tokens.push(match i % 10 {
            0 => live[i / 10 % live.len()].clone(),
            1 => revoked.clone(),
            2 => expired.clone(),
            3 => mistyped(&live[0], 1),
            4 => format!("ghp_{:036}", i),
            5 => format!("apk_{}", "A".repeat(36)),
            6 => String::new(),
            _ => apikeys_core::token::NewKey::generate("apk")
                .expose_secret()
                .to_string(),
        });
    }
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = matches(&refs);
    h.counter.reset();
    let (status, answer) = report(h, &body, Some(&w.github.id), Some(&w.github.sign(&body))).await;
    assert_eq!(status, 200, "{answer}");
    let ops = h.counter.snapshot();
    // Our form (live, revoked, expired, 300 fresh unknowns): 7 + 300
    // unique hashes, 4 BatchGetItems; per key found (5 live, revoked; 1
    // expired, recorded) a read of its name and a transaction.
    assert_eq!(ops.get("BatchGetItem"), Some(&4), "{ops:?}");
    assert_eq!(ops.get("GetItem"), Some(&6), "{ops:?}");
    assert_eq!(ops.get("TransactWriteItems"), Some(&6), "{ops:?}");
    assert_eq!(h.counter.total(), 16, "{ops:?}");
    let labels = answer.as_array().unwrap();
    let count = |label: &str| labels.iter().filter(|f| f["label"] == label).count();
    // Live (100) and expired (100) are ours; foreign and wrong (400) are not;
    // revoked and unknown (400) get no label.
    assert_eq!(
        (
            count("true_positive"),
            count("false_positive"),
            labels.len()
        ),
        (200, 400, 600)
    );
    for key in &live {
        assert!(!works(h, key).await);
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn an_unreachable_key_set_is_a_retryable_answer_never_an_acceptance() {
    let github = Signer::new("abc123");
    let server = document_server(
        "/meta/public_keys/secret_scanning",
        &json!({"public_keys": [github.published()]}),
        true,
    )
    .await;
    let h = Harness::with_env(&[("GITHUB_SCANNING_KEYS_URL", &server.url)]).await;
    let key = new_key(&h, "ci").await;
    let body = matches(&[&key]);
    h.counter.reset();
    let (status, answer) = report(&h, &body, Some(&github.id), Some(&github.sign(&body))).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(h.counter.total(), 0);
    assert!(works(&h, &key).await);
    // Back up: the next report after the short pause is handled (a failed
    // fetch never turns into a refusal of real reports).
    server.set_down(false);
    let (status, _) = report(&h, &body, Some(&github.id), Some(&github.sign(&body))).await;
    assert_eq!(
        status, 503,
        "within the pause after a failure: retryable, not 401"
    );
    // The pause is 5 s of the service's clock.
    let t0 = h.now();
    h.clock.set(t0 + time::Duration::milliseconds(5200));
    let (status, answer) = report(&h, &body, Some(&github.id), Some(&github.sign(&body))).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        !works(&h, &key).await,
        "the report, once verified, revoked the key"
    );
    // The clock stepped back an hour, and GitHub rotated its key meanwhile:
    // an age measured across the step is not trusted, so the set is
    // fetched again, once, and a report signed with the new key is handled
    // (never refused as signed by an unknown key until the clock catches up).
    let rotated = Signer::new("def456");
    server.serve(&json!({"public_keys": [rotated.published()]}));
    h.clock.set(t0 - time::Duration::hours(1));
    let fetched = server.fetched();
    let another = new_key(&h, "ci-2").await;
    let body = matches(&[&another]);
    let (status, answer) = report(&h, &body, Some(&rotated.id), Some(&rotated.sign(&body))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.fetched(), fetched + 1, "one fetch after the step");
    assert!(!works(&h, &another).await);
    let (status, _) = report(&h, &body, Some(&rotated.id), Some(&rotated.sign(&body))).await;
    assert_eq!(status, 200);
    assert_eq!(
        server.fetched(),
        fetched + 1,
        "and none again: that fetch is after the step"
    );
    // Nobody listening at all: the same.
    let h = Harness::with_env(&[("GITHUB_SCANNING_KEYS_URL", "http://127.0.0.1:9/keys")]).await;
    let (status, _) = report(&h, &body, Some(&github.id), Some(&github.sign(&body))).await;
    assert_eq!(status, 503);
}

/// GitLab's token revocation API: the same handling behind a pre-shared
/// token whose SHA-256 alone is configured.
async fn gitlab(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let uri = format!("/secret-scanning/gitlab/v1/{path}");
    send(h, method, &uri, &[("Authorization", token)], body).await
}

#[tokio::test]
async fn the_gitlab_entrance_revokes_behind_its_pre_shared_token() {
    let secret = "gitlab-pre-shared-token-for-tests";
    let hash = TokenHash::of(secret).as_str().to_string();
    let h = Harness::with_env(&[("GITLAB_TOKEN_SHA256", &hash)]).await;
    let key = new_key(&h, "ci").await;
    let body = serde_json::to_vec(&json!([{
        "type": "gitleaks_rule_id_apikeys_user_key", "token": key,
        "location": "https://gitlab.example/acme/app/-/blob/abc/.env"}]))
    .unwrap();
    // Wrong, missing or near tokens: 401, no database request, nothing revoked.
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("Bearer wrong"),
        Some(&hash[..]),
    ] {
        h.counter.reset();
        let (status, _) = gitlab(&h, "POST", "revoke_tokens", token, &body).await;
        assert_eq!((status, h.counter.total()), (401, 0), "{token:?}");
        let (status, _) = gitlab(&h, "GET", "revocable_token_types", token, b"").await;
        assert_eq!(status, 401, "{token:?}");
    }
    assert!(works(&h, &key).await);
    let (status, types) = gitlab(&h, "GET", "revocable_token_types", Some(secret), b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        types["types"],
        json!([
            "gitleaks_rule_id_apikeys_user_key",
            "gitleaks_rule_id_apikeys_service_account_key"
        ])
    );
    // Entries of a type it does not know, or without a token, are left out
    // (not ours): no read, nothing revoked; not an array: 400.
    let other = serde_json::to_vec(&json!([{"type": "gitleaks_rule_id_aws", "token": key},
        {"type": "gitleaks_rule_id_apikeys_user_key", "token": null}]))
    .unwrap();
    h.counter.reset();
    let (status, _) = gitlab(&h, "POST", "revoke_tokens", Some(secret), &other).await;
    assert_eq!((status, h.counter.total()), (204, 0));
    assert!(works(&h, &key).await);
    let (status, _) = gitlab(&h, "POST", "revoke_tokens", Some(secret), b"{}").await;
    assert_eq!(status, 400);
    // The right token (raw, as GitLab sends it, or as a bearer): revoked.
    let (status, _) = gitlab(
        &h,
        "POST",
        "revoke_tokens",
        Some(&format!("bearer {secret}")),
        &body,
    )
    .await;
    assert_eq!(status, 204);
    assert!(!works(&h, &key).await);
    let (status, _) = gitlab(&h, "POST", "revoke_tokens", Some(secret), &body).await;
    assert_eq!(status, 204, "a replay is accepted and changes nothing");
    let log = h
        .data(
            &h.tenant.admin_key,
            "{ audit_log { action actor_name detail } }",
            None,
        )
        .await;
    let leaks: Vec<&Value> = log["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "KEY_LEAKED")
        .collect();
    assert_eq!(leaks.len(), 1, "{log}");
    assert_eq!(leaks[0]["actor_name"], "GitLab secret detection");
    assert!(leaks[0]["detail"]
        .as_str()
        .unwrap()
        .contains("gitlab.example"));
    // Not configured: closed.
    let closed = Harness::new().await;
    let (status, _) = gitlab(&closed, "GET", "revocable_token_types", Some(secret), b"").await;
    assert_eq!(status, 401);
    h.assert_consistent().await;
}

/// The same report sent 12 times at once, to a revoking tenant and to a
/// notify-only one: each key is revoked, or recorded, exactly once; every
/// answer is the feedback or the retryable 503, never an error that lies.
#[tokio::test]
async fn identical_reports_at_once_act_once() {
    for notify in [false, true] {
        let w = world().await;
        let h = &w.h;
        if notify {
            let change = PolicyChange {
                leak_action: LeakAction::Notify,
                ..PolicyChange::default()
            };
            h.service()
                .set_key_policy_as_operator("acme", &change)
                .await
                .unwrap();
        }
        let key = new_key(h, "ci").await;
        let body = matches(&[&key]);
        let signature = w.github.sign(&body);
        let sends = (0..12).map(|_| report(h, &body, Some(&w.github.id), Some(&signature)));
        for (status, answer) in futures::future::join_all(sends).await {
            assert!([200, 503].contains(&status), "{status} {answer}");
        }
        let log = h
            .service()
            .store()
            .audit_page(h.tenant.id, 100, None)
            .await
            .unwrap();
        let leaks = log
            .iter()
            .filter(|(r, _)| r.action == apikeys_core::audit::AuditAction::KeyLeaked)
            .count();
        assert_eq!(leaks, 1, "notify: {notify}");
        assert_eq!(works(h, &key).await, notify);
        h.assert_consistent().await;
    }
}

/// One entry of GitLab's request with a field of the wrong type (or a bare
/// string in the array) is left out alone: the other leaked keys in it are
/// revoked (a 400 left them all working, and GitLab does not retry a 400).
#[tokio::test]
async fn a_gitlab_entry_of_the_wrong_shape_leaves_the_others_revoked() {
    let secret = "gitlab-pre-shared-token-for-tests";
    let hash = TokenHash::of(secret).as_str().to_string();
    let h = Harness::with_env(&[("GITLAB_TOKEN_SHA256", &hash)]).await;
    let (first, second) = (new_key(&h, "one").await, new_key(&h, "two").await);
    let body = serde_json::to_vec(&json!([
        {"type": "gitleaks_rule_id_apikeys_user_key", "token": first, "location": 5},
        "a bare string",
        7,
        {"type": "gitleaks_rule_id_apikeys_user_key", "token": ["not", "a", "string"]},
        {"type": "gitleaks_rule_id_apikeys_user_key", "token": second,
         "location": "https://gitlab.example/acme/app/-/blob/abc/.env"},
    ]))
    .unwrap();
    let (status, answer) = gitlab(&h, "POST", "revoke_tokens", Some(secret), &body).await;
    assert_eq!(status, 204, "{answer}");
    assert!(
        !works(&h, &first).await,
        "the entry with a numeric location"
    );
    assert!(!works(&h, &second).await);
    // Only a body that is not a JSON array is refused.
    let (status, _) = gitlab(&h, "POST", "revoke_tokens", Some(secret), b"{\"a\":1}").await;
    assert_eq!(status, 400);
}
