//! DynamoDB storage: one table, every tenant-scoped item partitioned by tenant id.
//!
//! | pk                  | sk                   | item                                   |
//! |---------------------|----------------------|----------------------------------------|
//! | `<tenant id>`       | `tenant`             | tenant (+ `admin_users` counter)       |
//! | `<tenant id>`       | `member#<user id>`   | membership (role, account type, `key_count`) |
//! | `<tenant id>`       | `ukey#<user id>#<key id>` | a user's key (metadata + hash)    |
//! | `<tenant id>`       | `skey#<key id>`      | a service account's key                |
//! | `slug#<slug>`       | `slug`               | slug -> tenant id (uniqueness)         |
//! | `user#<user id>`    | `user`               | a person (operator-created)            |
//! | `username#<name>`   | `username`           | username -> user id (uniqueness)       |
//! | `hash#<sha256 hex>` | `hash`               | key lookup for authentication          |
//!
//! Authentication reads `hash#…` then `member#…`, both strongly consistent.
//! Hash items of expiring keys carry `exp_bucket` (hour) and `expires_at`, the
//! keys of the sparse `by_expiry` index the sweeper queries.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::InterceptorContext;
use aws_sdk_dynamodb::config::retry::{
    ClassifyRetry, RetryAction, RetryConfig, RetryPartition, TokenBucket,
};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{Config, ConfigError, Deadlines, MAX_KEYS_PER_OWNER};
use crate::domain::{AccountType, ApiKey, Membership, Role, Tenant};
use crate::token::TokenHash;

pub const EXPIRY_INDEX: &str = "by_expiry";
/// Entries per page of the expiry index.
const EXPIRY_PAGE: i32 = 100;
/// Keys stay this long past expiry before DynamoDB TTL removes them: TTL is a
/// backstop for a stopped sweeper, never what makes a key invalid.
const TTL_GRACE_SECS: i64 = 30 * 24 * 3600;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A transaction was cancelled because a condition failed: the reasons,
    /// one per item in the order the items were given, say which.
    #[error("transaction cancelled: {0:?}")]
    Cancelled(Vec<CancelReason>),
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
    #[error("stored item {0} is malformed: {1}")]
    Corrupt(String, &'static str),
}

/// Why one item of a cancelled transaction did not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// This item was fine; another one failed.
    None,
    /// This item's condition was false: the state the write depends on.
    ConditionFailed,
    /// Another transaction was writing the item at the same time.
    Conflict,
    /// Throttled, or DynamoDB failed on this item.
    Transient,
    /// Anything else (validation): a bug, not a state of the data.
    Other,
}

impl CancelReason {
    fn from_code(code: Option<&str>) -> Self {
        match code {
            None | Some("None") => CancelReason::None,
            Some("ConditionalCheckFailed") => CancelReason::ConditionFailed,
            Some("TransactionConflict") => CancelReason::Conflict,
            Some(
                "ThrottlingError"
                | "ProvisionedThroughputExceeded"
                | "RequestLimitExceeded"
                | "InternalServerError",
            ) => CancelReason::Transient,
            Some(_) => CancelReason::Other,
        }
    }
}

impl StoreError {
    /// Did the condition of item `index` of a cancelled transaction fail?
    pub fn condition_failed(&self, index: usize) -> bool {
        matches!(self, StoreError::Cancelled(reasons)
            if reasons.get(index) == Some(&CancelReason::ConditionFailed))
    }

    /// A transaction cancelled by a failed condition (a real answer about the data).
    pub fn is_condition_failure(&self) -> bool {
        matches!(self, StoreError::Cancelled(reasons)
            if reasons.contains(&CancelReason::ConditionFailed))
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// DynamoDB error codes that mean "not now" rather than "never".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",
    "LimitExceededException",
];

type Result<T, E = StoreError> = std::result::Result<T, E>;
pub type Item = HashMap<String, AttributeValue>;

impl<E> From<SdkError<E, HttpResponse>> for StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        // DynamoDB answered with an error: the write did not apply. Any
        // other failure (time-out, connection lost after sending, an answer
        // that could not be read) leaves a write's outcome unknown.
        let transient = |message: String, unknown_outcome: bool| StoreError::Transient {
            message,
            unknown_outcome,
        };
        match &err {
            SdkError::TimeoutError(_) => transient("no answer in time".into(), true),
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                transient(DisplayErrorContext(&err).to_string(), true)
            }
            SdkError::ServiceError(service) => {
                let code = err.code().unwrap_or("");
                let status = service.raw().status().as_u16();
                let text = format!("{code}: {}", err.message().unwrap_or(""));
                if code.is_empty() {
                    // An answer that is no DynamoDB error (a cut or foreign
                    // body): whatever it said, a write may have applied.
                    transient(format!("unreadable answer, HTTP {status}"), true)
                } else if TRANSIENT_CODES.contains(&code) || status >= 500 {
                    transient(text, false)
                } else {
                    StoreError::Sdk(text)
                }
            }
            _ => StoreError::Sdk(DisplayErrorContext(&err).to_string()),
        }
    }
}

