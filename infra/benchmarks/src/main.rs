//! apikeys-bench: the measurements `infra/bench` runs and tabulates. Each
//! prints one JSON object: per-request overhead of the real handler against
//! the bare DynamoDB calls it must make, load on a running endpoint, and how
//! DynamoDB request counts scale.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{bail, Context, Result};
use apikeys_core::audit::{AuditAction, AuditActor, AuditEvent, TargetType};
use apikeys_core::domain::AccountType;
use apikeys_core::token::{NewKey, TokenHash};
use apikeys_service::KeyRequest;
use apikeys_store::{audit_put, key_items, StoredKey};
use apikeys_tests::{event, prefect_body, sweep_cost, Harness, Route};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "apikeys benchmark measurements (run through infra/bench)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Handler latency vs the bare DynamoDB calls, in-process (DYNAMODB_ENDPOINT).
    Overhead {
        #[arg(long, default_value_t = 300)]
        iterations: usize,
    },
    /// Concurrent `auth_info` requests against a running endpoint.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        requests: usize,
    },
    /// DynamoDB requests of a sweep and of a listing as the table grows.
    Scaling,
}

/// Median and 99th percentile, in microseconds.
fn summary(mut samples: Vec<StdDuration>) -> Value {
    samples.sort();
    let at =
        |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)].as_micros() as u64;
    json!({"p50_us": at(50), "p99_us": at(99), "n": samples.len()})
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

async fn get(client: &Client, table: &str, pk: String, sk: String) -> Result<()> {
    client
        .get_item()
        .table_name(table)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .consistent_read(true)
        .send()
        .await?;
    Ok(())
}

async fn query(client: &Client, table: &str, pk: String, prefix: String) -> Result<()> {
    client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", s(pk))
        .expression_attribute_values(":prefix", s(prefix))
        .consistent_read(true)
        .send()
        .await?;
    Ok(())
}

/// Authentication's one read: the key's hash item, strongly consistent.
async fn bare_auth(h: &Harness, client: &Client, hash: &TokenHash) -> Result<()> {
    get(
        client,
        &h.table,
        format!("hash#{}", hash.as_str()),
        "hash".into(),
    )
    .await
}

/// What authentication read before the copies: the hash item, then the
/// membership (and the tenant for the `tenant` query): the floor of the
/// previous version, measured beside the current one.
async fn bare_auth_before(h: &Harness, client: &Client, hash: &TokenHash) -> Result<()> {
    bare_auth(h, client, hash).await?;
    get(
        client,
        &h.table,
        h.tenant.id.to_string(),
        format!("member#{}", h.tenant.admin_id),
    )
    .await
}

async fn handler_call(h: &Harness, body: &[u8], auth: &str) -> Result<Value> {
    let request = event(Route::RestGraphql, "POST", body, &[("Authorization", auth)]);
    let started = Instant::now();
    let response = apikeys_graphql::handle(&h.app, request).await;
    let elapsed = started.elapsed();
    let json: Value = serde_json::from_slice(response.body().as_ref())?;
    if json.get("errors").is_some() {
        bail!("handler error: {json}");
    }
    Ok(json!({"elapsed_ns": elapsed.as_nanos() as u64, "data": json["data"]}))
}

fn elapsed(v: &Value) -> StdDuration {
    StdDuration::from_nanos(v["elapsed_ns"].as_u64().unwrap_or(0))
}

