//! The expiry index (`by_expiry`, sparse: only hash items of expiring keys)
//! the sweeper walks hour by hour, and the removal of expired keys.

use crate::audit::AuditRecord;
use crate::domain::Membership;

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
    ) -> Result<bool> {
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
            Err(r) => Err(r.unexplained("delete_expired_keys")),
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
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EXPIRY_INDEX)
            .key_condition_expression("exp_bucket = :bucket AND expires_at <= :now")
            .expression_attribute_values(":bucket", s(bucket))
            .expression_attribute_values(":now", n(now.unix_timestamp()))
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
    ) -> Result<bool> {
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
                    Err(r) => Err(r.unexplained("delete_expired")),
                }
            }
            KeyDelete::KeyGone | KeyDelete::CallerNotAdmin => Ok(false),
        }
    }
}