/// A failed read changed nothing, whatever happened to it.
fn read_error<E>(err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match StoreError::from(err) {
        StoreError::Transient { message, .. } => StoreError::Transient {
            message,
            unknown_outcome: false,
        },
        other => other,
    }
}

impl From<aws_sdk_dynamodb::error::BuildError> for StoreError {
    fn from(err: aws_sdk_dynamodb::error::BuildError) -> Self {
        StoreError::Sdk(err.to_string())
    }
}

/// What [`Store::mark_removing`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marked {
    Yes,
    /// The membership no longer exists.
    Gone,
    /// The caller is no longer an admin: nothing was marked.
    CallerNotAdmin,
}

/// A key as stored in its tenant's partition: metadata plus the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub key: ApiKey,
    pub hash: TokenHash,
}

/// Where a key's two items are: enough to remove it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub owner_id: Uuid,
    pub owner_type: AccountType,
    pub hash: TokenHash,
}

impl StoredKey {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            tenant_id: self.key.tenant_id,
            key_id: self.key.id,
            owner_id: self.key.owner_id,
            owner_type: self.key.owner_type,
            hash: self.hash.clone(),
        }
    }
}

/// An entry of the expiry index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredEntry {
    pub key: KeyRef,
    pub expires_at: OffsetDateTime,
}

/// What authentication learns from a hash lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashRecord {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub owner_id: Uuid,
    pub owner_type: AccountType,
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: Tenant,
    /// USER-type members with TENANT_ADMIN: never allowed to reach zero.
    pub admin_users: u32,
}

/// A person, as created by the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub created: OffsetDateTime,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
}

/// Builds the DynamoDB client from the environment Lambda provides: region
/// (`AWS_REGION`) and credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), plus the configured endpoint override.
///
/// These variables are the first link of aws-config's default chain, and the
/// only one a Lambda uses; skipping the rest of the chain (profiles, SSO, STS,
/// IMDS) keeps those crates out of the bootstrap and their work out of init.
/// The operator CLI, run by people with profiles and SSO, uses aws-config.
pub fn dynamodb_client(config: &Config) -> std::result::Result<Client, ConfigError> {
    dynamodb_client_over(config, crate::https::https_client())
}

/// [`dynamodb_client`] over a given HTTP client.
pub fn dynamodb_client_over(
    config: &Config,
    http: SharedHttpClient,
) -> std::result::Result<Client, ConfigError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing = |name: &str| ConfigError::new(format!("{name} is not set"));
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or_else(|| missing("AWS_REGION"))?;
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
        var("AWS_SECRET_ACCESS_KEY").ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    let mut builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(region))
        .credentials_provider(credentials);
    builder = with_limits(builder, config);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(builder.build()))
}

/// The time limits and retry policy every apikeys client uses (the
/// functions' and the operator CLI's).
pub fn with_limits(
    builder: aws_sdk_dynamodb::config::Builder,
    config: &Config,
) -> aws_sdk_dynamodb::config::Builder {
    builder
        .timeout_config(timeouts(&config.deadlines))
        .retry_config(retry_config())
        .retry_partition(retry_partition())
        .retry_classifier(UnreadableAnswerIsTransient)
}

/// Every call bounded: connect, each attempt, and all attempts together.
fn timeouts(deadlines: &Deadlines) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(deadlines.connect)
        .read_timeout(deadlines.attempt)
        .operation_attempt_timeout(deadlines.attempt)
        .operation_timeout(deadlines.operation)
        .build()
}

/// Attempts per call, including the first: a 10-second function has time
/// for three short tries, not for the SDK's long backoffs.
pub const MAX_ATTEMPTS: u32 = 3;

/// An answer with a success status that cannot be read (a cut body) is a
/// transient failure like a dropped connection; the SDK alone would give up
/// on it at once. Other answers are left to the SDK's own classifiers.
#[derive(Debug)]
struct UnreadableAnswerIsTransient;

