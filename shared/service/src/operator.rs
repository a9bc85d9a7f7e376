//! Operator actions, for the admin CLI (AWS credentials, not the public API).

use uuid::Uuid;

use crate::error::key_limit_reached;
use crate::error::{Error, Result};
use apikeys_core::audit::{AuditAction, AuditActor, AuditEvent, TargetType};
use apikeys_core::authz::may_hold_another_key;
use apikeys_core::domain::{
    folded_name, validate_name, validate_slug, AccountType, ApiKey, Member, Role, Tenant,
};
use apikeys_core::policy::KeyPolicy;
use apikeys_core::token::NewKey;
use apikeys_store::Membership;
use apikeys_store::{KeyInsert, MemberInsert, TenantInsert, UserRecord};

use super::keys::{check_grace, Creator, Tried};
use super::{kept_changing, ApiKeys, KeyRequest, Rotated, CONFLICT_RETRIES};

/// What creating a tenant made: the secret is the admin's first key.
pub struct NewTenant {
    pub tenant: Tenant,
    pub admin: Membership,
    pub key: ApiKey,
    pub secret: NewKey,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
}

fn check_username(user: &NewUser<'_>) -> Result<()> {
    validate_name("username", user.username).map_err(Error::BadInput)?;
    if user.username.chars().any(char::is_whitespace) {
        return Err(Error::BadInput("username must not contain spaces".into()));
    }
    if let Some(email) = user.email {
        validate_name("email", email).map_err(Error::BadInput)?;
    }
    Ok(())
}

impl ApiKeys {
    /// The existing user of that name, or a new one to be written with
    /// the caller's transaction (`Some` second element).
    async fn find_or_new_user(
        &self,
        user: &NewUser<'_>,
    ) -> Result<(UserRecord, Option<UserRecord>)> {
        check_username(user)?;
        if let Some(existing) = self.store.user_by_username(user.username).await? {
            return Ok((existing, None));
        }
        let record = UserRecord {
            id: Uuid::new_v4(),
            username: user.username.to_string(),
            email: user.email.map(str::to_string),
            created: self.now(),
        };
        Ok((record.clone(), Some(record)))
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant> {
        let id = self
            .store
            .tenant_id_by_slug(slug)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        Ok(self
            .store
            .tenant(id)
            .await?
            .ok_or(Error::NotFound("tenant"))?
            .tenant)
    }

    /// Creates a tenant with its first admin user (new or existing) and
    /// that user's first key, in one transaction.
    pub async fn create_tenant(
        &self,
        name: &str,
        slug: &str,
        admin: NewUser<'_>,
        key_name: &str,
    ) -> Result<NewTenant> {
        validate_name("tenant name", name).map_err(Error::BadInput)?;
        validate_slug(slug).map_err(Error::BadInput)?;
        let request = KeyRequest {
            name: key_name,
            expires_at: None,
            role_ceiling: None,
            allowed_networks: Vec::new(),
            scopes: Vec::new(),
        };
        self.check_key_request(&request)?;
        let (user, new_user) = self.find_or_new_user(&admin).await?;
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: name.to_string(),
            slug: slug.to_string(),
            created: self.now(),
        };
        let membership = Membership {
            id: Uuid::new_v4(),
            tenant_id: tenant.id,
            user_id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            account_type: AccountType::User,
            role: Role::TenantAdmin,
            key_count: 0,
            created: self.now(),
            lease: None,
            legacy_mark: false,
            key_ids: Default::default(),
            keys_indexed: false,
            sessions: Vec::new(),
            sessions_version: 0,
        };
        let creator = Creator::operator(user.id, &user.username);
        // A new tenant has no key policy yet.
        let (stored, secret) = self.mint(
            &Member::from(membership.clone()),
            &tenant,
            &KeyPolicy::default(),
            &request,
            &creator,
        );
        let audits = [
            self.audit(
                tenant.id,
                AuditEvent::new(
                    AuditAction::TenantCreated,
                    AuditActor::operator(),
                    TargetType::Tenant,
                    tenant.id,
                    Some(&tenant.name),
                )
                .with_detail(format!(
                    "slug {}; first admin {}",
                    tenant.slug, user.username
                )),
            ),
            self.audit(
                tenant.id,
                self.key_created(AuditActor::operator(), &stored.key, &user.username),
            ),
        ];
        match self
            .store
            .insert_tenant(
                &tenant,
                &membership,
                new_user.as_ref(),
                &stored,
                &[&audits[0], &audits[1]],
            )
            .await?
        {
            TenantInsert::Written => Ok(NewTenant {
                tenant,
                admin: membership,
                key: stored.key,
                secret,
            }),
            TenantInsert::SlugTaken => Err(Error::BadInput(format!("slug '{slug}' is taken"))),
            TenantInsert::UserTaken => Err(Error::BadInput(format!(
                "user '{}' was created meanwhile: try again",
                admin.username
            ))),
        }
    }

