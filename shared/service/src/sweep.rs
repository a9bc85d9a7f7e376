//! The expiry sweeper: removes expired keys at a cost proportional to what
//! expired, never to the size of the table.
//!
//! Design. The hash-lookup item of every *expiring* key carries `exp_bucket`
//! (the UTC hour of its expiry, `2031-01-02T03`) and `expires_at` (unix
//! seconds). Only those items appear in the sparse index `by_expiry`
//! (partition `exp_bucket`, sort `expires_at`); keys that never expire are not
//! in it at all. A sweep walks the hour buckets from its checkpoint (the first
//! hour not yet walked to its end) to the current hour and queries each with
//! `expires_at <= now`, so it reads only expired entries, plus one Query per
//! hour elapsed since the previous sweep: no Scan, and live keys (even ones
//! expiring later this hour) are never read.
//!
//! Each expired key is removed with its tenant-partition item (and its owner's
//! `key_count` decremented) in one transaction conditioned on `expires_at <=
//! now` on both items: a key whose expiry moved into the future survives, and
//! two concurrent sweeps only ever *skip* what the other already removed.
//! The checkpoint moves forward only, and only past hours that have ended
//! and were walked to the last page; a sweep that reaches its deadline stops
//! between pages and the next one resumes at its checkpoint. An hour walked
//! to its end that still holds a key the sweep could not remove (a deletion
//! that failed after retries, a malformed entry) is kept in the checkpoint's
//! retry list, which every sweep reads again first, until nothing due is
//! left in it (skipped entries, gone or not expired by their own items, are
//! not due): no
//! key is ever given up on, and the cost stays one Query per hour that still
//! holds something due, plus the hours elapsed. Two sweeps that save at once
//! merge what they keep (a versioned write). A key whose owner no longer
//! exists (items deleted behind the service's back) is removed alone.
//! Expiry is enforced at authentication regardless: the sweeper only removes
//! what expired, and DynamoDB TTL (30 days past expiry) is its backstop.

use std::time::{Duration as StdDuration, Instant};

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use apikeys_core::audit::{describe_expiry, AuditAction, AuditActor, AuditEvent, TargetType};
use std::collections::BTreeSet;

use apikeys_store::{expiry_bucket, ExpiredEntry, Failure, Store, SweepCheckpoint};

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
    /// Hours left over by earlier sweeps that this one read again.
    pub retried: u64,
    /// Hours the next sweep will read again (keys this or an earlier sweep
    /// could not remove).
    pub left_over: u64,
    /// Keys warned that they expire within 7 days, and within 1 day.
    pub warned_7d: u64,
    pub warned_1d: u64,
    /// Whether it reached the current hour (false: stopped at its deadline).
    pub complete: bool,
    /// The hour the next sweep starts from.
    pub checkpoint: String,
    pub duration_ms: u64,
}

/// The warnings before expiry: within 7 days, and within 1 day.
pub const WARNING_WINDOWS: [Duration; 2] = [Duration::days(7), Duration::days(1)];

/// Hours kept for retrying at most; past it, the checkpoint stops before
/// the newer ones (so that they are walked again) instead.
const MAX_RETRY_BUCKETS: usize = 500;

/// How the walk of one hour ended.
enum Walked {
    /// Walked to its last page with every due key removed. Entries the
    /// sweep skipped may remain in the hour: keys gone meanwhile, or whose
    /// own items say they are not expired (an index entry that lagged a
    /// change of expiry): nothing due is left, but the hour need not be
    /// empty.
    Done,
    /// Some keys could not be removed: read this hour again next time.
    LeftOver,
    /// Out of time before its last page.
    Stopped,
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

