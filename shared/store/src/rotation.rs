//! Rotation: a key replaced by a new one in one transaction, the old one
//! kept for a grace or removed at once.

use aws_sdk_dynamodb::types::Delete;

use apikeys_core::audit::AuditRecord;

use super::*;

/// What [`Store::rotate_key`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum Rotation {
    Rotated,
    /// The owner refused the new key: it is gone, held by a lease, at its
    /// maximum of keys (a grace keeps the old key a while), or no longer
    /// has the role copied onto the new key. Read it again to know which.
    OwnerRefused,
    /// The old key was revoked, expired or rotated meanwhile.
    OldKeyChanged,
    /// The tenant's key policy changed since the new key was made: make it
    /// again under the new one.
    PolicyChanged,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
}

impl Rotation {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Rotated),
            Err(r) if r.has(Part::Member) => Ok(Self::OwnerRefused),
            Err(r) if r.has(Part::Key) => Ok(Self::OldKeyChanged),
            Err(r) if r.has(Part::Policy) => Ok(Self::PolicyChanged),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) => Err(r.unexplained("rotate_key")),
        }
    }
}

impl Store {
    /// Replaces `old` with `new` (same owner, name and expiry) in one
    /// transaction, with its audit record. With `grace_end`, the old key
    /// keeps working until then (its expiry moves there; the new key counts
    /// on its owner); without, the old key goes at once. Fails (nothing
    /// written) if the old key is gone, expired, disabled or already replaced, if the
    /// owner is gone, held by a lease, at the key limit or has another role than the
    /// new key's copy, or if `caller_admin` is no longer an admin.
    #[allow(clippy::too_many_arguments)]
    pub async fn rotate_key(
        &self,
        old: &StoredKey,
        new: &StoredKey,
        grace_end: Option<OffsetDateTime>,
        now: OffsetDateTime,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Changed<Rotation> {
        let k = &new.key;
        let (listing, lookup) = key_items(new);
        // With a grace the old key stays a while: the new one counts.
        let (owner_condition, mut owner_values) = owner_takes(new, now, grace_end.is_some());
        let count = i64::from(grace_end.is_some());
        owner_values.insert(":count".into(), n(count));
        // The index gains the new key; the old one leaves it when it goes now.
        let gone_now = if grace_end.is_some() {
            vec![]
        } else {
            vec![old.key.id]
        };
        let index = KeyIndex::of(k.owner_type, &[k.id], &gone_now);
        let mut tx = Tx::new();
        tx.push(Part::NewKey, put(&self.table, lookup)?);
        tx.push(Part::NewKey, put(&self.table, listing)?);
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                key_of(tenant_pk(k.tenant_id), member_sk(k.owner_id)),
                &format!(
                    "ADD key_count :count{} {REMOVE_LEASE}{}",
                    index.set(),
                    index.remove(true)
                ),
                &owner_condition,
                index.values(owner_values),
                index.names(),
            )?,
        );
        if let Some(copy) = &new.copy {
            tx.push(
                Part::Policy,
                policy_check(&self.table, k.tenant_id, copy.policy.generation)?,
            );
        }
        let old_ref = old.key_ref();
        let old_lookup = key_of(hash_pk(&old_ref.hash), "hash".into());
        let old_listing = key_of(
            tenant_pk(old_ref.tenant_id),
            key_sk(old_ref.owner_type, old_ref.owner_id, old_ref.key_id),
        );
        // Live and enabled: a key disabled meanwhile is not rotated.
        let live =
            "attribute_exists(pk) AND (attribute_not_exists(expires_at) OR expires_at > :now) \
                    AND attribute_not_exists(disabled_at)";
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
                tx.push(Part::Key, update_setting_ttl(
                    &self.table,
                    old_lookup,
                    "SET expires_at = :end, #ttl = :ttl, exp_bucket = :bucket, replaced_by = :new",
                    live,
                    lookup_values,
                    true,
                )?);
                let mut listing_values = values(expiry);
                listing_values.insert(":new".into(), s(k.id.to_string()));
                tx.push(
                    Part::Key,
                    update_setting_ttl(
                        &self.table,
                        old_listing,
                        "SET expires_at = :end, #ttl = :ttl, replaced_by = :new",
                        &not_replaced,
                        listing_values,
                        true,
                    )?,
                );
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
                    tx.push(
                        Part::Key,
                        TransactWriteItem::builder().delete(delete).build(),
                    );
                }
            }
        }
        let outcome = self.commit(tx, k.tenant_id, caller_admin, &[audit]).await?;
        Ok(Rotation::of(outcome)?)
    }
}
