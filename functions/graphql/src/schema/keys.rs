//! API keys: `auth_api_key`, its ordering, and the create and revoke inputs.

use apikeys_core::domain;
use juniper::{GraphQLInputObject, GraphQLObject};
use uuid::Uuid;

use super::{DateTime, OrderBy};

#[derive(GraphQLInputObject)]
#[graphql(name = "auth_api_key_order_by", rename_all = "none")]
pub struct KeyOrder {
    pub created: Option<OrderBy>,
    pub name: Option<OrderBy>,
    pub expires_at: Option<OrderBy>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "create_api_key_input", rename_all = "none")]
pub struct CreateApiKeyInput {
    pub user_id: Uuid,
    pub name: String,
    pub expires_at: Option<DateTime>,
    pub default_tenant_id: Option<Uuid>,
    /// The most the key may do, a role id (`role { id }`): it acts with the
    /// lower of this and its owner's role, at every request. Null: its
    /// owner's role. Never more than the key that creates it may do.
    pub role_id: Option<Uuid>,
    /// The networks the key may be used from: IPv4/IPv6 addresses or CIDRs,
    /// at most 16 (null or empty: any). Within those of the key that
    /// creates it.
    pub allowed_networks: Option<Vec<String>>,
    /// What the key may do on the platform's APIs, as `resource:action`
    /// (`orders:read`; `orders:*` for every action), at most 32 (null: not
    /// limited by scopes; an empty list is refused). This API itself needs
    /// `apikeys:read` or `apikeys:write`. Within those of the key that
    /// creates it.
    pub scopes: Option<Vec<String>>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "disable_api_key_input", rename_all = "none")]
pub struct DisableApiKeyInput {
    pub key_id: Uuid,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "enable_api_key_input", rename_all = "none")]
pub struct EnableApiKeyInput {
    pub key_id: Uuid,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "delete_api_key_input", rename_all = "none")]
pub struct DeleteApiKeyInput {
    pub key_id: Uuid,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "rotate_api_key_input", rename_all = "none")]
pub struct RotateApiKeyInput {
    pub key_id: Uuid,
    /// How long the replaced key keeps working, in seconds: 0 (the default)
    /// stops it at once; at most 604800 (7 days); never past its own expiry.
    pub grace_period_seconds: Option<i32>,
}

#[derive(GraphQLObject)]
#[graphql(name = "rotate_api_key_payload", rename_all = "none")]
pub struct RotateApiKeyPayload {
    /// The new key's id.
    pub id: Uuid,
    /// The new key: shown once.
    pub key: String,
    pub token: String,
    /// The new key's expiry: the replaced key's.
    pub expires_at: Option<DateTime>,
    /// When the replaced key stops working.
    pub old_key_expires_at: DateTime,
}

#[derive(GraphQLObject)]
#[graphql(name = "user_ref", rename_all = "none")]
pub struct UserRef {
    pub id: Uuid,
    pub username: Option<String>,
}

#[derive(GraphQLObject)]
#[graphql(name = "auth_api_key", rename_all = "none")]
pub struct AuthApiKey {
    pub id: Uuid,
    pub name: String,
    pub user_id: Uuid,
    pub default_tenant_id: Uuid,
    pub created: DateTime,
    pub updated: Option<DateTime>,
    pub expires_at: Option<DateTime>,
    pub created_by: Option<UserRef>,
    pub key_hint: Option<String>,
    /// When the key was last used (recorded at most once per interval, so
    /// accurate to it; null: not used since this was recorded).
    pub last_used: Option<DateTime>,
    /// The key this one replaced in a rotation.
    pub rotated_from: Option<Uuid>,
    /// The key that replaced this one (it works until its `expires_at`).
    pub replaced_by: Option<Uuid>,
    /// The key that was used to create this one (null: the operator).
    pub created_by_key_id: Option<Uuid>,
    /// The most the key may do (null: its owner's role).
    pub role_ceiling: Option<super::members::RoleDetail>,
    /// Disabled: it fails like a revoked key until enabled.
    pub disabled: bool,
    /// The networks the key may be used from (empty: any).
    pub allowed_networks: Vec<String>,
    /// The key's scopes (empty: not limited by scopes).
    pub scopes: Vec<String>,
    /// The rule of the tenant's key policy the key breaks, as its reason
    /// code (`policy_max_lifetime`, `policy_scopes_required`); null: it
    /// complies. A key that breaks one is refused until it is loosened.
    pub policy_violation: Option<String>,
    /// Reported leaked by secret scanning and kept working, as the
    /// tenant's leak policy says (a revoked key is gone).
    pub leaked: bool,
}

impl From<domain::ApiKey> for AuthApiKey {
    fn from(k: domain::ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            user_id: k.owner_id,
            default_tenant_id: k.tenant_id,
            created: DateTime(k.created),
            updated: None,
            expires_at: k.expires_at.map(DateTime),
            created_by: Some(UserRef {
                id: k.created_by,
                username: k.created_by_name,
            }),
            key_hint: Some(k.hint),
            last_used: k.last_used.map(DateTime),
            rotated_from: k.rotated_from,
            replaced_by: k.replaced_by,
            created_by_key_id: k.created_by_key_id,
            role_ceiling: k.role_ceiling.map(Into::into),
            disabled: k.disabled,
            allowed_networks: k.allowed_networks.iter().map(ToString::to_string).collect(),
            scopes: k.scopes,
            policy_violation: None,
            leaked: k.leaked,
        }
    }
}
