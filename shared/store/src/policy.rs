//! A tenant's key policy: held on the tenant item (the source of truth,
//! with the generation of each change and the last generation applied to
//! every key), and copied onto each key's hash item, which is what
//! authentication reads. A change is one transaction on the tenant item
//! (with its audit record), then one conditional write per key of the
//! tenant (never moving a key's copy back to an older generation), then
//! the tenant item is marked applied: the change is acknowledged only then.
//! A key made meanwhile is written under the generation its transaction
//! checks on the tenant item, so none is missed.

use apikeys_core::audit::AuditRecord;
use apikeys_core::policy::{KeyPolicy, LeakAction};

use super::*;

/// The attributes of a policy on the tenant item and on a hash item.
const POLICY_ATTRIBUTES: [&str; 6] = [
    "pol_user_days",
    "pol_sa_days",
    "pol_scopes",
    "pol_nets",
    "pol_leak",
    "pol_gen",
];

/// The attributes of `policy`: absent rules are absent attributes.
pub(super) fn policy_attributes(policy: &KeyPolicy) -> Item {
    let mut item = Item::new();
    if policy.generation == 0 {
        return item;
    }
    item.insert("pol_gen".into(), n(policy.generation));
    if let Some(days) = policy.max_user_key_days {
        item.insert("pol_user_days".into(), n(i64::from(days)));
    }
    if let Some(days) = policy.max_service_key_days {
        item.insert("pol_sa_days".into(), n(i64::from(days)));
    }
    if policy.scopes_required {
        item.insert("pol_scopes".into(), n(1));
    }
    if !policy.networks.is_empty() {
        let nets = policy.networks.iter().map(ToString::to_string).collect();
        item.insert("pol_nets".into(), AttributeValue::Ss(nets));
    }
    if policy.leak_action == LeakAction::Notify {
        item.insert("pol_leak".into(), s("notify"));
    }
    item
}

/// The policy an item carries (none: the default, generation 0).
pub(super) fn policy_from(f: &Fields<'_>) -> Result<KeyPolicy> {
    let days = |attr: &'static str| -> Result<Option<u32>> {
        f.opt_n(attr)?
            .map(|d| u32::try_from(d).map_err(|_| StoreError::Corrupt(f.name(), attr)))
            .transpose()
    };
    Ok(KeyPolicy {
        generation: f.opt_n("pol_gen")?.unwrap_or(0),
        max_user_key_days: days("pol_user_days")?,
        max_service_key_days: days("pol_sa_days")?,
        scopes_required: f.opt_n("pol_scopes")?.is_some_and(|v| v != 0),
        networks: f.networks("pol_nets")?,
        leak_action: match f.opt_s("pol_leak")? {
            None => LeakAction::Revoke,
            Some("notify") => LeakAction::Notify,
            Some(_) => return Err(StoreError::Corrupt(f.name(), "pol_leak")),
        },
    })
}

/// The update expression that makes an item carry `policy` (setting what
/// it has, removing what it has not), with its values; `also` is set too.
fn policy_update(policy: &KeyPolicy, also: &[&str]) -> (String, Item) {
    let attributes = policy_attributes(policy);
    let mut set: Vec<String> = also.iter().map(|a| a.to_string()).collect();
    let mut remove = Vec::new();
    let mut vals = Item::new();
    for name in POLICY_ATTRIBUTES {
        match attributes.get(name) {
            Some(value) => {
                set.push(format!("{name} = :{name}"));
                vals.insert(format!(":{name}"), value.clone());
            }
            None => remove.push(name.to_string()),
        }
    }
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    (expression, vals)
}