impl ClassifyRetry for UnreadableAnswerIsTransient {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let failed = matches!(ctx.output_or_error(), Some(Err(_)));
        let success_status = ctx
            .response()
            .is_some_and(|response| response.status().is_success());
        if failed && success_status {
            RetryAction::transient_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "UnreadableAnswerIsTransient"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(std::time::Duration::from_millis(20))
        .with_max_backoff(std::time::Duration::from_millis(400))
}

/// The retry budget of one warm instance. The SDK's default bucket (500
/// tokens, 14 a retry, never refilled by time) is emptied by a burst of
/// errors and then leaves every request one attempt until enough successes
/// pay it back. This one still stops retry storms (a retry costs 5 tokens,
/// a timed-out one 10) but refills by itself, 50 tokens a second, and a
/// success pays 1 back.
fn retry_partition() -> RetryPartition {
    let bucket = TokenBucket::builder()
        .capacity(500)
        .retry_cost(5)
        .throttling_retry_cost(5)
        .timeout_retry_cost(10)
        .success_reward(1.0)
        .refill_rate(50.0)
        .build();
    RetryPartition::custom("apikeys-dynamodb")
        .token_bucket(bucket)
        .build()
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key_of(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Typed reads of one item's attributes, naming the item when one is wrong.
struct Fields<'a>(&'a Item);

impl Fields<'_> {
    fn name(&self) -> String {
        let get = |k: &str| match self.0.get(k) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => "?".into(),
        };
        // A hash item's key is the secret's hash: never in a message or log.
        let pk = get("pk");
        let pk = if pk.starts_with("hash#") {
            "hash#…".to_string()
        } else {
            pk
        };
        format!("{pk}/{}", get("sk"))
    }

    fn opt_s(&self, attr: &'static str) -> Result<Option<&str>> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(StoreError::Corrupt(self.name(), attr)),
        }
    }

    fn s(&self, attr: &'static str) -> Result<&str> {
        self.opt_s(attr)?
            .ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    fn opt_n(&self, attr: &'static str) -> Result<Option<i64>> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(self.name(), attr)),
            Some(_) => Err(StoreError::Corrupt(self.name(), attr)),
        }
    }

    fn n(&self, attr: &'static str) -> Result<i64> {
        self.opt_n(attr)?
            .ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    fn uuid(&self, attr: &'static str) -> Result<Uuid> {
        Uuid::parse_str(self.s(attr)?).map_err(|_| StoreError::Corrupt(self.name(), attr))
    }

    fn time(&self, attr: &'static str) -> Result<OffsetDateTime> {
        self.opt_time(attr)?
            .ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    fn opt_time(&self, attr: &'static str) -> Result<Option<OffsetDateTime>> {
        self.opt_n(attr)?
            .map(|secs| {
                OffsetDateTime::from_unix_timestamp(secs)
                    .map_err(|_| StoreError::Corrupt(self.name(), attr))
            })
            .transpose()
    }

    fn account_type(&self, attr: &'static str) -> Result<AccountType> {
        AccountType::from_name(self.s(attr)?).ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    fn role(&self, attr: &'static str) -> Result<Role> {
        Role::from_name(self.s(attr)?).ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }
}

fn tenant_pk(tenant: Uuid) -> String {
    tenant.to_string()
}

fn member_sk(user: Uuid) -> String {
    format!("member#{user}")
}

fn hash_pk(hash: &TokenHash) -> String {
    format!("hash#{}", hash.as_str())
}

/// The sort key of a key's item in its tenant's partition.
pub fn key_sk(owner_type: AccountType, owner: Uuid, key: Uuid) -> String {
    match owner_type {
        AccountType::User => format!("ukey#{owner}#{key}"),
        AccountType::Service => format!("skey#{key}"),
    }
}

/// The sweeper's index partition for an expiry time: its UTC hour.
pub fn expiry_bucket(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour()
    )
}

fn membership_from(item: &Item) -> Result<Membership> {
    let f = Fields(item);
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
        removing: f.opt_n("removing")?.is_some(),
    })
}

fn membership_item(m: &Membership) -> Item {
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
    item
}

fn stored_key_from(item: &Item) -> Result<StoredKey> {
    let f = Fields(item);
    Ok(StoredKey {
        key: ApiKey {
            id: f.uuid("key_id")?,
            name: f.s("name")?.to_string(),
            tenant_id: f.uuid("pk")?,
            owner_id: f.uuid("owner_id")?,
            owner_type: f.account_type("owner_type")?,
            created: f.time("created")?,
            created_by: f.uuid("created_by")?,
            created_by_name: f.opt_s("created_by_name")?.map(str::to_string),
            expires_at: f.opt_time("expires_at")?,
            hint: f.s("hint")?.to_string(),
        },
        hash: TokenHash::from_stored(f.s("hash")?.to_string()),
    })
}

