//! The GraphQL wire contract (docs/API.md, "The GraphQL API"), through real API Gateway events.

use apikeys_tests::{error_code, mistyped, prefect_body, unauthenticated, Harness, Route};
use serde_json::{json, Value};

const AUTH_INFO: &str =
    "query { auth_info { tenant_id user_id api_key_id role role_id account_type permissions } }";

#[tokio::test]
async fn string_variables_null_string_object_and_absent_all_work() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let query = "query($slug: String) { tenant(where: {slug: { _eq: $slug } }) { id } }";
    let bodies = [
        json!({"query": query, "variables": "{\"slug\": \"acme\"}"}),
        json!({"query": query, "variables": {"slug": "acme"}}),
    ];
    for body in bodies {
        let reply = h
            .send(
                Route::RestGraphql,
                body.to_string().as_bytes(),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(
            reply.json,
            json!({"data": {"tenant": [{"id": h.tenant.id.to_string()}]}}),
            "{body}"
        );
    }
    for body in [
        json!({"query": "query { hello }", "variables": "null"}),
        json!({"query": "query { hello }", "variables": null}),
        json!({"query": "query { hello }"}),
    ] {
        let reply = h
            .send(
                Route::RestGraphql,
                body.to_string().as_bytes(),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json, json!({"data": {"hello": "👋"}}), "{body}");
    }
}

#[tokio::test]
async fn success_has_no_errors_key_at_all() {
    let h = Harness::new().await;
    let reply = h.gql(&h.tenant.admin_key, AUTH_INFO, None).await;
    let object = reply.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), vec!["data"]);
}

#[tokio::test]
async fn the_roles_are_listed_with_their_stable_ids() {
    let h = Harness::new().await;
    let data = h
        .data(&h.tenant.admin_key, "{ role { id name } }", None)
        .await;
    assert_eq!(
        data["role"],
        json!([
            {"id": "6f0a3c52-7d1e-4b55-9a3e-2c1f00000001", "name": "TENANT_ADMIN"},
            {"id": "6f0a3c52-7d1e-4b55-9a3e-2c1f00000002", "name": "USER"},
            {"id": "6f0a3c52-7d1e-4b55-9a3e-2c1f00000003", "name": "READ_ONLY_USER"},
        ])
    );
}

