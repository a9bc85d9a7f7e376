//! Scopes (what a key may do on the platform's other APIs, enforced by the
//! authorizer's route map, and on this API) and the tenant's key policy
//! (enforced when a key is made and at every use), through the real
//! handler and authorizer, with hostile input, races and a database that
//! fails half-way.

use apikeys_authorizer::routes::RouteMap;
use apikeys_core::domain::Role;
use apikeys_service::PolicyChange;
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use apikeys_tests::{endpoint, error_code, event, prefect_body, Harness, Route};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const CREATE: &str =
    "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }";
const SET_POLICY: &str = "mutation($input: set_key_policy_input!) { set_key_policy(input: $input) \
     { max_user_key_days max_service_key_days scopes_required allowed_networks applied } }";
const LIST: &str = "{ auth_api_key { id name scopes policy_violation } }";
const LIST_ENDS: &str = "{ auth_api_key { id expires_at } }";
const ROUTES: &str = r#"{"GET /orders": "orders:read", "GET /orders/*": "orders:read",
    "POST /orders": "orders:write", "ANY /admin/*": "admin:all"}"#;

fn days_from(h: &Harness, days: i64) -> String {
    (h.now() + time::Duration::days(days))
        .format(&Rfc3339)
        .unwrap()
}

/// Makes a key with `input` (user_id and name added) using `key`: the reply.
async fn make(h: &Harness, key: &str, owner: Uuid, name: &str, extra: Value) -> Value {
    let mut input = json!({"user_id": owner, "name": name});
    input
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    h.gql(key, CREATE, Some(json!({ "input": input }))).await
}

