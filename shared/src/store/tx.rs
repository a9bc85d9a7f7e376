//! Transactions: the items they are made of, and the runner that sends
//! them and tells every outcome truthfully.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::Put;

use super::*;

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

pub(super) fn put(table: &str, item: Item) -> Result<TransactWriteItem> {
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
pub(super) fn backoff(attempt: u32) -> std::time::Duration {
    use rand::Rng;
    let cap_ms = 10u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(6));
    std::time::Duration::from_millis(rand::rng().random_range(1..=cap_ms))
}

pub(super) fn update(
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
pub(super) fn update_setting_ttl(
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
pub(super) fn applied<O>(
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

pub(super) fn check_admin(table: &str, tenant: Uuid, user: Uuid) -> Result<TransactWriteItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_of(tenant_pk(tenant), member_sk(user))))
        .condition_expression("member_role = :admin")
        .expression_attribute_values(":admin", s(Role::TenantAdmin.name()))
        .build()?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

impl Store {
    ///   with the reason of every item.
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
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<()> {
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
