//! The service: authentication and every API action, each applying the
//! rules of `apikeys-core` to targets resolved inside the caller's tenant
//! through `apikeys-store`; keys, members, sessions, invitations, policies,
//! leaks and the operator's actions each in their own file; the service's
//! errors, its settings, and the expiry sweep. No identity provider is
//! compiled in: signing in is given a verifier (`VerifyIdToken`).

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

pub mod config;
pub mod error;
pub mod sweep;

pub use apikeys_core::refusal::Refusal;
pub use error::{Error, Result};

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Config;
use apikeys_core::clock::Clock;
use apikeys_core::domain::{network_allows, LeaseKind, Member, Tenant};
use apikeys_core::policy::SCOPE_APIKEYS_READ;
use apikeys_core::principal::Principal;
use apikeys_core::token::{verify_presented, TokenHash};
use apikeys_store::Membership;
use apikeys_store::{Acquired, AuthCopy, HashRecord, Store, StoreError};

mod audit;
mod invitations;
mod keys;
mod leaks;
mod members;
pub mod operator;
mod policy;
mod repair;
mod sessions;
mod throttle;

pub use audit::{AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX};
pub use invitations::{
    normalize_email, INVITATIONS_PER_HOUR, INVITATION_DAYS, MAX_PENDING_INVITATIONS,
};
pub use keys::{KeyRequest, Rotated};
pub use leaks::{Feedback, LeakOutcome};
pub use policy::{PolicyChange, PolicyView};
pub use repair::Finding;
pub use sessions::{
    Authenticated, SessionTokens, REFRESH_PREFIX, SESSION_ACCESS, SESSION_IDLE, SESSION_MAX,
    SESSION_PREFIX,
};
pub use throttle::{PER_IDENTITY, PER_INSTANCE};

/// How often a read-modify-write re-reads and retries after a concurrent change.
const CONFLICT_RETRIES: usize = 3;

pub struct ApiKeys {
    store: Store,
    clock: Arc<dyn Clock>,
    config: Config,
    /// When this instance last tried to record each key's use: at most one
    /// attempt per key per interval, however many requests arrive at once.
    use_attempts: std::sync::Mutex<std::collections::HashMap<Uuid, OffsetDateTime>>,
    /// How many sign-ins this instance starts, per identity and in all.
    sign_ins: throttle::SignInThrottle,
}

/// Keys whose recording attempts an instance remembers; past it, the
/// oldest are forgotten (which costs at most a spare attempt).
const USE_ATTEMPTS_KEPT: usize = 10_000;

/// The caller's answer to a key that authenticates nothing, with the reason
/// logged (never the key, never its hash).
fn refused(refusal: Refusal) -> Error {
    tracing::info!(reason = refusal.code(), "authentication refused");
    Error::Unauthenticated(refusal)
}

/// A use of a key to record (see [`ApiKeys::key_use`]).
pub struct KeyUse {
    key: apikeys_store::KeyRef,
    at: OffsetDateTime,
    since: OffsetDateTime,
}

/// How long an answer waits, at most, for the recording of its key's use
/// (started alongside the request's work, so usually not at all).
pub const KEY_USE_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// What an authorizer decides about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Allow(Box<Principal>),
    /// No key that authenticates, and why (see [`Refusal`]).
    Unauthenticated(Refusal),
    /// A valid key refused here: a tenant header naming another tenant, a
    /// network the key or its tenant does not allow, or a rule of its
    /// tenant's key policy it breaks (the gateway's 403), with why.
    Forbidden(Refusal, String),
}

/// A read-modify-write that lost every race: retryable, nothing applied.
fn kept_changing(what: &str) -> Error {
    Error::Contended(format!(
        "{what} kept changing while this request worked on it"
    ))
}

