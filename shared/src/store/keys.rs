//! API keys: the listing item and hash lookup of each key, their reads,
//! creation and removal, and the expiry index the sweeper walks.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::Delete;

use crate::audit::AuditRecord;
use crate::config::MAX_KEYS_PER_OWNER;
use crate::domain::{ApiKey, Membership, Tenant};

use super::*;

pub const EXPIRY_INDEX: &str = "by_expiry";
/// Tries at saving the sweep checkpoint against concurrent sweeps.
const CHECKPOINT_TRIES: usize = 4;

/// Where the sweeps stand: the first hour not yet walked, and the hours
/// already walked that still hold keys a sweep could not remove (a failed
/// deletion, a malformed entry), which every sweep reads again until they
/// are clean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepCheckpoint {
    pub next_bucket: Option<String>,
    pub retry: BTreeSet<String>,
    /// Bumped by every save (0: never saved).
    pub version: i64,
}

/// Entries per page of the expiry index.
const EXPIRY_PAGE: i32 = 100;
/// Keys stay this long past expiry before DynamoDB TTL removes them: TTL is a
/// backstop for a stopped sweeper, never what makes a key invalid.
const TTL_GRACE_SECS: i64 = 30 * 24 * 3600;

/// A key as stored in its tenant's partition: metadata plus the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub key: ApiKey,
    pub hash: TokenHash,
    /// Written onto the hash item with a new key; not read back by listings.
    pub copy: Option<AuthCopy>,
}

/// Where a key's two items are: enough to remove it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub owner_id: Uuid,
    pub owner_type: AccountType,
    pub hash: TokenHash,
}

impl StoredKey {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            tenant_id: self.key.tenant_id,
            key_id: self.key.id,
            owner_id: self.key.owner_id,
            owner_type: self.key.owner_type,
            hash: self.hash.clone(),
        }
    }
}

/// An entry of the expiry index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredEntry {
    pub key: KeyRef,
    pub expires_at: OffsetDateTime,
}

/// What authentication learns from a hash lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashRecord {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub owner_id: Uuid,
    pub owner_type: AccountType,
    pub expires_at: Option<OffsetDateTime>,
    /// When the key was last recorded as used.
    pub last_used: Option<OffsetDateTime>,
    /// Replaced by a rotation: it works only until its grace ends.
    pub replaced: bool,
    /// What authentication needs beyond the key, copied onto the hash item
    /// so that one read decides it; `None` on an item written before the
    /// copies existed (authentication then reads the membership too).
    pub copy: Option<AuthCopy>,
}

/// The owner's membership and tenant as copied onto each of its hash items.
/// The membership stays the source of truth: every write that changes a
/// copied value (a role change) rewrites the owner's hash items in its own
/// transaction, and a key is only written while its owner's role is still
/// the one copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCopy {
    pub role: Role,
    pub membership_id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub tenant: Tenant,
}

impl AuthCopy {
    pub fn of(owner: &crate::domain::Member, tenant: Tenant) -> Self {
        Self {
            role: owner.role,
            membership_id: owner.membership_id,
            username: owner.username.clone(),
            email: owner.email.clone(),
            tenant,
        }
    }
}

/// Marks a hash item that carries a complete [`AuthCopy`].
const COPY_VERSION: i64 = 1;