async fn overhead(iterations: usize) -> Result<Value> {
    let h = Harness::new().await;
    for i in 0..19 {
        let request = KeyRequest {
            name: &format!("k{i}"),
            expires_at: None,
            role_ceiling: None,
            allowed_networks: Vec::new(),
            scopes: Vec::new(),
        };
        h.service().issue_key("acme", "alice", request).await?;
    }
    let client = h.service().store().client().clone();
    let key = h.tenant.admin_key.clone();
    let auth = format!("Bearer {key}");
    let hash = TokenHash::of(&key);
    let principal = h.service().authenticate(Some(&key), None).await?;
    let info_body = prefect_body("query { auth_info { tenant_id user_id } }", None);
    let tenant_body = prefect_body(
        "query { tenant(where: { id: { _eq: $id } }) { id slug name } }"
            .replace("$id", &format!("\"{}\"", h.tenant.id))
            .as_str(),
        None,
    );
    let list_body = prefect_body("query { auth_api_key { id name expires_at } }", None);
    let create_body = prefect_body(
        "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }",
        Some(json!({"input": {"name": "bench", "user_id": h.tenant.admin_id}})),
    );
    let mut samples: BTreeMap<&str, Vec<StdDuration>> = BTreeMap::new();
    let mut requests: BTreeMap<&str, u64> = BTreeMap::new();
    for _ in 0..iterations {
        h.counter.reset();
        let reply = handler_call(&h, &info_body, &auth).await?;
        requests.insert("auth_info", h.counter.total());
        samples
            .entry("auth_info/handler")
            .or_default()
            .push(elapsed(&reply));
        let started = Instant::now();
        bare_auth(&h, &client, &hash).await?;
        samples
            .entry("auth_info/bare")
            .or_default()
            .push(started.elapsed());
        let started = Instant::now();
        bare_auth_before(&h, &client, &hash).await?;
        samples
            .entry("auth_info/before")
            .or_default()
            .push(started.elapsed());

        // The Prefect client's login: auth_info, then the tenant query.
        h.counter.reset();
        let first = handler_call(&h, &info_body, &auth).await?;
        let second = handler_call(&h, &tenant_body, &auth).await?;
        requests.insert("login", h.counter.total());
        samples
            .entry("login/handler")
            .or_default()
            .push(elapsed(&first) + elapsed(&second));
        let started = Instant::now();
        bare_auth(&h, &client, &hash).await?;
        bare_auth(&h, &client, &hash).await?;
        samples
            .entry("login/bare")
            .or_default()
            .push(started.elapsed());
        let started = Instant::now();
        bare_auth_before(&h, &client, &hash).await?;
        bare_auth_before(&h, &client, &hash).await?;
        get(&client, &h.table, h.tenant.id.to_string(), "tenant".into()).await?;
        samples
            .entry("login/before")
            .or_default()
            .push(started.elapsed());

        h.counter.reset();
        let reply = handler_call(&h, &list_body, &auth).await?;
        requests.insert("auth_api_key", h.counter.total());
        let listed = reply["data"]["auth_api_key"].as_array().map_or(0, Vec::len);
        if listed != 20 {
            bail!("expected 20 keys, listed {listed}");
        }
        samples
            .entry("auth_api_key/handler")
            .or_default()
            .push(elapsed(&reply));
        let started = Instant::now();
        bare_auth(&h, &client, &hash).await?;
        query(
            &client,
            &h.table,
            h.tenant.id.to_string(),
            format!("ukey#{}#", h.tenant.admin_id),
        )
        .await?;
        query(&client, &h.table, h.tenant.id.to_string(), "skey#".into()).await?;
        samples
            .entry("auth_api_key/bare")
            .or_default()
            .push(started.elapsed());

        let reply = handler_call(&h, &create_body, &auth).await?;
        samples
            .entry("create_api_key/handler")
            .or_default()
            .push(elapsed(&reply));
        let id: Uuid = serde_json::from_value(reply["data"]["create_api_key"]["id"].clone())?;
        h.service().revoke_api_key(&principal, id).await?;

        let stored = bare_key(&h);
        let started = Instant::now();
        bare_auth(&h, &client, &hash).await?;
        bare_create(&h, &client, &stored).await?;
        samples
            .entry("create_api_key/bare")
            .or_default()
            .push(started.elapsed());
        let audit = bench_audit(&h, AuditAction::KeyRevoked, &stored);
        let deleted = h
            .service()
            .store()
            .delete_key(&stored.key_ref(), None, None, &audit)
            .await?;
        if deleted != apikeys_store::KeyDelete::Deleted {
            bail!("the benchmark's key was not deleted: {deleted:?}");
        }
    }
    // The one request per key per interval that records the key's use: the
    // clock moved past the interval before each (at steady state, every
    // other request of the interval is the auth_info above: no write).
    let interval = h.service().config().last_used_interval + time::Duration::seconds(1);
    for _ in 0..iterations.div_ceil(3) {
        h.clock.set(h.now() + interval);
        h.counter.reset();
        let reply = handler_call(&h, &info_body, &auth).await?;
        requests.insert("auth_info_recording", h.counter.total());
        samples
            .entry("auth_info_recording/handler")
            .or_default()
            .push(elapsed(&reply));
    }
    sign_in(iterations, &mut samples, &mut requests).await?;
    let mut results: BTreeMap<String, Value> = samples
        .into_iter()
        .map(|(k, v)| (k.to_string(), summary(v)))
        .collect();
    for (operation, count) in requests {
        results.insert(format!("{operation}/requests"), json!(count));
    }
    Ok(json!(results))
}

