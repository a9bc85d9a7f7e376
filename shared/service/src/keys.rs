//! API keys: creating (with room made from expired keys at the limit),
//! listing and revoking.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::MAX_ROTATION_GRACE_SECONDS;
use crate::error::key_limit_reached;
use crate::error::{Error, Result};
use apikeys_core::audit::{describe_expiry, AuditAction, AuditActor, AuditEvent, TargetType};
use apikeys_core::authz::may_hold_another_key;
use apikeys_core::authz::{authorize, narrowed, within, Action, Made, Maker, Reach, Target};
use apikeys_core::domain::{
    narrow_networks, validate_name, AccountType, ApiKey, LeaseKind, Member, Role, Tenant,
};
use apikeys_core::policy::{narrow_scopes, KeyPolicy, Violation};
use apikeys_core::principal::Principal;
use apikeys_core::token::NewKey;
use apikeys_store::Membership;
use apikeys_store::{
    AuthCopy, KeyDelete, KeyInsert, KeyToggle, Rotation, StoredKey, EXPIRED_PER_TRANSACTION,
};

use super::{kept_changing, may_change, wider_than_credential, ApiKeys, Leased, CONFLICT_RETRIES};

/// What an owner's key is being created with.
pub struct KeyRequest<'a> {
    pub name: &'a str,
    pub expires_at: Option<OffsetDateTime>,
    /// The most the key may do (`None`: its owner's role); never more than
    /// the key that creates it may.
    pub role_ceiling: Option<Role>,
    /// The networks it may be used from (empty: any); within those of the
    /// key that creates it.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Its scopes, checked by `policy::parse_scopes` (empty: not limited
    /// by scopes); within those of the key that creates it.
    pub scopes: Vec<String>,
}

/// Who makes a key: recorded on it.
pub(super) struct Creator<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    /// The key that acted (`None`: the operator).
    pub key_id: Option<Uuid>,
    /// That key's role ceiling: no key it makes may do more.
    pub ceiling: Option<Role>,
    /// That key's networks: no key it makes may be used from elsewhere.
    pub networks: Vec<ipnet::IpNet>,
    /// That key's scopes: no key it makes may do more.
    pub scopes: Vec<String>,
}

impl<'a> Creator<'a> {
    pub(super) fn of(p: &'a Principal) -> Self {
        Self {
            user_id: p.user_id,
            name: &p.username,
            key_id: Some(p.api_key_id),
            ceiling: p.key_ceiling,
            networks: p.key_networks.clone(),
            scopes: p.key_scopes.clone(),
        }
    }

    /// The operator, acting for `user_id` (no ceiling of its own).
    pub(super) fn operator(user_id: Uuid, name: &'a str) -> Self {
        Self {
            user_id,
            name,
            key_id: None,
            ceiling: None,
            networks: Vec::new(),
            scopes: Vec::new(),
        }
    }
}

/// One try at a rotation (see [`ApiKeys::rotation`]).
struct Attempt {
    new: StoredKey,
    secret: NewKey,
    grace_end: Option<OffsetDateTime>,
    audit: apikeys_core::audit::AuditRecord,
}

impl Attempt {
    fn done(self, now: OffsetDateTime) -> Rotated {
        Rotated {
            key: self.new.key,
            secret: self.secret,
            old_key_expires_at: self.grace_end.unwrap_or(now),
        }
    }
}

/// What one try at a rotation came to (see [`ApiKeys::try_rotation`]).
pub(super) enum Tried {
    Done(Box<Rotated>),
    Again(Option<Member>),
    CallerNotAdmin,
}

/// A rotation's answer: the new key (its secret shown once) and when the
/// key it replaced stops working.
pub struct Rotated {
    pub key: ApiKey,
    pub secret: NewKey,
    pub old_key_expires_at: OffsetDateTime,
}

