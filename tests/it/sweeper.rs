//! The expiry sweeper, driven by the real scheduled event, against the local
//! DynamoDB: what it removes, what it keeps, deadlines, and its request cost.

use apikeys_core::audit::AuditAction;
use std::time::{Duration as StdDuration, Instant};

use apikeys_service::sweep::{SweepReport, Sweeper};
use apikeys_service::KeyRequest;
use apikeys_store::expiry_bucket;
use apikeys_sweeper::{App, ScheduledEvent};
use apikeys_tests::{sweep_cost, unauthenticated, Harness, SCHEDULED_EVENT};
use aws_sdk_dynamodb::types::AttributeValue;
use time::{Duration, OffsetDateTime};

/// Issues a key to `username` of `slug` expiring at `expires_at`; returns the secret.
async fn key(
    h: &Harness,
    slug: &str,
    username: &str,
    expires_at: Option<OffsetDateTime>,
) -> String {
    let request = KeyRequest {
        name: "k",
        expires_at,
        role_ceiling: None,
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    let (_, secret) = h
        .service()
        .issue_key(slug, username, request)
        .await
        .expect("issue key");
    secret.expose_secret().to_string()
}

/// Runs the sweeper Lambda's handler with the sam-generated scheduled event.
async fn sweep_via_lambda(h: &Harness) -> SweepReport {
    let app = App::new(h.service().store().clone(), h.clock.clone());
    let payload: ScheduledEvent = serde_json::from_str(SCHEDULED_EVENT).expect("scheduled event");
    let event = lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default());
    apikeys_sweeper::handle(&app, event).await.expect("sweep")
}

async fn works(h: &Harness, key: &str) -> bool {
    h.gql(key, "query { hello }", None).await != unauthenticated()
}