/// A person's sign-in (`log_in` with the test provider's ID token: the
/// first, which fetches the JWKS, then with it cached) and a request
/// authenticated by the session it gave, beside a bare consistent GetItem.
async fn sign_in(
    iterations: usize,
    samples: &mut BTreeMap<&'static str, Vec<StdDuration>>,
    requests: &mut BTreeMap<&'static str, u64>,
) -> Result<()> {
    let p = apikeys_tests::idp::provider().await;
    p.link("bench-sub", p.h.tenant.admin_id).await;
    let client = p.h.service().store().client().clone();
    let bare = TokenHash::of("apk_bench");
    let mut session = String::new();
    for i in 0..iterations {
        // Sign-ins are bounded (one an identity each 12 s once 5 are
        // spent): the service's clock moves 13 s before each, and the ID
        // token is made at that time, so each is measured, never refused.
        p.h.clock.set(p.h.now() + time::Duration::seconds(13));
        let token = p.sign(&p.claims("bench-sub", "bench@example.com"));
        let body = prefect_body(
            "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token } }",
            Some(json!({"t": token})),
        );
        p.h.counter.reset();
        let request = event(Route::RestGraphql, "POST", &body, &[]);
        let started = Instant::now();
        let response = apikeys_graphql::handle(&p.h.app, request).await;
        let took = started.elapsed();
        let json: Value = serde_json::from_slice(response.body().as_ref())?;
        let Some(access) = json["data"]["log_in"]["access_token"].as_str() else {
            bail!("log_in failed: {json}");
        };
        session = access.to_string();
        requests.insert("log_in", p.h.counter.total());
        let name = if i == 0 {
            "log_in_first/handler"
        } else {
            "log_in/handler"
        };
        samples.entry(name).or_default().push(took);
        let started = Instant::now();
        get(
            &client,
            &p.h.table,
            format!("hash#{}", bare.as_str()),
            "hash".into(),
        )
        .await?;
        samples
            .entry("log_in/bare")
            .or_default()
            .push(started.elapsed());
    }
    let info = prefect_body("query { auth_info { tenant_id user_id } }", None);
    let auth = format!("Session {session}");
    for _ in 0..iterations {
        p.h.counter.reset();
        let reply = handler_call(&p.h, &info, &auth).await?;
        requests.insert("session_auth_info", p.h.counter.total());
        samples
            .entry("session_auth_info/handler")
            .or_default()
            .push(elapsed(&reply));
    }
    Ok(())
}

fn bare_key(h: &Harness) -> StoredKey {
    let secret = NewKey::generate("apk");
    StoredKey {
        key: apikeys_core::domain::ApiKey {
            id: Uuid::new_v4(),
            name: "bench".into(),
            tenant_id: h.tenant.id,
            owner_id: h.tenant.admin_id,
            owner_type: AccountType::User,
            created: h.now(),
            created_by: h.tenant.admin_id,
            created_by_name: Some("alice".into()),
            expires_at: None,
            hint: secret.hint(),
            created_by_key_id: None,
            rotated_from: None,
            replaced_by: None,
            role_ceiling: None,
            disabled: false,
            allowed_networks: Vec::new(),
            scopes: Vec::new(),
            leaked: false,
            last_used: None,
        },
        hash: secret.hash(),
        copy: None,
    }
}

/// An audit record about `stored`, as the service writes one.
fn bench_audit(
    h: &Harness,
    action: AuditAction,
    stored: &StoredKey,
) -> apikeys_core::audit::AuditRecord {
    let event = AuditEvent::new(
        action,
        AuditActor::operator(),
        TargetType::ApiKey,
        stored.key.id,
        Some(&stored.key.name),
    );
    h.service().audit(h.tenant.id, event)
}

/// The one transaction creating a key must make, with its audit record.
async fn bare_create(h: &Harness, client: &Client, stored: &StoredKey) -> Result<()> {
    let (listing, lookup) = key_items(stored);
    let put = |item| -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&h.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        Ok(TransactWriteItem::builder().put(put).build())
    };
    let update = Update::builder()
        .table_name(&h.table)
        .key("pk", s(h.tenant.id.to_string()))
        .key("sk", s(format!("member#{}", h.tenant.admin_id)))
        .update_expression("ADD key_count :one")
        .condition_expression("attribute_exists(pk) AND key_count < :max")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":max", AttributeValue::N("40".into()))
        .build()?;
    client
        .transact_write_items()
        .transact_items(put(lookup)?)
        .transact_items(put(listing)?)
        .transact_items(TransactWriteItem::builder().update(update).build())
        .transact_items(audit_put(
            &h.table,
            &bench_audit(h, AuditAction::KeyCreated, stored),
        )?)
        .send()
        .await?;
    Ok(())
}

async fn load(url: String, key: String, concurrency: usize, requests: usize) -> Result<Value> {
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let body = Bytes::from(prefect_body("query { auth_info { tenant_id } }", None));
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key, body) = (client.clone(), url.clone(), key.clone(), body.clone());
        let (next, errors) = (Arc::clone(&next), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let request = hyper::Request::post(&url)
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let sent = Instant::now();
                let ok = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let bytes = response.into_body().collect().await.map(|b| b.to_bytes());
                        status == 200
                            && bytes.is_ok_and(|b| {
                                b.windows(9).any(|w| w == b"tenant_id")
                                    && !b.windows(6).any(|w| w == b"errors")
                            })
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut out = summary(all);
    out["requests_per_s"] = json!((requests as f64 / seconds).round());
    out["errors"] = json!(errors.load(Ordering::Relaxed));
    out["seconds"] = json!(seconds);
    Ok(out)
}