async fn secret(h: &Harness, key: &str, owner: Uuid, name: &str, extra: Value) -> String {
    let reply = make(h, key, owner, name, extra).await;
    reply["data"]["create_api_key"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_string()
}

fn reason(reply: &Value) -> &str {
    reply["errors"][0]["extensions"]["reason"]
        .as_str()
        .unwrap_or("")
}

fn message(reply: &Value) -> &str {
    reply["errors"][0]["message"].as_str().unwrap_or("")
}

/// The authorizer's answer to `method /path` with `key`, in `form`
/// ("rest" or "http"): ("allow" | "403" | "401", the answer).
async fn authorize(
    app: &apikeys_authorizer::App,
    form: &str,
    key: &str,
    method: &str,
    path: &str,
) -> (&'static str, Value) {
    let stage = "arn:aws:execute-api:us-east-1:123456789012:abcdef123/prod";
    let mut e: Value = if form == "rest" {
        serde_json::from_str(include_str!("../events/rest-request-authorizer.json")).unwrap()
    } else {
        serde_json::from_str(include_str!("../events/http-api-authorizer.json")).unwrap()
    };
    let auth = format!("Bearer {key}");
    e["headers"] = json!({ "Authorization": auth });
    if form == "rest" {
        e["multiValueHeaders"] = json!({ "Authorization": [auth] });
        e["methodArn"] = json!(format!("{stage}/{method}/{path}"));
    } else {
        e["routeArn"] = json!(format!("{stage}/{method}/{path}"));
    }
    match apikeys_authorizer::handle(app, e).await {
        Err(err) if err.to_string() == apikeys_authorizer::UNAUTHORIZED => ("401", Value::Null),
        Err(err) => panic!("authorizer failed: {err}"),
        Ok(a) if a["isAuthorized"] == json!(true) => ("allow", a),
        Ok(a) if a["isAuthorized"] == json!(false) => ("403", a),
        Ok(a) => {
            // REST: as API Gateway evaluates the policy for this request.
            let arn = format!("{stage}/{method}/{path}");
            let matches = |r: &Value| {
                let pattern = r.as_str().unwrap();
                let re = format!("^{}$", regex_escape(pattern).replace("\\*", ".*"));
                regex_lite(&re, &arn)
            };
            let statements = a["policyDocument"]["Statement"].as_array().unwrap().clone();
            let hits = |effect: &str| {
                statements.iter().any(|s| {
                    s["Effect"] == json!(effect)
                        && match &s["Resource"] {
                            Value::Array(rs) => rs.iter().any(&matches),
                            r => matches(r),
                        }
                })
            };
            if hits("Deny") || !hits("Allow") {
                ("403", a)
            } else {
                ("allow", a)
            }
        }
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+?()[]{}^$|*".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A tiny matcher for the patterns `regex_escape` makes (literals and `.*`).
fn regex_lite(re: &str, text: &str) -> bool {
    let body = re.trim_start_matches('^').trim_end_matches('$');
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            literal.push(chars.next().unwrap());
        } else if c == '.' && chars.peek() == Some(&'*') {
            chars.next();
            pieces.push(std::mem::take(&mut literal));
        } else {
            literal.push(c);
        }
    }
    pieces.push(literal);
    let (first, rest) = pieces.split_first().unwrap();
    let Some(mut left) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for p in middle {
        match left.find(p.as_str()) {
            Some(at) => left = &left[at + p.len()..],
            None => return false,
        }
    }
    left.ends_with(last.as_str())
}

#[tokio::test]
async fn scopes_are_validated_bounded_and_listed() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = &h.tenant.admin_key;
    let reply = make(
        &h,
        key,
        admin,
        "ok",
        json!({"scopes": ["orders:write", " orders:read", "orders:write", "billing:*"]}),
    )
    .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    let listed = h.data(key, LIST, None).await;
    let ok = listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ok")
        .unwrap()
        .clone();
    assert_eq!(
        ok["scopes"],
        json!(["billing:*", "orders:read", "orders:write"])
    );
    assert_eq!(ok["policy_violation"], Value::Null);
    let before = h.items().await.len();
    let many: Vec<String> = (0..2000).map(|i| format!("r{i}:read")).collect();
    let long = format!("a:{}", "b".repeat(70));
    for (bad, why) in [
        (json!([]), "empty"),
        (json!(["orders"]), "no action"),
        (json!(["Orders:read"]), "upper case"),
        (json!(["*:*"]), "everything"),
        (json!(["orders:re*d"]), "inner wildcard"),
        (json!(["orders:read\u{202e}"]), "bidi override"),
        (json!(["orders:\nread"]), "newline"),
        (json!(["ördérs:read"]), "not ascii"),
        (json!([long]), "too long"),
        (json!(many), "thousands"),
    ] {
        let reply = make(&h, key, admin, "bad", json!({ "scopes": bad })).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{why}: {reply}");
        assert!(message(&reply).len() < 300, "{why}: {reply}");
    }
    assert_eq!(h.items().await.len(), before, "a refused key left an item");
    // null: not limited by scopes.
    let reply = make(&h, key, admin, "null", json!({ "scopes": null })).await;
    assert!(reply.get("errors").is_none(), "{reply}");
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_scoped_key_uses_this_api_only_as_its_apikeys_scopes_allow() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = &h.tenant.admin_key;
    // No apikeys scope: refused here, with the scope it would need.
    let orders = secret(&h, key, admin, "orders", json!({"scopes": ["orders:read"]})).await;
    let reply = h.gql(&orders, "{ auth_info { role } }", None).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(reason(&reply), "scope_missing");
    assert_eq!(
        reply["errors"][0]["extensions"]["needed_scope"],
        json!("apikeys:read")
    );
    assert!(!message(&reply).contains(&orders[..12]));
    // apikeys:read reads, changes nothing.
    let reader = secret(
        &h,
        key,
        admin,
        "reader",
        json!({"scopes": ["apikeys:read", "orders:read"]}),
    )
    .await;
    let who = h
        .data(&reader, "{ auth_info { scopes permissions } }", None)
        .await;
    assert_eq!(
        who["auth_info"]["scopes"],
        json!(["apikeys:read", "orders:read"])
    );
    assert_eq!(
        who["auth_info"]["permissions"],
        json!(["read:tenant", "read:audit_log"])
    );
    let reply = make(&h, &reader, admin, "child", json!({})).await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(reason(&reply), "scope_missing", "{reply}");
    assert_eq!(
        reply["errors"][0]["extensions"]["needed_scope"],
        json!("apikeys:write")
    );
    // apikeys:write makes keys within its own scopes only.
    let writer = secret(
        &h,
        key,
        admin,
        "writer",
        json!({"scopes": ["apikeys:write", "orders:*"]}),
    )
    .await;
    let reply = make(
        &h,
        &writer,
        admin,
        "wider",
        json!({"scopes": ["billing:read"]}),
    )
    .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(message(&reply).contains("billing:read"), "{reply}");
    let reply = make(
        &h,
        &writer,
        admin,
        "narrower",
        json!({"scopes": ["orders:read"]}),
    )
    .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    // Asking for no scopes gives the creator's, never an unscoped key.
    make(&h, &writer, admin, "inherits", json!({})).await;
    let listed = h.data(key, LIST, None).await;
    let inherits = listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "inherits")
        .unwrap()
        .clone();
    assert_eq!(inherits["scopes"], json!(["apikeys:write", "orders:*"]));
    // A scoped key enables no unscoped key (it may disable one).
    let target =
        make(&h, key, admin, "target", json!({})).await["data"]["create_api_key"]["id"].clone();
    let toggle =
        |op: &str| format!("mutation($input: {op}_input!) {{ {op}(input: $input) {{ success }} }}");
    let vars = json!({"input": {"key_id": target}});
    let reply = h
        .gql(&writer, &toggle("disable_api_key"), Some(vars.clone()))
        .await;
    assert_eq!(
        reply["data"]["disable_api_key"]["success"],
        json!(true),
        "{reply}"
    );
    let reply = h
        .gql(&writer, &toggle("enable_api_key"), Some(vars.clone()))
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    let reply = h.gql(key, &toggle("enable_api_key"), Some(vars)).await;
    assert_eq!(
        reply["data"]["enable_api_key"]["success"],
        json!(true),
        "{reply}"
    );
    // A scoped key rotates no unscoped key.
    let admin_key_id =
        h.data(key, "{ auth_info { api_key_id } }", None).await["auth_info"]["api_key_id"].clone();
    let reply = h
        .gql(
            &writer,
            "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id } }",
            Some(json!({"input": {"key_id": admin_key_id}})),
        )
        .await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(reason(&reply), "wider_than_credential", "{reply}");
    assert!(h.gql(key, "{ hello }", None).await.get("errors").is_none());
}

