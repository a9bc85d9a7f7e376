//! The GraphQL schema of API.md: resolvers delegate to the service layer.

use std::sync::Arc;

use apikeys_shared::domain::{self, AccountType, Membership, Principal, Role};
use apikeys_shared::service::KeyRequest;
use apikeys_shared::store::StoreError;
use apikeys_shared::{ApiKeys, Error};
use juniper::{
    graphql_object, graphql_value, EmptySubscription, FieldError, FieldResult, GraphQLEnum,
    GraphQLInputObject, GraphQLObject, GraphQLScalar,
};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Per-request context: the service, the authenticated caller, and what
/// this request has read already. Every read a query can make is made at
/// most once per request, however many fields, aliases or fragment spreads
/// ask for it: the tenant, the member list, the key list.
pub struct Context {
    pub service: Arc<ApiKeys>,
    pub principal: Principal,
    tenant: OnceCell<Result<domain::Tenant, Error>>,
    members: OnceCell<Result<Vec<Membership>, Error>>,
    keys: OnceCell<Result<Vec<domain::ApiKey>, Error>>,
}

impl juniper::Context for Context {}

impl Context {
    pub fn new(service: Arc<ApiKeys>, principal: Principal) -> Self {
        Self {
            service,
            principal,
            tenant: OnceCell::new(),
            members: OnceCell::new(),
            keys: OnceCell::new(),
        }
    }

    async fn tenant(&self) -> FieldResult<domain::Tenant> {
        let read = self.service.current_tenant(&self.principal);
        self.tenant
            .get_or_init(|| read)
            .await
            .clone()
            .map_err(field_error)
    }

    async fn members(&self) -> FieldResult<Vec<Membership>> {
        let read = self.service.members(&self.principal);
        self.members
            .get_or_init(|| read)
            .await
            .clone()
            .map_err(field_error)
    }

    async fn keys(&self) -> FieldResult<Vec<domain::ApiKey>> {
        let read = self.service.list_api_keys(&self.principal);
        self.keys
            .get_or_init(|| read)
            .await
            .clone()
            .map_err(field_error)
    }

