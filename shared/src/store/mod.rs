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
//! This module holds the client, the item codec and the transaction
//! helpers; each aggregate's reads and writes are in its own file.

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
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{Config, ConfigError, Deadlines};
use crate::domain::{AccountType, Role};
use crate::token::TokenHash;

mod audit;
mod keys;
mod members;
mod repair;
mod tenants;
mod users;

pub use audit::*;
pub use keys::*;
pub use members::*;
pub use repair::*;
pub use tenants::*;
pub use users::*;

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
    /// The acting member made its allowed number of changes this minute:
    /// nothing was written; the next window opens in `retry_after` seconds.
    #[error("rate limited for {retry_after} s")]
    RateLimited { retry_after: u64, limit: u32 },
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

#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
    /// Changes one member may make per minute (see
    /// [`Config::changes_per_minute`]); `None`: no limit.
    changes_per_minute: Option<u32>,
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
    dynamodb_client_over(config, crate::https::https_client()?)
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

    fn opt_uuid(&self, attr: &'static str) -> Result<Option<Uuid>> {
        self.opt_s(attr)?
            .map(|v| Uuid::parse_str(v).map_err(|_| StoreError::Corrupt(self.name(), attr)))
            .transpose()
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

fn put(table: &str, item: Item) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}

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
    update_setting_ttl(table, key, expression, condition, vals, false)
}

/// Like [`update`]; with `ttl`, the expression may name the `ttl`
/// attribute (a DynamoDB reserved word) as `#ttl`.
fn update_setting_ttl(
    table: &str,
    key: Item,
    expression: &str,
    condition: &str,
    vals: Item,
    ttl: bool,
) -> Result<TransactWriteItem> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .condition_expression(condition)
        .set_expression_attribute_values(Some(vals));
    if ttl {
        update = update.expression_attribute_names("#ttl", "ttl");
    }
    Ok(TransactWriteItem::builder().update(update.build()?).build())
}

/// A single conditional write's answer: `Ok(true)` applied, `Ok(false)`
/// its condition was false (nothing written), any other failure an error.
fn applied<O>(
    result: std::result::Result<O, SdkError<UpdateItemError, HttpResponse>>,
) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
        {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

fn check_admin(table: &str, tenant: Uuid, user: Uuid) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_of(tenant_pk(tenant), member_sk(user))))
        .condition_expression("member_role = :admin")
        .expression_attribute_values(":admin", s(Role::TenantAdmin.name()))
        .build()?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
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

    pub fn from_config(config: &Config) -> std::result::Result<Self, ConfigError> {
        Ok(
            Self::new(dynamodb_client(config)?, config.table_name.clone())
                .with_change_limit(config.changes_per_minute),
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
}
