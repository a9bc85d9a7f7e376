//! Property tests through the real handler: whatever the body, the
//! variables, a scalar's input or the presented key, the answer is JSON and
//! nothing panics (with panic = "abort" a panic ends the Lambda instance).
//! Each property runs `PROPTEST_CASES` cases (default 128), bounded in time.

use apikeys_graphql::schema::DateTime;
use apikeys_tests::{prefect_body, Harness, Reply, Route};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// The handler answered with a JSON object carrying `data` or `errors`.
fn is_graphql_json(reply: &Reply) -> bool {
    reply
        .json
        .as_object()
        .is_some_and(|o| o.contains_key("data") || o.contains_key("errors"))
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        Just(json!("9999-12-31T23:59:59-00:01")),
        Just(json!("00000000-0000-0000-0000-000000000000")),
        Just(json!(u64::MAX)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An RFC 3339-shaped string at and around the edges of the range.
fn datetime_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(1970),
            Just(2031),
            Just(9998),
            Just(9999),
            0u32..10000
        ],
        // Edges often: the last and first instants are where offsets overflow.
        prop_oneof![Just(12u32), Just(1), 0u32..=13],
        prop_oneof![Just(31u32), Just(1), 0u32..=32],
        prop_oneof![Just(23u32), Just(0), 0u32..=24],
        prop_oneof![Just(59u32), Just(0), 0u32..=60],
        prop_oneof![Just(59u32), Just(0), 0u32..=61],
        prop_oneof![
            Just("Z".to_string()),
            (any::<bool>(), 0u32..=25, 0u32..=60).prop_map(|(neg, h, m)| {
                format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })
            })
        ],
        prop_oneof![Just(String::new()), "\\.[0-9]{1,12}"],
    )
        .prop_map(|(y, mo, d, h, mi, s, off, frac)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

#[test]
fn any_body_bytes_get_a_json_answer() {
    let rt = runtime();
    let h = rt.block_on(Harness::new());
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), json_value())
            .prop_map(|(q, v)| json!({"query": q, "variables": v}).to_string().into_bytes()),
        (".{0,200}", json_value()).prop_map(|(q, v)| {
            json!({"query": q, "variables": v.to_string()})
                .to_string()
                .into_bytes()
        }),
    ];
    runner()
        .run(&bodies, |body| {
            let reply = rt.block_on(h.send(Route::RestGraphql, &body, &[("Authorization", &auth)]));
            prop_assert!(is_graphql_json(&reply), "{} {}", reply.status, reply.body);
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_variables_of_every_operation_get_a_json_answer() {
    let rt = runtime();
    let h = rt.block_on(Harness::new());
    let operations = [
        "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id } }",
        "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
        "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
        "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }",
        "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success } }",
        "query($w: tenant_bool_exp, $o: [tenant_order_by!], $l: Int, $f: Int) { tenant(where: $w, order_by: $o, limit: $l, offset: $f) { id } }",
        "query($o: [auth_api_key_order_by!]) { auth_api_key(order_by: $o) { id } }",
    ];
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let strategy = (0..operations.len(), json_value(), json_value());
    runner()
        .run(&strategy, |(op, input, other)| {
            let vars = json!({"input": input, "w": other, "o": other, "l": other, "f": other});
            let body = prefect_body(operations[op], Some(vars));
            let reply = rt.block_on(h.send(Route::RestGraphql, &body, &[("Authorization", &auth)]));
            prop_assert_eq!(reply.status, 200, "{}", reply.body);
            prop_assert!(is_graphql_json(&reply), "{}", reply.body);
            Ok(())
        })
        .unwrap();
    rt.block_on(h.assert_consistent());
}

#[test]
fn any_datetime_text_is_a_value_or_a_clear_error() {
    runner()
        .run(&datetime_text(), |text| {
            match DateTime::from_input(&text) {
                Ok(DateTime(t)) => prop_assert_eq!(t.offset(), time::UtcOffset::UTC),
                Err(message) => {
                    prop_assert!(message.starts_with("Invalid DateTime"), "{}", message)
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_datetime_and_int_through_the_handler_get_a_json_answer() {
    let rt = runtime();
    let h = rt.block_on(Harness::new());
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let query = "mutation($e: DateTime, $u: UUID!) { create_api_key(input: {user_id: $u, name: \"p\", expires_at: $e}) { id } }";
    let strategy = (
        datetime_text(),
        prop_oneof![Just(uuid::Uuid::nil().to_string()), ".{0,40}"],
        any::<i64>(),
    );
    runner()
        .run(&strategy, |(e, u, n)| {
            let body = prefect_body(query, Some(json!({"e": e, "u": u})));
            let reply = rt.block_on(h.send(Route::RestGraphql, &body, &[("Authorization", &auth)]));
            prop_assert!(is_graphql_json(&reply), "{}", reply.body);
            let inline = format!("{{ tenant(limit: {n}, offset: {n}) {{ id }} }}");
            let reply = rt.block_on(h.send(
                Route::RestGraphql,
                &prefect_body(&inline, None),
                &[("Authorization", &auth)],
            ));
            prop_assert!(is_graphql_json(&reply), "{}", reply.body);
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_presented_key_or_tenant_header_is_answered_never_crashes() {
    let rt = runtime();
    let h = rt.block_on(Harness::new());
    let valid = h.tenant.admin_key.clone();
    let keys = prop_oneof![
        ".{0,80}",
        "apks?_[A-Za-z0-9]{0,40}",
        (0usize..valid.len(), any::<char>()).prop_map(move |(at, c)| {
            let mut chars: Vec<char> = valid.chars().collect();
            chars[at] = c;
            chars.into_iter().collect()
        }),
    ];
    let strategy = (keys, prop::option::of(".{0,40}"));
    runner()
        .run(&strategy, |(key, tenant)| {
            let auth = format!("Bearer {key}");
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(t) = tenant.as_deref() {
                headers.push(("X-Prefect-Tenant-Id", t));
            }
            let body = prefect_body("query { auth_info { tenant_id } }", None);
            // Header values a real gateway could not carry are not events.
            if headers
                .iter()
                .any(|(_, v)| v.chars().any(|c| c.is_control() || !c.is_ascii()))
            {
                return Ok(());
            }
            let reply = rt.block_on(h.send(Route::RestGraphql, &body, &headers));
            prop_assert!(is_graphql_json(&reply), "{}", reply.body);
            Ok(())
        })
        .unwrap();
}
