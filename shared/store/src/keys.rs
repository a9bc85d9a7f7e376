//! API keys: the listing item (in the tenant's partition) and the hash
//! lookup (`hash#…`, what authentication reads) of each key, their reads,
//! creation, removal and the recording of their use.

use aws_sdk_dynamodb::types::Delete;

use apikeys_core::audit::AuditRecord;
use apikeys_core::authz::MAX_KEYS_PER_OWNER;
use apikeys_core::domain::ApiKey;

use super::*;

/// Keys stay this long past expiry before DynamoDB TTL removes them: TTL is a
/// backstop for a stopped sweeper, never what makes a key invalid.
pub(super) const TTL_GRACE_SECS: i64 = 30 * 24 * 3600;

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

impl KeyRef {
    /// The keys of the key's two items: its hash lookup, its listing item.
    pub(super) fn item_keys(&self) -> [Item; 2] {
        [
            key_of(hash_pk(&self.hash), "hash".into()),
            key_of(
                tenant_pk(self.tenant_id),
                key_sk(self.owner_type, self.owner_id, self.key_id),
            ),
        ]
    }
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

/// The sort key of a key's item in its tenant's partition.
pub fn key_sk(owner_type: AccountType, owner: Uuid, key: Uuid) -> String {
    match owner_type {
        AccountType::User => format!("ukey#{owner}#{key}"),
        AccountType::Service => format!("skey#{key}"),
    }
}

pub(super) fn stored_key_from(item: &Item) -> Result<StoredKey> {
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
            role_ceiling: f.opt_role("role_ceiling")?,
            disabled: item.contains_key("disabled_at"),
            allowed_networks: f.networks("networks")?,
            scopes: f.strings("scopes")?,
            leaked: item.contains_key("leaked_at"),
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
    // Authentication reads the ceiling and networks on the lookup;
    // listings on the item.
    if let Some(ceiling) = k.role_ceiling {
        for item in [&mut listing, &mut lookup] {
            item.insert("role_ceiling".into(), s(ceiling.name()));
        }
    }
    if !k.allowed_networks.is_empty() {
        let nets: Vec<String> = k.allowed_networks.iter().map(ToString::to_string).collect();
        for item in [&mut listing, &mut lookup] {
            item.insert("networks".into(), AttributeValue::Ss(nets.clone()));
        }
    }
    if !k.scopes.is_empty() {
        for item in [&mut listing, &mut lookup] {
            item.insert("scopes".into(), AttributeValue::Ss(k.scopes.clone()));
        }
    }
    // What the tenant's key policy judges a key by, on the item that
    // authentication reads.
    lookup.insert("created".into(), n(k.created.unix_timestamp()));
    if let Some(copy) = &stored.copy {
        lookup.extend(copy_attributes(copy));
        lookup.extend(policy_attributes(&copy.policy));
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

/// What [`Store::insert_key`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum KeyInsert {
    Written,
    /// The owner refused the key: it is gone, held by a lease (a removal,
    /// a role change or a recount in progress), holds its maximum of keys,
    /// or no longer has the role copied onto the key. Read it again to
    /// know which.
    OwnerRefused,
    /// The tenant's key policy changed since the key was made: make it
    /// again under the new one.
    PolicyChanged,
    /// The creator is no longer an admin of the tenant.
    CallerNotAdmin,
}

impl KeyInsert {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Written),
            Err(r) if r.has(Part::Member) => Ok(Self::OwnerRefused),
            Err(r) if r.has(Part::Policy) => Ok(Self::PolicyChanged),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) => Err(r.unexplained("insert_key")),
        }
    }
}

/// What [`Store::delete_key`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum KeyDelete {
    Deleted,
    /// The key is gone (revoked, swept, or removed with its owner), or,
    /// with `expired_by`, was not expired by then.
    KeyGone,
    /// The owner's membership is gone (its keys went with it, or were left
    /// behind outside our transactions).
    OwnerGone,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
}

impl KeyDelete {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Deleted),
            Err(r) if r.has(Part::Key) => Ok(Self::KeyGone),
            Err(r) if r.has(Part::Member) => Ok(Self::OwnerGone),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) => Err(r.unexplained("delete_key")),
        }
    }
}

/// What [`Store::set_disabled`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum KeyToggle {
    Done,
    /// The key is gone, or already in the state asked for.
    KeyUnchanged,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
}