/// A fresh tenant whose service account "bot" holds `keys` keys.
async fn tenant_with_bot_keys(keys: usize) -> Result<Harness> {
    let h = Harness::new().await;
    let admin = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await?;
    let bot = h
        .service()
        .create_service_account(&admin, "bot", None, None)
        .await?;
    h.seed_keys(bot, AccountType::Service, keys).await;
    Ok(h)
}

async fn scaling() -> Result<Value> {
    let mut sweeps = BTreeMap::new();
    for live in [1_000usize, 10_000, 50_000] {
        let (report, counts) = sweep_cost(live).await;
        if report.swept != 50 {
            bail!("swept {} of 50", report.swept);
        }
        let total: u64 = counts.values().sum();
        sweeps.insert(
            live.to_string(),
            json!({"requests": total, "by_operation": counts}),
        );
    }
    let mut listings = BTreeMap::new();
    for keys in [10usize, 100, 1_000] {
        let h = tenant_with_bot_keys(keys).await?;
        let auth = format!("Bearer {}", h.tenant.admin_key);
        // At steady state: the key's use already recorded this interval.
        handler_call(&h, &prefect_body("{ hello }", None), &auth).await?;
        h.counter.reset();
        let reply = handler_call(
            &h,
            &prefect_body("query { auth_api_key { id } }", None),
            &auth,
        )
        .await?;
        let listed = reply["data"]["auth_api_key"].as_array().map_or(0, Vec::len);
        listings.insert(keys.to_string(), json!({"requests": h.counter.total(), "by_operation": h.counter.snapshot(), "listed": listed, "latency_us": elapsed(&reply).as_micros() as u64}));
    }
    // Removing one service account (which lists its keys under a lease)
    // among `accounts` accounts of 40 keys each: by its key index, and as
    // an account whose keys predate the index (found among all of them).
    let mut removals = BTreeMap::new();
    for accounts in [10usize, 100] {
        let h = Harness::new().await;
        let admin = h
            .service()
            .authenticate(Some(&h.tenant.admin_key), None)
            .await?;
        let mut ids = Vec::new();
        for i in 0..accounts {
            let sa = h
                .service()
                .create_service_account(&admin, &format!("bot{i}"), None, None)
                .await?;
            let keys = h.seed_keys(sa, AccountType::Service, 40).await;
            // The last account as an earlier version left it: not indexed.
            h.count_keys(h.tenant.id, sa, &keys, i + 1 < accounts).await;
            ids.push(sa);
        }
        let mut row = serde_json::Map::new();
        for (label, sa) in [("indexed", ids[0]), ("not_indexed", ids[accounts - 1])] {
            h.counter.reset();
            let started = Instant::now();
            if !h.service().delete_service_account(&admin, sa).await? {
                bail!("service account not removed");
            }
            let elapsed = started.elapsed();
            row.insert(
                label.into(),
                json!({"requests": h.counter.total(), "items_read": h.counter.items_read(), "by_operation": h.counter.snapshot(), "latency_us": elapsed.as_micros() as u64}),
            );
        }
        removals.insert(accounts.to_string(), Value::Object(row));
    }
    // A tenant key policy change, written onto every key of the tenant:
    // requests and time as the tenant's keys grow.
    let mut policies = BTreeMap::new();
    for keys in [100usize, 1_000, 4_000] {
        let h = tenant_with_bot_keys(keys).await?;
        let change = apikeys_service::PolicyChange {
            max_service_key_days: Some(90),
            ..Default::default()
        };
        h.counter.reset();
        let started = Instant::now();
        let view = h
            .service()
            .set_key_policy_as_operator("acme", &change)
            .await?;
        let elapsed = started.elapsed();
        if !view.applied {
            bail!("policy not applied");
        }
        policies.insert(
            keys.to_string(),
            json!({"requests": h.counter.total(), "by_operation": h.counter.snapshot(), "latency_us": elapsed.as_micros() as u64}),
        );
    }
    Ok(
        json!({"sweep_50_expired_among_live": sweeps, "admin_listing_of_service_account_keys": listings, "removal_of_one_service_account_with_40_keys_among_accounts": removals, "key_policy_change_among_keys": policies}),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let out = match cli.command {
        Command::Overhead { iterations } => overhead(iterations).await,
        Command::Load {
            url,
            key,
            concurrency,
            requests,
        } => load(url, key, concurrency, requests).await,
        Command::Scaling => scaling().await,
    }
    .context("measurement failed")?;
    println!("{out}");
    Ok(())
}