#[tokio::test]
async fn auth_info_describes_the_key_owner_and_tenant() {
    let h = Harness::new().await;
    let data = h.data(&h.tenant.admin_key, AUTH_INFO, None).await;
    let info = &data["auth_info"];
    assert_eq!(info["tenant_id"], json!(h.tenant.id.to_string()));
    assert_eq!(info["user_id"], json!(h.tenant.admin_id.to_string()));
    assert_eq!(info["role"], json!("TENANT_ADMIN"));
    assert_eq!(info["account_type"], json!("USER"));
    assert!(info["api_key_id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(info["permissions"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
}

#[tokio::test]
async fn post_root_and_graphql_on_rest_and_http_api_events_all_answer() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    for route in [Route::RestRoot, Route::RestGraphql, Route::HttpApi] {
        let reply = h
            .send(
                route,
                &prefect_body("query { auth_info { tenant_id } }", None),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(reply.status, 200, "{route:?}");
        assert_eq!(
            reply.json["data"]["auth_info"]["tenant_id"],
            json!(h.tenant.id.to_string()),
            "{route:?}"
        );
    }
}

#[tokio::test]
async fn header_names_are_case_insensitive() {
    let h = Harness::new().await;
    let auth = format!("bearer {}", h.tenant.admin_key);
    let tenant = h.tenant.id.to_string();
    let reply = h
        .send(
            Route::RestGraphql,
            &prefect_body("query { auth_info { tenant_id } }", None),
            &[("authorization", &auth), ("x-prefect-tenant-id", &tenant)],
        )
        .await;
    assert_eq!(reply.json["data"]["auth_info"]["tenant_id"], json!(tenant));
}

#[tokio::test]
async fn tenant_header_of_the_keys_own_tenant_is_accepted() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let tenant = h.tenant.id.to_string();
    let reply = h
        .send(
            Route::RestGraphql,
            &prefect_body("query { auth_info { tenant_id } }", None),
            &[("Authorization", &auth), ("X-PREFECT-TENANT-ID", &tenant)],
        )
        .await;
    assert_eq!(
        reply.json,
        json!({"data": {"auth_info": {"tenant_id": tenant}}})
    );
}

#[tokio::test]
async fn tenant_header_naming_another_or_a_malformed_tenant_is_unauthenticated() {
    let h = Harness::new().await;
    let other = h.add_tenant("globex", "gina").await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    for header in [
        other.id.to_string(),
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".to_string(),
    ] {
        let reply = h
            .send(
                Route::RestGraphql,
                &prefect_body("query { auth_info { tenant_id } }", None),
                &[("Authorization", &auth), ("X-PREFECT-TENANT-ID", &header)],
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json, unauthenticated(), "{header}");
    }
}

#[tokio::test]
async fn missing_malformed_unknown_and_mistyped_keys_get_the_unauthenticated_envelope() {
    let h = Harness::new().await;
    let typo = mistyped(&h.tenant.admin_key, 8);
    let unknown = apikeys_core::token::NewKey::generate("apk");
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("Authorization", "Bearer".to_string())],
        vec![("Authorization", "Basic dXNlcjpwYXNz".to_string())],
        vec![("Authorization", format!("Bearer {typo}"))],
        vec![(
            "Authorization",
            format!("Bearer {}", unknown.expose_secret()),
        )],
        vec![("Authorization", "Bearer apk_".to_string())],
    ];
    for headers in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = h
            .send(
                Route::RestGraphql,
                &prefect_body("query { auth_info { tenant_id } }", None),
                &headers,
            )
            .await;
        assert_eq!(reply.status, 200, "{headers:?}");
        assert_eq!(reply.json, unauthenticated(), "{headers:?}");
    }
}

#[tokio::test]
async fn a_key_with_a_bad_checksum_is_rejected_without_a_database_read() {
    let h = Harness::new().await;
    let typo = mistyped(&h.tenant.admin_key, 1);
    h.counter.reset();
    let reply = h.gql(&typo, "query { hello }", None).await;
    assert_eq!(reply, unauthenticated());
    assert_eq!(h.counter.total(), 0, "{:?}", h.counter.snapshot());
}

#[tokio::test]
async fn tenant_query_forms_of_the_prefect_client() {
    let h = Harness::new().await;
    let key = &h.tenant.admin_key;
    let id = h.tenant.id.to_string();
    let expected = json!([{"id": id, "slug": "acme", "name": "acme Inc"}]);
    let by_id =
        format!("query {{ tenant(where: {{ id: {{ _eq: \"{id}\" }} }}) {{ id slug name }} }}");
    assert_eq!(h.data(key, &by_id, None).await["tenant"], expected);
    assert_eq!(
        h.data(
            key,
            "query { tenant(order_by: {slug: asc}) { id slug name } }",
            None
        )
        .await["tenant"],
        expected
    );
    assert_eq!(
        h.data(key, "query { tenant { id slug name } }", None).await["tenant"],
        expected
    );
    let by_slug = "query($slug: String) { tenant(where: {slug: { _eq: $slug } }) { id } }";
    assert_eq!(
        h.data(key, by_slug, Some(json!({"slug": "nope"}))).await["tenant"],
        json!([])
    );
    assert_eq!(
        h.data(key, by_slug, Some(json!({"slug": null}))).await["tenant"],
        json!([{"id": id}])
    );
    let created = h.data(key, "query { tenant { created } }", None).await;
    let created = created["tenant"][0]["created"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        created.ends_with("+00:00") && created.len() == 25,
        "{created}"
    );
}