impl KeyToggle {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Done),
            Err(r) if r.has(Part::Key) => Ok(Self::KeyUnchanged),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) => Err(r.unexplained("set_disabled")),
        }
    }
}

/// The condition on the owner's membership when `new` is added to it at
/// `now`, with its values: the owner is a member of the key's account
/// type, no lease holds, the role copied onto the key is still its own (a
/// role change that lands first makes the write fail, not go stale), and,
/// with `counted`, it holds fewer than [`MAX_KEYS_PER_OWNER`] keys.
pub(super) fn owner_takes(new: &StoredKey, now: OffsetDateTime, counted: bool) -> (String, Item) {
    let mut condition =
        format!("attribute_exists(pk) AND account_type = :type AND {NO_LEASE_HELD}");
    let mut vals = values([
        (":type", s(new.key.owner_type.name())),
        (":now", n(now.unix_timestamp())),
    ]);
    if let Some(copy) = &new.copy {
        condition.push_str(" AND member_role = :role");
        vals.insert(":role".into(), s(copy.role.name()));
    }
    if counted {
        condition.push_str(" AND key_count < :max");
        vals.insert(":max".into(), n(i64::from(MAX_KEYS_PER_OWNER)));
    }
    (condition, vals)
}

/// Deletes of a key's hash lookup and listing item, labelled `part`; with
/// `expired_by`, each only if the key had expired by then.
pub(super) fn push_key_deletes(
    table: &str,
    tx: &mut Tx,
    part: Part,
    key: &KeyRef,
    expired_by: Option<OffsetDateTime>,
) -> Result<()> {
    for item_key in key.item_keys() {
        let mut delete = Delete::builder()
            .table_name(table)
            .set_key(Some(item_key))
            .condition_expression("attribute_exists(pk)");
        if let Some(now) = expired_by {
            delete = delete
                .condition_expression("attribute_exists(pk) AND expires_at <= :now")
                .expression_attribute_values(":now", n(now.unix_timestamp()));
        }
        tx.push(
            part,
            TransactWriteItem::builder().delete(delete.build()?).build(),
        );
    }
    Ok(())
}

/// The condition on an owner's membership when one of its keys goes:
/// only that it exists. Removing a key is never blocked by a lease (a
/// removal or a role change in progress): the key set may shrink under a
/// lease, never grow.
pub(super) const OWNER_EXISTS: &str = "attribute_exists(pk)";

impl Store {
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

    /// Service-account keys of the tenant by id (a service account's key
    /// index): strongly consistent reads of those items alone, a hundred a
    /// request. Ids whose item is gone are left out.
    pub async fn service_account_keys_by_id(
        &self,
        tenant: Uuid,
        ids: &std::collections::BTreeSet<Uuid>,
    ) -> Result<Vec<StoredKey>> {
        let keys: Vec<Item> = ids
            .iter()
            .map(|id| key_of(tenant_pk(tenant), format!("skey#{id}")))
            .collect();
        self.batch_get(keys)
            .await?
            .iter()
            .map(stored_key_from)
            .collect()
    }

