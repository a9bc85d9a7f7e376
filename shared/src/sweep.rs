//! The expiry sweeper: removes expired keys at a cost proportional to what
//! expired, never to the size of the table.
//!
//! Design. The hash-lookup item of every *expiring* key carries `exp_bucket`
//! (the UTC hour of its expiry, `2031-01-02T03`) and `expires_at` (unix
//! seconds). Only those items appear in the sparse index `by_expiry`
//! (partition `exp_bucket`, sort `expires_at`); keys that never expire are not
//! in it at all. A sweep walks the hour buckets from its checkpoint (the first
//! hour not yet known to be clean) to the current hour and queries each with
//! `expires_at <= now`, so it reads only expired entries, plus one Query per
//! hour elapsed since the previous sweep: no Scan, and live keys (even ones
//! expiring later this hour) are never read.
//!
//! Each expired key is removed with its tenant-partition item (and its owner's
//! `key_count` decremented) in one transaction conditioned on `expires_at <=
//! now` on both items: a key whose expiry moved into the future survives, and
//! two concurrent sweeps only ever *skip* what the other already removed.
//! The checkpoint moves forward only (a conditional write), and only past hours
//! that have ended and were swept to the last page; a sweep that reaches its
//! deadline stops between pages and the next one resumes at its checkpoint.
//! Expiry is enforced at authentication regardless: the sweeper only keeps the
//! table clean, and DynamoDB TTL (30 days past expiry) is its backstop.

use std::time::{Duration as StdDuration, Instant};

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::audit::{describe_expiry, AuditAction, AuditActor, AuditEvent, TargetType};
use crate::store::{expiry_bucket, ExpiredEntry, Store, StoreError};

/// Where a sweep starts when no checkpoint exists yet (a new deployment): a
/// key can only have expired after it was created, and the schedule runs the
/// first sweep minutes after deployment.
pub const DEFAULT_LOOKBACK: Duration = Duration::hours(24);

/// Deletions in flight at once.
const CONCURRENCY: usize = 8;

/// What one sweep did: logged as one line and returned by the Lambda.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Expired keys removed.
    pub swept: u64,
    /// Entries already gone or no longer expired (another sweep, a change).
    pub skipped: u64,
    /// Entries that could not be removed (malformed, or errors after retries).
    pub failed: u64,
    /// Index pages read.
    pub pages: u64,
    /// Hour buckets queried.
    pub buckets: u64,
    /// Whether it reached the current hour (false: stopped at its deadline).
    pub complete: bool,
    /// The hour the next sweep starts from.
    pub checkpoint: String,
    pub duration_ms: u64,
}

pub struct Sweeper {
    store: Store,
    /// Stop this long before the deadline, leaving time to report.
    pub safety_margin: StdDuration,
    pub lookback: Duration,
    /// How long the audit records of swept keys are kept.
    pub audit_retention: Duration,
}

fn bucket_start(bucket: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]");
    let parsed = time::PrimitiveDateTime::parse(bucket, &format).ok();
    parsed.map(|t| t.assume_utc())
}

impl Sweeper {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            safety_margin: StdDuration::from_millis(500),
            lookback: DEFAULT_LOOKBACK,
            audit_retention: Duration::days(365),
        }
    }

    /// The same, keeping audit records as `retention` says (the
    /// deployment's `AUDIT_RETENTION_DAYS`).
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention;
        self
    }

    fn out_of_time(&self, deadline: Option<Instant>) -> bool {
        deadline.is_some_and(|d| {
            Instant::now()
                .checked_add(self.safety_margin)
                .is_none_or(|t| t >= d)
        })
    }

    /// Sweeps every key expired at `now`, stopping early near `deadline`.
    pub async fn sweep(
        &self,
        now: OffsetDateTime,
        deadline: Option<Instant>,
    ) -> Result<SweepReport, StoreError> {
        let started = Instant::now();
        let mut report = SweepReport::default();
        let current = expiry_bucket(now);
        let saved = self.store.sweep_checkpoint().await?;
        let mut bucket = match &saved {
            Some(saved) if bucket_start(saved).is_some() => saved.clone(),
            _ => expiry_bucket(now.checked_sub(self.lookback).unwrap_or(now)),
        };
        let mut stopped = false;
        'buckets: loop {
            report.buckets = report.buckets.saturating_add(1);
            let mut start = None;
            loop {
                if self.out_of_time(deadline) {
                    stopped = true;
                    break 'buckets;
                }
                let (entries, next) = self.store.expired_page(&bucket, now, start).await?;
                report.pages = report.pages.saturating_add(1);
                if !self.remove(entries, now, deadline, &mut report).await {
                    stopped = true;
                    break 'buckets;
                }
                start = next;
                if start.is_none() {
                    break;
                }
            }
            if bucket >= current {
                break;
            }
            // This hour has ended and is clean: later sweeps need not read it.
            let Some(next) = bucket_start(&bucket)
                .and_then(|t| t.checked_add(Duration::hours(1)))
                .map(expiry_bucket)
            else {
                break;
            };
            bucket = next;
        }
        if saved.as_deref() != Some(bucket.as_str()) {
            self.store.advance_sweep_checkpoint(&bucket).await?;
        }
        report.complete = !stopped;
        report.checkpoint = bucket;
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Removes a page's entries; `false` when it stopped for the deadline.
    async fn remove(
        &self,
        entries: Vec<Result<ExpiredEntry, StoreError>>,
        now: OffsetDateTime,
        deadline: Option<Instant>,
        report: &mut SweepReport,
    ) -> bool {
        let mut valid = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                Ok(entry) => valid.push(entry),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a malformed expiry entry");
                    report.failed = report.failed.saturating_add(1);
                }
            }
        }
        for chunk in valid.chunks(CONCURRENCY) {
            if self.out_of_time(deadline) {
                return false;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for entry in chunk {
                let (store, entry) = (self.store.clone(), entry.clone());
                let audit = AuditEvent::new(
                    AuditAction::KeyExpired,
                    AuditActor::sweeper(),
                    TargetType::ApiKey,
                    entry.key.key_id,
                    None,
                )
                .with_detail(format!(
                    "expired {}; removed by the sweeper",
                    describe_expiry(Some(entry.expires_at))
                ))
                .record(entry.key.tenant_id, now, self.audit_retention);
                tasks.spawn(async move { store.delete_expired(&entry, now, &audit).await });
            }
            while let Some(result) = tasks.join_next().await {
                match result {
                    Ok(Ok(true)) => report.swept = report.swept.saturating_add(1),
                    Ok(Ok(false)) => report.skipped = report.skipped.saturating_add(1),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not remove an expired key");
                        report.failed = report.failed.saturating_add(1);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "sweep task failed");
                        report.failed = report.failed.saturating_add(1);
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_utc_hours_that_sort_as_strings() {
        let t = time::macros::datetime!(2031-01-02 03:04:05 +02:00);
        assert_eq!(expiry_bucket(t), "2031-01-02T01");
        assert_eq!(
            bucket_start("2031-01-02T01"),
            Some(time::macros::datetime!(2031-01-02 01:00 UTC))
        );
        assert!(expiry_bucket(t) < expiry_bucket(t + Duration::hours(23)));
        assert_eq!(bucket_start("garbage"), None);
    }
}
