//! Members: service accounts, roles, and removal with every key.

use uuid::Uuid;

use crate::audit::{AuditAction, AuditActor, AuditEvent, TargetType};
use crate::authz::{authorize, leaves_tenant_without_admin, Action, Target};
use crate::domain::{validate_name, AccountType, Membership, Principal, Role};
use crate::error::{Error, Result};
use crate::store::{Freeze, Marked, StoredKey};

use super::{internal, kept_changing, last_admin, ApiKeys, CONFLICT_RETRIES};

impl ApiKeys {
    pub async fn create_service_account(
        &self,
        p: &Principal,
        name: &str,
        tenant_id: Option<Uuid>,
        role_id: Option<Uuid>,
    ) -> Result<Uuid> {
        validate_name("name", name).map_err(Error::BadInput)?;
        if tenant_id.is_some_and(|t| t != p.tenant_id) {
            return Err(Error::NotFound("tenant"));
        }
        let role = match role_id {
            Some(id) => Role::from_id(id).ok_or(Error::BadInput("unknown role_id".into()))?,
            None => Role::TenantAdmin,
        };
        let forbidden =
            || Error::Forbidden("only a tenant admin may create service accounts".into());
        if !authorize(
            p.actor(),
            Action::CreateServiceAccount,
            Target::ServiceAccount,
        ) {
            return Err(forbidden());
        }
        let account = Membership {
            id: Uuid::new_v4(),
            tenant_id: p.tenant_id,
            user_id: Uuid::new_v4(),
            username: name.to_string(),
            email: None,
            account_type: AccountType::Service,
            role,
            key_count: 0,
            created: self.now(),
            removing: false,
        };
        let cap = self.config.max_service_accounts;
        let audit = self.audit(
            p.tenant_id,
            AuditEvent::new(
                AuditAction::ServiceAccountCreated,
                AuditActor::of(p),
                TargetType::ServiceAccount,
                account.user_id,
                Some(&account.username),
            )
            .with_detail(format!("role {}", role.name())),
        );
        match self
            .store
            .insert_membership(&account, Some(p.user_id), cap, &audit)
            .await
        {
            Ok(()) => Ok(account.user_id),
            Err(e) if e.condition_failed(1) => Err(Error::BadInput(format!(
                "a tenant may have at most {cap} service accounts: delete one first"
            ))),
            Err(e) if e.condition_failed(2) => Err(forbidden()),
            Err(e) => Err(internal(e)),
        }
    }

    /// Deletes a service account and all its keys; `false` when there is no
    /// such service account the caller may delete.
    pub async fn delete_service_account(&self, p: &Principal, user_id: Uuid) -> Result<bool> {
        if p.role != Role::TenantAdmin {
            return Ok(false);
        }
        let Some(account) = self.store.membership(p.tenant_id, user_id).await? else {
            return Ok(false);
        };
        let target = Target::of(p.user_id, user_id, account.account_type);
        if account.account_type != AccountType::Service
            || !authorize(p.actor(), Action::DeleteServiceAccount, target)
        {
            return Ok(false);
        }
        self.remove_member(p, account).await
    }

