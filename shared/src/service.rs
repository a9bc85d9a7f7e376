//! The service's operations: authentication and every API action, each applying
//! the authorization rules to targets resolved inside the caller's tenant.

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::authz::{authorize, leaves_tenant_without_admin, Action, Target};
use crate::clock::Clock;
use crate::config::{Config, MAX_KEYS_PER_OWNER};
use crate::domain::{validate_name, AccountType, ApiKey, Membership, Principal, Role, Tenant};
use crate::error::{Error, Result};
use crate::store::{Marked, Store, StoreError, StoredKey};
use crate::token::{verify_presented, NewKey};

/// How often a read-modify-write re-reads and retries after a concurrent change.
const CONFLICT_RETRIES: usize = 3;

pub struct ApiKeys {
    store: Store,
    clock: Arc<dyn Clock>,
    config: Config,
}

/// What an owner's key is being created with.
pub struct KeyRequest<'a> {
    pub name: &'a str,
    pub expires_at: Option<OffsetDateTime>,
}

fn key_limit_reached() -> Error {
    Error::BadInput(format!(
        "an owner may hold at most {MAX_KEYS_PER_OWNER} keys in a tenant: revoke one first"
    ))
}

fn last_admin(verb: &str) -> Error {
    Error::BadInput(format!("the last admin user of a tenant cannot be {verb}"))
}

/// A store error after which a retry by the caller cannot help: a condition
/// that no branch of the caller explained is a bug, reported as internal.
fn internal(e: StoreError) -> Error {
    Error::Store(e)
}

