//! API keys: `auth_api_key`, its ordering, and the create and revoke inputs.

use apikeys_shared::domain;
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
}

#[derive(GraphQLInputObject)]
#[graphql(name = "delete_api_key_input", rename_all = "none")]
pub struct DeleteApiKeyInput {
    pub key_id: Uuid,
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
        }
    }
}
