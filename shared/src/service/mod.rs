//! The service's operations: authentication and every API action, each applying
//! the authorization rules to targets resolved inside the caller's tenant.
//! Keys, members and the operator's actions are each in their own file.

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{Config, MAX_KEYS_PER_OWNER};
use crate::domain::{Membership, Principal, Tenant};
use crate::error::{Error, Result};
use crate::store::{Store, StoreError};
use crate::token::verify_presented;

mod keys;
mod members;
pub mod operator;

pub use keys::KeyRequest;

/// How often a read-modify-write re-reads and retries after a concurrent change.
const CONFLICT_RETRIES: usize = 3;

pub struct ApiKeys {
    store: Store,
    clock: Arc<dyn Clock>,
    config: Config,
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
}