/// The key's two items: its tenant-partition item and its hash lookup.
pub fn key_items(stored: &StoredKey) -> (Item, Item) {
    let k = &stored.key;
    let mut listing = key_of(
        tenant_pk(k.tenant_id),
        key_sk(k.owner_type, k.owner_id, k.id),
    );
    let mut lookup = key_of(hash_pk(&stored.hash), "hash".into());
    let shared = [
        ("key_id", s(k.id.to_string())),
        ("owner_id", s(k.owner_id.to_string())),
        ("owner_type", s(k.owner_type.name())),
    ];
    listing.extend(values(shared.clone()));
    lookup.extend(values(shared));
    listing.extend(values([
        ("name", s(&k.name)),
        ("created", n(k.created.unix_timestamp())),
        ("created_by", s(k.created_by.to_string())),
        ("hint", s(&k.hint)),
        ("hash", s(stored.hash.as_str())),
    ]));
    if let Some(name) = &k.created_by_name {
        listing.insert("created_by_name".into(), s(name));
    }
    lookup.insert("tenant_id".into(), s(k.tenant_id.to_string()));
    if let Some(expires) = k.expires_at {
        let secs = expires.unix_timestamp();
        for item in [&mut listing, &mut lookup] {
            item.insert("expires_at".into(), n(secs));
            item.insert("ttl".into(), n(secs.saturating_add(TTL_GRACE_SECS)));
        }
        lookup.insert("exp_bucket".into(), s(expiry_bucket(expires)));
    }
    (listing, lookup)
}

fn hash_record_from(item: &Item) -> Result<HashRecord> {
    let f = Fields(item);
    Ok(HashRecord {
        tenant_id: f.uuid("tenant_id")?,
        key_id: f.uuid("key_id")?,
        owner_id: f.uuid("owner_id")?,
        owner_type: f.account_type("owner_type")?,
        expires_at: f.opt_time("expires_at")?,
    })
}

fn expired_entry_from(item: &Item) -> Result<ExpiredEntry> {
    let f = Fields(item);
    let hash = f
        .s("pk")?
        .strip_prefix("hash#")
        .ok_or_else(|| StoreError::Corrupt(f.name(), "pk"))?;
    Ok(ExpiredEntry {
        key: KeyRef {
            tenant_id: f.uuid("tenant_id")?,
            key_id: f.uuid("key_id")?,
            owner_id: f.uuid("owner_id")?,
            owner_type: f.account_type("owner_type")?,
            hash: TokenHash::from_stored(hash.to_string()),
        },
        expires_at: f.time("expires_at")?,
    })
}

fn tenant_from(item: &Item) -> Result<TenantRecord> {
    let f = Fields(item);
    Ok(TenantRecord {
        tenant: Tenant {
            id: f.uuid("pk")?,
            name: f.s("name")?.to_string(),
            slug: f.s("slug")?.to_string(),
            created: f.time("created")?,
        },
        admin_users: u32::try_from(f.n("admin_users")?)
            .map_err(|_| StoreError::Corrupt(f.name(), "admin_users"))?,
    })
}

fn put(table: &str, item: Item) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Deletes of a key's hash lookup and listing item; with `expired_by`,
/// each only if the key had expired by then.
fn push_key_deletes(
    table: &str,
    items: &mut Vec<TransactWriteItem>,
    key: &KeyRef,
    expired_by: Option<OffsetDateTime>,
) -> Result<()> {
    for item_key in [
        key_of(hash_pk(&key.hash), "hash".into()),
        key_of(
            tenant_pk(key.tenant_id),
            key_sk(key.owner_type, key.owner_id, key.key_id),
        ),
    ] {
        let mut delete = Delete::builder()
            .table_name(table)
            .set_key(Some(item_key))
            .condition_expression("attribute_exists(pk)");
        if let Some(now) = expired_by {
            delete = delete
                .condition_expression("attribute_exists(pk) AND expires_at <= :now")
                .expression_attribute_values(":now", n(now.unix_timestamp()));
        }
        items.push(TransactWriteItem::builder().delete(delete.build()?).build());
    }
    Ok(())
}

/// The condition on an owner's membership when one of its keys goes: a
/// member being removed keeps its keys until the removal takes them all at
/// once, so the removal reads a set of keys that cannot change under it.
const OWNER_NOT_BEING_REMOVED: &str = "attribute_exists(pk) AND attribute_not_exists(removing)";

/// Sends of a transaction cancelled only by concurrent writes or throttling.
const TRANSACTION_ATTEMPTS: u32 = 4;

/// Full-jitter pause before attempt `attempt + 1`: up to 10, 20, 40 ms.
fn backoff(attempt: u32) -> std::time::Duration {
    use rand::Rng;
    let cap_ms = 10u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(6));
    std::time::Duration::from_millis(rand::rng().random_range(1..=cap_ms))
}