    /// Removes a member with every key it owns. First the member is marked as
    /// being removed: from then on none of its keys can be created, revoked
    /// or swept and its role cannot change, so nothing the member (or anyone)
    /// does can change what the removal read, and the removal transaction
    /// succeeds at its first try after the mark (the retries are for
    /// conflicts DynamoDB reports while another transaction is in flight).
    /// Returns `false` when it is already gone.
    async fn remove_member(&self, p: &Principal, member: Membership) -> Result<bool> {
        let tenant = self.store.tenant(p.tenant_id).await?;
        let admins = tenant.map_or(0, |t| t.admin_users);
        if leaves_tenant_without_admin(admins, member.account_type, member.role, None) {
            return Err(last_admin("removed"));
        }
        let caller_admin = (member.user_id != p.user_id).then_some(p.user_id);
        let not_admin = || Error::Forbidden("only a tenant admin may remove members".into());
        match self
            .store
            .freeze(&member, Freeze::Removing, self.now(), caller_admin)
            .await?
        {
            Marked::Yes => {}
            Marked::Gone => return Ok(false),
            Marked::CallerNotAdmin => return Err(not_admin()),
        }
        for _ in 0..CONFLICT_RETRIES {
            let Some(current) = self
                .store
                .membership(member.tenant_id, member.user_id)
                .await?
            else {
                return Ok(false);
            };
            let keys = self.keys_of_owner(&current).await?;
            let tenant_item = keys.len().saturating_mul(2).saturating_add(1);
            let (action, target_type) = match current.account_type {
                AccountType::Service => (
                    AuditAction::ServiceAccountRemoved,
                    TargetType::ServiceAccount,
                ),
                AccountType::User => (AuditAction::MemberRemoved, TargetType::Member),
            };
            let audit = self.audit(
                p.tenant_id,
                AuditEvent::new(
                    action,
                    AuditActor::of(p),
                    target_type,
                    current.user_id,
                    Some(&current.username),
                )
                .with_detail(format!(
                    "role {}; {} API key(s) removed with it",
                    current.role.name(),
                    keys.len()
                )),
            );
            match self
                .store
                .delete_membership(&current, &keys, caller_admin, &audit)
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if e.condition_failed(tenant_item) => {
                    self.store.unfreeze(&current, Freeze::Removing).await?;
                    return Err(last_admin("removed"));
                }
                Err(e) if e.condition_failed(tenant_item.saturating_add(1)) => {
                    self.store.unfreeze(&current, Freeze::Removing).await?;
                    return Err(not_admin());
                }
                // Changed by a write that was in flight at the mark: read again.
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        Err(kept_changing("membership"))
    }

    async fn membership_by_id(&self, p: &Principal, membership_id: Uuid) -> Result<Membership> {
        self.store
            .members(p.tenant_id)
            .await?
            .into_iter()
            .find(|m| m.id == membership_id)
            .ok_or(Error::NotFound("membership"))
    }

    pub async fn set_membership_role(
        &self,
        p: &Principal,
        membership_id: Uuid,
        role_id: Uuid,
    ) -> Result<Uuid> {
        let role = Role::from_id(role_id).ok_or(Error::BadInput("unknown role_id".into()))?;
        let forbidden = || Error::Forbidden("only a tenant admin may change roles".into());
        if p.role != Role::TenantAdmin {
            return Err(forbidden());
        }
        for _ in 0..CONFLICT_RETRIES {
            let member = self.membership_by_id(p, membership_id).await?;
            let target = Target::of(p.user_id, member.user_id, member.account_type);
            if !authorize(p.actor(), Action::ChangeRole, target) {
                return Err(Error::Forbidden(
                    "a service account cannot change a person's role: ask a human tenant admin"
                        .into(),
                ));
            }
            if member.removing {
                return Err(Error::NotFound("membership"));
            }
            if target == Target::Myself && member.role != Role::TenantAdmin {
                return Err(forbidden());
            }
            if member.role == role {
                return Ok(member.id);
            }
            let admins = self
                .store
                .tenant(p.tenant_id)
                .await?
                .map_or(0, |r| r.admin_users);
            if leaves_tenant_without_admin(admins, member.account_type, member.role, Some(role)) {
                return Err(last_admin("demoted"));
            }
            let counts_admins = member.is_admin_user()
                != Membership {
                    role,
                    ..member.clone()
                }
                .is_admin_user();
            let caller_item = if counts_admins { 2 } else { 1 };
            let caller_admin = (target != Target::Myself).then_some(p.user_id);
            // Freeze the member first (no key created, revoked or swept until
            // the change lands): the role is copied onto each of its hash
            // items, and all of them change in the transaction, which then
            // cannot be outrun by the member churning its keys.
            match self
                .store
                .freeze(&member, Freeze::ChangingRole, self.now(), caller_admin)
                .await?
            {
                Marked::Yes => {}
                Marked::Gone => return Err(Error::NotFound("membership")),
                Marked::CallerNotAdmin => return Err(forbidden()),
            }
            let keys: Vec<_> = self
                .keys_of_owner(&member)
                .await?
                .iter()
                .map(StoredKey::key_ref)
                .collect();
            let refused = |e: Error| async {
                self.store.unfreeze(&member, Freeze::ChangingRole).await?;
                Err::<Uuid, Error>(e)
            };
            let audit = self.audit(
                p.tenant_id,
                AuditEvent::new(
                    AuditAction::RoleChanged,
                    AuditActor::of(p),
                    match member.account_type {
                        AccountType::Service => TargetType::ServiceAccount,
                        AccountType::User => TargetType::Member,
                    },
                    member.user_id,
                    Some(&member.username),
                )
                .with_detail(format!("{} -> {}", member.role.name(), role.name())),
            );
            match self
                .store
                .set_role(&member, role, caller_admin, &keys, &audit)
                .await
            {
                Ok(()) => return Ok(member.id),
                Err(e) if counts_admins && e.condition_failed(1) => {
                    return refused(last_admin("demoted")).await
                }
                Err(e) if caller_admin.is_some() && e.condition_failed(caller_item) => {
                    return refused(forbidden()).await
                }
                // Changed by another admin, or by a key write in flight at the
                // freeze: read again (the next freeze is a no-op).
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        let member = self.membership_by_id(p, membership_id).await?;
        self.store.unfreeze(&member, Freeze::ChangingRole).await?;
        Err(kept_changing("membership"))
    }

    /// Removes a member (user or service account) and all their keys here.
    pub async fn delete_membership(&self, p: &Principal, membership_id: Uuid) -> Result<bool> {
        if p.role != Role::TenantAdmin {
            return Err(Error::Forbidden(
                "only a tenant admin may remove members".into(),
            ));
        }
        let member = match self.membership_by_id(p, membership_id).await {
            Ok(m) => m,
            Err(Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let target = Target::of(p.user_id, member.user_id, member.account_type);
        if !authorize(p.actor(), Action::RemoveMember, target) {
            return Err(Error::Forbidden(
                "a service account cannot remove a person: ask a human tenant admin".into(),
            ));
        }
        self.remove_member(p, member).await
    }
}
