//! The GraphQL schema (docs/API.md, "The GraphQL API"): the request context, the error mapping and
//! the root types; each type family is in its own file. Resolvers delegate
//! to the service layer.

use std::sync::Arc;

use apikeys_core::authz::{authorize, Action, Target};
use apikeys_core::domain::{self, Member};
use apikeys_core::principal::Principal;
use apikeys_core::refusal::Refusal;
use apikeys_service::ApiKeys;
use apikeys_service::Error;
use apikeys_service::KeyRequest;
use apikeys_store::StoreError;
use juniper::{
    graphql_object, graphql_value, EmptySubscription, FieldError, FieldResult, GraphQLObject,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

mod audit;
mod invitations;
mod keys;
mod members;
mod policy;
mod scalars;
mod sessions;
mod tenants;

pub use audit::*;
pub use invitations::*;
pub use keys::*;
pub use members::*;
pub use policy::*;
pub use scalars::*;
pub use sessions::*;
pub use tenants::*;

/// Who a request runs for.
pub enum Caller {
    /// A member of a tenant: an API key, or a person's session in a tenant.
    Member(Box<Principal>),
    /// A person signed in with the identity provider who belongs to no
    /// tenant yet: they may see and accept their invitations, switch into
    /// a tenant, list their tenants and log out.
    Person(apikeys_core::principal::SessionRef),
    /// Nobody: only the sign-in fields ([`PUBLIC_FIELDS`]) run.
    Nobody,
}

/// Per-request context: the service, the caller, and what this request has
/// read already. Every read a query can make is made at most once per
/// request, however many fields, aliases or fragment spreads ask for it:
/// the member list, the key list. The caller and its tenant come with
/// authentication's one read. Each field decides what caller it serves
/// ([`Context::principal`] for a member's).
pub struct Context {
    pub service: Arc<ApiKeys>,
    pub caller: Caller,
    /// The caller's address as API Gateway saw it (`None`: not known).
    pub source: Option<std::net::IpAddr>,
    /// The identity provider's ID-token verifier (`None`: sign-in is not
    /// configured, or this request does not sign in).
    pub verifier: Option<Arc<apikeys_idp::oidc::IdTokenVerifier>>,
    /// The refresh token, as `refresh_token` takes it (Prefect 1.x sent
    /// it as the request's bearer).
    pub refresh_token: Option<String>,
    /// When long work (a key policy written onto every key) must stop to
    /// answer in time (`None`: no limit).
    pub until: Option<std::time::Instant>,
    members: OnceCell<Result<Vec<Member>, Error>>,
    policy: OnceCell<Result<apikeys_service::PolicyView, Error>>,
    keys: OnceCell<Result<Vec<domain::ApiKey>, Error>>,
    person: PersonReads,
}

impl juniper::Context for Context {}

impl Context {
    pub fn new(service: Arc<ApiKeys>, caller: Caller, source: Option<std::net::IpAddr>) -> Self {
        Self {
            service,
            caller,
            source,
            verifier: None,
            refresh_token: None,
            until: None,
            members: OnceCell::new(),
            policy: OnceCell::new(),
            keys: OnceCell::new(),
            person: PersonReads::default(),
        }
    }

    /// The same context, able to sign people in.
    pub fn with_sign_in(
        mut self,
        verifier: Option<Arc<apikeys_idp::oidc::IdTokenVerifier>>,
        refresh_token: Option<String>,
    ) -> Self {
        self.verifier = verifier;
        self.refresh_token = refresh_token;
        self
    }

    /// The same context, whose long work stops at `until`.
    pub fn until(mut self, until: std::time::Instant) -> Self {
        self.until = Some(until);
        self
    }

    /// The member a field acts for; a person in no tenant, or nobody, is
    /// told why not.
    pub fn principal(&self) -> FieldResult<&Principal> {
        match &self.caller {
            Caller::Member(p) => Ok(p),
            Caller::Person(_) => Err(field_error(Error::Forbidden(
                "you are signed in but belong to no tenant yet: accept an invitation \
                 (membership_invitation), then switch_tenant into its tenant"
                    .into(),
            ))),
            Caller::Nobody => Err(field_error(Error::Unauthenticated(Refusal::Malformed))),
        }
    }

    /// The person's session presented (a member's in a tenant, or one in
    /// none); `None` for an API key, or nobody.
    pub fn session(&self) -> Option<&apikeys_core::principal::SessionRef> {
        match &self.caller {
            Caller::Member(p) => p.session.as_ref(),
            Caller::Person(session) => Some(session),
            Caller::Nobody => None,
        }
    }

    async fn policy(&self) -> FieldResult<apikeys_service::PolicyView> {
        let p = self.principal()?;
        let read = async { self.service.key_policy(p).await };
        self.policy
            .get_or_init(|| read)
            .await
            .clone()
            .map_err(field_error)
    }

    fn tenant(&self) -> FieldResult<domain::Tenant> {
        Ok(self.service.current_tenant(self.principal()?))
    }

    async fn members(&self) -> FieldResult<Vec<Member>> {
        let p = self.principal()?;
        let read = async {
            let members = self.service.members(p).await?;
            Ok(members.into_iter().map(Member::from).collect())
        };
        self.members
            .get_or_init(|| read)
            .await
            .clone()
            .map_err(field_error)
    }

    async fn keys(&self) -> FieldResult<Vec<domain::ApiKey>> {
        let read = self.service.list_api_keys(self.principal()?);
        self.keys
            .get_or_init(|| read)
            .await
            .clone()
            .map_err(field_error)
    }

    /// May the caller see `member`'s email? (See the rules: the member and
    /// human admins.)
    fn sees_email_of(&self, member: &Member) -> bool {
        let Ok(p) = self.principal() else {
            return false;
        };
        let target = Target::of(p.user_id, member.user_id, member.account_type);
        authorize(p.actor(), Action::ReadEmail, target)
    }
}

pub type Schema = juniper::RootNode<Query, Mutation, EmptySubscription<Context>>;

pub fn schema(introspection: bool) -> Schema {
    let schema = Schema::new(Query, Mutation, EmptySubscription::new());
    if introspection {
        schema
    } else {
        schema.disable_introspection()
    }
}

/// `extensions.code` of a transient failure after which nothing changed:
/// the same request can simply be sent again (the edge answers HTTP 503).
pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
/// `extensions.code` of a change refused because another request is
/// removing the member or changing its role: nothing changed.
pub const MEMBER_BUSY: &str = "MEMBER_BUSY";
/// `extensions.code` of a change refused because its member made its
/// allowed changes this minute: nothing changed (HTTP 429 with
/// `Retry-After` when it was the request's only write).
pub const RATE_LIMITED: &str = "RATE_LIMITED";
/// `extensions.code` of a change recorded but not yet in force everywhere:
/// sending it again finishes it.
pub const CHANGE_INCOMPLETE: &str = "CHANGE_INCOMPLETE";
/// `extensions.code` of a write whose outcome is not known.
pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";

/// What a caller is told of a change whose outcome is not known.
const UNKNOWN_OUTCOME_MESSAGE: &str = "The database did not confirm the change in time: it may \
                                       or may not have been applied. Check before trying again.";

/// A service error as `extensions.code` and message, mapped once: domain
/// answers say what they mean; storage failures say only what happened.
pub fn error_code_and_message(err: &Error) -> (&'static str, String) {
    match err {
        Error::Unauthenticated(reason) => (
            "UNAUTHENTICATED",
            reason.advice().map_or_else(
                || "Unauthenticated".to_string(),
                |advice| format!("Unauthenticated: {advice}"),
            ),
        ),
        Error::SignIn { message, .. } => ("UNAUTHENTICATED", message.clone()),
        Error::Unavailable(message) => (SERVICE_UNAVAILABLE, message.clone()),
        Error::RateLimited { message, .. } => (RATE_LIMITED, message.clone()),
        Error::Forbidden(_) | Error::Denied { .. } => ("FORBIDDEN", err.to_string()),
        Error::NotFound(_) | Error::BadInput(_) => ("BAD_USER_INPUT", err.to_string()),
        Error::Busy(..) => (MEMBER_BUSY, err.to_string()),
        Error::Incomplete(_) => (CHANGE_INCOMPLETE, err.to_string()),
        // Retryable like a transient failure, and said as what it is.
        Error::Contended(_) => {
            tracing::info!(error = %err, "request lost to concurrent changes");
            (SERVICE_UNAVAILABLE, err.to_string())
        }
        Error::Deadline {
            unknown_outcome: true,
        } => (OUTCOME_UNKNOWN, UNKNOWN_OUTCOME_MESSAGE.to_string()),
        Error::Deadline {
            unknown_outcome: false,
        } => (
            SERVICE_UNAVAILABLE,
            "This request ran out of time and nothing was changed: try again shortly.".to_string(),
        ),
        Error::Store(StoreError::Transient {
            message,
            unknown_outcome,
        }) => {
            tracing::warn!(error = %message, "storage unavailable");
            if *unknown_outcome {
                (OUTCOME_UNKNOWN, UNKNOWN_OUTCOME_MESSAGE.to_string())
            } else {
                (
                    SERVICE_UNAVAILABLE,
                    "The database is unavailable right now and nothing was changed: try again \
                     shortly."
                        .to_string(),
                )
            }
        }
        Error::Store(e) => {
            tracing::error!(error = %e, "storage error");
            ("INTERNAL_SERVER_ERROR", "Internal server error".to_string())
        }
    }
}

/// Nobody presented a credential this field needs.
fn unauthenticated() -> FieldError {
    field_error(Error::Unauthenticated(Refusal::Malformed))
}

/// Maps a service error to a GraphQL error with `extensions.code`.
pub fn field_error(err: Error) -> FieldError {
    let (code, message) = error_code_and_message(&err);
    if let Error::RateLimited { retry_after, .. } = err {
        let seconds = i32::try_from(retry_after).unwrap_or(60);
        return FieldError::new(
            message,
            graphql_value!({ "code": code, "retry_after": seconds }),
        );
    }
    match err {
        Error::Unauthenticated(reason) => FieldError::new(
            message,
            graphql_value!({ "code": code, "reason": (reason.code()) }),
        ),
        Error::SignIn { reason, .. } => {
            FieldError::new(message, graphql_value!({ "code": code, "reason": reason }))
        }
        Error::Denied {
            reason,
            needed_scope: Some(scope),
            ..
        } => FieldError::new(
            message,
            graphql_value!({ "code": code, "reason": (reason.code()), "needed_scope": scope }),
        ),
        Error::Denied { reason, .. } => FieldError::new(
            message,
            graphql_value!({ "code": code, "reason": (reason.code()) }),
        ),
        _ => FieldError::new(message, graphql_value!({ "code": code })),
    }
}

#[derive(GraphQLObject)]
#[graphql(name = "auth_info", rename_all = "none")]
pub struct AuthInfo {
    pub user_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub role: Option<String>,
    pub role_id: Option<Uuid>,
    pub account_type: Option<String>,
    pub permissions: Option<Vec<String>>,
    /// The key's scopes (empty: not limited by scopes).
    pub scopes: Option<Vec<String>>,
}

#[derive(GraphQLObject)]
#[graphql(name = "create_api_key_payload", rename_all = "none")]
pub struct CreateApiKeyPayload {
    pub id: Uuid,
    /// The secret, shown this once.
    pub key: String,
    /// The same secret, under the name the Prefect docs use.
    pub token: String,
}

#[derive(GraphQLObject)]
#[graphql(name = "success_payload", rename_all = "none")]
pub struct SuccessPayload {
    pub success: bool,
    pub error: Option<String>,
}

#[derive(GraphQLObject)]
#[graphql(name = "id_payload", rename_all = "none")]
pub struct IdPayload {
    pub id: Uuid,
}

/// Applies `limit`/`offset` the way a Hasura-style API does.
fn page<T>(items: Vec<T>, limit: Option<i32>, offset: Option<i32>) -> FieldResult<Vec<T>> {
    let offset = usize::try_from(offset.unwrap_or(0))
        .map_err(|_| field_error(Error::BadInput("offset must not be negative".into())))?;
    let limit = match limit {
        Some(l) => usize::try_from(l)
            .map_err(|_| field_error(Error::BadInput("limit must not be negative".into())))?,
        None => usize::MAX,
    };
    Ok(items.into_iter().skip(offset).take(limit).collect())
}

fn directed<T: Ord>(order: OrderBy, a: T, b: T) -> std::cmp::Ordering {
    match order {
        OrderBy::Asc => a.cmp(&b),
        OrderBy::Desc => b.cmp(&a),
    }
}

pub struct Query;

#[graphql_object]
#[graphql(context = Context, rename_all = "none")]
impl Query {
    /// Liveness.
    fn hello() -> &'static str {
        "👋"
    }

    /// Who the key belongs to, and the tenant it acts in.
    fn auth_info(ctx: &Context) -> FieldResult<AuthInfo> {
        let p = ctx.principal()?;
        Ok(AuthInfo {
            user_id: Some(p.user_id),
            tenant_id: Some(p.tenant_id),
            api_key_id: Some(p.api_key_id),
            role: Some(p.effective_role().name().to_string()),
            role_id: Some(p.effective_role().id()),
            account_type: Some(p.account_type.name().to_string()),
            permissions: Some(
                apikeys_core::authz::permissions(p.actor(), p.key_may_write())
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            ),
            scopes: Some(p.key_scopes.clone()),
        })
    }

    /// What the console needs to send a person to the identity provider
    /// (no key needed; no read).
    fn sign_in_settings(ctx: &Context) -> sessions::SignInSettings {
        sessions::sign_in_settings(ctx)
    }

    /// Pending invitations: a human admin sees the tenant's; a person
    /// signed in sees those addressed to their verified email.
    async fn membership_invitation(ctx: &Context) -> FieldResult<Vec<MembershipInvitation>> {
        let admin_of = match &ctx.caller {
            Caller::Member(p) => Some(p.as_ref()),
            Caller::Person(_) => None,
            Caller::Nobody => return Err(unauthenticated()),
        };
        let person = ctx.session().map(|s| &s.person);
        invitations::list(&ctx.service, &ctx.person, admin_of, person).await
    }

    /// The tenants of the person signed in, with their role in each (an
    /// API key: none; it belongs to its one tenant).
    async fn my_tenants(ctx: &Context) -> FieldResult<Vec<MyTenant>> {
        if let Caller::Nobody = ctx.caller {
            return Err(unauthenticated());
        }
        let person = ctx.session().map(|s| &s.person);
        invitations::my_tenants(&ctx.service, &ctx.person, person).await
    }

    /// The tenant's key policy: the rules every key must meet (every member
    /// reads it, to make keys that do).
    async fn key_policy(ctx: &Context) -> FieldResult<KeyPolicyObject> {
        Ok(ctx.policy().await?.into())
    }

    /// The roles a member may have, with the stable ids a role is set by
    /// (no read).
    fn role() -> Vec<members::RoleDetail> {
        apikeys_core::domain::Role::ALL
            .into_iter()
            .map(members::RoleDetail::from)
            .collect()
    }

    /// Tenants visible to the key: its own tenant, when it matches `where`.
    async fn tenant(
        ctx: &Context,
        #[graphql(name = "where")] filter: Option<TenantFilter>,
        order_by: Option<Vec<TenantOrder>>,
        limit: Option<i32>,
        offset: Option<i32>,
    ) -> FieldResult<Vec<Tenant>> {
        // A key sees exactly one tenant, so `order_by` cannot change the answer;
        // it is accepted for the wire form the Prefect client sends.
        let _ = order_by;
        let tenant = ctx.tenant()?;
        let visible: Vec<Tenant> = Some(tenant)
            .filter(|t| matches(&filter, t))
            .map(Tenant::from)
            .into_iter()
            .collect();
        page(visible, limit, offset)
    }

    /// The caller's keys (and, for an admin, every service-account key of the
    /// tenant). Never the secret.
    async fn auth_api_key(
        ctx: &Context,
        order_by: Option<Vec<KeyOrder>>,
    ) -> FieldResult<Vec<AuthApiKey>> {
        let mut keys = ctx.keys().await?;
        // Stable sorts, least significant criterion first.
        for order in order_by.unwrap_or_default().iter().rev() {
            if let Some(dir) = order.expires_at {
                keys.sort_by(|a, b| directed(dir, a.expires_at, b.expires_at));
            }
            if let Some(dir) = order.name {
                keys.sort_by(|a, b| directed(dir, &a.name, &b.name));
            }
            if let Some(dir) = order.created {
                keys.sort_by(|a, b| directed(dir, a.created, b.created));
            }
        }
        // Judged by the policy as the caller's key carries it (no read).
        let policy = &ctx.principal()?.policy;
        Ok(keys
            .into_iter()
            .map(|k| {
                let violation = policy.violation(k.owner_type, k.created, k.expires_at, &k.scopes);
                let mut key = AuthApiKey::from(k);
                key.policy_violation = violation.map(|v| v.code().to_string());
                key
            })
            .collect())
    }

    /// The tenant's audit log, newest first (tenant admins only): up to
    /// `limit` (1 to 100, default 50) records older than `before`, the
    /// `cursor` of the last record of the previous page.
    async fn audit_log(
        ctx: &Context,
        limit: Option<i32>,
        before: Option<String>,
    ) -> FieldResult<Vec<AuditLogEntry>> {
        let records = ctx
            .service
            .audit_log(ctx.principal()?, limit, before.as_deref())
            .await
            .map_err(field_error)?;
        Ok(records.into_iter().map(AuditLogEntry::from).collect())
    }

    /// The caller, as a list of one.
    fn user(ctx: &Context) -> FieldResult<Vec<User>> {
        Ok(vec![User(ctx.service.me(ctx.principal()?))])
    }

    /// Users and service accounts of the caller's tenant.
    async fn user_view_same_tenant(ctx: &Context) -> FieldResult<Vec<User>> {
        Ok(ctx.members().await?.into_iter().map(User).collect())
    }
}