fn update(
    table: &str,
    key: Item,
    expression: &str,
    condition: &str,
    vals: Item,
) -> Result<TransactWriteItem> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .condition_expression(condition)
        .set_expression_attribute_values(Some(vals))
        .build()?;
    Ok(TransactWriteItem::builder().update(update).build())
}

fn check_admin(table: &str, tenant: Uuid, user: Uuid) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_of(tenant_pk(tenant), member_sk(user))))
        .condition_expression("member_role = :admin AND attribute_not_exists(removing)")
        .expression_attribute_values(":admin", s(Role::TenantAdmin.name()))
        .build()?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
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
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn from_config(config: &Config) -> std::result::Result<Self, ConfigError> {
        Ok(Self::new(
            dynamodb_client(config)?,
            config.table_name.clone(),
        ))
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

    /// Runs one transaction, with its own retries instead of the SDK's, so
    /// that every outcome is told truthfully:
    /// - cancelled only by concurrent transactions or throttling (nothing
    ///   applied): tried again after a jittered pause;
    /// - throttled or a 5xx (nothing applied): tried again with the same
    ///   idempotency token;
    /// - no answer (time-out, connection lost, unreadable answer: it may have
    ///   applied): tried again with the same token, which real DynamoDB
    ///   recognises and answers with the first outcome. Should that retry
    ///   nevertheless fail a condition (a server that ignores tokens), the
    ///   failure may be this very transaction's own earlier write, so the
    ///   outcome is reported unknown, never as a domain answer;
    /// - a failed condition with no ambiguous attempt before it: returned
    ///   with the reason of every item.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<()> {
        let mut token = Uuid::new_v4().to_string();
        let mut ambiguous = false;
        let mut last = String::new();
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(backoff(attempt.saturating_sub(1))).await;
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(&token)
                .customize()
                .config_override(
                    aws_sdk_dynamodb::config::Builder::default()
                        .retry_config(RetryConfig::disabled()),
                )
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let reasons: Vec<CancelReason> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
                    .cancellation_reasons()
                    .iter()
                    .map(|r| CancelReason::from_code(r.code()))
                    .collect(),
                _ => {
                    match StoreError::from(err) {
                        StoreError::Transient {
                            message,
                            unknown_outcome,
                        } => {
                            ambiguous |= unknown_outcome;
                            last = message;
                        }
                        other => return Err(other),
                    }
                    continue;
                }
            };
            let retryable = reasons.iter().all(|r| {
                matches!(
                    r,
                    CancelReason::None | CancelReason::Conflict | CancelReason::Transient
                )
            });
            if retryable {
                // Definitely not applied: the next attempt is a new transaction.
                token = Uuid::new_v4().to_string();
                last = "cancelled by concurrent writes or throttling".into();
                continue;
            }
            if ambiguous && reasons.contains(&CancelReason::ConditionFailed) {
                return Err(StoreError::Transient {
                    message: "a retried transaction failed a condition its first attempt may \
                              have changed"
                        .into(),
                    unknown_outcome: true,
                });
            }
            return Err(StoreError::Cancelled(reasons));
        }
        Err(StoreError::Transient {
            message: format!("transaction not done after {TRANSACTION_ATTEMPTS} attempts: {last}"),
            unknown_outcome: ambiguous,
        })
    }

    /// Authentication's first read.
    pub async fn key_by_hash(&self, hash: &TokenHash) -> Result<Option<HashRecord>> {
        self.get(hash_pk(hash), "hash".into())
            .await?
            .as_ref()
            .map(hash_record_from)
            .transpose()
    }

    /// Authentication's second read.
    pub async fn membership(&self, tenant: Uuid, user: Uuid) -> Result<Option<Membership>> {
        self.get(tenant_pk(tenant), member_sk(user))
            .await?
            .as_ref()
            .map(membership_from)
            .transpose()
    }

    pub async fn tenant(&self, tenant: Uuid) -> Result<Option<TenantRecord>> {
        self.get(tenant_pk(tenant), "tenant".into())
            .await?
            .as_ref()
            .map(tenant_from)
            .transpose()
    }

    pub async fn tenant_id_by_slug(&self, slug: &str) -> Result<Option<Uuid>> {
        match self.get(format!("slug#{slug}"), "slug".into()).await? {
            Some(item) => Ok(Some(Fields(&item).uuid("tenant_id")?)),
            None => Ok(None),
        }
    }

    pub async fn members(&self, tenant: Uuid) -> Result<Vec<Membership>> {
        let items = self
            .query_prefix(tenant_pk(tenant), "member#".into())
            .await?;
        items.iter().map(membership_from).collect()
    }

    pub async fn keys_of_user(&self, tenant: Uuid, user: Uuid) -> Result<Vec<StoredKey>> {
        let items = self
            .query_prefix(tenant_pk(tenant), format!("ukey#{user}#"))
            .await?;
        items.iter().map(stored_key_from).collect()
    }

    pub async fn service_account_keys(&self, tenant: Uuid) -> Result<Vec<StoredKey>> {
        let items = self.query_prefix(tenant_pk(tenant), "skey#".into()).await?;
        items.iter().map(stored_key_from).collect()
    }

    /// One key of the tenant, addressed by its owner and id.
    pub async fn key(
        &self,
        tenant: Uuid,
        owner_type: AccountType,
        owner: Uuid,
        key: Uuid,
    ) -> Result<Option<StoredKey>> {
        self.get(tenant_pk(tenant), key_sk(owner_type, owner, key))
            .await?
            .as_ref()
            .map(stored_key_from)
            .transpose()
    }

    /// Writes a key and its hash lookup, counting it on its owner's membership.
    /// Fails (nothing written) if the owner is no longer a member, is being
    /// removed, holds [`MAX_KEYS_PER_OWNER`] keys already, or `creator_admin`
    /// is given and is no longer an admin of the tenant. Cancellation
    /// reasons: see [`InsertKeyItem`].
    pub async fn insert_key(&self, stored: &StoredKey, creator_admin: Option<Uuid>) -> Result<()> {
        let k = &stored.key;
        let (listing, lookup) = key_items(stored);
        let mut items = vec![
            put(&self.table, lookup)?,
            put(&self.table, listing)?,
            update(
                &self.table,
                key_of(tenant_pk(k.tenant_id), member_sk(k.owner_id)),
                "ADD key_count :one",
                "attribute_exists(pk) AND key_count < :max AND account_type = :type \
                 AND attribute_not_exists(removing)",
                values([
                    (":one", n(1)),
                    (":max", n(i64::from(MAX_KEYS_PER_OWNER))),
                    (":type", s(k.owner_type.name())),
                ]),
            )?,
        ];
        if let Some(creator) = creator_admin {
            items.push(check_admin(&self.table, k.tenant_id, creator)?);
        }
        self.transact(items).await
    }

    /// Removes a key and its hash lookup together, decrementing its owner's
    /// `key_count`. With `expired_by`, only if the key expired by then (on both
    /// items). With `caller_admin`, only while that caller is still an admin.
    /// Cancellation reasons: items 0 and 1 the key's (gone, or not expired),
    /// 2 the owner (gone, or being removed), 3 the caller's admin check.
    pub async fn delete_key(
        &self,
        key: &KeyRef,
        expired_by: Option<OffsetDateTime>,
        caller_admin: Option<Uuid>,
    ) -> Result<()> {
        let mut items = Vec::with_capacity(4);
        push_key_deletes(&self.table, &mut items, key, expired_by)?;
        items.push(update(
            &self.table,
            key_of(tenant_pk(key.tenant_id), member_sk(key.owner_id)),
            "ADD key_count :minus",
            OWNER_NOT_BEING_REMOVED,
            values([(":minus", n(-1))]),
        )?);
        if let Some(caller) = caller_admin {
            items.push(check_admin(&self.table, key.tenant_id, caller)?);
        }
        self.transact(items).await
    }

    /// Removes some expired keys of one owner in one transaction, each only if
    /// it has expired by `now`: what makes room when an owner is at the limit.
    pub async fn delete_expired_keys(
        &self,
        owner: &Membership,
        keys: &[KeyRef],
        now: OffsetDateTime,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut items = Vec::with_capacity(keys.len().saturating_mul(2).saturating_add(1));
        for key in keys {
            push_key_deletes(&self.table, &mut items, key, Some(now))?;
        }
        let removed = i64::try_from(keys.len()).unwrap_or(i64::MAX);
        items.push(update(
            &self.table,
            key_of(tenant_pk(owner.tenant_id), member_sk(owner.user_id)),
            "ADD key_count :minus",
            OWNER_NOT_BEING_REMOVED,
            values([(":minus", n(removed.saturating_neg()))]),
        )?);
        self.transact(items).await
    }

    /// One page of the expiry index: entries of `bucket` expired at `now`.
    /// A malformed entry comes back as an error in its place.
    #[allow(clippy::type_complexity)]
    pub async fn expired_page(
        &self,
        bucket: &str,
        now: OffsetDateTime,
        start: Option<Item>,
    ) -> Result<(Vec<Result<ExpiredEntry>>, Option<Item>)> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(EXPIRY_INDEX)
            .key_condition_expression("exp_bucket = :bucket AND expires_at <= :now")
            .expression_attribute_values(":bucket", s(bucket))
            .expression_attribute_values(":now", n(now.unix_timestamp()))
            .set_exclusive_start_key(start)
            .limit(EXPIRY_PAGE)
            .send()
            .await?;
        let entries = out.items().iter().map(expired_entry_from).collect();
        Ok((entries, out.last_evaluated_key))
    }

    /// Removes one expired key unless it is gone or no longer expired.
    /// `Ok(false)`: nothing to do (skipped).
    pub async fn delete_expired(&self, entry: &ExpiredEntry, now: OffsetDateTime) -> Result<bool> {
        match self.delete_key(&entry.key, Some(now), None).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_condition_failure() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn sweep_checkpoint(&self) -> Result<Option<String>> {
        match self.get("sweeper".into(), "checkpoint".into()).await? {
            Some(item) => Ok(Some(Fields(&item).s("next_bucket")?.to_string())),
            None => Ok(None),
        }
    }

    /// Moves the checkpoint to `bucket` unless another sweep moved it further.
    pub async fn advance_sweep_checkpoint(&self, bucket: &str) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of("sweeper".into(), "checkpoint".into())))
            .update_expression("SET next_bucket = :bucket")
            .condition_expression("attribute_not_exists(next_bucket) OR next_bucket < :bucket")
            .expression_attribute_values(":bucket", s(bucket))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Adds a membership (a service account, or a user joining a tenant).
    /// With `creator_admin`, the creator must still be an admin of the
    /// tenant. A service account counts toward the tenant's
    /// `max_service_accounts`. Cancellation reasons: item 0 the membership
    /// (exists already), 1 the tenant (gone, or at the cap), 2 the creator.
    pub async fn insert_membership(
        &self,
        m: &Membership,
        creator_admin: Option<Uuid>,
        max_service_accounts: u32,
    ) -> Result<()> {
        let mut items = vec![put(&self.table, membership_item(m))?];
        items.push(self.tenant_counter_item(m, 1, max_service_accounts)?);
        if let Some(creator) = creator_admin {
            items.push(check_admin(&self.table, m.tenant_id, creator)?);
        }
        self.transact(items).await
    }

    /// The tenant item's part in adding (`delta` 1) or removing (-1) `m`:
    /// its admin-user count, its service-account count, or only a check that
    /// the tenant exists.
    fn tenant_counter_item(
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

    /// Marks a member as being removed: from now on no key of it can be
    /// created, revoked or swept, and its role cannot change, so the removal
    /// that follows reads a membership and a set of keys that stay as read.
    /// With `caller_admin`, only while that caller is still an admin.
    pub async fn mark_removing(
        &self,
        m: &Membership,
        now: OffsetDateTime,
        caller_admin: Option<Uuid>,
    ) -> Result<Marked> {
        let mut items = vec![update(
            &self.table,
            key_of(tenant_pk(m.tenant_id), member_sk(m.user_id)),
            "SET removing = if_not_exists(removing, :now)",
            "attribute_exists(pk)",
            values([(":now", n(now.unix_timestamp()))]),
        )?];
        if let Some(caller) = caller_admin {
            items.push(check_admin(&self.table, m.tenant_id, caller)?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(Marked::Yes),
            Err(e) if e.condition_failed(0) => Ok(Marked::Gone),
            Err(e) if e.condition_failed(1) => Ok(Marked::CallerNotAdmin),
            Err(e) => Err(e),
        }
    }

    /// Undoes [`Store::mark_removing`] when the removal was refused.
    pub async fn clear_removing(&self, m: &Membership) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .update_expression("REMOVE removing")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Removes a membership and every key it owns in one transaction. `keys`
    /// must be all of them: the transaction fails if the stored `key_count`
    /// differs (a key revoked or swept meanwhile) or the role changed since
    /// it was read. With `caller_admin` (someone else removes `m`), only while
    /// that caller is still an admin. Cancellation reasons: item 0 the
    /// membership, then two per key, then the tenant, then the caller.
    pub async fn delete_membership(
        &self,
        m: &Membership,
        keys: &[StoredKey],
        caller_admin: Option<Uuid>,
    ) -> Result<()> {
        let mut items = Vec::with_capacity(keys.len().saturating_mul(2).saturating_add(3));
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(m.tenant_id), member_sk(m.user_id))))
            .condition_expression("member_role = :role AND key_count = :count")
            .set_expression_attribute_values(Some(values([
                (":role", s(m.role.name())),
                (":count", n(i64::try_from(keys.len()).unwrap_or(i64::MAX))),
            ])))
            .build()?;
        items.push(TransactWriteItem::builder().delete(delete).build());
        for stored in keys {
            push_key_deletes(&self.table, &mut items, &stored.key_ref(), None)?;
        }
        items.push(self.tenant_counter_item(m, -1, 0)?);
        if let Some(caller) = caller_admin {
            items.push(check_admin(&self.table, m.tenant_id, caller)?);
        }
        self.transact(items).await
    }

    /// Changes a member's role, keeping the tenant's admin-user count right.
    /// With `caller_admin` (someone else's role), only while that caller is
    /// still an admin. Cancellation reasons: item 0 the membership (role
    /// changed meanwhile, or gone), then the tenant count if it changes, then
    /// the caller.
    pub async fn set_role(
        &self,
        m: &Membership,
        role: Role,
        caller_admin: Option<Uuid>,
    ) -> Result<()> {
        let mut items = vec![update(
            &self.table,
            key_of(tenant_pk(m.tenant_id), member_sk(m.user_id)),
            "SET member_role = :new",
            "member_role = :old AND attribute_not_exists(removing)",
            values([(":new", s(role.name())), (":old", s(m.role.name()))]),
        )?];
        let changed = Membership { role, ..m.clone() };
        match (m.is_admin_user(), changed.is_admin_user()) {
            (true, false) => items.push(count_admin_users(&self.table, m.tenant_id, -1)?),
            (false, true) => items.push(count_admin_users(&self.table, m.tenant_id, 1)?),
            _ => {}
        }
        if let Some(caller) = caller_admin {
            items.push(check_admin(&self.table, m.tenant_id, caller)?);
        }
        self.transact(items).await
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<UserRecord>> {
        match self.get(format!("user#{id}"), "user".into()).await? {
            Some(item) => {
                let f = Fields(&item);
                Ok(Some(UserRecord {
                    id: f.uuid("user_id")?,
                    username: f.s("username")?.to_string(),
                    email: f.opt_s("email")?.map(str::to_string),
                    created: f.time("created")?,
                }))
            }
            None => Ok(None),
        }
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        let pointer = self
            .get(
                format!("username#{}", username.to_lowercase()),
                "username".into(),
            )
            .await?;
        match pointer {
            Some(item) => self.user(Fields(&item).uuid("user_id")?).await,
            None => Ok(None),
        }
    }

    fn user_items(&self, user: &UserRecord) -> Result<Vec<TransactWriteItem>> {
        let mut record = key_of(format!("user#{}", user.id), "user".into());
        record.extend(values([
            ("user_id", s(user.id.to_string())),
            ("username", s(&user.username)),
            ("created", n(user.created.unix_timestamp())),
        ]));
        if let Some(email) = &user.email {
            record.insert("email".into(), s(email));
        }
        let mut pointer = key_of(
            format!("username#{}", user.username.to_lowercase()),
            "username".into(),
        );
        pointer.insert("user_id".into(), s(user.id.to_string()));
        Ok(vec![put(&self.table, record)?, put(&self.table, pointer)?])
    }

    /// Adds a person to a tenant, creating the user too when `new_user` is
    /// set: all in one transaction. Cancellation reasons: item 0 the
    /// membership (already a member), 1 the tenant, then the user's record
    /// and username (taken meanwhile).
    pub async fn insert_member(&self, m: &Membership, new_user: Option<&UserRecord>) -> Result<()> {
        let mut items = vec![
            put(&self.table, membership_item(m))?,
            self.tenant_counter_item(m, 1, 0)?,
        ];
        if let Some(user) = new_user {
            items.extend(self.user_items(user)?);
        }
        self.transact(items).await
    }

    /// Creates a tenant, its slug, its first admin's membership and first key,
    /// and the admin user itself when `new_user` is set: all or nothing.
    pub async fn insert_tenant(
        &self,
        tenant: &Tenant,
        admin: &Membership,
        new_user: Option<&UserRecord>,
        first_key: &StoredKey,
    ) -> Result<()> {
        let mut tenant_item = key_of(tenant_pk(tenant.id), "tenant".into());
        tenant_item.extend(values([
            ("name", s(&tenant.name)),
            ("slug", s(&tenant.slug)),
            ("created", n(tenant.created.unix_timestamp())),
            ("admin_users", n(1)),
        ]));
        let mut slug_item = key_of(format!("slug#{}", tenant.slug), "slug".into());
        slug_item.insert("tenant_id".into(), s(tenant.id.to_string()));
        let (listing, lookup) = key_items(first_key);
        let mut items = vec![
            put(&self.table, tenant_item)?,
            put(&self.table, slug_item)?,
            put(
                &self.table,
                membership_item(&Membership {
                    key_count: 1,
                    ..admin.clone()
                }),
            )?,
            put(&self.table, lookup)?,
            put(&self.table, listing)?,
        ];
        if let Some(user) = new_user {
            items.extend(self.user_items(user)?);
        }
        self.transact(items).await
    }
}