#[tokio::test]
async fn the_authorizer_allows_exactly_the_routes_a_key_s_scopes_name() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = &h.tenant.admin_key;
    let app =
        apikeys_authorizer::App::new(h.service_copy(), RouteMap::parse(Some(ROUTES)).unwrap());
    let reader = secret(&h, key, admin, "reader", json!({"scopes": ["orders:read"]})).await;
    for form in ["rest", "http"] {
        let (d, a) = authorize(&app, form, &reader, "GET", "orders/42").await;
        assert_eq!(d, "allow", "{form}: {a}");
        if form == "rest" {
            assert_eq!(a["context"]["scopes"], json!("orders:read"));
            // Scopes say what it may do there; it is not a read-only key.
            assert_eq!(a["context"]["read_only_key"], json!("false"));
            // The policy names exactly the routes the key may take, so that
            // a cached answer is right for every route.
            let resources = &a["policyDocument"]["Statement"][0]["Resource"];
            assert_eq!(resources.as_array().unwrap().len(), 2, "{a}");
        } else {
            assert_eq!(a["context"]["scopes"], json!("orders:read"));
            // Scopes say what it may do there; it is not a read-only key.
            assert_eq!(a["context"]["read_only_key"], json!("false"));
        }
        let (d, a) = authorize(&app, form, &reader, "POST", "orders").await;
        assert_eq!(d, "403", "{form}: {a}");
        assert_eq!(
            a["context"]["reason"],
            json!("scope_missing"),
            "{form}: {a}"
        );
        assert_eq!(
            a["context"]["needed_scope"],
            json!("orders:write"),
            "{form}: {a}"
        );
        assert!(!a.to_string().contains(&reader[..12]), "{form}: {a}");
        // A route no entry maps is no scoped key's.
        let (d, a) = authorize(&app, form, &reader, "GET", "unmapped").await;
        assert_eq!(d, "403", "{form}: {a}");
        assert_eq!(a["context"]["reason"], json!("scope_missing"));
        // Path tricks stay inside the glob's meaning.
        let (d, _) = authorize(&app, form, &reader, "GET", "ordersx").await;
        assert_eq!(d, "403", "{form}");
        let (d, _) = authorize(&app, form, &reader, "DELETE", "orders/1").await;
        assert_eq!(d, "403", "{form}");
        // An unscoped key is not limited by the map.
        let (d, a) = authorize(&app, form, key, "DELETE", "anything/at/all").await;
        assert_eq!(d, "allow", "{form}: {a}");
        // A wildcard scope takes every action of its resource.
        let all = secret(
            &h,
            key,
            admin,
            &format!("all-{form}"),
            json!({"scopes": ["orders:*", "admin:all"]}),
        )
        .await;
        for (method, path) in [
            ("POST", "orders"),
            ("GET", "orders"),
            ("PATCH", "admin/x/y"),
        ] {
            let (d, a) = authorize(&app, form, &all, method, path).await;
            assert_eq!(d, "allow", "{form} {method} {path}: {a}");
        }
    }
}

