//! People and service accounts: `user`, `membership`, `role_detail`, and
//! the inputs of the member mutations.

use apikeys_core::domain::{Member, Role};
use juniper::{graphql_object, GraphQLInputObject, GraphQLObject};
use uuid::Uuid;

use super::{Context, Tenant};

#[derive(GraphQLInputObject)]
#[graphql(name = "create_service_account_input", rename_all = "none")]
pub struct CreateServiceAccountInput {
    pub name: String,
    pub tenant_id: Option<Uuid>,
    pub role_id: Option<Uuid>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "delete_service_account_input", rename_all = "none")]
pub struct DeleteServiceAccountInput {
    pub user_id: Uuid,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "set_membership_role_input", rename_all = "none")]
pub struct SetMembershipRoleInput {
    pub membership_id: Uuid,
    pub role_id: Uuid,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "delete_membership_input", rename_all = "none")]
pub struct DeleteMembershipInput {
    pub membership_id: Uuid,
}

#[derive(GraphQLObject)]
#[graphql(name = "role_detail", rename_all = "none")]
pub struct RoleDetail {
    pub id: Uuid,
    pub name: String,
}

impl From<Role> for RoleDetail {
    fn from(role: Role) -> Self {
        Self {
            id: role.id(),
            name: role.name().to_string(),
        }
    }
}

/// A membership in the caller's tenant.
pub struct MembershipView(pub(super) Member);

#[graphql_object]
#[graphql(name = "membership", context = Context, rename_all = "none")]
impl MembershipView {
    fn id(&self) -> Uuid {
        self.0.membership_id
    }

    fn tenant_id(&self) -> Uuid {
        self.0.tenant_id
    }

    /// The caller's tenant (a key acts in one tenant only): no read.
    fn tenant(&self, ctx: &Context) -> juniper::FieldResult<Tenant> {
        Ok(ctx.tenant()?.into())
    }

    fn role_detail(&self) -> RoleDetail {
        self.0.role.into()
    }
}

/// A user or service account, seen from the caller's tenant.
pub struct User(pub(super) Member);

#[graphql_object]
#[graphql(name = "user", context = Context, rename_all = "none")]
impl User {
    // A user's id is its membership's `user_id`, not the membership's own id.
    #[allow(clippy::misnamed_getters)]
    fn id(&self) -> Uuid {
        self.0.user_id
    }

    fn username(&self) -> &str {
        &self.0.username
    }

    /// Shown to human tenant admins and to the member themself only.
    fn email(&self, ctx: &Context) -> Option<&str> {
        if ctx.sees_email_of(&self.0) {
            self.0.email.as_deref()
        } else {
            None
        }
    }

    fn first_name(&self) -> Option<&str> {
        None
    }

    fn last_name(&self) -> Option<&str> {
        None
    }

    /// `USER` or `SERVICE`.
    fn account_type(&self) -> &str {
        self.0.account_type.name()
    }

    /// The membership in the caller's tenant (a key acts in one tenant only).
    fn memberships(&self) -> Vec<MembershipView> {
        vec![MembershipView(self.0.clone())]
    }
}
