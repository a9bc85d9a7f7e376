//! Memberships: people and service accounts in a tenant, their roles,
//! and their removal with every key they own.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{Delete, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{Lease, Membership};
use apikeys_core::domain::LeaseKind;

use apikeys_core::audit::AuditRecord;

use super::*;

/// What [`Store::acquire_lease`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Taken: the membership as it is now, holding the lease.
    Held(Membership),
    /// Another request holds an unexpired lease of this kind.
    Busy(Lease),
    /// The membership no longer exists.
    Gone,
}

/// What [`Store::insert_membership`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum MembershipInsert {
    Written,
    /// The tenant is gone or holds its maximum of service accounts.
    TenantRefused,
    /// The creator is no longer an admin of the tenant.
    CallerNotAdmin,
}

impl MembershipInsert {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Written),
            Err(r) if r.has(Part::Tenant) => Ok(Self::TenantRefused),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) => Err(r.unexplained("insert_membership")),
        }
    }
}

/// What [`Store::insert_member`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum MemberInsert {
    Written,
    /// The person is a member of the tenant already.
    AlreadyMember,
    /// The tenant is gone.
    TenantGone,
    /// The new user's record or username was written meanwhile.
    UserTaken,
}

impl MemberInsert {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Written),
            Err(r) if r.has(Part::NewMember) => Ok(Self::AlreadyMember),
            Err(r) if r.has(Part::Tenant) => Ok(Self::TenantGone),
            Err(r) if r.has(Part::User) => Ok(Self::UserTaken),
            Err(r) => Err(r.unexplained("insert_member")),
        }
    }
}

/// What [`Store::delete_membership`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum MembershipDelete {
    Deleted,
    /// The tenant item refused: the member is its last admin user.
    LastAdmin,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
    /// The lease ran out and another request took it (or the role
    /// changed): nothing was written.
    LeaseLost,
}

impl MembershipDelete {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Deleted),
            Err(r) if r.has(Part::Tenant) => Ok(Self::LastAdmin),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) if r.has(Part::Member) => Ok(Self::LeaseLost),
            Err(r) => Err(r.unexplained("delete_membership")),
        }
    }
}

/// What [`Store::set_role`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum RoleSet {
    Set,
    /// The tenant's admin-user count refused: no other admin user remains.
    LastAdmin,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
    /// The lease ran out and another request took it (or the role
    /// changed): nothing was written.
    LeaseLost,
    /// The hash items of these keys (their indexes in the keys given) are
    /// gone: revoked or swept since they were listed.
    KeysGone(Vec<usize>),
}

impl RoleSet {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Set),
            Err(r) if r.has(Part::Tenant) => Ok(Self::LastAdmin),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) if r.has(Part::Member) => Ok(Self::LeaseLost),
            Err(r) if !r.keys_at().is_empty() => Ok(Self::KeysGone(r.keys_at())),
            Err(r) => Err(r.unexplained("set_role")),
        }
    }
}

/// The attributes of a lease, and the marks of earlier versions (a
/// `removing` or `changing` timestamp, nothing reads them now) that taking
/// or committing a lease clears.
pub(super) const REMOVE_LEASE: &str =
    "REMOVE lease_kind, lease_token, lease_until, removing, changing";

/// The condition under which a key may be added to a member: no lease
/// holds at `:now` (an expired one is removed by the same write with
/// [`REMOVE_LEASE`], so its holder can no longer commit).
pub(super) const NO_LEASE_HELD: &str = "(attribute_not_exists(lease_until) OR lease_until < :now)";