pub struct Mutation;

#[graphql_object]
#[graphql(context = Context, rename_all = "none")]
impl Mutation {
    /// Moves the caller's session to another of the person's tenants (new
    /// tokens; the old ones stop).
    async fn switch_tenant(ctx: &Context, input: SwitchTenantInput) -> FieldResult<AuthPayload> {
        sessions::switch_tenant(ctx, input).await
    }

    /// Exchanges the identity provider's ID token for a session (no key
    /// needed).
    async fn log_in(ctx: &Context, input: LogInInput) -> FieldResult<AuthPayload> {
        sessions::log_in(ctx, input).await
    }

    /// A session's tokens anew, the old ones stopping at once: the refresh
    /// token is the request's `Authorization: Bearer` (no key needed).
    async fn refresh_token(ctx: &Context, input: RefreshTokenInput) -> FieldResult<AuthPayload> {
        sessions::refresh_token(ctx, input).await
    }

    /// Ends the caller's session at once.
    async fn log_out(ctx: &Context) -> FieldResult<SuccessPayload> {
        let member = match &ctx.caller {
            Caller::Member(p) => Some((p.tenant_id, p.user_id)),
            Caller::Person(_) => None,
            Caller::Nobody => return Err(unauthenticated()),
        };
        let ended = ctx
            .service
            .log_out(ctx.session(), member)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success: true,
            error: (!ended).then(|| "the session had ended already".to_string()),
        })
    }

    /// Invites a person by email to the caller's tenant (human tenant
    /// admins).
    async fn create_membership_invitation(
        ctx: &Context,
        input: CreateInvitationInput,
    ) -> FieldResult<IdPayload> {
        let made = ctx
            .service
            .create_invitation(ctx.principal()?, input.tenant_id, &input.email, &input.role)
            .await
            .map_err(field_error)?;
        Ok(invitations::id(made.id))
    }

    /// Withdraws a pending invitation (human tenant admins).
    async fn delete_membership_invitation(
        ctx: &Context,
        input: InvitationIdInput,
    ) -> FieldResult<SuccessPayload> {
        ctx.service
            .withdraw_invitation(ctx.principal()?, input.invitation_id)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success: true,
            error: None,
        })
    }

    /// Accepts an invitation addressed to the signed-in person.
    async fn accept_membership_invitation(
        ctx: &Context,
        input: InvitationIdInput,
    ) -> FieldResult<AcceptedInvitation> {
        if let Caller::Nobody = ctx.caller {
            return Err(unauthenticated());
        }
        invitations::accept(&ctx.service, ctx.session(), input).await
    }

    async fn create_api_key(
        ctx: &Context,
        input: CreateApiKeyInput,
    ) -> FieldResult<CreateApiKeyPayload> {
        let role_ceiling = match input.role_id {
            Some(id) => Some(
                domain::Role::from_id(id)
                    .ok_or_else(|| field_error(Error::BadInput("unknown role_id".into())))?,
            ),
            None => None,
        };
        let allowed_networks =
            domain::parse_networks(input.allowed_networks.as_deref().unwrap_or_default())
                .map_err(|e| field_error(Error::BadInput(e)))?;
        let scopes = match &input.scopes {
            Some(scopes) => apikeys_core::policy::parse_scopes(scopes)
                .map_err(|e| field_error(Error::BadInput(e)))?,
            None => Vec::new(),
        };
        let request = KeyRequest {
            name: &input.name,
            expires_at: input.expires_at.map(|d| d.0),
            role_ceiling,
            allowed_networks,
            scopes,
        };
        let (key, secret) = ctx
            .service
            .create_api_key(
                ctx.principal()?,
                input.user_id,
                request,
                input.default_tenant_id,
            )
            .await
            .map_err(field_error)?;
        let secret = secret.expose_secret().to_string();
        Ok(CreateApiKeyPayload {
            id: key.id,
            key: secret.clone(),
            token: secret,
        })
    }

    /// A new key replacing `key_id` (same name, owner, tenant and expiry);
    /// the old one works until `old_key_expires_at`. Allowed to whoever may
    /// revoke the key.
    async fn rotate_api_key(
        ctx: &Context,
        input: RotateApiKeyInput,
    ) -> FieldResult<RotateApiKeyPayload> {
        let rotated = ctx
            .service
            .rotate_api_key(
                ctx.principal()?,
                input.key_id,
                input.grace_period_seconds.map(i64::from),
            )
            .await
            .map_err(field_error)?;
        let secret = rotated.secret.expose_secret().to_string();
        Ok(RotateApiKeyPayload {
            id: rotated.key.id,
            key: secret.clone(),
            token: secret,
            expires_at: rotated.key.expires_at.map(DateTime),
            old_key_expires_at: DateTime(rotated.old_key_expires_at),
        })
    }

    async fn delete_api_key(
        ctx: &Context,
        input: DeleteApiKeyInput,
    ) -> FieldResult<SuccessPayload> {
        let success = ctx
            .service
            .revoke_api_key(ctx.principal()?, input.key_id)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "API key not found".to_string()),
        })
    }

    /// Disables a key: it fails like a revoked one from its next request,
    /// until enabled again. Allowed to whoever may revoke it.
    async fn disable_api_key(
        ctx: &Context,
        input: DisableApiKeyInput,
    ) -> FieldResult<SuccessPayload> {
        let success = ctx
            .service
            .set_api_key_disabled(ctx.principal()?, input.key_id, true)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "API key not found".to_string()),
        })
    }

    /// Enables a disabled key again.
    async fn enable_api_key(
        ctx: &Context,
        input: EnableApiKeyInput,
    ) -> FieldResult<SuccessPayload> {
        let success = ctx
            .service
            .set_api_key_disabled(ctx.principal()?, input.key_id, false)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "API key not found".to_string()),
        })
    }

    /// Replaces the tenant's key policy (human tenant admins): answers once
    /// every key of the tenant carries it. Alone in its request.
    async fn set_key_policy(
        ctx: &Context,
        input: SetKeyPolicyInput,
    ) -> FieldResult<KeyPolicyObject> {
        let view = ctx
            .service
            .set_key_policy(ctx.principal()?, &input.into(), ctx.source, ctx.until)
            .await
            .map_err(field_error)?;
        Ok(view.into())
    }

    async fn create_service_account(
        ctx: &Context,
        input: CreateServiceAccountInput,
    ) -> FieldResult<IdPayload> {
        let id = ctx
            .service
            .create_service_account(
                ctx.principal()?,
                &input.name,
                input.tenant_id,
                input.role_id,
            )
            .await
            .map_err(field_error)?;
        Ok(IdPayload { id })
    }

    async fn delete_service_account(
        ctx: &Context,
        input: DeleteServiceAccountInput,
    ) -> FieldResult<SuccessPayload> {
        let success = ctx
            .service
            .delete_service_account(ctx.principal()?, input.user_id)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "service account not found".to_string()),
        })
    }

    async fn set_membership_role(
        ctx: &Context,
        input: SetMembershipRoleInput,
    ) -> FieldResult<IdPayload> {
        let id = ctx
            .service
            .set_membership_role(ctx.principal()?, input.membership_id, input.role_id)
            .await
            .map_err(field_error)?;
        Ok(IdPayload { id })
    }

    async fn delete_membership(
        ctx: &Context,
        input: DeleteMembershipInput,
    ) -> FieldResult<SuccessPayload> {
        let success = ctx
            .service
            .delete_membership(ctx.principal()?, input.membership_id)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "membership not found".to_string()),
        })
    }
}
