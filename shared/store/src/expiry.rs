//! The expiry index (`by_expiry`, sparse: only hash items of expiring keys)
//! the sweeper walks hour by hour, and the removal of expired keys.

use super::Membership;
use apikeys_core::audit::AuditRecord;

use super::*;

pub const EXPIRY_INDEX: &str = "by_expiry";

/// Entries per page of the expiry index.
const EXPIRY_PAGE: i32 = 100;

/// An entry of the expiry index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredEntry {
    pub key: KeyRef,
    pub expires_at: OffsetDateTime,
}

/// The sweeper's index partition for an expiry time: its UTC hour.
pub fn expiry_bucket(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour()
    )
}

fn expired_entry_from(item: &Item) -> Result<ExpiredEntry> {
    let f = Fields(item);
    let hash = f
        .s("pk")?
        .strip_prefix("hash#")
        .ok_or_else(|| StoreError::Corrupt(f.name(), "pk"))?;
    Ok(ExpiredEntry {
        key: KeyRef {
            tenant_id: f.uuid("tenant_id")?,
            key_id: f.uuid("key_id")?,
            owner_id: f.uuid("owner_id")?,
            owner_type: f.account_type("owner_type")?,
            hash: TokenHash::from_stored(hash.to_string()),
        },
        expires_at: f.time("expires_at")?,
    })
}

/// Expired keys removed in one transaction to make room for a new one.
pub const EXPIRED_PER_TRANSACTION: usize = 30;

impl Store {
    /// Removes some expired keys of one owner in one transaction, each only if
    /// it has expired by `now`, with its audit record: what makes room when an
    /// owner is at the limit. At most [`EXPIRED_PER_TRANSACTION`] keys (3
    /// items each, with the owner's and the actor's change counter: within
    /// DynamoDB's 100).
    pub async fn delete_expired_keys(
        &self,
        owner: &Membership,
        keys: &[(KeyRef, AuditRecord)],
        now: OffsetDateTime,
    ) -> Changed<bool> {
        if keys.is_empty() {
            return Ok(false);
        }
        let keys = keys.get(..EXPIRED_PER_TRANSACTION).unwrap_or(keys);
        let mut tx = Tx::new();
        for (i, (key, _)) in keys.iter().enumerate() {
            push_key_deletes(&self.table, &mut tx, Part::KeyAt(i), key, Some(now))?;
        }
        let removed = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        let ids: Vec<Uuid> = keys.iter().map(|(key, _)| key.key_id).collect();
        let index = KeyIndex::of(owner.account_type, &[], &ids);
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                key_of(tenant_pk(owner.tenant_id), member_sk(owner.user_id)),
                &format!("ADD key_count :minus{}", index.remove(false)),
                OWNER_EXISTS,
                values([(":minus", n(removed.saturating_neg()))]),
                index.names(),
            )?,
        );
        // Made on behalf of the member creating a key: counted as one of
        // its changes (the tail counts the first record's actor), so that a
        // refused creation has changed nothing.
        let audits: Vec<&AuditRecord> = keys.iter().map(|(_, audit)| audit).collect();
        match self.commit(tx, owner.tenant_id, None, &audits).await? {
            Ok(()) => Ok(true),
            // One was revoked or swept meanwhile, or the owner is gone.
            Err(r) if !r.keys_at().is_empty() || r.has(Part::Member) => Ok(false),
            Err(r) => Err(r.unexplained("delete_expired_keys").into()),
        }
    }

    /// One page of the expiry index: entries of `bucket` expired at `now`.
    /// A malformed entry comes back as an error in its place.
    #[allow(clippy::type_complexity)]
    pub async fn expired_page(
        &self,
        bucket: &str,
        now: OffsetDateTime,
        start: Option<Item>,
    ) -> Result<(Vec<Result<ExpiredEntry>>, Option<Item>)> {
        self.expiry_page(bucket, None, now.unix_timestamp(), start)
            .await
    }

    /// One page of the expiry index's `bucket`: entries expiring in
    /// (`after`, `until`] (unix seconds; no lower bound without `after`).
    #[allow(clippy::type_complexity)]
    async fn expiry_page(
        &self,
        bucket: &str,
        after: Option<i64>,
        until: i64,
        start: Option<Item>,
    ) -> Result<(Vec<Result<ExpiredEntry>>, Option<Item>)> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EXPIRY_INDEX)
            .expression_attribute_values(":bucket", s(bucket))
            .expression_attribute_values(":until", n(until));
        query = match after {
            None => query.key_condition_expression("exp_bucket = :bucket AND expires_at <= :until"),
            Some(after) => query
                .key_condition_expression(
                    "exp_bucket = :bucket AND expires_at BETWEEN :after AND :until",
                )
                .expression_attribute_values(":after", n(after.saturating_add(1))),
        };
        let out = query
            .set_exclusive_start_key(start)
            .limit(EXPIRY_PAGE)
            .send()
            .await?;
        let entries = out.items().iter().map(expired_entry_from).collect();
        Ok((entries, out.last_evaluated_key))
    }

    /// Removes one expired key unless it is gone or no longer expired, with
    /// its audit record. `Ok(false)`: nothing to do (skipped).
    pub async fn delete_expired(
        &self,
        entry: &ExpiredEntry,
        now: OffsetDateTime,
        audit: &AuditRecord,
    ) -> Changed<bool> {
        match self.delete_key(&entry.key, Some(now), None, audit).await? {
            KeyDelete::Deleted => Ok(true),
            // Only its owner is gone (removed outside our transactions):
            // the key goes alone, with its record.
            KeyDelete::OwnerGone => {
                let mut tx = Tx::new();
                push_key_deletes(&self.table, &mut tx, Part::Key, &entry.key, Some(now))?;
                match self.commit(tx, entry.key.tenant_id, None, &[audit]).await? {
                    Ok(()) => Ok(true),
                    Err(r) if r.has(Part::Key) => Ok(false),
                    Err(r) => Err(r.unexplained("delete_expired").into()),
                }
            }
            KeyDelete::KeyGone | KeyDelete::CallerNotAdmin => Ok(false),
        }
    }
}

