//! Members: service accounts, roles, and removal with every key.

use std::collections::HashSet;

use uuid::Uuid;

use crate::error::last_admin;
use crate::error::{Error, Result};
use apikeys_core::audit::{AuditAction, AuditActor, AuditEvent, AuditRecord, TargetType};
use apikeys_core::authz::{
    authorize, leaves_tenant_without_admin, within, Action, Actor, Made, Maker, Target,
};
use apikeys_core::domain::{folded_name, validate_name, AccountType, LeaseKind, Role};
use apikeys_core::principal::Principal;
use apikeys_store::Membership;
use apikeys_store::{MembershipDelete, MembershipInsert, RoleSet, StoredKey};

use super::{
    kept_changing, lease_lost, may_change, wider_than_credential, ApiKeys, Leased, CONFLICT_RETRIES,
};

impl ApiKeys {
    pub async fn create_service_account(
        &self,
        p: &Principal,
        name: &str,
        tenant_id: Option<Uuid>,
        role_id: Option<Uuid>,
    ) -> Result<Uuid> {
        may_change(p)?;
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
        // Its role no higher than the maker's (its keys are each bounded by
        // whoever makes them).
        within(&Maker::of(p), Made::Account(role)).map_err(|w| wider_than_credential(p, w))?;
        // A service account named like a person of the tenant would pass
        // for them in the audit log and the member lists.
        let folded = folded_name(name);
        let taken = self
            .store
            .members(p.tenant_id)
            .await?
            .into_iter()
            .any(|m| m.account_type == AccountType::User && folded_name(&m.username) == folded);
        if taken {
            return Err(Error::BadInput(format!(
                "'{name}' is the username of a member of this tenant: give the service account \
                 another name"
            )));
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
            lease: None,
            legacy_mark: false,
            key_ids: Default::default(),
            keys_indexed: false,
            sessions: Vec::new(),
            sessions_version: 0,
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
            .await?
        {
            MembershipInsert::Written => Ok(account.user_id),
            MembershipInsert::TenantRefused => Err(Error::BadInput(format!(
                "a tenant may have at most {cap} service accounts: delete one first"
            ))),
            MembershipInsert::CallerNotAdmin => Err(forbidden()),
        }
    }

    /// Deletes a service account and all its keys; `false` when there is no
    /// such service account the caller may delete.
    pub async fn delete_service_account(&self, p: &Principal, user_id: Uuid) -> Result<bool> {
        may_change(p)?;
        // Refused like every other change a non-admin may not make.
        if !authorize(
            p.actor(),
            Action::DeleteServiceAccount,
            Target::ServiceAccount,
        ) {
            return Err(Error::Forbidden(
                "only a tenant admin may delete service accounts".into(),
            ));
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

    /// Removes a member with every key it owns, under a removal lease (see
    /// [`ApiKeys::with_lease`]): no key can be added to it meanwhile, so the
    /// keys read under the lease are all it has (any revoked or swept since
    /// are deleted again as no-ops). Returns `false` when it is already gone.
    async fn remove_member(&self, p: &Principal, member: Membership) -> Result<bool> {
        let caller_admin = (member.user_id != p.user_id).then_some(p.user_id);
        let not_admin = || Error::Forbidden("only a tenant admin may remove members".into());
        let removed = self
            .with_lease(&member, LeaseKind::Removing, |current, lease| async move {
                // Oneself: decided again on the role as read now (an admin
                // demoted meanwhile may no longer remove itself); the
                // deletion is conditioned on that role.
                if current.user_id == p.user_id {
                    let now = Actor::new(current.role, current.account_type);
                    if !authorize(now, Action::RemoveMember, Target::Myself) {
                        return Err(not_admin());
                    }
                }
                let tenant = self.store.tenant(p.tenant_id).await?;
                let admins = tenant.map_or(0, |t| t.admin_users);
                if leaves_tenant_without_admin(admins, current.account_type, current.role, None) {
                    return Err(last_admin("removed"));
                }
                let keys = self.keys_of_owner(&current).await?;
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
                    .delete_membership(&current, lease, &keys, caller_admin, &audit)
                    .await?
                {
                    MembershipDelete::Deleted => Ok(Leased::Committed(())),
                    MembershipDelete::LastAdmin => Err(last_admin("removed")),
                    MembershipDelete::CallerNotAdmin => Err(not_admin()),
                    // The lease ran out and was taken: nothing was written.
                    MembershipDelete::LeaseLost => Err(lease_lost()),
                }
            })
            .await;
        match removed {
            Ok(()) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
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
        may_change(p)?;
        let role = Role::from_id(role_id).ok_or(Error::BadInput("unknown role_id".into()))?;
        let forbidden = || Error::Forbidden("only a tenant admin may change roles".into());
        // Changing one's own role is allowed to every admin and to no one
        // else: whoever may not do that may change no role at all.
        if !authorize(p.actor(), Action::ChangeRole, Target::Myself) {
            return Err(forbidden());
        }
        let member = self.membership_by_id(p, membership_id).await?;
        // Decided on what the request read, and again on the membership as
        // the lease found it.
        let check = |member: &Membership| {
            let target = Target::of(p.user_id, member.user_id, member.account_type);
            if !authorize(p.actor(), Action::ChangeRole, target) {
                return Err(Error::Forbidden(
                    "a service account cannot change a person's role: ask a human tenant admin"
                        .into(),
                ));
            }
            // Oneself: decided again on the role as read now (an admin
            // demoted meanwhile is no longer one).
            let now = Actor::new(member.role, member.account_type);
            if target == Target::Myself && !authorize(now, Action::ChangeRole, target) {
                return Err(forbidden());
            }
            // A role raised reaches every credential of the member: never
            // by a limited credential.
            let made = Made::Role {
                from: Some(member.role),
                to: role,
            };
            within(&Maker::of(p), made).map_err(|w| wider_than_credential(p, w))?;
            Ok(target)
        };
        check(&member)?;
        if member.role == role && member.busy(self.now()).is_none() {
            return Ok(member.id);
        }
        self.with_lease(
            &member,
            LeaseKind::ChangingRole,
            |member, lease| async move {
                let target = check(&member)?;
                if member.id != membership_id {
                    return Err(Error::NotFound("membership"));
                }
                if member.role == role {
                    return Ok(Leased::Released(member.id));
                }
                let admins = self
                    .store
                    .tenant(p.tenant_id)
                    .await?
                    .map_or(0, |r| r.admin_users);
                if leaves_tenant_without_admin(admins, member.account_type, member.role, Some(role))
                {
                    return Err(last_admin("demoted"));
                }
                let caller_admin = (target != Target::Myself).then_some(p.user_id);
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
                    .with_detail(format!(
                        "{} -> {}",
                        member.role.name(),
                        role.name()
                    )),
                );
                self.commit_role(&member, lease, role, caller_admin, &audit)
                    .await
            },
        )
        .await
    }

    /// A role change's transaction, under its lease: tried again when a key
    /// was revoked or swept since the listing.
    async fn commit_role(
        &self,
        member: &Membership,
        lease: Uuid,
        role: Role,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Result<Leased<Uuid>> {
        let forbidden = || Error::Forbidden("only a tenant admin may change roles".into());
        // Keys whose hash lookup alone is gone (deleted outside our
        // transactions): they authenticate nothing and hold no copy.
        let mut halves = HashSet::new();
        for _ in 0..CONFLICT_RETRIES {
            // The keys that can authenticate: their copies change with the
            // role. No key can be added while the lease holds.
            let now = self.now();
            let keys: Vec<_> = self
                .keys_of_owner(member)
                .await?
                .iter()
                .filter(|k| k.key.expires_at.is_none_or(|at| at > now))
                .filter(|k| !halves.contains(&k.key.id))
                .map(StoredKey::key_ref)
                .collect();
            let gone = match self
                .store
                .set_role(member, lease, role, caller_admin, &keys, audit)
                .await?
            {
                RoleSet::Set => return Ok(Leased::Committed(member.id)),
                RoleSet::LastAdmin => return Err(last_admin("demoted")),
                RoleSet::CallerNotAdmin => return Err(forbidden()),
                RoleSet::LeaseLost => return Err(lease_lost()),
                RoleSet::KeysGone(gone) => gone,
            };
            // A key revoked or swept since the listing (list again), or one
            // whose lookup alone is gone (leave it out).
            for key in gone.iter().filter_map(|&i| keys.get(i)) {
                if !self.store.hash_exists(&key.hash).await? {
                    halves.insert(key.key_id);
                }
            }
        }
        Err(kept_changing("membership"))
    }

    /// Removes a member (user or service account) and all their keys here.
    pub async fn delete_membership(&self, p: &Principal, membership_id: Uuid) -> Result<bool> {
        may_change(p)?;
        // Every admin may remove itself, and no one else may remove anyone.
        if !authorize(p.actor(), Action::RemoveMember, Target::Myself) {
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