/// How far a key reaches, as the rule of `authz::within` compares it.
fn reach_of(key: &ApiKey) -> Reach {
    Reach {
        ceiling: key.role_ceiling,
        scopes: key.scopes.clone(),
        networks: key.allowed_networks.clone(),
        expires_at: key.expires_at,
    }
}

/// A rotation's grace in seconds: 0 when not given, at most 7 days.
pub(super) fn check_grace(grace_seconds: Option<i64>) -> Result<i64> {
    let grace = grace_seconds.unwrap_or(0);
    if !(0..=MAX_ROTATION_GRACE_SECONDS).contains(&grace) {
        return Err(Error::BadInput(format!(
            "grace_period_seconds must be from 0 to {MAX_ROTATION_GRACE_SECONDS} (7 days)"
        )));
    }
    Ok(grace)
}

impl ApiKeys {
    /// A new key of `owner` in `tenant` (the owner's tenant), with the copy
    /// authentication will read.
    pub(super) fn mint(
        &self,
        owner: &Member,
        tenant: &Tenant,
        policy: &KeyPolicy,
        request: &KeyRequest<'_>,
        creator: &Creator<'_>,
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
                created_by: creator.user_id,
                created_by_name: Some(creator.name.to_string()),
                expires_at: request
                    .expires_at
                    .map(|at| at.replace_nanosecond(0).unwrap_or(at)),
                hint: secret.hint(),
                created_by_key_id: creator.key_id,
                rotated_from: None,
                replaced_by: None,
                // Never more than the key that makes it may do.
                role_ceiling: Role::lower_ceiling(request.role_ceiling, creator.ceiling),
                disabled: false,
                allowed_networks: request.allowed_networks.clone(),
                scopes: request.scopes.clone(),
                leaked: false,
                last_used: None,
            },
            hash: secret.hash(),
            copy: Some(AuthCopy::of(owner, tenant.clone(), policy.clone())),
        };
        (stored, secret)
    }

    pub(super) fn check_key_request(&self, request: &KeyRequest<'_>) -> Result<()> {
        validate_name("name", request.name).map_err(Error::BadInput)?;
        if request.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(Error::BadInput("expires_at must be in the future".into()));
        }
        Ok(())
    }

    /// Refuses a key of `owner_type`, made now, that `policy` (its tenant's)
    /// would refuse at its first use, naming the rule.
    pub(super) fn check_policy(
        &self,
        policy: &KeyPolicy,
        owner_type: AccountType,
        request: &KeyRequest<'_>,
    ) -> Result<()> {
        let now = self.now();
        match policy.violation(owner_type, now, request.expires_at, &request.scopes) {
            None => Ok(()),
            Some(Violation::NoExpiry { max_days } | Violation::TooLong { max_days }) => {
                Err(Error::BadInput(format!(
                    "this tenant's key policy limits {} keys to {max_days} days: give an \
                     expires_at at most {max_days} days from now",
                    match owner_type {
                        AccountType::User => "people's",
                        AccountType::Service => "service accounts'",
                    }
                )))
            }
            Some(Violation::ScopesRequired) => Err(Error::BadInput(
                "this tenant's key policy requires every key to carry scopes: give scopes \
                 (e.g. [\"orders:read\"])"
                    .into(),
            )),
        }
    }

    /// Every key an owner holds in its tenant, as of `owner` (read under a
    /// lease, none can be added meanwhile): a person's by their own prefix;
    /// a service account's by the ids of its key index, or, when the index
    /// is not complete, found among every service-account key of the tenant.
    pub(super) async fn keys_of_owner(&self, owner: &Membership) -> Result<Vec<StoredKey>> {
        match owner.indexed_keys() {
            Some(ids) => Ok(self
                .store
                .service_account_keys_by_id(owner.tenant_id, ids)
                .await?
                .into_iter()
                .filter(|k| k.key.owner_id == owner.user_id)
                .collect()),
            None => self.keys_of_owner_listed(owner).await,
        }
    }

    /// Every key an owner holds, never by the service account's key index:
    /// what verifies (and rebuilds) that index.
    async fn keys_of_owner_listed(&self, owner: &Membership) -> Result<Vec<StoredKey>> {
        let tenant = owner.tenant_id;
        let keys = match owner.account_type {
            AccountType::User => self.store.keys_of_user(tenant, owner.user_id).await?,
            AccountType::Service => self.store.service_account_keys(tenant).await?,
        };
        Ok(keys
            .into_iter()
            .filter(|k| k.key.owner_id == owner.user_id)
            .collect())
    }

    /// The owner as it is now, with room made when it is at the key limit;
    /// `NotFound` when it is gone, `Busy` while a removal or a role change
    /// holds it.
    pub(super) async fn owner_with_room(
        &self,
        owner: Option<Membership>,
        actor: &AuditActor,
    ) -> Result<Membership> {
        let owner = owner.ok_or(Error::NotFound("user"))?;
        if let Some(lease) = owner.busy(self.now()) {
            return Err(Error::Busy(lease.kind, lease.until));
        }
        let owner = if !may_hold_another_key(owner.key_count) {
            self.make_room(owner, actor).await?
        } else {
            owner
        };
        if !may_hold_another_key(owner.key_count) {
            return Err(key_limit_reached(None));
        }
        Ok(owner)
    }

    /// An owner at the key limit whose expired keys are not swept yet: they
    /// no longer count (the listing hides them), so remove them now, in one
    /// transaction, and return the owner as it is after that.
    async fn make_room(&self, owner: Membership, actor: &AuditActor) -> Result<Membership> {
        let now = self.now();
        let held = self.keys_of_owner(&owner).await?;
        // Keys deleted outside our transactions (DynamoDB's TTL backstop, an
        // operator) left the count too high: set it to what is there.
        let there = u32::try_from(held.len()).unwrap_or(u32::MAX);
        if there < owner.key_count {
            self.recount(&owner).await?;
            return self
                .store
                .membership(owner.tenant_id, owner.user_id)
                .await?
                .ok_or(Error::NotFound("user"));
        }
        let expired: Vec<_> = held
            .iter()
            .filter(|k| k.key.expires_at.is_some_and(|at| at <= now))
            .take(EXPIRED_PER_TRANSACTION)
            .map(|k| {
                let event = AuditEvent::new(
                    AuditAction::KeyExpired,
                    actor.clone(),
                    TargetType::ApiKey,
                    k.key.id,
                    Some(&k.key.name),
                )
                .with_detail(format!(
                    "expired {}; removed to make room for a new key of {}",
                    describe_expiry(k.key.expires_at),
                    owner.username
                ));
                (k.key_ref(), self.audit(owner.tenant_id, event))
            })
            .collect();
        if expired.is_empty() {
            return Ok(owner);
        }
        // Not applied: one was revoked or swept meanwhile; the re-read
        // below tells what room there is now.
        self.store
            .delete_expired_keys(&owner, &expired, now)
            .await?;
        self.store
            .membership(owner.tenant_id, owner.user_id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// Sets `owner`'s `key_count` to the keys it holds, under a lease (no
    /// key can be added meanwhile, so the count read cannot go stale by a
    /// revocation and a creation in between), and a service account's key
    /// index to their ids (what completes an index written before it
    /// existed). `Ok(Some(n))`: set to `n` (or already right); `Ok(None)`:
    /// not set (a key revoked or swept meanwhile: count again).
    pub(super) async fn recount(&self, owner: &Membership) -> Result<Option<u32>> {
        self.with_lease(owner, LeaseKind::Recounting, |held, lease| async move {
            // Listed, never read through the index this may rebuild.
            let found: Vec<Uuid> = self
                .keys_of_owner_listed(&held)
                .await?
                .iter()
                .map(|k| k.key.id)
                .collect();
            let there = u32::try_from(found.len()).unwrap_or(u32::MAX);
            let indexed = held.account_type == AccountType::User
                || (held.keys_indexed
                    && held.key_ids.len() == found.len()
                    && found.iter().all(|id| held.key_ids.contains(id)));
            if there == held.key_count && indexed {
                return Ok(Leased::Released(Some(there)));
            }
            if self.store.recount_keys(&held, lease, &found).await? {
                Ok(Leased::Committed(Some(there)))
            } else {
                Ok(Leased::Released(None))
            }
        })
        .await
    }

    /// `create_api_key`: the secret is in the returned [`NewKey`], shown once.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        user_id: Uuid,
        mut request: KeyRequest<'_>,
        default_tenant_id: Option<Uuid>,
    ) -> Result<(ApiKey, NewKey)> {
        may_change(p)?;
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
        // An end asked past the tenant's policy is told as the policy's
        // rule, before the maker's own end (a key is made for oneself or
        // for a service account).
        if request.expires_at.is_some() {
            let owner_type = if for_myself {
                p.account_type
            } else {
                AccountType::Service
            };
            self.check_policy(&p.policy, owner_type, &request)?;
        }
        // Never more than the credential that makes it, in any limit: what
        // was asked within it, or its own limits where nothing was asked.
        let asked = Reach {
            ceiling: request.role_ceiling,
            scopes: std::mem::take(&mut request.scopes),
            networks: std::mem::take(&mut request.allowed_networks),
            expires_at: request
                .expires_at
                .map(|at| at.replace_nanosecond(0).unwrap_or(at)),
        };
        let reach = narrowed(&Maker::of(p), asked).map_err(|w| Error::BadInput(w.message))?;
        request.role_ceiling = reach.ceiling;
        request.scopes = reach.scopes;
        request.allowed_networks = reach.networks;
        request.expires_at = reach.expires_at;
        // Your own key needs no read first: you are what authentication read,
        // and the transaction checks the rest (membership, limit, role).
        let mut owner = if for_myself {
            p.member()
        } else {
            let read = self.store.membership(p.tenant_id, user_id).await?;
            let read = read.ok_or(Error::NotFound("user"))?;
            let target = Target::of(p.user_id, read.user_id, read.account_type);
            if !authorize(p.actor(), Action::CreateKey, target) {
                return Err(Error::NotFound("user"));
            }
            Member::from(self.owner_with_room(Some(read), &AuditActor::of(p)).await?)
        };
        let creator_admin = (!for_myself).then_some(p.user_id);
        // The tenant's policy as the caller's key carries it; the
        // transaction checks it is still the tenant's.
        let mut policy = p.policy.clone();
        for _ in 0..CONFLICT_RETRIES {
            self.check_policy(&policy, owner.account_type, &request)?;
            let (stored, secret) = self.mint(&owner, &p.tenant, &policy, &request, &Creator::of(p));
            let created = self.key_created(AuditActor::of(p), &stored.key, &owner.username);
            let audit = self.audit(p.tenant_id, created);
            match self
                .store
                .insert_key(&stored, creator_admin, &audit)
                .await?
            {
                KeyInsert::Written => return Ok((stored.key, secret)),
                // Read the owner and try again, or say why not.
                KeyInsert::OwnerRefused => {
                    let read = self.store.membership(p.tenant_id, user_id).await?;
                    owner = Member::from(self.owner_with_room(read, &AuditActor::of(p)).await?);
                }
                KeyInsert::PolicyChanged => policy = self.current_policy(p.tenant_id).await?,
                // The creator is no longer an admin: not theirs to create.
                KeyInsert::CallerNotAdmin => return Err(Error::NotFound("user")),
            }
        }
        Err(kept_changing("the key's owner"))
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

    /// The record of a key's creation by `actor` for `owner`.
    pub(super) fn key_created(&self, actor: AuditActor, key: &ApiKey, owner: &str) -> AuditEvent {
        AuditEvent::new(
            AuditAction::KeyCreated,
            actor,
            TargetType::ApiKey,
            key.id,
            Some(&key.name),
        )
        .with_detail(format!(
            "owner {owner}; expires {}",
            describe_expiry(key.expires_at)
        ))
    }

    /// The key `key_id` if the caller may revoke (or rotate) it, with
    /// whether it is someone else's: `None` for an unknown key and for one
    /// the caller may not touch alike.
    async fn revocable(&self, p: &Principal, key_id: Uuid) -> Result<Option<(StoredKey, bool)>> {
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
            return Ok(None);
        };
        let target = Target::of(p.user_id, stored.key.owner_id, stored.key.owner_type);
        if !authorize(p.actor(), Action::RevokeKey, target) {
            return Ok(None);
        }
        Ok(Some((stored, target != Target::Myself)))
    }

    /// `delete_api_key`: `false` for an unknown key and for one the caller may
    /// not revoke alike.
    pub async fn revoke_api_key(&self, p: &Principal, key_id: Uuid) -> Result<bool> {
        may_change(p)?;
        let Some((stored, others)) = self.revocable(p, key_id).await? else {
            return Ok(false);
        };
        let caller_admin = others.then_some(p.user_id);
        let event = AuditEvent::new(
            AuditAction::KeyRevoked,
            AuditActor::of(p),
            TargetType::ApiKey,
            stored.key.id,
            Some(&stored.key.name),
        );
        let audit = self.audit(p.tenant_id, event);
        match self
            .store
            .delete_key(&stored.key_ref(), None, caller_admin, &audit)
            .await?
        {
            KeyDelete::Deleted => Ok(true),
            // Revoked (or its owner removed) meanwhile: it is gone, truly.
            KeyDelete::KeyGone | KeyDelete::OwnerGone => Ok(false),
            // The caller lost the admin role meanwhile: no longer theirs.
            KeyDelete::CallerNotAdmin => Ok(false),
        }
    }

    /// `disable_api_key` (`disabled`) and `enable_api_key`: a disabled key
    /// fails like a revoked one from the next request, until enabled again.
    /// Authorized like revoking it; `false` for an unknown key and for one
    /// the caller may not touch alike. Asking for the state a key is
    /// already in changes nothing and answers `true`.
    pub async fn set_api_key_disabled(
        &self,
        p: &Principal,
        key_id: Uuid,
        disabled: bool,
    ) -> Result<bool> {
        may_change(p)?;
        for _ in 0..CONFLICT_RETRIES {
            let Some((stored, others)) = self.revocable(p, key_id).await? else {
                return Ok(false);
            };
            // An expired key is gone to everyone (as for a rotation).
            if stored.key.expires_at.is_some_and(|at| at <= self.now()) {
                return Ok(false);
            }
            if stored.key.disabled == disabled {
                return Ok(true);
            }
            // Enabling gives power back: never to a key wider than the
            // credential asking, in any limit (a capped, scoped, limited or
            // expiring key does not undo a disable of a wider one).
            if !disabled {
                within(&Maker::of(p), Made::Key(&reach_of(&stored.key)))
                    .map_err(|w| wider_than_credential(p, w))?;
            }
            match self.toggle(p, &stored, others, disabled).await? {
                KeyToggle::Done => return Ok(true),
                // Set so, or back, by another request meanwhile: look again.
                KeyToggle::KeyUnchanged => continue,
                KeyToggle::CallerNotAdmin => return Ok(false),
            }
        }
        Err(kept_changing("the key"))
    }

    /// One try at disabling or enabling `stored`, with its audit record.
    async fn toggle(
        &self,
        p: &Principal,
        stored: &StoredKey,
        others: bool,
        disabled: bool,
    ) -> Result<KeyToggle> {
        let (action, detail) = if disabled {
            (
                AuditAction::KeyDisabled,
                "it fails like a revoked key until enabled",
            )
        } else {
            (AuditAction::KeyEnabled, "it works again")
        };
        let event = AuditEvent::new(
            action,
            AuditActor::of(p),
            TargetType::ApiKey,
            stored.key.id,
            Some(&stored.key.name),
        )
        .with_detail(detail.to_string());
        let audit = self.audit(p.tenant_id, event);
        let caller_admin = others.then_some(p.user_id);
        Ok(self
            .store
            .set_disabled(
                &stored.key_ref(),
                disabled,
                self.now(),
                caller_admin,
                &audit,
            )
            .await?)
    }

    /// One rotation's new key, the old key's end and the audit record.
    #[allow(clippy::too_many_arguments)]
    fn rotation(
        &self,
        old: &StoredKey,
        owner: &Member,
        tenant: &Tenant,
        policy: &KeyPolicy,
        grace: i64,
        now: OffsetDateTime,
        creator: &Creator<'_>,
        actor: AuditActor,
    ) -> Attempt {
        let grace_end = (grace > 0).then(|| {
            let end = now.saturating_add(time::Duration::seconds(grace));
            old.key.expires_at.map_or(end, |at| at.min(end))
        });
        // The new key keeps the old one's ceiling (and the rotating key's).
        let request = KeyRequest {
            name: &old.key.name,
            expires_at: old.key.expires_at,
            role_ceiling: old.key.role_ceiling,
            // Within the rotating key's networks (checked before).
            allowed_networks: narrow_networks(&old.key.allowed_networks, &creator.networks)
                .unwrap_or_else(|_| creator.networks.clone()),
            // Within the rotating key's scopes (checked before).
            scopes: narrow_scopes(&old.key.scopes, &creator.scopes)
                .unwrap_or_else(|_| creator.scopes.clone()),
        };
        let (mut new, secret) = self.mint(owner, tenant, policy, &request, creator);
        new.key.rotated_from = Some(old.key.id);
        let detail = match grace_end {
            Some(end) => format!(
                "replaced by {}; the old key works until {}",
                new.key.id,
                describe_expiry(Some(end))
            ),
            None => format!("replaced by {}; the old key stopped at once", new.key.id),
        };
        let event = AuditEvent::new(
            AuditAction::KeyRotated,
            actor,
            TargetType::ApiKey,
            old.key.id,
            Some(&old.key.name),
        )
        .with_detail(detail);
        Attempt {
            audit: self.audit(tenant.id, event),
            new,
            secret,
            grace_end,
        }
    }

    /// One try at rotating `old`: done, or what to try again with (the
    /// owner with room made when it was at the limit; `None` when the old
    /// key changed meanwhile and must be looked at again).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn try_rotation(
        &self,
        old: &StoredKey,
        owner: &Member,
        tenant: &Tenant,
        policy: &mut KeyPolicy,
        grace: i64,
        now: OffsetDateTime,
        creator: &Creator<'_>,
        actor: AuditActor,
        caller_admin: Option<Uuid>,
    ) -> Result<Tried> {
        // The new key must meet the tenant's policy (an old key that does
        // not is not carried on by a rotation).
        let request = KeyRequest {
            name: &old.key.name,
            expires_at: old.key.expires_at,
            role_ceiling: None,
            allowed_networks: Vec::new(),
            scopes: narrow_scopes(&old.key.scopes, &creator.scopes)
                .unwrap_or_else(|_| creator.scopes.clone()),
        };
        if let Err(Error::BadInput(why)) = self.check_policy(policy, old.key.owner_type, &request) {
            return Err(Error::BadInput(format!(
                "the key that replaced this one would break the tenant's key policy, as this one \
                 does (a rotation keeps its expiry and scopes): make a new key instead, then \
                 revoke this one ({why})"
            )));
        }
        let attempt = self.rotation(
            old,
            owner,
            tenant,
            policy,
            grace,
            now,
            creator,
            actor.clone(),
        );
        let result = self
            .store
            .rotate_key(
                old,
                &attempt.new,
                attempt.grace_end,
                now,
                caller_admin,
                &attempt.audit,
            )
            .await?;
        match result {
            Rotation::Rotated => Ok(Tried::Done(Box::new(attempt.done(now)))),
            // The owner changed, or is at the limit (a grace keeps the old
            // key a while): read it, making room from its expired keys,
            // then try again (or say why not).
            Rotation::OwnerRefused => {
                let read = self.store.membership(tenant.id, owner.user_id).await?;
                let with_room = self.owner_with_room(read, &actor).await?;
                Ok(Tried::Again(Some(Member::from(with_room))))
            }
            // The old key was revoked, expired or rotated meanwhile: the next
            // look tells which.
            Rotation::OldKeyChanged => Ok(Tried::Again(None)),
            // Made again under the tenant's policy as it is now.
            Rotation::PolicyChanged => {
                *policy = self.current_policy(tenant.id).await?;
                Ok(Tried::Again(Some(owner.clone())))
            }
            Rotation::CallerNotAdmin => Ok(Tried::CallerNotAdmin),
        }
    }

    /// `rotate_api_key`: a new key with the old one's name, owner, tenant
    /// and expiry (never later); the old one keeps working until the earlier
    /// of its expiry and now + `grace_seconds` (0: it stops at once). One
    /// transaction, with its audit record. Authorized like revoking it: an
    /// unknown key, one the caller may not revoke, an expired one and one
    /// of another tenant are all "not found".
    pub async fn rotate_api_key(
        &self,
        p: &Principal,
        key_id: Uuid,
        grace_seconds: Option<i64>,
    ) -> Result<Rotated> {
        may_change(p)?;
        let grace = check_grace(grace_seconds)?;
        // The owner as last read after a failed attempt.
        let mut reread: Option<Member> = None;
        let mut policy = p.policy.clone();
        for _ in 0..CONFLICT_RETRIES {
            let now = self.now();
            let Some((old, others)) = self.revocable(p, key_id).await? else {
                return Err(Error::NotFound("API key"));
            };
            if old.key.expires_at.is_some_and(|at| at <= now) {
                return Err(Error::NotFound("API key"));
            }
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
            // The new key keeps the old one's limits (its ceiling lowered
            // to the rotating key's): never wider than the credential
            // rotating it, in any limit.
            let maker = Maker::of(p);
            let reach = Reach {
                ceiling: Role::lower_ceiling(old.key.role_ceiling, maker.reach.ceiling),
                ..reach_of(&old.key)
            };
            within(&maker, Made::Key(&reach)).map_err(|w| wider_than_credential(p, w))?;
            // The owner as authentication read it, or (someone else's key) as it is now.
            let owner = if let Some(owner) = reread.take() {
                owner
            } else if others {
                let read = self
                    .store
                    .membership(p.tenant_id, old.key.owner_id)
                    .await?
                    .ok_or(Error::NotFound("API key"))?;
                if let Some(lease) = read.busy(now) {
                    return Err(Error::Busy(lease.kind, lease.until));
                }
                Member::from(read)
            } else {
                p.member()
            };
            let caller_admin = others.then_some(p.user_id);
            let tried = self
                .try_rotation(
                    &old,
                    &owner,
                    &p.tenant,
                    &mut policy,
                    grace,
                    now,
                    &Creator::of(p),
                    AuditActor::of(p),
                    caller_admin,
                )
                .await;
            match tried {
                Ok(Tried::Done(rotated)) => return Ok(*rotated),
                Ok(Tried::Again(owner)) => reread = owner,
                // The caller lost the admin role, or the owner is gone: no
                // longer a key of theirs to rotate.
                Ok(Tried::CallerNotAdmin) | Err(Error::NotFound(_)) => {
                    return Err(Error::NotFound("API key"))
                }
                Err(e) => return Err(e),
            }
        }
        Err(kept_changing("the key"))
    }
}