/// Sets the policy through the API with `key`.
async fn set_policy(h: &Harness, key: &str, input: Value) -> Value {
    h.gql(key, SET_POLICY, Some(json!({ "input": input })))
        .await
}

#[tokio::test]
async fn only_a_human_admin_sets_the_policy_and_every_member_reads_it() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let (sa, sa_key) = h.add_service_account("ci").await;
    let _ = sa;
    for key in [&bob.key, &sa_key] {
        let before = h.items().await.len();
        let reply = set_policy(&h, key, json!({"max_user_key_days": 30})).await;
        assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
        assert_eq!(h.items().await.len(), before);
    }
    for bad in [
        json!({"max_user_key_days": 0}),
        json!({"max_user_key_days": 367}),
        json!({"max_service_key_days": -5}),
        json!({"allowed_networks": ["10.0.0.0/33"]}),
        json!({"allowed_networks": ["garbage"]}),
        json!({"allowed_networks": (0..65).map(|i| format!("10.0.{i}.0/24")).collect::<Vec<_>>()}),
    ] {
        let reply = set_policy(&h, &h.tenant.admin_key, bad.clone()).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{bad}: {reply}");
    }
    let read = "{ key_policy { max_user_key_days scopes_required applied } }";
    assert_eq!(
        h.data(&bob.key, read, None).await["key_policy"],
        json!({"max_user_key_days": null, "scopes_required": false, "applied": true})
    );
    // The admin's own key never expires: a lifetime limit on people's keys
    // would lock it out, and is refused; the service accounts' is fine.
    let reply = set_policy(&h, &h.tenant.admin_key, json!({"max_user_key_days": 30})).await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(
        message(&reply).contains("refuse the API key making this change"),
        "{reply}"
    );
    let reply = set_policy(&h, &h.tenant.admin_key, json!({"max_service_key_days": 90})).await;
    assert_eq!(
        reply["data"]["set_key_policy"]["max_service_key_days"],
        json!(90),
        "{reply}"
    );
    assert_eq!(reply["data"]["set_key_policy"]["applied"], json!(true));
    assert_eq!(
        h.data(&bob.key, read, None).await["key_policy"]["applied"],
        json!(true)
    );
    // An allowlist that leaves out the caller's own address is refused.
    let reply = set_policy(
        &h,
        &h.tenant.admin_key,
        json!({"allowed_networks": ["10.0.0.0/8"]}),
    )
    .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(message(&reply).contains("127.0.0.1"), "{reply}");
    // Recorded in the audit log.
    let log = h
        .data(&h.tenant.admin_key, "{ audit_log { action detail } }", None)
        .await;
    assert!(
        log["audit_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "KEY_POLICY_CHANGED"
                && r["detail"]
                    .as_str()
                    .unwrap()
                    .contains("service accounts' keys: 90 days")),
        "{log}"
    );
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_tightened_policy_refuses_keys_at_once_and_a_loosened_one_lets_them_work() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = &h.tenant.admin_key;
    let app = apikeys_authorizer::App::new(h.service_copy(), RouteMap::default());
    let forever = secret(&h, key, admin, "forever", json!({})).await;
    let month = secret(
        &h,
        key,
        admin,
        "month",
        json!({"expires_at": days_from(&h, 30)}),
    )
    .await;
    let year = secret(
        &h,
        key,
        admin,
        "year",
        json!({"expires_at": days_from(&h, 365)}),
    )
    .await;
    let service = h.service();
    let limit = |days| PolicyChange {
        max_user_key_days: Some(days),
        ..PolicyChange::default()
    };
    service
        .set_key_policy_as_operator("acme", &limit(90))
        .await
        .unwrap();
    // Refused at once, with the rule named; the compliant key works.
    for (k, refused) in [(&forever, true), (&year, true), (&month, false)] {
        let reply = h.gql(k, "{ auth_info { role } }", None).await;
        if refused {
            assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
            assert_eq!(reason(&reply), "policy_max_lifetime");
            assert!(message(&reply).contains("90 days"), "{reply}");
            let (d, a) = authorize(&app, "rest", k, "GET", "x").await;
            assert_eq!(
                (d, a["context"]["reason"].clone()),
                ("403", json!("policy_max_lifetime"))
            );
        } else {
            assert!(reply.get("errors").is_none(), "{reply}");
        }
    }
    // Listed as non-compliant (to the keys that still work).
    let listed = h.data(&month, LIST, None).await;
    let violations: Vec<(String, Value)> = listed["auth_api_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_string(),
                k["policy_violation"].clone(),
            )
        })
        .collect();
    assert!(
        violations.contains(&("forever".into(), json!("policy_max_lifetime"))),
        "{violations:?}"
    );
    assert!(
        violations.contains(&("month".into(), Value::Null)),
        "{violations:?}"
    );
    // Creation past the limit is refused naming it.
    let reply = make(
        &h,
        &month,
        admin,
        "too-long",
        json!({"expires_at": days_from(&h, 91)}),
    )
    .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(message(&reply).contains("90 days"), "{reply}");
    // Asked for no end by a key that has one: it ends with its maker (no
    // credential outlives the one that made it), which the policy allows.
    let reply = make(&h, &month, admin, "never", json!({})).await;
    let made = reply["data"]["create_api_key"]["id"].clone();
    let listed = h.data(&month, LIST_ENDS, None).await;
    let ends = |id: &Value| {
        listed["auth_api_key"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| &k["id"] == id)
            .map(|k| k["expires_at"].clone())
    };
    let month_id = h.data(&month, "{ auth_info { api_key_id } }", None).await["auth_info"]
        ["api_key_id"]
        .clone();
    assert_eq!(ends(&made), ends(&month_id), "{reply}");
    // Within the policy and the maker's life: made.
    let reply = make(
        &h,
        &month,
        admin,
        "fits",
        json!({"expires_at": days_from(&h, 29)}),
    )
    .await;
    assert!(reply.get("errors").is_none(), "{reply}");
    // Within the policy, past the maker's life: refused, naming the maker's end.
    let reply = make(
        &h,
        &month,
        admin,
        "outlives",
        json!({"expires_at": days_from(&h, 31)}),
    )
    .await;
    assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{reply}");
    assert!(message(&reply).contains("expire by then"), "{reply}");
    // Scopes required: unscoped keys stop, scoped ones work.
    service
        .set_key_policy_as_operator(
            "acme",
            &PolicyChange {
                scopes_required: true,
                ..PolicyChange::default()
            },
        )
        .await
        .unwrap();
    let reply = h.gql(&month, "{ auth_info { role } }", None).await;
    assert_eq!(reason(&reply), "policy_scopes_required", "{reply}");
    // Loosened: everything works again; nothing was deleted.
    service
        .set_key_policy_as_operator("acme", &PolicyChange::default())
        .await
        .unwrap();
    for k in [&forever, &year, &month, key] {
        let reply = h.gql(k, "{ auth_info { role } }", None).await;
        assert!(reply.get("errors").is_none(), "{reply}");
    }
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_tenant_network_allowlist_refuses_every_key_elsewhere() {
    let h = Harness::new().await;
    let key = &h.tenant.admin_key;
    let change = PolicyChange {
        allowed_networks: vec!["127.0.0.0/8".into(), "2001:db8::/32".into()],
        ..PolicyChange::default()
    };
    let reply = set_policy(
        &h,
        key,
        json!({"allowed_networks": change.allowed_networks}),
    )
    .await;
    assert_eq!(
        reply["data"]["set_key_policy"]["allowed_networks"],
        json!(["127.0.0.0/8", "2001:db8::/32"]),
        "{reply}"
    );
    let body = prefect_body("{ auth_info { role } }", None);
    let auth = format!("Bearer {key}");
    let from = |ip: &'static str| {
        let h = &h;
        let body = body.clone();
        let auth = auth.clone();
        async move {
            h.send_from(
                Route::RestGraphql,
                &body,
                &[("Authorization", &auth), ("X-Forwarded-For", "127.0.0.1")],
                ip,
            )
            .await
            .json
        }
    };
    let reply = from("203.0.113.9").await;
    assert_eq!(error_code(&reply), "FORBIDDEN", "{reply}");
    assert_eq!(reason(&reply), "policy_network");
    assert!(message(&reply).contains("203.0.113.9"), "{reply}");
    assert!(from("2001:db8::1").await.get("errors").is_none());
    assert!(from("::ffff:127.0.0.2").await.get("errors").is_none());
    let app = apikeys_authorizer::App::new(h.service_copy(), RouteMap::default());
    let mut e: Value =
        serde_json::from_str(include_str!("../events/rest-request-authorizer.json")).unwrap();
    e["headers"] = json!({"Authorization": auth});
    e["multiValueHeaders"] = json!({"Authorization": [auth]});
    e["requestContext"]["identity"]["sourceIp"] = json!("198.51.100.1");
    let a = apikeys_authorizer::handle(&app, e).await.unwrap();
    assert_eq!(
        a["policyDocument"]["Statement"][0]["Effect"],
        json!("Deny"),
        "{a}"
    );
    assert_eq!(a["context"]["reason"], json!("policy_network"));
}

