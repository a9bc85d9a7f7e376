//! The function as built once per cold start: its settings (what it reads
//! of the environment beyond the service's), the service, the schema, the
//! identity provider's verifier and GitHub's keys (each built when first
//! needed), and the warm-up that runs the request path once at init.

use std::sync::Arc;
use std::time::Duration;

use apikeys_core::clock::SystemClock;
use apikeys_core::domain::{AccountType, Role, Tenant};
use apikeys_core::principal::Principal;
use apikeys_core::token::NewKey;
use apikeys_service::config::{Config, ConfigError};
use apikeys_service::ApiKeys;
use juniper::Variables;
use lambda_http::{Request, RequestExt};

use crate::schema::{schema, Caller, Context, Schema};

use crate::handler::handle;

/// What the GraphQL function reads of the environment beyond the
/// service's settings: introspection, and its own entrances (sign-in with
/// an identity provider, secret scanning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Allow schema introspection (`ENABLE_INTROSPECTION`, default false;
    /// `ENABLE_GRAPHIQL`, its former name, is still read).
    pub introspection: bool,
    /// The identity provider people sign in with; unset: keys only.
    pub oidc: Option<apikeys_idp::oidc::OidcSettings>,
    pub scanning: apikeys_idp::github::ScanningSettings,
}

impl Settings {
    pub fn from_env(env: &apikeys_platform::Env) -> Result<Self, ConfigError> {
        Ok(Self {
            introspection: env.switch("ENABLE_INTROSPECTION", false)?
                || env.switch("ENABLE_GRAPHIQL", false)?,
            oidc: apikeys_idp::oidc::OidcSettings::from_env(env)?,
            scanning: apikeys_idp::github::ScanningSettings::from_env(env),
        })
    }
}

/// Everything built once per cold start and shared by every request.
pub struct App {
    pub(crate) service: Arc<ApiKeys>,
    pub(crate) settings: Settings,
    pub(crate) schema: Schema,
    /// GitHub's secret scanning keys: their client built, and the keys
    /// fetched, when a report first needs them (never at cold start).
    pub(crate) github_keys: std::sync::OnceLock<Option<apikeys_idp::github::GithubKeys>>,
    /// The identity provider's ID-token verifier: built, and its keys
    /// fetched, when a sign-in first needs them (never at cold start).
    pub(crate) verifier: std::sync::OnceLock<Option<Arc<apikeys_idp::oidc::IdTokenVerifier>>>,
}

impl App {
    pub fn new(service: ApiKeys, settings: Settings) -> Self {
        Self {
            service: Arc::new(service),
            schema: schema(settings.introspection),
            settings,
            github_keys: std::sync::OnceLock::new(),
            verifier: std::sync::OnceLock::new(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let env = apikeys_platform::Env::from_process();
        let config = Config::from_env()?;
        let service = ApiKeys::from_config(config, Arc::new(SystemClock))?;
        Ok(Self::new(service, Settings::from_env(&env)?))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn service(&self) -> &ApiKeys {
        &self.service
    }

    /// The ID-token verifier, when an identity provider is configured
    /// (with a client id from the API Gateway stage variable the
    /// configuration names, read from the first request that needs it).
    pub(crate) fn verifier(
        &self,
        request: &Request,
    ) -> Option<Arc<apikeys_idp::oidc::IdTokenVerifier>> {
        if let Some(built) = self.verifier.get() {
            return built.clone();
        }
        let mut settings = self.settings.oidc.clone()?;
        if let Some(name) = &settings.client_stage_variable {
            let from_stage = request
                .stage_variables_ref()
                .and_then(|variables| variables.first(name))
                .filter(|c| !c.is_empty() && c.len() <= 256);
            let Some(client) = from_stage else {
                // Not remembered: a request of the stage that has it may come.
                tracing::error!(
                    variable = %name,
                    "the stage variable that holds the client id is missing: no sign-in"
                );
                return None;
            };
            settings.client_id = client.to_string();
        }
        let built = match apikeys_idp::oidc::IdTokenVerifier::new(settings) {
            Ok(verifier) => Some(Arc::new(verifier)),
            Err(e) => {
                tracing::error!(error = %e, "identity provider not usable: sign-in off");
                None
            }
        };
        self.verifier.get_or_init(|| built).clone()
    }

    /// What init does beyond building, unless configured not to: one request
    /// through the whole edge with a well-formed key nobody holds (the event,
    /// parsing, the cost check, the hash lookup, which opens the DynamoDB
    /// connection, TCP and TLS, and the answer), then one GraphQL execution,
    /// so the first real request runs on warm code and a warm connection.
    /// Costs one strongly consistent GetItem of an item that does not exist
    /// per cold start; bounded by two seconds, never fatal.
    pub async fn warm_up(&self) {
        if !self.service.config().warm_connection {
            return;
        }
        // An API Gateway event, parsed the way the runtime parses the real
        // ones, so that code is warm too.
        let key = NewKey::generate(&self.service.config().user_key_prefix);
        let event = WARM_UP_EVENT.replace("KEY", key.expose_secret());
        if let Ok(request) = lambda_http::request::from_str(&event) {
            let answered =
                tokio::time::timeout(Duration::from_secs(2), handle(self, request)).await;
            if answered.is_err() {
                tracing::warn!("the warm-up request took over two seconds");
            }
        }
        let context = Context::new(
            Arc::clone(&self.service),
            Caller::Member(Box::new(warm_up_principal())),
            None,
        );
        let _ = juniper::execute(
            "{ hello auth_info { role permissions } }",
            None,
            &self.schema,
            &Variables::new(),
            &context,
        )
        .await;
    }
}

/// A REST API event for the warm-up request; `KEY` is replaced by a key.
pub(crate) const WARM_UP_EVENT: &str = include_str!("warm_up_event.json");

/// A caller that exists nowhere, for executing a query that reads nothing.
pub(crate) fn warm_up_principal() -> Principal {
    let nil = uuid::Uuid::nil();
    Principal {
        user_id: nil,
        tenant_id: nil,
        api_key_id: nil,
        username: String::new(),
        account_type: AccountType::User,
        role: Role::ReadOnlyUser,
        membership_id: nil,
        email: None,
        tenant: Tenant {
            id: nil,
            name: String::new(),
            slug: String::new(),
            created: time::OffsetDateTime::UNIX_EPOCH,
        },
        key_last_used: None,
        key_replaced: false,
        key_ceiling: None,
        key_networks: Vec::new(),
        key_scopes: Vec::new(),
        key_created: None,
        key_expires_at: None,
        policy: apikeys_core::policy::KeyPolicy::default(),
        session: None,
    }
}