#[tokio::test]
async fn field_order_in_a_selection_does_not_matter() {
    let h = Harness::new().await;
    let a = h
        .data(
            &h.tenant.admin_key,
            "query { tenant { id slug name } }",
            None,
        )
        .await;
    let b = h
        .data(
            &h.tenant.admin_key,
            "query { tenant { name id slug } }",
            None,
        )
        .await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn non_json_non_graphql_and_batched_bodies_are_http_400() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let bodies: [&[u8]; 7] = [
        b"not json",
        b"",
        b"[{\"query\": \"{ hello }\"}]",
        b"{\"variables\": {}}",
        b"{\"query\": 42}",
        b"{\"query\": \"{ hello }\", \"variables\": \"{not json\"}",
        b"{\"query\": \"{ hello }\", \"variables\": [1]}",
    ];
    for body in bodies {
        let reply = h
            .send(Route::RestGraphql, body, &[("Authorization", &auth)])
            .await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(reply.json["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let reply = h
        .send(
            Route::RestGraphql,
            b"[{\"query\": \"{ hello }\"}]",
            &[("Authorization", &auth)],
        )
        .await;
    assert!(reply.body.contains("batched"), "{}", reply.body);
}

#[tokio::test]
async fn a_one_megabyte_body_is_refused_and_writes_nothing() {
    let h = Harness::new().await;
    let before = h.items().await.len();
    let name = "x".repeat(1024 * 1024);
    let body = prefect_body(
        "mutation($input: create_api_key_input!) { create_api_key(input: $input) { key } }",
        Some(json!({"input": {"name": name, "user_id": h.tenant.admin_id.to_string()}})),
    );
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let reply = h
        .send(Route::RestGraphql, &body, &[("Authorization", &auth)])
        .await;
    assert_eq!(reply.status, 413);
    assert!(reply.json["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("larger"));
    assert_eq!(h.items().await.len(), before);
}

#[tokio::test]
async fn graphql_syntax_and_validation_errors_carry_a_code() {
    let h = Harness::new().await;
    for query in [
        "query { nope }",
        "query {",
        "mutation { create_api_key(input: {name: 1}) { key } }",
    ] {
        let reply = h.gql(&h.tenant.admin_key, query, None).await;
        assert_eq!(error_code(&reply), "BAD_USER_INPUT", "{query}: {reply}");
        assert!(reply["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn get_and_unknown_paths_answer_with_json_errors() {
    let h = Harness::new().await;
    let reply = h.send_method(Route::RestGraphql, "GET", b"", &[]).await;
    assert_eq!(reply.status, 405);
    assert!(reply.json["errors"].is_array());
}

/// The introspection query every GraphQL tool sends (graphql-js's
/// `getIntrospectionQuery()`, as graphql-core and GraphiQL send it): depth 15.
const INTROSPECTION_QUERY: &str = include_str!("../data/introspection_query.graphql");

#[tokio::test]
async fn the_standard_introspection_query_works_where_introspection_is_on_and_nowhere_else() {
    let h = Harness::with_env(&[("ENABLE_INTROSPECTION", "true")]).await;
    let data = h.data(&h.tenant.admin_key, INTROSPECTION_QUERY, None).await;
    let types = data["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "auth_api_key"));
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    // Its bound is its own: mixed with a field that reads the database, the
    // ordinary limits apply.
    let mixed = INTROSPECTION_QUERY.replacen("__schema {", "tenant { id } __schema {", 1);
    let reply = h.gql(&h.tenant.admin_key, &mixed, None).await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    // Off by default: refused, not answered.
    let h = Harness::new().await;
    let reply = h.gql(&h.tenant.admin_key, INTROSPECTION_QUERY, None).await;
    assert!(reply.get("errors").is_some(), "{reply}");
    assert_eq!(reply["data"], Value::Null);
}

#[tokio::test]
async fn introspection_is_off_by_default() {
    let h = Harness::new().await;
    let reply = h
        .gql(
            &h.tenant.admin_key,
            "query { __schema { types { name } } }",
            None,
        )
        .await;
    assert!(reply.get("errors").is_some(), "{reply}");
    assert_eq!(reply["data"], Value::Null);
}

#[tokio::test]
async fn with_introspection_enabled_it_answers_and_no_page_from_another_origin_is_served() {
    // GraphiQL loaded a dozen modules from a third-party CDN on a page where
    // people paste keys: it is gone; GET answers JSON whatever the switch.
    for name in ["ENABLE_INTROSPECTION", "ENABLE_GRAPHIQL"] {
        let h = Harness::with_env(&[(name, "true")]).await;
        let reply = h.send_method(Route::RestGraphql, "GET", b"", &[]).await;
        assert_eq!(reply.status, 405, "{name}");
        assert!(!reply.body.contains("<html"), "{name}: {}", reply.body);
        let data = h
            .data(
                &h.tenant.admin_key,
                "query { __schema { queryType { name } } }",
                None,
            )
            .await;
        assert_eq!(data["__schema"]["queryType"]["name"], "Query", "{name}");
    }
    let h = Harness::with_env(&[("ENABLE_INTROSPECTION", "true")]).await;
    let data = h
        .data(
            &h.tenant.admin_key,
            "query { __type(name: \"create_api_key_input\") { inputFields { name } } }",
            None,
        )
        .await;
    let mut fields: Vec<&str> = data["__type"]["inputFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    fields.sort();
    // Prefect's fields, and the key's optional role ceiling and networks.
    assert_eq!(
        fields,
        [
            "allowed_networks",
            "default_tenant_id",
            "expires_at",
            "name",
            "role_id",
            "scopes",
            "user_id"
        ]
    );
}

#[tokio::test]
async fn every_answer_forbids_rendering_framing_and_sniffing() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let answers = [
        h.send(
            Route::RestGraphql,
            &prefect_body("{ hello }", None),
            &[("Authorization", &auth)],
        )
        .await,
        h.send(Route::RestGraphql, b"{not json", &[]).await,
        h.send_method(Route::RestGraphql, "GET", b"", &[]).await,
        h.send(Route::RestGraphql, &prefect_body("{ hello }", None), &[])
            .await,
    ];
    for reply in answers {
        let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{}",
            reply.status
        );
        assert_eq!(header("x-content-type-options"), Some("nosniff"));
        assert_eq!(header("content-type"), Some("application/json"));
        // An answer may hold a new secret: no cache may keep it.
        assert_eq!(
            header("cache-control"),
            Some("no-store"),
            "{}",
            reply.status
        );
    }
}

#[tokio::test]
async fn graphql_over_http_media_types_and_status_codes() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    let ask = |accept: &'static str, query: &'static str, vars: Option<Value>| {
        let (h, auth) = (&h, auth.clone());
        async move {
            h.send(
                Route::RestGraphql,
                &prefect_body(query, vars),
                &[("Authorization", &auth), ("Accept", accept)],
            )
            .await
        }
    };
    const GR: &str = "application/graphql-response+json";
    let media = |r: &apikeys_tests::Reply| {
        r.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // Asked for: the media type matches; a query that runs is 200.
    let ok = ask(GR, "{ hello }", None).await;
    assert_eq!((ok.status, media(&ok).as_deref()), (200, Some(GR)));
    assert!(ok.json["data"]["hello"].is_string());
    // Not executed at all (syntax, validation, variables): 400, no data.
    for (query, vars) in [
        ("{", None),
        ("{ no_such_field }", None),
        (
            "query($n: Int!) { audit_log(limit: $n) { id } }",
            Some(json!({"n": "not a number"})),
        ),
    ] {
        let reply = ask(GR, query, vars.clone()).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(reply.json.get("data").is_none(), "{query}: {}", reply.body);
        assert!(reply.json["errors"][0]["message"].is_string());
        // The Prefect client's application/json keeps HTTP 200 and "data": null.
        let legacy = ask("application/json", query, vars).await;
        assert_eq!(legacy.status, 200, "{query}");
        assert_eq!(media(&legacy).as_deref(), Some("application/json"));
        assert!(
            legacy.json.get("data").is_some(),
            "{query}: {}",
            legacy.body
        );
    }
    // */* and no Accept at all: application/json.
    for accept in ["*/*", ""] {
        let reply = ask(accept, "{ hello }", None).await;
        assert_eq!(
            media(&reply).as_deref(),
            Some("application/json"),
            "{accept:?}"
        );
    }
    // A POST that does not say what it sends: 415, nothing read.
    h.counter.reset();
    let bare = h
        .send(
            Route::RestGraphql,
            &prefect_body("{ hello }", None),
            &[("Authorization", &auth), ("Content-Type", "")],
        )
        .await;
    assert_eq!(bare.status, 415, "{}", bare.body);
    let plain = h
        .send(
            Route::RestGraphql,
            &prefect_body("{ hello }", None),
            &[
                ("Authorization", &auth),
                ("Content-Type", "text/plain;charset=UTF-8"),
            ],
        )
        .await;
    assert_eq!(plain.status, 415, "{}", plain.body);
    assert_eq!(h.counter.total(), 0);
    // curl -d's form type is read as JSON (the README's examples use it).
    let curl = h
        .send(
            Route::RestGraphql,
            &prefect_body("{ hello }", None),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        )
        .await;
    assert_eq!(curl.status, 200, "{}", curl.body);
}

#[tokio::test]
async fn accept_qualities_repeated_headers_and_statuses_at_the_edge() {
    let h = Harness::new().await;
    let auth = format!("Bearer {}", h.tenant.admin_key);
    const GR: &str = "application/graphql-response+json";
    let media = |r: &apikeys_tests::Reply| {
        r.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // Qualities decide, not the order.
    for (accept, wanted) in [
        (
            "application/graphql-response+json;q=0, application/json",
            "application/json",
        ),
        (
            "application/graphql-response+json;q=0.001, application/json;q=1",
            "application/json",
        ),
        (
            "application/json;q=0.1, application/graphql-response+json",
            GR,
        ),
        ("application/json, application/graphql-response+json", GR),
    ] {
        let reply = h
            .send(
                Route::RestGraphql,
                &prefect_body("{", None),
                &[("Authorization", &auth), ("Accept", accept)],
            )
            .await;
        assert_eq!(media(&reply).as_deref(), Some(wanted), "{accept}");
    }
    // 415 and 413 keep their status under graphql-response+json, with no data.
    let refused = h
        .send(
            Route::RestGraphql,
            &prefect_body("{ hello }", None),
            &[
                ("Authorization", &auth),
                ("Accept", GR),
                ("Content-Type", "text/plain"),
            ],
        )
        .await;
    assert_eq!(refused.status, 415, "{}", refused.body);
    let big = format!("{{\"query\":\"{{ hello }}{}\"}}", " ".repeat(70_000));
    let large = h
        .send(
            Route::RestGraphql,
            big.as_bytes(),
            &[("Authorization", &auth), ("Accept", GR)],
        )
        .await;
    assert_eq!(large.status, 413, "{}", large.body);
    assert!(large.json.get("data").is_none(), "{}", large.body);
    // A 405 says what is allowed.
    let get = h.send_method(Route::RestGraphql, "PUT", b"", &[]).await;
    assert_eq!(get.status, 405);
    assert_eq!(
        get.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    // A new key's mutation must be alone: another field's error would hide it.
    let two = format!(
        "mutation {{ a: create_api_key(input: {{user_id: \"{}\", name: \"x\"}}) {{ key }} b: delete_api_key(input: {{key_id: \"{}\"}}) {{ success }} }}",
        h.tenant.admin_id,
        uuid::Uuid::nil()
    );
    h.gql(&h.tenant.admin_key, "{ hello }", None).await;
    let before = h.items().await;
    let reply = h.gql(&h.tenant.admin_key, &two, None).await;
    assert_eq!(error_code(&reply), "QUERY_TOO_COMPLEX", "{reply}");
    assert_eq!(h.items().await, before);
}