/// The sort key of a key's item in its tenant's partition.
pub fn key_sk(owner_type: AccountType, owner: Uuid, key: Uuid) -> String {
    match owner_type {
        AccountType::User => format!("ukey#{owner}#{key}"),
        AccountType::Service => format!("skey#{key}"),
    }
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

fn stored_key_from(item: &Item) -> Result<StoredKey> {
    let f = Fields(item);
    Ok(StoredKey {
        key: ApiKey {
            id: f.uuid("key_id")?,
            name: f.s("name")?.to_string(),
            tenant_id: f.uuid("pk")?,
            owner_id: f.uuid("owner_id")?,
            owner_type: f.account_type("owner_type")?,
            created: f.time("created")?,
            created_by: f.uuid("created_by")?,
            created_by_name: f.opt_s("created_by_name")?.map(str::to_string),
            expires_at: f.opt_time("expires_at")?,
            hint: f.s("hint")?.to_string(),
            created_by_key_id: f.opt_uuid("created_by_key_id")?,
            rotated_from: f.opt_uuid("rotated_from")?,
            replaced_by: f.opt_uuid("replaced_by")?,
            last_used: f.opt_time("last_used")?,
        },
        hash: TokenHash::from_stored(f.s("hash")?.to_string()),
        copy: None,
    })
}

/// The key's two items: its tenant-partition item and its hash lookup.
pub fn key_items(stored: &StoredKey) -> (Item, Item) {
    let k = &stored.key;
    let mut listing = key_of(
        tenant_pk(k.tenant_id),
        key_sk(k.owner_type, k.owner_id, k.id),
    );
    let mut lookup = key_of(hash_pk(&stored.hash), "hash".into());
    let shared = [
        ("key_id", s(k.id.to_string())),
        ("owner_id", s(k.owner_id.to_string())),
        ("owner_type", s(k.owner_type.name())),
    ];
    listing.extend(values(shared.clone()));
    lookup.extend(values(shared));
    listing.extend(values([
        ("name", s(&k.name)),
        ("created", n(k.created.unix_timestamp())),
        ("created_by", s(k.created_by.to_string())),
        ("hint", s(&k.hint)),
        ("hash", s(stored.hash.as_str())),
    ]));
    let optional = [
        ("created_by_name", k.created_by_name.clone()),
        (
            "created_by_key_id",
            k.created_by_key_id.map(|u| u.to_string()),
        ),
        ("rotated_from", k.rotated_from.map(|u| u.to_string())),
        ("replaced_by", k.replaced_by.map(|u| u.to_string())),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            listing.insert(name.into(), s(value));
        }
    }
    lookup.insert("tenant_id".into(), s(k.tenant_id.to_string()));
    if let Some(copy) = &stored.copy {
        lookup.extend(copy_attributes(copy));
    }
    if let Some(expires) = k.expires_at {
        let secs = expires.unix_timestamp();
        for item in [&mut listing, &mut lookup] {
            item.insert("expires_at".into(), n(secs));
            item.insert("ttl".into(), n(secs.saturating_add(TTL_GRACE_SECS)));
        }
        lookup.insert("exp_bucket".into(), s(expiry_bucket(expires)));
    }
    (listing, lookup)
}

/// The attributes of an [`AuthCopy`] on a hash item.
pub(super) fn copy_attributes(copy: &AuthCopy) -> Item {
    let mut item = values([
        ("copy_v", n(COPY_VERSION)),
        ("member_role", s(copy.role.name())),
        ("membership_id", s(copy.membership_id.to_string())),
        ("username", s(&copy.username)),
        ("tenant_name", s(&copy.tenant.name)),
        ("tenant_slug", s(&copy.tenant.slug)),
        ("tenant_created", n(copy.tenant.created.unix_timestamp())),
    ]);
    if let Some(email) = &copy.email {
        item.insert("email".into(), s(email));
    }
    item
}