impl ApiKeys {
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: Config) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Now, to the second: expiry is stored and enforced in whole seconds.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// Resolves a bearer key (and optional tenant header) to the caller.
    /// A key with a bad shape or checksum is rejected without a database read;
    /// otherwise two strongly consistent reads: the hash lookup, then the
    /// owner's membership, so revocation, expiry, role changes and removal all
    /// apply on the very next request.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        tenant_header: Option<&str>,
    ) -> Result<Principal> {
        let hash = self.presented_hash(bearer).ok_or(Error::Unauthenticated)?;
        let wanted_tenant = match tenant_header {
            Some(value) => Some(Uuid::parse_str(value.trim()).map_err(|_| Error::Unauthenticated)?),
            None => None,
        };
        let record = self
            .store
            .key_by_hash(&hash)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if record.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(Error::Unauthenticated);
        }
        if wanted_tenant.is_some_and(|t| t != record.tenant_id) {
            return Err(Error::Unauthenticated);
        }
        let member = self
            .store
            .membership(record.tenant_id, record.owner_id)
            .await?
            .filter(|m| m.account_type == record.owner_type)
            .ok_or(Error::Unauthenticated)?;
        Ok(Principal {
            user_id: member.user_id,
            tenant_id: member.tenant_id,
            api_key_id: record.key_id,
            username: member.username.clone(),
            account_type: member.account_type,
            role: member.role,
            membership: member,
        })
    }

    /// The hash of a presented key when its shape and checksum are right:
    /// no database read. `None` can only ever be "Unauthenticated".
    pub fn presented_hash(&self, bearer: Option<&str>) -> Option<crate::token::TokenHash> {
        let prefixes = [
            self.config.user_key_prefix.as_str(),
            self.config.service_key_prefix.as_str(),
        ];
        bearer.and_then(|key| verify_presented(key, &prefixes))
    }

    pub async fn current_tenant(&self, p: &Principal) -> Result<Tenant> {
        match self.store.tenant(p.tenant_id).await? {
            Some(record) => Ok(record.tenant),
            None => Err(Error::Unauthenticated),
        }
    }

    /// The caller's membership, as authentication read it in this request.
    pub fn me(&self, p: &Principal) -> Membership {
        p.membership.clone()
    }

    /// Users and service accounts of the caller's tenant.
    pub async fn members(&self, p: &Principal) -> Result<Vec<Membership>> {
        Ok(self.store.members(p.tenant_id).await?)
    }

    fn mint(
        &self,
        owner: &Membership,
        request: &KeyRequest<'_>,
        creator: (Uuid, &str),
    ) -> (StoredKey, NewKey) {
        let prefix = match owner.account_type {
            AccountType::User => &self.config.user_key_prefix,
            AccountType::Service => &self.config.service_key_prefix,
        };
        let secret = NewKey::generate(prefix);
        let stored = StoredKey {
            key: ApiKey {
                id: Uuid::new_v4(),
                name: request.name.to_string(),
                tenant_id: owner.tenant_id,
                owner_id: owner.user_id,
                owner_type: owner.account_type,
                created: self.now(),
                created_by: creator.0,
                created_by_name: Some(creator.1.to_string()),
                expires_at: request
                    .expires_at
                    .map(|at| at.replace_nanosecond(0).unwrap_or(at)),
                hint: secret.hint(),
            },
            hash: secret.hash(),
        };
        (stored, secret)
    }

    fn check_key_request(&self, request: &KeyRequest<'_>) -> Result<()> {
        validate_name("name", request.name).map_err(Error::BadInput)?;
        if request.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(Error::BadInput("expires_at must be in the future".into()));
        }
        Ok(())
    }

    /// Every key an owner holds in its tenant.
    async fn keys_of_owner(&self, owner: &Membership) -> Result<Vec<StoredKey>> {
        let tenant = owner.tenant_id;
        Ok(match owner.account_type {
            AccountType::User => self.store.keys_of_user(tenant, owner.user_id).await?,
            AccountType::Service => self
                .store
                .service_account_keys(tenant)
                .await?
                .into_iter()
                .filter(|k| k.key.owner_id == owner.user_id)
                .collect(),
        })
    }

    /// An owner at the key limit whose expired keys are not swept yet: they
    /// no longer count (the listing hides them), so remove them now, in one
    /// transaction, and return the owner as it is after that.
    async fn make_room(&self, owner: Membership) -> Result<Membership> {
        let now = self.now();
        let expired: Vec<_> = self
            .keys_of_owner(&owner)
            .await?
            .iter()
            .filter(|k| k.key.expires_at.is_some_and(|at| at <= now))
            .map(StoredKey::key_ref)
            .collect();
        if expired.is_empty() {
            return Ok(owner);
        }
        match self.store.delete_expired_keys(&owner, &expired, now).await {
            // A failed condition: one was revoked or swept meanwhile; the
            // re-read below tells what room there is now.
            Err(e) if !e.is_condition_failure() => return Err(e.into()),
            _ => {}
        }
        self.store
            .membership(owner.tenant_id, owner.user_id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// `create_api_key`: the secret is in the returned [`NewKey`], shown once.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        user_id: Uuid,
        request: KeyRequest<'_>,
        default_tenant_id: Option<Uuid>,
    ) -> Result<(ApiKey, NewKey)> {
        self.check_key_request(&request)?;
        if default_tenant_id.is_some_and(|t| t != p.tenant_id) {
            return Err(Error::BadInput(
                "default_tenant_id must be the tenant the request acts in".into(),
            ));
        }
        // Only an admin may create a key for someone else: decided before
        // any read.
        let for_myself = user_id == p.user_id;
        if !for_myself && !authorize(p.actor(), Action::CreateKey, Target::ServiceAccount) {
            return Err(Error::NotFound("user"));
        }
        let owner = if for_myself {
            p.membership.clone()
        } else {
            self.store
                .membership(p.tenant_id, user_id)
                .await?
                .ok_or(Error::NotFound("user"))?
        };
        let target = Target::of(p.user_id, owner.user_id, owner.account_type);
        if owner.removing || !authorize(p.actor(), Action::CreateKey, target) {
            return Err(Error::NotFound("user"));
        }
        let owner = if owner.key_count >= MAX_KEYS_PER_OWNER {
            self.make_room(owner).await?
        } else {
            owner
        };
        if owner.key_count >= MAX_KEYS_PER_OWNER {
            return Err(key_limit_reached());
        }
        let (stored, secret) = self.mint(&owner, &request, (p.user_id, &p.username));
        let creator_admin = (target != Target::Myself).then_some(p.user_id);
        match self.store.insert_key(&stored, creator_admin).await {
            Ok(()) => Ok((stored.key, secret)),
            // The owner is gone, being removed, or reached the limit meanwhile.
            Err(e) if e.condition_failed(2) => {
                match self
                    .store
                    .membership(owner.tenant_id, owner.user_id)
                    .await?
                {
                    Some(now) if !now.removing && now.key_count >= MAX_KEYS_PER_OWNER => {
                        Err(key_limit_reached())
                    }
                    _ => Err(Error::NotFound("user")),
                }
            }
            // The creator is no longer an admin: not theirs to create.
            Err(e) if e.condition_failed(3) => Err(Error::NotFound("user")),
            Err(e) => Err(internal(e)),
        }
    }

    /// Keys the caller may see, never expired ones: their own, and for an
    /// admin every service-account key of the tenant. Oldest first, then by name.
    pub async fn list_api_keys(&self, p: &Principal) -> Result<Vec<ApiKey>> {
        let mut keys = match p.account_type {
            AccountType::User => self.store.keys_of_user(p.tenant_id, p.user_id).await?,
            AccountType::Service => Vec::new(),
        };
        let sees_service_keys = authorize(p.actor(), Action::ListKeys, Target::ServiceAccount);
        if sees_service_keys || p.account_type == AccountType::Service {
            let service_keys = self.store.service_account_keys(p.tenant_id).await?;
            keys.extend(service_keys.into_iter().filter(|k| {
                let target = Target::of(p.user_id, k.key.owner_id, AccountType::Service);
                authorize(p.actor(), Action::ListKeys, target)
            }));
        }
        let now = self.now();
        let mut keys: Vec<ApiKey> = keys
            .into_iter()
            .map(|k| k.key)
            .filter(|k| k.expires_at.is_none_or(|at| at > now))
            .collect();
        keys.sort_by(|a, b| (a.created, &a.name, a.id).cmp(&(b.created, &b.name, b.id)));
        Ok(keys)
    }

    /// `delete_api_key`: `false` for an unknown key and for one the caller may
    /// not revoke alike.
    pub async fn revoke_api_key(&self, p: &Principal, key_id: Uuid) -> Result<bool> {
        let own = match p.account_type {
            AccountType::User => {
                self.store
                    .key(p.tenant_id, AccountType::User, p.user_id, key_id)
                    .await?
            }
            AccountType::Service => None,
        };
        // A person who is not an admin can only revoke their own keys: no
        // read of service-account keys for them.
        let may_see_service_keys = p.account_type == AccountType::Service
            || authorize(p.actor(), Action::RevokeKey, Target::ServiceAccount);
        let found = match own {
            Some(k) => Some(k),
            None if may_see_service_keys => {
                self.store
                    .key(p.tenant_id, AccountType::Service, Uuid::nil(), key_id)
                    .await?
            }
            None => None,
        };
        let Some(stored) = found else {
            return Ok(false);
        };
        let target = Target::of(p.user_id, stored.key.owner_id, stored.key.owner_type);
        if !authorize(p.actor(), Action::RevokeKey, target) {
            return Ok(false);
        }
        let caller_admin = (target != Target::Myself).then_some(p.user_id);
        match self
            .store
            .delete_key(&stored.key_ref(), None, caller_admin)
            .await
        {
            Ok(()) => Ok(true),
            // Revoked (or its owner removed) meanwhile: it is gone, truly.
            Err(e) if e.condition_failed(0) || e.condition_failed(1) => Ok(false),
            // Its owner is being removed, keys and all, right now: asking
            // again in a moment finds it gone.
            Err(e) if e.condition_failed(2) => Err(StoreError::Transient {
                message: "the key's owner is being removed".into(),
                unknown_outcome: false,
            }
            .into()),
            // The caller lost the admin role meanwhile: no longer theirs.
            Err(e) if e.condition_failed(3) => Ok(false),
            Err(e) => Err(internal(e)),
        }
    }

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
        match self
            .store
            .insert_membership(&account, Some(p.user_id), cap)
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
            .mark_removing(&member, self.now(), caller_admin)
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
            match self
                .store
                .delete_membership(&current, &keys, caller_admin)
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if e.condition_failed(tenant_item) => {
                    self.store.clear_removing(&current).await?;
                    return Err(last_admin("removed"));
                }
                Err(e) if e.condition_failed(tenant_item.saturating_add(1)) => {
                    self.store.clear_removing(&current).await?;
                    return Err(not_admin());
                }
                // Changed by a write that was in flight at the mark: read again.
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        Err(StoreError::Transient {
            message: "membership kept changing".into(),
            unknown_outcome: false,
        }
        .into())
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
            match self.store.set_role(&member, role, caller_admin).await {
                Ok(()) => return Ok(member.id),
                Err(e) if e.condition_failed(0) => continue,
                Err(e) if counts_admins && e.condition_failed(1) => {
                    return Err(last_admin("demoted"))
                }
                Err(e) if e.condition_failed(caller_item) => return Err(forbidden()),
                Err(e) => return Err(internal(e)),
            }
        }
        Err(StoreError::Transient {
            message: "membership kept changing".into(),
            unknown_outcome: false,
        }
        .into())
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