/// The check, in a new key's transaction, that the tenant's policy is
/// still the generation the key was made under.
pub(super) fn policy_check(
    table: &str,
    tenant: Uuid,
    generation: i64,
) -> Result<TransactWriteItem> {
    let condition = if generation == 0 {
        "attribute_exists(pk) AND attribute_not_exists(pol_gen)"
    } else {
        "pol_gen = :gen"
    };
    let mut check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_of(tenant_pk(tenant), "tenant".into())))
        .condition_expression(condition);
    if generation != 0 {
        check = check.expression_attribute_values(":gen", n(generation));
    }
    Ok(TransactWriteItem::builder()
        .condition_check(check.build()?)
        .build())
}

/// A tenant's policy as its tenant item holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPolicy {
    pub policy: KeyPolicy,
    /// The last generation written onto every key of the tenant: the
    /// policy is in force for every key when this equals its generation.
    pub applied: i64,
    /// How far the application of this generation has come: the sort key
    /// of the last key it was written onto (`None`: not begun).
    pub position: Option<String>,
}

/// The sort-key prefixes of a tenant's keys, in the order a policy is
/// applied to them: service accounts' keys, then people's.
const KEY_PREFIXES: [&str; 2] = ["skey#", "ukey#"];

/// Keys read a page at a time while a policy is applied: the position is
/// saved after each page.
const POLICY_PAGE: i32 = 100;

/// One page of a tenant's keys in application order.
pub struct KeyPage {
    pub keys: Vec<super::StoredKey>,
    /// The sort key of the page's last key (where the next page starts).
    pub last: Option<String>,
    /// No key after this page.
    pub done: bool,
}

impl TenantPolicy {
    pub fn is_applied(&self) -> bool {
        self.applied >= self.policy.generation
    }
}

/// What [`Store::set_policy`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum PolicySet {
    Set,
    /// Another change of the policy landed first (or the tenant is gone).
    Changed,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
}

impl PolicySet {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Set),
            Err(r) if r.has(Part::Policy) => Ok(Self::Changed),
            Err(r) if r.has(Part::Caller) => Ok(Self::CallerNotAdmin),
            Err(r) => Err(r.unexplained("set_policy")),
        }
    }
}