/// Keys made while the policy changes, and requests made while it changes:
/// once the change is acknowledged, no key that breaks it works, whichever
/// won each race.
#[tokio::test]
async fn no_key_that_breaks_an_acknowledged_policy_works_whatever_raced_it() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = h.tenant.admin_key.clone();
    let compliant = secret(
        &h,
        &key,
        admin,
        "compliant",
        json!({"expires_at": days_from(&h, 3)}),
    )
    .await;
    let old = secret(&h, &key, admin, "old", json!({})).await;
    let service = h.service_copy();
    let change = PolicyChange {
        max_user_key_days: Some(30),
        ..PolicyChange::default()
    };
    let made = futures_join(
        async {
            let mut made = Vec::new();
            for i in 0..8 {
                // The unlimited key: a key made by the compliant one would
                // end with it, and comply.
                let reply = make(&h, &key, admin, &format!("racer-{i}"), json!({})).await;
                if let Some(k) = reply["data"]["create_api_key"]["key"].as_str() {
                    made.push(k.to_string());
                } else {
                    assert!(
                        ["BAD_USER_INPUT", "FORBIDDEN"].contains(&error_code(&reply)),
                        "{reply}"
                    );
                }
            }
            made
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            service
                .set_key_policy_as_operator("acme", &change)
                .await
                .unwrap()
        },
    )
    .await;
    let (racers, view) = made;
    assert!(view.applied);
    // Acknowledged: every key without an expiry is refused, however it was
    // made; the compliant one works.
    for k in racers.iter().chain([&old, &key]) {
        let reply = h.gql(k, "{ auth_info { role } }", None).await;
        assert_eq!(reason(&reply), "policy_max_lifetime", "{reply}");
    }
    assert!(h
        .gql(&compliant, "{ hello }", None)
        .await
        .get("errors")
        .is_none());
    // Two changes racing each other end at one of them, on every key.
    let a = PolicyChange {
        max_user_key_days: Some(10),
        ..PolicyChange::default()
    };
    let b = PolicyChange {
        max_user_key_days: Some(5),
        ..PolicyChange::default()
    };
    let (ra, rb) = futures_join(
        service.set_key_policy_as_operator("acme", &a),
        h.service().set_key_policy_as_operator("acme", &b),
    )
    .await;
    let winner = match (ra, rb) {
        (Ok(_), Ok(_)) | (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            h.service().key_policy_as_operator("acme").await.unwrap()
        }
        (Err(x), Err(y)) => panic!("both failed: {x} / {y}"),
    };
    assert!(winner.applied);
    let days = winner.policy.max_user_key_days.unwrap();
    // The 3-day key complies with either; what it reads is the winner.
    let reply = h
        .data(&compliant, "{ key_policy { max_user_key_days } }", None)
        .await;
    assert_eq!(reply["key_policy"]["max_user_key_days"], json!(days));
    for item in h.items().await {
        if let Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) = item.get("pk") {
            if pk.starts_with("hash#") {
                let gen = item.get("pol_gen").and_then(|v| v.as_n().ok()).cloned();
                assert_eq!(
                    gen,
                    Some(winner.policy.generation.to_string()),
                    "a key kept another generation"
                );
            }
        }
    }
    h.assert_consistent().await;
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// Another instance of the function on the same table, whose every
/// UpdateItem (what writes a policy onto a key) fails with `fault` until the
/// proxy's plan is changed.
async fn failing_updates(
    h: &Harness,
    seed: u64,
    fault: Fault,
) -> (FaultProxy, apikeys_graphql::App) {
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, seed)
        .await
        .expect("proxy");
    let limits = [
        ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "300"),
        ("DYNAMODB_OPERATION_TIMEOUT_MS", "1000"),
    ];
    let (app, _) = h.app_via(&proxy.endpoint(), &limits);
    proxy.set_plan(Plan::FailNext {
        count: 1000,
        fault,
        operation: Some("UpdateItem"),
    });
    (proxy, app)
}

