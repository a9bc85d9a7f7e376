//! The audit log: one partition per tenant (`audit#<tenant id>`), sorted by
//! time (`<unix ms, 13 digits>#<record id>`), newest read first. Records
//! are only ever written inside the transaction of the change they describe
//! (see [`audit_put`]) and removed by DynamoDB's TTL after the retention.

use apikeys_core::audit::{AuditAction, AuditActor, AuditCursor, AuditRecord, TargetType};

use super::*;

fn audit_pk(tenant: Uuid) -> String {
    format!("audit#{tenant}")
}

fn audit_sk(record: &AuditRecord) -> String {
    let millis = record.at.unix_timestamp_nanos() / 1_000_000;
    format!("{millis:013}#{}", record.id)
}

/// The Put of a record in a transaction: a new item, never an overwrite.
pub fn audit_put(table: &str, record: &AuditRecord) -> Result<TransactWriteItem> {
    let mut item = key_of(audit_pk(record.tenant_id), audit_sk(record));
    item.extend(values([
        ("audit_id", s(record.id.to_string())),
        ("at", n(record.at.unix_timestamp())),
        ("action", s(record.action.name())),
        ("actor_name", s(&record.actor.name)),
        ("target_type", s(record.target_type.name())),
        ("target_id", s(record.target_id.to_string())),
        ("ttl", n(record.expires.unix_timestamp())),
    ]));
    let optional = [
        ("actor_user_id", record.actor.user_id.map(|u| u.to_string())),
        ("actor_key_id", record.actor.key_id.map(|u| u.to_string())),
        (
            "actor_type",
            record.actor.account_type.map(|a| a.name().to_string()),
        ),
        ("target_name", record.target_name.clone()),
        ("detail", record.detail.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    put(table, item)
}

/// An audit record as an item holds it (as a table's change stream gives
/// it too); `None` for an item that is not an audit record.
pub fn audit_record_of(item: &Item) -> Result<Option<AuditRecord>> {
    match item.get("pk") {
        Some(AttributeValue::S(pk)) if pk.starts_with("audit#") => Ok(Some(audit_from(item)?.0)),
        _ => Ok(None),
    }
}

fn audit_from(item: &Item) -> Result<(AuditRecord, AuditCursor)> {
    let f = Fields(item);
    let tenant = f
        .s("pk")?
        .strip_prefix("audit#")
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or_else(|| StoreError::Corrupt(f.name(), "pk"))?;
    let sk = f.s("sk")?;
    let record = AuditRecord {
        id: f.uuid("audit_id")?,
        tenant_id: tenant,
        at: f.time("at")?,
        action: AuditAction::parse(f.s("action")?)
            .ok_or_else(|| StoreError::Corrupt(f.name(), "action"))?,
        actor: AuditActor {
            user_id: f.opt_uuid("actor_user_id")?,
            key_id: f.opt_uuid("actor_key_id")?,
            name: f.s("actor_name")?.to_string(),
            account_type: f.opt_s("actor_type")?.and_then(AccountType::from_name),
            session: None,
        },
        target_type: TargetType::parse(f.s("target_type")?)
            .ok_or_else(|| StoreError::Corrupt(f.name(), "target_type"))?,
        target_id: f.uuid("target_id")?,
        target_name: f.opt_s("target_name")?.map(str::to_string),
        detail: f.opt_s("detail")?.map(str::to_string),
        expires: f.time("ttl")?,
    };
    Ok((record, AuditCursor::of_sort_key(sk)))
}

impl Store {
    /// Up to `limit` records of a tenant's log, newest first, older than
    /// `before` when given, each with its cursor.
    pub async fn audit_page(
        &self,
        tenant: Uuid,
        limit: i32,
        before: Option<&AuditCursor>,
    ) -> Result<Vec<(AuditRecord, AuditCursor)>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(audit_pk(tenant)))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit);
        query = match before {
            Some(cursor) => query
                .key_condition_expression("pk = :pk AND sk < :before")
                .expression_attribute_values(":before", s(cursor.sort_key())),
            None => query.key_condition_expression("pk = :pk"),
        };
        let out = query.send().await.map_err(read_error)?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(audit_from)
            .collect()
    }
}