/// Operator actions, for the admin CLI (AWS credentials, not the public API).
pub mod operator {
    use super::*;
    use crate::domain::validate_slug;
    use crate::store::UserRecord;

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
                removing: false,
            };
            let (stored, secret) = self.mint(&membership, &request, (user.id, &user.username));
            match self
                .store
                .insert_tenant(&tenant, &membership, new_user.as_ref(), &stored)
                .await
            {
                Ok(()) => Ok(NewTenant {
                    tenant,
                    admin: membership,
                    key: stored.key,
                    secret,
                }),
                Err(e) if e.is_condition_failure() => Err(Error::BadInput(format!(
                    "slug '{slug}' is taken (or user '{}' was created meanwhile)",
                    admin.username
                ))),
                Err(e) => Err(internal(e)),
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
                removing: false,
            };
            match self
                .store
                .insert_member(&membership, new_user.as_ref())
                .await
            {
                Ok(()) => Ok(membership),
                Err(e) if e.condition_failed(0) => Err(Error::BadInput(format!(
                    "user '{}' is already a member of '{tenant_slug}'",
                    membership.username
                ))),
                Err(e) if e.condition_failed(1) => Err(Error::NotFound("tenant")),
                Err(e) if e.condition_failed(2) || e.condition_failed(3) => Err(Error::BadInput(
                    "username was taken meanwhile: try again".into(),
                )),
                Err(e) => Err(internal(e)),
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
            if member.key_count >= MAX_KEYS_PER_OWNER {
                return Err(Error::BadInput(format!(
                    "'{username}' already holds {MAX_KEYS_PER_OWNER} keys in '{tenant_slug}'"
                )));
            }
            let (stored, secret) = self.mint(&member, &request, (user.id, "operator"));
            match self.store.insert_key(&stored, None).await {
                Ok(()) => Ok((stored.key, secret)),
                Err(e) if e.condition_failed(2) => Err(Error::NotFound("membership")),
                Err(e) => Err(internal(e)),
            }
        }
    }
}