/// The sweeper's warnings before expiry: how far each window's leading edge
/// has been walked (unix seconds: keys expiring up to then were warned).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WarningCheckpoint {
    /// Per window (7 days, 1 day): the edge walked so far.
    pub until: [Option<i64>; 2],
    pub version: i64,
}

/// The attribute marking a key warned for window `i` (0: 7 days, 1: 1 day).
fn warned_attribute(window: usize) -> &'static str {
    if window == 0 {
        "warned_7d"
    } else {
        "warned_1d"
    }
}

impl Store {
    /// One page of the expiry index: entries of `bucket` expiring in
    /// (`after`, `until`] (unix seconds).
    #[allow(clippy::type_complexity)]
    pub async fn expiring_page(
        &self,
        bucket: &str,
        after: i64,
        until: i64,
        start: Option<Item>,
    ) -> Result<(Vec<Result<ExpiredEntry>>, Option<Item>)> {
        self.expiry_page(bucket, Some(after), until, start).await
    }

    /// Marks a key warned for window `window` (0: 7 days, 1: 1 day) with its
    /// audit record, once: only while it still expires at `expires_at` and
    /// was not warned for that window. `Ok(false)`: already warned, gone,
    /// or its expiry changed.
    pub async fn warn_expiring(
        &self,
        entry: &ExpiredEntry,
        window: usize,
        at: OffsetDateTime,
        audit: &AuditRecord,
    ) -> Changed<bool> {
        let attribute = warned_attribute(window);
        let mut tx = Tx::new();
        tx.push(
            Part::Key,
            update(
                &self.table,
                key_of(hash_pk(&entry.key.hash), "hash".into()),
                &format!("SET {attribute} = :at"),
                &format!(
                    "attribute_exists(pk) AND expires_at = :exp AND attribute_not_exists({attribute})"
                ),
                values([
                    (":at", n(at.unix_timestamp())),
                    (":exp", n(entry.expires_at.unix_timestamp())),
                ]),
            )?,
        );
        match self.commit(tx, entry.key.tenant_id, None, &[audit]).await? {
            Ok(()) => Ok(true),
            Err(r) if r.has(Part::Key) => Ok(false),
            Err(r) => Err(r.unexplained("warn_expiring").into()),
        }
    }

    pub async fn warning_checkpoint(&self) -> Result<WarningCheckpoint> {
        let Some(item) = self.get("sweeper".into(), "warnings".into()).await? else {
            return Ok(WarningCheckpoint::default());
        };
        let f = Fields(&item);
        Ok(WarningCheckpoint {
            until: [f.opt_n("until_7d")?, f.opt_n("until_1d")?],
            version: f.opt_n("cp_version")?.unwrap_or(0),
        })
    }

    /// Saves the edges walked, only over the version read (a concurrent
    /// sweep's save wins; this one's work is then done again, and its marks
    /// make that a no-op). `Ok(false)`: not saved.
    pub async fn save_warning_checkpoint(
        &self,
        read: &WarningCheckpoint,
        until: [i64; 2],
    ) -> Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of("sweeper".into(), "warnings".into())))
            .update_expression("SET until_7d = :a, until_1d = :b, cp_version = :v")
            .expression_attribute_values(":a", n(until[0]))
            .expression_attribute_values(":b", n(until[1]))
            .expression_attribute_values(":v", n(read.version.saturating_add(1)));
        self.conditional(
            super::checkpoint::over_version(update, read.version),
            Repeat::Idempotent,
        )
        .await
    }
}