#[tokio::test]
async fn expired_keys_of_every_tenant_go_with_their_lookups_and_live_keys_stay() {
    let h = Harness::new().await;
    h.add_tenant("globex", "gina").await;
    let t0 = h.now();
    let mut expiring = Vec::new();
    let mut live = Vec::new();
    for (slug, user) in [("acme", "alice"), ("globex", "gina")] {
        for s in [10, 20, 30] {
            expiring.push(key(&h, slug, user, Some(t0 + Duration::seconds(s))).await);
        }
        live.push(key(&h, slug, user, Some(t0 + Duration::hours(2))).await);
        live.push(key(&h, slug, user, Some(t0 + Duration::seconds(61))).await);
        live.push(key(&h, slug, user, None).await);
    }
    assert_eq!(h.assert_consistent().await, 2 + expiring.len() + live.len());

    h.clock.set(t0 + Duration::seconds(60));
    let report = sweep_via_lambda(&h).await;
    assert_eq!(
        (report.swept, report.skipped, report.failed),
        (6, 0, 0),
        "{report:?}"
    );
    assert!(report.complete);
    assert_eq!(
        h.assert_consistent().await,
        2 + live.len(),
        "only the expired keys are gone"
    );
    // Each record of a swept key names it.
    for slug in ["acme", "globex"] {
        let log = h.service().audit_log_of(slug, 100, None).await.unwrap();
        let expired: Vec<_> = log
            .iter()
            .filter(|(r, _)| r.action == AuditAction::KeyExpired)
            .collect();
        assert_eq!(expired.len(), 3, "{slug}");
        assert!(
            expired.iter().all(|(r, _)| r.target_name.is_some()),
            "{slug}: {expired:?}"
        );
    }
    for secret in &live {
        assert!(works(&h, secret).await);
    }
    for secret in &expiring {
        assert!(!works(&h, secret).await);
    }

    // A second sweep finds nothing; one later finds the key that expired since.
    assert_eq!(sweep_via_lambda(&h).await.swept, 0);
    h.clock.set(t0 + Duration::seconds(61));
    assert_eq!(sweep_via_lambda(&h).await.swept, 2);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_key_whose_expiry_moved_into_the_future_is_not_swept() {
    let h = Harness::new().await;
    let t0 = h.now();
    let secret = key(&h, "acme", "alice", Some(t0 + Duration::seconds(10))).await;
    let now = t0 + Duration::seconds(20);
    let store = h.service().store();
    // The sweep has read the index entry...
    let (entries, _) = store
        .expired_page(&expiry_bucket(t0), now, None)
        .await
        .unwrap();
    let entry = entries.into_iter().next().expect("an entry").unwrap();
    // ...when the key's expiry is changed on both of its items.
    let later = AttributeValue::N((t0 + Duration::hours(1)).unix_timestamp().to_string());
    for item in h.items().await {
        if item.get("key_id") == Some(&AttributeValue::S(entry.key.key_id.to_string())) {
            h.client
                .update_item()
                .table_name(&h.table)
                .key("pk", item["pk"].clone())
                .key("sk", item["sk"].clone())
                .update_expression("SET expires_at = :later")
                .expression_attribute_values(":later", later.clone())
                .send()
                .await
                .unwrap();
        }
    }
    assert!(
        !store
            .delete_expired(
                &entry,
                now,
                &h.audit(AuditAction::KeyExpired, entry.key.key_id)
            )
            .await
            .unwrap(),
        "it must be skipped"
    );
    h.clock.set(now);
    assert!(works(&h, &secret).await);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_sweep_near_its_deadline_stops_early_and_the_next_one_finishes() {
    let h = Harness::new().await;
    let t0 = h.now();
    h.add_expiring_keys(50, t0).await;
    let mut sweeper = Sweeper::new(h.service().store().clone());
    sweeper.safety_margin = StdDuration::ZERO;
    let now = t0 + Duration::minutes(5);
    let first = sweeper
        .sweep(now, Some(Instant::now() + StdDuration::from_millis(3)))
        .await
        .unwrap();
    assert!(!first.complete, "{first:?}");
    assert!(first.swept < 50, "{first:?}");
    let second = sweeper.sweep(now, None).await.unwrap();
    assert!(second.complete);
    assert_eq!(first.swept + second.swept, 50, "{first:?} {second:?}");
    assert_eq!(
        h.assert_consistent().await,
        3,
        "the three issued keys that never expire"
    );
}

#[tokio::test]
async fn concurrent_sweeps_neither_fail_nor_double_count() {
    let h = Harness::new().await;
    let t0 = h.now();
    for i in 0..20 {
        key(&h, "acme", "alice", Some(t0 + Duration::seconds(1 + i))).await;
    }
    let a = Sweeper::new(h.service().store().clone());
    let b = Sweeper::new(h.service().store().clone());
    let now = t0 + Duration::minutes(1);
    let (ra, rb) = tokio::join!(a.sweep(now, None), b.sweep(now, None));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.failed + rb.failed, 0);
    assert_eq!(ra.swept + rb.swept, 20, "{ra:?} {rb:?}");
    assert_eq!(h.assert_consistent().await, 1);
}

#[tokio::test]
async fn sweep_requests_grow_with_expired_keys_not_with_live_ones() {
    let live: usize = std::env::var("SWEEP_LIVE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let (report, counts) = sweep_cost(live).await;
    let total: u64 = counts.values().sum();
    println!(
        "sweep of {live} live + 50 expired keys: {total} DynamoDB requests {counts:?}; {report:?}"
    );
    assert_eq!(report.swept, 50, "{report:?}");
    assert_eq!(counts.get("Scan"), None);
    assert_eq!(counts.get("TransactWriteItems"), Some(&50));
    // Per expired key: its transaction, and one read of its name for the
    // record (issue 19.11); per hour walked, a Query (and a page more). The
    // warnings before expiry add their checkpoint's read and write and a
    // Query per hour each window's edge moved into (here 1 minute: at most
    // 2 hours per window), and nothing per live key.
    assert_eq!(counts.get("GetItem"), Some(&52));
    assert!(
        total <= 2 * 50 + 2 * report.buckets + 2 + (1 + 4 + 1),
        "{total} requests for 50 expired keys: {counts:?}"
    );
    assert_eq!((report.warned_7d, report.warned_1d), (0, 0), "{report:?}");
}

#[tokio::test]
async fn a_malformed_index_entry_is_counted_as_failed_and_the_rest_are_swept() {
    let h = Harness::new().await;
    let t0 = h.now();
    for i in 0..5 {
        key(&h, "acme", "alice", Some(t0 + Duration::seconds(1 + i))).await;
    }
    // An entry of the expiry index with no tenant, owner or key id.
    h.client
        .put_item()
        .table_name(&h.table)
        .item("pk", AttributeValue::S("hash#poison".into()))
        .item("sk", AttributeValue::S("hash".into()))
        .item("exp_bucket", AttributeValue::S(expiry_bucket(t0)))
        .item(
            "expires_at",
            AttributeValue::N(t0.unix_timestamp().to_string()),
        )
        .send()
        .await
        .unwrap();
    let report = Sweeper::new(h.service().store().clone())
        .sweep(t0 + Duration::minutes(1), None)
        .await
        .unwrap();
    assert_eq!((report.swept, report.failed), (5, 1), "{report:?}");
    assert!(report.complete);
}

/// A key about to expire is warned once within 7 days and once within 1
/// day, however many sweeps read it; a key made with less than a window to
/// live is not warned for that window (made knowing); a key that never
/// expires, or expires later, is not; the records carry no secret.
#[tokio::test]
async fn an_expiring_key_is_warned_once_per_window_across_many_sweeps() {
    let h = Harness::new().await;
    let t0 = h.now();
    let ten = key(&h, "acme", "alice", Some(t0 + Duration::days(10))).await;
    let three = key(&h, "acme", "alice", Some(t0 + Duration::days(3))).await;
    let later = key(&h, "acme", "alice", Some(t0 + Duration::days(30))).await;
    let never = key(&h, "acme", "alice", None).await;
    let _ = (&later, &never);
    let sweeper = Sweeper::new(h.service().store().clone());
    let mut warned = (0, 0);
    // Every 6 hours for 10 days and a bit.
    let mut now = t0;
    while now < t0 + Duration::days(10) + Duration::hours(7) {
        let report = sweeper.sweep(now, None).await.unwrap();
        assert_eq!(report.failed, 0, "{report:?}");
        warned.0 += report.warned_7d;
        warned.1 += report.warned_1d;
        now += Duration::hours(6);
    }
    // The 10-day key: both; the 3-day key: the 1-day warning only.
    assert_eq!(warned, (1, 2));
    let records = h
        .service()
        .store()
        .audit_page(h.tenant.id, 100, None)
        .await
        .unwrap();
    let warnings: Vec<_> = records
        .iter()
        .filter(|(r, _)| r.action == apikeys_core::audit::AuditAction::KeyExpiringSoon)
        .collect();
    assert_eq!(warnings.len(), 3);
    for (r, _) in &warnings {
        let detail = r.detail.clone().unwrap_or_default();
        assert!(
            detail.contains("within 7 days") || detail.contains("within 1 day"),
            "{detail}"
        );
        for secret in [&ten, &three] {
            assert!(!detail.contains(secret.as_str()), "{detail}");
        }
    }
}

/// A sweep that reaches its deadline part way keeps what it walked: the
/// next one goes on from there, and no key is warned twice or never.
#[tokio::test]
async fn a_warning_backlog_is_worked_off_across_sweeps_that_run_out_of_time() {
    let h = Harness::new().await;
    let t0 = h.now();
    h.add_member("acme", "bob", apikeys_core::domain::Role::User)
        .await;
    // Made long before their expiry (so not "made knowing"), then the
    // clock moves to 5 days before it: a backlog of 70 keys at the first
    // sweep (a deployment on an existing fleet).
    for i in 0..35 {
        for who in ["alice", "bob"] {
            key(
                &h,
                "acme",
                who,
                Some(t0 + Duration::days(30) + Duration::minutes(i * 7)),
            )
            .await;
        }
    }
    let mut sweeper = Sweeper::new(h.service().store().clone());
    sweeper.lookback = Duration::hours(1);
    let start = t0 + Duration::days(25);
    let (mut warned, mut sweeps) = (0, 0);
    for i in 0..200 {
        let now = start + Duration::minutes(i);
        // A deadline that lets a sweep do only part of the work.
        // (the sweeper keeps 500 ms of it back to report).
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(750);
        let report = sweeper.sweep(now, Some(deadline)).await.unwrap();
        assert_eq!(report.failed, 0, "{report:?}");
        warned += report.warned_7d;
        sweeps += 1;
        if warned >= 70 {
            break;
        }
    }
    assert_eq!(warned, 70, "every key warned once, across {sweeps} sweeps");
    assert!(
        sweeps > 1,
        "the deadline cut no sweep short: the test tests nothing"
    );
    let report = sweeper
        .sweep(start + Duration::hours(4), None)
        .await
        .unwrap();
    assert_eq!(report.warned_7d, 0, "{report:?}");
}