impl Store {
    /// An UpdateItem of the tenant item (its condition, expression and
    /// values to be added).
    pub(super) fn tenant_update(
        &self,
        tenant: Uuid,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(tenant), "tenant".into())))
    }

    /// The tenant's key policy (strongly consistent); `None`: no tenant.
    pub async fn tenant_policy(&self, tenant: Uuid) -> Result<Option<TenantPolicy>> {
        let Some(item) = self.get(tenant_pk(tenant), "tenant".into()).await? else {
            return Ok(None);
        };
        let f = Fields(&item);
        let policy = policy_from(&f)?;
        let position = match f.opt_n("pol_pos_gen")? {
            Some(generation) if generation == policy.generation => {
                f.opt_s("pol_pos")?.map(str::to_string)
            }
            _ => None,
        };
        Ok(Some(TenantPolicy {
            policy,
            applied: f.opt_n("pol_applied")?.unwrap_or(0),
            position,
        }))
    }

    /// The tenant's keys after the sort key `after` (`None`: from the
    /// first), a page of at most [`POLICY_PAGE`]: service accounts' keys,
    /// then people's.
    pub async fn key_page(&self, tenant: Uuid, after: Option<&str>) -> Result<KeyPage> {
        let mut after = after.map(str::to_string);
        for (phase, prefix) in KEY_PREFIXES.iter().enumerate() {
            // A position in a later phase: this one is done.
            if after.as_deref().is_some_and(|a| {
                KEY_PREFIXES
                    .iter()
                    .skip(phase.saturating_add(1))
                    .any(|later| a.starts_with(later))
            }) {
                continue;
            }
            let start = after
                .take()
                .filter(|a| a.starts_with(prefix))
                .map(|a| key_of(tenant_pk(tenant), a));
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(tenant_pk(tenant)))
                .expression_attribute_values(":prefix", s(*prefix))
                .consistent_read(true)
                .limit(POLICY_PAGE)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(read_error)?;
            let items = out.items.unwrap_or_default();
            if items.is_empty() && out.last_evaluated_key.is_none() {
                continue;
            }
            let last = items
                .last()
                .and_then(|item| item.get("sk"))
                .and_then(|v| v.as_s().ok())
                .cloned();
            let later = KEY_PREFIXES.len() > phase.saturating_add(1);
            let keys = items
                .iter()
                .map(super::keys::stored_key_from)
                .collect::<Result<Vec<_>>>()?;
            return Ok(KeyPage {
                keys,
                done: out.last_evaluated_key.is_none() && !later && last.is_some(),
                last,
            });
        }
        Ok(KeyPage {
            keys: Vec::new(),
            last: None,
            done: true,
        })
    }

    /// Records how far generation `generation` of the tenant's policy has
    /// been applied (while it is still the tenant's).
    pub async fn save_policy_position(
        &self,
        tenant: Uuid,
        generation: i64,
        position: &str,
    ) -> Result<bool> {
        let update = self
            .tenant_update(tenant)
            .update_expression("SET pol_pos = :pos, pol_pos_gen = :gen")
            .condition_expression("pol_gen = :gen")
            .expression_attribute_values(":pos", s(position))
            .expression_attribute_values(":gen", n(generation));
        self.conditional(update, Repeat::Idempotent).await
    }

    /// Sets the tenant's policy to `policy` (whose generation is the one
    /// after `from`), only while the tenant's is still generation `from`,
    /// with its audit record; with `caller_admin`, only while that caller
    /// is still an admin. Not yet in force for the keys made before: see
    /// [`Store::apply_policy`].
    pub async fn set_policy(
        &self,
        tenant: Uuid,
        from: i64,
        policy: &KeyPolicy,
        caller_admin: Option<Uuid>,
        audit: &AuditRecord,
    ) -> Changed<PolicySet> {
        let (expression, mut vals) = policy_update(policy, &[]);
        let condition = if from == 0 {
            "attribute_exists(pk) AND attribute_not_exists(pol_gen)"
        } else {
            vals.insert(":from".into(), n(from));
            "attribute_exists(pk) AND pol_gen = :from"
        };
        let mut tx = Tx::new();
        tx.push(
            Part::Policy,
            update(
                &self.table,
                key_of(tenant_pk(tenant), "tenant".into()),
                &expression,
                condition,
                vals,
            )?,
        );
        let outcome = self.commit(tx, tenant, caller_admin, &[audit]).await?;
        Ok(PolicySet::of(outcome)?)
    }

    /// Writes `policy` onto one key's hash item (and the key's `created`,
    /// which items written before it was copied lack), unless the item is
    /// gone or already carries this generation or a newer one.
    /// `Ok(false)`: not written, for one of those reasons.
    pub async fn apply_policy_to_key(
        &self,
        hash: &TokenHash,
        created: OffsetDateTime,
        policy: &KeyPolicy,
    ) -> Result<bool> {
        let (expression, mut vals) = policy_update(policy, &["created = :created"]);
        vals.insert(":created".into(), n(created.unix_timestamp()));
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_of(hash_pk(hash), "hash".into())))
            .update_expression(expression)
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(pol_gen) OR pol_gen < :pol_gen)",
            )
            .set_expression_attribute_values(Some(vals));
        self.conditional(update, Repeat::Idempotent).await
    }

    /// Records that generation `generation` of the tenant's policy is on
    /// every key (never moving the mark back).
    pub async fn mark_policy_applied(&self, tenant: Uuid, generation: i64) -> Result<bool> {
        let update = self
            .tenant_update(tenant)
            // The position is left: it counts only for its own generation
            // (removing it here could erase a newer generation's).
            .update_expression("SET pol_applied = :gen")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(pol_applied) OR pol_applied < :gen)",
            )
            .expression_attribute_values(":gen", n(generation));
        self.conditional(update, Repeat::Idempotent).await
    }
}
