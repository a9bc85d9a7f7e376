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
    pub tenant_id: Uuid,
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
    /// May a person who belongs to no tenant create one?
    pub self_signup: bool,
}

pub struct PublicQuery;

#[graphql_object]
#[graphql(context = PublicContext, rename_all = "none")]
impl PublicQuery {
    fn sign_in_settings(ctx: &PublicContext) -> SignInSettings {
        let config = ctx.service.config();
        let oidc = config.oidc.as_ref();
        SignInSettings {
            enabled: oidc.is_some() && ctx.verifier.is_some(),
            provider_name: oidc.map(|o| o.provider_name.clone()),
            issuer: oidc.map(|o| o.issuer.clone()),
            client_id: oidc.map(|o| o.client_id.clone()),
            authorize_url: oidc.and_then(|o| o.authorize_url.clone()),
            token_url: oidc.and_then(|o| o.token_url.clone()),
            self_signup: config.self_signup,
        }
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

/// Switches and signs out: on the authenticated schema.
pub(super) async fn switch_tenant(
    ctx: &super::Context,
    input: SwitchTenantInput,
) -> FieldResult<AuthPayload> {
    ctx.service
        .switch_tenant(&ctx.principal, input.tenant_id)
        .await
        .map(AuthPayload::from)
        .map_err(field_error)
}
