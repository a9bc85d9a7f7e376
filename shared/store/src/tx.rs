//! Transactions: the items they are made of, each labelled with what it
//! is for ([`Part`]); the runner that sends them and tells every outcome
//! truthfully, a refusal as the labels of the items whose condition failed
//! ([`Refused`]); and the one tail every audited change ends through
//! ([`Store::commit`]). Each store method reads a refusal into its own
//! outcome enum, so no caller ever counts item positions.

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::Put;

use apikeys_core::audit::AuditRecord;

use super::*;

/// What an item of a transaction is for: how a refusal of its condition is
/// read. Every item pushed on a [`Tx`] carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// A new tenant item.
    NewTenant,
    /// A new slug item (the slug is taken when refused).
    Slug,
    /// A new user's record or username (taken when refused).
    User,
    /// A new membership (already a member when refused).
    NewMember,
    /// The membership the change is about: a key's owner, or the member
    /// changed or removed (gone, held by a lease, or changed meanwhile).
    Member,
    /// The tenant item: that it exists, and its counters' bounds.
    Tenant,
    /// The items of a new key.
    NewKey,
    /// The items of the existing key the change is about.
    Key,
    /// The items of the `i`-th of the keys given to the change.
    KeyAt(usize),
    /// The acting admin's re-check: still an admin of the tenant.
    Caller,
    /// The acting member's count of changes this minute.
    Counter,
    /// The key the change is made with: still there, enabled, not replaced.
    ActingKey,
    /// A new audit record.
    Audit,
    /// A check that an item is absent.
    Absent,
    /// The inviter's count of invitations this hour.
    HourlyLimit,
    /// An invitation's items: still as read (not withdrawn, accepted or
    /// expired meanwhile).
    Invitation,
    /// The tenant's key policy: changed meanwhile (a new key made under the
    /// generation it was checked against, or a change of the policy).
    Policy,
}

/// A transaction being built: its items, each with its [`Part`]. Two
/// operations on one item are refused by [`Store::transact`] before the
/// transaction is sent (see [`StoreError::SameItemTwice`]).
#[derive(Default)]
pub(super) struct Tx {
    items: Vec<TransactWriteItem>,
    parts: Vec<Part>,
    /// The first item pushed onto one already in the transaction: the
    /// parts of both.
    twice: Option<(Part, Part)>,
}

/// The `(pk, sk)` an item of a transaction writes or checks.
fn item_key(item: &TransactWriteItem) -> Option<(&str, &str)> {
    let key = if let Some(put) = item.put() {
        put.item()
    } else if let Some(update) = item.update() {
        update.key()
    } else if let Some(delete) = item.delete() {
        delete.key()
    } else {
        item.condition_check()?.key()
    };
    match (key.get("pk"), key.get("sk")) {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Some((pk, sk)),
        _ => None,
    }
}

impl Tx {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn push(&mut self, part: Part, item: TransactWriteItem) {
        if self.twice.is_none() {
            if let Some((pk, sk)) = item_key(&item) {
                let before = self
                    .items
                    .iter()
                    .position(|other| item_key(other) == Some((pk, sk)));
                if let Some(first) = before.and_then(|i| self.parts.get(i)) {
                    self.twice = Some((*first, part));
                }
            }
        }
        self.items.push(item);
        self.parts.push(part);
    }