    /// Strongly consistent reads of the items `keys`, a hundred a request,
    /// the ones left unprocessed (throttling) asked again; items that are
    /// not there are left out.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()?,
            );
            let mut attempt: u32 = 0;
            while let Some(wanted) = request.take() {
                if attempt > 0 {
                    if attempt >= MAX_ATTEMPTS.saturating_mul(2) {
                        return Err(StoreError::Transient {
                            message: "some items stayed unread (throttled)".into(),
                            unknown_outcome: false,
                        });
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt = attempt.saturating_add(1);
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, wanted)
                    .send()
                    .await
                    .map_err(read_error)?;
                if let Some(items) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                    found.extend(items);
                }
                // Asked again as strongly consistent reads, whatever the
                // answer echoed.
                request = match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(left) if !left.keys().is_empty() => Some(
                        KeysAndAttributes::builder()
                            .set_keys(Some(left.keys().to_vec()))
                            .consistent_read(true)
                            .build()?,
                    ),
                    _ => None,
                };
            }
        }
        Ok(found)
    }

    /// Marks a key as reported leaked (it keeps working: its tenant's leak
    /// policy says to notify only), on both its items, with the report's
    /// audit record; only the first report of it. `Ok(false)`: already
    /// marked, or gone.
    pub async fn mark_leaked(
        &self,
        key: &KeyRef,
        at: OffsetDateTime,
        audit: &AuditRecord,
    ) -> Changed<bool> {
        let mut tx = Tx::new();
        for item_key in key.item_keys() {
            tx.push(
                Part::Key,
                update(
                    &self.table,
                    item_key,
                    "SET leaked_at = :at",
                    "attribute_exists(pk) AND attribute_not_exists(leaked_at)",
                    values([(":at", n(at.unix_timestamp()))]),
                )?,
            );
        }
        match self.commit(tx, key.tenant_id, None, &[audit]).await? {
            Ok(()) => Ok(true),
            Err(r) if r.has(Part::Key) => Ok(false),
            Err(r) => Err(r.unexplained("mark_leaked").into()),
        }
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
    /// no longer an admin of the tenant.
    pub async fn insert_key(
        &self,
        stored: &StoredKey,
        creator_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Changed<KeyInsert> {
        let k = &stored.key;
        let (listing, lookup) = key_items(stored);
        let (condition, mut vals) = owner_takes(stored, k.created, true);
        vals.insert(":one".into(), n(1));
        let index = KeyIndex::of(k.owner_type, &[k.id], &[]);
        let mut tx = Tx::new();
        tx.push(Part::NewKey, put(&self.table, lookup)?);
        tx.push(Part::NewKey, put(&self.table, listing)?);
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                key_of(tenant_pk(k.tenant_id), member_sk(k.owner_id)),
                &format!("ADD key_count :one{} {REMOVE_LEASE}", index.set()),
                &condition,
                index.values(vals),
                index.names(),
            )?,
        );
        if let Some(copy) = &stored.copy {
            tx.push(
                Part::Policy,
                policy_check(&self.table, k.tenant_id, copy.policy.generation)?,
            );
        }
        let outcome = self
            .commit(tx, k.tenant_id, creator_admin, &[audit])
            .await?;
        Ok(KeyInsert::of(outcome)?)
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
        let mut tx = Tx::new();
        tx.push(Part::Key, lookup);
        tx.push(Part::Key, listing);
        match self.transact(tx).await? {
            Ok(()) => Ok(true),
            Err(r) if r.has(Part::Key) => Ok(false),
            Err(r) => Err(r.unexplained("record_use")),
        }
    }

    /// Disables a key (`disabled`: it fails like a revoked key from the next
    /// request) or enables it again, on both its items together, with its
    /// audit record; only while it is in the other state. With
    /// `caller_admin`, only while that caller is still an admin.
    pub async fn set_disabled(
        &self,
        key: &KeyRef,
        disabled: bool,
        at: OffsetDateTime,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Changed<KeyToggle> {
        let mut tx = Tx::new();
        for item_key in key.item_keys() {
            let item = if disabled {
                update(
                    &self.table,
                    item_key,
                    "SET disabled_at = :at",
                    "attribute_exists(pk) AND attribute_not_exists(disabled_at)",
                    values([(":at", n(at.unix_timestamp()))]),
                )?
            } else {
                update(
                    &self.table,
                    item_key,
                    "REMOVE disabled_at",
                    "attribute_exists(pk) AND attribute_exists(disabled_at)",
                    values([]),
                )?
            };
            tx.push(Part::Key, item);
        }
        let outcome = self
            .commit(tx, key.tenant_id, caller_admin, &[audit])
            .await?;
        Ok(KeyToggle::of(outcome)?)
    }

    /// Removes a key and its hash lookup together, decrementing its owner's
    /// `key_count`. With `expired_by`, only if the key expired by then (on both
    /// items). With `caller_admin`, only while that caller is still an admin.
    pub async fn delete_key(
        &self,
        key: &KeyRef,
        expired_by: Option<OffsetDateTime>,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Changed<KeyDelete> {
        let index = KeyIndex::of(key.owner_type, &[], &[key.key_id]);
        let mut tx = Tx::new();
        push_key_deletes(&self.table, &mut tx, Part::Key, key, expired_by)?;
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                key_of(tenant_pk(key.tenant_id), member_sk(key.owner_id)),
                &format!("ADD key_count :minus{}", index.remove(false)),
                OWNER_EXISTS,
                values([(":minus", n(-1))]),
                index.names(),
            )?,
        );
        let outcome = self
            .commit(tx, key.tenant_id, caller_admin, &[audit])
            .await?;
        Ok(KeyDelete::of(outcome)?)
    }
}
