//! Signing in: the operations that run before anyone is authenticated
//! (`log_in`, `refresh_token`, the sign-in settings the console needs), in
//! a schema of their own, and the payload every new session is answered
//! with (also `switch_tenant`'s).

use std::sync::Arc;

use apikeys_shared::oidc::IdTokenVerifier;
use apikeys_shared::service::SessionTokens;
use apikeys_shared::{ApiKeys, Error};
use juniper::{graphql_object, EmptySubscription, FieldResult, GraphQLInputObject, GraphQLObject};
use uuid::Uuid;

use super::{field_error, DateTime};

/// The context of a request nobody is authenticated for.
pub struct PublicContext {
    pub service: Arc<ApiKeys>,
    /// `None`: this deployment has no identity provider.
    pub verifier: Option<Arc<IdTokenVerifier>>,
    /// The refresh token, as `refresh_token` takes it (Prefect 1.x sent
    /// it as the request's bearer).
    pub refresh_token: Option<String>,
    /// A person signed in who belongs to no tenant yet.
    pub person: Option<apikeys_shared::domain::SessionRef>,
    /// What this request has read for that person (once each).
    pub reads: super::PersonReads,
}

impl PublicContext {
    fn person(&self) -> FieldResult<&apikeys_shared::domain::SessionRef> {
        self.person
            .as_ref()
            .ok_or_else(|| field_error(Error::Unauthenticated(apikeys_shared::Refusal::Malformed)))
    }
}

impl juniper::Context for PublicContext {}

#[derive(GraphQLInputObject)]
#[graphql(name = "log_in_input", rename_all = "none")]
pub struct LogInInput {
    /// The identity provider's ID token.
    pub id_token: String,
    /// The tenant to sign in to (default: the first the person joined).
    pub tenant_id: Option<Uuid>,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "refresh_token_input", rename_all = "none")]
pub struct RefreshTokenInput {
    /// The session's access token; the refresh token is the request's
    /// `Authorization: Bearer`.
    pub access_token: String,
}

#[derive(GraphQLInputObject)]
#[graphql(name = "switch_tenant_input", rename_all = "none")]
pub struct SwitchTenantInput {
    pub tenant_id: Uuid,
}

/// A new session's tokens, shown this once: send the access token as
/// `Authorization: Session <access_token>`; refresh before `expires_at`.
#[derive(GraphQLObject)]
#[graphql(name = "auth_payload", rename_all = "none")]
pub struct AuthPayload {
    pub access_token: String,
    pub expires_at: DateTime,
    pub refresh_token: String,
    /// `null`: a person in no tenant yet (invited: accept, then switch).
    pub tenant_id: Option<Uuid>,
}

impl From<SessionTokens> for AuthPayload {
    fn from(t: SessionTokens) -> Self {
        Self {
            access_token: t.access_token,
            expires_at: DateTime(t.expires_at),
            refresh_token: t.refresh_token,
            tenant_id: t.tenant_id,
        }
    }
}

/// What the console needs to send a person to the identity provider
/// (authorization code with PKCE): public values only.
#[derive(GraphQLObject)]
#[graphql(name = "sign_in_settings", rename_all = "none")]
pub struct SignInSettings {
    /// Is sign-in with the identity provider configured at all?
    pub enabled: bool,
    pub provider_name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
}

pub struct PublicQuery;

#[graphql_object]
#[graphql(context = PublicContext, rename_all = "none")]
impl PublicQuery {
    fn sign_in_settings(ctx: &PublicContext) -> SignInSettings {
        let oidc = ctx.verifier.as_ref().map(|v| v.settings());
        SignInSettings {
            enabled: oidc.is_some(),
            provider_name: oidc.map(|o| o.provider_name.clone()),
            issuer: oidc.map(|o| o.issuer.clone()),
            client_id: oidc.map(|o| o.client_id.clone()),
            authorize_url: oidc.and_then(|o| o.authorize_url.clone()),
            token_url: oidc.and_then(|o| o.token_url.clone()),
        }
    }