    /// Does an item of the transaction already write or check `(pk, sk)`?
    /// (DynamoDB refuses two operations on one item in one transaction.)
    fn touches(&self, pk: &str, sk: &str) -> bool {
        self.items
            .iter()
            .any(|item| item_key(item) == Some((pk, sk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pk: &str) -> TransactWriteItem {
        let check = ConditionCheck::builder()
            .table_name("t")
            .set_key(Some(key_of(pk.into(), "sk".into())))
            .condition_expression("attribute_exists(pk)")
            .build()
            .unwrap();
        TransactWriteItem::builder().condition_check(check).build()
    }

    #[test]
    fn a_second_operation_on_one_item_is_remembered_with_both_parts() {
        let mut tx = Tx::new();
        tx.push(Part::Member, check("a"));
        tx.push(Part::Tenant, check("b"));
        assert_eq!(tx.twice, None);
        tx.push(Part::Caller, check("a"));
        tx.push(Part::Audit, check("b"));
        assert_eq!(
            tx.twice,
            Some((Part::Member, Part::Caller)),
            "the first one kept"
        );
        assert!(tx.touches("a", "sk") && !tx.touches("c", "sk"));
    }
}

/// A transaction cancelled because conditions failed: the labels of those
/// items, in the order they were pushed. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(Vec<Part>);

impl Refused {
    /// Reads DynamoDB's cancellation reasons (one per item, in the order
    /// the items were sent) against the items' labels.
    pub(super) fn from_reasons(parts: &[Part], reasons: &[CancelReason]) -> Self {
        Refused(
            parts
                .iter()
                .zip(reasons)
                .filter(|(_, reason)| **reason == CancelReason::ConditionFailed)
                .map(|(part, _)| *part)
                .collect(),
        )
    }

    /// Was the condition of an item labelled `part` false?
    pub fn has(&self, part: Part) -> bool {
        self.0.contains(&part)
    }

    /// The indexes `i` of the refused [`Part::KeyAt`] items.
    pub fn keys_at(&self) -> Vec<usize> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Part::KeyAt(i) => Some(*i),
                _ => None,
            })
            .collect()
    }

    pub fn parts(&self) -> &[Part] {
        &self.0
    }

    /// The same refusal without `part`.
    pub(super) fn without(mut self, part: Part) -> Self {
        self.0.retain(|p| *p != part);
        self
    }

    /// A refusal the operation has no reading for (a bug, or an item edited
    /// by hand): an error, never a domain answer.
    pub(super) fn unexplained(self, operation: &'static str) -> StoreError {
        StoreError::Unexplained {
            operation,
            parts: self.0,
        }
    }
}

/// A transaction's answer: written, or refused (see [`Refused`]).
pub(super) type Outcome = std::result::Result<(), Refused>;

/// Why one item of a cancelled transaction did not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CancelReason {
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

/// Like [`update`], with attribute names: each `(#placeholder, name)`.
pub(super) fn update_named(
    table: &str,
    key: Item,
    expression: &str,
    condition: &str,
    vals: Item,
    names: Vec<(String, String)>,
) -> Result<TransactWriteItem> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .condition_expression(condition)
        .set_expression_attribute_values((!vals.is_empty()).then_some(vals));
    for (placeholder, name) in names {
        update = update.expression_attribute_names(placeholder, name);
    }
    Ok(TransactWriteItem::builder().update(update.build()?).build())
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
    let names = if ttl {
        vec![("#ttl".to_string(), "ttl".to_string())]
    } else {
        Vec::new()
    };
    update_named(table, key, expression, condition, vals, names)
}

/// How a condition that fails after an attempt whose outcome is unknown
/// is read (see [`Store::conditional`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Repeat {
    /// The write's condition may fail on its own earlier write: such a
    /// failure is an unknown outcome, never an answer.
    Strict,
    /// The condition guards a state the write only ever moves towards (a
    /// generation carried, a lease given back, a checkpoint's version):
    /// failing it after an unknown attempt means "not written now", which
    /// every caller of such a write reads as harmless.
    Idempotent,
}

/// The transient failures of a write's attempts so far: whether one of them
/// may have applied, and the last one's message.
#[derive(Default)]
struct Failed {
    ambiguous: bool,
    last: String,
}