fn hash_record_from(item: &Item) -> Result<HashRecord> {
    let f = Fields(item);
    let tenant_id = f.uuid("tenant_id")?;
    let copy = match f.opt_n("copy_v")? {
        Some(COPY_VERSION) => Some(AuthCopy {
            role: f.role("member_role")?,
            membership_id: f.uuid("membership_id")?,
            username: f.s("username")?.to_string(),
            email: f.opt_s("email")?.map(str::to_string),
            tenant: Tenant {
                id: tenant_id,
                name: f.s("tenant_name")?.to_string(),
                slug: f.s("tenant_slug")?.to_string(),
                created: f.time("tenant_created")?,
            },
        }),
        // Written before the copies, or by a version that copies more: the
        // membership decides.
        _ => None,
    };
    Ok(HashRecord {
        tenant_id,
        key_id: f.uuid("key_id")?,
        owner_id: f.uuid("owner_id")?,
        owner_type: f.account_type("owner_type")?,
        expires_at: f.opt_time("expires_at")?,
        last_used: f.opt_time("last_used")?,
        replaced: f.opt_s("replaced_by")?.is_some(),
        copy,
    })
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

/// Deletes of a key's hash lookup and listing item; with `expired_by`,
/// each only if the key had expired by then.
pub(super) fn push_key_deletes(
    table: &str,
    items: &mut Vec<TransactWriteItem>,
    key: &KeyRef,
    expired_by: Option<OffsetDateTime>,
) -> Result<()> {
    for item_key in [
        key_of(hash_pk(&key.hash), "hash".into()),
        key_of(
            tenant_pk(key.tenant_id),
            key_sk(key.owner_type, key.owner_id, key.key_id),
        ),
    ] {
        let mut delete = Delete::builder()
            .table_name(table)
            .set_key(Some(item_key))
            .condition_expression("attribute_exists(pk)");
        if let Some(now) = expired_by {
            delete = delete
                .condition_expression("attribute_exists(pk) AND expires_at <= :now")
                .expression_attribute_values(":now", n(now.unix_timestamp()));
        }
        items.push(TransactWriteItem::builder().delete(delete.build()?).build());
    }
    Ok(())
}

/// Expired keys removed in one transaction to make room for a new one.
pub const EXPIRED_PER_TRANSACTION: usize = 30;

/// The condition on an owner's membership when one of its keys goes:
/// only that it exists. Removing a key is never blocked by a lease (a
/// removal or a role change in progress): the key set may shrink under a
/// lease, never grow.
const OWNER_EXISTS: &str = "attribute_exists(pk)";

impl Store {
    /// Authentication's read: one strongly consistent GetItem.
    pub async fn key_by_hash(&self, hash: &TokenHash) -> Result<Option<HashRecord>> {
        self.get(hash_pk(hash), "hash".into())
            .await?
            .as_ref()
            .map(hash_record_from)
            .transpose()
    }

    pub async fn keys_of_user(&self, tenant: Uuid, user: Uuid) -> Result<Vec<StoredKey>> {
        let items = self
            .query_prefix(tenant_pk(tenant), format!("ukey#{user}#"))
            .await?;
        items.iter().map(stored_key_from).collect()
    }

    pub async fn service_account_keys(&self, tenant: Uuid) -> Result<Vec<StoredKey>> {
        let items = self.query_prefix(tenant_pk(tenant), "skey#".into()).await?;
        items.iter().map(stored_key_from).collect()
    }

    /// Every key of a tenant, users' and service accounts' (the operator's
    /// view; the API never lists across owners).
    pub async fn keys_of_tenant(&self, tenant: Uuid) -> Result<Vec<StoredKey>> {
        let mut items = self.query_prefix(tenant_pk(tenant), "ukey#".into()).await?;
        items.extend(self.query_prefix(tenant_pk(tenant), "skey#".into()).await?);
        items.iter().map(stored_key_from).collect()
    }

    /// One key of the tenant, addressed by its owner and id.
    pub async fn key(
        &self,
        tenant: Uuid,
        owner_type: AccountType,
        owner: Uuid,
        key: Uuid,
    ) -> Result<Option<StoredKey>> {
        self.get(tenant_pk(tenant), key_sk(owner_type, owner, key))
            .await?
            .as_ref()
            .map(stored_key_from)
            .transpose()
    }

    /// Writes a key and its hash lookup, counting it on its owner's membership.
    /// Fails (nothing written) if the owner is no longer a member, is held
    /// by a lease (a removal or a role change in progress), holds [`MAX_KEYS_PER_OWNER`] keys already, no longer has the
    /// role the key's [`AuthCopy`] holds, or `creator_admin` is given and is
    /// no longer an admin of the tenant. Cancellation
    /// reasons: see [`InsertKeyItem`].
    pub async fn insert_key(
        &self,
        stored: &StoredKey,
        creator_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Result<()> {
        let k = &stored.key;
        let (listing, lookup) = key_items(stored);
        let mut condition =
            format!("attribute_exists(pk) AND key_count < :max AND account_type = :type AND {NO_LEASE_HELD}");
        let mut vals = values([
            (":now", n(k.created.unix_timestamp())),
            (":one", n(1)),
            (":max", n(i64::from(MAX_KEYS_PER_OWNER))),
            (":type", s(k.owner_type.name())),
        ]);
        // The role copied onto the hash item must still be the owner's: a
        // role change that lands first makes this write fail, not go stale.
        if let Some(copy) = &stored.copy {
            condition.push_str(" AND member_role = :role");
            vals.insert(":role".into(), s(copy.role.name()));
        }
        let items = vec![
            put(&self.table, lookup)?,
            put(&self.table, listing)?,
            update(
                &self.table,
                key_of(tenant_pk(k.tenant_id), member_sk(k.owner_id)),
                &format!("ADD key_count :one {REMOVE_LEASE}"),
                &condition,
                vals,
            )?,
        ];
        self.commit(items, k.tenant_id, creator_admin, audit).await
    }

    /// Writes the [`AuthCopy`] onto the hash item of a key written before the
    /// copies existed, only while the owner's membership still has the role
    /// copied (a role change in between makes this a no-op, not a stale copy).
    /// `Ok(false)`: not written (the key or the role changed meanwhile).
    pub async fn backfill_copy(
        &self,
        hash: &TokenHash,
        owner: Uuid,
        copy: &AuthCopy,
    ) -> Result<bool> {
        let attributes = copy_attributes(copy);
        let assignments: Vec<String> = attributes
            .keys()
            .enumerate()
            .map(|(i, _)| format!("#a{i} = :a{i}"))
            .collect();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(hash_pk(hash), "hash".into())))
            .update_expression(format!("SET {}", assignments.join(", ")))
            .condition_expression("attribute_exists(pk) AND owner_id = :owner")
            .expression_attribute_values(":owner", s(owner.to_string()));
        for (i, (name, value)) in attributes.into_iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":a{i}"), value);
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(copy.tenant.id), member_sk(owner))))
            .condition_expression("member_role = :role")
            .expression_attribute_values(":role", s(copy.role.name()))
            .build()?;
        let items = vec![
            TransactWriteItem::builder().update(update.build()?).build(),
            TransactWriteItem::builder().condition_check(check).build(),
        ];
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_condition_failure() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces `old` with `new` (same owner, name and expiry) in one
    /// transaction, with its audit record. With `grace_end`, the old key
    /// keeps working until then (its expiry moves there; the new key counts
    /// on its owner); without, the old key goes at once. Fails (nothing
    /// written) if the old key is gone, expired or already replaced, if the
    /// owner is gone, held by a lease, at the key limit or has another role than the
    /// new key's copy, or if `caller_admin` is no longer an admin.
    /// Cancellation reasons: 0 and 1 the new key's items, 2 the owner, 3 and
    /// 4 the old key's items, 5 the caller's admin check.
    #[allow(clippy::too_many_arguments)]
    pub async fn rotate_key(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        grace_end: Option<OffsetDateTime>,
        now: OffsetDateTime,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Result<()> {
        let k = &new.key;
        let (listing, lookup) = key_items(new);
        let mut owner_condition =
            format!("attribute_exists(pk) AND account_type = :type AND {NO_LEASE_HELD}");
        let mut owner_values = values([
            (":type", s(k.owner_type.name())),
            (":now", n(now.unix_timestamp())),
        ]);
        if let Some(copy) = &new.copy {
            owner_condition.push_str(" AND member_role = :role");
            owner_values.insert(":role".into(), s(copy.role.name()));
        }
        // With a grace the old key stays a while: the new one counts.
        let count = if grace_end.is_some() {
            owner_condition.push_str(" AND key_count < :max");
            owner_values.insert(":max".into(), n(i64::from(MAX_KEYS_PER_OWNER)));
            1
        } else {
            0
        };
        owner_values.insert(":count".into(), n(count));
        let mut items = vec![
            put(&self.table, lookup)?,
            put(&self.table, listing)?,
            update(
                &self.table,
                key_of(tenant_pk(k.tenant_id), member_sk(k.owner_id)),
                &format!("ADD key_count :count {REMOVE_LEASE}"),
                &owner_condition,
                owner_values,
            )?,
        ];
        let old_ref = old.key_ref();
        let old_lookup = key_of(hash_pk(&old_ref.hash), "hash".into());
        let old_listing = key_of(
            tenant_pk(old_ref.tenant_id),
            key_sk(old_ref.owner_type, old_ref.owner_id, old_ref.key_id),
        );
        let live =
            "attribute_exists(pk) AND (attribute_not_exists(expires_at) OR expires_at > :now)";
        let not_replaced = format!("{live} AND attribute_not_exists(replaced_by)");
        match grace_end {
            Some(end) => {
                let secs = end.unix_timestamp();
                let expiry = [
                    (":now", n(now.unix_timestamp())),
                    (":end", n(secs)),
                    (":ttl", n(secs.saturating_add(TTL_GRACE_SECS))),
                ];
                let mut lookup_values = values(expiry.clone());
                lookup_values.insert(":bucket".into(), s(expiry_bucket(end)));
                // Authentication reads it: a key in its grace may not change anything.
                lookup_values.insert(":new".into(), s(k.id.to_string()));
                items.push(update_setting_ttl(
                    &self.table,
                    old_lookup,
                    "SET expires_at = :end, #ttl = :ttl, exp_bucket = :bucket, replaced_by = :new",
                    live,
                    lookup_values,
                    true,
                )?);
                let mut listing_values = values(expiry);
                listing_values.insert(":new".into(), s(k.id.to_string()));
                items.push(update_setting_ttl(
                    &self.table,
                    old_listing,
                    "SET expires_at = :end, #ttl = :ttl, replaced_by = :new",
                    &not_replaced,
                    listing_values,
                    true,
                )?);
            }
            None => {
                for (key, condition) in
                    [(old_lookup, live.to_string()), (old_listing, not_replaced)]
                {
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key))
                        .condition_expression(condition)
                        .expression_attribute_values(":now", n(now.unix_timestamp()))
                        .build()?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                }
            }
        }
        self.commit(items, k.tenant_id, caller_admin, audit).await
    }

    /// Records that a key was used at `now`, unless that was already
    /// recorded after `since`: on its hash item (which authentication reads,
    /// so the next request knows) and its listing item (which listings
    /// read), together. `Ok(false)`: not written (recorded meanwhile by
    /// another request, or the key is gone).
    pub async fn record_use(
        &self,
        key: &KeyRef,
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<bool> {
        let lookup = update(
            &self.table,
            key_of(hash_pk(&key.hash), "hash".into()),
            "SET last_used = :now",
            "attribute_exists(pk) AND (attribute_not_exists(last_used) OR last_used < :since)",
            values([
                (":now", n(now.unix_timestamp())),
                (":since", n(since.unix_timestamp())),
            ]),
        )?;
        let listing = update(
            &self.table,
            key_of(
                tenant_pk(key.tenant_id),
                key_sk(key.owner_type, key.owner_id, key.key_id),
            ),
            "SET last_used = :now",
            "attribute_exists(pk)",
            values([(":now", n(now.unix_timestamp()))]),
        )?;
        match self.transact(vec![lookup, listing]).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_condition_failure() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes a key and its hash lookup together, decrementing its owner's
    /// `key_count`. With `expired_by`, only if the key expired by then (on both
    /// items). With `caller_admin`, only while that caller is still an admin.
    /// Cancellation reasons: items 0 and 1 the key's (gone, or not expired),
    /// 2 the owner (gone), 3 the
    /// caller's admin check.
    pub async fn delete_key(
        &self,
        key: &KeyRef,
        expired_by: Option<OffsetDateTime>,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Result<()> {
        let mut items = Vec::with_capacity(4);
        push_key_deletes(&self.table, &mut items, key, expired_by)?;
        items.push(update(
            &self.table,
            key_of(tenant_pk(key.tenant_id), member_sk(key.owner_id)),
            "ADD key_count :minus",
            OWNER_EXISTS,
            values([(":minus", n(-1))]),
        )?);
        self.commit(items, key.tenant_id, caller_admin, audit).await
    }

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
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys.get(..EXPIRED_PER_TRANSACTION).unwrap_or(keys);
        let mut items = Vec::with_capacity(keys.len().saturating_mul(3).saturating_add(1));
        for (key, audit) in keys {
            push_key_deletes(&self.table, &mut items, key, Some(now))?;
            items.push(audit_put(&self.table, audit)?);
        }
        let removed = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        items.push(update(
            &self.table,
            key_of(tenant_pk(owner.tenant_id), member_sk(owner.user_id)),
            "ADD key_count :minus",
            OWNER_EXISTS,
            values([(":minus", n(removed.saturating_neg()))]),
        )?);
        // Made on behalf of the member creating a key: counted as one of
        // its changes, so that a refused creation has changed nothing.
        let limited = match keys.first() {
            Some((_, audit)) => self.change_counter(&mut items, owner.tenant_id, audit)?,
            None => Limited(None),
        };
        self.transact(items).await.map_err(|e| limited.refusal(e))
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
        match self.delete_key(&entry.key, Some(now), None, audit).await {
            Ok(()) => Ok(true),
            // Only its owner is gone (removed outside our transactions):
            // the key goes alone, with its record.
            Err(e) if e.condition_failed(2) && !e.condition_failed(0) && !e.condition_failed(1) => {
                let mut items = Vec::with_capacity(3);
                push_key_deletes(&self.table, &mut items, &entry.key, Some(now))?;
                items.push(audit_put(&self.table, audit)?);
                match self.transact(items).await {
                    Ok(()) => Ok(true),
                    Err(e) if e.is_condition_failure() => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Err(e) if e.is_condition_failure() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Where the sweeps stand (nothing yet: the default, version 0).
    pub async fn sweep_checkpoint(&self) -> Result<SweepCheckpoint> {
        let Some(item) = self.get("sweeper".into(), "checkpoint".into()).await? else {
            return Ok(SweepCheckpoint::default());
        };
        let f = Fields(&item);
        let retry = match item.get("retry_buckets") {
            Some(AttributeValue::Ss(buckets)) => buckets.iter().cloned().collect(),
            Some(_) => return Err(StoreError::Corrupt(f.name(), "retry_buckets")),
            None => BTreeSet::new(),
        };
        Ok(SweepCheckpoint {
            next_bucket: f.opt_s("next_bucket")?.map(str::to_string),
            retry,
            version: f.opt_n("cp_version")?.unwrap_or(0),
        })
    }

    /// Saves `next` as the checkpoint read as `read`; if another sweep
    /// saved one meanwhile, saves both together (the later `next_bucket`,
    /// every bucket either keeps for retrying), so that nothing either
    /// left over is forgotten. Returns what was saved.
    pub async fn save_sweep_checkpoint(
        &self,
        read: &SweepCheckpoint,
        next: SweepCheckpoint,
    ) -> Result<SweepCheckpoint> {
        let mut read = read.clone();
        let mut next = next;
        for _ in 0..CHECKPOINT_TRIES {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key_of("sweeper".into(), "checkpoint".into())))
                .expression_attribute_values(":v", n(read.version.saturating_add(1)));
            let mut sets = vec!["cp_version = :v"];
            if let Some(bucket) = &next.next_bucket {
                sets.push("next_bucket = :bucket");
                update = update.expression_attribute_values(":bucket", s(bucket));
            }
            let expression = if next.retry.is_empty() {
                format!("SET {} REMOVE retry_buckets", sets.join(", "))
            } else {
                sets.push("retry_buckets = :retry");
                update = update.expression_attribute_values(
                    ":retry",
                    AttributeValue::Ss(next.retry.iter().cloned().collect()),
                );
                format!("SET {}", sets.join(", "))
            };
            update = update.update_expression(expression);
            update = if read.version == 0 {
                update.condition_expression("attribute_not_exists(cp_version)")
            } else {
                update
                    .condition_expression("cp_version = :read")
                    .expression_attribute_values(":read", n(read.version))
            };
            if applied(update.send().await)? {
                next.version = read.version.saturating_add(1);
                return Ok(next);
            }
            read = self.sweep_checkpoint().await?;
            next = SweepCheckpoint {
                next_bucket: next.next_bucket.max(read.next_bucket.clone()),
                retry: next.retry.union(&read.retry).cloned().collect(),
                version: read.version,
            };
        }
        Err(StoreError::Transient {
            message: "the sweep checkpoint kept changing".into(),
            unknown_outcome: false,
        })
    }
}
