//! `audit_log`: the tenant's audit records, newest first.

use apikeys_core::audit::{AuditCursor, AuditRecord};
use juniper::GraphQLObject;
use uuid::Uuid;

use super::DateTime;

#[derive(GraphQLObject)]
#[graphql(name = "audit_log_entry", rename_all = "none")]
pub struct AuditLogEntry {
    pub id: Uuid,
    /// Pass it as `before` for the records older than this one.
    pub cursor: String,
    pub at: DateTime,
    /// KEY_CREATED, KEY_ROTATED, KEY_REVOKED, KEY_EXPIRED,
    /// SERVICE_ACCOUNT_CREATED, SERVICE_ACCOUNT_REMOVED, MEMBER_ADDED,
    /// ROLE_CHANGED, MEMBER_REMOVED, TENANT_CREATED.
    pub action: String,
    /// Who acted (null: the operator or the sweeper, named in actor_name).
    pub actor_user_id: Option<Uuid>,
    /// The API key that acted.
    pub actor_key_id: Option<Uuid>,
    pub actor_name: String,
    /// `USER` or `SERVICE` (null: the operator or the sweeper, or a record
    /// older than this field): a service account named like a person is
    /// told apart.
    pub actor_type: Option<String>,
    /// API_KEY, SERVICE_ACCOUNT, MEMBER or TENANT.
    pub target_type: String,
    pub target_id: Uuid,
    pub target_name: Option<String>,
    pub detail: Option<String>,
}

impl From<(AuditRecord, AuditCursor)> for AuditLogEntry {
    fn from((r, cursor): (AuditRecord, AuditCursor)) -> Self {
        Self {
            id: r.id,
            cursor: cursor.as_text(),
            at: DateTime(r.at),
            action: r.action.name().to_string(),
            actor_user_id: r.actor.user_id,
            actor_key_id: r.actor.key_id,
            actor_name: r.actor.name,
            actor_type: r.actor.account_type.map(|a| a.name().to_string()),
            target_type: r.target_type.name().to_string(),
            target_id: r.target_id,
            target_name: r.target_name,
            detail: r.detail,
        }
    }
}
