//! Invitations (Prefect 1.x shapes): made and withdrawn by human tenant
//! admins, listed for them and for the person invited, accepted by a
//! person signed in with the invited email verified. Resolvers here are
//! shared by the authenticated schema and the schema of a person in no
//! tenant yet (see `sessions`).

use apikeys_core::domain::Role;
use apikeys_core::principal::Person;
use apikeys_service::ApiKeys;
use apikeys_service::Error;
use apikeys_store::Invitation;
use juniper::{FieldResult, GraphQLInputObject, GraphQLObject};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::members::RoleDetail;
use super::{field_error, DateTime, IdPayload};

#[derive(GraphQLInputObject)]
#[graphql(name = "create_membership_invitation_input", rename_all = "none")]
pub struct CreateInvitationInput {
    pub tenant_id: Uuid,
    pub email: String,
    /// `USER`, `TENANT_ADMIN` or `READ_ONLY_USER`.
    pub role: String,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "membership_invitation_id_input", rename_all = "none")]
pub struct InvitationIdInput {
    pub invitation_id: Uuid,
}

/// The tenant an invitation is to.
#[derive(GraphQLObject)]
#[graphql(name = "invitation_tenant", rename_all = "none")]
pub struct InvitationTenant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
}

#[derive(GraphQLObject)]
#[graphql(name = "membership_invitation", rename_all = "none")]
pub struct MembershipInvitation {
    pub id: Uuid,
    pub created: DateTime,
    pub expires_at: DateTime,
    pub email: String,
    pub role: String,
    pub role_detail: RoleDetail,
    pub tenant: InvitationTenant,
    /// Who invited (a username, or `operator`).
    pub invited_by: String,
}

impl From<Invitation> for MembershipInvitation {
    fn from(i: Invitation) -> Self {
        Self {
            id: i.id,
            created: DateTime(i.created),
            expires_at: DateTime(i.expires_at),
            email: i.email,
            role: i.role.name().to_string(),
            role_detail: RoleDetail::from(i.role),
            tenant: InvitationTenant {
                id: i.tenant_id,
                name: i.tenant_name,
                slug: i.tenant_slug,
            },
            invited_by: i.invited_by_name,
        }
    }
}

/// The answer to an accepted invitation: the new membership, and its
/// tenant (`switch_tenant` into it to act there).
#[derive(GraphQLObject)]
#[graphql(name = "accept_membership_invitation_payload", rename_all = "none")]
pub struct AcceptedInvitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
}

/// One of the person's tenants, for the console's switcher.
#[derive(GraphQLObject)]
#[graphql(name = "my_tenant", rename_all = "none")]
pub struct MyTenant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub role: String,
}

/// What a request has read of invitations and of the person's tenants:
/// each read at most once per request, however many fields, aliases or
/// fragment spreads ask for it.
#[derive(Default)]
pub struct PersonReads {
    invitations: OnceCell<Result<Vec<Invitation>, Error>>,
    tenants: OnceCell<Result<Vec<(apikeys_core::domain::Tenant, Role)>, Error>>,
}

pub(super) async fn list(
    service: &ApiKeys,
    reads: &PersonReads,
    admin_of: Option<&apikeys_core::principal::Principal>,
    person: Option<&Person>,
) -> FieldResult<Vec<MembershipInvitation>> {
    reads
        .invitations
        .get_or_init(|| service.visible_invitations(admin_of, person))
        .await
        .clone()
        .map(|all| all.into_iter().map(MembershipInvitation::from).collect())
        .map_err(field_error)
}

pub(super) async fn accept(
    service: &ApiKeys,
    session: Option<&apikeys_core::principal::SessionRef>,
    input: InvitationIdInput,
) -> FieldResult<AcceptedInvitation> {
    let Some(session) = session else {
        return Err(field_error(Error::Forbidden(
            "an invitation is accepted by the person it is addressed to, signed in with the \
             identity provider (not with an API key)"
                .into(),
        )));
    };
    let (id, tenant_id) = service
        .accept_invitation(
            &session.person,
            Some((&session.hash, session.id)),
            input.invitation_id,
        )
        .await
        .map_err(field_error)?;
    Ok(AcceptedInvitation { id, tenant_id })
}

pub(super) async fn my_tenants(
    service: &ApiKeys,
    reads: &PersonReads,
    person: Option<&Person>,
) -> FieldResult<Vec<MyTenant>> {
    let Some(person) = person else {
        return Ok(Vec::new());
    };
    let found = reads
        .tenants
        .get_or_init(|| service.person_tenants(person))
        .await
        .clone()
        .map_err(field_error)?;
    Ok(found
        .into_iter()
        .map(|(t, role): (apikeys_core::domain::Tenant, Role)| MyTenant {
            id: t.id,
            name: t.name,
            slug: t.slug,
            role: role.name().to_string(),
        })
        .collect())
}

pub(super) fn id(id: Uuid) -> IdPayload {
    IdPayload { id }
}
