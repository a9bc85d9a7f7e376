//! DynamoDB storage: one table, every tenant-scoped item partitioned by tenant id.
//!
//! | pk                  | sk                   | item                                   |
//! |---------------------|----------------------|----------------------------------------|
//! | `<tenant id>`       | `tenant`             | tenant (+ `admin_users` counter)       |
//! | `<tenant id>`       | `member#<user id>`   | membership (role, account type, `key_count`, a service account's key index `kid_<key id>`) |
//! | `<tenant id>`       | `ukey#<user id>#<key id>` | a user's key (metadata + hash)    |
//! | `<tenant id>`       | `skey#<key id>`      | a service account's key                |
//! | `slug#<slug>`       | `slug`               | slug -> tenant id (uniqueness)         |
//! | `user#<user id>`    | `user`               | a person (operator-created)            |
//! | `username#<name>`   | `username`           | username -> user id (uniqueness)       |
//! | `hash#<sha256 hex>` | `hash`               | key lookup for authentication, with a copy of the owner's role, membership and tenant (`copy_v` 1) |
//! | `audit#<tenant id>` | `<unix ms>#<record id>` | an audit record (TTL: the retention) |
//!
//! Authentication reads `hash#…` alone, strongly consistent: the copies on
//! it are rewritten by every write that changes them (see `AuthCopy`). A hash
//! item without `copy_v` (written by an earlier version) is resolved from
//! `member#…` and the tenant, and gets its copy then.
//! Hash items of expiring keys carry `exp_bucket` (hour) and `expires_at`, the
//! keys of the sparse `by_expiry` index the sweeper queries.
//!
//! This module holds the store and its errors; `client` the DynamoDB client
//! and its retry set-up, `codec` the item codec and key helpers, `tx` the
//! transaction runner; each aggregate's reads and writes are in its own file.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;
use uuid::Uuid;

use apikeys_core::domain::{AccountType, Role};
use apikeys_core::token::TokenHash;
use apikeys_platform::ConfigError;

mod audit;
pub mod events;
mod settings;
pub use settings::{StoreSettings, Timeouts};
mod auth_copy;
mod checkpoint;
mod client;
mod codec;
mod expiry;
mod invitations;
mod keys;
mod members;
mod policy;
mod repair;
mod rotation;
mod sessions;
mod tenants;
mod tx;
mod users;

#[cfg(test)]
mod outcome_tests;

pub use audit::*;
pub use auth_copy::*;
pub use checkpoint::*;
pub use client::{
    dynamodb_client, dynamodb_client_over, region_and_credentials, with_limits, MAX_ATTEMPTS,
};
pub use expiry::*;
pub use invitations::{Invitation, InvitationAccept, InvitationDelete, InvitationInsert};
pub use keys::*;
pub use members::*;
pub use policy::KeyPage;
pub use policy::{PolicySet, TenantPolicy};
pub use repair::*;
pub use rotation::*;
mod membership;
pub use membership::{Lease, Membership, SessionEntry};
pub use sessions::{ListedOn, Listing, SessionHome, SessionRecord, SessionWrite, MAX_SESSIONS};
pub use tenants::*;
pub use tx::{Part, Refused};
pub use users::*;

use client::read_error;
use codec::*;
use policy::{policy_attributes, policy_check, policy_from};
use tx::*;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A transaction's condition failed where the operation expects none
    /// (a bug, or an item edited by hand): nothing was written.
    #[error("{operation}: unexpected refusal by {parts:?}")]
    Unexplained {
        operation: &'static str,
        parts: Vec<Part>,
    },
    /// DynamoDB could not answer now (throttling, 5xx, a dropped connection,
    /// a time-out, a transaction that kept conflicting): retrying may help.
    /// `unknown_outcome`: a write was sent and may or may not have applied.
    #[error("dynamodb unavailable: {message}")]
    Transient {
        message: String,
        unknown_outcome: bool,
    },
    #[error("dynamodb request failed: {0}")]
    Sdk(String),
    /// A transaction was built with two operations on one item, which
    /// DynamoDB refuses as a whole: refused here, before it is sent, so
    /// that the builder's mistake is a typed error a test sees (never a
    /// `ValidationException` at run time). Nothing was written.
    #[error("a transaction holds two operations on one item ({first:?}, then {second:?})")]
    SameItemTwice { first: Part, second: Part },
    #[error("stored item {0} is malformed: {1}")]
    Corrupt(String, &'static str),
}

/// What stopped a change before its transaction applied, by a rule the
/// store enforces in the transaction itself: a state of the data (the
/// caller is told which), never a failure of the database. Nothing was
/// written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The key (or session) the change was made with was revoked, disabled,
    /// rotated or ended while the request worked: the caller is answered
    /// as a credential that no longer authenticates.
    KeyStopped,
    /// The acting member made its allowed number of changes this minute;
    /// the next window opens in `retry_after` seconds.
    RateLimited { retry_after: u64, limit: u32 },
    /// The inviter sent its allowed number of invitations this hour; the
    /// next hour opens in `retry_after` seconds.
    InvitationsLimited { retry_after: u64, limit: u32 },
}

/// Why a change the store was asked to make gave no answer of its own:
/// the database failed ([`StoreError`]), or the change was halted
/// ([`Halt`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Database(#[from] StoreError),
    #[error("the change was halted: {0:?}")]
    Halted(Halt),
}

impl<E> From<aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>
    for Failure
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self {
        Failure::Database(StoreError::from(err))
    }
}

impl From<aws_sdk_dynamodb::error::BuildError> for Failure {
    fn from(err: aws_sdk_dynamodb::error::BuildError) -> Self {
        Failure::Database(StoreError::from(err))
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The answer of a store call that makes a change.
pub type Changed<T> = std::result::Result<T, Failure>;
pub type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
    /// Changes one member may make per minute (see
    /// [`Config::changes_per_minute`]); `None`: no limit.
    changes_per_minute: Option<u32>,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            changes_per_minute: None,
        }
    }

    /// The same store, limiting each member to `per_minute` changes (0: none).
    pub fn with_change_limit(mut self, per_minute: u32) -> Self {
        self.changes_per_minute = (per_minute > 0).then_some(per_minute);
        self
    }

    pub fn from_settings(settings: &StoreSettings) -> std::result::Result<Self, ConfigError> {
        Ok(
            Self::new(dynamodb_client(settings)?, settings.table_name.clone())
                .with_change_limit(settings.changes_per_minute),
        )
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(read_error)?;
        Ok(out.item)
    }

    /// Every item of a tenant partition whose sort key starts with `prefix`,
    /// strongly consistent, following pagination.
    async fn query_prefix(&self, pk: String, prefix: String) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(read_error)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}
