//! The `tenant` type and its filters.

use apikeys_core::domain;
use juniper::{GraphQLInputObject, GraphQLObject};
use uuid::Uuid;

use super::{DateTime, OrderBy};

#[derive(GraphQLInputObject)]
#[graphql(name = "uuid_comparison_exp")]
pub struct UuidComparison {
    #[graphql(name = "_eq")]
    pub eq: Option<Uuid>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "String_comparison_exp")]
pub struct StringComparison {
    #[graphql(name = "_eq")]
    pub eq: Option<String>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "tenant_bool_exp", rename_all = "none")]
pub struct TenantFilter {
    pub id: Option<UuidComparison>,
    pub slug: Option<StringComparison>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "tenant_order_by", rename_all = "none")]
pub struct TenantOrder {
    pub slug: Option<OrderBy>,
    pub name: Option<OrderBy>,
    pub created: Option<OrderBy>,
}

#[derive(GraphQLObject)]
#[graphql(name = "tenant", rename_all = "none")]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created: DateTime,
}

impl From<domain::Tenant> for Tenant {
    fn from(t: domain::Tenant) -> Self {
        Self {
            id: t.id,
            name: t.name,
            slug: t.slug,
            created: DateTime(t.created),
        }
    }
}

pub(super) fn matches(filter: &Option<TenantFilter>, tenant: &domain::Tenant) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    let id_ok = match filter.id.as_ref().and_then(|c| c.eq) {
        Some(id) => id == tenant.id,
        None => true,
    };
    let slug_ok = match filter.slug.as_ref().and_then(|c| c.eq.as_deref()) {
        Some(slug) => slug == tenant.slug,
        None => true,
    };
    id_ok && slug_ok
}