impl Failed {
    /// Notes a failed attempt; an error that is not transient ends the write.
    fn note(&mut self, err: StoreError) -> Result<()> {
        match err {
            StoreError::Transient {
                message,
                unknown_outcome,
            } => {
                self.ambiguous |= unknown_outcome;
                self.last = message;
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Every attempt failed: unknown when one of them may have applied.
    fn exhausted(self, what: &str) -> StoreError {
        StoreError::Transient {
            message: format!(
                "{what} not done after {TRANSACTION_ATTEMPTS} attempts: {}",
                self.last
            ),
            unknown_outcome: self.ambiguous,
        }
    }
}

/// A condition failed on a retry after an attempt whose outcome is unknown:
/// it may be failing on that very attempt's write.
fn own_condition() -> StoreError {
    StoreError::Transient {
        message: "a retried write failed a condition its first attempt may have changed".into(),
        unknown_outcome: true,
    }
}

/// The configuration override that turns the SDK's own retries off for one
/// call: [`Store::transact`] and [`Store::conditional`] retry themselves, so
/// that an attempt whose outcome is unknown is remembered.
fn without_sdk_retries() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::default().retry_config(RetryConfig::disabled())
}

impl Store {
    /// Sends one conditional UpdateItem with this store's own retries:
    /// `Ok(true)` applied, `Ok(false)` its condition was false and nothing
    /// was written. A condition that fails on a retry after an attempt whose
    /// outcome is unknown (a time-out, a connection lost, a 5xx) may be
    /// failing on that very attempt's write: with [`Repeat::Strict`] that
    /// is an unknown outcome (an error), never `false`.
    pub(super) async fn conditional(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        repeat: Repeat,
    ) -> Result<bool> {
        let mut failed = Failed::default();
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(backoff(attempt.saturating_sub(1))).await;
            }
            let result = update
                .clone()
                .customize()
                .config_override(without_sdk_retries())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(true),
                Err(err) => err,
            };
            if err
                .as_service_error()
                .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
            {
                if failed.ambiguous && repeat == Repeat::Strict {
                    return Err(own_condition());
                }
                return Ok(false);
            }
            failed.note(StoreError::from(err))?;
        }
        Err(failed.exhausted("write"))
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
    /// - a failed condition with no ambiguous attempt before it: the answer
    ///   `Ok(Err(refused))`, naming the refused items by their [`Part`].
    pub(super) async fn transact(&self, tx: Tx) -> Result<Outcome> {
        let Tx {
            items,
            parts,
            twice,
        } = tx;
        if let Some((first, second)) = twice {
            return Err(StoreError::SameItemTwice { first, second });
        }
        let mut token = Uuid::new_v4().to_string();
        let mut failed = Failed::default();
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
                .config_override(without_sdk_retries())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let reasons: Vec<CancelReason> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
                    .cancellation_reasons()
                    .iter()
                    .map(|r| CancelReason::from_code(r.code()))
                    .collect(),
                _ => {
                    failed.note(StoreError::from(err))?;
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
                failed.last = "cancelled by concurrent writes or throttling".into();
                continue;
            }
            if failed.ambiguous && reasons.contains(&CancelReason::ConditionFailed) {
                return Err(own_condition());
            }
            if !reasons.contains(&CancelReason::ConditionFailed) {
                return Err(StoreError::Sdk(format!(
                    "transaction cancelled for no condition: {reasons:?}"
                )));
            }
            return Ok(Err(Refused::from_reasons(&parts, &reasons)));
        }
        Err(failed.exhausted("transaction"))
    }

    /// The one tail every audited change ends through: adds, in this order,
    /// the caller's admin re-check when someone acts on another's behalf
    /// ([`Part::Caller`]), a check that the key the change is made with is
    /// still there, enabled and not replaced ([`Part::ActingKey`]: a
    /// request that authenticated just before its key was revoked, disabled
    /// or rotated writes nothing after that was answered), the acting
    /// member's count of changes this minute
    /// when changes are limited ([`Part::Counter`], counted for the first
    /// record's actor), then the change's audit records ([`Part::Audit`]),
    /// and runs the transaction. A change over the member's limit writes
    /// nothing and is told apart: [`Halt::RateLimited`].
    pub(super) async fn commit(
        &self,
        mut tx: Tx,
        tenant: Uuid,
        caller_admin: Option<Uuid>,
        audits: &[&AuditRecord],
    ) -> Changed<Outcome> {
        if let Some(caller) = caller_admin {
            tx.push(Part::Caller, check_admin(&self.table, tenant, caller)?);
        }
        if let Some(first) = audits.first() {
            self.check_acting_key(&mut tx, tenant, first)?;
        }
        let limit = match audits.first() {
            Some(first) => self.change_counter(&mut tx, tenant, first)?,
            None => None,
        };
        for audit in audits {
            tx.push(Part::Audit, audit_put(&self.table, audit)?);
        }
        let Err(mut refused) = self.transact(tx).await? else {
            return Ok(Ok(()));
        };
        // The acting key stopped working: said so when nothing else of the
        // change refused; otherwise the change's own reading says more
        // (an owner removed with its keys is "not found").
        if refused.has(Part::ActingKey) {
            if refused
                .parts()
                .iter()
                .all(|p| matches!(p, Part::ActingKey | Part::Counter))
            {
                return Err(Failure::Halted(Halt::KeyStopped));
            }
            refused = refused.without(Part::ActingKey);
        }
        if refused.has(Part::Counter) {
            return Err(Failure::Halted(limit.unwrap_or(Halt::RateLimited {
                retry_after: 60,
                limit: 0,
            })));
        }
        Ok(Err(refused))
    }

    /// Adds the check of the key `audit`'s actor acted with (none for the
    /// operator and the sweeper), on its listing item, unless the change
    /// itself writes that item (revoking, rotating or disabling the key
    /// itself: its own condition decides then).
    fn check_acting_key(&self, tx: &mut Tx, tenant: Uuid, audit: &AuditRecord) -> Result<()> {
        let actor = &audit.actor;
        // A person's session: still there (not ended by a log-out), unless
        // the change itself ends it (a member changing their own role or
        // leaving, with every session of theirs): that ending decides then.
        if let Some(session) = &actor.session {
            if tx.touches(&hash_pk(session), "hash") {
                return Ok(());
            }
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(hash_pk(session), "hash".into())))
                .condition_expression("attribute_exists(pk)")
                .build()?;
            tx.push(
                Part::ActingKey,
                TransactWriteItem::builder().condition_check(check).build(),
            );
            return Ok(());
        }
        let (Some(user), Some(key), Some(account_type)) =
            (actor.user_id, actor.key_id, actor.account_type)
        else {
            return Ok(());
        };
        let (pk, sk) = (tenant_pk(tenant), key_sk(account_type, user, key));
        if tx.touches(&pk, &sk) {
            return Ok(());
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(pk, sk)))
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(disabled_at) \
                 AND attribute_not_exists(replaced_by)",
            )
            .build()?;
        tx.push(
            Part::ActingKey,
            TransactWriteItem::builder().condition_check(check).build(),
        );
        Ok(())
    }

    /// Adds the acting member's count of changes this minute to a change's
    /// transaction, when changes are limited and a member acts; returns the
    /// refusal its condition failing means. A revocation is never counted:
    /// it only takes power away, and a thief churning a leaked key must not
    /// lock its owner out of revoking it (revocations cannot outnumber the
    /// counted creations anyway).
    fn change_counter(
        &self,
        tx: &mut Tx,
        tenant: Uuid,
        audit: &AuditRecord,
    ) -> Result<Option<Halt>> {
        let (Some(max), Some(actor)) = (self.changes_per_minute, audit.actor.user_id) else {
            return Ok(None);
        };
        // Taking power away is never counted (a revocation, disabling).
        if matches!(
            audit.action,
            apikeys_core::audit::AuditAction::KeyRevoked
                | apikeys_core::audit::AuditAction::KeyDisabled
        ) {
            return Ok(None);
        }
        let at = audit.at.unix_timestamp();
        let window = at.div_euclid(60).saturating_mul(60);
        let retry_after = window.saturating_add(60).saturating_sub(at).max(1);
        tx.push(
            Part::Counter,
            update_setting_ttl(
                &self.table,
                key_of(tenant_pk(tenant), format!("rate#{actor}#{window}")),
                "ADD changes :one SET #ttl = :ttl",
                "attribute_not_exists(changes) OR changes < :max",
                values([
                    (":one", n(1)),
                    (":max", n(i64::from(max))),
                    (":ttl", n(window.saturating_add(3600))),
                ]),
                true,
            )?,
        );
        Ok(Some(Halt::RateLimited {
            retry_after: u64::try_from(retry_after).unwrap_or(60),
            limit: max,
        }))
    }
}
