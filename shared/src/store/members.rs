//! Memberships: people and service accounts in a tenant, their roles,
//! and their removal with every key they own.

use aws_sdk_dynamodb::types::Delete;

use crate::domain::Membership;

use crate::audit::AuditRecord;

use super::*;

/// Why a member is frozen (see [`Store::freeze`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freeze {
    Removing,
    ChangingRole,
}

impl Freeze {
    fn attribute(self) -> &'static str {
        match self {
            Freeze::Removing => "removing",
            Freeze::ChangingRole => "changing",
        }
    }
}

/// What [`Store::freeze`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marked {
    Yes,
    /// The membership no longer exists.
    Gone,
    /// The caller is no longer an admin: nothing was marked.
    CallerNotAdmin,
}

fn membership_from(item: &Item) -> Result<Membership> {
    let f = Fields(item);
    Ok(Membership {
        id: f.uuid("membership_id")?,
        tenant_id: f.uuid("pk")?,
        user_id: f.uuid("user_id")?,
        username: f.s("username")?.to_string(),
        email: f.opt_s("email")?.map(str::to_string),
        account_type: f.account_type("account_type")?,
        role: f.role("member_role")?,
        key_count: u32::try_from(f.n("key_count")?)
            .map_err(|_| StoreError::Corrupt(f.name(), "key_count"))?,
        created: f.time("created")?,
        removing: f.opt_n("removing")?.is_some(),
    })
}

pub(super) fn membership_item(m: &Membership) -> Item {
    let mut item = key_of(tenant_pk(m.tenant_id), member_sk(m.user_id));
    item.extend(values([
        ("membership_id", s(m.id.to_string())),
        ("user_id", s(m.user_id.to_string())),
        ("username", s(&m.username)),
        ("account_type", s(m.account_type.name())),
        ("member_role", s(m.role.name())),
        ("key_count", n(i64::from(m.key_count))),
        ("created", n(m.created.unix_timestamp())),
    ]));
    if let Some(email) = &m.email {
        item.insert("email".into(), s(email));
    }
    item
}

/// Changes the tenant's count of admin users by `delta`; a decrement requires
/// another admin user to remain.
fn count_admin_users(table: &str, tenant: Uuid, delta: i64) -> Result<TransactWriteItem> {
    let key = key_of(tenant_pk(tenant), "tenant".into());
    if delta < 0 {
        let condition = "attribute_exists(pk) AND admin_users > :one";
        let vals = values([(":delta", n(delta)), (":one", n(1))]);
        update(table, key, "ADD admin_users :delta", condition, vals)
    } else {
        let vals = values([(":delta", n(delta))]);
        update(
            table,
            key,
            "ADD admin_users :delta",
            "attribute_exists(pk)",
            vals,
        )
    }
}

impl Store {
    /// Authentication's second read.
    pub async fn membership(&self, tenant: Uuid, user: Uuid) -> Result<Option<Membership>> {
        self.get(tenant_pk(tenant), member_sk(user))
            .await?
            .as_ref()
            .map(membership_from)
            .transpose()
    }

    pub async fn members(&self, tenant: Uuid) -> Result<Vec<Membership>> {
        let items = self
            .query_prefix(tenant_pk(tenant), "member#".into())
            .await?;
        items.iter().map(membership_from).collect()
    }

    /// Adds a membership (a service account, or a user joining a tenant).
    /// With `creator_admin`, the creator must still be an admin of the
    /// tenant. A service account counts toward the tenant's
    /// `max_service_accounts`. Cancellation reasons: item 0 the membership
    /// (exists already), 1 the tenant (gone, or at the cap), 2 the creator.
    pub async fn insert_membership(
        &self,
        m: &Membership,
        creator_admin: Option<Uuid>,
        max_service_accounts: u32,
        audit: &AuditRecord,
    ) -> Result<()> {
        let items = vec![
            put(&self.table, membership_item(m))?,
            self.tenant_counter_item(m, 1, max_service_accounts)?,
        ];
        self.commit(items, m.tenant_id, creator_admin, audit).await
    }

    /// The tenant item's part in adding (`delta` 1) or removing (-1) `m`:
    /// its admin-user count, its service-account count, or only a check that
    /// the tenant exists.
    fn tenant_counter_item(
        &self,
        m: &Membership,
        delta: i64,
        max_service_accounts: u32,
    ) -> Result<TransactWriteItem> {
        if m.is_admin_user() {
            return count_admin_users(&self.table, m.tenant_id, delta);
        }
        let key = key_of(tenant_pk(m.tenant_id), "tenant".into());
        match (m.account_type, delta > 0) {
            (AccountType::Service, true) => update(
                &self.table,
                key,
                "ADD service_accounts :delta",
                "attribute_exists(pk) AND \
                 (attribute_not_exists(service_accounts) OR service_accounts < :max)",
                values([
                    (":delta", n(delta)),
                    (":max", n(i64::from(max_service_accounts))),
                ]),
            ),
            (AccountType::Service, false) => update(
                &self.table,
                key,
                "ADD service_accounts :delta",
                "attribute_exists(pk)",
                values([(":delta", n(delta))]),
            ),
            (AccountType::User, _) => {
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .condition_expression("attribute_exists(pk)")
                    .build()?;
                Ok(TransactWriteItem::builder().condition_check(check).build())
            }
        }
    }