    /// Adds a user (created if new) to a tenant with a role.
    pub async fn add_member(
        &self,
        tenant_slug: &str,
        user: NewUser<'_>,
        role: Role,
    ) -> Result<Membership> {
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        let (record, new_user) = self.find_or_new_user(&user).await?;
        // The reverse of the service-account rule: a person may not join
        // under the name of one of the tenant's service accounts.
        let folded = folded_name(&record.username);
        let taken =
            self.store.members(tenant.id).await?.into_iter().any(|m| {
                m.account_type == AccountType::Service && folded_name(&m.username) == folded
            });
        if taken {
            return Err(Error::BadInput(format!(
                "'{}' is the name of a service account of '{tenant_slug}': rename or remove it first",
                record.username
            )));
        }
        let membership = Membership {
            id: Uuid::new_v4(),
            tenant_id: tenant.id,
            user_id: record.id,
            username: record.username,
            email: record.email,
            account_type: AccountType::User,
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
        let audit = self.audit(
            tenant.id,
            AuditEvent::new(
                AuditAction::MemberAdded,
                AuditActor::operator(),
                TargetType::Member,
                membership.user_id,
                Some(&membership.username),
            )
            .with_detail(format!("role {}", role.name())),
        );
        match self
            .store
            .insert_member(&membership, new_user.as_ref(), &audit)
            .await?
        {
            MemberInsert::Written => Ok(membership),
            MemberInsert::AlreadyMember => Err(Error::BadInput(format!(
                "user '{}' is already a member of '{tenant_slug}'",
                membership.username
            ))),
            MemberInsert::TenantGone => Err(Error::NotFound("tenant")),
            MemberInsert::UserTaken => Err(Error::BadInput(
                "username was taken meanwhile: try again".into(),
            )),
        }
    }

    /// Issues a key to an existing member (the operator's way to hand a
    /// user their first key).
    pub async fn issue_key(
        &self,
        tenant_slug: &str,
        username: &str,
        request: KeyRequest<'_>,
    ) -> Result<(ApiKey, NewKey)> {
        self.check_key_request(&request)?;
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        let user = self
            .store
            .user_by_username(username)
            .await?
            .ok_or(Error::NotFound("user"))?;
        let member = self
            .store
            .membership(tenant.id, user.id)
            .await?
            .ok_or(Error::NotFound("membership"))?;
        // At the limit, expired keys not yet swept make room, as for the API.
        let member = match self
            .owner_with_room(Some(member), &AuditActor::operator())
            .await
        {
            Err(Error::BadInput(_)) => return Err(key_limit_reached(Some(username))),
            Err(Error::NotFound(_)) => return Err(Error::NotFound("membership")),
            other => other?,
        };
        let creator = Creator::operator(user.id, "operator");
        // The tenant's policy binds the operator's keys too.
        let policy = self.current_policy(tenant.id).await?;
        self.check_policy(&policy, member.account_type, &request)?;
        let (stored, secret) =
            self.mint(&Member::from(member), &tenant, &policy, &request, &creator);
        let created = self.key_created(AuditActor::operator(), &stored.key, username);
        let audit = self.audit(tenant.id, created);
        match self.store.insert_key(&stored, None, &audit).await? {
            KeyInsert::Written => Ok((stored.key, secret)),
            KeyInsert::PolicyChanged => Err(Error::Contended(
                "the tenant's key policy changed while the key was being made".into(),
            )),
            // The member changed since it was read: say what is true now.
            KeyInsert::OwnerRefused => {
                let now = self.store.membership(tenant.id, user.id).await?;
                match now {
                    None => Err(Error::NotFound("membership")),
                    Some(m) => match m.busy(self.now()) {
                        Some(lease) => Err(Error::Busy(lease.kind, lease.until)),
                        None if !may_hold_another_key(m.key_count) => {
                            Err(key_limit_reached(Some(username)))
                        }
                        None => Err(kept_changing("the member")),
                    },
                }
            }
            // No caller check in the operator's transaction.
            KeyInsert::CallerNotAdmin => Err(kept_changing("the member")),
        }
    }

    /// Rotates any key of a tenant (the operator's rotation): like
    /// `rotate_api_key`, recorded as done by the operator.
    pub async fn rotate_key_as_operator(
        &self,
        tenant_slug: &str,
        key_id: Uuid,
        grace_seconds: Option<i64>,
    ) -> Result<Rotated> {
        let grace = check_grace(grace_seconds)?;
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        let mut reread: Option<Member> = None;
        let mut policy = self.current_policy(tenant.id).await?;
        for _ in 0..CONFLICT_RETRIES {
            let now = self.now();
            let old = self
                .store
                .keys_of_tenant(tenant.id)
                .await?
                .into_iter()
                .find(|k| k.key.id == key_id)
                .filter(|k| k.key.expires_at.is_none_or(|at| at > now))
                .ok_or(Error::NotFound("API key"))?;
            if old.key.replaced_by.is_some() {
                return Err(Error::BadInput(
                    "this key was already rotated: rotate the key that replaced it".into(),
                ));
            }
            if old.key.disabled {
                return Err(Error::BadInput(
                    "this key is disabled: enable it before rotating it, or revoke it".into(),
                ));
            }
            let owner = match reread.take() {
                Some(owner) => owner,
                None => Member::from(
                    self.store
                        .membership(tenant.id, old.key.owner_id)
                        .await?
                        .ok_or(Error::NotFound("API key"))?,
                ),
            };
            let creator = Creator::operator(owner.user_id, "operator");
            let tried = self
                .try_rotation(
                    &old,
                    &owner,
                    &tenant,
                    &mut policy,
                    grace,
                    now,
                    &creator,
                    AuditActor::operator(),
                    None,
                )
                .await?;
            match tried {
                Tried::Done(rotated) => return Ok(*rotated),
                Tried::Again(owner) => reread = owner,
                // The operator is no caller to re-check: not an answer it gets.
                Tried::CallerNotAdmin => return Err(Error::NotFound("API key")),
            }
        }
        Err(kept_changing("the key"))
    }
}