/// The database failing while a policy is written onto the keys: the change
/// is reported as failed (never acknowledged), listed as not applied, and
/// setting it again finishes it.
#[tokio::test]
async fn a_policy_change_the_database_breaks_half_way_is_finished_by_sending_it_again() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = h.tenant.admin_key.clone();
    let month = secret(
        &h,
        &key,
        admin,
        "month",
        json!({"expires_at": days_from(&h, 30)}),
    )
    .await;
    let mut forever = Vec::new();
    for i in 0..5 {
        forever.push(secret(&h, &key, admin, &format!("forever-{i}"), json!({})).await);
    }
    let (proxy, app) = failing_updates(&h, 7, Fault::InternalError).await;
    let auth = format!("Bearer {month}");
    let send = |query: &'static str, vars: Option<Value>| {
        let app = &app;
        let auth = auth.clone();
        async move {
            let response = apikeys_graphql::handle(
                app,
                event(
                    Route::RestGraphql,
                    "POST",
                    &prefect_body(query, vars),
                    &[("Authorization", &auth)],
                ),
            )
            .await;
            (
                response.status().as_u16(),
                serde_json::from_slice::<Value>(response.body()).unwrap(),
            )
        }
    };
    let input = json!({"input": {"max_user_key_days": 60}});
    let mut failures = 0;
    let mut done = None;
    for _ in 0..2 {
        let (status, reply) = send(SET_POLICY, Some(input.clone())).await;
        if reply.get("errors").is_none() {
            done = Some(reply);
            break;
        }
        failures += 1;
        // Said as what it is: recorded, not yet on every key (never
        // "nothing was changed").
        assert_eq!(status, 200, "{reply}");
        assert_eq!(error_code(&reply), "CHANGE_INCOMPLETE", "{reply}");
        assert!(message(&reply).contains("recorded"), "{reply}");
        assert!(!message(&reply).contains("nothing was changed"), "{reply}");
        let read = h
            .data(&month, "{ key_policy { max_user_key_days applied } }", None)
            .await;
        assert_eq!(
            read["key_policy"]["applied"],
            json!(false),
            "a failed change reads as applied"
        );
    }
    proxy.set_plan(Plan::Off);
    let done = match done {
        Some(done) => done,
        None => send(SET_POLICY, Some(input.clone())).await.1,
    };
    assert!(failures > 0, "no failure was injected");
    assert_eq!(
        done["data"]["set_key_policy"]["applied"],
        json!(true),
        "{done}"
    );
    for k in &forever {
        assert_eq!(
            reason(&h.gql(k, "{ hello }", None).await),
            "policy_max_lifetime"
        );
    }
    // One change recorded, however many tries it took.
    let records = h
        .service()
        .store()
        .audit_page(h.tenant.id, 100, None)
        .await
        .unwrap();
    let changes = records
        .iter()
        .filter(|(r, _)| r.action == apikeys_core::audit::AuditAction::KeyPolicyChanged)
        .count();
    assert_eq!(changes, 1);
    h.assert_consistent().await;
}