/// Refuses every change to a key rotated away: during its grace it still
/// authenticates (so that what uses it keeps working until it is swapped),
/// but it may not create, rotate or revoke keys or manage accounts (a leaked
/// key its owner rotated could otherwise kill the new one).
fn may_change(p: &Principal) -> Result<()> {
    // A scoped key changes things here only with apikeys:write.
    if !p.key_read_only() && !p.key_may_write() {
        tracing::info!(
            reason = Refusal::ScopeMissing.code(),
            key_id = %p.api_key_id,
            "change refused"
        );
        return Err(Error::Denied {
            reason: Refusal::ScopeMissing,
            message: format!(
                "this API key's scopes do not let it change anything here: that needs the \
                 scope {}",
                apikeys_core::policy::SCOPE_APIKEYS_WRITE
            ),
            needed_scope: Some(apikeys_core::policy::SCOPE_APIKEYS_WRITE.to_string()),
        });
    }
    if !p.key_replaced && !p.key_may_write() {
        return Err(Error::Forbidden(
            "this API key is read-only: it may read, and change nothing (not even its owner's \
             keys); use a key without that limit"
                .into(),
        ));
    }
    if p.key_replaced {
        return Err(Error::Forbidden(
            "this API key was replaced by a rotation and only works until its grace period \
             ends: it cannot create, rotate or revoke keys or manage accounts; use the key \
             that replaced it"
                .into(),
        ));
    }
    Ok(())
}

/// The refusal of something wider than the credential asking for it (see
/// `authz::within`), logged with the limit (never the key).
pub(crate) fn wider_than_credential(p: &Principal, wider: apikeys_core::authz::Wider) -> Error {
    tracing::info!(
        reason = Refusal::WiderThanCredential.code(),
        limit = wider.limit.name(),
        key_id = %p.api_key_id,
        "change refused"
    );
    Error::Denied {
        reason: Refusal::WiderThanCredential,
        message: wider.message,
        needed_scope: None,
    }
}

/// A lease that ran out while its holder still worked (the holder was
/// slower than [`LEASE`]): nothing was written, trying again may succeed.
fn lease_lost() -> Error {
    Error::Contended(
        "this request's hold on the member ran out before its change was written".into(),
    )
}

/// How long a lease on a membership holds: longer than any request that
/// takes one can run (the GraphQL function's time-out is 10 s), short
/// enough that a member whose change died with its holder (a crash, a
/// time-out, the database failing between the lease and the commit) is
/// free again soon. This is the bound on how long a member can be held.
pub const LEASE: time::Duration = time::Duration::seconds(30);

/// Tries at taking a lease another request holds, with pauses of up to
/// 50, 100, 200, 400 and 800 ms between them (1.55 s in all, jittered),
/// before answering that the member is busy: a change holds its lease for
/// a few round trips, and changes of one member queue up behind it.
const LEASE_TRIES: u32 = 6;

/// What the body of [`ApiKeys::with_lease`] did with the lease.
pub(crate) enum Leased<T> {
    /// Its transaction committed the lease away.
    Committed(T),
    /// Nothing to write: the lease is to be given back.
    Released(T),
}