    /// May the caller see `member`'s email? Human admins and the member.
    fn sees_email_of(&self, member: &Membership) -> bool {
        let p = &self.principal;
        p.user_id == member.user_id
            || (p.role == Role::TenantAdmin && p.account_type == AccountType::User)
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
/// `extensions.code` of a write whose outcome is not known.
pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";

/// A service error as `extensions.code` and message, mapped once: domain
/// answers say what they mean; storage failures say only what happened.
pub fn error_code_and_message(err: &Error) -> (&'static str, String) {
    match err {
        Error::Unauthenticated => ("UNAUTHENTICATED", err.to_string()),
        Error::Forbidden(_) => ("FORBIDDEN", err.to_string()),
        Error::NotFound(_) | Error::BadInput(_) => ("BAD_USER_INPUT", err.to_string()),
        Error::Store(StoreError::Transient {
            message,
            unknown_outcome,
        }) => {
            tracing::warn!(error = %message, "storage unavailable");
            if *unknown_outcome {
                (
                    OUTCOME_UNKNOWN,
                    "The database did not confirm the change in time: it may or may not have \
                     been applied. Check before trying again."
                        .to_string(),
                )
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

/// Maps a service error to a GraphQL error with `extensions.code`.
pub fn field_error(err: Error) -> FieldError {
    let (code, message) = error_code_and_message(&err);
    FieldError::new(message, graphql_value!({ "code": code }))
}

/// RFC 3339 in UTC with a `+00:00` offset; any offset accepted on input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLScalar)]
#[graphql(
    name = "DateTime",
    to_output_with = Self::render,
    from_input_with = Self::from_input,
    parse_token(String)
)]
pub struct DateTime(pub OffsetDateTime);

impl DateTime {
    fn render(&self) -> String {
        let utc = self.0.checked_to_offset(UtcOffset::UTC).unwrap_or(self.0);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )
    }

    /// Parses RFC 3339 and normalises to UTC. The conversion is checked: an
    /// offset can carry a valid local time past the last representable UTC
    /// instant (e.g. `9999-12-31T23:59:59-00:01`).
    pub fn from_input(input: &str) -> Result<Self, Box<str>> {
        let shown: String = input.chars().take(64).collect();
        let parsed = OffsetDateTime::parse(input, &Rfc3339).map_err(|_| {
            format!("Invalid DateTime {shown:?}: expected RFC 3339, e.g. 2031-01-02T03:04:05+00:00")
        })?;
        parsed
            .checked_to_offset(UtcOffset::UTC)
            .map(DateTime)
            .ok_or_else(|| format!("Invalid DateTime {shown:?}: out of range in UTC").into())
    }
}

#[derive(GraphQLEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "order_by")]
pub enum OrderBy {
    #[graphql(name = "asc")]
    Asc,
    #[graphql(name = "desc")]
    Desc,
}

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
#[graphql(name = "auth_info", rename_all = "none")]
pub struct AuthInfo {
    pub user_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub role: Option<String>,
    pub role_id: Option<Uuid>,
    pub account_type: Option<String>,
    pub permissions: Option<Vec<String>>,
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

/// A membership; its `tenant` is read only when selected.
pub struct MembershipView(Membership);

#[graphql_object]
#[graphql(name = "membership", context = Context, rename_all = "none")]
impl MembershipView {
    fn id(&self) -> Uuid {
        self.0.id
    }

    fn tenant_id(&self) -> Uuid {
        self.0.tenant_id
    }

    async fn tenant(&self, ctx: &Context) -> FieldResult<Tenant> {
        ctx.tenant().await.map(Tenant::from)
    }

    fn role_detail(&self) -> RoleDetail {
        self.0.role.into()
    }
}

/// A user or service account, seen from the caller's tenant.
pub struct User(Membership);

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

fn matches(filter: &Option<TenantFilter>, tenant: &domain::Tenant) -> bool {
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
    fn auth_info(ctx: &Context) -> AuthInfo {
        let p = &ctx.principal;
        AuthInfo {
            user_id: Some(p.user_id),
            tenant_id: Some(p.tenant_id),
            api_key_id: Some(p.api_key_id),
            role: Some(p.role.name().to_string()),
            role_id: Some(p.role.id()),
            account_type: Some(p.account_type.name().to_string()),
            permissions: Some(p.role.permissions().iter().map(|s| s.to_string()).collect()),
        }
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
        let tenant = ctx.tenant().await?;
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
        Ok(keys.into_iter().map(AuthApiKey::from).collect())
    }

    /// The caller, as a list of one.
    fn user(ctx: &Context) -> Vec<User> {
        vec![User(ctx.service.me(&ctx.principal))]
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
    async fn create_api_key(
        ctx: &Context,
        input: CreateApiKeyInput,
    ) -> FieldResult<CreateApiKeyPayload> {
        let request = KeyRequest {
            name: &input.name,
            expires_at: input.expires_at.map(|d| d.0),
        };
        let (key, secret) = ctx
            .service
            .create_api_key(
                &ctx.principal,
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

    async fn delete_api_key(
        ctx: &Context,
        input: DeleteApiKeyInput,
    ) -> FieldResult<SuccessPayload> {
        let success = ctx
            .service
            .revoke_api_key(&ctx.principal, input.key_id)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "API key not found".to_string()),
        })
    }

    async fn create_service_account(
        ctx: &Context,
        input: CreateServiceAccountInput,
    ) -> FieldResult<IdPayload> {
        let id = ctx
            .service
            .create_service_account(&ctx.principal, &input.name, input.tenant_id, input.role_id)
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
            .delete_service_account(&ctx.principal, input.user_id)
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
            .set_membership_role(&ctx.principal, input.membership_id, input.role_id)
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
            .delete_membership(&ctx.principal, input.membership_id)
            .await
            .map_err(field_error)?;
        Ok(SuccessPayload {
            success,
            error: (!success).then(|| "membership not found".to_string()),
        })
    }
}
