//! The operator's repairs: counters and leases set right after items were
//! deleted or left behind outside the service's transactions.

use aws_sdk_dynamodb::types::Delete;

use super::Membership;

use super::*;

/// Why a key is not whole (see [`Store::delete_key_remains`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remains {
    OwnerGone,
    LookupGone,
}

/// A tenant's counters as stored on its item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantCounters {
    pub admin_users: i64,
    pub service_accounts: i64,
}

impl Store {
    pub async fn tenant_counters(&self, tenant: Uuid) -> Result<Option<TenantCounters>> {
        let Some(item) = self.get(tenant_pk(tenant), "tenant".into()).await? else {
            return Ok(None);
        };
        let f = Fields(&item);
        Ok(Some(TenantCounters {
            admin_users: f.opt_n("admin_users")?.unwrap_or(0),
            service_accounts: f.opt_n("service_accounts")?.unwrap_or(0),
        }))
    }

    /// Sets the tenant's counters to `actual` unless they changed since
    /// `read`. `Ok(false)`: not written.
    pub async fn set_tenant_counters(
        &self,
        tenant: Uuid,
        read: TenantCounters,
        actual: TenantCounters,
    ) -> Result<bool> {
        let update = self
            .tenant_update(tenant)
            .update_expression("SET admin_users = :admins, service_accounts = :accounts")
            .condition_expression(
                "attribute_exists(pk) \
                 AND (admin_users = :read_admins OR (attribute_not_exists(admin_users) AND :read_admins = :zero)) \
                 AND (service_accounts = :read_accounts OR (attribute_not_exists(service_accounts) AND :read_accounts = :zero))",
            )
            .set_expression_attribute_values(Some(values([
                (":admins", n(actual.admin_users)),
                (":accounts", n(actual.service_accounts)),
                (":read_admins", n(read.admin_users)),
                (":read_accounts", n(read.service_accounts)),
                (":zero", n(0)),
            ])))
            ;
        self.conditional(update, Repeat::Strict).await
    }

    /// Removes an expired lease and the marks of earlier versions from a
    /// membership; a lease still holding at `now` stays. `Ok(false)`: not
    /// written (held, or gone).
    pub async fn clear_expired_lease(&self, m: &Membership, now: OffsetDateTime) -> Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .update_expression(REMOVE_LEASE)
            .condition_expression(format!("attribute_exists(pk) AND {NO_LEASE_HELD}"))
            .expression_attribute_values(":now", n(now.unix_timestamp()));
        self.conditional(update, Repeat::Idempotent).await
    }

    /// Deletes what is left of a key that is no longer whole: with
    /// [`Remains::OwnerGone`] both of its items, only while its owner is
    /// still not a member; with [`Remains::LookupGone`] its listing item,
    /// only while its hash lookup is still gone. `Ok(false)`: not so any
    /// more, nothing deleted.
    pub async fn delete_key_remains(&self, key: &KeyRef, remains: Remains) -> Result<bool> {
        let lookup = key_of(hash_pk(&key.hash), "hash".into());
        let listing = key_of(
            tenant_pk(key.tenant_id),
            key_sk(key.owner_type, key.owner_id, key.key_id),
        );
        let (deletes, absent) = match remains {
            Remains::OwnerGone => (
                vec![lookup, listing],
                key_of(tenant_pk(key.tenant_id), member_sk(key.owner_id)),
            ),
            Remains::LookupGone => (vec![listing], lookup),
        };
        let mut tx = Tx::new();
        for item_key in deletes {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(item_key))
                .build()?;
            tx.push(
                Part::Key,
                TransactWriteItem::builder().delete(delete).build(),
            );
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(absent))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        tx.push(
            Part::Absent,
            TransactWriteItem::builder().condition_check(check).build(),
        );
        match self.transact(tx).await? {
            Ok(()) => Ok(true),
            // What was missing came back (the owner re-added, the lookup
            // written meanwhile): left as it is.
            Err(r) if r.has(Part::Absent) => Ok(false),
            Err(r) => Err(r.unexplained("delete_key_remains")),
        }
    }

    /// Marks a key's hash lookup as replaced by `new` (what a rotation by
    /// an earlier version did not write there): authentication then refuses
    /// every change made with it. `Ok(false)`: the lookup is gone.
    pub async fn mark_replaced(&self, hash: &TokenHash, new: Uuid) -> Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(hash_pk(hash), "hash".into())))
            .update_expression("SET replaced_by = :new")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":new", s(new.to_string()));
        self.conditional(update, Repeat::Idempotent).await
    }

    /// Whether a key's hash lookup exists (a consistent read).
    pub async fn hash_exists(&self, hash: &TokenHash) -> Result<bool> {
        Ok(self.get(hash_pk(hash), "hash".into()).await?.is_some())
    }
}