/// The operator's repair finds a policy change that stopped part way, and
/// finishes it.
#[tokio::test]
async fn repair_finds_and_finishes_a_policy_change_that_stopped_part_way() {
    let h = Harness::new().await;
    let admin = h.tenant.admin_id;
    let key = h.tenant.admin_key.clone();
    let forever = secret(&h, &key, admin, "forever", json!({})).await;
    let (proxy, app) = failing_updates(&h, 11, Fault::Unavailable).await;
    let change = PolicyChange {
        max_user_key_days: Some(30),
        ..PolicyChange::default()
    };
    assert!(app
        .service()
        .set_key_policy_as_operator("acme", &change)
        .await
        .is_err());
    proxy.set_plan(Plan::Off);
    assert!(
        !h.service()
            .key_policy_as_operator("acme")
            .await
            .unwrap()
            .applied
    );
    let found = h.service().check_tenant("acme", false).await.unwrap();
    assert!(
        found
            .iter()
            .any(|f| f.what.contains("key policy") && !f.repaired),
        "{found:?}"
    );
    let fixed = h.service().check_tenant("acme", true).await.unwrap();
    assert!(fixed.iter().all(|f| f.repaired), "{fixed:?}");
    assert!(
        h.service()
            .key_policy_as_operator("acme")
            .await
            .unwrap()
            .applied
    );
    assert_eq!(
        reason(&h.gql(&forever, "{ hello }", None).await),
        "policy_max_lifetime"
    );
    assert!(h
        .service()
        .check_tenant("acme", false)
        .await
        .unwrap()
        .is_empty());
}