impl ApiKeys {
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: Config) -> Self {
        Self {
            store,
            clock,
            config,
            use_attempts: std::sync::Mutex::default(),
            sign_ins: throttle::SignInThrottle::default(),
        }
    }

    /// The service with its DynamoDB store, as every function builds it.
    pub fn from_config(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Self, crate::config::ConfigError> {
        let store = Store::from_settings(&config.store)?;
        Ok(Self::new(store, clock, config))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The audit record of `event` in `tenant`, now, with the configured
    /// retention: written by the store in the change's own transaction.
    pub fn audit(
        &self,
        tenant: Uuid,
        event: apikeys_core::audit::AuditEvent,
    ) -> apikeys_core::audit::AuditRecord {
        event.record(tenant, self.clock.now(), self.config.audit_retention)
    }

    /// Runs `body` holding a lease of `kind` on `member`'s membership:
    /// takes it (waiting a little while another change holds it), gives
    /// the body the membership as it is now and the lease's token, and
    /// gives the lease back on every exit but a commit that took it away.
    /// A lease that cannot be given back (the database failing) frees
    /// itself at its end, [`LEASE`] after it was taken.
    pub(crate) async fn with_lease<T, F, Fut>(
        &self,
        member: &Membership,
        kind: LeaseKind,
        body: F,
    ) -> Result<T>
    where
        F: FnOnce(Membership, Uuid) -> Fut,
        Fut: std::future::Future<Output = Result<Leased<T>>>,
    {
        let (tenant, user) = (member.tenant_id, member.user_id);
        let mut tries: u32 = 0;
        let held = loop {
            let now = self.now();
            let until = now.saturating_add(LEASE);
            // Only the lease's own write can have been lost: the change
            // itself was not made (the lease, if taken, ends by itself).
            let acquired = match self
                .store
                .acquire_lease(tenant, user, kind, now, until)
                .await
            {
                Err(StoreError::Transient { message, .. }) => {
                    return Err(Error::Store(StoreError::Transient {
                        message,
                        unknown_outcome: false,
                    }))
                }
                other => other?,
            };
            match acquired {
                Acquired::Held(held) => break held,
                Acquired::Gone => return Err(Error::NotFound("membership")),
                Acquired::Busy(other) => {
                    tries = tries.saturating_add(1);
                    if tries >= LEASE_TRIES {
                        return Err(Error::Busy(other.kind, other.until));
                    }
                    let cap = 50u64.saturating_mul(1 << tries.saturating_sub(1).min(4));
                    let pause = rand::Rng::random_range(&mut rand::rng(), cap / 2..=cap);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        };
        let Some(token) = held.lease.as_ref().map(|l| l.token) else {
            return Err(Error::Store(StoreError::Corrupt(
                "membership".into(),
                "lease",
            )));
        };
        let outcome = body(held, token).await;
        match outcome {
            Ok(Leased::Committed(value)) => Ok(value),
            other => {
                if let Err(e) = self.store.release_lease(tenant, user, token).await {
                    tracing::warn!(error = %e, "could not give a lease back: it ends by itself");
                }
                other.map(|leased| match leased {
                    Leased::Committed(value) | Leased::Released(value) => value,
                })
            }
        }
    }

    /// Now, to the second: expiry is stored and enforced in whole seconds.
    pub fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// Resolves a bearer key (and optional tenant header) to the caller.
    /// A key with a bad shape or checksum is rejected without a database
    /// read; otherwise one strongly consistent read of the key's hash item,
    /// which carries the owner's role and what the caller's tenant and
    /// membership look like (kept equal to the membership by every write that
    /// changes them), so revocation, expiry, role changes and removal all
    /// apply on the very next request. A key written before those copies
    /// existed is resolved from the membership and the tenant (three reads)
    /// and its copy written then, once.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        tenant_header: Option<&str>,
    ) -> Result<Principal> {
        let Some(hash) = self.presented_hash(bearer) else {
            return Err(refused(Refusal::Malformed));
        };
        self.authenticate_hash(&hash, tenant_header).await
    }

    /// [`ApiKeys::authenticate`] of a key already checked and hashed by
    /// [`ApiKeys::presented_hash`]: what a function that needs the hash
    /// again (to record the key's use) calls, so that a request hashes its
    /// key once.
    pub async fn authenticate_hash(
        &self,
        hash: &TokenHash,
        tenant_header: Option<&str>,
    ) -> Result<Principal> {
        self.resolve(hash, tenant_header).await?.map_err(refused)
    }

    /// The caller a key resolves to, or why it resolves to no one.
    async fn resolve(
        &self,
        hash: &TokenHash,
        tenant_header: Option<&str>,
    ) -> Result<std::result::Result<Principal, Refusal>> {
        let wanted_tenant = match tenant_header.map(|value| Uuid::parse_str(value.trim())) {
            Some(Ok(tenant)) => Some(tenant),
            Some(Err(_)) => return Ok(Err(Refusal::WrongTenant)),
            None => None,
        };
        let Some(record) = self.store.key_by_hash(hash).await? else {
            return Ok(Err(Refusal::UnknownOrRevoked));
        };
        if record.expires_at.is_some_and(|at| at <= self.now()) {
            return Ok(Err(Refusal::Expired));
        }
        // A disabled key fails like a revoked one, until enabled.
        if record.disabled {
            return Ok(Err(Refusal::Disabled));
        }
        if wanted_tenant.is_some_and(|t| t != record.tenant_id) {
            return Ok(Err(Refusal::WrongTenant));
        }
        let copy = match record.copy {
            Some(copy) => copy,
            None => match self.copy_from_membership(hash, &record).await {
                Err(Error::Unauthenticated(_)) => return Ok(Err(Refusal::OwnerRemoved)),
                other => other?,
            },
        };
        Ok(Ok(Principal {
            user_id: record.owner_id,
            tenant_id: record.tenant_id,
            api_key_id: record.key_id,
            username: copy.username,
            account_type: record.owner_type,
            role: copy.role,
            membership_id: copy.membership_id,
            email: copy.email,
            tenant: copy.tenant,
            key_last_used: record.last_used,
            key_replaced: record.replaced,
            key_ceiling: record.ceiling,
            key_networks: record.networks,
            key_scopes: record.scopes,
            key_created: record.created,
            key_expires_at: record.expires_at,
            policy: record.policy,
            session: None,
        }))
    }

    /// What a hash item written before the copies lacks, from the membership
    /// and the tenant; written onto the item for the next time.
    async fn copy_from_membership(
        &self,
        hash: &TokenHash,
        record: &HashRecord,
    ) -> Result<AuthCopy> {
        let member = self
            .store
            .membership(record.tenant_id, record.owner_id)
            .await?
            .filter(|m| m.account_type == record.owner_type)
            .ok_or(Error::Unauthenticated(Refusal::OwnerRemoved))?;
        let tenant = self
            .store
            .tenant(record.tenant_id)
            .await?
            .ok_or(Error::Unauthenticated(Refusal::OwnerRemoved))?
            .tenant;
        // The policy is never backfilled (see `AuthCopy::policy`): the
        // item's own stays what decides.
        let copy = AuthCopy::of(&Member::from(member), tenant, record.policy.clone());
        if let Err(e) = self.store.backfill_copy(hash, record.owner_id, &copy).await {
            // The answer does not depend on it: the next request tries again.
            tracing::warn!(error = %e, "could not write a key's authentication copy");
        }
        Ok(copy)
    }

    /// The recording of this use of the caller's key, when the last use
    /// recorded (what authentication read) is older than the interval:
    /// at most one write per key per interval, never one per request.
    pub fn key_use(&self, hash: &TokenHash, p: &Principal) -> Option<KeyUse> {
        let at = self.now();
        let since = at.checked_sub(self.config.last_used_interval)?;
        if p.key_last_used.is_some_and(|last| last >= since) || p.api_key_id.is_nil() {
            return None;
        }
        // A burst of first uses: one of them tries, the others need not.
        if let Ok(mut attempts) = self.use_attempts.lock() {
            if attempts
                .get(&p.api_key_id)
                .is_some_and(|tried| *tried >= since)
            {
                return None;
            }
            if attempts.len() >= USE_ATTEMPTS_KEPT {
                attempts.retain(|_, tried| *tried >= since);
                if attempts.len() >= USE_ATTEMPTS_KEPT {
                    attempts.clear();
                }
            }
            attempts.insert(p.api_key_id, at);
        }
        Some(KeyUse {
            key: apikeys_store::KeyRef {
                tenant_id: p.tenant_id,
                key_id: p.api_key_id,
                owner_id: p.user_id,
                owner_type: p.account_type,
                hash: hash.clone(),
            },
            at,
            since,
        })
    }

    /// Records a key's use; bounded by [`KEY_USE_WAIT`]. A failure loses
    /// only this recording (the next request tries again) and is logged
    /// (without the key).
    pub async fn record_key_use(&self, key_use: KeyUse) -> bool {
        let write = self
            .store
            .record_use(&key_use.key, key_use.at, key_use.since);
        let written = match tokio::time::timeout(KEY_USE_WAIT, write).await {
            Ok(Ok(written)) => return written,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, key_id = %key_use.key.key_id, "could not record a key's use");
                false
            }
            Err(_) => {
                tracing::warn!(key_id = %key_use.key.key_id, "recording a key's use timed out");
                false
            }
        };
        // Failed: the next request may try again.
        if let Ok(mut attempts) = self.use_attempts.lock() {
            attempts.remove(&key_use.key.key_id);
        }
        written
    }

    /// Authentication for an API Gateway authorizer in front of another API:
    /// the same read and rules as [`ApiKeys::authenticate`], with one more
    /// answer: a valid key whose tenant header names another tenant is
    /// [`Gate::WrongTenant`] (the gateway's 403), where a missing or bad key
    /// is [`Gate::Unauthenticated`] (its 401). Storage failures are errors.
    /// `hash`: the presented key as [`ApiKeys::presented_hash`] checked and
    /// hashed it (`None`: no key, or one of the wrong shape or checksum).
    pub async fn gate(
        &self,
        hash: Option<&TokenHash>,
        tenant_header: Option<&str>,
        source: Option<std::net::IpAddr>,
    ) -> Result<Gate> {
        let Some(hash) = hash else {
            return Ok(Gate::Unauthenticated(Refusal::Malformed));
        };
        let principal = match self.resolve(hash, None).await? {
            Ok(principal) => principal,
            Err(refusal) => return Ok(Gate::Unauthenticated(refusal)),
        };
        let wanted = tenant_header.map(|value| Uuid::parse_str(value.trim()));
        if match wanted {
            Some(Ok(tenant)) => tenant != principal.tenant_id,
            Some(Err(_)) => true,
            None => false,
        } {
            return Ok(Gate::Forbidden(
                Refusal::WrongTenant,
                "this API key belongs to another tenant than the one asked for".into(),
            ));
        }
        Ok(match self.admit(&principal, source) {
            Ok(()) => Gate::Allow(Box::new(principal)),
            Err(Error::Denied {
                reason, message, ..
            }) => Gate::Forbidden(reason, message),
            Err(other) => return Err(other),
        })
    }

    /// May the caller's key be used here and now, by the rules beyond
    /// authentication, all read from what authentication read (no read):
    /// the tenant's key policy (a key made before a rule was tightened is
    /// refused, not deleted), the tenant's networks and the key's own
    /// (`source`: the address API Gateway saw, never a header the client
    /// sets; a limited key is refused where the place is not known).
    pub fn admit(&self, p: &Principal, source: Option<std::net::IpAddr>) -> Result<()> {
        // A key item written before `created` was copied, under a lifetime
        // limit, cannot be judged: the limit wins.
        let created = p.key_created.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        // A person's session is no key: of the key policy, only the
        // tenant's networks bind it.
        let violation = match p.session {
            Some(_) => None,
            None => p
                .policy
                .violation(p.account_type, created, p.key_expires_at, &p.key_scopes),
        };
        if let Some(violation) = violation {
            let reason = match violation {
                apikeys_core::policy::Violation::ScopesRequired => Refusal::PolicyScopesRequired,
                _ => Refusal::PolicyMaxLifetime,
            };
            return Err(self.denied(
                p,
                reason,
                format!(
                    "{}: make a key that meets the policy, or ask an admin to loosen it",
                    violation.message(p.account_type)
                ),
                source,
            ));
        }
        let from = || source.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
        if !p.policy.allows_source(source) {
            return Err(self.denied(
                p,
                Refusal::PolicyNetwork,
                format!(
                    "this tenant's key policy allows its keys only from its own networks, and \
                     this request came from {}",
                    from()
                ),
                source,
            ));
        }
        if !network_allows(&p.key_networks, source) {
            return Err(self.denied(
                p,
                Refusal::NetworkNotAllowed,
                format!(
                    "this API key may not be used from {}: it is limited to other networks",
                    from()
                ),
                source,
            ));
        }
        Ok(())
    }

    /// [`ApiKeys::admit`] for this service's own API: also, a scoped key
    /// needs one of its scopes (`apikeys:read`, `apikeys:write`).
    pub fn admit_here(&self, p: &Principal, source: Option<std::net::IpAddr>) -> Result<()> {
        self.admit(p, source)?;
        if !p.key_may_read() {
            let mut denied = self.denied(
                p,
                Refusal::ScopeMissing,
                format!(
                    "this API key's scopes do not include this API: it needs the scope \
                     {SCOPE_APIKEYS_READ} (or apikeys:write to change things)"
                ),
                source,
            );
            if let Error::Denied { needed_scope, .. } = &mut denied {
                *needed_scope = Some(SCOPE_APIKEYS_READ.to_string());
            }
            return Err(denied);
        }
        Ok(())
    }

    /// A refusal of a valid key, logged with its reason, the key's id and
    /// the address (never the key).
    fn denied(
        &self,
        p: &Principal,
        reason: Refusal,
        message: String,
        source: Option<std::net::IpAddr>,
    ) -> Error {
        tracing::info!(
            reason = reason.code(),
            key_id = %p.api_key_id,
            source = ?source,
            "authentication refused"
        );
        Error::Denied {
            reason,
            message,
            needed_scope: None,
        }
    }

    /// The hash of a presented key when its shape and checksum are right:
    /// no database read. `None` can only ever be "Unauthenticated".
    pub fn presented_hash(&self, bearer: Option<&str>) -> Option<TokenHash> {
        let prefixes = [
            self.config.user_key_prefix.as_str(),
            self.config.service_key_prefix.as_str(),
        ];
        bearer.and_then(|key| verify_presented(key, &prefixes))
    }

    /// The caller's tenant, as authentication read it: no read.
    pub fn current_tenant(&self, p: &Principal) -> Tenant {
        p.tenant.clone()
    }

    /// The caller, as authentication read it: no read.
    pub fn me(&self, p: &Principal) -> Member {
        p.member()
    }

    /// Users and service accounts of the caller's tenant.
    pub async fn members(&self, p: &Principal) -> Result<Vec<Membership>> {
        Ok(self.store.members(p.tenant_id).await?)
    }
}