    /// The invitations addressed to the signed-in person's verified email.
    async fn membership_invitation(
        ctx: &PublicContext,
    ) -> FieldResult<Vec<super::MembershipInvitation>> {
        let session = ctx.person()?;
        super::invitations::list(&ctx.service, &ctx.reads, None, Some(&session.person)).await
    }

    /// The tenants of the signed-in person (none yet, or just joined).
    async fn my_tenants(ctx: &PublicContext) -> FieldResult<Vec<super::MyTenant>> {
        let session = ctx.person()?;
        super::invitations::my_tenants(&ctx.service, &ctx.reads, Some(&session.person)).await
    }
}

pub struct PublicMutation;

#[graphql_object]
#[graphql(context = PublicContext, rename_all = "none")]
impl PublicMutation {
    /// Exchanges the identity provider's ID token for a session.
    async fn log_in(ctx: &PublicContext, input: LogInInput) -> FieldResult<AuthPayload> {
        let Some(verifier) = &ctx.verifier else {
            return Err(field_error(Error::BadInput(
                "this deployment has no identity provider: sign in with an API key".into(),
            )));
        };
        ctx.service
            .log_in(verifier, &input.id_token, input.tenant_id)
            .await
            .map(AuthPayload::from)
            .map_err(field_error)
    }

    /// Accepts an invitation addressed to the signed-in person: a member
    /// now (`switch_tenant` into the tenant to act there).
    async fn accept_membership_invitation(
        ctx: &PublicContext,
        input: super::InvitationIdInput,
    ) -> FieldResult<super::AcceptedInvitation> {
        let session = ctx.person()?;
        super::invitations::accept(&ctx.service, Some(session), input).await
    }

    /// Moves the person's session into one of their tenants.
    async fn switch_tenant(
        ctx: &PublicContext,
        input: SwitchTenantInput,
    ) -> FieldResult<AuthPayload> {
        let session = ctx.person()?;
        ctx.service
            .switch_tenant(Some(session), input.tenant_id)
            .await
            .map(AuthPayload::from)
            .map_err(field_error)
    }

    /// Ends the person's session.
    async fn log_out(ctx: &PublicContext) -> FieldResult<super::SuccessPayload> {
        let session = ctx.person()?;
        let ended = ctx
            .service
            .log_out(Some(session), None)
            .await
            .map_err(field_error)?;
        Ok(super::SuccessPayload {
            success: true,
            error: (!ended).then(|| "the session had ended already".to_string()),
        })
    }

    /// A session's tokens anew (the old ones stop at once).
    async fn refresh_token(
        ctx: &PublicContext,
        input: RefreshTokenInput,
    ) -> FieldResult<AuthPayload> {
        ctx.service
            .refresh_session(&input.access_token, ctx.refresh_token.as_deref())
            .await
            .map(AuthPayload::from)
            .map_err(field_error)
    }
}

pub type PublicSchema =
    juniper::RootNode<PublicQuery, PublicMutation, EmptySubscription<PublicContext>>;

pub fn public_schema() -> PublicSchema {
    PublicSchema::new(PublicQuery, PublicMutation, EmptySubscription::new()).disable_introspection()
}

/// The root fields answered by [`PublicSchema`]: a request asking only for
/// these runs without a key.
pub const PUBLIC_FIELDS: &[&str] = &["log_in", "refresh_token", "sign_in_settings"];

/// Switches: on the authenticated schema.
pub(super) async fn switch_tenant(
    ctx: &super::Context,
    input: SwitchTenantInput,
) -> FieldResult<AuthPayload> {
    ctx.service
        .switch_tenant(ctx.principal.session.as_ref(), input.tenant_id)
        .await
        .map(AuthPayload::from)
        .map_err(field_error)
}
