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
use apikeys_core::domain::{LeaseKind, Member, Tenant};
use apikeys_core::principal::Principal;
use apikeys_core::token::{verify_presented, TokenHash};
pub use apikeys_core::verify::{self, Api, Denial, Use, Verdict};
use apikeys_core::verify::{check, WriteRefusal};
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

/// The one log line of a refused credential: the reason, and for a
/// valid key its id and the caller's address (never the key or its hash).
fn log_refusal(verdict: &Verdict, key_id: Option<Uuid>, at: &Use<'_>) {
    match verdict {
        Verdict::Allow(_) => {}
        Verdict::Unauthenticated(reason) => {
            tracing::info!(reason = reason.code(), "authentication refused");
        }
        Verdict::Forbidden(denial) => tracing::info!(
            reason = denial.reason.code(),
            key_id = %key_id.map(|k| k.to_string()).unwrap_or_default(),
            source = ?at.source,
            "authentication refused"
        ),
    }
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
    let Err(refusal) = check::may_write(p) else {
        return Ok(());
    };
    Err(match refusal {
        // A scoped key changes things here only with apikeys:write.
        WriteRefusal::ScopeMissing => {
            tracing::info!(
                reason = Refusal::ScopeMissing.code(),
                key_id = %p.api_key_id,
                "change refused"
            );
            Error::Denied {
                reason: Refusal::ScopeMissing,
                message: refusal.message(),
                needed_scope: Some(apikeys_core::policy::SCOPE_APIKEYS_WRITE.to_string()),
            }
        }
        WriteRefusal::ReadOnly | WriteRefusal::Replaced => Error::Forbidden(refusal.message()),
    })
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

    /// Verifies a presented key for a use (`hash`: as
    /// [`ApiKeys::presented_hash`] checked and hashed it; `None`: no key, or
    /// one of the wrong shape or checksum, refused with no read): the chain
    /// of `apikeys_core::verify`, on one strongly consistent read of the
    /// key's hash item, which carries the owner's role and what the caller's
    /// tenant and membership look like (kept equal to the membership by
    /// every write that changes them), so revocation, expiry, role changes
    /// and removal all apply on the very next request. What the GraphQL
    /// function and the authorizer both call. `Err`: the database failed.
    pub async fn verify_key(&self, hash: Option<&TokenHash>, mut at: Use<'_>) -> Result<Verdict> {
        let loaded = self.load(hash, &at).await?;
        // Time is judged after the read: a key that expired while it was
        // being read (retries included) is expired.
        at.now = self.now();
        Ok(match loaded {
            Verdict::Allow(p) => self.admit(*p, &at),
            refused => {
                log_refusal(&refused, None, &at);
                refused
            }
        })
    }

    /// The checks of where and how a loaded caller (a key's, or a
    /// session's) is used (`apikeys_core::verify::admit`), its refusal
    /// logged: the chain's end, for keys and sessions alike.
    pub fn admit(&self, p: Principal, at: &Use<'_>) -> Verdict {
        let key_id = p.session.is_none().then_some(p.api_key_id);
        let verdict = verify::admit(p, at);
        log_refusal(&verdict, key_id, at);
        verdict
    }

    /// The chain up to the caller as loaded (steps 1 to 5: the tenant
    /// header's form, the load, expiry, disabled, the tenant): `Allow`
    /// with the caller before the rules of where and how it is used. A key
    /// written before the copies existed is resolved from the membership
    /// and the tenant (three reads) and its copy written then, once.
    async fn load(&self, hash: Option<&TokenHash>, at: &Use<'_>) -> Result<Verdict> {
        let Some(hash) = hash else {
            return Ok(Verdict::Unauthenticated(Refusal::Malformed));
        };
        let wanted = match check::tenant_header_form(at) {
            Ok(wanted) => wanted,
            Err(refused) => return Ok(refused.into()),
        };
        let Some(record) = self.store.key_by_hash(hash).await? else {
            return Ok(Verdict::Unauthenticated(Refusal::UnknownOrRevoked));
        };
        let checked = check::expiry(record.expires_at, self.now())
            .and_then(|()| check::disabled(record.disabled))
            .and_then(|()| check::tenant(wanted, record.tenant_id, at.api));
        if let Err(refused) = checked {
            return Ok(refused.into());
        }
        let copy = match record.copy {
            Some(copy) => copy,
            None => match self.copy_from_membership(hash, &record).await {
                Err(Error::Unauthenticated(_)) => {
                    return Ok(Verdict::Unauthenticated(Refusal::OwnerRemoved))
                }
                other => other?,
            },
        };
        Ok(Verdict::Allow(Box::new(Principal {
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
        })))
    }

    /// The caller a bearer key (and optional tenant header) resolves to,
    /// by the chain up to the load (not where or how it is used): what the
    /// operator's tools and tests ask of a key they hold.
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        tenant_header: Option<&str>,
    ) -> Result<Principal> {
        let hash = self.presented_hash(bearer);
        let at = Use {
            now: self.now(),
            tenant_header,
            source: None,
            api: Api::ThisOne,
        };
        match self.load(hash.as_ref(), &at).await? {
            Verdict::Allow(p) => Ok(*p),
            Verdict::Unauthenticated(reason) => Err(refused(reason)),
            Verdict::Forbidden(denial) => Err(Error::Denied {
                reason: denial.reason,
                message: denial.message,
                needed_scope: denial.needed_scope,
            }),
        }
    }

    /// Where and when a request uses its credential: now, by this service's
    /// clock.
    pub fn use_at<'a>(
        &self,
        tenant_header: Option<&'a str>,
        source: Option<std::net::IpAddr>,
        api: Api,
    ) -> Use<'a> {
        Use {
            now: self.now(),
            tenant_header,
            source,
            api,
        }
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