    /// Sweeps every key expired at `now`, stopping early near `deadline`:
    /// first the hours earlier sweeps left keys in, then the hours from the
    /// checkpoint to the current one.
    pub async fn sweep(
        &self,
        now: OffsetDateTime,
        deadline: Option<Instant>,
    ) -> Result<SweepReport, Failure> {
        let started = Instant::now();
        let mut report = SweepReport::default();
        let current = expiry_bucket(now);
        let saved = self.store.sweep_checkpoint().await?;
        let mut bucket = match &saved.next_bucket {
            Some(saved) if bucket_start(saved).is_some() => saved.clone(),
            _ => expiry_bucket(now.checked_sub(self.lookback).unwrap_or(now)),
        };
        // Hours to read again next time: left over by earlier sweeps and not
        // cleaned by this one, or left over by this one.
        let mut retry = BTreeSet::new();
        let mut stopped = false;
        for (i, old) in saved.retry.iter().enumerate() {
            if bucket_start(old).is_none() {
                continue;
            }
            report.retried = report.retried.saturating_add(1);
            match self.sweep_bucket(old, now, deadline, &mut report).await? {
                Walked::Done => {}
                Walked::LeftOver => {
                    retry.insert(old.clone());
                }
                Walked::Stopped => {
                    retry.extend(saved.retry.iter().skip(i).cloned());
                    stopped = true;
                    break;
                }
            }
        }
        if !stopped {
            loop {
                report.buckets = report.buckets.saturating_add(1);
                match self
                    .sweep_bucket(&bucket, now, deadline, &mut report)
                    .await?
                {
                    Walked::Done => {}
                    Walked::LeftOver => {
                        retry.insert(bucket.clone());
                    }
                    Walked::Stopped => {
                        stopped = true;
                        break;
                    }
                }
                if bucket >= current {
                    break;
                }
                // This hour has ended and was walked to its end: later sweeps
                // start after it (reading it again only if it is kept above).
                let Some(next) = bucket_start(&bucket)
                    .and_then(|t| t.checked_add(Duration::hours(1)))
                    .map(expiry_bucket)
                else {
                    break;
                };
                bucket = next;
            }
        }
        // The current hour is walked again by the next sweep anyway.
        retry.remove(&bucket);
        // Past the bound, the oldest hours stay in the retry list and the
        // checkpoint stops before the rest: nothing is dropped either way.
        if retry.len() > MAX_RETRY_BUCKETS {
            let rest: Vec<String> = retry.iter().skip(MAX_RETRY_BUCKETS).cloned().collect();
            if let Some(first) = rest.first() {
                bucket = bucket.min(first.clone());
            }
            for r in rest {
                retry.remove(&r);
            }
        }
        let next = SweepCheckpoint {
            next_bucket: Some(bucket),
            retry,
            version: saved.version,
        };
        let written = if next.next_bucket == saved.next_bucket && next.retry == saved.retry {
            next
        } else {
            self.store.save_sweep_checkpoint(&saved, next).await?
        };
        if !stopped {
            self.warn_expiring(now, deadline, &mut report).await?;
        }
        report.complete = !stopped;
        report.checkpoint = written.next_bucket.unwrap_or_default();
        report.left_over = u64::try_from(written.retry.len()).unwrap_or(u64::MAX);
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Warns, once each, of keys about to expire: for each window (7 days,
    /// 1 day), the keys expiring between the window's edge as the last
    /// sweep left it and its edge now (`now` + the window), read from the
    /// expiry index hour by hour, so each key is read about once per window
    /// and the cost follows what is about to expire, never the number of
    /// keys. Each warning marks the key's hash item (`warned_7d`,
    /// `warned_1d`) in the transaction of its `KEY_EXPIRING_SOON` record:
    /// a key is warned at most once per window, however often it is read
    /// again (a sweep that failed part way leaves its edge where it was).
    /// The first sweep starts from `now`: every key already inside a window
    /// is warned once.
    async fn warn_expiring(
        &self,
        now: OffsetDateTime,
        deadline: Option<Instant>,
        report: &mut SweepReport,
    ) -> Result<(), Failure> {
        let saved = self.store.warning_checkpoint().await?;
        let mut until = [now.unix_timestamp(); 2];
        // The 1-day window first: the more urgent, never starved by a long
        // 7-day backlog.
        for window in [1, 0] {
            let Some(length) = WARNING_WINDOWS.get(window) else {
                continue;
            };
            let from = saved
                .until
                .get(window)
                .copied()
                .flatten()
                .unwrap_or(now.unix_timestamp())
                .max(now.unix_timestamp());
            let reached = self
                .warn_window(window, length, from, now, deadline, report)
                .await;
            if let Some(slot) = until.get_mut(window) {
                *slot = reached;
            }
        }
        if !self.store.save_warning_checkpoint(&saved, until).await? {
            tracing::info!("another sweep saved the warnings' edges first");
        }
        Ok(())
    }

    /// Walks one window from its edge `from` (unix seconds) to where it is
    /// now, hour by hour; answers how far it got: the end of the last hour
    /// walked to its last page with nothing left that could be warned
    /// (progress is kept hour by hour, so a deadline or a failure costs a
    /// repeat of one hour, never of the window). A malformed index entry is
    /// counted as failed and passed over (it can never be warned); a
    /// storage failure stops the window at that hour.
    async fn warn_window(
        &self,
        window: usize,
        length: &Duration,
        from: i64,
        now: OffsetDateTime,
        deadline: Option<Instant>,
        report: &mut SweepReport,
    ) -> i64 {
        let Some(edge) = now.checked_add(*length) else {
            return from;
        };
        let edge_s = edge.unix_timestamp();
        if edge_s <= from {
            return from;
        }
        let Ok(first) = OffsetDateTime::from_unix_timestamp(from.saturating_add(1)) else {
            return from;
        };
        let mut reached = from;
        let mut bucket = expiry_bucket(first);
        let last = expiry_bucket(edge);
        loop {
            let mut start = None;
            loop {
                if self.out_of_time(deadline) {
                    return reached;
                }
                let (entries, next) =
                    match self.store.expiring_page(&bucket, from, edge_s, start).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the keys about to expire");
                            report.failed = report.failed.saturating_add(1);
                            return reached;
                        }
                    };
                report.pages = report.pages.saturating_add(1);
                for entry in entries {
                    let Ok(entry) = entry else {
                        tracing::warn!("skipping a malformed expiry entry");
                        report.failed = report.failed.saturating_add(1);
                        continue;
                    };
                    match self.warn_one(entry, window, length, now).await {
                        Ok(true) if window == 0 => {
                            report.warned_7d = report.warned_7d.saturating_add(1)
                        }
                        Ok(true) => report.warned_1d = report.warned_1d.saturating_add(1),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "could not warn of an expiring key");
                            report.failed = report.failed.saturating_add(1);
                            return reached;
                        }
                    }
                }
                start = next;
                if start.is_none() {
                    break;
                }
            }
            // This hour is done: up to its end, or to the edge.
            let Some(next_start) =
                bucket_start(&bucket).and_then(|t| t.checked_add(Duration::hours(1)))
            else {
                return reached;
            };
            reached = next_start.unix_timestamp().saturating_sub(1).min(edge_s);
            if bucket >= last {
                return edge_s;
            }
            bucket = expiry_bucket(next_start);
        }
    }

    /// One key about to expire: read (its name for the record, and whether
    /// it is to be warned at all), then marked and recorded. Not warned: a
    /// key replaced by a rotation (its end is its grace, which its rotation
    /// chose), and one made with less than the window to live (made
    /// knowing; a 1-day CI key is not "expiring soon" the moment it is
    /// made). `Ok(false)`: not warned, or warned already, gone, or its
    /// expiry moved.
    async fn warn_one(
        &self,
        entry: ExpiredEntry,
        window: usize,
        length: &Duration,
        now: OffsetDateTime,
    ) -> Result<bool, Failure> {
        let k = &entry.key;
        let Some(stored) = self
            .store
            .key(k.tenant_id, k.owner_type, k.owner_id, k.key_id)
            .await?
        else {
            return Ok(false);
        };
        let made_knowing = entry
            .expires_at
            .checked_sub(*length)
            .is_some_and(|start_of_window| stored.key.created >= start_of_window);
        if stored.key.replaced_by.is_some() || made_knowing {
            return Ok(false);
        }
        let name = Some(stored.key.name);
        let audit = AuditEvent::new(
            AuditAction::KeyExpiringSoon,
            AuditActor::sweeper(),
            TargetType::ApiKey,
            k.key_id,
            name.as_deref(),
        )
        .with_detail(format!(
            "expires {} (within {} day{}); owner {}",
            describe_expiry(Some(entry.expires_at)),
            length.whole_days(),
            if length.whole_days() == 1 { "" } else { "s" },
            k.owner_id
        ))
        .record(k.tenant_id, now, self.audit_retention);
        self.store.warn_expiring(&entry, window, now, &audit).await
    }

    /// Reads one hour of the index to its last page, removing what expired.
    async fn sweep_bucket(
        &self,
        bucket: &str,
        now: OffsetDateTime,
        deadline: Option<Instant>,
        report: &mut SweepReport,
    ) -> Result<Walked, Failure> {
        let failed_before = report.failed;
        let mut start = None;
        loop {
            if self.out_of_time(deadline) {
                return Ok(Walked::Stopped);
            }
            let (entries, next) = self.store.expired_page(bucket, now, start).await?;
            report.pages = report.pages.saturating_add(1);
            if !self.remove(entries, now, deadline, report).await {
                return Ok(Walked::Stopped);
            }
            start = next;
            if start.is_none() {
                break;
            }
        }
        Ok(if report.failed > failed_before {
            Walked::LeftOver
        } else {
            Walked::Done
        })
    }

    /// Removes a page's entries; `false` when it stopped for the deadline.
    async fn remove(
        &self,
        entries: Vec<Result<ExpiredEntry, apikeys_store::StoreError>>,
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
                let retention = self.audit_retention;
                tasks.spawn(async move {
                    // The key's name is on its listing item only (the index
                    // carries what locates it): one read, for the record.
                    let k = &entry.key;
                    let name = store
                        .key(k.tenant_id, k.owner_type, k.owner_id, k.key_id)
                        .await?
                        .map(|stored| stored.key.name);
                    let audit = AuditEvent::new(
                        AuditAction::KeyExpired,
                        AuditActor::sweeper(),
                        TargetType::ApiKey,
                        k.key_id,
                        name.as_deref(),
                    )
                    .with_detail(format!(
                        "expired {}; removed by the sweeper",
                        describe_expiry(Some(entry.expires_at))
                    ))
                    .record(k.tenant_id, now, retention);
                    store.delete_expired(&entry, now, &audit).await
                });
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
