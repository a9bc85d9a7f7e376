//! Signing in: the operations that run before anyone is authenticated
//! (`log_in`, `refresh_token`, the sign-in settings the console needs), and
//! the payload every new session is answered with (also `switch_tenant`'s).
//! They are fields of the one schema, each deciding what caller it serves.

use apikeys_service::Error;
use apikeys_service::SessionTokens;
use juniper::{FieldResult, GraphQLInputObject, GraphQLObject};
use uuid::Uuid;

use super::{field_error, Context, DateTime};

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

/// The sign-in settings of this deployment (no read).
pub(super) fn sign_in_settings(ctx: &Context) -> SignInSettings {
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

/// The root fields that run for nobody (no credential): sign-in.
pub const PUBLIC_FIELDS: &[&str] = &["log_in", "refresh_token", "sign_in_settings"];

pub(super) async fn log_in(ctx: &Context, input: LogInInput) -> FieldResult<AuthPayload> {
    let Some(verifier) = &ctx.verifier else {
        return Err(field_error(Error::BadInput(
            "this deployment has no identity provider: sign in with an API key".into(),
        )));
    };
    ctx.service
        .log_in(verifier.as_ref(), &input.id_token, input.tenant_id)
        .await
        .map(AuthPayload::from)
        .map_err(field_error)
}

pub(super) async fn refresh_token(
    ctx: &Context,
    input: RefreshTokenInput,
) -> FieldResult<AuthPayload> {
    ctx.service
        .refresh_session(&input.access_token, ctx.refresh_token.as_deref())
        .await
        .map(AuthPayload::from)
        .map_err(field_error)
}

/// Moves the caller's session (a member's, or a person's in no tenant who
/// just accepted an invitation) into another of the person's tenants.
pub(super) async fn switch_tenant(
    ctx: &Context,
    input: SwitchTenantInput,
) -> FieldResult<AuthPayload> {
    if let super::Caller::Nobody = ctx.caller {
        return Err(field_error(Error::Unauthenticated(
            apikeys_core::refusal::Refusal::Malformed,
        )));
    }
    ctx.service
        .switch_tenant(ctx.session(), input.tenant_id)
        .await
        .map(AuthPayload::from)
        .map_err(field_error)
}