/// The lease on a membership item. Written by hand or by a version that
/// knows more kinds, it is read leniently, never as an error: an unknown
/// kind as a role change, a missing or malformed end as ended (so that
/// nothing is blocked by it and the operator's repair removes it).
fn lease_from(item: &Item) -> Option<Lease> {
    if !item.contains_key("lease_token") {
        return None;
    }
    let f = Fields(item);
    Some(Lease {
        kind: f
            .opt_s("lease_kind")
            .ok()
            .flatten()
            .and_then(LeaseKind::from_name)
            .unwrap_or(LeaseKind::ChangingRole),
        token: f.opt_uuid("lease_token").ok().flatten().unwrap_or_default(),
        until: f
            .opt_time("lease_until")
            .ok()
            .flatten()
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

/// The attribute of a service account's membership that indexes one of its
/// keys (see [`Membership::key_ids`]): one top-level attribute per key, so
/// that one update can add a key's id and remove another's (a rotation),
/// which two operations on one set attribute cannot.
pub(super) fn key_id_attr(key: Uuid) -> String {
    format!("kid_{}", key.simple())
}

fn key_ids_from(item: &Item) -> std::collections::BTreeSet<Uuid> {
    item.keys()
        .filter_map(|name| name.strip_prefix("kid_"))
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect()
}

/// The part of a membership update that indexes keys of a service
/// account: `SET` assignments for `added`, `REMOVE` names for `removed`,
/// and their attribute names. Empty for a person's membership.
#[derive(Default)]
pub(super) struct KeyIndex {
    pub(super) set: Vec<String>,
    pub(super) remove: Vec<String>,
    pub(super) names: Vec<(String, String)>,
}

impl KeyIndex {
    pub(super) fn of(owner_type: AccountType, added: &[Uuid], removed: &[Uuid]) -> Self {
        let mut index = KeyIndex::default();
        if owner_type != AccountType::Service {
            return index;
        }
        for (i, id) in added.iter().enumerate() {
            index.set.push(format!("#ka{i} = :indexed"));
            index.names.push((format!("#ka{i}"), key_id_attr(*id)));
        }
        for (i, id) in removed.iter().enumerate() {
            index.remove.push(format!("#kr{i}"));
            index.names.push((format!("#kr{i}"), key_id_attr(*id)));
        }
        index
    }

    /// A `SET` clause of the added ids (`""` when none), to append to an
    /// expression that has none.
    pub(super) fn set(&self) -> String {
        if self.set.is_empty() {
            String::new()
        } else {
            format!(" SET {}", self.set.join(", "))
        }
    }

    /// The removed ids' names: appended to a `REMOVE` clause that ends the
    /// expression (`open`), or as a clause of their own.
    pub(super) fn remove(&self, open: bool) -> String {
        match (self.remove.is_empty(), open) {
            (true, _) => String::new(),
            (false, true) => format!(", {}", self.remove.join(", ")),
            (false, false) => format!(" REMOVE {}", self.remove.join(", ")),
        }
    }

    /// Adds the value `:indexed` the `SET` assignments write, if any.
    pub(super) fn values(&self, mut vals: Item) -> Item {
        if !self.set.is_empty() {
            vals.insert(":indexed".into(), n(1));
        }
        vals
    }

    /// The attribute names, consumed by the update.
    pub(super) fn names(self) -> Vec<(String, String)> {
        self.names
    }
}

fn membership_from(item: &Item) -> Result<Membership> {
    let f = Fields(item);
    let (sessions, sessions_version) = super::membership::sessions_from(item);
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
        lease: lease_from(item),
        legacy_mark: item.contains_key("removing") || item.contains_key("changing"),
        key_ids: key_ids_from(item),
        keys_indexed: item.contains_key("kidx"),
        sessions,
        sessions_version,
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
    // A new service account's index is complete from its first write.
    if m.account_type == AccountType::Service && m.key_count == 0 {
        item.insert("kidx".into(), n(1));
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
    /// `max_service_accounts`.
    pub async fn insert_membership(
        &self,
        m: &Membership,
        creator_admin: Option<Uuid>,
        max_service_accounts: u32,
        audit: &AuditRecord,
    ) -> Changed<MembershipInsert> {
        let mut tx = Tx::new();
        tx.push(Part::NewMember, put(&self.table, membership_item(m))?);
        tx.push(
            Part::Tenant,
            self.tenant_counter_item(m, 1, max_service_accounts)?,
        );
        let outcome = self
            .commit(tx, m.tenant_id, creator_admin, &[audit])
            .await?;
        Ok(MembershipInsert::of(outcome)?)
    }

    /// The tenant item's part in adding (`delta` 1) or removing (-1) `m`:
    /// its admin-user count, its service-account count, or only a check that
    /// the tenant exists.
    pub(super) fn tenant_counter_item(
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

    /// Takes the lease of `kind` on a member until `until`, if no other
    /// lease holds at `now`. One UpdateItem, which also answers the
    /// membership as it is with the lease: what the change then works from.
    pub async fn acquire_lease(
        &self,
        tenant: Uuid,
        user: Uuid,
        kind: LeaseKind,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Acquired> {
        let token = Uuid::new_v4();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(tenant), member_sk(user))))
            .update_expression(
                "SET lease_kind = :kind, lease_token = :token, lease_until = :until \
                 REMOVE removing, changing",
            )
            .condition_expression(format!("attribute_exists(pk) AND {NO_LEASE_HELD}"))
            .set_expression_attribute_values(Some(values([
                (":kind", s(kind.name())),
                (":token", s(token.to_string())),
                (":until", n(until.unix_timestamp())),
                (":now", n(now.unix_timestamp())),
            ])))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => Ok(Acquired::Held(membership_from(&item)?)),
                None => Err(StoreError::Corrupt("membership".into(), "lease")),
            },
            Err(err) => {
                let old = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(e)) => e.item.clone(),
                    _ => return Err(err.into()),
                };
                let Some(old) = old else {
                    return Ok(Acquired::Gone);
                };
                let held = membership_from(&old)?;
                match held.lease {
                    // The SDK's retry of our own first attempt, which applied.
                    Some(lease) if lease.token == token => Ok(Acquired::Held(held)),
                    Some(lease) => Ok(Acquired::Busy(lease)),
                    None => Err(StoreError::Corrupt("membership".into(), "lease")),
                }
            }
        }
    }

    /// Sets a member's `key_count` to the keys `found` by a consistent read
    /// while `lease` held (so none could be added), and a service account's
    /// key index to their ids, committing the lease away, unless the count
    /// changed since `m` was read under the lease (only a revocation or a
    /// sweep can change it then: read again). What repairs a count that
    /// items deleted outside our transactions (TTL, an operator) left too
    /// high, and completes the index of a service account whose keys were
    /// written before it existed. `Ok(false)`: not written.
    pub async fn recount_keys(&self, m: &Membership, lease: Uuid, found: &[Uuid]) -> Result<bool> {
        let stale: Vec<Uuid> = m
            .key_ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect();
        let index = KeyIndex::of(m.account_type, found, &stale);
        let actual = i64::try_from(found.len()).unwrap_or(i64::MAX);
        let mut set = index.set().replacen(" SET ", ", ", 1);
        if m.account_type == AccountType::Service {
            // Rebuilt from what was found: verified.
            set.push_str(", kidx = :verified");
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .update_expression(format!(
                "SET key_count = :actual{set} {REMOVE_LEASE}{}",
                index.remove(true)
            ))
            .condition_expression("key_count = :read AND lease_token = :token")
            .set_expression_attribute_values(Some(index.values(values([
                (":actual", n(actual)),
                (":read", n(i64::from(m.key_count))),
                (":token", s(lease.to_string())),
            ]))));
        if m.account_type == AccountType::Service {
            update = update.expression_attribute_values(":verified", n(1));
        }
        for (placeholder, name) in index.names() {
            update = update.expression_attribute_names(placeholder, name);
        }
        self.conditional(update, Repeat::Strict).await
    }

    /// Gives up a lease its holder did not commit away; a no-op when it is
    /// no longer held by `token` (committed, expired and taken, or gone).
    pub async fn release_lease(&self, tenant: Uuid, user: Uuid, token: Uuid) -> Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(tenant), member_sk(user))))
            .update_expression(REMOVE_LEASE)
            .condition_expression("lease_token = :token")
            .expression_attribute_values(":token", s(token.to_string()));
        self.conditional(update, Repeat::Idempotent)
            .await
            .map(|_| ())
    }

    /// Removes a membership and every key it owns in one transaction,
    /// while `lease` (a [`LeaseKind::Removing`] lease) is still its holder's:
    /// no key could be added since `keys` were read after taking it, and
    /// keys revoked or swept meanwhile are deleted again as no-ops, so
    /// `keys` (read under the lease) are all of them. With `caller_admin`
    /// (someone else removes `m`), only while that caller is still an admin.
    pub async fn delete_membership(
        &self,
        m: &Membership,
        lease: Uuid,
        keys: &[StoredKey],
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Changed<MembershipDelete> {
        let mut tx = Tx::new();
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .condition_expression("member_role = :role AND lease_token = :token")
            .set_expression_attribute_values(Some(values([
                (":role", s(m.role.name())),
                (":token", s(lease.to_string())),
            ])))
            .build()?;
        tx.push(
            Part::Member,
            TransactWriteItem::builder().delete(delete).build(),
        );
        for (i, stored) in keys.iter().enumerate() {
            let key = stored.key_ref();
            for item_key in [
                key_of(hash_pk(&key.hash), "hash".into()),
                key_of(
                    tenant_pk(key.tenant_id),
                    key_sk(key.owner_type, key.owner_id, key.key_id),
                ),
            ] {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(item_key))
                    .build()?;
                tx.push(
                    Part::KeyAt(i),
                    TransactWriteItem::builder().delete(delete).build(),
                );
            }
        }
        // Its sessions end with it (listed on the membership, which the
        // lease kept from changing), and the person's index of tenants.
        for delete in self.session_deletes(m)? {
            tx.push(Part::Absent, delete);
        }
        if m.account_type == AccountType::User {
            tx.push(
                Part::Absent,
                self.user_tenant_delete(m.user_id, m.tenant_id)?,
            );
        }
        tx.push(Part::Tenant, self.tenant_counter_item(m, -1, 0)?);
        let outcome = self.commit(tx, m.tenant_id, caller_admin, &[audit]).await?;
        Ok(MembershipDelete::of(outcome)?)
    }

    /// Changes a member's role while `lease` (a [`LeaseKind::ChangingRole`]
    /// lease) is still its holder's, committing the lease away: keeps the
    /// tenant's admin-user count right and rewrites the role copied onto
    /// the hash item of each of `keys`, which must be the member's unexpired
    /// keys as read under the lease (none can be added while it holds; an
    /// expired key authenticates nothing, whatever its copy says). With
    /// `caller_admin` (someone else's role), only while that caller is
    /// still an admin.
    pub async fn set_role(
        &self,
        m: &Membership,
        lease: Uuid,
        role: Role,
        caller_admin: Option<Uuid>,
        keys: &[KeyRef],
        audit: &AuditRecord,
    ) -> Changed<RoleSet> {
        let mut tx = Tx::new();
        // A role change ends the member's sessions (listed on the
        // membership, which the lease kept from changing): signing in
        // again gives one with the new role.
        let ended: Vec<(String, String)> = m
            .sessions
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("#s{i}"), format!("sess_{}", e.id)))
            .collect();
        let remove: String = ended.iter().map(|(p, _)| format!(", {p}")).collect();
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                key_of(tenant_pk(m.tenant_id), member_sk(m.user_id)),
                &format!("SET member_role = :new ADD sess_v :one {REMOVE_LEASE}{remove}"),
                "member_role = :old AND lease_token = :token",
                values([
                    (":new", s(role.name())),
                    (":old", s(m.role.name())),
                    (":token", s(lease.to_string())),
                    (":one", n(1)),
                ]),
                ended,
            )?,
        );
        for delete in self.session_deletes(m)? {
            tx.push(Part::Absent, delete);
        }
        let changed = Membership { role, ..m.clone() };
        match (m.is_admin_user(), changed.is_admin_user()) {
            (true, false) => tx.push(
                Part::Tenant,
                count_admin_users(&self.table, m.tenant_id, -1)?,
            ),
            (false, true) => tx.push(
                Part::Tenant,
                count_admin_users(&self.table, m.tenant_id, 1)?,
            ),
            _ => {}
        }
        for (i, key) in keys.iter().enumerate() {
            tx.push(
                Part::KeyAt(i),
                update(
                    &self.table,
                    key_of(hash_pk(&key.hash), "hash".into()),
                    "SET member_role = :new",
                    "attribute_exists(pk)",
                    values([(":new", s(role.name()))]),
                )?,
            );
        }
        let outcome = self.commit(tx, m.tenant_id, caller_admin, &[audit]).await?;
        Ok(RoleSet::of(outcome)?)
    }

    /// Adds a person to a tenant, creating the user too when `new_user` is
    /// set: all in one transaction.
    pub async fn insert_member(
        &self,
        m: &Membership,
        new_user: Option<&UserRecord>,
        audit: &AuditRecord,
    ) -> Changed<MemberInsert> {
        let mut tx = Tx::new();
        tx.push(Part::NewMember, put(&self.table, membership_item(m))?);
        tx.push(Part::Tenant, self.tenant_counter_item(m, 1, 0)?);
        if m.account_type == AccountType::User {
            tx.push(
                Part::Absent,
                self.user_tenant_put(m.user_id, m.tenant_id, m.created)?,
            );
        }
        if let Some(user) = new_user {
            for item in self.user_items(user)? {
                tx.push(Part::User, item);
            }
        }
        let outcome = self.commit(tx, m.tenant_id, None, &[audit]).await?;
        Ok(MemberInsert::of(outcome)?)
    }
}
