//! Lifecycle events: every audit record, as it lands in the table's change
//! stream, becomes one Amazon EventBridge event (source `apikeys`). What an
//! event says is built here, from the record alone: ids, names, what was
//! done, when and by whom; never a secret or a hash (an audit record holds
//! neither).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

use apikeys_core::audit::{AuditAction, AuditRecord};

/// The events' `source`.
pub const SOURCE: &str = "apikeys";
/// The version of the `detail` object's shape.
pub const DETAIL_VERSION: u32 = 1;

/// The event's `detail-type` for an action.
pub fn detail_type(action: AuditAction) -> &'static str {
    match action {
        AuditAction::KeyCreated => "API Key Created",
        AuditAction::KeyRotated => "API Key Rotated",
        AuditAction::KeyRevoked => "API Key Revoked",
        AuditAction::KeyExpired => "API Key Expired",
        AuditAction::KeyDisabled => "API Key Disabled",
        AuditAction::KeyEnabled => "API Key Enabled",
        AuditAction::KeyLeaked => "API Key Leaked",
        AuditAction::KeyExpiringSoon => "API Key Expiring Soon",
        AuditAction::ServiceAccountCreated => "Service Account Created",
        AuditAction::ServiceAccountRemoved => "Service Account Removed",
        AuditAction::MemberAdded => "Member Added",
        AuditAction::RoleChanged => "Role Changed",
        AuditAction::MemberRemoved => "Member Removed",
        AuditAction::TenantCreated => "Tenant Created",
        AuditAction::KeyPolicyChanged => "Key Policy Changed",
        AuditAction::InvitationCreated => "Invitation Created",
        AuditAction::InvitationAccepted => "Invitation Accepted",
        AuditAction::InvitationWithdrawn => "Invitation Withdrawn",
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The event's `detail`: `event_id` (the audit record's id: stable, so a
/// consumer drops a duplicate delivery by it), the tenant, the action, who
/// and what.
pub fn detail(record: &AuditRecord) -> Value {
    json!({
        "version": DETAIL_VERSION,
        "event_id": record.id.to_string(),
        "at": rfc3339(record.at),
        "tenant_id": record.tenant_id.to_string(),
        "action": record.action.name(),
        "actor": {
            "user_id": record.actor.user_id.map(|u| u.to_string()),
            "key_id": record.actor.key_id.map(|u| u.to_string()),
            "name": record.actor.name,
            "account_type": record.actor.account_type.map(|t| t.name()),
        },
        "target": {
            "type": record.target_type.name(),
            "id": record.target_id.to_string(),
            "name": record.target_name,
        },
        "detail": record.detail,
    })
}

/// An item in a change stream's DynamoDB JSON (`{"S": "..."}`, `{"N":
/// "1"}`, ...) as the SDK's attribute values; `None` when it is not one.
pub fn item_of_stream_image(image: &Value) -> Option<HashMap<String, AttributeValue>> {
    image
        .as_object()?
        .iter()
        .map(|(name, value)| Some((name.clone(), attribute_of(value)?)))
        .collect()
}

fn attribute_of(value: &Value) -> Option<AttributeValue> {
    let object = value.as_object()?;
    let (kind, inner) = object.iter().next()?;
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Some(match kind.as_str() {
        "S" => AttributeValue::S(inner.as_str()?.to_string()),
        "N" => AttributeValue::N(inner.as_str()?.to_string()),
        "BOOL" => AttributeValue::Bool(inner.as_bool()?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(strings(inner)?),
        "NS" => AttributeValue::Ns(strings(inner)?),
        "L" => AttributeValue::L(
            inner
                .as_array()?
                .iter()
                .map(attribute_of)
                .collect::<Option<_>>()?,
        ),
        "M" => AttributeValue::M(item_of_stream_image(inner)?),
        _ => return None,
    })
}

/// The audit records a change-stream batch inserted, in order; records of
/// other items and other kinds of change are skipped. `Err`: a record
/// that looks like an audit record and cannot be read (a bug, or a newer
/// version's shape), named by its event id.
pub fn audit_records_of_stream(event: &Value) -> Result<Vec<AuditRecord>, String> {
    let mut records = Vec::new();
    for record in event
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if record.get("eventName").and_then(Value::as_str) != Some("INSERT") {
            continue;
        }
        let Some(image) = record.pointer("/dynamodb/NewImage") else {
            continue;
        };
        let id = record.get("eventID").and_then(Value::as_str).unwrap_or("?");
        let item =
            item_of_stream_image(image).ok_or_else(|| format!("record {id}: not DynamoDB JSON"))?;
        match crate::audit_record_of(&item) {
            Ok(Some(audit)) => records.push(audit),
            Ok(None) => {}
            Err(e) => return Err(format!("record {id}: {e}")),
        }
    }
    Ok(records)
}