    /// Freezes a member before a removal or a role change: from now on no
    /// key of it can be created, revoked or swept (and, for a removal, its
    /// role cannot change), so the write that follows reads a membership and
    /// a set of keys that stay as read, and succeeds at its first try however
    /// the member churns its keys. A role change is not started on a member
    /// being removed. With `caller_admin`, only while that caller is still an
    /// admin.
    pub async fn freeze(
        &self,
        m: &Membership,
        why: Freeze,
        now: OffsetDateTime,
        caller_admin: Option<Uuid>,
    ) -> Result<Marked> {
        let condition = match why {
            Freeze::Removing => "attribute_exists(pk)",
            Freeze::ChangingRole => "attribute_exists(pk) AND attribute_not_exists(removing)",
        };
        let mut items = vec![update(
            &self.table,
            key_of(tenant_pk(m.tenant_id), member_sk(m.user_id)),
            &format!("SET {0} = if_not_exists({0}, :now)", why.attribute()),
            condition,
            values([(":now", n(now.unix_timestamp()))]),
        )?];
        if let Some(caller) = caller_admin {
            items.push(check_admin(&self.table, m.tenant_id, caller)?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(Marked::Yes),
            Err(e) if e.condition_failed(0) => Ok(Marked::Gone),
            Err(e) if e.condition_failed(1) => Ok(Marked::CallerNotAdmin),
            Err(e) => Err(e),
        }
    }

    /// Undoes [`Store::freeze`] when the write it prepared was refused.
    pub async fn unfreeze(&self, m: &Membership, why: Freeze) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .update_expression(format!("REMOVE {}", why.attribute()))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Removes a membership and every key it owns in one transaction. `keys`
    /// must be all of them: the transaction fails if the stored `key_count`
    /// differs (a key revoked or swept meanwhile) or the role changed since
    /// it was read. With `caller_admin` (someone else removes `m`), only while
    /// that caller is still an admin. Cancellation reasons: item 0 the
    /// membership, then two per key, then the tenant, then the caller.
    pub async fn delete_membership(
        &self,
        m: &Membership,
        keys: &[StoredKey],
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Result<()> {
        let mut items = Vec::with_capacity(keys.len().saturating_mul(2).saturating_add(3));
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .condition_expression("member_role = :role AND key_count = :count")
            .set_expression_attribute_values(Some(values([
                (":role", s(m.role.name())),
                (":count", n(i64::try_from(keys.len()).unwrap_or(i64::MAX))),
            ])))
            .build()?;
        items.push(TransactWriteItem::builder().delete(delete).build());
        for stored in keys {
            push_key_deletes(&self.table, &mut items, &stored.key_ref(), None)?;
        }
        items.push(self.tenant_counter_item(m, -1, 0)?);
        self.commit(items, m.tenant_id, caller_admin, audit).await
    }

    /// Changes a member's role, keeping the tenant's admin-user count right
    /// and rewriting the role copied onto the hash item of each of `keys`,
    /// which must be all the member's keys: the membership's `key_count` must
    /// still be their number (a key created meanwhile makes this fail, never
    /// keeps the old role). With `caller_admin` (someone else's role), only
    /// while that caller is still an admin. Cancellation reasons: item 0 the
    /// membership (role or keys changed meanwhile, or gone), then the tenant
    /// count if it changes, then the caller, then one per key.
    pub async fn set_role(
        &self,
        m: &Membership,
        role: Role,
        caller_admin: Option<Uuid>,
        keys: &[KeyRef],
        audit: &AuditRecord,
    ) -> Result<()> {
        let count = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        let mut items = vec![update(
            &self.table,
            key_of(tenant_pk(m.tenant_id), member_sk(m.user_id)),
            "SET member_role = :new REMOVE changing",
            "member_role = :old AND key_count = :count AND attribute_not_exists(removing)",
            values([
                (":new", s(role.name())),
                (":old", s(m.role.name())),
                (":count", n(count)),
            ]),
        )?];
        let changed = Membership { role, ..m.clone() };
        match (m.is_admin_user(), changed.is_admin_user()) {
            (true, false) => items.push(count_admin_users(&self.table, m.tenant_id, -1)?),
            (false, true) => items.push(count_admin_users(&self.table, m.tenant_id, 1)?),
            _ => {}
        }
        if let Some(caller) = caller_admin {
            items.push(check_admin(&self.table, m.tenant_id, caller)?);
        }
        for key in keys {
            items.push(update(
                &self.table,
                key_of(hash_pk(&key.hash), "hash".into()),
                "SET member_role = :new",
                "attribute_exists(pk)",
                values([(":new", s(role.name()))]),
            )?);
        }
        items.push(audit_put(&self.table, audit)?);
        self.transact(items).await
    }

    /// Adds a person to a tenant, creating the user too when `new_user` is
    /// set: all in one transaction. Cancellation reasons: item 0 the
    /// membership (already a member), 1 the tenant, then the user's record
    /// and username (taken meanwhile).
    pub async fn insert_member(
        &self,
        m: &Membership,
        new_user: Option<&UserRecord>,
        audit: &AuditRecord,
    ) -> Result<()> {
        let mut items = vec![
            put(&self.table, membership_item(m))?,
            self.tenant_counter_item(m, 1, 0)?,
        ];
        if let Some(user) = new_user {
            items.extend(self.user_items(user)?);
        }
        items.push(audit_put(&self.table, audit)?);
        self.transact(items).await
    }
}