/// A policy change on more keys than one request can write is resumable:
/// each request makes progress from the position the last one saved,
/// answers CHANGE_INCOMPLETE until every key carries it, and never starts
/// over; under ordinary contention (10 % of writes meeting a transaction
/// on their item) it finishes all the same.
#[tokio::test]
async fn a_policy_change_on_many_keys_resumes_request_by_request_and_never_starts_over() {
    let h = Harness::new().await;
    let (account, _) = h.add_service_account("fleet").await;
    let seeded = h
        .seed_keys(account, apikeys_core::domain::AccountType::Service, 430)
        .await;
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, 11)
        .await
        .expect("proxy");
    // A deadline so short that a request does one page (100 keys) and stops.
    let (app, counter) = h.app_via(&proxy.endpoint(), &[("REQUEST_TIMEOUT_MS", "1500")]);
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let send = |rules: Value| {
        let request = event(
            Route::RestGraphql,
            "POST",
            &prefect_body(SET_POLICY, Some(json!({"input": rules}))),
            &[("Authorization", &auth)],
        );
        apikeys_graphql::handle(&app, request)
    };
    for (round, contention) in [(0, false), (1, true)] {
        // Round 1 changes it again (a new generation), under contention.
        let rules = if round == 0 {
            json!({"leak_action": "NOTIFY"})
        } else {
            json!({"leak_action": "REVOKE", "allowed_networks": ["127.0.0.0/8"]})
        };
        if contention {
            proxy.set_plan(Plan::Random {
                rate: 0.1,
                faults: vec![Fault::TransactionConflict],
            });
        }
        let mut sends = 0;
        let mut key_writes = 0;
        loop {
            sends += 1;
            assert!(sends <= 20, "round {round}: not done after 20 sends");
            counter.reset();
            let response = send(rules.clone()).await;
            let reply: Value = serde_json::from_slice(response.body()).unwrap();
            key_writes += counter.snapshot().get("UpdateItem").copied().unwrap_or(0);
            match error_code(&reply) {
                "" => {
                    assert_eq!(reply["data"]["set_key_policy"]["applied"], json!(true));
                    break;
                }
                "CHANGE_INCOMPLETE" => {}
                other => panic!("round {round}, send {sends}: {other}: {reply}"),
            }
        }
        proxy.set_plan(Plan::Off);
        eprintln!(
            "round {round}: {sends} sends, {key_writes} UpdateItems for {} keys (and the tenant's own: one position per page)",
            seeded.len() + 2
        );
        // Five pages of 100: every request but the last stopped part way,
        // and no page was written twice (a conflict retried is one write
        // more, a position saved one per page).
        assert!(sends >= 5, "round {round}: {sends} sends");
        let pages = seeded.len().div_ceil(100) as u64 + 1;
        let retries = if contention { key_writes / 5 } else { 0 };
        assert!(
            key_writes <= seeded.len() as u64 + 2 + 2 * pages + retries,
            "round {round}: {key_writes} writes: the change started over"
        );
        // Every key carries it: a key from outside the new allowlist is
        // refused (round 1), the last seeded key is judged by it.
        let view = h.service().key_policy_as_operator("acme").await.unwrap();
        assert!(view.applied, "round {round}");
    }
    let stored = h
        .service()
        .store()
        .keys_of_tenant(h.tenant.id)
        .await
        .unwrap();
    let hashes: Vec<_> = stored.iter().map(|k| k.hash.clone()).collect();
    assert_eq!(hashes.len(), seeded.len() + 2);
    for hash in hashes {
        let record = h
            .service()
            .store()
            .key_by_hash(&hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.policy.networks.len(),
            1,
            "a key without the new policy"
        );
    }
}

/// A request still applying an older generation, marking it applied, leaves
/// a newer generation's saved position alone (it erased it, and the newer
/// change started over from the first key).
#[tokio::test]
async fn marking_an_older_generation_applied_keeps_a_newer_ones_position() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let h = Harness::new().await;
    // Generation 2 recorded and part way (its position saved); generation
    // 1 not yet marked applied.
    h.client
        .update_item()
        .table_name(&h.table)
        .key("pk", AttributeValue::S(h.tenant.id.to_string()))
        .key("sk", AttributeValue::S("tenant".into()))
        .update_expression(
            "SET pol_gen = :two, pol_pos = :pos, pol_pos_gen = :two, pol_applied = :zero",
        )
        .expression_attribute_values(":two", AttributeValue::N("2".into()))
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .expression_attribute_values(":pos", AttributeValue::S("skey#somewhere".into()))
        .send()
        .await
        .unwrap();
    let store = h.service().store();
    assert!(store.mark_policy_applied(h.tenant.id, 1).await.unwrap());
    let read = store.tenant_policy(h.tenant.id).await.unwrap().unwrap();
    assert_eq!(read.applied, 1);
    assert_eq!(read.position.as_deref(), Some("skey#somewhere"));
}
